//! The host's side of the table: the nearest host equivalents of the guest's
//! rows, timed in this process with the same TSC method.

use super::error::{BenchError, Result};
use super::stats::Stats;
use std::time::Duration;

/// One host measurement, in host TSC cycles.
#[derive(Debug, Clone)]
pub struct HostRow {
    pub id: &'static str,
    pub what: &'static str,
    pub stats: Stats,
}

#[inline(always)]
fn tsc_start() -> u64 {
    use std::arch::x86_64::{_mm_lfence, _rdtsc};
    // SAFETY: lfence and rdtsc have no preconditions on x86-64.
    unsafe {
        _mm_lfence();
        let t = _rdtsc();
        _mm_lfence();
        t
    }
}

#[inline(always)]
fn tsc_stop() -> u64 {
    use std::arch::x86_64::{__rdtscp, _mm_lfence};
    let mut aux = 0;
    // SAFETY: every x86-64 CPU this VMM runs on (KVM hosts) has RDTSCP.
    unsafe {
        let t = __rdtscp(&mut aux);
        _mm_lfence();
        t
    }
}

/// The TSC's rate against CLOCK_MONOTONIC_RAW over ~50 ms.
pub fn calibrate_tsc_khz() -> u64 {
    let now = || {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: a valid timespec to write.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_RAW, &mut ts) };
        ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
    };
    let (n0, c0) = (now(), tsc_start());
    std::thread::sleep(Duration::from_millis(50));
    let (n1, c1) = (now(), tsc_stop());
    ((c1 - c0) as f64 / ((n1 - n0) / 1e6)).round() as u64
}

fn time_n(n: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..=(n.min(1000) / 10) {
        f();
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = tsc_start();
        f();
        let t1 = tsc_stop();
        v.push(t1.wrapping_sub(t0));
    }
    Stats::of(&v)
}

/// The host's side of the table.
pub(super) fn measure_host(iters: usize) -> Result<Vec<HostRow>> {
    let mut rows = Vec::new();
    let mut row = |id, what, stats| rows.push(HostRow { id, what, stats });
    row("0", "empty timed region", time_n(iters, || {}));
    row(
        "2",
        "syscall(SYS_getpid)",
        // SAFETY: a plain system call with valid arguments (fd and buffers live here).
        time_n(iters, || unsafe {
            libc::syscall(libc::SYS_getpid);
        }),
    );
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let tsp: *mut libc::timespec = &mut ts;
    row(
        "4a",
        "syscall(SYS_clock_gettime, CLOCK_MONOTONIC)",
        // SAFETY: a plain system call with valid arguments (fd and buffers live here).
        time_n(iters, || unsafe {
            libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, tsp);
        }),
    );
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    let tvp: *mut libc::timeval = &mut tv;
    row(
        "4b",
        "syscall(SYS_gettimeofday)",
        // SAFETY: a plain system call with valid arguments (fd and buffers live here).
        time_n(iters, || unsafe {
            libc::syscall(libc::SYS_gettimeofday, tvp, 0usize);
        }),
    );
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(|source| BenchError::Host {
            what: "open /dev/null",
            source,
        })?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&null);
    let buf = vec![0x5au8; 65536];
    for (id, what, len, n) in [
        ("5a", "write 1 B to /dev/null", 1, iters),
        ("5b", "write 4 KiB to /dev/null", 4096, iters),
        ("5c", "write 64 KiB to /dev/null", 65536, iters / 5),
    ] {
        row(
            id,
            what,
            // SAFETY: a plain system call with valid arguments (fd and buffers live here).
            time_n(n.max(1), || unsafe {
                libc::write(fd, buf.as_ptr().cast(), len);
            }),
        );
    }
    row(
        "6",
        "pipe ping-pong, 2 processes on one CPU",
        pipe_pingpong((iters / 5).max(1))?,
    );
    row(
        "8",
        "clock_gettime(CLOCK_MONOTONIC) via the vDSO",
        // SAFETY: a plain system call with valid arguments (fd and buffers live here).
        time_n(iters, || unsafe {
            libc::clock_gettime(libc::CLOCK_MONOTONIC, tsp);
        }),
    );
    Ok(rows)
}

/// A byte back and forth between this process and a forked child over two
/// pipes, both pinned to the CPU this one is on: per round trip, two
/// context switches, as in the guest's sched_yield ping-pong.
fn pipe_pingpong(n: usize) -> Result<Stats> {
    let err = |what| BenchError::Host {
        what,
        source: std::io::Error::last_os_error(),
    };
    let mut to_child = [0; 2];
    let mut to_parent = [0; 2];
    // SAFETY: pipe() fills the two-element arrays.
    if unsafe { libc::pipe(to_child.as_mut_ptr()) } != 0 || unsafe { libc::pipe(to_parent.as_mut_ptr()) } != 0 {
        return Err(err("pipe"));
    }
    // Pin to one CPU (the child inherits it); restore afterwards.
    // SAFETY: cpu_set_t is plain data; the calls get valid pointers.
    let mut old: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let pinned = unsafe {
        let cpu = libc::sched_getcpu();
        let got = libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut old) == 0;
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu.max(0) as usize, &mut one);
        got && libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one) == 0
    };
    let total = n + n.min(1000) / 10 + 1;
    // SAFETY: the child only calls read, write and _exit (async-signal-safe).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(err("fork"));
    }
    if pid == 0 {
        let mut b = [0u8; 1];
        // SAFETY: the forked child's own pipe ends and buffer.
        unsafe {
            for _ in 0..total {
                if libc::read(to_child[0], b.as_mut_ptr().cast(), 1) != 1
                    || libc::write(to_parent[1], b.as_ptr().cast(), 1) != 1
                {
                    libc::_exit(1);
                }
            }
            libc::_exit(0);
        }
    }
    let mut b = [0u8; 1];
    let mut ok = true;
    // SAFETY: our pipe ends and a one-byte buffer.
    let mut round = || unsafe {
        ok &= libc::write(to_child[1], b.as_ptr().cast(), 1) == 1;
        ok &= libc::read(to_parent[0], b.as_mut_ptr().cast(), 1) == 1;
    };
    let stats = time_n(n, &mut round);
    let mut st = 0;
    // SAFETY: reaping our own child; closing our own fds.
    unsafe {
        libc::waitpid(pid, &mut st, 0);
        for fd in to_child.into_iter().chain(to_parent) {
            libc::close(fd);
        }
        if pinned {
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &old);
        }
    }
    if !(ok && libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0) {
        return Err(BenchError::PingPongChild);
    }
    Ok(stats)
}
