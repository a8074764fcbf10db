//! `gdt`, `idt`, `tss` and `check`: the descriptor tables and the privilege
//! checks the CPU makes with them.

use crate::introspect::decode::{DescriptorView, SelectorView};
use serde::{Serialize, Serializer};
use std::fmt;

/// One GDT slot (a 16-byte system descriptor takes two).
#[derive(Clone, Debug, Serialize)]
pub struct GdtEntry {
    pub index: usize,
    pub selector: usize,
    pub raw: u64,
    pub present: bool,
    pub system16: bool,
    pub descriptor: DescriptorView,
    /// "loaded in CS", with the differences when the cache disagrees with memory.
    pub loaded: Vec<String>,
}

/// `gdt`: the table in guest memory, against the loaded caches.
#[derive(Clone, Debug, Serialize)]
pub struct Gdt {
    pub base: u64,
    pub limit: u16,
    pub entries: Vec<GdtEntry>,
}

impl fmt::Display for Gdt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slots = (usize::from(self.limit) + 1) / 8;
        writeln!(f, "GDT at {:#x}, limit {:#x} ({slots} slots)", self.base, self.limit)?;
        for e in &self.entries {
            let (i, sel) = (e.index, e.selector);
            if e.raw == 0 {
                writeln!(f, "[{i:2}] {sel:#06x}  null")?;
                continue;
            }
            let notes = if e.loaded.is_empty() {
                String::new()
            } else {
                format!("   <- {}", e.loaded.join("; "))
            };
            writeln!(f, "[{i:2}] {sel:#06x}  {}{notes}", e.descriptor)?;
        }
        Ok(())
    }
}

/// One IDT gate.
#[derive(Clone, Debug, Serialize)]
pub struct IdtGate {
    pub vector: usize,
    pub name: &'static str,
    pub present: bool,
    /// "interrupt", "trap" or "?".
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub selector: u16,
    pub target: u64,
    pub symbol: String,
    pub dpl: u8,
    pub ist: u8,
}

/// `idt [VECTOR]`: the present gates, or the one asked for. Its JSON is the
/// array of gates.
#[derive(Clone, Debug)]
pub struct Idt {
    pub base: u64,
    pub limit: u16,
    pub gates: Vec<IdtGate>,
}

impl Serialize for Idt {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.gates.serialize(s)
    }
}

impl fmt::Display for Idt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "IDT at {:#x}, limit {:#x}", self.base, self.limit)?;
        for g in &self.gates {
            let (v, name) = (g.vector, g.name);
            if g.present {
                writeln!(
                    f,
                    "{v:#04x} {name:<6} {:<9} sel {:#06x}  {}  DPL {}  IST {}",
                    g.kind, g.selector, g.symbol, g.dpl, g.ist
                )?;
            } else {
                writeln!(f, "{v:#04x} {name:<6} not present (#NP when raised)")?;
            }
        }
        Ok(())
    }
}

/// `tss`: the stacks the CPU switches to, and the I/O map base.
#[derive(Clone, Debug, Serialize)]
pub struct Tss {
    pub base: u64,
    pub rsp: [u64; 3],
    pub ist: [u64; 7],
    pub iomap_base: u16,
    #[serde(skip)]
    pub tr: Option<SelectorView>,
    /// RSP0–2 with their symbols.
    #[serde(skip)]
    pub rsp_symbols: Vec<String>,
}

impl fmt::Display for Tss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tr = self.tr.as_ref().map_or(String::new(), ToString::to_string);
        writeln!(f, "TSS at {:#x} (TR {tr})", self.base)?;
        for (i, s) in self.rsp_symbols.iter().enumerate() {
            writeln!(f, "  RSP{i}  {s}")?;
        }
        for (i, v) in self.ist.iter().enumerate() {
            writeln!(f, "  IST{}  {v:#x}", i + 1)?;
        }
        let note = if usize::from(self.iomap_base) >= crate::arch::tss::TSS_SIZE {
            " (no bitmap: in/out from ring 3 need IOPL 3)"
        } else {
            ""
        };
        writeln!(f, "  I/O map base {:#x}{note}", self.iomap_base)
    }
}

/// `check SEL [for USE] [at cpl N]`: the CPU's privilege check, reasoned.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub selector: SelectorView,
    #[serde(rename = "use")]
    pub usage: String,
    pub cpl: u8,
    pub allowed: bool,
    pub reason: String,
    /// The descriptor's type in words ("null" for the null selector).
    #[serde(skip)]
    pub descriptor: String,
    #[serde(skip)]
    pub dpl: u8,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "check {} for {} at CPL {}: descriptor {}, DPL {}",
            self.selector, self.usage, self.cpl, self.descriptor, self.dpl
        )?;
        writeln!(f, "  {}", self.reason)?;
        writeln!(f, "  verdict: {}", if self.allowed { "allowed" } else { "#GP" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::gdt::Descriptor;

    fn json<D: Serialize>(d: &D) -> String {
        serde_json::to_value(d).unwrap().to_string()
    }

    #[test]
    fn a_gdt_shows_null_slots_and_cache_differences() {
        let tss = Descriptor {
            typ: 0x9,
            s: false,
            p: true,
            ..Descriptor::data(0)
        };
        let g = Gdt {
            base: 0x1000,
            limit: 0x17,
            entries: vec![
                GdtEntry {
                    index: 0,
                    selector: 0,
                    raw: 0,
                    present: false,
                    system16: false,
                    descriptor: DescriptorView::new(&Descriptor::decode(0), 0, 0),
                    loaded: vec![],
                },
                GdtEntry {
                    index: 1,
                    selector: 8,
                    raw: 1,
                    present: true,
                    system16: true,
                    descriptor: DescriptorView::new(&tss, 0x3000, 0x67),
                    loaded: vec!["loaded in TR, DIFFERS: type cached 0xb vs memory 0x9".into()],
                },
            ],
        };
        assert_eq!(
            g.to_string(),
            "GDT at 0x1000, limit 0x17 (3 slots)\n[ 0] 0x0000  null\n\
             [ 1] 0x0008  base 0x3000 limit 0x67 type 0x9 = 64-bit TSS (available)  S=0 DPL=0 P=1 AVL=0 L=0 \
             D/B=1 G=1   <- loaded in TR, DIFFERS: type cached 0xb vs memory 0x9\n"
        );
        assert!(json(&g).contains("\"type\":9"), "{}", json(&g));
    }

    #[test]
    fn idt_json_is_the_array_of_gates() {
        let idt = Idt {
            base: 0x2000,
            limit: 0xfff,
            gates: vec![IdtGate {
                vector: 14,
                name: "#PF",
                present: false,
                kind: "?",
                selector: 0,
                target: 0,
                symbol: "0x0".into(),
                dpl: 0,
                ist: 0,
            }],
        };
        assert!(json(&idt).starts_with("[{"));
        assert_eq!(
            idt.to_string(),
            "IDT at 0x2000, limit 0xfff\n0x0e #PF    not present (#NP when raised)\n"
        );
    }
}
