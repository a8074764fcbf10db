//! Running the guest to the next stop: a single step, or until a breakpoint,
//! watchpoint or the end; the stop line, with the privilege change that led
//! there.

use super::engine::{self, StopControl, StopRequest};
use super::error::{DebugError, Result};
use super::{Debugger, StopReason};
use crate::introspect::memory;
use crate::vstate::vm::{Event, Outcome};

impl Debugger {
    /// Resume once: a single step, or until a debug exit or an
    /// exit-instruction breakpoint. None when the guest ended.
    pub(super) fn resume(&mut self, single_step: bool) -> Result<Option<Stop>> {
        if self.ended.is_some() {
            return Err(DebugError::Ended);
        }
        if let (Some(d), Some(t)) = (self.deadline, self.vm.timeout()) {
            if single_step && std::time::Instant::now() >= d {
                self.ended = Some(Outcome::Timeout(t));
                return Ok(None);
            }
        }
        self.started = true;
        // Single steps never arm the debug registers: an execute breakpoint
        // at the current RIP would fire again before the instruction runs.
        let req = match (single_step, self.debug_registers()) {
            (true, _) => StopRequest::STEP,
            (false, Some((dr, dr7))) => StopRequest::breakpoints(dr, dr7),
            (false, None) => StopRequest {
                single_step: false,
                drs: None,
            },
        };
        let force = single_step && self.rearm_step;
        self.stop
            .set(self.vm.vcpu(), req, force)
            .map_err(DebugError::kvm("KVM_SET_GUEST_DEBUG"))?;
        let patches = if single_step { Vec::new() } else { self.patch_in()? };
        let event = self.vm.run_until(true, !single_step);
        self.patch_out(&patches);
        self.take_exit_regs();
        match event {
            Event::Debug(arch) => {
                self.after_step(single_step)?;
                Ok(Some(Stop::Debug(arch)))
            }
            Event::ExitInsn(addr) => {
                self.complete_exit_insn()?;
                self.after_step(false)?;
                Ok(Some(Stop::ExitInsn(addr)))
            }
            Event::Ended(o) => {
                self.ended = Some(o);
                Ok(None)
            }
            Event::Interrupted => Err(DebugError::Interrupted),
        }
    }

    /// Keep TF out of ring 3's own RFLAGS: a step into `syscall` leaves TF in
    /// R11, and `sysretq` would hand it to the program, which would then take
    /// a #DB of its own.
    pub(super) fn after_step(&mut self, stepped: bool) -> Result<()> {
        let (regs, sregs) = self.both()?;
        let cpl = (sregs.cs.selector & 3) as u8;
        let cpl_changed = self.step_cpl.is_some_and(|c| c != cpl);
        let tf_lost = StopControl::step_lost_tf(&self.last_insn, cpl_changed);
        self.rearm_step = !stepped || tf_lost;
        if let Some(prev) = self.step_cpl {
            if prev != cpl {
                let via = self.last_insn.split_whitespace().next().unwrap_or("").to_string();
                self.transition = Some((prev, cpl, via));
            }
        }
        if cpl == 0 && self.step_cpl == Some(3) && self.last_insn.starts_with("syscall") {
            self.tf_in_saved_rflags = true;
        }
        if cpl == 3 && self.tf_in_saved_rflags {
            let mut r = regs;
            engine::clear_user_tf(self.vm.vcpu(), &mut r).map_err(DebugError::kvm("KVM_SET_REGS"))?;
            self.set_regs(&r)?;
            self.tf_in_saved_rflags = false;
            self.rearm_step = true;
        }
        self.step_cpl = Some(cpl);
        Ok(())
    }

    /// The one-line description of where the guest is now, with a marker
    /// if the privilege level changed since the last printed stop.
    pub fn stop_line(&mut self) -> Result<String> {
        let (regs, sregs) = self.both()?;
        let cpl = (sregs.cs.selector & 3) as u8;
        let insn = memory::disassemble_one(&self.vm.mem, sregs.cr3, regs.rip).unwrap_or_else(|| "(not mapped)".into());
        let mut line = format!("CPL {cpl}  {}  {insn}", self.sym(regs.rip));
        if let Some(prev) = self.last_cpl {
            if prev != cpl {
                let via = match self.transition.take() {
                    Some((_, to, via)) if to == cpl && !via.is_empty() => via,
                    _ => "an exception or interrupt".into(),
                };
                line += &format!("    [CPL {prev} → {cpl} via {via}]");
            }
        }
        self.last_cpl = Some(cpl);
        Ok(line)
    }

    pub(super) fn check_can_step(&self) -> Result<()> {
        let sregs = self.sregs()?;
        if sregs.cs.selector & 3 == 3 {
            self.refuse_ring3_on_pvm("stepping in ring 3")?;
        }
        Ok(())
    }

    /// `stepi`: one instruction.
    pub fn step(&mut self) -> Result<StopReason> {
        self.deadline = None;
        self.check_can_step()?;
        self.last_insn_for_step()?;
        Ok(match self.resume(true)? {
            None => StopReason::Ended,
            Some(_) => StopReason::Step,
        })
    }

    /// Remember the instruction about to run, for the "via" of a CPL change.
    pub(super) fn last_insn_for_step(&mut self) -> Result<()> {
        let (regs, sregs) = self.both()?;
        self.last_insn = memory::disassemble_one(&self.vm.mem, sregs.cr3, regs.rip).unwrap_or_default();
        let cpl = (sregs.cs.selector & 3) as u8;
        self.last_cpl.get_or_insert(cpl);
        self.step_cpl.get_or_insert(cpl);
        Ok(())
    }

    /// `continue`: run to the next breakpoint or watchpoint, or the end.
    pub fn cont(&mut self) -> Result<StopReason> {
        self.deadline = self.vm.timeout().map(|t| std::time::Instant::now() + t);
        // Leaving a breakpoint: step off it first, or DR0 would fire again at once.
        let rip = self.regs()?.rip;
        if self.started && self.at_breakpoint(rip).is_some() || self.tf_in_saved_rflags {
            if self.sregs()?.cs.selector & 3 == 3 {
                self.refuse_ring3_on_pvm("continuing from a ring-3 breakpoint")?;
            }
            self.last_insn_for_step()?;
            if self.resume(true)?.is_none() {
                return Ok(StopReason::Ended);
            }
            if let Some(id) = self.at_breakpoint(self.regs()?.rip) {
                return Ok(StopReason::Breakpoint(id));
            }
        }
        // A `syscall` stepped into leaves TF in the saved RFLAGS: step on to
        // ring 3 before running freely (breakpoints are still honoured).
        while self.tf_in_saved_rflags {
            self.last_insn_for_step()?;
            if self.resume(true)?.is_none() {
                return Ok(StopReason::Ended);
            }
            if let Some(id) = self.at_breakpoint(self.regs()?.rip) {
                return Ok(StopReason::Breakpoint(id));
            }
        }
        if self.continue_steps() {
            for _ in 0..self.step_limit {
                self.last_insn_for_step()?;
                if self.resume(true)?.is_none() {
                    return Ok(StopReason::Ended);
                }
                self.silent_steps += 1;
                if let Some(id) = self.at_breakpoint(self.regs()?.rip) {
                    return Ok(StopReason::Breakpoint(id));
                }
                if let Some(id) = self.watch_hit() {
                    return Ok(StopReason::Watchpoint(id));
                }
            }
            return Ok(StopReason::StepLimit(self.step_limit));
        }
        self.last_insn_for_step()?;
        match self.resume(false)? {
            None => Ok(StopReason::Ended),
            Some(Stop::ExitInsn(addr)) => Ok(match self.at_breakpoint(addr) {
                Some(id) => StopReason::Breakpoint(id),
                None => StopReason::Step,
            }),
            Some(Stop::Debug(arch)) => {
                // DR6 says which debug register fired.
                let which = engine::dr6_hit(arch.dr6);
                let bp = which
                    .and_then(|i| self.dr_bps().nth(i))
                    .map(|b| (b.id, b.watch.is_some()));
                Ok(match bp {
                    Some((id, true)) => StopReason::Watchpoint(id),
                    Some((id, false)) => StopReason::Breakpoint(id),
                    None => match self.at_breakpoint(self.regs()?.rip) {
                        Some(id) => StopReason::Breakpoint(id),
                        None => StopReason::Step,
                    },
                })
            }
        }
    }

    /// `nexti`: like stepi, but a `call` runs to the instruction after it.
    pub fn next_over_calls(&mut self) -> Result<StopReason> {
        self.deadline = self.vm.timeout().map(|t| std::time::Instant::now() + t);
        let regs = self.regs()?;
        let sregs = self.sregs()?;
        let Some((insn, len)) = memory::decode_one(&self.vm.mem, sregs.cr3, regs.rip) else {
            return self.step();
        };
        if !insn.starts_with("call") {
            return self.step();
        }
        self.check_can_step()?;
        let target = regs.rip + len;
        let depth_rsp = regs.rsp;
        for _ in 0..self.step_limit {
            self.last_insn_for_step()?;
            if self.resume(true)?.is_none() {
                return Ok(StopReason::Ended);
            }
            let r = self.regs()?;
            if r.rip == target && r.rsp >= depth_rsp {
                return Ok(StopReason::Step);
            }
            if let Some(id) = self.at_breakpoint(r.rip) {
                return Ok(StopReason::Breakpoint(id));
            }
        }
        Ok(StopReason::StepLimit(self.step_limit))
    }
}

/// What ended a resume.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// A debug exit: a single step or a debug register.
    Debug(kvm_bindings::kvm_debug_exit_arch),
    /// An exit-instruction breakpoint at this address.
    ExitInsn(u64),
}
