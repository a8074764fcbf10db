//! `cargo +nightly fuzz run cpio_roundtrip`: see vmm::fuzzing::cpio_roundtrip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmm::fuzzing::cpio_roundtrip(data));
