//! 4-level page tables (Intel SDM Vol. 3A §4.5), built by the VMM in guest
//! memory before the first instruction.
//!
//! The kernel's view, as in Linux: a direct map of all guest RAM at
//! `DIRECT_MAP_BASE` (2 MiB pages, RW, NX) and the kernel image at
//! `KERNEL_BASE + phys` (4 KiB pages, permissions from each ELF segment).
//! Every kernel entry has U/S = 0, so ring 3 can touch none of it, and
//! G = 1, so a CR3 switch between processes keeps it in the TLB.

use crate::error::{Error, Result};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub const PTE_P: u64 = 1 << 0;
pub const PTE_RW: u64 = 1 << 1;
pub const PTE_US: u64 = 1 << 2;
/// Write-through and cache-disable: for device registers.
pub const PTE_PWT: u64 = 1 << 3;
pub const PTE_PCD: u64 = 1 << 4;
pub const PTE_A: u64 = 1 << 5;
pub const PTE_D: u64 = 1 << 6;
/// PS: this PD (PDPT) entry maps a 2 MiB (1 GiB) page.
pub const PTE_PS: u64 = 1 << 7;
pub const PTE_G: u64 = 1 << 8;
pub const PTE_NX: u64 = 1 << 63;
/// Physical-address bits of an entry.
pub const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;

pub const PAGE_4K: u64 = 0x1000;
pub const PAGE_2M: u64 = 0x20_0000;

/// Index into the table at `level` (4 = PML4 .. 1 = PT) for `virt`.
pub fn index(virt: u64, level: u32) -> usize {
    ((virt >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

/// Allocates tables from a fixed area of guest memory and fills them.
pub struct PageTableBuilder<'a> {
    mem: &'a GuestMemoryMmap,
    next: u64,
    end: u64,
    /// Physical address of the PML4 (the value for CR3).
    pub pml4: u64,
}

impl<'a> PageTableBuilder<'a> {
    /// Tables are carved from `[start, end)`, which must be page aligned.
    pub fn new(mem: &'a GuestMemoryMmap, start: u64, end: u64) -> Result<Self> {
        let mut b = PageTableBuilder {
            mem,
            next: start,
            end,
            pml4: 0,
        };
        b.pml4 = b.alloc()?;
        Ok(b)
    }

    /// Bytes of table space used so far, PML4 included.
    pub fn used(&self) -> u64 {
        self.next - self.pml4
    }

    fn alloc(&mut self) -> Result<u64> {
        if self.next + PAGE_4K > self.end {
            return Err(Error::PageTableSpace);
        }
        let page = self.next;
        self.next += PAGE_4K;
        self.mem.write_slice(&[0u8; PAGE_4K as usize], GuestAddress(page))?;
        Ok(page)
    }

    fn read(&self, addr: u64) -> Result<u64> {
        Ok(self.mem.read_obj::<u64>(GuestAddress(addr))?)
    }

    fn write(&self, addr: u64, value: u64) -> Result<()> {
        Ok(self.mem.write_obj(value, GuestAddress(addr))?)
    }

    /// The table that entry `index` of `table` points to, created if absent.
    /// Intermediate entries are P | RW with U/S = 0 (supervisor only) and no
    /// NX: the leaf decides executability.
    fn next_table(&mut self, table: u64, index: usize) -> Result<u64> {
        let slot = table + 8 * index as u64;
        let entry = self.read(slot)?;
        if entry & PTE_P != 0 {
            if entry & PTE_PS != 0 {
                return Err(Error::PageTableConflict);
            }
            return Ok(entry & PTE_ADDR);
        }
        let new = self.alloc()?;
        self.write(slot, new | PTE_P | PTE_RW | PTE_A)?;
        Ok(new)
    }

    /// Map one 4 KiB page. `flags` are the leaf's bits besides the address.
    pub fn map_4k(&mut self, virt: u64, phys: u64, flags: u64) -> Result<()> {
        let pdpt = self.next_table(self.pml4, index(virt, 4))?;
        let pd = self.next_table(pdpt, index(virt, 3))?;
        let pt = self.next_table(pd, index(virt, 2))?;
        self.write(pt + 8 * index(virt, 1) as u64, (phys & PTE_ADDR) | flags | PTE_P)
    }

    /// Map one 2 MiB page.
    pub fn map_2m(&mut self, virt: u64, phys: u64, flags: u64) -> Result<()> {
        let pdpt = self.next_table(self.pml4, index(virt, 4))?;
        let pd = self.next_table(pdpt, index(virt, 3))?;
        self.write(
            pd + 8 * index(virt, 2) as u64,
            (phys & PTE_ADDR) | flags | PTE_P | PTE_PS,
        )
    }

    /// Map `[phys, phys + len)` at `virt`, with 2 MiB pages where aligned.
    pub fn map_range(&mut self, virt: u64, phys: u64, len: u64, flags: u64) -> Result<()> {
        let mut off = 0;
        while off < len {
            let (v, p) = (virt + off, phys + off);
            if v % PAGE_2M == 0 && p % PAGE_2M == 0 && len - off >= PAGE_2M {
                self.map_2m(v, p, flags)?;
                off += PAGE_2M;
            } else {
                self.map_4k(v, p, flags)?;
                off += PAGE_4K;
            }
        }
        Ok(())
    }
}

/// One step of a page walk, for tests and the debugger's `pt` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkStep {
    pub level: u32,
    pub entry_addr: u64,
    pub entry: u64,
}

/// Walk the tables rooted at `pml4` for `virt`: the entries seen and, if
/// mapped, the physical address.
pub fn walk(mem: &GuestMemoryMmap, pml4: u64, virt: u64) -> (Vec<WalkStep>, Option<u64>) {
    let mut steps = Vec::new();
    let mut table = pml4 & PTE_ADDR;
    for level in (1..=4).rev() {
        let entry_addr = table + 8 * index(virt, level) as u64;
        let Ok(entry) = mem.read_obj::<u64>(GuestAddress(entry_addr)) else {
            return (steps, None);
        };
        steps.push(WalkStep {
            level,
            entry_addr,
            entry,
        });
        if entry & PTE_P == 0 {
            return (steps, None);
        }
        let page_bits = 12 + 9 * (level - 1);
        if level == 1 || (level <= 3 && entry & PTE_PS != 0) {
            let mask = (1u64 << page_bits) - 1;
            return (steps, Some((entry & PTE_ADDR & !mask) | (virt & mask)));
        }
        table = entry & PTE_ADDR;
    }
    (steps, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 8 << 20)]).unwrap()
    }

    #[test]
    fn indices_of_the_linux_regions() {
        assert_eq!(index(vmm_abi::layout::DIRECT_MAP_BASE, 4), 273);
        assert_eq!(index(vmm_abi::layout::KERNEL_BASE, 4), 511);
        assert_eq!(index(vmm_abi::layout::KERNEL_BASE, 3), 510);
    }

    #[test]
    fn a_4k_page_walks_to_its_frame() {
        let m = mem();
        let mut b = PageTableBuilder::new(&m, 0x8000, 0x20000).unwrap();
        b.map_4k(0xffff_ffff_8010_0000, 0x10_0000, PTE_G).unwrap();
        let (steps, phys) = walk(&m, b.pml4, 0xffff_ffff_8010_0123);
        assert_eq!(phys, Some(0x10_0123));
        assert_eq!(steps.len(), 4);
        let leaf = steps[3].entry;
        assert_eq!(leaf, 0x10_0000 | PTE_G | PTE_P);
        // Supervisor only at every level.
        assert!(steps.iter().all(|s| s.entry & PTE_US == 0));
        // PML4 + PDPT + PD + PT.
        assert_eq!(b.used(), 4 * PAGE_4K);
    }

    #[test]
    fn large_pages_stop_the_walk_at_the_pd() {
        let m = mem();
        let mut b = PageTableBuilder::new(&m, 0x8000, 0x20000).unwrap();
        b.map_range(0xffff_8880_0000_0000, 0, 4 << 20, PTE_RW | PTE_NX).unwrap();
        let (steps, phys) = walk(&m, b.pml4, 0xffff_8880_0030_0010);
        assert_eq!(phys, Some(0x30_0010));
        assert_eq!(steps.len(), 3);
        assert_eq!(steps[2].entry, 0x20_0000 | PTE_RW | PTE_NX | PTE_P | PTE_PS);
    }

    #[test]
    fn unaligned_tail_uses_small_pages() {
        let m = mem();
        let mut b = PageTableBuilder::new(&m, 0x8000, 0x20000).unwrap();
        b.map_range(0xffff_8880_0000_0000, 0, (2 << 20) + 0x3000, PTE_RW)
            .unwrap();
        assert_eq!(walk(&m, b.pml4, 0xffff_8880_0020_2000).1, Some(0x20_2000));
        assert_eq!(walk(&m, b.pml4, 0xffff_8880_0020_3000).1, None);
    }

    #[test]
    fn unmapped_addresses_report_where_the_walk_stopped() {
        let m = mem();
        let b = PageTableBuilder::new(&m, 0x8000, 0x20000).unwrap();
        let (steps, phys) = walk(&m, b.pml4, 0x40_0000);
        assert_eq!(phys, None);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].entry, 0);
    }

    #[test]
    fn running_out_of_table_space_is_an_error() {
        let m = mem();
        let mut b = PageTableBuilder::new(&m, 0x8000, 0xa000).unwrap();
        assert!(matches!(b.map_4k(0x1000, 0x1000, 0), Err(Error::PageTableSpace)));
    }
}
