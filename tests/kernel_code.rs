//! Static checks of the built-in kernel's machine code: on a PVM host ring 0
//! runs in KVM's instruction emulator, which kills the vCPU on rdtscp, int3,
//! cmpxchg16b, vmcall/vmmcall, and cannot emulate SSE arithmetic. Every
//! function of the kernel is disassembled (iced-x86) and checked.

use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
use vmm::boot::guest_image::KERNEL;

#[test]
fn no_instruction_the_pvm_emulator_rejects_in_ring0() {
    let elf = object::File::parse(KERNEL).unwrap();
    let text = elf.section_by_name(".text").unwrap();
    let (base, data) = (text.address(), text.data().unwrap());
    let mut bad = Vec::new();
    let mut functions = 0;
    for sym in elf.symbols().filter(|s| s.kind() == SymbolKind::Text && s.size() > 0) {
        let (start, size) = (sym.address(), sym.size());
        if start < base || start + size > base + data.len() as u64 {
            continue;
        }
        functions += 1;
        let body = &data[(start - base) as usize..(start - base + size) as usize];
        let mut dec = Decoder::with_ip(64, body, start, DecoderOptions::NONE);
        while dec.can_decode() {
            let insn = dec.decode();
            let forbidden = matches!(
                insn.mnemonic(),
                Mnemonic::Rdtscp | Mnemonic::Int3 | Mnemonic::Cmpxchg16b | Mnemonic::Vmcall | Mnemonic::Vmmcall
            );
            let vector = (0..insn.op_count()).any(|i| {
                insn.op_kind(i) == OpKind::Register && {
                    let r = insn.op_register(i) as u32;
                    [
                        (Register::XMM0, Register::XMM31),
                        (Register::YMM0, Register::YMM31),
                        (Register::ZMM0, Register::ZMM31),
                        (Register::MM0, Register::MM7),
                    ]
                    .iter()
                    .any(|(lo, hi)| (*lo as u32..=*hi as u32).contains(&r))
                }
            });
            // fxsave/fxrstor only move the user's SSE state at a context switch.
            let state_save = matches!(insn.mnemonic(), Mnemonic::Fxsave64 | Mnemonic::Fxrstor64);
            if (forbidden || vector) && !state_save {
                bad.push(format!("{:#x} in {}: {insn}", insn.ip(), sym.name().unwrap_or("?")));
            }
        }
    }
    assert!(functions > 50, "only {functions} functions found");
    assert!(
        bad.is_empty(),
        "instructions PVM's ring-0 emulator cannot run:\n{}",
        bad.join("\n")
    );
}

/// Every `hlt` in the kernel follows `sti` (the idle loop: the interrupt
/// shadow of `sti` covers the `hlt`, so a wake-up cannot slip in between and
/// leave the CPU asleep with a runnable process) or `cli` (halt for good,
/// after the VMM was told to stop). On PVM both run in the ring-0 emulator:
/// anything else before a `hlt` is a bug to look at.
#[test]
fn every_hlt_follows_sti_or_cli() {
    let elf = object::File::parse(KERNEL).unwrap();
    let text = elf.section_by_name(".text").unwrap();
    let (base, data) = (text.address(), text.data().unwrap());
    let (mut idle, mut stop, mut bad) = (0, 0, Vec::new());
    for sym in elf.symbols().filter(|s| s.kind() == SymbolKind::Text && s.size() > 0) {
        let (start, size) = (sym.address(), sym.size());
        if start < base || start + size > base + data.len() as u64 {
            continue;
        }
        let body = &data[(start - base) as usize..(start - base + size) as usize];
        let mut dec = Decoder::with_ip(64, body, start, DecoderOptions::NONE);
        let mut prev = Mnemonic::INVALID;
        while dec.can_decode() {
            let insn = dec.decode();
            if insn.mnemonic() == Mnemonic::Hlt {
                match prev {
                    Mnemonic::Sti => idle += 1,
                    Mnemonic::Cli => stop += 1,
                    _ => bad.push(format!(
                        "{:#x} in {}: hlt after {prev:?}",
                        insn.ip(),
                        sym.name().unwrap_or("?")
                    )),
                }
            }
            prev = insn.mnemonic();
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(idle >= 1, "no `sti; hlt` idle loop found");
    assert!(stop >= 1, "no `cli; hlt` found");
}
