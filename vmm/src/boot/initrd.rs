//! The boot archive: a cpio "newc" archive, the format of Linux's initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst). The guest
//! kernel's `spawn` finds programs in it by name. The format itself (header,
//! padding, the reader the kernel uses) is `vmm_abi::cpio`.

use vmm_abi::cpio::{header, pad4, MODE_EXECUTABLE, TRAILER};

/// Why a boot archive cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArchiveError {
    #[error("boot archive: the name {0:?} contains a NUL byte")]
    NulInName(String),
    #[error("boot archive: the name {0:.40}... is too long")]
    NameTooLong(String),
    #[error("boot archive: {name} is {len} bytes; a cpio newc archive holds files under 4 GiB")]
    FileTooBig { name: String, len: usize },
    #[error("boot archive: a program cannot be named {0}: that name ends a cpio archive; rename the file")]
    TrailerName(String),
    #[error("boot archive: too many files")]
    TooManyFiles,
}

/// Append one entry to a newc archive.
fn push_entry(out: &mut Vec<u8>, ino: u32, name: &[u8], mode: u32, data: &[u8]) -> Result<(), ArchiveError> {
    let shown = || String::from_utf8_lossy(name).into_owned();
    if name.contains(&0) {
        return Err(ArchiveError::NulInName(shown()));
    }
    let namesize = u32::try_from(name.len() + 1).map_err(|_| ArchiveError::NameTooLong(shown()))?;
    let filesize = u32::try_from(data.len()).map_err(|_| ArchiveError::FileTooBig {
        name: shown(),
        len: data.len(),
    })?;
    out.extend_from_slice(&header(ino, mode, filesize, namesize));
    out.extend_from_slice(name);
    out.push(0);
    out.resize(out.len() + pad4(out.len()), 0);
    out.extend_from_slice(data);
    out.resize(out.len() + pad4(out.len()), 0);
    Ok(())
}

/// An archive of `(name, contents)` executables. A name the format cannot
/// hold (a NUL, or TRAILER!!!, which would end the archive early) is refused.
pub fn build(files: &[(&str, &[u8])]) -> Result<Vec<u8>, ArchiveError> {
    let mut out = Vec::with_capacity(files.iter().map(|(n, d)| 128 + n.len() + d.len()).sum::<usize>() + 128);
    for (i, (name, data)) in files.iter().enumerate() {
        if name.as_bytes() == TRAILER {
            return Err(ArchiveError::TrailerName(name.to_string()));
        }
        let ino = u32::try_from(i + 1).map_err(|_| ArchiveError::TooManyFiles)?;
        push_entry(&mut out, ino, name.as_bytes(), MODE_EXECUTABLE, data)?;
    }
    push_entry(&mut out, 0, TRAILER, 0, &[])?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_abi::cpio;

    #[test]
    fn header_layout_is_newc() {
        let a = build(&[("hello", b"abc")]).unwrap();
        assert_eq!(&a[..6], b"070701");
        // filesize is the 7th field, namesize the 12th.
        assert_eq!(&a[6 + 6 * 8..6 + 7 * 8], b"00000003");
        assert_eq!(&a[6 + 11 * 8..6 + 12 * 8], b"00000006");
        // 110-byte header + "hello\0" = 116, already 4-aligned; then the data.
        assert_eq!(&a[110..116], b"hello\0");
        assert_eq!(&a[116..119], b"abc");
        assert_eq!(a.len() % 4, 0);
    }

    #[test]
    fn ends_with_the_trailer() {
        let a = build(&[]).unwrap();
        assert!(a.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn the_kernels_reader_finds_what_was_written() {
        let a = build(&[("init", b"\x7fELF"), ("x", b""), ("hello", b"abc")]).unwrap();
        assert_eq!(cpio::find(&a, b"hello"), Some(&b"abc"[..]));
        assert_eq!(cpio::find(&a, b"x"), Some(&b""[..]));
        assert_eq!(cpio::entries(&a).count(), 3);
    }

    #[test]
    fn names_the_format_cannot_hold_are_refused() {
        let e = build(&[("TRAILER!!!", b"x")]).unwrap_err();
        assert_eq!(e, ArchiveError::TrailerName("TRAILER!!!".into()));
        assert!(e.to_string().contains("ends a cpio archive"), "{e}");
        let e = build(&[("a\0b", b"x")]).unwrap_err();
        assert!(e.to_string().contains("NUL"), "{e}");
    }
}
