//! The VMM thread's event loop (vmm/src/vstate/event_loop.rs): --timeout
//! and signals stop a running or halted guest with a report, stdin never
//! makes vmm hang or spin, a terminal is taken in raw mode with vmm as its
//! line discipline and given back, and gdb's Ctrl-C reaches a running guest.

mod common;
use common::programs::programs;
use common::{vmm, vmm_bin};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vmm::status;

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// Kills a child vmm if the test fails before it ended (a failed wait
/// would otherwise leave it running).
struct KillOnPanic(i32);

impl Drop for KillOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // SAFETY: signalling our own child; it is reaped only by the test.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

#[test]
fn the_timeout_stops_a_ring3_loop_with_a_report() {
    vmm(&["run", "--timeout", "1", "--", path(&programs().timer), "spin"])
        .assert_status(i32::from(status::TIMEOUT))
        .stderr_has("timeout: the guest was still running after 1 s")
        .stderr_has("CPL    3");
}

#[test]
fn the_timeout_stops_a_halted_guest_with_a_report() {
    // cat waits in read(0) with the CPU halted: stdin stays open, empty.
    let mut child = Command::new(vmm_bin())
        .args(["run", "--timeout", "1", "--", path(&programs().cat)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = KillOnPanic(child.id() as i32);
    // Held open until vmm has ended (wait_with_output would close it).
    let stdin = child.stdin.take();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(i32::from(status::TIMEOUT)), "{stderr}");
    assert!(
        stderr.contains("timeout: the guest was still running after 1 s"),
        "{stderr}"
    );
    assert!(
        stderr.contains("CPL    0"),
        "halted in the kernel's idle loop\n{stderr}"
    );
}

/// Wait until `pid`'s main thread has installed its seccomp filter: the
/// signal handlers are in place by then and the guest is about to run.
fn wait_until_running(child: &mut Child) {
    let status = format!("/proc/{}/status", child.id());
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        if std::fs::read_to_string(&status).is_ok_and(|s| s.contains("Seccomp:\t2")) {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "vmm ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("vmm never locked down");
}

/// Start `vmm run -- PROGRAM ARGS`, wait for it to run, send `sig`.
fn signalled(sig: i32, program: &[&str], stdin: Stdio) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(vmm_bin())
        .args(["run", "--timeout", "60", "--"])
        .args(program)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = KillOnPanic(child.id() as i32);
    wait_until_running(&mut child);
    // A piped stdin stays open (cat waits in read(0)) until vmm has ended.
    let stdin = child.stdin.take();
    // SAFETY: signalling our own child, which has not been reaped yet.
    unsafe { libc::kill(child.id() as i32, sig) };
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn sigint_and_sigterm_stop_the_guest_with_a_report_and_vmm_dies_of_the_signal() {
    let spin = [path(&programs().timer), "spin"];
    let (st, err) = signalled(libc::SIGINT, &spin, Stdio::null());
    assert_eq!(st.signal(), Some(libc::SIGINT), "{err}");
    assert!(err.contains("vmm: stopped by Ctrl-C (SIGINT)"), "{err}");
    assert!(err.contains("RIP"), "a report: {err}");
    let (st, err) = signalled(libc::SIGTERM, &spin, Stdio::null());
    assert_eq!(st.signal(), Some(libc::SIGTERM), "{err}");
    assert!(err.contains("vmm: stopped by SIGTERM"), "{err}");
    // Halted in read(0), stdin open.
    let (st, err) = signalled(libc::SIGINT, &[path(&programs().cat)], Stdio::piped());
    assert_eq!(st.signal(), Some(libc::SIGINT), "{err}");
    assert!(err.contains("vmm: stopped by Ctrl-C (SIGINT)"), "{err}");
}

/// An endless producer on stdin (as `yes |`), stopped by EPIPE when vmm
/// ends: vmm's status, stderr and stdout, and the bytes the producer wrote.
fn endless_producer(program: &[&str], extra: &[&str]) -> (i32, String, String, u64) {
    let mut child = Command::new(vmm_bin())
        .args(["run"])
        .args(extra)
        .arg("--")
        .args(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = KillOnPanic(child.id() as i32);
    let mut stdin = child.stdin.take().unwrap();
    let producer = std::thread::spawn(move || {
        let line = [b'y', b'\n'].repeat(2048);
        let mut sent = 0u64;
        // Until vmm is gone: EPIPE (Rust ignores SIGPIPE).
        while stdin.write_all(&line).is_ok() {
            sent += line.len() as u64;
        }
        sent
    });
    let out = child.wait_with_output().unwrap();
    let sent = producer.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        sent,
    )
}

#[test]
fn a_guest_that_never_reads_ends_while_an_endless_producer_still_writes() {
    let (st, err, out, sent) = endless_producer(&[path(&programs().timer), "sleep", "200"], &["--timeout", "60"]);
    // The guest ran to its end and exited by itself: 0, or 1 when a sleep
    // took more than ±20% of 200 ms, as it may on a host busy with the
    // parallel tests beside this one (tests/interrupts.rs judges the sleeps;
    // this test, what vmm does with stdin the guest never reads).
    assert!(
        (st == 0 || st == 1) && out.contains("timer: clock_nanosleep(200 ms) took"),
        "status {st}\n{out}\n{err}"
    );
    // vmm read at most its bounded queue (64 KiB) plus the pipe's buffer.
    assert!(sent < 4 << 20, "{sent} bytes taken by a guest that reads none");
}

#[test]
fn a_guest_spinning_beside_an_endless_producer_still_times_out() {
    let (st, err, _, _) = endless_producer(&[path(&programs().timer), "spin"], &["--timeout", "1"]);
    assert_eq!(st, i32::from(status::TIMEOUT), "{err}");
}

#[test]
fn a_reading_guest_takes_the_producers_bytes_until_the_timeout() {
    let (st, err, _, sent) = endless_producer(&[path(&programs().cat)], &["--timeout", "1"]);
    assert_eq!(st, i32::from(status::TIMEOUT), "{err}");
    assert!(sent > 0);
}

/// A pseudo-terminal: (master, slave).
fn openpty() -> (OwnedFd, OwnedFd) {
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty writes two fds; the other arguments may be null.
    let rc = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just opened and are ours.
    unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) }
}

fn termios(fd: &OwnedFd) -> libc::termios {
    // SAFETY: tcgetattr fills the termios or fails.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd and a termios we own.
    assert_eq!(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) }, 0);
    t
}

/// Run `vmm run -- PROGRAM` on a terminal (its controlling terminal, as in a
/// shell), type `keys` (one write each, once the guest runs), and return how
/// vmm ended, what the terminal showed, vmm's stderr, and whether the
/// terminal's settings are as before.
fn at_a_terminal(program: &[&str], keys: &[&[u8]]) -> (std::process::ExitStatus, String, String, bool) {
    use std::os::unix::process::CommandExt;
    let (master, slave) = openpty();
    let before = termios(&slave);
    let mut cmd = Command::new(vmm_bin());
    cmd.args(["run", "--timeout", "60", "--"])
        .args(program)
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec, only async-signal-safe calls: a new
    // session whose controlling terminal is the pty on fd 0, so that its
    // keys (^C in cooked mode) signal vmm as a shell's terminal would.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let _guard = KillOnPanic(child.id() as i32);
    // The command holds slave fds: the screen reader's EIO waits for them.
    drop(cmd);
    let mut reader = std::fs::File::from(master.try_clone().unwrap());
    let screen = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once no process has the slave open any more.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        seen
    });
    wait_until_running(&mut child);
    // Raw mode is set before the filter; wait for it (the line discipline
    // would otherwise be the kernel's).
    let t0 = Instant::now();
    while termios(&slave).c_lflag & libc::ICANON != 0 && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut writer = std::fs::File::from(master.try_clone().unwrap());
    for k in keys {
        writer.write_all(k).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        if k.ends_with(b"\x04") {
            // ^D ends the input and vmm gives the terminal back: a key
            // typed before that is a raw byte nobody reads any more, not
            // the cooked terminal's signal. Wait for it (a busy host can
            // take longer than the pause above).
            let t0 = Instant::now();
            while termios(&slave).c_lflag & libc::ICANON == 0 && t0.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let out = child.wait_with_output().unwrap();
    let after = termios(&slave);
    drop(slave);
    drop(writer);
    drop(master);
    let seen = screen.join().unwrap();
    let same = before.c_lflag == after.c_lflag && before.c_iflag == after.c_iflag && before.c_oflag == after.c_oflag;
    (
        out.status,
        String::from_utf8_lossy(&seen).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        same,
    )
}

#[test]
fn at_a_terminal_vmm_echoes_edits_and_ends_the_input_at_ctrl_d() {
    let (st, screen, err, restored) = at_a_terminal(&[path(&programs().cat)], &[b"abc\r", b"xy\x7fz\r", b"\x04"]);
    assert_eq!(st.code(), Some(0), "{err}\n{screen:?}");
    // The echo of each line and cat's copy of it (in either order: the
    // next key may be echoed before the guest writes); the erased y never
    // reaches the guest.
    assert_eq!(screen.matches("abc\r\n").count(), 2, "{screen:?}");
    assert!(screen.contains("xy\x08 \x08z\r\n"), "{screen:?}");
    assert!(screen.contains("xz\r\n"), "{screen:?}");
    assert!(restored, "the terminal was left in raw mode");
}

#[test]
fn at_a_terminal_ctrl_c_stops_vmm_with_a_report_and_gives_the_terminal_back() {
    let (st, screen, err, restored) = at_a_terminal(&[path(&programs().cat)], &[b"half a line", b"\x03"]);
    assert_eq!(st.signal(), Some(libc::SIGINT), "{err}\n{screen:?}");
    assert!(screen.contains("half a line^C"), "{screen:?}");
    assert!(err.contains("vmm: stopped by Ctrl-C (SIGINT)"), "{err}");
    assert!(restored, "the terminal was left in raw mode");
}

#[test]
fn at_a_terminal_ctrl_c_still_stops_vmm_after_ctrl_d_ended_the_input() {
    // The spinner never reads: after ^D the terminal is cooked again, and
    // its ^C is a SIGINT that vmm catches.
    let (st, screen, err, restored) = at_a_terminal(&[path(&programs().timer), "spin"], &[b"\x04", b"\x03"]);
    assert_eq!(st.signal(), Some(libc::SIGINT), "{err}\n{screen:?}");
    assert!(err.contains("vmm: stopped by Ctrl-C (SIGINT)"), "{err}");
    assert!(restored);
}

/// A GDB remote-protocol packet.
fn packet(body: &str) -> Vec<u8> {
    let sum = body.bytes().fold(0u8, u8::wrapping_add);
    format!("${body}#{sum:02x}").into_bytes()
}

#[test]
fn gdbs_ctrl_c_stops_a_running_guest() {
    let port = 20000 + ((std::process::id() + 7919) % 20000) as u16;
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(vmm_bin())
        .args([
            "run",
            "--timeout",
            "60",
            "--gdb",
            &addr,
            "--",
            path(&programs().timer),
            "spin",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = KillOnPanic(child.id() as i32);
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    assert!(line.contains("waiting for gdb"), "{line}");
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = Vec::new();
    let mut read_until = |conn: &mut std::net::TcpStream, what: &[&str]| {
        let mut buf = [0u8; 1024];
        while !what.iter().any(|w| String::from_utf8_lossy(&got).contains(w)) {
            let n = conn.read(&mut buf).expect("gdb stub went quiet");
            assert!(n > 0, "connection closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    };
    conn.write_all(&packet("?")).unwrap();
    read_until(&mut conn, &["#"]);
    conn.write_all(b"+").unwrap();
    conn.write_all(&packet("c")).unwrap();
    // Let the guest get into its loop, then interrupt it as gdb's Ctrl-C.
    std::thread::sleep(Duration::from_millis(300));
    conn.write_all(b"\x03").unwrap();
    // The stop reply for SIGINT (2).
    read_until(&mut conn, &["T02", "S02"]);
    conn.write_all(b"+").unwrap();
    conn.write_all(&packet("k")).unwrap();
    drop(conn);
    let status = child.wait().unwrap();
    assert!(status.code().is_some(), "vmm ended by itself after gdb's kill");
}

/// What a reader thread has collected so far.
type Screen = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

fn collect(mut from: impl Read + Send + 'static) -> Screen {
    let screen = Screen::default();
    let s = screen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            s.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    screen
}

/// Wait (at most 30 s, then fail) until `screen` shows `what`.
fn wait_for(screen: &Screen, what: &str) {
    let t0 = Instant::now();
    while !String::from_utf8_lossy(&screen.lock().unwrap()).contains(what) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no {what:?} in {:?}",
            String::from_utf8_lossy(&screen.lock().unwrap())
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn in_the_debugger_sigint_stops_a_running_guest_and_the_prompt_comes_back() {
    let (master, slave) = openpty();
    let mut child = Command::new(vmm_bin())
        .args(["debug", "--timeout", "60", "--", path(&programs().timer), "spin"])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = KillOnPanic(child.id() as i32);
    let screen = collect(std::fs::File::from(master.try_clone().unwrap()));
    let errors = collect(child.stderr.take().unwrap());
    let mut keys = std::fs::File::from(master.try_clone().unwrap());
    wait_for(&screen, "(vmm) ");
    keys.write_all(b"continue\r").unwrap();
    // The line is read: rustyline leaves raw mode (bracketed paste off) and
    // has given SIGINT back to vmm's handler; the guest spins in ring 3
    // until interrupted.
    wait_for(&screen, "\x1b[?2004l");
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: signalling our own child, which has not been reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    wait_for(&errors, "interrupted (Ctrl-C)");
    keys.write_all(b"quit\r").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&screen.lock().unwrap())
    );
    drop(slave);
}

#[test]
fn a_prompt_without_a_newline_shows_before_the_guest_waits_for_input() {
    // Output is written a line at a time; a partial line goes out when the
    // guest finds no input and waits (it asks the end-of-file port).
    let mut child = Command::new(vmm_bin())
        .args(["run", "--timeout", "60", "--", path(&programs().prompt)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = KillOnPanic(child.id() as i32);
    let screen = collect(child.stdout.take().unwrap());
    wait_for(&screen, "name? ");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"bob\n").unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    wait_for(&screen, "name? hello bob\n");
}

#[test]
fn a_background_vmm_leaves_the_terminal_alone_and_is_not_stopped() {
    use std::os::unix::process::CommandExt;
    // A shell with job control (`set -m`) on a terminal runs vmm as a
    // background job: changing the terminal's settings would stop it with
    // SIGTTOU (the shell would say 150), reading it with SIGTTIN.
    let (master, slave) = openpty();
    let script = format!(
        "set -m; {} run --timeout 60 -- {} sleep 100 & wait $!; echo st=$?",
        vmm_bin().display(),
        path(&programs().timer)
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()));
    // SAFETY: between fork and exec, only async-signal-safe calls: the shell
    // leads a new session whose controlling terminal is the pty.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let _guard = KillOnPanic(child.id() as i32);
    drop(cmd);
    drop(slave);
    let screen = collect(std::fs::File::from(master));
    wait_for(&screen, "st=");
    child.wait().unwrap();
    wait_for(&screen, "st=0");
}
