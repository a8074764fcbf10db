//! CPUID: the guest sees what KVM supports on this host (KVM_GET_SUPPORTED_CPUID),
//! and the VMM reads the feature bits that change how it sets up the CPU.

use crate::arch::regs::CpuFeatures;
use kvm_bindings::CpuId;

/// CPUID.(EAX=7,ECX=0):EBX bits.
const LEAF7_EBX_SMEP: u32 = 1 << 7;
const LEAF7_EBX_SMAP: u32 = 1 << 20;

pub fn features(cpuid: &CpuId) -> CpuFeatures {
    let mut f = CpuFeatures::default();
    for e in cpuid.as_slice() {
        if e.function == 7 && e.index == 0 {
            f.smep = e.ebx & LEAF7_EBX_SMEP != 0;
            f.smap = e.ebx & LEAF7_EBX_SMAP != 0;
        }
    }
    f
}

/// CPUID.1:EBX[31:24]: the initial APIC ID, which KVM's LAPIC for vCPU
/// `id` has (the kernel reads its number from its per-CPU block, but a
/// program running `cpuid` should see the truth).
pub fn set_apic_id(cpuid: &mut CpuId, id: u8) {
    for e in cpuid.as_mut_slice() {
        if e.function == 1 {
            e.ebx = (e.ebx & 0x00ff_ffff) | (u32::from(id) << 24);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn reads_smep_and_smap_from_leaf_7() {
        let entries = [kvm_cpuid_entry2 {
            function: 7,
            index: 0,
            ebx: LEAF7_EBX_SMEP | LEAF7_EBX_SMAP,
            ..Default::default()
        }];
        let c = CpuId::from_entries(&entries).unwrap();
        assert_eq!(features(&c), CpuFeatures { smep: true, smap: true });
        let none = CpuId::from_entries(&[]).unwrap();
        assert_eq!(features(&none), CpuFeatures::default());
    }

    #[test]
    fn the_apic_id_goes_in_leaf_1() {
        let mut c = CpuId::from_entries(&[kvm_cpuid_entry2 {
            function: 1,
            ebx: 0x0001_0800,
            ..Default::default()
        }])
        .unwrap();
        set_apic_id(&mut c, 3);
        assert_eq!(c.as_slice()[0].ebx, 0x0301_0800);
    }
}
