//! Exception entry (Linux: arch/x86/entry/entry_64.S, arch/x86/kernel/traps.c).
//!
//! The VMM points IDT gate `n` at `asm_exc_*` stub `n` (listed in
//! [`crate::header`]). Each stub makes the frame uniform (a dummy error code
//! where the CPU pushes none, then the vector), and the common path saves the
//! general registers, switches GS if we came from ring 3, and calls [`do_trap`].

use crate::{cpu, power, println, process, syscall_table, usercopy};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use vmm_abi::layout::USER_END;

/// The stack frame [`do_trap`] receives (the boot contract's layout: the
/// VMM's strace reads it too).
pub use vmm_abi::frame::TrapFrame;

core::arch::global_asm!(
    ".macro EXC name, vector, has_error",
    ".global asm_exc_\\name",
    "asm_exc_\\name:",
    ".if \\has_error == 0",
    "    push 0",
    ".endif",
    "    push \\vector",
    "    jmp exc_common",
    ".endm",
    "",
    ".section .text",
    "EXC divide_error, 0, 0",
    "EXC debug, 1, 0",
    "EXC nmi, 2, 0",
    "EXC int3, 3, 0",
    "EXC overflow, 4, 0",
    "EXC bounds, 5, 0",
    "EXC invalid_op, 6, 0",
    "EXC device_not_available, 7, 0",
    "EXC double_fault, 8, 1",
    "EXC coproc_segment_overrun, 9, 0",
    "EXC invalid_tss, 10, 1",
    "EXC segment_not_present, 11, 1",
    "EXC stack_segment, 12, 1",
    "EXC general_protection, 13, 1",
    "EXC page_fault, 14, 1",
    "EXC spurious, 15, 0",
    "EXC coprocessor_error, 16, 0",
    "EXC alignment_check, 17, 1",
    "EXC machine_check, 18, 0",
    "EXC simd_coprocessor_error, 19, 0",
    "EXC virtualization_exception, 20, 0",
    "EXC control_protection, 21, 1",
    "EXC reserved_22, 22, 0",
    "EXC reserved_23, 23, 0",
    "EXC reserved_24, 24, 0",
    "EXC reserved_25, 25, 0",
    "EXC reserved_26, 26, 0",
    "EXC reserved_27, 27, 0",
    "EXC hypervisor_injection, 28, 0",
    "EXC vmm_communication, 29, 1",
    "EXC security_exception, 30, 1",
    "EXC reserved_31, 31, 0",
    // Device interrupts (irq.rs): the same frame, the vector tells them apart.
    ".global asm_irq_timer",
    "asm_irq_timer:",
    "    push 0",
    "    push {timer}",
    "    jmp exc_common",
    ".global asm_irq_serial",
    "asm_irq_serial:",
    "    push 0",
    "    push {serial}",
    "    jmp exc_common",
    ".global asm_irq_spurious",
    "asm_irq_spurious:",
    "    push 0",
    "    push {spurious}",
    "    jmp exc_common",
    // Inter-processor interrupts (smp.rs, tlb.rs).
    ".global asm_irq_reschedule",
    "asm_irq_reschedule:",
    "    push 0",
    "    push {reschedule}",
    "    jmp exc_common",
    ".global asm_irq_tlb",
    "asm_irq_tlb:",
    "    push 0",
    "    push {tlb}",
    "    jmp exc_common",
    "",
    "exc_common:",
    // Came from ring 3 (CS.RPL at [rsp+24])? Then GS still holds the user's base.
    "    test byte ptr [rsp + 24], 3",
    "    jz 1f",
    "    swapgs",
    "    cmp byte ptr [rip + SMAP_ON], 0", // user code may have set RFLAGS.AC:
    "    je 1f",                           // clear it, or SMAP is off in the kernel
    "    clac",
    "1:",
    "    push rax",
    "    push rbx",
    "    push rcx",
    "    push rdx",
    "    push rsi",
    "    push rdi",
    "    push rbp",
    "    push r8",
    "    push r9",
    "    push r10",
    "    push r11",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    cld",
    "    mov rdi, rsp",
    "    call do_trap",
    // Named so tracers outside the VM can stop here: RSP is at the TrapFrame.
    ".global exc_return",
    "exc_return:",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop r11",
    "    pop r10",
    "    pop r9",
    "    pop r8",
    "    pop rbp",
    "    pop rdi",
    "    pop rsi",
    "    pop rdx",
    "    pop rcx",
    "    pop rbx",
    "    pop rax",
    "    test byte ptr [rsp + 24], 3",
    "    jz 2f",
    "    swapgs",
    "2:",
    "    add rsp, 16", // vector and error code
    "    iretq",
    timer = const vmm_abi::irq::TIMER_VECTOR as u64,
    serial = const vmm_abi::irq::SERIAL_VECTOR as u64,
    spurious = const vmm_abi::irq::SPURIOUS_VECTOR as u64,
    reschedule = const vmm_abi::irq::RESCHEDULE_VECTOR as u64,
    tlb = const vmm_abi::irq::TLB_VECTOR as u64,
);

use vmm_abi::errno::EXCEPTION_NAMES;

/// Times the PVM paths below completed a system call; they must stay 0 on
/// hardware KVM, where `syscall` and `int 0x80` reach their own entries.
#[no_mangle]
pub static PVM_SYSCALLS: AtomicU64 = AtomicU64::new(0);
#[no_mangle]
pub static PVM_INT80S: AtomicU64 = AtomicU64::new(0);
/// System calls made through `int 0x80` (either path).
#[no_mangle]
pub static INT80_SYSCALLS: AtomicU64 = AtomicU64::new(0);

const VEC_DB: u64 = 1;
const VEC_BP: u64 = 3;
const VEC_UD: u64 = 6;
const VEC_PF: u64 = 14;
const VEC_INT80: u64 = 0x80;
/// #PF error code: present | user | instruction fetch.
const PF_USER_FETCH: u64 = 0x15;

/// Every exception (and `int 0x80`) lands here.
#[no_mangle]
extern "C" fn do_trap(frame: &mut TrapFrame) {
    // Device interrupts: vectors 32 and up, other than the int 0x80 gate.
    if frame.vector >= 32 && frame.vector != VEC_INT80 {
        crate::irq::handle(frame);
        return;
    }
    let from_user = frame.cs & 3 == 3;
    if from_user {
        if frame.vector == VEC_INT80 {
            INT80_SYSCALLS.fetch_add(1, Relaxed);
            frame.rax = syscall_table::dispatch(frame.rax, frame.syscall_args()) as u64;
        } else if !(crate::boot::is_pvm() && pvm_syscall(frame)) {
            user_fault(frame);
        }
        // `iretq` to a non-canonical RIP faults in ring 0, on the kernel's
        // own return path (Linux: the bad_iret fixup). An `int 0x80` in the
        // last two bytes of user space returns to 0x8000_0000_0000: refuse
        // the return before it, as the fault would, with SIGSEGV.
        if !is_user_canonical(frame.rip) {
            bad_return(frame.rip, if frame.vector == VEC_PF { "syscall" } else { "int 0x80" })
        }
        return;
    }
    // A fault inside copy_from_user & co.: resume at the fixup.
    if frame.vector == VEC_PF {
        if let Some(fixup) = usercopy::search_exception_table(frame.rip) {
            frame.rip = fixup;
            return;
        }
    }
    kernel_fault(frame)
}

/// On PVM a ring-3 `syscall` jumps to LSTAR without leaving ring 3, and the
/// fetch there faults (the page is supervisor-only): #PF, error 0x15, with
/// RCX/R11 set as `syscall` sets them. And `int 0x80` raises #UD. Recognise
/// exactly those two signatures and complete the call through the same table.
fn pvm_syscall(frame: &mut TrapFrame) -> bool {
    let lstar = cpu::rdmsr(cpu::MSR_LSTAR);
    if frame.vector == VEC_PF && frame.error_code == PF_USER_FETCH && frame.rip == lstar && cpu::read_cr2() == lstar {
        // A real `syscall` leaves the address of the next instruction in
        // RCX; a jump to LSTAR with a forged RCX would have us "return"
        // anywhere. A user address is harmless (the process could jump
        // there itself); anything else must be a real `syscall` in the last
        // two bytes of user space (its RCX is 0x8000_0000_0000, and 0f 05
        // lies just below), which returns to a non-canonical RIP after the
        // call, as on hardware.
        let genuine_top = frame.rcx == USER_END && {
            let mut insn = [0u8; 2];
            usercopy::read_user_insn(&mut insn, frame.rcx - 2).is_ok() && insn == [0x0f, 0x05]
        };
        if frame.rcx >= USER_END && !genuine_top {
            process::kill_current(
                SIGSEGV,
                format_args!(
                    "#PF at {:#x} (jump to LSTAR) — forged syscall return address {:#x}",
                    frame.rip, frame.rcx
                ),
            )
        }
        PVM_SYSCALLS.fetch_add(1, Relaxed);
        // The benchmark's null entry returns at once, RAX untouched.
        if lstar != crate::bench::null_entry() {
            frame.rax = syscall_table::dispatch(frame.rax, frame.syscall_args()) as u64;
        }
        // Return as sysretq would: RIP <- RCX, RFLAGS <- R11.
        frame.rip = frame.rcx;
        frame.rflags = (frame.r11 & USER_RFLAGS_MASK) | 0x202;
        return true;
    }
    if frame.vector == VEC_UD {
        let mut insn = [0u8; 2];
        if usercopy::read_user_insn(&mut insn, frame.rip).is_ok() && insn == [0xcd, 0x80] {
            PVM_INT80S.fetch_add(1, Relaxed);
            INT80_SYSCALLS.fetch_add(1, Relaxed);
            frame.rip += 2;
            frame.rax = syscall_table::dispatch(frame.rax, frame.syscall_args()) as u64;
            return true;
        }
    }
    false
}

/// RFLAGS bits ring 3 may set (CF PF AF ZF SF TF DF OF, AC, ID...): never IOPL or NT.
const USER_RFLAGS_MASK: u64 = 0x0025_0dd5;

/// Signals, as Linux sends them for each exception (arch/x86/kernel/traps.c).
const SIGILL: i32 = 4;
const SIGTRAP: i32 = 5;
const SIGBUS: i32 = 7;
const SIGFPE: i32 = 8;
const SIGSEGV: i32 = 11;

/// Is `rip` an address `iretq`/`sysretq` may return to in ring 3?
fn is_user_canonical(rip: u64) -> bool {
    rip < USER_END
}

/// End the process whose system call would return to `rip`, a non-canonical
/// address: on hardware the return instruction itself would fault, in ring 0.
fn bad_return(rip: u64, via: &str) -> ! {
    process::kill_current(
        SIGSEGV,
        format_args!(
            "#GP — the return from {} would go to {:#x}, not a canonical user address \
             (a system call in the last bytes of user space)",
            via, rip
        ),
    )
}

/// Called from the syscall return path (entry.rs) with the user RIP.
#[no_mangle]
extern "C" fn syscall_bad_return(rip: u64) -> ! {
    bad_return(rip, "syscall")
}

/// A fault in ring 3 kills the process, with a one-line report naming the
/// instruction and the rule it broke; the kernel and others carry on.
fn user_fault(frame: &TrapFrame) -> ! {
    let name = EXCEPTION_NAMES.get(frame.vector as usize).copied().unwrap_or("?");
    // Traps report the address after the instruction: find the instruction.
    let at = match frame.vector {
        VEC_BP => breakpoint_address(frame.rip),
        _ => frame.rip,
    };
    let mut insn = [0u8; 8];
    let fetched = usercopy::read_user_insn(&mut insn, at).is_ok();
    // Skip the operand-size and REX prefixes to reach the opcode.
    let skip = insn
        .iter()
        .take(4)
        .take_while(|&&b| b == 0x66 || (0x40..=0x4f).contains(&b))
        .count();
    let op = [insn[skip], insn[skip + 1], insn[skip + 2], insn[skip + 3]];
    let (mnemonic, why) = match explain_by_vector(frame) {
        Some(e) => e,
        None if fetched => explain(&op, frame),
        None => ("?", "instruction not readable"),
    };
    let signal = match frame.vector {
        0 | 16 | 19 => SIGFPE,
        1 | 3 => SIGTRAP,
        6 => SIGILL,
        11 | 12 | 17 => SIGBUS,
        _ => SIGSEGV,
    };
    if frame.vector == VEC_PF {
        process::kill_current(
            signal,
            format_args!("{} at {:#x} ({}) — {} {:#x}", name, at, mnemonic, why, cpu::read_cr2()),
        )
    }
    process::kill_current(signal, format_args!("{} at {:#x} ({}) — {}", name, at, mnemonic, why))
}

/// #BP is a trap: RIP is past the `int3` (cc) or `int 3` (cd 03).
fn breakpoint_address(rip: u64) -> u64 {
    let mut b = [0u8; 2];
    match usercopy::read_user_insn(&mut b, rip.wrapping_sub(2)) {
        Ok(()) if b[1] != 0xcc && b == [0xcd, 0x03] => rip - 2,
        _ => rip.wrapping_sub(1),
    }
}

/// Exceptions whose cause is the vector itself, whatever the instruction.
fn explain_by_vector(frame: &TrapFrame) -> Option<(&'static str, &'static str)> {
    Some(match frame.vector {
        VEC_PF => match (frame.error_code & 1 != 0, frame.error_code & 2 != 0) {
            (true, false) => ("load", "user read of a supervisor page at"),
            (true, true) => ("store", "user write to a supervisor or read-only page at"),
            (false, false) => ("load", "read of an unmapped address"),
            (false, true) => ("store", "write to an unmapped address"),
        },
        // A trap after the instruction that ran with RFLAGS.TF set (or a
        // debug register hit): RIP is the next instruction, not the culprit.
        VEC_DB => (
            "trap",
            "debug exception: RFLAGS.TF single-step (or a debug register) in ring 3",
        ),
        VEC_BP => ("int3", "breakpoint"),
        0 => ("div", "divide error"),
        _ => return None,
    })
}

/// Name the faulting instruction from its first bytes, and the privilege rule.
fn explain(b: &[u8; 4], frame: &TrapFrame) -> (&'static str, &'static str) {
    const PRIV: &str = "privileged instruction in ring 3";
    const IO: &str = "I/O port access with CPL 3 > IOPL 0";
    match (frame.vector, b[0], b[1]) {
        (_, 0xfa, _) => ("cli", PRIV),
        (_, 0xfb, _) => ("sti", PRIV),
        (_, 0xf4, _) => ("hlt", PRIV),
        (_, 0xe4 | 0xe5 | 0xec | 0xed, _) => ("in", IO),
        (_, 0xe6 | 0xe7 | 0xee | 0xef, _) => ("out", IO),
        (_, 0x0f, 0x22) => ("mov to CR", PRIV),
        (_, 0x0f, 0x20) => ("mov from CR", PRIV),
        (_, 0x0f, 0x30) => ("wrmsr", PRIV),
        (_, 0x0f, 0x32) => ("rdmsr", PRIV),
        (_, 0x0f, 0x01) => match (b[2] >> 3) & 7 {
            2 => ("lgdt", PRIV),
            3 => ("lidt", PRIV),
            _ => ("system instruction", PRIV),
        },
        (_, 0x0f, 0x0b) => ("ud2", "undefined instruction"),
        (_, 0x8e, _) => ("mov to segment register", "segment check failed: max(CPL, RPL) > DPL"),
        (_, 0xff, _) if (b[1] >> 3) & 7 == 3 => ("far call", "call gate/segment check failed: target DPL 0 < CPL 3"),
        (_, 0xcd, _) => ("int n", "software interrupt through a gate with DPL 0 < CPL 3"),
        (6, _, _) => ("?", "invalid opcode"),
        _ => ("?", "fault in ring 3"),
    }
}

/// A fault in ring 0: print a report and end the VM with the panic status.
pub fn kernel_fault(frame: &TrapFrame) -> ! {
    let name = EXCEPTION_NAMES.get(frame.vector as usize).copied().unwrap_or("?");
    println!(
        "kernel fault: {} (vector {}) error {:#x} at RIP {:#x} CS {:#x} RSP {:#x} RFLAGS {:#x}",
        name, frame.vector, frame.error_code, frame.rip, frame.cs, frame.rsp, frame.rflags
    );
    if frame.vector == 14 {
        println!("kernel fault: CR2 {:#x}", cpu::read_cr2());
    }
    power::panic_vm()
}
