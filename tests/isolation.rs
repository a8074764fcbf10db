//! Isolation holes and hostile input found by a hostile pass (issue 9): each
//! one is a test here, on this host's /dev/kvm; tests/faithful.rs runs the
//! ones whose path differs on hardware semantics in the KVM box.

mod common;
use common::programs::programs;
use common::vmm;
use std::io::Write;
use std::process::{Command, Stdio};

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_tour_contains_the_new_attacks() {
    vmm(&["run"])
        .assert_status(0)
        .stdout_has("attack vdso-write: contained (private copy; others' vDSO and clock untouched)")
        .stdout_has("attack bench-hook: contained (-EPERM: not booted with `bench`)")
        .stdout_has("attack mmap-zero: contained (-EPERM below mmap_min_addr)")
        .stdout_has("attack mmap-exhaust: contained")
        .stdout_has("tf-syscall          killed (SIGTRAP)   killed (SIGTRAP)     contained")
        .stdout_has("26/26 contained");
}

#[test]
fn a_syscall_or_int80_in_the_last_bytes_of_user_space_kills_only_the_process() {
    for (prog, via) in [
        (&programs().top_syscall, "syscall"),
        (&programs().top_int80, "int 0x80"),
    ] {
        vmm(&["run", "--", path(prog)])
            .assert_status(128 + 11)
            .stdout_has(&format!(
                "killed: #GP — the return from {via} would go to 0x800000000000, not a canonical user address"
            ));
    }
}

#[test]
fn empty_and_many_arguments_all_reach_the_program() {
    vmm(&["run", "--", path(&programs().args), "", "", "x", ""])
        .assert_status(0)
        .stdout_has("argc=5 [args] [] [] [x] []\n");
    let many: Vec<String> = (0..40).map(|i| format!("a{i}")).collect();
    let mut argv = vec!["run", "--", path(&programs().args)];
    argv.extend(many.iter().map(String::as_str));
    vmm(&argv)
        .assert_status(0)
        .stdout_has("argc=41 ")
        .stdout_has(" [a39]\n");
}

#[test]
fn arguments_over_the_kernel_limit_are_refused_before_booting() {
    let many: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    let mut argv = vec!["run", "--", path(&programs().args)];
    argv.extend(many.iter().map(String::as_str));
    vmm(&argv)
        .assert_status(i32::from(vmm::status::SETUP_ERROR))
        .stderr_has("too big for the guest (E2BIG): 301 strings")
        .stderr_has("at most 256 strings");
    let long = "y".repeat(5000);
    vmm(&["run", "--", path(&programs().args), &long])
        .assert_status(i32::from(vmm::status::SETUP_ERROR))
        .stderr_has("E2BIG");
}

#[test]
fn spawn_takes_256_arguments_and_refuses_more_with_e2big() {
    vmm(&["run", "--", path(&programs().spawner), "args"])
        .assert_status(0)
        .stdout_has("spawner: 256 args spawn, 257 and 5000-byte ones get -E2BIG: ok");
}

#[test]
fn memory_a_child_used_and_freed_serves_new_processes() {
    // The hog maps all it can (about 60 MiB of 64) and exits; every later
    // spawn needs a kernel stack, which used to come from never-reused memory.
    vmm(&["run", "--", path(&programs().spawner), "hog-then", "20"])
        .assert_status(0)
        .stdout_has("hog: held ")
        .stdout_has("spawner: 20 spawns, all reaped");
}

/// Run `vmm run -- cat` with `stdin`, optionally writing `input` to a pipe.
fn cat_with(stdin: Stdio, input: Option<&[u8]>) -> (i32, Vec<u8>) {
    let mut child = Command::new(common::vmm_bin())
        .args(["run", "--timeout", "30", "--", path(&programs().cat)])
        .stdin(stdin)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(bytes) = input {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), out.stdout)
}

#[test]
fn read_returns_0_at_the_end_of_host_stdin() {
    assert_eq!(
        cat_with(Stdio::piped(), Some(b"abc\n")),
        (0, b"abc\n".to_vec()),
        "a pipe"
    );
    assert_eq!(cat_with(Stdio::null(), None), (0, vec![]), "/dev/null");
    let file = common::temp_file("cat-input", b"two\nlines without end");
    let f = std::fs::File::open(&file).unwrap();
    assert_eq!(
        cat_with(Stdio::from(f), None),
        (0, b"two\nlines without end".to_vec()),
        "a file"
    );
}

#[test]
fn read_returns_0_when_stdin_is_closed() {
    // The shell's `<&-`: fd 0 is not open at all.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec {} run --timeout 30 -- {} <&-",
            common::vmm_bin().display(),
            path(&programs().cat)
        ))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Run vmm with stdout to /dev/null; its exit status and peak RSS in KiB.
// Reaped by wait4 below, which std's Child cannot do (it has no rusage).
#[allow(clippy::zombie_processes)]
fn status_and_max_rss(args: &[&str]) -> (i32, i64) {
    let child = Command::new(common::vmm_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage for wait4 to fill; the pid is our child's.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    assert_eq!(pid, child.id() as i32);
    (libc::WEXITSTATUS(status), ru.ru_maxrss)
}

#[test]
fn output_without_a_newline_is_not_held_in_vmm_memory() {
    // 1 MiB without '\n': at most LINE_MAX (4 KiB) may wait for a newline,
    // where the whole "line" used to (8 MiB of it made RSS 12 MB).
    let n = 1 << 20;
    let spew = path(&programs().spew);
    let (s0, base) = status_and_max_rss(&["run", "--", spew, "0"]);
    let (s1, rss) = status_and_max_rss(&["run", "--", spew, &n.to_string()]);
    assert_eq!((s0, s1), (0, 0));
    assert!(
        rss - base < 512,
        "printing 1 MiB without a newline raised vmm's peak RSS from {base} to {rss} KiB"
    );
    // And every byte still arrives, in order.
    let r = vmm(&["run", "--", spew, "65536"]);
    r.assert_status(0);
    assert_eq!(r.stdout.len(), 65536);
    assert!(r.stdout.bytes().all(|b| b == b'x'));
}

#[test]
fn breakpoints_and_single_steps_in_ring_3_are_sigtrap_with_the_right_story() {
    // #BP: reported at the int3 (not the byte after it, whose bytes would
    // explain nothing), SIGTRAP as on Linux.
    let attack = vmm::boot::guest_image::USER_PROGRAM_PATHS
        .iter()
        .find(|(n, _)| *n == "attack")
        .unwrap()
        .1;
    vmm(&["run", "--", attack, "int3"])
        .assert_status(128 + 5)
        .stdout_has("killed: #BP at 0x")
        .stdout_has("(int3) — breakpoint");
    // TF set across `int 0x80`: a debug trap, not a gate's DPL.
    let r = vmm(&["run", "--", attack, "tf-int80"]);
    r.assert_status(128 + 5)
        .stdout_has("killed: #DB at 0x")
        .stdout_has("debug exception");
    assert!(!r.stdout.contains("DPL"), "{}", r.stdout);
}

#[test]
fn a_childs_bench_null_entry_does_not_outlive_it() {
    // Booted for `vmm bench`, a process may point LSTAR at the null entry
    // for itself. A child that does and exits must not leave it to us: the
    // switch back used to skip the wrmsr (its cache of LSTAR was stale), and
    // every later `syscall` of every process returned untouched — exit too.
    vmm(&["run", "--cmdline", "quiet bench", "--", attack_path(), "lstar-leak"])
        .assert_status(0)
        .stdout_has("attack lstar-leak: contained");
}

fn attack_path() -> &'static str {
    vmm::boot::guest_image::USER_PROGRAM_PATHS
        .iter()
        .find(|(n, _)| *n == "attack")
        .unwrap()
        .1
}

#[test]
fn the_kernel_does_not_write_the_shared_vdso_pages_for_a_process() {
    // uname, gettimeofday, clock_gettime, rt_sigaction and arch_prctl given
    // pointers into the read-only vvar/vDSO pages: -EFAULT (CR0.WP), and
    // the pages every process shares stay as they were.
    vmm(&["run", "--", attack_path(), "vdso-kwrite"])
        .assert_status(0)
        .stdout_has("attack vdso-kwrite: contained");
}
