//! What the debugger's dumps show, as values: each is a struct that prints
//! itself for people (`Display`, the text the commands print) and serializes
//! for programs (`Serialize`, what `--json` prints). They are built from the
//! stopped guest in inspect.rs; nothing here touches KVM.
//!
//! - registers.rs: `regs`, `sregs`, `cr`, `msr`;
//! - tables.rs: `gdt`, `idt`, `tss`, `check`;
//! - memory.rs: `x`, `disas`, `bt`, `info breakpoints` (the page walk, `pt`,
//!   is introspect::memory's `PageWalk`).

mod memory;
mod registers;
mod tables;

pub use memory::{Backtrace, BreakpointRow, Breakpoints, Disassembly, Examine, Frame, Instruction};
pub use registers::{ControlRegs, FlagsValue, MsrRow, Msrs, Regs, Segment, Sregs, StarView};
pub use tables::{Check, Gdt, GdtEntry, Idt, IdtGate, Tss};

use serde::Serialize;
use std::fmt;

/// Print `dump`: one line of JSON (keys sorted, as `serde_json::Value`
/// keeps them) with `--json`, else its text.
pub fn show<D: Serialize + fmt::Display>(dump: &D, json: bool) -> Result<(), serde_json::Error> {
    if json {
        println!("{}", serde_json::to_value(dump)?);
    } else {
        print!("{dump}");
    }
    Ok(())
}
