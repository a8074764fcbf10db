//! One microVM: KVM objects, guest memory, the vCPU's boot state, and the run loop.

use crate::arch::boot_info::{self, Placement};
use crate::arch::paging::{PageTableBuilder, PTE_A, PTE_D, PTE_G, PTE_NX, PTE_PCD, PTE_PWT, PTE_RW};
use crate::boot::loader::KernelImage;
use crate::devices::serial::{Com1, Input, Output, COM1_PORTS};
use crate::error::{Error, Result};
use crate::seccomp::{self, Profile, VcpuFilter};
use crate::status;
use crate::vstate::event_loop::{EventLoop, LoopConfig};
use crate::vstate::kick::{InterruptPolicy, Stop, VcpuRegistration};
use crate::vstate::kvm_info::{self, Flavor};
use crate::{arch::cpuid, arch::gdt, arch::idt, arch::msr, arch::regs, arch::tss};
use kvm_bindings::{kvm_userspace_memory_region, Msrs, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_abi::boot_info::{FLAG_KVM_PVM, FLAG_LAPIC, FLAG_SMAP, FLAG_SMEP};
use vmm_abi::irq;
use vmm_abi::layout::{phys, phys_to_virt, DIRECT_MAP_BASE, KERNEL_BASE};
use vmm_abi::ports;

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
    // Field order is drop order: the kicker forgets the vCPU before it goes,
    // the vCPU before the VM before KVM.
    vcpu_reg: Option<VcpuRegistration>,
    /// The VMM thread (event_loop.rs): stdin, --timeout, signals.
    events: Option<EventLoop>,
    vcpu: VcpuFd,
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
    /// Validate the image and memory size, then create and set up the VM.
    pub fn new(image_path: &Path, image: std::borrow::Cow<'static, [u8]>, cfg: VmConfig) -> Result<Vm> {
        if cfg.mem_mib > MAX_MEM_MIB {
            return Err(Error::MemTooLarge(cfg.mem_mib, MAX_MEM_MIB));
        }
        let kernel = KernelImage::parse(image_path, image)?;
        let mem_bytes = cfg.mem_mib << 20;
        kernel.check_fits(mem_bytes)?;
        let argv_bytes: Vec<u8> = cfg
            .init
            .as_ref()
            .map(|i| i.argv.iter().flat_map(|a| a.bytes().chain([0])).collect())
            .unwrap_or_default();
        let placement = Placement::new(
            mem_bytes,
            kernel.phys_end,
            cfg.init.as_ref().map(|i| i.image.len() as u64),
            argv_bytes.len() as u64,
        )?;

        let t0 = Instant::now();
        let kvm = kvm_info::open(&cfg.kvm_device)?;
        let flavor = kvm_info::detect_flavor(Path::new("/sys/module"));
        let vm = kvm.create_vm().map_err(Error::kvm("KVM_CREATE_VM"))?;
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), mem_bytes as usize)])
            .map_err(|e| Error::MemoryAlloc(e.to_string()))?;
        for (slot, region) in mem.iter().enumerate() {
            let host = region.get_host_address(vm_memory::MemoryRegionAddress(0))?;
            let r = kvm_userspace_memory_region {
                slot: slot as u32,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
                flags: 0,
            };
            // SAFETY: the region is a live mapping owned by `mem`, which the Vm
            // keeps alive at least as long as the VM fd.
            unsafe { vm.set_user_memory_region(r) }.map_err(Error::kvm("KVM_SET_USER_MEMORY_REGION"))?;
        }
        let lapic = cfg.lapic && enable_lapic(&vm);
        // Single steps hold interrupts off where KVM can (see tracer.rs).
        let dbg2 = kvm
            .check_extension_raw(u64::from(kvm_bindings::KVM_CAP_SET_GUEST_DEBUG2))
            .max(0) as u32;
        crate::trace::tracer::BLOCK_IRQ.store(dbg2 & kvm_bindings::KVM_GUESTDBG_BLOCKIRQ, Ordering::Relaxed);
        // With a LAPIC, events can drop TF between any two instructions.
        // fetch_or: a later VM without one (the DR probe VM, created after
        // the guest's) must not turn this off for the guest's VM.
        crate::debug::engine::STEP_ALWAYS_REARM.fetch_or(lapic, Ordering::Relaxed);
        let vm = Arc::new(vm);
        let vcpu = vm.create_vcpu(0).map_err(Error::kvm("KVM_CREATE_VCPU"))?;
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(Error::kvm("KVM_GET_SUPPORTED_CPUID"))?;
        vcpu.set_cpuid2(&cpuid).map_err(Error::kvm("KVM_SET_CPUID2"))?;
        let features = cpuid::features(&cpuid);
        let kvm_setup = t0.elapsed();

        let t1 = Instant::now();
        kernel.load(&mem)?;
        if let (Some(init), Some((start, _)), Some((argv_start, _))) = (&cfg.init, placement.init, placement.init_argv)
        {
            mem.write_slice(&init.image, GuestAddress(start))?;
            mem.write_slice(&argv_bytes, GuestAddress(argv_start))?;
        }
        let pml4 = build_page_tables(&mem, mem_bytes, &kernel, lapic)?;
        write_cpu_tables(&mem, &kernel)?;
        let mut flags = 0;
        if flavor.is_pvm() {
            flags |= FLAG_KVM_PVM;
        }
        if features.smep {
            flags |= FLAG_SMEP;
        }
        if features.smap {
            flags |= FLAG_SMAP;
        }
        if lapic {
            flags |= FLAG_LAPIC;
        }
        let tsc_khz = vcpu.get_tsc_khz().unwrap_or(0) as u64;
        boot_info::write(&mem, &placement, flags, tsc_khz, pml4, &cfg.cmdline)?;

        let mut sregs = vcpu.get_sregs().map_err(Error::kvm("KVM_GET_SREGS"))?;
        regs::setup_sregs(&mut sregs, pml4, features);
        vcpu.set_sregs(&sregs).map_err(Error::kvm("KVM_SET_SREGS"))?;
        let entries: Vec<_> = msr::boot_msrs(&kernel.header)
            .into_iter()
            .map(|(index, data)| kvm_bindings::kvm_msr_entry {
                index,
                data,
                ..Default::default()
            })
            .collect();
        let msrs = Msrs::from_entries(&entries).map_err(Error::MsrList)?;
        let n = vcpu.set_msrs(&msrs).map_err(Error::kvm("KVM_SET_MSRS"))?;
        if n != entries.len() {
            return Err(Error::MsrRefused {
                index: entries[n].index,
                set: n,
                total: entries.len(),
            });
        }
        vcpu.set_regs(&regs::setup_regs(kernel.entry, phys_to_virt(phys::BOOT_INFO)))
            .map_err(Error::kvm("KVM_SET_REGS"))?;
        let load = t1.elapsed();

        // The VMM thread installs its filter as it starts; the vCPU
        // thread's waits for lock_down.
        let t2 = Instant::now();
        if cfg.seccomp {
            seccomp::install_sigsys_handler()?;
        }
        let mut com1 = Com1::new(Output::new(cfg.output));
        if lapic {
            // IRQ 4: an MSI straight to the LAPIC (there is no IOAPIC), from
            // the VMM thread whenever input arrives or ends.
            let vm = vm.clone();
            com1.set_irq(Box::new(move || {
                let msi = kvm_bindings::kvm_msi {
                    address_lo: irq::MSI_ADDRESS_CPU0 as u32,
                    data: irq::SERIAL_VECTOR.into(),
                    ..Default::default()
                };
                let _ = vm.signal_msi(msi);
            }));
        }
        // The VMM thread only when there is work for it: stdin or a
        // timeout (`catch_signals` starts it later otherwise).
        let events = if cfg.forward_stdin || cfg.timeout.is_some() {
            Some(start_events(&mut com1, &vm, cfg.forward_stdin, cfg.seccomp)?)
        } else {
            None
        };
        let seccomp = if cfg.seccomp { t2.elapsed() } else { Duration::ZERO };
        let vcpu_fd = std::os::fd::AsRawFd::as_raw_fd(&vcpu);
        Ok(Vm {
            vcpu_reg: None,
            events,
            vcpu,
            _vm: vm,
            _kvm: kvm,
            mem,
            kernel,
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
        })
    }

    /// Catch SIGINT (and SIGTERM with `InterruptPolicy::Stop`) for this VM:
    /// they stop the guest as `policy` says instead of killing vmm. Call
    /// before `lock_down` (it may start the VMM thread).
    pub fn catch_signals(&mut self, policy: InterruptPolicy) -> Result<()> {
        if self.events.is_none() {
            self.events = Some(start_events(&mut self.com1, &self._vm, false, self.seccomp)?);
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

    /// Register the calling thread as this vCPU's with the VMM thread's
    /// kicker (again if the VM moved to another thread), and say it runs.
    fn enter_run(&mut self, timed: bool) {
        let Some(ev) = self.events.as_mut() else { return };
        ev.arm_timeout(if timed { self.timeout } else { None });
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        if self.vcpu_reg.as_ref().is_none_or(|r| r.thread() != me) {
            self.vcpu_reg = None;
            // SAFETY: `vcpu_reg` is dropped before `vcpu` (field order and
            // Drop), and only this thread runs the vCPU.
            self.vcpu_reg = Some(unsafe { ev.kicker().register(&mut self.vcpu) });
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

    /// A stop request for this run (checked before every KVM_RUN).
    fn stop_requested(&self, timed: bool) -> Option<Stop> {
        let kicker = self.events.as_ref()?.kicker();
        match kicker.pending()? {
            // A single step has no deadline: a late expiry is stale.
            Stop::Timeout if !timed => {
                kicker.clear(Stop::Timeout);
                None
            }
            Stop::Interrupt => {
                kicker.clear(Stop::Interrupt);
                Some(Stop::Interrupt)
            }
            s => Some(s),
        }
    }

    /// Install the vCPU thread's seccomp filter for `profile` (seccomp.rs)
    /// on the calling thread. Call it once the setup is done, right before
    /// the first KVM_RUN; unless --no-seccomp, `run_until` does it (with the
    /// wider interactive list) if nobody did. Later calls do nothing.
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

    pub fn vcpu(&self) -> &VcpuFd {
        &self.vcpu
    }

    pub fn vcpu_mut(&mut self) -> &mut VcpuFd {
        &mut self.vcpu
    }

    /// Run until the guest exits, fails, or the timeout expires.
    pub fn run(&mut self) -> Outcome {
        match self.run_until(false, true) {
            Event::Ended(o) => o,
            Event::Debug(_) | Event::ExitInsn(_) | Event::Interrupted => {
                unreachable!("only run_until(true, _) stops for the debugger")
            }
        }
    }

    /// Run until the guest ends or, if `stop_on_debug`, until a debug exit
    /// (breakpoint or single step) returns control to the debugger.
    /// `timed`: enforce --timeout. A single step cannot run away, and a
    /// watchdog thread per step would cost more than the step itself.
    pub fn run_until(&mut self, stop_on_debug: bool, timed: bool) -> Event {
        if let Err(e) = self.lock_down(Profile::Interactive) {
            return Event::Ended(Outcome::KvmError(e.to_string()));
        }
        self.enter_run(timed);
        let outcome = loop {
            match self.stop_requested(timed) {
                None => {}
                Some(Stop::Interrupt) if stop_on_debug => {
                    self.leave_run();
                    return Event::Interrupted;
                }
                Some(Stop::Interrupt) => break Outcome::Stopped(libc::SIGINT),
                Some(Stop::Timeout) => break Outcome::Timeout(self.timeout.unwrap_or_default()),
                Some(Stop::Signal(sig)) => break Outcome::Stopped(sig),
            }
            let t = Instant::now();
            let exit = self.vcpu.run();
            self.timings.in_kvm_run += t.elapsed();
            self.timings.exits += 1;
            let step = match exit {
                Ok(VcpuExit::IoOut(port, data)) => {
                    self.timings.pio_exits += 1;
                    let value = data.first().copied().unwrap_or(0);
                    match port {
                        p if COM1_PORTS.contains(&p) => {
                            self.com1.pio_write(p, value);
                            None
                        }
                        ports::EXIT => Some(Outcome::Exited(value)),
                        ports::PANIC => Some(Outcome::KernelPanic),
                        ports::NULL_HYPERCALL => None,
                        ports::CONSOLE_WRITE => {
                            // The descriptor's address, zero-extended from
                            // however wide the `out` was.
                            let mut a = [0u8; 4];
                            let n = data.len().min(4);
                            a[..n].copy_from_slice(&data[..n]);
                            self.com1.console_write(&self.mem, u32::from_le_bytes(a).into());
                            None
                        }
                        p => Some(Outcome::Unhandled(format!("out to port {p:#x} (value {value:#x})"))),
                    }
                }
                Ok(VcpuExit::IoIn(..)) if stop_on_debug && self.exit_patches.hit().is_some() => {
                    self.leave_run();
                    return Event::ExitInsn(self.exit_patches.hit().unwrap_or_default());
                }
                Ok(VcpuExit::IoIn(port, data)) => {
                    self.timings.pio_exits += 1;
                    if COM1_PORTS.contains(&port) {
                        let v = self.com1.pio_read(port);
                        data.iter_mut().for_each(|b| *b = v);
                        None
                    } else if port == ports::CONSOLE_EOF {
                        let v = u8::from(self.com1.input_ended());
                        data.iter_mut().for_each(|b| *b = v);
                        None
                    } else {
                        Some(Outcome::Unhandled(format!("in from port {port:#x}")))
                    }
                }
                // With the in-kernel LAPIC a `hlt` waits inside KVM for the
                // next interrupt; only a guest without one exits here.
                Ok(VcpuExit::Hlt) => Some(Outcome::Unhandled(
                    "hlt with no interrupt source: the guest would sleep forever".into(),
                )),
                Ok(VcpuExit::Shutdown) => Some(Outcome::TripleFault),
                Ok(VcpuExit::InternalError) => Some(Outcome::KvmError(self.internal_error())),
                Ok(VcpuExit::FailEntry(reason, cpu)) => Some(Outcome::KvmError(format!(
                    "VM entry failed (hardware reason {reason:#x}, cpu {cpu})"
                ))),
                Ok(VcpuExit::MmioRead(addr, _)) => {
                    Some(Outcome::Unhandled(format!("MMIO read at {addr:#x}: no device there")))
                }
                Ok(VcpuExit::MmioWrite(addr, _)) => {
                    Some(Outcome::Unhandled(format!("MMIO write at {addr:#x}: no device there")))
                }
                Ok(VcpuExit::Debug(arch)) if stop_on_debug => {
                    self.leave_run();
                    return Event::Debug(arch);
                }
                Ok(other) => Some(Outcome::Unhandled(format!("{other:?}"))),
                // A kick (event_loop.rs): clear immediate_exit before the
                // loop's next turn looks for the request, so that a kick
                // made after the look still stops the next KVM_RUN.
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.vcpu.set_kvm_immediate_exit(0);
                    None
                }
                Err(e) => Some(Outcome::KvmError(format!("KVM_RUN failed: {e}"))),
            };
            if let Some(o) = step {
                break o;
            }
        };
        self.leave_run();
        Event::Ended(outcome)
    }

    /// Decode KVM_EXIT_INTERNAL_ERROR's suberror.
    fn internal_error(&mut self) -> String {
        // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the active member.
        let sub = unsafe { self.vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
        let what = match sub {
            kvm_bindings::KVM_INTERNAL_ERROR_EMULATION => {
                "KVM could not emulate the instruction at RIP (on PVM: rdtscp, int3, cmpxchg16b, vmcall in ring 0)"
            }
            kvm_bindings::KVM_INTERNAL_ERROR_SIMUL_EX => "an exception occurred while delivering another",
            kvm_bindings::KVM_INTERNAL_ERROR_DELIVERY_EV => "event delivery failed (bad IDT, TSS or stack?)",
            _ => "unknown suberror",
        };
        format!("KVM_EXIT_INTERNAL_ERROR suberror {sub}: {what}")
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
        ] {
            if let Some(n) = read(sym) {
                v.push((name, n));
            }
        }
        v
    }
}

/// Give the VM KVM's in-kernel local APIC alone ("split irqchip": no
/// 8259 PIC, no IOAPIC, no PIT). Done after the memory slot is registered
/// and before the vCPU exists; measured on a PVM host (README, "Interrupts"):
/// a full KVM_CREATE_IRQCHIP makes closing the VM cost ~13 ms, the split
/// one ~0.4 ms, the same as no irqchip. False if KVM refuses: the guest then
/// runs without interrupts, as before.
fn enable_lapic(vm: &VmFd) -> bool {
    let mut cap = kvm_bindings::kvm_enable_cap {
        cap: kvm_bindings::KVM_CAP_SPLIT_IRQCHIP,
        ..Default::default()
    };
    // args[0]: IOAPIC pins routed to userspace; there is no IOAPIC.
    cap.args[0] = 0;
    vm.enable_cap(&cap).is_ok()
}

/// The kernel's address space: direct map + kernel image (see paging.rs).
pub(crate) fn build_page_tables(
    mem: &GuestMemoryMmap,
    mem_bytes: u64,
    kernel: &KernelImage,
    lapic: bool,
) -> Result<u64> {
    let mut pt = PageTableBuilder::new(mem, phys::PAGE_TABLES, phys::PAGE_TABLES_END)?;
    pt.map_range(DIRECT_MAP_BASE, 0, mem_bytes, PTE_RW | PTE_NX | PTE_G | PTE_A | PTE_D)?;
    if lapic {
        // The LAPIC's registers in the direct map, uncached as device memory must be.
        let flags = PTE_RW | PTE_NX | PTE_G | PTE_A | PTE_D | PTE_PCD | PTE_PWT;
        pt.map_4k(phys_to_virt(irq::LAPIC_PHYS), irq::LAPIC_PHYS, flags)?;
    }
    for s in &kernel.segments {
        let start = s.phys & !0xfff;
        let end = boot_info::align_up(s.phys + s.memsz, 0x1000);
        let mut flags = PTE_G | PTE_A;
        if s.writable {
            flags |= PTE_RW | PTE_D;
        }
        if !s.executable {
            flags |= PTE_NX;
        }
        for page in (start..end).step_by(0x1000) {
            pt.map_4k(KERNEL_BASE + page, page, flags)?;
        }
    }
    Ok(pt.pml4)
}

/// GDT, TSS and IDT, at the fixed physical pages of the boot contract.
fn write_cpu_tables(mem: &GuestMemoryMmap, kernel: &KernelImage) -> Result<()> {
    let tss_virt = phys_to_virt(phys::TSS);
    let gdt = gdt::build(tss_virt, (tss::TSS_SIZE - 1) as u32);
    let bytes: Vec<u8> = gdt.iter().flat_map(|d| d.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(phys::GDT))?;
    let t = tss::Tss::new(phys_to_virt(phys::KERNEL_STACK_TOP), phys_to_virt(phys::IST1_TOP));
    mem.write_slice(&t.encode(), GuestAddress(phys::TSS))?;
    mem.write_slice(&idt::build(&kernel.header), GuestAddress(phys::IDT))?;
    Ok(())
}

/// Start the VMM thread: stdin (if `forward_stdin`) into COM1's input
/// queue, the --timeout clock, signals.
fn start_events(com1: &mut Com1, vm: &VmFd, forward_stdin: bool, seccomp: bool) -> Result<EventLoop> {
    let stdin = if forward_stdin {
        let room = Arc::new(
            vmm_sys_util::eventfd::EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).map_err(|source| {
                crate::vstate::event_loop::EventLoopError::Fd {
                    what: "stdin eventfd",
                    source,
                }
            })?,
        );
        let input = Arc::new(Input::fed(room.clone()));
        com1.feed_from(input.clone());
        Some((input, room))
    } else {
        None
    };
    Ok(EventLoop::start(LoopConfig {
        stdin,
        vm_fd: std::os::fd::AsRawFd::as_raw_fd(vm),
        seccomp,
    })?)
}
