//! Physical page allocator (Linux: mm/page_alloc.c, in miniature).
//!
//! Pages come from the usable region of the boot memory map. Fresh pages are
//! already zero (the VMM's guest memory starts zeroed), so only recycled
//! pages are cleared — ring 0 is emulated on PVM and zeroing costs there.

use vmm_abi::boot_info::{BootInfo, RegionKind};
use vmm_abi::layout::{phys_to_virt, PAGE_SIZE};

struct Allocator {
    /// Next never-used page.
    next: u64,
    end: u64,
    /// Head of the free list (physical address, 0 = empty); each free page
    /// holds the address of the next in its first 8 bytes.
    free: u64,
    /// Pages on the free list.
    free_count: u64,
    pub used: u64,
}

static mut ALLOC: Allocator = Allocator {
    next: 0,
    end: 0,
    free: 0,
    free_count: 0,
    used: 0,
};

#[allow(static_mut_refs)]
fn alloc() -> &'static mut Allocator {
    // SAFETY: one CPU, no interrupts: the kernel never runs two paths at once.
    unsafe { &mut ALLOC }
}

pub fn init(info: &BootInfo) {
    let a = alloc();
    for r in &info.mem_map[..info.mem_map_len as usize] {
        if r.kind == RegionKind::Usable as u32 && r.len > a.end - a.next {
            a.next = r.start.next_multiple_of(PAGE_SIZE);
            a.end = r.start + r.len;
        }
    }
}

/// A zeroed page, or None when memory is exhausted.
pub fn alloc_page() -> Option<u64> {
    let a = alloc();
    if a.free != 0 {
        a.used += 1;
        a.free_count -= 1;
        let page = a.free;
        // SAFETY: free pages are ours, reached through the direct map.
        unsafe {
            a.free = *(phys_to_virt(page) as *const u64);
            core::arch::asm!("rep stosq", inout("rcx") PAGE_SIZE / 8 => _,
                inout("rdi") phys_to_virt(page) => _, in("rax") 0u64, options(nostack));
        }
        return Some(page);
    }
    alloc_fresh(1)
}

/// `n` physically contiguous zeroed pages (never recycled ones).
pub fn alloc_fresh(n: u64) -> Option<u64> {
    let a = alloc();
    if a.next + n * PAGE_SIZE > a.end {
        return None;
    }
    let page = a.next;
    a.next += n * PAGE_SIZE;
    a.used += n;
    Some(page)
}

pub fn free_page(page: u64) {
    let a = alloc();
    a.used -= 1;
    // SAFETY: the caller gives up the page; we store the list link in it.
    unsafe { *(phys_to_virt(page) as *mut u64) = a.free };
    a.free = page;
    a.free_count += 1;
}

/// Pages that can still be allocated.
pub fn free_pages() -> u64 {
    let a = alloc();
    (a.end - a.next) / PAGE_SIZE + a.free_count
}
