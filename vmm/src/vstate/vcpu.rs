//! vCPU threads: one host thread per vCPU running KVM_RUN (Firecracker and
//! Cloud Hypervisor do the same). vCPU 0, the bootstrap processor, runs on
//! the thread that built the VM (where the debugger and tracers live); the
//! application processors each get a thread of their own for the length of
//! a run. What they share — guest memory, the UART and console port — is
//! behind a mutex in [`Shared`]. Whichever vCPU ends the run (the exit port,
//! a panic, a triple fault, a KVM error) records the outcome with the
//! [`Kicker`] (kick.rs), which stops all the others; the VMM thread stops
//! them all through the same kicker (a timeout, a signal).

use crate::devices::serial::{Com1, COM1_PORTS};
use crate::vstate::kick::Kicker;
use crate::vstate::vm::Outcome;
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use vm_memory::GuestMemoryMmap;
use vmm_abi::ports;

/// What the vCPUs of a running VM share.
pub struct Shared<'a> {
    pub mem: &'a GuestMemoryMmap,
    /// The UART and the console port's output: one vCPU at a time.
    pub com1: Mutex<&'a mut Com1>,
    /// Stop requests and the run's outcome (kick.rs).
    pub kicker: &'a Arc<Kicker>,
}

impl<'a> Shared<'a> {
    pub fn new(mem: &'a GuestMemoryMmap, com1: &'a mut Com1, kicker: &'a Arc<Kicker>) -> Shared<'a> {
        Shared {
            mem,
            com1: Mutex::new(com1),
            kicker,
        }
    }

    pub fn com1(&self) -> MutexGuard<'_, &'a mut Com1> {
        self.com1.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
pub fn common_exit(exit: &mut VcpuExit<'_>, shared: &Shared<'_>, stats: &mut VcpuStats) -> Option<Option<Outcome>> {
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
/// or a stop request (another vCPU's outcome, the timeout, a signal) stops
/// it. Debug exits are not expected: the debugger and the tracers refuse
/// more than one vCPU, and vCPU 0 turns every request into the outcome.
pub fn run_ap(cpu: usize, vcpu: &mut VcpuFd, shared: &Shared<'_>) -> VcpuStats {
    // SAFETY: the registration is dropped at the end of this function,
    // while `vcpu` is still borrowed, and only this thread runs it.
    let registration = unsafe { shared.kicker.register(vcpu) };
    // Running before the first look at the requests: a request made after
    // the look kicks this thread (kick.rs).
    registration.running(true);
    let mut stats = VcpuStats::default();
    while shared.kicker.pending().is_none() {
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
            // A kick, or a signal meant for the process: clear
            // immediate_exit before the next look at the requests, so that
            // a kick made after the look still stops the next KVM_RUN.
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                vcpu.set_kvm_immediate_exit(0);
                None
            }
            Err(e) => Some(Outcome::KvmError(format!("KVM_RUN failed on vCPU {cpu}: {e}"))),
        };
        if let Some(o) = outcome {
            shared.kicker.end(cpu, o);
        }
    }
    drop(registration);
    stats
}
