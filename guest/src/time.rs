//! Time from the TSC (no RTC, no timer interrupt): nanoseconds since boot
//! from `rdtsc` and the TSC frequency KVM reported, plus the host's wall
//! clock at boot for CLOCK_REALTIME.

use crate::cpu::rdtsc;
use crate::usercopy::copy_to_user;
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

static mut CLOCK: Vvar = Vvar {
    boot_tsc: 0,
    mult: 0,
    boot_wall_ns: 0,
};

pub fn init(tsc_khz: u64, wall_ns: u64) {
    let khz = if tsc_khz == 0 { 1_000_000 } else { tsc_khz };
    // SAFETY: written once at boot.
    unsafe {
        CLOCK = Vvar {
            boot_tsc: rdtsc(),
            mult: (1_000_000u64 << 32) / khz,
            boot_wall_ns: wall_ns,
        }
    };
}

/// Copy the clock's parameters to the vvar page (through the direct map).
pub fn publish(vvar: *mut Vvar) {
    // SAFETY: the caller gives a page of its own; CLOCK is read-only after boot.
    unsafe { core::ptr::write(vvar, core::ptr::read(&raw const CLOCK)) };
}

/// Nanoseconds since boot.
pub fn monotonic_ns() -> u64 {
    // SAFETY: read-only after boot.
    let (base, mult) = unsafe { (CLOCK.boot_tsc, CLOCK.mult) };
    let ticks = rdtsc().wrapping_sub(base);
    ((ticks as u128 * mult as u128) >> 32) as u64
}

fn realtime_ns() -> u64 {
    // SAFETY: read-only after boot.
    (unsafe { CLOCK.boot_wall_ns }) + monotonic_ns()
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
