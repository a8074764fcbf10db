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

use crate::vstate::kvm_info::{self, Flavor};
use crate::vstate::vm::{InitProgram, Outcome, Vm, VmConfig};
use crate::{boot::guest_image, status};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

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

    fn json(&self, khz: f64) -> Value {
        json!({
            "n": self.n, "median": self.median, "p10": self.p10, "p90": self.p90,
            "min": self.min, "max": self.max,
            "median_ns": ns(self.median, khz), "p10_ns": ns(self.p10, khz), "p90_ns": ns(self.p90, khz),
        })
    }
}

/// One `row` line of the guest program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestRow {
    pub id: String,
    pub name: String,
    pub stats: Stats,
    /// Per-iteration cycles (with `--raw`).
    pub samples: Vec<u64>,
}

/// Everything the guest program printed.
#[derive(Debug, Clone, Default)]
pub struct GuestOutput {
    pub header: String,
    pub rows: Vec<GuestRow>,
    /// (id, name, reason).
    pub skipped: Vec<(String, String, String)>,
    pub done: bool,
    /// Lines that are none of the above (kernel messages, errors).
    pub other: Vec<String>,
}

impl GuestOutput {
    pub fn row(&self, id: &str) -> Option<&GuestRow> {
        self.rows.iter().find(|r| r.id == id)
    }
}

/// Parse the guest program's output (see guest-user/src/bin/bench.rs).
pub fn parse_guest(text: &str) -> GuestOutput {
    let mut out = GuestOutput::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("row") => {
                let (Some(id), Some(name)) = (words.next(), words.next()) else {
                    out.other.push(line.into());
                    continue;
                };
                let mut kv: BTreeMap<&str, u64> = BTreeMap::new();
                for w in words {
                    if let Some((k, v)) = w.split_once('=') {
                        if let Ok(v) = v.parse() {
                            kv.insert(k, v);
                        }
                    }
                }
                let get = |k| kv.get(k).copied().unwrap_or(0);
                out.rows.push(GuestRow {
                    id: id.into(),
                    name: name.into(),
                    stats: Stats {
                        n: get("n"),
                        median: get("median"),
                        p10: get("p10"),
                        p90: get("p90"),
                        min: get("min"),
                        max: get("max"),
                    },
                    samples: Vec::new(),
                });
            }
            Some("samples") => {
                let id = words.next().unwrap_or("");
                let s: Vec<u64> = words.filter_map(|w| w.parse().ok()).collect();
                if let Some(r) = out.rows.iter_mut().rev().find(|r| r.id == id) {
                    r.samples = s;
                }
            }
            Some("skip") => {
                let id = words.next().unwrap_or("").to_string();
                let name = words.next().unwrap_or("").to_string();
                out.skipped.push((id, name, words.collect::<Vec<_>>().join(" ")));
            }
            // Row 5d's console writes.
            Some("fill") => {}
            Some("bench:") if line == "bench: done" => out.done = true,
            Some("bench:") if out.header.is_empty() => out.header = line["bench:".len()..].trim().into(),
            Some(_) => out.other.push(line.into()),
            None => {}
        }
    }
    out
}

/// One host measurement, in host TSC cycles.
#[derive(Debug, Clone)]
pub struct HostRow {
    pub id: &'static str,
    pub what: &'static str,
    pub stats: Stats,
}

/// Where the numbers came from.
#[derive(Debug, Clone)]
pub struct Environment {
    pub cpu_model: String,
    /// The vCPU's TSC rate from KVM_GET_TSC_KHZ (0 if KVM would not say).
    pub guest_tsc_khz: u64,
    /// The host TSC's rate, calibrated against CLOCK_MONOTONIC_RAW.
    pub host_tsc_khz: u64,
    pub kvm_flavor: Flavor,
    pub kvmbox: bool,
    pub host_kernel: String,
    /// (name, state) from /sys/devices/system/cpu/vulnerabilities.
    pub mitigations: Vec<(String, String)>,
}

impl Environment {
    pub fn detect(guest_tsc_khz: u64, host_tsc_khz: u64) -> Environment {
        let dir = Path::new("/sys/devices/system/cpu/vulnerabilities");
        let mut mitigations: Vec<(String, String)> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| {
                        let state = std::fs::read_to_string(e.path()).unwrap_or_default();
                        (e.file_name().to_string_lossy().into_owned(), state.trim().to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        mitigations.sort();
        Environment {
            cpu_model: cpu_model(),
            guest_tsc_khz,
            host_tsc_khz,
            kvm_flavor: kvm_info::detect_flavor(Path::new("/sys/module")),
            kvmbox: std::env::var_os("KVMBOX").is_some_and(|v| v == "1"),
            host_kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            mitigations,
        }
    }

    /// Guest times say something about hardware only on hardware KVM outside the box.
    pub fn representative(&self) -> bool {
        self.kvm_flavor.is_hardware() && !self.kvmbox
    }

    /// The TSC rate guest cycles are converted with.
    pub fn guest_khz(&self) -> f64 {
        if self.guest_tsc_khz > 0 {
            self.guest_tsc_khz as f64
        } else {
            self.host_tsc_khz as f64
        }
    }

    fn json(&self) -> Value {
        let m: serde_json::Map<String, Value> = self
            .mitigations
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "cpu_model": self.cpu_model,
            "guest_tsc_khz": self.guest_tsc_khz,
            "host_tsc_khz_calibrated": self.host_tsc_khz,
            "kvm_flavor": self.kvm_flavor.name(),
            "pvm": self.kvm_flavor.is_pvm(),
            "kvmbox": self.kvmbox,
            "host_kernel": self.host_kernel,
            "mitigations": m,
            "representative_of_hardware": self.representative(),
        })
    }

    fn text(&self) -> String {
        let mut s = format!(
            "environment: CPU {} | TSC {} kHz (KVM), {} kHz (host, calibrated) | KVM {}{} | host kernel {}\n",
            self.cpu_model,
            self.guest_tsc_khz,
            self.host_tsc_khz,
            self.kvm_flavor.name(),
            if self.kvmbox { ", inside the KVM box" } else { "" },
            self.host_kernel
        );
        s += "mitigations:\n";
        for (k, v) in &self.mitigations {
            s += &format!("  {k:<28} {v}\n");
        }
        s
    }
}

/// The banner for hosts whose guest timings mean nothing for hardware.
pub fn banner(env: &Environment) -> Option<String> {
    if env.kvmbox {
        Some(
            "NOTE: inside the KVM box (QEMU TCG + nested kvm-amd) time is emulated: guest and host \
             figures are not representative of hardware. With kvmbox --icount the TSC ticks once per \
             instruction, so cycles (guest and host) = instructions: only those are comparable."
                .into(),
        )
    } else if env.kvm_flavor.is_pvm() {
        Some(
            "NOTE: this /dev/kvm is PVM: guest ring 0 is emulated and a ring-3 `syscall` arrives as a \
             page fault, so guest figures are NOT representative of hardware KVM. Only instruction \
             counts (from the KVM box with --icount) are comparable."
                .into(),
        )
    } else if !env.kvm_flavor.is_hardware() {
        Some("NOTE: unknown KVM flavor: guest figures may not be representative of hardware.".into())
    } else {
        None
    }
}

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
            let instr = self.instructions.get(id).map_or("-".into(), |n| n.to_string());
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

    pub fn json(&self) -> Value {
        let gk = self.env.guest_khz();
        let hk = self.env.host_tsc_khz as f64;
        let guest_rows: Vec<Value> = self
            .guest
            .rows
            .iter()
            .map(|r| {
                let mut v = r.stats.json(gk);
                v["id"] = r.id.clone().into();
                v["name"] = r.name.clone().into();
                v["samples"] = r.samples.clone().into();
                v
            })
            .collect();
        let skipped: Vec<Value> = self
            .guest
            .skipped
            .iter()
            .map(|(id, name, why)| json!({"id": id, "name": name, "reason": why}))
            .collect();
        let host_rows: Vec<Value> = self
            .host
            .iter()
            .map(|h| {
                let mut v = h.stats.json(hk);
                v["id"] = h.id.into();
                v["what"] = h.what.into();
                v
            })
            .collect();
        let table: Vec<Value> = ROWS
            .iter()
            .map(|&(id, what, host_what)| {
                let g = self.guest.row(id);
                let h = self.host_row(id);
                let gns = g.map(|g| ns(g.stats.median, gk));
                let hns = h.map(|h| ns(h.stats.median, hk));
                json!({
                    "id": id,
                    "mechanism": what,
                    "host_mechanism": host_what,
                    "guest_cycles": g.map(|g| g.stats.median),
                    "guest_ns": gns,
                    "host_ns": hns,
                    "ratio_guest_over_host": match (gns, hns) { (Some(a), Some(b)) if b > 0.0 => Some(a / b), _ => None },
                    "instructions": self.instructions.get(id),
                })
            })
            .collect();
        json!({
            "environment": self.env.json(),
            "note": banner(&self.env),
            "unit": "TSC cycles; *_ns converted with the TSC rate",
            "guest": {
                "iters": self.guest_iters,
                "header": self.guest.header,
                "wall_s": self.guest_wall.as_secs_f64(),
                "rows": guest_rows,
                "skipped": skipped,
            },
            "host": { "rows": host_rows },
            "instructions_source": self.instructions_source,
            "table": table,
        })
    }
}

/// Two significant digits or more.
fn fmt_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}x")
    } else if r >= 1.0 {
        format!("{r:.1}x")
    } else {
        format!("{r:.2}x")
    }
}

/// Tenths below 100 ns, whole nanoseconds above.
fn fmt_ns(ns: f64) -> String {
    if ns < 100.0 {
        format!("{ns:.1}")
    } else {
        format!("{ns:.0}")
    }
}

fn ns(cycles: u64, khz: f64) -> f64 {
    if khz > 0.0 {
        cycles as f64 * 1e6 / khz
    } else {
        f64::NAN
    }
}

pub fn main(args: BenchArgs) -> ExitCode {
    match bench(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("vmm bench: {msg}");
            ExitCode::from(code)
        }
    }
}

type Res<T> = Result<T, (u8, String)>;

fn setup<E: std::fmt::Display>(e: E) -> (u8, String) {
    (status::SETUP_ERROR, e.to_string())
}

fn bench(args: &BenchArgs) -> Res<()> {
    let iters = args
        .iters
        .unwrap_or(if args.quick { QUICK_ITERS } else { DEFAULT_ITERS });
    if args.icount && std::env::var_os("KVMBOX").is_none() {
        eprintln!("vmm bench: warning: --icount outside the KVM box: cycles are not instruction counts");
    }
    let instructions = match &args.instructions_from {
        Some(p) => Some(instructions_from(p).map_err(setup)?),
        None => None,
    };
    let raw = args.plot.is_some() || args.json.is_some();
    let t0 = Instant::now();
    let (guest, guest_tsc_khz) = run_guest(args, iters, raw)?;
    let guest_wall = t0.elapsed();
    let host_tsc_khz = calibrate_tsc_khz();
    let host = measure_host(if args.quick { HOST_ITERS_QUICK } else { HOST_ITERS }).map_err(setup)?;
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
        let text = serde_json::to_string_pretty(&report.json()).map_err(setup)? + "\n";
        if p.as_os_str() == "-" {
            print!("{text}");
        } else {
            std::fs::write(p, text).map_err(|e| setup(format!("write {}: {e}", p.display())))?;
            println!("wrote {}", p.display());
        }
    }
    if let Some(dir) = &args.plot {
        for f in plot(dir, &report).map_err(setup)? {
            println!("wrote {}", f.display());
        }
    }
    Ok(())
}

/// Guest medians (rows 1–3 matter most) in the JSON of a run in the box with --icount.
fn instructions_from(p: &Path) -> Result<BTreeMap<String, u64>, String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("read {}: {e}", p.display()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
    if v["environment"]["kvmbox"] != Value::Bool(true) {
        eprintln!(
            "vmm bench: warning: {} was not measured in the KVM box; its cycles are not instruction counts",
            p.display()
        );
    }
    let rows = v["guest"]["rows"]
        .as_array()
        .ok_or_else(|| format!("{}: no guest.rows", p.display()))?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((r["id"].as_str()?.to_string(), r["median"].as_u64()?)))
        .collect())
}

/// The built-in boot archive (programs and vDSO), with `bench ARGS` as init.
fn bench_init(argv: Vec<String>) -> Res<InitProgram> {
    let (init, _) = crate::vstate::launch::boot_archive(&[], u64::MAX).map_err(setup)?;
    Ok(InitProgram {
        image: init.image,
        argv,
    })
}

/// Boot the built-in kernel with `bench` as init; its parsed output and the vCPU's TSC kHz.
fn run_guest(args: &BenchArgs, iters: u32, raw: bool) -> Res<(GuestOutput, u64)> {
    let mut argv: Vec<String> = ["bench", "--iters"].map(String::from).to_vec();
    argv.push(iters.to_string());
    if raw {
        argv.push("--raw".into());
    }
    let capture = crate::devices::serial::Capture::default();
    let cfg = VmConfig {
        kvm_device: args.kvm_device.clone(),
        mem_mib: args.mem,
        timeout: crate::vstate::launch::timeout_duration(args.timeout),
        // `bench` enables the kernel's benchmark hooks (syscalls 502 and 503).
        cmdline: "quiet bench".into(),
        init: Some(bench_init(argv)?),
        lapic: true,
        forward_stdin: false,
        output: Box::new(capture.clone()),
        // Host system calls are timed in this process: no filter (seccomp.rs).
        seccomp: false,
        cpus: 1,
    };
    let mut vm = Vm::new(
        Path::new(guest_image::KERNEL_PATH),
        std::borrow::Cow::Borrowed(guest_image::KERNEL),
        cfg,
    )
    .map_err(setup)?;
    let tsc_khz = vm.vcpu().get_tsc_khz().unwrap_or(0) as u64;
    let outcome = vm.run();
    let text = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    let out = parse_guest(&text);
    for l in &out.other {
        eprintln!("guest: {l}");
    }
    if outcome != Outcome::Exited(0) || !out.done {
        let report = match &outcome {
            Outcome::Exited(_) => String::new(),
            o => crate::report::crash_report(&mut vm, o),
        };
        return Err((
            outcome.status().max(1),
            format!(
                "the guest benchmark did not finish ({}){}\n--- guest output\n{text}{report}",
                outcome.describe(),
                if out.done { "" } else { ", no `bench: done`" }
            ),
        ));
    }
    Ok((out, tsc_khz))
}

// ---------------------------------------------------------------- host

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
    for _ in 0..n.min(1000) / 10 + 1 {
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
fn measure_host(iters: usize) -> Result<Vec<HostRow>, String> {
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
        .map_err(|e| format!("open /dev/null: {e}"))?;
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
fn pipe_pingpong(n: usize) -> Result<Stats, String> {
    let err = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
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
        let got = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old) == 0;
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu.max(0) as usize, &mut one);
        got && libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) == 0
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
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &old);
        }
    }
    if !(ok && libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0) {
        return Err("pipe ping-pong: the child failed".into());
    }
    Ok(stats)
}

/// The host CPU's model name, from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

// ---------------------------------------------------------------- plots

/// One SVG histogram per round-trip row (1–3) with samples; the files written.
pub fn plot(dir: &Path, report: &Report) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for id in ROUND_TRIP_ROWS {
        let Some(row) = report.guest.row(id).filter(|r| !r.samples.is_empty()) else {
            continue;
        };
        let what = ROWS.iter().find(|r| r.0 == id).map_or("", |r| r.1);
        let path = dir.join(format!("row{id}-{}.svg", row.name));
        histogram(&path, row, what, &report.env).map_err(|e| format!("plot {}: {e}", path.display()))?;
        files.push(path);
    }
    Ok(files)
}

fn histogram(path: &Path, row: &GuestRow, what: &str, env: &Environment) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    const BINS: usize = 40;
    let s = &row.stats;
    // The range shown: min to p99, so that a few outliers do not squash the
    // rest; everything above lands in the last bin.
    let mut sorted = row.samples.clone();
    sorted.sort_unstable();
    let p99 = sorted[(sorted.len() * 99).div_ceil(100).max(1) - 1];
    let lo = s.min as f64;
    let hi = (p99 as f64).max(lo + 1.0);
    let width = (hi - lo) / BINS as f64;
    let mut counts = [0u32; BINS];
    for &c in &row.samples {
        let b = (((c as f64 - lo) / width) as usize).min(BINS - 1);
        counts[b] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = format!(
        "row {}: {} — n={}, median {} cycles ({:.0} ns)",
        row.id,
        what,
        s.n,
        s.median,
        ns(s.median, env.guest_khz())
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(lo..hi + width, 0u32..top + top / 10 + 1)?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "TSC cycles per iteration (last bin: >= p99; {})",
            env.kvm_flavor.name()
        ))
        .y_desc("iterations")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    chart.draw_series(counts.iter().enumerate().map(|(i, &c)| {
        let x0 = lo + i as f64 * width;
        Rectangle::new([(x0, 0), (x0 + width, c)], BLUE.mix(0.6).filled())
    }))?;
    let m = s.median as f64;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(m, 0), (m, top)],
            RED.stroke_width(2),
        )))?
        .label("median")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_guest_lines() {
        let out = parse_guest(
            "bench: iters=3 rdtscp=1 kernel=vmm-guest\n\
             row 2 getpid-syscall n=3 median=40 p10=39 p90=41 min=39 max=41\n\
             samples 2 39 40 41\n\
             skip 8 vdso-clock_gettime the guest kernel maps no vDSO\n\
             kernel: something\n\
             bench: done\n",
        );
        assert_eq!(out.header, "iters=3 rdtscp=1 kernel=vmm-guest");
        assert!(out.done);
        let r = out.row("2").unwrap();
        assert_eq!(r.name, "getpid-syscall");
        assert_eq!(
            r.stats,
            Stats {
                n: 3,
                median: 40,
                p10: 39,
                p90: 41,
                min: 39,
                max: 41
            }
        );
        assert_eq!(r.samples, vec![39, 40, 41]);
        assert_eq!(out.skipped[0].0, "8");
        assert_eq!(out.skipped[0].2, "the guest kernel maps no vDSO");
        assert_eq!(out.other, vec!["kernel: something".to_string()]);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s = Stats::of(&(1..=200).collect::<Vec<u64>>());
        assert_eq!((s.median, s.p10, s.p90, s.min, s.max), (100, 20, 180, 1, 200));
        assert_eq!(Stats::of(&[7]).median, 7);
    }
}
