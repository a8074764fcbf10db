//! Addresses to names, from an ELF symbol table (for crash reports and the debugger).

use object::{Object, ObjectSymbol, SymbolKind};

#[derive(Debug, Clone)]
struct Sym {
    addr: u64,
    size: u64,
    name: String,
}

/// A sorted symbol table.
#[derive(Debug, Clone, Default)]
pub struct Symbols {
    syms: Vec<Sym>,
}

impl Symbols {
    pub fn from_object<'a>(file: &impl Object<'a>) -> Symbols {
        let mut ranked: Vec<(u64, u8, Sym)> = file
            .symbols()
            .filter(|s| matches!(s.kind(), SymbolKind::Text | SymbolKind::Data | SymbolKind::Unknown))
            .filter(|s| s.address() != 0 && !s.is_undefined())
            .filter_map(|s| {
                let name = s.name().ok()?;
                if name.is_empty() || name.starts_with(".L") || name.starts_with('$') {
                    return None;
                }
                // Where several names share an address, prefer a sized
                // function, then any function, and linker-script markers
                // such as __kernel_start last.
                let rank = match (s.kind(), s.size()) {
                    (SymbolKind::Text, 1..) => 0,
                    (SymbolKind::Text, 0) => 1,
                    _ => 2,
                } + if name.starts_with("__") { 3 } else { 0 };
                Some((
                    s.address(),
                    rank,
                    Sym {
                        addr: s.address(),
                        size: s.size(),
                        name: demangle(name),
                    },
                ))
            })
            .collect();
        ranked.sort_by_key(|(addr, rank, _)| (*addr, *rank));
        let mut syms: Vec<Sym> = ranked.into_iter().map(|(_, _, sym)| sym).collect();
        syms.dedup_by_key(|s| s.addr);
        Symbols { syms }
    }

    /// A System.map or /proc/kallsyms text ("ffffffff81000000 T _text"
    /// per line; a module column is ignored). Its lines carry no sizes: a
    /// text symbol reaches to the next one. Absolute and undefined symbols
    /// are skipped.
    pub fn from_map(text: &str) -> Symbols {
        let mut ranked: Vec<(u64, u8, Sym)> = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let addr = u64::from_str_radix(w.next()?, 16).ok()?;
                let kind = w.next()?;
                let name = w.next()?;
                if addr == 0 || matches!(kind, "a" | "A" | "U" | "u") {
                    return None;
                }
                let text = matches!(kind, "t" | "T" | "w" | "W");
                let rank = u8::from(!text) * 2 + if name.starts_with("__") { 3 } else { 0 };
                Some((
                    addr,
                    rank,
                    Sym {
                        addr,
                        size: u64::from(text),
                        name: name.to_string(),
                    },
                ))
            })
            .collect();
        // At one address the best-ranked name last: `lookup` takes the last.
        ranked.sort_by_key(|(addr, rank, _)| (*addr, std::cmp::Reverse(*rank)));
        let mut syms: Vec<Sym> = ranked.into_iter().map(|(_, _, sym)| sym).collect();
        // A text symbol's size: up to the next higher address.
        for i in 0..syms.len() {
            if syms[i].size == 1 {
                let next = syms[i..].iter().find(|s| s.addr > syms[i].addr).map(|s| s.addr);
                syms[i].size = next.map_or(0, |n| n - syms[i].addr);
            }
        }
        Symbols { syms }
    }

    /// Move the symbols at or above `from` by `delta` (a KASLR slide: a
    /// kallsyms taken from a randomized boot, used for a `nokaslr` one).
    pub fn rebase(&mut self, from: u64, delta: i64) {
        for s in &mut self.syms {
            if s.addr >= from {
                s.addr = s.addr.wrapping_add_signed(delta);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.syms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    /// `name+0xoff` for the symbol containing `addr` (or the nearest one below
    /// it when sizes are unknown, as for assembly labels).
    pub fn lookup(&self, addr: u64) -> Option<(String, u64)> {
        let i = self.syms.partition_point(|s| s.addr <= addr).checked_sub(1)?;
        let s = &self.syms[i];
        let off = addr - s.addr;
        if s.size != 0 && off >= s.size {
            return None;
        }
        // An unsized label is trusted only within a page.
        if s.size == 0 && off >= 0x1000 {
            return None;
        }
        Some((s.name.clone(), off))
    }

    /// `addr` formatted with its symbol, e.g. `0xffffffff80100010 <kmain+0x10>`.
    pub fn describe(&self, addr: u64) -> String {
        match self.lookup(addr) {
            Some((name, 0)) => format!("{addr:#x} <{name}>"),
            Some((name, off)) => format!("{addr:#x} <{name}+{off:#x}>"),
            None => format!("{addr:#x}"),
        }
    }

    /// The address of a symbol: its exact name, or else the last path
    /// segment of a Rust name (`sys_write` for `kernel::console::sys_write`)
    /// when only one symbol has it.
    pub fn address_of(&self, name: &str) -> Option<u64> {
        if let Some(s) = self.syms.iter().find(|s| s.name == name) {
            return Some(s.addr);
        }
        let mut tail = self.syms.iter().filter(|s| s.name.rsplit("::").next() == Some(name));
        match (tail.next(), tail.next()) {
            (Some(s), None) => Some(s.addr),
            _ => None,
        }
    }
}

/// Rust names without the hash suffix; C and `#[no_mangle]` names unchanged.
fn demangle(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_system_map_gives_names_sizes_and_can_be_rebased() {
        let map = "0000000000000000 A fixed_percpu_data\n\
                   ffffffff81000000 T _text\n\
                   ffffffff81000000 T startup_64\n\
                   ffffffff81e00000 T entry_SYSCALL_64\n\
                   ffffffff81e00040 T entry_SYSCALL_64_safe_stack\n\
                   ffffffff82000000 D some_data\n";
        let mut s = Symbols::from_map(map);
        assert_eq!(s.len(), 5);
        assert_eq!(s.address_of("entry_SYSCALL_64"), Some(0xffff_ffff_81e0_0000));
        assert_eq!(
            s.describe(0xffff_ffff_81e0_0003),
            "0xffffffff81e00003 <entry_SYSCALL_64+0x3>"
        );
        assert_eq!(s.describe(0xffff_ffff_8100_0000), "0xffffffff81000000 <startup_64>");
        s.rebase(0xffff_8000_0000_0000, -0x1000_0000);
        assert_eq!(s.address_of("_text"), Some(0xffff_ffff_7100_0000));
    }

    fn table() -> Symbols {
        Symbols {
            syms: vec![
                Sym {
                    addr: 0x1000,
                    size: 0x20,
                    name: "kmain".into(),
                },
                Sym {
                    addr: 0x1040,
                    size: 0,
                    name: "entry_SYSCALL_64".into(),
                },
            ],
        }
    }

    #[test]
    fn lookup_inside_a_sized_symbol() {
        assert_eq!(table().describe(0x1010), "0x1010 <kmain+0x10>");
        assert_eq!(table().describe(0x1000), "0x1000 <kmain>");
    }

    #[test]
    fn past_the_end_of_a_sized_symbol_is_unknown() {
        assert_eq!(table().describe(0x1030), "0x1030");
    }

    #[test]
    fn unsized_labels_cover_what_follows() {
        assert_eq!(table().describe(0x1048), "0x1048 <entry_SYSCALL_64+0x8>");
        assert_eq!(table().address_of("entry_SYSCALL_64"), Some(0x1040));
    }

    #[test]
    fn a_unique_last_path_segment_names_a_rust_function() {
        let t = Symbols {
            syms: vec![
                Sym {
                    addr: 0x10,
                    size: 4,
                    name: "kernel::console::sys_write".into(),
                },
                Sym {
                    addr: 0x20,
                    size: 4,
                    name: "a::new".into(),
                },
                Sym {
                    addr: 0x30,
                    size: 4,
                    name: "b::new".into(),
                },
            ],
        };
        assert_eq!(t.address_of("sys_write"), Some(0x10));
        assert_eq!(t.address_of("kernel::console::sys_write"), Some(0x10));
        assert_eq!(t.address_of("new"), None, "ambiguous");
    }

    #[test]
    fn rust_names_are_demangled_without_hash() {
        assert_eq!(
            demangle("_ZN12guest_kernel4boot4Boot3new17h0123456789abcdefE"),
            "guest_kernel::boot::Boot::new"
        );
    }
}
