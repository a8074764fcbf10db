//! Checks the boot contract and prints what the kernel found.

use crate::{cpu, power, println};
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
use vmm_abi::boot_info::{BootInfo, BOOT_MAGIC, BOOT_VERSION, FLAG_KVM_PVM, FLAG_LAPIC, FLAG_SMAP};
use vmm_abi::layout::{phys_to_virt, MAX_CPUS};

// The entry point: the VMM sets RIP here with RSP and RDI already valid, so
// there is nothing to do in assembly but call into Rust.
core::arch::global_asm!(
    ".section .text.entry, \"ax\"",
    ".global _start",
    "_start:",
    "    xor ebp, ebp", // end of the frame-pointer chain for backtraces
    "    call kmain",
    "    ud2",
);

/// Set on CPU 0 at boot from the boot info.
static PVM: AtomicBool = AtomicBool::new(false);

/// The VMM said /dev/kvm is PVM: ring-3 system calls arrive as faults.
pub fn is_pvm() -> bool {
    PVM.load(Relaxed)
}

/// The validated boot information.
pub struct Boot {
    pub info: &'static BootInfo,
}

impl Boot {
    /// Validate the boot-info block; a mismatch means VMM and kernel were built
    /// from different versions of the contract.
    pub fn new(info: &'static BootInfo) -> Boot {
        if info.magic != BOOT_MAGIC || info.version != BOOT_VERSION {
            println!(
                "boot: bad boot info (magic {:#x}, version {})",
                info.magic, info.version
            );
            power::panic_vm();
        }
        // Several CPUs need IPIs, hence a LAPIC; the VMM checks it too.
        let cpus = info.cpus as usize;
        if cpus == 0 || cpus > MAX_CPUS || (cpus > 1 && info.flags & FLAG_LAPIC == 0) {
            println!(
                "boot: {} CPUs: this kernel runs 1 to {} (more than 1 with a LAPIC)",
                cpus, MAX_CPUS
            );
            power::panic_vm();
        }
        crate::smp::set_cpus(cpus);
        PVM.store(info.flags & FLAG_KVM_PVM != 0, Relaxed);
        crate::usercopy::SMAP_ON.store(u8::from(info.flags & FLAG_SMAP != 0), Relaxed);
        Boot { info }
    }

    /// The boot archive, if the VMM loaded one.
    pub fn initrd(&self) -> &'static [u8] {
        region(self.info.initrd, self.info.initrd_len)
    }

    /// init's argv, NUL-separated.
    pub fn init_argv(&self) -> &'static [u8] {
        region(self.info.init_argv, self.info.init_argv_len)
    }

    /// The kernel command line, read through the direct map.
    pub fn cmdline(&self) -> &'static str {
        core::str::from_utf8(region(self.info.cmdline, self.info.cmdline_len)).unwrap_or("")
    }

    pub fn is_pvm(&self) -> bool {
        is_pvm()
    }

    /// One line with the privilege state the VMM left us in, one with the tables.
    pub fn print_banner(&self) {
        let cs = cpu::read_cs();
        let efer = cpu::rdmsr(cpu::MSR_EFER);
        let cr4 = cpu::read_cr4();
        // The CPU count rides in the format string's last piece when it is
        // 1: each extra argument costs ~100-250 emulated instructions on
        // PVM, and the boot with one CPU must not get slower.
        macro_rules! first_line {
            ($tail:literal $(, $cpus:expr)?) => {
                println!(
                    concat!("kernel: CPL {} CS {:#x} EFER {:#x} SMEP {} SMAP {} KVM {} mem {} MiB", $tail),
                    cs & 3,
                    cs,
                    efer,
                    on(cr4 & cpu::CR4_SMEP != 0),
                    on(cr4 & cpu::CR4_SMAP != 0),
                    if self.is_pvm() { "pvm" } else { "hardware" },
                    self.info.mem_bytes >> 20,
                    $($cpus)?
                )
            };
        }
        match self.info.cpus {
            1 => first_line!(" CPUs 1"),
            n => first_line!(" CPUs {}", n),
        }
        println!(
            "kernel: GDTR {:#x} IDTR {:#x} CR3 {:#x}",
            { cpu::sgdt().base },
            { cpu::sidt().base },
            cpu::read_cr3()
        );
    }
}

/// A region the VMM placed in guest memory (empty if absent), through the direct map.
fn region(phys: u64, len: u64) -> &'static [u8] {
    if phys == 0 {
        return &[];
    }
    // SAFETY: the VMM wrote `len` bytes there, in a region no allocator hands out.
    unsafe { core::slice::from_raw_parts(phys_to_virt(phys) as *const u8, len as usize) }
}

fn on(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}
