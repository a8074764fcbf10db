//! The VM and its run loop: KVM file descriptors, the vCPU, the VMM thread's
//! event loop, launching a guest, and probing what this host's KVM can do.

pub mod event_loop;
pub mod kick;
pub mod kvm_info;
pub mod launch;
pub mod linux;
pub mod vm;
