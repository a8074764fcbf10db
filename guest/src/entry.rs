//! System-call entry (Linux: arch/x86/entry/entry_64.S, entry_SYSCALL_64).
//!
//! `syscall` in ring 3 loads CS/SS from STAR[47:32] (kernel code, CPL 0),
//! saves RIP in RCX and RFLAGS in R11, clears the RFLAGS bits in SFMASK and
//! jumps to LSTAR — here. It does not switch stacks: RSP is still the user's,
//! so the first instructions must find the kernel stack through GS.
//!
//! `sysretq` is the way back: RIP <- RCX, RFLAGS <- R11, CS/SS from
//! STAR[63:48] with RPL 3 (CPL 3). If RCX is not canonical, Intel CPUs raise
//! #GP *in ring 0 on the user stack* — and `iretq` would fault in ring 0
//! too — so that case never returns: the process gets SIGSEGV.
//!
//! `int 0x80` enters through a DPL-3 IDT gate into the exception path
//! (traps.rs) and uses the same table.

use core::mem::offset_of;
use vmm_abi::frame::{SyscallFrame, PERCPU_KERNEL_RSP, PERCPU_USER_RSP};
use vmm_abi::syscalls::NR_SYSCALLS;

core::arch::global_asm!(
    ".global entry_SYSCALL_64",
    "entry_SYSCALL_64:",
    "    swapgs",                        // GS base <- per-CPU block (KERNEL_GS_BASE)
    "    mov gs:[{user_rsp}], rsp",      // park the user RSP
    "    mov rsp, gs:[{kernel_rsp}]",    // this process's kernel stack
    "    push {user_ds}",                // SS     \
    "    push qword ptr gs:[{user_rsp}]", // RSP    |  an iretq frame, the same
    "    push r11",                      // RFLAGS  |  shape as a trap frame
    "    push {user_cs}",                // CS      |
    "    push rcx",                      // RIP    /
    "    push rdi",                      // the six argument registers, which
    "    push rsi",                      // the C ABI lets handlers clobber but
    "    push rdx",                      // the syscall ABI preserves
    "    push r10",
    "    push r8",
    "    push r9",
    "    cmp rax, {nr}",
    "    jae 90f",
    "    lock inc qword ptr [SYSCALL_COUNTS + rax * 8]", // every CPU counts here
    "    mov rcx, r10",                  // 4th argument: r10 (syscall ABI) -> rcx (C ABI)
    "    call [SYS_CALL_TABLE + rax * 8]",
    ".global syscall_return",
    "syscall_return:",
    "    mov rcx, [rsp + {frame_rip}]",  // the user RIP sysretq would load
    "    shr rcx, 47",
    "    jnz 80f",                       // not a canonical user address
    "    pop r9",
    "    pop r8",
    "    pop r10",
    "    pop rdx",
    "    pop rsi",
    "    pop rdi",
    "    pop rcx",                       // RIP for sysretq
    "    add rsp, 8",                    // CS (sysretq takes it from STAR)
    "    pop r11",                       // RFLAGS for sysretq
    "    pop rsp",                       // back on the user stack
    "    swapgs",                        // GS base <- the user's again
    "    sysretq",
    // Not a canonical user address: a `syscall` in the last two bytes of
    // user space returns to 0x8000_0000_0000. `sysretq` would fault in
    // ring 0 on the user stack (Intel), `iretq` in ring 0 on ours: neither
    // is survivable without a fixup, so the process dies here with SIGSEGV,
    // as the fault would have sent it (Linux: the bad_iret path).
    "80:",
    "    mov rdi, [rsp + {frame_rip}]",
    "    call syscall_bad_return",       // never returns
    "    ud2",
    "90:",
    "    mov rdi, rax",
    "    call sys_ni_out_of_range",
    "    jmp syscall_return",
    "",
    // int 0x80: an IDT gate frame; traps.rs dispatches vector 0x80.
    ".global entry_INT80",
    "entry_INT80:",
    "    push 0",
    "    push 0x80",
    "    jmp exc_common",
    user_ds = const vmm_abi::layout::selector::USER_DS as u64,
    user_cs = const vmm_abi::layout::selector::USER_CS as u64,
    nr = const NR_SYSCALLS,
    user_rsp = const PERCPU_USER_RSP,
    kernel_rsp = const PERCPU_KERNEL_RSP,
    frame_rip = const offset_of!(SyscallFrame, rip),
);
