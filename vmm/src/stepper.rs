//! Watching privilege transitions from outside: a debug-register breakpoint
//! (DR0, through KVM_SET_GUEST_DEBUG) stops the guest at an address, then
//! KVM_GUESTDBG_SINGLESTEP stops it after every instruction. Each stop prints
//! CPL, RIP with its symbol and the instruction (iced-x86), and marks where
//! the privilege level changed.

use crate::msr;
use crate::symbols::Symbols;
use crate::tracer::{dr7_exec, guest_debug, let_tf_through_syscall, KvmResult, Tracer};
use kvm_bindings::{kvm_guest_debug, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP};
use kvm_ioctls::VcpuFd;
use vm_memory::GuestMemoryMmap;
use vmm_abi::layout::KERNEL_BASE;

pub struct Stepper {
    pub break_at: u64,
    /// Reach `break_at` by single-stepping silently instead of with DR0
    /// (for KVMs whose debug-register breakpoints do not exit).
    pub by_stepping: bool,
    /// Silent steps taken before the breakpoint address was reached.
    pub steps_to_break: u64,
    pub steps: u64,
    taken: u64,
    stepping: bool,
    last_cpl: Option<u8>,
    last_insn: String,
    /// Instructions from a `syscall` (or `int`) to the first ring-3 instruction after it.
    syscall_started: Option<(String, u64)>,
    /// The trace is over; stepping on silently until ring 3 to clear TF.
    finishing: bool,
    pub round_trips: Vec<(String, u64)>,
    pub user_symbols: Symbols,
    pub log: Vec<String>,
}

fn debug(control: u32, dr0: u64, dr7: u64) -> kvm_guest_debug {
    guest_debug(control, [dr0, 0, 0, 0], dr7)
}

impl Stepper {
    pub fn new(break_at: u64, steps: u64, user_symbols: Symbols) -> Stepper {
        Stepper {
            break_at,
            by_stepping: false,
            steps_to_break: 0,
            steps,
            taken: 0,
            stepping: false,
            last_cpl: None,
            last_insn: String::new(),
            syscall_started: None,
            finishing: false,
            round_trips: Vec::new(),
            user_symbols,
            log: Vec::new(),
        }
    }

    /// Arm the breakpoint before the first KVM_RUN.
    fn arm_impl(&self, vcpu: &VcpuFd) -> KvmResult<()> {
        let_tf_through_syscall(vcpu)?;
        if self.by_stepping {
            return vcpu.set_guest_debug(&debug(KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP, 0, 0));
        }
        vcpu.set_guest_debug(&debug(
            KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP,
            self.break_at,
            dr7_exec(1),
        ))
    }

    fn describe(&self, kernel: &Symbols, addr: u64) -> String {
        if addr >= KERNEL_BASE {
            kernel.describe(addr)
        } else {
            self.user_symbols.describe(addr)
        }
    }

    /// Handle a debug exit: print this stop, and choose how to continue.
    fn on_debug_exit_impl(
        &mut self,
        vcpu: &VcpuFd,
        mem: &GuestMemoryMmap,
        kernel: &Symbols,
    ) -> Result<(), kvm_ioctls::Error> {
        let regs = vcpu.get_regs()?;
        if !self.stepping && self.by_stepping && regs.rip != self.break_at {
            self.steps_to_break += 1;
            // Re-arm: KVM sets TF again on this call, and an iretq or sysretq
            // that loaded RFLAGS without TF would otherwise end the stepping.
            return vcpu.set_guest_debug(&debug(KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP, 0, 0));
        }
        let sregs = vcpu.get_sregs()?;
        let cpl = (sregs.cs.selector & 3) as u8;
        if self.finishing {
            if cpl != 3 {
                return Ok(());
            }
            // Back in ring 3: TF came back from the saved RFLAGS (R11 or the
            // iretq frame); clear it, or the guest would take the #DB itself.
            let mut r = regs;
            r.rflags &= !msr::RFLAGS_TF;
            vcpu.set_regs(&r)?;
            return vcpu.set_guest_debug(&debug(0, 0, 0));
        }
        let insn =
            crate::debug::memory::disassemble_one(mem, sregs.cr3, regs.rip).unwrap_or_else(|| "(not mapped)".into());
        if let Some(prev) = self.last_cpl {
            if prev != cpl {
                let via = self.last_insn.split_whitespace().next().unwrap_or("?").to_string();
                self.log.push(format!("        CPL {prev} → {cpl} via {via}"));
            }
        }
        let how = self.last_insn.split_whitespace().next().unwrap_or("");
        if self.stepping && (how == "syscall" || self.last_insn.starts_with("int ")) && cpl == 0 {
            // `taken - 1` was the syscall/int instruction itself.
            self.syscall_started = Some((self.last_insn.clone(), self.taken - 1));
        }
        if cpl == 3 && self.last_cpl == Some(0) {
            if let Some((what, start)) = self.syscall_started.take() {
                self.round_trips.push((what, self.taken - start));
            }
        }
        self.log.push(format!(
            "step {:>3}: CPL {cpl} CS {:#06x} SS {:#06x} RIP {:<44} {insn}",
            self.taken,
            sregs.cs.selector,
            sregs.ss.selector,
            self.describe(kernel, regs.rip)
        ));
        self.last_cpl = Some(cpl);
        self.last_insn = insn;
        self.stepping = true;
        self.taken += 1;
        if self.taken > self.steps {
            if cpl == 3 {
                let mut r = regs;
                r.rflags &= !msr::RFLAGS_TF;
                vcpu.set_regs(&r)?;
                return vcpu.set_guest_debug(&debug(0, 0, 0));
            }
            self.finishing = true;
            vcpu.set_guest_debug(&debug(KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP, 0, 0))
        } else {
            vcpu.set_guest_debug(&debug(KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP, 0, 0))
        }
    }
}

impl Tracer for Stepper {
    fn arm(&mut self, vcpu: &VcpuFd) -> KvmResult<()> {
        self.arm_impl(vcpu)
    }

    fn on_debug_exit(&mut self, vcpu: &VcpuFd, mem: &GuestMemoryMmap, kernel: &Symbols) -> KvmResult<()> {
        self.on_debug_exit_impl(vcpu, mem, kernel)
    }

    fn report(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        if self.by_stepping {
            out.push(format!(
                "vmm: {} instructions stepped silently before {:#x}",
                self.steps_to_break, self.break_at
            ));
        }
        out.append(&mut self.log);
        for (what, n) in &self.round_trips {
            out.push(format!(
                "vmm: round trip: {n} instructions from `{what}` through `sysretq`/`iretq`, counting both"
            ));
        }
        out
    }
}
