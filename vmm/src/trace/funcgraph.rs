//! `vmm trace --funcgraph SYMBOL`: a call tree of the guest kernel in the
//! format of ftrace's function_graph tracer (as perf-tools' funcgraph prints
//! it), seen entirely from outside. A breakpoint (by the `--break-by`
//! method, through the debug engine) stops the vCPU at SYMBOL; from there
//! the VMM single-steps, follows every `call` and `ret`, and prints each
//! function with its instruction count and duration.
//! Durations include the single-stepping itself (a VM exit per instruction)
//! and, on a PVM host, ring-0 emulation: the instruction counts are the
//! figures to compare.

use crate::trace::perfetto::Perfetto;
use crate::trace::tracer::{Next, TraceStop, TraceSummary, Tracer};
use std::io::Write;
use std::time::Instant;

struct Frame {
    name: String,
    start_insns: u64,
    start: Instant,
    /// Whether its "name() {" line was printed (it has callees).
    opened: bool,
    /// RSP at entry: the function has returned when RSP rises above it.
    rsp: u64,
}

pub struct Funcgraph {
    target: u64,
    max_depth: usize,
    stack: Vec<Frame>,
    insns: u64,
    out: Box<dyn Write + Send>,
    pub graphs: u64,
    /// `--perfetto`: every call as a B/E pair (all depths, not only printed ones).
    perfetto: Option<Perfetto>,
}

/// ftrace's duration column: a marker for long calls, then microseconds.
fn duration(us: f64) -> String {
    let mark = match us {
        x if x > 1_000_000.0 => '$',
        x if x > 100_000.0 => '@',
        x if x > 10_000.0 => '*',
        x if x > 1_000.0 => '#',
        x if x > 100.0 => '!',
        x if x > 10.0 => '+',
        _ => ' ',
    };
    format!("{mark} {us:>9.3} us")
}

impl Funcgraph {
    pub fn new(target: u64, max_depth: usize, out: Box<dyn Write + Send>) -> Funcgraph {
        Funcgraph {
            target,
            max_depth: max_depth.max(1),
            stack: Vec::new(),
            insns: 0,
            out,
            graphs: 0,
            perfetto: None,
        }
    }

    /// Also write each call as trace events (`--perfetto`).
    pub fn with_perfetto(mut self, mut p: Perfetto) -> Funcgraph {
        p.name("process_name", "guest kernel", 0, 0);
        p.name("thread_name", "vCPU 0", 0, 0);
        self.perfetto = Some(p);
        self
    }

    fn line(&mut self, depth: usize, insns: Option<u64>, us: Option<f64>, text: &str) {
        let (i, d) = match (insns, us) {
            (Some(i), Some(us)) => (format!("{i:>6} insns"), duration(us)),
            _ => (" ".repeat(12), " ".repeat(14)),
        };
        let _ = writeln!(self.out, " 0) {i} {d} |  {}{text}", "  ".repeat(depth));
    }

    fn open_parent(&mut self) {
        let depth = self.stack.len();
        if let Some(parent) = self.stack.last_mut() {
            if !parent.opened {
                parent.opened = true;
                let name = parent.name.clone();
                if depth <= self.max_depth {
                    self.line(depth - 1, None, None, &format!("{name}() {{"));
                }
            }
        }
    }

    fn enter(&mut self, name: String, rsp: u64) {
        self.open_parent();
        if let Some(p) = &mut self.perfetto {
            p.begin(&name, 0, 0);
        }
        self.stack.push(Frame {
            name,
            start_insns: self.insns,
            start: Instant::now(),
            opened: false,
            rsp,
        });
    }

    fn leave(&mut self) {
        let Some(f) = self.stack.pop() else { return };
        if let Some(p) = &mut self.perfetto {
            p.end(&f.name, 0, 0);
        }
        let depth = self.stack.len();
        if depth >= self.max_depth {
            return;
        }
        let (n, us) = (self.insns - f.start_insns, f.start.elapsed().as_secs_f64() * 1e6);
        if f.opened {
            self.line(depth, Some(n), Some(us), "}");
        } else {
            self.line(depth, Some(n), Some(us), &format!("{}();", f.name));
        }
    }
}

impl Tracer for Funcgraph {
    fn points(&self) -> Vec<u64> {
        vec![self.target]
    }

    fn begin(&mut self) {
        let _ = writeln!(
            self.out,
            "# CPU  INSNS        DURATION       FUNCTION CALLS\n# |     |             |              |   |   |   |"
        );
    }

    fn on_stop(&mut self, stop: &TraceStop<'_>) -> Next {
        let regs = &stop.regs;
        let name = |addr: u64| {
            stop.kernel
                .lookup(addr)
                .map(|(n, _)| n)
                .unwrap_or_else(|| format!("{addr:#x}"))
        };
        if stop.at_point && self.stack.is_empty() {
            self.graphs += 1;
            self.insns = 0;
            self.enter(name(regs.rip), regs.rsp);
            return Next::Step;
        }
        self.insns += 1;
        if stop.executed.starts_with("call") {
            self.enter(name(regs.rip), regs.rsp);
        } else if stop.executed.starts_with("ret") {
            // Pop every frame whose stack this return left (tail calls included).
            while self.stack.last().is_some_and(|f| regs.rsp > f.rsp) {
                self.leave();
            }
        }
        if self.stack.is_empty() {
            // SYMBOL returned: wait for its next call.
            let _ = self.out.flush();
            return Next::Continue;
        }
        Next::Step
    }

    fn report(&mut self, summary: &TraceSummary) -> Vec<String> {
        let _ = self.out.flush();
        let mut lines = vec![format!(
            "vmm: funcgraph: {} calls traced, {} debug exits (one per instruction stepped)",
            self.graphs, summary.stops
        )];
        if let Some(mut p) = self.perfetto.take() {
            // The guest may end inside a call: close what is still open.
            for f in self.stack.iter().rev() {
                p.end(&f.name, 0, 0);
            }
            lines.push(crate::trace::perfetto::written(&mut p));
        }
        lines
    }
}
