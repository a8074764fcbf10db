//! What the benchmarks share: finding the release `vmm` binary and reading
//! their run counts from the environment.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// The `vmm` binary cargo built for this benchmark (release): cargo says
/// where; the fallback covers a toolchain that does not.
pub fn vmm_binary() -> Result<PathBuf, String> {
    let path = match option_env!("CARGO_BIN_EXE_vmm") {
        Some(p) => PathBuf::from(p),
        None => target_dir().join("x86_64-unknown-linux-gnu/release/vmm"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: run `cargo build --release -p vmm` first",
            path.display()
        ))
    }
}

/// A positive count from environment variable `name`, else `default`.
pub fn count_from_env(name: &str, default: usize) -> Result<usize, String> {
    match std::env::var(name) {
        Ok(s) => s
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or(format!("{name}={s:?} is not a positive integer")),
        Err(_) => Ok(default),
    }
}
