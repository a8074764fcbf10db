//! `x`, `disas`, `bt` and `info breakpoints`.

use serde::Serialize;
use std::fmt;

/// `x/NFU ADDR`: memory as units of 1, 2, 4 or 8 bytes, 16 bytes a line.
#[derive(Clone, Debug, Serialize)]
pub struct Examine {
    pub addr: u64,
    pub size: usize,
    pub values: Vec<u64>,
    /// Each line's address with its symbol.
    #[serde(skip)]
    pub line_symbols: Vec<String>,
}

impl Examine {
    /// Units per printed line.
    pub fn per_line(size: usize) -> usize {
        16 / size
    }
}

impl fmt::Display for Examine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.size * 2;
        for (chunk, sym) in self.values.chunks(Self::per_line(self.size)).zip(&self.line_symbols) {
            let units: Vec<String> = chunk.iter().map(|v| format!("0x{v:0w$x}")).collect();
            writeln!(f, "{sym}:  {}", units.join(" "))?;
        }
        Ok(())
    }
}

/// One decoded instruction.
#[derive(Clone, Debug, Serialize)]
pub struct Instruction {
    pub addr: u64,
    pub symbol: String,
    pub text: String,
}

/// `disas [N]`: instructions from RIP.
#[derive(Clone, Debug, Serialize)]
pub struct Disassembly {
    pub rip: u64,
    pub instructions: Vec<Instruction>,
}

impl fmt::Display for Disassembly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for i in &self.instructions {
            let mark = if i.addr == self.rip { "=>" } else { "  " };
            writeln!(f, "{mark} {:<48} {}", i.symbol, i.text)?;
        }
        Ok(())
    }
}

/// One frame of a backtrace.
#[derive(Clone, Debug, Serialize)]
pub struct Frame {
    pub depth: usize,
    pub addr: u64,
    pub symbol: String,
}

/// `bt`: return addresses through the frame-pointer chain.
#[derive(Clone, Debug, Serialize)]
pub struct Backtrace {
    pub frames: Vec<Frame>,
}

impl fmt::Display for Backtrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for fr in &self.frames {
            writeln!(f, "#{:<2} {}", fr.depth, fr.symbol)?;
        }
        Ok(())
    }
}

/// One breakpoint or watchpoint as `info breakpoints` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct BreakpointRow {
    pub id: u32,
    pub addr: u64,
    pub symbol: String,
    pub spec: String,
    /// Watchpoints: bytes watched.
    pub watch: Option<u8>,
    pub method: &'static str,
}

/// `info breakpoints`.
#[derive(Clone, Debug, Serialize)]
pub struct Breakpoints {
    pub breakpoints: Vec<BreakpointRow>,
}

impl fmt::Display for Breakpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.breakpoints.is_empty() {
            writeln!(f, "no breakpoints")?;
        }
        for b in &self.breakpoints {
            let kind = match b.watch {
                Some(len) => format!("watch {len} bytes"),
                None => "break".into(),
            };
            writeln!(f, "{:<3} {kind:<14} {}  ({}; {})", b.id, b.symbol, b.spec, b.method)?;
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
    fn examine_puts_sixteen_bytes_on_a_line() {
        let x = Examine {
            addr: 0x10,
            size: 2,
            values: (0..9).collect(),
            line_symbols: vec!["0x10".into(), "0x20".into()],
        };
        assert_eq!(
            x.to_string(),
            "0x10:  0x0000 0x0001 0x0002 0x0003 0x0004 0x0005 0x0006 0x0007\n0x20:  0x0008\n"
        );
    }

    #[test]
    fn empty_breakpoint_list_says_so() {
        let b = Breakpoints { breakpoints: vec![] };
        assert_eq!(b.to_string(), "no breakpoints\n");
        let b = Breakpoints {
            breakpoints: vec![BreakpointRow {
                id: 2,
                addr: 8,
                symbol: "0x8 <x>".into(),
                spec: "x".into(),
                watch: Some(8),
                method: "single-stepping",
            }],
        };
        assert_eq!(b.to_string(), "2   watch 8 bytes  0x8 <x>  (x; single-stepping)\n");
    }

    #[test]
    fn a_backtrace_numbers_its_frames() {
        let frame = |depth, addr: u64| Frame {
            depth,
            addr,
            symbol: format!("{addr:#x}"),
        };
        let bt = Backtrace {
            frames: vec![frame(0, 0x10), frame(12, 0x20)],
        };
        assert_eq!(bt.to_string(), "#0  0x10\n#12 0x20\n");
        assert_eq!(
            json(&bt),
            "{\"frames\":[{\"addr\":16,\"depth\":0,\"symbol\":\"0x10\"},{\"addr\":32,\"depth\":12,\"symbol\":\"0x20\"}]}"
        );
    }
}
