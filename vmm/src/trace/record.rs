//! `vmm trace --record FILE`: a single-step recording that `vmm replay` can
//! step through backwards and `--html` can draw. The guest runs to `--from`
//! (through the debug engine, like every tracer), then is single-stepped
//! `--steps` instructions; each stop is written as one line of JSON.
//!
//! Format (version 1, JSON lines, all 64-bit values as "0x…" strings so a
//! browser's doubles do not round them):
//! - line 1, the header: `{"format":"vmm-trace","version":1,"from":…,
//!   "from_addr":…,"pvm":…}`;
//! - `{"page":VA,"cr3":…,"data":HEX}`: the 4 KiB page at virtual VA as it
//!   was when the recording first touched it (code at RIP, every memory
//!   operand, the stack), written before the step that touches it. No
//!   recorded write touched it before, so it is also the page at step 0;
//! - `{"step":K,"cpu":0,"cpl":…,"rip":…,"sym":…,"insn":…,"regs":{…},…}`:
//!   the state before instruction K runs. `regs` holds the general
//!   registers, RIP and RFLAGS that changed since step K−1 (all of them at
//!   step 0); `sregs` (segments, CR0/3/4, EFER, GDT, TSS) is present at
//!   step 0 and wherever any of it changed; `transition` where the CPL
//!   differs from step K−1 (`via`: the instruction or exception that made
//!   it); `writes` the memory instruction K wrote (`va`, `old`, `new` hex
//!   bytes, from its decoded operands, implicit stack pushes included);
//! - last line: `{"end":REASON,"steps":N}`.
//!
//! Memory the CPU writes without an operand (an exception's stack frame) is
//! not in `writes`; on this PVM host the recording stays in ring 0 anyway.

use crate::debug::engine::{mnemonic, Symbolizer};
use crate::introspect::memory::{self, read_virt};
use crate::introspect::symbols::Symbols;
use crate::trace::tracer::{Next, TraceStop, TraceSummary, Tracer};
use iced_x86::{Decoder, DecoderOptions, InstructionInfoFactory, OpAccess, Register};
use kvm_bindings::{kvm_regs, kvm_sregs};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use vm_memory::GuestMemoryMmap;

pub const FORMAT: &str = "vmm-trace";
pub const VERSION: u32 = 1;
/// Bytes of one write kept at most (`rep stos` and `xsave` can write more;
/// the rest is cut, and the cut is visible as a shorter `new`).
const MAX_WRITE: usize = 4096;

/// "0x…", the format's spelling of a 64-bit value.
pub fn hex(v: u64) -> String {
    format!("{v:#x}")
}

/// A "0x…" value back.
pub fn unhex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

pub fn hex_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex_bytes(s: &str) -> Option<Vec<u8>> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub from: String,
    pub from_addr: String,
    pub pvm: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Page {
    pub page: String,
    pub cr3: String,
    pub data: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TransitionRec {
    pub from: u8,
    pub to: u8,
    pub via: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Write1 {
    pub va: String,
    pub old: String,
    pub new: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Step {
    pub step: u64,
    pub cpu: u32,
    pub cpl: u8,
    pub rip: String,
    pub sym: String,
    pub insn: String,
    pub regs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sregs: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition: Option<TransitionRec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<Write1>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct End {
    pub end: String,
    pub steps: u64,
}

/// The general registers in the order `regs` prints them.
pub const REG_NAMES: [&str; 18] = [
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
    "rip", "rflags",
];

fn reg_values(r: &kvm_regs) -> [u64; 18] {
    [
        r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15,
        r.rip, r.rflags,
    ]
}

fn sreg_map(s: &kvm_sregs) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (n, seg) in [
        ("cs", &s.cs),
        ("ss", &s.ss),
        ("ds", &s.ds),
        ("es", &s.es),
        ("fs", &s.fs),
        ("gs", &s.gs),
        ("tr", &s.tr),
    ] {
        m.insert(n.to_string(), hex(seg.selector.into()));
    }
    for (n, v) in [
        ("fs_base", s.fs.base),
        ("gs_base", s.gs.base),
        ("tr_base", s.tr.base),
        ("gdt_base", s.gdt.base),
        ("gdt_limit", s.gdt.limit.into()),
        ("idt_base", s.idt.base),
        ("cr0", s.cr0),
        ("cr2", s.cr2),
        ("cr3", s.cr3),
        ("cr4", s.cr4),
        ("efer", s.efer),
    ] {
        m.insert(n.to_string(), hex(v));
    }
    m
}

/// The virtual ranges an instruction reads or writes, from its decoded
/// operands (implicit stack accesses included): (va, len, writes).
fn accesses(bytes: &[u8], r: &kvm_regs, s: &kvm_sregs) -> Vec<(u64, usize, bool)> {
    let mut dec = Decoder::with_ip(64, bytes, r.rip, DecoderOptions::NONE);
    let insn = dec.decode();
    if insn.is_invalid() {
        return Vec::new();
    }
    let vals = reg_values(r);
    let value = |reg: Register, _: usize, _: usize| -> Option<u64> {
        match reg {
            Register::ES | Register::CS | Register::SS | Register::DS => Some(0),
            Register::FS => Some(s.fs.base),
            Register::GS => Some(s.gs.base),
            Register::RIP | Register::EIP => Some(insn.next_ip()),
            _ => {
                let full = reg.full_register();
                let i = [
                    Register::RAX,
                    Register::RBX,
                    Register::RCX,
                    Register::RDX,
                    Register::RSI,
                    Register::RDI,
                    Register::RBP,
                    Register::RSP,
                    Register::R8,
                    Register::R9,
                    Register::R10,
                    Register::R11,
                    Register::R12,
                    Register::R13,
                    Register::R14,
                    Register::R15,
                ]
                .iter()
                .position(|&x| x == full)?;
                let v = vals[i];
                Some(match reg.size() {
                    4 => v & 0xffff_ffff,
                    2 => v & 0xffff,
                    _ => v,
                })
            }
        }
    };
    let mut factory = InstructionInfoFactory::new();
    let info = factory.info(&insn);
    let mut out = Vec::new();
    for m in info.used_memory() {
        let Some(va) = m.virtual_address(0, value) else {
            continue;
        };
        let mut len = m.memory_size().size();
        if len == 0 {
            continue;
        }
        // `rep movs`/`stos` write RCX elements.
        if insn.has_rep_prefix() || insn.has_repne_prefix() {
            len = len.saturating_mul(r.rcx as usize);
        }
        let writes = matches!(
            m.access(),
            OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
        );
        out.push((va, len.min(MAX_WRITE), writes));
    }
    out
}

/// A recording kept in memory (for `--html`) and written out at the end:
/// after seccomp no file can be opened, and the page needs all of it.
#[derive(Clone, Default)]
pub struct SharedBuf(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The step waiting for its instruction to run (its writes' new bytes).
struct Pending {
    step: Step,
    cr3: u64,
    writes: Vec<(u64, Vec<u8>)>,
}

pub struct Recorder {
    from: String,
    from_addr: u64,
    steps: u64,
    pvm: bool,
    user_symbols: Symbols,
    out: Box<dyn Write + Send>,
    taken: u64,
    last: Option<(kvm_regs, BTreeMap<String, String>, u8)>,
    pending: Option<Pending>,
    pages: HashSet<u64>,
    end: Option<String>,
    error: Option<std::io::Error>,
}

impl Recorder {
    pub fn new(
        from: &str,
        from_addr: u64,
        steps: u64,
        pvm: bool,
        user_symbols: Symbols,
        out: Box<dyn Write + Send>,
    ) -> Recorder {
        Recorder {
            from: from.to_string(),
            from_addr,
            steps,
            pvm,
            user_symbols,
            out,
            taken: 0,
            last: None,
            pending: None,
            pages: HashSet::new(),
            end: None,
            error: None,
        }
    }

    fn line<T: Serialize>(&mut self, v: &T) {
        if self.error.is_some() {
            return;
        }
        let r = serde_json::to_writer(&mut self.out, v)
            .map_err(std::io::Error::from)
            .and_then(|_| self.out.write_all(b"\n"));
        if let Err(e) = r {
            self.error = Some(e);
        }
    }

    /// The pages holding `va..va+len`, each written once as first seen.
    fn touch(&mut self, mem: &GuestMemoryMmap, cr3: u64, va: u64, len: usize) {
        let first = va & !0xfff;
        let last = va.saturating_add(len.max(1) as u64 - 1) & !0xfff;
        let mut p = first;
        loop {
            if self.pages.insert(p) {
                let mut data = vec![0u8; 4096];
                if read_virt(mem, cr3, p, &mut data).is_ok() {
                    let page = Page {
                        page: hex(p),
                        cr3: hex(cr3),
                        data: hex_bytes(&data),
                    };
                    self.line(&page);
                }
            }
            if p >= last {
                break;
            }
            p += 0x1000;
        }
    }

    /// The pending step's writes are done: their new bytes, then the line.
    fn flush_pending(&mut self, mem: &GuestMemoryMmap) {
        if let Some(mut p) = self.pending.take() {
            for (va, old) in &p.writes {
                let mut new = vec![0u8; old.len()];
                let new = match read_virt(mem, p.cr3, *va, &mut new) {
                    Ok(()) => hex_bytes(&new),
                    Err(_) => String::new(),
                };
                p.step.writes.push(Write1 {
                    va: hex(*va),
                    old: hex_bytes(old),
                    new,
                });
            }
            self.line(&p.step);
        }
    }

    /// On PVM a step that returns to ring 3 does not stop until the next
    /// kernel entry: the recording ends before such an instruction.
    fn returns_to_ring3(&self, stop: &TraceStop<'_>, insn: &str) -> bool {
        let m = mnemonic(insn);
        if m.starts_with("sysret") {
            return true;
        }
        if m.starts_with("iret") {
            let mut cs = [0u8; 8];
            return read_virt(stop.mem, stop.sregs.cr3, stop.regs.rsp.wrapping_add(8), &mut cs).is_err()
                || cs[0] & 3 == 3;
        }
        false
    }
}

impl Tracer for Recorder {
    fn points(&self) -> Vec<u64> {
        vec![self.from_addr]
    }

    fn begin(&mut self) {
        let h = Header {
            format: FORMAT.into(),
            version: VERSION,
            from: self.from.clone(),
            from_addr: hex(self.from_addr),
            pvm: self.pvm,
        };
        self.line(&h);
    }

    fn on_stop(&mut self, stop: &TraceStop<'_>) -> Next {
        let (r, s, cpl) = (&stop.regs, &stop.sregs, stop.cpl);
        self.flush_pending(stop.mem);
        if self.taken > self.steps {
            self.end = Some(format!("--steps {} reached", self.steps));
            return Next::Detach;
        }
        let (insn, len) = memory::decode_one(stop.mem, s.cr3, r.rip).unwrap_or_else(|| ("(not mapped)".into(), 0));
        self.touch(stop.mem, s.cr3, r.rip, len.max(1) as usize);
        self.touch(stop.mem, s.cr3, r.rsp, 8);
        let mut code = vec![0u8; len as usize];
        let _ = read_virt(stop.mem, s.cr3, r.rip, &mut code);
        let mut writes = Vec::new();
        for (va, n, w) in accesses(&code, r, s) {
            self.touch(stop.mem, s.cr3, va, n);
            if w {
                let mut old = vec![0u8; n];
                if read_virt(stop.mem, s.cr3, va, &mut old).is_ok() {
                    writes.push((va, old));
                }
            }
        }
        let vals = reg_values(r);
        let sregs = sreg_map(s);
        let (regs, sregs_rec, transition) = match &self.last {
            None => (
                REG_NAMES
                    .iter()
                    .zip(vals)
                    .map(|(n, v)| (n.to_string(), hex(v)))
                    .collect(),
                Some(sregs.clone()),
                None,
            ),
            Some((prev, prev_s, prev_cpl)) => {
                let pv = reg_values(prev);
                let changed = REG_NAMES
                    .iter()
                    .zip(vals)
                    .zip(pv)
                    .filter(|((_, v), p)| v != p)
                    .map(|((n, v), _)| (n.to_string(), hex(v)))
                    .collect();
                let t = (*prev_cpl != cpl).then(|| TransitionRec {
                    from: *prev_cpl,
                    to: cpl,
                    via: stop
                        .transition
                        .as_ref()
                        .map(|t| t.via.clone())
                        .filter(|v| !v.is_empty())
                        .unwrap_or_else(|| mnemonic(stop.executed).to_string()),
                });
                (changed, (prev_s != &sregs).then(|| sregs.clone()), t)
            }
        };
        let sym = Symbolizer {
            kernel: stop.kernel,
            user: &self.user_symbols,
        }
        .describe(r.rip);
        let step = Step {
            step: self.taken,
            cpu: 0,
            cpl,
            rip: hex(r.rip),
            sym,
            insn: insn.clone(),
            regs,
            sregs: sregs_rec,
            transition,
            writes: Vec::new(),
        };
        self.last = Some((*r, sregs, cpl));
        self.taken += 1;
        if self.pvm && cpl == 0 && self.returns_to_ring3(stop, &insn) {
            // Record the instruction, not its effect.
            self.line(&step);
            self.end = Some(format!(
                "`{insn}` returns to ring 3, where single steps do not exit on this host's PVM /dev/kvm"
            ));
            return Next::Detach;
        }
        self.pending = Some(Pending {
            step,
            cr3: s.cr3,
            writes,
        });
        if self.error.is_some() {
            self.end = Some("write error".into());
            return Next::Detach;
        }
        Next::Step
    }

    fn report(&mut self, _summary: &TraceSummary) -> Vec<String> {
        // The guest ended while a step was pending: its writes are unknown.
        if let Some(p) = self.pending.take() {
            self.line(&p.step);
        }
        let end = End {
            end: self.end.clone().unwrap_or_else(|| "the guest ended".into()),
            steps: self.taken,
        };
        self.line(&end);
        let _ = self.out.flush();
        match &self.error {
            Some(e) => vec![format!("vmm: record: cannot write the recording: {e}")],
            None => vec![format!(
                "vmm: record: {} steps, {} pages ({})",
                self.taken,
                self.pages.len(),
                end.end
            )],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(unhex(&hex(0xffff_8000_0000_1234)), Some(0xffff_8000_0000_1234));
        assert_eq!(unhex_bytes(&hex_bytes(&[0, 0xab, 7])), Some(vec![0, 0xab, 7]));
    }

    #[test]
    fn a_push_and_a_store_are_writes_from_their_operands() {
        let r = kvm_regs {
            rip: 0x1000,
            rsp: 0x8000,
            rax: 0x2000,
            ..Default::default()
        };
        let s = kvm_sregs::default();
        // push rbx
        assert_eq!(accesses(&[0x53], &r, &s), vec![(0x7ff8, 8, true)]);
        // mov [rax+8], ecx
        assert_eq!(accesses(&[0x89, 0x48, 0x08], &r, &s), vec![(0x2008, 4, true)]);
        // mov rcx, [rax]: a read
        assert_eq!(accesses(&[0x48, 0x8b, 0x08], &r, &s), vec![(0x2000, 8, false)]);
    }
}
