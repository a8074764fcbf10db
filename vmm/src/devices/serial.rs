//! COM1: a 16550 UART from vm-superio. Output goes to stdout, line by line
//! (or in pieces of at most `LINE_MAX` bytes), and the tail is kept for crash
//! reports; host stdin feeds the receive FIFO, and its end is reported on
//! the `CONSOLE_EOF` port. When the VM has a LAPIC, the stdin thread raises
//! IRQ 4 (an MSI with `vmm_abi::irq::SERIAL_VECTOR`) each time input arrives
//! or ends, and a guest waiting in read() wakes up; without one it polls LSR.

use crate::seccomp::{SeccompError, StdinFilter};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use vm_superio::{Serial, Trigger};
use vmm_abi::ports::COM1;

/// The 16550's receive FIFO (vm-superio's size).
const FIFO_SIZE: usize = 64;

/// Number of I/O ports a 16550 decodes.
pub const COM1_PORTS: std::ops::Range<u16> = COM1..COM1 + 8;
/// Bytes of output kept for the crash report.
const TAIL_BYTES: usize = 2048;
/// Output held back waiting for a newline, at most: then it is written out
/// anyway, so a guest that never prints '\n' cannot grow the VMM's memory.
const LINE_MAX: usize = 4096;

/// vm-superio's own interrupt output is not wired: IRQ 4 is raised by the
/// stdin thread (see [`Com1::set_irq`]), when bytes wait in the input queue
/// and not only once they sit in the 64-byte FIFO.
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
        // Only the last TAIL_BYTES of a large write can stay in the tail.
        let keep = &buf[buf.len().saturating_sub(TAIL_BYTES)..];
        let excess = (self.tail.len() + keep.len()).saturating_sub(TAIL_BYTES);
        self.tail.drain(..excess);
        self.tail.extend(keep);
        // At a newline, or once a line without one grows long: the guest
        // decides how much it writes, the VMM's memory must not. A large
        // write (the console port takes up to 64 KiB at once) goes out as it
        // is, after what was held back, without being copied.
        if buf.contains(&b'\n') || self.line.len() + buf.len() >= LINE_MAX {
            // A closed stdout (e.g. `vmm run | head`) must not stop the guest.
            let _ = self.sink.write_all(&self.line);
            let _ = self.sink.write_all(buf);
            let _ = self.sink.flush();
            self.line.clear();
        } else {
            self.line.extend_from_slice(buf);
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

/// The UART and its input queue, and the console's write port beside it.
pub struct Com1 {
    uart: Serial<NoIrq, vm_superio::serial::NoEvents, Output>,
    input: Arc<Input>,
    /// The bytes of one `CONSOLE_WRITE` request (reused: at most 64 KiB).
    write_buf: Vec<u8>,
}

/// Host stdin on its way to the guest: bytes read but not yet in the UART's
/// FIFO, and whether the stream has ended.
#[derive(Default)]
struct Input {
    queue: Mutex<VecDeque<u8>>,
    ended: AtomicBool,
    /// Raises the guest's IRQ 4, if the VM has an interrupt controller.
    irq: Mutex<Option<RaiseIrq>>,
}

/// A function that raises the serial interrupt in the guest.
pub type RaiseIrq = Box<dyn Fn() + Send>;

impl Input {
    fn raise(&self) {
        if let Some(f) = self.irq.lock().unwrap().as_ref() {
            f()
        }
    }
}

/// Bytes of stdin queued ahead of the guest at most; the reader thread
/// waits while the guest is this far behind (memory stays bounded).
const INPUT_MAX: usize = 64 << 10;

impl Com1 {
    /// A UART whose input has already ended (nothing is forwarded).
    pub fn new(out: Output) -> Com1 {
        let input = Arc::new(Input::default());
        input.ended.store(true, Ordering::SeqCst);
        Com1 {
            uart: Serial::new(NoIrq, out),
            input,
            write_buf: Vec::new(),
        }
    }

    /// Feed host stdin to the guest — a terminal, a pipe, a file or
    /// /dev/null — until it ends; the guest's `read(0)` then returns 0.
    /// With `seccomp`, the thread first installs its filter: it only ever
    /// reads fd 0 (seccomp.rs).
    pub fn forward_stdin(&mut self, seccomp: bool) -> Result<(), SeccompError> {
        let filter = if seccomp { Some(StdinFilter::compile()?) } else { None };
        let input = Arc::new(Input::default());
        *input.irq.lock().unwrap() = self.input.irq.lock().unwrap().take();
        let feed = input.clone();
        let spawned = std::thread::Builder::new().name("stdin".into()).spawn(move || {
            if let Some(f) = filter {
                if let Err(e) = f.apply() {
                    eprintln!("vmm: {e}\nvmm: guest serial input is off");
                    feed.ended.store(true, Ordering::SeqCst);
                    return;
                }
            }
            let mut buf = [0u8; 4096];
            let mut stdin = std::io::stdin().lock();
            loop {
                while feed.queue.lock().unwrap().len() >= INPUT_MAX {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        feed.queue.lock().unwrap().extend(&buf[..n]);
                        feed.raise();
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // A closed or unreadable stdin ends the input like EOF.
                    Err(_) => break,
                }
            }
            feed.ended.store(true, Ordering::SeqCst);
            feed.raise();
        });
        if spawned.is_ok() {
            self.input = input;
        }
        Ok(())
    }

    /// How to raise the guest's IRQ 4 when input arrives or ends.
    pub fn set_irq(&mut self, raise: RaiseIrq) {
        *self.input.irq.lock().unwrap() = Some(raise);
    }

    /// Stop raising IRQ 4 (the VM is going away; the stdin thread may not).
    pub fn clear_irq(&mut self) {
        self.input.irq.lock().unwrap().take();
    }

    /// Move queued input into the UART's FIFO before the guest reads it.
    fn pump_input(&mut self) {
        let mut q = self.input.queue.lock().unwrap();
        while !q.is_empty() {
            let (a, _) = q.as_slices();
            match self.uart.enqueue_raw_bytes(a) {
                Ok(0) | Err(_) => break,
                Ok(n) => drop(q.drain(..n)),
            }
        }
    }

    /// The guest's end-of-file test (`vmm_abi::ports::CONSOLE_EOF`): stdin
    /// has ended and every byte of it reached the guest.
    pub fn input_ended(&mut self) -> bool {
        // Read `ended` first: bytes queued before it was set are seen below.
        let ended = self.input.ended.load(Ordering::SeqCst);
        self.pump_input();
        ended && self.input.queue.lock().unwrap().is_empty() && self.uart.fifo_capacity() == FIFO_SIZE
    }

    pub fn pio_write(&mut self, port: u16, value: u8) {
        let _ = self.uart.write((port - COM1) as u8, value);
    }

    pub fn pio_read(&mut self, port: u16) -> u8 {
        self.pump_input();
        self.uart.read((port - COM1) as u8)
    }

    /// An `out` to `vmm_abi::ports::CONSOLE_WRITE`: the buffer its
    /// descriptor (at guest-physical `desc`) names joins the same output as
    /// the UART's. False if there was no descriptor there.
    pub fn console_write(&mut self, mem: &vm_memory::GuestMemoryMmap, desc: u64) -> bool {
        let taken = crate::devices::console::handle(mem, desc, &mut self.write_buf);
        if !self.write_buf.is_empty() {
            let _ = self.uart.writer_mut().write_all(&self.write_buf);
        }
        taken
    }

    pub fn output(&mut self) -> &mut Output {
        self.uart.writer_mut()
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
        com.input = Arc::new(Input::default());
        com.input.queue.lock().unwrap().push_back(b'a');
        // LSR bit 0: data ready.
        assert_eq!(com.pio_read(COM1 + 5) & 1, 1);
        assert_eq!(com.pio_read(COM1), b'a');
        assert_eq!(com.pio_read(COM1 + 5) & 1, 0);
    }

    #[test]
    fn a_line_without_newline_is_written_out_at_line_max() {
        let buf = Capture::default();
        let mut out = Output::new(Box::new(buf.clone()));
        out.write_all(&vec![b'x'; LINE_MAX - 1]).unwrap();
        assert!(buf.0.lock().unwrap().is_empty());
        out.write_all(b"x").unwrap();
        assert_eq!(buf.0.lock().unwrap().len(), LINE_MAX);
        // Whatever the guest writes, no more than LINE_MAX is held back.
        for _ in 0..1000 {
            out.write_all(&[b'y'; 100]).unwrap();
            assert!(out.line.len() < LINE_MAX);
        }
    }

    #[test]
    fn a_large_write_goes_out_whole_and_only_its_end_stays_in_the_tail() {
        let buf = Capture::default();
        let mut out = Output::new(Box::new(buf.clone()));
        out.write_all(b"held").unwrap();
        let big: Vec<u8> = (0..65536u32).map(|i| b'a' + (i % 26) as u8).collect();
        out.write_all(&big).unwrap();
        let got = buf.0.lock().unwrap().clone();
        assert_eq!(&got[..4], b"held");
        assert_eq!(&got[4..], &big[..]);
        assert!(out.line.is_empty());
        assert_eq!(out.tail().as_bytes(), &big[big.len() - TAIL_BYTES..]);
        assert_eq!(out.bytes, 4 + 65536);
    }

    #[test]
    fn input_ends_only_after_every_byte_was_read() {
        let mut com = Com1::new(Output::new(Box::new(std::io::sink())));
        assert!(com.input_ended(), "nothing forwarded: end of file at once");
        com.input = Arc::new(Input::default());
        com.input.queue.lock().unwrap().extend(b"ab");
        assert!(!com.input_ended());
        com.input.ended.store(true, Ordering::SeqCst);
        assert!(!com.input_ended(), "two bytes still to read");
        assert_eq!(com.pio_read(COM1), b'a');
        assert!(!com.input_ended());
        assert_eq!(com.pio_read(COM1), b'b');
        assert!(com.input_ended());
    }
}
