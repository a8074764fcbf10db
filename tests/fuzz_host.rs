//! The fuzz targets of `vmm::fuzzing` for a few seconds in every `cargo
//! test`, on proptest inputs with a fixed seed (so CI runs are repeatable):
//! mutations of real seeds (the built-in kernel, programs, vDSO, boot
//! archive, debugger sessions) and plain random bytes. The properties are
//! asserted inside the targets: no panic, cpio write→read round-trips, every
//! parse ends in Ok or Err. `cargo +nightly fuzz run TARGET` in fuzz/ runs
//! the same functions under libFuzzer for as long as you like.
//!
//! Each target prints how many inputs it ran (`--nocapture` to see them).
//! FUZZ_HOST_SCALE=N runs N times as many; FUZZ_HOST_SEED=N picks another seed.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use std::cell::Cell;
use std::time::Instant;
use vmm::boot::guest_image;
use vmm::fuzzing;

fn scale() -> u32 {
    std::env::var("FUZZ_HOST_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

fn seed() -> u64 {
    std::env::var("FUZZ_HOST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0076_6d6d) // "vmm"
}

/// Run `target` on `cases` inputs from `strategy`; print the count and time.
fn fuzz<S: Strategy>(name: &str, cases: u32, strategy: S, target: impl Fn(&S::Value)) {
    let cases = cases * scale();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed()),
        ..Config::default()
    });
    let execs = Cell::new(0u64);
    let t0 = Instant::now();
    let result = runner.run(&strategy, |input| {
        execs.set(execs.get() + 1);
        target(&input);
        Ok(())
    });
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "fuzz_host: {name}: {} executions in {secs:.2} s ({:.0}/s)",
        execs.get(),
        execs.get() as f64 / secs
    );
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

/// A change to a seed: a byte, a little-endian word (ELF offsets and sizes
/// are 2, 4 or 8 bytes), or a cut.
#[derive(Clone, Debug)]
enum Edit {
    Byte(usize, u8),
    Word(usize, u64, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Most of what a parser decides on is in the first kilobyte (ELF and
    // program headers, the first cpio headers).
    let pos = prop_oneof![3 => 0..128usize, 2 => 0..1024usize, 1 => any::<usize>()];
    let word = prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(u64::from(u32::MAX)),
        Just(1u64 << 63),
        0..0x1_0000u64,
        any::<u64>()
    ];
    prop_oneof![
        4 => (pos.clone(), any::<u8>()).prop_map(|(p, b)| Edit::Byte(p, b)),
        3 => (pos.clone(), word, prop::sample::select(vec![2usize, 4, 8])).prop_map(|(p, w, n)| Edit::Word(p, w, n)),
        1 => pos.prop_map(Edit::Truncate),
    ]
}

fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits {
        if b.is_empty() {
            break;
        }
        match *e {
            Edit::Byte(p, v) => {
                let i = p % b.len();
                b[i] = v;
            }
            Edit::Word(p, w, n) => {
                let i = p % b.len();
                let n = n.min(b.len() - i);
                b[i..i + n].copy_from_slice(&w.to_le_bytes()[..n]);
            }
            Edit::Truncate(p) => b.truncate(p % (b.len() + 1)),
        }
    }
    b
}

/// Seeds mutated by up to `max_edits` edits, or random bytes (1 in 5).
fn mutated(seeds: Vec<Vec<u8>>, max_edits: usize, random_len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (prop::sample::select(seeds), prop::collection::vec(edit(), 0..=max_edits))
            .prop_map(|(s, e)| apply(&s, &e)),
        1 => prop::collection::vec(any::<u8>(), 0..random_len),
    ]
}

#[test]
fn fuzz_elf_check() {
    let mut seeds: Vec<Vec<u8>> = guest_image::USER_PROGRAMS.iter().map(|(_, b)| b.to_vec()).collect();
    seeds.push(guest_image::VDSO.to_vec());
    seeds.push(guest_image::KERNEL.to_vec());
    fuzz("elf_check", 1000, mutated(seeds, 6, 512), |b| fuzzing::elf_check(b));
}

#[test]
fn fuzz_cpio_roundtrip() {
    let archive = vmm::boot::initrd::build(&[("init", b"\x7fELF\x02\x01\x01"), ("hello", b"hi"), ("x", b"")]).unwrap();
    let lists: Vec<Vec<u8>> = vec![b"\x04init\x05\x7fELF\x02\x05hello\x02hi".to_vec(), archive];
    fuzz("cpio_roundtrip", 5000, mutated(lists, 6, 600), |b| {
        fuzzing::cpio_roundtrip(b)
    });
}

#[test]
fn fuzz_debug_command() {
    let words = [
        "stepi", "si", "nexti", "continue", "c", "break", "b", "watch", "delete", "info", "regs", "sregs", "gdt",
        "idt", "tss", "cr", "msr", "check", "x", "x/", "pt", "disas", "bt", "help", "quit",
    ];
    let word = prop::sample::select(words.to_vec());
    let spec = "[0-9]{0,22}[bhwgxq]{0,2}";
    let arg = prop_oneof![
        "[0-9]{1,22}",
        "0x[0-9a-fA-F]{1,18}",
        "\\$(rsp|rip|rax|zz)(\\+0x[0-9a-f]{1,17})?",
        "[a-z_]{1,12}(\\+[0-9]{1,21})?",
        Just("for".to_string()),
        Just("at".to_string()),
        Just("cpl".to_string()),
        Just("stack".to_string()),
        ".{0,8}",
    ];
    let line = (word, spec, prop::collection::vec(arg, 0..5), any::<bool>()).prop_map(|(w, s, args, json)| {
        let mut l = if w == "x/" { format!("x/{s}") } else { w.to_string() };
        for a in args {
            l.push(' ');
            l.push_str(&a);
        }
        if json {
            l.push_str(" --json");
        }
        l.into_bytes()
    });
    let strategy = prop_oneof![4 => line, 1 => prop::collection::vec(any::<u8>(), 0..64)];
    fuzz("debug_command", 10000, strategy, |b| fuzzing::debug_command(b));
}

#[test]
fn fuzz_strace_decode() {
    // Mode 3 (fixed page tables, a known call), all arguments in the
    // window: strings, buffers, iovecs and argv arrays are read.
    let mut s = vec![3u8, 0, 0, 0x3f];
    s.extend(std::iter::repeat_n(0u8, 8 * 9));
    s.extend(b"hello\0world\0".iter().cycle().take(600));
    let raw = prop::collection::vec(any::<u8>(), 0..400);
    let strategy = prop_oneof![3 => mutated(vec![s], 10, 200), 1 => raw];
    fuzz("strace_decode", 4000, strategy, |b| fuzzing::strace_decode(b));
}
