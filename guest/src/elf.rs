//! Loading a static ELF executable into a fresh address space (Linux:
//! fs/binfmt_elf.c, for the static, non-PIE case only). What is accepted is
//! the boot contract's (`vmm_abi::elf`, host-tested, and run by `vmm` before
//! booting); this file maps what it accepted.

use crate::paging;
use vmm_abi::elf::{self, Segment};
use vmm_abi::layout::{phys_to_virt, PAGE_SIZE};

#[derive(Debug)]
pub enum ElfError {
    Invalid(elf::ElfError),
    NoMemory,
}

impl ElfError {
    pub fn describe(&self) -> &'static str {
        match self {
            ElfError::Invalid(e) => e.describe(),
            ElfError::NoMemory => "out of memory",
        }
    }
}

/// What the loader learned, for the initial stack's auxiliary vector.
pub struct Loaded {
    pub entry: u64,
    pub phdr: u64,
    pub phnum: u64,
    /// First page above the highest segment: where brk starts.
    pub brk: u64,
}

pub fn load(pml4: u64, image: &[u8]) -> Result<Loaded, ElfError> {
    let program = elf::parse(image).map_err(ElfError::Invalid)?;
    for s in program.segments() {
        load_segment(pml4, program.file_bytes(&s), &s)?;
    }
    Ok(Loaded {
        entry: program.entry,
        phdr: program.phdr_vaddr(),
        phnum: program.phnum as u64,
        brk: program.brk(),
    })
}

/// Map the segment's pages and copy its file bytes in through the direct map
/// (the rest of each page stays zero: that is the .bss).
fn load_segment(pml4: u64, bytes: &[u8], s: &Segment) -> Result<(), ElfError> {
    let mut page = s.vaddr & !(PAGE_SIZE - 1);
    while page < s.end() {
        let phys = paging::map_user_page(pml4, page, s.writable(), s.executable()).ok_or(ElfError::NoMemory)?;
        // The part of [vaddr, vaddr + filesz) that falls in this page.
        let lo = page.max(s.vaddr);
        let hi = (page + PAGE_SIZE).min(s.vaddr + s.filesz);
        if lo < hi {
            let src = &bytes[(lo - s.vaddr) as usize..(hi - s.vaddr) as usize];
            let dst = phys_to_virt(phys + (lo - page)) as *mut u8;
            // SAFETY: dst is inside the page just mapped, reached through the direct map.
            unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        }
        page += PAGE_SIZE;
    }
    Ok(())
}
