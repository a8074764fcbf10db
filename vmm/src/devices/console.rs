//! The console's write port (`vmm_abi::ports::CONSOLE_WRITE`): the guest
//! hands over a whole buffer in one VM exit instead of one `out` per byte to
//! the 16550.
//!
//! The guest names its buffer by a descriptor in its memory. For a user
//! buffer the VMM walks the process's page tables itself, as the CPU would
//! for a ring-3 load — every level present and user-accessible, the address
//! in the lower half — so the kernel need not copy the bytes in ring 0
//! (emulated on PVM, ~1.1 µs a byte). Nothing the guest writes is trusted:
//! a descriptor outside memory is ignored, the length is capped per exit, and
//! the walk stops at the first byte the VMM may not read; `done` then says
//! how far it got, as copy_from_user's fault fixup does in the kernel.

use crate::arch::paging::{index, PTE_ADDR, PTE_P, PTE_PS, PTE_US};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_abi::layout::{PAGE_SIZE, USER_END};
use vmm_abi::ports::{ConsoleWrite, CONSOLE_WRITE_FAULT, CONSOLE_WRITE_MAX, CONSOLE_WRITE_OK};

/// The descriptor at guest-physical `desc`, if it lies wholly in guest memory.
pub fn read_descriptor(mem: &GuestMemoryMmap, desc: u64) -> Option<ConsoleWrite> {
    let mut b = [0u8; ConsoleWrite::SIZE];
    mem.read_slice(&mut b, GuestAddress(desc)).ok()?;
    let f = |i: usize| u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().unwrap());
    Some(ConsoleWrite {
        addr: f(0),
        len: f(1),
        cr3: f(2),
        done: f(3),
        status: f(4),
    })
}

/// The guest-physical address of user virtual `va` through the page tables
/// at `cr3`, if ring 3 could read it: in the lower half, and every level of
/// the walk present and user-accessible (U/S). Tables outside guest memory
/// end the walk, as a not-present entry does.
pub fn user_phys(mem: &GuestMemoryMmap, cr3: u64, va: u64) -> Option<u64> {
    if va >= USER_END {
        return None;
    }
    let mut table = cr3 & PTE_ADDR;
    for level in (1..=4u32).rev() {
        let entry = mem
            .read_obj::<u64>(GuestAddress(table + 8 * index(va, level) as u64))
            .ok()?;
        if entry & (PTE_P | PTE_US) != PTE_P | PTE_US {
            return None;
        }
        if level == 1 || (level <= 3 && entry & PTE_PS != 0) {
            let mask = (1u64 << (12 + 9 * (level as u64 - 1))) - 1;
            return Some((entry & PTE_ADDR & !mask) | (va & mask));
        }
        table = entry & PTE_ADDR;
    }
    None
}

/// Take the bytes `d` describes into `buf` (cleared first; at most
/// `CONSOLE_WRITE_MAX`), a page at a time, stopping at the first page the
/// guest's own rights would not let ring 3 read (user buffer) or that lies
/// outside guest memory (physical one). Returns `(done, status)`:
/// `done == buf.len()`.
pub fn take(mem: &GuestMemoryMmap, d: &ConsoleWrite, buf: &mut Vec<u8>) -> (u64, u64) {
    buf.clear();
    let len = d.len.min(CONSOLE_WRITE_MAX);
    let mut status = CONSOLE_WRITE_OK;
    while (buf.len() as u64) < len {
        let done = buf.len() as u64;
        let Some(va) = d.addr.checked_add(done) else {
            status = CONSOLE_WRITE_FAULT;
            break;
        };
        let phys = if d.cr3 == 0 {
            Some(va)
        } else {
            user_phys(mem, d.cr3, va)
        };
        let Some(phys) = phys else {
            status = CONSOLE_WRITE_FAULT;
            break;
        };
        // To the end of this 4 KiB page: the next one has its own rights.
        let n = (PAGE_SIZE - (va & (PAGE_SIZE - 1))).min(len - done) as usize;
        let start = buf.len();
        buf.resize(start + n, 0);
        if mem.read_slice(&mut buf[start..], GuestAddress(phys)).is_err() {
            buf.truncate(start);
            status = CONSOLE_WRITE_FAULT;
            break;
        }
    }
    (buf.len() as u64, status)
}

/// One `out` to the port: the descriptor at guest-physical `desc` (the
/// port's value). The bytes taken are left in `buf`, and `done`/`status`
/// are written back. False if there is no descriptor there (nothing taken,
/// nothing written).
pub fn handle(mem: &GuestMemoryMmap, desc: u64, buf: &mut Vec<u8>) -> bool {
    let Some(d) = read_descriptor(mem, desc) else {
        buf.clear();
        return false;
    };
    let (done, status) = take(mem, &d, buf);
    // The descriptor was readable, so these writes are in memory too.
    let _ = mem.write_obj(done, GuestAddress(desc + ConsoleWrite::DONE_OFFSET as u64));
    let _ = mem.write_obj(status, GuestAddress(desc + ConsoleWrite::STATUS_OFFSET as u64));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::paging::{PageTableBuilder, PTE_RW};
    use vmm_abi::ports::CONSOLE_WRITE_PENDING;

    const MEM: u64 = 8 << 20;
    /// Where the test page tables live, and their PML4.
    const PT: u64 = 0x10_0000;
    const DESC: u64 = 0x1000;
    /// A user page and its physical frame; the page after it is a
    /// supervisor-only one, the one after that is unmapped.
    const UVA: u64 = 0x40_0000;
    const UPHYS: u64 = 0x30_0000;
    const SPHYS: u64 = UPHYS + PAGE_SIZE;

    fn setup() -> (GuestMemoryMmap, u64) {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap();
        let mut pt = PageTableBuilder::new(&mem, PT, PT + 0x10_0000).unwrap();
        pt.map_4k(UVA, UPHYS, PTE_RW | PTE_US).unwrap();
        pt.map_4k(UVA + PAGE_SIZE, SPHYS, PTE_RW).unwrap();
        let pml4 = pt.pml4;
        // The builder makes intermediate entries supervisor-only; a process's
        // tables (guest/src/paging.rs) have U/S on them, as Linux's do.
        for s in &crate::arch::paging::walk(&mem, pml4, UVA).0[..3] {
            mem.write_obj(s.entry | PTE_US, GuestAddress(s.entry_addr)).unwrap();
        }
        let page: Vec<u8> = (0..PAGE_SIZE).map(|i| b'a' + (i % 26) as u8).collect();
        mem.write_slice(&page, GuestAddress(UPHYS)).unwrap();
        mem.write_slice(&[b'S'; PAGE_SIZE as usize], GuestAddress(SPHYS))
            .unwrap();
        (mem, pml4)
    }

    fn put(mem: &GuestMemoryMmap, at: u64, d: ConsoleWrite) {
        let words = [d.addr, d.len, d.cr3, d.done, d.status];
        let b: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        mem.write_slice(&b, GuestAddress(at)).unwrap();
    }

    /// Run one request through the port as the run loop does.
    fn request(mem: &GuestMemoryMmap, addr: u64, len: u64, cr3: u64) -> (Vec<u8>, ConsoleWrite) {
        put(
            mem,
            DESC,
            ConsoleWrite {
                addr,
                len,
                cr3,
                done: 0,
                status: CONSOLE_WRITE_PENDING,
            },
        );
        let mut buf = Vec::new();
        assert!(handle(mem, DESC, &mut buf));
        let d = read_descriptor(mem, DESC).unwrap();
        assert_eq!(d.done, buf.len() as u64);
        (buf, d)
    }

    #[test]
    fn a_user_buffer_is_taken_through_the_page_tables() {
        let (mem, cr3) = setup();
        let (buf, d) = request(&mem, UVA + 3, 10, cr3);
        assert_eq!(buf, b"defghijklm");
        assert_eq!(d.status, CONSOLE_WRITE_OK);
    }

    #[test]
    fn a_user_buffer_running_into_a_supervisor_page_is_cut_there() {
        let (mem, cr3) = setup();
        let (buf, d) = request(&mem, UVA + PAGE_SIZE - 5, 100, cr3);
        let want: Vec<u8> = (PAGE_SIZE - 5..PAGE_SIZE).map(|i| b'a' + (i % 26) as u8).collect();
        assert_eq!(buf, want);
        assert_eq!(d.done, 5);
        assert_eq!(d.status, CONSOLE_WRITE_FAULT);
        assert!(!buf.contains(&b'S'), "supervisor bytes leaked");
    }

    #[test]
    fn unmapped_supervisor_and_kernel_half_addresses_give_nothing() {
        let (mem, cr3) = setup();
        for addr in [
            UVA + PAGE_SIZE,     // supervisor-only
            UVA + 2 * PAGE_SIZE, // not present
            0,
            USER_END,
            vmm_abi::layout::DIRECT_MAP_BASE + UPHYS, // the same bytes via the kernel's map
            u64::MAX - 3,
        ] {
            let (buf, d) = request(&mem, addr, 16, cr3);
            assert!(buf.is_empty(), "{addr:#x}");
            assert_eq!((d.done, d.status), (0, CONSOLE_WRITE_FAULT), "{addr:#x}");
        }
    }

    #[test]
    fn a_supervisor_only_table_above_a_user_leaf_refuses_the_page() {
        let (mem, cr3) = setup();
        let pde = crate::arch::paging::walk(&mem, cr3, UVA).0[2];
        mem.write_obj(pde.entry & !PTE_US, GuestAddress(pde.entry_addr))
            .unwrap();
        let (buf, d) = request(&mem, UVA, 16, cr3);
        assert!(buf.is_empty());
        assert_eq!(d.status, CONSOLE_WRITE_FAULT);
    }

    #[test]
    fn page_tables_outside_memory_end_the_walk() {
        let (mem, _) = setup();
        for cr3 in [MEM, PTE_ADDR, 0xdead_0000_0000] {
            let (buf, d) = request(&mem, UVA, 16, cr3);
            assert!(buf.is_empty());
            assert_eq!(d.status, CONSOLE_WRITE_FAULT);
        }
        // A table entry pointing outside memory.
        let (mem, cr3) = setup();
        let pml4e = cr3 + 8 * index(UVA, 4) as u64;
        mem.write_obj(MEM | PTE_P | PTE_US | PTE_RW, GuestAddress(pml4e))
            .unwrap();
        let (buf, d) = request(&mem, UVA, 16, cr3);
        assert!(buf.is_empty());
        assert_eq!(d.status, CONSOLE_WRITE_FAULT);
    }

    #[test]
    fn a_huge_length_is_capped_per_exit_and_a_wrapping_one_stops() {
        let (mem, _) = setup();
        // Physical: 64 KiB at most per exit, status OK (ask again).
        let (buf, d) = request(&mem, 0, u64::MAX, 0);
        assert_eq!(buf.len() as u64, CONSOLE_WRITE_MAX);
        assert_eq!(d.status, CONSOLE_WRITE_OK);
        // Physical, crossing the end of memory: up to it, then a fault.
        let (buf, d) = request(&mem, MEM - 100, 1000, 0);
        assert_eq!(buf.len(), 100);
        assert_eq!(d.status, CONSOLE_WRITE_FAULT);
        let (buf, d) = request(&mem, u64::MAX - 10, 1000, 0);
        assert!(buf.is_empty());
        assert_eq!(d.status, CONSOLE_WRITE_FAULT);
    }

    #[test]
    fn a_physical_buffer_is_taken_as_is() {
        let (mem, _) = setup();
        let (buf, d) = request(&mem, UPHYS + PAGE_SIZE - 2, 4, 0);
        let want = [
            b'a' + ((PAGE_SIZE - 2) % 26) as u8,
            b'a' + ((PAGE_SIZE - 1) % 26) as u8,
            b'S',
            b'S',
        ];
        assert_eq!(buf, want);
        assert_eq!(d.status, CONSOLE_WRITE_OK);
    }

    #[test]
    fn a_descriptor_outside_memory_is_ignored() {
        let (mem, _) = setup();
        let mut buf = b"old".to_vec();
        for desc in [MEM, MEM - 8, u64::MAX - 3] {
            assert!(!handle(&mem, desc, &mut buf));
            assert!(buf.is_empty());
        }
    }
}
