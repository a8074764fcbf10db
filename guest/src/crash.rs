//! Deliberate failures, chosen on the kernel command line (`crash=...`), so
//! the tests can check how the VMM reports each kind of guest failure.

use crate::println;

pub fn from_cmdline(cmdline: &str) {
    let Some(what) = cmdline.split_whitespace().find_map(|w| w.strip_prefix("crash=")) else {
        return;
    };
    println!("crash: {what} requested on the command line");
    match what {
        // With an empty IDT no exception can be delivered: #UD becomes #DF,
        // the #DF becomes a triple fault, and the CPU shuts down.
        // SAFETY: a deliberate crash; the VM ends with a triple fault.
        "triple-fault" => unsafe {
            let empty = crate::cpu::DescriptorTablePointer { limit: 0, base: 0 };
            core::arch::asm!("lidt [{}]", "ud2", in(reg) &empty, options(noreturn));
        },
        "spin" => loop {
            core::hint::spin_loop();
        },
        // SAFETY: a deliberate fault; the VM ends with a kernel panic report.
        "page-fault" => unsafe {
            // Nothing is mapped in the user half of the kernel's page tables.
            core::ptr::read_volatile(0x1000 as *const u64);
        },
        "panic" => panic!("deliberate panic from the command line"),
        other => println!("crash: unknown kind '{other}' (triple-fault, spin, page-fault, panic)"),
    }
}
