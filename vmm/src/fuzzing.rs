//! Fuzz entry points: the host code that parses bytes it does not trust,
//! each as a function of arbitrary bytes that must return — no panic, no
//! abort, no unbounded allocation or loop — and that asserts its properties.
//!
//! The same functions run under libFuzzer (`fuzz/`, `cargo +nightly fuzz run
//! TARGET`, for long runs) and for a few seconds in every `cargo test`
//! (tests/fuzz_host.rs, with proptest inputs), so a crash found by either
//! is reproduced by both.
//!
//! | target | what it parses | from |
//! |---|---|---|
//! | [`elf_check`] | kernel image and program checks, symbols, loading | files on the host |
//! | [`cpio_roundtrip`] | the boot archive reader and writer (`vmm_abi::cpio`) | the guest kernel reads it |
//! | [`debug_command`] | the debugger's command line | the user |
//! | [`strace_decode`] | strace's decoding of arguments and trap frames | guest memory and registers |

use crate::boot::loader::{self, KernelImage};
use crate::debug::parse::{self, Command, MAX_CONTINUE, MAX_DISAS, MAX_STEPI, MAX_X_UNITS};
use crate::{boot::initrd, introspect::symbols::Symbols, trace::strace};
use std::borrow::Cow;
use std::path::Path;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_abi::cpio;
use vmm_abi::layout::DIRECT_MAP_BASE;

/// Guest memory a loaded kernel image may occupy here (1 MiB boot area + 3 MiB).
const LOAD_MEM: u64 = 4 << 20;

thread_local! {
    /// Reused between runs: creating guest memory is an mmap each time.
    static LOAD: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), LOAD_MEM as usize)]).unwrap();
    static STRACE_MEM: GuestMemoryMmap =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), STRACE_MEM_LEN as usize)]).unwrap();
}

/// The ELF checks of `vmm run IMAGE` and `vmm run -- PROGRAM`, then, for
/// what passes, the symbol table and the load into guest memory.
pub fn elf_check(data: &[u8]) {
    let path = Path::new("fuzz-input");
    let header = loader::check_elf_header(path, data);
    let program_header = loader::check_program_header(path, data);
    let program = loader::check_user_program(path, data);
    if program.is_ok() {
        assert!(
            program_header.is_ok() && header.is_ok(),
            "a program passed with a bad header"
        );
    }
    // Where the bytes lie must not change the verdict (include_bytes! data
    // is not aligned; a heap copy is).
    let mut shifted = vec![0u8; data.len() + 1];
    shifted[1..].copy_from_slice(data);
    let program_shifted = loader::check_user_program(path, &shifted[1..]);
    assert_eq!(
        program.as_ref().map_err(ToString::to_string),
        program_shifted.as_ref().map_err(ToString::to_string),
        "the verdict depends on alignment"
    );
    // The program's symbols, as launch::ProgramSymbols reads them.
    loader::with_aligned(data, |data| {
        if let Ok(f) = object::File::parse(data) {
            let s = Symbols::from_object(&f);
            let _ = s.describe(0x401000);
            let _ = s.address_of("_start");
        }
    });
    match KernelImage::parse(path, Cow::Owned(data.to_vec())) {
        Ok(k) => {
            assert!(header.is_ok(), "a kernel passed with a bad header");
            assert!(!k.segments.is_empty());
            let _ = k.symbols().describe(k.entry);
            // What Vm::new does next, in a small guest.
            if k.check_fits(LOAD_MEM).is_ok() {
                LOAD.with(|mem| {
                    let _ = k.load(mem);
                    let _ = crate::vstate::vm::build_page_tables(mem, LOAD_MEM, &k, false);
                });
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// Split `data` into `(name, contents)` files: a length byte, the name, a
/// length byte, the contents, and so on.
fn files_from(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut rest = data;
    while let Some((&n, r)) = rest.split_first() {
        let (name, r) = r.split_at((n as usize % 24).min(r.len()));
        let Some((&m, r)) = r.split_first() else { break };
        let (contents, r) = r.split_at((m as usize).min(r.len()));
        files.push((String::from_utf8_lossy(name).into_owned(), contents.to_vec()));
        rest = r;
    }
    files
}

/// The boot archive: arbitrary bytes through the kernel's reader; files made
/// from the bytes written and read back unchanged; and the written archive
/// with one byte changed read again.
pub fn cpio_roundtrip(data: &[u8]) {
    // The kernel's reader on arbitrary bytes: it must end (each entry
    // advances at least a header) with entries or an error.
    let mut n = 0;
    for e in cpio::entries(data) {
        n += 1;
        assert!(n <= data.len() / cpio::HEADER_LEN + 1, "reader does not advance");
        if let Ok(e) = e {
            assert!(e.name.len() < data.len() && e.data.len() <= data.len());
        }
    }
    let _ = cpio::find(data, b"init");

    let files = files_from(data);
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let archive = match initrd::build(&refs) {
        Ok(a) => a,
        Err(e) => {
            assert!(
                files
                    .iter()
                    .any(|(n, _)| n.contains('\0') || n.as_bytes() == cpio::TRAILER),
                "build refused valid names: {e}"
            );
            return;
        }
    };
    assert_eq!(archive.len() % 4, 0);
    let back: Vec<(&[u8], &[u8])> = cpio::entries(&archive)
        .map(|e| e.map(|e| (e.name, e.data)))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("the reader rejects what the writer wrote: {e:?}"));
    let want: Vec<(&[u8], &[u8])> = refs.iter().map(|(n, d)| (n.as_bytes(), *d)).collect();
    assert_eq!(back, want, "round trip changed the files");
    for (name, contents) in &refs {
        let first = refs.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(cpio::find(&archive, name.as_bytes()), Some(first), "find {name:?}");
        let _ = contents;
    }
    // One byte changed: still no panic.
    if let (Some(&at), Some(&v)) = (data.first(), data.last()) {
        let mut bent = archive.clone();
        let i = (at as usize * 7 + data.len()) % bent.len();
        bent[i] = v;
        for e in cpio::entries(&bent) {
            let _ = e;
        }
    }
}

/// One debugger command line. What parses must be within the bounds that
/// keep every command finite.
pub fn debug_command(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    for l in line.split('\n') {
        match parse::parse(l) {
            Ok(Some(p)) => match p.cmd {
                Command::X { count, size, .. } => {
                    assert!((1..=MAX_X_UNITS).contains(&count) && [1, 2, 4, 8].contains(&size))
                }
                Command::Disas(n) => assert!(n <= MAX_DISAS),
                Command::Stepi(n) => assert!(n <= MAX_STEPI),
                Command::Continue(n) => assert!((1..=MAX_CONTINUE).contains(&n)),
                Command::Watch(_, len) => assert!([1, 2, 4, 8].contains(&len)),
                Command::Check { cpl, .. } => assert!(cpl.unwrap_or(0) <= 3),
                _ => {}
            },
            Ok(None) => assert!(l.split_whitespace().next().is_none() || l.trim() == "--json"),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}

/// Guest memory for [`strace_decode`]: 16 pages.
const STRACE_MEM_LEN: u64 = 64 << 10;
/// In the fixed-tables mode: four page-table pages at 0x1000..0x5000 map
/// user addresses USER_WINDOW.. onto physical 0x8000..0x10000.
const USER_WINDOW: u64 = 0x40_0000;

/// strace's decoding of a system call from guest memory and registers the
/// guest controls: the call number, six arguments, the result, page tables
/// and the bytes they map, and a trap frame address.
///
/// Input: byte 0 mode (bit 0: fixed page tables mapping a window of the
/// input at USER_WINDOW; bit 1: the number is one strace knows), bytes 1..3
/// the number, byte 3 which arguments point into the window, then six
/// arguments, the result, CR3 and a frame address (8 bytes each, little
/// endian), then guest memory.
pub fn strace_decode(data: &[u8]) {
    strace_lines(data);
}

/// [`strace_decode`], returning the lines it decoded.
fn strace_lines(data: &[u8]) -> Vec<String> {
    let word = |i: usize| -> u64 {
        let mut b = [0u8; 8];
        for (k, x) in b.iter_mut().enumerate() {
            *x = data.get(4 + 8 * i + k).copied().unwrap_or(0);
        }
        u64::from_le_bytes(b)
    };
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let (mode, in_window) = (byte(0), byte(3));
    let fixed_tables = mode & 1 != 0;
    let raw_nr = u64::from(u16::from_le_bytes([byte(1), byte(2)]));
    let nr = if mode & 2 != 0 {
        let known: Vec<u64> = strace::known_calls().collect();
        known[raw_nr as usize % known.len()]
    } else {
        raw_nr
    };
    let mut args = [0u64; 6];
    for (i, a) in args.iter_mut().enumerate() {
        let w = word(i);
        *a = if in_window & (1 << i) != 0 {
            USER_WINDOW + w % (STRACE_MEM_LEN - 0x8000)
        } else {
            w
        };
    }
    let ret = word(6) as i64;
    let memory = data.get(4 + 8 * 9..).unwrap_or(&[]);
    STRACE_MEM.with(|mem| {
        let mut lines = Vec::new();
        mem.write_slice(&[0u8; STRACE_MEM_LEN as usize], GuestAddress(0))
            .unwrap();
        let cr3 = if fixed_tables {
            let n = memory.len().min(0x8000);
            mem.write_slice(&memory[..n], GuestAddress(0x8000)).unwrap();
            let entry = |table: u64, index: u64, target: u64| {
                mem.write_obj(target | 0x7, GuestAddress(table + 8 * index)).unwrap();
            };
            entry(0x1000, 0, 0x2000); // PML4[0] -> PDPT
            entry(0x2000, 0, 0x3000); // PDPT[0] -> PD
            entry(0x3000, 2, 0x4000); // PD[2] (0x400000) -> PT
            for i in 0..8 {
                entry(0x4000, i, 0x8000 + 0x1000 * i);
            }
            0x1000
        } else {
            let n = memory.len().min(STRACE_MEM_LEN as usize);
            mem.write_slice(&memory[..n], GuestAddress(0)).unwrap();
            word(7)
        };
        let pid = u64::from(byte(1));
        for r in [Some(ret), None] {
            let line = strace::decode_call(mem, cr3, pid, nr, args, r);
            // Every string and buffer is cut at 32 bytes, four iovecs, eight argv entries.
            assert!(line.len() < 8192, "strace line of {} bytes", line.len());
            lines.push(line);
        }
        for frame in [word(8), DIRECT_MAP_BASE.wrapping_add(word(8) % STRACE_MEM_LEN)] {
            let _ = strace::Strace::read_frame(mem, frame);
        }
        lines
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixed page tables reach the input: a write(1, buf, 5) whose buffer
    /// is the first bytes of the window.
    #[test]
    fn strace_input_in_the_window_is_decoded() {
        let mut input = vec![1u8, 1, 0, 0b10]; // fixed tables, nr 1, arg 1 in the window
        for w in [1u64, 0, 5, 0, 0, 0, 5, 0, 0] {
            input.extend(w.to_le_bytes());
        }
        input.extend(b"hello");
        let lines = strace_lines(&input);
        assert_eq!(lines[0], "[pid 1] write(1, \"hello\", 5) = 5");
        assert_eq!(lines[1], "[pid 1] write(1, \"hello\", 5) = ?");
    }

    #[test]
    fn the_seeds_pass_their_own_checks() {
        elf_check(crate::boot::guest_image::KERNEL);
        for (_, p) in crate::boot::guest_image::USER_PROGRAMS.iter() {
            elf_check(p);
            loader::check_user_program(Path::new("p"), p).unwrap();
        }
        cpio_roundtrip(b"\x04init\x05\x7fELF\x02");
        debug_command(b"x/2g $rsp\nstepi 3\n");
    }
}
