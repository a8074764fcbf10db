//! Running the guest to the next stop: a single step, or until a breakpoint,
//! watchpoint or the end; the stop line, with the privilege change that led
//! there.

use super::engine::{self, Resume, Stop};
use super::error::Result;
use super::{Debugger, StopReason};
use crate::introspect::memory;

impl Debugger {
    /// Resume once through the engine: a single step, or until a debug
    /// register or exit-instruction breakpoint stops the guest. None when it
    /// ended.
    pub(super) fn resume(&mut self, single_step: bool) -> Result<Option<Stop>> {
        // The first stop line marks a privilege change against where the guest was.
        let cpl = self.runner.cpl(&self.vm)?;
        self.last_cpl.get_or_insert(cpl);
        if single_step {
            return self.runner.resume(&mut self.vm, Resume::Step);
        }
        let patches = self.exit_insn_addrs();
        let drs = self.debug_registers();
        self.runner.resume(&mut self.vm, Resume::Run { drs, patches: &patches })
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
                let via = match self.runner.take_transition() {
                    Some(t) if t.to == cpl && !t.via.is_empty() => t.via,
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
        self.runner.deadline = None;
        self.check_can_step()?;
        Ok(match self.resume(true)? {
            None => StopReason::Ended,
            Some(_) => StopReason::Step,
        })
    }

    /// `continue`: run to the next breakpoint or watchpoint, or the end.
    pub fn cont(&mut self) -> Result<StopReason> {
        self.runner.deadline = self.vm.timeout().map(|t| std::time::Instant::now() + t);
        // Leaving a breakpoint: step off it first, or DR0 would fire again at once.
        let rip = self.regs()?.rip;
        if self.runner.started && self.at_breakpoint(rip).is_some() || self.runner.tf_pending() {
            if self.sregs()?.cs.selector & 3 == 3 {
                self.refuse_ring3_on_pvm("continuing from a ring-3 breakpoint")?;
            }
            if self.resume(true)?.is_none() {
                return Ok(StopReason::Ended);
            }
            if let Some(id) = self.at_breakpoint(self.regs()?.rip) {
                return Ok(StopReason::Breakpoint(id));
            }
        }
        // A step into ring 0 leaves TF in the saved user RFLAGS: step on to
        // ring 3 before running freely (breakpoints are still honoured).
        while self.runner.tf_pending() {
            if self.resume(true)?.is_none() {
                return Ok(StopReason::Ended);
            }
            if let Some(id) = self.at_breakpoint(self.regs()?.rip) {
                return Ok(StopReason::Breakpoint(id));
            }
        }
        if self.continue_steps() {
            for _ in 0..self.step_limit {
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
        self.runner.deadline = self.vm.timeout().map(|t| std::time::Instant::now() + t);
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
