//! A VM for a stock Linux kernel (`vmm run --linux BZIMAGE`): its own setup
//! and run loop, beside the own kernel's (vm.rs), because Linux wants a PC
//! rather than vmm's boot contract:
//!
//! - KVM's full in-kernel irqchip (KVM_CREATE_IRQCHIP: 8259 PICs, IOAPIC,
//!   LAPIC) and PIT (KVM_CREATE_PIT2, with the speaker port 0x61), so the
//!   timer and interrupt hardware Linux probes is there without exits;
//! - a 16550 on COM1 whose interrupt is IRQ 4 (KVM_IRQ_LINE, an edge on the
//!   PIC/IOAPIC pin): Linux's 8250 driver sends a user program's output
//!   from its THRE interrupt;
//! - the CMOS RTC (0x70/0x71) and the keyboard controller (0x60/0x64),
//!   answered cheaply (devices/cmos.rs, devices/i8042.rs); the keyboard
//!   controller's reset line ends the run;
//! - every other port reads as 0xff (nothing there) and ignores writes, and
//!   MMIO outside RAM likewise: counted, never fatal.
//!
//! How a run ends: Linux restarts the machine through the keyboard
//! controller (`reboot=k`) for `reboot`, and for a panic (`panic=-1`:
//! restart at once), which is what init's exit is. The VMM reads the
//! console for Linux's panic line: "Attempted to kill init! exitcode=0x…"
//! gives vmm init's exit status (as `vmm run -- PROGRAM` does), any other
//! panic is status 240; a restart without a panic is status 0. `poweroff`
//! and `halt` end with status 0 at Linux's "reboot: System halted": without
//! ACPI a power-off is a halt, the CPU stops inside KVM and no exit would
//! ever come.
//!
//! On PVM (this project's development host) a stock kernel cannot boot:
//! vmm refuses at once, before reading anything, with the reason.

use crate::boot::bzimage::{self, BzImageError};
use crate::debug::engine::patch::Patched;
use crate::devices::cmos::Cmos;
use crate::devices::i8042::I8042;
use crate::devices::serial::Output;
use crate::error::Error;
use crate::vstate::event_loop::EventLoop;
use crate::vstate::kick::VcpuRegistration;
use crate::vstate::kvm_info::Flavor;
use crate::vstate::launch;
use crate::vstate::vm::Outcome;
use console::Irq4;
use kvm_ioctls::{VcpuFd, VmFd};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vm_memory::GuestMemoryMmap;
use vm_superio::Serial;

/// `vmm run`'s options for a Linux guest.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct LinuxArgs {
    /// Boot this Linux kernel (a bzImage, e.g. /boot/vmlinuz-*) instead of
    /// vmm's own. A bzImage given as IMAGE is recognised by its header too.
    #[arg(long, value_name = "BZIMAGE", conflicts_with = "image")]
    pub linux: Option<PathBuf>,
    /// An initramfs for Linux (cpio, compressed or not).
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// A static x86-64 program (and its arguments) to pack as /init into an
    /// initramfs for Linux; arguments starting with `-` go after `--`.
    #[arg(long, value_name = "PROGRAM [ARGS]", num_args = 1..)]
    pub init: Vec<String>,
    /// Words added to Linux's command line (after the defaults; --cmdline
    /// replaces the defaults).
    #[arg(long, value_name = "CMDLINE")]
    pub append: Option<String>,
    /// Boot Linux even though /dev/kvm is PVM (only for a kernel built as a
    /// PVM guest; a stock kernel crawls, then fails).
    #[arg(long)]
    pub allow_pvm: bool,
    /// Linux's symbols, for breakpoints and --strace: a System.map, a
    /// /proc/kallsyms saved as root, or a vmlinux with symbols.
    #[arg(long, value_name = "FILE")]
    pub symbols: Option<PathBuf>,
}

impl LinuxArgs {
    /// Any Linux-only option given (they need --linux or a bzImage IMAGE).
    pub fn any(&self) -> bool {
        !self.init.is_empty()
            || self.initrd.is_some()
            || self.append.is_some()
            || self.allow_pvm
            || self.symbols.is_some()
    }
}

impl LinuxConfig {
    /// The configuration `vmm run`/`vmm debug` options describe for a Linux
    /// guest `kernel`; `mem_given`: --mem was on the command line.
    pub fn from_args(
        guest: &launch::GuestArgs,
        linux: &LinuxArgs,
        kernel: PathBuf,
        mem_given: bool,
    ) -> Result<LinuxConfig, LinuxError> {
        if !linux.init.is_empty() && !guest.program.is_empty() {
            return Err(LinuxError::TwoInits);
        }
        Ok(LinuxConfig {
            kernel,
            initrd: linux.initrd.clone(),
            init: if linux.init.is_empty() {
                guest.program.clone()
            } else {
                linux.init.clone()
            },
            cmdline: (!guest.cmdline.is_empty()).then(|| guest.cmdline.clone()),
            append: linux.append.clone(),
            mem_mib: if mem_given { guest.mem } else { DEFAULT_MEM_MIB },
            timeout: launch::timeout_duration(guest.timeout),
            kvm_device: guest.kvm_device.clone(),
            allow_pvm: linux.allow_pvm,
            seccomp: !guest.no_seccomp,
        })
    }
}

/// The command line Linux gets by default: the console on COM1, restart
/// through the keyboard controller, restart at once on a panic (so that the
/// run ends), fixed addresses (symbols from System.map match), 4-level
/// paging (vmm's page walker — breakpoints, strace's reads of user memory —
/// reads 4-level tables; the KVM box's CPU offers LA57 and Linux would take
/// it), and the initramfs's /init.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1 nokaslr no5lvl rdinit=/init";

/// Guest memory when --mem is not given: Debian's 6.1 kernel decompresses
/// to 51.5 MiB at 16 MiB.
pub const DEFAULT_MEM_MIB: u64 = 256;

/// What a Linux run needs, from the command line.
pub struct LinuxConfig {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// PROGRAM and its arguments, packed as /init.
    pub init: Vec<String>,
    /// The whole command line if given (--cmdline), else the defaults.
    pub cmdline: Option<String>,
    pub append: Option<String>,
    pub mem_mib: u64,
    pub timeout: Option<Duration>,
    pub kvm_device: PathBuf,
    pub allow_pvm: bool,
    /// Install the VMM thread's seccomp filter.
    pub seccomp: bool,
}

/// Why a Linux guest could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    #[error(
        "--linux: this host's /dev/kvm is PVM (kvm_pvm), which cannot boot a stock Linux kernel.\n  \
         PVM runs the guest's ring 0 in KVM's instruction emulator (~0.5 µs an instruction): a stock kernel \
         decompresses for ~100 s, then dies with KVM_EXIT_INTERNAL_ERROR at `lock cmpxchg16b`, which PVM cannot \
         emulate (nor rdtscp, int3 or vmcall in ring 0); with every workaround tried it ran 45-60x slower than \
         the KVM box and had not reached /init after 20 minutes.\n  What works: hardware KVM (kvm_intel or \
         kvm_amd); the KVM box, e.g.\n    tests/kvmbox/kvmbox --file target/x86_64-unknown-linux-gnu/release/vmm:/work/vmm \
         --file {kernel}:/work/vmlinuz --file PROGRAM:/work/PROGRAM -- vmm run --linux /work/vmlinuz --init /work/PROGRAM\n  \
         (README, \"Booting Linux\"); or a kernel built as a PVM guest (CONFIG_PVM_GUEST), with --allow-pvm."
    )]
    Pvm { kernel: String },
    #[error("{path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("give the program for Linux's /init once: either --init PROGRAM [ARGS] or -- PROGRAM [ARGS], not both")]
    TwoInits,
    #[error("--symbols {path}: {reason}")]
    Symbols { path: PathBuf, reason: String },
    #[error("{0} with --linux needs Linux's symbols: add --symbols System.map|kallsyms|vmlinux")]
    NeedsSymbols(&'static str),
    #[error(transparent)]
    BzImage(#[from] BzImageError),
    #[error(transparent)]
    Setup(#[from] Error),
}

/// Refuse Linux on PVM unless the user insists (`allow`).
pub fn check_flavor(flavor: Flavor, allow: bool, kernel: &Path) -> Result<(), LinuxError> {
    if flavor.is_pvm() && !allow {
        return Err(LinuxError::Pvm {
            kernel: kernel.display().to_string(),
        });
    }
    Ok(())
}

/// Is `path` a bzImage? Only a regular file is opened, and only its first
/// bytes are read.
pub fn sniff(path: &Path) -> bool {
    use std::io::Read;
    if !std::fs::metadata(path).map(|m| m.is_file()).unwrap_or(false) {
        return false;
    }
    let mut head = Vec::with_capacity(bzimage::HEAD_BYTES);
    std::fs::File::open(path)
        .and_then(|f| f.take(bzimage::HEAD_BYTES as u64).read_to_end(&mut head))
        .is_ok()
        && bzimage::is_bzimage(&head)
}

/// Read a host file for the guest: a regular file, at most `max` bytes.
fn read_file(path: &Path, max: u64) -> Result<Vec<u8>, LinuxError> {
    let err = |reason: String| LinuxError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file; give the path of the file itself".into()));
    }
    if meta.len() > max {
        return Err(err(format!(
            "{} bytes, more than the guest's memory (--mem); raise --mem",
            meta.len()
        )));
    }
    std::fs::read(path).map_err(|e| err(e.to_string()))
}

/// The command line: defaults (or --cmdline), `quiet` when a program is
/// init (its output should not drown in the boot log; `--append
/// loglevel=7` brings the log back), --append, then init's arguments.
pub fn cmdline(cfg: &LinuxConfig) -> Result<String, BzImageError> {
    let mut c = match &cfg.cmdline {
        Some(c) => c.clone(),
        None if !cfg.init.is_empty() => format!("{DEFAULT_CMDLINE} quiet"),
        None => DEFAULT_CMDLINE.to_string(),
    };
    if let Some(a) = &cfg.append {
        c.push(' ');
        c.push_str(a);
    }
    if cfg.init.len() > 1 {
        c.push_str(" --");
        c.push_str(&bzimage::init_args(&cfg.init[1..])?);
    }
    Ok(c)
}

mod console;
mod run;
mod setup;

pub use console::{init_status, panic_line, Ending, LinuxStats};
pub use setup::linux_cpuid;

/// A Linux guest. Field order is drop order: the kicker forgets the vCPU
/// before it goes, the VMM thread ends before the VM.
pub struct LinuxVm {
    vcpu_reg: Option<VcpuRegistration>,
    events: Option<EventLoop>,
    vcpu: VcpuFd,
    vm: Arc<VmFd>,
    _kvm: kvm_ioctls::Kvm,
    pub mem: GuestMemoryMmap,
    serial: Serial<Irq4, vm_superio::serial::NoEvents, Output>,
    cmos: Cmos,
    i8042: I8042,
    ending: Arc<Mutex<Ending>>,
    timeout: Option<Duration>,
    pub stats: LinuxStats,
    ports: BTreeMap<u16, u64>,
    /// Exit-instruction trace points (kernel virtual addresses) wanted.
    breaks: Vec<u64>,
    /// The bytes patched for them, once Linux runs decompressed.
    armed: Vec<Patched>,
    /// Stopped at a trace point: the next run steps over its instruction.
    at_break: bool,
    /// Linux has finished patching its own text (the CMOS was touched).
    text_final: bool,
    /// The armed addresses, for the run loop's look at an `in` exit.
    exit_patches: crate::debug::engine::ExitPatches,
    /// Where Linux's `_text` is linked: `__START_KERNEL_map` + the header's
    /// `pref_address` (with `nokaslr`, also where it runs).
    pub text_base: u64,
}

/// Linux's kernel mapping starts here (`__START_KERNEL_map`); the
/// decompressor runs identity-mapped far below it.
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;

/// Why [`LinuxVm::run_until`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinuxEvent {
    Ended(Outcome),
    /// The vCPU reached this trace point; its instruction has not run.
    Break(u64),
}

impl Drop for LinuxVm {
    fn drop(&mut self) {
        self.vcpu_reg.take();
        self.events.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_defaults_append_and_init_arguments() {
        let mut cfg = LinuxConfig {
            kernel: "k".into(),
            initrd: None,
            init: vec![],
            cmdline: None,
            append: Some("loglevel=7".into()),
            mem_mib: 256,
            timeout: None,
            kvm_device: "/dev/kvm".into(),
            allow_pvm: false,
            seccomp: true,
        };
        assert_eq!(cmdline(&cfg).unwrap(), format!("{DEFAULT_CMDLINE} loglevel=7"));
        cfg.init = vec!["./hello".into(), "a b".into()];
        assert_eq!(
            cmdline(&cfg).unwrap(),
            format!("{DEFAULT_CMDLINE} quiet loglevel=7 -- \"a b\"")
        );
        cfg.cmdline = Some("console=ttyS0".into());
        cfg.append = None;
        assert_eq!(cmdline(&cfg).unwrap(), "console=ttyS0 -- \"a b\"");
    }

    #[test]
    fn pvm_is_refused_with_the_reason_and_what_works() {
        let e = check_flavor(Flavor::Pvm, false, Path::new("/boot/vmlinuz")).unwrap_err();
        let m = e.to_string();
        for want in ["PVM", "cmpxchg16b", "hardware KVM", "kvmbox", "CONFIG_PVM_GUEST"] {
            assert!(m.contains(want), "{want}: {m}");
        }
        assert!(check_flavor(Flavor::Pvm, true, Path::new("k")).is_ok());
        assert!(check_flavor(Flavor::HardwareSvm, false, Path::new("k")).is_ok());
    }
}
