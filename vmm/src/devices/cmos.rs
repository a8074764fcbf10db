//! The PC's CMOS RTC (MC146818) on ports 0x70 (index) and 0x71 (data), as
//! much as a Linux guest reads: the time of day from the host clock (UTC),
//! status A with "update in progress" always clear — so the kernel's
//! "wait until the RTC is not updating" loops end at their first read
//! instead of spinning, which cost tens of thousands of port exits when
//! the port read as 0xff — status B (24-hour, BCD unless the guest asks
//! for binary), status D "valid RAM and time", and the rest as plain RAM.
//! No alarm, periodic or update interrupts (IRQ 8 is never raised).

use std::time::{SystemTime, UNIX_EPOCH};

pub const INDEX_PORT: u16 = 0x70;
pub const DATA_PORT: u16 = 0x71;

const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const WEEKDAY: u8 = 0x06;
const DAY: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
const STATUS_C: u8 = 0x0c;
const STATUS_D: u8 = 0x0d;
const CENTURY: u8 = 0x32;

/// Status B: binary (not BCD) values.
const B_BINARY: u8 = 1 << 2;
/// Status B: 24-hour clock.
const B_24H: u8 = 1 << 1;

/// The CMOS: 128 bytes of RAM, the index register, and where time comes from.
pub struct Cmos {
    index: u8,
    ram: [u8; 128],
    /// Seconds since the epoch, UTC (a function so tests can fix the time).
    now: fn() -> u64,
}

impl Default for Cmos {
    fn default() -> Self {
        Cmos::new(host_time)
    }
}

fn host_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Cmos {
    pub fn new(now: fn() -> u64) -> Cmos {
        let mut ram = [0u8; 128];
        // 32.768 kHz time base, 1024 Hz rate; UIP clear.
        ram[STATUS_A as usize] = 0x26;
        ram[STATUS_B as usize] = B_24H;
        ram[STATUS_D as usize] = 0x80;
        Cmos { index: 0, ram, now }
    }

    /// An `out` to 0x70 or 0x71.
    pub fn write(&mut self, port: u16, value: u8) {
        match port {
            // Bit 7 masks NMIs on a PC; it is not part of the index.
            INDEX_PORT => self.index = value & 0x7f,
            DATA_PORT => match self.index {
                // Read-only: C (interrupt flags), D (valid); A's UIP bit.
                STATUS_C | STATUS_D => {}
                STATUS_A => self.ram[STATUS_A as usize] = value & 0x7f,
                i => self.ram[i as usize] = value,
            },
            _ => {}
        }
    }

    /// An `in` from 0x70 or 0x71.
    pub fn read(&mut self, port: u16) -> u8 {
        if port != DATA_PORT {
            return 0xff;
        }
        let i = self.index;
        if i > YEAR && i != CENTURY {
            return self.ram[i as usize];
        }
        let t = civil((self.now)());
        let b = self.ram[STATUS_B as usize];
        let enc = |v: u8| if b & B_BINARY != 0 { v } else { (v / 10) << 4 | (v % 10) };
        match i {
            SECONDS => enc(t.second),
            MINUTES => enc(t.minute),
            HOURS if b & B_24H != 0 => enc(t.hour),
            // 12-hour clock: 12, 1..11, with bit 7 for PM.
            HOURS => {
                let h = match t.hour % 12 {
                    0 => 12,
                    h => h,
                };
                enc(h) | if t.hour >= 12 { 0x80 } else { 0 }
            }
            WEEKDAY => enc(t.weekday),
            DAY => enc(t.day),
            MONTH => enc(t.month),
            YEAR => enc((t.year % 100) as u8),
            CENTURY => enc((t.year / 100) as u8),
            // The alarm registers (1, 3, 5) are RAM.
            _ => self.ram[i as usize],
        }
    }
}

/// A UTC date and time.
#[derive(Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: u32,
    pub month: u8,
    pub day: u8,
    /// 1 = Sunday, as the RTC counts.
    pub weekday: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

/// Seconds since 1970-01-01 UTC to the calendar (Howard Hinnant's
/// days-to-civil algorithm, proleptic Gregorian).
pub fn civil(secs: u64) -> Civil {
    let days = secs / 86400;
    let rem = secs % 86400;
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u32;
    Civil {
        year,
        month,
        day,
        // 1970-01-01 was a Thursday (5 when Sunday is 1).
        weekday: ((days + 4) % 7 + 1) as u8,
        hour: (rem / 3600) as u8,
        minute: (rem / 60 % 60) as u8,
        second: (rem % 60) as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-25 19:45:07 UTC, a Wednesday.
    fn fixed() -> u64 {
        1_795_635_907
    }

    fn reg(c: &mut Cmos, i: u8) -> u8 {
        c.write(INDEX_PORT, i | 0x80);
        c.read(DATA_PORT)
    }

    #[test]
    fn calendar_from_epoch_seconds() {
        assert_eq!(
            civil(0),
            Civil {
                year: 1970,
                month: 1,
                day: 1,
                weekday: 5,
                hour: 0,
                minute: 0,
                second: 0
            }
        );
        let c = civil(fixed());
        assert_eq!((c.year, c.month, c.day, c.weekday), (2026, 11, 25, 4));
        assert_eq!((c.hour, c.minute, c.second), (19, 45, 7));
        // A leap day.
        let c = civil(951_782_400);
        assert_eq!((c.year, c.month, c.day), (2000, 2, 29));
    }

    #[test]
    fn time_reads_in_bcd_then_binary_and_uip_is_clear() {
        let mut c = Cmos::new(fixed);
        assert_eq!(reg(&mut c, STATUS_A) & 0x80, 0);
        assert_eq!(reg(&mut c, STATUS_D), 0x80);
        assert_eq!(reg(&mut c, HOURS), 0x19);
        assert_eq!(reg(&mut c, YEAR), 0x26);
        assert_eq!(reg(&mut c, CENTURY), 0x20);
        assert_eq!(reg(&mut c, MONTH), 0x11);
        c.write(INDEX_PORT, STATUS_B);
        c.write(DATA_PORT, B_BINARY | B_24H);
        assert_eq!(reg(&mut c, HOURS), 19);
        assert_eq!(reg(&mut c, MINUTES), 45);
        c.write(INDEX_PORT, STATUS_B);
        c.write(DATA_PORT, B_BINARY);
        assert_eq!(reg(&mut c, HOURS), 0x80 | 7);
    }

    #[test]
    fn other_registers_are_ram_and_status_d_is_read_only() {
        let mut c = Cmos::new(fixed);
        c.write(INDEX_PORT, 0x40);
        c.write(DATA_PORT, 0x5a);
        assert_eq!(reg(&mut c, 0x40), 0x5a);
        c.write(INDEX_PORT, STATUS_D);
        c.write(DATA_PORT, 0);
        assert_eq!(reg(&mut c, STATUS_D), 0x80);
        assert_eq!(c.read(INDEX_PORT), 0xff);
    }
}
