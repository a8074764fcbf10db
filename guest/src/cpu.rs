//! Thin wrappers over privileged instructions and control registers.

use core::arch::asm;

pub const MSR_EFER: u32 = 0xc000_0080;
pub const MSR_LSTAR: u32 = 0xc000_0082;
pub const MSR_FS_BASE: u32 = 0xc000_0100;
pub const CR4_SMEP: u64 = 1 << 20;
pub const CR4_SMAP: u64 = 1 << 21;

/// The operand of `sgdt`/`sidt`.
#[repr(C, packed)]
#[derive(Default)]
pub struct DescriptorTablePointer {
    pub limit: u16,
    pub base: u64,
}

pub fn read_cs() -> u16 {
    let cs: u16;
    // SAFETY: reading CS has no side effects.
    unsafe { asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags)) };
    cs
}

pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: reading a control register has no side effects (ring 0).
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: as above.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

pub fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: as above.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the kernel reads only MSRs that exist (EFER, LSTAR): no #GP.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

pub fn sgdt() -> DescriptorTablePointer {
    let mut p = DescriptorTablePointer::default();
    // SAFETY: sgdt writes 10 bytes into `p`, which is that size.
    unsafe { asm!("sgdt [{}]", in(reg) &mut p, options(nostack, preserves_flags)) };
    p
}

pub fn sidt() -> DescriptorTablePointer {
    let mut p = DescriptorTablePointer::default();
    // SAFETY: as sgdt.
    unsafe { asm!("sidt [{}]", in(reg) &mut p, options(nostack, preserves_flags)) };
    p
}

/// Write a model-specific register.
///
/// # Safety
/// `msr` must exist (else #GP in ring 0: a kernel panic), and the value
/// must keep the kernel sound: LSTAR must point at a syscall entry of this
/// kernel, FS_BASE may hold any user value (ring 0 does not use FS).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
         options(nostack, preserves_flags))
}

pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no side effects (unlike rdtscp, it works in PVM ring 0).
    unsafe { core::arch::x86_64::_rdtsc() }
}
