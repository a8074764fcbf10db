//! The steps `Vm::new` performs (vm.rs), in order: check the image and
//! memory size (`plan`), create the VM with its memory and LAPIC, create
//! the vCPUs, fill guest memory (kernel, boot archive, page tables, every
//! CPU's tables), set each vCPU's first registers, connect the console and
//! start the VMM thread (event_loop.rs). The machine state itself comes
//! from the pure builders in `arch/`.

use crate::arch::boot_info::{self, Placement};
use crate::arch::paging::{PageTableBuilder, PTE_A, PTE_D, PTE_G, PTE_NX, PTE_PCD, PTE_PWT, PTE_RW};
use crate::boot::loader::KernelImage;
use crate::devices::serial::{Com1, Input, Output};
use crate::error::{Error, Result};
use crate::vstate::event_loop::{EventLoop, EventLoopError, LoopConfig};
use crate::vstate::kick::Kicker;
use crate::vstate::kvm_info::Flavor;
use crate::vstate::vm::{InitProgram, VmConfig, MAX_MEM_MIB};
use crate::{arch::cpuid, arch::gdt, arch::idt, arch::msr, arch::regs, arch::tss};
use kvm_bindings::{kvm_userspace_memory_region, CpuId, Msrs, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_abi::boot_info::{FLAG_KVM_PVM, FLAG_LAPIC, FLAG_SMAP, FLAG_SMEP};
use vmm_abi::irq;
use vmm_abi::layout::{phys, phys_to_virt, DIRECT_MAP_BASE, KERNEL_BASE, MAX_CPUS};

/// What `Vm::new` checked before touching KVM: the image, where things go.
pub(super) struct Plan {
    pub kernel: KernelImage,
    pub mem_bytes: u64,
    pub placement: Placement,
    /// init's argv, NUL-separated.
    pub argv_bytes: Vec<u8>,
}

/// Check the memory size, the kernel image and the placement of the
/// boot archive, before any KVM call.
pub(super) fn plan(image_path: &Path, image: std::borrow::Cow<'static, [u8]>, cfg: &VmConfig) -> Result<Plan> {
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
    Ok(Plan {
        kernel,
        mem_bytes,
        placement,
        argv_bytes,
    })
}

/// Create the VM and its memory, registered as slot 0 from guest address 0.
pub(super) fn create_vm_with_memory(kvm: &Kvm, mem_bytes: u64) -> Result<(VmFd, GuestMemoryMmap)> {
    let vm = kvm.create_vm().map_err(Error::kvm("KVM_CREATE_VM"))?;
    let mem = guest_memory(&vm, mem_bytes)?;
    Ok((vm, mem))
}

/// Allocate `mem_bytes` of guest memory from guest address 0 and register
/// it with `vm` (slot 0). The caller keeps the returned memory alive at
/// least as long as `vm`: KVM maps the guest onto it.
pub(super) fn guest_memory(vm: &VmFd, mem_bytes: u64) -> Result<GuestMemoryMmap> {
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
        // SAFETY: the region is a live mapping owned by `mem`, which the
        // caller (Vm, LinuxVm) keeps alive at least as long as the VM fd.
        unsafe { vm.set_user_memory_region(r) }.map_err(Error::kvm("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(mem)
}

/// `--cpus`: within the boot contract and KVM's limit, and more than one
/// only with the LAPIC (the CPUs wake each other with IPIs).
pub(super) fn check_cpus(kvm: &Kvm, cpus: usize, lapic: bool) -> Result<()> {
    if cpus == 0 || cpus > MAX_CPUS {
        return Err(Error::TooManyCpus { cpus, max: MAX_CPUS });
    }
    if cpus == 1 {
        return Ok(());
    }
    let kvm_max = kvm.get_max_vcpus();
    if cpus > kvm_max {
        return Err(Error::TooManyCpus { cpus, max: kvm_max });
    }
    if !lapic {
        return Err(Error::CpusWithoutLapic(cpus));
    }
    Ok(())
}

/// What single-stepping may rely on with this KVM (see trace/tracer.rs, debug/engine/).
pub(super) fn enable_debug_features(kvm: &Kvm, lapic: bool) {
    // Single steps hold interrupts off where KVM can (see tracer.rs).
    let dbg2 = kvm
        .check_extension_raw(u64::from(kvm_bindings::KVM_CAP_SET_GUEST_DEBUG2))
        .max(0) as u32;
    crate::trace::tracer::BLOCK_IRQ.store(dbg2 & kvm_bindings::KVM_GUESTDBG_BLOCKIRQ, Ordering::Relaxed);
    // With a LAPIC, events can drop TF between any two instructions.
    // fetch_or: a later VM without one (the DR probe VM, created after
    // the guest's) must not turn this off for the guest's VM.
    crate::debug::engine::STEP_ALWAYS_REARM.fetch_or(lapic, Ordering::Relaxed);
}

/// Create `cpus` vCPUs with the host's supported CPUID. The application
/// processors are made runnable at once: with an in-kernel LAPIC KVM
/// would park them until an INIT/SIPI, and the VMM starts them itself.
pub(super) fn create_vcpus(kvm: &Kvm, vm: &VmFd, cpus: usize) -> Result<(Vec<VcpuFd>, CpuId)> {
    let cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(Error::kvm("KVM_GET_SUPPORTED_CPUID"))?;
    let mut vcpus = Vec::with_capacity(cpus);
    for cpu in 0..cpus {
        let vcpu = vm.create_vcpu(cpu as u64).map_err(Error::kvm("KVM_CREATE_VCPU"))?;
        let mut own = cpuid.clone();
        cpuid::set_apic_id(&mut own, cpu as u8);
        vcpu.set_cpuid2(&own).map_err(Error::kvm("KVM_SET_CPUID2"))?;
        if cpu > 0 {
            let runnable = kvm_bindings::kvm_mp_state {
                mp_state: kvm_bindings::KVM_MP_STATE_RUNNABLE,
            };
            vcpu.set_mp_state(runnable).map_err(Error::kvm("KVM_SET_MP_STATE"))?;
        }
        vcpus.push(vcpu);
    }
    Ok((vcpus, cpuid))
}

/// Load the kernel, the boot archive and init's argv, and build the page
/// tables and every CPU's tables. Returns the PML4's address.
pub(super) fn fill_memory(
    mem: &GuestMemoryMmap,
    plan: &Plan,
    init: Option<&InitProgram>,
    lapic: bool,
    cpus: usize,
) -> Result<u64> {
    plan.kernel.load(mem)?;
    if let (Some(init), Some((start, _)), Some((argv_start, _))) = (init, plan.placement.init, plan.placement.init_argv)
    {
        mem.write_slice(&init.image, GuestAddress(start))?;
        mem.write_slice(&plan.argv_bytes, GuestAddress(argv_start))?;
    }
    let pml4 = build_page_tables(mem, plan.mem_bytes, &plan.kernel, lapic)?;
    write_cpu_tables(mem, &plan.kernel, cpus)?;
    Ok(pml4)
}

/// The boot info's flags: what the kernel cannot detect reliably itself.
pub(super) fn boot_flags(flavor: Flavor, features: regs::CpuFeatures, lapic: bool) -> u32 {
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
    flags
}

/// CPU `cpu`'s registers at its first instruction: 64-bit ring 0 on its own
/// GDT, TSS and stack, the syscall MSRs, GS at its per-CPU block; CPU 0 at
/// the kernel's entry, the others at its AP entry.
pub(super) fn set_boot_registers(
    vcpu: &VcpuFd,
    cpu: usize,
    kernel: &KernelImage,
    pml4: u64,
    features: regs::CpuFeatures,
) -> Result<()> {
    let mut sregs = vcpu.get_sregs().map_err(Error::kvm("KVM_GET_SREGS"))?;
    regs::setup_sregs(&mut sregs, pml4, features, cpu);
    vcpu.set_sregs(&sregs).map_err(Error::kvm("KVM_SET_SREGS"))?;
    let entries: Vec<_> = msr::boot_msrs(&kernel.header, cpu)
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
    let boot_info = phys_to_virt(phys::BOOT_INFO);
    let r = match cpu {
        0 => regs::setup_regs(kernel.entry, boot_info),
        n => regs::setup_ap_regs(kernel.header.ap_entry, boot_info, n),
    };
    vcpu.set_regs(&r).map_err(Error::kvm("KVM_SET_REGS"))
}

/// The UART and console port; with a LAPIC, input raises IRQ 4 on CPU 0.
pub(super) fn connect_console(vm: &Arc<VmFd>, lapic: bool, output: Box<dyn std::io::Write + Send>) -> Com1 {
    let mut com1 = Com1::new(Output::new(output));
    if lapic {
        // IRQ 4: an MSI straight to CPU 0's LAPIC (there is no IOAPIC),
        // from the VMM thread whenever input arrives or ends.
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
    com1
}

/// Start the VMM thread: stdin (if `forward_stdin`) into COM1's input
/// queue, the --timeout clock, signals; its stop requests go to `kicker`.
pub(super) fn start_events(
    com1: &mut Com1,
    vm: &VmFd,
    kicker: &Arc<Kicker>,
    forward_stdin: bool,
    seccomp: bool,
) -> Result<EventLoop> {
    let stdin = if forward_stdin {
        let room = Arc::new(
            vmm_sys_util::eventfd::EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).map_err(|source| {
                EventLoopError::Fd {
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
        kicker: kicker.clone(),
        seccomp,
    })?)
}

/// Give the VM KVM's in-kernel local APIC alone ("split irqchip": no
/// 8259 PIC, no IOAPIC, no PIT). Done after the memory slot is registered
/// and before the vCPU exists; measured on a PVM host (README, "Interrupts"):
/// a full KVM_CREATE_IRQCHIP makes closing the VM cost ~13 ms, the split
/// one ~0.4 ms, the same as no irqchip. False if KVM refuses: the guest then
/// runs without interrupts, as before.
pub(super) fn enable_lapic(vm: &VmFd) -> bool {
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

/// Every CPU's GDT and TSS, and the shared IDT, at the physical pages of
/// the boot contract (`vmm_abi::layout::phys`).
pub(super) fn write_cpu_tables(mem: &GuestMemoryMmap, kernel: &KernelImage, cpus: usize) -> Result<()> {
    for cpu in 0..cpus {
        let gdt = gdt::build(phys_to_virt(phys::tss(cpu)), (tss::TSS_SIZE - 1) as u32);
        let bytes: Vec<u8> = gdt.iter().flat_map(|d| d.to_le_bytes()).collect();
        mem.write_slice(&bytes, GuestAddress(phys::gdt(cpu)))?;
        let t = tss::Tss::for_cpu(cpu);
        mem.write_slice(&t.encode(), GuestAddress(phys::tss(cpu)))?;
    }
    mem.write_slice(&idt::build(&kernel.header), GuestAddress(phys::IDT))?;
    Ok(())
}
