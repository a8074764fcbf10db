//! Address spaces on several CPUs, and TLB shootdown (Linux:
//! arch/x86/mm/tlb.c, in miniature).
//!
//! A CPU that stops running a process keeps its page tables in CR3 until it
//! runs another one ("lazy" TLB, as Linux does): switching back costs no CR3
//! load, but the CPU's TLB may still hold that address space's
//! translations. So each process slot has the set of CPUs that have its
//! address space loaded, and a CPU that unmaps pages of the process it runs
//! first makes every other CPU in the set leave it (a TLB IPI: the CPU loads
//! the kernel's page tables and drops out of the set), waiting until they
//! have. Only then are the pages changed and freed: no CPU can still reach
//! them through a stale translation. Exit does the same before freeing the
//! whole address space. A process runs on one CPU at a time and has one
//! thread, so only lazy holders are ever asked.
//!
//! ```text
//!   CPU 0 (munmap)                      CPU 1 (had the process before)
//!   LEAVE[1] |= slot; IPI 0xfc ───────> serve(): CR3 <- kernel; LOADED_ON[slot] -= 1
//!   wait until LEAVE[1] & slot == 0 <── LEAVE[1] &= !slot
//!   unmap, invlpg, free pages
//! ```

use crate::{lapic, paging, percpu};
use core::sync::atomic::{AtomicU64, Ordering};
use vmm_abi::irq::TLB_VECTOR;
use vmm_abi::layout::MAX_CPUS;

const MAX_PROCS: usize = crate::process::MAX_PROCS;
const _: () = assert!(MAX_PROCS <= 64 && MAX_CPUS <= 64);

/// Bit n of entry s: CPU n has slot s's address space in CR3. Each CPU sets
/// and clears only its own bit.
static LOADED_ON: [AtomicU64; MAX_PROCS] = [const { AtomicU64::new(0) }; MAX_PROCS];
/// Bit s of entry n: CPU n is asked to leave slot s's address space.
static LEAVE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// TLB shootdowns sent (the VMM reads it by symbol).
#[no_mangle]
pub static TLB_SHOOTDOWNS: AtomicU64 = AtomicU64::new(0);

/// Load slot `slot`'s address space (`pml4`) on this CPU, unless it still is.
pub fn switch_mm(slot: usize, pml4: u64) {
    let c = percpu::cpu();
    if c.loaded.get() == Some(slot) {
        return;
    }
    let me = 1u64 << percpu::this_cpu();
    if let Some(old) = c.loaded.get() {
        LOADED_ON[old].fetch_and(!me, Ordering::SeqCst);
    }
    LOADED_ON[slot].fetch_or(me, Ordering::SeqCst);
    c.loaded.set(Some(slot));
    // SAFETY: a process's PML4 shares the kernel half (paging.rs).
    unsafe { paging::load_cr3(pml4) };
}

/// Leave whatever address space this CPU has loaded: back to the kernel's
/// page tables, out of its slot's set.
pub fn leave_mm() {
    let c = percpu::cpu();
    if let Some(old) = c.loaded.take() {
        // SAFETY: the kernel's own PML4, which every address space's upper half copies.
        unsafe { paging::load_cr3(paging::kernel_pml4()) };
        LOADED_ON[old].fetch_and(!(1u64 << percpu::this_cpu()), Ordering::SeqCst);
    }
}

/// Make every other CPU that has slot `slot`'s address space loaded leave
/// it, and wait until they have. Call it before changing or freeing the
/// slot's mappings, holding no lock: a CPU spinning for a lock with
/// interrupts off could not take the IPI. While waiting, this CPU answers
/// requests addressed to it, so two CPUs shooting at each other both finish.
pub fn shootdown(slot: usize) {
    let me = percpu::this_cpu();
    let others = LOADED_ON[slot].load(Ordering::SeqCst) & !(1u64 << me);
    if others == 0 {
        return;
    }
    TLB_SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
    let bit = 1u64 << slot;
    for cpu in (0..MAX_CPUS).filter(|c| others & (1 << c) != 0) {
        LEAVE[cpu].fetch_or(bit, Ordering::SeqCst);
        lapic::send_ipi(cpu, TLB_VECTOR);
    }
    for cpu in (0..MAX_CPUS).filter(|c| others & (1 << c) != 0) {
        while LEAVE[cpu].load(Ordering::SeqCst) & bit != 0 {
            serve();
            core::hint::spin_loop();
        }
    }
}

/// Answer this CPU's leave requests (the TLB IPI's handler, and CPUs
/// waiting in [`shootdown`]).
pub fn serve() {
    let me = percpu::this_cpu();
    let req = LEAVE[me].load(Ordering::SeqCst);
    if req == 0 {
        return;
    }
    if percpu::cpu().loaded.get().is_some_and(|s| req & (1 << s) != 0) {
        leave_mm();
    }
    LEAVE[me].fetch_and(!req, Ordering::SeqCst);
}
