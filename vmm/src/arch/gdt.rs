//! The Global Descriptor Table (Intel SDM Vol. 3A §3.4.5, §7.2.3).
//!
//! The VMM writes the GDT into guest memory and loads the same descriptors
//! into the hidden part of each segment register (KVM's `kvm_segment`), so
//! the two views agree from the first instruction.

use kvm_bindings::kvm_segment;
use vmm_abi::layout::selector;

/// A code/data or system segment descriptor, in decoded form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Descriptor {
    pub base: u32,
    /// 20-bit limit (in pages when `g`).
    pub limit: u32,
    /// 4-bit type: for code/data bit 3 = code, bit 1 = R (code) / W (data),
    /// bit 0 = accessed; for system segments e.g. 0x9 = 64-bit TSS (available).
    pub typ: u8,
    /// S: 1 = code/data, 0 = system.
    pub s: bool,
    /// Descriptor privilege level.
    pub dpl: u8,
    /// Present.
    pub p: bool,
    pub avl: bool,
    /// L: 64-bit code segment.
    pub l: bool,
    /// D/B: default operand size 32 (must be 0 when L = 1).
    pub db: bool,
    /// Granularity: limit in 4 KiB units.
    pub g: bool,
}

/// Type field values (with the accessed bit set, so the CPU never has to
/// write the GDT when a selector is loaded).
pub const TYPE_CODE_EXEC_READ_ACCESSED: u8 = 0xb;
pub const TYPE_DATA_READ_WRITE_ACCESSED: u8 = 0x3;
pub const TYPE_TSS64_AVAILABLE: u8 = 0x9;
pub const TYPE_TSS64_BUSY: u8 = 0xb;

impl Descriptor {
    /// A flat 64-bit code segment (L = 1) at privilege `dpl`.
    pub const fn code64(dpl: u8) -> Descriptor {
        Descriptor {
            base: 0,
            limit: 0xfffff,
            typ: TYPE_CODE_EXEC_READ_ACCESSED,
            s: true,
            dpl,
            p: true,
            avl: false,
            l: true,
            db: false,
            g: true,
        }
    }

    /// A flat read/write data segment at privilege `dpl`.
    pub const fn data(dpl: u8) -> Descriptor {
        Descriptor {
            base: 0,
            limit: 0xfffff,
            typ: TYPE_DATA_READ_WRITE_ACCESSED,
            s: true,
            dpl,
            p: true,
            avl: false,
            l: false,
            db: true,
            g: true,
        }
    }

    /// The 8 bytes as they sit in the GDT (SDM Figure 3-8).
    pub fn encode(&self) -> u64 {
        let base = u64::from(self.base);
        let limit = u64::from(self.limit);
        let access = u64::from(self.typ & 0xf)
            | (u64::from(self.s) << 4)
            | (u64::from(self.dpl & 3) << 5)
            | (u64::from(self.p) << 7);
        let flags =
            u64::from(self.avl) | (u64::from(self.l) << 1) | (u64::from(self.db) << 2) | (u64::from(self.g) << 3);
        (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (access << 40)
            | (((limit >> 16) & 0xf) << 48)
            | (flags << 52)
            | (((base >> 24) & 0xff) << 56)
    }

    /// Decode the 8 bytes of a GDT entry.
    pub fn decode(raw: u64) -> Descriptor {
        let access = (raw >> 40) as u8;
        let flags = ((raw >> 52) & 0xf) as u8;
        Descriptor {
            base: (((raw >> 16) & 0xff_ffff) | (((raw >> 56) & 0xff) << 24)) as u32,
            limit: ((raw & 0xffff) | (((raw >> 48) & 0xf) << 16)) as u32,
            typ: access & 0xf,
            s: access & 0x10 != 0,
            dpl: (access >> 5) & 3,
            p: access & 0x80 != 0,
            avl: flags & 1 != 0,
            l: flags & 2 != 0,
            db: flags & 4 != 0,
            g: flags & 8 != 0,
        }
    }

    /// The effective limit in bytes - 1, as the hidden cache holds it.
    pub fn byte_limit(&self) -> u32 {
        if self.g {
            (self.limit << 12) | 0xfff
        } else {
            self.limit
        }
    }

    /// The hidden-cache view KVM wants for a selector referring to this descriptor.
    pub fn to_kvm_segment(&self, selector: u16) -> kvm_segment {
        kvm_segment {
            base: u64::from(self.base),
            limit: self.byte_limit(),
            selector,
            type_: self.typ,
            present: u8::from(self.p),
            dpl: self.dpl,
            db: u8::from(self.db),
            s: u8::from(self.s),
            l: u8::from(self.l),
            g: u8::from(self.g),
            avl: u8::from(self.avl),
            unusable: 0,
            padding: 0,
        }
    }
}

/// The 16-byte descriptor of a 64-bit TSS (SDM Figure 8-4): the low half is
/// an ordinary system descriptor, the high half holds base bits 63:32.
pub fn tss_descriptor(base: u64, limit: u32) -> [u64; 2] {
    let low = Descriptor {
        base: base as u32,
        limit,
        typ: TYPE_TSS64_AVAILABLE,
        s: false,
        dpl: 0,
        p: true,
        avl: false,
        l: false,
        db: false,
        g: false,
    };
    [low.encode(), base >> 32]
}

/// The GDT in the order `syscall`/`sysret` need (see `vmm_abi::layout::selector`):
/// null, kernel code, kernel data, user data, user code, TSS (two slots).
pub fn build(tss_base: u64, tss_limit: u32) -> [u64; selector::GDT_ENTRIES] {
    let tss = tss_descriptor(tss_base, tss_limit);
    [
        0,
        Descriptor::code64(0).encode(),
        Descriptor::data(0).encode(),
        Descriptor::data(3).encode(),
        Descriptor::code64(3).encode(),
        tss[0],
        tss[1],
    ]
}

/// The selector fields: index, table indicator (0 = GDT, 1 = LDT), RPL.
pub fn split_selector(sel: u16) -> (u16, u8, u8) {
    (sel >> 3, ((sel >> 2) & 1) as u8, (sel & 3) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_code_is_the_classic_long_mode_descriptor() {
        // Linux's __KERNEL_CS with the accessed bit: 0x00af9b000000ffff.
        assert_eq!(Descriptor::code64(0).encode(), 0x00af_9b00_0000_ffff);
    }

    #[test]
    fn user_code_differs_only_in_dpl() {
        assert_eq!(Descriptor::code64(3).encode(), 0x00af_fb00_0000_ffff);
    }

    #[test]
    fn data_descriptors() {
        assert_eq!(Descriptor::data(0).encode(), 0x00cf_9300_0000_ffff);
        assert_eq!(Descriptor::data(3).encode(), 0x00cf_f300_0000_ffff);
    }

    #[test]
    fn encode_decode_round_trip() {
        for d in [
            Descriptor::code64(0),
            Descriptor::code64(3),
            Descriptor::data(0),
            Descriptor::data(3),
        ] {
            assert_eq!(Descriptor::decode(d.encode()), d);
        }
    }

    #[test]
    fn tss_descriptor_splits_the_base() {
        let [lo, hi] = tss_descriptor(0xffff_8880_0000_3000, 103);
        assert_eq!(hi, 0xffff_8880);
        let d = Descriptor::decode(lo);
        assert_eq!(d.base, 0x0000_3000);
        assert_eq!(d.limit, 103);
        assert_eq!(d.typ, TYPE_TSS64_AVAILABLE);
        assert!(!d.s && d.p && d.dpl == 0);
    }

    #[test]
    fn gdt_order_matches_the_selectors() {
        let gdt = build(0x3000, 103);
        assert_eq!(gdt[0], 0);
        let at = |sel: u16| Descriptor::decode(gdt[usize::from(sel >> 3)]);
        assert!(at(selector::KERNEL_CS).l && at(selector::KERNEL_CS).dpl == 0);
        assert_eq!(at(selector::KERNEL_DS).dpl, 0);
        assert_eq!(at(selector::USER_DS).dpl, 3);
        assert!(at(selector::USER_CS).l && at(selector::USER_CS).dpl == 3);
        assert_eq!(at(selector::TSS).typ, TYPE_TSS64_AVAILABLE);
    }

    #[test]
    fn hidden_cache_uses_byte_granular_limit() {
        let s = Descriptor::code64(0).to_kvm_segment(selector::KERNEL_CS);
        assert_eq!(s.limit, 0xffff_ffff);
        assert_eq!((s.l, s.db, s.dpl, s.type_), (1, 0, 0, 0xb));
    }

    #[test]
    fn selector_fields() {
        assert_eq!(split_selector(selector::USER_CS), (4, 0, 3));
        assert_eq!(split_selector(selector::KERNEL_DS), (2, 0, 0));
    }
}
