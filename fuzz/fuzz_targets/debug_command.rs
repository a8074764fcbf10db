//! `cargo +nightly fuzz run debug_command`: see vmm::fuzzing::debug_command.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmm::fuzzing::debug_command(data));
