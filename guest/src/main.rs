//! A tiny x86-64 kernel for studying privilege rings and system calls.
//!
//! The VMM has already done what a bootloader and early boot code would do:
//! it built the page tables, GDT, TSS and IDT in guest memory, loaded CR0/CR3/
//! CR4/EFER and the syscall MSRs, and entered `_start` in 64-bit ring 0 with
//! RSP on the kernel stack and RDI pointing at the [`BootInfo`].
#![no_std]
#![no_main]

mod bench;
mod boot;
mod console;
mod cpu;
mod crash;
mod elf;
mod entry;
mod exec;
mod header;
mod initrd;
mod io;
mod irq;
mod lapic;
mod linebuf;
mod mm;
mod mman;
mod paging;
mod panic;
mod percpu;
mod power;
mod process;
mod sched;
mod serial;
mod smp;
mod string;
mod sync;
mod sys;
mod syscall_table;
mod time;
mod tlb;
mod traps;
mod usercopy;
mod vdso;

use vmm_abi::boot_info::BootInfo;

/// The first Rust code: called from `_start` with the boot-info pointer.
#[no_mangle]
extern "C" fn kmain(info: &'static BootInfo) -> ! {
    percpu::init_this_cpu();
    let boot = boot::Boot::new(info);
    if !boot.cmdline().split_whitespace().any(|w| w == "quiet") {
        boot.print_banner();
    }
    crash::from_cmdline(boot.cmdline());
    bench::init(boot.cmdline());
    mm::init(info);
    paging::init(info.kernel_pml4);
    time::init(info.tsc_khz, info.wall_clock_ns);
    let interrupts = irq::init(info, boot.cmdline());
    if !boot.cmdline().split_whitespace().any(|w| w == "quiet") {
        if interrupts {
            use core::sync::atomic::Ordering::Relaxed;
            println!(
                "kernel: LAPIC version {:#x}, timer {} Hz, time slice {} tick(s)",
                lapic::version(),
                irq::HZ.load(Relaxed),
                irq::SLICE_TICKS.load(Relaxed)
            );
        } else {
            println!("kernel: no LAPIC: no timer, no preemption, console polled");
        }
    }
    initrd::init(boot.initrd());
    vdso::init();

    if let Err(e) = process::init() {
        println!("kernel: no memory for the kernel stacks: {}", e.describe());
        power::panic_vm()
    }

    // init's argv: NUL-terminated strings, empty ones included; argv[0]
    // names the program. The VMM checked the limits before booting.
    let argv = match exec::Argv::new(boot.init_argv()) {
        Ok(a) => a,
        Err(e) => {
            println!("kernel: init's arguments: {}", e.describe());
            power::exit_vm(127)
        }
    };
    let Some(name) = argv.first() else {
        println!("kernel: no init program");
        power::exit_vm(0)
    };
    if boot.cmdline().split_whitespace().any(|w| w == "init=none") {
        println!("kernel: no init program");
        power::exit_vm(0)
    }
    if let Err(e) = process::spawn(name, argv, 0) {
        let name = core::str::from_utf8(name).unwrap_or("?");
        println!("kernel: cannot start init '{}': {}", name, e.describe());
        power::exit_vm(127)
    }
    // Everything the CPUs share is in place: let the others go.
    smp::start_aps();
    sched::run()
}
