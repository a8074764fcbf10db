//! Tracing a guest from outside: a [`Tracer`] names the addresses where the
//! guest must stop (its trace points) and, at each stop, looks, prints and
//! says how the guest goes on: one single step, on to the next trace point,
//! or free to its end. [`Trace`] carries that out through the debug engine's
//! [`Runner`] — the same resume path as the debugger's — reaching the points
//! by the `--break-by` method: debug registers, exit-instruction patches or
//! silent single steps. The step tracer (`--break-at`), strace and
//! funcgraph are tracers.

use crate::debug::engine::{dr7_exec, BreakMethod, Resume, Runner, Stop, Transition};
use crate::debug::error::Result;
use crate::introspect::symbols::Symbols;
use crate::vstate::vm::{Outcome, Vm};
use kvm_bindings::{kvm_regs, kvm_sregs};
use vm_memory::GuestMemoryMmap;

/// Where vm.rs finds it (the engine holds it).
pub use crate::debug::engine::BLOCK_IRQ;

/// RFLAGS.RF: instruction breakpoints are suppressed for one instruction.
const RFLAGS_RF: u64 = 1 << 16;

/// How the guest goes on after a stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Execute one instruction, then stop.
    Step,
    /// Run to the next trace point.
    Continue,
    /// No more stops: run to the end.
    Detach,
}

/// A stop, as a tracer sees it.
pub struct TraceStop<'a> {
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub cpl: u8,
    /// At one of the tracer's points, reached by `Next::Continue`.
    pub at_point: bool,
    /// The instruction the guest was resumed at: after `Next::Step`, the
    /// one that ran.
    pub executed: &'a str,
    /// The privilege change since the last stop.
    pub transition: Option<Transition>,
    pub mem: &'a GuestMemoryMmap,
    pub kernel: &'a Symbols,
}

/// How the trace went, for the closing lines.
#[derive(Clone, Copy, Debug)]
pub struct TraceSummary {
    pub method: BreakMethod,
    /// Debug exits and exit-instruction stops taken.
    pub stops: u64,
    /// Single steps taken toward a trace point (`--break-by step`).
    pub silent_steps: u64,
    /// RFLAGS.RF did not suppress a debug-register breakpoint on this KVM,
    /// so leaving one takes a single step.
    pub rf_failed: bool,
}

pub trait Tracer {
    /// The addresses where the guest must stop (at most 4), fixed for the run.
    fn points(&self) -> Vec<u64>;
    /// The points lie on the path of every interrupt (the timer's too).
    fn on_interrupt_path(&self) -> bool {
        false
    }
    /// Before the guest runs.
    fn begin(&mut self) {}
    /// The guest stopped: look, print, and say how it goes on.
    fn on_stop(&mut self, stop: &TraceStop<'_>) -> Next;
    /// Lines to print once the guest has ended.
    fn report(&mut self, summary: &TraceSummary) -> Vec<String>;
}

/// A tracer driving a VM to its end.
pub struct Trace {
    runner: Runner,
    tracer: Box<dyn Tracer>,
    method: BreakMethod,
    points: Vec<u64>,
    silent_steps: u64,
    rf_failed: bool,
}

impl Trace {
    /// Prepare `vm` for `tracer` (before seccomp: this opens `kvm_device`).
    pub fn new(
        vm: &mut Vm,
        tracer: Box<dyn Tracer>,
        method: BreakMethod,
        kvm_device: &std::path::Path,
    ) -> Result<Trace> {
        let points = tracer.points().into_iter().take(4).collect();
        Ok(Trace {
            runner: Runner::new(vm, kvm_device)?,
            tracer,
            method,
            points,
            silent_steps: 0,
            rf_failed: false,
        })
    }

    /// Run the guest to its end under the tracer.
    pub fn run(&mut self, vm: &mut Vm) -> Outcome {
        self.runner.deadline = vm.timeout().map(|t| std::time::Instant::now() + t);
        self.tracer.begin();
        let mut next = Next::Continue;
        loop {
            let at_point = match self.advance(vm, next) {
                Ok(Some(at)) => at,
                Ok(None) => break,
                Err(e) => return Outcome::KvmError(format!("tracing failed: {e}")),
            };
            let (regs, sregs) = match self.runner.both(vm) {
                Ok(b) => b,
                Err(e) => return Outcome::KvmError(format!("tracing failed: {e}")),
            };
            let transition = self.runner.take_transition();
            let stop = TraceStop {
                regs,
                sregs,
                cpl: (sregs.cs.selector & 3) as u8,
                at_point,
                executed: self.runner.executed(),
                transition,
                mem: &vm.mem,
                kernel: vm.kernel.symbols(),
            };
            next = self.tracer.on_stop(&stop);
        }
        self.runner
            .ended
            .take()
            .unwrap_or_else(|| Outcome::KvmError("tracing ended without an outcome".into()))
    }

    /// The tracer's closing lines.
    pub fn report(&mut self) -> Vec<String> {
        let summary = TraceSummary {
            method: self.method,
            stops: self.runner.stops,
            silent_steps: self.silent_steps,
            rf_failed: self.rf_failed,
        };
        self.tracer.report(&summary)
    }

    /// Carry out `next`. Some(at a trace point) at the stop to hand the
    /// tracer; None when the guest ended.
    fn advance(&mut self, vm: &mut Vm, next: Next) -> Result<Option<bool>> {
        match next {
            Next::Step => Ok(self.runner.resume(vm, Resume::Step)?.map(|_| false)),
            Next::Continue => self.run_to_point(vm),
            Next::Detach => {
                // TF in a saved user RFLAGS: step back to ring 3 (where the
                // runner clears it) before letting go.
                while self.runner.tf_pending() {
                    if self.runner.resume(vm, Resume::Step)?.is_none() {
                        return Ok(None);
                    }
                }
                while self.runner.resume(vm, Resume::FREE)?.is_some() {}
                Ok(None)
            }
        }
    }

    /// The guest's RIP is one of the trace points.
    fn at_point(&self, vm: &Vm) -> Result<bool> {
        Ok(self.points.contains(&self.runner.both(vm)?.0.rip))
    }

    /// The trace point the guest is stopped at, if it is: a breakpoint there
    /// would fire again before its instruction runs.
    fn leaving(&self, vm: &Vm) -> Result<Option<u64>> {
        let rip = self.runner.both(vm)?.0.rip;
        Ok((self.runner.started && self.points.contains(&rip)).then_some(rip))
    }

    /// Run to the next trace point. Some(true) there; None when the guest ended.
    fn run_to_point(&mut self, vm: &mut Vm) -> Result<Option<bool>> {
        // TF in a saved user RFLAGS: step on to ring 3 before running freely
        // (a trace point on the way still stops it).
        while self.runner.tf_pending() {
            if self.runner.resume(vm, Resume::Step)?.is_none() {
                return Ok(None);
            }
            if self.at_point(vm)? {
                return Ok(Some(true));
            }
        }
        let mut leaving = self.leaving(vm)?;
        match self.method {
            BreakMethod::Step => loop {
                if self.runner.resume(vm, Resume::Step)?.is_none() {
                    return Ok(None);
                }
                if self.at_point(vm)? {
                    return Ok(Some(true));
                }
                self.silent_steps += 1;
            },
            BreakMethod::DebugRegister => {
                let mut dr = [0u64; 4];
                dr[..self.points.len()].copy_from_slice(&self.points);
                let drs = Some((dr, dr7_exec(self.points.len())));
                loop {
                    if let Some(from) = leaving {
                        if self.rf_failed {
                            // Step over the instruction at the breakpoint, then run.
                            if self.runner.resume(vm, Resume::Step)?.is_none() {
                                return Ok(None);
                            }
                            if self.at_point(vm)? {
                                return Ok(Some(true));
                            }
                        } else {
                            // RFLAGS.RF suppresses instruction breakpoints for
                            // one instruction: the guest goes on without a
                            // second exit, one exit per stop.
                            let r = self.runner.both(vm)?.0;
                            debug_assert_eq!(r.rip, from);
                            self.runner.set_regs(
                                vm,
                                &kvm_regs {
                                    rflags: r.rflags | RFLAGS_RF,
                                    ..r
                                },
                            )?;
                        }
                    }
                    if self.runner.resume(vm, Resume::Run { drs, patches: &[] })?.is_none() {
                        return Ok(None);
                    }
                    let rip = self.runner.both(vm)?.0.rip;
                    if !self.points.contains(&rip) {
                        // A debug exit that is not ours: run on.
                        leaving = None;
                        continue;
                    }
                    if leaving == Some(rip) && !self.rf_failed {
                        // Straight back at the same breakpoint: RF was not
                        // honoured on this KVM. Step over it from now on.
                        self.rf_failed = true;
                        continue;
                    }
                    return Ok(Some(true));
                }
            }
            BreakMethod::ExitInsn => {
                let points = self.points.clone();
                loop {
                    if leaving.is_some() {
                        // The original byte is back while it runs: step over
                        // it, then patch again.
                        if self.runner.resume(vm, Resume::Step)?.is_none() {
                            return Ok(None);
                        }
                        if self.at_point(vm)? {
                            return Ok(Some(true));
                        }
                    }
                    let run = Resume::Run {
                        drs: None,
                        patches: &points,
                    };
                    match self.runner.resume(vm, run)? {
                        None => return Ok(None),
                        Some(Stop::ExitInsn(_)) => return Ok(Some(true)),
                        // A debug exit that is not ours: run on.
                        Some(Stop::Debug(_)) => leaving = self.leaving(vm)?,
                    }
                }
            }
        }
    }
}
