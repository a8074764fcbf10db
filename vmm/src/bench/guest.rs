//! The guest side: boot the built-in kernel with the `bench` program as init.

use super::error::{BenchError, Result};
use super::parse::{parse_guest, GuestOutput};
use super::BenchArgs;
use crate::boot::guest_image;
use crate::vstate::vm::{InitProgram, Outcome, Vm, VmConfig};
use std::path::Path;

/// The built-in boot archive (programs and vDSO), with `bench ARGS` as init.
fn bench_init(argv: Vec<String>) -> Result<InitProgram> {
    let (init, _) = crate::vstate::launch::boot_archive(&[], u64::MAX)?;
    Ok(InitProgram {
        image: init.image,
        argv,
    })
}

/// Boot the built-in kernel with `bench` as init; its parsed output and the vCPU's TSC kHz.
pub(super) fn run_guest(args: &BenchArgs, iters: u32, raw: bool) -> Result<(GuestOutput, u64)> {
    let mut argv: Vec<String> = ["bench", "--iters"].map(String::from).to_vec();
    argv.push(iters.to_string());
    if raw {
        argv.push("--raw".into());
    }
    let capture = crate::devices::serial::Capture::default();
    let cfg = VmConfig {
        kvm_device: args.kvm_device.clone(),
        mem_mib: args.mem,
        timeout: crate::vstate::launch::timeout_duration(args.timeout),
        // `bench` enables the kernel's benchmark hooks (syscalls 502 and 503).
        cmdline: "quiet bench".into(),
        init: Some(bench_init(argv)?),
        lapic: true,
        forward_stdin: false,
        output: Box::new(capture.clone()),
        // Host system calls are timed in this process: no filter (seccomp/filters.rs).
        seccomp: false,
        cpus: 1,
    };
    let mut vm = Vm::new(
        Path::new(guest_image::KERNEL_PATH),
        std::borrow::Cow::Borrowed(guest_image::KERNEL),
        cfg,
    )?;
    let tsc_khz = vm.vcpu().get_tsc_khz().unwrap_or(0) as u64;
    let outcome = vm.run();
    let text = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    let out = parse_guest(&text);
    for l in &out.other {
        eprintln!("guest: {l}");
    }
    if outcome != Outcome::Exited(0) || !out.done {
        let report = match &outcome {
            Outcome::Exited(_) => String::new(),
            o => crate::report::crash_report(&mut vm, o),
        };
        return Err(BenchError::GuestFailed {
            status: outcome.status().max(1),
            outcome: outcome.describe(),
            done: out.done,
            output: text,
            report,
        });
    }
    Ok((out, tsc_khz))
}
