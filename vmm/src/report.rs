//! What `vmm run` reports about a run: the one-screen report printed when a
//! guest does not exit cleanly, and `--stats`.

use crate::arch::gdt::split_selector;
use crate::vstate::vm::{Outcome, Vm};
use kvm_bindings::kvm_segment;
use serde::ser::{SerializeMap, Serializer};
use std::fmt;
use std::time::Duration;

fn seg(name: &str, s: &kvm_segment) -> String {
    let (index, ti, rpl) = split_selector(s.selector);
    format!(
        "{name:<2} {:#06x} (index {index}, {}, RPL {rpl})  DPL {} type {:#x} L={} base {:#x}",
        s.selector,
        if ti == 0 { "GDT" } else { "LDT" },
        s.dpl,
        s.type_,
        s.l,
        s.base
    )
}

/// Registers, privilege state and the last serial output.
pub fn crash_report(vm: &mut Vm, outcome: &Outcome) -> String {
    let mut r = format!("vmm: {}\n", outcome.describe());
    let (cpu, vcpu) = vm.ended_vcpu();
    if vm.cpus() > 1 {
        r += &format!("  on CPU {cpu} of {}\n", vm.cpus());
    }
    match (vcpu.get_regs(), vcpu.get_sregs()) {
        (Ok(regs), Ok(sregs)) => {
            let sym = vm.kernel.symbols().describe(regs.rip);
            r += &format!("  RIP    {sym}\n");
            r += &format!("  CPL    {}\n", sregs.cs.selector & 3);
            r += &format!("  {}\n", seg("CS", &sregs.cs));
            r += &format!("  {}\n", seg("SS", &sregs.ss));
            r += &format!("  RSP    {:#018x}  RFLAGS {:#x}\n", regs.rsp, regs.rflags);
            r += &format!(
                "  RAX {:#x} RBX {:#x} RCX {:#x} RDX {:#x} RSI {:#x} RDI {:#x}\n",
                regs.rax, regs.rbx, regs.rcx, regs.rdx, regs.rsi, regs.rdi
            );
            r += &format!(
                "  CR0 {:#x}  CR2 {:#x}  CR3 {:#x}  CR4 {:#x}  EFER {:#x}\n",
                sregs.cr0, sregs.cr2, sregs.cr3, sregs.cr4, sregs.efer
            );
        }
        (Err(e), _) | (_, Err(e)) => r += &format!("  (registers unavailable: {e})\n"),
    }
    let tail = vm.com1.output().tail();
    if !tail.is_empty() {
        r += "  last serial output:\n";
        let lines: Vec<&str> = tail.lines().collect();
        for line in &lines[lines.len().saturating_sub(10)..] {
            r += &format!("  | {line}\n");
        }
    }
    r += &format!("  vmm exit status {}\n", outcome.status());
    r
}

/// How `--stats` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StatsFormat {
    /// Two lines, `vmm: kernel k=v ...` and `vmm: stats k=v ...`.
    Text,
    /// One line: a JSON object with the same numbers (`kernel` a nested object).
    Json,
}

/// `--stats`: where the time went, how many exits, and the kernel's own
/// counters read from guest memory by symbol.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunStats {
    pub kvm_setup_us: u64,
    pub load_us: u64,
    pub seccomp_us: u64,
    pub in_kvm_run_us: u64,
    pub exits: u64,
    pub pio_exits: u64,
    pub serial_bytes: u64,
    /// From `main` to the end of the run (the VM not yet torn down).
    pub total_us: u64,
    /// In the kernel's order (README, "--stats").
    #[serde(serialize_with = "in_order")]
    pub kernel: Vec<(&'static str, u64)>,
}

fn micros(d: Duration) -> u64 {
    d.as_micros().try_into().unwrap_or(u64::MAX)
}

impl RunStats {
    /// The figures of `vm`'s run; `total` is the time since `main` began.
    pub fn of(vm: &mut Vm, total: Duration) -> RunStats {
        let t = &vm.timings;
        RunStats {
            kvm_setup_us: micros(t.kvm_setup),
            load_us: micros(t.load),
            seccomp_us: micros(t.seccomp),
            in_kvm_run_us: micros(t.in_kvm_run),
            exits: t.exits,
            pio_exits: t.pio_exits,
            kernel: vm.kernel_counters(),
            serial_bytes: vm.com1.output().bytes,
            total_us: micros(total),
        }
    }

    /// As `--stats=FORMAT` prints it (to stderr), newline included.
    pub fn render(&self, format: StatsFormat) -> String {
        match format {
            StatsFormat::Text => self.to_string(),
            StatsFormat::Json => serde_json::to_string(self).expect("numbers and names serialize") + "\n",
        }
    }
}

/// A list of pairs as a JSON object, keeping its order.
fn in_order<S: Serializer>(pairs: &[(&'static str, u64)], s: S) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(pairs.len()))?;
    for (k, v) in pairs {
        m.serialize_entry(k, v)?;
    }
    m.end()
}

impl fmt::Display for RunStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counters: Vec<String> = self.kernel.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(f, "vmm: kernel {}", counters.join(" "))?;
        writeln!(
            f,
            "vmm: stats kvm_setup_us={} load_us={} seccomp_us={} in_kvm_run_us={} exits={} pio_exits={} \
             serial_bytes={} total_us={}",
            self.kvm_setup_us,
            self.load_us,
            self.seccomp_us,
            self.in_kvm_run_us,
            self.exits,
            self.pio_exits,
            self.serial_bytes,
            self.total_us
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> RunStats {
        RunStats {
            kvm_setup_us: 1,
            load_us: 2,
            seccomp_us: 3,
            in_kvm_run_us: 4,
            exits: 5,
            pio_exits: 6,
            serial_bytes: 7,
            total_us: 8,
            kernel: vec![("syscalls", 9), ("int80", 0)],
        }
    }

    #[test]
    fn text_stats_are_the_two_lines_tests_parse() {
        assert_eq!(
            stats().render(StatsFormat::Text),
            "vmm: kernel syscalls=9 int80=0\nvmm: stats kvm_setup_us=1 load_us=2 seccomp_us=3 in_kvm_run_us=4 \
             exits=5 pio_exits=6 serial_bytes=7 total_us=8\n"
        );
    }

    #[test]
    fn json_stats_are_one_object_with_the_counters_in_order() {
        assert_eq!(
            stats().render(StatsFormat::Json),
            "{\"kvm_setup_us\":1,\"load_us\":2,\"seccomp_us\":3,\"in_kvm_run_us\":4,\"exits\":5,\
             \"pio_exits\":6,\"serial_bytes\":7,\"total_us\":8,\"kernel\":{\"syscalls\":9,\"int80\":0}}\n"
        );
    }
}
