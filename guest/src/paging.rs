//! Process address spaces (Linux: mm/memory.c, arch/x86/mm/pgtable.c).
//!
//! Each process has its own PML4. Entries 256..511 (the kernel half) are
//! copied from the PML4 the VMM built, so every process sees the same
//! supervisor-only kernel mappings; the lower half is the process's own,
//! with U/S = 1 at every level.

use crate::mm;
use core::ops::ControlFlow;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use vmm_abi::layout::{phys_to_virt, PAGE_SIZE, USER_END};

pub const PTE_P: u64 = 1 << 0;
pub const PTE_RW: u64 = 1 << 1;
pub const PTE_US: u64 = 1 << 2;
pub const PTE_NX: u64 = 1 << 63;
/// An available bit: the page is shared (vDSO, vvar) and not the process's
/// to free.
pub const PTE_SHARED: u64 = 1 << 9;
pub const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;

/// The kernel's own PML4 (physical), from boot info; set on CPU 0 at boot.
static KERNEL_PML4: AtomicU64 = AtomicU64::new(0);

pub fn init(kernel_pml4: u64) {
    KERNEL_PML4.store(kernel_pml4, Relaxed);
}

/// The PML4 the VMM built: the kernel half and nothing below.
pub fn kernel_pml4() -> u64 {
    KERNEL_PML4.load(Relaxed)
}

fn table(phys: u64) -> &'static mut [u64; 512] {
    // SAFETY: page-table pages are reached through the direct map.
    unsafe { &mut *(phys_to_virt(phys) as *mut [u64; 512]) }
}

fn index(virt: u64, level: u32) -> usize {
    ((virt >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

/// A new address space: empty user half, shared kernel half.
pub fn new_address_space() -> Option<u64> {
    let pml4 = mm::alloc_page()?;
    let kernel = table(kernel_pml4());
    table(pml4)[256..].copy_from_slice(&kernel[256..]);
    Some(pml4)
}

/// The leaf entry for `virt`, creating tables on the way if `create`.
fn leaf(pml4: u64, virt: u64, create: bool) -> Option<&'static mut u64> {
    let mut t = pml4;
    for level in (2..=4).rev() {
        let e = &mut table(t)[index(virt, level)];
        if *e & PTE_P == 0 {
            if !create {
                return None;
            }
            *e = mm::alloc_page()? | PTE_P | PTE_RW | PTE_US;
        }
        t = *e & PTE_ADDR;
    }
    Some(&mut table(t)[index(virt, 1)])
}

/// Map a fresh zeroed page at `virt` (user, RW unless `!writable`, NX unless `exec`).
/// Returns its physical address; an existing mapping is kept and returned.
pub fn map_user_page(pml4: u64, virt: u64, writable: bool, exec: bool) -> Option<u64> {
    if virt >= USER_END {
        return None;
    }
    let e = leaf(pml4, virt, true)?;
    if *e & PTE_P != 0 {
        // A shared page (vDSO, vvar) is everyone's: it never becomes this
        // process's to write or to fill with code. mmap(MAP_FIXED) unmaps it
        // first and gets a private page instead.
        if *e & PTE_SHARED != 0 {
            return None;
        }
        // Widen permissions if a second segment shares the page.
        if writable {
            *e |= PTE_RW;
        }
        if exec {
            *e &= !PTE_NX;
        }
        return Some(*e & PTE_ADDR);
    }
    let page = mm::alloc_page()?;
    let mut flags = PTE_P | PTE_US;
    if writable {
        flags |= PTE_RW;
    }
    if !exec {
        flags |= PTE_NX;
    }
    *e = page | flags;
    Some(page)
}

/// Map an existing, shared physical page at `virt`, read-only, for ring 3
/// (executable if `exec`). Freeing the address space leaves it alone.
pub fn map_user_shared(pml4: u64, virt: u64, phys: u64, exec: bool) -> Option<()> {
    let e = leaf(pml4, virt, true)?;
    *e = phys | PTE_P | PTE_US | PTE_SHARED | if exec { 0 } else { PTE_NX };
    Some(())
}

/// Physical address and entry flags for a user virtual address.
pub fn translate(pml4: u64, virt: u64) -> Option<(u64, u64)> {
    let e = *leaf(pml4, virt, false)?;
    (e & PTE_P != 0).then_some(((e & PTE_ADDR) | (virt & (PAGE_SIZE - 1)), e & !PTE_ADDR))
}

/// Call `f` on the leaf entry of every mapped page of `[start, end)` (page
/// aligned), lowest first, until it returns `Break`. Absent tables are
/// skipped whole, so even a range spanning the user half costs only what is
/// mapped in it.
fn walk_mapped(pml4: u64, start: u64, end: u64, mut f: impl FnMut(u64, &mut u64) -> ControlFlow<()>) {
    let mut va = start;
    while va < end.min(USER_END) {
        // The span one entry covers at `level`, and whether the walk stops there.
        let mut t = pml4;
        let mut step = PAGE_SIZE;
        for level in (1..=4).rev() {
            let e = &mut table(t)[index(va, level)];
            if *e & PTE_P == 0 {
                step = 1 << (12 + 9 * (level - 1));
                break;
            }
            if level == 1 {
                if f(va, e).is_break() {
                    return;
                }
                break;
            }
            t = *e & PTE_ADDR;
        }
        // Continue at the next boundary of the span skipped.
        va = (va & !(step - 1)) + step;
    }
}

/// Unmap and free every page of `[start, end)` (page aligned) and flush
/// each from this CPU's TLB. Shared pages are unmapped, never freed. The
/// caller has made other CPUs leave the address space first (tlb.rs).
pub fn unmap_user_range(pml4: u64, start: u64, end: u64) {
    let mut freed = mm::FreeBatch::new();
    walk_mapped(pml4, start, end, |va, e| {
        if *e & PTE_SHARED == 0 {
            freed.add(*e & PTE_ADDR);
        }
        *e = 0;
        flush_tlb_page(va);
        ControlFlow::Continue(())
    });
    freed.release();
}

/// The first mapped page of `[start, end)`, if any.
pub fn first_mapped(pml4: u64, start: u64, end: u64) -> Option<u64> {
    let mut found = None;
    walk_mapped(pml4, start, end, |va, _| {
        found = Some(va);
        ControlFlow::Break(())
    });
    found
}

pub fn flush_tlb_page(virt: u64) {
    // SAFETY: invlpg has no side effects beyond the TLB.
    unsafe { core::arch::asm!("invlpg [{}]", in(reg) virt, options(nostack, preserves_flags)) };
}

/// Free every user page and table of an address space, then the PML4. No
/// CPU may have it loaded any more (tlb.rs).
pub fn free_address_space(pml4: u64) {
    fn free_level(t: u64, level: u32, freed: &mut mm::FreeBatch) {
        for e in table(t).iter() {
            if *e & PTE_P != 0 {
                if level > 1 {
                    free_level(*e & PTE_ADDR, level - 1, freed);
                } else if *e & PTE_SHARED == 0 {
                    freed.add(*e & PTE_ADDR);
                }
            }
        }
        freed.add(t);
    }
    let mut freed = mm::FreeBatch::new();
    for i in 0..256 {
        let e = table(pml4)[i];
        if e & PTE_P != 0 {
            free_level(e & PTE_ADDR, 3, &mut freed);
        }
    }
    freed.add(pml4);
    freed.release();
}

/// Switch this CPU to the page tables at `pml4`.
///
/// # Safety
/// `pml4` must be a PML4 whose upper half is the kernel's (the kernel's own,
/// or one from [`new_address_space`] not yet freed): the code doing the
/// switch keeps running through those mappings. The caller keeps the
/// shootdown bookkeeping (tlb.rs) true.
pub unsafe fn load_cr3(pml4: u64) {
    core::arch::asm!("mov cr3, {}", in(reg) pml4, options(nostack, preserves_flags))
}
