//! Model-specific registers the VMM sets before the first instruction
//! (Intel SDM Vol. 4; AMD APM Vol. 2 §6.1 for SYSCALL/SYSRET).

use vmm_abi::header::KernelHeader;
use vmm_abi::layout::selector;

pub const MSR_EFER: u32 = 0xc000_0080;
pub const MSR_STAR: u32 = 0xc000_0081;
pub const MSR_LSTAR: u32 = 0xc000_0082;
pub const MSR_CSTAR: u32 = 0xc000_0083;
pub const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
pub const MSR_FS_BASE: u32 = 0xc000_0100;
pub const MSR_GS_BASE: u32 = 0xc000_0101;
pub const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
pub const MSR_TSC_AUX: u32 = 0xc000_0103;

/// EFER.SCE: `syscall`/`sysret` enabled.
pub const EFER_SCE: u64 = 1 << 0;
/// EFER.LME: long mode enabled.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA: long mode active.
pub const EFER_LMA: u64 = 1 << 10;
/// EFER.NXE: the NX bit in page-table entries is honoured.
pub const EFER_NXE: u64 = 1 << 11;
/// The EFER the kernel starts with.
pub const BOOT_EFER: u64 = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;

pub const RFLAGS_TF: u64 = 1 << 8;
pub const RFLAGS_IF: u64 = 1 << 9;
pub const RFLAGS_DF: u64 = 1 << 10;
pub const RFLAGS_NT: u64 = 1 << 14;
pub const RFLAGS_AC: u64 = 1 << 18;
/// SFMASK: RFLAGS bits `syscall` clears. TF so a single-stepped `syscall`
/// does not step the kernel, IF so the entry runs with interrupts off until it
/// is on its own stack, DF for the ABI, AC so SMAP is on in the kernel, NT
/// (ring 3 may set it with `popfq`) because an `iretq` with NT set is a #GP
/// in long mode: the kernel would die at its next `iretq` (found by sysfuzz:
/// a new process's first return to ring 3 after its parent's `syscall`).
pub const BOOT_SFMASK: u64 = RFLAGS_TF | RFLAGS_IF | RFLAGS_DF | RFLAGS_NT | RFLAGS_AC;

/// STAR: bits 47:32 are the `syscall` CS (SS = CS + 8); bits 63:48 the
/// `sysret` base (64-bit CS = base + 16, SS = base + 8, both with RPL 3).
pub fn star(syscall_cs: u16, sysret_base: u16) -> u64 {
    (u64::from(sysret_base) << 48) | (u64::from(syscall_cs) << 32)
}

/// The `sysret` base that yields our user selectors: USER_DS - 8, RPL bits clear.
pub fn sysret_base() -> u16 {
    (selector::USER_DS & !3) - 8
}

/// CPU `cpu`'s MSRs, in (index, value) pairs: the same for every CPU but
/// GS_BASE (its own per-CPU block) and TSC_AUX (its number, what `rdtscp`
/// and `rdpid` report, as Linux sets it).
pub fn boot_msrs(header: &KernelHeader<u64>, cpu: usize) -> Vec<(u32, u64)> {
    vec![
        (MSR_STAR, star(selector::KERNEL_CS, sysret_base())),
        (MSR_LSTAR, header.syscall),
        // No compatibility-mode user code: a 32-bit `syscall` has nowhere to go.
        (MSR_CSTAR, 0),
        (MSR_SYSCALL_MASK, BOOT_SFMASK),
        (MSR_FS_BASE, 0),
        // Ring 0 starts with GS at the per-CPU block; `swapgs` on the way to
        // ring 3 parks it in KERNEL_GS_BASE.
        (
            MSR_GS_BASE,
            header.percpu + (cpu * vmm_abi::frame::PERCPU_STRIDE) as u64,
        ),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_TSC_AUX, cpu as u64),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_yields_the_gdt_selectors() {
        let s = star(selector::KERNEL_CS, sysret_base());
        assert_eq!(s, 0x0010_0008_0000_0000);
        let syscall_cs = (s >> 32) as u16 & 0xfffc;
        let base = (s >> 48) as u16;
        // What `syscall` loads.
        assert_eq!(syscall_cs, selector::KERNEL_CS);
        assert_eq!(syscall_cs + 8, selector::KERNEL_DS);
        // What 64-bit `sysret` loads.
        assert_eq!((base + 16) | 3, selector::USER_CS);
        assert_eq!((base + 8) | 3, selector::USER_DS);
    }

    #[test]
    fn sfmask_masks_tf_if_df_nt_ac() {
        assert_eq!(BOOT_SFMASK, 0x4_4700);
    }

    #[test]
    fn efer_enables_long_mode_syscall_and_nx() {
        assert_eq!(BOOT_EFER, 0xd01);
    }

    #[test]
    fn each_cpu_has_gs_at_its_own_per_cpu_block() {
        let header = KernelHeader {
            magic: 0,
            version: 0,
            size: 0,
            exceptions: [0; 32],
            int80: 0,
            syscall: 0xffff_ffff_8010_0000,
            percpu: 0xffff_ffff_8020_0000,
            timer: 0,
            serial: 0,
            spurious: 0,
            ap_entry: 0,
            reschedule: 0,
            tlb: 0,
        };
        let get = |cpu, msr| boot_msrs(&header, cpu).into_iter().find(|&(i, _)| i == msr).unwrap().1;
        assert_eq!(get(0, MSR_GS_BASE), 0xffff_ffff_8020_0000);
        assert_eq!(get(3, MSR_GS_BASE), 0xffff_ffff_8020_00c0);
        assert_eq!((get(0, MSR_TSC_AUX), get(3, MSR_TSC_AUX)), (0, 3));
        assert_eq!(get(3, MSR_LSTAR), get(0, MSR_LSTAR));
    }
}
