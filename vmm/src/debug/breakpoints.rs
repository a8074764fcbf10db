//! Breakpoints and watchpoints: which method each gets, the debug registers
//! they fill, the exit-instruction patches put in and taken out around a run.

use super::engine::{self, BreakMethod, DrSlot};
use super::error::{DebugError, Result};
use super::Debugger;
use crate::introspect::memory;
use vmm_abi::layout::KERNEL_BASE;

/// A breakpoint or watchpoint.
#[derive(Clone, Debug)]
pub struct Breakpoint {
    pub id: u32,
    pub addr: u64,
    pub spec: String,
    /// None: execute breakpoint; Some(len): write watchpoint of len bytes.
    pub watch: Option<u8>,
    /// For watchpoints reached by stepping: the last value seen.
    pub last_value: Option<u64>,
    /// How it stops the guest.
    pub method: BreakMethod,
}

impl Debugger {
    /// The method a new breakpoint at `addr` gets.
    pub fn method_for(&self, addr: u64, watch: bool) -> BreakMethod {
        if watch {
            // DR watchpoints never fire on PVM nor in the KVM box.
            return match self.requested {
                Some(m) => m,
                None if self.dr_works && !self.vm.flavor.is_pvm() => BreakMethod::DebugRegister,
                None => BreakMethod::Step,
            };
        }
        BreakMethod::for_address(self.requested, self.dr_works, addr)
    }

    pub fn add_breakpoint(&mut self, spec: &str, watch: Option<u8>) -> Result<&Breakpoint> {
        let addr = self.resolve(spec)?;
        if addr < KERNEL_BASE {
            self.refuse_ring3_on_pvm(&format!("a breakpoint at {addr:#x} (ring 3)"))?;
        }
        let method = self.method_for(addr, watch.is_some());
        if method == BreakMethod::ExitInsn && (addr < KERNEL_BASE || watch.is_some()) {
            return Err(DebugError::ExitInsnNotHere {
                addr,
                what: if watch.is_some() {
                    "a watchpoint"
                } else {
                    "a ring-3 address (an `in` there is #GP, not an exit)"
                },
            });
        }
        if method == BreakMethod::DebugRegister
            && self
                .bps
                .iter()
                .filter(|b| b.method == BreakMethod::DebugRegister)
                .count()
                >= 4
        {
            return Err(DebugError::NoFreeDebugRegister);
        }
        if let Some(len) = watch {
            if self.vm.flavor.is_pvm() && method == BreakMethod::DebugRegister {
                return Err(DebugError::DrWatchpointOnPvm);
            }
            if ![1, 2, 4, 8].contains(&len) || addr % u64::from(len) != 0 {
                return Err(DebugError::BadWatchpoint);
            }
        }
        let last_value = watch.and_then(|len| self.read_watched(addr, len));
        let id = self.next_id;
        self.next_id += 1;
        self.bps.push(Breakpoint {
            id,
            addr,
            spec: spec.to_string(),
            watch,
            last_value,
            method,
        });
        Ok(self.bps.last().unwrap())
    }

    pub fn delete(&mut self, id: Option<u32>) -> Result<()> {
        match id {
            None => self.bps.clear(),
            Some(id) => {
                let n = self.bps.len();
                self.bps.retain(|b| b.id != id);
                if n == self.bps.len() {
                    return Err(DebugError::NoBreakpoint(id));
                }
            }
        }
        Ok(())
    }

    pub(super) fn read_watched(&self, addr: u64, len: u8) -> Option<u64> {
        let sregs = self.sregs().ok()?;
        let mut b = [0u8; 8];
        memory::read_virt(&self.vm.mem, sregs.cr3, addr, &mut b[..len as usize]).ok()?;
        Some(u64::from_le_bytes(b))
    }

    /// DR0–3 and DR7 for the debug-register breakpoints.
    pub(super) fn debug_registers(&self) -> Option<([u64; 4], u64)> {
        let mut dr = [0u64; 4];
        let mut slots = Vec::new();
        for (i, b) in self.dr_bps().take(4).enumerate() {
            dr[i] = b.addr;
            slots.push(b.watch.map_or(DrSlot::Execute, DrSlot::Write));
        }
        (!slots.is_empty()).then(|| (dr, engine::dr7(&slots)))
    }

    pub(super) fn dr_bps(&self) -> impl Iterator<Item = &Breakpoint> {
        self.bps.iter().filter(|b| b.method == BreakMethod::DebugRegister)
    }

    /// A `continue` must single-step: some breakpoint is reached by stepping.
    pub(super) fn continue_steps(&self) -> bool {
        self.bps.iter().any(|b| b.method == BreakMethod::Step)
    }

    /// The exit-instruction breakpoints' addresses.
    pub(super) fn exit_insn_addrs(&self) -> Vec<u64> {
        self.bps
            .iter()
            .filter(|b| b.method == BreakMethod::ExitInsn)
            .map(|b| b.addr)
            .collect()
    }

    /// The breakpoint (not watchpoint) at `rip`.
    pub(super) fn at_breakpoint(&self, rip: u64) -> Option<u32> {
        self.bps
            .iter()
            .find(|b| b.watch.is_none() && b.addr == rip)
            .map(|b| b.id)
    }

    /// Step mode: a watchpoint whose value changed.
    pub(super) fn watch_hit(&mut self) -> Option<u32> {
        let mut hit = None;
        let watched: Vec<(usize, u64, u8)> = self
            .bps
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.watch.map(|l| (i, b.addr, l)))
            .collect();
        for (i, addr, len) in watched {
            let v = self.read_watched(addr, len);
            if v != self.bps[i].last_value {
                self.bps[i].last_value = v;
                hit = hit.or(Some(self.bps[i].id));
            }
        }
        hit
    }
}
