//! The one-screen report printed when a guest does not exit cleanly.

use crate::arch::gdt::split_selector;
use crate::vstate::vm::{Outcome, Vm};
use kvm_bindings::kvm_segment;

fn seg(name: &str, s: &kvm_segment) -> String {
    let (index, ti, rpl) = split_selector(s.selector);
    format!(
        "{name:<2} {:#06x} (index {index}, {}, RPL {rpl})  DPL {} type {:#x} L={} base {:#x}",
        s.selector,
        if ti == 0 { "GDT" } else { "LDT" },
        s.dpl,
        s.type_,
        s.l,
        s.base
    )
}

/// Registers, privilege state and the last serial output.
pub fn crash_report(vm: &mut Vm, outcome: &Outcome) -> String {
    let mut r = format!("vmm: {}\n", outcome.describe());
    let (cpu, vcpu) = vm.ended_vcpu();
    if vm.cpus() > 1 {
        r += &format!("  on CPU {cpu} of {}\n", vm.cpus());
    }
    match (vcpu.get_regs(), vcpu.get_sregs()) {
        (Ok(regs), Ok(sregs)) => {
            let sym = vm.kernel.symbols().describe(regs.rip);
            r += &format!("  RIP    {sym}\n");
            r += &format!("  CPL    {}\n", sregs.cs.selector & 3);
            r += &format!("  {}\n", seg("CS", &sregs.cs));
            r += &format!("  {}\n", seg("SS", &sregs.ss));
            r += &format!("  RSP    {:#018x}  RFLAGS {:#x}\n", regs.rsp, regs.rflags);
            r += &format!(
                "  RAX {:#x} RBX {:#x} RCX {:#x} RDX {:#x} RSI {:#x} RDI {:#x}\n",
                regs.rax, regs.rbx, regs.rcx, regs.rdx, regs.rsi, regs.rdi
            );
            r += &format!(
                "  CR0 {:#x}  CR2 {:#x}  CR3 {:#x}  CR4 {:#x}  EFER {:#x}\n",
                sregs.cr0, sregs.cr2, sregs.cr3, sregs.cr4, sregs.efer
            );
        }
        (Err(e), _) | (_, Err(e)) => r += &format!("  (registers unavailable: {e})\n"),
    }
    let tail = vm.com1.output().tail();
    if !tail.is_empty() {
        r += "  last serial output:\n";
        let lines: Vec<&str> = tail.lines().collect();
        for line in &lines[lines.len().saturating_sub(10)..] {
            r += &format!("  | {line}\n");
        }
    }
    r += &format!("  vmm exit status {}\n", outcome.status());
    r
}
