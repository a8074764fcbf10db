//! The boot archive: a cpio "newc" archive (the format of Linux's initramfs)
//! that the VMM loads next to the kernel, holding the programs `spawn` runs.
//! The format and its reader live in the abi crate (`vmm_abi::cpio`), shared
//! with the VMM that writes the archive.

static mut ARCHIVE: &[u8] = &[];

pub fn init(archive: &'static [u8]) {
    // SAFETY: written once at boot.
    unsafe { ARCHIVE = archive };
}

/// The contents of file `name`, if the archive has it.
pub fn find(name: &[u8]) -> Option<&'static [u8]> {
    // SAFETY: set once at boot, read-only afterwards.
    let a: &'static [u8] = unsafe { ARCHIVE };
    vmm_abi::cpio::find(a, name)
}
