//! COM1: a 16550 UART from vm-superio. Output goes to stdout, line by line,
//! and the tail is kept for crash reports; host stdin, when it is a terminal
//! or a pipe, feeds the receive FIFO (the guest polls LSR: there is no
//! interrupt controller in this VM).

use crate::seccomp::{SeccompError, StdinFilter};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use vm_superio::{Serial, Trigger};
use vmm_abi::ports::COM1;

/// Number of I/O ports a 16550 decodes.
pub const COM1_PORTS: std::ops::Range<u16> = COM1..COM1 + 8;
/// Bytes of output kept for the crash report.
const TAIL_BYTES: usize = 2048;

/// This VM has no interrupt controller, so the UART's interrupt goes nowhere.
pub struct NoIrq;

impl Trigger for NoIrq {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        Ok(())
    }
}

/// Where guest output goes: a sink (stdout, or a buffer in tests), flushed at
/// each newline, plus a tail buffer.
pub struct Output {
    sink: Box<dyn Write + Send>,
    line: Vec<u8>,
    tail: VecDeque<u8>,
    /// Total bytes the guest wrote.
    pub bytes: u64,
}

impl Output {
    pub fn new(sink: Box<dyn Write + Send>) -> Output {
        Output {
            sink,
            line: Vec::new(),
            tail: VecDeque::new(),
            bytes: 0,
        }
    }

    /// The last output, for reports.
    pub fn tail(&self) -> String {
        let (a, b) = self.tail.as_slices();
        String::from_utf8_lossy(&[a, b].concat()).into_owned()
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes += buf.len() as u64;
        for &b in buf {
            if self.tail.len() == TAIL_BYTES {
                self.tail.pop_front();
            }
            self.tail.push_back(b);
        }
        self.line.extend_from_slice(buf);
        if buf.contains(&b'\n') {
            self.write_out();
        }
        Ok(buf.len())
    }

    /// vm-superio flushes after every byte; output is written out per line
    /// instead (one host write per line, not per character).
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Output {
    /// Write out the pending partial line (at the end of a run).
    pub fn write_out(&mut self) {
        // A closed stdout (e.g. `vmm run | head`) must not stop the guest.
        let _ = self.sink.write_all(&self.line);
        let _ = self.sink.flush();
        self.line.clear();
    }
}

/// A sink that keeps what the guest printed, for callers that parse it
/// (`vmm bench`, tests) instead of showing it.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The UART and its input queue.
pub struct Com1 {
    uart: Serial<NoIrq, vm_superio::serial::NoEvents, Output>,
    input: Option<Arc<Mutex<VecDeque<u8>>>>,
}

impl Com1 {
    pub fn new(out: Output) -> Com1 {
        Com1 {
            uart: Serial::new(NoIrq, out),
            input: None,
        }
    }

    /// Feed host stdin to the guest if it is a terminal or a pipe (not a file
    /// or /dev/null, which would hand the guest an unexpected EOF-less stream).
    /// With `seccomp`, the thread first installs its filter: it only ever
    /// reads fd 0 (seccomp.rs).
    pub fn forward_stdin(&mut self, seccomp: bool) -> Result<(), SeccompError> {
        if !stdin_is_tty_or_pipe() {
            return Ok(());
        }
        let filter = if seccomp { Some(StdinFilter::compile()?) } else { None };
        let queue = Arc::new(Mutex::new(VecDeque::new()));
        let q = queue.clone();
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                if let Some(f) = filter {
                    if let Err(e) = f.apply() {
                        eprintln!("vmm: {e}\nvmm: guest serial input is off");
                        return;
                    }
                }
                let mut buf = [0u8; 256];
                let mut stdin = std::io::stdin().lock();
                while let Ok(n @ 1..) = stdin.read(&mut buf) {
                    q.lock().unwrap().extend(&buf[..n]);
                }
            })
            .ok();
        self.input = Some(queue);
        Ok(())
    }

    /// Move queued input into the UART's FIFO before the guest reads it.
    fn pump_input(&mut self) {
        let Some(q) = &self.input else { return };
        let mut q = q.lock().unwrap();
        while !q.is_empty() {
            let (a, _) = q.as_slices();
            match self.uart.enqueue_raw_bytes(a) {
                Ok(0) | Err(_) => break,
                Ok(n) => drop(q.drain(..n)),
            }
        }
    }

    pub fn pio_write(&mut self, port: u16, value: u8) {
        let _ = self.uart.write((port - COM1) as u8, value);
    }

    pub fn pio_read(&mut self, port: u16) -> u8 {
        self.pump_input();
        self.uart.read((port - COM1) as u8)
    }

    pub fn output(&mut self) -> &mut Output {
        self.uart.writer_mut()
    }
}

fn stdin_is_tty_or_pipe() -> bool {
    // SAFETY: fstat on fd 0 with a zeroed, owned stat buffer.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(0, &mut st) != 0 {
            return false;
        }
        let fmt = st.st_mode & libc::S_IFMT;
        fmt == libc::S_IFIFO || (fmt == libc::S_IFCHR && libc::isatty(0) == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_written_to_thr_reach_the_sink_at_newline() {
        let buf = Capture::default();
        let mut com = Com1::new(Output::new(Box::new(buf.clone())));
        for &b in b"hi" {
            com.pio_write(COM1, b);
        }
        assert!(buf.0.lock().unwrap().is_empty());
        com.pio_write(COM1, b'\n');
        assert_eq!(&*buf.0.lock().unwrap(), b"hi\n");
        assert_eq!(com.output().tail(), "hi\n");
    }

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut out = Output::new(Box::new(std::io::sink()));
        for _ in 0..TAIL_BYTES {
            out.write_all(b"x").unwrap();
        }
        out.write_all(b"end").unwrap();
        let t = out.tail();
        assert_eq!(t.len(), TAIL_BYTES);
        assert!(t.ends_with("xend"));
    }

    #[test]
    fn lsr_reports_received_data() {
        let mut com = Com1::new(Output::new(Box::new(std::io::sink())));
        com.input = Some(Arc::new(Mutex::new(VecDeque::from(b"a".to_vec()))));
        // LSR bit 0: data ready.
        assert_eq!(com.pio_read(COM1 + 5) & 1, 1);
        assert_eq!(com.pio_read(COM1), b'a');
        assert_eq!(com.pio_read(COM1 + 5) & 1, 0);
    }
}
