//! `vmm debug`: a gdb-like debugger driven through KVM's debug exits
//! (KVM_SET_GUEST_DEBUG) and the engine in engine.rs. Breakpoints are debug
//! registers (DR0–DR3) where they exit, exit-instruction patches in ring 0
//! where they do not (the KVM box), or silent single-steps until RIP matches
//! (`--break-by step`). Every stop prints one line: CPL, RIP with symbol,
//! the instruction, and a marker when the privilege level changed.

pub mod cli;
pub mod commands;
pub mod engine;
pub mod gdb;

use crate::introspect::memory;
use crate::introspect::symbols::Symbols;
use crate::trace::tracer::let_tf_through_syscall;
use crate::vstate::kvm_info::Flavor;
use crate::vstate::vm::{Event, Outcome, RunMode, Vm};
use engine::{BreakMethod, DrSlot, StopControl, StopRequest};
use kvm_bindings::{kvm_regs, kvm_sregs};
use std::cell::Cell;
use vm_memory::{Bytes, GuestAddress};
use vmm_abi::layout::KERNEL_BASE;

/// A breakpoint or watchpoint.
#[derive(Clone, Debug)]
pub struct Breakpoint {
    pub id: u32,
    pub addr: u64,
    pub spec: String,
    /// None: execute breakpoint; Some(len): write watchpoint of len bytes.
    pub watch: Option<u8>,
    /// For watchpoints reached by stepping: the last value seen.
    pub last_value: Option<u64>,
    /// How it stops the guest.
    pub method: BreakMethod,
}

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
    ) -> Result<Debugger, String> {
        // While debugging, `syscall` must not clear TF, or single-steps would
        // skip the whole kernel path.
        let_tf_through_syscall(vm.vcpu()).map_err(|e| format!("KVM_SET_MSRS: {e}"))?;
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
    fn both(&self) -> Result<(kvm_regs, kvm_sregs), String> {
        if let Some(c) = self.cache.get() {
            return Ok(c);
        }
        let v = self.vm.vcpu();
        let r = v.get_regs().map_err(|e| format!("KVM_GET_REGS: {e}"))?;
        let s = v.get_sregs().map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
        self.cache.set(Some((r, s)));
        Ok((r, s))
    }

    pub fn regs(&self) -> Result<kvm_regs, String> {
        self.both().map(|b| b.0)
    }

    pub fn sregs(&self) -> Result<kvm_sregs, String> {
        self.both().map(|b| b.1)
    }

    /// KVM_SET_REGS, keeping the per-stop copy in step.
    pub fn set_regs(&mut self, r: &kvm_regs) -> Result<(), String> {
        self.vm.vcpu().set_regs(r).map_err(|e| format!("KVM_SET_REGS: {e}"))?;
        if let Some((_, s)) = self.cache.get() {
            self.cache.set(Some((*r, s)));
        }
        Ok(())
    }

    /// After an exit: the registers KVM left in kvm_run, if it does.
    fn take_exit_regs(&mut self) {
        self.cache.set(None);
        if self.sync_regs {
            let s = self.vm.vcpu().sync_regs();
            self.cache.set(Some((s.regs, s.sregs)));
        }
    }

    /// The method a new breakpoint at `addr` gets.
    pub fn method_for(&self, addr: u64, watch: bool) -> BreakMethod {
        if watch {
            // DR watchpoints never fire on PVM nor in the KVM box.
            return match self.requested {
                Some(m) => m,
                None if self.dr_works && !self.vm.flavor.is_pvm() => BreakMethod::DebugRegister,
                None => BreakMethod::Step,
            };
        }
        BreakMethod::for_address(self.requested, self.dr_works, addr)
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
    pub fn resolve(&self, spec: &str) -> Result<u64, String> {
        let (name, off) = match spec.split_once('+') {
            Some((n, o)) => (n, parse_num(o).ok_or_else(|| format!("bad offset in {spec}"))?),
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
                _ => return Err(format!("unknown register ${reg}")),
            };
            return add_offset(spec, v, off);
        }
        let a = resolve_symbol(name, &self.user_symbols, self.vm.kernel.symbols())?;
        add_offset(spec, a, off)
    }

    fn refuse_ring3_on_pvm(&self, what: &str) -> Result<(), String> {
        if self.vm.flavor.is_pvm() {
            return Err(format!(
                "{what}: on this host's PVM /dev/kvm, single-steps and debug-register breakpoints in ring 3 never \
                 exit (see `vmm kvm-info`); use hardware KVM or the KVM box (tests/kvmbox)"
            ));
        }
        Ok(())
    }

    pub fn add_breakpoint(&mut self, spec: &str, watch: Option<u8>) -> Result<&Breakpoint, String> {
        let addr = self.resolve(spec)?;
        if addr < KERNEL_BASE {
            self.refuse_ring3_on_pvm(&format!("a breakpoint at {addr:#x} (ring 3)"))?;
        }
        let method = self.method_for(addr, watch.is_some());
        if method == BreakMethod::ExitInsn && (addr < KERNEL_BASE || watch.is_some()) {
            return Err(format!(
                "--break-by exit-insn patches `in al, dx` into kernel code, and {addr:#x} is {}: \
                 use --break-by step (or dr0 where debug registers exit)",
                if watch.is_some() {
                    "a watchpoint"
                } else {
                    "a ring-3 address (an `in` there is #GP, not an exit)"
                }
            ));
        }
        if method == BreakMethod::DebugRegister
            && self
                .bps
                .iter()
                .filter(|b| b.method == BreakMethod::DebugRegister)
                .count()
                >= 4
        {
            return Err("only 4 debug registers (DR0–DR3): delete one, or use --break-by step".into());
        }
        if let Some(len) = watch {
            if self.vm.flavor.is_pvm() && method == BreakMethod::DebugRegister {
                return Err("debug-register watchpoints never fire on PVM (see `vmm kvm-info`); \
                            restart with --break-by step, which compares the value after each step"
                    .into());
            }
            if ![1, 2, 4, 8].contains(&len) || addr % u64::from(len) != 0 {
                return Err("a watchpoint covers 1, 2, 4 or 8 bytes, aligned".into());
            }
        }
        let last_value = watch.and_then(|len| self.read_watched(addr, len));
        let id = self.next_id;
        self.next_id += 1;
        self.bps.push(Breakpoint {
            id,
            addr,
            spec: spec.to_string(),
            watch,
            last_value,
            method,
        });
        Ok(self.bps.last().unwrap())
    }

    pub fn delete(&mut self, id: Option<u32>) -> Result<(), String> {
        match id {
            None => self.bps.clear(),
            Some(id) => {
                let n = self.bps.len();
                self.bps.retain(|b| b.id != id);
                if n == self.bps.len() {
                    return Err(format!("no breakpoint {id}"));
                }
            }
        }
        Ok(())
    }

    fn read_watched(&self, addr: u64, len: u8) -> Option<u64> {
        let sregs = self.sregs().ok()?;
        let mut b = [0u8; 8];
        memory::read_virt(&self.vm.mem, sregs.cr3, addr, &mut b[..len as usize]).ok()?;
        Some(u64::from_le_bytes(b))
    }

    /// DR0–3 and DR7 for the debug-register breakpoints.
    fn debug_registers(&self) -> Option<([u64; 4], u64)> {
        let mut dr = [0u64; 4];
        let mut slots = Vec::new();
        for (i, b) in self.dr_bps().take(4).enumerate() {
            dr[i] = b.addr;
            slots.push(b.watch.map_or(DrSlot::Execute, DrSlot::Write));
        }
        (!slots.is_empty()).then(|| (dr, engine::dr7(&slots)))
    }

    fn dr_bps(&self) -> impl Iterator<Item = &Breakpoint> {
        self.bps.iter().filter(|b| b.method == BreakMethod::DebugRegister)
    }

    /// A `continue` must single-step: some breakpoint is reached by stepping.
    fn continue_steps(&self) -> bool {
        self.bps.iter().any(|b| b.method == BreakMethod::Step)
    }

    /// Write `in al, dx` over each exit-instruction breakpoint; returns what
    /// to put back.
    fn patch_in(&mut self) -> Result<Vec<(u64, u64, u8)>, String> {
        let cr3 = self.sregs()?.cr3;
        let mut saved = Vec::new();
        let addrs: Vec<u64> = self
            .bps
            .iter()
            .filter(|b| b.method == BreakMethod::ExitInsn)
            .map(|b| b.addr)
            .collect();
        for addr in addrs {
            if saved.iter().any(|&(a, _, _)| a == addr) {
                continue;
            }
            let phys = crate::arch::paging::walk(&self.vm.mem, cr3, addr)
                .1
                .ok_or_else(|| format!("{addr:#x} is not mapped: cannot patch a breakpoint there"))?;
            let orig: u8 = self.vm.mem.read_obj(GuestAddress(phys)).map_err(|e| e.to_string())?;
            self.vm
                .mem
                .write_obj(engine::EXIT_INSN, GuestAddress(phys))
                .map_err(|e| e.to_string())?;
            saved.push((addr, phys, orig));
        }
        self.vm.exit_patches.addrs = saved.iter().map(|&(a, _, _)| a).collect();
        Ok(saved)
    }

    fn patch_out(&mut self, saved: &[(u64, u64, u8)]) {
        for &(_, phys, orig) in saved {
            let _ = self.vm.mem.write_obj(orig, GuestAddress(phys));
        }
        self.vm.exit_patches.addrs.clear();
    }

    /// The vCPU stopped on a patched `in al, dx`, the original byte now back:
    /// let KVM finish the pending port read without running the guest
    /// (immediate_exit), then put RIP and RAX back so that the original
    /// instruction runs next.
    fn complete_exit_insn(&mut self) -> Result<(), String> {
        let regs = self.vm.vcpu().get_regs().map_err(|e| format!("KVM_GET_REGS: {e}"))?;
        self.vm.vcpu_mut().set_kvm_immediate_exit(1);
        let r = self.vm.vcpu_mut().run().map(|_| ()).err();
        self.vm.vcpu_mut().set_kvm_immediate_exit(0);
        match r {
            Some(e) if e.errno() == libc::EINTR => {}
            Some(e) => return Err(format!("completing the breakpoint's port read: {e}")),
            None => return Err("completing the breakpoint's port read: KVM_RUN ran the guest".into()),
        }
        self.vm
            .vcpu()
            .set_regs(&regs)
            .map_err(|e| format!("KVM_SET_REGS: {e}"))?;
        self.cache.set(None);
        Ok(())
    }

    /// Resume once: a single step, or until a debug exit or an
    /// exit-instruction breakpoint. None when the guest ended.
    fn resume(&mut self, single_step: bool) -> Result<Option<Stop>, String> {
        if self.ended.is_some() {
            return Err("the guest has ended".into());
        }
        if let (Some(d), Some(t)) = (self.deadline, self.vm.timeout()) {
            if single_step && std::time::Instant::now() >= d {
                self.ended = Some(Outcome::Timeout(t));
                return Ok(None);
            }
        }
        self.started = true;
        // Single steps never arm the debug registers: an execute breakpoint
        // at the current RIP would fire again before the instruction runs.
        let req = match (single_step, self.debug_registers()) {
            (true, _) => StopRequest::STEP,
            (false, Some((dr, dr7))) => StopRequest::breakpoints(dr, dr7),
            (false, None) => StopRequest {
                single_step: false,
                drs: None,
            },
        };
        let force = single_step && self.rearm_step;
        self.stop
            .set(self.vm.vcpu(), req, force)
            .map_err(|e| format!("KVM_SET_GUEST_DEBUG: {e}"))?;
        let patches = if single_step { Vec::new() } else { self.patch_in()? };
        let mode = if single_step { RunMode::Step } else { RunMode::UntilStop };
        let event = self.vm.run_until(mode);
        self.patch_out(&patches);
        self.take_exit_regs();
        match event {
            Event::Debug(arch) => {
                self.after_step(single_step)?;
                Ok(Some(Stop::Debug(arch)))
            }
            Event::ExitInsn(addr) => {
                self.complete_exit_insn()?;
                self.after_step(false)?;
                Ok(Some(Stop::ExitInsn(addr)))
            }
            Event::Ended(o) => {
                self.ended = Some(o);
                Ok(None)
            }
            Event::Interrupted => Err("interrupted (Ctrl-C)".into()),
        }
    }

    /// Keep TF out of ring 3's own RFLAGS: a step into `syscall` leaves TF in
    /// R11, and `sysretq` would hand it to the program, which would then take
    /// a #DB of its own.
    fn after_step(&mut self, stepped: bool) -> Result<(), String> {
        let (regs, sregs) = self.both()?;
        let cpl = (sregs.cs.selector & 3) as u8;
        let cpl_changed = self.step_cpl.is_some_and(|c| c != cpl);
        let tf_lost = StopControl::step_lost_tf(&self.last_insn, cpl_changed);
        self.rearm_step = !stepped || tf_lost;
        if let Some(prev) = self.step_cpl {
            if prev != cpl {
                let via = self.last_insn.split_whitespace().next().unwrap_or("").to_string();
                self.transition = Some((prev, cpl, via));
            }
        }
        if cpl == 0 && self.step_cpl == Some(3) && self.last_insn.starts_with("syscall") {
            self.tf_in_saved_rflags = true;
        }
        if cpl == 3 && self.tf_in_saved_rflags {
            let mut r = regs;
            engine::clear_user_tf(self.vm.vcpu(), &mut r).map_err(|e| format!("KVM_SET_REGS: {e}"))?;
            self.set_regs(&r)?;
            self.tf_in_saved_rflags = false;
            self.rearm_step = true;
        }
        self.step_cpl = Some(cpl);
        Ok(())
    }

    /// The one-line description of where the guest is now, with a marker
    /// if the privilege level changed since the last printed stop.
    pub fn stop_line(&mut self) -> Result<String, String> {
        let (regs, sregs) = self.both()?;
        let cpl = (sregs.cs.selector & 3) as u8;
        let insn = memory::disassemble_one(&self.vm.mem, sregs.cr3, regs.rip).unwrap_or_else(|| "(not mapped)".into());
        let mut line = format!("CPL {cpl}  {}  {insn}", self.sym(regs.rip));
        if let Some(prev) = self.last_cpl {
            if prev != cpl {
                let via = match self.transition.take() {
                    Some((_, to, via)) if to == cpl && !via.is_empty() => via,
                    _ => "an exception or interrupt".into(),
                };
                line += &format!("    [CPL {prev} → {cpl} via {via}]");
            }
        }
        self.last_cpl = Some(cpl);
        Ok(line)
    }

    fn at_breakpoint(&self, rip: u64) -> Option<u32> {
        self.bps
            .iter()
            .find(|b| b.watch.is_none() && b.addr == rip)
            .map(|b| b.id)
    }

    /// Step mode: a watchpoint whose value changed.
    fn watch_hit(&mut self) -> Option<u32> {
        let mut hit = None;
        let watched: Vec<(usize, u64, u8)> = self
            .bps
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.watch.map(|l| (i, b.addr, l)))
            .collect();
        for (i, addr, len) in watched {
            let v = self.read_watched(addr, len);
            if v != self.bps[i].last_value {
                self.bps[i].last_value = v;
                hit = hit.or(Some(self.bps[i].id));
            }
        }
        hit
    }

    fn check_can_step(&self) -> Result<(), String> {
        let sregs = self.sregs()?;
        if sregs.cs.selector & 3 == 3 {
            self.refuse_ring3_on_pvm("stepping in ring 3")?;
        }
        Ok(())
    }

    /// `stepi`: one instruction.
    pub fn step(&mut self) -> Result<StopReason, String> {
        self.deadline = None;
        self.check_can_step()?;
        self.last_insn_for_step()?;
        Ok(match self.resume(true)? {
            None => StopReason::Ended,
            Some(_) => StopReason::Step,
        })
    }

    /// Remember the instruction about to run, for the "via" of a CPL change.
    fn last_insn_for_step(&mut self) -> Result<(), String> {
        let (regs, sregs) = self.both()?;
        self.last_insn = memory::disassemble_one(&self.vm.mem, sregs.cr3, regs.rip).unwrap_or_default();
        let cpl = (sregs.cs.selector & 3) as u8;
        self.last_cpl.get_or_insert(cpl);
        self.step_cpl.get_or_insert(cpl);
        Ok(())
    }

    /// `continue`: run to the next breakpoint or watchpoint, or the end.
    pub fn cont(&mut self) -> Result<StopReason, String> {
        self.deadline = self.vm.timeout().map(|t| std::time::Instant::now() + t);
        // Leaving a breakpoint: step off it first, or DR0 would fire again at once.
        let rip = self.regs()?.rip;
        if self.started && self.at_breakpoint(rip).is_some() || self.tf_in_saved_rflags {
            if self.sregs()?.cs.selector & 3 == 3 {
                self.refuse_ring3_on_pvm("continuing from a ring-3 breakpoint")?;
            }
            self.last_insn_for_step()?;
            if self.resume(true)?.is_none() {
                return Ok(StopReason::Ended);
            }
            if let Some(id) = self.at_breakpoint(self.regs()?.rip) {
                return Ok(StopReason::Breakpoint(id));
            }
        }
        // A `syscall` stepped into leaves TF in the saved RFLAGS: step on to
        // ring 3 before running freely (breakpoints are still honoured).
        while self.tf_in_saved_rflags {
            self.last_insn_for_step()?;
            if self.resume(true)?.is_none() {
                return Ok(StopReason::Ended);
            }
            if let Some(id) = self.at_breakpoint(self.regs()?.rip) {
                return Ok(StopReason::Breakpoint(id));
            }
        }
        if self.continue_steps() {
            for _ in 0..self.step_limit {
                self.last_insn_for_step()?;
                if self.resume(true)?.is_none() {
                    return Ok(StopReason::Ended);
                }
                self.silent_steps += 1;
                if let Some(id) = self.at_breakpoint(self.regs()?.rip) {
                    return Ok(StopReason::Breakpoint(id));
                }
                if let Some(id) = self.watch_hit() {
                    return Ok(StopReason::Watchpoint(id));
                }
            }
            return Ok(StopReason::StepLimit(self.step_limit));
        }
        self.last_insn_for_step()?;
        match self.resume(false)? {
            None => Ok(StopReason::Ended),
            Some(Stop::ExitInsn(addr)) => Ok(match self.at_breakpoint(addr) {
                Some(id) => StopReason::Breakpoint(id),
                None => StopReason::Step,
            }),
            Some(Stop::Debug(arch)) => {
                // DR6 says which debug register fired.
                let which = engine::dr6_hit(arch.dr6);
                let bp = which
                    .and_then(|i| self.dr_bps().nth(i))
                    .map(|b| (b.id, b.watch.is_some()));
                Ok(match bp {
                    Some((id, true)) => StopReason::Watchpoint(id),
                    Some((id, false)) => StopReason::Breakpoint(id),
                    None => match self.at_breakpoint(self.regs()?.rip) {
                        Some(id) => StopReason::Breakpoint(id),
                        None => StopReason::Step,
                    },
                })
            }
        }
    }

    /// `nexti`: like stepi, but a `call` runs to the instruction after it.
    pub fn next_over_calls(&mut self) -> Result<StopReason, String> {
        self.deadline = self.vm.timeout().map(|t| std::time::Instant::now() + t);
        let regs = self.regs()?;
        let sregs = self.sregs()?;
        let Some((insn, len)) = memory::decode_one(&self.vm.mem, sregs.cr3, regs.rip) else {
            return self.step();
        };
        if !insn.starts_with("call") {
            return self.step();
        }
        self.check_can_step()?;
        let target = regs.rip + len;
        let depth_rsp = regs.rsp;
        for _ in 0..self.step_limit {
            self.last_insn_for_step()?;
            if self.resume(true)?.is_none() {
                return Ok(StopReason::Ended);
            }
            let r = self.regs()?;
            if r.rip == target && r.rsp >= depth_rsp {
                return Ok(StopReason::Step);
            }
            if let Some(id) = self.at_breakpoint(r.rip) {
                return Ok(StopReason::Breakpoint(id));
            }
        }
        Ok(StopReason::StepLimit(self.step_limit))
    }
}

/// What ended a resume.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// A debug exit: a single step or a debug register.
    Debug(kvm_bindings::kvm_debug_exit_arch),
    /// An exit-instruction breakpoint at this address.
    ExitInsn(u64),
}

/// `base + off`, refused when it passes the end of the address space.
fn add_offset(spec: &str, base: u64, off: u64) -> Result<u64, String> {
    base.checked_add(off)
        .ok_or_else(|| format!("{spec}: {base:#x} + {off:#x} is past the end of the 64-bit address space"))
}

/// A number, or a symbol of the program or the kernel — the program's
/// first: both it and the kernel have a `_start`.
pub fn resolve_symbol(name: &str, program: &Symbols, kernel: &Symbols) -> Result<u64, String> {
    if let Some(v) = parse_num(name) {
        return Ok(v);
    }
    program
        .address_of(name)
        .or_else(|| kernel.address_of(name))
        .ok_or_else(|| format!("no symbol '{name}' in the kernel or the program"))
}

/// `0x1f`, `31`.
pub fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}
