//! Time from the TSC (no RTC): nanoseconds since boot from `rdtsc` and the
//! TSC frequency KVM reported, plus the host's wall clock at boot for
//! CLOCK_REALTIME. Sleeping (nanosleep) blocks the process until a timer
//! tick (irq.rs) finds it due.

use crate::cpu::rdtsc;
use crate::usercopy::{copy_from_user, copy_to_user};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use vmm_abi::errno::EINVAL;

/// The clock's parameters. The same layout is the vvar page that every
/// process can read (guest/vdso/vdso.c's `struct vvar`: keep them in step),
/// so the system calls and the vDSO compute the same time.
#[repr(C)]
pub struct Vvar {
    /// TSC at boot.
    pub boot_tsc: u64,
    /// Nanoseconds per TSC tick, scaled by 2^32: ns = ticks * mult >> 32.
    pub mult: u64,
    /// Host wall-clock time at boot, ns since the epoch.
    pub boot_wall_ns: u64,
}

/// The clock's parameters (a [`Vvar`]'s fields), set on CPU 0 at boot and
/// read-only after: plain loads, as cheap as the `static mut` they replace.
/// Every CPU reads the same TSC (KVM keeps the vCPUs' TSCs in step).
static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
static MULT: AtomicU64 = AtomicU64::new(0);
static BOOT_WALL_NS: AtomicU64 = AtomicU64::new(0);

pub fn init(tsc_khz: u64, wall_ns: u64) {
    let khz = if tsc_khz == 0 { 1_000_000 } else { tsc_khz };
    BOOT_TSC.store(rdtsc(), Relaxed);
    MULT.store((1_000_000u64 << 32) / khz, Relaxed);
    BOOT_WALL_NS.store(wall_ns, Relaxed);
}

/// Copy the clock's parameters to the vvar page (through the direct map).
pub fn publish(vvar: *mut Vvar) {
    let v = Vvar {
        boot_tsc: BOOT_TSC.load(Relaxed),
        mult: MULT.load(Relaxed),
        boot_wall_ns: BOOT_WALL_NS.load(Relaxed),
    };
    // SAFETY: the caller gives a page of its own.
    unsafe { core::ptr::write(vvar, v) };
}

/// Nanoseconds since boot.
pub fn monotonic_ns() -> u64 {
    let ticks = rdtsc().wrapping_sub(BOOT_TSC.load(Relaxed));
    ((ticks as u128 * MULT.load(Relaxed) as u128) >> 32) as u64
}

fn realtime_ns() -> u64 {
    BOOT_WALL_NS.load(Relaxed) + monotonic_ns()
}

const CLOCK_REALTIME: u64 = 0;
const CLOCK_MONOTONIC: u64 = 1;
const CLOCK_MONOTONIC_RAW: u64 = 4;
const CLOCK_REALTIME_COARSE: u64 = 5;
const CLOCK_MONOTONIC_COARSE: u64 = 6;
const CLOCK_BOOTTIME: u64 = 7;

fn pair(a: u64, b: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out
}

pub extern "C" fn sys_gettimeofday(tv: u64, _tz: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    if tv == 0 {
        return 0;
    }
    let ns = realtime_ns();
    match copy_to_user(tv, &pair(ns / 1_000_000_000, (ns % 1_000_000_000) / 1000)) {
        Ok(()) => 0,
        Err(e) => e,
    }
}

pub extern "C" fn sys_clock_gettime(clock: u64, ts: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    let ns = match clock {
        CLOCK_REALTIME | CLOCK_REALTIME_COARSE => realtime_ns(),
        CLOCK_MONOTONIC | CLOCK_MONOTONIC_RAW | CLOCK_MONOTONIC_COARSE | CLOCK_BOOTTIME => monotonic_ns(),
        _ => return -EINVAL,
    };
    match copy_to_user(ts, &pair(ns / 1_000_000_000, ns % 1_000_000_000)) {
        Ok(()) => 0,
        Err(e) => e,
    }
}

/// TIMER_ABSTIME: the request is a point in time on the clock, not a duration.
const TIMER_ABSTIME: u64 = 1;

/// A user `struct timespec` as nanoseconds; -EINVAL if out of range.
fn read_timespec(ts: u64) -> Result<u64, i64> {
    let mut b = [0u8; 16];
    copy_from_user(&mut b, ts)?;
    let sec = i64::from_le_bytes(b[..8].try_into().unwrap());
    let nsec = i64::from_le_bytes(b[8..].try_into().unwrap());
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(-EINVAL);
    }
    Ok((sec as u64).saturating_mul(1_000_000_000).saturating_add(nsec as u64))
}

/// nanosleep(req, rem): blocks for `req`; never interrupted (no signals),
/// so `rem` is left alone.
pub extern "C" fn sys_nanosleep(req: u64, _rem: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    match read_timespec(req) {
        Ok(ns) => {
            crate::sched::sleep_until(monotonic_ns().saturating_add(ns));
            0
        }
        Err(e) => e,
    }
}

/// clock_nanosleep(clock, flags, req, rem): relative, or until an absolute
/// time on CLOCK_MONOTONIC/CLOCK_BOOTTIME or CLOCK_REALTIME.
pub extern "C" fn sys_clock_nanosleep(clock: u64, flags: u64, req: u64, _rem: u64, _: u64, _: u64) -> i64 {
    let realtime = match clock {
        CLOCK_REALTIME => true,
        CLOCK_MONOTONIC | CLOCK_BOOTTIME => false,
        _ => return -EINVAL,
    };
    let ns = match read_timespec(req) {
        Ok(ns) => ns,
        Err(e) => return e,
    };
    let deadline = if flags & TIMER_ABSTIME == 0 {
        monotonic_ns().saturating_add(ns)
    } else if realtime {
        ns.saturating_sub(BOOT_WALL_NS.load(Relaxed))
    } else {
        ns
    };
    crate::sched::sleep_until(deadline);
    0
}
