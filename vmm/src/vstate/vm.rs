//! One microVM: KVM objects, guest memory, the vCPUs' boot state, and the
//! run loop of vCPU 0 (the others run in vcpu.rs); the VMM thread beside
//! them (event_loop.rs) and the kicker that stops them all (kick.rs).

use crate::arch::{boot_info, cpuid};
use crate::boot::loader::KernelImage;
use crate::devices::serial::Com1;
use crate::error::Result;
use crate::seccomp::{self, Profile, VcpuFilter};
use crate::status;
use crate::vstate::event_loop::EventLoop;
use crate::vstate::kick::{self, InterruptPolicy, Kicker, Stop, VcpuRegistration};
use crate::vstate::kvm_info::{self, Flavor};
use crate::vstate::setup;
use crate::vstate::vcpu::{self, Shared, VcpuStats};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use std::path::{Path, PathBuf};
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
    /// Run each VMM thread under its seccomp allow-list (seccomp/filters.rs).
    pub seccomp: bool,
    /// vCPUs to create, 1..=[`vmm_abi::layout::MAX_CPUS`] (`--cpus`); more
    /// than one needs the LAPIC.
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
    /// SIGINT/Ctrl-C or SIGTERM stopped the guest (event_loop.rs); vmm
    /// reports, then dies of the signal, as it did before it caught it.
    Stopped(i32),
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
            Outcome::Stopped(sig) => 128 + *sig as u8,
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
            Outcome::Stopped(libc::SIGINT) => "stopped by Ctrl-C (SIGINT)".into(),
            Outcome::Stopped(libc::SIGTERM) => "stopped by SIGTERM".into(),
            Outcome::Stopped(sig) => format!("stopped by signal {sig}"),
        }
    }
}

/// How far `run_until` runs the guest, and whether `--timeout` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Until the guest ends or a stop request ends it (`--timeout`,
    /// SIGINT/SIGTERM): `vmm run` without a tracer.
    ToEnd,
    /// Until the guest ends, `--timeout` expires, or a debug exit, an
    /// exit-instruction breakpoint or an interrupt (Ctrl-C in the debugger,
    /// gdb's) hands control to the debug engine. The engine also uses it for
    /// a single step that may not come back (engine/runner.rs: on PVM a
    /// step in or back to ring 3, `hlt` with interrupts held off).
    UntilStop,
    /// A single step that comes back: as `UntilStop`, without `--timeout`
    /// (a deadline per step would cost more than the step; an expiry left
    /// from an earlier run is stale).
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
    /// An exit-instruction breakpoint at this address (debug/engine/patch.rs).
    ExitInsn(u64),
    /// SIGINT (Ctrl-C) while the debugger let the guest run.
    Interrupted,
}

/// Where the time went, for `--stats` and the boot benchmark.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    /// Opening /dev/kvm, creating the VM, memory and vCPUs.
    pub kvm_setup: Duration,
    /// Loading the image and writing tables, boot info and registers.
    pub load: Duration,
    /// Compiling and installing the seccomp filters (seccomp/filters.rs).
    pub seccomp: Duration,
    /// Total time inside KVM_RUN (vCPU 0's).
    pub in_kvm_run: Duration,
    /// VM exits taken, summed over the vCPUs.
    pub exits: u64,
    /// Of which port-I/O exits.
    pub pio_exits: u64,
}

pub struct Vm {
    // Field order is drop order: the kicker forgets vCPU 0 before it goes,
    // the VMM thread ends before the VM it raises IRQ 4 on, the vCPUs go
    // before the VM before KVM.
    vcpu_reg: Option<VcpuRegistration>,
    /// The VMM thread (event_loop.rs): stdin, --timeout, signals.
    events: Option<EventLoop>,
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
    /// Seccomp is on and the vCPU thread's filter not yet installed.
    seccomp_pending: bool,
    /// Exit-instruction breakpoints the debugger has patched in.
    pub exit_patches: crate::debug::engine::ExitPatches,
    /// Seccomp is on (for a VMM thread started late: `catch_signals`).
    seccomp: bool,
    /// Stop requests, the kick of every vCPU thread, the run's outcome
    /// (kick.rs); the VMM thread's requests come here too.
    kicker: Arc<Kicker>,
    /// The vCPU whose exit ended the last run (its registers are reported).
    ended_on: usize,
}

impl Drop for Vm {
    fn drop(&mut self) {
        // The VMM thread ends (and gives the terminal back) before the VM it
        // raises IRQ 4 on, and before the vCPU it may kick, go away.
        self.vcpu_reg.take();
        self.events.take();
    }
}

impl Vm {
    /// Validate the image and memory size, then create and set up the VM:
    /// KVM and memory, the vCPUs, guest memory's contents, each vCPU's
    /// registers, the devices and the VMM thread.
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
        let (vcpus, cpuid) = setup::create_vcpus(&kvm, &vm, cfg.cpus)?;
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

        // The VMM thread installs its filter as it starts; the vCPU
        // thread's waits for lock_down.
        let t2 = Instant::now();
        if cfg.seccomp {
            seccomp::install_sigsys_handler()?;
        }
        let kicker = Arc::new(Kicker::default());
        if cfg.cpus > 1 {
            // The vCPUs kick each other when one ends the run, with or
            // without a VMM thread (which installs it too).
            kick::install_handler().map_err(|source| crate::vstate::event_loop::EventLoopError::Signal {
                signal: kick::kick_signal(),
                source,
            })?;
        }
        let mut com1 = setup::connect_console(&vm, lapic, cfg.output);
        // The VMM thread only when there is work for it: stdin or a
        // timeout (`catch_signals` starts it later otherwise).
        let events = if cfg.forward_stdin || cfg.timeout.is_some() {
            Some(setup::start_events(
                &mut com1,
                &vm,
                &kicker,
                cfg.forward_stdin,
                cfg.seccomp,
            )?)
        } else {
            None
        };
        let seccomp = if cfg.seccomp { t2.elapsed() } else { Duration::ZERO };
        let vcpu_fd = std::os::fd::AsRawFd::as_raw_fd(&vcpus[0]);
        Ok(Vm {
            vcpu_reg: None,
            events,
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
            seccomp_pending: cfg.seccomp,
            exit_patches: crate::debug::engine::ExitPatches::new(vcpu_fd),
            seccomp: cfg.seccomp,
            kicker,
            ended_on: 0,
        })
    }

    /// Catch SIGINT (and SIGTERM with `InterruptPolicy::Stop`) for this VM:
    /// they stop the guest as `policy` says instead of killing vmm. Call
    /// before `lock_down` (it may start the VMM thread).
    pub fn catch_signals(&mut self, policy: InterruptPolicy) -> Result<()> {
        if self.events.is_none() {
            self.events = Some(setup::start_events(
                &mut self.com1,
                &self._vm,
                &self.kicker,
                false,
                self.seccomp,
            )?);
        }
        if let Some(ev) = &self.events {
            ev.catch_signals(policy)?;
        }
        Ok(())
    }

    /// The run is over and vmm will exit: end the VMM thread without waiting
    /// for it (see `EventLoop::abandon`); call it as soon as the run
    /// returns. The rest of the VM is dropped as usual.
    pub fn release_for_exit(&mut self) {
        self.vcpu_reg.take();
        if let Some(ev) = self.events.take() {
            ev.abandon();
        }
    }

    /// While the guest runs, input on `fd` (gdb's connection) stops it
    /// with an interrupt: gdb's Ctrl-C.
    pub fn interrupt_on_input(&self, fd: std::os::fd::RawFd) {
        if let Some(ev) = &self.events {
            ev.interrupt_on_input(fd);
        }
    }

    /// Install the vCPU thread's seccomp filter for `profile` (seccomp/filters.rs)
    /// on the calling thread. Call it once the setup is done, right before
    /// the first KVM_RUN; unless --no-seccomp, `run_until` does it (with the
    /// wider interactive list) if nobody did. Later calls do nothing. The
    /// other vCPUs' threads start later and inherit it (with several vCPUs
    /// it lets this thread start them).
    pub fn lock_down(&mut self, profile: Profile) -> Result<()> {
        if !self.seccomp_pending {
            return Ok(());
        }
        let t = Instant::now();
        VcpuFilter::compile(profile, self.cpus() > 1)?.apply()?;
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

    /// Register the calling thread as vCPU 0's with the kicker (again if
    /// the VM moved to another thread), say it runs, and start the
    /// `--timeout` clock if `timed`.
    fn enter_run(&mut self, timed: bool) {
        if let Some(ev) = self.events.as_mut() {
            ev.arm_timeout(if timed { self.timeout } else { None });
        }
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        if self.vcpu_reg.as_ref().is_none_or(|r| r.thread() != me) {
            self.vcpu_reg = None;
            // SAFETY: `vcpu_reg` is dropped before `vcpus` (field order and
            // Drop), and only this thread runs vCPU 0.
            self.vcpu_reg = Some(unsafe { self.kicker.register(&mut self.vcpus[0]) });
        }
        if let Some(r) = &self.vcpu_reg {
            r.running(true);
        }
    }

    /// The end of a run: stop the clock, write out the last partial line.
    fn leave_run(&mut self) {
        if let Some(r) = &self.vcpu_reg {
            r.running(false);
        }
        if let Some(ev) = self.events.as_mut() {
            ev.disarm_timeout();
        }
        self.com1.output().write_out();
    }

    /// Run until the guest exits, fails, or the timeout expires.
    pub fn run(&mut self) -> Outcome {
        match self.run_until(RunMode::ToEnd) {
            Event::Ended(o) => o,
            Event::Debug(_) | Event::ExitInsn(_) | Event::Interrupted => {
                unreachable!("only RunMode::UntilStop and Step stop for the debugger")
            }
        }
    }

    /// Run the guest as `mode` says. vCPU 0 runs on this thread; the other
    /// vCPUs, if any, on threads of their own until the run ends. Every
    /// vCPU thread registers with the kicker, and whatever ends the run —
    /// an outcome on any vCPU, `--timeout`, a signal — stops them all
    /// through it.
    pub fn run_until(&mut self, mode: RunMode) -> Event {
        if let Err(e) = self.lock_down(Profile::Interactive) {
            return Event::Ended(Outcome::KvmError(e.to_string()));
        }
        if mode != RunMode::ToEnd && self.cpus() > 1 {
            // The debug engine drives vCPU 0 alone, and its stops would
            // leave the others running (cli.rs and main.rs refuse this).
            return Event::Ended(Outcome::KvmError(format!(
                "the debugger and the tracers drive one vCPU, and this VM has {}: run it with --cpus 1",
                self.cpus()
            )));
        }
        // An ended guest stays ended: its vCPUs are not entered again.
        if let Some((cpu, o)) = self.kicker.outcome() {
            self.ended_on = cpu;
            return Event::Ended(o);
        }
        self.enter_run(mode.timed());
        let Vm {
            vcpus,
            mem,
            com1,
            exit_patches,
            kicker,
            timeout,
            ..
        } = self;
        let (bsp, aps) = vcpus.split_first_mut().expect("a VM has a vCPU");
        let shared = Shared::new(mem, com1, kicker);
        let mut bsp_run = Vcpu0 {
            vcpu: bsp,
            exit_patches,
            timeout: *timeout,
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
                        Err(e) => shared.kicker.end(
                            0,
                            Outcome::KvmError(format!("cannot start the thread of vCPU {cpu}: {e}")),
                        ),
                    }
                }
                // vCPU 0 returns only once the run has ended (ToEnd), and
                // the request that ended it stays pending: the others stop.
                let event = bsp_run.run(shared);
                let stats: Vec<VcpuStats> = threads.into_iter().map(|t| t.join().unwrap_or_default()).collect();
                (event, stats)
            })
        };
        let mut stats = bsp_run.stats;
        for a in &aps_stats {
            stats.exits += a.exits;
            stats.pio_exits += a.pio_exits;
        }
        self.timings.in_kvm_run += stats.in_kvm_run;
        self.timings.exits += stats.exits;
        self.timings.pio_exits += stats.pio_exits;
        self.leave_run();
        match event {
            // The first outcome recorded wins, whichever vCPU it came from.
            Event::Ended(o) => match self.kicker.outcome() {
                Some((cpu, first)) => {
                    self.ended_on = cpu;
                    Event::Ended(first)
                }
                None => Event::Ended(o),
            },
            e => e,
        }
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
/// debug engine) and the stop requests it turns into an outcome (the
/// timeout, signals, interrupts), on top of the exits every vCPU handles
/// (vcpu.rs).
struct Vcpu0<'a> {
    vcpu: &'a mut VcpuFd,
    exit_patches: &'a crate::debug::engine::ExitPatches,
    timeout: Option<Duration>,
    mode: RunMode,
    stats: VcpuStats,
}

impl Vcpu0<'_> {
    /// A stop request for this run (checked before every KVM_RUN): None to
    /// go on, else what it makes of the run.
    fn stop_requested(&self, shared: &Shared<'_>) -> Option<Event> {
        let kicker = shared.kicker;
        let outcome = match kicker.pending()? {
            // A single step has no deadline: a late expiry is stale.
            Stop::Timeout if !self.mode.timed() => {
                kicker.clear(Stop::Timeout);
                return None;
            }
            Stop::Interrupt => {
                kicker.clear(Stop::Interrupt);
                if self.mode.stops_for_debugger() {
                    return Some(Event::Interrupted);
                }
                Outcome::Stopped(libc::SIGINT)
            }
            Stop::Timeout => Outcome::Timeout(self.timeout.unwrap_or_default()),
            Stop::Signal(sig) => Outcome::Stopped(sig),
            // Another vCPU ended the run: its outcome is recorded.
            Stop::Ended => Outcome::Unhandled("vCPU 0 was stopped with no outcome recorded".into()),
        };
        shared.kicker.end(0, outcome.clone());
        Some(Event::Ended(outcome))
    }

    /// Run until the guest ends (the outcome is then in the kicker) or the
    /// debug engine gets control.
    fn run(&mut self, shared: &Shared<'_>) -> Event {
        let stop_on_debug = self.mode.stops_for_debugger();
        loop {
            if let Some(event) = self.stop_requested(shared) {
                return event;
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
                Ok(mut e) => match vcpu::common_exit(&mut e, shared, &mut self.stats) {
                    Some(o) => o,
                    None => Some(Outcome::Unhandled(format!("{e:?}"))),
                },
                // A kick (kick.rs): clear immediate_exit before the loop's
                // next turn looks for the request, so that a kick made after
                // the look still stops the next KVM_RUN.
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.vcpu.set_kvm_immediate_exit(0);
                    None
                }
                Err(e) => Some(Outcome::KvmError(format!("KVM_RUN failed: {e}"))),
            };
            if let Some(o) = outcome {
                shared.kicker.end(0, o.clone());
                return Event::Ended(o);
            }
        }
    }
}
