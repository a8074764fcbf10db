//! The `vmm` command line.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use vmm::error::Error;
use vmm::stepper::Stepper;
use vmm::symbols::Symbols;
use vmm::vm::{InitProgram, Outcome, Vm, VmConfig};
use vmm::{guest_image, initrd, kvm_info, loader, report, status};

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
    /// Describe this host's /dev/kvm: hardware or PVM, and what works on it.
    KvmInfo {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        kvm: KvmArgs,
    },
    /// Time system-call mechanisms inside the guest beside the host's own.
    Bench(vmm::bench::BenchArgs),
    /// Debug a guest: step and break through KVM debug exits, dump segment and privilege state.
    Debug(vmm::debug::cli::DebugArgs),
}

#[derive(clap::Args)]
struct KvmArgs {
    /// The KVM device.
    #[arg(long, env = "VMM_KVM_DEVICE", default_value = "/dev/kvm", value_name = "PATH")]
    kvm_device: PathBuf,
}

#[derive(clap::Args)]
struct RunArgs {
    /// A 64-bit x86 ELF kernel built for vmm's boot contract.
    image: Option<PathBuf>,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 64, value_name = "MiB")]
    mem: u64,
    /// Stop the guest after this many seconds (0: never).
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    timeout: f64,
    /// Kernel command line.
    #[arg(long, default_value = "")]
    cmdline: String,
    /// Print setup and run timings and VM-exit counts to stderr.
    #[arg(long)]
    stats: bool,
    /// Stop at this kernel or program symbol (or 0xADDRESS) with a DR0
    /// breakpoint, then single-step `--stepi` instructions, printing CPL, RIP
    /// and each instruction to stderr.
    #[arg(long, value_name = "SYMBOL|ADDR")]
    break_at: Option<String>,
    /// Instructions to single-step after the breakpoint.
    #[arg(long, default_value_t = 40, value_name = "N")]
    stepi: u64,
    /// How to reach --break-at: `dr0` (a debug-register breakpoint) or `step`
    /// (single-step silently until RIP matches; for KVMs such as the KVM box
    /// whose DR breakpoints do not exit).
    #[arg(long, default_value = "dr0", value_parser = ["dr0", "step"])]
    break_by: String,
    /// Trace every ring-3 system call, strace-style, from outside the guest (to stderr).
    #[arg(long)]
    strace: bool,
    /// Write the --strace output to FILE instead of stderr.
    #[arg(long, value_name = "FILE")]
    strace_file: Option<PathBuf>,
    #[command(flatten)]
    kvm: KvmArgs,
    /// A static x86-64 Linux program (and its arguments) to run as init in ring 3.
    #[arg(last = true, value_name = "PROGRAM")]
    program: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(args),
        Command::Bench(args) => vmm::bench::main(args),
        Command::Debug(args) => vmm::debug::cli::main(args),
        Command::KvmInfo { json, kvm } => match kvm_info::query(&kvm.kvm_device) {
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
    if !(args.timeout >= 0.0 && args.timeout.is_finite()) {
        eprintln!("vmm: --timeout must be a number of seconds >= 0 (0 means never)");
        return ExitCode::from(status::USAGE);
    }
    let (path, image) = match &args.image {
        Some(p) => match std::fs::read(p) {
            Ok(bytes) => (p.clone(), std::borrow::Cow::Owned(bytes)),
            Err(source) => {
                return setup_error(Error::ImageRead {
                    path: p.clone(),
                    source,
                })
            }
        },
        None => (
            PathBuf::from(guest_image::KERNEL_PATH),
            std::borrow::Cow::Borrowed(guest_image::KERNEL),
        ),
    };
    // A program's own output should not be preceded by the kernel's banner.
    let cmdline = if args.cmdline.is_empty() && !args.program.is_empty() {
        "quiet".into()
    } else {
        args.cmdline
    };
    let (init, user_symbols) = match init_program(&args.program) {
        Ok(i) => i,
        Err(e) => return setup_error(e),
    };
    let cfg = VmConfig {
        kvm_device: args.kvm.kvm_device,
        mem_mib: args.mem,
        timeout: (args.timeout > 0.0).then(|| Duration::from_secs_f64(args.timeout)),
        cmdline,
        init: Some(init),
        forward_stdin: true,
        output: Box::new(std::io::stdout()),
    };
    let t0 = std::time::Instant::now();
    let mut vm = match Vm::new(&path, &image, cfg) {
        Ok(vm) => vm,
        Err(e) => return setup_error(e),
    };
    if let Some(at) = &args.break_at {
        match stepper_for(&vm, at, args.stepi, &user_symbols) {
            Ok(mut st) => {
                st.by_stepping = args.break_by == "step";
                vm.tracer = Some(Box::new(st))
            }
            Err(e) => return setup_error(e),
        }
    }
    if args.strace || args.strace_file.is_some() {
        let out: Box<dyn std::io::Write + Send> = match &args.strace_file {
            Some(p) => match std::fs::File::create(p) {
                Ok(f) => Box::new(std::io::BufWriter::new(f)),
                Err(e) => return setup_error(Error::Unsupported(format!("--strace-file {}: {e}", p.display()))),
            },
            None => Box::new(std::io::stderr()),
        };
        match vmm::strace::Strace::new(&vm.kernel.symbols, vm.flavor.is_pvm(), out) {
            Ok(mut t) => {
                t.by_step = args.break_by == "step";
                vm.tracer = Some(Box::new(t));
            }
            Err(e) => return setup_error(Error::Unsupported(e)),
        }
    }
    let outcome = vm.run();
    if let Some(t) = vm.tracer.as_mut() {
        for line in t.report() {
            eprintln!("{line}");
        }
    }
    let st = outcome.status();
    match &outcome {
        Outcome::Exited(s) if *s >= status::FIRST_RESERVED => {
            eprintln!("vmm: guest exited with status {s}, which is in vmm's reserved range 240..255");
        }
        Outcome::Exited(_) => {}
        o => eprint!("{}", report::crash_report(&mut vm, o)),
    }
    if args.stats {
        let counters: Vec<String> = vm.kernel_counters().iter().map(|(k, v)| format!("{k}={v}")).collect();
        eprintln!("vmm: kernel {}", counters.join(" "));
        let t = &vm.timings;
        eprintln!(
            "vmm: stats kvm_setup_us={} load_us={} in_kvm_run_us={} exits={} pio_exits={} serial_bytes={} total_us={}",
            t.kvm_setup.as_micros(),
            t.load.as_micros(),
            t.in_kvm_run.as_micros(),
            t.exits,
            t.pio_exits,
            vm.com1.output().bytes,
            t0.elapsed().as_micros()
        );
    }
    ExitCode::from(st)
}

/// The boot archive: the built-in programs, plus PROGRAM from the host if
/// given (it then runs as init, with its arguments).
fn init_program(program: &[String]) -> Result<(InitProgram, Symbols), Error> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let argv = match program.split_first() {
        None => vec!["init".to_string()],
        Some((path, rest)) => {
            let p = PathBuf::from(path);
            let bytes = std::fs::read(&p).map_err(|source| Error::ProgramRead {
                path: p.clone(),
                source,
            })?;
            loader::check_user_program(&p, &bytes)?;
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.clone());
            files.push((name.clone(), bytes));
            std::iter::once(name).chain(rest.iter().cloned()).collect()
        }
    };
    for (name, bytes) in guest_image::USER_PROGRAMS.iter() {
        files.push((name.to_string(), bytes.to_vec()));
    }
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    // Symbols of the program init runs, for --break-at and the step trace.
    let symbols = object::File::parse(files[0].1.as_slice())
        .map(|f| Symbols::from_object(&f))
        .unwrap_or_default();
    Ok((
        InitProgram {
            image: initrd::build(&refs),
            argv,
        },
        symbols,
    ))
}

/// Resolve `--break-at` and refuse what this host's KVM cannot do.
fn stepper_for(vm: &Vm, at: &str, steps: u64, user: &Symbols) -> Result<Stepper, Error> {
    let addr = match at.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16)
            .map_err(|_| Error::Unsupported(format!("--break-at {at}: not a hex address")))?,
        // The program's symbols first: both it and the kernel have a `_start`.
        None => user
            .address_of(at)
            .or_else(|| vm.kernel.symbols.address_of(at))
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "--break-at {at}: no such symbol in the kernel or the init program"
                ))
            })?,
    };
    if vm.flavor.is_pvm() && addr < vmm_abi::layout::KERNEL_BASE {
        return Err(Error::Unsupported(format!(
            "--break-at {at} ({addr:#x}) is a ring-3 address, and on this host's PVM /dev/kvm debug-register \
             breakpoints and single-steps in ring 3 never exit (see `vmm kvm-info`). Break at a kernel symbol \
             (e.g. entry_SYSCALL_64), or use hardware KVM or the KVM box (tests/kvmbox)."
        )));
    }
    Ok(Stepper::new(addr, steps, user.clone()))
}
