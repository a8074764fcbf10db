//! The `vmm` command line.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use vmm::debug::engine::{self, BreakMethod};
use vmm::error::Error;
use vmm::introspect::symbols::Symbols;
use vmm::trace::stepper::Stepper;
use vmm::vstate::launch::GuestArgs;
use vmm::vstate::vm::{Outcome, Vm};
use vmm::{report, status, vstate::kvm_info};

#[derive(Parser)]
#[command(
    name = "vmm",
    version,
    about = "A KVM microVM for studying privilege rings and system calls"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot a guest kernel (the built-in one if IMAGE is omitted).
    Run(RunArgs),
    /// Debug a guest: step and break through KVM debug exits, dump segment and privilege state.
    Debug(vmm::debug::cli::DebugArgs),
    /// Trace the guest kernel from outside: a function_graph call tree.
    Trace(TraceArgs),
    /// Time system-call mechanisms inside the guest beside the host's own.
    Bench(vmm::bench::BenchArgs),
    /// Describe this host's /dev/kvm: hardware or PVM, and what works on it.
    KvmInfo {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The KVM device.
        #[arg(long, env = "VMM_KVM_DEVICE", default_value = "/dev/kvm", value_name = "PATH")]
        kvm_device: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    guest: GuestArgs,
    /// Print setup and run timings, VM-exit counts and the kernel's counters to stderr.
    #[arg(long)]
    stats: bool,
    /// Stop at this kernel or program symbol (or 0xADDRESS), then single-step
    /// `--stepi` instructions, printing CPL, RIP and each instruction to stderr.
    #[arg(long, value_name = "SYMBOL|ADDR")]
    break_at: Option<String>,
    /// Instructions to single-step after the breakpoint (at most 1000000).
    #[arg(long, default_value_t = 40, value_name = "N",
          value_parser = clap::value_parser!(u64).range(0..=vmm::debug::commands::MAX_STEPI))]
    stepi: u64,
    /// How breakpoints stop the guest: `dr0` (debug registers), `step`
    /// (single-step until RIP matches) or, with --gdb, `exit-insn`. Default:
    /// what works on this host, measured (see `vmm kvm-info`).
    #[arg(long, value_enum)]
    break_by: Option<BreakMethod>,
    /// Trace every ring-3 system call, strace-style, from outside the guest (to stderr).
    #[arg(long)]
    strace: bool,
    /// Write the --strace output to FILE instead of stderr.
    #[arg(long, value_name = "FILE")]
    strace_file: Option<PathBuf>,
    /// Serve the GDB remote protocol on ADDR (e.g. 127.0.0.1:1234) and wait
    /// for gdb before the first instruction, like QEMU's -s -S.
    #[arg(long, value_name = "ADDR")]
    gdb: Option<String>,
    /// Accepted for QEMU users: with --gdb, vmm always waits for gdb.
    #[arg(long, requires = "gdb")]
    wait_gdb: bool,
}

#[derive(clap::Args)]
struct TraceArgs {
    #[command(flatten)]
    guest: GuestArgs,
    /// Print the call tree below each call of this kernel function.
    #[arg(long, value_name = "SYMBOL")]
    funcgraph: String,
    /// Print calls at most this deep (deeper ones are still followed; 1..=256).
    #[arg(long, default_value_t = 8, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256))]
    depth: usize,
    /// How the breakpoint at SYMBOL stops the guest: `dr0` or `step`
    /// (default: what works on this host, measured).
    #[arg(long, value_enum)]
    break_by: Option<BreakMethod>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(args),
        Command::Debug(args) => vmm::debug::cli::main(args),
        Command::Trace(args) => trace(args),
        Command::Bench(args) => vmm::bench::main(args),
        Command::KvmInfo { json, kvm_device } => match kvm_info::query(&kvm_device) {
            Ok(info) => {
                print!("{}", if json { info.to_json() + "\n" } else { info.to_text() });
                ExitCode::SUCCESS
            }
            Err(e) => setup_error(e),
        },
    }
}

fn setup_error(e: Error) -> ExitCode {
    eprintln!("vmm: {e}");
    ExitCode::from(status::SETUP_ERROR)
}

fn run(args: RunArgs) -> ExitCode {
    let t0 = std::time::Instant::now();
    for (asked, what) in [
        (args.gdb.is_some(), "--gdb"),
        (args.break_at.is_some(), "--break-at"),
        (args.strace || args.strace_file.is_some(), "--strace"),
    ] {
        if asked {
            if let Err(e) = args.guest.one_cpu_for(what) {
                return setup_error(e);
            }
        }
    }
    let (mut vm, user_symbols) = match args.guest.vm(true) {
        Ok(v) => v,
        Err(e) => return setup_error(e),
    };
    if let Some(addr) = args.gdb.as_deref() {
        let served = vmm::debug::Debugger::new(vm, user_symbols.get().clone(), args.break_by, &args.guest.kvm_device)
            .and_then(|dbg| vmm::debug::gdb::serve(dbg, addr));
        return match served {
            Ok(o) => {
                if !matches!(o, Outcome::Exited(_)) {
                    eprintln!("vmm: {}", o.describe());
                }
                ExitCode::from(o.status())
            }
            Err(e) => setup_error(Error::Gdb(e)),
        };
    }
    let needs_method = args.break_at.is_some() || args.strace || args.strace_file.is_some();
    let method = match needs_method.then(|| tracing_method(args.break_by, &args.guest, "--break-at/--strace")) {
        Some(Err(e)) => return setup_error(e),
        Some(Ok(m)) => m,
        None => BreakMethod::DebugRegister,
    };
    if let Some(at) = &args.break_at {
        match stepper_for(&vm, at, args.stepi, user_symbols.get()) {
            Ok(mut st) => {
                st.by_stepping = method == BreakMethod::Step;
                st.regs = engine::ExitRegs::enable(vm.vcpu_mut(), &args.guest.kvm_device);
                vm.tracer = Some(Box::new(st))
            }
            Err(e) => return setup_error(e),
        }
    }
    if args.strace || args.strace_file.is_some() {
        let out: Box<dyn std::io::Write + Send> = match &args.strace_file {
            Some(p) => match std::fs::File::create(p) {
                Ok(f) => Box::new(std::io::BufWriter::new(f)),
                Err(source) => {
                    return setup_error(Error::StraceFile {
                        path: p.clone(),
                        source,
                    })
                }
            },
            None => Box::new(std::io::stderr()),
        };
        match vmm::trace::strace::Strace::new(vm.kernel.symbols(), vm.flavor.is_pvm(), out) {
            Ok(mut t) => {
                t.by_step = method == BreakMethod::Step;
                t.regs = engine::ExitRegs::enable(vm.vcpu_mut(), &args.guest.kvm_device);
                vm.tracer = Some(Box::new(t));
            }
            Err(e) => return setup_error(e),
        }
    }
    if let Err(e) = vm.lock_down(vmm::seccomp::Profile::Run) {
        return setup_error(e);
    }
    let outcome = vm.run();
    finish(&mut vm, &outcome);
    if args.stats {
        let total_us = t0.elapsed().as_micros();
        let counters: Vec<String> = vm.kernel_counters().iter().map(|(k, v)| format!("{k}={v}")).collect();
        eprintln!("vmm: kernel {}", counters.join(" "));
        let t = &vm.timings;
        eprintln!(
            "vmm: stats kvm_setup_us={} load_us={} seccomp_us={} in_kvm_run_us={} exits={} pio_exits={} serial_bytes={} total_us={}",
            t.kvm_setup.as_micros(),
            t.load.as_micros(),
            t.seccomp.as_micros(),
            t.in_kvm_run.as_micros(),
            t.exits,
            t.pio_exits,
            vm.com1.output().bytes,
            total_us
        );
    }
    ExitCode::from(outcome.status())
}

/// The tracer's closing lines, and a report unless the guest exited cleanly.
fn finish(vm: &mut Vm, outcome: &Outcome) {
    if let Some(t) = vm.tracer.as_mut() {
        for line in t.report() {
            eprintln!("{line}");
        }
    }
    match outcome {
        Outcome::Exited(s) if *s >= status::FIRST_RESERVED => {
            eprintln!("vmm: guest exited with status {s}, which is in vmm's reserved range 240..255");
        }
        Outcome::Exited(_) => {}
        o => eprint!("{}", report::crash_report(vm, o)),
    }
}

fn trace(args: TraceArgs) -> ExitCode {
    if let Err(e) = args.guest.one_cpu_for("vmm trace --funcgraph") {
        return setup_error(e);
    }
    let (mut vm, user_symbols) = match args.guest.vm(true) {
        Ok(v) => v,
        Err(e) => return setup_error(e),
    };
    let target = match resolve(&vm, &args.funcgraph, user_symbols.get()) {
        Ok(a) => a,
        Err(e) => return setup_error(e),
    };
    if target < vmm_abi::layout::KERNEL_BASE {
        return setup_error(Error::NotAKernelFunction(args.funcgraph.clone()));
    }
    let method = match tracing_method(args.break_by, &args.guest, "--funcgraph") {
        Ok(m) => m,
        Err(e) => return setup_error(e),
    };
    let mut fg = vmm::trace::funcgraph::Funcgraph::new(target, args.depth, Box::new(std::io::stderr()));
    fg.by_step = method == BreakMethod::Step;
    fg.regs = engine::ExitRegs::enable(vm.vcpu_mut(), &args.guest.kvm_device);
    vm.tracer = Some(Box::new(fg));
    if let Err(e) = vm.lock_down(vmm::seccomp::Profile::Run) {
        return setup_error(e);
    }
    let outcome = vm.run();
    finish(&mut vm, &outcome);
    ExitCode::from(outcome.status())
}

/// How a trace point that stops many times is reached: `--break-by`, or
/// debug registers where a probe shows they exit, stepping where not.
fn tracing_method(
    requested: Option<BreakMethod>,
    guest: &vmm::vstate::launch::GuestArgs,
    what: &'static str,
) -> Result<BreakMethod, Error> {
    let dr_works = match requested {
        Some(_) => true,
        None => engine::probe_dr_breakpoints(&guest.kvm_device).map_err(Error::DrProbe)?,
    };
    match BreakMethod::for_tracing(requested, dr_works) {
        BreakMethod::ExitInsn => Err(Error::ExitInsnForTracing { what }),
        m => Ok(m),
    }
}

/// A symbol of the init program or the kernel, or an address.
fn resolve(vm: &Vm, at: &str, user: &Symbols) -> Result<u64, Error> {
    vmm::debug::resolve_symbol(at, user, vm.kernel.symbols()).map_err(|reason| Error::Symbol {
        at: at.to_string(),
        reason,
    })
}

/// Resolve `--break-at` and refuse what this host's KVM cannot do.
fn stepper_for(vm: &Vm, at: &str, steps: u64, user: &Symbols) -> Result<Stepper, Error> {
    let addr = resolve(vm, at, user)?;
    if vm.flavor.is_pvm() && addr < vmm_abi::layout::KERNEL_BASE {
        return Err(Error::RingThreeBreakOnPvm {
            at: at.to_string(),
            addr,
        });
    }
    Ok(Stepper::new(addr, steps, user.clone()))
}
