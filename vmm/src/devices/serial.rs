//! COM1: a 16550 UART from vm-superio. Output goes to stdout, line by line
//! (or in pieces of at most `LINE_MAX` bytes), and the tail is kept for crash
//! reports; host stdin feeds the receive FIFO, and its end is reported on
//! the `CONSOLE_EOF` port. The VMM thread (vstate/event_loop.rs) reads
//! stdin into an [`Input`] queue and, when the VM has a LAPIC, raises IRQ 4
//! (an MSI with `vmm_abi::irq::SERIAL_VECTOR`) each time input arrives or
//! ends, and a guest waiting in read() wakes up; without one it polls LSR.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use vm_superio::{Serial, Trigger};
use vmm_abi::ports::COM1;
use vmm_sys_util::eventfd::EventFd;

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
/// VMM thread (see [`Com1::set_irq`]), when bytes wait in the input queue
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
        if self.line.is_empty() {
            return;
        }
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
/// FIFO, and whether the stream has ended. The VMM thread fills it, the
/// vCPU thread drains it into the FIFO.
#[derive(Default)]
pub struct Input {
    queue: Mutex<VecDeque<u8>>,
    ended: AtomicBool,
    /// Raises the guest's IRQ 4, if the VM has an interrupt controller.
    irq: Mutex<Option<RaiseIrq>>,
    /// The VMM thread stopped reading stdin because the queue was full, and
    /// waits for `room` (the guest's reads make room).
    wants_room: AtomicBool,
    /// Rung by the vCPU thread when the queue is half empty again.
    room: Option<Arc<EventFd>>,
}

/// A function that raises the serial interrupt in the guest.
pub type RaiseIrq = Box<dyn Fn() + Send>;

/// Bytes of stdin queued ahead of the guest at most; the VMM thread stops
/// reading stdin while the guest is this far behind (memory stays bounded).
pub const INPUT_MAX: usize = 64 << 10;

impl Input {
    /// An input the VMM thread feeds; `room` is rung when the guest has made
    /// room after the feeder stopped at [`INPUT_MAX`].
    pub fn fed(room: Arc<EventFd>) -> Input {
        Input {
            room: Some(room),
            ..Default::default()
        }
    }

    pub fn raise(&self) {
        if let Some(f) = self.irq.lock().unwrap().as_ref() {
            f()
        }
    }

    /// Bytes that may still be queued.
    pub fn space(&self) -> usize {
        INPUT_MAX.saturating_sub(self.queue.lock().unwrap().len())
    }

    /// Queue bytes for the guest and tell it (IRQ 4).
    pub fn push(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.queue.lock().unwrap().extend(bytes);
        self.raise();
    }

    /// The stream has ended: once the queue is drained, the guest's read(0)
    /// returns 0.
    pub fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
        self.raise();
    }

    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// The feeder found the queue full: ask to be told when there is room.
    /// False if there is room already (the guest drained the queue between
    /// the feeder's look and this call): read on.
    pub fn wait_for_room(&self) -> bool {
        self.wants_room.store(true, Ordering::SeqCst);
        if self.space() > 0 && self.wants_room.swap(false, Ordering::SeqCst) {
            return false;
        }
        true
    }

    /// After the vCPU thread took bytes: ring the feeder if it waits for
    /// room and half of the queue is free (not at every byte: one wake-up
    /// per 32 KiB).
    fn made_room(&self, queued: usize) {
        if queued <= INPUT_MAX / 2
            && self.wants_room.load(Ordering::SeqCst)
            && self.wants_room.swap(false, Ordering::SeqCst)
        {
            if let Some(r) = &self.room {
                let _ = r.write(1);
            }
        }
    }
}

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

    /// Replace the (ended) input with `input`, which the VMM thread feeds
    /// from host stdin — a terminal, a pipe, a file or /dev/null — until it
    /// ends; the guest's `read(0)` then returns 0. Keeps the IRQ set before.
    pub fn feed_from(&mut self, input: Arc<Input>) {
        *input.irq.lock().unwrap() = self.input.irq.lock().unwrap().take();
        self.input = input;
    }

    /// How to raise the guest's IRQ 4 when input arrives or ends.
    pub fn set_irq(&mut self, raise: RaiseIrq) {
        *self.input.irq.lock().unwrap() = Some(raise);
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
        let queued = q.len();
        drop(q);
        self.input.made_room(queued);
    }

    /// The guest's end-of-file test (`vmm_abi::ports::CONSOLE_EOF`): stdin
    /// has ended and every byte of it reached the guest.
    pub fn input_ended(&mut self) -> bool {
        // Read `ended` first: bytes queued before it was set are seen below.
        let ended = self.input.ended.load(Ordering::SeqCst);
        self.pump_input();
        let ended = ended && self.input.queue.lock().unwrap().is_empty() && self.uart.fifo_capacity() == FIFO_SIZE;
        if !ended {
            // The guest asks because it found no input and is about to wait
            // for some: what it printed so far (a prompt without a newline)
            // must be on the screen first, as C's stdio flushes stdout before
            // reading stdin. No timer needed.
            self.output().write_out();
        }
        ended
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
