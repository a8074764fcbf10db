//! `vmm replay FILE`: the debugger's prompt on a recording (`vmm trace
//! --record`, trace/record.rs), without KVM. Every step's full register
//! state is rebuilt from the recorded changes; memory at step K is the
//! first-touch page snapshots with the writes of steps 0..K applied (their
//! `new` bytes going forward, their `old` bytes going back), so `x/` and
//! `disas` show memory as it was at K. Because the whole run is on file it
//! also goes backwards: `reverse-stepi`, `reverse-continue`, `goto`.

use crate::trace::record::{unhex, unhex_bytes, End, Header, Page, Step, FORMAT, REG_NAMES, VERSION};
use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("{path}: not a vmm recording (its first line is not a `vmm-trace` header); make one with `vmm trace --record FILE`")]
    NotARecording { path: String },
    #[error(
        "{path}: recording format version {found}, this vmm reads version {VERSION}: record it again with this vmm"
    )]
    Version { path: String, found: u32 },
    #[error("{path} line {line}: {reason}")]
    BadLine { path: String, line: usize, reason: String },
    #[error("{path}: the recording has no steps")]
    Empty { path: String },
    #[error("{0}")]
    Command(String),
}

fn cmd_err<T>(s: impl Into<String>) -> Result<T, ReplayError> {
    Err(ReplayError::Command(s.into()))
}

/// A loaded recording, positioned at one step.
pub struct Replay {
    pub header: Header,
    pub steps: Vec<Step>,
    /// Every register at every step, in REG_NAMES order.
    regs: Vec<[u64; 18]>,
    /// Segment and control state in force at each step (index into `sregs_list`).
    sregs_at: Vec<usize>,
    sregs_list: Vec<BTreeMap<String, String>>,
    /// Memory at step `at`: page base → 4 KiB.
    mem: HashMap<u64, Vec<u8>>,
    pub at: usize,
    breakpoints: Vec<u64>,
    pub end: Option<String>,
}

/// Is `s` "0x…" or decimal: a number.
fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

impl Replay {
    pub fn load(path: &Path) -> Result<Replay, ReplayError> {
        let p = path.display().to_string();
        let f = std::fs::File::open(path).map_err(|source| ReplayError::Open {
            path: p.clone(),
            source,
        })?;
        Replay::parse(&p, std::io::BufReader::new(f))
    }

    pub fn parse(p: &str, r: impl BufRead) -> Result<Replay, ReplayError> {
        let mut lines = r.lines().enumerate();
        let first = match lines.next() {
            Some((_, Ok(l))) => l,
            Some((_, Err(source))) => return Err(ReplayError::Open { path: p.into(), source }),
            None => return Err(ReplayError::NotARecording { path: p.into() }),
        };
        let header: Header = serde_json::from_str(&first).map_err(|_| ReplayError::NotARecording { path: p.into() })?;
        if header.format != FORMAT {
            return Err(ReplayError::NotARecording { path: p.into() });
        }
        if header.version != VERSION {
            return Err(ReplayError::Version {
                path: p.into(),
                found: header.version,
            });
        }
        let bad = |line: usize, reason: String| ReplayError::BadLine {
            path: p.into(),
            line: line + 1,
            reason,
        };
        let mut rep = Replay {
            header,
            steps: Vec::new(),
            regs: Vec::new(),
            sregs_at: Vec::new(),
            sregs_list: Vec::new(),
            mem: HashMap::new(),
            at: 0,
            breakpoints: Vec::new(),
            end: None,
        };
        for (i, line) in lines {
            let line = line.map_err(|source| ReplayError::Open { path: p.into(), source })?;
            let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| bad(i, e.to_string()))?;
            if v.get("page").is_some() {
                let page: Page = serde_json::from_value(v).map_err(|e| bad(i, e.to_string()))?;
                let base = unhex(&page.page).ok_or_else(|| bad(i, "page address is not hex".into()))?;
                let data = unhex_bytes(&page.data).filter(|d| d.len() == 4096);
                let data = data.ok_or_else(|| bad(i, "page data is not 4096 hex bytes".into()))?;
                rep.mem.entry(base).or_insert(data);
            } else if v.get("step").is_some() {
                let step: Step = serde_json::from_value(v).map_err(|e| bad(i, e.to_string()))?;
                let mut regs = rep.regs.last().copied().unwrap_or([0; 18]);
                for (name, val) in &step.regs {
                    let k = REG_NAMES.iter().position(|n| n == name);
                    let k = k.ok_or_else(|| bad(i, format!("unknown register {name}")))?;
                    regs[k] = unhex(val).ok_or_else(|| bad(i, format!("{name} is not hex")))?;
                }
                if let Some(s) = &step.sregs {
                    rep.sregs_list.push(s.clone());
                }
                rep.regs.push(regs);
                rep.sregs_at.push(rep.sregs_list.len().saturating_sub(1));
                rep.steps.push(step);
            } else if v.get("end").is_some() {
                let end: End = serde_json::from_value(v).map_err(|e| bad(i, e.to_string()))?;
                rep.end = Some(end.end);
            } else {
                return Err(bad(i, "neither a page, a step nor the end".into()));
            }
        }
        if rep.steps.is_empty() {
            return Err(ReplayError::Empty { path: p.into() });
        }
        Ok(rep)
    }

    pub fn reg(&self, name: &str) -> Option<u64> {
        let k = REG_NAMES.iter().position(|n| *n == name)?;
        Some(self.regs[self.at][k])
    }

    pub fn cpl(&self) -> u8 {
        self.steps[self.at].cpl
    }

    /// Apply step `k`'s writes: its new bytes (forward) or old ones (back).
    fn apply(&mut self, k: usize, forward: bool) {
        for w in self.steps[k].writes.clone() {
            let (Some(va), Some(bytes)) = (unhex(&w.va), unhex_bytes(if forward { &w.new } else { &w.old })) else {
                continue;
            };
            for (i, b) in bytes.iter().enumerate() {
                let a = va.wrapping_add(i as u64);
                if let Some(page) = self.mem.get_mut(&(a & !0xfff)) {
                    page[(a & 0xfff) as usize] = *b;
                }
            }
        }
    }

    /// Move to step `k`, replaying or undoing the writes between.
    pub fn goto(&mut self, k: usize) {
        let k = k.min(self.steps.len() - 1);
        while self.at < k {
            self.apply(self.at, true);
            self.at += 1;
        }
        while self.at > k {
            self.at -= 1;
            self.apply(self.at, false);
        }
    }

    /// Memory at the current step, if the recording has it.
    pub fn read(&self, va: u64, len: usize) -> Option<Vec<u8>> {
        (0..len)
            .map(|i| {
                let a = va.wrapping_add(i as u64);
                self.mem.get(&(a & !0xfff)).map(|p| p[(a & 0xfff) as usize])
            })
            .collect()
    }

    /// "step K: CPL c RIP <sym> insn", with the transition that led here.
    pub fn stop_line(&self) -> String {
        let s = &self.steps[self.at];
        let mut out = String::new();
        if let Some(t) = &s.transition {
            let _ = writeln!(out, "        CPL {} → {} via {}", t.from, t.to, self.cause(self.at));
        }
        let _ = write!(out, "step {}: CPL {} RIP {:<44} {}", self.at, s.cpl, s.sym, s.insn);
        out
    }

    /// Why the CPL changed on arriving at step `k`: the instruction before
    /// it (`syscall`, `sysretq`, `int 0x80`, `iretq`), or an exception or
    /// interrupt, named by the handler it entered.
    pub fn cause(&self, k: usize) -> String {
        let prev = k.checked_sub(1).map(|p| self.steps[p].insn.as_str()).unwrap_or("");
        let m = prev.split_whitespace().next().unwrap_or("");
        match m {
            "syscall" | "sysretq" | "sysret" | "sysexitq" | "sysenter" | "iretq" | "iret" => m.to_string(),
            "int" => {
                let n = prev.split_whitespace().nth(1).unwrap_or("");
                match n.strip_suffix('h').and_then(|h| u64::from_str_radix(h, 16).ok()) {
                    Some(v) => format!("int {v:#x}"),
                    None => prev.to_string(),
                }
            }
            _ => format!(
                "exception or interrupt (during `{prev}`, entering {})",
                self.steps[k].sym
            ),
        }
    }

    fn regs_text(&self) -> String {
        let r = &self.regs[self.at];
        let changed = &self.steps[self.at].regs;
        let mut out = String::new();
        for (i, chunk) in REG_NAMES[..16].chunks(4).enumerate() {
            let line: Vec<String> = chunk
                .iter()
                .enumerate()
                .map(|(j, n)| {
                    let mark = if self.at > 0 && changed.contains_key(*n) {
                        '*'
                    } else {
                        ' '
                    };
                    format!("{n:<3} {:#018x}{mark}", r[4 * i + j])
                })
                .collect();
            let _ = writeln!(out, "{}", line.join(" "));
        }
        // The symbol text starts with the address itself.
        let _ = write!(
            out,
            "rip {}\nrflags {:#x}  CPL {}",
            self.steps[self.at].sym,
            r[17],
            self.cpl()
        );
        out
    }

    fn sregs_text(&self) -> String {
        match self.sregs_list.get(self.sregs_at[self.at]) {
            Some(s) => s
                .iter()
                .map(|(k, v)| format!("{k:<9} {v}"))
                .collect::<Vec<_>>()
                .join("\n"),
            None => "(no segment state recorded)".into(),
        }
    }

    /// An address: a number, `$reg`/`reg`, or a recorded symbol.
    fn address(&self, spec: &str) -> Result<u64, ReplayError> {
        if let Some(n) = number(spec) {
            return Ok(n);
        }
        if let Some(v) = self.reg(spec.trim_start_matches('$')) {
            return Ok(v);
        }
        let want = format!("<{spec}>");
        match self.steps.iter().find(|s| s.sym.ends_with(&want)) {
            Some(s) => Ok(unhex(&s.rip).unwrap_or(0)),
            None => cmd_err(format!(
                "{spec}: not a number, a register, or a symbol the recording executed (at its start)"
            )),
        }
    }

    fn examine(&self, fmt: &str, spec: &str) -> Result<String, ReplayError> {
        let digits: String = fmt.chars().take_while(char::is_ascii_digit).collect();
        let n: usize = if digits.is_empty() {
            16
        } else {
            digits.parse().unwrap_or(16)
        };
        let unit = match fmt.chars().rev().find(char::is_ascii_alphabetic) {
            Some('g') => 8,
            Some('w') => 4,
            Some('h') => 2,
            _ => 1,
        };
        if n == 0 || n > 4096 {
            return cmd_err("x/N: N is 1..=4096");
        }
        let va = self.address(spec)?;
        let Some(bytes) = self.read(va, n * unit) else {
            return cmd_err(format!(
                "{va:#x}: the recording did not touch that memory (it keeps only the pages its instructions used)"
            ));
        };
        let mut out = Vec::new();
        for (i, line) in bytes.chunks(16).enumerate() {
            let words: Vec<String> = line
                .chunks(unit)
                .map(|w| {
                    let mut v = 0u64;
                    for (k, b) in w.iter().enumerate() {
                        v |= (*b as u64) << (8 * k);
                    }
                    format!("{v:#0width$x}", width = 2 + 2 * unit)
                })
                .collect();
            out.push(format!("{:#x}: {}", va + 16 * i as u64, words.join(" ")));
        }
        Ok(out.join("\n"))
    }

    fn disas(&self, n: usize) -> Result<String, ReplayError> {
        let rip = self.regs[self.at][16];
        let mut bytes = Vec::new();
        for i in 0..(15 * n) as u64 {
            match self.read(rip + i, 1) {
                Some(b) => bytes.push(b[0]),
                None => break,
            }
        }
        let mut dec = Decoder::with_ip(64, &bytes, rip, DecoderOptions::NONE);
        let mut fmt = IntelFormatter::new();
        let mut out = Vec::new();
        while dec.can_decode() && out.len() < n {
            let insn = dec.decode();
            if insn.is_invalid() {
                break;
            }
            let mut text = String::new();
            fmt.format(&insn, &mut text);
            let mark = if insn.ip() == rip { "=>" } else { "  " };
            out.push(format!("{mark} {:#x}: {text}", insn.ip()));
        }
        if out.is_empty() {
            return cmd_err(format!("{rip:#x}: the recording has no code there"));
        }
        Ok(out.join("\n"))
    }

    fn transitions(&self) -> String {
        let lines: Vec<String> = self
            .steps
            .iter()
            .enumerate()
            .filter_map(|(k, s)| {
                s.transition
                    .as_ref()
                    .map(|t| format!("step {k}: CPL {} → {} via {}  ({})", t.from, t.to, self.cause(k), s.sym))
            })
            .collect();
        if lines.is_empty() {
            return "no CPL changes in this recording".into();
        }
        format!("{} CPL changes\n{}", lines.len(), lines.join("\n"))
    }

    /// A breakpoint or a CPL change stops `continue` at step k.
    fn stops_at(&self, k: usize) -> bool {
        let rip = unhex(&self.steps[k].rip).unwrap_or(0);
        self.steps[k].transition.is_some() || self.breakpoints.contains(&rip)
    }

    /// Run one command; its output.
    pub fn execute(&mut self, line: &str) -> Result<String, ReplayError> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((&cmd, args)) = words.split_first() else {
            return Ok(String::new());
        };
        let count = |args: &[&str]| -> Result<usize, ReplayError> {
            match args.first() {
                None => Ok(1),
                Some(a) => match number(a) {
                    Some(n) => Ok(n as usize),
                    None => cmd_err(format!("{a}: expected a count")),
                },
            }
        };
        let last = self.steps.len() - 1;
        match cmd {
            "regs" | "info" if cmd == "regs" || args.first() == Some(&"registers") => Ok(self.regs_text()),
            "sregs" => Ok(self.sregs_text()),
            "stepi" | "si" => {
                let n = count(args)?;
                if self.at == last {
                    return cmd_err(format!(
                        "at the last recorded step ({last}; {})",
                        self.end.as_deref().unwrap_or("the recording ends here")
                    ));
                }
                self.goto(self.at.saturating_add(n));
                Ok(self.stop_line())
            }
            "reverse-stepi" | "rsi" => {
                let n = count(args)?;
                if self.at == 0 {
                    return cmd_err("at step 0, the start of the recording");
                }
                self.goto(self.at.saturating_sub(n));
                Ok(self.stop_line())
            }
            "continue" | "c" => {
                let k = (self.at + 1..=last).find(|&k| self.stops_at(k)).unwrap_or(last);
                self.goto(k);
                Ok(self.stop_line())
            }
            "reverse-continue" | "rc" => {
                // A CPL change is reported at the step after the instruction
                // that made it: stop on that instruction.
                let k = (0..self.at)
                    .rev()
                    .find(|&k| {
                        let rip = unhex(&self.steps[k].rip).unwrap_or(0);
                        self.breakpoints.contains(&rip) || self.steps.get(k + 1).is_some_and(|s| s.transition.is_some())
                    })
                    .unwrap_or(0);
                self.goto(k);
                Ok(self.stop_line())
            }
            "goto" => {
                let Some(k) = args.first().and_then(|a| number(a)) else {
                    return cmd_err(format!("goto STEP: a step number 0..={last}"));
                };
                if k as usize > last {
                    return cmd_err(format!("goto {k}: the recording has steps 0..={last}"));
                }
                self.goto(k as usize);
                Ok(self.stop_line())
            }
            "break" | "b" => {
                let Some(spec) = args.first() else {
                    return cmd_err("break SYMBOL|0xADDR");
                };
                let a = self.address(spec)?;
                self.breakpoints.push(a);
                Ok(format!("Breakpoint {} at {a:#x}", self.breakpoints.len()))
            }
            "info" if args.first() == Some(&"transitions") => Ok(self.transitions()),
            "info" | "where" => Ok(format!("{}\nof steps 0..={last}", self.stop_line())),
            "disas" | "x/i" => Ok(self.disas(number(args.first().unwrap_or(&"8")).unwrap_or(8) as usize)?),
            c if c.starts_with("x/") || c == "x" => {
                let Some(spec) = args.first() else {
                    return cmd_err("x/N[bhwg] ADDR|$REG");
                };
                self.examine(c.trim_start_matches('x').trim_start_matches('/'), spec)
            }
            "quit" | "q" => Ok(String::new()),
            "help" => Ok(
                "replay commands: regs, sregs, x/N[bhwg] ADDR|$REG, disas [N], stepi [N], reverse-stepi [N], \
                           continue, reverse-continue, break SYMBOL|0xADDR, goto STEP, info transitions, where, quit"
                    .into(),
            ),
            other => cmd_err(format!("{other}: not a replay command (type help)")),
        }
    }
}

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// A recording made by `vmm trace --record FILE`.
    #[arg(value_name = "FILE")]
    pub file: std::path::PathBuf,
    /// Run this command first (repeatable), as gdb's -ex.
    #[arg(short = 'x', long = "ex", value_name = "CMD")]
    pub commands: Vec<String>,
    /// Exit after the -x commands instead of prompting.
    #[arg(long)]
    pub batch: bool,
}

fn run(rep: &mut Replay, line: &str) -> Result<bool, ReplayError> {
    let out = rep.execute(line)?;
    if !out.is_empty() {
        println!("{out}");
    }
    Ok(matches!(line.trim(), "quit" | "q"))
}

pub fn main(args: ReplayArgs) -> ExitCode {
    let mut rep = match Replay::load(&args.file) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vmm: {e}");
            return ExitCode::from(crate::status::SETUP_ERROR);
        }
    };
    println!(
        "replaying {} steps recorded from {} ({})",
        rep.steps.len(),
        rep.header.from,
        rep.end.as_deref().unwrap_or("no end line: the recording was cut short")
    );
    println!("{}", rep.stop_line());
    for c in &args.commands {
        println!("(replay) {c}");
        match run(&mut rep, c) {
            Ok(true) => return ExitCode::SUCCESS,
            Ok(false) => {}
            Err(e) => {
                eprintln!("error: {e}");
                if args.batch {
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    if args.batch {
        return ExitCode::SUCCESS;
    }
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match run(&mut rep, &line) {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => eprintln!("error: {e}"),
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A getpid round trip as hardware KVM records it: ring 3 `syscall`,
    /// the kernel storing to memory, `sysretq`, ring 3 again.
    fn recording() -> String {
        let page = |va: &str, fill: u8| {
            format!(
                r#"{{"page":"{va}","cr3":"0x1000","data":"{}"}}"#,
                format!("{fill:02x}").repeat(4096)
            )
        };
        let all: Vec<String> = REG_NAMES.iter().map(|n| format!(r#""{n}":"0x0""#)).collect();
        [
            r#"{"format":"vmm-trace","version":1,"from":"getpid","from_addr":"0x401000","pvm":false}"#.to_string(),
            page("0x2000", 0xaa),
            format!(
                r#"{{"step":0,"cpu":0,"cpl":3,"rip":"0x401000","sym":"0x401000 <getpid>","insn":"syscall","regs":{{{}}},"sregs":{{"cs":"0x33"}}}}"#,
                all.join(",")
            ),
            r#"{"step":1,"cpu":0,"cpl":0,"rip":"0xffffffff80100000","sym":"0xffffffff80100000 <entry_SYSCALL_64>","insn":"mov [2000h],rax","regs":{"rip":"0xffffffff80100000","rcx":"0x401002"},"sregs":{"cs":"0x8"},"transition":{"from":3,"to":0,"via":"syscall"},"writes":[{"va":"0x2000","old":"aaaaaaaaaaaaaaaa","new":"0100000000000000"}]}"#.into(),
            r#"{"step":2,"cpu":0,"cpl":0,"rip":"0xffffffff80100008","sym":"0xffffffff80100008 <entry_SYSCALL_64+0x8>","insn":"sysretq","regs":{"rip":"0xffffffff80100008","rax":"0x1"}}"#.into(),
            r#"{"step":3,"cpu":0,"cpl":3,"rip":"0x401002","sym":"0x401002 <getpid+0x2>","insn":"ret","regs":{"rip":"0x401002"},"sregs":{"cs":"0x33"},"transition":{"from":0,"to":3,"via":"sysretq"}}"#.into(),
            r#"{"end":"--steps 3 reached","steps":4}"#.into(),
        ]
        .join("\n")
    }

    fn replay() -> Replay {
        Replay::parse("test", std::io::Cursor::new(recording())).unwrap()
    }

    #[test]
    fn reverse_stepi_from_ring3_lands_on_sysretq_at_cpl0() {
        let mut r = replay();
        r.execute("goto 3").unwrap();
        assert_eq!(r.cpl(), 3);
        let out = r.execute("reverse-stepi").unwrap();
        assert!(out.contains("CPL 0") && out.contains("sysretq"), "{out}");
        assert_eq!(r.reg("rax"), Some(1), "registers are those of step 2");
        r.execute("rsi").unwrap();
        assert_eq!(r.reg("rax"), Some(0));
    }

    #[test]
    fn goto_shows_the_cpl_and_memory_as_it_was_at_that_step() {
        let mut r = replay();
        assert!(r.execute("goto 0").unwrap().contains("CPL 3"));
        assert!(r.execute("goto 1").unwrap().contains("CPL 0"));
        // Step 1 is the store: before it, the old value.
        assert!(r.execute("x/1g 0x2000").unwrap().contains("0xaaaaaaaaaaaaaaaa"));
        r.execute("stepi").unwrap();
        assert!(r.execute("x/1g 0x2000").unwrap().contains("0x0000000000000001"));
        r.execute("goto 0").unwrap();
        assert_eq!(r.read(0x2000, 1), Some(vec![0xaa]));
        assert!(r.execute("x/1g 0x9000").is_err(), "not recorded memory is an error");
    }

    #[test]
    fn transitions_name_their_cause_and_continue_stops_at_them() {
        let mut r = replay();
        let t = r.execute("info transitions").unwrap();
        assert!(t.contains("2 CPL changes"), "{t}");
        assert!(t.contains("step 1: CPL 3 → 0 via syscall"), "{t}");
        assert!(t.contains("step 3: CPL 0 → 3 via sysretq"), "{t}");
        assert!(r.execute("continue").unwrap().contains("step 1:"));
        r.execute("goto 3").unwrap();
        assert!(r.execute("reverse-continue").unwrap().contains("sysretq"));
        assert!(r.execute("reverse-continue").unwrap().contains("step 0:"));
        let regs = r.execute("regs").unwrap();
        assert!(regs.contains("rflags") && regs.contains("CPL 3"), "{regs}");
    }

    #[test]
    fn bad_files_and_commands_are_named() {
        let e = Replay::parse("f", std::io::Cursor::new("hello\n")).err().unwrap();
        assert!(e.to_string().contains("not a vmm recording"), "{e}");
        let v2 = r#"{"format":"vmm-trace","version":2,"from":"x","from_addr":"0x0","pvm":true}"#;
        let e = Replay::parse("f", std::io::Cursor::new(v2)).err().unwrap();
        assert!(e.to_string().contains("version 2"), "{e}");
        let mut r = replay();
        assert!(r.execute("goto 99").unwrap_err().to_string().contains("0..=3"));
        assert!(r.execute("frobnicate").is_err());
        assert!(r.execute("reverse-stepi").is_err(), "at step 0");
    }
}
