//! Hardware-semantics tests: they run on a faithful KVM — this host's
//! /dev/kvm when it is hardware KVM, otherwise the KVM box (QEMU TCG with
//! emulated AMD-V and the real kvm-amd), booted once for all cases here.
//! Never skipped: without a faithful KVM these tests fail with the reason.

mod common;
use common::faithful::{batch, box_path, Batch, Case, Where};
use common::programs::programs;
use std::path::PathBuf;
use vmm::guest_image::USER_PROGRAM_PATHS;
use vmm::status;

fn case(name: &'static str, args: &[&str]) -> Case {
    Case {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}

fn suite() -> &'static Batch {
    batch(|| {
        let p = programs();
        let attack = PathBuf::from(USER_PROGRAM_PATHS.iter().find(|(n, _)| *n == "attack").unwrap().1);
        let files = vec![
            p.clock.clone(),
            p.getpid_asm.clone(),
            p.hello_asm.clone(),
            p.nostdlib.clone(),
            p.musl.clone(),
            attack.clone(),
        ];
        // Inside the box the files sit under /work; on a hardware host, where they are.
        let at = |f: &PathBuf| {
            if std::env::var_os("VMM_FORCE_KVMBOX").is_some() || !host_is_hardware() {
                box_path(f)
            } else {
                f.display().to_string()
            }
        };
        let hello_asm = at(&p.hello_asm);
        let nostdlib = at(&p.nostdlib);
        let musl = at(&p.musl);
        let attack = at(&attack);
        let getpid_asm = at(&p.getpid_asm);
        let k = vmm::loader::KernelImage::parse(
            std::path::Path::new("kernel"),
            std::borrow::Cow::Borrowed(vmm::guest_image::KERNEL),
        )
        .unwrap();
        let entry = format!("{:#x}", k.symbols().address_of("entry_SYSCALL_64").unwrap());
        let cases = vec![
            case("tour", &["run", "--stats"]),
            case("asm", &["run", "--stats", "--", &hello_asm]),
            case("nostdlib", &["run", "--", &nostdlib, "a", "b"]),
            case("musl", &["run", "--", &musl, "x"]),
            case("killed-init", &["run", "--", &attack, "cli"]),
            case("vdso", &["run", "--", &at(&p.clock)]),
            case("fake-syscall", &["run", "--", &attack, "fake-syscall", &entry]),
            case(
                "debug-session",
                &[
                    "debug",
                    "--break-by",
                    "step",
                    // Every instruction from boot is single-stepped in the
                    // emulated box: 60 s is too little on a loaded host.
                    "--timeout",
                    "600",
                    "--batch",
                    "-x",
                    "break entry_SYSCALL_64",
                    "-x",
                    "continue",
                    "-x",
                    "sregs",
                    "-x",
                    "check 0x10",
                    "-x",
                    "break syscall_return",
                    "-x",
                    "continue",
                    "-x",
                    "stepi 16",
                    "-x",
                    "sregs",
                    "-x",
                    "check 0x10",
                    "-x",
                    "gdt",
                    "-x",
                    "idt",
                    "-x",
                    "tss",
                    "-x",
                    "msr",
                    "--",
                    &hello_asm,
                ],
            ),
            case(
                "strace-musl",
                // Single-stepped throughout, like debug-session: room for a loaded host.
                &[
                    "run",
                    "--strace",
                    "--break-by",
                    "step",
                    "--timeout",
                    "600",
                    "--",
                    &musl,
                    "x",
                ],
            ),
            case(
                "step-syscall",
                &[
                    "run",
                    "--break-at",
                    "_start",
                    "--break-by",
                    "step",
                    "--stepi",
                    "200",
                    "--",
                    &getpid_asm,
                ],
            ),
            case("kvm-info", &["kvm-info", "--json"]),
            case("boot", &["run"]),
            case("triple-fault", &["run", "--cmdline", "crash=triple-fault"]),
            case("page-fault", &["run", "--cmdline", "crash=page-fault"]),
            case("timeout", &["run", "--timeout", "2", "--cmdline", "crash=spin"]),
        ];
        (cases, files)
    })
}

fn host_is_hardware() -> bool {
    common::vmm(&["kvm-info", "--json"])
        .stdout
        .contains("\"hardware\":true")
}

#[test]
fn faithful_suite_ran_on_a_faithful_kvm() {
    let b = suite();
    eprintln!(
        "faithful suite ran on: {}",
        if b.place == Where::Box {
            "the KVM box (kvm-amd, hardware SVM semantics)"
        } else {
            "this host's hardware KVM"
        }
    );
}

#[test]
fn tour_contains_every_attack_on_hardware() {
    let r = suite().get("tour");
    assert_eq!(r.status, 0, "{}", r.output);
    has(&r.output, "Hello from ring 3 via syscall (CPL 3)");
    has(&r.output, "Hello from ring 3 via int 0x80");
    has(&r.output, "19/19 contained");
    // On hardware, int to a DPL-0 gate from ring 3 is a #GP (PVM reports #UD).
    has(&r.output, "int-gate            killed (SIGSEGV)");
}

#[test]
fn syscall_and_int80_reach_ring0_directly_on_hardware() {
    // The real entries ran: int 0x80 went through its gate, and the PVM
    // fault paths stayed unused.
    has(&suite().get("tour").output, "int80=1 pvm_syscalls=0 pvm_int80=0");
    has(
        &suite().get("asm").output,
        "vmm: kernel syscalls=2 int80=0 pvm_syscalls=0 pvm_int80=0",
    );
}

#[test]
fn three_kinds_of_static_programs_on_hardware() {
    let a = suite().get("asm");
    assert_eq!(a.status, 0, "{}", a.output);
    has(&a.output, "Hello from as+ld via syscall");
    let n = suite().get("nostdlib");
    assert_eq!(n.status, 0, "{}", n.output);
    has(&n.output, "nostdlib: argv: nostdlib a b");
    assert!(!n.output.contains("FAILED"), "{}", n.output);
    let m = suite().get("musl");
    assert_eq!(m.status, 0, "{}", m.output);
    has(&m.output, "musl: printf works, argc=2 argv[1]=x");
    has(&m.output, "musl: syscount(getpid)=4");
}

#[test]
fn killed_init_on_hardware() {
    let r = suite().get("killed-init");
    assert_eq!(r.status, 128 + 11, "{}", r.output);
    has(&r.output, "pid 1 killed: #GP at 0x");
}

fn has(out: &str, s: &str) {
    assert!(out.contains(s), "output lacks {s:?}:\n{out}");
}

#[test]
fn kvm_info_reports_hardware_semantics() {
    let r = suite().get("kvm-info");
    assert_eq!(r.status, 0, "{}", r.output);
    has(&r.output, "\"hardware\":true");
    has(&r.output, "\"pvm\":false");
}

#[test]
fn builtin_guest_boots_with_hardware_semantics() {
    let r = suite().get("boot");
    assert_eq!(r.status, 0, "{}", r.output);
    has(&r.output, "kernel: CPL 0 CS 0x8 EFER 0xd01");
    has(&r.output, "KVM hardware");
}

#[test]
fn triple_fault_report_on_hardware() {
    let r = suite().get("triple-fault");
    assert_eq!(r.status, i32::from(status::TRIPLE_FAULT), "{}", r.output);
    has(&r.output, "triple fault");
}

#[test]
fn kernel_page_fault_on_hardware() {
    let r = suite().get("page-fault");
    assert_eq!(r.status, i32::from(status::KERNEL_PANIC), "{}", r.output);
    has(&r.output, "kernel fault: #PF (vector 14)");
}

#[test]
fn timeout_on_hardware() {
    let r = suite().get("timeout");
    assert_eq!(r.status, i32::from(status::TIMEOUT), "{}", r.output);
}

#[test]
fn single_step_across_syscall_and_sysretq_sees_cpl_3_0_3() {
    let r = suite().get("step-syscall");
    assert_eq!(r.status, 0, "{}", r.output);
    has(&r.output, "step   0: CPL 3 CS 0x0023 SS 0x001b RIP 0x401000 <_start>");
    has(&r.output, "CPL 3 → 0 via syscall");
    has(&r.output, "CPL 0 CS 0x0008 SS 0x0010 RIP 0xffffffff8");
    has(&r.output, "<entry_SYSCALL_64>        swapgs");
    has(&r.output, "sysretq");
    has(&r.output, "CPL 0 → 3 via sysretq");
    // The null system call's instruction count, deterministic: reported, not asserted.
    let line = r
        .output
        .lines()
        .find(|l| l.contains("round trip:"))
        .expect("a round-trip count");
    eprintln!("faithful suite: getpid {line}");
}

#[test]
fn debugger_session_across_syscall_and_sysretq() {
    let r = suite().get("debug-session");
    assert_eq!(r.status, 0, "{}", r.output);
    let out = &r.output;
    // At the syscall entry: CPL 0, CS the kernel code descriptor (index 1).
    has(out, "Breakpoint 1, entry_SYSCALL_64");
    has(out, "CPL 0  0xffffffff8");
    has(out, "cs   0x0008 (index 1, GDT, RPL 0)");
    has(out, "data: max(CPL 0, RPL 0) = 0 ≤ DPL 0? yes → allowed");
    // Stepping through sysretq: CPL 0 → 3, CS the user code selector with RPL 3.
    has(out, "sysretq");
    has(out, "[CPL 0 → 3 via sysretq]");
    has(out, "cs   0x0023 (index 4, GDT, RPL 3)");
    has(out, "data: max(CPL 3, RPL 0) = 3 ≤ DPL 0? no → #GP(0x10)");
    // gdt, idt, tss, msr decoded.
    has(out, "loaded in TR, DIFFERS: type cached 0xb vs memory 0x9");
    has(out, "0x80 int80  interrupt sel 0x0008");
    has(out, "RSP0  0xffff888");
    has(out, "syscall loads CS 0x8 SS 0x10; sysretq loads CS 0x23 SS 0x1b");
}

#[test]
fn strace_of_a_musl_program_on_hardware() {
    let r = suite().get("strace-musl");
    assert_eq!(r.status, 0, "{}", r.output);
    let names: Vec<&str> = r
        .output
        .lines()
        .filter_map(|l| l.strip_prefix("[pid 1] "))
        .map(|l| l.split('(').next().unwrap())
        .collect();
    assert_eq!(names, common::programs::MUSL_SYSCALLS, "{}", r.output);
}

#[test]
fn a_jump_to_the_syscall_entry_from_ring3_is_a_page_fault_on_hardware() {
    let r = suite().get("fake-syscall");
    assert_eq!(r.status, 128 + 11, "{}", r.output);
    // The supervisor page cannot be fetched from ring 3: #PF with error 0x15.
    has(&r.output, "pid 1 killed: #PF at 0xffffffff8");
}

#[test]
fn the_vdso_reads_the_clock_in_ring3_on_hardware() {
    let r = suite().get("vdso");
    assert_eq!(r.status, 0, "{}", r.output);
    has(&r.output, "vdso: clock system calls made: 0");
}
