//! `vmm`'s exit statuses. Statuses 0..=239 are the guest's own (the byte it
//! wrote to the exit port); the VMM's outcomes use 240 and above.

/// The guest kernel reported a panic (wrote to the panic port).
pub const KERNEL_PANIC: u8 = 240;
/// The vCPU shut down: a triple fault.
pub const TRIPLE_FAULT: u8 = 241;
/// KVM could not run the guest: internal error, emulation failure, failed entry.
pub const KVM_ERROR: u8 = 242;
/// A VM exit the VMM does not handle (unknown port, MMIO, `hlt` with nothing to wake it).
pub const UNHANDLED_EXIT: u8 = 243;
/// `--timeout` expired.
pub const TIMEOUT: u8 = 244;
/// The VMM could not set the guest up (bad image, too little memory, no KVM).
pub const SETUP_ERROR: u8 = 245;
/// A VMM thread made a system call its seccomp filter forbids (seccomp/sigsys.rs).
pub const SECCOMP_VIOLATION: u8 = 246;
/// Command-line usage error (clap's convention).
pub const USAGE: u8 = 2;
/// First status reserved for the VMM.
pub const FIRST_RESERVED: u8 = 240;
