//! The one layer under every debug exit: the debugger, `--break-at`,
//! `--strace`, `--funcgraph` and the GDB stub all ask KVM for stops here.
//!
//! - [`Runner`] (runner.rs): the one way to resume the guest — a single
//!   step, or a run to the next breakpoint — and the registers at the stop.
//! - [`StepTracker`] (track.rs): the privilege changes between stops and the
//!   instruction that made each, whether a step must be requested again,
//!   and TF that must not reach ring 3's own RFLAGS.
//! - [`BreakMethod`]: how a breakpoint stops the guest, parsed once by clap
//!   (`--break-by`), or chosen per address from what this host measurably
//!   does ([`probe_dr_breakpoints`], probe.rs).
//! - [`StopControl`]: the KVM_SET_GUEST_DEBUG request, issued only when it
//!   changes; DR7 built once ([`dr7`]) with typed values; DR6 read typed
//!   ([`dr6_hit`]).
//! - [`ExitPatches`] (patch.rs): exit-instruction breakpoints — the first
//!   byte of the target replaced by `in al, dx` (0xEC), which exits to the
//!   VMM from ring 0 on every KVM flavor.
//! - [`Symbolizer`]: an address with its kernel or program symbol.

pub mod patch;
mod probe;
mod runner;
mod track;

pub use patch::{ExitPatches, EXIT_INSN};
pub use probe::{measure_dr_breakpoints, probe_dr_breakpoints};
pub use runner::{Resume, Runner, Stop};
pub use track::{mnemonic, AfterStop, StepTracker, Transition};

use crate::arch::msr;
use crate::introspect::symbols::Symbols;
use kvm_bindings::{kvm_guest_debug, kvm_guest_debug_arch, Msrs};
use kvm_ioctls::VcpuFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use vmm_abi::layout::KERNEL_BASE;
use x86_64::registers::debug::{
    BreakpointCondition, BreakpointSize, DebugAddressRegisterNumber, Dr6Flags, Dr7Flags, Dr7Value,
};

/// How a breakpoint stops the guest (`--break-by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BreakMethod {
    /// Debug registers DR0–DR3 (KVM_GUESTDBG_USE_HW_BP).
    #[value(name = "dr0", alias = "debug-register")]
    DebugRegister,
    /// Single-step every instruction until RIP matches (any KVM; slow).
    #[value(name = "step")]
    Step,
    /// Patch the target's first byte with `in al, dx` (0xEC): an I/O exit
    /// the VMM always sees. Ring-0 addresses only (`in` from ring 3 is #GP).
    #[value(name = "exit-insn", alias = "patch")]
    ExitInsn,
}

impl BreakMethod {
    /// As `break` reports it.
    pub fn describe(self) -> &'static str {
        match self {
            BreakMethod::DebugRegister => "debug register",
            BreakMethod::Step => "single-stepping",
            BreakMethod::ExitInsn => "exit-instruction patch",
        }
    }

    /// The method for an execute breakpoint at `addr`: the one asked for, or
    /// what works on this host — DR breakpoints where they exit, otherwise an
    /// exit-instruction patch in the kernel and stepping in ring 3.
    pub fn for_address(requested: Option<BreakMethod>, dr_works: bool, addr: u64) -> BreakMethod {
        match requested {
            Some(m) => m,
            None if dr_works => BreakMethod::DebugRegister,
            None if addr >= KERNEL_BASE => BreakMethod::ExitInsn,
            None => BreakMethod::Step,
        }
    }
}

/// Where trace points stop many times (`--strace`, `--funcgraph`,
/// `--break-at`): as [`BreakMethod::for_address`], except for points every
/// interrupt passes through (strace's trap entry and exit) where debug
/// registers do not exit: patched, each of their stops costs several exits,
/// and where exits are slow (the KVM box, measured: 6 system calls in 60 s on
/// a loaded host) the stops of one timer tick outlast the tick and the guest
/// makes no progress. Single steps hold interrupts off, so those are stepped.
pub fn for_trace_points(
    requested: Option<BreakMethod>,
    dr_works: bool,
    addr: u64,
    on_interrupt_path: bool,
) -> BreakMethod {
    match BreakMethod::for_address(requested, dr_works, addr) {
        BreakMethod::ExitInsn if requested.is_none() && on_interrupt_path => BreakMethod::Step,
        m => m,
    }
}

/// What a debug register watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrSlot {
    Execute,
    /// Data writes of 1, 2, 4 or 8 bytes.
    Write(u8),
}

/// DR7 enabling `slots` in DR0.. (global enable, condition and size each),
/// plus GE and the always-one bit 10 (as QEMU's gdbstub).
pub fn dr7(slots: &[DrSlot]) -> u64 {
    let mut v = Dr7Value::from(Dr7Flags::GLOBAL_EXACT_BREAKPOINT_ENABLE);
    for (i, slot) in slots.iter().take(4).enumerate() {
        let n = DebugAddressRegisterNumber::new(i as u8).expect("0..4");
        v.insert_flags(Dr7Flags::global_breakpoint_enable(n));
        let (cond, size) = match slot {
            DrSlot::Execute => (BreakpointCondition::InstructionExecution, BreakpointSize::Length1B),
            DrSlot::Write(len) => (
                BreakpointCondition::DataWrites,
                BreakpointSize::new(*len as usize).unwrap_or(BreakpointSize::Length1B),
            ),
        };
        v.set_condition(n, cond);
        v.set_size(n, size);
    }
    v.bits() | 1 << 10
}

/// DR7 for `n` execute breakpoints.
pub fn dr7_exec(n: usize) -> u64 {
    dr7(&vec![DrSlot::Execute; n.min(4)])
}

/// Which debug register fired, from a debug exit's DR6.
pub fn dr6_hit(dr6: u64) -> Option<usize> {
    let f = Dr6Flags::from_bits_truncate(dr6);
    (0..4u8)
        .find(|&i| f.contains(Dr6Flags::trap(DebugAddressRegisterNumber::new(i).expect("0..4"))))
        .map(usize::from)
}

/// A stop request: single-step or not, and the debug registers to arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct StopRequest {
    pub single_step: bool,
    /// DR0–DR3 and DR7; None: no hardware breakpoints.
    pub drs: Option<([u64; 4], u64)>,
}

impl StopRequest {
    pub const STEP: StopRequest = StopRequest {
        single_step: true,
        drs: None,
    };
    pub const NONE: StopRequest = StopRequest {
        single_step: false,
        drs: None,
    };

    pub fn breakpoints(dr: [u64; 4], dr7: u64) -> StopRequest {
        StopRequest {
            single_step: false,
            drs: Some((dr, dr7)),
        }
    }

    fn to_kvm(self) -> kvm_guest_debug {
        let mut control = 0;
        if self.single_step || self.drs.is_some() {
            control |= kvm_bindings::KVM_GUESTDBG_ENABLE;
        }
        if self.single_step {
            control |= kvm_bindings::KVM_GUESTDBG_SINGLESTEP | block_irq();
        }
        let mut arch = kvm_guest_debug_arch::default();
        if let Some((dr, dr7)) = self.drs {
            control |= kvm_bindings::KVM_GUESTDBG_USE_HW_BP;
            arch.debugreg[..4].copy_from_slice(&dr);
            arch.debugreg[7] = dr7;
        }
        kvm_guest_debug { control, pad: 0, arch }
    }
}

/// Request every single step again (set by `Vm::new` when the VM has a LAPIC).
pub static STEP_ALWAYS_REARM: AtomicBool = AtomicBool::new(false);

/// KVM_GUESTDBG_BLOCKIRQ if this KVM offers it (KVM_CAP_SET_GUEST_DEBUG2),
/// set by `Vm::new`. Single steps hold interrupts off with it (as QEMU's
/// gdbstub does): the LAPIC timer runs in host time, and stepping the tick
/// handler one exit per instruction takes longer than a tick, so without it
/// a stepped guest never gets past the next interrupt — and each step would
/// land in the handler.
pub static BLOCK_IRQ: AtomicU32 = AtomicU32::new(0);

/// The BLOCKIRQ bit to add to a single-step request (0 if KVM lacks it).
pub fn block_irq() -> u32 {
    BLOCK_IRQ.load(Ordering::Relaxed)
}

/// A KVM ioctl's result.
pub type KvmResult<T> = Result<T, kvm_ioctls::Error>;

/// KVM single-steps with RFLAGS.TF, and `syscall` clears the SFMASK bits:
/// with TF in SFMASK, a step over `syscall` would run the whole kernel path
/// unseen. Debugging leaves TF out of SFMASK so steps follow the CPU inside.
pub fn let_tf_through_syscall(vcpu: &VcpuFd) -> KvmResult<()> {
    let mask = msr::BOOT_SFMASK & !msr::RFLAGS_TF;
    let entries = [kvm_bindings::kvm_msr_entry {
        index: msr::MSR_SYSCALL_MASK,
        data: mask,
        ..Default::default()
    }];
    vcpu.set_msrs(&Msrs::from_entries(&entries).expect("one MSR"))
        .map(|_| ())
}

/// KVM_SET_GUEST_DEBUG, issued only when the request changes — or when a
/// step may have lost TF (see [`StopControl::step_needs_rearm`]).
#[derive(Default)]
pub struct StopControl {
    last: Option<StopRequest>,
    /// KVM_SET_GUEST_DEBUG calls made, and skipped as unchanged.
    pub arms: u64,
    pub skipped: u64,
}

impl StopControl {
    pub fn set(&mut self, vcpu: &VcpuFd, req: StopRequest, force: bool) -> KvmResult<()> {
        if !force && self.last == Some(req) {
            self.skipped += 1;
            return Ok(());
        }
        vcpu.set_guest_debug(&req.to_kvm())?;
        self.last = Some(req);
        self.arms += 1;
        Ok(())
    }

    /// KVM single-steps with RFLAGS.TF, which it sets when the request is
    /// made: an instruction that loads RFLAGS (iretq, sysretq, popf) or an
    /// event delivered to the guest can drop it, and the request must be
    /// made again. `last_insn` is the instruction just stepped; `cpl_changed`
    /// catches exceptions and interrupts.
    pub fn step_needs_rearm(last_insn: &str, cpl_changed: bool) -> bool {
        let m = last_insn.split_whitespace().next().unwrap_or("");
        cpl_changed || m.is_empty() || m.starts_with("iret") || m.starts_with("sysret") || m.starts_with("popf")
    }

    /// After a single step: whether the next step must be requested again.
    /// KVM hides TF from KVM_GET_REGS while it single-steps, so what the
    /// stepped instruction was decides (see `step_needs_rearm`) — unless the
    /// VM has an interrupt controller: then an interrupt window or a `hlt`
    /// woken by the timer can drop TF after any instruction (measured in the
    /// KVM box: a stepped boot ran away past its breakpoint), and every step
    /// is requested again, one ioctl more per step.
    pub fn step_lost_tf(last_insn: &str, cpl_changed: bool) -> bool {
        STEP_ALWAYS_REARM.load(Ordering::Relaxed) || Self::step_needs_rearm(last_insn, cpl_changed)
    }

    /// Forget the last request (someone else called KVM_SET_GUEST_DEBUG).
    pub fn invalidate(&mut self) {
        self.last = None;
    }
}

/// Registers at a debug exit: from kvm_run when KVM_CAP_SYNC_REGS is on
/// (no ioctl), otherwise KVM_GET_REGS and KVM_GET_SREGS.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExitRegs {
    pub sync: bool,
}

impl ExitRegs {
    /// Ask KVM to copy regs and sregs into kvm_run at every exit, if it can.
    pub fn enable(vcpu: &mut VcpuFd, kvm_device: &std::path::Path) -> ExitRegs {
        let want = u64::from(kvm_bindings::KVM_SYNC_X86_REGS | kvm_bindings::KVM_SYNC_X86_SREGS);
        let sync = crate::vstate::kvm_info::open(kvm_device)
            .map(|k| k.check_extension_int(kvm_ioctls::Cap::SyncRegs) as u64 & want == want)
            .unwrap_or(false);
        if sync {
            vcpu.set_sync_valid_reg(kvm_ioctls::SyncReg::Register);
            vcpu.set_sync_valid_reg(kvm_ioctls::SyncReg::SystemRegister);
        }
        ExitRegs { sync }
    }
}

/// Addresses with their symbols: the kernel's in the kernel half, the init
/// program's below.
pub struct Symbolizer<'a> {
    pub kernel: &'a Symbols,
    pub user: &'a Symbols,
}

impl Symbolizer<'_> {
    pub fn describe(&self, addr: u64) -> String {
        if addr >= KERNEL_BASE {
            self.kernel.describe(addr)
        } else {
            self.user.describe(addr)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dr7_bits() {
        assert_eq!(dr7_exec(1), 0x602);
        assert_eq!(dr7_exec(4), 0x6aa);
        // DR1 an 8-byte write watchpoint: R/W1 = 01, LEN1 = 10.
        assert_eq!(dr7(&[DrSlot::Execute, DrSlot::Write(8)]), 0x60a | (0b1001 << 20));
    }

    #[test]
    fn dr6_which() {
        assert_eq!(dr6_hit(0xffff0ff1), Some(0));
        assert_eq!(dr6_hit(0xffff4ff0), None);
        assert_eq!(dr6_hit(1 << 2), Some(2));
    }

    #[test]
    fn interrupt_path_trace_points_are_stepped_where_dr_does_not_exit() {
        let k = KERNEL_BASE + 0x1000;
        assert_eq!(for_trace_points(None, false, k, true), BreakMethod::Step);
        assert_eq!(for_trace_points(None, false, k, false), BreakMethod::ExitInsn);
        assert_eq!(for_trace_points(None, true, k, true), BreakMethod::DebugRegister);
        let asked = Some(BreakMethod::ExitInsn);
        assert_eq!(for_trace_points(asked, false, k, true), BreakMethod::ExitInsn);
    }

    #[test]
    fn automatic_method() {
        let k = KERNEL_BASE + 0x1000;
        assert_eq!(BreakMethod::for_address(None, true, k), BreakMethod::DebugRegister);
        assert_eq!(BreakMethod::for_address(None, false, k), BreakMethod::ExitInsn);
        assert_eq!(BreakMethod::for_address(None, false, 0x401000), BreakMethod::Step);
        assert_eq!(
            BreakMethod::for_address(Some(BreakMethod::Step), true, k),
            BreakMethod::Step
        );
    }
}
