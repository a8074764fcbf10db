//! `vmm run --strace`: every ring-3 system call, strace-style, seen from the
//! hypervisor with no help from the guest. Breakpoints at the kernel's entry
//! and exit points (debug registers, or exit-instruction patches where those
//! do not exit; through the debug engine) stop the vCPU; the VMM reads the number and
//! arguments from the registers (or the trap frame), strings and buffers
//! through the user's page tables, and the result at the way out:
//!
//! ```text
//! [pid 1] write(1, "Hello, world!\n", 14) = 14
//! ```
//!
//! Trace points: `entry_SYSCALL_64` / `syscall_return` for the `syscall`
//! instruction on hardware KVM; `do_trap` / `exc_return` for `int 0x80` and
//! for PVM, where system calls arrive as faults. One exit per event where
//! RFLAGS.RF lets a debug-register breakpoint be left without a step.

use crate::debug::engine::BreakMethod;
use crate::introspect::memory::read_virt;
use crate::introspect::symbols::Symbols;
use crate::trace::perfetto::Perfetto;
use crate::trace::tracer::{Next, TraceStop, TraceSummary, Tracer};
use kvm_bindings::kvm_regs;
use std::collections::HashMap;
use std::io::Write;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_abi::frame::{TrapFrame, PERCPU_PID};
use vmm_abi::layout::KERNEL_BASE;

// Numbers, names and argument kinds: the boot contract's one list, which
// the kernel's table is built from too (abi/src/syscalls.rs).
use vmm_abi::syscalls::Arg::{self, *};
use vmm_abi::syscalls::{lookup, SYSCALLS};

/// A system call's name and argument kinds.
fn signature(nr: u64) -> Option<(&'static str, &'static [Arg])> {
    lookup(nr).map(|s| (s.name, s.args))
}

/// "ENOENT (No such file or directory)", as strace shows an error.
fn errno_name(e: i64) -> String {
    vmm_abi::errno::describe(e).map_or_else(String::new, |(name, text)| format!("{name} ({text})"))
}

/// A string as strace quotes it, at most `max` bytes.
fn quote(bytes: &[u8], max: usize, truncated: bool) -> String {
    let mut s = String::from("\"");
    for &b in bytes.iter().take(max) {
        match b {
            b'\n' => s += "\\n",
            b'\t' => s += "\\t",
            b'\r' => s += "\\r",
            b'"' => s += "\\\"",
            b'\\' => s += "\\\\",
            0x20..=0x7e => s.push(b as char),
            _ => s += &format!("\\{b:o}"),
        }
    }
    s.push('"');
    if truncated || bytes.len() > max {
        s += "...";
    }
    s
}

const STRING_MAX: usize = 32;

/// A system call's arguments, read (strings, buffers) as it enters.
fn pending(mem: &GuestMemoryMmap, cr3: u64, nr: u64, args: [u64; 6], frame: Option<u64>) -> Pending {
    let shown = match signature(nr) {
        Some((_, kinds)) => kinds
            .iter()
            .enumerate()
            .map(|(i, k)| show_arg(mem, cr3, *k, args[i], &args))
            .collect(),
        None => args.iter().take(3).map(|a| format!("{a:#x}")).collect(),
    };
    Pending {
        nr,
        args,
        shown,
        frame,
        start: std::time::Instant::now(),
    }
}

/// The strace line for system call `nr` with `args` and result `ret` (None:
/// it did not return), reading strings and buffers through the page tables
/// at `cr3` in `mem` — memory the guest controls entirely.
pub fn decode_call(mem: &GuestMemoryMmap, cr3: u64, pid: u64, nr: u64, args: [u64; 6], ret: Option<i64>) -> String {
    format_call(pid, &pending(mem, cr3, nr, args, None), ret, mem, cr3)
}

/// The system call numbers strace decodes by name.
pub fn known_calls() -> impl Iterator<Item = u64> {
    SYSCALLS.iter().map(|s| s.nr as u64)
}

fn show_arg(mem: &GuestMemoryMmap, cr3: u64, kind: Arg, v: u64, args: &[u64; 6]) -> String {
    // Only what ring 3 could read itself: a kernel pointer is shown as a number.
    let read = |addr: u64, len: usize| -> Option<Vec<u8>> {
        if addr.checked_add(len as u64)? > vmm_abi::layout::USER_END {
            return None;
        }
        let mut b = vec![0u8; len];
        read_virt(mem, cr3, addr, &mut b).ok().map(|_| b)
    };
    match kind {
        Int => (v as i64).to_string(),
        Hex => format!("{v:#x}"),
        BufOut => format!("{v:#x}"),
        Str => {
            let mut s = Vec::new();
            for i in 0..=(STRING_MAX as u64) {
                match read(v + i, 1) {
                    Some(b) if b[0] != 0 => s.push(b[0]),
                    Some(_) => return quote(&s, STRING_MAX, false),
                    None => {
                        return if s.is_empty() {
                            format!("{v:#x}")
                        } else {
                            quote(&s, STRING_MAX, true)
                        }
                    }
                }
            }
            quote(&s, STRING_MAX, true)
        }
        BufIn(len_arg) => {
            let len = args[len_arg] as usize;
            match read(v, len.min(STRING_MAX)) {
                Some(b) => quote(&b, STRING_MAX, len > STRING_MAX),
                None => format!("{v:#x}"),
            }
        }
        Iovec(cnt_arg) => {
            let n = args[cnt_arg].min(4) as usize;
            let mut parts = Vec::new();
            for i in 0..n {
                let Some(iov) = read(v + 16 * i as u64, 16) else {
                    return format!("{v:#x}");
                };
                let base = u64::from_le_bytes(iov[..8].try_into().unwrap());
                let len = u64::from_le_bytes(iov[8..].try_into().unwrap());
                let data = read(base, (len as usize).min(STRING_MAX))
                    .map(|b| quote(&b, STRING_MAX, len as usize > STRING_MAX));
                parts.push(format!(
                    "{{iov_base={}, iov_len={len}}}",
                    data.unwrap_or_else(|| format!("{base:#x}"))
                ));
            }
            format!("[{}]", parts.join(", "))
        }
        Argv => {
            let mut items = Vec::new();
            for i in 0..8u64 {
                let Some(p) = read(v + 8 * i, 8) else { break };
                let p = u64::from_le_bytes(p.try_into().unwrap());
                if p == 0 {
                    break;
                }
                items.push(show_arg(mem, cr3, Str, p, args));
            }
            format!("[{}]", items.join(", "))
        }
    }
}

fn format_call(pid: u64, p: &Pending, ret: Option<i64>, mem: &GuestMemoryMmap, cr3: u64) -> String {
    let name = signature(p.nr)
        .map(|s| s.0.to_string())
        .unwrap_or_else(|| format!("syscall_{}", p.nr));
    let mut shown = p.shown.clone();
    // Buffers the kernel filled are shown once the call has returned.
    if let (Some(r), Some((_, kinds))) = (ret, signature(p.nr)) {
        for (i, k) in kinds.iter().enumerate() {
            if *k == BufOut && r > 0 {
                let mut b = vec![0u8; (r as usize).min(STRING_MAX)];
                if p.args[i] < vmm_abi::layout::USER_END && read_virt(mem, cr3, p.args[i], &mut b).is_ok() {
                    shown[i] = quote(&b, STRING_MAX, r as usize > STRING_MAX);
                }
            }
        }
    }
    let result = match ret {
        None => "?".to_string(),
        Some(r) if (-4095..0).contains(&r) => format!("-1 {}", errno_name(-r)).trim_end().to_string(),
        Some(r) if matches!(p.nr, 9 | 12) => format!("{r:#x}"),
        Some(r) => r.to_string(),
    };
    format!("[pid {pid}] {name}({}) = {result}", shown.join(", "))
}

struct Pending {
    nr: u64,
    args: [u64; 6],
    shown: Vec<String>,
    /// Entered through the trap path: the TrapFrame's address (a fault taken
    /// inside the call, e.g. by copy_from_user, has a frame of its own).
    frame: Option<u64>,
    /// When the call entered (`--perfetto`'s span start).
    start: std::time::Instant,
}

pub struct Strace {
    entry: u64,
    ret: u64,
    trap: u64,
    trap_ret: u64,
    pid_addr: Option<u64>,
    pvm: bool,
    pending: HashMap<u64, Pending>,
    out: Box<dyn Write + Send>,
    /// System calls traced.
    pub calls: u64,
    /// `--perfetto`: each call as an X event.
    perfetto: Option<Perfetto>,
}

impl Strace {
    pub fn new(kernel: &Symbols, pvm: bool, out: Box<dyn Write + Send>) -> Result<Strace, crate::error::Error> {
        let need = |n: &'static str| kernel.address_of(n).ok_or(crate::error::Error::StraceSymbol(n));
        Ok(Strace {
            entry: need("entry_SYSCALL_64")?,
            ret: need("syscall_return")?,
            trap: need("do_trap")?,
            trap_ret: need("exc_return")?,
            pid_addr: kernel.address_of("PERCPU").map(|a| a + PERCPU_PID as u64),
            pvm,
            pending: HashMap::new(),
            out,
            calls: 0,
            perfetto: None,
        })
    }

    /// Also write each call as a trace event (`--perfetto`).
    pub fn with_perfetto(mut self, p: Perfetto) -> Strace {
        self.perfetto = Some(p);
        self
    }

    /// The call as a span on the pid's track: its name, the strace line as
    /// an argument.
    fn span(&mut self, pid: u64, p: &Pending, line: &str, ret: Option<i64>) {
        if let Some(perfetto) = &mut self.perfetto {
            let name = signature(p.nr).map_or_else(|| format!("syscall_{}", p.nr), |s| s.0.to_string());
            let args = serde_json::json!({ "nr": p.nr, "call": line, "ret": ret });
            perfetto.complete(&name, p.start, pid, pid, args);
        }
    }

    fn trace_points(&self) -> [u64; 4] {
        [self.entry, self.ret, self.trap, self.trap_ret]
    }

    fn pid(&self, mem: &GuestMemoryMmap) -> u64 {
        self.pid_addr
            .and_then(|a| mem.read_obj::<u64>(GuestAddress(a - KERNEL_BASE)).ok())
            .unwrap_or(0)
    }

    fn enter(&mut self, mem: &GuestMemoryMmap, cr3: u64, nr: u64, args: [u64; 6], frame: Option<u64>) {
        let pid = self.pid(mem);
        let p = pending(mem, cr3, nr, args, frame);
        self.calls += 1;
        if matches!(nr, 60 | 231) {
            // exit never returns: print now, as strace does.
            let line = format_call(pid, &p, None, mem, cr3);
            let _ = writeln!(self.out, "{line}");
            self.span(pid, &p, &line, None);
            return;
        }
        self.pending.insert(pid, p);
    }

    fn leave(&mut self, mem: &GuestMemoryMmap, cr3: u64, ret: i64, frame: Option<u64>) {
        let pid = self.pid(mem);
        if self.pending.get(&pid).is_some_and(|p| p.frame == frame) {
            let p = self.pending.remove(&pid).unwrap();
            let line = format_call(pid, &p, Some(ret), mem, cr3);
            let _ = writeln!(self.out, "{line}");
            self.span(pid, &p, &line, Some(ret));
        }
    }

    /// The kernel's TrapFrame (abi/src/frame.rs) at direct-map address `frame`.
    pub fn read_frame(mem: &GuestMemoryMmap, frame: u64) -> Option<TrapFrame> {
        let mut w = [0u64; TrapFrame::WORDS];
        let base = frame.checked_sub(vmm_abi::layout::DIRECT_MAP_BASE)?;
        for (i, word) in w.iter_mut().enumerate() {
            *word = mem
                .read_obj::<u64>(GuestAddress(base.checked_add(8 * i as u64)?))
                .ok()?;
        }
        Some(TrapFrame::from_words(w))
    }

    fn at_point(&mut self, r: &kvm_regs, cr3: u64, mem: &GuestMemoryMmap) {
        if r.rip == self.entry {
            self.enter(mem, cr3, r.rax, [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9], None);
        } else if r.rip == self.ret {
            self.leave(mem, cr3, r.rax as i64, None);
        } else if r.rip == self.trap {
            if let Some(f) = Self::read_frame(mem, r.rdi) {
                let pvm_syscall = self.pvm && f.vector == 14 && f.error_code == 0x15 && f.rip == self.entry;
                let mut insn = [0u8; 2];
                let pvm_int80 =
                    self.pvm && f.vector == 6 && read_virt(mem, cr3, f.rip, &mut insn).is_ok() && insn == [0xcd, 0x80];
                if f.from_user() && (f.vector == 0x80 || pvm_syscall || pvm_int80) {
                    self.enter(mem, cr3, f.rax, f.syscall_args(), Some(r.rdi));
                } else if f.from_user() && f.vector < 32 {
                    // An exception the program caused; device interrupts
                    // (the timer, IRQ 4) are not its doing, and strace
                    // does not show them.
                    let pid = self.pid(mem);
                    let name = crate::introspect::decode::vector_name(f.vector as usize);
                    let (rip, error) = (f.rip, f.error_code);
                    let _ = writeln!(self.out, "[pid {pid}] --- {name} at {rip:#x} (error {error:#x}) ---");
                }
            }
        } else if r.rip == self.trap_ret {
            if let Some(f) = Self::read_frame(mem, r.rsp) {
                self.leave(mem, cr3, f.rax as i64, Some(r.rsp));
            }
        }
    }
}

impl Tracer for Strace {
    fn points(&self) -> Vec<u64> {
        self.trace_points().to_vec()
    }

    // `do_trap` and `exc_return` are every interrupt's way in and out.
    fn on_interrupt_path(&self) -> bool {
        true
    }

    fn on_stop(&mut self, stop: &TraceStop<'_>) -> Next {
        if self.trace_points().contains(&stop.regs.rip) {
            self.at_point(&stop.regs, stop.sregs.cr3, stop.mem);
        }
        Next::Continue
    }

    fn report(&mut self, summary: &TraceSummary) -> Vec<String> {
        let _ = self.out.flush();
        let how = match summary.method {
            BreakMethod::Step => "single-stepping every instruction",
            BreakMethod::ExitInsn => {
                "exit-instruction breakpoints; each stop also single-steps the restored instruction"
            }
            BreakMethod::DebugRegister if summary.rf_failed => {
                "DR breakpoints; RFLAGS.RF was not honoured, so each stop also single-steps"
            }
            BreakMethod::DebugRegister => "DR breakpoints, one exit per stop",
        };
        let exits = summary.stops;
        let mut lines = vec![format!(
            "vmm: strace: {} system calls, {exits} debug exits ({:.1} per call; {how})",
            self.calls,
            if self.calls > 0 {
                exits as f64 / self.calls as f64
            } else {
                0.0
            }
        )];
        if let Some(mut p) = self.perfetto.take() {
            lines.push(crate::trace::perfetto::written(&mut p));
        }
        lines
    }
}
