//! Guest memory as the CPU sees it: virtual addresses through the guest's
//! own page tables (CR3), the page walk spelled out, and disassembly.

use crate::arch::paging::{self, PTE_A, PTE_D, PTE_G, PTE_NX, PTE_P, PTE_PS, PTE_RW, PTE_US};
use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
use serde::Serialize;
use std::fmt;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Why guest memory could not be read at a virtual address.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("{va:#x}: {len} bytes from there run past the end of the address space")]
    PastEnd { va: u64, len: usize },
    #[error("{0:#x} is not mapped")]
    NotMapped(u64),
    #[error(transparent)]
    Guest(#[from] vm_memory::GuestMemoryError),
}

/// Read `buf.len()` bytes at guest virtual `va` through the tables at `cr3`.
pub fn read_virt(mem: &GuestMemoryMmap, cr3: u64, va: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
    if buf.len() > 1 && va.checked_add(buf.len() as u64 - 1).is_none() {
        return Err(MemoryError::PastEnd { va, len: buf.len() });
    }
    let mut done = 0;
    while done < buf.len() {
        let addr = va + done as u64;
        let phys = paging::walk(mem, cr3, addr).1.ok_or(MemoryError::NotMapped(addr))?;
        let in_page = (0x1000 - (addr & 0xfff)) as usize;
        let n = in_page.min(buf.len() - done);
        mem.read_slice(&mut buf[done..done + n], GuestAddress(phys))?;
        done += n;
    }
    Ok(())
}

/// Decode the instruction at `rip`: its text and length.
pub fn decode_one(mem: &GuestMemoryMmap, cr3: u64, rip: u64) -> Option<(String, u64)> {
    decode(mem, cr3, rip, 1).into_iter().next().map(|(_, t, l)| (t, l))
}

pub fn disassemble_one(mem: &GuestMemoryMmap, cr3: u64, rip: u64) -> Option<String> {
    decode_one(mem, cr3, rip).map(|(t, _)| t)
}

/// Up to `n` instructions from `rip`: (address, text, length).
pub fn decode(mem: &GuestMemoryMmap, cr3: u64, rip: u64, n: usize) -> Vec<(u64, String, u64)> {
    // At most 15 bytes an instruction, and never past the top of the address space.
    let want = 15u64
        .saturating_mul(n.max(1) as u64)
        .min((u64::MAX - rip).saturating_add(1));
    let mut bytes = vec![0u8; want as usize];
    // Read as much as is mapped (a page boundary may end it).
    let mut len = 0;
    while len < bytes.len() {
        let at = rip + len as u64;
        let chunk = (0x1000 - (at & 0xfff)) as usize;
        let chunk = chunk.min(bytes.len() - len);
        if read_virt(mem, cr3, at, &mut bytes[len..len + chunk]).is_err() {
            break;
        }
        len += chunk;
    }
    let mut decoder = Decoder::with_ip(64, &bytes[..len], rip, DecoderOptions::NONE);
    let mut out = Vec::new();
    let mut fmt = IntelFormatter::new();
    while decoder.can_decode() && out.len() < n {
        let insn = decoder.decode();
        if insn.is_invalid() {
            break;
        }
        let mut text = String::new();
        fmt.format(&insn, &mut text);
        out.push((insn.ip(), text, insn.len() as u64));
    }
    out
}

/// The bits of a page-table entry, named.
pub fn entry_bits(e: u64) -> String {
    let bit = |m: u64, on: &'static str, off: &'static str| if e & m != 0 { on } else { off };
    format!(
        "{} {} {} {} {} {} {}{}",
        bit(PTE_P, "P", "-"),
        bit(PTE_RW, "R/W", "R/O"),
        bit(PTE_US, "U", "S"),
        bit(PTE_NX, "NX", "X"),
        bit(PTE_PS, "PS", "--"),
        bit(PTE_A, "A", "-"),
        bit(PTE_D, "D", "-"),
        bit(PTE_G, " G", ""),
    )
}

/// One level of a page walk.
#[derive(Clone, Debug, Serialize)]
pub struct WalkLevel {
    /// "PML4E", "PDPTE", "PDE" or "PTE".
    pub level: &'static str,
    pub index: usize,
    pub entry_addr: u64,
    pub entry: u64,
    pub present: bool,
    pub writable: bool,
    pub user: bool,
    pub nx: bool,
    pub large: bool,
}

/// `pt ADDR`: every level's entry, and the physical address or why the walk stopped.
#[derive(Clone, Debug, Serialize)]
pub struct PageWalk {
    pub va: u64,
    pub cr3: u64,
    pub steps: Vec<WalkLevel>,
    pub phys: Option<u64>,
    /// "→ physical …: rights" or "→ not mapped: why".
    pub verdict: String,
}

impl fmt::Display for PageWalk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "page walk for {:#x}, CR3 {:#x}", self.va, self.cr3)?;
        for s in &self.steps {
            writeln!(
                f,
                "  {:<6}[{:3}] at {:#x} = {:#018x}  {}",
                s.level,
                s.index,
                s.entry_addr,
                s.entry,
                entry_bits(s.entry)
            )?;
        }
        writeln!(f, "  {}", self.verdict)
    }
}

/// Walk the page tables at `cr3` for `va`, level by level.
pub fn describe_walk(mem: &GuestMemoryMmap, cr3: u64, va: u64) -> PageWalk {
    let names = ["", "PTE", "PDE", "PDPTE", "PML4E"];
    let (steps, phys) = paging::walk(mem, cr3, va);
    let levels = steps
        .iter()
        .map(|s| WalkLevel {
            level: names[s.level as usize],
            index: paging::index(va, s.level),
            entry_addr: s.entry_addr,
            entry: s.entry,
            present: s.entry & PTE_P != 0,
            writable: s.entry & PTE_RW != 0,
            user: s.entry & PTE_US != 0,
            nx: s.entry & PTE_NX != 0,
            large: s.entry & PTE_PS != 0,
        })
        .collect();
    let verdict = match (phys, steps.last()) {
        (Some(p), _) => {
            let user = steps.iter().all(|s| s.entry & PTE_US != 0);
            let writable = steps.iter().all(|s| s.entry & PTE_RW != 0);
            let exec = steps.iter().all(|s| s.entry & PTE_NX == 0);
            format!(
                "→ physical {p:#x}: {} {} {}",
                if user {
                    "user-accessible"
                } else {
                    "supervisor-only (ring 3 gets #PF)"
                },
                if writable { "writable" } else { "read-only" },
                if exec { "executable" } else { "no-execute" }
            )
        }
        (None, Some(s)) => format!("→ not mapped: the {} has P = 0", names[s.level as usize]),
        (None, None) => "→ not mapped: CR3 does not point into guest memory".into(),
    };
    PageWalk {
        va,
        cr3,
        steps: levels,
        phys,
        verdict,
    }
}
