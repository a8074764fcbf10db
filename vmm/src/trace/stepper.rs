//! `--break-at`: watching privilege transitions from outside. The guest
//! runs to a breakpoint (reached by the `--break-by` method, through the
//! debug engine like every tracer), then is single-stepped `--stepi`
//! instructions. Each stop prints CPL, CS/SS, RIP with its symbol and the
//! instruction (iced-x86), and marks where the privilege level changed.

use crate::debug::engine::BreakMethod;
use crate::debug::engine::{mnemonic, Symbolizer};
use crate::introspect::memory;
use crate::introspect::symbols::Symbols;
use crate::trace::tracer::{Next, TraceStop, TraceSummary, Tracer};

pub struct Stepper {
    pub break_at: u64,
    pub steps: u64,
    /// Stops printed so far (the breakpoint is step 0).
    taken: u64,
    /// A `syscall` (or `int`) stepped into ring 0, and the step it was.
    syscall_started: Option<(String, u64)>,
    pub round_trips: Vec<(String, u64)>,
    pub user_symbols: Symbols,
    pub log: Vec<String>,
}

impl Stepper {
    pub fn new(break_at: u64, steps: u64, user_symbols: Symbols) -> Stepper {
        Stepper {
            break_at,
            steps,
            taken: 0,
            syscall_started: None,
            round_trips: Vec::new(),
            user_symbols,
            log: Vec::new(),
        }
    }
}

impl Tracer for Stepper {
    fn points(&self) -> Vec<u64> {
        vec![self.break_at]
    }

    fn on_stop(&mut self, stop: &TraceStop<'_>) -> Next {
        let (regs, sregs, cpl) = (&stop.regs, &stop.sregs, stop.cpl);
        // The first stop is the breakpoint itself: nothing was stepped yet.
        if self.taken > 0 {
            if let Some(t) = &stop.transition {
                let via = Some(t.via.as_str()).filter(|v| !v.is_empty()).unwrap_or("?");
                self.log.push(format!("        CPL {} → {} via {via}", t.from, t.to));
            }
            let executed = stop.executed;
            if cpl == 0 && (mnemonic(executed) == "syscall" || executed.starts_with("int ")) {
                // `taken - 1` was the syscall/int instruction itself.
                self.syscall_started = Some((executed.to_string(), self.taken - 1));
            }
            if cpl == 3 && stop.transition.as_ref().is_some_and(|t| t.from == 0) {
                if let Some((what, start)) = self.syscall_started.take() {
                    self.round_trips.push((what, self.taken - start));
                }
            }
        }
        let insn = memory::disassemble_one(stop.mem, sregs.cr3, regs.rip).unwrap_or_else(|| "(not mapped)".into());
        let symbol = Symbolizer {
            kernel: stop.kernel,
            user: &self.user_symbols,
        }
        .describe(regs.rip);
        self.log.push(format!(
            "step {:>3}: CPL {cpl} CS {:#06x} SS {:#06x} RIP {symbol:<44} {insn}",
            self.taken, sregs.cs.selector, sregs.ss.selector,
        ));
        self.taken += 1;
        if self.taken > self.steps {
            Next::Detach
        } else {
            Next::Step
        }
    }

    fn report(&mut self, summary: &TraceSummary) -> Vec<String> {
        let mut out = Vec::new();
        if summary.method == BreakMethod::Step {
            out.push(format!(
                "vmm: {} instructions stepped silently before {:#x}",
                summary.silent_steps, self.break_at
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
