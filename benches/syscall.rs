//! System-call benchmark: `cargo bench -p vmm --bench syscall` runs the
//! release `vmm bench` (guest rows timed inside the VM beside the host's own)
//! and prints its table. `BENCH_QUICK=1` passes `--quick` (a few iterations,
//! for CI); `BENCH_JSON=FILE` and `BENCH_PLOT=DIR` pass `--json` and `--plot`.
//! No timing threshold fails it: it exits non-zero only when something breaks.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_vmm"));
    let mut cmd = Command::new(&bin);
    cmd.arg("bench");
    if std::env::var_os("BENCH_QUICK").is_some_and(|v| v == "1") {
        cmd.arg("--quick");
    }
    if let Some(f) = std::env::var_os("BENCH_JSON") {
        cmd.arg("--json").arg(f);
    }
    if let Some(d) = std::env::var_os("BENCH_PLOT") {
        cmd.arg("--plot").arg(d);
    }
    // The table goes straight to our stdout.
    match cmd.status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("syscall bench: `{} bench` failed ({s})", bin.display());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("syscall bench: cannot run {}: {e}", bin.display());
            ExitCode::FAILURE
        }
    }
}
