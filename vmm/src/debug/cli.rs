//! `vmm debug [GUEST] [-x CMD]... [--batch] [-- PROGRAM ARGS...]`: the
//! command loop, with line editing and history at a terminal.

use super::commands::{execute, Flow};
use super::Debugger;
use crate::status;
use crate::vstate::launch::GuestArgs;
use std::io::BufRead;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct DebugArgs {
    #[command(flatten)]
    pub guest: GuestArgs,
    #[command(flatten)]
    pub linux: crate::vstate::linux::LinuxArgs,
    /// Run this command first (repeatable), as gdb's -ex.
    #[arg(short = 'x', long = "ex", value_name = "CMD")]
    pub commands: Vec<String>,
    /// Exit after the -x commands instead of prompting.
    #[arg(long)]
    pub batch: bool,
    /// How breakpoints stop the guest: `dr0` (debug registers DR0–DR3),
    /// `exit-insn` (patch `in al, dx` over a kernel instruction: an exit on
    /// every KVM) or `step` (single-step until RIP matches). Default: what
    /// works on this host, measured (see `vmm kvm-info`).
    #[arg(long, value_enum)]
    pub break_by: Option<super::engine::BreakMethod>,
}

fn setup(args: &DebugArgs) -> Result<Debugger, crate::error::Error> {
    args.guest.one_cpu_for("vmm debug")?;
    let (vm, user_symbols) = args.guest.vm(false)?;
    let mut dbg = Debugger::new(vm, user_symbols.get().clone(), args.break_by, &args.guest.kvm_device)?;
    // At a terminal, Ctrl-C stops a running guest and returns to the prompt
    // instead of killing vmm (the VMM thread turns SIGINT into a kick).
    if !args.batch && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        dbg.vm.catch_signals(crate::vstate::kick::InterruptPolicy::Interrupt)?;
    }
    // From here on only commands run: the prompt and the guest, under seccomp.
    dbg.vm.lock_down(crate::seccomp::Profile::Interactive)?;
    Ok(dbg)
}

pub fn main(args: DebugArgs) -> ExitCode {
    let mut dbg = match setup(&args) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("vmm: {e}");
            return ExitCode::from(status::SETUP_ERROR);
        }
    };
    if dbg.flavor().is_pvm() {
        println!("note: this /dev/kvm is PVM: ring-0 stepping and breakpoints work, ring-3 ones do not (vmm kvm-info)");
    }
    match dbg.stop_line() {
        Ok(l) => println!("stopped before the first instruction: {l}"),
        Err(e) => eprintln!("vmm: {e}"),
    }
    for c in &args.commands {
        println!("(vmm) {c}");
        match execute(&mut dbg, c) {
            Ok(Flow::Quit) => return ExitCode::SUCCESS,
            Ok(Flow::Next) => {}
            Err(e) => {
                eprintln!("error: {e}");
                if args.batch {
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    if args.batch {
        return ExitCode::SUCCESS;
    }
    prompt(&mut dbg)
}

/// Interactive: rustyline at a terminal (editing, history); plain lines otherwise.
fn prompt(dbg: &mut Debugger) -> ExitCode {
    let is_tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
    if is_tty {
        println!("type help for commands (Ctrl-C stops a running guest)");
        let Ok(mut rl) = rustyline::DefaultEditor::new() else {
            return plain_lines(dbg);
        };
        let mut last = String::new();
        loop {
            match rl.readline("(vmm) ") {
                Ok(line) => {
                    // An empty line repeats the last command, as in gdb.
                    let line = if line.trim().is_empty() { last.clone() } else { line };
                    let _ = rl.add_history_entry(line.as_str());
                    last = line.clone();
                    match execute(dbg, &line) {
                        Ok(Flow::Quit) => return ExitCode::SUCCESS,
                        Ok(Flow::Next) => {}
                        Err(e) => {
                            eprintln!("error: {e}");
                            if matches!(e, super::DebugError::Interrupted) {
                                if let Ok(l) = dbg.stop_line() {
                                    println!("{l}");
                                }
                            }
                        }
                    }
                }
                // Ctrl-C at the prompt clears the line; Ctrl-D quits.
                Err(rustyline::error::ReadlineError::Interrupted) => continue,
                Err(_) => return ExitCode::SUCCESS,
            }
        }
    }
    plain_lines(dbg)
}

fn plain_lines(dbg: &mut Debugger) -> ExitCode {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match execute(dbg, &line) {
            Ok(Flow::Quit) => return ExitCode::SUCCESS,
            Ok(Flow::Next) => {}
            Err(e) => eprintln!("error: {e}"),
        }
    }
    ExitCode::SUCCESS
}
