//! Starting a program: a new address space, its ELF segments, and the
//! initial stack laid out as Linux does (fs/binfmt_elf.c: create_elf_tables):
//!
//! ```text
//!   rsp ->  argc
//!           argv[0..argc], NULL
//!           envp[...], NULL
//!           auxv (type, value) pairs, AT_NULL
//!           ... AT_RANDOM bytes, argument strings ...   <- stack top
//! ```

use crate::{elf, initrd, paging};
use vmm_abi::layout::{phys_to_virt, PAGE_SIZE};

/// Top of every process's stack (the last user page is left unmapped).
pub const STACK_TOP: u64 = 0x7fff_ffff_f000;
/// Pages mapped for the stack up front.
pub const STACK_PAGES: u64 = 16;
/// Where anonymous mmap() regions start.
pub const MMAP_BASE: u64 = 0x7f00_0000_0000;

const AT_NULL: u64 = 0;
const AT_IGNORE: u64 = 1;
const AT_PHDR: u64 = 3;
const AT_PHENT: u64 = 4;
const AT_PHNUM: u64 = 5;
const AT_PAGESZ: u64 = 6;
const AT_ENTRY: u64 = 9;
const AT_UID: u64 = 11;
const AT_EUID: u64 = 12;
const AT_GID: u64 = 13;
const AT_EGID: u64 = 14;
const AT_HWCAP: u64 = 16;
const AT_CLKTCK: u64 = 17;
const AT_SECURE: u64 = 23;
const AT_RANDOM: u64 = 25;
const AT_EXECFN: u64 = 31;
const AT_SYSINFO_EHDR: u64 = 33;

pub struct Image {
    pub pml4: u64,
    pub entry: u64,
    pub rsp: u64,
    pub brk: u64,
}

#[derive(Debug)]
pub enum ExecError {
    NotFound,
    Elf(elf::ElfError),
    TooManyArgs,
    NoMemory,
}

impl ExecError {
    pub fn describe(&self) -> &'static str {
        match self {
            ExecError::NotFound => "no such program in the boot archive",
            ExecError::Elf(e) => e.describe(),
            ExecError::TooManyArgs => "arguments too long",
            ExecError::NoMemory => "out of memory",
        }
    }
}

/// Copy `bytes` to user address `va` of `pml4` through the direct map.
fn put(pml4: u64, va: u64, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        let (phys, _) = paging::translate(pml4, va + i as u64).expect("stack page mapped");
        // SAFETY: the page was mapped by us for this process.
        unsafe { *(phys_to_virt(phys) as *mut u8) = *b };
    }
}

fn put_u64(pml4: u64, va: u64, v: u64) {
    put(pml4, va, &v.to_le_bytes());
}

/// Build the address space for program `name` of the boot archive.
pub fn build(name: &[u8], argv: &[&[u8]]) -> Result<Image, ExecError> {
    let image = initrd::find(name).ok_or(ExecError::NotFound)?;
    let pml4 = paging::new_address_space().ok_or(ExecError::NoMemory)?;
    let fail = |e| {
        paging::free_address_space(pml4);
        e
    };
    let loaded = elf::load(pml4, image).map_err(|e| fail(ExecError::Elf(e)))?;
    for i in 1..=STACK_PAGES {
        paging::map_user_page(pml4, STACK_TOP - i * PAGE_SIZE, true, false).ok_or_else(|| fail(ExecError::NoMemory))?;
    }

    // Strings first, at the top.
    let strings: usize = argv.iter().map(|a| a.len() + 1).sum();
    if strings > 2048 || argv.len() > 64 {
        return Err(fail(ExecError::TooManyArgs));
    }
    let mut sp = STACK_TOP;
    let mut argv_ptrs = [0u64; 64];
    for (i, a) in argv.iter().enumerate().rev() {
        sp -= a.len() as u64 + 1;
        put(pml4, sp, a);
        put(pml4, sp + a.len() as u64, &[0]);
        argv_ptrs[i] = sp;
    }
    sp -= 16;
    let random = sp;
    let seed = crate::cpu::rdtsc();
    put_u64(pml4, random, seed);
    put_u64(pml4, random + 8, seed.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15);
    sp &= !15;

    let vdso = crate::vdso::map_into(pml4);
    let auxv = [
        // The vDSO, when there is one (AT_IGNORE otherwise).
        if let Some(base) = vdso {
            (AT_SYSINFO_EHDR, base)
        } else {
            (AT_IGNORE, 0)
        },
        (AT_PHDR, loaded.phdr),
        (AT_PHENT, 56),
        (AT_PHNUM, loaded.phnum),
        (AT_PAGESZ, PAGE_SIZE),
        (AT_ENTRY, loaded.entry),
        (AT_UID, 0),
        (AT_EUID, 0),
        (AT_GID, 0),
        (AT_EGID, 0),
        (AT_HWCAP, 0),
        (AT_CLKTCK, 100),
        (AT_SECURE, 0),
        (AT_RANDOM, random),
        (AT_EXECFN, argv_ptrs[0]),
        (AT_NULL, 0),
    ];
    let words = 1 + (argv.len() + 1) + 1 + 2 * auxv.len();
    sp -= 8 * words as u64;
    sp &= !15;
    let mut w = sp;
    let mut push = |v: u64| {
        put_u64(pml4, w, v);
        w += 8;
    };
    push(argv.len() as u64);
    for p in &argv_ptrs[..argv.len()] {
        push(*p);
    }
    push(0); // end of argv
    push(0); // empty environment
    for (k, v) in auxv {
        push(k);
        push(v);
    }
    Ok(Image {
        pml4,
        entry: loaded.entry,
        rsp: sp,
        brk: loaded.brk,
    })
}
