//! Running a Linux guest: the exit loop, its trace points, how a run ends
//! and the report of one that did not end by Linux's choice.

use super::{init_status, Ending, LinuxEvent, LinuxVm};
use crate::debug::engine::patch::{complete_on_vcpu, patch_memory, unpatch_memory};
use crate::devices::cmos;
use crate::devices::i8042;
use crate::vstate::kick::Stop;
use crate::vstate::vm::Outcome;
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};
use std::time::Instant;
use vmm_abi::ports::COM1;

impl LinuxVm {
    /// Run until Linux restarts or powers off the machine, fails, or the
    /// timeout or a signal stops it.
    pub fn run(&mut self) -> Outcome {
        loop {
            if let LinuxEvent::Ended(o) = self.run_until() {
                return o;
            }
        }
    }

    /// Stop at these kernel addresses (exit-instruction patches: the first
    /// byte becomes `in al, dx`). Linux's text exists only once the
    /// decompressor has written it, and Linux rewrites parts of it while it
    /// boots (alternatives, static calls, the IBT seal of ENDBRs): the
    /// patches go in at the first exit after that, which vmm takes to be the
    /// first access to the CMOS RTC (rtc_cmos's probe, an initcall, long
    /// after `start_kernel` has patched its text). Nothing earlier stops.
    pub fn set_breakpoints(&mut self, addrs: &[u64]) {
        unpatch_memory(&self.mem, &self.armed);
        self.armed.clear();
        self.exit_patches.addrs.clear();
        self.breaks = addrs.to_vec();
    }

    /// Patch the trace points in once Linux's text is final (see
    /// [`LinuxVm::set_breakpoints`]), through Linux's own page tables.
    fn arm(&mut self) -> Result<(), crate::debug::DebugError> {
        if self.breaks.is_empty() || !self.armed.is_empty() || !self.text_final {
            return Ok(());
        }
        let sregs = self
            .vcpu
            .get_sregs()
            .map_err(crate::debug::DebugError::kvm("KVM_GET_SREGS"))?;
        self.armed = patch_memory(&self.mem, sregs.cr3, &self.breaks)?;
        self.exit_patches.addrs = self.armed.iter().map(|&(a, _, _)| a).collect();
        Ok(())
    }

    /// Step over the instruction at a trace point (its byte is back), so
    /// that the patch can go in again: one single step, interrupts held off
    /// where KVM can.
    fn step_over(&mut self) -> Result<(), String> {
        use kvm_bindings::{kvm_guest_debug, KVM_GUESTDBG_BLOCKIRQ, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP};
        let mut dbg = kvm_guest_debug {
            control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_BLOCKIRQ,
            ..Default::default()
        };
        if self.vcpu.set_guest_debug(&dbg).is_err() {
            dbg.control &= !KVM_GUESTDBG_BLOCKIRQ;
            self.vcpu
                .set_guest_debug(&dbg)
                .map_err(|e| format!("KVM_SET_GUEST_DEBUG (single step): {e}"))?;
        }
        let r = loop {
            match self.vcpu.run() {
                Ok(VcpuExit::Debug(_)) => break Ok(()),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.vcpu.set_kvm_immediate_exit(0);
                }
                Ok(other) => break Err(format!("single step over a trace point ended in {other:?}")),
                Err(e) => break Err(format!("KVM_RUN (single step): {e}")),
            }
        };
        let _ = self.vcpu.set_guest_debug(&kvm_guest_debug::default());
        r
    }

    /// Run until the guest ends or reaches a trace point.
    pub fn run_until(&mut self) -> LinuxEvent {
        if std::mem::take(&mut self.at_break) {
            if let Err(e) = self.step_over() {
                return LinuxEvent::Ended(Outcome::KvmError(e));
            }
        }
        if let Err(e) = self.arm() {
            return LinuxEvent::Ended(Outcome::KvmError(format!("patching the trace points: {e}")));
        }
        if let Some(ev) = self.events.as_mut() {
            ev.arm_timeout(self.timeout);
            // SAFETY: `vcpu_reg` is dropped before `vcpu` (field order), and
            // only this thread runs the vCPU.
            self.vcpu_reg = Some(unsafe { ev.kicker().register(&mut self.vcpu) });
        }
        if let Some(r) = &self.vcpu_reg {
            r.running(true);
        }
        let event = self.run_loop();
        if let Some(r) = &self.vcpu_reg {
            r.running(false);
        }
        if let Some(ev) = self.events.as_mut() {
            ev.disarm_timeout();
        }
        self.serial.writer_mut().write_out();
        self.stats.console_bytes = self.serial.writer_mut().bytes;
        let mut ports: Vec<(u16, u64)> = self.ports.iter().map(|(p, n)| (*p, *n)).collect();
        ports.sort_by_key(|(p, n)| (std::cmp::Reverse(*n), *p));
        self.stats.ports = ports
            .into_iter()
            .take(12)
            .map(|(p, n)| (format!("{p:#x}"), n))
            .collect();
        event
    }

    fn stop_requested(&self) -> Option<Outcome> {
        let kicker = self.events.as_ref()?.kicker();
        match kicker.pending()? {
            Stop::Timeout => Some(Outcome::Timeout(self.timeout.unwrap_or_default())),
            Stop::Interrupt => Some(Outcome::Stopped(libc::SIGINT)),
            Stop::Signal(sig) => Some(Outcome::Stopped(sig)),
            // Nothing ends a Linux run through the kicker (one vCPU, whose
            // own exits end it), but an outcome put there wins all the same.
            Stop::Ended => kicker.outcome().map(|(_, o)| o),
        }
    }

    fn run_loop(&mut self) -> LinuxEvent {
        loop {
            if let Some(o) = self.stop_requested() {
                return LinuxEvent::Ended(o);
            }
            let t = Instant::now();
            let exit = self.vcpu.run();
            self.stats.in_kvm_run_ms += t.elapsed().as_secs_f64() * 1e3;
            self.stats.exits += 1;
            let ended = match exit {
                Ok(VcpuExit::IoOut(port, data)) => {
                    self.stats.pio_exits += 1;
                    *self.ports.entry(port).or_default() += 1;
                    let value = data.first().copied().unwrap_or(0);
                    match port {
                        p if (COM1..COM1 + 8).contains(&p) => {
                            let _ = self.serial.write((p - COM1) as u8, value);
                            // Halted: no exit will ever come again.
                            value == b'\n' && *self.ending.lock().unwrap() == Ending::Halted
                        }
                        cmos::INDEX_PORT | cmos::DATA_PORT => {
                            self.cmos.write(port, value);
                            self.text_final = true;
                            false
                        }
                        i8042::DATA_PORT | i8042::COMMAND_PORT => self.i8042.write(port, value) == i8042::Action::Reset,
                        // Nothing there: the write goes nowhere.
                        _ => false,
                    }
                }
                Ok(VcpuExit::IoIn(..)) if self.exit_patches.hit().is_some() => {
                    let at = self.exit_patches.hit().unwrap_or_default();
                    unpatch_memory(&self.mem, &self.armed);
                    self.armed.clear();
                    self.exit_patches.addrs.clear();
                    if let Err(e) = complete_on_vcpu(&mut self.vcpu) {
                        return LinuxEvent::Ended(Outcome::KvmError(format!("at a trace point: {e}")));
                    }
                    self.at_break = true;
                    return LinuxEvent::Break(at);
                }
                Ok(VcpuExit::IoIn(port, data)) => {
                    self.stats.pio_exits += 1;
                    *self.ports.entry(port).or_default() += 1;
                    let v = match port {
                        p if (COM1..COM1 + 8).contains(&p) => self.serial.read((p - COM1) as u8),
                        cmos::INDEX_PORT | cmos::DATA_PORT => self.cmos.read(port),
                        i8042::DATA_PORT | i8042::COMMAND_PORT => self.i8042.read(port),
                        // An ISA bus with nothing on it reads all ones.
                        _ => 0xff,
                    };
                    data.iter_mut().for_each(|b| *b = v);
                    false
                }
                Ok(VcpuExit::MmioRead(_, data)) => {
                    self.stats.mmio_exits += 1;
                    data.iter_mut().for_each(|b| *b = 0xff);
                    false
                }
                Ok(VcpuExit::MmioWrite(..)) => {
                    self.stats.mmio_exits += 1;
                    false
                }
                // KVM_SYSTEM_EVENT_SHUTDOWN / RESET (e.g. from a PSCI-like
                // interface): the machine is off or restarting.
                Ok(VcpuExit::SystemEvent(..)) => true,
                Ok(VcpuExit::Shutdown) => return LinuxEvent::Ended(Outcome::TripleFault),
                Ok(VcpuExit::Hlt) => {
                    return LinuxEvent::Ended(Outcome::Unhandled(
                        "hlt exited to the VMM despite the in-kernel irqchip".into(),
                    ))
                }
                Ok(VcpuExit::InternalError) => return LinuxEvent::Ended(Outcome::KvmError(self.internal_error())),
                Ok(VcpuExit::FailEntry(reason, cpu)) => {
                    return LinuxEvent::Ended(Outcome::KvmError(format!(
                        "VM entry failed (hardware reason {reason:#x}, cpu {cpu})"
                    )))
                }
                Ok(other) => return LinuxEvent::Ended(Outcome::Unhandled(format!("{other:?}"))),
                // A kick (event_loop.rs): clear immediate_exit before the
                // next look for a request.
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.vcpu.set_kvm_immediate_exit(0);
                    false
                }
                Err(e) => return LinuxEvent::Ended(Outcome::KvmError(format!("KVM_RUN failed: {e}"))),
            };
            if ended {
                // Let the console's last line reach the watcher.
                self.serial.writer_mut().write_out();
                return LinuxEvent::Ended(match *self.ending.lock().unwrap() {
                    Ending::Running | Ending::Halted => Outcome::Exited(0),
                    Ending::InitExited(wait) => Outcome::Exited(init_status(wait)),
                    Ending::Panic => Outcome::KernelPanic,
                });
            }
            if self.armed.is_empty() && !self.breaks.is_empty() {
                if let Err(e) = self.arm() {
                    return LinuxEvent::Ended(Outcome::KvmError(format!("patching the trace points: {e}")));
                }
            }
        }
    }

    pub fn vcpu(&self) -> &VcpuFd {
        &self.vcpu
    }

    fn internal_error(&mut self) -> String {
        // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the active member.
        let sub = unsafe { self.vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
        format!("KVM_EXIT_INTERNAL_ERROR suberror {sub}")
    }

    /// A short report of a run that did not end by Linux's own choice.
    pub fn report(&mut self, outcome: &Outcome) -> String {
        let mut s = format!("vmm: {}\n", outcome.describe());
        if let (Ok(r), Ok(sr)) = (self.vcpu.get_regs(), self.vcpu.get_sregs()) {
            s += &format!(
                "  RIP {:#x}  RSP {:#x}  CPL {}  CS {:#06x}  CR0 {:#x}  CR3 {:#x}  CR4 {:#x}  EFER {:#x}\n",
                r.rip,
                r.rsp,
                sr.cs.selector & 3,
                sr.cs.selector,
                sr.cr0,
                sr.cr3,
                sr.cr4,
                sr.efer
            );
        }
        let tail = self.serial.writer_mut().tail();
        let lines: Vec<&str> = tail.lines().collect();
        if !lines.is_empty() {
            s += "  last console lines:\n";
            for l in &lines[lines.len().saturating_sub(8)..] {
                s += &format!("    {l}\n");
            }
        }
        s
    }

    /// vmm is about to exit: end the VMM thread without waiting for it.
    pub fn release_for_exit(&mut self) {
        self.vcpu_reg.take();
        if let Some(ev) = self.events.take() {
            ev.abandon();
        }
    }

    pub fn vm_fd(&self) -> &VmFd {
        &self.vm
    }
}
