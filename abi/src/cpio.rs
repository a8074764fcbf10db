//! The boot archive's format: cpio "newc", as Linux's initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst).
//!
//! One source of truth for both sides: the VMM writes archives with
//! [`header`] and [`pad4`], the guest kernel reads them with [`entries`] and
//! [`find`]. The reader is plain byte arithmetic (no allocation, no
//! formatting, every offset checked), cheap enough for ring 0 on PVM, where
//! the kernel runs in KVM's instruction emulator, and it never panics on
//! malformed input: the host fuzzes it (vmm/src/fuzzing.rs, fuzz/).
//!
//! An entry is a 110-byte ASCII header — the magic `070701` and 13 fields of
//! 8 hex digits — then the NUL-terminated name, padding to 4 bytes, the data,
//! padding to 4 bytes. Offsets are from the start of the archive. The entry
//! named [`TRAILER`] ends it. The reader looks only at the magic, the two
//! sizes and the name: the other fields (inode, mode, owner, times) mean
//! nothing to the kernel.

/// The newc magic (no checksums: `070702` is not accepted).
pub const MAGIC: &[u8; 6] = b"070701";
/// Magic plus 13 fields of 8 hex digits.
pub const HEADER_LEN: usize = 6 + FIELDS * 8;
/// The name of the entry that ends an archive.
pub const TRAILER: &[u8] = b"TRAILER!!!";
/// A regular file, rwxr-xr-x.
pub const MODE_EXECUTABLE: u32 = 0o100_755;

const FIELDS: usize = 13;
/// Field numbers, in header order.
pub const F_INO: usize = 0;
pub const F_MODE: usize = 1;
pub const F_NLINK: usize = 4;
pub const F_FILESIZE: usize = 6;
pub const F_NAMESIZE: usize = 11;

/// Byte offset of field `i` in the header.
pub const fn field_offset(i: usize) -> usize {
    MAGIC.len() + 8 * i
}

/// Padding bytes after `len` bytes, to the next multiple of 4.
pub const fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// The header of one entry: `namesize` counts the name's terminating NUL.
/// uid, gid, mtime, devices and the check field are 0; nlink is 1.
pub fn header(ino: u32, mode: u32, filesize: u32, namesize: u32) -> [u8; HEADER_LEN] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut h = [b'0'; HEADER_LEN];
    h[..MAGIC.len()].copy_from_slice(MAGIC);
    for (i, v) in [
        (F_INO, ino),
        (F_MODE, mode),
        (F_NLINK, 1),
        (F_FILESIZE, filesize),
        (F_NAMESIZE, namesize),
    ] {
        let at = field_offset(i);
        for d in 0..8 {
            h[at + d] = DIGITS[(v >> (28 - 4 * d)) as usize & 0xf];
        }
    }
    h
}

/// One member of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Without the terminating NUL.
    pub name: &'a [u8],
    pub data: &'a [u8],
}

/// Why an archive could not be read; `offset` is where the bad entry starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// No `070701` where a header should begin.
    BadMagic { offset: usize },
    /// A size field (filesize or namesize) is not 8 hex digits.
    BadField { offset: usize, field: usize },
    /// The header, name or data runs past the end of the archive.
    Truncated { offset: usize },
    /// The name is empty (namesize 0) or not NUL-terminated.
    BadName { offset: usize },
    /// The archive ended without a TRAILER!!! entry.
    NoTrailer { offset: usize },
}

/// The entries of `archive`, in order, up to the trailer. After an error the
/// iterator yields nothing more.
pub fn entries(archive: &[u8]) -> Entries<'_> {
    Entries {
        archive,
        offset: 0,
        done: false,
    }
}

/// The data of the first entry named `name` (without NUL), if the archive,
/// read up to that entry, is well formed.
pub fn find<'a>(archive: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    for e in entries(archive) {
        match e {
            Ok(e) if e.name == name => return Some(e.data),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

pub struct Entries<'a> {
    archive: &'a [u8],
    offset: usize,
    done: bool,
}

/// The value of 8 hex digits (either case).
fn hex8(f: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in f {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u32;
    }
    Some(v)
}

impl<'a> Entries<'a> {
    fn read(&mut self) -> Result<Option<Entry<'a>>, Error> {
        let (a, offset) = (self.archive, self.offset);
        let truncated = Error::Truncated { offset };
        if offset >= a.len() {
            return Err(Error::NoTrailer { offset });
        }
        let h = a
            .get(offset..offset.checked_add(HEADER_LEN).ok_or(truncated)?)
            .ok_or(truncated)?;
        if &h[..MAGIC.len()] != MAGIC {
            return Err(Error::BadMagic { offset });
        }
        // Only the two sizes are read: the kernel runs this in emulated (PVM)
        // or single-stepped ring 0, where every instruction counts.
        let field = |i: usize| {
            let at = field_offset(i);
            hex8(&h[at..at + 8]).ok_or(Error::BadField { offset, field: i })
        };
        let filesize = field(F_FILESIZE)? as usize;
        let namesize = field(F_NAMESIZE)? as usize;
        let name_start = offset + HEADER_LEN;
        let name_end = name_start.checked_add(namesize).ok_or(truncated)?;
        let name = a.get(name_start..name_end).ok_or(truncated)?;
        let Some((&0, name)) = name.split_last() else {
            return Err(Error::BadName { offset });
        };
        if name == TRAILER {
            return Ok(None);
        }
        let data_start = name_end.checked_add(pad4(name_end)).ok_or(truncated)?;
        let data_end = data_start.checked_add(filesize).ok_or(truncated)?;
        let data = a.get(data_start..data_end).ok_or(truncated)?;
        // The next header starts after the padding (which may be missing at the very end).
        self.offset = data_end.saturating_add(pad4(data_end));
        Ok(Some(Entry { name, data }))
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.read() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn push(out: &mut Vec<u8>, ino: u32, name: &[u8], data: &[u8]) {
        out.extend_from_slice(&header(ino, MODE_EXECUTABLE, data.len() as u32, name.len() as u32 + 1));
        out.extend_from_slice(name);
        out.push(0);
        out.resize(out.len() + pad4(out.len()), 0);
        out.extend_from_slice(data);
        out.resize(out.len() + pad4(out.len()), 0);
    }

    fn archive(files: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut a = Vec::new();
        for (i, (n, d)) in files.iter().enumerate() {
            push(&mut a, i as u32 + 1, n, d);
        }
        push(&mut a, 0, TRAILER, b"");
        a
    }

    #[test]
    fn header_fields_are_hex_at_their_offsets() {
        let h = header(1, MODE_EXECUTABLE, 3, 6);
        assert_eq!(&h[..6], b"070701");
        assert_eq!(&h[field_offset(F_INO)..][..8], b"00000001");
        assert_eq!(&h[field_offset(F_MODE)..][..8], b"000081ed");
        assert_eq!(&h[field_offset(F_FILESIZE)..][..8], b"00000003");
        assert_eq!(&h[field_offset(F_NAMESIZE)..][..8], b"00000006");
        assert_eq!(field_offset(F_FILESIZE), 54);
        assert_eq!(field_offset(F_NAMESIZE), 94);
        assert_eq!(HEADER_LEN, 110);
    }

    #[test]
    fn reads_back_what_was_written() {
        let a = archive(&[(b"init", b"\x7fELF..."), (b"", b""), (b"hello", b"abc")]);
        let got: Vec<_> = entries(&a).map(|e| e.unwrap()).map(|e| (e.name, e.data)).collect();
        assert_eq!(
            got,
            [(&b"init"[..], &b"\x7fELF..."[..]), (b"", b""), (b"hello", b"abc")]
        );
        assert_eq!(find(&a, b"hello"), Some(&b"abc"[..]));
        assert_eq!(find(&a, b"nope"), None);
        assert_eq!(find(&a, TRAILER), None);
    }

    #[test]
    fn first_of_two_names_wins_and_the_trailer_ends_it() {
        let mut a = archive(&[(b"x", b"1"), (b"x", b"2")]);
        push(&mut a, 9, b"after", b"late");
        assert_eq!(find(&a, b"x"), Some(&b"1"[..]));
        assert_eq!(find(&a, b"after"), None);
    }

    #[test]
    fn malformed_archives_are_errors_not_panics() {
        let a = archive(&[(b"init", b"data")]);
        assert_eq!(entries(b"").next(), Some(Err(Error::NoTrailer { offset: 0 })));
        assert_eq!(entries(&a[..50]).next(), Some(Err(Error::Truncated { offset: 0 })));
        assert_eq!(entries(&a[..117]).next(), Some(Err(Error::Truncated { offset: 0 })));
        let mut bad = a.clone();
        bad[0] = b'1';
        assert_eq!(entries(&bad).next(), Some(Err(Error::BadMagic { offset: 0 })));
        let mut bad = a.clone();
        bad[field_offset(F_FILESIZE)] = b'g';
        assert_eq!(
            entries(&bad).next(),
            Some(Err(Error::BadField {
                offset: 0,
                field: F_FILESIZE
            }))
        );
        // A file size reaching past the end (here 4 GiB - 1).
        let mut bad = a.clone();
        bad[field_offset(F_FILESIZE)..][..8].copy_from_slice(b"ffffffff");
        assert_eq!(entries(&bad).next(), Some(Err(Error::Truncated { offset: 0 })));
        // namesize 0, and a name without its NUL.
        let mut bad = a.clone();
        bad[field_offset(F_NAMESIZE)..][..8].copy_from_slice(b"00000000");
        assert_eq!(entries(&bad).next(), Some(Err(Error::BadName { offset: 0 })));
        let mut bad = a.clone();
        bad[field_offset(F_NAMESIZE)..][..8].copy_from_slice(b"00000004");
        assert_eq!(entries(&bad).next(), Some(Err(Error::BadName { offset: 0 })));
        // Without its trailer.
        let cut = a.len() - (HEADER_LEN + 14); // 110 + "TRAILER!!!\0" + 3 padding
        let got: Vec<_> = entries(&a[..cut]).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], Err(Error::NoTrailer { offset: cut }));
        assert_eq!(find(&a[..cut], b"init"), Some(&b"data"[..]));
    }

    #[test]
    fn upper_case_hex_is_accepted() {
        let mut a = archive(&[(b"f", &[7u8; 0xab])]);
        a[field_offset(F_FILESIZE)..][..8].copy_from_slice(b"000000AB");
        assert_eq!(find(&a, b"f").map(<[u8]>::len), Some(0xab));
    }

    #[test]
    fn padding_is_to_four_bytes() {
        assert_eq!([0, 1, 2, 3, 4, 5, 110, 111].map(pad4), [0, 3, 2, 1, 0, 3, 2, 1]);
    }

    #[test]
    fn every_name_and_data_length_reads_back() {
        // Headers are 110 bytes, so every padding case of name and data
        // comes up over these lengths.
        let names: [&[u8]; 5] = [b"a", b"ab", b"abc", b"abcd", b"abcde"];
        let data: Vec<Vec<u8>> = (0..9).map(|n| vec![n as u8; n]).collect();
        for n in names {
            for d in &data {
                let a = archive(&[(n, d), (b"next", b"x")]);
                assert_eq!(a.len() % 4, 0);
                assert_eq!(find(&a, n), Some(&d[..]), "name {n:?}, {} data bytes", d.len());
                assert_eq!(find(&a, b"next"), Some(&b"x"[..]));
            }
        }
    }
}
