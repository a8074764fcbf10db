//! The VM and its run loop: KVM file descriptors, the vCPU, launching a
//! guest, and probing what this host's KVM can do.

pub mod kvm_info;
pub mod launch;
pub mod vm;
