//! `cargo +nightly fuzz run elf_check`: see vmm::fuzzing::elf_check.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmm::fuzzing::elf_check(data));
