//! The boot archive: a cpio "newc" archive (the format of Linux's initramfs)
//! that the VMM loads next to the kernel, holding the programs `spawn` runs.
//! The format and its reader live in the abi crate (`vmm_abi::cpio`), shared
//! with the VMM that writes the archive.

use crate::sync::BootCell;

static ARCHIVE: BootCell<&'static [u8]> = BootCell::new();

pub fn init(archive: &'static [u8]) {
    ARCHIVE.set(archive);
}

/// The contents of file `name`, if the archive has it.
pub fn find(name: &[u8]) -> Option<&'static [u8]> {
    vmm_abi::cpio::find(ARCHIVE.get()?, name)
}
