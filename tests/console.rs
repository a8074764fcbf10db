//! Console output through the write port (`vmm_abi::ports::CONSOLE_WRITE`):
//! one VM exit per write() instead of one per byte, bytes intact, and the
//! edges of a user buffer (unmapped pages, kernel pointers, huge lengths)
//! answered as Linux answers them for a regular file. Also the user copies' fault fixup, seen
//! through writes to the kernel's /dev/null, which copies its input in.

mod common;
use common::programs::programs;
use common::vmm;

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// The `exits=N` of a `--stats` line.
fn exits(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("vmm: stats "))
        .unwrap_or_else(|| panic!("no stats line in\n{stderr}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("exits="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exits= in {line}"))
}

#[test]
fn the_boot_banner_takes_at_most_5_exits() {
    let r = vmm(&["run", "--cmdline", "init=none", "--stats"]);
    r.assert_status(0)
        .stdout_has("kernel: CPL 0 CS 0x8")
        .stdout_has("kernel: no init program\n");
    let n = exits(&r.stderr);
    assert!(n <= 5, "the banner took {n} exits (was one per byte)\n{}", r.stderr);
}

#[test]
fn a_mebibyte_from_ring3_in_4_kib_writes_takes_at_most_300_exits() {
    let r = vmm(&["run", "--stats", "--", path(&programs().spew), "1048576"]);
    r.assert_status(0);
    assert_eq!(r.stdout.len(), 1 << 20);
    assert!(r.stdout.bytes().all(|b| b == b'x'));
    let n = exits(&r.stderr);
    assert!(n <= 300, "1 MiB took {n} exits\n{}", r.stderr);
}

#[test]
fn a_mebibyte_in_one_write_arrives_intact() {
    let n = 1 << 20;
    let r = vmm(&[
        "run",
        "--stats",
        "--",
        path(&programs().conwrite),
        "big",
        &n.to_string(),
    ]);
    r.assert_status(0);
    let want: String = (0..n)
        .map(|i| {
            if i % 64 == 63 {
                '\n'
            } else {
                (b'a' + (i % 26) as u8) as char
            }
        })
        .collect();
    assert!(r.stdout.starts_with(&want), "the 1 MiB differs");
    assert_eq!(&r.stdout[n..], format!("\nbig: wrote {n}\n"));
    // 64 KiB per exit: 16 for the data.
    let e = exits(&r.stderr);
    assert!(e <= 40, "one 1 MiB write took {e} exits\n{}", r.stderr);
}

#[test]
fn buffers_at_the_edges_give_short_counts_or_efault_as_linux() {
    let r = vmm(&["run", "--", path(&programs().conwrite), "edges"]);
    assert!(!r.stdout.contains("FAILED"), "{}", r.stdout);
    r.assert_status(0)
        // The 100 bytes before the unmapped page, and nothing after them.
        .stdout_has(
            "console-straddle<STUVWXYZABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMNOPQRSTUVWXYZ\
             ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMN\n\
             console straddling into an unmapped page: got 100 want 100 ok",
        )
        .stdout_has("console from a kernel pointer: got -14 want -14 ok")
        .stdout_has("console with a huge length: got -14 want -14 ok")
        .stdout_has(
            "console-long<OPQRSTUVWXYZABCDEFGHIJKLMN\n\
             console with a length to the top of user space: got 26 want 26 ok",
        )
        .stdout_has(
            "console-writev<EFGHIJKLMN\n\
             console writev stopping at the hole: got 10 want 10 ok",
        )
        // copy_user_generic's fixup counts the bytes before the fault exactly,
        // in the qword loop's faulting qword too.
        .stdout_has("/dev/null straddling, 3 bytes before the hole: got 3 want 3 ok")
        .stdout_has("/dev/null straddling, 100 bytes before the hole: got 100 want 100 ok")
        .stdout_has("/dev/null from 8 bytes in, asked for two pages: got 4088 want 4088 ok");
}

#[test]
fn strace_still_shows_console_writes_and_their_results() {
    let r = vmm(&["run", "--strace", "--", path(&programs().conwrite), "edges"]);
    r.assert_status(0)
        .stderr_has("write(1, \"STUVWXYZABCDEFGHIJKLMNOPQRSTUVWX\"..., 200) = 100")
        .stderr_has("write(1, 0xffffffff80100000, 16) = -1 EFAULT (Bad address)");
}
