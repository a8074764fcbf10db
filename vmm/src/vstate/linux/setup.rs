//! Creating a Linux guest's VM: the files read, the PC hardware, memory,
//! the vCPU's CPUID and LAPIC, the boot state and the VMM thread.

use super::console::{Irq4, Watch};
use super::{check_flavor, cmdline, read_file, Ending, LinuxConfig, LinuxError, LinuxStats, LinuxVm, START_KERNEL_MAP};
use crate::boot::bzimage::{self, BzImageError};
use crate::devices::cmos::Cmos;
use crate::devices::i8042::I8042;
use crate::devices::serial::Output;
use crate::error::Error;
use crate::vstate::event_loop::{EventLoop, LoopConfig};
use crate::vstate::kick::{InterruptPolicy, Kicker};
use crate::vstate::kvm_info;
use crate::vstate::launch::{self, FileRole};
use kvm_bindings::{kvm_pit_config, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::VcpuFd;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use vm_superio::Serial;

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
        let mem = crate::vstate::setup::guest_memory(&vm, mem_bytes)?;
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
}
