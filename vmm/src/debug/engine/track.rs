//! Following the guest from stop to stop: the privilege changes between
//! them and the instruction that made each, whether the next single step
//! must be requested again, and TF left in a saved user RFLAGS. One tracker
//! serves the debugger and every tracer (runner.rs drives it).

use super::StopControl;

/// A privilege change between two stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: u8,
    pub to: u8,
    /// The mnemonic of the instruction the guest was resumed at ("" if it
    /// could not be read): `syscall`, `sysretq`, `iretq`…
    pub via: String,
}

/// What one stop means for the next resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AfterStop {
    /// A single step from here must be requested again (TF may be gone).
    pub rearm: bool,
    /// Clear TF in RFLAGS now: the guest is back in ring 3 with the TF a
    /// stepped entry into ring 0 saved.
    pub clear_tf: bool,
}

#[derive(Clone, Debug, Default)]
pub struct StepTracker {
    /// The instruction the guest was last resumed at.
    insn: String,
    /// The CPL at the last stop (or at the first resume).
    cpl: Option<u8>,
    /// The most recent privilege change, until someone takes it.
    transition: Option<Transition>,
    /// A single step took ring 3 into ring 0 (`syscall`, `int`, an
    /// exception) with TF set: the user RFLAGS the CPU saved (R11 or the
    /// exception frame) carries TF, and `sysretq`/`iretq` would give it
    /// back to the program, which would then take a #DB of its own.
    tf_in_saved_rflags: bool,
}

impl StepTracker {
    /// The guest is about to be resumed at CPL `cpl`, `insn` next.
    pub fn resuming(&mut self, cpl: u8, insn: String) {
        self.insn = insn;
        self.cpl.get_or_insert(cpl);
    }

    /// It stopped at CPL `cpl`, after a single step if `stepped`.
    pub fn stopped(&mut self, cpl: u8, stepped: bool) -> AfterStop {
        let prev = self.cpl.replace(cpl);
        let cpl_changed = prev.is_some_and(|p| p != cpl);
        if let Some(from) = prev.filter(|&p| p != cpl) {
            self.transition = Some(Transition {
                from,
                to: cpl,
                via: mnemonic(&self.insn).to_string(),
            });
        }
        if stepped && cpl == 0 && prev == Some(3) {
            self.tf_in_saved_rflags = true;
        }
        let clear_tf = cpl == 3 && self.tf_in_saved_rflags;
        if clear_tf {
            self.tf_in_saved_rflags = false;
        }
        AfterStop {
            rearm: !stepped || clear_tf || StopControl::step_lost_tf(&self.insn, cpl_changed),
            clear_tf,
        }
    }

    /// The instruction the last resume started at: after a single step,
    /// the one that ran.
    pub fn executed(&self) -> &str {
        &self.insn
    }

    /// The most recent privilege change, once.
    pub fn take_transition(&mut self) -> Option<Transition> {
        self.transition.take()
    }

    /// TF waits in a saved user RFLAGS: the guest must be stepped back to
    /// ring 3 (where it is cleared) before it runs freely.
    pub fn tf_pending(&self) -> bool {
        self.tf_in_saved_rflags
    }
}

/// An instruction's mnemonic: `syscall` of "syscall", `int` of "int 80h".
pub fn mnemonic(insn: &str) -> &str {
    insn.split_whitespace().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(t: &mut StepTracker, cpl_before: u8, insn: &str, cpl_after: u8) -> AfterStop {
        t.resuming(cpl_before, insn.into());
        t.stopped(cpl_after, true)
    }

    #[test]
    fn a_stepped_syscall_is_a_transition_and_its_sysret_clears_tf() {
        let mut t = StepTracker::default();
        let a = step(&mut t, 3, "syscall", 0);
        assert!(!a.clear_tf && t.tf_pending());
        assert_eq!(
            t.take_transition(),
            Some(Transition {
                from: 3,
                to: 0,
                via: "syscall".into()
            })
        );
        assert_eq!(t.take_transition(), None);
        assert!(!step(&mut t, 0, "swapgs", 0).clear_tf);
        let back = step(&mut t, 0, "sysretq", 3);
        assert!(back.clear_tf && back.rearm && !t.tf_pending());
        assert_eq!(t.take_transition().unwrap().via, "sysretq");
    }

    #[test]
    fn an_exception_stepped_from_ring_3_leaves_tf_in_its_frame_too() {
        let mut t = StepTracker::default();
        step(&mut t, 3, "mov rax,[0]", 0);
        assert!(t.tf_pending());
        assert_eq!(t.take_transition().unwrap().via, "mov");
        assert!(step(&mut t, 0, "iretq", 3).clear_tf);
    }

    #[test]
    fn steps_are_requested_again_only_where_tf_may_be_lost() {
        let mut t = StepTracker::default();
        // A plain instruction keeps TF (unless every step is re-armed: a LAPIC).
        let plain = step(&mut t, 0, "push rbp", 0);
        assert_eq!(plain.rearm, StopControl::step_lost_tf("push rbp", false));
        assert!(step(&mut t, 0, "popfq", 0).rearm);
        // A run to a breakpoint always needs the step requested again.
        t.resuming(0, "push rbp".into());
        assert!(t.stopped(0, false).rearm);
        // A free run from ring 3 into ring 0 is a transition, but leaves no TF behind.
        t.resuming(3, "nop".into());
        t.stopped(3, false);
        t.resuming(3, "nop".into());
        t.stopped(0, false);
        assert!(!t.tf_pending());
    }
}
