//! Where the numbers came from: CPU, TSC rates, KVM flavor, host kernel, mitigations.

use crate::vstate::kvm_info::{self, Flavor};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Where the numbers came from.
#[derive(Debug, Clone)]
pub struct Environment {
    pub cpu_model: String,
    /// The vCPU's TSC rate from KVM_GET_TSC_KHZ (0 if KVM would not say).
    pub guest_tsc_khz: u64,
    /// The host TSC's rate, calibrated against CLOCK_MONOTONIC_RAW.
    pub host_tsc_khz: u64,
    pub kvm_flavor: Flavor,
    pub kvmbox: bool,
    pub host_kernel: String,
    /// (name, state) from /sys/devices/system/cpu/vulnerabilities.
    pub mitigations: Vec<(String, String)>,
}

impl Environment {
    pub fn detect(guest_tsc_khz: u64, host_tsc_khz: u64) -> Environment {
        let dir = Path::new("/sys/devices/system/cpu/vulnerabilities");
        let mut mitigations: Vec<(String, String)> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| {
                        let state = std::fs::read_to_string(e.path()).unwrap_or_default();
                        (e.file_name().to_string_lossy().into_owned(), state.trim().to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        mitigations.sort();
        Environment {
            cpu_model: cpu_model(),
            guest_tsc_khz,
            host_tsc_khz,
            kvm_flavor: kvm_info::detect_flavor(Path::new("/sys/module")),
            kvmbox: std::env::var_os("KVMBOX").is_some_and(|v| v == "1"),
            host_kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            mitigations,
        }
    }

    /// Guest times say something about hardware only on hardware KVM outside the box.
    pub fn representative(&self) -> bool {
        self.kvm_flavor.is_hardware() && !self.kvmbox
    }

    /// The TSC rate guest cycles are converted with.
    pub fn guest_khz(&self) -> f64 {
        if self.guest_tsc_khz > 0 {
            self.guest_tsc_khz as f64
        } else {
            self.host_tsc_khz as f64
        }
    }

    pub fn json(&self) -> EnvironmentJson<'_> {
        EnvironmentJson {
            cpu_model: &self.cpu_model,
            guest_tsc_khz: self.guest_tsc_khz,
            host_tsc_khz_calibrated: self.host_tsc_khz,
            kvm_flavor: self.kvm_flavor.name(),
            pvm: self.kvm_flavor.is_pvm(),
            kvmbox: self.kvmbox,
            host_kernel: &self.host_kernel,
            mitigations: self.mitigations.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            representative_of_hardware: self.representative(),
        }
    }

    pub(super) fn text(&self) -> String {
        let mut s = format!(
            "environment: CPU {} | TSC {} kHz (KVM), {} kHz (host, calibrated) | KVM {}{} | host kernel {}\n",
            self.cpu_model,
            self.guest_tsc_khz,
            self.host_tsc_khz,
            self.kvm_flavor.name(),
            if self.kvmbox { ", inside the KVM box" } else { "" },
            self.host_kernel
        );
        s += "mitigations:\n";
        for (k, v) in &self.mitigations {
            s += &format!("  {k:<28} {v}\n");
        }
        s
    }
}

/// The environment in the JSON.
#[derive(Clone, Debug, Serialize)]
pub struct EnvironmentJson<'a> {
    pub cpu_model: &'a str,
    pub guest_tsc_khz: u64,
    pub host_tsc_khz_calibrated: u64,
    pub kvm_flavor: &'static str,
    pub pvm: bool,
    pub kvmbox: bool,
    pub host_kernel: &'a str,
    pub mitigations: BTreeMap<&'a str, &'a str>,
    pub representative_of_hardware: bool,
}

/// The banner for hosts whose guest timings mean nothing for hardware.
pub fn banner(env: &Environment) -> Option<String> {
    if env.kvmbox {
        Some(
            "NOTE: inside the KVM box (QEMU TCG + nested kvm-amd) time is emulated: guest and host \
             figures are not representative of hardware. With kvmbox --icount the TSC ticks once per \
             instruction, so cycles (guest and host) = instructions: only those are comparable."
                .into(),
        )
    } else if env.kvm_flavor.is_pvm() {
        Some(
            "NOTE: this /dev/kvm is PVM: guest ring 0 is emulated and a ring-3 `syscall` arrives as a \
             page fault, so guest figures are NOT representative of hardware KVM. Only instruction \
             counts (from the KVM box with --icount) are comparable."
                .into(),
        )
    } else if !env.kvm_flavor.is_hardware() {
        Some("NOTE: unknown KVM flavor: guest figures may not be representative of hardware.".into())
    } else {
        None
    }
}

/// The host CPU's model name, from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
