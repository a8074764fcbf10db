//! `vmm run --linux`: a stock Linux kernel. On this project's PVM host it
//! must be refused at once, naming PVM, before any file is read; booting
//! it is tested in the KVM box (tests/faithful.rs, case "linux-poweroff").
//! The command-line mistakes around it are refused on any host.

mod common;
use common::{temp_file, vmm};

fn host_is_pvm() -> bool {
    vmm(&["kvm-info", "--json"]).stdout.contains("kvm_pvm")
}

/// The first bytes of a bzImage: the boot flag and "HdrS" (what vmm looks at).
fn fake_bzimage() -> Vec<u8> {
    let mut h = vec![0u8; 0x400];
    h[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    h[0x202..0x206].copy_from_slice(b"HdrS");
    h
}

#[test]
fn pvm_refuses_linux_before_reading_anything() {
    if !host_is_pvm() {
        eprintln!("not a PVM host: the refusal does not apply (the KVM box boots Linux in tests/faithful.rs)");
        return;
    }
    // A FIFO as the kernel: had vmm opened it for reading first, it would
    // say "not a regular file" (or wait for a writer); it must say PVM.
    let dir = std::env::temp_dir().join(format!("vmm-linux-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("vmlinuz");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let r = vmm(&["run", "--linux", fifo.to_str().unwrap(), "--init", "/bin/true"]);
    r.assert_status(245)
        .stderr_has("PVM (kvm_pvm)")
        .stderr_has("cmpxchg16b")
        .stderr_has("hardware KVM")
        .stderr_has("tests/kvmbox/kvmbox")
        .stderr_has("CONFIG_PVM_GUEST");
    assert!(!r.stderr.contains("regular file"), "{}", r.stderr);

    // A bzImage given as IMAGE is recognised by its header, and refused the same way.
    let k = temp_file("bzImage", &fake_bzimage());
    vmm(&["run", k.to_str().unwrap()])
        .assert_status(245)
        .stderr_has("PVM (kvm_pvm)");
    // The real kernel, if this host has one (CI installs Debian's).
    if let Some(k) = common::programs::host_vmlinuz() {
        vmm(&["run", "--linux", k.to_str().unwrap(), "--init", "/bin/true"])
            .assert_status(245)
            .stderr_has("PVM (kvm_pvm)");
    }
}

#[test]
fn linux_options_without_linux_are_usage_errors() {
    for args in [
        &["run", "--init", "/bin/true"][..],
        &["run", "--initrd", "/dev/null"],
        &["run", "--append", "quiet"],
        &["run", "--symbols", "/proc/kallsyms"],
    ] {
        vmm(args).assert_status(2).stderr_has("add --linux BZIMAGE");
    }
}

#[test]
fn what_linux_cannot_do_yet_is_refused_by_name() {
    let k = temp_file("bzImage2", &fake_bzimage());
    let k = k.to_str().unwrap();
    vmm(&["run", "--linux", k, "--break-at", "do_syscall_64"])
        .assert_status(2)
        .stderr_has("--break-at with --linux is not supported yet");
    // Tracing Linux needs its symbols, which no bzImage carries.
    vmm(&["run", "--linux", k, "--strace", "--", "/bin/true"])
        .assert_status(245)
        .stderr_has("--strace with --linux needs Linux's symbols: add --symbols");
    vmm(&["debug", "--linux", k, "--batch", "-x", "continue"])
        .assert_status(245)
        .stderr_has("vmm debug with --linux needs Linux's symbols");
    vmm(&["debug", "--batch", "--symbols", "/proc/kallsyms"])
        .assert_status(2)
        .stderr_has("add --linux BZIMAGE");
    vmm(&["run", "--linux", k, "--gdb", "127.0.0.1:1"])
        .assert_status(2)
        .stderr_has("--gdb with --linux is not supported yet");
    vmm(&["run", "--linux", k, "--init", "/bin/true", "--", "/bin/true"])
        .assert_status(245)
        .stderr_has("not both");
    vmm(&["run", "--linux", k, "/boot/x"]).assert_status(2);
}
