//! Hardware-semantics tests: they run on a faithful KVM — this host's
//! /dev/kvm when it is hardware KVM, otherwise the KVM box (QEMU TCG with
//! emulated AMD-V and the real kvm-amd), booted once for all cases here.
//! Never skipped: without a faithful KVM these tests fail with the reason.

mod common;
use common::faithful::{batch, Batch, Case};
use vmm::status;

fn case(name: &'static str, args: &[&str]) -> Case {
    Case {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}

fn suite() -> &'static Batch {
    batch(|| {
        let cases = vec![
            case("kvm-info", &["kvm-info", "--json"]),
            case("boot", &["run"]),
            case("triple-fault", &["run", "--cmdline", "crash=triple-fault"]),
            case("page-fault", &["run", "--cmdline", "crash=page-fault"]),
            case("timeout", &["run", "--timeout", "2", "--cmdline", "crash=spin"]),
        ];
        (cases, vec![])
    })
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
