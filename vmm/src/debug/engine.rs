//! The one layer under every debug exit: the debugger, `--break-at`,
//! `--strace`, `--funcgraph` and the GDB stub all ask KVM for stops here.
//!
//! - [`BreakMethod`]: how a breakpoint stops the guest, parsed once by clap
//!   (`--break-by`), or chosen per address from what this host measurably
//!   does ([`probe_dr_breakpoints`]).
//! - [`StopControl`]: the KVM_SET_GUEST_DEBUG request, issued only when it
//!   changes; DR7 built once ([`dr7`]) with typed values; DR6 read typed
//!   ([`dr6_hit`]).
//! - [`ExitPatches`]: exit-instruction breakpoints — the first byte of the
//!   target replaced by `in al, dx` (0xEC), which exits to the VMM from ring
//!   0 on every KVM flavor.
//! - [`clear_user_tf`]: TF must not reach ring 3's own RFLAGS.
//! - [`Symbolizer`]: an address with its kernel or program symbol.

use crate::arch::msr;
use crate::introspect::symbols::Symbols;
use crate::trace::tracer::KvmResult;
use kvm_bindings::{kvm_guest_debug, kvm_guest_debug_arch, kvm_regs};
use kvm_ioctls::VcpuFd;
use std::os::fd::RawFd;
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

    /// For a trace point that stops many times (strace, funcgraph,
    /// `--break-at`): DR where it exits, otherwise stepping.
    pub fn for_tracing(requested: Option<BreakMethod>, dr_works: bool) -> BreakMethod {
        match requested {
            Some(m) => m,
            None if dr_works => BreakMethod::DebugRegister,
            None => BreakMethod::Step,
        }
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
            control |= kvm_bindings::KVM_GUESTDBG_SINGLESTEP | crate::trace::tracer::block_irq();
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
pub static STEP_ALWAYS_REARM: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

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
        STEP_ALWAYS_REARM.load(std::sync::atomic::Ordering::Relaxed) || Self::step_needs_rearm(last_insn, cpl_changed)
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

    /// Valid right after an exit, before anyone sets registers.
    pub fn read(self, vcpu: &VcpuFd) -> KvmResult<(kvm_regs, kvm_bindings::kvm_sregs)> {
        if self.sync {
            let s = vcpu.sync_regs();
            return Ok((s.regs, s.sregs));
        }
        Ok((vcpu.get_regs()?, vcpu.get_sregs()?))
    }
}

/// Clear TF in RFLAGS: back in ring 3 after tracing, TF from the saved user
/// RFLAGS (R11 or the iretq frame) would make the program take a #DB itself.
pub fn clear_user_tf(vcpu: &VcpuFd, regs: &mut kvm_regs) -> KvmResult<()> {
    if regs.rflags & msr::RFLAGS_TF != 0 {
        regs.rflags &= !msr::RFLAGS_TF;
        vcpu.set_regs(regs)?;
    }
    Ok(())
}

/// `in al, dx`: one byte, exits to the VMM from ring 0 on every KVM.
pub const EXIT_INSN: u8 = 0xec;

/// The addresses currently patched with [`EXIT_INSN`]; the run loop (vm.rs)
/// asks [`ExitPatches::hit`] on an `in` exit whether RIP is one of them.
pub struct ExitPatches {
    /// The vCPU's fd, for KVM_GET_REGS while the run loop holds the exit.
    vcpu_fd: RawFd,
    pub addrs: Vec<u64>,
}

vmm_sys_util::ioctl_ior_nr!(KVM_GET_REGS, kvm_bindings::KVMIO, 0x81, kvm_regs);

impl ExitPatches {
    pub fn new(vcpu_fd: RawFd) -> ExitPatches {
        ExitPatches {
            vcpu_fd,
            addrs: Vec::new(),
        }
    }

    /// The patched address the vCPU stopped at, if an `in` exit is one.
    pub fn hit(&self) -> Option<u64> {
        if self.addrs.is_empty() {
            return None;
        }
        let mut regs = kvm_regs::default();
        // SAFETY: KVM_GET_REGS writes one kvm_regs to the pointer; the fd is the live vCPU's.
        let r =
            unsafe { vmm_sys_util::ioctl::ioctl_with_mut_ref(&RawFdHolder(self.vcpu_fd), KVM_GET_REGS(), &mut regs) };
        (r == 0 && self.addrs.contains(&regs.rip)).then_some(regs.rip)
    }
}

struct RawFdHolder(RawFd);
impl std::os::fd::AsRawFd for RawFdHolder {
    fn as_raw_fd(&self) -> RawFd {
        self.0
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

/// Does a DR0 execute breakpoint exit on this host's KVM? Measured once per
/// kernel release and /dev/kvm (cached under $XDG_CACHE_HOME/vmm or /tmp):
/// a throw-away VM with the built-in kernel, DR0 at its first instruction
/// and single-stepping armed: DR0 exits before the instruction runs (DR6.B0,
/// RIP unchanged); a KVM that ignores DR0 steps past it.
pub fn probe_dr_breakpoints(kvm_device: &std::path::Path) -> Result<bool, String> {
    let cache = cache_file(kvm_device);
    if let Some(v) = cache.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
        match v.trim() {
            "yes" => return Ok(true),
            "no" => return Ok(false),
            _ => {}
        }
    }
    let works = measure_dr_breakpoints(kvm_device)?;
    if let Some(p) = cache {
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(&p, if works { "yes\n" } else { "no\n" });
    }
    Ok(works)
}

fn cache_file(kvm_device: &std::path::Path) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(kvm_device).ok()?;
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let dir = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("vmm");
    let flavor = crate::vstate::kvm_info::detect_flavor(std::path::Path::new("/sys/module"));
    let key = format!("{}-{:x}-{:?}", release.trim(), meta.rdev(), flavor).replace(['/', ' '], "_");
    Some(dir.join(format!("dr-breakpoints-{key}")))
}

/// The measurement itself (a few milliseconds).
pub fn measure_dr_breakpoints(kvm_device: &std::path::Path) -> Result<bool, String> {
    let cfg = crate::vstate::vm::VmConfig {
        kvm_device: kvm_device.into(),
        mem_mib: 16,
        timeout: None,
        cmdline: "quiet".into(),
        init: None,
        forward_stdin: false,
        output: Box::new(std::io::sink()),
        seccomp: false,
        // No interrupt controller: the probe runs one instruction.
        lapic: false,
        cpus: 1,
    };
    let vm = crate::vstate::vm::Vm::new(
        std::path::Path::new(crate::boot::guest_image::KERNEL_PATH),
        std::borrow::Cow::Borrowed(crate::boot::guest_image::KERNEL),
        cfg,
    )
    .map_err(|e| format!("DR probe VM: {e}"))?;
    let mut vcpu_owner = vm;
    let entry = vcpu_owner.vcpu().get_regs().map_err(|e| e.to_string())?.rip;
    let req = StopRequest {
        single_step: true,
        drs: Some(([entry, 0, 0, 0], dr7_exec(1))),
    };
    vcpu_owner
        .vcpu()
        .set_guest_debug(&req.to_kvm())
        .map_err(|e| format!("KVM_SET_GUEST_DEBUG: {e}"))?;
    match vcpu_owner.vcpu_mut().run() {
        Ok(kvm_ioctls::VcpuExit::Debug(arch)) => {
            let rip = vcpu_owner.vcpu().get_regs().map_err(|e| e.to_string())?.rip;
            Ok(dr6_hit(arch.dr6) == Some(0) || rip == entry)
        }
        Ok(other) => Err(format!("DR probe: unexpected exit {other:?}")),
        Err(e) => Err(format!("DR probe: KVM_RUN: {e}")),
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
