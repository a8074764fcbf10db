//! The VMM's emulated devices: the 16550 UART and the console ports, and the
//! host terminal behind them.

pub mod console;
pub mod serial;
pub mod tty;
