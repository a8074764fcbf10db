//! The VMM's emulated devices: the 16550 UART and the console ports.

pub mod console;
pub mod serial;
