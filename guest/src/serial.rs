//! Console output. Whatever the kernel and its processes write goes to the
//! VMM's console write port (`vmm_abi::ports::CONSOLE_WRITE`): one `out`
//! hands over a whole buffer, where the 16550 (COM1) takes one `out` — one
//! VM exit, ~8 µs on PVM — per byte. COM1 stays for input (console.rs).
//!
//! A process's buffer is handed over where it lies, by its user address and
//! the process's CR3: the VMM reads it through the page tables with ring 3's
//! rights, so the kernel copies nothing (on PVM ring 0 is emulated, and a
//! copy costs ~1.1 µs a byte). Kernel messages are formatted into a line
//! buffer and handed over by physical address: one exit per `print!`.

use crate::io::{outb, outl};
use crate::linebuf::LineBuf;
use crate::sync::CpuLocal;
use core::cell::{RefCell, UnsafeCell};
use core::fmt;
use vmm_abi::layout::MAX_CPUS;
use vmm_abi::layout::{DIRECT_MAP_BASE, KERNEL_BASE};
use vmm_abi::ports::{ConsoleWrite, COM1, CONSOLE_WRITE, CONSOLE_WRITE_MAX, CONSOLE_WRITE_OK, CONSOLE_WRITE_PENDING};

/// One CPU's request, which the VMM reads and answers during the exit.
pub struct Request(UnsafeCell<ConsoleWrite>);

/// The request the VMM reads: one per CPU, so CPUs write to the console at
/// the same time without a lock (the VMM serialises the output). In the
/// kernel image, so its physical address is below 4 GiB, as the port's 32
/// bits require.
static REQUEST: CpuLocal<Request> = CpuLocal::new(
    [const {
        Request(UnsafeCell::new(ConsoleWrite {
            addr: 0,
            len: 0,
            cr3: 0,
            done: 0,
            status: 0,
        }))
    }; MAX_CPUS],
);

/// Hand `[addr, addr + len)` to the VMM: a user address in the address
/// space whose PML4 is at `cr3`, or a physical address when `cr3` is 0.
/// Returns the bytes taken and whether the VMM stopped at a byte it could
/// not read (the caller's -EFAULT or short count). The caller checks that
/// `addr + len` does not wrap (`access_ok`). Never inlined: a function of
/// its own in `vmm trace --funcgraph` and `bt`.
#[inline(never)]
pub fn console_write(addr: u64, len: u64, cr3: u64) -> (u64, bool) {
    let req = REQUEST.get().0.get();
    let phys = req as u64 - KERNEL_BASE;
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CONSOLE_WRITE_MAX);
        // SAFETY: this CPU's request, and no interrupt handler prints while
        // the kernel runs (interrupts are off): nothing else uses it between
        // these accesses. Volatile, and the `out` is not `nomem`: the VMM
        // reads and writes it during the exit.
        let r = unsafe {
            req.write_volatile(ConsoleWrite {
                addr: addr + done,
                len: n,
                cr3,
                done: 0,
                status: CONSOLE_WRITE_PENDING,
            });
            outl(CONSOLE_WRITE, phys as u32);
            req.read_volatile()
        };
        let took = r.done.min(n);
        done += took;
        if r.status != CONSOLE_WRITE_OK || took == 0 {
            return (done, true);
        }
    }
    (done, false)
}

/// Kernel bytes, at any kernel address: the image's map or the direct map.
pub fn write_bytes(bytes: &[u8]) {
    let va = bytes.as_ptr() as u64;
    let phys = if va >= KERNEL_BASE {
        va - KERNEL_BASE
    } else if va >= DIRECT_MAP_BASE {
        va - DIRECT_MAP_BASE
    } else {
        // Not a kernel address (never expected): the UART, a byte at a time.
        for &b in bytes {
            // SAFETY: writing the UART's transmit register.
            unsafe { outb(COM1, b) };
        }
        return;
    };
    console_write(phys, bytes.len() as u64, 0);
}

/// One `print!` is formatted here and handed over whole, one buffer per
/// CPU. Borrowed while a `print!` fills it: a print from inside it (a fault
/// while formatting) finds it borrowed and writes directly instead.
static LINE_BUF: CpuLocal<RefCell<LineBuf>> =
    CpuLocal::new([const { RefCell::new(LineBuf::new(write_bytes)) }; MAX_CPUS]);

/// Writes each piece as it comes: one exit per piece.
struct Direct;

impl fmt::Write for Direct {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    if let Some(s) = args.as_str() {
        write_bytes(s.as_bytes());
        return;
    }
    match LINE_BUF.get().try_borrow_mut() {
        Ok(mut line) => {
            let _ = fmt::Write::write_fmt(&mut *line, args);
            line.flush();
        }
        Err(_) => {
            let _ = fmt::Write::write_fmt(&mut Direct, args);
        }
    }
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::serial::_print(format_args!($($arg)*)));
}

#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ($crate::print!("{}\n", format_args!($($arg)*)));
}
