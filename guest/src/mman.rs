//! Process memory: brk and anonymous mmap (Linux: mm/mmap.c).
//! Pages are mapped when asked for (no demand paging: a fault on an
//! unmapped user page kills the process).

use crate::exec::{MMAP_BASE, STACK_PAGES, STACK_TOP};
use crate::paging;
use crate::process::current;
use vmm_abi::layout::PAGE_SIZE;

const ENOMEM: i64 = 12;
const EINVAL: i64 = 22;
const ENODEV: i64 = 19;
const PROT_WRITE: u64 = 2;
const PROT_EXEC: u64 = 4;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_FIXED: u64 = 0x10;

/// Highest brk: leave room below the mmap area.
const BRK_MAX: u64 = MMAP_BASE - (1 << 30);

fn map_range(pml4: u64, start: u64, end: u64, writable: bool, exec: bool) -> bool {
    let mut va = start;
    while va < end {
        if paging::map_user_page(pml4, va, writable, exec).is_none() {
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
    if new_end > old_end && !map_range(p.pml4, old_end, new_end, true, false) {
        return p.brk as i64;
    }
    if new_end < old_end {
        paging::unmap_user_range(p.pml4, new_end, old_end);
    }
    p.brk = addr;
    addr as i64
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
    let start = if flags & MAP_FIXED != 0 {
        if !addr.is_multiple_of(PAGE_SIZE)
            || addr
                .checked_add(len)
                .is_none_or(|e| e > STACK_TOP - STACK_PAGES * PAGE_SIZE)
        {
            return -EINVAL;
        }
        addr
    } else {
        let s = p.mmap_next;
        p.mmap_next += len;
        s
    };
    if !map_range(
        p.pml4,
        start,
        start + len,
        prot & PROT_WRITE != 0 || prot == 0,
        prot & PROT_EXEC != 0,
    ) {
        return -ENOMEM;
    }
    start as i64
}

pub extern "C" fn sys_munmap(addr: u64, len: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    if !addr.is_multiple_of(PAGE_SIZE) || addr.checked_add(len).is_none_or(|e| e > STACK_TOP) {
        return -EINVAL;
    }
    paging::unmap_user_range(current().pml4, addr, (addr + len).next_multiple_of(PAGE_SIZE));
    0
}

/// Accepted and ignored: pages keep the permissions they were mapped with.
pub extern "C" fn sys_mprotect(_: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    0
}
