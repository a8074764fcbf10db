//! Build the guest kernel and the ring-3 programs (freestanding no_std binary with its own link
//! flags and panic strategy, hence workspaces of their own) and hand their
//! paths to the vmm crate, which embeds them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The only target installed; the guest is built freestanding for it.
const TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("guest");
    for dir in ["guest", "guest-user"] {
        for p in ["src", "Cargo.toml", "build.rs", ".cargo", "kernel.ld", "user.ld"] {
            println!("cargo:rerun-if-changed={}", root.join(dir).join(p).display());
        }
    }
    println!("cargo:rerun-if-changed={}", root.join("abi/src").display());
    println!("cargo:rerun-if-changed={}", root.join("guest/vdso").display());
    let kernel = build(&root.join("guest"), &target).join("kernel");
    println!("cargo:rustc-env=VMM_GUEST_KERNEL={}", kernel.display());
    let vdso = build_vdso(&root.join("guest/vdso"), &target);
    println!("cargo:rustc-env=VMM_VDSO={}", vdso.display());
    // The ring-3 programs of the built-in boot archive.
    let user = build(&root.join("guest-user"), &target);
    for prog in ["init", "hello", "attack", "bench", "sysfuzz"] {
        println!(
            "cargo:rustc-env=VMM_USER_{}={}",
            prog.to_uppercase(),
            user.join(prog).display()
        );
    }
}

/// `cargo build --release` in `dir` with a clean environment: the outer
/// build's flags (RUSTFLAGS, clippy's wrapper) must not leak into the guest.
fn build(dir: &Path, target: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    // An explicit target keeps the guest flags (in the per-target rustflags
    // of its .cargo/config.toml) off its build scripts.
    cmd.args(["build", "--release", "--quiet", "--target", TARGET])
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
    target.join(TARGET).join("release")
}

/// The vDSO: a small shared object in C, with the vvar page's address from
/// the boot contract (vmm_abi::layout), laid out as one flat read-only,
/// executable segment so the guest kernel can map its file pages as they are.
fn build_vdso(dir: &Path, target: &Path) -> PathBuf {
    std::fs::create_dir_all(target).expect("create the guest target directory");
    let out = target.join("vdso.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(cc)
        .args([
            "-shared",
            "-nostdlib",
            "-fPIC",
            "-O2",
            "-fno-stack-protector",
            "-fno-asynchronous-unwind-tables",
        ])
        .arg(format!("-DVVAR_ADDR={:#x}UL", vmm_abi::layout::VVAR_USER))
        .arg(format!("-Wl,--version-script={}", dir.join("vdso.lds").display()))
        .arg(format!("-Wl,-T,{}", dir.join("vdso-layout.lds").display()))
        .args([
            "-Wl,--hash-style=both",
            "-Wl,-soname=linux-vdso.so.1",
            "-Wl,--build-id=none",
            "-o",
        ])
        .arg(&out)
        .arg(dir.join("vdso.c"))
        .status()
        .expect("cannot run the C compiler (cc) to build the vDSO");
    assert!(status.success(), "building the vDSO in {} failed", dir.display());
    out
}
