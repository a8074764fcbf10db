//! The guest kernel built into the `vmm` binary (vmm/build.rs compiles it).

/// The kernel ELF, so `vmm run` works from any directory.
pub static KERNEL: &[u8] = include_bytes!(env!("VMM_GUEST_KERNEL"));

/// Where the build left the same ELF on disk, for `vmm run PATH` and for gdb.
pub const KERNEL_PATH: &str = env!("VMM_GUEST_KERNEL");
