//! What this host's /dev/kvm is, and what works on it.
//!
//! Hardware KVM (kvm_intel / kvm_amd) runs the guest on the CPU's own
//! virtualization, so every ring transition behaves as on bare metal. PVM
//! (kvm_pvm, "pagetable-based virtual machine") runs guests without VMX/SVM,
//! which changes how ring transitions reach the guest kernel; the table below
//! records what was measured on a PVM host.

use crate::error::{Error, Result};
use kvm_ioctls::{Cap, Kvm};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// kvm_pvm: no hardware virtualization extensions.
    Pvm,
    /// kvm_amd: AMD-V (SVM).
    HardwareSvm,
    /// kvm_intel: Intel VT-x (VMX).
    HardwareVmx,
    /// /dev/kvm works but no known vendor module is loaded.
    Unknown,
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Pvm => "PVM (kvm_pvm)",
            Flavor::HardwareSvm => "hardware (kvm_amd, AMD SVM)",
            Flavor::HardwareVmx => "hardware (kvm_intel, Intel VMX)",
            Flavor::Unknown => "unknown (no kvm_intel, kvm_amd or kvm_pvm module)",
        }
    }

    pub fn is_pvm(self) -> bool {
        self == Flavor::Pvm
    }

    pub fn is_hardware(self) -> bool {
        matches!(self, Flavor::HardwareSvm | Flavor::HardwareVmx)
    }
}

/// Detect the flavor from the loaded modules under `sys_module`
/// (normally /sys/module).
pub fn detect_flavor(sys_module: &Path) -> Flavor {
    let has = |m: &str| sys_module.join(m).exists();
    if has("kvm_pvm") {
        Flavor::Pvm
    } else if has("kvm_amd") {
        Flavor::HardwareSvm
    } else if has("kvm_intel") {
        Flavor::HardwareVmx
    } else {
        Flavor::Unknown
    }
}

/// One row of the capability table.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Capability {
    pub name: &'static str,
    pub works: bool,
    pub note: &'static str,
}

/// What works for this flavor: measured on PVM, architectural on hardware.
pub fn capabilities(flavor: Flavor) -> Vec<Capability> {
    let hw = !flavor.is_pvm();
    let row = |name, works, note| Capability { name, works, note };
    vec![
        row(
            "syscall from ring 3 reaches ring 0",
            hw,
            if hw {
                "LSTAR entered at CPL 0"
            } else {
                "arrives as #PF at LSTAR still in ring 3; the kernel completes it"
            },
        ),
        row(
            "int 0x80 from ring 3",
            hw,
            if hw {
                "DPL-3 gate"
            } else {
                "raises #UD; the kernel completes it"
            },
        ),
        row("exceptions from ring 3 via IDT + TSS.RSP0", true, ""),
        row("iretq / sysretq to ring 3", true, ""),
        row("single-step in ring 0", true, "KVM_GUESTDBG_SINGLESTEP"),
        row("single-step in ring 3", hw, if hw { "" } else { "never exits on PVM" }),
        row("debug-register breakpoints in ring 0", true, "DR0 execute breakpoints"),
        row(
            "debug-register breakpoints in ring 3",
            hw,
            if hw { "" } else { "never exit on PVM" },
        ),
        row(
            "software breakpoints (int3) in ring 0",
            hw,
            if hw {
                "KVM_GUESTDBG_USE_SW_BP"
            } else {
                "int3 in ring 0 kills the vCPU on PVM"
            },
        ),
        row(
            "rdtscp / cmpxchg16b / vmcall in ring 0",
            hw,
            if hw { "" } else { "kill the vCPU on PVM" },
        ),
        row(
            "ring-0 speed",
            hw,
            if hw {
                "native"
            } else {
                "emulated, ~0.5 us per instruction"
            },
        ),
    ]
}

/// Everything `vmm kvm-info` prints.
#[derive(Debug)]
pub struct KvmInfo {
    pub device: PathBuf,
    pub flavor: Flavor,
    pub api_version: i32,
    pub max_vcpus: usize,
    pub has_guest_debug: bool,
    pub has_hw_bp: bool,
    /// Measured now (debug/engine/probe.rs): does a DR0 execute breakpoint exit?
    /// Err: the probe VM could not run.
    pub dr_breakpoints_exit: std::result::Result<bool, crate::debug::DebugError>,
    pub capabilities: Vec<Capability>,
}

/// Open the KVM device at `path` (usually /dev/kvm).
pub fn open(path: &Path) -> Result<Kvm> {
    let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Error::KvmOpen {
        path: path.into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains a NUL byte"),
    })?;
    let fd = Kvm::open_with_cloexec_at(cpath, true).map_err(|e| Error::KvmOpen {
        path: path.into(),
        source: std::io::Error::from_raw_os_error(e.errno()),
    })?;
    // SAFETY: `fd` was just opened by us and is owned by nothing else.
    let kvm = unsafe { Kvm::from_raw_fd(fd) };
    let v = kvm.get_api_version();
    if v != kvm_bindings::KVM_API_VERSION as i32 {
        return Err(Error::KvmApiVersion {
            path: path.into(),
            version: v,
        });
    }
    Ok(kvm)
}

pub fn query(device: &Path) -> Result<KvmInfo> {
    let kvm = open(device)?;
    let flavor = detect_flavor(Path::new("/sys/module"));
    let dr = crate::debug::engine::measure_dr_breakpoints(device);
    let mut caps = capabilities(flavor);
    // The table's DR row is what the probe measured, not what the flavor implies.
    if let Some(row) = caps
        .iter_mut()
        .find(|c| c.name == "debug-register breakpoints in ring 0")
    {
        (row.works, row.note) = match dr {
            Ok(true) => (true, "measured: a DR0 execute breakpoint exits"),
            Ok(false) => (
                false,
                "measured: DR0 never exits; breakpoints patch `in al, dx` (exit-insn) instead",
            ),
            Err(_) => (false, "could not be measured (the probe VM failed)"),
        };
    }
    if matches!(dr, Ok(false)) {
        if let Some(row) = caps
            .iter_mut()
            .find(|c| c.name == "debug-register breakpoints in ring 3")
        {
            (row.works, row.note) = (false, "measured: DR0 never exits; ring-3 breakpoints single-step");
        }
    }
    caps.insert(
        caps.iter()
            .position(|c| c.name.starts_with("software breakpoints"))
            .unwrap_or(caps.len()),
        Capability {
            name: "exit-instruction breakpoints in ring 0",
            works: true,
            note: "`in al, dx` patched in; an I/O exit on every KVM",
        },
    );
    Ok(KvmInfo {
        device: device.into(),
        flavor,
        api_version: kvm.get_api_version(),
        max_vcpus: kvm.get_max_vcpus(),
        has_guest_debug: kvm.check_extension(Cap::SetGuestDebug),
        has_hw_bp: kvm.check_extension_int(Cap::DebugHwBps) > 0,
        dr_breakpoints_exit: dr,
        capabilities: caps,
    })
}

impl KvmInfo {
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "device        {}\nflavor        {}\nAPI version   {}\nmax vCPUs     {}\nguest debug   {}\n\n",
            self.device.display(),
            self.flavor.name(),
            self.api_version,
            self.max_vcpus,
            if self.has_guest_debug { "yes" } else { "no" },
        );
        s = s.trim_end().to_string()
            + &format!(
                "\nbreak-by      {} (default for kernel breakpoints)\n\n",
                self.default_break_by()
            );
        for c in &self.capabilities {
            let mark = if c.works { "yes" } else { "NO " };
            if c.note.is_empty() {
                s += &format!("  {mark}  {}\n", c.name);
            } else {
                s += &format!("  {mark}  {:<45} {}\n", c.name, c.note);
            }
        }
        if self.flavor.is_pvm() {
            s += "\nThis /dev/kvm is PVM: ring 0 is emulated and ring-3 system calls arrive as faults.\n\
                  Hardware semantics (ring-3 stepping, timing) need hardware KVM or the KVM box (tests/kvmbox).\n";
        }
        s
    }

    /// What `--break-by` defaults to for a kernel breakpoint here.
    pub fn default_break_by(&self) -> &'static str {
        match self.dr_breakpoints_exit {
            Ok(true) => "dr0",
            _ => "exit-insn",
        }
    }

    /// `vmm kvm-info --json`: one line.
    pub fn to_json(&self) -> String {
        let view = KvmInfoJson {
            device: self.device.display().to_string(),
            flavor: self.flavor.name(),
            pvm: self.flavor.is_pvm(),
            hardware: self.flavor.is_hardware(),
            api_version: self.api_version,
            max_vcpus: self.max_vcpus,
            guest_debug: self.has_guest_debug,
            dr_breakpoints_exit: self.dr_breakpoints_exit.as_ref().ok().copied(),
            default_break_by: self.default_break_by(),
            capabilities: &self.capabilities,
        };
        serde_json::to_string(&view).expect("strings, numbers and booleans serialize")
    }
}

/// What `--json` shows of [`KvmInfo`] (null: the DR probe could not run).
#[derive(serde::Serialize)]
struct KvmInfoJson<'a> {
    device: String,
    flavor: &'static str,
    pvm: bool,
    hardware: bool,
    api_version: i32,
    max_vcpus: usize,
    guest_debug: bool,
    dr_breakpoints_exit: Option<bool>,
    default_break_by: &'static str,
    capabilities: &'a [Capability],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavor_from_modules() {
        let dir = std::env::temp_dir().join(format!("vmm-kvminfo-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("kvm")).unwrap();
        assert_eq!(detect_flavor(&dir), Flavor::Unknown);
        std::fs::create_dir_all(dir.join("kvm_amd")).unwrap();
        assert_eq!(detect_flavor(&dir), Flavor::HardwareSvm);
        // PVM wins: it can be loaded beside a vendor module.
        std::fs::create_dir_all(dir.join("kvm_pvm")).unwrap();
        assert_eq!(detect_flavor(&dir), Flavor::Pvm);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pvm_lacks_ring3_stepping_but_has_ring0_stepping() {
        let caps = capabilities(Flavor::Pvm);
        let get = |n: &str| caps.iter().find(|c| c.name == n).unwrap().works;
        assert!(!get("single-step in ring 3"));
        assert!(get("single-step in ring 0"));
        assert!(capabilities(Flavor::HardwareSvm).iter().all(|c| c.works));
    }
}
