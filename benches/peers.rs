//! Peer comparison: `vmm run` beside QEMU's microvm, side by side on this
//! host, each booting a trivial guest that prints one line and ends the VM.
//!
//! `cargo bench -p vmm --bench peers` builds the PVH guest QEMU boots
//! (benches/peers/pvh.S: 32-bit entry through the PVH ELF note, one line on
//! COM1, then isa-debug-exit), then alternates A B A B: `vmm run --cmdline
//! init=none` (the built-in kernel's banner, then exit) and `qemu-system-x86_64
//! -M microvm -accel kvm` with that guest. It prints the ratio of each pair
//! and their median (target: vmm/QEMU ≤ 0.1, i.e. ≥ 10× faster) and the
//! peak RSS of both, writes target/bench/peers.json, and records
//! Firecracker's published figures as a reference row (it is not installed
//! here). `PEER_BENCH_PAIRS` sets the pairs (default 20; 3 with
//! BENCH_QUICK=1). No timing threshold fails it; a missing QEMU is reported
//! as a skipped row, not an error.

mod common;
use common::{count_from_env, target_dir, vmm_binary};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

type Res<T> = Result<T, String>;

/// Firecracker's own published targets (its SPECIFICATION.md): a guest
/// reaches init in ≤ 125 ms after the API call, with ≤ 5 MiB of VMM memory.
const FIRECRACKER_BOOT_MS: f64 = 125.0;
const FIRECRACKER_RSS_MIB: f64 = 5.0;
const TARGET_RATIO: f64 = 0.1;

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peers bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One run: wall time from spawn to exit, peak RSS, exit status.
struct Run {
    wall: Duration,
    rss_kib: i64,
    status: i32,
}

fn run(cmd: &mut Command) -> Res<Run> {
    let t = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let mut status = 0;
    // SAFETY: a zeroed rusage for wait4 to fill, for our own child's pid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the child is reaped here, not by std.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    let wall = t.elapsed();
    // Reaped by wait4 above; dropping a Child neither waits nor kills.
    drop(child);
    if pid < 0 {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    Ok(Run {
        wall,
        rss_kib: ru.ru_maxrss,
        status: libc::WEXITSTATUS(status),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Assemble and link the PVH guest (binutils, as the test programs are).
fn build_pvh() -> Res<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/peers/pvh.S");
    let out = target_dir().join("bench");
    std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let (obj, elf) = (out.join("pvh.o"), out.join("pvh"));
    let ok = |c: &mut Command, what: &str| -> Res<()> {
        let s = c.status().map_err(|e| format!("{what}: {e} (install binutils)"))?;
        s.success().then_some(()).ok_or(format!("{what} failed ({s})"))
    };
    ok(Command::new("as").arg("--32").arg("-o").arg(&obj).arg(&src), "as")?;
    ok(
        Command::new("ld")
            .args(["-m", "elf_i386", "-Ttext=0x100000", "-o"])
            .arg(&elf)
            .arg(&obj),
        "ld",
    )?;
    Ok(elf)
}

/// QEMU's microvm with as little as it allows: no firmware option ROMs, no
/// PIT, PIC or RTC, one ISA serial port, and the exit device. `-cpu host`
/// with the architectural-capabilities MSR off: PVM's KVM refuses to set
/// that MSR and QEMU aborts otherwise.
fn qemu_cmd(pvh: &Path) -> Command {
    let mut c = Command::new("qemu-system-x86_64");
    c.args([
        "-M",
        "microvm,x-option-roms=off,pit=off,pic=off,rtc=off,isa-serial=on",
        "-accel",
        "kvm",
        "-cpu",
        "host,-arch-capabilities",
        "-m",
        "64",
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-serial",
        "stdio",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=4",
        "-kernel",
    ])
    .arg(pvh);
    c
}

fn bench() -> Res<()> {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let pairs = count_from_env("PEER_BENCH_PAIRS", if quick { 3 } else { 20 })?;
    let vmm = vmm_binary()?;
    let vmm_cmd = || {
        let mut c = Command::new(&vmm);
        c.args(["run", "--cmdline", "init=none"]);
        c
    };
    let have_qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let json_path = target_dir().join("bench/peers.json");
    if !have_qemu {
        println!(
            "peers bench: SKIPPED the QEMU rows: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
        );
        let json = serde_json::to_string(&Skipped {
            skipped: "qemu-system-x86_64 not installed",
        })
        .map_err(|e| e.to_string())?;
        std::fs::create_dir_all(json_path.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::write(&json_path, json).map_err(|e| e.to_string())?;
        return Ok(());
    }
    let pvh = build_pvh()?;
    // One uncounted run of each warms the page cache.
    run(&mut vmm_cmd())?;
    run(&mut qemu_cmd(&pvh))?;

    println!("pair   vmm ms   QEMU ms   ratio   vmm RSS KiB   QEMU RSS KiB");
    let mut rows = Vec::new();
    for i in 0..pairs {
        let a = run(&mut vmm_cmd())?;
        let b = run(&mut qemu_cmd(&pvh))?;
        // isa-debug-exit turns the byte 0 into status 1.
        if a.status != 0 || b.status != 1 {
            return Err(format!(
                "pair {i}: vmm exited {} (want 0), QEMU {} (want 1)",
                a.status, b.status
            ));
        }
        let (va, vb) = (a.wall.as_secs_f64() * 1e3, b.wall.as_secs_f64() * 1e3);
        println!(
            "{:>4} {:>8.2} {:>9.2} {:>7.3} {:>13} {:>14}",
            i + 1,
            va,
            vb,
            va / vb,
            a.rss_kib,
            b.rss_kib
        );
        rows.push((va, vb, a.rss_kib, b.rss_kib));
    }
    let ratio = median(rows.iter().map(|r| r.0 / r.1).collect());
    let vmm_ms = median(rows.iter().map(|r| r.0).collect());
    let qemu_ms = median(rows.iter().map(|r| r.1).collect());
    let vmm_rss = median(rows.iter().map(|r| r.2 as f64).collect());
    let qemu_rss = median(rows.iter().map(|r| r.3 as f64).collect());
    println!(
        "median of {pairs} pairs: vmm {vmm_ms:.2} ms, QEMU microvm {qemu_ms:.2} ms: ratio {ratio:.3} \
         ({:.1}× faster; target ratio ≤ {TARGET_RATIO}: {})",
        1.0 / ratio,
        if ratio <= TARGET_RATIO { "met" } else { "not met" }
    );
    println!(
        "peak RSS: vmm {:.1} MiB, QEMU {:.1} MiB (ratio {:.3})",
        vmm_rss / 1024.0,
        qemu_rss / 1024.0,
        vmm_rss / qemu_rss
    );
    println!(
        "reference (published, not measured here): Firecracker ≤ {FIRECRACKER_BOOT_MS} ms to init, \
         ≤ {FIRECRACKER_RSS_MIB} MiB VMM memory"
    );
    let json = Peers {
        pairs,
        vmm_cmd: "vmm run --cmdline init=none",
        qemu_cmd: format!("{:?}", qemu_cmd(&pvh)),
        median_ratio: ratio,
        median_vmm_ms: vmm_ms,
        median_qemu_ms: qemu_ms,
        median_vmm_rss_kib: vmm_rss,
        median_qemu_rss_kib: qemu_rss,
        target_ratio: TARGET_RATIO,
        rows: rows
            .iter()
            .map(|r| Pair {
                vmm_ms: r.0,
                qemu_ms: r.1,
                vmm_rss_kib: r.2,
                qemu_rss_kib: r.3,
            })
            .collect(),
        reference_firecracker: Reference {
            boot_ms_max: FIRECRACKER_BOOT_MS,
            rss_mib_max: FIRECRACKER_RSS_MIB,
            source: "Firecracker SPECIFICATION.md (published targets)",
        },
    };
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("write {}: {e}", json_path.display()))?;
    println!("wrote {}", json_path.display());
    Ok(())
}

/// target/bench/peers.json when QEMU is missing.
#[derive(serde::Serialize)]
struct Skipped {
    skipped: &'static str,
}

/// target/bench/peers.json.
#[derive(serde::Serialize)]
struct Peers {
    pairs: usize,
    vmm_cmd: &'static str,
    qemu_cmd: String,
    median_ratio: f64,
    median_vmm_ms: f64,
    median_qemu_ms: f64,
    median_vmm_rss_kib: f64,
    median_qemu_rss_kib: f64,
    target_ratio: f64,
    rows: Vec<Pair>,
    reference_firecracker: Reference,
}

/// One vmm run and one QEMU run, back to back.
#[derive(serde::Serialize)]
struct Pair {
    vmm_ms: f64,
    qemu_ms: f64,
    vmm_rss_kib: i64,
    qemu_rss_kib: i64,
}

#[derive(serde::Serialize)]
struct Reference {
    boot_ms_max: f64,
    rss_mib_max: f64,
    source: &'static str,
}
