//! `cargo +nightly fuzz run strace_decode`: see vmm::fuzzing::strace_decode.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmm::fuzzing::strace_decode(data));
