//! Support for `vmm bench`: the physical floor of a system call, and the
//! cheapest exit to the VMM.

use crate::process::current;
use core::sync::atomic::{AtomicBool, Ordering};
use vmm_abi::errno::EPERM;

core::arch::global_asm!(
    // The floor: `syscall` lands here and goes straight back. No swapgs, no
    // stack switch, no dispatch — the cost of the two instructions alone.
    // One check stays, as on every entry: `sysretq` to a non-canonical RCX
    // faults in ring 0 on Intel. A real `syscall` leaves RCX = its RIP + 2,
    // at most 0x8000_0000_0001, so bit 47 alone tells: such calls take the
    // full entry, whose return path refuses them.
    ".global entry_SYSCALL_64_null",
    "entry_SYSCALL_64_null:",
    "    bt rcx, 47",
    "    jc entry_SYSCALL_64",
    "    sysretq",
);

extern "C" {
    fn entry_SYSCALL_64_null();
    fn entry_SYSCALL_64();
}

/// The hooks below exist only when the kernel was booted with the word
/// `bench` on its command line (as `vmm bench` does): an ordinary process
/// must not be able to change how every other process enters the kernel.
static HOOKS_ON: AtomicBool = AtomicBool::new(false);

pub fn init(cmdline: &str) {
    HOOKS_ON.store(cmdline.split_whitespace().any(|w| w == "bench"), Ordering::Relaxed);
}

fn hooks_on() -> bool {
    HOOKS_ON.load(Ordering::Relaxed)
}

/// The null entry's address (the PVM fault path compares against it).
pub fn null_entry() -> u64 {
    entry_SYSCALL_64_null as *const () as u64
}

/// The LSTAR a process runs with: the null entry only for the process that
/// asked for it, so the scheduler restores the real entry for every other
/// one, and for good once the asker exits or is killed.
pub fn lstar_for(null_entry_on: bool) -> u64 {
    if null_entry_on {
        null_entry()
    } else {
        entry_SYSCALL_64 as *const () as u64
    }
}

/// bench_null_entry(on): point this process's LSTAR at the null entry (on
/// = 1) or back at the real one (on = 0). While it is on, every `syscall`
/// of this process returns at once with RAX unchanged, so the benchmark
/// switches back with `int 0x80`, which has its own entry. -EPERM unless
/// booted with `bench`.
pub extern "C" fn sys_bench_null_entry(on: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    if !hooks_on() {
        return -EPERM;
    }
    let p = current();
    p.null_entry = on != 0;
    // Through the scheduler's cache, which the next switch consults: a
    // bare wrmsr here left it stale, and the switch to the next process
    // kept this one's null entry (every `syscall` of every process then
    // returned untouched, exit included).
    crate::sched::set_lstar(lstar_for(p.null_entry));
    0
}

/// hypercall_null(): one `out` to a port the VMM ignores — a round trip out
/// of the VM and back, on top of a system call. -EPERM unless booted with `bench`.
pub extern "C" fn sys_hypercall_null(_: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    if !hooks_on() {
        return -EPERM;
    }
    // SAFETY: the VMM ignores writes to this port.
    unsafe { crate::io::outb(vmm_abi::ports::NULL_HYPERCALL, 0) };
    0
}
