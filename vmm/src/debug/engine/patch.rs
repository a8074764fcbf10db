//! Exit-instruction breakpoints: the first byte of a ring-0 instruction
//! replaced by `in al, dx` (0xEC), which exits to the VMM on every KVM
//! flavor, and put back at the stop.

use crate::debug::error::{DebugError, Result};
use crate::vstate::vm::Vm;
use kvm_bindings::kvm_regs;
use kvm_ioctls::VcpuFd;
use std::os::fd::RawFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// `in al, dx`: one byte, exits to the VMM from ring 0 on every KVM.
pub const EXIT_INSN: u8 = 0xec;

/// The addresses currently patched with [`EXIT_INSN`]; the run loop (vm.rs)
/// asks [`ExitPatches::hit`] on an `in` exit whether RIP is one of them.
pub struct ExitPatches {
    /// The vCPU's fd, for KVM_GET_REGS while the run loop holds the exit.
    vcpu_fd: RawFd,
    pub addrs: Vec<u64>,
}

vmm_sys_util::ioctl_ior_nr!(KVM_GET_REGS, kvm_bindings::KVMIO, 0x81, kvm_regs);

impl ExitPatches {
    pub fn new(vcpu_fd: RawFd) -> ExitPatches {
        ExitPatches {
            vcpu_fd,
            addrs: Vec::new(),
        }
    }

    /// The patched address the vCPU stopped at, if an `in` exit is one.
    pub fn hit(&self) -> Option<u64> {
        if self.addrs.is_empty() {
            return None;
        }
        let mut regs = kvm_regs::default();
        // SAFETY: KVM_GET_REGS writes one kvm_regs to the pointer; the fd is the live vCPU's.
        let r =
            unsafe { vmm_sys_util::ioctl::ioctl_with_mut_ref(&RawFdHolder(self.vcpu_fd), KVM_GET_REGS(), &mut regs) };
        (r == 0 && self.addrs.contains(&regs.rip)).then_some(regs.rip)
    }
}

struct RawFdHolder(RawFd);
impl std::os::fd::AsRawFd for RawFdHolder {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// A patched byte: (virtual address, physical address, original byte).
pub type Patched = (u64, u64, u8);

/// Write `in al, dx` over the first byte at each of `addrs` (virtual, through
/// the tables at `cr3`); returns what to put back.
pub fn patch_in(vm: &mut Vm, cr3: u64, addrs: &[u64]) -> Result<Vec<Patched>> {
    let saved = patch_memory(&vm.mem, cr3, addrs)?;
    vm.exit_patches.addrs = saved.iter().map(|&(a, _, _)| a).collect();
    Ok(saved)
}

/// [`patch_in`] on guest memory alone (any VM: the own kernel's or Linux's).
/// Nothing is patched if an address is not mapped.
pub fn patch_memory(mem: &GuestMemoryMmap, cr3: u64, addrs: &[u64]) -> Result<Vec<Patched>> {
    let mut found: Vec<(u64, u64)> = Vec::new();
    for &addr in addrs {
        if found.iter().any(|&(a, _)| a == addr) {
            continue;
        }
        let phys = crate::arch::paging::walk(mem, cr3, addr)
            .1
            .ok_or(DebugError::PatchNotMapped(addr))?;
        found.push((addr, phys));
    }
    let mut saved: Vec<Patched> = Vec::new();
    for (addr, phys) in found {
        let orig: u8 = mem.read_obj(GuestAddress(phys))?;
        mem.write_obj(EXIT_INSN, GuestAddress(phys))?;
        saved.push((addr, phys, orig));
    }
    Ok(saved)
}

/// Put the original bytes back.
pub fn patch_out(vm: &mut Vm, saved: &[Patched]) {
    unpatch_memory(&vm.mem, saved);
    vm.exit_patches.addrs.clear();
}

/// [`patch_out`] on guest memory alone.
pub fn unpatch_memory(mem: &GuestMemoryMmap, saved: &[Patched]) {
    for &(_, phys, orig) in saved {
        let _ = mem.write_obj(orig, GuestAddress(phys));
    }
}

/// The vCPU stopped on a patched `in al, dx`, the original byte now back:
/// let KVM finish the pending port read without running the guest
/// (immediate_exit), then put RIP and RAX back so that the original
/// instruction runs next.
pub fn complete_exit_insn(vm: &mut Vm) -> Result<()> {
    complete_on_vcpu(vm.vcpu_mut())
}

/// [`complete_exit_insn`] on a vCPU alone.
pub fn complete_on_vcpu(vcpu: &mut VcpuFd) -> Result<()> {
    let regs = vcpu.get_regs().map_err(DebugError::kvm("KVM_GET_REGS"))?;
    vcpu.set_kvm_immediate_exit(1);
    let r = vcpu.run().map(|_| ()).err();
    vcpu.set_kvm_immediate_exit(0);
    match r {
        Some(e) if e.errno() == libc::EINTR => {}
        Some(e) => return Err(DebugError::PortRead(e)),
        None => return Err(DebugError::PortReadRanGuest),
    }
    vcpu.set_regs(&regs).map_err(DebugError::kvm("KVM_SET_REGS"))?;
    Ok(())
}
