//! The debugger, strace, funcgraph and the GDB stub on this host's /dev/kvm.
//! On a PVM host the kernel is reached through its exception entry (system
//! calls arrive as faults there) and ring-3 stops are refused; the ring-3
//! and cross-ring cases run on a faithful KVM in tests/faithful.rs.

mod common;
use common::programs::programs;
use common::vmm;

fn pvm() -> bool {
    vmm(&["kvm-info", "--json"]).stdout.contains("\"pvm\":true")
}

/// A kernel function every system call passes through on this host.
fn kernel_stop() -> &'static str {
    if pvm() {
        "do_trap"
    } else {
        "entry_SYSCALL_64"
    }
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

fn debug(cmds: &[&str], prog: &std::path::Path) -> common::Run {
    let mut args = vec!["debug".to_string(), "--batch".to_string()];
    for c in cmds {
        args.push("-x".into());
        args.push(c.to_string());
    }
    args.push("--".into());
    args.push(path(prog));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    vmm(&refs)
}

#[test]
fn batch_session_breaks_in_the_kernel_and_decodes_privilege_state() {
    let stop = kernel_stop();
    let r = debug(
        &[
            &format!("break {stop}"),
            "continue",
            "sregs",
            "stepi 2",
            "gdt",
            "idt 14",
            "idt 0x80",
            "tss",
            "msr",
            "cr",
            "bt",
        ],
        &programs().hello_asm,
    );
    r.assert_status(0)
        .stdout_has("stopped before the first instruction: CPL 0")
        .stdout_has("Breakpoint 1, ")
        .stdout_has(
            "cs   0x0008 (index 1, GDT, RPL 0)  base 0x0 limit 0xffffffff type 0xb = code, execute/read, accessed",
        )
        .stdout_has("CPL 0 (CS.RPL)  IOPL 0 (RFLAGS)")
        // The TR cache says busy (ltr sets it); the GDT in memory says available.
        .stdout_has("loaded in TR, DIFFERS: type cached 0xb vs memory 0x9")
        .stdout_has("0x0e #PF    interrupt sel 0x0008")
        .stdout_has("0x80 int80  interrupt sel 0x0008  0xffffffff8")
        .stdout_has("<entry_INT80>  DPL 3  IST 0")
        .stdout_has("I/O map base 0x68 (no bitmap")
        .stdout_has("syscall loads CS 0x8 SS 0x10; sysretq loads CS 0x23 SS 0x1b")
        .stdout_has("<entry_SYSCALL_64>")
        .stdout_has("CR0    0x0000000080010033  PE MP ET NE WP PG")
        .stdout_has("#0  0xffffffff8");
}

#[test]
fn check_explains_the_data_segment_rule() {
    let r = debug(
        &[
            "check 0x10",
            "check 0x10 at cpl 3",
            "check 0x1b for stack at cpl 3",
            "check 0x08 for code at cpl 3",
        ],
        &programs().hello_asm,
    );
    r.assert_status(0)
        .stdout_has("data: max(CPL 0, RPL 0) = 0 ≤ DPL 0? yes → allowed")
        .stdout_has("data: max(CPL 3, RPL 0) = 3 ≤ DPL 0? no → #GP(0x10)")
        .stdout_has("stack: RPL 3 = CPL 3 and DPL 3 = CPL 3? yes → allowed")
        .stdout_has("non-conforming code: RPL 0 ≤ CPL 3 and DPL 0 = CPL 3? no → #GP(0x8)");
}

#[test]
fn dumps_have_json() {
    let r = debug(
        &[
            "sregs --json",
            "check 0x10 at cpl 3 --json",
            "pt 0xffffffff80100000 --json",
        ],
        &programs().hello_asm,
    );
    r.assert_status(0);
    let docs: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 3, "{}", r.stdout);
    assert_eq!(docs[0]["cpl"], 0);
    assert_eq!(docs[0]["segments"][0]["selector"]["index"], 1);
    assert_eq!(docs[1]["allowed"], false);
    assert_eq!(docs[2]["steps"][3]["user"], false);
}

#[test]
fn page_walk_and_memory() {
    let r = debug(
        &[
            "pt 0xffffffff80100000",
            "pt 0x400000",
            "x/2g 0xffff888000001008",
            "disas 2",
        ],
        &programs().hello_asm,
    );
    r.assert_status(0)
        .stdout_has("PML4E [511]")
        .stdout_has("supervisor-only (ring 3 gets #PF)")
        .stdout_has("→ not mapped: the PML4E has P = 0")
        // GDT[1] and GDT[2] through the direct map.
        .stdout_has("0x00af9b000000ffff 0x00cf93000000ffff")
        .stdout_has("=> 0xffffffff80100000 <");
}

#[test]
fn ring3_stops_are_refused_on_pvm_with_the_reason() {
    if !pvm() {
        return;
    }
    let r = debug(&["break _start"], &programs().hello_asm);
    assert_ne!(r.status, 0);
    r.stderr_has("never exit (see `vmm kvm-info`)");
}

#[test]
fn strace_lists_the_calls_of_a_musl_program_in_order() {
    let r = vmm(&["run", "--strace", "--", &path(&programs().musl), "x"]);
    r.assert_status(0);
    let calls: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("[pid 1] ")).collect();
    let names: Vec<&str> = calls.iter().map(|l| l[8..].split('(').next().unwrap()).collect();
    assert_eq!(names, common::programs::MUSL_SYSCALLS, "{}", r.stderr);
    r.stderr_has("[pid 1] ioctl(1, 0x5413, 0x7fff")
        .stderr_has("= -1 ENOTTY (Inappropriate ioctl for device)")
        .stderr_has("[pid 1] writev(1, [{iov_base=\"musl: printf works, argc=2 argv[\"..., iov_len=36}")
        .stderr_has("[pid 1] exit_group(0) = ?");
}

#[test]
fn strace_shows_write_and_efault() {
    let r = vmm(&["run", "--strace", "--", &path(&programs().nostdlib)]);
    r.assert_status(0)
        .stderr_has("[pid 1] write(1, \"nostdlib: argv:\", 15) = 15")
        .stderr_has("[pid 1] write(1, 0xffffffff80100000, 16) = -1 EFAULT (Bad address)")
        .stderr_has("[pid 1] syscall_333(0x0, 0x0, 0x0) = -1 ENOSYS (Function not implemented)")
        .stderr_has("debug exits");
}

#[test]
fn funcgraph_draws_the_call_tree_of_a_kernel_function() {
    let r = vmm(&[
        "trace",
        "--funcgraph",
        "kernel::console::sys_write",
        "--",
        &path(&programs().hello_asm),
    ]);
    r.assert_status(0)
        .stderr_has("# CPU  INSNS        DURATION       FUNCTION CALLS")
        .stderr_has("|  kernel::console::sys_write() {")
        .stderr_has("|    kernel::serial::console_write();")
        .stderr_has("funcgraph: 1 calls traced");
}

#[test]
fn gdb_connects_breaks_by_symbol_and_reads_registers_and_memory() {
    let port = 20000 + (std::process::id() % 20000) as u16;
    let addr = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new(common::vmm_bin())
        .args(["run", "--gdb", &addr, "--", &path(&programs().hello_asm)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // vmm says when it listens; gdb connects after that.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    assert!(line.contains("waiting for gdb"), "{line}");
    let stop = kernel_stop();
    let out = std::process::Command::new("gdb")
        .args(["-q", "-batch", "-nx", vmm::boot::guest_image::KERNEL_PATH])
        .args(["-ex", &format!("target remote {addr}")])
        .args([
            "-ex",
            &format!("break {stop}"),
            "-ex",
            "continue",
            "-ex",
            "info registers rip cs",
        ])
        .args(["-ex", "x/2gx 0xffff888000001008", "-ex", "delete", "-ex", "continue"])
        .output()
        .expect("run gdb (Debian package gdb)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let status = child.wait().unwrap();
    assert!(text.contains("Breakpoint 1"), "{text}");
    assert!(
        text.contains(&format!("Breakpoint 1, {stop}")) || text.contains(&format!("::{stop}")) || text.contains(stop),
        "{text}"
    );
    assert!(text.contains("cs             0x8"), "{text}");
    assert!(text.contains("0x00af9b000000ffff\t0x00cf93000000ffff"), "{text}");
    assert!(text.contains("exited normally"), "{text}");
    assert!(status.success());
}

#[test]
fn watchpoints_by_stepping_stop_where_the_value_changes() {
    // getpid's counter in the kernel's table of system-call counts (39 * 8 = 0x138).
    let r = vmm(&[
        "debug",
        "--break-by",
        "step",
        "--batch",
        "-x",
        "watch SYSCALL_COUNTS+0x138 8",
        "-x",
        "continue",
        "-x",
        "x/1g SYSCALL_COUNTS+0x138",
        "--",
        &path(&programs().musl),
    ]);
    r.assert_status(0)
        .stdout_has("Watchpoint 1, SYSCALL_COUNTS+0x138 written")
        .stdout_has("<SYSCALL_COUNTS+0x138>:  0x0000000000000001");
}

#[test]
fn exit_instruction_breakpoints_stop_in_the_kernel_and_it_goes_on() {
    let stop = kernel_stop();
    let r = vmm(&[
        "debug",
        "--break-by",
        "exit-insn",
        "--batch",
        "-x",
        &format!("break {stop}"),
        "-x",
        "continue",
        "-x",
        "continue",
        "-x",
        "delete",
        "-x",
        "continue",
        "--",
        &path(&programs().hello_asm),
    ]);
    r.assert_status(0)
        .stdout_has(&format!("<{stop}> (exit-instruction patch)"))
        .stdout_has("guest ended: guest exited with status 0");
    let hits = r.stdout.matches(&format!("Breakpoint 1, {stop}")).count();
    assert_eq!(hits, 2, "{}", r.stdout);
    // The original byte is back at the stop: the instruction shown is the kernel's, not `in al,dx`.
    assert!(!r.stdout.contains("in al,dx"), "{}", r.stdout);
}

#[test]
fn exit_instruction_breakpoints_are_refused_in_ring_3() {
    let r = debug(&["break _start"], &programs().hello_asm);
    let r2 = vmm(&[
        "debug",
        "--break-by",
        "exit-insn",
        "--batch",
        "-x",
        "break _start",
        "--",
        &path(&programs().hello_asm),
    ]);
    assert_ne!(r2.status, 0, "{}", r2.stderr);
    if !pvm() {
        assert!(r2.stderr.contains("ring-3 address"), "{}", r2.stderr);
        assert!(r.stdout.contains("Breakpoint 1 at 0x401000"), "{}", r.stdout);
    }
}

#[test]
fn tracers_reach_their_points_by_exit_instruction_patches_too() {
    // The same engine as the debugger's: strace, funcgraph and --break-at
    // with `in al, dx` patched over their kernel trace points.
    let r = vmm(&[
        "run",
        "--strace",
        "--break-by",
        "exit-insn",
        "--",
        &path(&programs().musl),
        "x",
    ]);
    r.assert_status(0);
    let names: Vec<&str> = r
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("[pid 1] "))
        .map(|l| l.split('(').next().unwrap())
        .collect();
    assert_eq!(names, common::programs::MUSL_SYSCALLS, "{}", r.stderr);
    r.stderr_has("exit-instruction breakpoints");
    // The original bytes are back: nothing the kernel runs sees `in al, dx`.
    r.stdout_has("musl: syscount(getpid)=4");

    let f = vmm(&[
        "trace",
        "--funcgraph",
        "kernel::console::sys_write",
        "--break-by",
        "exit-insn",
        "--",
        &path(&programs().hello_asm),
    ]);
    f.assert_status(0)
        .stderr_has("|  kernel::console::sys_write() {")
        .stderr_has("funcgraph: 1 calls traced");

    // sys_write runs once, for the program's write: the same 31 stops
    // whichever way the breakpoint is reached (steps hold interrupts off).
    let stop = "kernel::console::sys_write";
    let by = |m: &str| {
        let r = vmm(&[
            "run",
            "--break-at",
            stop,
            "--break-by",
            m,
            "--stepi",
            "30",
            "--",
            &path(&programs().hello_asm),
        ]);
        r.assert_status(0);
        r.stderr
            .lines()
            .filter(|l| l.starts_with("step "))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let patched = by("exit-insn");
    assert_eq!(patched.len(), 31, "{patched:?}");
    assert!(patched[0].contains("<kernel::console::sys_write>"), "{patched:?}");
    assert_eq!(patched, by("step"));
}

#[test]
fn exit_instruction_trace_points_are_refused_in_ring_3() {
    let r = vmm(&[
        "run",
        "--break-at",
        "_start",
        "--break-by",
        "exit-insn",
        "--",
        &path(&programs().hello_asm),
    ]);
    assert_eq!(r.status, i32::from(vmm::status::SETUP_ERROR), "{}", r.stderr);
    if !pvm() {
        r.stderr_has("ring-3 address");
    }
}

#[test]
fn stepping_tracers_still_end_at_the_timeout() {
    // Single steps that never come back (a ring-3 spin on PVM, `hlt` with
    // interrupts held off) are timed like runs: a report, not a hang.
    let spin = path(&programs().timer);
    for args in [
        &[
            "run",
            "--timeout",
            "2",
            "--strace",
            "--break-by",
            "step",
            "--",
            &spin,
            "spin",
        ][..],
        &["run", "--timeout", "2", "--strace", "--", &spin, "spin"][..],
        &[
            "run",
            "--timeout",
            "2",
            "--strace",
            "--break-by",
            "step",
            "--",
            &spin,
            "sleep",
            "5000",
        ][..],
    ] {
        let r = vmm(args);
        assert_eq!(r.status, i32::from(vmm::status::TIMEOUT), "{args:?}\n{}", r.stderr);
        r.stderr_has("vmm: strace: ");
    }
}
