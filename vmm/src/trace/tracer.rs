//! Tracing a guest from outside: a `Tracer` arms KVM_SET_GUEST_DEBUG before
//! the run and handles each debug exit (breakpoint or single step) while the
//! VM runs to its end. The step tracer, strace and funcgraph are tracers;
//! the stop requests, DR7 and register reads they share are in
//! debug/engine.rs, with the debugger's.

use crate::arch::msr;
use crate::introspect::symbols::Symbols;
use kvm_bindings::Msrs;
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
/// set by `Vm::new`. Single steps hold interrupts off with it (as QEMU's
/// gdbstub does): the LAPIC timer runs in host time, and stepping the tick
/// handler one exit per instruction takes longer than a tick, so without it
/// a stepped guest never gets past the next interrupt — and each step would
/// land in the handler. The engine's stop requests add it (debug/engine.rs).
pub static BLOCK_IRQ: AtomicU32 = AtomicU32::new(0);

/// The BLOCKIRQ bit to add to a single-step request (0 if KVM lacks it).
pub fn block_irq() -> u32 {
    BLOCK_IRQ.load(AtomicOrdering::Relaxed)
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
