//! `bench`: system-call round trips timed with the TSC (being written).
#![no_std]
#![no_main]

use guest_user::println;

#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    println!("bench: not implemented yet");
    1
}
