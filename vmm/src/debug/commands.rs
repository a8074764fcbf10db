//! Running the debugger's commands (parsed in parse.rs), named as gdb users
//! expect. The dumps of segment and privilege state (at least what Bochs'
//! `sreg`/`info gdt` and QEMU's `info registers` show) are values (dumps/)
//! printed as text, or as JSON with `--json`.

use super::dumps::show;
use super::error::Result;
use super::parse::{parse, Command, Parsed};
use super::{Debugger, StopReason};
use crate::introspect::memory;

/// What the command loop does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Next,
    Quit,
}

pub const HELP: &str = "\
commands (gdb names):
  stepi [N] | si [N]        execute N instructions (at most 1000000), one stop line each
  nexti | ni                like stepi, but run a call to its return
  continue [N] | c [N]      run to the next breakpoint or the end (the Nth stop with N)
  break SYM|ADDR | b        breakpoint: a debug register where they exit, else an exit-instruction
                            patch (ring 0) or single-stepping (ring 3); --break-by chooses
  hbreak SYM|ADDR           the same (all breakpoints here are hardware ones)
  watch ADDR [LEN]          stop when LEN (1,2,4,8) bytes at ADDR are written
  delete [N]                delete breakpoint N (all without N)
  info breakpoints          list them
  regs                      general registers and RFLAGS
  sregs                     segment registers: selector, hidden cache, CPL, IOPL, FS/GS bases
  gdt                       the GDT read from guest memory, marking differences from the loaded caches
  idt [VECTOR]              IDT gates: type, selector, target, DPL, IST
  tss                       RSP0-2, IST1-7, I/O map base
  cr                        CR0, CR2, CR3, CR4, EFER, RFLAGS with flag names
  msr [NAME]                STAR decoded, LSTAR, SFMASK, FS/GS/KERNEL_GS base, TSC_AUX
  check SEL [for data|code|stack] [at cpl N]
                            the privilege check the CPU would make loading SEL now
  x/[N][bxwg] ADDR          examine N units (at most 65536) of memory (virtual, through the guest's page tables)
  pt ADDR                   page walk: each level's entry, and the physical address
  disas [N]                 disassemble N instructions (at most 4096) at RIP
  bt | where                backtrace through frame pointers
  help, quit
any dump accepts --json";

impl Debugger {
    /// Print the stop line (and which breakpoint) after a resume.
    fn report(&mut self, why: StopReason) -> Result<()> {
        match why {
            StopReason::Ended => {
                let o = self.ended().cloned().expect("ended");
                println!("guest ended: {}", o.describe());
                return Ok(());
            }
            StopReason::Breakpoint(id) => println!("Breakpoint {id}, {}", self.spec_of(id)),
            StopReason::Watchpoint(id) => println!("Watchpoint {id}, {} written", self.spec_of(id)),
            StopReason::StepLimit(n) => println!("stopped after {n} steps without reaching a breakpoint"),
            StopReason::Step => {}
        }
        let line = self.stop_line()?;
        println!("{line}");
        Ok(())
    }

    /// What breakpoint `id` was set on, as the user wrote it.
    fn spec_of(&self, id: u32) -> &str {
        self.bps.iter().find(|b| b.id == id).map_or("", |b| b.spec.as_str())
    }
}

/// Run one command line.
pub fn execute(dbg: &mut Debugger, line: &str) -> Result<Flow> {
    let Some(Parsed { cmd, json }) = parse(line)? else {
        return Ok(Flow::Next);
    };
    match cmd {
        Command::Stepi(n) => {
            for _ in 0..n {
                let why = dbg.step()?;
                dbg.report(why.clone())?;
                if why == StopReason::Ended {
                    break;
                }
            }
        }
        Command::Nexti => {
            let why = dbg.next_over_calls()?;
            dbg.report(why)?;
        }
        Command::Continue(n) => {
            // Run past n - 1 stops, reporting only the last, as gdb's `continue N`.
            let mut why = dbg.cont()?;
            for _ in 1..n {
                if matches!(why, StopReason::Ended | StopReason::StepLimit(_)) {
                    break;
                }
                why = dbg.cont()?;
            }
            dbg.report(why)?;
        }
        Command::Break(spec) => {
            let b = dbg.add_breakpoint(&spec, None)?.clone();
            println!("Breakpoint {} at {} ({})", b.id, dbg.sym(b.addr), b.method.describe());
        }
        Command::Watch(spec, len) => {
            let b = dbg.add_breakpoint(&spec, Some(len))?.clone();
            println!(
                "Watchpoint {} at {} ({len} bytes; {})",
                b.id,
                dbg.sym(b.addr),
                b.method.describe()
            );
        }
        Command::Delete(id) => dbg.delete(id)?,
        Command::InfoBreakpoints => show(&dbg.breakpoints_dump(), json)?,
        Command::Regs => show(&dbg.regs_dump()?, json)?,
        Command::Sregs => show(&dbg.sregs_dump()?, json)?,
        Command::Gdt => show(&dbg.gdt_dump()?, json)?,
        Command::Idt(v) => show(&dbg.idt_dump(v)?, json)?,
        Command::Tss => show(&dbg.tss_dump()?, json)?,
        Command::Cr => show(&dbg.cr_dump()?, json)?,
        Command::Msr(name) => show(&dbg.msr_dump(name.as_deref())?, json)?,
        Command::Check { sel, usage, cpl } => show(&dbg.check_dump(sel, usage, cpl)?, json)?,
        Command::X { count, size, addr } => show(&dbg.examine_dump(count, size, &addr)?, json)?,
        Command::Pt(addr) => {
            let va = dbg.resolve(&addr)?;
            show(&memory::describe_walk(&dbg.vm.mem, dbg.sregs()?.cr3, va), json)?
        }
        Command::Disas(n) => show(&dbg.disas_dump(n)?, json)?,
        Command::Bt => show(&dbg.backtrace()?, json)?,
        Command::Help => println!("{HELP}"),
        Command::Quit => return Ok(Flow::Quit),
    }
    Ok(Flow::Next)
}
