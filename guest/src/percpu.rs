//! Per-CPU data, reached through GS in ring 0 (MSR_GS_BASE points here; the
//! `swapgs` on every entry from ring 3 brings it back).

/// The per-CPU block. Field offsets are used from assembly: keep them in step.
#[repr(C)]
pub struct PerCpu {
    /// gs:0 — the block's own address, so Rust can find it through GS.
    pub self_ptr: *const PerCpu,
    /// gs:8 — the user RSP saved by the syscall entry.
    pub user_rsp: u64,
    /// gs:16 — top of the kernel stack the syscall entry switches to.
    pub kernel_rsp: u64,
}

#[no_mangle]
pub static mut PERCPU: PerCpu = PerCpu {
    self_ptr: core::ptr::null(),
    user_rsp: 0,
    kernel_rsp: 0,
};
