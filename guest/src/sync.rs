//! Where the kernel's state lives when several CPUs run it (xv6:
//! spinlock.c; Linux: include/linux/spinlock.h, include/linux/percpu.h).
//!
//! There is no `static mut` in the kernel. Every piece of state that
//! outlives a call is one of these, and its type says who may touch it:
//!
//! | type | who touches it | e.g. |
//! |---|---|---|
//! | [`SpinLock<T>`] | any CPU, one at a time, interrupts off while held | the process table, the page allocator |
//! | [`CpuLocal<T>`] | each CPU its own copy only (mutation through `Cell`/`RefCell`) | the scheduler's stack, `print!`'s line buffer |
//! | [`BootCell<T>`] | written once on CPU 0 before the others start, then read-only | the boot archive, the vDSO |
//! | [`Owned<T>`] | one owner at a time, handed over by a protocol stated where it is used | a process's private state (its CPU's) |
//! | atomics | anyone; counters and flags, some read by the VMM by symbol | `TIMER_TICKS`, `SYSCALL_COUNTS` |
//!
//! The per-CPU block the syscall entry and the VMM read (`percpu.rs`) is
//! reached through GS, one per CPU, like `CpuLocal`.
//!
//! Interrupts: the kernel runs with IF clear everywhere except the idle
//! loop's `sti; hlt` (interrupt and `syscall` entries clear it), so an
//! interrupt handler never runs on a CPU while that CPU holds a lock or a
//! borrow of its `CpuLocal` state. [`SpinLock::lock`] still turns interrupts
//! off and counts nesting, as xv6's `push_off`/`pop_off` do, so the rule
//! does not depend on every caller remembering it.

use crate::percpu;
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};
use vmm_abi::layout::MAX_CPUS;

/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;

fn read_rflags() -> u64 {
    let r: u64;
    // SAFETY: pushfq/pop read RFLAGS and touch only the stack.
    unsafe { core::arch::asm!("pushfq", "pop {}", out(reg) r, options(nomem, preserves_flags)) };
    r
}

/// Interrupts off, nesting counted: the first `push_off` remembers whether
/// they were on, the last `pop_off` turns them back on if so (xv6).
pub fn push_off() {
    let was_on = read_rflags() & RFLAGS_IF != 0;
    // SAFETY: cli only masks interrupts on this CPU.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
    let c = percpu::cpu();
    if c.noff.get() == 0 {
        c.intena.set(was_on);
    }
    c.noff.set(c.noff.get() + 1);
}

/// Undo one [`push_off`].
pub fn pop_off() {
    let c = percpu::cpu();
    let n = c.noff.get();
    if n == 0 {
        panic!("pop_off without push_off");
    }
    c.noff.set(n - 1);
    if n == 1 && c.intena.get() {
        // SAFETY: interrupts were on before the first push_off.
        unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
    }
}

/// A spinning mutual-exclusion lock. Held with interrupts off on the
/// holding CPU, never across a wait for another CPU (a CPU spinning here
/// with interrupts off could not answer that CPU's IPI). `xchg` takes it:
/// PVM's ring-0 emulator runs locked instructions, but not `cmpxchg16b`.
pub struct SpinLock<T> {
    locked: AtomicBool,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out the data to one CPU at a time.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub const fn new(data: T) -> SpinLock<T> {
        SpinLock {
            locked: AtomicBool::new(false),
            data: UnsafeCell::new(data),
        }
    }

    pub fn lock(&self) -> SpinGuard<'_, T> {
        push_off();
        while self.locked.swap(true, Ordering::Acquire) {
            while self.locked.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
        SpinGuard { lock: self }
    }

    /// Release a lock whose guard was forgotten: the scheduler's hand-off,
    /// where the lock is taken on one stack and released on another (xv6's
    /// `sched`/`scheduler`; see sched.rs).
    ///
    /// # Safety
    /// The lock must be held on this CPU's behalf with no live guard, and
    /// this CPU's `push_off` count must include the acquisition.
    pub unsafe fn force_unlock(&self) {
        self.locked.store(false, Ordering::Release);
        pop_off();
    }
}

/// Access to a [`SpinLock`]'s data; dropping it releases the lock.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in deref; one guard per acquisition.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard's acquisition, on this CPU.
        unsafe { self.lock.force_unlock() }
    }
}

/// One `T` per CPU; [`CpuLocal::get`] gives the running CPU's. Only its own
/// CPU ever touches an element, so `T` needs no lock; it mutates through
/// `Cell`/`RefCell`, which also keep an interrupt handler on the same CPU
/// honest. A reference must not be kept across a context switch: the
/// process may come back on another CPU.
#[repr(transparent)]
pub struct CpuLocal<T>([T; MAX_CPUS]);

// SAFETY: each element is touched by one CPU only (get() indexes by the
// running CPU's number), as a thread-local is by one thread.
unsafe impl<T> Sync for CpuLocal<T> {}

impl<T> CpuLocal<T> {
    pub const fn new(each: [T; MAX_CPUS]) -> CpuLocal<T> {
        CpuLocal(each)
    }

    /// This CPU's element.
    pub fn get(&self) -> &T {
        &self.0[percpu::this_cpu()]
    }
}

/// A value set once on CPU 0 during boot, before the other CPUs are let
/// go (`smp::start_aps` publishes it to them), and only read afterwards.
pub struct BootCell<T> {
    set: AtomicBool,
    value: UnsafeCell<Option<T>>,
}

// SAFETY: written once before any other CPU reads it, read-only after.
unsafe impl<T: Sync> Sync for BootCell<T> {}

impl<T> BootCell<T> {
    pub const fn new() -> BootCell<T> {
        BootCell {
            set: AtomicBool::new(false),
            value: UnsafeCell::new(None),
        }
    }

    /// Set the value; a second call is a kernel bug.
    pub fn set(&self, v: T) {
        if self.set.load(Ordering::Acquire) {
            panic!("BootCell set twice");
        }
        // SAFETY: boot, CPU 0 alone, and nobody has read it (not yet set).
        unsafe { *self.value.get() = Some(v) };
        self.set.store(true, Ordering::Release);
    }

    pub fn get(&self) -> Option<&T> {
        if !self.set.load(Ordering::Acquire) {
            return None;
        }
        // SAFETY: set, and never written again.
        unsafe { (*self.value.get()).as_ref() }
    }
}

/// A value with exactly one owner at a time and no lock: the owner is
/// decided by a protocol that each use states in its `SAFETY` comment (a
/// process's private state belongs to the CPU running it, or to its spawner
/// before it is runnable; the hand-over goes through the process table's
/// lock).
pub struct Owned<T>(UnsafeCell<T>);

// SAFETY: one owner at a time, hand-overs ordered by a lock (see above).
unsafe impl<T: Send> Sync for Owned<T> {}

impl<T> Owned<T> {
    pub const fn new(v: T) -> Owned<T> {
        Owned(UnsafeCell::new(v))
    }

    /// # Safety
    /// The caller is the owner, and holds no other reference to the value.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get(&self) -> &mut T {
        &mut *self.0.get()
    }
}
