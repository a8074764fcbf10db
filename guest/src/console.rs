//! The console: file descriptors 0, 1 and 2. Input comes from the serial
//! port (COM1); output goes to the VMM's console write port (serial.rs),
//! which takes a process's buffer where it lies: no copy in ring 0.

use crate::io::inb;
use crate::sync::{CpuLocal, SpinLock};
use crate::usercopy::{access_ok, copy_from_user_partial, copy_to_user, get_user_u64, EFAULT};
use core::cell::RefCell;
use vmm_abi::errno::{EBADF, EINVAL, ENOENT, ENOTTY};
use vmm_abi::layout::MAX_CPUS;
use vmm_abi::ports::{COM1, CONSOLE_EOF};

/// Line status register: bit 0 = a received byte is waiting.
const LSR: u16 = COM1 + 5;

/// The bounce buffer for writes, one per CPU: a write does not block, so
/// no other system call runs on this CPU while one uses it. It spares
/// zeroing a stack buffer on every call (an emulated `rep stosb` on PVM).
static BOUNCE: CpuLocal<RefCell<[u8; 4096]>> = CpuLocal::new([const { RefCell::new([0; 4096]) }; MAX_CPUS]);

/// The UART's receive side: one reader at a time checks LSR and takes the
/// byte. Taken before the process table's lock, never after.
static UART_IN: SpinLock<()> = SpinLock::new(());

/// Copy `len` user bytes at `buf` into the kernel, a bounce-buffer chunk at
/// a time, and hand each chunk to `sink`. Returns the bytes taken: up to a
/// fault, to the byte (the copy's fixup says how many it did not copy), as
/// Linux's write() returns what it wrote before the fault; -EFAULT if that
/// is none.
fn write_from_user(buf: u64, len: u64, mut sink: impl FnMut(&[u8])) -> i64 {
    if !access_ok(buf, len) {
        return -EFAULT;
    }
    let mut chunk = BOUNCE.get().borrow_mut();
    let mut done = 0;
    while done < len {
        let n = (len - done).min(chunk.len() as u64) as usize;
        let copied = copy_from_user_partial(&mut chunk[..n], buf + done).unwrap_or(0);
        sink(&chunk[..copied]);
        done += copied as u64;
        if copied < n {
            return if done > 0 { done as i64 } else { -EFAULT };
        }
    }
    len as i64
}

/// To the console: the VMM reads the buffer through this process's page
/// tables, with ring 3's rights (present, user-accessible pages), after the
/// same range check as copy_from_user. As Linux's write() to a regular
/// file, a buffer that runs into a page the process may not read gives the
/// bytes before it, or -EFAULT if there are none (a Linux pipe or terminal
/// answers -EFAULT for any chunk that faults).
fn write_user(buf: u64, len: u64) -> i64 {
    if !access_ok(buf, len) {
        return -EFAULT;
    }
    match crate::serial::console_write(buf, len, crate::cpu::read_cr3()) {
        (0, true) => -EFAULT,
        (done, _) => done as i64,
    }
}

pub extern "C" fn sys_write(fd: u64, buf: u64, len: u64, _: u64, _: u64, _: u64) -> i64 {
    match fd {
        1 | 2 => write_user(buf, len),
        DEV_NULL_FD => write_null(buf, len),
        _ => -EBADF,
    }
}

/// The one file besides the console: /dev/null, always at this descriptor.
/// Its writes still copy the data in (copy_from_user; Linux's /dev/null
/// reads nothing), so writing to it measures the copy without the console.
pub const DEV_NULL_FD: u64 = 3;

/// To /dev/null: copied in, then dropped.
fn write_null(buf: u64, len: u64) -> i64 {
    write_from_user(buf, len, |_| {})
}

pub extern "C" fn sys_open(path: u64, _flags: u64, _mode: u64, _: u64, _: u64, _: u64) -> i64 {
    let mut name = [0u8; 16];
    match crate::usercopy::strncpy_from_user(&mut name, path) {
        Ok(9) if &name[..9] == b"/dev/null" => DEV_NULL_FD as i64,
        Ok(_) => -ENOENT,
        Err(e) => e,
    }
}

pub extern "C" fn sys_openat(_dirfd: u64, path: u64, flags: u64, mode: u64, _: u64, _: u64) -> i64 {
    sys_open(path, flags, mode, 0, 0, 0)
}

/// Descriptors 0..=3 always stay open.
pub extern "C" fn sys_close(fd: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    if fd <= DEV_NULL_FD {
        0
    } else {
        -EBADF
    }
}

pub extern "C" fn sys_writev(fd: u64, iov: u64, iovcnt: u64, _: u64, _: u64, _: u64) -> i64 {
    if fd != 1 && fd != 2 {
        return -EBADF;
    }
    if iovcnt > 1024 {
        return -EINVAL;
    }
    let mut total = 0;
    for i in 0..iovcnt {
        let (base, len) = match (get_user_u64(iov + 16 * i), get_user_u64(iov + 16 * i + 8)) {
            (Ok(b), Ok(l)) => (b, l),
            _ => return -EFAULT,
        };
        let n = write_user(base, len);
        if n < 0 {
            return if total > 0 { total } else { n };
        }
        total += n;
        // A short write (a hole in this buffer) ends the call, as Linux's
        // writev to a regular file does:
        // later buffers must not appear after the gap.
        if (n as u64) < len {
            break;
        }
    }
    total
}

/// Read from the serial port: waits for the first byte, then takes what is
/// already there. Returns 0 at end of file: once the VMM says the host's
/// stdin has ended and every byte before it was read (a terminal's ^D).
/// With a LAPIC the wait sleeps until the VMM raises IRQ 4 (input arrived
/// or ended); without one it polls the line status register.
pub extern "C" fn sys_read(fd: u64, buf: u64, len: u64, _: u64, _: u64, _: u64) -> i64 {
    if fd != 0 {
        return -EBADF;
    }
    if !access_ok(buf, len) {
        return -EFAULT;
    }
    let mut got = 0u64;
    let mut b = [0u8; 1];
    while got < len {
        let uart = UART_IN.lock();
        // SAFETY: reading the UART's status and data registers.
        let ready = unsafe { inb(LSR) } & 1 != 0;
        if !ready {
            // SAFETY: the VMM answers reads of its end-of-file port.
            if got > 0 || unsafe { inb(CONSOLE_EOF) } == 1 {
                break;
            }
            if crate::lapic::present() {
                // The table's lock is taken before the UART's is let go:
                // IRQ 4 wakes readers under the table's lock, so one raised
                // since the LSR read (on any CPU) finds us ConsoleWait.
                let mut t = crate::process::TABLE.lock();
                t.procs[crate::process::current_slot()].state = crate::process::State::ConsoleWait;
                drop(uart);
                crate::sched::sched(t);
            } else {
                drop(uart);
                core::hint::spin_loop();
            }
            continue;
        }
        // SAFETY: the UART's data register; LSR said a byte is waiting.
        b[0] = unsafe { inb(COM1) };
        drop(uart);
        if let Err(e) = copy_to_user(buf + got, &b) {
            return if got > 0 { got as i64 } else { e };
        }
        got += 1;
        if b[0] == b'\n' {
            break;
        }
    }
    got as i64
}

/// The serial port is not a terminal: every request on the console,
/// TIOCGWINSZ included (a libc's isatty), says ENOTTY, and musl then buffers
/// stdout fully, as for a pipe.
pub extern "C" fn sys_ioctl(fd: u64, _cmd: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    if fd <= 2 {
        -ENOTTY
    } else {
        -EBADF
    }
}
