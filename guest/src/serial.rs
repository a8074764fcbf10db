//! COM1 output. The VMM's UART (vm-superio) never holds a byte back, so the
//! driver skips polling LSR.THRE: that halves the VM exits per character.

use crate::io::outb;
use core::fmt;
use vmm_abi::ports::COM1;

pub struct Com1;

impl fmt::Write for Com1 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

pub fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        // SAFETY: the UART's transmit register; the VMM takes every byte.
        unsafe { outb(COM1, b) };
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    let _ = fmt::Write::write_fmt(&mut Com1, args);
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::serial::_print(format_args!($($arg)*)));
}

#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ($crate::print!("{}\n", format_args!($($arg)*)));
}
