//! Watching privilege transitions from outside: a debug-register breakpoint
//! (DR0, through KVM_SET_GUEST_DEBUG) stops the guest at an address, then
//! KVM_GUESTDBG_SINGLESTEP stops it after every instruction. Each stop prints
//! CPL, RIP with its symbol and the instruction (iced-x86), and marks where
//! the privilege level changed.

use crate::debug::engine::{clear_user_tf, dr7_exec, ExitRegs, StopControl, StopRequest, Symbolizer};
use crate::introspect::symbols::Symbols;
use crate::trace::tracer::{let_tf_through_syscall, KvmResult, Tracer};
use kvm_ioctls::VcpuFd;
use vm_memory::GuestMemoryMmap;

pub struct Stepper {
    pub break_at: u64,
    /// Reach `break_at` by single-stepping silently instead of with DR0
    /// (for KVMs whose debug-register breakpoints do not exit).
    pub by_stepping: bool,
    /// Silent steps taken before the breakpoint address was reached.
    pub steps_to_break: u64,
    pub steps: u64,
    taken: u64,
    stepping: bool,
    last_cpl: Option<u8>,
    last_insn: String,
    /// Instructions from a `syscall` (or `int`) to the first ring-3 instruction after it.
    syscall_started: Option<(String, u64)>,
    /// The trace is over; stepping on silently until ring 3 to clear TF.
    finishing: bool,
    /// Silent steps (toward the breakpoint, or finishing): the instruction
    /// about to run and the CPL, to know when a step may have lost TF.
    silent_insn: String,
    silent_cpl: Option<u8>,
    pub round_trips: Vec<(String, u64)>,
    pub user_symbols: Symbols,
    pub log: Vec<String>,
    pub stop: StopControl,
    pub regs: ExitRegs,
}

impl Stepper {
    pub fn new(break_at: u64, steps: u64, user_symbols: Symbols) -> Stepper {
        Stepper {
            break_at,
            by_stepping: false,
            steps_to_break: 0,
            steps,
            taken: 0,
            stepping: false,
            last_cpl: None,
            last_insn: String::new(),
            syscall_started: None,
            finishing: false,
            silent_insn: String::new(),
            silent_cpl: None,
            round_trips: Vec::new(),
            user_symbols,
            log: Vec::new(),
            stop: StopControl::default(),
            regs: ExitRegs::default(),
        }
    }

    /// Arm the breakpoint before the first KVM_RUN.
    fn arm_impl(&mut self, vcpu: &VcpuFd) -> KvmResult<()> {
        let_tf_through_syscall(vcpu)?;
        if self.by_stepping {
            return self.stop.set(vcpu, StopRequest::STEP, true);
        }
        let req = StopRequest::breakpoints([self.break_at, 0, 0, 0], dr7_exec(1));
        self.stop.set(vcpu, req, false)
    }

    /// Single-step on, arming it again only where the step may have lost TF.
    fn step_on(&mut self, vcpu: &VcpuFd, executed: &str, cpl_changed: bool) -> KvmResult<()> {
        let lost = StopControl::step_lost_tf(executed, cpl_changed);
        self.stop.set(vcpu, StopRequest::STEP, lost)
    }

    /// Handle a debug exit: print this stop, and choose how to continue.
    fn on_debug_exit_impl(
        &mut self,
        vcpu: &VcpuFd,
        mem: &GuestMemoryMmap,
        kernel: &Symbols,
    ) -> Result<(), kvm_ioctls::Error> {
        let (regs, sregs) = self.regs.read(vcpu)?;
        let cpl = (sregs.cs.selector & 3) as u8;
        let cpl_changed = self.silent_cpl.is_some_and(|c| c != cpl);
        if !self.stepping && self.by_stepping && regs.rip != self.break_at {
            self.steps_to_break += 1;
            let executed = std::mem::take(&mut self.silent_insn);
            self.silent_insn = crate::introspect::memory::disassemble_one(mem, sregs.cr3, regs.rip).unwrap_or_default();
            self.silent_cpl = Some(cpl);
            return self.step_on(vcpu, &executed, cpl_changed);
        }
        if self.finishing {
            if cpl != 3 {
                let executed = std::mem::take(&mut self.silent_insn);
                self.silent_insn =
                    crate::introspect::memory::disassemble_one(mem, sregs.cr3, regs.rip).unwrap_or_default();
                self.silent_cpl = Some(cpl);
                return self.step_on(vcpu, &executed, cpl_changed);
            }
            // Back in ring 3: TF came back from the saved RFLAGS (R11 or the
            // iretq frame); clear it, or the guest would take the #DB itself.
            let mut r = regs;
            clear_user_tf(vcpu, &mut r)?;
            return self.stop.set(vcpu, StopRequest::NONE, false);
        }
        let insn = crate::introspect::memory::disassemble_one(mem, sregs.cr3, regs.rip)
            .unwrap_or_else(|| "(not mapped)".into());
        if let Some(prev) = self.last_cpl {
            if prev != cpl {
                let via = self.last_insn.split_whitespace().next().unwrap_or("?").to_string();
                self.log.push(format!("        CPL {prev} → {cpl} via {via}"));
            }
        }
        let how = self.last_insn.split_whitespace().next().unwrap_or("");
        if self.stepping && (how == "syscall" || self.last_insn.starts_with("int ")) && cpl == 0 {
            // `taken - 1` was the syscall/int instruction itself.
            self.syscall_started = Some((self.last_insn.clone(), self.taken - 1));
        }
        if cpl == 3 && self.last_cpl == Some(0) {
            if let Some((what, start)) = self.syscall_started.take() {
                self.round_trips.push((what, self.taken - start));
            }
        }
        self.log.push(format!(
            "step {:>3}: CPL {cpl} CS {:#06x} SS {:#06x} RIP {:<44} {insn}",
            self.taken,
            sregs.cs.selector,
            sregs.ss.selector,
            Symbolizer {
                kernel,
                user: &self.user_symbols
            }
            .describe(regs.rip)
        ));
        let executed = std::mem::replace(&mut self.last_insn, insn);
        // The first stop is the breakpoint itself: nothing was stepped yet.
        let executed = if self.stepping { executed } else { String::new() };
        self.last_cpl = Some(cpl);
        self.silent_cpl = Some(cpl);
        self.silent_insn = self.last_insn.clone();
        self.stepping = true;
        self.taken += 1;
        if self.taken > self.steps {
            if cpl == 3 {
                let mut r = regs;
                clear_user_tf(vcpu, &mut r)?;
                return self.stop.set(vcpu, StopRequest::NONE, false);
            }
            self.finishing = true;
        }
        self.step_on(vcpu, &executed, cpl_changed)
    }
}

impl Tracer for Stepper {
    fn arm(&mut self, vcpu: &VcpuFd) -> KvmResult<()> {
        self.arm_impl(vcpu)
    }

    fn on_debug_exit(&mut self, vcpu: &VcpuFd, mem: &GuestMemoryMmap, kernel: &Symbols) -> KvmResult<()> {
        self.on_debug_exit_impl(vcpu, mem, kernel)
    }

    fn report(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        if self.by_stepping {
            out.push(format!(
                "vmm: {} instructions stepped silently before {:#x}",
                self.steps_to_break, self.break_at
            ));
        }
        out.append(&mut self.log);
        for (what, n) in &self.round_trips {
            out.push(format!(
                "vmm: round trip: {n} instructions from `{what}` through `sysretq`/`iretq`, counting both"
            ));
        }
        out
    }
}
