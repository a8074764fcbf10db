//! Per-CPU data, reached through GS in ring 0 (MSR_GS_BASE points here; the
//! `swapgs` on every entry from ring 3 brings it back).

/// The per-CPU block: its layout is the boot contract's (the syscall entry
/// addresses it by offset, strace reads the pid).
pub use vmm_abi::frame::PerCpu;

#[no_mangle]
pub static mut PERCPU: PerCpu = PerCpu {
    self_ptr: 0,
    user_rsp: 0,
    kernel_rsp: 0,
    pid: 0,
    lstar: 0,
    ticks: 0,
};

#[allow(static_mut_refs)]
pub fn percpu() -> &'static mut PerCpu {
    // SAFETY: one CPU; only one kernel path runs at a time.
    unsafe { &mut PERCPU }
}
