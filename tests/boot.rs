//! Boot tests: the real vmm binary boots real guests under /dev/kvm.
//! There is no skip: on a host without /dev/kvm these fail, as they should.

mod common;
use common::{temp_file, vmm};
use vmm::boot::guest_image;
use vmm::status;

fn st(s: u8) -> i32 {
    i32::from(s)
}

#[test]
fn builtin_guest_boots_in_ring0_long_mode_and_exits_0() {
    vmm(&["run"])
        .assert_status(0)
        .stdout_has("kernel: CPL 0 CS 0x8 EFER 0xd01")
        .stdout_has("GDTR 0xffff888000001000 IDTR 0xffff888000002000");
}

#[test]
fn the_on_disk_copy_of_the_guest_boots_too() {
    vmm(&["run", guest_image::KERNEL_PATH])
        .assert_status(0)
        .stdout_has("kernel: CPL 0");
}

#[test]
fn guest_serial_output_and_kvm_flavor_match_kvm_info() {
    let info = vmm(&["kvm-info", "--json"]);
    info.assert_status(0);
    let pvm = info.stdout.contains("\"pvm\":true");
    let run = vmm(&["run"]);
    run.stdout_has(if pvm { "KVM pvm" } else { "KVM hardware" });
}

#[test]
fn triple_fault_gives_a_report_and_its_own_status() {
    vmm(&["run", "--cmdline", "crash=triple-fault"])
        .assert_status(st(status::TRIPLE_FAULT))
        .stderr_has("triple fault")
        .stderr_has("RIP    0xffffffff8")
        .stderr_has("<kmain")
        .stderr_has("CPL    0")
        .stderr_has("CS 0x0008 (index 1, GDT, RPL 0)")
        .stderr_has("EFER 0xd01")
        .stderr_has("| crash: triple-fault requested");
}

#[test]
fn a_spinning_guest_is_stopped_by_timeout() {
    let t = std::time::Instant::now();
    vmm(&["run", "--timeout", "0.5", "--cmdline", "crash=spin"])
        .assert_status(st(status::TIMEOUT))
        .stderr_has("timeout: the guest was still running after 0.5 s");
    assert!(t.elapsed().as_secs() < 30);
}

#[test]
fn a_ring0_page_fault_is_a_kernel_panic_report() {
    vmm(&["run", "--cmdline", "crash=page-fault"])
        .assert_status(st(status::KERNEL_PANIC))
        .stdout_has("kernel fault: #PF (vector 14)")
        .stdout_has("CR2 0x1000")
        .stderr_has("guest kernel panic");
}

#[test]
fn a_rust_panic_in_the_kernel_is_reported() {
    vmm(&["run", "--cmdline", "crash=panic"])
        .assert_status(st(status::KERNEL_PANIC))
        .stdout_has("kernel panic: panicked at")
        .stderr_has("last serial output");
}

#[test]
fn missing_image() {
    vmm(&["run", "/nonexistent/guest.bin"])
        .assert_status(st(status::SETUP_ERROR))
        .stderr_has("cannot read guest image /nonexistent/guest.bin: No such file or directory");
}

#[test]
fn unreadable_image_directory() {
    vmm(&["run", "/"])
        .assert_status(st(status::SETUP_ERROR))
        .stderr_has("/ is a directory, not a regular file");
}

#[test]
fn text_file_is_not_elf() {
    let p = temp_file("hello.txt", b"hello, world\n");
    vmm(&["run", p.to_str().unwrap()])
        .assert_status(st(status::SETUP_ERROR))
        .stderr_has("is not an ELF file");
}

fn elf_header(class: u8, machine: u16) -> Vec<u8> {
    let mut b = guest_image::KERNEL.to_vec();
    b[4] = class;
    b[18..20].copy_from_slice(&machine.to_le_bytes());
    b
}

#[test]
fn a_32bit_elf_is_refused() {
    let p = temp_file("i386.elf", &elf_header(1, 3));
    vmm(&["run", p.to_str().unwrap()])
        .assert_status(st(status::SETUP_ERROR))
        .stderr_has("is a 32-bit ELF");
}

#[test]
fn a_non_x86_elf_is_refused() {
    let p = temp_file("arm64.elf", &elf_header(2, 183));
    vmm(&["run", p.to_str().unwrap()])
        .assert_status(st(status::SETUP_ERROR))
        .stderr_has("is an ELF for AArch64 (64-bit ARM) (e_machine 183), not x86-64");
}

#[test]
fn segments_outside_guest_memory_are_refused() {
    // Move the first PT_LOAD's physical address to 1 GiB.
    let mut b = guest_image::KERNEL.to_vec();
    let phoff = u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize;
    b[phoff + 24..phoff + 32].copy_from_slice(&0x4000_0000u64.to_le_bytes());
    let p = temp_file("high.elf", &b);
    vmm(&["run", p.to_str().unwrap()])
        .assert_status(st(status::SETUP_ERROR))
        .stderr_has("lies outside guest memory")
        .stderr_has("raise --mem");
}

#[test]
fn too_little_memory() {
    vmm(&["run", "--mem", "2"])
        .assert_status(st(status::SETUP_ERROR))
        .stderr_has("--mem 2 MiB is too small: this guest needs at least");
}

#[test]
fn missing_kvm_device() {
    vmm(&["run", "--kvm-device", "/nonexistent/kvm"])
        .assert_status(st(status::SETUP_ERROR))
        .stderr_has("cannot open /nonexistent/kvm: No such file or directory")
        .stderr_has("vmm needs KVM");
    vmm(&["kvm-info", "--kvm-device", "/nonexistent/kvm"]).assert_status(st(status::SETUP_ERROR));
}

#[test]
fn kvm_device_that_is_not_kvm() {
    vmm(&["run", "--kvm-device", "/dev/null"])
        .assert_status(st(status::SETUP_ERROR))
        .stderr_has("/dev/null");
}

#[test]
fn kvm_info_names_the_flavor_and_capabilities() {
    vmm(&["kvm-info"])
        .assert_status(0)
        .stdout_has("API version   12")
        .stdout_has("single-step in ring 0");
}

#[test]
fn stats_json_is_one_object_with_the_text_numbers() {
    let r = vmm(&[
        "run",
        "--stats=json",
        "--",
        common::programs::programs().hello_asm.to_str().unwrap(),
    ]);
    r.assert_status(0).stdout_has("Hello from as+ld");
    let lines: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(!r.stderr.contains("vmm: stats"), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    for k in [
        "kvm_setup_us",
        "load_us",
        "seccomp_us",
        "in_kvm_run_us",
        "exits",
        "pio_exits",
        "total_us",
    ] {
        assert!(v[k].is_u64(), "{k} in {v}");
    }
    // The program's write and exit, seen by the kernel's own counter.
    assert_eq!(v["kernel"]["syscalls"], 2, "{v}");
    assert_eq!(v["serial_bytes"], "Hello from as+ld via syscall\n".len(), "{v}");
    // The text form is unchanged: two lines.
    let t = vmm(&["run", "--stats", "--cmdline", "init=none"]);
    t.assert_status(0);
    assert!(t.stderr.contains("vmm: kernel syscalls=0 ") && t.stderr.contains("vmm: stats kvm_setup_us="));
}
