//! vmm: a KVM microVM hypervisor for studying x86 privilege rings and system calls.
//!
//! The VMM builds everything the CPU needs in guest memory itself — page
//! tables, GDT, TSS, IDT (`arch`) — and loads the control registers and MSRs
//! before the kernel's first instruction runs in 64-bit mode (`vstate::vm`).
//!
//! Layers, each depending only on those above it:
//! - `arch`: pure machine-state builders and decoders (no file descriptors);
//! - `boot`: the kernel, programs and archive placed in guest memory;
//! - `devices`: the UART and console ports;
//! - `vstate`: the VM, its vCPU and run loop, the VMM thread's event loop,
//!   launching, KVM probing;
//! - `introspect`: memory through page tables, disassembly, symbols;
//! - `trace` and `debug`: tracers, the debugger and its GDB stub;
//! - `bench`: the benchmarks.
//!
//! Beside them: `error` (the typed errors), `status` and `report` (exit
//! statuses and failure reports), `seccomp` (the VMM's own sandbox) and
//! `fuzzing` (entry points for the host fuzzers).

pub mod arch;
pub mod bench;
pub mod boot;
pub mod debug;
pub mod devices;
pub mod error;
pub mod fuzzing;
pub mod introspect;
pub mod report;
pub mod seccomp;
pub mod status;
pub mod trace;
pub mod vstate;
