//! Control registers, segment registers and the general registers at the
//! first instruction: 64-bit mode, ring 0, paging on.

use crate::arch::gdt::{Descriptor, TYPE_TSS64_BUSY};
use crate::arch::msr::BOOT_EFER;
use crate::arch::tss::TSS_SIZE;
use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use vmm_abi::layout::{phys, phys_to_virt, selector};

pub const CR0_PE: u64 = 1 << 0;
pub const CR0_MP: u64 = 1 << 1;
pub const CR0_ET: u64 = 1 << 4;
pub const CR0_NE: u64 = 1 << 5;
pub const CR0_WP: u64 = 1 << 16;
pub const CR0_PG: u64 = 1 << 31;
/// Protected mode, paging, write-protect in ring 0 too, native FPU errors,
/// and MP with EM = TS = 0 so SSE runs without traps.
pub const BOOT_CR0: u64 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;

pub const CR4_PAE: u64 = 1 << 5;
pub const CR4_PGE: u64 = 1 << 7;
pub const CR4_OSFXSR: u64 = 1 << 9;
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
pub const CR4_SMEP: u64 = 1 << 20;
pub const CR4_SMAP: u64 = 1 << 21;
/// PAE (required by long mode), global pages, and SSE enabled.
pub const BOOT_CR4: u64 = CR4_PAE | CR4_PGE | CR4_OSFXSR | CR4_OSXMMEXCPT;

/// What the CPU offers that changes how the VMM sets it up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    pub smep: bool,
    pub smap: bool,
}

pub fn boot_cr4(f: CpuFeatures) -> u64 {
    BOOT_CR4 | if f.smep { CR4_SMEP } else { 0 } | if f.smap { CR4_SMAP } else { 0 }
}

/// Fill CPU `cpu`'s special registers: CR0/CR3/CR4/EFER, GDTR (its own
/// GDT) and IDTR (the shared IDT) through the direct map, the segment caches
/// as if each selector had been loaded from its GDT, and TR pointing at its
/// TSS.
pub fn setup_sregs(sregs: &mut kvm_sregs, cr3: u64, features: CpuFeatures, cpu: usize) {
    sregs.cr0 = BOOT_CR0;
    sregs.cr3 = cr3;
    sregs.cr4 = boot_cr4(features);
    sregs.efer = BOOT_EFER;

    sregs.gdt.base = phys_to_virt(phys::gdt(cpu));
    sregs.gdt.limit = (selector::GDT_ENTRIES * 8 - 1) as u16;
    sregs.idt.base = phys_to_virt(phys::IDT);
    sregs.idt.limit = (crate::arch::idt::IDT_BYTES - 1) as u16;

    sregs.cs = Descriptor::code64(0).to_kvm_segment(selector::KERNEL_CS);
    let data = Descriptor::data(0).to_kvm_segment(selector::KERNEL_DS);
    sregs.ss = data;
    sregs.ds = data;
    sregs.es = data;
    // FS and GS selectors stay null: in 64-bit mode only their MSR bases matter.
    let null = kvm_segment {
        unusable: 1,
        ..Default::default()
    };
    sregs.fs = null;
    sregs.gs = null;

    // `ltr` would have marked the descriptor busy; the cache must say busy too.
    let tss_base = phys_to_virt(phys::tss(cpu));
    let [low, _] = crate::arch::gdt::tss_descriptor(tss_base, (TSS_SIZE - 1) as u32);
    let mut tr = Descriptor::decode(low);
    tr.typ = TYPE_TSS64_BUSY;
    sregs.tr = tr.to_kvm_segment(selector::TSS);
    // The descriptor's low half holds only base bits 31:0; the cache has all 64.
    sregs.tr.base = tss_base;
    sregs.ldt = kvm_segment {
        unusable: 1,
        type_: 2,
        present: 1,
        ..Default::default()
    };
}

/// RIP at the kernel entry, RSP on the kernel stack, RDI the boot info.
pub fn setup_regs(entry: u64, boot_info_virt: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rsp: phys_to_virt(phys::KERNEL_STACK_TOP),
        rdi: boot_info_virt,
        // Bit 1 is reserved and always set; IF = 0: the kernel takes no interrupts.
        rflags: 0x2,
        ..Default::default()
    }
}

/// An application processor's first registers: RIP at the kernel's AP
/// entry, RSP on the CPU's own boot stack, RDI the boot info and RSI the
/// CPU's number, interrupts off — the BSP's state, its own stack.
pub fn setup_ap_regs(ap_entry: u64, boot_info_virt: u64, cpu: usize) -> kvm_regs {
    kvm_regs {
        rip: ap_entry,
        rsp: phys_to_virt(phys::kernel_stack_top(cpu)),
        rdi: boot_info_virt,
        rsi: cpu as u64,
        rflags: 0x2,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cr0_and_cr4_bits() {
        assert_eq!(BOOT_CR0, 0x8001_0033);
        assert_eq!(BOOT_CR4, 0x6a0);
        assert_eq!(boot_cr4(CpuFeatures { smep: true, smap: true }), 0x30_06a0);
    }

    #[test]
    fn sregs_describe_ring0_long_mode() {
        let mut s = kvm_sregs::default();
        setup_sregs(&mut s, 0x8000, CpuFeatures::default(), 0);
        assert_eq!(s.cs.selector & 3, 0);
        assert_eq!((s.cs.l, s.cs.dpl), (1, 0));
        assert_eq!(s.ss.dpl, 0);
        assert_eq!(s.gdt.base, 0xffff_8880_0000_1000);
        assert_eq!(s.gdt.limit, 55);
        assert_eq!(s.idt.limit, 4095);
        assert_eq!(s.tr.type_, TYPE_TSS64_BUSY);
        assert_eq!(s.tr.base, 0xffff_8880_0000_3000);
        assert_eq!(s.tr.limit, 103);
        assert_eq!(s.efer & 0x500, 0x500);
    }

    #[test]
    fn each_cpu_gets_its_own_gdt_tss_and_stack() {
        let mut s = kvm_sregs::default();
        setup_sregs(&mut s, 0x8000, CpuFeatures::default(), 2);
        assert_eq!(s.gdt.base, 0xffff_8880_0000_1080);
        assert_eq!(s.tr.base, 0xffff_8880_0000_3100);
        assert_eq!(s.idt.base, 0xffff_8880_0000_2000, "one IDT for all");
        let r = setup_ap_regs(0xffff_ffff_8010_0040, 0xffff_8880_0000_4000, 2);
        assert_eq!((r.rip, r.rsi, r.rflags), (0xffff_ffff_8010_0040, 2, 0x2));
        assert_eq!(r.rsp, 0xffff_8880_000a_4000);
        assert_eq!(setup_regs(0x1000, 0x2000).rsp, 0xffff_8880_0008_0000);
    }
}
