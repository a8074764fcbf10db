//! Runtime shared by the ring-3 programs: entry point, syscalls, printing.
#![no_std]
// The `unsafe fn`s are raw syscalls: their contract is the kernel's (valid
// pointers for what the syscall reads or writes), stated once in `rt`.
#![allow(clippy::missing_safety_doc)]

pub mod rt;
// The kernel's own memcpy & co.: one file serves both freestanding builds.
#[path = "../../guest/src/string.rs"]
mod string;
// The kernel's print! line buffer, shared the same way.
#[path = "../../guest/src/linebuf.rs"]
mod linebuf;

pub use rt::*;
