//! Percentiles of per-iteration cycles, and how the table prints them.

use serde::Serialize;

/// Percentiles of one row's per-iteration cycles.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    pub n: u64,
    pub median: u64,
    pub p10: u64,
    pub p90: u64,
    pub min: u64,
    pub max: u64,
}

impl Stats {
    /// Nearest-rank percentiles, as the guest computes them.
    pub fn of(samples: &[u64]) -> Stats {
        let mut v = samples.to_vec();
        v.sort_unstable();
        let n = v.len();
        if n == 0 {
            return Stats::default();
        }
        let pct = |q: usize| v[(q * n).div_ceil(100).max(1) - 1];
        Stats {
            n: n as u64,
            median: pct(50),
            p10: pct(10),
            p90: pct(90),
            min: v[0],
            max: v[n - 1],
        }
    }

    /// With the percentiles in nanoseconds at `khz`, as the JSON carries them.
    pub fn with_ns(&self, khz: f64) -> StatsJson {
        StatsJson {
            n: self.n,
            median: self.median,
            p10: self.p10,
            p90: self.p90,
            min: self.min,
            max: self.max,
            median_ns: ns(self.median, khz),
            p10_ns: ns(self.p10, khz),
            p90_ns: ns(self.p90, khz),
        }
    }
}

/// A row's statistics in the JSON: cycles, and nanoseconds (null when the
/// TSC rate is unknown).
#[derive(Clone, Debug, Serialize)]
pub struct StatsJson {
    pub n: u64,
    pub median: u64,
    pub p10: u64,
    pub p90: u64,
    pub min: u64,
    pub max: u64,
    pub median_ns: f64,
    pub p10_ns: f64,
    pub p90_ns: f64,
}

/// Two significant digits or more.
pub fn fmt_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}x")
    } else if r >= 1.0 {
        format!("{r:.1}x")
    } else {
        format!("{r:.2}x")
    }
}

/// Tenths below 100 ns, whole nanoseconds above.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 100.0 {
        format!("{ns:.1}")
    } else {
        format!("{ns:.0}")
    }
}

pub fn ns(cycles: u64, khz: f64) -> f64 {
    if khz > 0.0 {
        cycles as f64 * 1e6 / khz
    } else {
        f64::NAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Stats::of(&(1..=200).collect::<Vec<u64>>());
        assert_eq!((s.median, s.p10, s.p90, s.min, s.max), (100, 20, 180, 1, 200));
        assert_eq!(Stats::of(&[7]).median, 7);
    }

    #[test]
    fn percentiles_ignore_sample_order_and_small_sets() {
        // Nearest rank: the p-th percentile of n samples is the ceil(p*n/100)-th smallest.
        let s = Stats::of(&[50, 10, 40, 20, 30]);
        assert_eq!((s.n, s.min, s.p10, s.median, s.p90, s.max), (5, 10, 10, 30, 50, 50));
        let s = Stats::of(&[9, 1]);
        assert_eq!((s.p10, s.median, s.p90), (1, 1, 9));
        let s = Stats::of(&(1..=10).rev().collect::<Vec<u64>>());
        assert_eq!((s.p10, s.median, s.p90), (1, 5, 9));
    }

    #[test]
    fn no_samples_is_all_zero() {
        assert_eq!(Stats::of(&[]), Stats::default());
    }

    #[test]
    fn cycles_to_nanoseconds() {
        // 3 GHz: 3 cycles a nanosecond.
        assert_eq!(ns(300, 3_000_000.0), 100.0);
        // An unknown TSC rate gives no number, not a division by zero.
        assert!(ns(300, 0.0).is_nan());
    }

    #[test]
    fn table_number_formats() {
        assert_eq!(fmt_ns(12.345), "12.3");
        assert_eq!(fmt_ns(99.94), "99.9");
        assert_eq!(fmt_ns(123.6), "124");
        assert_eq!(fmt_ratio(0.5), "0.50x");
        assert_eq!(fmt_ratio(2.25), "2.2x");
        assert_eq!(fmt_ratio(31.7), "32x");
    }
}
