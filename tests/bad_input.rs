//! Hostile and mistaken input to the `vmm` command line: every count and
//! duration is bounded, and files are checked before they are read. Each
//! case must end with a clear message naming the problem and the fix —
//! never a Rust panic (status 101), an abort (134), or a hang.

mod common;
use common::{vmm, vmm_bin, Run};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `vmm ARGS`, killed (and the test failed) if it runs longer than `limit`.
fn vmm_within(args: &[&str], limit: Duration) -> (Run, Duration) {
    let t0 = Instant::now();
    let child = Command::new(vmm_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start vmm");
    let pid = child.id();
    // Collect the output on a thread, so a chatty child never blocks on a full pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let out = match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: pid is our own child, not yet reaped (the thread still waits on it).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("vmm {args:?} still running after {limit:?}: it hangs");
        }
    };
    let run = Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (run, t0.elapsed())
}

/// A clean refusal: the status expected, the message, and no panic.
fn refused(r: &Run, status: i32, says: &str) {
    assert!(!r.stderr.contains("panicked"), "vmm panicked\n--- stderr\n{}", r.stderr);
    r.assert_status(status).stderr_has(says);
}

fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vmm-bad-input-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// --- durations and counts on the command line -------------------------------

#[test]
fn timeouts_duration_cannot_hold_are_usage_errors() {
    for t in ["1e30", "1e19", "31536001", "inf", "nan", "-1", "ten"] {
        let arg = format!("--timeout={t}");
        let r = vmm(&["run", &arg, "--cmdline", "init=none"]);
        refused(&r, 2, "--timeout");
        assert!(
            r.stderr.contains("at most 31536000") || r.stderr.contains("positive") || r.stderr.contains("not a number"),
            "{t}: {}",
            r.stderr
        );
    }
    // The debugger and the benchmark share the parser.
    refused(&vmm(&["debug", "--batch", "--timeout", "1e30"]), 2, "one year");
    refused(&vmm(&["bench", "--quick", "--timeout", "1e19"]), 2, "one year");
    // The bound itself is accepted.
    vmm(&["run", "--timeout", "31536000", "--cmdline", "init=none"]).assert_status(0);
}

#[test]
fn step_depth_iteration_and_memory_counts_are_bounded() {
    refused(
        &vmm(&["run", "--break-at", "_start", "--stepi", "18446744073709551615"]),
        2,
        "--stepi",
    );
    refused(
        &vmm(&["trace", "--funcgraph", "do_trap", "--depth", "99999999999"]),
        2,
        "--depth",
    );
    refused(&vmm(&["trace", "--funcgraph", "do_trap", "--depth", "0"]), 2, "--depth");
    refused(&vmm(&["bench", "--iters", "4294967296"]), 2, "--iters");
    refused(
        &vmm(&["run", "--mem", "18446744073709551615"]),
        245,
        "is too large: at most 65536 MiB",
    );
}

/// `vmm debug --batch -x CMD`: refused with `says`, exit status 1, quickly.
fn debug_refuses(cmd: &str, says: &str) {
    let (r, took) = vmm_within(&["debug", "--batch", "-x", cmd], Duration::from_secs(30));
    refused(&r, 1, says);
    assert!(took < Duration::from_secs(10), "{cmd} took {took:?}");
}

#[test]
fn debugger_counts_are_bounded() {
    let too_large = "is too large (at most";
    debug_refuses(
        "x/18446744073709551615b $rsp",
        "x: count 18446744073709551615 is too large (at most 65536 units; use several x commands)",
    );
    debug_refuses("x/99999999999g $rsp", "x: count 99999999999 is too large");
    debug_refuses("x/4611686018427387904g $rsp", too_large);
    debug_refuses("disas 18446744073709551615", "disas: 18446744073709551615 is too large");
    debug_refuses("disas 99999999999", too_large);
    debug_refuses(
        "stepi 99999999999",
        "stepi: 99999999999 is too large (at most 1000000 steps",
    );
    debug_refuses("continue 18446744073709551615", too_large);
    debug_refuses("watch 0x1000 264", "1, 2, 4 or 8 bytes");
    debug_refuses("check 0x10010", "selectors are 16 bits");
    debug_refuses("check 0x10 at cpl 259", "privilege levels are 0..3");
    debug_refuses("idt 0x180", "vectors are 0..255");
    debug_refuses("x/4g 0xfffffffffffffff8", "past the end of the address space");
    debug_refuses(
        "x/2g $rsp+0xffffffffffffffff",
        "past the end of the 64-bit address space",
    );
}

#[test]
fn debugger_largest_counts_still_work() {
    let (r, _) = vmm_within(
        &[
            "debug",
            "--batch",
            "-x",
            "x/65536b 0xffff888000000000",
            "-x",
            "disas 4096",
        ],
        Duration::from_secs(60),
    );
    r.assert_status(0);
    assert!(r.stdout.lines().count() > 4096, "{}", &r.stdout[..200]);
}

// --- files checked before they are read --------------------------------------

/// 64 bytes of an x86-64 ET_EXEC ELF header, then nothing.
fn elf_header_only() -> Vec<u8> {
    let mut b = vec![0u8; 64];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2; // ELFCLASS64
    b[5] = 1; // little-endian
    b[16] = 2; // ET_EXEC
    b[18] = 62; // EM_X86_64
    b
}

/// `vmm run FILE` and `vmm run -- FILE`, each refused with `says` in well under
/// a second of work (the limit allows for a loaded machine).
fn both_refuse(file: &Path, says: &str) {
    for args in [vec!["run", s(file)], vec!["run", "--", s(file)]] {
        let (r, took) = vmm_within(&args, Duration::from_secs(20));
        refused(&r, 245, says);
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
    }
}

#[test]
fn a_sparse_4gib_file_is_refused_without_being_read() {
    let d = scratch_dir("sparse");
    let zeros = d.join("sparse");
    std::fs::File::create(&zeros).unwrap().set_len(4 << 30).unwrap();
    both_refuse(&zeros, "is not an ELF file");
    // With a valid header, the size is what gives it away.
    let elf = d.join("sparse-elf");
    std::fs::write(&elf, elf_header_only()).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&elf)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    both_refuse(
        &elf,
        "is 4294967296 bytes, more than the guest's 64 MiB of memory (--mem)",
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn devices_fifos_and_directories_are_refused() {
    both_refuse(
        Path::new("/dev/zero"),
        "/dev/zero is a character device, not a regular file",
    );
    let d = scratch_dir("special");
    let fifo = d.join("fifo");
    let c = std::ffi::CString::new(s(&fifo)).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    both_refuse(&fifo, "is a FIFO (named pipe), not a regular file");
    both_refuse(&d, "is a directory, not a regular file");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_truncated_elf_is_malformed_not_a_panic() {
    let d = scratch_dir("truncated");
    let f = d.join("header-only");
    std::fs::write(&f, elf_header_only()).unwrap();
    both_refuse(&f, "is a malformed ELF");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn the_file_size_limit_follows_mem() {
    let d = scratch_dir("mem");
    let f = d.join("big");
    std::fs::write(&f, elf_header_only()).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(3 << 20)
        .unwrap();
    let (r, _) = vmm_within(&["run", "--mem", "2", "--", s(&f)], Duration::from_secs(20));
    refused(&r, 245, "more than the guest's 2 MiB of memory (--mem)");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_program_named_like_the_cpio_trailer_is_refused() {
    let d = scratch_dir("trailer");
    let f = d.join("TRAILER!!!");
    std::fs::copy(vmm::boot::guest_image::USER_PROGRAM_PATHS[1].1, &f).unwrap();
    let (r, _) = vmm_within(&["run", "--", s(&f)], Duration::from_secs(20));
    refused(&r, 245, "that name ends a cpio archive; rename the file");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn cpu_counts_are_bounded_and_tools_for_one_cpu_say_so() {
    refused(&vmm(&["run", "--cpus", "0"]), 2, "0 CPUs: give 1 to 8");
    refused(&vmm(&["run", "--cpus", "999"]), 2, "999 CPUs: give 1 to 8");
    refused(
        &vmm(&["run", "--cpus", "abc"]),
        2,
        "'abc' is not a number of CPUs: give 1 to 8",
    );
    refused(&vmm(&["debug", "--cpus", "0"]), 2, "0 CPUs: give 1 to 8");
    // The debugger and the tracers drive vCPU 0 alone: refused before booting.
    let one_cpu = "supports one CPU for now: drop --cpus 2 (or give --cpus 1)";
    for args in [
        &["debug", "--cpus", "2", "--batch"][..],
        &["run", "--cpus", "2", "--strace", "--", "x"],
        &["run", "--cpus", "2", "--break-at", "kmain"],
        &["run", "--cpus", "2", "--gdb", "127.0.0.1:0"],
        &["trace", "--cpus", "2", "--funcgraph", "kmain"],
    ] {
        refused(&vmm(args), 245, one_cpu);
    }
    // Several CPUs wake each other with interrupts: no LAPIC, no --cpus 2.
    let out = Command::new(vmm_bin())
        .args(["run", "--cpus", "2"])
        .env("VMM_NO_LAPIC", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(245));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--cpus 2 needs the LAPIC") && err.contains("unset VMM_NO_LAPIC or use --cpus 1"),
        "{err}"
    );
}
