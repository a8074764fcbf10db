//! `hello [--no-int80]`: greets from ring 3 twice, once through `syscall` and
//! once through `int 0x80`. The guest kernel's `int 0x80` takes the same
//! 64-bit table and registers as `syscall`; Linux's takes the i386 table
//! (where 1 is exit), so on a Linux host pass `--no-int80`.
#![no_std]
#![no_main]

use core::arch::asm;
use guest_user::{args, println};

#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    let cs: u16;
    // SAFETY: reading CS is unprivileged.
    unsafe { asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags)) };
    println!("Hello from ring 3 via syscall (CPL {})", cs & 3);

    if args().get(1) != Some(&"--no-int80") {
        let msg = b"Hello from ring 3 via int 0x80\n";
        let ret: isize;
        // SAFETY: write(1, msg, len) in the guest kernel's int 0x80 ABI.
        // rcx/r11 are declared clobbered in case the kernel treats it like syscall.
        unsafe {
            asm!("int 0x80", inlateout("rax") 1isize => ret, in("rdi") 1usize,
                 in("rsi") msg.as_ptr(), in("rdx") msg.len(),
                 lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        if ret != msg.len() as isize {
            println!("hello: int 0x80 write returned {}", ret);
            return 1;
        }
    }
    0
}
