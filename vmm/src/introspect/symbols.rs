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
