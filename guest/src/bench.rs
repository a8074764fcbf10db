//! Support for `vmm bench`: the physical floor of a system call, and the
//! cheapest exit to the VMM.

use crate::cpu;

core::arch::global_asm!(
    // The floor: `syscall` lands here and goes straight back. No swapgs, no
    // stack switch, no dispatch — the cost of the two instructions alone.
    ".global entry_SYSCALL_64_null",
    "entry_SYSCALL_64_null:",
    "    sysretq",
);

extern "C" {
    fn entry_SYSCALL_64_null();
    fn entry_SYSCALL_64();
}

/// The null entry's address (the PVM fault path compares against it).
pub fn null_entry() -> u64 {
    entry_SYSCALL_64_null as *const () as u64
}

/// bench_null_entry(on): point LSTAR at the null entry (on = 1) or back at
/// the real one (on = 0). While it is on, every `syscall` returns at once
/// with RAX unchanged, so the benchmark switches back with `int 0x80`,
/// which has its own entry.
pub extern "C" fn sys_bench_null_entry(on: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    let target = if on != 0 {
        null_entry()
    } else {
        entry_SYSCALL_64 as *const () as u64
    };
    cpu::wrmsr(cpu::MSR_LSTAR, target);
    0
}

/// hypercall_null(): one `out` to a port the VMM ignores — a round trip out
/// of the VM and back, on top of a system call.
pub extern "C" fn sys_hypercall_null(_: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    // SAFETY: the VMM ignores writes to this port.
    unsafe { crate::io::outb(vmm_abi::ports::NULL_HYPERCALL, 0) };
    0
}
