//! Build the guest kernel (a freestanding no_std binary with its own link
//! flags and panic strategy, hence its own workspace) and hand its path to
//! the vmm crate, which embeds it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("guest");
    for p in [
        "guest/src",
        "guest/Cargo.toml",
        "guest/kernel.ld",
        "guest/build.rs",
        "guest/.cargo",
        "abi/src",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    let kernel = build(&root.join("guest"), &target).join("kernel");
    println!("cargo:rustc-env=VMM_GUEST_KERNEL={}", kernel.display());
}

/// `cargo build --release` in `dir` with a clean environment: the outer
/// build's flags (RUSTFLAGS, clippy's wrapper) must not leak into the guest.
fn build(dir: &Path, target: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--quiet"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("CARGO_") && k != "CARGO_HOME"
            || k.starts_with("RUSTC_")
            || k == "RUSTFLAGS"
            || k == "RUSTDOCFLAGS"
        {
            cmd.env_remove(&k);
        }
    }
    cmd.env("CARGO_TARGET_DIR", target);
    let status = cmd.status().expect("cannot run cargo to build the guest");
    assert!(status.success(), "building the guest in {} failed", dir.display());
    target.join("release")
}
