//! Link the programs freestanding: no C runtime, no libc, static, not PIE,
//! laid out by user.ld at 0x400000. `-u _start` pulls the entry point (in the
//! library's `rt` module) out of the rlib archive.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rerun-if-changed=user.ld");
    println!("cargo:rustc-link-arg-bins=-T{dir}/user.ld");
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,-u,_start",
        "-Wl,--build-id=none",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
