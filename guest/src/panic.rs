//! Kernel panics: print the message and let the VMM dump the CPU state.

use crate::{power, println};

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("kernel panic: {}", info);
    power::panic_vm()
}

/// The prebuilt `core` still references this symbol; with panic = "abort" it
/// is never called.
#[no_mangle]
extern "C" fn rust_eh_personality() {}
