//! `vmm run --gdb ADDR`: the GDB remote protocol (gdbstub) over the same
//! engine as `vmm debug`. gdb's breakpoints become debug-register (or
//! stepping) breakpoints, its memory accesses go through the guest's page
//! tables, and its registers are KVM's.
//!
//! ```text
//! vmm run --gdb 127.0.0.1:1234 -- ./hello &
//! gdb target/guest/x86_64-unknown-linux-gnu/release/kernel -ex 'target remote :1234'
//! ```

use super::{DebugError, Debugger, StopReason};
use crate::introspect::memory;
use crate::vstate::vm::Outcome;
use gdbstub::common::Signal;
use gdbstub::conn::{Connection, ConnectionExt};
use gdbstub::stub::{run_blocking, DisconnectReason, GdbStub, SingleThreadStopReason};
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep, SingleThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, SwBreakpoint, SwBreakpointOps,
};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::reg::X86_64CoreRegs;
use gdbstub_arch::x86::X86_64_SSE;
use std::net::{TcpListener, TcpStream};
use vm_memory::{Bytes, GuestAddress};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Resume {
    Step,
    Continue,
}

pub struct GdbTarget {
    pub dbg: Debugger,
    resume: Resume,
}

impl Target for GdbTarget {
    type Arch = X86_64_SSE;
    type Error = DebugError;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadBase for GdbTarget {
    fn read_registers(&mut self, regs: &mut X86_64CoreRegs) -> TargetResult<(), Self> {
        let r = self.dbg.regs().map_err(TargetError::Fatal)?;
        let s = self.dbg.sregs().map_err(TargetError::Fatal)?;
        regs.regs = [
            r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14,
            r.r15,
        ];
        regs.rip = r.rip;
        regs.eflags = r.rflags as u32;
        regs.segments.cs = u32::from(s.cs.selector);
        regs.segments.ss = u32::from(s.ss.selector);
        regs.segments.ds = u32::from(s.ds.selector);
        regs.segments.es = u32::from(s.es.selector);
        regs.segments.fs = u32::from(s.fs.selector);
        regs.segments.gs = u32::from(s.gs.selector);
        Ok(())
    }

    fn write_registers(&mut self, regs: &X86_64CoreRegs) -> TargetResult<(), Self> {
        let mut r = self.dbg.regs().map_err(TargetError::Fatal)?;
        let g = regs.regs;
        (r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp) = (g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]);
        (r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15) = (g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
        r.rip = regs.rip;
        r.rflags = (r.rflags & !0xffff_ffff) | u64::from(regs.eflags);
        // Through the debugger, which keeps its per-stop copy in step.
        self.dbg.set_regs(&r).map_err(TargetError::Fatal)
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        let cr3 = self.dbg.sregs().map_err(TargetError::Fatal)?.cr3;
        // Byte by byte up to the first unmapped address, as gdb expects.
        for (i, b) in data.iter_mut().enumerate() {
            let mut one = [0u8];
            if memory::read_virt(&self.dbg.vm.mem, cr3, start.wrapping_add(i as u64), &mut one).is_err() {
                return if i == 0 { Err(TargetError::NonFatal) } else { Ok(i) };
            }
            *b = one[0];
        }
        Ok(data.len())
    }

    fn write_addrs(&mut self, start: u64, data: &[u8]) -> TargetResult<(), Self> {
        let cr3 = self.dbg.sregs().map_err(TargetError::Fatal)?.cr3;
        for (i, b) in data.iter().enumerate() {
            let va = start.wrapping_add(i as u64);
            let phys = crate::arch::paging::walk(&self.dbg.vm.mem, cr3, va)
                .1
                .ok_or(TargetError::NonFatal)?;
            self.dbg
                .vm
                .mem
                .write_obj(*b, GuestAddress(phys))
                .map_err(|_| TargetError::NonFatal)?;
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadResume for GdbTarget {
    fn resume(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.resume = Resume::Continue;
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for GdbTarget {
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.resume = Resume::Step;
        Ok(())
    }
}

impl Breakpoints for GdbTarget {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }
}

impl GdbTarget {
    fn add(&mut self, addr: u64) -> TargetResult<bool, Self> {
        match self.dbg.add_breakpoint(&format!("{addr:#x}"), None) {
            Ok(_) => Ok(true),
            Err(e) => {
                eprintln!("vmm: gdb breakpoint at {addr:#x} refused: {e}");
                Ok(false)
            }
        }
    }

    fn remove(&mut self, addr: u64) -> TargetResult<bool, Self> {
        let id = self
            .dbg
            .bps
            .iter()
            .find(|b| b.addr == addr && b.watch.is_none())
            .map(|b| b.id);
        Ok(id.is_some_and(|id| self.dbg.delete(Some(id)).is_ok()))
    }
}

// gdb's `break` asks for software breakpoints; every breakpoint here is a
// debug register (int3 in ring 0 kills the vCPU on PVM), or a stepping one.
impl SwBreakpoint for GdbTarget {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.add(addr)
    }
    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.remove(addr)
    }
}

impl HwBreakpoint for GdbTarget {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.add(addr)
    }
    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.remove(addr)
    }
}

enum EventLoop {}

impl run_blocking::BlockingEventLoop for EventLoop {
    type Target = GdbTarget;
    type Connection = TcpStream;
    type StopReason = SingleThreadStopReason<u64>;

    #[allow(clippy::type_complexity)]
    fn wait_for_stop_reason(
        target: &mut GdbTarget,
        conn: &mut TcpStream,
    ) -> Result<
        run_blocking::Event<Self::StopReason>,
        run_blocking::WaitForStopReasonError<DebugError, <TcpStream as Connection>::Error>,
    > {
        // A byte from gdb (Ctrl-C) before we start: hand it over.
        if conn.peek().map(|b| b.is_some()).unwrap_or(false) {
            let byte = conn.read().map_err(run_blocking::WaitForStopReasonError::Connection)?;
            return Ok(run_blocking::Event::IncomingData(byte));
        }
        let why = match target.resume {
            Resume::Step => target.dbg.step(),
            Resume::Continue => target.dbg.cont(),
        };
        let why = match why {
            // gdb's Ctrl-C while the guest ran: the VMM thread saw it arrive
            // and stopped the guest (event_loop.rs). The byte is the stub's.
            Err(DebugError::Interrupted) => {
                let byte = conn.read().map_err(run_blocking::WaitForStopReasonError::Connection)?;
                return Ok(run_blocking::Event::IncomingData(byte));
            }
            other => other.map_err(run_blocking::WaitForStopReasonError::Target)?,
        };
        let reason = match why {
            StopReason::Step | StopReason::StepLimit(_) => SingleThreadStopReason::DoneStep,
            StopReason::Breakpoint(_) | StopReason::Watchpoint(_) => SingleThreadStopReason::HwBreak(()),
            StopReason::Ended => match target.dbg.ended() {
                Some(&Outcome::Exited(code)) => SingleThreadStopReason::Exited(code),
                // Ctrl-C at vmm's terminal, or SIGTERM, ended the run.
                Some(&Outcome::Stopped(sig)) => SingleThreadStopReason::Terminated(Signal(sig as u8)),
                _ => SingleThreadStopReason::Terminated(Signal::SIGSEGV),
            },
        };
        Ok(run_blocking::Event::TargetStopped(reason))
    }

    fn on_interrupt(_target: &mut GdbTarget) -> Result<Option<Self::StopReason>, DebugError> {
        Ok(Some(SingleThreadStopReason::Signal(Signal::SIGINT)))
    }
}

/// Wait for gdb on `addr`, serve it, and when it detaches run the guest to
/// its end. Returns how the guest ended.
pub fn serve(mut dbg: Debugger, addr: &str) -> Result<Outcome, crate::error::Error> {
    let socket = |source| DebugError::GdbSocket {
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).map_err(socket)?;
    eprintln!("vmm: waiting for gdb on {addr} (gdb KERNEL -ex 'target remote {addr}')");
    let (stream, peer) = listener.accept().map_err(socket)?;
    eprintln!("vmm: gdb connected from {peer}");
    // gdb's Ctrl-C while the guest runs stops it (the VMM thread watches).
    dbg.vm.interrupt_on_input(std::os::fd::AsRawFd::as_raw_fd(&stream));
    // The listening socket is no longer needed, and seccomp forbids accept.
    drop(listener);
    dbg.vm.lock_down(crate::seccomp::Profile::Interactive)?;
    let mut target = GdbTarget {
        dbg,
        resume: Resume::Continue,
    };
    let stub = GdbStub::new(stream);
    match stub.run_blocking::<EventLoop>(&mut target) {
        Ok(DisconnectReason::TargetExited(_) | DisconnectReason::TargetTerminated(_)) => {}
        // gdb's kill ends the VM where it stands.
        Ok(DisconnectReason::Kill) => return Ok(target.dbg.ended().cloned().unwrap_or(Outcome::Exited(0))),
        // Detached: let the guest run on to its end.
        Ok(DisconnectReason::Disconnect) => {
            if target.dbg.ended().is_none() {
                target.dbg.bps.clear();
                let _ = target.dbg.cont();
            }
        }
        Err(e) => return Err(DebugError::GdbSession(e.to_string()).into()),
    }
    Ok(target.dbg.ended().cloned().unwrap_or(Outcome::Exited(0)))
}
