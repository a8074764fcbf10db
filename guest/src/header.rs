//! The kernel's half of the boot contract: the table the VMM reads from the
//! `.vmm_header` section to fill the IDT and the syscall MSRs.

use crate::percpu::PERCPU;
use vmm_abi::header::{KernelHeader, HEADER_MAGIC, HEADER_SIZE, HEADER_VERSION};

/// A linker-resolved address.
#[repr(transparent)]
pub struct Addr(*const ());
// SAFETY: the header is read-only data consumed by the VMM; no code writes through it.
unsafe impl Sync for Addr {}

macro_rules! entries {
    ($($name:ident),* $(,)?) => {
        extern "C" { $(fn $name();)* }
    };
}

entries!(
    asm_exc_divide_error,
    asm_exc_debug,
    asm_exc_nmi,
    asm_exc_int3,
    asm_exc_overflow,
    asm_exc_bounds,
    asm_exc_invalid_op,
    asm_exc_device_not_available,
    asm_exc_double_fault,
    asm_exc_coproc_segment_overrun,
    asm_exc_invalid_tss,
    asm_exc_segment_not_present,
    asm_exc_stack_segment,
    asm_exc_general_protection,
    asm_exc_page_fault,
    asm_exc_spurious,
    asm_exc_coprocessor_error,
    asm_exc_alignment_check,
    asm_exc_machine_check,
    asm_exc_simd_coprocessor_error,
    asm_exc_virtualization_exception,
    asm_exc_control_protection,
    asm_exc_reserved_22,
    asm_exc_reserved_23,
    asm_exc_reserved_24,
    asm_exc_reserved_25,
    asm_exc_reserved_26,
    asm_exc_reserved_27,
    asm_exc_hypervisor_injection,
    asm_exc_vmm_communication,
    asm_exc_security_exception,
    asm_exc_reserved_31,
    entry_SYSCALL_64,
    entry_INT80,
    asm_irq_timer,
    asm_irq_serial,
    asm_irq_spurious,
    asm_irq_reschedule,
    asm_irq_tlb,
    _start_ap,
);

macro_rules! addr {
    ($f:expr) => {
        Addr($f as *const ())
    };
}

#[used]
#[link_section = ".vmm_header"]
static HEADER: KernelHeader<Addr> = KernelHeader {
    magic: HEADER_MAGIC,
    version: HEADER_VERSION,
    size: HEADER_SIZE as u32,
    exceptions: [
        addr!(asm_exc_divide_error),
        addr!(asm_exc_debug),
        addr!(asm_exc_nmi),
        addr!(asm_exc_int3),
        addr!(asm_exc_overflow),
        addr!(asm_exc_bounds),
        addr!(asm_exc_invalid_op),
        addr!(asm_exc_device_not_available),
        addr!(asm_exc_double_fault),
        addr!(asm_exc_coproc_segment_overrun),
        addr!(asm_exc_invalid_tss),
        addr!(asm_exc_segment_not_present),
        addr!(asm_exc_stack_segment),
        addr!(asm_exc_general_protection),
        addr!(asm_exc_page_fault),
        addr!(asm_exc_spurious),
        addr!(asm_exc_coprocessor_error),
        addr!(asm_exc_alignment_check),
        addr!(asm_exc_machine_check),
        addr!(asm_exc_simd_coprocessor_error),
        addr!(asm_exc_virtualization_exception),
        addr!(asm_exc_control_protection),
        addr!(asm_exc_reserved_22),
        addr!(asm_exc_reserved_23),
        addr!(asm_exc_reserved_24),
        addr!(asm_exc_reserved_25),
        addr!(asm_exc_reserved_26),
        addr!(asm_exc_reserved_27),
        addr!(asm_exc_hypervisor_injection),
        addr!(asm_exc_vmm_communication),
        addr!(asm_exc_security_exception),
        addr!(asm_exc_reserved_31),
    ],
    int80: addr!(entry_INT80),
    syscall: addr!(entry_SYSCALL_64),
    percpu: Addr(&raw const PERCPU as *const ()),
    timer: addr!(asm_irq_timer),
    serial: addr!(asm_irq_serial),
    spurious: addr!(asm_irq_spurious),
    ap_entry: addr!(_start_ap),
    reschedule: addr!(asm_irq_reschedule),
    tlb: addr!(asm_irq_tlb),
};
