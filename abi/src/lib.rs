//! The boot contract between the VMM and the guest kernel.
//!
//! Both sides compile this one `no_std` crate, so every address, port number and
//! table layout that crosses the boundary is written down exactly once.
//! The kernel publishes a [`header::KernelHeader`] in the ELF section
//! [`header::HEADER_SECTION`]; the VMM reads it, builds the CPU tables in guest
//! memory and hands the kernel a [`boot_info::BootInfo`].
#![no_std]

pub mod boot_info;
pub mod cpio;
pub mod elf;
pub mod errno;
pub mod frame;
pub mod header;
pub mod irq;
pub mod layout;
pub mod ports;
pub mod syscalls;
pub mod wait;
