//! The scheduler and the context switch (xv6: swtch.S, proc.c scheduler()).
//!
//! The scheduler loop runs on the boot stack. Switching into a process loads
//! its CR3, points TSS.RSP0 and the syscall entry at its kernel stack,
//! restores its FS base and SSE state, and `swtch`es stacks; the process comes
//! back here when it blocks, yields, exits or is preempted by the timer.
//! With nothing to run, the CPU halts (`sti; hlt`) until an interrupt wakes
//! a sleeper or a reader.

use crate::percpu::percpu;
use crate::process::{self, State};
use crate::{cpu, paging, power, println};
use vmm_abi::frame::TSS_RSP0;
use vmm_abi::layout::{phys, phys_to_virt, selector};

core::arch::global_asm!(
    // swtch(save: *mut u64 [rdi], load: u64 [rsi]): save the callee-saved
    // registers on this stack, store RSP, load the other stack, restore.
    ".global swtch",
    "swtch:",
    "    push rbp",
    "    push rbx",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    mov [rdi], rsp",
    "    mov rsp, rsi",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbx",
    "    pop rbp",
    "    ret",
    // A new process's first return: RSP is at an iretq frame for ring 3.
    ".global ret_to_user_first",
    "ret_to_user_first:",
    "    xor eax, eax",
    "    xor ebx, ebx",
    "    xor ecx, ecx",
    "    xor edx, edx",
    "    xor esi, esi",
    "    xor edi, edi",
    "    xor ebp, ebp",
    "    xor r8d, r8d",
    "    xor r9d, r9d",
    "    xor r10d, r10d",
    "    xor r11d, r11d",
    "    xor r12d, r12d",
    "    xor r13d, r13d",
    "    xor r14d, r14d",
    "    xor r15d, r15d",
    "    swapgs",
    "    iretq",
);

extern "C" {
    fn swtch(save: *mut u64, load: u64);
    fn ret_to_user_first();
}

/// Kernel RSP of the scheduler loop while a process runs.
static mut SCHED_RSP: u64 = 0;
/// Times a timer tick took the CPU from a process (the VMM reads it by symbol).
#[no_mangle]
pub static mut PREEMPTIONS: u64 = 0;
/// Times the idle loop halted the CPU.
#[no_mangle]
pub static mut IDLE_HALTS: u64 = 0;

/// Make every process in a state `pick` selects runnable.
pub fn wake(pick: impl Fn(State) -> bool) {
    for p in process::table().procs.iter_mut() {
        if pick(p.state) {
            p.state = State::Runnable;
        }
    }
}

/// Wake the sleepers that are due at `now` (monotonic ns).
pub fn wake_sleepers(now: u64) {
    for p in process::table().procs.iter_mut() {
        if p.state == State::Sleeping && p.wake_at <= now {
            p.state = State::Runnable;
        }
    }
}

/// Is a process other than the current one waiting for the CPU?
pub fn others_runnable() -> bool {
    let t = process::table();
    t.procs
        .iter()
        .enumerate()
        .any(|(i, p)| i != t.current && p.state == State::Runnable)
}

/// Block the current process until `deadline` (monotonic ns). Without
/// interrupts nothing would wake it: it yields until the time has come.
pub fn sleep_until(deadline: u64) {
    while crate::time::monotonic_ns() < deadline {
        let p = process::current();
        if crate::lapic::present() {
            p.wake_at = deadline;
            p.state = State::Sleeping;
        }
        schedule();
    }
}

/// Halt until the next interrupt. `sti` takes effect after the next
/// instruction, so no interrupt can slip in between and leave the CPU
/// halted with a wake-up already handled.
fn idle() {
    // SAFETY: one CPU, IF clear; the handlers run on this stack and return here.
    unsafe {
        IDLE_HALTS += 1;
        core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack));
    }
}

/// Lay out a new kernel stack so that `swtch` to it "returns" into ring 3 at
/// `entry` with `user_rsp`. Returns the RSP to hand to `swtch`.
pub fn initial_kernel_stack(top: u64, entry: u64, user_rsp: u64) -> u64 {
    let frame: [u64; 12] = [
        0,
        0,
        0,
        0,
        0,
        0, // r15 r14 r13 r12 rbx rbp for swtch
        ret_to_user_first as *const () as u64,
        entry,
        u64::from(selector::USER_CS),
        0x202, // RFLAGS: IF set as in any user process, reserved bit 1
        user_rsp,
        u64::from(selector::USER_DS),
    ];
    let rsp = top - 8 * frame.len() as u64;
    // SAFETY: the kernel stack is ours and has room for the frame.
    unsafe { core::ptr::copy_nonoverlapping(frame.as_ptr(), rsp as *mut u64, frame.len()) };
    rsp
}

/// Give the CPU back to the scheduler loop (the caller has set its state).
/// Point LSTAR at `lstar`, skipping the (emulated, on PVM) wrmsr when it
/// already is. Every write of LSTAR goes through here: the cache in the
/// per-CPU block must never be stale, or a switch would skip the write and
/// leave one process's entry (the bench null entry) to the next.
pub fn set_lstar(lstar: u64) {
    if percpu().lstar != lstar {
        cpu::wrmsr(cpu::MSR_LSTAR, lstar);
        percpu().lstar = lstar;
    }
}

pub fn schedule() {
    let p = process::current();
    // SAFETY: fxsave64 into the process's 16-byte-aligned FXSAVE area.
    unsafe {
        core::arch::asm!("fxsave64 [{}]", in(reg) p.fx.0.as_mut_ptr(), options(nostack));
        swtch(&mut p.saved_rsp, SCHED_RSP);
    }
}

/// Give others a turn (sched_yield).
pub fn yield_now() {
    schedule();
}

fn switch_to(slot: usize) {
    let t = process::table();
    t.current = slot;
    let p = &mut t.procs[slot];
    if cpu::read_cr3() != p.pml4 {
        paging::load_cr3(p.pml4);
    }
    // TSS.RSP0 (offset 4) and the syscall entry's stack: this process's kernel stack.
    // SAFETY: the TSS page is the VMM's, mapped RW in the direct map.
    unsafe { *(phys_to_virt(phys::TSS + TSS_RSP0 as u64) as *mut u64) = p.kstack_top };
    percpu().kernel_rsp = p.kstack_top;
    percpu().pid = u64::from(p.pid);
    p.slice_used = 0;
    cpu::wrmsr(cpu::MSR_FS_BASE, p.fs_base);
    // LSTAR is per process only for `vmm bench`'s null entry; skip the
    // (emulated, on PVM) wrmsr when it would not change.
    set_lstar(crate::bench::lstar_for(p.null_entry));
    // SAFETY: the FXSAVE area was filled by fxsave64 or FxArea::initial.
    unsafe {
        core::arch::asm!("fxrstor64 [{}]", in(reg) p.fx.0.as_ptr(), options(nostack));
        swtch(&raw mut SCHED_RSP, p.saved_rsp);
    }
}

/// Run processes round-robin until init (pid 1) exits; its status ends the VM.
pub fn run() -> ! {
    let mut last = 0;
    loop {
        let t = process::table();
        let init = t.procs.iter().find(|p| p.pid == 1);
        if let Some(State::Zombie(status)) = init.map(|p| p.state) {
            power::exit_vm(vm_status(status));
        }
        let next = (1..=process::MAX_PROCS)
            .map(|i| (last + i) % process::MAX_PROCS)
            .find(|&s| t.procs[s].state == State::Runnable);
        match next {
            Some(s) => {
                last = s;
                switch_to(s);
            }
            // Someone sleeps or waits for input: an interrupt will wake them.
            None if crate::lapic::present()
                && t.procs
                    .iter()
                    .any(|p| matches!(p.state, State::Sleeping | State::ConsoleWait)) =>
            {
                idle()
            }
            None => {
                println!("kernel: deadlock: no process can run");
                power::panic_vm();
            }
        }
    }
}

pub use vmm_abi::wait::vm_status;
