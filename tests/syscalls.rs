//! System calls, ring-3 processes and isolation, on this host's /dev/kvm
//! (on a PVM host: the PVM path; tests/faithful.rs runs the same on a
//! faithful KVM).

mod common;
use common::programs::programs;
use common::vmm;
use vmm::guest_image::USER_PROGRAM_PATHS;

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

fn user_program(name: &str) -> &'static str {
    USER_PROGRAM_PATHS.iter().find(|(n, _)| *n == name).unwrap().1
}

#[test]
fn the_builtin_tour_contains_every_attack() {
    vmm(&["run"])
        .assert_status(0)
        .stdout_has("Hello from ring 3 via syscall (CPL 3)")
        .stdout_has("Hello from ring 3 via int 0x80")
        .stdout_has("killed: #GP at 0x")
        .stdout_has("(cli) — privileged instruction in ring 3")
        .stdout_has("24/24 contained");
}

#[test]
fn as_ld_program_runs_unmodified() {
    vmm(&["run", "--", path(&programs().hello_asm)])
        .assert_status(0)
        .stdout_has("Hello from as+ld via syscall\n");
}

#[test]
fn nostdlib_program_gets_argv_and_efault_for_every_bad_pointer() {
    let r = vmm(&["run", "--", path(&programs().nostdlib), "a", "b"]);
    r.assert_status(0).stdout_has("nostdlib: argv: nostdlib a b");
    assert!(!r.stdout.contains("FAILED"), "{}", r.stdout);
}

#[test]
fn musl_program_printf_gettimeofday_and_own_syscall() {
    vmm(&["run", "--", path(&programs().musl), "x"])
        .assert_status(0)
        .stdout_has("musl: printf works, argc=2 argv[1]=x")
        .stdout_has("musl: gettimeofday plausible")
        .stdout_has("musl: syscount(getpid)=4");
}

#[test]
fn the_program_exit_status_is_vmm_exit_status() {
    vmm(&["run", "--", path(&programs().musl), "x", "y"]).assert_status(7);
}

#[test]
fn a_killed_init_gives_128_plus_signal() {
    vmm(&["run", "--", user_program("attack"), "cli"])
        .assert_status(128 + 11)
        .stdout_has("pid 1 killed: #GP at 0x");
}

#[test]
fn the_pvm_path_is_taken_exactly_on_pvm_hosts() {
    let pvm = vmm(&["kvm-info", "--json"]).stdout.contains("\"pvm\":true");
    let r = vmm(&["run", "--stats", "--", path(&programs().hello_asm)]);
    r.assert_status(0);
    if pvm {
        r.stderr_has("pvm_syscalls=2");
    } else {
        r.stderr_has("pvm_syscalls=0 pvm_int80=0");
    }
}

#[test]
fn a_dynamic_program_is_refused_with_advice() {
    vmm(&["run", "--", path(&programs().dynamic)])
        .assert_status(i32::from(vmm::status::SETUP_ERROR))
        .stderr_has("cannot run in the guest")
        .stderr_has("-static");
}

#[test]
fn a_missing_program() {
    vmm(&["run", "--", "/nonexistent/prog"])
        .assert_status(i32::from(vmm::status::SETUP_ERROR))
        .stderr_has("cannot read program /nonexistent/prog");
}

#[test]
fn ring0_single_step_works_here_and_ring3_breaks_are_refused_on_pvm() {
    let pvm = vmm(&["kvm-info", "--json"]).stdout.contains("\"pvm\":true");
    let asm = path(&programs().hello_asm);
    vmm(&[
        "run",
        "--break-at",
        "do_trap",
        "--break-by",
        "step",
        "--stepi",
        "3",
        "--",
        path(&programs().nostdlib),
    ])
    .assert_status(0)
    .stderr_has("step   0: CPL 0 CS 0x0008");
    let r = vmm(&["run", "--break-at", "_start", "--", asm]);
    if pvm {
        r.assert_status(i32::from(vmm::status::SETUP_ERROR))
            .stderr_has("never exit (see `vmm kvm-info`)");
    } else {
        r.assert_status(0).stderr_has("CPL 3");
    }
}

#[test]
fn host_stdin_from_a_pipe_reaches_the_guest_serial_input() {
    use std::io::Write;
    let mut child = std::process::Command::new(common::vmm_bin())
        .args(["run", "--timeout", "20", "--", path(&programs().echo)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello through COM1\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "echo: hello through COM1\n");
}

/// The kernel's syscall entry address, from its symbols.
pub fn entry_syscall_addr() -> String {
    let k = vmm::loader::KernelImage::parse(
        std::path::Path::new("kernel"),
        std::borrow::Cow::Borrowed(vmm::guest_image::KERNEL),
    )
    .unwrap();
    format!("{:#x}", k.symbols().address_of("entry_SYSCALL_64").unwrap())
}

#[test]
fn a_jump_to_the_syscall_entry_with_a_forged_return_address_kills_only_the_process() {
    // Hardware: a #PF fetching a supervisor page. PVM: it looks like a system
    // call arriving at LSTAR, and the kernel refuses the forged RCX.
    vmm(&[
        "run",
        "--",
        user_program("attack"),
        "fake-syscall",
        &entry_syscall_addr(),
    ])
    .assert_status(128 + 11)
    .stdout_has("pid 1 killed: #PF at 0xffffffff8");
}

#[test]
fn musl_reads_the_clock_through_the_vdso_without_a_system_call() {
    vmm(&["run", "--", path(&programs().clock)])
        .assert_status(0)
        .stdout_has("vdso: AT_SYSINFO_EHDR 0x7ffff7f01000")
        .stdout_has("vdso: monotonic non-decreasing, realtime plausible")
        .stdout_has("vdso: clock system calls made: 0");
}
