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
use crate::debug::engine::patch::{complete_on_vcpu, patch_memory, unpatch_memory, Patched};
use crate::devices::cmos::{self, Cmos};
use crate::devices::i8042::{self, I8042};
use crate::devices::serial::Output;
use crate::error::Error;
use crate::vstate::event_loop::{EventLoop, LoopConfig};
use crate::vstate::kick::{InterruptPolicy, Kicker, Stop, VcpuRegistration};
use crate::vstate::kvm_info::{self, Flavor};
use crate::vstate::launch::{self, FileRole};
use crate::vstate::vm::Outcome;
use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vm_superio::{Serial, Trigger};
use vmm_abi::ports::COM1;

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

/// IRQ 4 through KVM's in-kernel PIC and IOAPIC: an edge (the line up,
/// then down), as an ISA serial port gives.
struct Irq4(Arc<VmFd>);

impl Trigger for Irq4 {
    type E = kvm_ioctls::Error;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.set_irq_line(4, true)?;
        self.0.set_irq_line(4, false)
    }
}

/// What Linux's console said about how it ends, seen on the way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ending {
    #[default]
    Running,
    /// "Kernel panic - not syncing: Attempted to kill init! exitcode=0x…":
    /// init ended with this wait status.
    InitExited(u32),
    /// Any other panic.
    Panic,
    /// "reboot: System halted" or "reboot: Power down": `poweroff` or
    /// `halt`. Without ACPI Linux cannot cut the power, so a power-off
    /// becomes a halt: the CPU stops with interrupts off, inside KVM,
    /// and would never exit — the console line is the only sign.
    Halted,
}

/// Read one console line for the end of the run: a panic, or a halt.
pub fn panic_line(line: &str) -> Option<Ending> {
    if line.contains("reboot: System halted") || line.contains("reboot: Power down") {
        return Some(Ending::Halted);
    }
    let rest = &line[line.find("Kernel panic - not syncing:")?..];
    if let Some(i) = rest.find("Attempted to kill init! exitcode=0x") {
        let hex: String = rest[i + 35..].chars().take_while(char::is_ascii_hexdigit).collect();
        if let Ok(code) = u32::from_str_radix(&hex, 16) {
            return Some(Ending::InitExited(code));
        }
    }
    Some(Ending::Panic)
}

/// vmm's status for init's wait status: its exit code, or 128 + signal.
pub fn init_status(wait: u32) -> u8 {
    match wait & 0x7f {
        0 => ((wait >> 8) & 0xff) as u8,
        sig => 128 + sig as u8,
    }
}

/// The console's sink: passes output on, and watches it for the panic line.
struct Watch {
    inner: Box<dyn Write + Send>,
    line: Vec<u8>,
    ending: Arc<Mutex<Ending>>,
}

impl Write for Watch {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            if b == b'\n' {
                if let Some(e) = panic_line(&String::from_utf8_lossy(&self.line)) {
                    let mut ending = self.ending.lock().unwrap();
                    // The first panic is the cause; later ones are echoes.
                    if *ending == Ending::Running {
                        *ending = e;
                    }
                }
                self.line.clear();
            } else if self.line.len() < 512 {
                self.line.push(b);
            }
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Where the time and the exits went, for `--stats`.
#[derive(Debug, Default, serde::Serialize)]
pub struct LinuxStats {
    pub setup_ms: f64,
    pub in_kvm_run_ms: f64,
    pub exits: u64,
    pub pio_exits: u64,
    pub mmio_exits: u64,
    /// Port-I/O exits per port, busiest first (at most 12).
    pub ports: Vec<(String, u64)>,
    pub console_bytes: u64,
}

impl LinuxStats {
    pub fn render(&self, json: bool) -> String {
        if json {
            return serde_json::to_string(self).unwrap_or_default() + "\n";
        }
        let ports: Vec<String> = self.ports.iter().map(|(p, n)| format!("{p}:{n}")).collect();
        format!(
            "vmm: linux: setup {:.2} ms, in KVM_RUN {:.1} ms, {} exits ({} port I/O, {} MMIO), {} console bytes\n\
             vmm: linux: port exits by port: {}\n",
            self.setup_ms,
            self.in_kvm_run_ms,
            self.exits,
            self.pio_exits,
            self.mmio_exits,
            self.console_bytes,
            ports.join(" ")
        )
    }
}

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

impl LinuxVm {
    /// Check the host, read the files, create and set up the VM.
    pub fn new(cfg: &LinuxConfig, output: Box<dyn Write + Send>) -> Result<LinuxVm, LinuxError> {
        let t0 = Instant::now();
        // First, before reading anything: can this host run Linux at all?
        check_flavor(
            kvm_info::detect_flavor(Path::new("/sys/module")),
            cfg.allow_pvm,
            &cfg.kernel,
        )?;
        if cfg.mem_mib > bzimage::MAX_MEM_MIB {
            return Err(BzImageError::MemTooLarge(cfg.mem_mib).into());
        }
        let mem_bytes = cfg.mem_mib << 20;
        let kernel = read_file(&cfg.kernel, mem_bytes)?;
        let hdr = bzimage::parse_header(&cfg.kernel.display().to_string(), &kernel)?;
        let mut initrd = match &cfg.initrd {
            Some(p) => read_file(p, mem_bytes)?,
            None => Vec::new(),
        };
        if let Some(prog) = cfg.init.first() {
            let p = PathBuf::from(prog);
            let bytes = launch::read_guest_file(&p, FileRole::Program, mem_bytes)?;
            crate::boot::loader::check_user_program(&p, &bytes)?;
            // Concatenated archives are one initramfs to Linux: ours after
            // the user's, 4-byte aligned.
            initrd.resize(initrd.len().div_ceil(4) * 4, 0);
            initrd.extend(crate::boot::initrd::build(&[("init", &bytes)]).map_err(Error::from)?);
        }
        let cmdline = cmdline(cfg)?;

        let kvm = kvm_info::open(&cfg.kvm_device)?;
        let vm = kvm.create_vm().map_err(Error::kvm("KVM_CREATE_VM"))?;
        // Intel VMX needs three pages for its real-mode TSS somewhere
        // outside RAM; AMD ignores it.
        let _ = vm.set_tss_address(0xfffb_d000);
        vm.create_irq_chip().map_err(Error::kvm("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit).map_err(Error::kvm("KVM_CREATE_PIT2"))?;
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), mem_bytes as usize)])
            .map_err(|e| Error::MemoryAlloc(e.to_string()))?;
        for (slot, region) in mem.iter().enumerate() {
            let host = region
                .get_host_address(vm_memory::MemoryRegionAddress(0))
                .map_err(Error::from)?;
            let r = kvm_userspace_memory_region {
                slot: slot as u32,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
                flags: 0,
            };
            // SAFETY: the region is a live mapping owned by `mem`, which the
            // LinuxVm keeps alive at least as long as the VM fd.
            unsafe { vm.set_user_memory_region(r) }.map_err(Error::kvm("KVM_SET_USER_MEMORY_REGION"))?;
        }
        let vm = Arc::new(vm);
        let vcpu = vm.create_vcpu(0).map_err(Error::kvm("KVM_CREATE_VCPU"))?;
        let mut cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(Error::kvm("KVM_GET_SUPPORTED_CPUID"))?;
        linux_cpuid(&mut cpuid);
        vcpu.set_cpuid2(&cpuid).map_err(Error::kvm("KVM_SET_CPUID2"))?;
        set_lint(&vcpu)?;

        let loaded = bzimage::load(
            &mem,
            &hdr,
            &kernel,
            (!initrd.is_empty()).then_some(&initrd[..]),
            &cmdline,
        )?;
        let mut sregs = vcpu.get_sregs().map_err(Error::kvm("KVM_GET_SREGS"))?;
        bzimage::setup_sregs(&mut sregs, loaded.pml4);
        vcpu.set_sregs(&sregs).map_err(Error::kvm("KVM_SET_SREGS"))?;
        vcpu.set_regs(&bzimage::setup_regs())
            .map_err(Error::kvm("KVM_SET_REGS"))?;
        let fpu = kvm_bindings::kvm_fpu {
            fcw: 0x37f,
            mxcsr: 0x1f80,
            ..Default::default()
        };
        vcpu.set_fpu(&fpu).map_err(Error::kvm("KVM_SET_FPU"))?;

        let ending = Arc::new(Mutex::new(Ending::Running));
        let out = Output::new(Box::new(Watch {
            inner: output,
            line: Vec::new(),
            ending: ending.clone(),
        }));
        let serial = Serial::new(Irq4(vm.clone()), out);
        // The VMM thread: --timeout, SIGINT/SIGTERM. Host stdin is not
        // forwarded to a Linux guest yet.
        let events = EventLoop::start(LoopConfig {
            stdin: None,
            vm_fd: std::os::fd::AsRawFd::as_raw_fd(&*vm),
            kicker: Arc::new(Kicker::default()),
            seccomp: cfg.seccomp,
        })
        .map_err(Error::from)?;
        events.catch_signals(InterruptPolicy::Stop).map_err(Error::from)?;
        let vcpu_fd = std::os::fd::AsRawFd::as_raw_fd(&vcpu);
        Ok(LinuxVm {
            vcpu_reg: None,
            events: Some(events),
            vcpu,
            vm,
            _kvm: kvm,
            mem,
            serial,
            cmos: Cmos::default(),
            i8042: I8042::default(),
            ending,
            timeout: cfg.timeout,
            stats: LinuxStats {
                setup_ms: t0.elapsed().as_secs_f64() * 1e3,
                ..Default::default()
            },
            ports: BTreeMap::new(),
            breaks: Vec::new(),
            armed: Vec::new(),
            at_break: false,
            text_final: false,
            exit_patches: crate::debug::engine::ExitPatches::new(vcpu_fd),
            text_base: START_KERNEL_MAP + hdr.pref_address,
        })
    }

    /// Run until Linux restarts or powers off the machine, fails, or the
    /// timeout or a signal stops it.
    pub fn run(&mut self) -> Outcome {
        loop {
            if let LinuxEvent::Ended(o) = self.run_until() {
                return o;
            }
        }
    }

    /// Stop at these kernel addresses (exit-instruction patches: the first
    /// byte becomes `in al, dx`). Linux's text exists only once the
    /// decompressor has written it, and Linux rewrites parts of it while it
    /// boots (alternatives, static calls, the IBT seal of ENDBRs): the
    /// patches go in at the first exit after that, which vmm takes to be the
    /// first access to the CMOS RTC (rtc_cmos's probe, an initcall, long
    /// after `start_kernel` has patched its text). Nothing earlier stops.
    pub fn set_breakpoints(&mut self, addrs: &[u64]) {
        unpatch_memory(&self.mem, &self.armed);
        self.armed.clear();
        self.exit_patches.addrs.clear();
        self.breaks = addrs.to_vec();
    }

    /// Patch the trace points in once Linux's text is final (see
    /// [`LinuxVm::set_breakpoints`]), through Linux's own page tables.
    fn arm(&mut self) -> Result<(), crate::debug::DebugError> {
        if self.breaks.is_empty() || !self.armed.is_empty() || !self.text_final {
            return Ok(());
        }
        let sregs = self
            .vcpu
            .get_sregs()
            .map_err(crate::debug::DebugError::kvm("KVM_GET_SREGS"))?;
        self.armed = patch_memory(&self.mem, sregs.cr3, &self.breaks)?;
        self.exit_patches.addrs = self.armed.iter().map(|&(a, _, _)| a).collect();
        Ok(())
    }

    /// Step over the instruction at a trace point (its byte is back), so
    /// that the patch can go in again: one single step, interrupts held off
    /// where KVM can.
    fn step_over(&mut self) -> Result<(), String> {
        use kvm_bindings::{kvm_guest_debug, KVM_GUESTDBG_BLOCKIRQ, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP};
        let mut dbg = kvm_guest_debug {
            control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_BLOCKIRQ,
            ..Default::default()
        };
        if self.vcpu.set_guest_debug(&dbg).is_err() {
            dbg.control &= !KVM_GUESTDBG_BLOCKIRQ;
            self.vcpu
                .set_guest_debug(&dbg)
                .map_err(|e| format!("KVM_SET_GUEST_DEBUG (single step): {e}"))?;
        }
        let r = loop {
            match self.vcpu.run() {
                Ok(VcpuExit::Debug(_)) => break Ok(()),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.vcpu.set_kvm_immediate_exit(0);
                }
                Ok(other) => break Err(format!("single step over a trace point ended in {other:?}")),
                Err(e) => break Err(format!("KVM_RUN (single step): {e}")),
            }
        };
        let _ = self.vcpu.set_guest_debug(&kvm_guest_debug::default());
        r
    }

    /// Run until the guest ends or reaches a trace point.
    pub fn run_until(&mut self) -> LinuxEvent {
        if std::mem::take(&mut self.at_break) {
            if let Err(e) = self.step_over() {
                return LinuxEvent::Ended(Outcome::KvmError(e));
            }
        }
        if let Err(e) = self.arm() {
            return LinuxEvent::Ended(Outcome::KvmError(format!("patching the trace points: {e}")));
        }
        if let Some(ev) = self.events.as_mut() {
            ev.arm_timeout(self.timeout);
            // SAFETY: `vcpu_reg` is dropped before `vcpu` (field order), and
            // only this thread runs the vCPU.
            self.vcpu_reg = Some(unsafe { ev.kicker().register(&mut self.vcpu) });
        }
        if let Some(r) = &self.vcpu_reg {
            r.running(true);
        }
        let event = self.run_loop();
        if let Some(r) = &self.vcpu_reg {
            r.running(false);
        }
        if let Some(ev) = self.events.as_mut() {
            ev.disarm_timeout();
        }
        self.serial.writer_mut().write_out();
        self.stats.console_bytes = self.serial.writer_mut().bytes;
        let mut ports: Vec<(u16, u64)> = self.ports.iter().map(|(p, n)| (*p, *n)).collect();
        ports.sort_by_key(|(p, n)| (std::cmp::Reverse(*n), *p));
        self.stats.ports = ports
            .into_iter()
            .take(12)
            .map(|(p, n)| (format!("{p:#x}"), n))
            .collect();
        event
    }

    fn stop_requested(&self) -> Option<Outcome> {
        let kicker = self.events.as_ref()?.kicker();
        match kicker.pending()? {
            Stop::Timeout => Some(Outcome::Timeout(self.timeout.unwrap_or_default())),
            Stop::Interrupt => Some(Outcome::Stopped(libc::SIGINT)),
            Stop::Signal(sig) => Some(Outcome::Stopped(sig)),
            // Nothing ends a Linux run through the kicker (one vCPU, whose
            // own exits end it), but an outcome put there wins all the same.
            Stop::Ended => kicker.outcome().map(|(_, o)| o),
        }
    }

    fn run_loop(&mut self) -> LinuxEvent {
        loop {
            if let Some(o) = self.stop_requested() {
                return LinuxEvent::Ended(o);
            }
            let t = Instant::now();
            let exit = self.vcpu.run();
            self.stats.in_kvm_run_ms += t.elapsed().as_secs_f64() * 1e3;
            self.stats.exits += 1;
            let ended = match exit {
                Ok(VcpuExit::IoOut(port, data)) => {
                    self.stats.pio_exits += 1;
                    *self.ports.entry(port).or_default() += 1;
                    let value = data.first().copied().unwrap_or(0);
                    match port {
                        p if (COM1..COM1 + 8).contains(&p) => {
                            let _ = self.serial.write((p - COM1) as u8, value);
                            // Halted: no exit will ever come again.
                            value == b'\n' && *self.ending.lock().unwrap() == Ending::Halted
                        }
                        cmos::INDEX_PORT | cmos::DATA_PORT => {
                            self.cmos.write(port, value);
                            self.text_final = true;
                            false
                        }
                        i8042::DATA_PORT | i8042::COMMAND_PORT => self.i8042.write(port, value) == i8042::Action::Reset,
                        // Nothing there: the write goes nowhere.
                        _ => false,
                    }
                }
                Ok(VcpuExit::IoIn(..)) if self.exit_patches.hit().is_some() => {
                    let at = self.exit_patches.hit().unwrap_or_default();
                    unpatch_memory(&self.mem, &self.armed);
                    self.armed.clear();
                    self.exit_patches.addrs.clear();
                    if let Err(e) = complete_on_vcpu(&mut self.vcpu) {
                        return LinuxEvent::Ended(Outcome::KvmError(format!("at a trace point: {e}")));
                    }
                    self.at_break = true;
                    return LinuxEvent::Break(at);
                }
                Ok(VcpuExit::IoIn(port, data)) => {
                    self.stats.pio_exits += 1;
                    *self.ports.entry(port).or_default() += 1;
                    let v = match port {
                        p if (COM1..COM1 + 8).contains(&p) => self.serial.read((p - COM1) as u8),
                        cmos::INDEX_PORT | cmos::DATA_PORT => self.cmos.read(port),
                        i8042::DATA_PORT | i8042::COMMAND_PORT => self.i8042.read(port),
                        // An ISA bus with nothing on it reads all ones.
                        _ => 0xff,
                    };
                    data.iter_mut().for_each(|b| *b = v);
                    false
                }
                Ok(VcpuExit::MmioRead(_, data)) => {
                    self.stats.mmio_exits += 1;
                    data.iter_mut().for_each(|b| *b = 0xff);
                    false
                }
                Ok(VcpuExit::MmioWrite(..)) => {
                    self.stats.mmio_exits += 1;
                    false
                }
                // KVM_SYSTEM_EVENT_SHUTDOWN / RESET (e.g. from a PSCI-like
                // interface): the machine is off or restarting.
                Ok(VcpuExit::SystemEvent(..)) => true,
                Ok(VcpuExit::Shutdown) => return LinuxEvent::Ended(Outcome::TripleFault),
                Ok(VcpuExit::Hlt) => {
                    return LinuxEvent::Ended(Outcome::Unhandled(
                        "hlt exited to the VMM despite the in-kernel irqchip".into(),
                    ))
                }
                Ok(VcpuExit::InternalError) => return LinuxEvent::Ended(Outcome::KvmError(self.internal_error())),
                Ok(VcpuExit::FailEntry(reason, cpu)) => {
                    return LinuxEvent::Ended(Outcome::KvmError(format!(
                        "VM entry failed (hardware reason {reason:#x}, cpu {cpu})"
                    )))
                }
                Ok(other) => return LinuxEvent::Ended(Outcome::Unhandled(format!("{other:?}"))),
                // A kick (event_loop.rs): clear immediate_exit before the
                // next look for a request.
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.vcpu.set_kvm_immediate_exit(0);
                    false
                }
                Err(e) => return LinuxEvent::Ended(Outcome::KvmError(format!("KVM_RUN failed: {e}"))),
            };
            if ended {
                // Let the console's last line reach the watcher.
                self.serial.writer_mut().write_out();
                return LinuxEvent::Ended(match *self.ending.lock().unwrap() {
                    Ending::Running | Ending::Halted => Outcome::Exited(0),
                    Ending::InitExited(wait) => Outcome::Exited(init_status(wait)),
                    Ending::Panic => Outcome::KernelPanic,
                });
            }
            if self.armed.is_empty() && !self.breaks.is_empty() {
                if let Err(e) = self.arm() {
                    return LinuxEvent::Ended(Outcome::KvmError(format!("patching the trace points: {e}")));
                }
            }
        }
    }

    pub fn vcpu(&self) -> &VcpuFd {
        &self.vcpu
    }

    fn internal_error(&mut self) -> String {
        // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the active member.
        let sub = unsafe { self.vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
        format!("KVM_EXIT_INTERNAL_ERROR suberror {sub}")
    }

    /// A short report of a run that did not end by Linux's own choice.
    pub fn report(&mut self, outcome: &Outcome) -> String {
        let mut s = format!("vmm: {}\n", outcome.describe());
        if let (Ok(r), Ok(sr)) = (self.vcpu.get_regs(), self.vcpu.get_sregs()) {
            s += &format!(
                "  RIP {:#x}  RSP {:#x}  CPL {}  CS {:#06x}  CR0 {:#x}  CR3 {:#x}  CR4 {:#x}  EFER {:#x}\n",
                r.rip,
                r.rsp,
                sr.cs.selector & 3,
                sr.cs.selector,
                sr.cr0,
                sr.cr3,
                sr.cr4,
                sr.efer
            );
        }
        let tail = self.serial.writer_mut().tail();
        let lines: Vec<&str> = tail.lines().collect();
        if !lines.is_empty() {
            s += "  last console lines:\n";
            for l in &lines[lines.len().saturating_sub(8)..] {
                s += &format!("    {l}\n");
            }
        }
        s
    }

    /// vmm is about to exit: end the VMM thread without waiting for it.
    pub fn release_for_exit(&mut self) {
        self.vcpu_reg.take();
        if let Some(ev) = self.events.take() {
            ev.abandon();
        }
    }

    pub fn vm_fd(&self) -> &VmFd {
        &self.vm
    }
}

impl Drop for LinuxVm {
    fn drop(&mut self) {
        self.vcpu_reg.take();
        self.events.take();
    }
}

/// CPUID.1:ECX bit 31, "running under a hypervisor".
const CPUID1_ECX_HYPERVISOR: u32 = 1 << 31;

/// What KVM supports, plus the hypervisor bit, which KVM leaves to the VMM
/// (QEMU and Firecracker set it too): without it Linux says "Booting
/// paravirtualized kernel on bare hardware", never looks for KVM's leaves
/// at 0x40000000, and so has no kvmclock — its TSC calibration against the
/// PIT then fails in the KVM box's emulated time.
pub fn linux_cpuid(cpuid: &mut kvm_bindings::CpuId) {
    for e in cpuid.as_mut_slice() {
        if e.function == 1 {
            e.ecx |= CPUID1_ECX_HYPERVISOR;
        }
    }
}

/// LINT0 as ExtINT (the 8259's output reaches the CPU through the LAPIC,
/// "virtual wire") and LINT1 as NMI, as a PC's BIOS leaves them.
fn set_lint(vcpu: &VcpuFd) -> Result<(), Error> {
    const LVT0: usize = 0x350;
    const LVT1: usize = 0x360;
    const EXTINT: u32 = 0x7 << 8;
    const NMI: u32 = 0x4 << 8;
    let mut lapic = vcpu.get_lapic().map_err(Error::kvm("KVM_GET_LAPIC"))?;
    for (off, mode) in [(LVT0, EXTINT), (LVT1, NMI)] {
        let mut b = [0u8; 4];
        for (i, x) in b.iter_mut().enumerate() {
            *x = lapic.regs[off + i] as u8;
        }
        // Delivery mode bits 8..10; unmasked (bit 16 clear).
        let v = (u32::from_le_bytes(b) & !0x1_0700) | mode;
        for (i, x) in v.to_le_bytes().iter().enumerate() {
            lapic.regs[off + i] = *x as _;
        }
    }
    vcpu.set_lapic(&lapic).map_err(Error::kvm("KVM_SET_LAPIC"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_lines_tell_how_init_ended() {
        let l = "[    2.345678] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000300";
        assert_eq!(panic_line(l), Some(Ending::InitExited(0x300)));
        assert_eq!(init_status(0x300), 3);
        assert_eq!(init_status(0x0b), 139);
        assert_eq!(init_status(0), 0);
        assert_eq!(
            panic_line("Kernel panic - not syncing: VFS: Unable to mount root fs"),
            Some(Ending::Panic)
        );
        assert_eq!(panic_line("hello from init"), None);
        assert_eq!(panic_line("[    6.078008] reboot: System halted"), Some(Ending::Halted));
    }

    #[test]
    fn the_watcher_passes_output_on_and_keeps_the_first_panic() {
        let cap = crate::devices::serial::Capture::default();
        let ending = Arc::new(Mutex::new(Ending::Running));
        let mut w = Watch {
            inner: Box::new(cap.clone()),
            line: Vec::new(),
            ending: ending.clone(),
        };
        w.write_all(b"hi\nKernel panic - not syncing: Attempted to kill init! exitcode=0x0000")
            .unwrap();
        assert_eq!(*ending.lock().unwrap(), Ending::Running);
        w.write_all(b"0100\nKernel panic - not syncing: again\n").unwrap();
        assert_eq!(*ending.lock().unwrap(), Ending::InitExited(0x100));
        assert!(cap.0.lock().unwrap().starts_with(b"hi\n"));
    }

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
    fn linux_is_told_it_runs_under_a_hypervisor() {
        let e = kvm_bindings::kvm_cpuid_entry2 {
            function: 1,
            ecx: 1,
            ..Default::default()
        };
        let mut c = kvm_bindings::CpuId::from_entries(&[e]).unwrap();
        linux_cpuid(&mut c);
        assert_eq!(c.as_slice()[0].ecx, 1 | 1 << 31);
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
