//! Process memory: brk and anonymous mmap (Linux: mm/mmap.c).
//! Pages are mapped when asked for (no demand paging: a fault on an
//! unmapped user page kills the process). The address-space layout is the
//! boot contract's (`vmm_abi::layout::user`).

use crate::process::{current, current_slot};
use crate::{mm, paging, tlb};
use vmm_abi::errno::{EINVAL, ENODEV, ENOMEM, EPERM};
use vmm_abi::layout::user::{BRK_MAX, MMAP_END, MMAP_MIN_ADDR, STACK_GUARD, STACK_TOP};
use vmm_abi::layout::PAGE_SIZE;

const PROT_WRITE: u64 = 2;
const PROT_EXEC: u64 = 4;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_FIXED: u64 = 0x10;

/// Map fresh pages over `[start, end)`, which must be free. All or nothing:
/// on failure what was mapped is unmapped again.
fn map_range(pml4: u64, start: u64, end: u64, writable: bool, exec: bool) -> bool {
    let mut va = start;
    while va < end {
        if paging::map_user_page(pml4, va, writable, exec).is_none() {
            paging::unmap_user_range(pml4, start, va);
            return false;
        }
        va += PAGE_SIZE;
    }
    true
}

pub extern "C" fn sys_brk(addr: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    let p = current();
    if addr < p.brk_start || addr > BRK_MAX {
        return p.brk as i64;
    }
    let old_end = p.brk.next_multiple_of(PAGE_SIZE);
    let new_end = addr.next_multiple_of(PAGE_SIZE);
    if new_end > old_end {
        // Growing into a mapping of mmap(MAP_FIXED) fails, as on Linux.
        if paging::first_mapped(p.pml4, old_end, new_end).is_some() || !map_range(p.pml4, old_end, new_end, true, false)
        {
            return p.brk as i64;
        }
    }
    if new_end < old_end {
        tlb::shootdown(current_slot());
        paging::unmap_user_range(p.pml4, new_end, old_end);
    }
    p.brk = addr;
    addr as i64
}

/// A free range of `len` bytes in the mmap area, at or above `from`.
fn find_free(pml4: u64, from: u64, len: u64) -> Option<u64> {
    let mut start = from;
    loop {
        let end = start.checked_add(len).filter(|&e| e <= MMAP_END)?;
        match paging::first_mapped(pml4, start, end) {
            None => return Some(start),
            Some(taken) => start = taken + PAGE_SIZE,
        }
    }
}

pub extern "C" fn sys_mmap(addr: u64, len: u64, prot: u64, flags: u64, fd: u64, _off: u64) -> i64 {
    let _ = fd; // ignored for anonymous maps, as Linux does
    if flags & MAP_ANONYMOUS == 0 {
        return -ENODEV; // no files to map
    }
    if len == 0 || len > (1 << 32) {
        return -EINVAL;
    }
    let p = current();
    let len = len.next_multiple_of(PAGE_SIZE);
    // No demand paging: every page is allocated now. A request larger than
    // free memory fails at once instead of filling memory and unmapping it.
    if len / PAGE_SIZE > mm::free_pages() {
        return -ENOMEM;
    }
    let writable = prot & PROT_WRITE != 0 || prot == 0;
    let exec = prot & PROT_EXEC != 0;
    if flags & MAP_FIXED != 0 {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return -EINVAL;
        }
        // Page 0 and its neighbours stay unmapped, so a NULL dereference
        // in ring 3 always faults (Linux: mmap_min_addr, EPERM).
        if addr < MMAP_MIN_ADDR {
            return -EPERM;
        }
        // Not into the stack's guard page, the stack, or the last page.
        if addr.checked_add(len).is_none_or(|e| e > STACK_GUARD) {
            return -EINVAL;
        }
        // MAP_FIXED replaces what was there, in this address space only: a
        // shared page (vDSO, vvar) is unmapped here and a private one takes
        // its place; every other process keeps the shared one.
        tlb::shootdown(current_slot());
        paging::unmap_user_range(p.pml4, addr, addr + len);
        if !map_range(p.pml4, addr, addr + len, writable, exec) {
            return -ENOMEM;
        }
        return addr as i64;
    }
    // The next free range; the cursor moves only when the mapping succeeds.
    let Some(start) = find_free(p.pml4, p.mmap_next, len) else {
        return -ENOMEM;
    };
    if !map_range(p.pml4, start, start + len, writable, exec) {
        return -ENOMEM;
    }
    p.mmap_next = start + len;
    start as i64
}

pub extern "C" fn sys_munmap(addr: u64, len: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    if !addr.is_multiple_of(PAGE_SIZE) || addr.checked_add(len).is_none_or(|e| e > STACK_TOP) {
        return -EINVAL;
    }
    // Other CPUs that ran this process may cache its translations: they
    // leave its address space before the pages go (tlb.rs).
    tlb::shootdown(current_slot());
    paging::unmap_user_range(current().pml4, addr, (addr + len).next_multiple_of(PAGE_SIZE));
    0
}

/// Accepted and ignored: pages keep the permissions they were mapped with.
pub extern "C" fn sys_mprotect(_: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    0
}
