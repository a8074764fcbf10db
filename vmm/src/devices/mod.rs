//! The VMM's emulated devices: the 16550 UART and the console ports, and the
//! host terminal behind them.

pub mod cmos;
pub mod console;
pub mod i8042;
pub mod serial;
pub mod tty;
