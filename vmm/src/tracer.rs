//! Tracing a guest from outside: a `Tracer` arms KVM_SET_GUEST_DEBUG before
//! the run and handles each debug exit (breakpoint or single step) while the
//! VM runs to its end. The step tracer, strace and funcgraph are tracers.

use crate::msr;
use crate::symbols::Symbols;
use kvm_bindings::{kvm_guest_debug, kvm_guest_debug_arch, Msrs, KVM_GUESTDBG_SINGLESTEP};
use kvm_ioctls::VcpuFd;
use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};
use vm_memory::GuestMemoryMmap;

pub type KvmResult<T> = Result<T, kvm_ioctls::Error>;

pub trait Tracer {
    /// Set breakpoints or single-stepping before the first KVM_RUN.
    fn arm(&mut self, vcpu: &VcpuFd) -> KvmResult<()>;
    /// A debug exit: look, print, and choose how the guest goes on.
    fn on_debug_exit(&mut self, vcpu: &VcpuFd, mem: &GuestMemoryMmap, kernel: &Symbols) -> KvmResult<()>;
    /// Lines to print once the guest has ended.
    fn report(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// KVM_GUESTDBG_BLOCKIRQ if this KVM offers it (KVM_CAP_SET_GUEST_DEBUG2),
/// set by `Vm::new`.
pub static BLOCK_IRQ: AtomicU32 = AtomicU32::new(0);

/// A KVM_SET_GUEST_DEBUG request. Single steps hold interrupts off
/// (KVM_GUESTDBG_BLOCKIRQ, as QEMU's gdbstub does): the LAPIC timer runs in
/// host time, and stepping the tick handler one exit per instruction takes
/// longer than a tick, so without it a stepped guest never gets past the
/// next interrupt — and each step would land in the handler.
pub fn guest_debug(mut control: u32, dr: [u64; 4], dr7: u64) -> kvm_guest_debug {
    if control & KVM_GUESTDBG_SINGLESTEP != 0 {
        control |= BLOCK_IRQ.load(AtomicOrdering::Relaxed);
    }
    let mut arch = kvm_guest_debug_arch::default();
    arch.debugreg[..4].copy_from_slice(&dr);
    arch.debugreg[7] = dr7;
    kvm_guest_debug { control, pad: 0, arch }
}

/// DR7 enabling execute breakpoints in the first `n` debug registers: G bits,
/// R/W = 00, LEN = 00, plus GE and the always-set bit 10 (as QEMU's gdbstub).
pub fn dr7_exec(n: usize) -> u64 {
    (0..n.min(4)).fold(0x600, |dr7, i| dr7 | (2 << (2 * i)))
}

/// KVM single-steps with RFLAGS.TF, and `syscall` clears the SFMASK bits:
/// with TF in SFMASK, a step over `syscall` would run the whole kernel path
/// untraced. Tracers leave TF out of SFMASK so steps follow the CPU inside.
pub fn let_tf_through_syscall(vcpu: &VcpuFd) -> KvmResult<()> {
    let mask = msr::BOOT_SFMASK & !msr::RFLAGS_TF;
    let entries = [kvm_bindings::kvm_msr_entry {
        index: msr::MSR_SYSCALL_MASK,
        data: mask,
        ..Default::default()
    }];
    vcpu.set_msrs(&Msrs::from_entries(&entries).expect("one MSR"))
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dr7_bits() {
        assert_eq!(dr7_exec(1), 0x602);
        assert_eq!(dr7_exec(4), 0x6aa);
    }
}
