//! Interrupts on this host's /dev/kvm: the LAPIC timer preempts ring 3, the
//! CPU-time limit sends SIGXCPU, nanosleep sleeps, and a guest waiting for
//! console input halts instead of spinning (tests/faithful.rs runs the same
//! programs on a faithful KVM).

mod common;
use common::programs::programs;
use common::{vmm, vmm_bin};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

fn timer() -> &'static str {
    programs().timer.to_str().unwrap()
}

#[test]
fn a_parent_gets_the_cpu_back_from_a_spinning_child() {
    vmm(&["run", "--timeout", "30", "--", timer(), "yield"])
        .assert_status(0)
        .stdout_has("timer: back from sched_yield with a spinning child");
}

#[test]
fn a_spinner_is_killed_with_sigxcpu_at_the_cpu_limit() {
    vmm(&["run", "--timeout", "30", "--", timer(), "reap"])
        .assert_status(0)
        .stdout_has("killed: SIGXCPU")
        .stdout_has("(SIGXCPU)");
}

#[test]
fn the_kernel_command_line_sets_init_a_cpu_limit() {
    // No limit by default (Linux's RLIMIT_CPU is unlimited); cpulimit=1 kills
    // init itself when it spins.
    vmm(&[
        "run",
        "--timeout",
        "30",
        "--cmdline",
        "quiet cpulimit=1",
        "--",
        timer(),
        "spin",
    ])
    .assert_status(128 + 24)
    .stdout_has("pid 1 killed: SIGXCPU — used its 1 s of CPU time (RLIMIT_CPU)");
}

#[test]
fn nanosleep_sleeps_for_the_time_asked_within_20_percent() {
    // The guest times its own sleeps against the ±20 % the issue asks for.
    // Too long can be the host's fault alone (a 2-CPU machine building in
    // the background delays the wake-up), so a slow run is retried; a run
    // that never once meets the bound, or any sleep cut short, fails.
    let mut runs = Vec::new();
    for _ in 0..3 {
        let run = vmm(&["run", "--timeout", "30", "--", timer(), "sleep", "200"]);
        assert!(
            run.stdout.contains("timer: nanosleep(200 ms) took")
                && run.stdout.contains("timer: clock_nanosleep(200 ms) took"),
            "no timing lines: {run:?}"
        );
        let too_short = run.stdout.lines().filter_map(|l| l.split(" took ").nth(1)).any(|rest| {
            let ms: f64 = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::MAX);
            ms < 160.0
        });
        assert!(!too_short, "a sleep returned early: {run:?}");
        if run.status == 0 {
            return;
        }
        runs.push(run);
    }
    panic!("no run slept within 20 % of 200 ms: {runs:?}");
}

/// Host CPU time (user + system) of a running process, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name: state is field 3; utime, stime are 14, 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

#[test]
fn a_guest_waiting_for_input_halts_and_irq4_wakes_it() {
    let mut child = Command::new(vmm_bin())
        .args([
            "run",
            "--stats",
            "--timeout",
            "30",
            "--",
            programs().cat.to_str().unwrap(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_time(child.id());
    std::thread::sleep(Duration::from_secs(1));
    let idle = cpu_time(child.id()) - before;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"woken\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    stdin.write_all(b"twice\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout, "woken\ntwice\n");
    // Busy polling burnt the whole second; a halted vCPU costs the timer ticks.
    assert!(
        idle < Duration::from_millis(300),
        "vmm used {idle:?} of CPU in 1 s while the guest waited for input\n{stderr}"
    );
    assert!(!stderr.contains("serial_irqs=0"), "{stderr}");
    assert!(!stderr.contains("idle_halts=0"), "{stderr}");
}
