//! Watching a stock Linux kernel from outside (`vmm debug --linux`, `vmm
//! run --linux --strace`): Linux's own symbols (`--symbols` System.map,
//! /proc/kallsyms text or vmlinux), trace points by exit-instruction
//! patches (`in al, dx` over a kernel instruction's first byte: an exit at
//! full speed on every KVM, where the KVM box fires neither debug
//! registers nor `int3`), and a small command set: break, delete,
//! continue, regs, sregs, quit. The full debugger (debug/mod.rs) is built
//! on the own kernel's VM; this one on `vstate::linux::LinuxVm`.
//!
//! strace: at `do_syscall_64(struct pt_regs *regs, int nr)` the number is
//! in ESI and the arguments in the saved user registers (`regs->di, si,
//! dx, r10, r8, r9`); at `syscall_exit_to_user_mode(regs)` the result is
//! `regs->ax`. Only the 64-bit `syscall` path; no pid (that needs struct
//! offsets from debug info).

use crate::debug::dumps::{Regs, Sregs};
use crate::debug::inspect::{read_msrs, sregs_view};
use crate::introspect::memory::{disassemble_one, read_virt};
use crate::introspect::symbols::Symbols;
use crate::vstate::linux::{LinuxError, LinuxEvent, LinuxVm, START_KERNEL_MAP};
use crate::vstate::vm::Outcome;
use std::io::Write;
use std::path::Path;

/// Fewer symbols than this is not a kernel's table (Debian's
/// /boot/System.map is a one-line placeholder).
const MIN_SYMBOLS: usize = 1000;

/// Linux's symbols from `path`: an ELF (vmlinux) or System.map /
/// /proc/kallsyms text. A kallsyms taken from a KASLR boot is moved back to
/// the link addresses (`_text` at `text_base`), where a `nokaslr` guest runs.
pub fn load_symbols(path: &Path, text_base: u64) -> Result<(Symbols, Option<i64>), LinuxError> {
    let err = |reason: String| LinuxError::Symbols {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() || meta.len() > 1 << 30 {
        return Err(err("not a regular file under 1 GiB".into()));
    }
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut syms = if bytes.starts_with(b"\x7fELF") {
        crate::boot::loader::with_aligned(&bytes, |b| {
            object::File::parse(b)
                .map(|f| Symbols::from_object(&f))
                .map_err(|e| err(format!("not a readable ELF: {e}")))
        })?
    } else {
        Symbols::from_map(&String::from_utf8_lossy(&bytes))
    };
    if syms.len() < MIN_SYMBOLS {
        return Err(err(format!(
            "only {} symbols: not a kernel's symbol table. Debian's /boot/System.map-* is a placeholder \
             (\"The real System.map is in the linux-image-<version>-dbg package\"): install that package \
             (its System.map or vmlinux), or save /proc/kallsyms (as root) on a machine running this kernel, \
             e.g. inside the KVM box",
            syms.len()
        )));
    }
    let mut slide = None;
    if let Some(t) = syms.address_of("_text") {
        if t != text_base {
            let delta = text_base.wrapping_sub(t) as i64;
            syms.rebase(START_KERNEL_MAP, delta);
            slide = Some(-delta);
        }
    }
    Ok((syms, slide))
}

/// A symbol, or a hex address.
fn resolve(syms: &Symbols, spec: &str) -> Result<u64, String> {
    if let Some(h) = spec.strip_prefix("0x") {
        return u64::from_str_radix(h, 16).map_err(|_| format!("bad address {spec}"));
    }
    syms.address_of(spec)
        .ok_or_else(|| format!("no symbol '{spec}' in the --symbols table"))
}

/// A debugging session on a Linux guest.
pub struct Session {
    pub vm: LinuxVm,
    syms: Symbols,
    breaks: Vec<(u64, String)>,
    ended: Option<Outcome>,
}

/// What a command asks of the loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Next,
    Quit,
}

impl Session {
    pub fn new(vm: LinuxVm, syms: Symbols) -> Session {
        Session {
            vm,
            syms,
            breaks: Vec::new(),
            ended: None,
        }
    }

    pub fn ended(&self) -> Option<&Outcome> {
        self.ended.as_ref()
    }

    /// Run one command; its output goes to stdout.
    pub fn execute(&mut self, line: &str) -> Result<Flow, String> {
        let mut w = line.split_whitespace();
        let Some(cmd) = w.next() else { return Ok(Flow::Next) };
        let arg = w.next();
        match (cmd, arg) {
            ("break" | "b" | "hbreak", Some(spec)) => {
                let addr = resolve(&self.syms, spec)?;
                if addr < START_KERNEL_MAP {
                    return Err(format!(
                        "{spec} ({addr:#x}) is not in Linux's kernel mapping: exit-instruction patches stop \
                         kernel code only (`in` from ring 3 is #GP, not an exit)"
                    ));
                }
                self.breaks.push((addr, spec.to_string()));
                let addrs: Vec<u64> = self.breaks.iter().map(|b| b.0).collect();
                self.vm.set_breakpoints(&addrs);
                println!(
                    "Breakpoint {} at {} (exit-instruction patch)",
                    self.breaks.len(),
                    self.syms.describe(addr)
                );
                Ok(Flow::Next)
            }
            ("delete", None) => {
                self.breaks.clear();
                self.vm.set_breakpoints(&[]);
                Ok(Flow::Next)
            }
            ("continue" | "c", _) => {
                if let Some(o) = &self.ended {
                    return Err(format!("the guest has ended ({})", o.describe()));
                }
                match self.vm.run_until() {
                    LinuxEvent::Break(at) => {
                        let n = self.breaks.iter().position(|b| b.0 == at).map_or(0, |i| i + 1);
                        println!("Breakpoint {n}, {}", self.syms.describe(at));
                        println!("{}", self.stop_line()?);
                    }
                    LinuxEvent::Ended(o) => {
                        println!("the guest ended: {}", o.describe());
                        self.ended = Some(o);
                    }
                }
                Ok(Flow::Next)
            }
            ("regs", None) => {
                let r = self.vm.vcpu().get_regs().map_err(|e| e.to_string())?;
                print!("{}", Regs::new(&r, self.syms.describe(r.rip)));
                Ok(Flow::Next)
            }
            ("sregs", None) => {
                print!("{}", self.sregs()?);
                Ok(Flow::Next)
            }
            ("quit" | "q", None) => Ok(Flow::Quit),
            ("help", _) => {
                println!(
                    "commands for a Linux guest: break SYMBOL|0xADDR, delete, continue, regs, sregs, quit \
                     (the full debugger's other commands need vmm's own kernel)"
                );
                Ok(Flow::Next)
            }
            _ => Err(format!("'{line}' is not supported for a Linux guest yet (type help)")),
        }
    }

    fn msrs(&self, indices: &[u32]) -> Result<Vec<u64>, String> {
        read_msrs(self.vm.vcpu(), indices).map_err(|e| e.to_string())
    }

    /// One line for a stop: CPL, RIP with its symbol, the instruction, and
    /// how the CPU got there when RIP is LSTAR (only `syscall` enters there).
    pub fn stop_line(&self) -> Result<String, String> {
        let r = self.vm.vcpu().get_regs().map_err(|e| e.to_string())?;
        let s = self.vm.vcpu().get_sregs().map_err(|e| e.to_string())?;
        let insn = disassemble_one(&self.vm.mem, s.cr3, r.rip).unwrap_or_else(|| "?".into());
        let mut line = format!("CPL {}  {}  {insn}", s.cs.selector & 3, self.syms.describe(r.rip));
        let m = self.msrs(&[crate::arch::msr::MSR_LSTAR, crate::arch::msr::MSR_STAR])?;
        if r.rip == m[0] {
            // STAR[63:48] + 16 and + 8, with RPL 3: what sysretq loads.
            let base = (m[1] >> 48) as u16;
            line += &format!(
                "    [CPL 3 → 0 via syscall; user RIP {:#x} in RCX; sysretq returns to CS {:#x} SS {:#x} (STAR)]",
                r.rcx,
                (base + 16) | 3,
                (base + 8) | 3
            );
        }
        Ok(line)
    }

    fn sregs(&self) -> Result<Sregs, String> {
        use crate::arch::msr::{MSR_FS_BASE, MSR_GS_BASE, MSR_KERNEL_GS_BASE};
        let s = self.vm.vcpu().get_sregs().map_err(|e| e.to_string())?;
        let r = self.vm.vcpu().get_regs().map_err(|e| e.to_string())?;
        let m = self.msrs(&[MSR_FS_BASE, MSR_GS_BASE, MSR_KERNEL_GS_BASE])?;
        Ok(sregs_view(&s, r.rflags, [m[0], m[1], m[2]]))
    }
}

/// `struct pt_regs` (arch/x86/include/asm/ptrace.h), in 8-byte slots.
mod pt_regs {
    pub const R10: usize = 7;
    pub const R9: usize = 8;
    pub const R8: usize = 9;
    pub const AX: usize = 10;
    pub const DX: usize = 12;
    pub const SI: usize = 13;
    pub const DI: usize = 14;
    /// Through `ss`: 21 slots.
    pub const SLOTS: usize = 21;
}

/// The six argument registers of a system call, from a `pt_regs`.
pub fn syscall_args(slots: &[u64; pt_regs::SLOTS]) -> [u64; 6] {
    use pt_regs::*;
    [slots[DI], slots[SI], slots[DX], slots[R10], slots[R8], slots[R9]]
}

fn read_pt_regs(vm: &LinuxVm, cr3: u64, at: u64) -> Option<[u64; pt_regs::SLOTS]> {
    let mut b = [0u8; pt_regs::SLOTS * 8];
    read_virt(&vm.mem, cr3, at, &mut b).ok()?;
    let mut slots = [0u64; pt_regs::SLOTS];
    for (s, c) in slots.iter_mut().zip(b.chunks_exact(8)) {
        *s = u64::from_le_bytes(c.try_into().unwrap_or_default());
    }
    Some(slots)
}

/// One call as strace prints it (vmm's decoder, without its pid column).
fn show(vm: &LinuxVm, cr3: u64, nr: u64, args: [u64; 6], ret: Option<i64>) -> String {
    let line = crate::trace::strace::decode_call(&vm.mem, cr3, 0, nr, args, ret);
    line.strip_prefix("[pid 0] ").map(str::to_string).unwrap_or(line)
}

/// `vmm run --linux --strace`: every 64-bit system call, from outside.
pub fn strace(vm: &mut LinuxVm, syms: &Symbols, out: &mut dyn Write) -> Result<Outcome, LinuxError> {
    let need = |name: &str| {
        syms.address_of(name).ok_or_else(|| LinuxError::Symbols {
            path: "--symbols".into(),
            reason: format!("no symbol {name}: --strace follows Linux's do_syscall_64 and syscall_exit_to_user_mode"),
        })
    };
    let (entry, exit) = (need("do_syscall_64")?, need("syscall_exit_to_user_mode")?);
    vm.set_breakpoints(&[entry, exit]);
    // The call in flight: its number, arguments and address space.
    let mut pending: Option<(u64, [u64; 6], u64)> = None;
    loop {
        match vm.run_until() {
            LinuxEvent::Ended(o) => {
                if let Some((nr, args, cr3)) = pending.take() {
                    let _ = writeln!(out, "{}", show(vm, cr3, nr, args, None));
                }
                let _ = out.flush();
                return Ok(o);
            }
            LinuxEvent::Break(at) => {
                let (Ok(r), Ok(s)) = (vm.vcpu().get_regs(), vm.vcpu().get_sregs()) else {
                    continue;
                };
                let Some(slots) = read_pt_regs(vm, s.cr3, r.rdi) else {
                    continue;
                };
                if at == entry {
                    let nr = u64::from(r.rsi as u32);
                    let args = syscall_args(&slots);
                    // exit and exit_group do not come back.
                    if matches!(nr, 60 | 231) {
                        let _ = writeln!(out, "{}", show(vm, s.cr3, nr, args, None));
                    } else {
                        pending = Some((nr, args, s.cr3));
                    }
                } else if let Some((nr, args, cr3)) = pending.take() {
                    let _ = writeln!(out, "{}", show(vm, cr3, nr, args, Some(slots[pt_regs::AX] as i64)));
                }
            }
        }
    }
}

/// `vmm debug --linux BZIMAGE --symbols FILE [-x CMD]... [--batch]`.
pub fn main(
    args: &crate::debug::cli::DebugArgs,
    kernel: std::path::PathBuf,
    mem_given: bool,
) -> std::process::ExitCode {
    use crate::status;
    use crate::vstate::linux::LinuxConfig;
    use std::process::ExitCode;
    let setup = || -> Result<Session, LinuxError> {
        let cfg = LinuxConfig::from_args(&args.guest, &args.linux, kernel.clone(), mem_given)?;
        if matches!(args.break_by, Some(m) if m != crate::debug::engine::BreakMethod::ExitInsn) {
            return Err(LinuxError::Symbols {
                path: "--break-by".into(),
                reason: "a Linux guest stops by exit-instruction patches only (--break-by exit-insn)".into(),
            });
        }
        let path = args
            .linux
            .symbols
            .clone()
            .ok_or(LinuxError::NeedsSymbols("vmm debug"))?;
        let vm = LinuxVm::new(&cfg, Box::new(std::io::stdout()))?;
        let (syms, slide) = load_symbols(&path, vm.text_base)?;
        if let Some(d) = slide {
            println!(
                "note: {} is from a KASLR boot (slide {d:#x}); moved to the link addresses (the guest runs nokaslr)",
                path.display()
            );
        }
        Ok(Session::new(vm, syms))
    };
    let mut s = match setup() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vmm: {e}");
            return ExitCode::from(status::SETUP_ERROR);
        }
    };
    println!("Linux guest: breakpoints go in once the kernel runs decompressed");
    let mut lines: Box<dyn Iterator<Item = String>> = Box::new(args.commands.clone().into_iter());
    if !args.batch {
        use std::io::BufRead;
        lines = Box::new(lines.chain(std::io::stdin().lock().lines().map_while(Result::ok)));
    }
    let mut code = ExitCode::SUCCESS;
    for c in lines {
        println!("(vmm) {c}");
        match s.execute(&c) {
            Ok(Flow::Quit) => break,
            Ok(Flow::Next) => {}
            Err(e) => {
                eprintln!("error: {e}");
                if args.batch {
                    code = ExitCode::FAILURE;
                    break;
                }
            }
        }
    }
    let _ = std::io::stdout().flush();
    s.vm.release_for_exit();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_arguments_come_from_the_saved_user_registers() {
        let mut slots = [0u64; pt_regs::SLOTS];
        for (i, s) in slots.iter_mut().enumerate() {
            *s = i as u64;
        }
        // di, si, dx, r10, r8, r9
        assert_eq!(syscall_args(&slots), [14, 13, 12, 7, 9, 8]);
    }

    #[test]
    fn a_placeholder_system_map_is_refused_with_what_to_use() {
        let dir = std::env::temp_dir().join(format!("vmm-sysmap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("System.map");
        std::fs::write(
            &p,
            "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n",
        )
        .unwrap();
        let e = load_symbols(&p, 0xffff_ffff_8100_0000).unwrap_err().to_string();
        assert!(e.contains("-dbg") && e.contains("/proc/kallsyms"), "{e}");
    }

    #[test]
    fn a_kallsyms_from_a_kaslr_boot_is_moved_to_the_link_addresses() {
        let dir = std::env::temp_dir().join(format!("vmm-kallsyms-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("kallsyms");
        let mut text = String::from("ffffffff9a000000 T _text\n");
        for i in 0..MIN_SYMBOLS as u64 {
            text += &format!("{:x} t f{i}\n", 0xffff_ffff_9a00_1000 + i * 16);
        }
        text += "ffffffff9ae00000 T entry_SYSCALL_64\n";
        std::fs::write(&p, text).unwrap();
        let (s, slide) = load_symbols(&p, 0xffff_ffff_8100_0000).unwrap();
        assert_eq!(slide, Some(0x1900_0000));
        assert_eq!(s.address_of("entry_SYSCALL_64"), Some(0xffff_ffff_81e0_0000));
    }
}
