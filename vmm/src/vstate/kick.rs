//! Stopping the vCPUs: stop requests, and the kick that gets every vCPU out
//! of KVM_RUN to see them. The one mechanism for every stop: the VMM thread
//! (event_loop.rs: `--timeout`, SIGINT/SIGTERM, gdb's Ctrl-C) asks through
//! it, and so does any vCPU whose exit ends the run for the others
//! ([`Kicker::end`]: the exit port, a panic, a triple fault, a KVM error on
//! any CPU; the first outcome wins and names its CPU).
//!
//! Every vCPU thread — vCPU 0 on the main thread, each AP on its own —
//! registers (its thread id and the address of its kvm_run `immediate_exit`
//! byte) when it runs. A kick sets `immediate_exit` and sends the thread
//! [`kick_signal`]: a vCPU inside KVM_RUN returns EINTR at the signal; one
//! between two KVM_RUNs (handling an exit) finds `immediate_exit` set and
//! KVM returns EINTR at its next entry. The vCPU clears `immediate_exit`
//! after EINTR and looks for the request before every KVM_RUN, so a kick
//! made after its look still stops the next entry: no kick is lost, and
//! nothing re-kicks in a loop.

use crate::vstate::vm::Outcome;
use kvm_ioctls::VcpuFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use vmm_sys_util::signal;

/// The signal that interrupts KVM_RUN (seccomp/filters.rs lets tgkill send only this).
pub fn kick_signal() -> libc::c_int {
    signal::SIGRTMIN() + 1
}

/// Why the guest must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `--timeout` expired.
    Timeout,
    /// The user interrupted a guest a debugger runs (Ctrl-C, gdb's
    /// interrupt): the guest stops and can be resumed.
    Interrupt,
    /// SIGINT, SIGTERM, or Ctrl-C at a raw terminal: the run ends, vmm
    /// reports and then dies of this signal.
    Signal(i32),
    /// A vCPU's exit ended the run for every vCPU; the outcome is in
    /// [`Kicker::outcome`]. Never cleared: an ended guest stays ended.
    Ended,
}

impl Stop {
    fn encode(self) -> u32 {
        match self {
            Stop::Timeout => 1,
            Stop::Interrupt => 2,
            Stop::Ended => 3,
            Stop::Signal(s) => 0x100 | (s as u32 & 0xff),
        }
    }

    fn decode(v: u32) -> Option<Stop> {
        match v {
            0 => None,
            1 => Some(Stop::Timeout),
            2 => Some(Stop::Interrupt),
            3 => Some(Stop::Ended),
            v => Some(Stop::Signal((v & 0xff) as i32)),
        }
    }
}

/// What SIGINT (and Ctrl-C at a raw terminal) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptPolicy {
    /// `vmm run`, `vmm trace`: stop the VM, report, die of the signal
    /// (SIGTERM is caught the same way).
    Stop,
    /// `vmm debug`: stop the guest and return to the prompt.
    Interrupt,
}

/// One vCPU as the kicker sees it: its host thread and where its
/// `kvm_run.immediate_exit` byte is.
struct VcpuEntry {
    thread: libc::pthread_t,
    immediate_exit: *mut u8,
    /// Inside a run (between the stop check and the return): only then is
    /// it kicked, so a kick never lands on a thread waiting at a prompt.
    running: AtomicBool,
}

// SAFETY: the pointer is into the vCPU's kvm_run mapping, which outlives the
// entry (see `Kicker::register`); it is only written atomically.
unsafe impl Send for VcpuEntry {}
// SAFETY: as above; `running` is atomic and the rest never changes.
unsafe impl Sync for VcpuEntry {}

/// Stop requests, the vCPUs to kick for them, and how the run ended.
#[derive(Default)]
pub struct Kicker {
    request: AtomicU32,
    vcpus: Mutex<Vec<Arc<VcpuEntry>>>,
    policy: AtomicU8,
    /// The first outcome of the run, and the vCPU whose thread recorded it.
    ended: Mutex<Option<(usize, Outcome)>>,
}

impl Kicker {
    /// Ask every vCPU to stop; the first request wins until it is taken.
    /// The calling thread's own vCPU, if it has one, is not kicked: it is
    /// not in KVM_RUN, and it sees the request at its next look.
    pub fn stop(&self, why: Stop) {
        let _ = self
            .request
            .compare_exchange(0, why.encode(), Ordering::SeqCst, Ordering::SeqCst);
        self.kick();
    }

    /// Kick every running vCPU but the caller's.
    fn kick(&self) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        for v in self.lock_vcpus().iter() {
            if v.running.load(Ordering::SeqCst) && v.thread != me {
                // SAFETY: immediate_exit points into the live kvm_run page
                // (the registration is dropped before the VcpuFd); a u8 has
                // no alignment needs. KVM reads it at KVM_RUN's entry.
                unsafe { AtomicU8::from_ptr(v.immediate_exit).store(1, Ordering::SeqCst) };
                // SAFETY: the thread is alive while it is registered. An
                // error (it just exited) leaves nothing to kick.
                unsafe { libc::pthread_kill(v.thread, kick_signal()) };
            }
        }
    }

    /// The pending request, left pending.
    pub fn pending(&self) -> Option<Stop> {
        Stop::decode(self.request.load(Ordering::SeqCst))
    }

    /// The run ended with `outcome` on vCPU `cpu`, unless something ended it
    /// first (the first outcome wins): record it and stop every other vCPU.
    /// [`Stop::Ended`] replaces whatever request was pending: the run is
    /// over, and a timeout or signal that came as the guest ended loses the
    /// race to the guest's own outcome.
    pub fn end(&self, cpu: usize, outcome: Outcome) {
        self.lock_ended().get_or_insert((cpu, outcome));
        self.request.store(Stop::Ended.encode(), Ordering::SeqCst);
        self.kick();
    }

    /// How the run ended, and on which vCPU (None: it has not).
    pub fn outcome(&self) -> Option<(usize, Outcome)> {
        self.lock_ended().clone()
    }

    // A vCPU thread that panicked while holding a lock leaves plain data:
    // the lists stay usable.
    fn lock_vcpus(&self) -> MutexGuard<'_, Vec<Arc<VcpuEntry>>> {
        self.vcpus.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_ended(&self) -> MutexGuard<'_, Option<(usize, Outcome)>> {
        self.ended.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Clear `why` if it is the pending request (it was dealt with).
    pub fn clear(&self, why: Stop) {
        let _ = self
            .request
            .compare_exchange(why.encode(), 0, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// What SIGINT (and Ctrl-C at a raw terminal) means from now on.
    pub fn set_policy(&self, policy: InterruptPolicy) {
        self.policy.store(policy as u8 + 1, Ordering::SeqCst);
    }

    /// Some vCPU is in a run.
    pub fn any_running(&self) -> bool {
        self.lock_vcpus().iter().any(|v| v.running.load(Ordering::SeqCst))
    }

    /// SIGINT, SIGTERM, or Ctrl-C at a raw terminal (as SIGINT).
    pub(crate) fn on_interrupt(&self, signal: i32) {
        match self.policy.load(Ordering::SeqCst) {
            p if p == InterruptPolicy::Interrupt as u8 + 1 && signal == libc::SIGINT => self.stop(Stop::Interrupt),
            _ => self.stop(Stop::Signal(signal)),
        }
    }

    /// Register the calling thread as the one running `vcpu`, until the
    /// returned registration is dropped.
    ///
    /// # Safety
    /// The registration must be dropped before `vcpu` (its kvm_run page is
    /// written by kicks), and only the calling thread may run `vcpu`.
    pub unsafe fn register(self: &Arc<Self>, vcpu: &mut VcpuFd) -> VcpuRegistration {
        let entry = Arc::new(VcpuEntry {
            // SAFETY: pthread_self has no preconditions.
            thread: unsafe { libc::pthread_self() },
            immediate_exit: &mut vcpu.get_kvm_run().immediate_exit,
            running: AtomicBool::new(false),
        });
        self.lock_vcpus().push(entry.clone());
        VcpuRegistration {
            kicker: self.clone(),
            entry,
        }
    }
}

/// A vCPU thread's registration with the kicker (see [`Kicker::register`]).
pub struct VcpuRegistration {
    kicker: Arc<Kicker>,
    entry: Arc<VcpuEntry>,
}

impl VcpuRegistration {
    /// Entering (true) or leaving (false) a run. Entering, check
    /// [`Kicker::pending`] after this call: a request made before it was
    /// not followed by a kick.
    pub fn running(&self, yes: bool) {
        self.entry.running.store(yes, Ordering::SeqCst);
    }

    /// The thread that registered.
    pub fn thread(&self) -> libc::pthread_t {
        self.entry.thread
    }
}

impl Drop for VcpuRegistration {
    fn drop(&mut self) {
        self.kicker.lock_vcpus().retain(|v| !Arc::ptr_eq(v, &self.entry));
    }
}

/// The kick does nothing itself: its arrival makes KVM_RUN return EINTR.
extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Install the kick signal's handler (once per process).
pub fn install_handler() -> std::io::Result<()> {
    static DONE: std::sync::OnceLock<Result<(), i32>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        signal::register_signal_handler(kick_signal(), on_kick).map_err(vmm_sys_util::errno::Error::errno)
    })
    .map_err(std::io::Error::from_raw_os_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_requests_round_trip_and_the_first_one_wins() {
        for s in [
            Stop::Timeout,
            Stop::Interrupt,
            Stop::Signal(libc::SIGINT),
            Stop::Signal(15),
            Stop::Ended,
        ] {
            assert_eq!(Stop::decode(s.encode()), Some(s));
        }
        let k = Kicker::default();
        assert_eq!(k.pending(), None);
        k.stop(Stop::Timeout);
        k.stop(Stop::Signal(2));
        assert_eq!(k.pending(), Some(Stop::Timeout));
        k.clear(Stop::Interrupt);
        assert_eq!(k.pending(), Some(Stop::Timeout), "only the pending request is cleared");
        k.clear(Stop::Timeout);
        assert_eq!(k.pending(), None);
    }

    #[test]
    fn the_first_outcome_wins_and_ends_the_run_for_good() {
        let k = Kicker::default();
        assert_eq!(k.outcome(), None);
        k.end(2, Outcome::Exited(0));
        k.end(0, Outcome::Timeout(std::time::Duration::from_secs(1)));
        assert_eq!(k.outcome(), Some((2, Outcome::Exited(0))));
        assert_eq!(k.pending(), Some(Stop::Ended));
        k.clear(Stop::Timeout);
        k.clear(Stop::Interrupt);
        assert_eq!(k.pending(), Some(Stop::Ended), "an ended run stays ended");
        // An outcome replaces a request nobody took yet.
        let k = Kicker::default();
        k.stop(Stop::Timeout);
        k.end(1, Outcome::KernelPanic);
        k.stop(Stop::Signal(libc::SIGTERM));
        assert_eq!(k.pending(), Some(Stop::Ended));
        assert_eq!(k.outcome(), Some((1, Outcome::KernelPanic)));
    }

    #[test]
    fn sigint_follows_the_policy_and_sigterm_always_stops() {
        let k = Kicker::default();
        k.set_policy(InterruptPolicy::Interrupt);
        k.on_interrupt(libc::SIGINT);
        assert_eq!(k.pending(), Some(Stop::Interrupt));
        k.clear(Stop::Interrupt);
        k.on_interrupt(libc::SIGTERM);
        assert_eq!(k.pending(), Some(Stop::Signal(libc::SIGTERM)));
        let k = Kicker::default();
        k.set_policy(InterruptPolicy::Stop);
        k.on_interrupt(libc::SIGINT);
        assert_eq!(k.pending(), Some(Stop::Signal(libc::SIGINT)));
    }
}
