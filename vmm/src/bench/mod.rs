//! `vmm bench`: what a system call costs inside the guest, beside the host's own.
//!
//! The built-in kernel boots with the ring-3 `bench` program as init
//! (guest-user/src/bin/bench.rs). It times each mechanism with the TSC, one
//! iteration at a time, and prints one `row` line per mechanism; the VMM
//! captures the serial output instead of printing it, parses those lines,
//! converts cycles to nanoseconds with the vCPU's TSC frequency
//! (KVM_GET_TSC_KHZ), and then times the nearest host equivalents in this
//! process the same way (`lfence; rdtsc` … `rdtscp; lfence`).
//!
//! Every result carries its environment (CPU, TSC rate, KVM flavor, host
//! kernel, mitigations): system-call costs depend on all of them. On PVM the
//! guest's ring 0 is emulated and each ring-3 `syscall` arrives as a page
//! fault, and in the KVM box time is QEMU's, so guest figures there say
//! nothing about hardware; only the box's `--icount` instruction counts are
//! comparable.

mod env;
mod error;
mod guest;
mod host;
mod parse;
mod plot;
mod report;
mod stats;

pub use env::{banner, cpu_model, Environment};
pub use error::BenchError;
use error::Result;
pub use host::{calibrate_tsc_khz, HostRow};
pub use parse::{parse_guest, GuestOutput, GuestRow};
pub use plot::plot;
pub use report::Report;
pub use stats::Stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Guest iterations per row by default (the 64 KiB write does a tenth).
pub const DEFAULT_ITERS: u32 = 200;
/// Guest iterations per row with --quick.
pub const QUICK_ITERS: u32 = 20;
/// Host iterations per row: the host is fast, so many more.
const HOST_ITERS: usize = 100_000;
const HOST_ITERS_QUICK: usize = 2_000;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Guest iterations per row (the 64 KiB write does a tenth).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub iters: Option<u32>,
    /// A few iterations only, to check that everything runs (CI smoke).
    #[arg(long)]
    pub quick: bool,
    /// Also write the results, environment and per-iteration samples as JSON
    /// (`-`: to stdout, after the table).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw SVG histograms of the per-iteration cycles of rows 1–3 into DIR.
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
    /// Take the instruction column from the JSON of a run in the KVM box
    /// with `--icount`, where the TSC ticks once per instruction.
    #[arg(long, value_name = "FILE.json", conflicts_with = "icount")]
    pub instructions_from: Option<PathBuf>,
    /// This run is inside `tests/kvmbox/kvmbox --icount`: the TSC ticks once
    /// per instruction, so fill the instruction column from this run's guest medians.
    #[arg(long)]
    pub icount: bool,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 64, value_name = "MiB")]
    pub mem: u64,
    /// Stop the guest after this many seconds (0: never).
    #[arg(long, default_value_t = 600.0, value_name = "SECS", value_parser = crate::vstate::launch::parse_timeout)]
    pub timeout: f64,
    /// The KVM device.
    #[arg(long, env = "VMM_KVM_DEVICE", default_value = "/dev/kvm", value_name = "PATH")]
    pub kvm_device: PathBuf,
}

/// The rows, in the order of the table: id, what is timed in the guest, what
/// is timed on the host (None: no host equivalent).
const ROWS: &[(&str, &str, Option<&str>)] = &[
    ("0", "rdtsc overhead (empty timed region)", Some("same")),
    ("1", "null syscall (entry is just sysretq)", None),
    ("2", "getpid via syscall", Some("syscall(SYS_getpid)")),
    ("3", "getpid via int 0x80", None),
    (
        "4a",
        "clock_gettime(MONOTONIC) syscall",
        Some("syscall(SYS_clock_gettime)"),
    ),
    ("4b", "gettimeofday syscall", Some("syscall(SYS_gettimeofday)")),
    ("5a", "write 1 B to /dev/null", Some("write(/dev/null)")),
    ("5b", "write 4 KiB to /dev/null", Some("write(/dev/null)")),
    ("5c", "write 64 KiB to /dev/null", Some("write(/dev/null)")),
    ("5d", "write 4 KiB to the console", None),
    (
        "6",
        "sched_yield ping-pong, 2 processes (per switch pair)",
        Some("pipe ping-pong, 2 processes on one CPU"),
    ),
    ("7", "null hypercall (syscall + 1 VM exit)", None),
    ("8", "clock_gettime via vDSO", Some("clock_gettime (vDSO)")),
];

/// Rows with an instruction count and a histogram.
const ROUND_TRIP_ROWS: [&str; 3] = ["1", "2", "3"];

pub fn main(args: BenchArgs) -> ExitCode {
    match bench(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vmm bench: {e}");
            ExitCode::from(e.status())
        }
    }
}

fn bench(args: &BenchArgs) -> Result<()> {
    let iters = args
        .iters
        .unwrap_or(if args.quick { QUICK_ITERS } else { DEFAULT_ITERS });
    if args.icount && std::env::var_os("KVMBOX").is_none() {
        eprintln!("vmm bench: warning: --icount outside the KVM box: cycles are not instruction counts");
    }
    let instructions = match &args.instructions_from {
        Some(p) => Some(instructions_from(p)?),
        None => None,
    };
    let raw = args.plot.is_some() || args.json.is_some();
    let t0 = Instant::now();
    let (guest, guest_tsc_khz) = guest::run_guest(args, iters, raw)?;
    let guest_wall = t0.elapsed();
    let host_tsc_khz = calibrate_tsc_khz();
    let host = host::measure_host(if args.quick { HOST_ITERS_QUICK } else { HOST_ITERS })?;
    let env = Environment::detect(guest_tsc_khz, host_tsc_khz);
    let (instructions, instructions_source) = match instructions {
        Some(m) => (m, Some(args.instructions_from.as_ref().unwrap().display().to_string())),
        None if args.icount => (
            guest.rows.iter().map(|r| (r.id.clone(), r.stats.median)).collect(),
            Some("this run (--icount)".to_string()),
        ),
        None => (BTreeMap::new(), None),
    };
    let report = Report {
        env,
        guest_iters: iters,
        guest,
        host,
        instructions,
        instructions_source,
        guest_wall,
    };
    print!("{}", report.table());
    if let Some(p) = &args.json {
        // Through a Value: its keys come out sorted, as they always have.
        let text = serde_json::to_value(report.json())
            .and_then(|v| serde_json::to_string_pretty(&v))
            .map_err(|source| BenchError::Json {
                path: p.clone(),
                source,
            })?
            + "\n";
        if p.as_os_str() == "-" {
            print!("{text}");
        } else {
            std::fs::write(p, text).map_err(|source| BenchError::Write {
                path: p.clone(),
                source,
            })?;
            println!("wrote {}", p.display());
        }
    }
    if let Some(dir) = &args.plot {
        for f in plot(dir, &report)? {
            println!("wrote {}", f.display());
        }
    }
    Ok(())
}

/// What `--instructions-from` reads of an earlier run's `--json`.
#[derive(serde::Deserialize)]
struct EarlierRun {
    environment: EarlierEnvironment,
    guest: EarlierGuest,
}

#[derive(serde::Deserialize)]
struct EarlierEnvironment {
    kvmbox: bool,
}

#[derive(serde::Deserialize)]
struct EarlierGuest {
    rows: Vec<EarlierRow>,
}

#[derive(serde::Deserialize)]
struct EarlierRow {
    id: String,
    median: u64,
}

/// Guest medians (rows 1–3 matter most) in the JSON of a run in the box with --icount.
fn instructions_from(p: &Path) -> Result<BTreeMap<String, u64>> {
    let text = std::fs::read_to_string(p).map_err(|source| BenchError::Read { path: p.into(), source })?;
    let run: EarlierRun = serde_json::from_str(&text).map_err(|source| BenchError::Json { path: p.into(), source })?;
    if !run.environment.kvmbox {
        eprintln!(
            "vmm bench: warning: {} was not measured in the KVM box; its cycles are not instruction counts",
            p.display()
        );
    }
    Ok(run.guest.rows.into_iter().map(|r| (r.id, r.median)).collect())
}
