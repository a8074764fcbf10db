//! Time from the TSC (no RTC, no timer interrupt): nanoseconds since boot
//! from `rdtsc` and the TSC frequency KVM reported, plus the host's wall
//! clock at boot for CLOCK_REALTIME.

use crate::cpu::rdtsc;
use crate::usercopy::copy_to_user;

static mut TSC_KHZ: u64 = 0;
static mut BOOT_TSC: u64 = 0;
static mut BOOT_WALL_NS: u64 = 0;

pub fn init(tsc_khz: u64, wall_ns: u64) {
    // SAFETY: written once at boot.
    unsafe {
        TSC_KHZ = if tsc_khz == 0 { 1_000_000 } else { tsc_khz };
        BOOT_TSC = rdtsc();
        BOOT_WALL_NS = wall_ns;
    }
}

/// Nanoseconds since boot.
pub fn monotonic_ns() -> u64 {
    // SAFETY: read-only after boot.
    let (khz, base) = unsafe { (TSC_KHZ, BOOT_TSC) };
    let ticks = rdtsc().wrapping_sub(base);
    ((ticks as u128 * 1_000_000) / khz as u128) as u64
}

fn realtime_ns() -> u64 {
    // SAFETY: read-only after boot.
    (unsafe { BOOT_WALL_NS }) + monotonic_ns()
}

const CLOCK_REALTIME: u64 = 0;
const CLOCK_MONOTONIC: u64 = 1;
const CLOCK_MONOTONIC_RAW: u64 = 4;
const CLOCK_REALTIME_COARSE: u64 = 5;
const CLOCK_MONOTONIC_COARSE: u64 = 6;
const CLOCK_BOOTTIME: u64 = 7;
const EINVAL: i64 = 22;

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
