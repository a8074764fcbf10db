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
use vmm_abi::layout::user::{MAX_ARG_BYTES, MAX_ARG_STRINGS, STACK_PAGES, STACK_TOP};
use vmm_abi::layout::{phys_to_virt, PAGE_SIZE};

/// A program's arguments as Linux passes them between kernel and user:
/// strings back to back, each ending in its NUL (empty ones included).
#[derive(Clone, Copy)]
pub struct Argv<'a> {
    blob: &'a [u8],
    count: usize,
}

impl<'a> Argv<'a> {
    /// Checks the limits (`MAX_ARG_STRINGS`, `MAX_ARG_BYTES`) and that every
    /// string ends in a NUL.
    pub fn new(blob: &'a [u8]) -> Result<Argv<'a>, ExecError> {
        if blob.len() > MAX_ARG_BYTES || blob.last().is_some_and(|&b| b != 0) {
            return Err(ExecError::TooManyArgs);
        }
        let count = blob.iter().filter(|&&b| b == 0).count();
        if count > MAX_ARG_STRINGS {
            return Err(ExecError::TooManyArgs);
        }
        Ok(Argv { blob, count })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// The strings, without their NULs.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let blob = self.blob;
        let body = &blob[..blob.len().saturating_sub(1)];
        body.split(|&b| b == 0).take(self.count)
    }

    pub fn first(&self) -> Option<&'a [u8]> {
        self.iter().next()
    }
}

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

/// Copy `bytes` to user address `va` of `pml4` through the direct map, a
/// page at a time (one page-table walk per page, not per byte: every ring-0
/// instruction is emulated on PVM).
fn put(pml4: u64, va: u64, bytes: &[u8]) {
    let mut done = 0;
    while done < bytes.len() {
        let at = va + done as u64;
        let n = ((PAGE_SIZE - at % PAGE_SIZE) as usize).min(bytes.len() - done);
        let (phys, _) = paging::translate(pml4, at).expect("stack page mapped");
        // SAFETY: [phys, phys + n) lies in one page mapped by us for this
        // process, reached through the direct map.
        unsafe { core::ptr::copy_nonoverlapping(bytes[done..].as_ptr(), phys_to_virt(phys) as *mut u8, n) };
        done += n;
    }
}

fn put_u64(pml4: u64, va: u64, v: u64) {
    put(pml4, va, &v.to_le_bytes());
}

/// Build the address space for program `name` of the boot archive.
pub fn build(name: &[u8], argv: Argv) -> Result<Image, ExecError> {
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

    // The strings first, at the top, in one copy: the blob is already laid
    // out as the stack wants it (Linux: copy_strings).
    let mut sp = STACK_TOP - argv.blob.len() as u64;
    let strings = sp;
    put(pml4, strings, argv.blob);
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
        (AT_EXECFN, strings),
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
    let mut at = strings;
    for a in argv.iter() {
        push(at);
        at += a.len() as u64 + 1;
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
