//! One microVM: KVM objects, guest memory, the vCPUs' boot state, and the
//! run loop of vCPU 0 (the others run in vcpu.rs).

use crate::arch::{boot_info, cpuid};
use crate::boot::loader::KernelImage;
use crate::devices::serial::Com1;
use crate::error::Result;
use crate::seccomp::{self, Profile, VcpuFilter};
use crate::status;
use crate::vstate::kvm_info::{self, Flavor};
use crate::vstate::setup;
use crate::vstate::vcpu::{self, Shared, VcpuStats, VcpuStopper};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_abi::layout::KERNEL_BASE;

pub(crate) use crate::vstate::setup::build_page_tables;

/// Largest guest memory the VMM's page-table area can map.
pub const MAX_MEM_MIB: u64 = 64 << 10;

/// The boot archive and the argv of the program in it to run as init.
pub struct InitProgram {
    /// A cpio archive (see initrd.rs).
    pub image: Vec<u8>,
    /// argv[0] names the archive member to run.
    pub argv: Vec<String>,
}

pub struct VmConfig {
    pub kvm_device: PathBuf,
    pub mem_mib: u64,
    pub timeout: Option<Duration>,
    pub cmdline: String,
    pub init: Option<InitProgram>,
    pub forward_stdin: bool,
    /// Present a local APIC (KVM's in-kernel one) with its timer, and the
    /// serial port's interrupt; without it the guest has no interrupts.
    pub lapic: bool,
    pub output: Box<dyn std::io::Write + Send>,
    /// Run each VMM thread under its seccomp allow-list (seccomp.rs).
    pub seccomp: bool,
    /// vCPUs to create, 1..=[`MAX_CPUS`] (`--cpus`); more than one needs the LAPIC.
    pub cpus: usize,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest wrote this status to the exit port.
    Exited(u8),
    KernelPanic,
    TripleFault,
    KvmError(String),
    Unhandled(String),
    Timeout(Duration),
}

impl Outcome {
    pub fn status(&self) -> u8 {
        match self {
            Outcome::Exited(s) => *s,
            Outcome::KernelPanic => status::KERNEL_PANIC,
            Outcome::TripleFault => status::TRIPLE_FAULT,
            Outcome::KvmError(_) => status::KVM_ERROR,
            Outcome::Unhandled(_) => status::UNHANDLED_EXIT,
            Outcome::Timeout(_) => status::TIMEOUT,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Outcome::Exited(s) => format!("guest exited with status {s}"),
            Outcome::KernelPanic => "guest kernel panic".into(),
            Outcome::TripleFault => "triple fault (KVM_EXIT_SHUTDOWN): the CPU could not deliver a fault".into(),
            Outcome::KvmError(s) => format!("KVM error: {s}"),
            Outcome::Unhandled(s) => format!("unhandled VM exit: {s}"),
            Outcome::Timeout(t) => format!(
                "timeout: the guest was still running after {} s (--timeout)",
                t.as_secs_f64()
            ),
        }
    }
}

/// How far `run_until` runs the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Until the guest ends or `--timeout` expires (`vmm run`, the tracers).
    ToEnd,
    /// Until the guest ends, `--timeout` expires, or a debug exit, an
    /// exit-instruction breakpoint or Ctrl-C hands control to the debugger.
    UntilStop,
    /// One single step for the debugger: until the debug exit, without
    /// `--timeout` (a step cannot run away, and a watchdog thread per step
    /// would cost more than the step itself).
    Step,
}

impl RunMode {
    fn stops_for_debugger(self) -> bool {
        self != RunMode::ToEnd
    }

    fn timed(self) -> bool {
        self != RunMode::Step
    }
}

/// Why `run_until` returned.
#[derive(Debug, Clone)]
pub enum Event {
    Ended(Outcome),
    Debug(kvm_bindings::kvm_debug_exit_arch),
    /// An exit-instruction breakpoint at this address (debug/engine.rs).
    ExitInsn(u64),
    /// SIGINT (Ctrl-C) while the debugger let the guest run.
    Interrupted,
}

/// Set by the debugger's SIGINT handler; KVM_RUN returns EINTR and the run
/// loop hands control back.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Make Ctrl-C stop the guest and return to the debugger's prompt instead of
/// killing vmm (no SA_RESTART, so a blocked KVM_RUN returns EINTR).
pub fn catch_sigint() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigint as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
    }
}

/// Where the time went, for `--stats` and the boot benchmark.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    /// Opening /dev/kvm, creating the VM, memory and vCPU.
    pub kvm_setup: Duration,
    /// Loading the image and writing tables, boot info and registers.
    pub load: Duration,
    /// Compiling and installing the seccomp filters (seccomp.rs).
    pub seccomp: Duration,
    /// Total time inside KVM_RUN.
    pub in_kvm_run: Duration,
    /// VM exits taken.
    pub exits: u64,
    /// Of which port-I/O exits.
    pub pio_exits: u64,
}

pub struct Vm {
    // Field order is drop order: the vCPUs before the VM before KVM.
    /// vCPU 0 (the bootstrap processor) first.
    vcpus: Vec<VcpuFd>,
    _vm: Arc<VmFd>,
    _kvm: Kvm,
    pub mem: GuestMemoryMmap,
    pub kernel: KernelImage,
    pub flavor: Flavor,
    pub com1: Com1,
    pub timings: Timings,
    timeout: Option<Duration>,
    /// Breakpoint and single-step tracing, if asked for.
    pub tracer: Option<Box<dyn crate::trace::tracer::Tracer>>,
    /// Seccomp is on and the vCPU thread's filter not yet installed.
    seccomp_pending: bool,
    /// Exit-instruction breakpoints the debugger has patched in.
    pub exit_patches: crate::debug::engine::ExitPatches,
    /// Stops every vCPU (an outcome on any of them, a timeout).
    stopper: VcpuStopper,
    /// The vCPU whose exit ended the last run (its registers are reported).
    ended_on: usize,
}

impl Drop for Vm {
    fn drop(&mut self) {
        // The stdin thread may outlive the VM: stop it raising IRQ 4 on it.
        self.com1.clear_irq();
    }
}

impl Vm {
    /// Validate the image and memory size, then create and set up the VM:
    /// KVM and memory, the vCPUs, guest memory's contents, each vCPU's
    /// registers, the devices.
    pub fn new(image_path: &Path, image: std::borrow::Cow<'static, [u8]>, cfg: VmConfig) -> Result<Vm> {
        let plan = setup::plan(image_path, image, &cfg)?;

        let t0 = Instant::now();
        let kvm = kvm_info::open(&cfg.kvm_device)?;
        let flavor = kvm_info::detect_flavor(Path::new("/sys/module"));
        let (vm, mem) = setup::create_vm_with_memory(&kvm, plan.mem_bytes)?;
        let lapic = cfg.lapic && setup::enable_lapic(&vm);
        setup::check_cpus(&kvm, cfg.cpus, lapic)?;
        setup::enable_debug_features(&kvm, lapic);
        let vm = Arc::new(vm);
        let (mut vcpus, cpuid) = setup::create_vcpus(&kvm, &vm, cfg.cpus)?;
        let features = cpuid::features(&cpuid);
        let kvm_setup = t0.elapsed();

        let t1 = Instant::now();
        let pml4 = setup::fill_memory(&mem, &plan, cfg.init.as_ref(), lapic, cfg.cpus)?;
        let flags = setup::boot_flags(flavor, features, lapic);
        let tsc_khz = vcpus[0].get_tsc_khz().unwrap_or(0) as u64;
        boot_info::write(&mem, &plan.placement, flags, tsc_khz, pml4, &cfg.cmdline, cfg.cpus)?;
        for (cpu, vcpu) in vcpus.iter().enumerate() {
            setup::set_boot_registers(vcpu, cpu, &plan.kernel, pml4, features)?;
        }
        let load = t1.elapsed();

        // The stdin thread installs its filter as it starts; the vCPU
        // thread's waits for lock_down.
        let t2 = Instant::now();
        if cfg.seccomp {
            seccomp::install_sigsys_handler()?;
        }
        let com1 = setup::connect_console(&vm, lapic, cfg.output, cfg.forward_stdin, cfg.seccomp)?;
        let seccomp = if cfg.seccomp { t2.elapsed() } else { Duration::ZERO };
        let vcpu_fd = std::os::fd::AsRawFd::as_raw_fd(&vcpus[0]);
        let stopper = VcpuStopper::new(&mut vcpus);
        Ok(Vm {
            vcpus,
            _vm: vm,
            _kvm: kvm,
            mem,
            kernel: plan.kernel,
            flavor,
            com1,
            timings: Timings {
                kvm_setup,
                load,
                seccomp,
                ..Default::default()
            },
            timeout: cfg.timeout,
            tracer: None,
            seccomp_pending: cfg.seccomp,
            exit_patches: crate::debug::engine::ExitPatches::new(vcpu_fd),
            stopper,
            ended_on: 0,
        })
    }

    /// Install the vCPU thread's seccomp filter for `profile` (seccomp.rs)
    /// on the calling thread. Call it once the setup is done, right before
    /// the first KVM_RUN; unless --no-seccomp, `run_until` does it (with the
    /// wider interactive list) if nobody did. Later calls do nothing. The
    /// other vCPUs' threads start later and inherit it.
    pub fn lock_down(&mut self, profile: Profile) -> Result<()> {
        if !self.seccomp_pending {
            return Ok(());
        }
        let t = Instant::now();
        VcpuFilter::compile(profile)?.apply()?;
        self.seccomp_pending = false;
        self.timings.seccomp += t.elapsed();
        Ok(())
    }

    /// The --timeout, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// vCPU 0, the one the debugger and the tracers drive.
    pub fn vcpu(&self) -> &VcpuFd {
        &self.vcpus[0]
    }

    pub fn vcpu_mut(&mut self) -> &mut VcpuFd {
        &mut self.vcpus[0]
    }

    /// The vCPU whose exit ended the last run: the one a crash report shows.
    pub fn ended_vcpu(&self) -> (usize, &VcpuFd) {
        let cpu = self.ended_on.min(self.vcpus.len() - 1);
        (cpu, &self.vcpus[cpu])
    }

    /// How many vCPUs the VM has.
    pub fn cpus(&self) -> usize {
        self.vcpus.len()
    }

    /// Stops every vCPU from any thread (see vcpu.rs).
    pub fn stopper(&self) -> VcpuStopper {
        self.stopper.clone()
    }

    /// Run until the guest exits, fails, or the timeout expires.
    pub fn run(&mut self) -> Outcome {
        if let Some(t) = self.tracer.as_mut() {
            if let Err(e) = t.arm(&self.vcpus[0]) {
                return Outcome::KvmError(format!("KVM_SET_GUEST_DEBUG failed: {e}"));
            }
        }
        match self.run_until(RunMode::ToEnd) {
            Event::Ended(o) => o,
            Event::Debug(_) | Event::ExitInsn(_) | Event::Interrupted => {
                unreachable!("only RunMode::UntilStop and Step stop for the debugger")
            }
        }
    }

    /// Run the guest as `mode` says. vCPU 0 runs on this thread; the other
    /// vCPUs, if any, on threads of their own until the run ends (the
    /// debugger and tracers refuse more than one vCPU, so their stops only
    /// ever come from vCPU 0).
    pub fn run_until(&mut self, mode: RunMode) -> Event {
        if let Err(e) = self.lock_down(Profile::Interactive) {
            return Event::Ended(Outcome::KvmError(e.to_string()));
        }
        let watchdog = if mode.timed() {
            self.timeout.map(Watchdog::start)
        } else {
            None
        };
        let Vm {
            vcpus,
            mem,
            com1,
            tracer,
            exit_patches,
            timings,
            kernel,
            stopper,
            ..
        } = self;
        let (bsp, aps) = vcpus.split_first_mut().expect("a VM has a vCPU");
        let shared = Shared::new(mem, com1, stopper.clone());
        let mut bsp_run = Vcpu0 {
            vcpu: bsp,
            tracer,
            exit_patches,
            symbols: kernel.symbols(),
            watchdog: watchdog.as_ref(),
            mode,
            stats: VcpuStats::default(),
        };
        let (event, aps_stats) = if aps.is_empty() {
            (bsp_run.run(&shared), Vec::new())
        } else {
            std::thread::scope(|s| {
                let shared = &shared;
                let mut threads = Vec::new();
                for (i, vcpu) in aps.iter_mut().enumerate() {
                    let cpu = i + 1;
                    // Unnamed: naming a thread is a prctl the filter does not allow.
                    let t = std::thread::Builder::new().spawn_scoped(s, move || vcpu::run_ap(cpu, vcpu, shared));
                    match t {
                        Ok(t) => threads.push(t),
                        Err(e) => shared.stopper.end(
                            0,
                            Outcome::KvmError(format!("cannot start the thread of vCPU {cpu}: {e}")),
                        ),
                    }
                }
                let event = bsp_run.run(shared);
                // vCPU 0 is done: so are the others (it ended the run, or
                // they did and stopped it).
                shared.stopper.stop_all();
                let stats: Vec<VcpuStats> = threads.into_iter().map(|t| t.join().unwrap_or_default()).collect();
                (event, stats)
            })
        };
        stopper.unregister_thread(0);
        let mut bsp_stats = bsp_run.stats;
        drop(watchdog);
        shared.com1().output().write_out();
        for a in &aps_stats {
            bsp_stats.exits += a.exits;
            bsp_stats.pio_exits += a.pio_exits;
        }
        timings.in_kvm_run += bsp_stats.in_kvm_run;
        timings.exits += bsp_stats.exits;
        timings.pio_exits += bsp_stats.pio_exits;
        drop(shared);
        if let Event::Ended(_) = event {
            if let Some((cpu, o)) = self.stopper.outcome() {
                self.ended_on = if cpu == vcpu::NOT_A_VCPU { 0 } else { cpu };
                return Event::Ended(o);
            }
        }
        event
    }

    /// The guest kernel's own counters, read from its memory by symbol — the
    /// VMM watches the kernel from outside, without its cooperation.
    pub fn kernel_counters(&self) -> Vec<(&'static str, u64)> {
        let phys = |sym: &str| self.kernel.symbols().address_of(sym)?.checked_sub(KERNEL_BASE);
        let read = |sym: &str| self.mem.read_obj::<u64>(GuestAddress(phys(sym)?)).ok();
        // The whole per-number table in one read.
        let mut counts = [0u8; 512 * 8];
        let total: u64 = match phys("SYSCALL_COUNTS") {
            Some(p) if self.mem.read_slice(&mut counts, GuestAddress(p)).is_ok() => counts
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .sum(),
            _ => 0,
        };
        let mut v = vec![("syscalls", total + read("OUT_OF_RANGE_CALLS").unwrap_or(0))];
        for (name, sym) in [
            ("int80", "INT80_SYSCALLS"),
            ("pvm_syscalls", "PVM_SYSCALLS"),
            ("pvm_int80", "PVM_INT80S"),
            ("timer_ticks", "TIMER_TICKS"),
            ("preemptions", "PREEMPTIONS"),
            ("idle_halts", "IDLE_HALTS"),
            ("serial_irqs", "SERIAL_IRQS"),
            ("cpus_online", "CPUS_ONLINE"),
            ("tlb_shootdowns", "TLB_SHOOTDOWNS"),
        ] {
            if let Some(n) = read(sym) {
                v.push((name, n));
            }
        }
        v
    }
}

/// vCPU 0's side of a run: the exits only it sees (debug exits for the
/// debugger and the tracers, the watchdog's and Ctrl-C's signals) on top of
/// the ones every vCPU handles (vcpu.rs).
struct Vcpu0<'a> {
    vcpu: &'a mut VcpuFd,
    tracer: &'a mut Option<Box<dyn crate::trace::tracer::Tracer>>,
    exit_patches: &'a crate::debug::engine::ExitPatches,
    symbols: &'a crate::introspect::symbols::Symbols,
    watchdog: Option<&'a Watchdog>,
    mode: RunMode,
    stats: VcpuStats,
}

impl Vcpu0<'_> {
    /// Run until the guest ends (the outcome is then in the stopper) or
    /// the debugger gets control.
    fn run(&mut self, shared: &Shared) -> Event {
        let stop_on_debug = self.mode.stops_for_debugger();
        shared.stopper.register_thread(0);
        // Ended before vCPU 0 started (an AP's thread could not start):
        // its kvm_run was not marked, so do not enter the guest at all.
        if let Some((_, o)) = shared.stopper.outcome() {
            return Event::Ended(o);
        }
        loop {
            if stop_on_debug && INTERRUPTED.swap(false, Ordering::SeqCst) {
                return Event::Interrupted;
            }
            let t = Instant::now();
            let exit = self.vcpu.run();
            self.stats.in_kvm_run += t.elapsed();
            self.stats.exits += 1;
            let outcome = match exit {
                Ok(VcpuExit::IoIn(..)) if stop_on_debug && self.exit_patches.hit().is_some() => {
                    return Event::ExitInsn(self.exit_patches.hit().unwrap_or_default());
                }
                Ok(VcpuExit::InternalError) => Some(Outcome::KvmError(vcpu::internal_error(self.vcpu))),
                Ok(VcpuExit::Debug(arch)) if stop_on_debug => return Event::Debug(arch),
                Ok(VcpuExit::Debug(_)) if self.tracer.is_some() => {
                    let t = self.tracer.as_mut().unwrap();
                    t.on_debug_exit(self.vcpu, shared.mem, self.symbols)
                        .err()
                        .map(|e| Outcome::KvmError(format!("single-step failed: {e}")))
                }
                Ok(mut e) => match vcpu::common_exit(&mut e, shared, &mut self.stats) {
                    Some(o) => o,
                    None => Some(Outcome::Unhandled(format!("{e:?}"))),
                },
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => match self.watchdog {
                    Some(w) if w.fired.load(Ordering::SeqCst) => Some(Outcome::Timeout(w.after)),
                    // Another vCPU (or thread) ended the run.
                    _ if shared.stopper.stopping() => {
                        return Event::Ended(shared.stopper.outcome().map_or_else(
                            || Outcome::Unhandled("vCPU 0 was stopped with no outcome recorded".into()),
                            |(_, o)| o,
                        ))
                    }
                    // Ctrl-C in the debugger: the loop's next turn returns Interrupted.
                    _ => None,
                },
                Err(e) => Some(Outcome::KvmError(format!("KVM_RUN failed: {e}"))),
            };
            if let Some(o) = outcome {
                shared.stopper.end(0, o.clone());
                return Event::Ended(o);
            }
        }
    }
}

/// Ends a run after a deadline: it interrupts KVM_RUN with a signal, again
/// every few milliseconds until the vCPU thread notices (a signal that lands
/// while the VMM handles an exit would otherwise be lost).
struct Watchdog {
    fired: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    after: Duration,
    thread: std::thread::Thread,
}

extern "C" fn on_kick(_: libc::c_int) {}

/// The signal that interrupts KVM_RUN (seccomp.rs lets tgkill send only this).
pub(crate) fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

impl Watchdog {
    fn start(after: Duration) -> Watchdog {
        // SAFETY: installing a handler that does nothing; no SA_RESTART, so
        // the blocked KVM_RUN ioctl returns EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        }
        let fired = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        // SAFETY: pthread_self has no preconditions.
        let vcpu_thread = unsafe { libc::pthread_self() };
        let (f, d) = (fired.clone(), done.clone());
        let deadline = Instant::now() + after;
        let handle = std::thread::spawn(move || {
            while Instant::now() < deadline {
                if d.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::park_timeout(deadline.saturating_duration_since(Instant::now()));
            }
            f.store(true, Ordering::SeqCst);
            while !d.load(Ordering::SeqCst) {
                // SAFETY: the vCPU thread outlives the watchdog (Drop waits on `done`).
                unsafe { libc::pthread_kill(vcpu_thread, kick_signal()) };
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Watchdog {
            fired,
            done,
            after,
            thread: handle.thread().clone(),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}
