//! vmm: a KVM microVM hypervisor for studying x86 privilege rings and system calls.
//!
//! The VMM builds everything the CPU needs in guest memory itself — page
//! tables (`paging`), GDT (`gdt`), TSS (`tss`), IDT (`idt`) — and loads the
//! control registers (`regs`) and MSRs (`msr`) before the kernel's first
//! instruction runs in 64-bit mode (`vm`).

pub mod bench;
pub mod boot_info;
pub mod console;
pub mod cpuid;
pub mod debug;
pub mod error;
pub mod funcgraph;
pub mod fuzzing;
pub mod gdt;
pub mod guest_image;
pub mod idt;
pub mod initrd;
pub mod kvm_info;
pub mod launch;
pub mod loader;
pub mod msr;
pub mod paging;
pub mod regs;
pub mod report;
pub mod seccomp;
pub mod serial;
pub mod status;
pub mod stepper;
pub mod strace;
pub mod symbols;
pub mod tracer;
pub mod tss;
pub mod vm;
