//! Measuring what this host's KVM does with a debug-register breakpoint,
//! once per kernel release and device (the default `--break-by` follows).

use super::{dr6_hit, dr7_exec, StopRequest};
use crate::debug::error::DebugError;

/// Does a DR0 execute breakpoint exit on this host's KVM? Measured once per
/// kernel release and /dev/kvm (cached under $XDG_CACHE_HOME/vmm or /tmp):
/// a throw-away VM with the built-in kernel, DR0 at its first instruction
/// and single-stepping armed: DR0 exits before the instruction runs (DR6.B0,
/// RIP unchanged); a KVM that ignores DR0 steps past it.
pub fn probe_dr_breakpoints(kvm_device: &std::path::Path) -> Result<bool, DebugError> {
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
pub fn measure_dr_breakpoints(kvm_device: &std::path::Path) -> Result<bool, DebugError> {
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
    .map_err(|e| DebugError::ProbeVm(Box::new(e)))?;
    let mut vcpu_owner = vm;
    let entry = vcpu_owner
        .vcpu()
        .get_regs()
        .map_err(DebugError::kvm("KVM_GET_REGS"))?
        .rip;
    let req = StopRequest {
        single_step: true,
        drs: Some(([entry, 0, 0, 0], dr7_exec(1))),
    };
    vcpu_owner
        .vcpu()
        .set_guest_debug(&req.to_kvm())
        .map_err(DebugError::kvm("KVM_SET_GUEST_DEBUG"))?;
    match vcpu_owner.vcpu_mut().run() {
        Ok(kvm_ioctls::VcpuExit::Debug(arch)) => {
            let rip = vcpu_owner
                .vcpu()
                .get_regs()
                .map_err(DebugError::kvm("KVM_GET_REGS"))?
                .rip;
            Ok(dr6_hit(arch.dr6) == Some(0) || rip == entry)
        }
        Ok(other) => Err(DebugError::ProbeExit(format!("{other:?}"))),
        Err(e) => Err(DebugError::ProbeRun(e)),
    }
}
