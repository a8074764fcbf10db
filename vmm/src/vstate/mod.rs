//! The VM and its run loops: KVM file descriptors, the vCPUs and their
//! threads, the VMM thread's event loop and the kick that stops the vCPUs,
//! launching a guest, and probing what this host's KVM can do.

pub mod event_loop;
pub mod kick;
pub mod kvm_info;
pub mod launch;
pub mod linux;
mod setup;
pub mod vcpu;
pub mod vm;
