//! The VM and its run loops: KVM file descriptors, the vCPUs and their
//! threads, launching a guest, and probing what this host's KVM can do.

pub mod kvm_info;
pub mod launch;
mod setup;
pub mod vcpu;
pub mod vm;
