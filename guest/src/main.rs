//! A tiny x86-64 kernel for studying privilege rings and system calls.
//!
//! The VMM has already done what a bootloader and early boot code would do:
//! it built the page tables, GDT, TSS and IDT in guest memory, loaded CR0/CR3/
//! CR4/EFER and the syscall MSRs, and entered `_start` in 64-bit ring 0 with
//! RSP on the kernel stack and RDI pointing at the [`BootInfo`].
#![no_std]
#![no_main]

mod boot;
mod cpu;
mod crash;
mod header;
mod io;
mod panic;
mod percpu;
mod power;
mod serial;
mod string;
mod traps;

use vmm_abi::boot_info::BootInfo;

/// The first Rust code: called from `_start` with the boot-info pointer.
#[no_mangle]
extern "C" fn kmain(info: &'static BootInfo) -> ! {
    let boot = boot::Boot::new(info);
    boot.print_banner();
    crash::from_cmdline(boot.cmdline());
    println!("init: none yet (ring-3 processes come with the system-call work)");
    power::exit_vm(0)
}
