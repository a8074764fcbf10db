//! The boot-info block the VMM hands the kernel (see `vmm_abi::boot_info`).

use crate::error::{Error, Result};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};
use vmm_abi::boot_info::{BootInfo, MemRegion, RegionKind, BOOT_MAGIC, BOOT_VERSION, FLAG_LAPIC, MEM_MAP_MAX};
use vmm_abi::irq;

/// KVM's in-kernel LAPIC timer counts at 1 GHz (APIC_BUS_CYCLE_NS = 1).
pub const LAPIC_TIMER_HZ: u64 = 1_000_000_000;
use vmm_abi::layout::{phys, KERNEL_PHYS_LOAD};

/// `BootInfo` as plain bytes for vm-memory (a newtype: the orphan rule keeps
/// us from implementing `ByteValued` on the abi crate's type directly).
#[derive(Clone, Copy)]
#[repr(transparent)]
struct BootInfoBytes(BootInfo);
// SAFETY: BootInfo is repr(C), made only of integers, with no padding holes
// that could leak uninitialised bytes (all fields are 4 or 8 bytes, in order).
unsafe impl ByteValued for BootInfoBytes {}

/// Where things were placed in guest physical memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    pub mem_bytes: u64,
    pub kernel_end: u64,
    /// The boot archive (start, len), if any.
    pub init: Option<(u64, u64)>,
    /// init's argv strings (start, len), if any.
    pub init_argv: Option<(u64, u64)>,
    /// First byte free for the kernel's allocator.
    pub free_start: u64,
}

pub fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

/// Memory the kernel needs free beyond its image, for page tables, process
/// memory and stacks.
pub const MIN_FREE_BYTES: u64 = 2 << 20;

impl Placement {
    /// Lay out the kernel, the init image and its argv, and check the memory size.
    pub fn new(mem_bytes: u64, kernel_end: u64, init_len: Option<u64>, argv_len: u64) -> Result<Placement> {
        let kernel_end = align_up(kernel_end, 0x1000);
        let mut next = kernel_end;
        let mut init = None;
        let mut init_argv = None;
        if let Some(len) = init_len {
            init = Some((next, len));
            next = align_up(next + len, 0x1000);
            init_argv = Some((next, argv_len));
            next = align_up(next + argv_len, 0x1000);
        }
        let needed = next + MIN_FREE_BYTES;
        if mem_bytes < needed {
            return Err(Error::MemTooSmall {
                requested: mem_bytes >> 20,
                needed: needed.div_ceil(1 << 20),
            });
        }
        Ok(Placement {
            mem_bytes,
            kernel_end,
            init,
            init_argv,
            free_start: next,
        })
    }

    /// The physical memory map, like e820.
    pub fn mem_map(&self) -> Vec<MemRegion> {
        let r = |start: u64, end: u64, kind: RegionKind| MemRegion {
            start,
            len: end - start,
            kind: kind as u32,
            _pad: 0,
        };
        let mut m = vec![
            r(0, KERNEL_PHYS_LOAD, RegionKind::BootTables),
            r(KERNEL_PHYS_LOAD, self.kernel_end, RegionKind::Kernel),
        ];
        if let (Some((start, _)), Some((astart, alen))) = (self.init, self.init_argv) {
            m.push(r(start, align_up(astart + alen, 0x1000), RegionKind::Initrd));
        }
        m.push(r(self.free_start, self.mem_bytes, RegionKind::Usable));
        m
    }
}

/// Write the boot info (and command line) into guest memory.
pub fn write(
    mem: &GuestMemoryMmap,
    p: &Placement,
    flags: u32,
    tsc_khz: u64,
    pml4: u64,
    cmdline: &str,
    cpus: usize,
) -> Result<()> {
    if cmdline.len() as u64 > phys::CMDLINE_MAX {
        return Err(Error::CmdlineTooLong {
            len: cmdline.len(),
            max: phys::CMDLINE_MAX,
        });
    }
    mem.write_slice(cmdline.as_bytes(), GuestAddress(phys::CMDLINE))?;
    let map = p.mem_map();
    let mut mem_map = [MemRegion::EMPTY; MEM_MAP_MAX];
    mem_map[..map.len()].copy_from_slice(&map);
    let (initrd, initrd_len) = p.init.unwrap_or((0, 0));
    let wall_clock_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let (init_argv, init_argv_len) = p.init_argv.unwrap_or((0, 0));
    let info = BootInfo {
        magic: BOOT_MAGIC,
        version: BOOT_VERSION,
        flags,
        mem_bytes: p.mem_bytes,
        tsc_khz,
        kernel_pml4: pml4,
        cmdline: phys::CMDLINE,
        cmdline_len: cmdline.len() as u64,
        wall_clock_ns,
        initrd,
        initrd_len,
        init_argv,
        init_argv_len,
        mem_map_len: map.len() as u64,
        mem_map,
        lapic_phys: if flags & FLAG_LAPIC != 0 { irq::LAPIC_PHYS } else { 0 },
        lapic_timer_hz: if flags & FLAG_LAPIC != 0 { LAPIC_TIMER_HZ } else { 0 },
        cpus: cpus as u64,
    };
    mem.write_obj(BootInfoBytes(info), GuestAddress(phys::BOOT_INFO))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_without_init() {
        let p = Placement::new(64 << 20, 0x10_3018, None, 0).unwrap();
        assert_eq!(p.kernel_end, 0x10_4000);
        assert_eq!(p.free_start, 0x10_4000);
        let m = p.mem_map();
        assert_eq!(m.len(), 3);
        assert_eq!(m[2].start + m[2].len, 64 << 20);
    }

    #[test]
    fn init_follows_the_kernel_page_aligned() {
        let p = Placement::new(64 << 20, 0x10_4000, Some(0x1234), 20).unwrap();
        assert_eq!(p.init, Some((0x10_4000, 0x1234)));
        assert_eq!(p.init_argv, Some((0x10_6000, 20)));
        assert_eq!(p.free_start, 0x10_7000);
    }

    #[test]
    fn too_little_memory_names_the_minimum() {
        let e = Placement::new(2 << 20, 0x10_4000, None, 0).unwrap_err();
        assert!(
            matches!(
                e,
                Error::MemTooSmall {
                    requested: 2,
                    needed: 4
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn boot_info_is_written_where_the_kernel_looks() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 8 << 20)]).unwrap();
        let p = Placement::new(8 << 20, 0x10_4000, None, 0).unwrap();
        write(&mem, &p, 1, 2_000_000, 0x8000, "console=ttyS0", 3).unwrap();
        let info: BootInfoBytes = mem.read_obj(GuestAddress(phys::BOOT_INFO)).unwrap();
        assert_eq!(info.0.magic, BOOT_MAGIC);
        assert_eq!(info.0.cmdline_len, 13);
        assert_eq!(info.0.kernel_pml4, 0x8000);
        assert_eq!(info.0.cpus, 3);
        let mut buf = [0u8; 13];
        mem.read_slice(&mut buf, GuestAddress(phys::CMDLINE)).unwrap();
        assert_eq!(&buf, b"console=ttyS0");
    }

    #[test]
    fn the_lapic_is_announced_only_with_its_flag() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 8 << 20)]).unwrap();
        let p = Placement::new(8 << 20, 0x10_4000, None, 0).unwrap();
        write(&mem, &p, FLAG_LAPIC, 0, 0x8000, "", 1).unwrap();
        let info: BootInfoBytes = mem.read_obj(GuestAddress(phys::BOOT_INFO)).unwrap();
        assert_eq!((info.0.version, info.0.lapic_phys), (4, 0xfee0_0000));
        assert_eq!(info.0.lapic_timer_hz, 1_000_000_000);
        write(&mem, &p, 0, 0, 0x8000, "", 1).unwrap();
        let info: BootInfoBytes = mem.read_obj(GuestAddress(phys::BOOT_INFO)).unwrap();
        assert_eq!((info.0.lapic_phys, info.0.lapic_timer_hz), (0, 0));
    }
}
