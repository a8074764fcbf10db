//! Per-CPU data, reached through GS in ring 0 (MSR_GS_BASE points here; the
//! `swapgs` on every entry from ring 3 brings it back).

/// The per-CPU block. Field offsets are used from assembly: keep them in step.
#[repr(C)]
pub struct PerCpu {
    /// gs:0 — the block's own address.
    pub self_ptr: u64,
    /// gs:8 — the user RSP, parked by the syscall entry.
    pub user_rsp: u64,
    /// gs:16 — top of the current process's kernel stack.
    pub kernel_rsp: u64,
    /// gs:24 — pid of the running process (getpid's fast answer).
    pub pid: u64,
    /// gs:32 — the LSTAR this CPU runs with (a cache: wrmsr is emulated on PVM).
    pub lstar: u64,
}

#[no_mangle]
pub static mut PERCPU: PerCpu = PerCpu {
    self_ptr: 0,
    user_rsp: 0,
    kernel_rsp: 0,
    pid: 0,
    lstar: 0,
};

#[allow(static_mut_refs)]
pub fn percpu() -> &'static mut PerCpu {
    // SAFETY: one CPU; only one kernel path runs at a time.
    unsafe { &mut PERCPU }
}
