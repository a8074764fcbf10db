//! A whole benchmark run: the table and the JSON.

use super::env::{banner, Environment, EnvironmentJson};
use super::host::HostRow;
use super::parse::GuestOutput;
use super::stats::{fmt_ns, fmt_ratio, ns, StatsJson};
use super::ROWS;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// A whole benchmark run.
pub struct Report {
    pub env: Environment,
    pub guest_iters: u32,
    pub guest: GuestOutput,
    pub host: Vec<HostRow>,
    /// Instructions per round trip for rows 1–3, from an --icount run.
    pub instructions: BTreeMap<String, u64>,
    pub instructions_source: Option<String>,
    pub guest_wall: Duration,
}

impl Report {
    fn host_row(&self, id: &str) -> Option<&HostRow> {
        self.host.iter().find(|h| h.id == id)
    }

    pub fn table(&self) -> String {
        let gk = self.env.guest_khz();
        let hk = self.env.host_tsc_khz as f64;
        let mut t = String::new();
        if let Some(b) = banner(&self.env) {
            t += &format!("{b}\n\n");
        }
        t += &format!(
            "vmm bench: {} guest iterations per row (64 KiB and console: a tenth), medians; guest run {:.2} s\n",
            self.guest_iters,
            self.guest_wall.as_secs_f64()
        );
        t += &format!(
            "{:<4}{:<52}{:>12} {:>19}{:>12}{:>12}{:>11}{:>8}\n",
            "id", "mechanism", "guest cyc", "(p10..p90)", "guest ns", "host ns", "guest/host", "instr"
        );
        for &(id, what, host_what) in ROWS {
            let g = self.guest.row(id);
            let h = self.host_row(id);
            let (gc, gr, gns) = match g {
                Some(g) => (
                    g.stats.median.to_string(),
                    format!("({}..{})", g.stats.p10, g.stats.p90),
                    fmt_ns(ns(g.stats.median, gk)),
                ),
                None if id == "8" => ("n/a".into(), "(no vDSO)".into(), "-".into()),
                None => ("skipped".into(), String::new(), "-".into()),
            };
            let hns = h.map_or("-".to_string(), |h| fmt_ns(ns(h.stats.median, hk)));
            let ratio = match (g, h) {
                (Some(g), Some(h)) if h.stats.median > 0 => fmt_ratio(ns(g.stats.median, gk) / ns(h.stats.median, hk)),
                _ => "-".into(),
            };
            let instr = self.instructions.get(id).map_or("-".into(), ToString::to_string);
            t += &format!("{id:<4}{what:<52}{gc:>12} {gr:>19}{gns:>12}{hns:>12}{ratio:>11}{instr:>8}\n");
            if host_what.is_some_and(|w| w != "same" && !w.starts_with("syscall(") && !w.starts_with("write(")) {
                t += &format!("{:<8}host: {}\n", "", host_what.unwrap());
            }
        }
        for (id, name, why) in &self.guest.skipped {
            t += &format!("guest row {id} ({name}) skipped: {why}\n");
        }
        t += "row 5: the host's /dev/null discards writes without copying them; the guest's copies them in.\n";
        t += "row 5d: the VMM takes the buffer through the page tables, one exit per write (no copy in ring 0).\n";
        t += "row 8: the vDSO's clock_gettime: rdtsc and a multiply in ring 3, no system call.\n";
        match &self.instructions_source {
            Some(src) => {
                t += &format!(
                    "instr: guest instructions per iteration (timer's included, see row 0), \
                     TSC medians of a KVM box --icount run: {src}\n"
                )
            }
            None => {
                t += "instr: run `vmm bench --icount` inside `tests/kvmbox/kvmbox --icount` (TSC = 1 tick per \
                      instruction), or pass the JSON of such a run to --instructions-from\n"
            }
        }
        t += &format!(
            "host rows: {} iterations each (pipe ping-pong and 64 KiB: a fifth), same TSC method\n",
            self.host.iter().map(|h| h.stats.n).max().unwrap_or(0)
        );
        t += &self.env.text();
        t
    }

    /// The run as `--json` writes it.
    pub fn json(&self) -> ReportJson<'_> {
        let gk = self.env.guest_khz();
        let hk = self.env.host_tsc_khz as f64;
        ReportJson {
            environment: self.env.json(),
            note: banner(&self.env),
            unit: "TSC cycles; *_ns converted with the TSC rate",
            guest: GuestJson {
                iters: self.guest_iters,
                header: &self.guest.header,
                wall_s: self.guest_wall.as_secs_f64(),
                rows: self
                    .guest
                    .rows
                    .iter()
                    .map(|r| GuestRowJson {
                        id: &r.id,
                        name: &r.name,
                        stats: r.stats.with_ns(gk),
                        samples: &r.samples,
                    })
                    .collect(),
                skipped: self
                    .guest
                    .skipped
                    .iter()
                    .map(|(id, name, reason)| SkippedJson { id, name, reason })
                    .collect(),
            },
            host: HostJson {
                rows: self
                    .host
                    .iter()
                    .map(|h| HostRowJson {
                        id: h.id,
                        what: h.what,
                        stats: h.stats.with_ns(hk),
                    })
                    .collect(),
            },
            instructions_source: self.instructions_source.as_deref(),
            table: ROWS
                .iter()
                .map(|&(id, mechanism, host_mechanism)| {
                    let g = self.guest.row(id);
                    let guest_ns = g.map(|g| ns(g.stats.median, gk));
                    let host_ns = self.host_row(id).map(|h| ns(h.stats.median, hk));
                    TableRowJson {
                        id,
                        mechanism,
                        host_mechanism,
                        guest_cycles: g.map(|g| g.stats.median),
                        guest_ns,
                        host_ns,
                        ratio_guest_over_host: match (guest_ns, host_ns) {
                            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                            _ => None,
                        },
                        instructions: self.instructions.get(id).copied(),
                    }
                })
                .collect(),
        }
    }
}

/// `vmm bench --json`: the environment, every sample, and the table.
#[derive(Debug, Serialize)]
pub struct ReportJson<'a> {
    pub environment: EnvironmentJson<'a>,
    /// Why these figures say nothing about hardware, where they do not.
    pub note: Option<String>,
    pub unit: &'static str,
    pub guest: GuestJson<'a>,
    pub host: HostJson<'a>,
    pub instructions_source: Option<&'a str>,
    pub table: Vec<TableRowJson>,
}

#[derive(Debug, Serialize)]
pub struct GuestJson<'a> {
    pub iters: u32,
    pub header: &'a str,
    pub wall_s: f64,
    pub rows: Vec<GuestRowJson<'a>>,
    pub skipped: Vec<SkippedJson<'a>>,
}

#[derive(Debug, Serialize)]
pub struct GuestRowJson<'a> {
    pub id: &'a str,
    pub name: &'a str,
    #[serde(flatten)]
    pub stats: StatsJson,
    /// Per-iteration cycles.
    pub samples: &'a [u64],
}

#[derive(Debug, Serialize)]
pub struct SkippedJson<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub reason: &'a str,
}

#[derive(Debug, Serialize)]
pub struct HostJson<'a> {
    pub rows: Vec<HostRowJson<'a>>,
}

#[derive(Debug, Serialize)]
pub struct HostRowJson<'a> {
    pub id: &'a str,
    pub what: &'a str,
    #[serde(flatten)]
    pub stats: StatsJson,
}

/// One line of the printed table.
#[derive(Debug, Serialize)]
pub struct TableRowJson {
    pub id: &'static str,
    pub mechanism: &'static str,
    pub host_mechanism: Option<&'static str>,
    pub guest_cycles: Option<u64>,
    pub guest_ns: Option<f64>,
    pub host_ns: Option<f64>,
    pub ratio_guest_over_host: Option<f64>,
    pub instructions: Option<u64>,
}
