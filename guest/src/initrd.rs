//! The boot archive: a cpio "newc" archive (the format of Linux's initramfs)
//! that the VMM loads next to the kernel, holding the programs `spawn` runs.

static mut ARCHIVE: &[u8] = &[];

pub fn init(archive: &'static [u8]) {
    // SAFETY: written once at boot.
    unsafe { ARCHIVE = archive };
}

fn hex(field: &[u8]) -> Option<usize> {
    let mut v = 0usize;
    for &c in field {
        v = v * 16 + (c as char).to_digit(16)? as usize;
    }
    Some(v)
}

/// The contents of file `name`, if the archive has it.
pub fn find(name: &[u8]) -> Option<&'static [u8]> {
    // SAFETY: set once at boot, read-only afterwards.
    let a: &'static [u8] = unsafe { ARCHIVE };
    let mut off = 0;
    while off + 110 <= a.len() {
        let h = &a[off..off + 110];
        if &h[..6] != b"070701" {
            return None;
        }
        let filesize = hex(&h[54..62])?;
        let namesize = hex(&h[94..102])?;
        let name_start = off + 110;
        let entry_name = a.get(name_start..name_start + namesize.checked_sub(1)?)?;
        let data_start = (name_start + namesize).next_multiple_of(4);
        if entry_name == b"TRAILER!!!" {
            return None;
        }
        let data = a.get(data_start..data_start + filesize)?;
        if entry_name == name {
            return Some(data);
        }
        off = (data_start + filesize).next_multiple_of(4);
    }
    None
}
