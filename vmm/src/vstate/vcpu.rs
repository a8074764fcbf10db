//! vCPU threads: one host thread per vCPU running KVM_RUN (Firecracker and
//! Cloud Hypervisor do the same). vCPU 0, the bootstrap processor, runs on
//! the thread that built the VM (where the debugger and tracers live); the
//! application processors each get a thread of their own for the length of
//! a run. What they share — guest memory, the UART and console port — is
//! behind a mutex in [`Shared`]. Whichever vCPU ends the run (the exit port,
//! a panic, a triple fault, a KVM error) records the outcome and stops all
//! the others ([`VcpuStopper::end`]); so can any other thread (a timeout).

use crate::devices::serial::{Com1, COM1_PORTS};
use crate::vstate::vm::{kick_signal, Outcome};
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use vm_memory::GuestMemoryMmap;
use vmm_abi::ports;

/// Stops every vCPU of a VM: sets each one's `kvm_run.immediate_exit`, so
/// a vCPU about to enter KVM_RUN returns at once, and sends each vCPU
/// thread the kick signal, so one inside KVM_RUN returns with EINTR. No
/// re-kick loop is needed: `immediate_exit` stays set. Clone it to hand it
/// to another thread (an event loop, a watchdog).
#[derive(Clone)]
pub struct VcpuStopper(Arc<Stop>);

struct Stop {
    stopping: AtomicBool,
    vcpus: Mutex<Vec<Kick>>,
    /// The first outcome, and the vCPU it came from (or [`NOT_A_VCPU`]).
    ended: Mutex<Option<(usize, Outcome)>>,
}

/// The `cpu` of an outcome that no vCPU produced (a timeout, Ctrl-C).
pub const NOT_A_VCPU: usize = usize::MAX;

/// How to reach one vCPU: its kvm_run's `immediate_exit` byte and the
/// thread running it, once it runs.
struct Kick {
    immediate_exit: usize,
    thread: Option<libc::pthread_t>,
}

extern "C" fn on_kick(_: libc::c_int) {}

impl VcpuStopper {
    /// For these vCPUs (their kvm_run mappings live as long as the fds,
    /// which the VM keeps until after every thread has stopped).
    pub fn new(vcpus: &mut [VcpuFd]) -> VcpuStopper {
        let kicks = vcpus
            .iter_mut()
            .map(|v| Kick {
                immediate_exit: &raw mut v.get_kvm_run().immediate_exit as usize,
                thread: None,
            })
            .collect();
        VcpuStopper(Arc::new(Stop {
            stopping: AtomicBool::new(false),
            vcpus: Mutex::new(kicks),
            ended: Mutex::new(None),
        }))
    }

    /// The calling thread runs vCPU `cpu` from now on. The kick signal gets
    /// a handler that does nothing (its default action would end vmm), with
    /// no SA_RESTART, so a blocked KVM_RUN returns EINTR.
    pub fn register_thread(&self, cpu: usize) {
        static HANDLER: std::sync::Once = std::sync::Once::new();
        // SAFETY: installing a handler that does nothing.
        HANDLER.call_once(|| unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        });
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        if let Some(k) = self.lock().get_mut(cpu) {
            k.thread = Some(me);
        }
    }

    /// The calling thread no longer runs vCPU `cpu` (it is about to end).
    pub fn unregister_thread(&self, cpu: usize) {
        if let Some(k) = self.lock().get_mut(cpu) {
            k.thread = None;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Kick>> {
        self.0.vcpus.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Kick every vCPU out of KVM_RUN and keep it out.
    pub fn stop_all(&self) {
        self.stop_others(NOT_A_VCPU)
    }

    /// Kick every vCPU but `me` (the caller's own, which is not in KVM_RUN).
    fn stop_others(&self, me: usize) {
        self.0.stopping.store(true, Ordering::SeqCst);
        for (_, k) in self.lock().iter().enumerate().filter(|(i, _)| *i != me) {
            // SAFETY: the byte lies in a kvm_run mapping that outlives the
            // stopper's use (see new); KVM reads it at the next entry, and an
            // atomic store is how another thread may write it.
            unsafe { (*(k.immediate_exit as *const AtomicU8)).store(1, Ordering::SeqCst) };
            if let Some(t) = k.thread {
                // SAFETY: a registered thread is alive until it unregisters,
                // which takes the same lock.
                unsafe { libc::pthread_kill(t, kick_signal()) };
            }
        }
    }

    /// Has a stop been asked for?
    pub fn stopping(&self) -> bool {
        self.0.stopping.load(Ordering::SeqCst)
    }

    /// The run ended with `outcome` on vCPU `cpu` (or [`NOT_A_VCPU`]),
    /// unless something ended it first: record it and stop the other vCPUs.
    pub fn end(&self, cpu: usize, outcome: Outcome) {
        let mut e = self.0.ended.lock().unwrap_or_else(|e| e.into_inner());
        if e.is_none() {
            *e = Some((cpu, outcome));
        }
        drop(e);
        self.stop_others(cpu);
    }

    /// How the run ended, and where.
    pub fn outcome(&self) -> Option<(usize, Outcome)> {
        self.0.ended.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the vCPUs of a running VM share.
pub struct Shared<'a> {
    pub mem: &'a GuestMemoryMmap,
    /// The UART and the console port's output: one vCPU at a time.
    pub com1: Mutex<&'a mut Com1>,
    pub stopper: VcpuStopper,
}

impl<'a> Shared<'a> {
    pub fn new(mem: &'a GuestMemoryMmap, com1: &'a mut Com1, stopper: VcpuStopper) -> Shared<'a> {
        Shared {
            mem,
            com1: Mutex::new(com1),
            stopper,
        }
    }

    pub fn com1(&self) -> MutexGuard<'_, &'a mut Com1> {
        self.com1.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An `out` to `port`: the guest's devices. Some(outcome) ends the run.
    pub fn pio_out(&self, port: u16, data: &[u8]) -> Option<Outcome> {
        let value = data.first().copied().unwrap_or(0);
        match port {
            p if COM1_PORTS.contains(&p) => {
                self.com1().pio_write(p, value);
                None
            }
            ports::EXIT => Some(Outcome::Exited(value)),
            ports::PANIC => Some(Outcome::KernelPanic),
            ports::NULL_HYPERCALL => None,
            ports::CONSOLE_WRITE => {
                // The descriptor's address, zero-extended from however wide
                // the `out` was.
                let mut a = [0u8; 4];
                let n = data.len().min(4);
                a[..n].copy_from_slice(&data[..n]);
                self.com1().console_write(self.mem, u32::from_le_bytes(a).into());
                None
            }
            p => Some(Outcome::Unhandled(format!("out to port {p:#x} (value {value:#x})"))),
        }
    }

    /// An `in` from `port`.
    pub fn pio_in(&self, port: u16, data: &mut [u8]) -> Option<Outcome> {
        if COM1_PORTS.contains(&port) {
            let v = self.com1().pio_read(port);
            data.iter_mut().for_each(|b| *b = v);
            None
        } else if port == ports::CONSOLE_EOF {
            let v = u8::from(self.com1().input_ended());
            data.iter_mut().for_each(|b| *b = v);
            None
        } else {
            Some(Outcome::Unhandled(format!("in from port {port:#x}")))
        }
    }
}

/// What a vCPU thread counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct VcpuStats {
    pub exits: u64,
    pub pio_exits: u64,
    pub in_kvm_run: Duration,
}

/// The exits every vCPU handles alike; None for those only vCPU 0's loop
/// knows (debug exits, EINTR). Some(Some(outcome)) ends the run.
pub fn common_exit(exit: &mut VcpuExit, shared: &Shared, stats: &mut VcpuStats) -> Option<Option<Outcome>> {
    Some(match exit {
        VcpuExit::IoOut(port, data) => {
            stats.pio_exits += 1;
            shared.pio_out(*port, data)
        }
        VcpuExit::IoIn(port, data) => {
            stats.pio_exits += 1;
            shared.pio_in(*port, data)
        }
        // With the in-kernel LAPIC a `hlt` waits inside KVM for the next
        // interrupt; only a guest without one exits here.
        VcpuExit::Hlt => Some(Outcome::Unhandled(
            "hlt with no interrupt source: the guest would sleep forever".into(),
        )),
        VcpuExit::Shutdown => Some(Outcome::TripleFault),
        VcpuExit::FailEntry(reason, cpu) => Some(Outcome::KvmError(format!(
            "VM entry failed (hardware reason {reason:#x}, cpu {cpu})"
        ))),
        VcpuExit::MmioRead(addr, _) => Some(Outcome::Unhandled(format!("MMIO read at {addr:#x}: no device there"))),
        VcpuExit::MmioWrite(addr, _) => Some(Outcome::Unhandled(format!("MMIO write at {addr:#x}: no device there"))),
        _ => return None,
    })
}

/// Decode KVM_EXIT_INTERNAL_ERROR's suberror.
pub fn internal_error(vcpu: &mut VcpuFd) -> String {
    // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the active member.
    let sub = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
    let what = match sub {
        kvm_bindings::KVM_INTERNAL_ERROR_EMULATION => {
            "KVM could not emulate the instruction at RIP (on PVM: rdtscp, int3, cmpxchg16b, vmcall in ring 0)"
        }
        kvm_bindings::KVM_INTERNAL_ERROR_SIMUL_EX => "an exception occurred while delivering another",
        kvm_bindings::KVM_INTERNAL_ERROR_DELIVERY_EV => "event delivery failed (bad IDT, TSS or stack?)",
        _ => "unknown suberror",
    };
    format!("KVM_EXIT_INTERNAL_ERROR suberror {sub}: {what}")
}

/// An application processor's thread: run vCPU `cpu` until the guest ends
/// or another vCPU stops it. Debug exits are not expected: the debugger
/// and the tracers refuse more than one vCPU.
pub fn run_ap(cpu: usize, vcpu: &mut VcpuFd, shared: &Shared) -> VcpuStats {
    shared.stopper.register_thread(cpu);
    let mut stats = VcpuStats::default();
    while !shared.stopper.stopping() {
        let t = Instant::now();
        let exit = vcpu.run();
        stats.in_kvm_run += t.elapsed();
        stats.exits += 1;
        let outcome = match exit {
            Ok(VcpuExit::InternalError) => Some(Outcome::KvmError(internal_error(vcpu))),
            Ok(mut e) => match common_exit(&mut e, shared, &mut stats) {
                Some(o) => o,
                None => Some(Outcome::Unhandled(format!("{e:?} on vCPU {cpu}"))),
            },
            // Kicked (stop_all), or a signal meant for the process.
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => None,
            Err(e) => Some(Outcome::KvmError(format!("KVM_RUN failed on vCPU {cpu}: {e}"))),
        };
        if let Some(o) = outcome {
            shared.stopper.end(cpu, o);
        }
    }
    shared.stopper.unregister_thread(cpu);
    stats
}
