//! The debugger's commands, named as gdb users expect, and the dumps of
//! segment and privilege state (at least what Bochs' `sreg`/`info gdt` and
//! QEMU's `info registers` show). Any dump takes `--json`.

use super::decode::{self, Use};
use super::{memory, parse_num, Debugger, StopReason};
use crate::gdt::Descriptor;
use crate::msr;
use crate::tss::{Tss, TSS_SIZE};
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
  stepi [N] | si [N]        execute N instructions, one stop line each
  nexti | ni                like stepi, but run a call to its return
  continue | c              run to the next breakpoint or the end
  break SYM|ADDR | b        breakpoint (a debug register; --break-by step: by stepping)
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
  x/[N][bxwg] ADDR          examine memory (virtual, through the guest's page tables)
  pt ADDR                   page walk: each level's entry, and the physical address
  disas [N]                 disassemble N instructions at RIP
  bt | where                backtrace through frame pointers
  help, quit
any dump accepts --json";

impl Debugger {
    /// Print the stop line (and which breakpoint) after a resume.
    fn report(&mut self, why: StopReason) -> Result<(), String> {
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

    fn get_msrs(&self, indices: &[u32]) -> Result<Vec<u64>, String> {
        let entries: Vec<_> = indices
            .iter()
            .map(|&index| kvm_bindings::kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries).map_err(|e| format!("{e:?}"))?;
        self.vm
            .vcpu()
            .get_msrs(&mut msrs)
            .map_err(|e| format!("KVM_GET_MSRS: {e}"))?;
        Ok(msrs.as_slice().iter().map(|e| e.data).collect())
    }

    fn read_virt(&self, va: u64, buf: &mut [u8]) -> Result<(), String> {
        let cr3 = self.sregs()?.cr3;
        memory::read_virt(&self.vm.mem, cr3, va, buf)
    }

    /// The GDT entry for selector `sel`, read from guest memory.
    fn gdt_entry(&self, sel: u16) -> Result<Option<Descriptor>, String> {
        if sel & !3 == 0 {
            return Ok(None);
        }
        let s = self.sregs()?;
        let off = u64::from(sel & !7);
        if off + 7 > u64::from(s.gdt.limit) {
            return Err(format!(
                "selector {sel:#x} is beyond the GDT limit {:#x} (#GP)",
                s.gdt.limit
            ));
        }
        let mut b = [0u8; 8];
        self.read_virt(s.gdt.base + off, &mut b)?;
        Ok(Some(Descriptor::decode(u64::from_le_bytes(b))))
    }

    fn cmd_regs(&self, json: bool) -> Result<(), String> {
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

    fn cmd_sregs(&self, json: bool) -> Result<(), String> {
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

    fn cmd_gdt(&self, json: bool) -> Result<(), String> {
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

    fn cmd_idt(&self, vector: Option<u64>, json: bool) -> Result<(), String> {
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
            let g = crate::idt::Gate::decode([q(v * 16), q(v * 16 + 8)]);
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

    fn cmd_tss(&self, json: bool) -> Result<(), String> {
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

    fn cmd_cr(&self, json: bool) -> Result<(), String> {
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

    fn cmd_msr(&self, name: Option<&str>, json: bool) -> Result<(), String> {
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
            return Err(format!(
                "unknown MSR '{}'; one of {}",
                name.unwrap_or(""),
                all.iter().map(|a| a.0).collect::<Vec<_>>().join(" ")
            ));
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

    fn cmd_check(&self, args: &[&str], json: bool) -> Result<(), String> {
        let sel = args
            .first()
            .and_then(|a| parse_num(a))
            .ok_or("usage: check SELECTOR [for data|code|stack] [at cpl N]")? as u16;
        let mut usage = Use::Data;
        let mut cpl = (self.sregs()?.cs.selector & 3) as u8;
        let mut it = args[1..].iter();
        while let Some(w) = it.next() {
            match *w {
                "for" => {
                    usage = match it.next().copied() {
                        Some("data") => Use::Data,
                        Some("code") => Use::Code,
                        Some("stack") => Use::Stack,
                        other => return Err(format!("check: 'for {}'? use data, code or stack", other.unwrap_or(""))),
                    }
                }
                "at" => {
                    let _ = it.next(); // "cpl"
                    cpl = it.next().and_then(|n| parse_num(n)).ok_or("check: at cpl N")? as u8;
                }
                other => return Err(format!("check: unexpected '{other}'")),
            }
        }
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

    fn cmd_x(&self, spec: &str, addr: &str, json: bool) -> Result<(), String> {
        // x/NFU: count, then a size letter among b h w g (x = hex, the only format).
        let spec = spec.trim_start_matches('/');
        let digits: String = spec.chars().take_while(|c| c.is_ascii_digit()).collect();
        let count: usize = if digits.is_empty() {
            1
        } else {
            digits.parse().map_err(|_| "bad count")?
        };
        let size = match spec.chars().find(|c| "bhwg".contains(*c)) {
            Some('b') => 1,
            Some('h') => 2,
            Some('g') => 8,
            _ => 4,
        };
        let va = self.resolve(addr)?;
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
            let a = va + (i * 16) as u64;
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

    fn cmd_disas(&self, n: usize) -> Result<(), String> {
        let r = self.regs()?;
        let cr3 = self.sregs()?.cr3;
        for (ip, text, _) in memory::decode(&self.vm.mem, cr3, r.rip, n) {
            println!("{} {:<48} {text}", if ip == r.rip { "=>" } else { "  " }, self.sym(ip));
        }
        Ok(())
    }

    fn cmd_bt(&self) -> Result<(), String> {
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
            println!("{:<3} {kind:<14} {}  ({})", b.id, self.sym(b.addr), b.spec);
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
    const NAMES: [&str; 32] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#CSO", "#TS", "#NP", "#SS", "#GP", "#PF",
        "#15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "#22", "#23", "#24", "#25", "#26", "#27", "#HV", "#VC", "#SX",
        "#31",
    ];
    match v {
        0..=31 => NAMES[v],
        0x80 => "int80",
        0x20 => "timer",
        0x24 => "IRQ 4",
        0xff => "spurious",
        _ => "",
    }
}

/// Run one command line.
pub fn execute(dbg: &mut Debugger, line: &str) -> Result<Flow, String> {
    let mut words: Vec<&str> = line.split_whitespace().collect();
    let json = words.last() == Some(&"--json");
    if json {
        words.pop();
    }
    let Some((&cmd, args)) = words.split_first() else {
        return Ok(Flow::Next);
    };
    let (cmd, xspec) = match cmd.split_once('/') {
        Some(("x", spec)) => ("x", spec),
        _ => (cmd, ""),
    };
    let num = |i: usize, default: u64| -> Result<u64, String> {
        match args.get(i) {
            Some(a) => parse_num(a).ok_or_else(|| format!("'{a}' is not a number")),
            None => Ok(default),
        }
    };
    match cmd {
        "stepi" | "si" => {
            for _ in 0..num(0, 1)? {
                let why = dbg.step()?;
                dbg.report(why.clone())?;
                if why == StopReason::Ended {
                    break;
                }
            }
        }
        "nexti" | "ni" => {
            let why = dbg.next_over_calls()?;
            dbg.report(why)?;
        }
        "continue" | "c" => {
            let why = dbg.cont()?;
            dbg.report(why)?;
        }
        "break" | "b" | "hbreak" => {
            let spec = args.first().ok_or("usage: break SYMBOL|ADDR")?;
            let b = dbg.add_breakpoint(spec, None)?.clone();
            println!("Breakpoint {} at {}", b.id, dbg.sym(b.addr));
        }
        "watch" => {
            let spec = args.first().ok_or("usage: watch ADDR [LEN]")?;
            let len = num(1, 8)? as u8;
            let b = dbg.add_breakpoint(spec, Some(len))?.clone();
            println!("Watchpoint {} at {} ({len} bytes)", b.id, dbg.sym(b.addr));
        }
        "delete" | "d" => dbg.delete(args.first().map(|a| parse_num(a).unwrap_or(0) as u32))?,
        "info" if args.first().is_some_and(|a| a.starts_with('b')) => dbg.cmd_info_breakpoints(),
        "info" if args.first() == Some(&"registers") => dbg.cmd_regs(json)?,
        "regs" => dbg.cmd_regs(json)?,
        "sregs" => dbg.cmd_sregs(json)?,
        "gdt" => dbg.cmd_gdt(json)?,
        "idt" => dbg.cmd_idt(args.first().and_then(|a| parse_num(a)), json)?,
        "tss" => dbg.cmd_tss(json)?,
        "cr" => dbg.cmd_cr(json)?,
        "msr" => dbg.cmd_msr(args.first().copied(), json)?,
        "check" => dbg.cmd_check(args, json)?,
        "x" => dbg.cmd_x(xspec, args.first().ok_or("usage: x/[N][bxwg] ADDR")?, json)?,
        "pt" => {
            let va = dbg.resolve(args.first().ok_or("usage: pt ADDR")?)?;
            let (lines, v) = memory::describe_walk(&dbg.vm.mem, dbg.sregs()?.cr3, va);
            if json {
                println!("{v}");
            } else {
                lines.iter().for_each(|l| println!("{l}"));
            }
        }
        "disas" => dbg.cmd_disas(num(0, 8)? as usize)?,
        "bt" | "where" | "backtrace" => dbg.cmd_bt()?,
        "help" | "h" => println!("{HELP}"),
        "quit" | "q" => return Ok(Flow::Quit),
        other => return Err(format!("unknown command '{other}' (try help)")),
    }
    Ok(Flow::Next)
}
