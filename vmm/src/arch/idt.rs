//! The Interrupt Descriptor Table (Intel SDM Vol. 3A §6.14.1).

use vmm_abi::header::KernelHeader;
use vmm_abi::irq;
use vmm_abi::layout::selector;

/// Gate types.
pub const GATE_INTERRUPT: u8 = 0xe;
pub const GATE_TRAP: u8 = 0xf;

/// Vectors that run on IST1: a #DF, NMI or #MC can arrive with a bad RSP.
pub const IST1_VECTORS: [usize; 3] = [2, 8, 18];
/// Vectors ring 3 may raise with `int N` (#BP via `int3`, #OF via `into`),
/// as in Linux; every other `int N` from ring 3 is a #GP.
pub const USER_VECTORS: [usize; 2] = [3, 4];
/// The legacy system-call vector.
pub const INT80_VECTOR: usize = 0x80;
/// Bytes in a full IDT.
pub const IDT_BYTES: usize = 256 * 16;

/// A decoded 64-bit IDT gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Gate {
    pub offset: u64,
    pub selector: u16,
    /// Interrupt-stack-table index (0 = none).
    pub ist: u8,
    pub typ: u8,
    pub dpl: u8,
    pub present: bool,
}

impl Gate {
    /// An interrupt gate (IF cleared on entry) into kernel code.
    pub fn interrupt(offset: u64, dpl: u8, ist: u8) -> Gate {
        Gate {
            offset,
            selector: selector::KERNEL_CS,
            ist,
            typ: GATE_INTERRUPT,
            dpl,
            present: true,
        }
    }

    /// The 16 bytes as they sit in the IDT.
    pub fn encode(&self) -> [u64; 2] {
        let access = u64::from(self.typ & 0xf) | (u64::from(self.dpl & 3) << 5) | (u64::from(self.present) << 7);
        let low = (self.offset & 0xffff)
            | (u64::from(self.selector) << 16)
            | (u64::from(self.ist & 7) << 32)
            | (access << 40)
            | (((self.offset >> 16) & 0xffff) << 48);
        [low, self.offset >> 32]
    }

    pub fn decode(raw: [u64; 2]) -> Gate {
        let [low, high] = raw;
        let access = (low >> 40) as u8;
        Gate {
            offset: (low & 0xffff) | (((low >> 48) & 0xffff) << 16) | (high << 32),
            selector: (low >> 16) as u16,
            ist: ((low >> 32) & 7) as u8,
            typ: access & 0xf,
            dpl: (access >> 5) & 3,
            present: access & 0x80 != 0,
        }
    }
}

/// The IDT image: the 32 exception gates and the DPL-3 `int 0x80` gate.
pub fn build(header: &KernelHeader<u64>) -> Vec<u8> {
    let mut idt = vec![0u8; IDT_BYTES];
    let mut set = |vector: usize, gate: Gate| {
        let [lo, hi] = gate.encode();
        idt[vector * 16..vector * 16 + 8].copy_from_slice(&lo.to_le_bytes());
        idt[vector * 16 + 8..vector * 16 + 16].copy_from_slice(&hi.to_le_bytes());
    };
    for (vector, &handler) in header.exceptions.iter().enumerate() {
        let dpl = if USER_VECTORS.contains(&vector) { 3 } else { 0 };
        let ist = if IST1_VECTORS.contains(&vector) { 1 } else { 0 };
        set(vector, Gate::interrupt(handler, dpl, ist));
    }
    set(INT80_VECTOR, Gate::interrupt(header.int80, 3, 0));
    // Device interrupts: interrupt gates (IF cleared on entry), DPL 0 so
    // that `int 0x20` from ring 3 is a #GP, not a fake timer tick.
    set(irq::TIMER_VECTOR.into(), Gate::interrupt(header.timer, 0, 0));
    set(irq::SERIAL_VECTOR.into(), Gate::interrupt(header.serial, 0, 0));
    set(irq::SPURIOUS_VECTOR.into(), Gate::interrupt(header.spurious, 0, 0));
    // Inter-processor interrupts, kernel-only too.
    set(irq::RESCHEDULE_VECTOR.into(), Gate::interrupt(header.reschedule, 0, 0));
    set(irq::TLB_VECTOR.into(), Gate::interrupt(header.tlb, 0, 0));
    idt
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> KernelHeader<u64> {
        let mut exceptions = [0u64; 32];
        for (i, e) in exceptions.iter_mut().enumerate() {
            *e = 0xffff_ffff_8010_0000 + 0x10 * i as u64;
        }
        KernelHeader {
            magic: 0,
            version: 0,
            size: 0,
            exceptions,
            int80: 0xffff_ffff_8010_1234,
            syscall: 0,
            percpu: 0,
            timer: 0xffff_ffff_8010_2000,
            serial: 0xffff_ffff_8010_2010,
            spurious: 0xffff_ffff_8010_2020,
            ap_entry: 0xffff_ffff_8010_3000,
            reschedule: 0xffff_ffff_8010_2030,
            tlb: 0xffff_ffff_8010_2040,
        }
    }

    fn gate_at(idt: &[u8], v: usize) -> Gate {
        let w = |o: usize| u64::from_le_bytes(idt[o..o + 8].try_into().unwrap());
        Gate::decode([w(v * 16), w(v * 16 + 8)])
    }

    #[test]
    fn encodes_a_known_gate() {
        // Offset 0xffffffff81234567, CS 0x08, interrupt gate, DPL 0, P.
        let g = Gate::interrupt(0xffff_ffff_8123_4567, 0, 0);
        assert_eq!(g.encode(), [0x8123_8e00_0008_4567, 0xffff_ffff]);
        assert_eq!(Gate::decode(g.encode()), g);
    }

    #[test]
    fn page_fault_gate_points_at_the_handler() {
        let idt = build(&header());
        let pf = gate_at(&idt, 14);
        assert_eq!(pf.offset, 0xffff_ffff_8010_00e0);
        assert_eq!(
            (pf.dpl, pf.ist, pf.typ, pf.selector),
            (0, 0, GATE_INTERRUPT, selector::KERNEL_CS)
        );
    }

    #[test]
    fn int80_and_int3_are_reachable_from_ring3() {
        let idt = build(&header());
        assert_eq!(gate_at(&idt, 0x80).dpl, 3);
        assert_eq!(gate_at(&idt, 0x80).offset, 0xffff_ffff_8010_1234);
        assert_eq!(gate_at(&idt, 3).dpl, 3);
        assert_eq!(gate_at(&idt, 13).dpl, 0);
    }

    #[test]
    fn double_fault_uses_ist1() {
        let idt = build(&header());
        assert_eq!(gate_at(&idt, 8).ist, 1);
        assert_eq!(gate_at(&idt, 14).ist, 0);
    }

    #[test]
    fn unused_vectors_are_not_present() {
        let idt = build(&header());
        assert!(!gate_at(&idt, 0x21).present);
        assert!(!gate_at(&idt, 0x81).present);
    }

    #[test]
    fn interrupt_gates_are_kernel_only() {
        let idt = build(&header());
        let t = gate_at(&idt, 0x20);
        assert_eq!((t.offset, t.dpl, t.typ), (0xffff_ffff_8010_2000, 0, GATE_INTERRUPT));
        assert_eq!(gate_at(&idt, 0x24).offset, 0xffff_ffff_8010_2010);
        assert!(gate_at(&idt, 0xff).present);
    }

    #[test]
    fn ipi_gates_are_kernel_only_interrupt_gates() {
        let idt = build(&header());
        let r = gate_at(&idt, 0xfd);
        assert_eq!((r.offset, r.dpl, r.typ), (0xffff_ffff_8010_2030, 0, GATE_INTERRUPT));
        let t = gate_at(&idt, 0xfc);
        assert_eq!((t.offset, t.dpl, t.typ), (0xffff_ffff_8010_2040, 0, GATE_INTERRUPT));
    }
}
