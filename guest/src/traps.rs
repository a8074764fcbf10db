//! Exception entry (Linux: arch/x86/entry/entry_64.S, arch/x86/kernel/traps.c).
//!
//! The VMM points IDT gate `n` at `asm_exc_*` stub `n` (listed in
//! [`crate::header`]). Each stub makes the frame uniform (a dummy error code
//! where the CPU pushes none, then the vector), and the common path saves the
//! general registers, switches GS if we came from ring 3, and calls [`do_trap`].

use crate::{cpu, power, println};

/// The stack frame [`do_trap`] receives, lowest address first.
#[repr(C)]
#[derive(Debug)]
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
    "",
    "exc_common:",
    // Came from ring 3 (CS.RPL at [rsp+24])? Then GS still holds the user's base.
    "    test byte ptr [rsp + 24], 3",
    "    jz 1f",
    "    swapgs",
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
);

/// Mnemonics for the 32 exception vectors (Intel SDM Vol. 3A, Table 6-1).
pub const EXCEPTION_NAMES: [&str; 32] = [
    "#DE",
    "#DB",
    "NMI",
    "#BP",
    "#OF",
    "#BR",
    "#UD",
    "#NM",
    "#DF",
    "#MF(coproc)",
    "#TS",
    "#NP",
    "#SS",
    "#GP",
    "#PF",
    "#15",
    "#MF",
    "#AC",
    "#MC",
    "#XM",
    "#VE",
    "#CP",
    "#22",
    "#23",
    "#24",
    "#25",
    "#26",
    "#27",
    "#HV",
    "#VC",
    "#SX",
    "#31",
];

/// Every exception lands here. Until ring-3 processes exist, every exception
/// is a kernel bug: report it and stop the VM.
#[no_mangle]
extern "C" fn do_trap(frame: &mut TrapFrame) {
    kernel_fault(frame)
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

/// `syscall` entry (MSR_LSTAR). System calls come with the syscall issue;
/// until then a `syscall` is a kernel panic with a clear message.
#[no_mangle]
extern "C" fn syscall_unimplemented() -> ! {
    panic!("syscall entry reached, but system calls are not implemented yet")
}

core::arch::global_asm!(
    ".section .text",
    ".global entry_SYSCALL_64",
    "entry_SYSCALL_64:",
    "    swapgs",
    "    mov rsp, gs:16",
    "    call syscall_unimplemented",
    ".global entry_INT80",
    "entry_INT80:",
    "    swapgs",
    "    call syscall_unimplemented",
);
