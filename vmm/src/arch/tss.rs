//! The 64-bit Task State Segment (Intel SDM Vol. 3A §8.7). In long mode it
//! holds no task state, only stack pointers: RSP0 for a ring-3 → ring-0
//! transition through the IDT, and the IST stacks.

use std::mem::offset_of;
use vmm_abi::frame::Tss as Layout;

/// Size of the 64-bit TSS; its descriptor limit is this - 1 (the boot
/// contract's layout, which the kernel writes RSP0 into).
pub const TSS_SIZE: usize = vmm_abi::frame::TSS_SIZE;
const RSP: usize = offset_of!(Layout, rsp);
const IST: usize = offset_of!(Layout, ist);
const IOMAP: usize = offset_of!(Layout, iomap_base);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tss {
    /// RSP0..RSP2: stacks for entering rings 0..2.
    pub rsp: [u64; 3],
    /// IST1..IST7.
    pub ist: [u64; 7],
    /// Offset of the I/O permission bitmap; >= the limit means none, so every
    /// `in`/`out` from ring 3 (with IOPL 0) raises #GP.
    pub iomap_base: u16,
}

impl Tss {
    pub fn new(rsp0: u64, ist1: u64) -> Tss {
        let mut ist = [0; 7];
        ist[0] = ist1;
        Tss {
            rsp: [rsp0, 0, 0],
            ist,
            iomap_base: TSS_SIZE as u16,
        }
    }

    /// CPU `cpu`'s TSS: RSP0 at the top of its boot stack (until it runs a
    /// process, whose kernel stack the kernel puts there), IST1 on its own
    /// stack (`vmm_abi::layout::phys`).
    pub fn for_cpu(cpu: usize) -> Tss {
        use vmm_abi::layout::{phys, phys_to_virt};
        Tss::new(
            phys_to_virt(phys::kernel_stack_top(cpu)),
            phys_to_virt(phys::ist1_top(cpu)),
        )
    }

    /// The 104 bytes (most fields are 8-byte values at 4-byte offsets).
    pub fn encode(&self) -> [u8; TSS_SIZE] {
        let mut b = [0u8; TSS_SIZE];
        for (i, v) in self.rsp.iter().enumerate() {
            b[RSP + 8 * i..RSP + 8 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        for (i, v) in self.ist.iter().enumerate() {
            b[IST + 8 * i..IST + 8 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        b[IOMAP..IOMAP + 2].copy_from_slice(&self.iomap_base.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; TSS_SIZE]) -> Tss {
        let q = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let mut t = Tss::default();
        for i in 0..3 {
            t.rsp[i] = q(RSP + 8 * i);
        }
        for i in 0..7 {
            t.ist[i] = q(IST + 8 * i);
        }
        t.iomap_base = u16::from_le_bytes([b[IOMAP], b[IOMAP + 1]]);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_offsets_follow_the_sdm() {
        let t = Tss::new(0x1111_2222_3333_4444, 0x5555_6666_7777_8888);
        let b = t.encode();
        assert_eq!(&b[4..12], &0x1111_2222_3333_4444u64.to_le_bytes());
        assert_eq!(&b[36..44], &0x5555_6666_7777_8888u64.to_le_bytes());
        assert_eq!(u16::from_le_bytes([b[102], b[103]]), 104);
        assert_eq!(Tss::decode(&b), t);
    }

    #[test]
    fn each_cpu_has_its_own_stacks() {
        let (t0, t1) = (Tss::for_cpu(0), Tss::for_cpu(1));
        assert_eq!((t0.rsp[0], t0.ist[0]), (0xffff_8880_0008_0000, 0xffff_8880_0009_0000));
        assert_eq!((t1.rsp[0], t1.ist[0]), (0xffff_8880_0009_8000, 0xffff_8880_0009_c000));
    }
}
