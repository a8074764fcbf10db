//! Debugger command lines, parsed and bounded before anything touches the
//! guest: gdb's names, numbers in decimal or hex, `--json` at the end.

use super::error::CommandError;
use super::parse_num;
use crate::introspect::decode::Use;

type Result<T> = std::result::Result<T, CommandError>;

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
fn bounded(what: &'static str, arg: &str, max: u64, hint: &'static str) -> Result<u64> {
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
fn parse_x_spec(spec: &str) -> Result<(usize, usize)> {
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
pub fn parse(line: &str) -> Result<Option<Parsed>> {
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
    let count = |what: &'static str, max: u64, hint: &'static str| -> Result<u64> {
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
