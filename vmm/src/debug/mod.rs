//! `vmm debug`: a gdb-like debugger driven through KVM's debug exits
//! (KVM_SET_GUEST_DEBUG) and the engine in engine.rs. Breakpoints are debug
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
pub mod parse;

pub use breakpoints::Breakpoint;
pub use control::Stop;
pub use error::{CommandError, DebugError};

use crate::introspect::symbols::Symbols;
use crate::trace::tracer::let_tf_through_syscall;
use crate::vstate::kvm_info::Flavor;
use crate::vstate::vm::{Outcome, Vm};
use engine::{BreakMethod, StopControl};
use error::Result;
use kvm_bindings::{kvm_regs, kvm_sregs};
use std::cell::Cell;

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
    /// KVM_SET_GUEST_DEBUG, only when the request changes.
    stop: StopControl,
    /// Registers at this stop (from kvm_run's sync area when KVM offers it).
    cache: Cell<Option<(kvm_regs, kvm_sregs)>>,
    /// KVM_CAP_SYNC_REGS: kvm_run carries regs and sregs after every exit.
    sync_regs: bool,
    /// The last single step may have dropped TF: arm it again.
    rearm_step: bool,
    /// Silent steps taken by `continue` in step mode.
    pub silent_steps: u64,
    /// Silent steps a `continue` may take in step mode before giving up.
    pub step_limit: u64,
    /// CPL at the last printed stop.
    last_cpl: Option<u8>,
    /// The instruction about to run when the guest was last resumed.
    last_insn: String,
    /// CPL after the last resume, printed or not.
    step_cpl: Option<u8>,
    /// The most recent privilege change: (from, to, via instruction).
    transition: Option<(u8, u8, String)>,
    /// A step followed `syscall` into ring 0 with TF set: the saved user
    /// RFLAGS (R11) carries TF and `sysretq` would restore it.
    tf_in_saved_rflags: bool,
    pub ended: Option<Outcome>,
    /// The guest has run at least one instruction.
    pub started: bool,
    /// When the command in progress (a continue or nexti, which may take
    /// many silent steps) runs out of --timeout.
    deadline: Option<std::time::Instant>,
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
        // While debugging, `syscall` must not clear TF, or single-steps would
        // skip the whole kernel path.
        let_tf_through_syscall(vm.vcpu()).map_err(DebugError::kvm("KVM_SET_MSRS"))?;
        let dr_works = match requested {
            Some(m) => m == BreakMethod::DebugRegister,
            None => engine::probe_dr_breakpoints(kvm_device)?,
        };
        let sync_regs = engine::ExitRegs::enable(vm.vcpu_mut(), kvm_device).sync;
        Ok(Debugger {
            vm,
            user_symbols,
            bps: Vec::new(),
            next_id: 1,
            requested,
            dr_works,
            stop: StopControl::default(),
            cache: Cell::new(None),
            sync_regs,
            rearm_step: true,
            silent_steps: 0,
            step_limit: 20_000_000,
            last_cpl: None,
            last_insn: String::new(),
            step_cpl: None,
            transition: None,
            tf_in_saved_rflags: false,
            ended: None,
            started: false,
            deadline: None,
        })
    }

    /// Registers and system registers at this stop, read once per stop.
    pub(super) fn both(&self) -> Result<(kvm_regs, kvm_sregs)> {
        if let Some(c) = self.cache.get() {
            return Ok(c);
        }
        let v = self.vm.vcpu();
        let r = v.get_regs().map_err(DebugError::kvm("KVM_GET_REGS"))?;
        let s = v.get_sregs().map_err(DebugError::kvm("KVM_GET_SREGS"))?;
        self.cache.set(Some((r, s)));
        Ok((r, s))
    }

    pub fn regs(&self) -> Result<kvm_regs> {
        self.both().map(|b| b.0)
    }

    pub fn sregs(&self) -> Result<kvm_sregs> {
        self.both().map(|b| b.1)
    }

    /// KVM_SET_REGS, keeping the per-stop copy in step.
    pub fn set_regs(&mut self, r: &kvm_regs) -> Result<()> {
        self.vm.vcpu().set_regs(r).map_err(DebugError::kvm("KVM_SET_REGS"))?;
        if let Some((_, s)) = self.cache.get() {
            self.cache.set(Some((*r, s)));
        }
        Ok(())
    }

    /// After an exit: the registers KVM left in kvm_run, if it does.
    pub(super) fn take_exit_regs(&mut self) {
        self.cache.set(None);
        if self.sync_regs {
            let s = self.vm.vcpu().sync_regs();
            self.cache.set(Some((s.regs, s.sregs)));
        }
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
