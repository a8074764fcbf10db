//! Physical page allocator (Linux: mm/page_alloc.c, in miniature).
//!
//! Pages come from the usable region of the boot memory map. Fresh pages are
//! already zero (the VMM's guest memory starts zeroed), so only recycled
//! pages are cleared — ring 0 is emulated on PVM and zeroing costs there.

use crate::sync::SpinLock;
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

/// Shared by every CPU.
static ALLOC: SpinLock<Allocator> = SpinLock::new(Allocator {
    next: 0,
    end: 0,
    free: 0,
    free_count: 0,
    used: 0,
});

pub fn init(info: &BootInfo) {
    let mut a = ALLOC.lock();
    for r in &info.mem_map[..info.mem_map_len as usize] {
        if r.kind == RegionKind::Usable as u32 && r.len > a.end - a.next {
            a.next = r.start.next_multiple_of(PAGE_SIZE);
            a.end = r.start + r.len;
        }
    }
}

/// A zeroed page, or None when memory is exhausted. A recycled page is
/// cleared after the lock is released: it is ours alone by then.
pub fn alloc_page() -> Option<u64> {
    let mut a = ALLOC.lock();
    if a.free != 0 {
        a.used += 1;
        a.free_count -= 1;
        let page = a.free;
        // SAFETY: free pages are the allocator's, reached through the direct map.
        a.free = unsafe { *(phys_to_virt(page) as *const u64) };
        drop(a);
        // SAFETY: the page was just taken off the free list: nobody else has it.
        unsafe {
            core::arch::asm!("rep stosq", inout("rcx") PAGE_SIZE / 8 => _,
                inout("rdi") phys_to_virt(page) => _, in("rax") 0u64, options(nostack));
        }
        return Some(page);
    }
    take_fresh(&mut a, 1)
}

/// `n` physically contiguous zeroed pages (never recycled ones).
pub fn alloc_fresh(n: u64) -> Option<u64> {
    take_fresh(&mut ALLOC.lock(), n)
}

fn take_fresh(a: &mut Allocator, n: u64) -> Option<u64> {
    if a.next + n * PAGE_SIZE > a.end {
        return None;
    }
    let page = a.next;
    a.next += n * PAGE_SIZE;
    a.used += n;
    Some(page)
}

pub fn free_page(page: u64) {
    let mut batch = FreeBatch::new();
    batch.add(page);
    batch.release();
}

/// Pages being given back together: linked into a list of their own
/// without the lock, then put on the free list in one acquisition (freeing
/// an address space page by page would take the lock once per page, each
/// time a few dozen emulated instructions on PVM).
pub struct FreeBatch {
    head: u64,
    tail: u64,
    count: u64,
}

impl FreeBatch {
    pub const fn new() -> FreeBatch {
        FreeBatch {
            head: 0,
            tail: 0,
            count: 0,
        }
    }

    /// Give up `page` (it is the batch's from now on).
    pub fn add(&mut self, page: u64) {
        // SAFETY: the caller gives up the page; the list link goes in it.
        unsafe { *(phys_to_virt(page) as *mut u64) = self.head };
        if self.head == 0 {
            self.tail = page;
        }
        self.head = page;
        self.count += 1;
    }

    /// Put the batch on the free list.
    pub fn release(self) {
        if self.count == 0 {
            return;
        }
        let mut a = ALLOC.lock();
        // SAFETY: the tail is a page of this batch; it now links to the old list.
        unsafe { *(phys_to_virt(self.tail) as *mut u64) = a.free };
        a.free = self.head;
        a.free_count += self.count;
        a.used -= self.count;
    }
}

/// Pages that can still be allocated.
pub fn free_pages() -> u64 {
    let a = ALLOC.lock();
    (a.end - a.next) / PAGE_SIZE + a.free_count
}
