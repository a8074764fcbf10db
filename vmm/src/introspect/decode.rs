//! Decoding x86 state into words: segment descriptors, selectors, gates,
//! control-register and RFLAGS bits, STAR — and the privilege checks the CPU
//! makes when a selector is loaded (Intel SDM Vol. 3A §5.5–5.8).

use crate::arch::gdt::Descriptor;
use serde::Serialize;
use std::fmt;

/// "code, execute/read, accessed", "data, read/write", "64-bit TSS (busy)".
pub fn type_in_words(s: bool, typ: u8) -> String {
    if s {
        let accessed = if typ & 1 != 0 { ", accessed" } else { "" };
        if typ & 8 != 0 {
            let rw = if typ & 2 != 0 { "execute/read" } else { "execute-only" };
            let conf = if typ & 4 != 0 { ", conforming" } else { "" };
            format!("code, {rw}{conf}{accessed}")
        } else {
            let rw = if typ & 2 != 0 { "read/write" } else { "read-only" };
            let down = if typ & 4 != 0 { ", expand-down" } else { "" };
            format!("data, {rw}{down}{accessed}")
        }
    } else {
        match typ {
            0x2 => "LDT".into(),
            0x9 => "64-bit TSS (available)".into(),
            0xb => "64-bit TSS (busy)".into(),
            0xc => "64-bit call gate".into(),
            0xe => "64-bit interrupt gate".into(),
            0xf => "64-bit trap gate".into(),
            t => format!("system type {t:#x} (reserved in long mode)"),
        }
    }
}

/// A selector: "0x23 (index 4, GDT, RPL 3)".
pub fn selector(sel: u16) -> String {
    let (index, ti, rpl) = crate::arch::gdt::split_selector(sel);
    format!(
        "{sel:#06x} (index {index}, {}, RPL {rpl})",
        if ti == 0 { "GDT" } else { "LDT" }
    )
}

/// A selector taken apart; shown as [`selector`] writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SelectorView {
    pub value: u16,
    pub index: u16,
    /// "GDT" or "LDT".
    pub ti: &'static str,
    pub rpl: u8,
}

impl SelectorView {
    pub fn new(sel: u16) -> SelectorView {
        let (index, ti, rpl) = crate::arch::gdt::split_selector(sel);
        SelectorView {
            value: sel,
            index,
            ti: if ti == 0 { "GDT" } else { "LDT" },
            rpl,
        }
    }
}

impl fmt::Display for SelectorView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&selector(self.value))
    }
}

/// A descriptor's attributes with its full base and byte limit (a 16-byte
/// system descriptor's base has 64 bits; a segment cache's limit is in bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DescriptorView {
    pub base: u64,
    pub limit: u64,
    #[serde(rename = "type")]
    pub typ: u8,
    pub type_words: String,
    pub s: bool,
    pub dpl: u8,
    pub p: bool,
    pub avl: bool,
    pub l: bool,
    pub db: bool,
    pub g: bool,
}

impl DescriptorView {
    pub fn new(d: &Descriptor, base: u64, limit: u64) -> DescriptorView {
        DescriptorView {
            base,
            limit,
            typ: d.typ,
            type_words: type_in_words(d.s, d.typ),
            s: d.s,
            dpl: d.dpl,
            p: d.p,
            avl: d.avl,
            l: d.l,
            db: d.db,
            g: d.g,
        }
    }
}

/// One line for a descriptor's attributes.
impl fmt::Display for DescriptorView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "base {:#x} limit {:#x} type {:#x} = {}  S={} DPL={} P={} AVL={} L={} D/B={} G={}",
            self.base,
            self.limit,
            self.typ,
            self.type_words,
            u8::from(self.s),
            self.dpl,
            u8::from(self.p),
            u8::from(self.avl),
            u8::from(self.l),
            u8::from(self.db),
            u8::from(self.g)
        )
    }
}

/// The name of an interrupt vector: the exception, or what this kernel
/// uses it for.
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

/// Names of the set bits among `names` (bit, name).
pub fn flags(value: u64, names: &[(u32, &str)]) -> Vec<String> {
    names
        .iter()
        .filter(|(bit, _)| value & (1 << bit) != 0)
        .map(|(_, n)| n.to_string())
        .collect()
}

pub const CR0_BITS: &[(u32, &str)] = &[
    (0, "PE"),
    (1, "MP"),
    (2, "EM"),
    (3, "TS"),
    (4, "ET"),
    (5, "NE"),
    (16, "WP"),
    (18, "AM"),
    (29, "NW"),
    (30, "CD"),
    (31, "PG"),
];
pub const CR4_BITS: &[(u32, &str)] = &[
    (0, "VME"),
    (1, "PVI"),
    (2, "TSD"),
    (3, "DE"),
    (4, "PSE"),
    (5, "PAE"),
    (6, "MCE"),
    (7, "PGE"),
    (8, "PCE"),
    (9, "OSFXSR"),
    (10, "OSXMMEXCPT"),
    (11, "UMIP"),
    (12, "LA57"),
    (13, "VMXE"),
    (16, "FSGSBASE"),
    (17, "PCIDE"),
    (18, "OSXSAVE"),
    (20, "SMEP"),
    (21, "SMAP"),
    (22, "PKE"),
];
pub const EFER_BITS: &[(u32, &str)] = &[
    (0, "SCE"),
    (8, "LME"),
    (10, "LMA"),
    (11, "NXE"),
    (12, "SVME"),
    (14, "FFXSR"),
];
pub const RFLAGS_BITS: &[(u32, &str)] = &[
    (0, "CF"),
    (2, "PF"),
    (4, "AF"),
    (6, "ZF"),
    (7, "SF"),
    (8, "TF"),
    (9, "IF"),
    (10, "DF"),
    (11, "OF"),
    (14, "NT"),
    (16, "RF"),
    (17, "VM"),
    (18, "AC"),
    (19, "VIF"),
    (20, "VIP"),
    (21, "ID"),
];

/// IOPL from RFLAGS bits 12–13.
pub fn iopl(rflags: u64) -> u64 {
    (rflags >> 12) & 3
}

/// STAR decoded into the selectors `syscall` and 64-bit `sysret` load.
pub fn star(star: u64) -> (u16, u16, u16, u16) {
    let syscall_cs = ((star >> 32) & 0xfffc) as u16;
    let sysret_base = ((star >> 48) & 0xfffc) as u16;
    (
        syscall_cs,
        syscall_cs + 8,
        (sysret_base + 16) | 3,
        (sysret_base + 8) | 3,
    )
}

/// What a selector is loaded for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// DS, ES, FS or GS (`mov ds, ax`).
    Data,
    /// SS (`mov ss, ax`, `pop ss`).
    Stack,
    /// CS through a far jmp/call to a code segment.
    Code,
}

/// The verdict line: the rule with its numbers, yes/no, and what the CPU does.
fn verdict(ok: bool, sel: u16, rule: String) -> (bool, String) {
    let result = if ok {
        "allowed".to_string()
    } else {
        format!("#GP({sel:#x})")
    };
    (ok, format!("{rule}? {} → {result}", if ok { "yes" } else { "no" }))
}

/// The CPU's privilege check for loading `sel` (with descriptor `d`, None for
/// the null selector) at privilege `cpl`: the verdict and the reasoning.
pub fn privilege_check(sel: u16, d: Option<&Descriptor>, cpl: u8, usage: Use) -> (bool, String) {
    let rpl = (sel & 3) as u8;
    let Some(d) = d else {
        return match usage {
            Use::Data => (
                true,
                "the null selector may be loaded into DS/ES/FS/GS (using it later faults)".into(),
            ),
            Use::Stack if cpl == 0 => (true, "64-bit mode allows a null SS at CPL 0".into()),
            _ => (false, format!("a null selector for {usage:?} at CPL {cpl} → #GP(0)")),
        };
    };
    if !d.p {
        return (false, format!("descriptor not present → #NP({sel:#x})"));
    }
    let is_code = d.s && d.typ & 8 != 0;
    let conforming = is_code && d.typ & 4 != 0;
    let readable_or_data = d.s && (!is_code || d.typ & 2 != 0);
    let writable_data = d.s && !is_code && d.typ & 2 != 0;
    let words = type_in_words(d.s, d.typ);
    match usage {
        Use::Data if !readable_or_data => (
            false,
            format!("{words} cannot be loaded into a data segment register → #GP({sel:#x})"),
        ),
        Use::Data if conforming => (
            true,
            "conforming code segment: no privilege check for data access".into(),
        ),
        Use::Data => {
            let eff = cpl.max(rpl);
            verdict(
                eff <= d.dpl,
                sel,
                format!("data: max(CPL {cpl}, RPL {rpl}) = {eff} ≤ DPL {}", d.dpl),
            )
        }
        Use::Stack if !writable_data => (
            false,
            format!("SS needs a writable data segment, not {words} → #GP({sel:#x})"),
        ),
        Use::Stack => verdict(
            rpl == cpl && d.dpl == cpl,
            sel,
            format!("stack: RPL {rpl} = CPL {cpl} and DPL {} = CPL {cpl}", d.dpl),
        ),
        Use::Code if !is_code => (
            false,
            format!("a far jump/call needs a code segment, not {words} → #GP({sel:#x})"),
        ),
        Use::Code if conforming => verdict(d.dpl <= cpl, sel, format!("conforming code: DPL {} ≤ CPL {cpl}", d.dpl)),
        Use::Code => verdict(
            rpl <= cpl && d.dpl == cpl,
            sel,
            format!(
                "non-conforming code: RPL {rpl} ≤ CPL {cpl} and DPL {} = CPL {cpl}",
                d.dpl
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_in_words() {
        assert_eq!(type_in_words(true, 0xb), "code, execute/read, accessed");
        assert_eq!(type_in_words(true, 0x3), "data, read/write, accessed");
        assert_eq!(type_in_words(true, 0x8), "code, execute-only");
        assert_eq!(type_in_words(false, 0xb), "64-bit TSS (busy)");
        assert_eq!(type_in_words(false, 0xe), "64-bit interrupt gate");
    }

    #[test]
    fn selector_text() {
        assert_eq!(selector(0x23), "0x0023 (index 4, GDT, RPL 3)");
        assert_eq!(selector(0x10), "0x0010 (index 2, GDT, RPL 0)");
    }

    #[test]
    fn kernel_data_at_cpl3_is_gp_and_at_cpl0_allowed() {
        let kd = Descriptor::data(0);
        let (ok, why) = privilege_check(0x10, Some(&kd), 3, Use::Data);
        assert!(!ok);
        assert_eq!(why, "data: max(CPL 3, RPL 0) = 3 ≤ DPL 0? no → #GP(0x10)");
        let (ok, why) = privilege_check(0x10, Some(&kd), 0, Use::Data);
        assert!(ok, "{why}");
        // RPL 3 on a DPL-0 segment fails even at CPL 0.
        assert!(!privilege_check(0x13, Some(&kd), 0, Use::Data).0);
    }

    #[test]
    fn stack_and_code_rules() {
        assert!(privilege_check(0x1b, Some(&Descriptor::data(3)), 3, Use::Stack).0);
        assert!(!privilege_check(0x10, Some(&Descriptor::data(0)), 3, Use::Stack).0);
        assert!(!privilege_check(0x08, Some(&Descriptor::code64(0)), 3, Use::Code).0);
        assert!(privilege_check(0x23, Some(&Descriptor::code64(3)), 3, Use::Code).0);
        assert!(!privilege_check(0x08, Some(&Descriptor::code64(0)), 0, Use::Stack).0);
        assert!(privilege_check(0, None, 3, Use::Data).0);
        assert!(!privilege_check(0, None, 3, Use::Stack).0);
    }

    #[test]
    fn star_decodes_to_our_selectors() {
        assert_eq!(star(0x0010_0008_0000_0000), (0x08, 0x10, 0x23, 0x1b));
    }

    #[test]
    fn flag_names() {
        assert_eq!(flags(0x8001_0033, CR0_BITS), ["PE", "MP", "ET", "NE", "WP", "PG"]);
        assert_eq!(iopl(0x3202), 3);
    }
}
