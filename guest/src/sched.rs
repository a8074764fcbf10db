//! The scheduler and the context switch (xv6: swtch.S, proc.c scheduler()).
//!
//! Every CPU runs the scheduler loop ([`run`]) on its own boot stack.
//! Switching into a process loads its CR3 (unless this CPU still has it:
//! tlb.rs), points this CPU's TSS.RSP0 and the syscall entry at the
//! process's kernel stack, restores its FS base and SSE state, and `swtch`es
//! stacks; the process comes back here when it blocks, yields, exits or is
//! preempted by the timer. A process runs on one CPU at a time: the table's
//! lock is held across every `swtch`, in both directions, so no CPU can
//! pick a process whose registers another CPU is still saving (xv6's rule).
//!
//! ```text
//!   CPU n scheduler: lock ─ pick Runnable ─ Running ─ swtch ─┐        ┌─ unlock ─ loop
//!   process:                     (lock held) ─> unlock … run … lock ─ state ─ swtch
//! ```
//!
//! With nothing to run, the CPU halts (`sti; hlt`) until an interrupt: its
//! timer, IRQ 4, or a reschedule IPI from a CPU that made a process runnable.

use crate::process::{self, State, Table, TABLE};
use crate::sync::SpinGuard;
use crate::{cpu, lapic, percpu, power, println, tlb};
use core::sync::atomic::{AtomicU64, Ordering};
use vmm_abi::frame::TSS_RSP0;
use vmm_abi::irq::RESCHEDULE_VECTOR;
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
    // The scheduler that switched here holds the table's lock for it
    // (sched.rs): release it first (xv6's forkret), on an aligned stack.
    ".global ret_to_user_first",
    "ret_to_user_first:",
    "    sub rsp, 8",
    "    call sched_first_return",
    "    add rsp, 8",
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

/// Times a timer tick took the CPU from a process (the VMM reads it by symbol).
#[no_mangle]
pub static PREEMPTIONS: AtomicU64 = AtomicU64::new(0);
/// Times an idle loop halted its CPU.
#[no_mangle]
pub static IDLE_HALTS: AtomicU64 = AtomicU64::new(0);
/// Bit n: CPU n is idle (halted, or about to halt) and can be woken with a
/// reschedule IPI. Set and read under the table's lock.
static IDLE: AtomicU64 = AtomicU64::new(0);

/// Make every process in a state `pick` selects runnable.
pub fn wake(pick: impl Fn(State) -> bool) {
    let mut t = TABLE.lock();
    for p in t.procs.iter_mut() {
        if pick(p.state) {
            p.state = State::Runnable;
            kick_idle_cpu();
        }
    }
}

/// Wake the sleepers that are due at `now` (monotonic ns).
pub fn wake_sleepers(t: &mut Table, now: u64) {
    for p in t.procs.iter_mut() {
        if p.state == State::Sleeping && p.wake_at <= now {
            p.state = State::Runnable;
            kick_idle_cpu();
        }
    }
}

/// A process became runnable (the caller holds the table's lock): wake one
/// idle CPU other than this one to run it. The CPU is taken off the idle
/// set, so the next wake-up picks another; it puts itself back if it finds
/// nothing to do.
pub fn kick_idle_cpu() {
    let me = 1u64 << percpu::this_cpu();
    let others = IDLE.load(Ordering::Relaxed) & !me;
    if others != 0 {
        let cpu = others.trailing_zeros() as usize;
        IDLE.fetch_and(!(1 << cpu), Ordering::Relaxed);
        lapic::send_ipi(cpu, RESCHEDULE_VECTOR);
    }
}

/// Is a process waiting for a CPU?
pub fn others_runnable(t: &Table) -> bool {
    t.procs.iter().any(|p| p.state == State::Runnable)
}

/// Block the current process until `deadline` (monotonic ns). Without
/// interrupts nothing would wake it: it yields until the time has come.
pub fn sleep_until(deadline: u64) {
    while crate::time::monotonic_ns() < deadline {
        let mut t = TABLE.lock();
        let p = &mut t.procs[process::current_slot()];
        if crate::lapic::present() {
            p.wake_at = deadline;
            p.state = State::Sleeping;
        } else {
            p.state = State::Runnable;
        }
        sched(t);
    }
}

/// Halt until the next interrupt. `sti` takes effect after the next
/// instruction, so no interrupt can slip in between and leave the CPU
/// halted with a wake-up already handled.
fn idle() {
    IDLE_HALTS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: no lock is held and no CpuLocal borrow is live: the handlers
    // run on this stack and return here.
    unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
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

/// Point LSTAR at `lstar`, skipping the (emulated, on PVM) wrmsr when it
/// already is. Every write of LSTAR goes through here: the cache in the
/// per-CPU block must never be stale, or a switch would skip the write and
/// leave one process's entry (the bench null entry) to the next.
pub fn set_lstar(lstar: u64) {
    if percpu::lstar() != lstar {
        // SAFETY: LSTAR is this CPU's syscall entry; both values are entries
        // of this kernel (bench.rs), and this cache is the only writer.
        unsafe { cpu::wrmsr(cpu::MSR_LSTAR, lstar) };
        percpu::set_lstar(lstar);
    }
}

/// Give the CPU back to this CPU's scheduler loop. The caller holds the
/// table's lock (`t`) and has set its process's state to something other
/// than `Running`; the lock stays held across the switch and is released
/// by the scheduler, and taken back for us by whichever CPU's scheduler
/// runs us next, which we release on return.
pub fn sched(mut t: SpinGuard<'static, Table>) {
    // Any other lock would stay held by a process that is not running.
    if percpu::cpu().noff.get() != 1 {
        panic!("sched with a lock besides the table's held");
    }
    let slot = process::current_slot();
    {
        let p = process::current();
        // SAFETY: fxsave64 into the process's 16-byte-aligned FXSAVE area.
        unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) p.fx.0.as_mut_ptr(), options(nostack)) };
    }
    let save = &raw mut t.procs[slot].saved_rsp;
    let intena = percpu::cpu().intena.get();
    let to = percpu::cpu().sched_rsp.get();
    core::mem::forget(t);
    // SAFETY: `save` is in the locked table; `to` is this CPU's scheduler
    // stack, parked in swtch.
    unsafe { swtch(save, to) };
    // Back, perhaps on another CPU, whose scheduler took the lock for us.
    percpu::cpu().intena.set(intena);
    process::current().slice_used = 0;
    // SAFETY: the lock is held for us, with no guard (see above).
    unsafe { TABLE.force_unlock() };
}

/// A new process's first instructions (ret_to_user_first): the lock
/// release that `sched` would have done.
#[no_mangle]
extern "C" fn sched_first_return() {
    percpu::cpu().intena.set(false);
    // SAFETY: the scheduler switched here holding the lock for us.
    unsafe { TABLE.force_unlock() };
}

/// Give others a turn (sched_yield).
pub fn yield_now() {
    let mut t = TABLE.lock();
    t.procs[process::current_slot()].state = State::Runnable;
    sched(t);
}

/// Make this CPU ready to run the process in `slot`: its address space,
/// stacks, FS base, LSTAR and SSE state. Called with the table's lock held,
/// the process marked `Running` here.
fn switch_to(slot: usize) {
    // SAFETY: the process is Running on this CPU (see Task).
    let p = unsafe { process::task(slot) };
    tlb::switch_mm(slot, p.pml4);
    // This CPU's TSS.RSP0 and the syscall entry's stack: the process's kernel stack.
    let rsp0 = phys_to_virt(phys::tss(percpu::this_cpu()) + TSS_RSP0 as u64);
    // SAFETY: the TSS page is the VMM's, mapped RW in the direct map; only
    // this CPU uses its TSS. Unaligned: RSP0 is at offset 4.
    unsafe { (rsp0 as *mut u64).write_unaligned(p.kstack_top) };
    percpu::set_kernel_rsp(p.kstack_top);
    // SAFETY: FS_BASE is this process's, a user address (arch_prctl checked).
    unsafe { cpu::wrmsr(cpu::MSR_FS_BASE, p.fs_base) };
    // LSTAR is per process only for `vmm bench`'s null entry; skip the
    // (emulated, on PVM) wrmsr when it would not change.
    set_lstar(crate::bench::lstar_for(p.null_entry));
    // SAFETY: the FXSAVE area was filled by fxsave64 or FxArea::initial.
    unsafe { core::arch::asm!("fxrstor64 [{}]", in(reg) p.fx.0.as_ptr(), options(nostack)) };
}

/// Every CPU's scheduler loop: run processes round-robin until init (pid 1)
/// exits; its status ends the VM, whichever CPU sees it.
pub fn run() -> ! {
    loop {
        let mut t = TABLE.lock();
        let init = t.procs.iter().find(|p| p.pid == 1);
        if let Some(State::Zombie(status)) = init.map(|p| p.state) {
            power::exit_vm(vm_status(status));
        }
        let c = percpu::cpu();
        let last = c.last.get();
        let next = (1..=process::MAX_PROCS)
            .map(|i| (last + i) % process::MAX_PROCS)
            .find(|&s| t.procs[s].state == State::Runnable);
        match next {
            Some(s) => {
                c.last.set(s);
                let me = percpu::this_cpu();
                let p = &mut t.procs[s];
                p.state = State::Running;
                p.on_cpu = me;
                let load = p.saved_rsp;
                percpu::set_pid(u64::from(p.pid));
                c.current.set(Some(s));
                switch_to(s);
                // SAFETY: `load` is the process's stack as its sched (or
                // initial_kernel_stack) left it; the lock stays held for it.
                unsafe { swtch(percpu::cpu().sched_rsp.as_ptr(), load) };
                // The process gave the CPU back, holding the lock for us.
                percpu::cpu().current.set(None);
                drop(t);
            }
            // Someone sleeps, waits for input, or runs on another CPU and
            // may wake us: halt until an interrupt says to look again.
            None if crate::lapic::present()
                && t.procs.iter().any(|p| {
                    matches!(
                        p.state,
                        State::Sleeping | State::ConsoleWait | State::Running | State::Embryo
                    )
                }) =>
            {
                let me = percpu::this_cpu();
                IDLE.fetch_or(1 << me, Ordering::Relaxed);
                drop(t);
                // Tickless idle for the APs (Linux: NOHZ idle): a tick
                // costs ~0.6 ms of emulated ring 0 on PVM, for nothing on an
                // idle CPU. CPU 0 keeps ticking: it wakes the sleepers, and
                // a reschedule IPI brings an AP back.
                if me != 0 {
                    lapic::mask_timer(true);
                }
                idle();
                if me != 0 {
                    lapic::mask_timer(false);
                }
                IDLE.fetch_and(!(1 << me), Ordering::Relaxed);
            }
            // Before init starts (an AP let go early) there is nothing yet.
            None if !crate::smp::started() => {
                drop(t);
                idle();
            }
            None => {
                println!("kernel: deadlock: no process can run");
                power::panic_vm();
            }
        }
    }
}

pub use vmm_abi::wait::vm_status;
