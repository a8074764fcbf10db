//! Loading a static ELF executable into a fresh address space (Linux:
//! fs/binfmt_elf.c, for the static, non-PIE case only).

use crate::paging;
use vmm_abi::layout::user::MMAP_MIN_ADDR;
use vmm_abi::layout::{phys_to_virt, PAGE_SIZE, USER_END, VDSO_MAX_PAGES, VVAR_USER};

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const PF_X: u32 = 1;
const PF_W: u32 = 2;

#[derive(Debug)]
pub enum ElfError {
    NotElf,
    NotX86_64,
    NotStatic,
    PositionIndependent,
    BadSegment,
    NoMemory,
}

impl ElfError {
    pub fn describe(&self) -> &'static str {
        match self {
            ElfError::NotElf => "not a 64-bit little-endian ELF file",
            ElfError::NotX86_64 => "not an x86-64 program",
            ElfError::NotStatic => "dynamically linked (has PT_INTERP); build it with -static",
            ElfError::PositionIndependent => "position-independent (ET_DYN); link it with -static -no-pie",
            ElfError::BadSegment => {
                "a segment lies outside the file, below 64 KiB, over the vDSO, or outside the user half"
            }
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

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

pub fn load(pml4: u64, image: &[u8]) -> Result<Loaded, ElfError> {
    if image.len() < 64 || &image[..4] != b"\x7fELF" || image[4] != 2 || image[5] != 1 {
        return Err(ElfError::NotElf);
    }
    if u16_at(image, 18) != 62 {
        return Err(ElfError::NotX86_64);
    }
    match u16_at(image, 16) {
        2 => {}
        3 => return Err(ElfError::PositionIndependent),
        _ => return Err(ElfError::NotElf),
    }
    let phoff = u64_at(image, 32) as usize;
    let phentsize = u16_at(image, 54) as usize;
    let phnum = u16_at(image, 56) as usize;
    if phentsize < 56 || phoff.checked_add(phnum * phentsize).is_none_or(|e| e > image.len()) {
        return Err(ElfError::NotElf);
    }
    let mut loaded = Loaded {
        entry: u64_at(image, 24),
        phdr: 0,
        phnum: phnum as u64,
        brk: 0,
    };
    for i in 0..phnum {
        let ph = &image[phoff + i * phentsize..];
        let (ptype, flags) = (u32_at(ph, 0), u32_at(ph, 4));
        let (offset, vaddr, filesz, memsz) = (u64_at(ph, 8), u64_at(ph, 16), u64_at(ph, 32), u64_at(ph, 40));
        match ptype {
            PT_INTERP => return Err(ElfError::NotStatic),
            PT_PHDR => loaded.phdr = vaddr,
            PT_LOAD => {
                let end = vaddr.checked_add(memsz).ok_or(ElfError::BadSegment)?;
                // The shared vvar/vDSO pages are no program's to load over.
                let vdso = VVAR_USER..VVAR_USER + (1 + VDSO_MAX_PAGES) * PAGE_SIZE;
                if end > USER_END
                    || vaddr < MMAP_MIN_ADDR
                    || (vaddr < vdso.end && end > vdso.start)
                    || filesz > memsz
                    || offset.saturating_add(filesz) > image.len() as u64
                {
                    return Err(ElfError::BadSegment);
                }
                if loaded.phdr == 0 && (offset..offset + filesz).contains(&(phoff as u64)) {
                    loaded.phdr = vaddr + (phoff as u64 - offset);
                }
                load_segment(pml4, image, offset, vaddr, filesz, end, flags)?;
                loaded.brk = loaded.brk.max(end.next_multiple_of(PAGE_SIZE));
            }
            _ => {}
        }
    }
    Ok(loaded)
}

/// Map the segment's pages and copy its file bytes in through the direct map
/// (the rest of each page stays zero: that is the .bss).
fn load_segment(
    pml4: u64,
    image: &[u8],
    offset: u64,
    vaddr: u64,
    filesz: u64,
    end: u64,
    flags: u32,
) -> Result<(), ElfError> {
    let mut page = vaddr & !(PAGE_SIZE - 1);
    while page < end {
        let phys = paging::map_user_page(pml4, page, flags & PF_W != 0, flags & PF_X != 0).ok_or(ElfError::NoMemory)?;
        // The part of [vaddr, vaddr + filesz) that falls in this page.
        let lo = page.max(vaddr);
        let hi = (page + PAGE_SIZE).min(vaddr + filesz);
        if lo < hi {
            let src = &image[(offset + lo - vaddr) as usize..(offset + hi - vaddr) as usize];
            let dst = phys_to_virt(phys + (lo - page)) as *mut u8;
            // SAFETY: dst is inside the page just mapped, reached through the direct map.
            unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        }
        page += PAGE_SIZE;
    }
    Ok(())
}
