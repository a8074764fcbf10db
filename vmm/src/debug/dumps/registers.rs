//! `regs`, `sregs`, `cr` and `msr`.

use crate::introspect::decode::{self, DescriptorView, SelectorView};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::fmt;

/// `regs`: the general registers, RIP and RFLAGS.
#[derive(Clone, Debug, Serialize)]
pub struct Regs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
    /// RIP with its symbol.
    #[serde(skip)]
    pub rip_symbol: String,
}

impl Regs {
    pub fn new(r: &kvm_bindings::kvm_regs, rip_symbol: String) -> Regs {
        Regs {
            rax: r.rax,
            rbx: r.rbx,
            rcx: r.rcx,
            rdx: r.rdx,
            rsi: r.rsi,
            rdi: r.rdi,
            rbp: r.rbp,
            rsp: r.rsp,
            r8: r.r8,
            r9: r.r9,
            r10: r.r10,
            r11: r.r11,
            r12: r.r12,
            r13: r.r13,
            r14: r.r14,
            r15: r.r15,
            rip: r.rip,
            rflags: r.rflags,
            rip_symbol,
        }
    }
}

impl fmt::Display for Regs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            ("rax", self.rax),
            ("rbx", self.rbx),
            ("rcx", self.rcx),
            ("rdx", self.rdx),
            ("rsi", self.rsi),
            ("rdi", self.rdi),
            ("rbp", self.rbp),
            ("rsp", self.rsp),
            ("r8", self.r8),
            ("r9", self.r9),
            ("r10", self.r10),
            ("r11", self.r11),
            ("r12", self.r12),
            ("r13", self.r13),
            ("r14", self.r14),
            ("r15", self.r15),
        ];
        for chunk in names.chunks(4) {
            let line: Vec<String> = chunk.iter().map(|(n, v)| format!("{n:<4}{v:#018x}")).collect();
            writeln!(f, "{}", line.join("  "))?;
        }
        writeln!(f, "rip {}", self.rip_symbol)?;
        writeln!(
            f,
            "rflags {:#x} [{}] IOPL {}",
            self.rflags,
            decode::flags(self.rflags, decode::RFLAGS_BITS).join(" "),
            decode::iopl(self.rflags)
        )
    }
}

/// One segment register: its selector and hidden descriptor cache.
#[derive(Clone, Debug, Serialize)]
pub struct Segment {
    pub name: &'static str,
    pub selector: SelectorView,
    pub unusable: bool,
    pub cache: DescriptorView,
}

/// `sregs`: every segment register, CPL, IOPL and the FS/GS bases.
#[derive(Clone, Debug, Serialize)]
pub struct Sregs {
    pub segments: Vec<Segment>,
    pub cpl: u16,
    pub iopl: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub kernel_gs_base: u64,
}

impl fmt::Display for Sregs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.segments {
            let n = s.name;
            let sel = &s.selector;
            if s.unusable && n != "tr" {
                writeln!(f, "{n:<4} {sel}  (unusable: null selector)")?;
            } else if sel.value & !3 == 0 && n == "ss" {
                writeln!(
                    f,
                    "{n:<4} {sel}  (null SS: what an interrupt or syscall into ring 0 may load in 64-bit mode)"
                )?;
            } else {
                writeln!(f, "{n:<4} {sel}  {}", s.cache)?;
            }
        }
        writeln!(
            f,
            "CPL {} (CS.RPL)  IOPL {} (RFLAGS)  FS.base {:#x}  GS.base {:#x}  KERNEL_GS_BASE {:#x}",
            self.cpl, self.iopl, self.fs_base, self.gs_base, self.kernel_gs_base
        )
    }
}

/// A register with the names of its set bits.
#[derive(Clone, Debug, Serialize)]
pub struct FlagsValue {
    pub value: u64,
    pub flags: Vec<String>,
}

impl FlagsValue {
    pub fn new(value: u64, names: &[(u32, &str)]) -> FlagsValue {
        FlagsValue {
            value,
            flags: decode::flags(value, names),
        }
    }
}

/// `cr`: control registers, EFER and RFLAGS.
#[derive(Clone, Debug, Serialize)]
pub struct ControlRegs {
    #[serde(rename = "CR0")]
    pub cr0: FlagsValue,
    #[serde(rename = "CR2")]
    pub cr2: FlagsValue,
    #[serde(rename = "CR3")]
    pub cr3: FlagsValue,
    #[serde(rename = "CR4")]
    pub cr4: FlagsValue,
    #[serde(rename = "EFER")]
    pub efer: FlagsValue,
    #[serde(rename = "RFLAGS")]
    pub rflags: FlagsValue,
}

impl fmt::Display for ControlRegs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, r) in [
            ("CR0", &self.cr0),
            ("CR2", &self.cr2),
            ("CR3", &self.cr3),
            ("CR4", &self.cr4),
            ("EFER", &self.efer),
            ("RFLAGS", &self.rflags),
        ] {
            writeln!(f, "{n:<6} {:#018x}  {}", r.value, r.flags.join(" "))?;
        }
        writeln!(f, "IOPL {}", decode::iopl(self.rflags.value))
    }
}

/// STAR taken apart: the selectors `syscall` and 64-bit `sysret` load.
#[derive(Clone, Debug, Serialize)]
pub struct StarView {
    pub syscall_cs: u16,
    pub syscall_ss: u16,
    pub sysret_cs: u16,
    pub sysret_ss: u16,
}

/// One MSR and what its value means.
#[derive(Clone, Debug)]
pub struct MsrRow {
    pub name: &'static str,
    pub value: u64,
    pub detail: String,
}

/// `msr [NAME]`. Its JSON maps each name to its value, and STAR's decoding
/// to `STAR_decoded`.
#[derive(Clone, Debug)]
pub struct Msrs {
    pub rows: Vec<MsrRow>,
    pub star: Option<StarView>,
}

impl Serialize for Msrs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.rows.len() + usize::from(self.star.is_some())))?;
        for r in &self.rows {
            m.serialize_entry(r.name, &r.value)?;
        }
        if let Some(star) = &self.star {
            m.serialize_entry("STAR_decoded", star)?;
        }
        m.end()
    }
}

impl fmt::Display for Msrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.rows {
            writeln!(f, "{:<15} {:#018x}  {}", r.name, r.value, r.detail)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<D: Serialize>(d: &D) -> String {
        serde_json::to_value(d).unwrap().to_string()
    }

    #[test]
    fn regs_print_four_a_line_and_json_sorts_keys() {
        let r = kvm_bindings::kvm_regs {
            rax: 1,
            r15: 0xf,
            rip: 0x401000,
            rflags: 0x3202,
            ..Default::default()
        };
        let d = Regs::new(&r, "0x401000 <_start>".into());
        let text = d.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "rax 0x0000000000000001  rbx 0x0000000000000000  rcx 0x0000000000000000  rdx 0x0000000000000000"
        );
        assert!(lines[3].ends_with("r15 0x000000000000000f"), "{}", lines[3]);
        assert_eq!(lines[4], "rip 0x401000 <_start>");
        assert_eq!(lines[5], "rflags 0x3202 [IF] IOPL 3");
        let j = json(&d);
        assert!(j.starts_with("{\"r10\":0,\"r11\":0"), "{j}");
        assert!(j.contains("\"rax\":1") && !j.contains("_start"), "{j}");
    }

    #[test]
    fn msrs_json_carries_star_decoded() {
        let m = Msrs {
            rows: vec![MsrRow {
                name: "STAR",
                value: 0x0010_0008_0000_0000,
                detail: "d".into(),
            }],
            star: Some(StarView {
                syscall_cs: 8,
                syscall_ss: 0x10,
                sysret_cs: 0x23,
                sysret_ss: 0x1b,
            }),
        };
        assert_eq!(
            json(&m),
            "{\"STAR\":4503633987108864,\"STAR_decoded\":{\"syscall_cs\":8,\"syscall_ss\":16,\"sysret_cs\":35,\"sysret_ss\":27}}"
        );
        assert_eq!(m.to_string(), "STAR            0x0010000800000000  d\n");
    }
}
