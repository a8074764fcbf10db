//! The dumps (dumps.rs) read from the stopped guest: registers from KVM,
//! tables through the guest's own page tables, symbols for addresses.

use super::dumps::{
    Backtrace, BreakpointRow, Breakpoints, Check, ControlRegs, Disassembly, Examine, FlagsValue, Frame, Gdt, GdtEntry,
    Idt, IdtGate, Instruction, MsrRow, Msrs, Regs, Segment, Sregs, StarView, Tss,
};
use super::error::{DebugError, Result};
use super::Debugger;
use crate::arch::gdt::Descriptor;
use crate::arch::msr;
use crate::arch::tss::TSS_SIZE;
use crate::introspect::decode::{self, DescriptorView, SelectorView, Use};
use crate::introspect::memory;
use kvm_bindings::{kvm_segment, Msrs as KvmMsrs};

/// The MSRs `msr` knows, by the names it takes.
const MSRS: [(&str, u32); 9] = [
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

/// Frames `bt` follows at most.
const MAX_FRAMES: usize = 32;

impl Debugger {
    fn get_msrs(&self, indices: &[u32]) -> Result<Vec<u64>> {
        read_msrs(self.vm.vcpu(), indices)
    }

    /// Read guest memory at a virtual address through the current CR3.
    pub(super) fn read_virt(&self, va: u64, buf: &mut [u8]) -> Result<()> {
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

    pub fn regs_dump(&self) -> Result<Regs> {
        let r = self.regs()?;
        Ok(Regs::new(&r, self.sym(r.rip)))
    }

    pub fn sregs_dump(&self) -> Result<Sregs> {
        let s = self.sregs()?;
        let r = self.regs()?;
        let m = self.get_msrs(&[msr::MSR_FS_BASE, msr::MSR_GS_BASE, msr::MSR_KERNEL_GS_BASE])?;
        Ok(sregs_view(&s, r.rflags, [m[0], m[1], m[2]]))
    }

    pub fn gdt_dump(&self) -> Result<Gdt> {
        let s = self.sregs()?;
        let n = (usize::from(s.gdt.limit) + 1) / 8;
        let mut raw = vec![0u8; n * 8];
        self.read_virt(s.gdt.base, &mut raw)?;
        let q = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap());
        // Every register that caches a GDT descriptor (LDTR's is in the GDT too, but we have no LDT).
        let regs = segment_registers(&s);
        let loaded = &regs[..7];
        let mut entries = Vec::new();
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
            let notes = loaded
                .iter()
                .filter(|(_, seg)| usize::from(seg.selector >> 3) == i && seg.selector & 4 == 0 && seg.unusable == 0)
                .map(|(name, seg)| cache_vs_memory(name, seg, &d, base, limit))
                .collect();
            entries.push(GdtEntry {
                index: i,
                selector: i * 8,
                raw: v,
                present: d.p,
                system16,
                descriptor: DescriptorView::new(&d, base, limit),
                loaded: notes,
            });
            i += if system16 { 2 } else { 1 };
        }
        Ok(Gdt {
            base: s.gdt.base,
            limit: s.gdt.limit,
            entries,
        })
    }

    pub fn idt_dump(&self, vector: Option<u8>) -> Result<Idt> {
        let s = self.sregs()?;
        let n = (usize::from(s.idt.limit) + 1) / 16;
        let mut raw = vec![0u8; n * 16];
        self.read_virt(s.idt.base, &mut raw)?;
        let q = |o: usize| u64::from_le_bytes(raw[o..o + 8].try_into().unwrap());
        let mut gates = Vec::new();
        for v in 0..n {
            if vector.is_some_and(|w| usize::from(w) != v) {
                continue;
            }
            let g = crate::arch::idt::Gate::decode([q(v * 16), q(v * 16 + 8)]);
            if !g.present && vector.is_none() {
                continue;
            }
            gates.push(IdtGate {
                vector: v,
                name: decode::vector_name(v),
                present: g.present,
                kind: match g.typ {
                    0xe => "interrupt",
                    0xf => "trap",
                    _ => "?",
                },
                selector: g.selector,
                target: g.offset,
                symbol: self.sym(g.offset),
                dpl: g.dpl,
                ist: g.ist,
            });
        }
        Ok(Idt {
            base: s.idt.base,
            limit: s.idt.limit,
            gates,
        })
    }

    pub fn tss_dump(&self) -> Result<Tss> {
        let s = self.sregs()?;
        let mut b = [0u8; TSS_SIZE];
        self.read_virt(s.tr.base, &mut b)?;
        let t = crate::arch::tss::Tss::decode(&b);
        Ok(Tss {
            base: s.tr.base,
            rsp: t.rsp,
            ist: t.ist,
            iomap_base: t.iomap_base,
            tr: Some(SelectorView::new(s.tr.selector)),
            rsp_symbols: t.rsp.iter().map(|&v| self.sym(v)).collect(),
        })
    }

    pub fn cr_dump(&self) -> Result<ControlRegs> {
        let s = self.sregs()?;
        let r = self.regs()?;
        Ok(ControlRegs {
            cr0: FlagsValue::new(s.cr0, decode::CR0_BITS),
            cr2: FlagsValue::new(s.cr2, &[]),
            cr3: FlagsValue::new(s.cr3, &[]),
            cr4: FlagsValue::new(s.cr4, decode::CR4_BITS),
            efer: FlagsValue::new(s.efer, decode::EFER_BITS),
            rflags: FlagsValue::new(r.rflags, decode::RFLAGS_BITS),
        })
    }

    pub fn msr_dump(&self, name: Option<&str>) -> Result<Msrs> {
        let pick: Vec<_> = match name {
            Some(n) => MSRS
                .iter()
                .filter(|(a, _)| a.eq_ignore_ascii_case(n))
                .copied()
                .collect(),
            None => MSRS.to_vec(),
        };
        if pick.is_empty() {
            return Err(DebugError::UnknownMsr {
                name: name.unwrap_or("").to_string(),
                known: MSRS.iter().map(|a| a.0).collect::<Vec<_>>().join(" "),
            });
        }
        let vals = self.get_msrs(&pick.iter().map(|p| p.1).collect::<Vec<_>>())?;
        let mut star = None;
        let mut rows = Vec::new();
        for ((n, _), v) in pick.iter().zip(vals) {
            let detail = match *n {
                "STAR" => {
                    let (kcs, kss, ucs, uss) = decode::star(v);
                    star = Some(StarView {
                        syscall_cs: kcs,
                        syscall_ss: kss,
                        sysret_cs: ucs,
                        sysret_ss: uss,
                    });
                    format!("syscall loads CS {kcs:#x} SS {kss:#x}; sysretq loads CS {ucs:#x} SS {uss:#x}")
                }
                "LSTAR" | "CSTAR" => self.sym(v),
                "SFMASK" => format!("syscall clears [{}]", decode::flags(v, decode::RFLAGS_BITS).join(" ")),
                "EFER" => decode::flags(v, decode::EFER_BITS).join(" "),
                _ => String::new(),
            };
            rows.push(MsrRow {
                name: n,
                value: v,
                detail,
            });
        }
        Ok(Msrs { rows, star })
    }

    pub fn check_dump(&self, sel: u16, usage: Use, at_cpl: Option<u8>) -> Result<Check> {
        let cpl = match at_cpl {
            Some(c) => c,
            None => (self.sregs()?.cs.selector & 3) as u8,
        };
        let d = self.gdt_entry(sel)?;
        let (allowed, reason) = decode::privilege_check(sel, d.as_ref(), cpl, usage);
        Ok(Check {
            selector: SelectorView::new(sel),
            usage: format!("{usage:?}").to_lowercase(),
            cpl,
            allowed,
            reason,
            descriptor: d
                .map(|d| decode::type_in_words(d.s, d.typ))
                .unwrap_or_else(|| "null".into()),
            dpl: d.map_or(0, |d| d.dpl),
        })
    }

    pub fn examine_dump(&self, count: usize, size: usize, addr: &str) -> Result<Examine> {
        let va = self.resolve(addr)?;
        let len = (count * size) as u64;
        if va.checked_add(len - 1).is_none() {
            return Err(DebugError::ExaminePastEnd { count, size, va });
        }
        let mut buf = vec![0u8; count * size];
        self.read_virt(va, &mut buf)?;
        let values: Vec<u64> = buf
            .chunks(size)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..size].copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect();
        let lines = values.len().div_ceil(Examine::per_line(size));
        Ok(Examine {
            addr: va,
            size,
            values,
            line_symbols: (0..lines).map(|i| self.sym(va.wrapping_add((i * 16) as u64))).collect(),
        })
    }

    pub fn disas_dump(&self, n: usize) -> Result<Disassembly> {
        let r = self.regs()?;
        let cr3 = self.sregs()?.cr3;
        Ok(Disassembly {
            rip: r.rip,
            instructions: memory::decode(&self.vm.mem, cr3, r.rip, n)
                .into_iter()
                .map(|(addr, text, _)| Instruction {
                    addr,
                    symbol: self.sym(addr),
                    text,
                })
                .collect(),
        })
    }

    pub fn backtrace(&self) -> Result<Backtrace> {
        let r = self.regs()?;
        let frame = |depth, addr| Frame {
            depth,
            addr,
            symbol: self.sym(addr),
        };
        let mut frames = vec![frame(0, r.rip)];
        let mut rbp = r.rbp;
        for depth in 1..MAX_FRAMES {
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
            frames.push(frame(depth, ret));
            if next <= rbp {
                break;
            }
            rbp = next;
        }
        Ok(Backtrace { frames })
    }

    pub fn breakpoints_dump(&self) -> Breakpoints {
        Breakpoints {
            breakpoints: self
                .bps
                .iter()
                .map(|b| BreakpointRow {
                    id: b.id,
                    addr: b.addr,
                    symbol: self.sym(b.addr),
                    spec: b.spec.clone(),
                    watch: b.watch,
                    method: b.method.describe(),
                })
                .collect(),
        }
    }
}

/// "loaded in CS", or how the register's cache differs from the descriptor in memory.
fn cache_vs_memory(name: &str, seg: &kvm_segment, d: &Descriptor, base: u64, limit: u64) -> String {
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
        format!("loaded in {}", name.to_uppercase())
    } else {
        format!("loaded in {}, DIFFERS: {}", name.to_uppercase(), diffs.join(", "))
    }
}

/// Read these MSRs of a vCPU, in order (both debuggers: own kernel, Linux).
pub(crate) fn read_msrs(vcpu: &kvm_ioctls::VcpuFd, indices: &[u32]) -> Result<Vec<u64>> {
    let entries: Vec<_> = indices
        .iter()
        .map(|&index| kvm_bindings::kvm_msr_entry {
            index,
            ..Default::default()
        })
        .collect();
    let mut msrs = KvmMsrs::from_entries(&entries).map_err(DebugError::MsrList)?;
    vcpu.get_msrs(&mut msrs).map_err(DebugError::kvm("KVM_GET_MSRS"))?;
    Ok(msrs.as_slice().iter().map(|e| e.data).collect())
}

/// `sregs` from the special registers, RFLAGS and the FS, GS and
/// KERNEL_GS bases (any VM: the own kernel's or Linux's).
pub(crate) fn sregs_view(s: &kvm_bindings::kvm_sregs, rflags: u64, bases: [u64; 3]) -> Sregs {
    Sregs {
        segments: segment_registers(s)
            .iter()
            .map(|(name, g)| Segment {
                name,
                selector: SelectorView::new(g.selector),
                unusable: g.unusable != 0,
                cache: DescriptorView::new(&cache_descriptor(g), g.base, u64::from(g.limit)),
            })
            .collect(),
        cpl: s.cs.selector & 3,
        iopl: decode::iopl(rflags),
        fs_base: bases[0],
        gs_base: bases[1],
        kernel_gs_base: bases[2],
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
