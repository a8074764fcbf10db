//! Several CPUs (`vmm run --cpus N`) on this host's /dev/kvm: processes run
//! on all of them, musl sees how many there are, the kernel's CPU calls
//! answer as Linux's, address spaces shared out across CPUs stay clean, and
//! every ring-3 attack stays contained. tests/faithful.rs runs the same in
//! the KVM box, which has one physical CPU for all the vCPUs.

mod common;
use common::programs::programs;
use common::vmm;

fn smp() -> &'static str {
    programs().smp.to_str().unwrap()
}

#[test]
fn a_parent_gets_the_cpu_back_from_a_spinning_child_on_one_and_two_cpus() {
    let timer = programs().timer.to_str().unwrap();
    for cpus in ["1", "2"] {
        vmm(&["run", "--cpus", cpus, "--timeout", "30", "--", timer, "yield"])
            .assert_status(0)
            .stdout_has("timer: back from sched_yield with a spinning child");
    }
}

#[test]
fn musl_counts_the_cpus_and_finds_itself_on_one() {
    vmm(&["run", "--cpus", "3", "--", smp(), "cpus"])
        .assert_status(0)
        .stdout_has("smp: online 3, sched_getcpu ");
    vmm(&["run", "--", smp(), "cpus"])
        .assert_status(0)
        .stdout_has("smp: online 1, sched_getcpu 0");
}

#[test]
fn the_banner_reports_the_cpus() {
    vmm(&["run", "--cpus", "2", "--cmdline", "init=none"])
        .assert_status(0)
        .stdout_has("mem 64 MiB CPUs 2");
    vmm(&["run", "--cmdline", "init=none"])
        .assert_status(0)
        .stdout_has("mem 64 MiB CPUs 1");
}

#[test]
fn the_tour_is_contained_on_one_and_four_cpus() {
    for cpus in ["1", "4"] {
        vmm(&["run", "--cpus", cpus, "--stats"])
            .assert_status(0)
            .stdout_has("26/26 contained")
            .stderr_has(&format!("cpus_online={cpus}"));
    }
}

#[test]
fn sched_getaffinity_and_getcpu_refuse_bad_sizes_and_pointers_as_linux() {
    vmm(&["run", "--cpus", "2", "--", smp(), "abuse"])
        .assert_status(0)
        .stdout_has("smp: its bits = 2\n")
        .stdout_has("smp: affinity(0, 8, kernel) = -14\n")
        .stdout_has("smp: affinity(0, 2^31, buf) = -22\n")
        .stdout_has("smp: affinity(99999, 8, buf) = -3\n")
        .stdout_has("smp: getcpu(kernel, NULL) = -14\n")
        .stdout_has("smp: abuse: all as Linux");
}

#[test]
fn processes_mapping_and_unmapping_on_two_cpus_never_see_a_stale_page() {
    // Each round maps, writes, yields (another CPU may take the process),
    // unmaps, and maps the same address again: it must read zeros.
    vmm(&[
        "run",
        "--cpus",
        "2",
        "--stats",
        "--timeout",
        "120",
        "--",
        smp(),
        "mm",
        "3",
        "40",
    ])
    .assert_status(0)
    .stdout_has("smp: 4 processes x 40 rounds of mmap/munmap: all clean")
    .stderr_has("tlb_shootdowns=");
}

#[test]
fn spawning_and_reaping_on_two_cpus() {
    let spawner = programs().spawner.to_str().unwrap();
    vmm(&[
        "run",
        "--cpus",
        "2",
        "--timeout",
        "120",
        "--",
        spawner,
        "loop",
        "300",
        "self",
    ])
    .assert_status(0)
    .stdout_has("spawner: 300 spawns, all reaped");
    vmm(&[
        "run",
        "--cpus",
        "2",
        "--timeout",
        "120",
        "--",
        spawner,
        "hog-then",
        "20",
    ])
    .assert_status(0)
    .stdout_has("spawner: 20 spawns, all reaped");
}

#[test]
fn a_process_on_another_cpu_ending_the_vm_stops_every_vcpu() {
    // init spawns a child that spins forever and exits at once: the
    // spinner's vCPU must be stopped, not waited for (--timeout 30 would
    // end it with 244 otherwise).
    let timer = programs().timer.to_str().unwrap();
    vmm(&["run", "--cpus", "4", "--timeout", "30", "--", timer, "yield"]).assert_status(0);
}
