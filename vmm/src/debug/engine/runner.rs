//! The one way the guest is resumed under debugging: one single step, or a
//! run until a debug register, an exit-instruction patch or the end stops
//! it. The debugger, the GDB stub (through the debugger) and every tracer
//! (trace/tracer.rs) resume through [`Runner::resume`], which asks KVM for
//! the stop, puts patched bytes back, reads the registers once per stop and
//! follows privilege changes ([`StepTracker`]).

use super::patch::{complete_exit_insn, patch_in, patch_out};
use super::track::{mnemonic, StepTracker, Transition};
use super::{let_tf_through_syscall, ExitRegs, StopControl, StopRequest};
use crate::arch::msr::RFLAGS_TF;
use crate::debug::error::{DebugError, Result};
use crate::introspect::memory;
use crate::vstate::vm::{Event, Outcome, RunMode, Vm};
use kvm_bindings::{kvm_regs, kvm_sregs};
use std::cell::Cell;
use std::time::Instant;

/// What ended a resume.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// A debug exit: a single step or a debug register.
    Debug(kvm_bindings::kvm_debug_exit_arch),
    /// An exit-instruction breakpoint at this address.
    ExitInsn(u64),
}

/// How to resume.
#[derive(Clone, Copy, Debug)]
pub enum Resume<'a> {
    /// Execute one instruction.
    Step,
    /// Run until a debug register in `drs` (DR0–3 and DR7) or an
    /// exit-instruction patch at one of `patches` stops the guest, or it ends.
    Run {
        drs: Option<([u64; 4], u64)>,
        patches: &'a [u64],
    },
}

impl Resume<'_> {
    /// Run to the end: no stops asked for.
    pub const FREE: Resume<'static> = Resume::Run {
        drs: None,
        patches: &[],
    };
}

pub struct Runner {
    /// KVM_SET_GUEST_DEBUG, only when the request changes.
    stop: StopControl,
    /// KVM_CAP_SYNC_REGS: kvm_run carries regs and sregs after every exit.
    sync_regs: bool,
    /// Registers at this stop, read once.
    cache: Cell<Option<(kvm_regs, kvm_sregs)>>,
    tracker: StepTracker,
    /// The last stop may have dropped TF: request the next step again.
    rearm_step: bool,
    /// When the command or trace in progress runs out of --timeout (each
    /// run to a breakpoint is also timed by the VMM thread's timer).
    pub deadline: Option<Instant>,
    /// How the guest ended, once it has.
    pub ended: Option<Outcome>,
    /// The guest has run at least one instruction.
    pub started: bool,
    /// Stops taken: debug exits and exit-instruction breakpoints.
    pub stops: u64,
}

impl Runner {
    /// Prepare `vm`'s vCPU for debugging: `syscall` must not clear TF, or a
    /// single step over it would skip the whole kernel path; registers come
    /// with each exit where KVM offers it. Opens `kvm_device`: call it
    /// before seccomp forbids that.
    pub fn new(vm: &mut Vm, kvm_device: &std::path::Path) -> Result<Runner> {
        let_tf_through_syscall(vm.vcpu()).map_err(DebugError::kvm("KVM_SET_MSRS"))?;
        let sync_regs = ExitRegs::enable(vm.vcpu_mut(), kvm_device).sync;
        Ok(Runner {
            stop: StopControl::default(),
            sync_regs,
            cache: Cell::new(None),
            tracker: StepTracker::default(),
            rearm_step: true,
            deadline: None,
            ended: None,
            started: false,
            stops: 0,
        })
    }

    /// Registers and system registers at this stop, read once per stop.
    pub fn both(&self, vm: &Vm) -> Result<(kvm_regs, kvm_sregs)> {
        if let Some(c) = self.cache.get() {
            return Ok(c);
        }
        let v = vm.vcpu();
        let r = v.get_regs().map_err(DebugError::kvm("KVM_GET_REGS"))?;
        let s = v.get_sregs().map_err(DebugError::kvm("KVM_GET_SREGS"))?;
        self.cache.set(Some((r, s)));
        Ok((r, s))
    }

    /// KVM_SET_REGS, keeping the per-stop copy in step.
    pub fn set_regs(&self, vm: &Vm, r: &kvm_regs) -> Result<()> {
        vm.vcpu().set_regs(r).map_err(DebugError::kvm("KVM_SET_REGS"))?;
        if let Some((_, s)) = self.cache.get() {
            self.cache.set(Some((*r, s)));
        }
        Ok(())
    }

    /// The CPL at this stop.
    pub fn cpl(&self, vm: &Vm) -> Result<u8> {
        Ok((self.both(vm)?.1.cs.selector & 3) as u8)
    }

    /// The instruction the last resume started at (after a step: the one that ran).
    pub fn executed(&self) -> &str {
        self.tracker.executed()
    }

    /// The most recent privilege change, once.
    pub fn take_transition(&mut self) -> Option<Transition> {
        self.tracker.take_transition()
    }

    /// TF waits in a saved user RFLAGS: step back to ring 3 before a free run.
    pub fn tf_pending(&self) -> bool {
        self.tracker.tf_pending()
    }

    /// Resume once. None when the guest ended (see `ended`).
    pub fn resume(&mut self, vm: &mut Vm, how: Resume<'_>) -> Result<Option<Stop>> {
        if self.ended.is_some() {
            return Err(DebugError::Ended);
        }
        let single_step = matches!(how, Resume::Step);
        // Past the deadline: a trace whose every run stops early (a program
        // making system calls forever) still ends at --timeout.
        if let (Some(d), Some(t)) = (self.deadline, vm.timeout()) {
            if Instant::now() >= d {
                self.ended = Some(Outcome::Timeout(t));
                return Ok(None);
            }
        }
        let (regs, sregs) = self.both(vm)?;
        let insn = memory::disassemble_one(&vm.mem, sregs.cr3, regs.rip).unwrap_or_default();
        let cpl = (sregs.cs.selector & 3) as u8;
        // A single step that may not come back: on PVM a step that is in,
        // or returns to, ring 3 exits only at the next entry into the kernel
        // (a spinning program never enters it), and `hlt` waits for an
        // interrupt the step holds off (BLOCKIRQ). Those are timed like
        // runs; other steps cannot run away, and a watchdog per step would
        // cost more than the step.
        let m = mnemonic(&insn);
        let to_ring3 = cpl == 3 || m.starts_with("iret") || m.starts_with("sysret");
        let timed = !single_step || (vm.flavor.is_pvm() && to_ring3) || m == "hlt";
        self.tracker.resuming(cpl, insn);
        self.started = true;
        // Single steps never arm the debug registers: an execute breakpoint
        // at the current RIP would fire again before the instruction runs.
        let (req, patches) = match how {
            Resume::Step => (StopRequest::STEP, &[][..]),
            Resume::Run {
                drs: Some((dr, dr7)),
                patches,
            } => (StopRequest::breakpoints(dr, dr7), patches),
            Resume::Run { drs: None, patches } => (StopRequest::NONE, patches),
        };
        let force = single_step && self.rearm_step;
        self.stop
            .set(vm.vcpu(), req, force)
            .map_err(DebugError::kvm("KVM_SET_GUEST_DEBUG"))?;
        let saved = patch_in(vm, sregs.cr3, patches)?;
        // A timed step runs as a run to a stop does: the debug exit that
        // ends it comes as from a breakpoint, and --timeout holds.
        let mode = if timed { RunMode::UntilStop } else { RunMode::Step };
        let event = vm.run_until(mode);
        patch_out(vm, &saved);
        self.take_exit_regs(vm);
        let stop = match event {
            Event::Debug(arch) => Stop::Debug(arch),
            Event::ExitInsn(addr) => {
                complete_exit_insn(vm)?;
                self.cache.set(None);
                Stop::ExitInsn(addr)
            }
            Event::Ended(o) => {
                self.ended = Some(o);
                return Ok(None);
            }
            Event::Interrupted => return Err(DebugError::Interrupted),
        };
        self.stops += 1;
        self.after_stop(vm, single_step)?;
        Ok(Some(stop))
    }

    /// After an exit: the registers KVM left in kvm_run, if it does.
    fn take_exit_regs(&self, vm: &Vm) {
        self.cache.set(None);
        if self.sync_regs {
            let s = vm.vcpu().sync_regs();
            self.cache.set(Some((s.regs, s.sregs)));
        }
    }

    /// Follow the privilege change, and keep TF out of ring 3's own RFLAGS.
    fn after_stop(&mut self, vm: &Vm, stepped: bool) -> Result<()> {
        let (regs, sregs) = self.both(vm)?;
        let after = self.tracker.stopped((sregs.cs.selector & 3) as u8, stepped);
        self.rearm_step = after.rearm;
        if after.clear_tf && regs.rflags & RFLAGS_TF != 0 {
            let r = kvm_regs {
                rflags: regs.rflags & !RFLAGS_TF,
                ..regs
            };
            self.set_regs(vm, &r)?;
        }
        Ok(())
    }
}
