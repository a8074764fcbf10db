//! The `vmm` command line.

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use vmm::debug::engine::{self, BreakMethod};
use vmm::debug::DebugError;
use vmm::error::Error;
use vmm::introspect::symbols::Symbols;
use vmm::trace::stepper::Stepper;
use vmm::trace::tracer::{Trace, Tracer};
use vmm::vstate::kick::InterruptPolicy;
use vmm::vstate::launch::GuestArgs;
use vmm::vstate::vm::{Outcome, Vm};
use vmm::{report, status, vstate::kvm_info};
use vmm_abi::layout::KERNEL_BASE;

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
    /// Trace the guest kernel from outside: a function_graph call tree, or
    /// a single-step recording (--record).
    Trace(TraceArgs),
    /// Step through a recording (`vmm trace --record`) forwards and
    /// backwards, without KVM.
    Replay(vmm::debug::replay::ReplayArgs),
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
    #[command(flatten)]
    linux: vmm::vstate::linux::LinuxArgs,
    /// Print setup and run timings, VM-exit counts and the kernel's counters
    /// to stderr: two `vmm:` lines, or with `--stats=json` one JSON object.
    #[arg(long, value_enum, value_name = "FORMAT", num_args = 0..=1, require_equals = true,
          default_missing_value = "text")]
    stats: Option<report::StatsFormat>,
    /// Stop at this kernel or program symbol (or 0xADDRESS), then single-step
    /// `--stepi` instructions, printing CPL, RIP and each instruction to stderr.
    #[arg(long, value_name = "SYMBOL|ADDR")]
    break_at: Option<String>,
    /// Instructions to single-step after the breakpoint (at most 1000000).
    #[arg(long, default_value_t = 40, value_name = "N",
          value_parser = clap::value_parser!(u64).range(0..=vmm::debug::parse::MAX_STEPI))]
    stepi: u64,
    /// How breakpoints and trace points stop the guest: `dr0` (debug
    /// registers), `exit-insn` (`in al, dx` patched over a kernel
    /// instruction) or `step` (single-step until RIP matches). Default: what
    /// works on this host, measured (see `vmm kvm-info`).
    #[arg(long, value_enum)]
    break_by: Option<BreakMethod>,
    /// Trace every ring-3 system call, strace-style, from outside the guest (to stderr).
    #[arg(long)]
    strace: bool,
    /// Write the --strace output to FILE instead of stderr.
    #[arg(long, value_name = "FILE")]
    strace_file: Option<PathBuf>,
    /// With --strace: also write each system call as Chrome trace-event
    /// JSON (open it in ui.perfetto.dev or chrome://tracing).
    #[arg(long, value_name = "OUT.json")]
    perfetto: Option<PathBuf>,
    /// Serve the GDB remote protocol on ADDR (e.g. 127.0.0.1:1234) and wait
    /// for gdb before the first instruction, like QEMU's -s -S.
    #[arg(long, value_name = "ADDR")]
    gdb: Option<String>,
    /// Accepted for QEMU users: with --gdb, vmm always waits for gdb.
    #[arg(long, requires = "gdb")]
    wait_gdb: bool,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["funcgraph", "record", "html"])))]
#[command(group(clap::ArgGroup::new("recording").multiple(true).args(["record", "html"])))]
struct TraceArgs {
    #[command(flatten)]
    guest: GuestArgs,
    /// Print the call tree below each call of this kernel function.
    #[arg(long, value_name = "SYMBOL")]
    funcgraph: Option<String>,
    /// Single-step from --from and write every step to FILE (JSON lines,
    /// see README "Recording and replay") for `vmm replay`.
    #[arg(long, value_name = "FILE", conflicts_with = "funcgraph")]
    record: Option<PathBuf>,
    /// Draw the recording as one self-contained web page: CPL lanes, the
    /// instructions, registers per step. With --from-recording FILE, from a
    /// recording made earlier (no guest runs).
    #[arg(long, value_name = "OUT.html", conflicts_with = "funcgraph")]
    html: Option<PathBuf>,
    /// With --html: draw this recording instead of running the guest.
    #[arg(long, value_name = "FILE", requires = "html", conflicts_with = "record")]
    from_recording: Option<PathBuf>,
    /// Where --record starts: a kernel or program symbol, or 0xADDRESS
    /// (default: the kernel's system-call entry on this host).
    #[arg(long, value_name = "SYMBOL|ADDR", requires = "recording")]
    from: Option<String>,
    /// Instructions --record steps (at most 1000000).
    #[arg(long, default_value_t = 200, value_name = "N", requires = "recording",
          value_parser = clap::value_parser!(u64).range(1..=vmm::debug::parse::MAX_STEPI))]
    steps: u64,
    /// Print calls at most this deep (deeper ones are still followed; 1..=256).
    #[arg(long, default_value_t = 8, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256))]
    depth: usize,
    /// How the breakpoint at SYMBOL stops the guest: `dr0`, `exit-insn` or
    /// `step` (default: what works on this host, measured).
    #[arg(long, value_enum)]
    break_by: Option<BreakMethod>,
    /// Also write the calls as Chrome trace-event JSON (B/E events; open it
    /// in ui.perfetto.dev or chrome://tracing).
    #[arg(long, value_name = "OUT.json")]
    perfetto: Option<PathBuf>,
}

/// `--perfetto FILE`'s sink, created before the guest runs so a bad path
/// fails at once.
fn perfetto_sink(path: &std::path::Path, cat: &'static str) -> Result<vmm::trace::perfetto::Perfetto, Error> {
    let f = std::fs::File::create(path).map_err(|source| Error::OutputFile {
        flag: "--perfetto",
        path: path.to_path_buf(),
        source,
    })?;
    Ok(vmm::trace::perfetto::Perfetto::new(
        cat,
        Box::new(std::io::BufWriter::new(f)),
    ))
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // A Linux guest wants more memory than vmm's own kernel by default.
    let mem_given = matches
        .subcommand_matches("run")
        .is_some_and(|m| m.value_source("mem") == Some(ValueSource::CommandLine));
    match cli.command {
        Command::Run(args) => match linux_kernel(&args) {
            Some(kernel) => run_linux(args, kernel, mem_given),
            None => run(args),
        },
        Command::Debug(args) => {
            let mem_given = matches
                .subcommand_matches("debug")
                .is_some_and(|m| m.value_source("mem") == Some(ValueSource::CommandLine));
            match linux_kernel_of(&args.guest, &args.linux) {
                Some(kernel) => vmm::debug::linux::main(&args, kernel, mem_given),
                None if args.linux.any() => linux_usage(),
                None => vmm::debug::cli::main(args),
            }
        }
        Command::Trace(args) => trace(args),
        Command::Replay(args) => vmm::debug::replay::main(args),
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
    if args.linux.any() {
        return linux_usage();
    }
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
    // Ctrl-C and SIGTERM stop the guest with a report (event_loop.rs).
    if let Err(e) = vm.catch_signals(InterruptPolicy::Stop) {
        return setup_error(e);
    }
    if let Some(addr) = args.gdb.as_deref() {
        let served = vmm::debug::Debugger::new(vm, user_symbols.get().clone(), args.break_by, &args.guest.kvm_device)
            .map_err(Error::from)
            .and_then(|dbg| vmm::debug::gdb::serve(dbg, addr));
        return match served {
            Ok(o) => {
                if !matches!(o, Outcome::Exited(_)) {
                    eprintln!("vmm: {}", o.describe());
                }
                exit_with(&o)
            }
            Err(e) => setup_error(e),
        };
    }
    let mut trace = match run_tracer(&args, &mut vm, user_symbols.get()) {
        Ok(t) => t,
        Err(e) => return setup_error(e),
    };
    if let Err(e) = vm.lock_down(vmm::seccomp::Profile::Run) {
        return setup_error(e);
    }
    let outcome = match trace.as_mut() {
        Some(t) => t.run(&mut vm),
        None => vm.run(),
    };
    vm.release_for_exit();
    finish(&mut vm, &outcome, trace.as_mut());
    if let Some(format) = args.stats {
        let total = t0.elapsed();
        eprint!("{}", report::RunStats::of(&mut vm, total).render(format));
    }
    drop(vm);
    exit_with(&outcome)
}

/// `vmm run`'s tracer, if `--break-at` or `--strace` asks for one (with
/// both, strace), prepared to run on `vm` by the method `--break-by` names or
/// that works here.
fn run_tracer(args: &RunArgs, vm: &mut Vm, user: &Symbols) -> Result<Option<Trace>, Error> {
    let strace = args.strace || args.strace_file.is_some();
    if args.perfetto.is_some() && !strace {
        return Err(Error::PerfettoWithoutStrace);
    }
    let mut tracer: Option<(Box<dyn Tracer>, u64)> = None;
    if let Some(at) = &args.break_at {
        let st = stepper_for(vm, at, args.stepi, user)?;
        let addr = st.break_at;
        tracer = Some((Box::new(st), addr));
    }
    if strace {
        let out: Box<dyn std::io::Write + Send> = match &args.strace_file {
            Some(p) => match std::fs::File::create(p) {
                Ok(f) => Box::new(std::io::BufWriter::new(f)),
                Err(source) => {
                    return Err(Error::StraceFile {
                        path: p.clone(),
                        source,
                    })
                }
            },
            None => Box::new(std::io::stderr()),
        };
        let mut st = vmm::trace::strace::Strace::new(vm.kernel.symbols(), vm.flavor.is_pvm(), out)?;
        if let Some(p) = &args.perfetto {
            st = st.with_perfetto(perfetto_sink(p, "strace")?);
        }
        // Its trace points are the kernel's entry and exit paths.
        tracer = Some((Box::new(st), KERNEL_BASE));
    }
    let Some((tracer, addr)) = tracer else {
        return Ok(None);
    };
    let method = tracing_method(args.break_by, &args.guest, addr, tracer.on_interrupt_path())?;
    Ok(Some(Trace::new(vm, tracer, method, &args.guest.kvm_device)?))
}

/// vmm's exit status for `outcome`. Stopped by a signal, vmm dies of that
/// signal after its report (the VM is gone and the terminal restored by
/// then): the shell sees what it saw before vmm caught the signal, and a
/// script stops at Ctrl-C as it should.
fn exit_with(outcome: &Outcome) -> ExitCode {
    if let Outcome::Stopped(sig) = *outcome {
        // SAFETY: restoring the default action and raising the signal in
        // this thread; the seccomp filter allows both (seccomp/filters.rs).
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
    ExitCode::from(outcome.status())
}

/// The tracer's closing lines, and a report unless the guest exited cleanly.
fn finish(vm: &mut Vm, outcome: &Outcome, trace: Option<&mut Trace>) {
    for line in trace.map(Trace::report).unwrap_or_default() {
        eprintln!("{line}");
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
    if let (Some(rec), Some(html)) = (&args.from_recording, &args.html) {
        return html_from(rec, html);
    }
    let what = if args.record.is_some() || args.html.is_some() {
        "vmm trace --record/--html"
    } else {
        "vmm trace --funcgraph"
    };
    if let Err(e) = args.guest.one_cpu_for(what) {
        return setup_error(e);
    }
    let (mut vm, user_symbols) = match args.guest.vm(true) {
        Ok(v) => v,
        Err(e) => return setup_error(e),
    };
    if args.record.is_some() || args.html.is_some() {
        return record(&args, vm, user_symbols.get().clone());
    }
    let funcgraph = args.funcgraph.clone().unwrap_or_default();
    let target = match resolve(&vm, &funcgraph, user_symbols.get()) {
        Ok(a) => a,
        Err(e) => return setup_error(e),
    };
    if target < KERNEL_BASE {
        return setup_error(Error::NotAKernelFunction(funcgraph));
    }
    let mut fg = vmm::trace::funcgraph::Funcgraph::new(target, args.depth, Box::new(std::io::stderr()));
    if let Some(p) = &args.perfetto {
        match perfetto_sink(p, "funcgraph") {
            Ok(sink) => fg = fg.with_perfetto(sink),
            Err(e) => return setup_error(e),
        }
    }
    let outcome = match run_traced(&args, &mut vm, Box::new(fg), target) {
        Ok(o) => o,
        Err(e) => return setup_error(e),
    };
    drop(vm);
    exit_with(&outcome)
}

/// `vmm trace --html OUT --from-recording FILE`: no guest, only the page.
fn html_from(rec: &std::path::Path, html: &std::path::Path) -> ExitCode {
    let rep = match vmm::debug::replay::Replay::load(rec) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vmm: {e}");
            return ExitCode::from(status::SETUP_ERROR);
        }
    };
    let written = std::fs::File::create(html).and_then(|mut f| vmm::trace::html::write(&rep, &mut f));
    match written {
        Ok(()) => {
            eprintln!("vmm: html: {} steps drawn", rep.steps.len());
            ExitCode::SUCCESS
        }
        Err(source) => setup_error(Error::OutputFile {
            flag: "--html",
            path: html.to_path_buf(),
            source,
        }),
    }
}

/// `vmm trace --record FILE` / `--html OUT.html`: step from --from, writing each step.
fn record(args: &TraceArgs, mut vm: Vm, user: Symbols) -> ExitCode {
    // System calls reach the kernel at its fault entry on PVM.
    let default = if vm.flavor.is_pvm() {
        "do_trap"
    } else {
        "entry_SYSCALL_64"
    };
    let from = args.from.clone().unwrap_or_else(|| default.to_string());
    let addr = match resolve(&vm, &from, &user) {
        Ok(a) => a,
        Err(e) => return setup_error(e),
    };
    if vm.flavor.is_pvm() && addr < KERNEL_BASE {
        let what = format!("--record --from {from} ({addr:#x}) is a ring-3 address");
        return setup_error(DebugError::RingThreeOnPvm { what }.into());
    }
    // Files are opened now: under seccomp no file can be.
    let create = |flag: &'static str, path: &std::path::Path| {
        std::fs::File::create(path)
            .map(std::io::BufWriter::new)
            .map_err(|source| Error::OutputFile {
                flag,
                path: path.to_path_buf(),
                source,
            })
    };
    let record_file = match args.record.as_deref().map(|f| create("--record", f)).transpose() {
        Ok(f) => f,
        Err(e) => return setup_error(e),
    };
    let html_file = match args.html.as_deref().map(|f| create("--html", f)).transpose() {
        Ok(f) => f,
        Err(e) => return setup_error(e),
    };
    // The page needs the whole recording: keep it in memory then.
    let buf = vmm::trace::record::SharedBuf::default();
    let (out, mut record_copy): (Box<dyn std::io::Write + Send>, _) = match (&html_file, record_file) {
        (None, Some(f)) => (Box::new(f), None),
        (_, f) => (Box::new(buf.clone()), f),
    };
    let pvm = vm.flavor.is_pvm();
    let rec = vmm::trace::record::Recorder::new(&from, addr, args.steps, pvm, user, out);
    let outcome = match run_traced(args, &mut vm, Box::new(rec), addr) {
        Ok(o) => o,
        Err(e) => return setup_error(e),
    };
    if let Some(mut page) = html_file {
        let bytes = std::mem::take(&mut *buf.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let written = record_copy
            .as_mut()
            .map_or(Ok(()), |f| {
                std::io::Write::write_all(f, &bytes).and_then(|()| std::io::Write::flush(f))
            })
            .map_err(|e| e.to_string())
            .and_then(|()| {
                let rep = vmm::debug::replay::Replay::parse("the recording", &bytes[..]).map_err(|e| e.to_string())?;
                vmm::trace::html::write(&rep, &mut page).map_err(|e| e.to_string())?;
                Ok(rep.steps.len())
            });
        match written {
            Ok(n) => eprintln!("vmm: html: {n} steps drawn"),
            Err(e) => eprintln!("vmm: html: cannot write the page: {e}"),
        }
    }
    drop(vm);
    exit_with(&outcome)
}

/// How a trace point at `addr` is reached: `--break-by`, or what works
/// here for such an address — debug registers where a probe shows they
/// exit, else an exit-instruction patch in the kernel (unless every
/// interrupt passes the point) and stepping in ring 3.
/// `vmm trace`'s run under `tracer`, whose trace point `addr` is reached by
/// the method `--break-by` names or that works here; then the tracer's
/// closing lines, and a report unless the guest exited cleanly.
fn run_traced(args: &TraceArgs, vm: &mut Vm, tracer: Box<dyn Tracer>, addr: u64) -> Result<Outcome, Error> {
    let method = tracing_method(args.break_by, &args.guest, addr, false)?;
    let mut trace = Trace::new(vm, tracer, method, &args.guest.kvm_device)?;
    vm.catch_signals(InterruptPolicy::Stop)?;
    vm.lock_down(vmm::seccomp::Profile::Run)?;
    let outcome = trace.run(vm);
    vm.release_for_exit();
    finish(vm, &outcome, Some(&mut trace));
    Ok(outcome)
}

fn tracing_method(
    requested: Option<BreakMethod>,
    guest: &GuestArgs,
    addr: u64,
    on_interrupt_path: bool,
) -> Result<BreakMethod, Error> {
    let dr_works = match requested {
        Some(_) => true,
        None => engine::probe_dr_breakpoints(&guest.kvm_device).map_err(Error::DrProbe)?,
    };
    let method = engine::for_trace_points(requested, dr_works, addr, on_interrupt_path);
    if method == BreakMethod::ExitInsn && addr < KERNEL_BASE {
        return Err(DebugError::ExitInsnNotHere {
            addr,
            what: "a ring-3 address (an `in` there is #GP, not an exit)",
        }
        .into());
    }
    Ok(method)
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
    if vm.flavor.is_pvm() && addr < KERNEL_BASE {
        return Err(Error::RingThreeBreakOnPvm {
            at: at.to_string(),
            addr,
        });
    }
    Ok(Stepper::new(addr, steps, user.clone()))
}

/// The Linux kernel to boot: `--linux BZIMAGE`, or an IMAGE whose header
/// says bzImage.
fn linux_kernel(args: &RunArgs) -> Option<PathBuf> {
    linux_kernel_of(&args.guest, &args.linux)
}

fn linux_kernel_of(guest: &GuestArgs, linux: &vmm::vstate::linux::LinuxArgs) -> Option<PathBuf> {
    if let Some(k) = &linux.linux {
        return Some(k.clone());
    }
    guest
        .image
        .as_deref()
        .filter(|p| vmm::vstate::linux::sniff(p))
        .map(PathBuf::from)
}

fn linux_usage() -> ExitCode {
    eprintln!(
        "vmm: --init, --initrd, --append, --symbols and --allow-pvm are for a Linux guest: add --linux BZIMAGE \
         (vmm's own kernel runs a program given after `--`)"
    );
    ExitCode::from(status::USAGE)
}

/// `vmm run --linux BZIMAGE`: a stock Linux kernel (vstate/linux/).
fn run_linux(args: RunArgs, kernel: PathBuf, mem_given: bool) -> ExitCode {
    use vmm::vstate::linux::{LinuxConfig, LinuxError, LinuxVm};
    let unsupported = [(args.break_at.is_some(), "--break-at"), (args.gdb.is_some(), "--gdb")];
    if let Some((_, flag)) = unsupported.iter().find(|(on, _)| *on) {
        eprintln!(
            "vmm: {flag} with --linux is not supported yet: use `vmm debug --linux` with --symbols \
             (see README, \"Booting Linux\")"
        );
        return ExitCode::from(status::USAGE);
    }
    let strace = args.strace || args.strace_file.is_some();
    let setup = || -> Result<(LinuxVm, Option<Symbols>), LinuxError> {
        let cfg = LinuxConfig::from_args(&args.guest, &args.linux, kernel.clone(), mem_given)?;
        if strace && args.linux.symbols.is_none() {
            return Err(LinuxError::NeedsSymbols("--strace"));
        }
        let vm = LinuxVm::new(&cfg, Box::new(std::io::stdout()))?;
        let syms = match &args.linux.symbols {
            Some(p) => Some(vmm::debug::linux::load_symbols(p, vm.text_base)?.0),
            None => None,
        };
        Ok((vm, syms))
    };
    let (mut vm, syms) = match setup() {
        Ok(v) => v,
        Err(e) => return setup_error_of(e),
    };
    let outcome = match (strace, &syms) {
        (true, Some(syms)) => {
            let mut out: Box<dyn std::io::Write> = match &args.strace_file {
                Some(p) => match std::fs::File::create(p) {
                    Ok(f) => Box::new(std::io::BufWriter::new(f)),
                    Err(e) => return setup_error_of(format!("--strace-file {}: {e}", p.display())),
                },
                None => Box::new(std::io::stderr()),
            };
            match vmm::debug::linux::strace(&mut vm, syms, &mut out) {
                Ok(o) => o,
                Err(e) => return setup_error_of(e),
            }
        }
        _ => vm.run(),
    };
    match &outcome {
        Outcome::Exited(s) if *s >= status::FIRST_RESERVED => {
            eprintln!("vmm: init exited with status {s}, which is in vmm's reserved range 240..255");
        }
        Outcome::Exited(_) => {}
        o => eprint!("{}", vm.report(o)),
    }
    if let Some(format) = args.stats {
        eprint!("{}", vm.stats.render(format == report::StatsFormat::Json));
    }
    vm.release_for_exit();
    drop(vm);
    exit_with(&outcome)
}

fn setup_error_of(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("vmm: {e}");
    ExitCode::from(status::SETUP_ERROR)
}
