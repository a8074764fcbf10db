//! The Linux guest's console: COM1's IRQ 4, and the watcher that reads
//! the console for how the run ends (panic line, halt); and `--stats`.

use kvm_ioctls::VmFd;
use std::io::Write;
use std::sync::{Arc, Mutex};
use vm_superio::Trigger;

/// IRQ 4 through KVM's in-kernel PIC and IOAPIC: an edge (the line up,
/// then down), as an ISA serial port gives.
pub(super) struct Irq4(pub(super) Arc<VmFd>);

impl Trigger for Irq4 {
    type E = kvm_ioctls::Error;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.set_irq_line(4, true)?;
        self.0.set_irq_line(4, false)
    }
}

/// What Linux's console said about how it ends, seen on the way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ending {
    #[default]
    Running,
    /// "Kernel panic - not syncing: Attempted to kill init! exitcode=0x…":
    /// init ended with this wait status.
    InitExited(u32),
    /// Any other panic.
    Panic,
    /// "reboot: System halted" or "reboot: Power down": `poweroff` or
    /// `halt`. Without ACPI Linux cannot cut the power, so a power-off
    /// becomes a halt: the CPU stops with interrupts off, inside KVM,
    /// and would never exit — the console line is the only sign.
    Halted,
}

/// Read one console line for the end of the run: a panic, or a halt.
pub fn panic_line(line: &str) -> Option<Ending> {
    if line.contains("reboot: System halted") || line.contains("reboot: Power down") {
        return Some(Ending::Halted);
    }
    let rest = &line[line.find("Kernel panic - not syncing:")?..];
    if let Some(i) = rest.find("Attempted to kill init! exitcode=0x") {
        let hex: String = rest[i + 35..].chars().take_while(char::is_ascii_hexdigit).collect();
        if let Ok(code) = u32::from_str_radix(&hex, 16) {
            return Some(Ending::InitExited(code));
        }
    }
    Some(Ending::Panic)
}

/// vmm's status for init's wait status: its exit code, or 128 + signal.
pub fn init_status(wait: u32) -> u8 {
    match wait & 0x7f {
        0 => ((wait >> 8) & 0xff) as u8,
        sig => 128 + sig as u8,
    }
}

/// The console's sink: passes output on, and watches it for the panic line.
pub(super) struct Watch {
    pub(super) inner: Box<dyn Write + Send>,
    pub(super) line: Vec<u8>,
    pub(super) ending: Arc<Mutex<Ending>>,
}

impl Write for Watch {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            if b == b'\n' {
                if let Some(e) = panic_line(&String::from_utf8_lossy(&self.line)) {
                    let mut ending = self.ending.lock().unwrap();
                    // The first panic is the cause; later ones are echoes.
                    if *ending == Ending::Running {
                        *ending = e;
                    }
                }
                self.line.clear();
            } else if self.line.len() < 512 {
                self.line.push(b);
            }
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Where the time and the exits went, for `--stats`.
#[derive(Debug, Default, serde::Serialize)]
pub struct LinuxStats {
    pub setup_ms: f64,
    pub in_kvm_run_ms: f64,
    pub exits: u64,
    pub pio_exits: u64,
    pub mmio_exits: u64,
    /// Port-I/O exits per port, busiest first (at most 12).
    pub ports: Vec<(String, u64)>,
    pub console_bytes: u64,
}

impl LinuxStats {
    pub fn render(&self, json: bool) -> String {
        if json {
            return serde_json::to_string(self).unwrap_or_default() + "\n";
        }
        let ports: Vec<String> = self.ports.iter().map(|(p, n)| format!("{p}:{n}")).collect();
        format!(
            "vmm: linux: setup {:.2} ms, in KVM_RUN {:.1} ms, {} exits ({} port I/O, {} MMIO), {} console bytes\n\
             vmm: linux: port exits by port: {}\n",
            self.setup_ms,
            self.in_kvm_run_ms,
            self.exits,
            self.pio_exits,
            self.mmio_exits,
            self.console_bytes,
            ports.join(" ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_lines_tell_how_init_ended() {
        let l = "[    2.345678] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000300";
        assert_eq!(panic_line(l), Some(Ending::InitExited(0x300)));
        assert_eq!(init_status(0x300), 3);
        assert_eq!(init_status(0x0b), 139);
        assert_eq!(init_status(0), 0);
        assert_eq!(
            panic_line("Kernel panic - not syncing: VFS: Unable to mount root fs"),
            Some(Ending::Panic)
        );
        assert_eq!(panic_line("hello from init"), None);
        assert_eq!(panic_line("[    6.078008] reboot: System halted"), Some(Ending::Halted));
    }

    #[test]
    fn the_watcher_passes_output_on_and_keeps_the_first_panic() {
        let cap = crate::devices::serial::Capture::default();
        let ending = Arc::new(Mutex::new(Ending::Running));
        let mut w = Watch {
            inner: Box::new(cap.clone()),
            line: Vec::new(),
            ending: ending.clone(),
        };
        w.write_all(b"hi\nKernel panic - not syncing: Attempted to kill init! exitcode=0x0000")
            .unwrap();
        assert_eq!(*ending.lock().unwrap(), Ending::Running);
        w.write_all(b"0100\nKernel panic - not syncing: again\n").unwrap();
        assert_eq!(*ending.lock().unwrap(), Ending::InitExited(0x100));
        assert!(cap.0.lock().unwrap().starts_with(b"hi\n"));
    }
}
