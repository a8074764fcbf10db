//! The debugger's commands, named as gdb users expect, and the dumps of
//! segment and privilege state (at least what Bochs' `sreg`/`info gdt` and
//! QEMU's `info registers` show). Any dump takes `--json`.

use super::error::{CommandError, DebugError, Result};
use super::{parse_num, Debugger, StopReason};
use crate::arch::gdt::Descriptor;
use crate::arch::msr;
use crate::arch::tss::{Tss, TSS_SIZE};
use crate::introspect::decode::{self, Use};
use crate::introspect::memory;
use kvm_bindings::{kvm_segment, Msrs};
use serde_json::{json, Value};

/// What the command loop does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Next,
    Quit,
}

pub const HELP: &str = "\
commands (gdb names):
  stepi [N] | si [N]        execute N instructions (at most 1000000), one stop line each
  nexti | ni                like stepi, but run a call to its return
  continue [N] | c [N]      run to the next breakpoint or the end (the Nth stop with N)
  break SYM|ADDR | b        breakpoint: a debug register where they exit, else an exit-instruction
                            patch (ring 0) or single-stepping (ring 3); --break-by chooses
  hbreak SYM|ADDR           the same (all breakpoints here are hardware ones)
  watch ADDR [LEN]          stop when LEN (1,2,4,8) bytes at ADDR are written
  delete [N]                delete breakpoint N (all without N)
  info breakpoints          list them
  regs                      general registers and RFLAGS
  sregs                     segment registers: selector, hidden cache, CPL, IOPL, FS/GS bases
  gdt                       the GDT read from guest memory, marking differences from the loaded caches
  idt [VECTOR]              IDT gates: type, selector, target, DPL, IST
  tss                       RSP0-2, IST1-7, I/O map base
  cr                        CR0, CR2, CR3, CR4, EFER, RFLAGS with flag names
  msr [NAME]                STAR decoded, LSTAR, SFMASK, FS/GS/KERNEL_GS base, TSC_AUX
  check SEL [for data|code|stack] [at cpl N]
                            the privilege check the CPU would make loading SEL now
  x/[N][bxwg] ADDR          examine N units (at most 65536) of memory (virtual, through the guest's page tables)
  pt ADDR                   page walk: each level's entry, and the physical address
  disas [N]                 disassemble N instructions (at most 4096) at RIP
  bt | where                backtrace through frame pointers
  help, quit
any dump accepts --json";

impl Debugger {
    /// Print the stop line (and which breakpoint) after a resume.
    fn report(&mut self, why: StopReason) -> Result<()> {
        match why {
            StopReason::Ended => {
                let o = self.ended.clone().expect("ended");
                println!("guest ended: {}", o.describe());
                return Ok(());
            }
            StopReason::Breakpoint(id) => println!("Breakpoint {id}, {}", self.spec_of(id)),
            StopReason::Watchpoint(id) => println!("Watchpoint {id}, {} written", self.spec_of(id)),
            StopReason::StepLimit(n) => println!("stopped after {n} steps without reaching a breakpoint"),
            StopReason::Step => {}
        }
        let line = self.stop_line()?;
        println!("{line}");
        Ok(())
    }

    /// What breakpoint `id` was set on, as the user wrote it.
    fn spec_of(&self, id: u32) -> &str {
        self.bps.iter().find(|b| b.id == id).map_or("", |b| b.spec.as_str())
    }

    fn get_msrs(&self, indices: &[u32]) -> Result<Vec<u64>> {
        let entries: Vec<_> = indices
            .iter()
            .map(|&index| kvm_bindings::kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries).map_err(DebugError::MsrList)?;
        self.vm
            .vcpu()
            .get_msrs(&mut msrs)
            .map_err(DebugError::kvm("KVM_GET_MSRS"))?;
        Ok(msrs.as_slice().iter().map(|e| e.data).collect())
    }

    fn read_virt(&self, va: u64, buf: &mut [u8]) -> Result<()> {
        let cr3 = self.sregs()?.cr3;
        Ok(memory::read_virt(&self.vm.mem, cr3, va, buf)?)
    }

    /// The GDT entry for selector `sel`, read from guest memory.
    fn gdt_entry(&self, sel: u16) -> Result<Option<Descriptor>> {
        if sel & !3 == 0 {
            return Ok(None);
        }
        let s = self.sregs()?;
        let off = u64::from(sel & !7);
        if off + 7 > u64::from(s.gdt.limit) {
            return Err(DebugError::BeyondGdtLimit {
                sel,
                limit: s.gdt.limit,
            });
        }
        let mut b = [0u8; 8];
        self.read_virt(s.gdt.base + off, &mut b)?;
        Ok(Some(Descriptor::decode(u64::from_le_bytes(b))))
    }

    fn cmd_regs(&self, json: bool) -> Result<()> {
        let r = self.regs()?;
        let names = [
            ("rax", r.rax),
            ("rbx", r.rbx),
            ("rcx", r.rcx),
            ("rdx", r.rdx),
            ("rsi", r.rsi),
            ("rdi", r.rdi),
            ("rbp", r.rbp),
            ("rsp", r.rsp),
            ("r8", r.r8),
            ("r9", r.r9),
            ("r10", r.r10),
            ("r11", r.r11),
            ("r12", r.r12),
            ("r13", r.r13),
            ("r14", r.r14),
            ("r15", r.r15),
            ("rip", r.rip),
            ("rflags", r.rflags),
        ];
        if json {
            let m: serde_json::Map<String, Value> = names.iter().map(|(n, v)| (n.to_string(), json!(v))).collect();
            println!("{}", Value::Object(m));
            return Ok(());
        }
        for chunk in names[..16].chunks(4) {
            println!(
                "{}",
                chunk
                    .iter()
                    .map(|(n, v)| format!("{n:<4}{v:#018x}"))
                    .collect::<Vec<_>>()
                    .join("  ")
            );
        }
        println!("rip {}", self.sym(r.rip));
        println!(
            "rflags {:#x} [{}] IOPL {}",
            r.rflags,
            decode::flags(r.rflags, decode::RFLAGS_BITS).join(" "),
            decode::iopl(r.rflags)
        );
        Ok(())
    }

    fn seg_json(name: &str, s: &kvm_segment) -> Value {
        let d = cache_descriptor(s);
        json!({"name": name, "selector": decode::selector_json(s.selector), "unusable": s.unusable != 0,
               "cache": decode::descriptor_json(&d, s.base, u64::from(s.limit))})
    }

    fn cmd_sregs(&self, json: bool) -> Result<()> {
        let s = self.sregs()?;
        let r = self.regs()?;
        let m = self.get_msrs(&[msr::MSR_FS_BASE, msr::MSR_GS_BASE, msr::MSR_KERNEL_GS_BASE])?;
        let segs = segment_registers(&s);
        let cpl = s.cs.selector & 3;
        if json {
            let v = json!({
                "segments": segs.iter().map(|(n, g)| Self::seg_json(n, g)).collect::<Vec<_>>(),
                "cpl": cpl, "iopl": decode::iopl(r.rflags),
                "fs_base": m[0], "gs_base": m[1], "kernel_gs_base": m[2],
            });
            println!("{v}");
            return Ok(());
        }
        for (n, g) in segs {
            let d = cache_descriptor(g);
            let sel = decode::selector(g.selector);
            if g.unusable != 0 && n != "tr" {
                println!("{n:<4} {sel}  (unusable: null selector)");
            } else if g.selector & !3 == 0 && n == "ss" {
                println!("{n:<4} {sel}  (null SS: what an interrupt or syscall into ring 0 may load in 64-bit mode)");
            } else {
                println!(
                    "{n:<4} {sel}  {}",
                    decode::descriptor_attrs(&d, g.base, u64::from(g.limit))
                );
            }
        }
        println!(
            "CPL {cpl} (CS.RPL)  IOPL {} (RFLAGS)  FS.base {:#x}  GS.base {:#x}  KERNEL_GS_BASE {:#x}",
            decode::iopl(r.rflags),
            m[0],
            m[1],
            m[2]
        );
        Ok(())
    }

    fn cmd_gdt(&self, json: bool) -> Result<()> {
        let s = self.sregs()?;
        let n = (usize::from(s.gdt.limit) + 1) / 8;
        let mut raw = vec![0u8; n * 8];
        self.read_virt(s.gdt.base, &mut raw)?;
        let q = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap());
        // Every register that caches a GDT descriptor (LDTR's is in the GDT too, but we have no LDT).
        let regs = segment_registers(&s);
        let loaded = &regs[..7];
        let mut rows = Vec::new();
        if !json {
            println!("GDT at {:#x}, limit {:#x} ({n} slots)", s.gdt.base, s.gdt.limit);
        }
        let mut i = 0;
        while i < n {
            let v = q(i);
            let d = Descriptor::decode(v);
            let system16 = !d.s && d.p && matches!(d.typ, 0x2 | 0x9 | 0xb | 0xc);
            let base = if system16 && i + 1 < n {
                u64::from(d.base) | (q(i + 1) << 32)
            } else {
                u64::from(d.base)
            };
            let limit = u64::from(d.byte_limit());
            let mut notes = Vec::new();
            for (name, seg) in loaded {
                if usize::from(seg.selector >> 3) == i && seg.selector & 4 == 0 && seg.unusable == 0 {
                    let c = cache_descriptor(seg);
                    let diffs: Vec<String> = [
                        ("type", u64::from(c.typ), u64::from(d.typ)),
                        ("DPL", u64::from(c.dpl), u64::from(d.dpl)),
                        ("L", u64::from(c.l), u64::from(d.l)),
                        ("base", seg.base, base),
                        ("limit", u64::from(seg.limit), limit),
                    ]
                    .iter()
                    .filter(|(_, a, b)| a != b)
                    .map(|(k, a, b)| format!("{k} cached {a:#x} vs memory {b:#x}"))
                    .collect();
                    if diffs.is_empty() {
                        notes.push(format!("loaded in {}", name.to_uppercase()));
                    } else {
                        notes.push(format!(
                            "loaded in {}, DIFFERS: {}",
                            name.to_uppercase(),
                            diffs.join(", ")
                        ));
                    }
                }
            }
            if json {
                rows.push(
                    json!({"index": i, "selector": i * 8, "raw": v, "present": d.p, "system16": system16,
                    "descriptor": decode::descriptor_json(&d, base, limit), "loaded": notes}),
                );
            } else if v == 0 {
                println!("[{i:2}] {:#06x}  null", i * 8);
            } else {
                println!(
                    "[{i:2}] {:#06x}  {}{}",
                    i * 8,
                    decode::descriptor_attrs(&d, base, limit),
                    if notes.is_empty() {
                        String::new()
                    } else {
                        format!("   <- {}", notes.join("; "))
                    }
                );
            }
            i += if system16 { 2 } else { 1 };
        }
        if json {
            println!("{}", json!({"base": s.gdt.base, "limit": s.gdt.limit, "entries": rows}));
        }
        Ok(())
    }

    fn cmd_idt(&self, vector: Option<u64>, json: bool) -> Result<()> {
        let s = self.sregs()?;
        let n = (usize::from(s.idt.limit) + 1) / 16;
        let mut raw = vec![0u8; n * 16];
        self.read_virt(s.idt.base, &mut raw)?;
        let mut rows = Vec::new();
        if !json {
            println!("IDT at {:#x}, limit {:#x}", s.idt.base, s.idt.limit);
        }
        for v in 0..n {
            if vector.is_some_and(|w| w != v as u64) {
                continue;
            }
            let q = |o: usize| u64::from_le_bytes(raw[o..o + 8].try_into().unwrap());
            let g = crate::arch::idt::Gate::decode([q(v * 16), q(v * 16 + 8)]);
            if !g.present && vector.is_none() {
                continue;
            }
            let name = vector_name(v);
            let kind = match g.typ {
                0xe => "interrupt",
                0xf => "trap",
                _ => "?",
            };
            if json {
                rows.push(
                    json!({"vector": v, "name": name, "present": g.present, "type": kind, "selector": g.selector,
                    "target": g.offset, "symbol": self.sym(g.offset), "dpl": g.dpl, "ist": g.ist}),
                );
            } else if !g.present {
                println!("{v:#04x} {name:<6} not present (#NP when raised)");
            } else {
                println!(
                    "{v:#04x} {name:<6} {kind:<9} sel {:#06x}  {}  DPL {}  IST {}",
                    g.selector,
                    self.sym(g.offset),
                    g.dpl,
                    g.ist
                );
            }
        }
        if json {
            println!("{}", Value::Array(rows));
        }
        Ok(())
    }

    fn cmd_tss(&self, json: bool) -> Result<()> {
        let s = self.sregs()?;
        let mut b = [0u8; TSS_SIZE];
        self.read_virt(s.tr.base, &mut b)?;
        let t = Tss::decode(&b);
        if json {
            println!(
                "{}",
                json!({"base": s.tr.base, "rsp": t.rsp, "ist": t.ist, "iomap_base": t.iomap_base})
            );
            return Ok(());
        }
        println!("TSS at {:#x} (TR {})", s.tr.base, decode::selector(s.tr.selector));
        for (i, v) in t.rsp.iter().enumerate() {
            println!("  RSP{i}  {}", self.sym(*v));
        }
        for (i, v) in t.ist.iter().enumerate() {
            println!("  IST{}  {v:#x}", i + 1);
        }
        println!(
            "  I/O map base {:#x}{}",
            t.iomap_base,
            if usize::from(t.iomap_base) >= TSS_SIZE {
                " (no bitmap: in/out from ring 3 need IOPL 3)"
            } else {
                ""
            }
        );
        Ok(())
    }

    fn cmd_cr(&self, json: bool) -> Result<()> {
        let s = self.sregs()?;
        let r = self.regs()?;
        let rows = [
            ("CR0", s.cr0, decode::flags(s.cr0, decode::CR0_BITS)),
            ("CR2", s.cr2, vec![]),
            ("CR3", s.cr3, vec![]),
            ("CR4", s.cr4, decode::flags(s.cr4, decode::CR4_BITS)),
            ("EFER", s.efer, decode::flags(s.efer, decode::EFER_BITS)),
            ("RFLAGS", r.rflags, decode::flags(r.rflags, decode::RFLAGS_BITS)),
        ];
        if json {
            let m: serde_json::Map<String, Value> = rows
                .iter()
                .map(|(n, v, f)| (n.to_string(), json!({"value": v, "flags": f})))
                .collect();
            println!("{}", Value::Object(m));
            return Ok(());
        }
        for (n, v, f) in rows {
            println!("{n:<6} {v:#018x}  {}", f.join(" "));
        }
        println!("IOPL {}", decode::iopl(r.rflags));
        Ok(())
    }

    fn cmd_msr(&self, name: Option<&str>, json: bool) -> Result<()> {
        let all = [
            ("EFER", msr::MSR_EFER),
            ("STAR", msr::MSR_STAR),
            ("LSTAR", msr::MSR_LSTAR),
            ("CSTAR", msr::MSR_CSTAR),
            ("SFMASK", msr::MSR_SYSCALL_MASK),
            ("FS_BASE", msr::MSR_FS_BASE),
            ("GS_BASE", msr::MSR_GS_BASE),
            ("KERNEL_GS_BASE", msr::MSR_KERNEL_GS_BASE),
            ("TSC_AUX", msr::MSR_TSC_AUX),
        ];
        let pick: Vec<_> = match name {
            Some(n) => all.iter().filter(|(a, _)| a.eq_ignore_ascii_case(n)).copied().collect(),
            None => all.to_vec(),
        };
        if pick.is_empty() {
            return Err(DebugError::UnknownMsr {
                name: name.unwrap_or("").to_string(),
                known: all.iter().map(|a| a.0).collect::<Vec<_>>().join(" "),
            });
        }
        let vals = self.get_msrs(&pick.iter().map(|p| p.1).collect::<Vec<_>>())?;
        let mut out = serde_json::Map::new();
        for ((n, _), v) in pick.iter().zip(vals) {
            let detail = match *n {
                "STAR" => {
                    let (kcs, kss, ucs, uss) = decode::star(v);
                    out.insert(
                        "STAR_decoded".into(),
                        json!({"syscall_cs": kcs, "syscall_ss": kss, "sysret_cs": ucs, "sysret_ss": uss}),
                    );
                    format!("syscall loads CS {kcs:#x} SS {kss:#x}; sysretq loads CS {ucs:#x} SS {uss:#x}")
                }
                "LSTAR" | "CSTAR" => self.sym(v),
                "SFMASK" => format!("syscall clears [{}]", decode::flags(v, decode::RFLAGS_BITS).join(" ")),
                "EFER" => decode::flags(v, decode::EFER_BITS).join(" "),
                _ => String::new(),
            };
            out.insert(n.to_string(), json!(v));
            if !json {
                println!("{n:<15} {v:#018x}  {detail}");
            }
        }
        if json {
            println!("{}", Value::Object(out));
        }
        Ok(())
    }

    fn cmd_check(&self, sel: u16, usage: Use, at_cpl: Option<u8>, json: bool) -> Result<()> {
        let cpl = match at_cpl {
            Some(c) => c,
            None => (self.sregs()?.cs.selector & 3) as u8,
        };
        let d = self.gdt_entry(sel)?;
        let (ok, why) = decode::privilege_check(sel, d.as_ref(), cpl, usage);
        if json {
            println!(
                "{}",
                json!({"selector": decode::selector_json(sel), "use": format!("{usage:?}").to_lowercase(), "cpl": cpl, "allowed": ok, "reason": why})
            );
        } else {
            let what = d
                .map(|d| decode::type_in_words(d.s, d.typ))
                .unwrap_or_else(|| "null".into());
            println!(
                "check {} for {} at CPL {cpl}: descriptor {what}, DPL {}",
                decode::selector(sel),
                format!("{usage:?}").to_lowercase(),
                d.map_or(0, |d| d.dpl)
            );
            println!("  {why}");
            println!("  verdict: {}", if ok { "allowed" } else { "#GP" });
        }
        Ok(())
    }

    fn cmd_x(&self, count: usize, size: usize, addr: &str, json: bool) -> Result<()> {
        let va = self.resolve(addr)?;
        let len = (count * size) as u64;
        if va.checked_add(len - 1).is_none() {
            return Err(DebugError::ExaminePastEnd { count, size, va });
        }
        let mut buf = vec![0u8; count * size];
        self.read_virt(va, &mut buf)?;
        let vals: Vec<u64> = buf
            .chunks(size)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..size].copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect();
        if json {
            println!("{}", json!({"addr": va, "size": size, "values": vals}));
            return Ok(());
        }
        let per_line = 16 / size;
        for (i, chunk) in vals.chunks(per_line).enumerate() {
            let a = va.wrapping_add((i * 16) as u64);
            let w = size * 2;
            println!(
                "{}:  {}",
                self.sym(a),
                chunk
                    .iter()
                    .map(|v| format!("0x{v:0w$x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        Ok(())
    }

    fn cmd_disas(&self, n: usize) -> Result<()> {
        let r = self.regs()?;
        let cr3 = self.sregs()?.cr3;
        for (ip, text, _) in memory::decode(&self.vm.mem, cr3, r.rip, n) {
            println!("{} {:<48} {text}", if ip == r.rip { "=>" } else { "  " }, self.sym(ip));
        }
        Ok(())
    }

    fn cmd_bt(&self) -> Result<()> {
        let r = self.regs()?;
        println!("#0  {}", self.sym(r.rip));
        let mut rbp = r.rbp;
        for depth in 1..32 {
            if rbp == 0 || rbp % 8 != 0 {
                break;
            }
            let mut b = [0u8; 16];
            if self.read_virt(rbp, &mut b).is_err() {
                break;
            }
            let next = u64::from_le_bytes(b[..8].try_into().unwrap());
            let ret = u64::from_le_bytes(b[8..].try_into().unwrap());
            if ret == 0 {
                break;
            }
            println!("#{depth:<2} {}", self.sym(ret));
            if next <= rbp {
                break;
            }
            rbp = next;
        }
        Ok(())
    }

    fn cmd_info_breakpoints(&self) {
        if self.bps.is_empty() {
            println!("no breakpoints");
        }
        for b in &self.bps {
            let kind = match b.watch {
                Some(len) => format!("watch {len} bytes"),
                None => "break".into(),
            };
            println!(
                "{:<3} {kind:<14} {}  ({}; {})",
                b.id,
                self.sym(b.addr),
                b.spec,
                b.method.describe()
            );
        }
    }
}

/// The segment registers, in the order the dumps show them.
fn segment_registers(s: &kvm_bindings::kvm_sregs) -> [(&'static str, &kvm_segment); 8] {
    [
        ("cs", &s.cs),
        ("ss", &s.ss),
        ("ds", &s.ds),
        ("es", &s.es),
        ("fs", &s.fs),
        ("gs", &s.gs),
        ("tr", &s.tr),
        ("ldtr", &s.ldt),
    ]
}

/// The decoded view of a segment register's hidden cache.
fn cache_descriptor(s: &kvm_segment) -> Descriptor {
    Descriptor {
        base: s.base as u32,
        limit: s.limit,
        typ: s.type_,
        s: s.s != 0,
        dpl: s.dpl,
        p: s.present != 0,
        avl: s.avl != 0,
        l: s.l != 0,
        db: s.db != 0,
        g: s.g != 0,
    }
}

pub fn vector_name(v: usize) -> &'static str {
    match v {
        0..=31 => vmm_abi::errno::EXCEPTION_NAMES[v],
        0x80 => "int80",
        0x20 => "timer",
        0x24 => "IRQ 4",
        0xff => "spurious",
        _ => "",
    }
}

/// The most units one `x` prints (gdb has no limit; a typo there can
/// print for hours).
pub const MAX_X_UNITS: usize = 65536;
/// The most instructions one `disas` decodes.
pub const MAX_DISAS: usize = 4096;
/// The most single steps one `stepi` takes (each prints a line); at ~55,000
/// steps a second on PVM, about 20 seconds.
pub const MAX_STEPI: u64 = 1_000_000;
/// The most stops one `continue N` runs past.
pub const MAX_CONTINUE: u64 = 1_000_000;

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub cmd: Command,
    /// `--json` at the end of the line.
    pub json: bool,
}

/// A debugger command, its numbers checked and bounded. Addresses stay
/// text: they are resolved (symbols, `$reg`) against the stopped guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Stepi(u64),
    Nexti,
    /// Run on until the Nth stop.
    Continue(u64),
    Break(String),
    Watch(String, u8),
    Delete(Option<u32>),
    InfoBreakpoints,
    Regs,
    Sregs,
    Gdt,
    Idt(Option<u8>),
    Tss,
    Cr,
    Msr(Option<String>),
    Check {
        sel: u16,
        usage: Use,
        cpl: Option<u8>,
    },
    X {
        count: usize,
        size: usize,
        addr: String,
    },
    Pt(String),
    Disas(usize),
    Bt,
    Help,
    Quit,
}

/// `what`'s argument `arg` as a number no larger than `max`.
fn bounded(what: &'static str, arg: &str, max: u64, hint: &'static str) -> std::result::Result<u64, CommandError> {
    let v = parse_num(arg).ok_or_else(|| CommandError::NotANumber {
        what,
        arg: arg.to_string(),
    })?;
    if v > max {
        return Err(CommandError::TooLarge {
            what,
            arg: arg.to_string(),
            max,
            hint,
        });
    }
    Ok(v)
}

/// `x/NFU`: count, then letters: a size among b h w g, and x (hex, the only format).
fn parse_x_spec(spec: &str) -> std::result::Result<(usize, usize), CommandError> {
    let digits_end = spec.find(|c: char| !c.is_ascii_digit()).unwrap_or(spec.len());
    let (digits, letters) = spec.split_at(digits_end);
    let count = if digits.is_empty() {
        1
    } else {
        let n = bounded("x", digits, MAX_X_UNITS as u64, "").map_err(|e| match e {
            CommandError::NotANumber { arg, .. } => CommandError::ExamineCountNotANumber(arg),
            CommandError::TooLarge { arg, .. } => CommandError::ExamineCountTooLarge(arg),
            e => e,
        })?;
        if n == 0 {
            return Err(CommandError::ExamineNothing);
        }
        n as usize
    };
    let mut size = 4;
    for c in letters.chars() {
        size = match c {
            'b' => 1,
            'h' => 2,
            'w' => 4,
            'g' => 8,
            'x' => size,
            letter => {
                return Err(CommandError::ExamineLetter {
                    letter,
                    spec: spec.to_string(),
                })
            }
        };
    }
    Ok((count, size))
}

/// Parse one command line without touching the guest (None: an empty line).
/// Every count is bounded here, so no command can allocate or loop without
/// end on a typo.
pub fn parse(line: &str) -> std::result::Result<Option<Parsed>, CommandError> {
    let mut words: Vec<&str> = line.split_whitespace().collect();
    let json = words.last() == Some(&"--json");
    if json {
        words.pop();
    }
    let Some((&cmd, args)) = words.split_first() else {
        return Ok(None);
    };
    let (cmd, xspec) = match cmd.split_once('/') {
        Some(("x", spec)) => ("x", spec),
        _ => (cmd, ""),
    };
    let arg = |i: usize| args.get(i).copied();
    let count = |what: &'static str, max: u64, hint: &'static str| -> std::result::Result<u64, CommandError> {
        arg(0).map_or(Ok(1), |a| bounded(what, a, max, hint))
    };
    let need = |usage: &'static str| arg(0).map(str::to_string).ok_or(CommandError::Usage(usage));
    let cmd = match cmd {
        "stepi" | "si" => Command::Stepi(count(
            "stepi",
            MAX_STEPI,
            " steps; set a breakpoint and continue to go further",
        )?),
        "nexti" | "ni" => Command::Nexti,
        "continue" | "c" => {
            let n = count("continue", MAX_CONTINUE, " stops")?;
            if n == 0 {
                return Err(CommandError::ContinueZero);
            }
            Command::Continue(n)
        }
        "break" | "b" | "hbreak" => Command::Break(need("break SYMBOL|ADDR")?),
        "watch" => {
            let spec = need("watch ADDR [LEN]")?;
            let len = match arg(1) {
                None => 8,
                Some(l) => match parse_num(l) {
                    Some(n @ (1 | 2 | 4 | 8)) => n as u8,
                    _ => return Err(CommandError::WatchLength(l.to_string())),
                },
            };
            Command::Watch(spec, len)
        }
        "delete" | "d" => Command::Delete(match arg(0) {
            None => None,
            Some(a) => Some(bounded("delete", a, u64::from(u32::MAX), "; see info breakpoints")? as u32),
        }),
        "info" if arg(0).is_some_and(|a| a.starts_with('b')) => Command::InfoBreakpoints,
        "info" if arg(0) == Some("registers") => Command::Regs,
        "info" => return Err(CommandError::Info),
        "regs" => Command::Regs,
        "sregs" => Command::Sregs,
        "gdt" => Command::Gdt,
        "idt" => Command::Idt(match arg(0) {
            None => None,
            Some(a) => Some(bounded("idt", a, 255, ": vectors are 0..255")? as u8),
        }),
        "tss" => Command::Tss,
        "cr" => Command::Cr,
        "msr" => Command::Msr(arg(0).map(str::to_string)),
        "check" => {
            let usage = CommandError::Usage("check SELECTOR [for data|code|stack] [at cpl N]");
            let sel = bounded("check", arg(0).ok_or(usage)?, 0xffff, ": selectors are 16 bits")? as u16;
            let mut usage_kind = Use::Data;
            let mut cpl = None;
            let mut it = args[1..].iter();
            while let Some(w) = it.next() {
                match *w {
                    "for" => {
                        usage_kind = match it.next().copied() {
                            Some("data") => Use::Data,
                            Some("code") => Use::Code,
                            Some("stack") => Use::Stack,
                            other => return Err(CommandError::CheckUse(other.unwrap_or("").to_string())),
                        }
                    }
                    "at" => {
                        if it.next().copied() != Some("cpl") {
                            return Err(CommandError::CheckAtCpl);
                        }
                        let n = it.next().ok_or(CommandError::CheckAtCpl)?;
                        cpl = Some(bounded("check: cpl", n, 3, ": privilege levels are 0..3")? as u8);
                    }
                    other => return Err(CommandError::CheckUnexpected(other.to_string())),
                }
            }
            Command::Check {
                sel,
                usage: usage_kind,
                cpl,
            }
        }
        "x" => {
            let (count, size) = parse_x_spec(xspec)?;
            Command::X {
                count,
                size,
                addr: need("x/[N][bxwg] ADDR")?,
            }
        }
        "pt" => Command::Pt(need("pt ADDR")?),
        "disas" => {
            let n = arg(0).map_or(Ok(8), |a| {
                bounded(
                    "disas",
                    a,
                    MAX_DISAS as u64,
                    " instructions; use several disas commands",
                )
            })?;
            Command::Disas(n as usize)
        }
        "bt" | "where" | "backtrace" => Command::Bt,
        "help" | "h" => Command::Help,
        "quit" | "q" => Command::Quit,
        other => return Err(CommandError::Unknown(other.to_string())),
    };
    Ok(Some(Parsed { cmd, json }))
}

/// Run one command line.
pub fn execute(dbg: &mut Debugger, line: &str) -> Result<Flow> {
    let Some(Parsed { cmd, json }) = parse(line)? else {
        return Ok(Flow::Next);
    };
    match cmd {
        Command::Stepi(n) => {
            for _ in 0..n {
                let why = dbg.step()?;
                dbg.report(why.clone())?;
                if why == StopReason::Ended {
                    break;
                }
            }
        }
        Command::Nexti => {
            let why = dbg.next_over_calls()?;
            dbg.report(why)?;
        }
        Command::Continue(n) => {
            // Run past n - 1 stops, reporting only the last, as gdb's `continue N`.
            let mut why = dbg.cont()?;
            for _ in 1..n {
                if matches!(why, StopReason::Ended | StopReason::StepLimit(_)) {
                    break;
                }
                why = dbg.cont()?;
            }
            dbg.report(why)?;
        }
        Command::Break(spec) => {
            let b = dbg.add_breakpoint(&spec, None)?.clone();
            println!("Breakpoint {} at {} ({})", b.id, dbg.sym(b.addr), b.method.describe());
        }
        Command::Watch(spec, len) => {
            let b = dbg.add_breakpoint(&spec, Some(len))?.clone();
            println!(
                "Watchpoint {} at {} ({len} bytes; {})",
                b.id,
                dbg.sym(b.addr),
                b.method.describe()
            );
        }
        Command::Delete(id) => dbg.delete(id)?,
        Command::InfoBreakpoints => dbg.cmd_info_breakpoints(),
        Command::Regs => dbg.cmd_regs(json)?,
        Command::Sregs => dbg.cmd_sregs(json)?,
        Command::Gdt => dbg.cmd_gdt(json)?,
        Command::Idt(v) => dbg.cmd_idt(v.map(u64::from), json)?,
        Command::Tss => dbg.cmd_tss(json)?,
        Command::Cr => dbg.cmd_cr(json)?,
        Command::Msr(name) => dbg.cmd_msr(name.as_deref(), json)?,
        Command::Check { sel, usage, cpl } => dbg.cmd_check(sel, usage, cpl, json)?,
        Command::X { count, size, addr } => dbg.cmd_x(count, size, &addr, json)?,
        Command::Pt(addr) => {
            let va = dbg.resolve(&addr)?;
            let (lines, v) = memory::describe_walk(&dbg.vm.mem, dbg.sregs()?.cr3, va);
            if json {
                println!("{v}");
            } else {
                lines.iter().for_each(|l| println!("{l}"));
            }
        }
        Command::Disas(n) => dbg.cmd_disas(n)?,
        Command::Bt => dbg.cmd_bt()?,
        Command::Help => println!("{HELP}"),
        Command::Quit => return Ok(Flow::Quit),
    }
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(line: &str) -> Command {
        parse(line).unwrap().unwrap().cmd
    }

    fn err(line: &str) -> String {
        parse(line).unwrap_err().to_string()
    }

    #[test]
    fn counts_are_parsed() {
        assert_eq!(
            cmd("x/2gx 0x10"),
            Command::X {
                count: 2,
                size: 8,
                addr: "0x10".into()
            }
        );
        assert_eq!(
            cmd("x $rsp"),
            Command::X {
                count: 1,
                size: 4,
                addr: "$rsp".into()
            }
        );
        assert_eq!(
            cmd("x/65536b 0"),
            Command::X {
                count: 65536,
                size: 1,
                addr: "0".into()
            }
        );
        assert_eq!(cmd("si"), Command::Stepi(1));
        assert_eq!(cmd("stepi 0x10"), Command::Stepi(16));
        assert_eq!(cmd("disas"), Command::Disas(8));
        assert_eq!(cmd("c 3"), Command::Continue(3));
        assert_eq!(cmd("watch X 2"), Command::Watch("X".into(), 2));
        assert_eq!(cmd("idt 0x80"), Command::Idt(Some(0x80)));
        assert_eq!(
            cmd("check 0x1b for stack at cpl 3"),
            Command::Check {
                sel: 0x1b,
                usage: Use::Stack,
                cpl: Some(3)
            }
        );
        assert_eq!(parse("  ").unwrap(), None);
        assert!(parse("regs --json").unwrap().unwrap().json);
    }

    #[test]
    fn huge_counts_are_refused_with_the_limit() {
        for (line, says) in [
            (
                "x/18446744073709551615b 0",
                "x: count 18446744073709551615 is too large (at most 65536 units",
            ),
            ("x/99999999999g 0", "x: count 99999999999 is too large"),
            (
                "x/4611686018427387904g 0",
                "at most 65536 units; use several x commands",
            ),
            ("x/99999999999999999999999g 0", "not a number"),
            ("x/0g 0", "count 0"),
            ("x/4q 0", "unknown letter 'q'"),
            (
                "disas 18446744073709551615",
                "disas: 18446744073709551615 is too large (at most 4096",
            ),
            ("disas 99999999999", "too large"),
            (
                "stepi 99999999999",
                "stepi: 99999999999 is too large (at most 1000000 steps",
            ),
            ("continue 18446744073709551615", "too large"),
            ("continue 0", "0 stops"),
            ("watch X 264", "1, 2, 4 or 8 bytes"),
            ("delete 4294967297", "too large"),
            ("delete one", "not a number"),
            ("idt 256", "vectors are 0..255"),
            ("check 0x10000", "selectors are 16 bits"),
            ("check 0x10 at cpl 4", "privilege levels are 0..3"),
            ("check 0x10 at 3", "at cpl N"),
        ] {
            let e = err(line);
            assert!(e.contains(says), "{line}: {e}");
        }
    }
}
