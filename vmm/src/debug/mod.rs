//! `vmm debug`: a gdb-like debugger driven through KVM's debug exits
//! (KVM_SET_GUEST_DEBUG) and the engine in engine/. Breakpoints are debug
//! registers (DR0–DR3) where they exit, exit-instruction patches in ring 0
//! where they do not (the KVM box), or silent single-steps until RIP matches
//! (`--break-by step`). Every stop prints one line: CPL, RIP with symbol,
//! the instruction, and a marker when the privilege level changed.

mod breakpoints;
pub mod cli;
pub mod commands;
mod control;
pub mod dumps;
pub mod engine;
pub mod error;
pub mod gdb;
mod inspect;
pub mod linux;
pub mod parse;
pub mod replay;

pub use breakpoints::Breakpoint;
pub use engine::Stop;
pub use error::{CommandError, DebugError};

use crate::introspect::symbols::Symbols;
use crate::vstate::kvm_info::Flavor;
use crate::vstate::vm::{Outcome, Vm};
use engine::{BreakMethod, Runner};
use error::Result;
use kvm_bindings::{kvm_regs, kvm_sregs};

/// Why the guest stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    Step,
    Breakpoint(u32),
    Watchpoint(u32),
    /// Gave up after this many silent steps.
    StepLimit(u64),
    Ended,
}

pub struct Debugger {
    pub vm: Vm,
    pub user_symbols: Symbols,
    pub bps: Vec<Breakpoint>,
    next_id: u32,
    /// `--break-by`, if given; otherwise each breakpoint gets what works here.
    pub requested: Option<BreakMethod>,
    /// Measured: a DR0 execute breakpoint exits on this host's KVM.
    pub dr_works: bool,
    /// Resumes the guest and follows it from stop to stop (the engine's,
    /// shared with the tracers).
    runner: Runner,
    /// Silent steps taken by `continue` in step mode.
    pub silent_steps: u64,
    /// Silent steps a `continue` may take in step mode before giving up.
    pub step_limit: u64,
    /// CPL at the last printed stop.
    last_cpl: Option<u8>,
}

impl Debugger {
    /// `requested`: `--break-by`; without it the DR probe decides (and must
    /// run now, before seccomp forbids creating its VM).
    pub fn new(
        mut vm: Vm,
        user_symbols: Symbols,
        requested: Option<BreakMethod>,
        kvm_device: &std::path::Path,
    ) -> Result<Debugger> {
        let dr_works = match requested {
            Some(m) => m == BreakMethod::DebugRegister,
            None => engine::probe_dr_breakpoints(kvm_device)?,
        };
        let runner = Runner::new(&mut vm, kvm_device)?;
        Ok(Debugger {
            vm,
            user_symbols,
            bps: Vec::new(),
            next_id: 1,
            requested,
            dr_works,
            runner,
            silent_steps: 0,
            step_limit: 20_000_000,
            last_cpl: None,
        })
    }

    /// Registers and system registers at this stop, read once per stop.
    pub(super) fn both(&self) -> Result<(kvm_regs, kvm_sregs)> {
        self.runner.both(&self.vm)
    }

    pub fn regs(&self) -> Result<kvm_regs> {
        self.both().map(|b| b.0)
    }

    pub fn sregs(&self) -> Result<kvm_sregs> {
        self.both().map(|b| b.1)
    }

    /// KVM_SET_REGS, keeping the per-stop copy in step.
    pub fn set_regs(&mut self, r: &kvm_regs) -> Result<()> {
        self.runner.set_regs(&self.vm, r)
    }

    /// How the guest ended, once it has.
    pub fn ended(&self) -> Option<&Outcome> {
        self.runner.ended.as_ref()
    }

    pub fn flavor(&self) -> Flavor {
        self.vm.flavor
    }

    /// `addr` with its symbol (kernel symbols in the kernel half, the init
    /// program's below).
    pub fn sym(&self, addr: u64) -> String {
        engine::Symbolizer {
            kernel: self.vm.kernel.symbols(),
            user: &self.user_symbols,
        }
        .describe(addr)
    }

    /// Resolve `SYMBOL`, `SYMBOL+0xOFF` or `0xADDR` (program symbols first:
    /// both the program and the kernel have a `_start`).
    pub fn resolve(&self, spec: &str) -> Result<u64> {
        let (name, off) = match spec.split_once('+') {
            Some((n, o)) => (n, parse_num(o).ok_or_else(|| DebugError::BadOffset(spec.to_string()))?),
            None => (spec, 0),
        };
        if let Some(reg) = name.strip_prefix('$') {
            let r = self.regs()?;
            let v = match reg {
                "rip" | "pc" => r.rip,
                "rsp" | "sp" => r.rsp,
                "rbp" | "fp" => r.rbp,
                "rax" => r.rax,
                "rbx" => r.rbx,
                "rcx" => r.rcx,
                "rdx" => r.rdx,
                "rsi" => r.rsi,
                "rdi" => r.rdi,
                "r8" => r.r8,
                "r9" => r.r9,
                "r10" => r.r10,
                "r11" => r.r11,
                _ => return Err(DebugError::UnknownRegister(reg.to_string())),
            };
            return add_offset(spec, v, off);
        }
        let a = resolve_symbol(name, &self.user_symbols, self.vm.kernel.symbols())?;
        add_offset(spec, a, off)
    }

    pub(super) fn refuse_ring3_on_pvm(&self, what: &str) -> Result<()> {
        if self.vm.flavor.is_pvm() {
            return Err(DebugError::RingThreeOnPvm { what: what.to_string() });
        }
        Ok(())
    }
}

/// `base + off`, refused when it passes the end of the address space.
fn add_offset(spec: &str, base: u64, off: u64) -> Result<u64> {
    base.checked_add(off).ok_or_else(|| DebugError::PastAddressSpace {
        spec: spec.to_string(),
        base,
        off,
    })
}

/// A number, or a symbol of the program or the kernel — the program's
/// first: both it and the kernel have a `_start`.
pub fn resolve_symbol(name: &str, program: &Symbols, kernel: &Symbols) -> Result<u64> {
    if let Some(v) = parse_num(name) {
        return Ok(v);
    }
    program
        .address_of(name)
        .or_else(|| kernel.address_of(name))
        .ok_or_else(|| DebugError::NoSymbol(name.to_string()))
}

/// `0x1f`, `31`.
pub fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}
