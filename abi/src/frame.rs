//! Kernel data layouts the VMM reads from outside (strace, the debugger) and
//! the kernel's assembly addresses by offset: one definition each, with the
//! offsets taken by `core::mem::offset_of!` — Rust's `asm-offsets`.

use core::mem::{offset_of, size_of};

/// What the exception entry leaves on the kernel stack, lowest address
/// first: the general registers the common path pushes, the vector and error
/// code (a dummy 0 where the CPU pushes none), then the CPU's own frame.
/// `do_trap` receives a pointer to it; `exc_return` pops it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    // Pushed by the CPU:
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// Size in 8-byte words.
    pub const WORDS: usize = size_of::<TrapFrame>() / 8;

    /// The frame from its words as they lie in memory (e.g. read by the VMM).
    pub fn from_words(w: [u64; TrapFrame::WORDS]) -> TrapFrame {
        let [r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax, vector, error_code, rip, cs, rflags, rsp, ss] =
            w;
        TrapFrame {
            r15,
            r14,
            r13,
            r12,
            r11,
            r10,
            r9,
            r8,
            rbp,
            rdi,
            rsi,
            rdx,
            rcx,
            rbx,
            rax,
            vector,
            error_code,
            rip,
            cs,
            rflags,
            rsp,
            ss,
        }
    }

    /// The six system-call argument registers (rdi, rsi, rdx, r10, r8, r9).
    pub fn syscall_args(&self) -> [u64; 6] {
        [self.rdi, self.rsi, self.rdx, self.r10, self.r8, self.r9]
    }

    /// The frame came from ring 3.
    pub fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

/// What `entry_SYSCALL_64` pushes on the kernel stack, lowest address first:
/// the six argument registers (the C ABI lets handlers clobber them, the
/// syscall ABI preserves them), then an `iretq`-shaped frame.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SyscallFrame {
    pub r9: u64,
    pub r8: u64,
    pub r10: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// The user RIP `sysretq` returns to (RCX at `syscall`).
    pub rip: u64,
    pub cs: u64,
    /// The user RFLAGS (R11 at `syscall`).
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// The per-CPU block, reached through GS in ring 0 (`swapgs` on every entry
/// from ring 3 brings it back). The kernel's `PERCPU` symbol is an array of
/// [`crate::layout::MAX_CPUS`] blocks, [`PERCPU_STRIDE`] bytes apart; the
/// VMM points CPU `n`'s MSR_GS_BASE at block `n`. The syscall entry
/// addresses the fields as `gs:[offset]`; strace reads `pid` in block 0
/// (it traces one CPU).
#[repr(C, align(64))]
#[derive(Debug)]
pub struct PerCpu {
    /// The block's own address.
    pub self_ptr: u64,
    /// The user RSP, parked by the syscall entry.
    pub user_rsp: u64,
    /// Top of the current process's kernel stack.
    pub kernel_rsp: u64,
    /// pid of the running process (getpid's fast answer).
    pub pid: u64,
    /// The LSTAR this CPU runs with (a cache: wrmsr is emulated on PVM).
    pub lstar: u64,
    /// Timer ticks this CPU's LAPIC delivered.
    pub ticks: u64,
    /// This CPU's number: its vCPU index and LAPIC ID (0 = the bootstrap CPU).
    pub cpu: u64,
}

/// Bytes between two CPUs' blocks (one cache line each: no false sharing).
pub const PERCPU_STRIDE: usize = size_of::<PerCpu>();

/// `gs:[PERCPU_USER_RSP]` and friends, for the assembly.
pub const PERCPU_USER_RSP: usize = offset_of!(PerCpu, user_rsp);
pub const PERCPU_KERNEL_RSP: usize = offset_of!(PerCpu, kernel_rsp);
pub const PERCPU_PID: usize = offset_of!(PerCpu, pid);
pub const PERCPU_LSTAR: usize = offset_of!(PerCpu, lstar);
pub const PERCPU_TICKS: usize = offset_of!(PerCpu, ticks);
pub const PERCPU_CPU: usize = offset_of!(PerCpu, cpu);
pub const PERCPU_SELF: usize = offset_of!(PerCpu, self_ptr);

/// The 64-bit Task State Segment's layout (Intel SDM Vol. 3A, Figure 8-11);
/// the VMM's encoder (`vmm/src/arch/tss.rs`) writes it, the kernel updates
/// `rsp0` on every context switch.
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default)]
pub struct Tss {
    pub reserved0: u32,
    /// RSP0..RSP2: the stack for a transition to CPL 0..2.
    pub rsp: [u64; 3],
    pub reserved1: u64,
    /// IST1..IST7.
    pub ist: [u64; 7],
    pub reserved2: u64,
    pub reserved3: u16,
    /// Offset of the I/O permission bitmap (past the limit: none).
    pub iomap_base: u16,
}

/// Where RSP0 lies in the TSS.
pub const TSS_RSP0: usize = offset_of!(Tss, rsp);
/// The TSS's size: its limit is this minus one.
pub const TSS_SIZE: usize = size_of::<Tss>();

const _: () = assert!(TrapFrame::WORDS == 22 && size_of::<TrapFrame>() == 8 * 22);
const _: () = assert!(offset_of!(SyscallFrame, rip) == 48);
const _: () = assert!(TSS_RSP0 == 4 && TSS_SIZE == 104);
const _: () = assert!(offset_of!(Tss, ist) == 0x24);
const _: () = assert!(PERCPU_STRIDE == 64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trap_frame_reads_back_from_its_words() {
        let mut w = [0u64; TrapFrame::WORDS];
        for (i, x) in w.iter_mut().enumerate() {
            *x = i as u64;
        }
        let f = TrapFrame::from_words(w);
        assert_eq!((f.r15, f.rax, f.vector, f.rip, f.ss), (0, 14, 15, 17, 21));
        assert_eq!(offset_of!(TrapFrame, rax), 8 * 14);
        assert_eq!(f.syscall_args(), [9, 10, 11, 5, 7, 6]);
    }

    #[test]
    fn per_cpu_offsets_are_the_ones_the_entry_uses() {
        assert_eq!((PERCPU_USER_RSP, PERCPU_KERNEL_RSP, PERCPU_PID), (8, 16, 24));
        assert_eq!((PERCPU_CPU, PERCPU_STRIDE), (48, 64));
    }
}
