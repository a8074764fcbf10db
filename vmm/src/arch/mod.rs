//! Machine-state builders: pure functions from data to the bytes and
//! register values the CPU reads (GDT, IDT, TSS, page tables, control
//! registers, MSRs, CPUID, the boot-info page). No file descriptors here:
//! everything is unit-tested on the host, and the debugger reuses the
//! decoders to show what the guest sees.

pub mod boot_info;
pub mod cpuid;
pub mod gdt;
pub mod idt;
pub mod msr;
pub mod paging;
pub mod regs;
pub mod tss;
