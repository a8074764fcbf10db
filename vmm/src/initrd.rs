//! The boot archive: a cpio "newc" archive, the format of Linux's initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst). The guest
//! kernel's `spawn` finds programs in it by name.

/// Append one regular file to a newc archive.
fn push_entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        1, // nlink
        0, // mtime
        data.len() as u32,
        0,
        0, // dev major/minor
        0,
        0, // rdev major/minor
        name.len() as u32 + 1,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// An archive of `(name, contents)` executables.
pub fn build(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (name, data)) in files.iter().enumerate() {
        push_entry(&mut out, i as u32 + 1, name, 0o100_755, data);
    }
    push_entry(&mut out, 0, "TRAILER!!!", 0, &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_newc() {
        let a = build(&[("hello", b"abc")]);
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
        let a = build(&[]);
        assert!(a.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}
