//! Seccomp: every VMM thread runs filtered while the guest runs, a forbidden
//! call stops vmm with a message and its own status, and --no-seccomp turns
//! the filters off (vmm/src/seccomp.rs).

mod common;
use common::vmm_bin;
use std::process::{Command, Stdio};
use std::time::Duration;
use vmm::status;

fn st(s: u8) -> i32 {
    i32::from(s)
}

/// `(name, Seccomp mode)` of each thread of `pid`, from /proc.
fn thread_modes(pid: u32) -> Vec<(String, String)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("status")).ok())
        .map(|s| {
            let field = |k: &str| {
                s.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            (field("Name:"), field("Seccomp:"))
        })
        // The kernel's own KVM worker threads (kvm-nx-lpage-recovery) are
        // listed among the process's tasks on newer kernels; they make no
        // system calls.
        .filter(|(name, _)| !name.starts_with("kvm-"))
        .collect()
}

/// Run `vmm ARGS` with stdin a pipe kept open (so the VMM thread watches
/// it), sample its threads' seccomp modes once `threads` of them (vCPU
/// threads and the VMM thread) exist, and return them with the exit status
/// and stderr.
fn sample_while_running(args: &[&str], env: &[(&str, &str)], threads: usize) -> (Vec<(String, String)>, i32, String) {
    let mut child = Command::new(vmm_bin())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start vmm");
    let mut modes = Vec::new();
    // Until every thread is there and filtered, or vmm ends (its --timeout).
    while child.try_wait().is_ok_and(|s| s.is_none()) {
        modes = thread_modes(child.id());
        if modes.len() >= threads && modes.iter().all(|(_, m)| m == "2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let stdin = child.stdin.take();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    (
        modes,
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_vmm_thread_is_filtered_while_the_guest_runs() {
    let (modes, status, stderr) = sample_while_running(&["run", "--cmdline", "crash=spin", "--timeout", "2.5"], &[], 2);
    assert_eq!(status, st(status::TIMEOUT), "{stderr}");
    // vCPU (main) thread and VMM thread: Seccomp 2 = filter mode.
    assert!(modes.len() >= 2, "{modes:?}");
    assert!(modes.iter().all(|(_, m)| m == "2"), "{modes:?}");
    assert!(modes.iter().any(|(n, _)| n == "event-loop"), "{modes:?}");
}

#[test]
fn with_several_cpus_every_vcpu_thread_is_filtered_too() {
    // vCPU 0 (main) starts the other vCPUs' threads after its filter is in
    // place: they inherit it. A spinning guest keeps them all running.
    let (modes, status, stderr) = sample_while_running(
        &["run", "--cpus", "3", "--cmdline", "crash=spin", "--timeout", "5"],
        &[],
        4,
    );
    assert_eq!(status, st(status::TIMEOUT), "{stderr}");
    assert!(stderr.contains("on CPU 0 of 3"), "{stderr}");
    // Three vCPU threads and the VMM thread, all in filter mode.
    assert!(modes.len() >= 4, "{modes:?}");
    assert!(modes.iter().all(|(_, m)| m == "2"), "{modes:?}");
    assert!(modes.iter().any(|(n, _)| n == "event-loop"), "{modes:?}");
}

#[test]
fn no_seccomp_says_so_and_leaves_the_threads_unfiltered() {
    let (modes, status, stderr) = sample_while_running(
        &["run", "--no-seccomp", "--cmdline", "crash=spin", "--timeout", "1"],
        &[],
        2,
    );
    assert_eq!(status, st(status::TIMEOUT), "{stderr}");
    assert!(
        stderr.contains("vmm: seccomp disabled by --no-seccomp (debugging only)"),
        "{stderr}"
    );
    assert!(!modes.is_empty() && modes.iter().all(|(_, m)| m == "0"), "{modes:?}");
}

fn selftest(thread: &str, args: &[&str]) -> common::Run {
    let out = Command::new(vmm_bin())
        .args(args)
        .env("VMM_SECCOMP_SELFTEST", thread)
        .stdin(Stdio::piped())
        .output()
        .expect("cannot start vmm");
    common::Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_forbidden_call_on_the_vcpu_thread_stops_vmm_with_a_message() {
    for args in [
        &["run"][..],
        &["debug", "--batch", "-x", "stepi"],
        &["trace", "--funcgraph", "kmain"],
    ] {
        selftest("vcpu", args)
            .assert_status(st(status::SECCOMP_VIOLATION))
            .stderr_has(
                "vmm: seccomp: a vmm thread made system call 41 (socket), which its seccomp filter does not allow",
            )
            .stderr_has("rerun with\n  --no-seccomp")
            .stderr_has("vmm exit status 246");
    }
}

#[test]
fn a_forbidden_call_on_the_vmm_thread_stops_vmm_too() {
    // The VMM thread (event loop) watches a pipe (kept open by `selftest`);
    // the guest would spin until the timeout if the call were not stopped.
    for args in [
        &["run", "--cmdline", "crash=spin", "--timeout", "20"][..],
        // No stdin: the thread runs for the timeout.
        &["debug", "--batch", "-x", "stepi"],
        &["trace", "--funcgraph", "kmain"],
    ] {
        selftest("loop", args)
            .assert_status(st(status::SECCOMP_VIOLATION))
            .stderr_has("system call 41 (socket)");
    }
}

#[test]
fn no_seccomp_lets_the_forbidden_call_through() {
    selftest("vcpu", &["run", "--no-seccomp"])
        .assert_status(0)
        .stderr_has("seccomp disabled by --no-seccomp");
}
