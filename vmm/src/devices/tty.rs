//! The host terminal when stdin is one: raw mode while the guest runs, and
//! the line discipline the guest kernel does not have.
//!
//! A Linux guest has a tty layer (`drivers/tty/n_tty.c`) that echoes what is
//! typed, edits the line (erase, kill), turns ^D into end of file and ^C into
//! SIGINT; QEMU, Firecracker and Cloud Hypervisor put the host terminal in
//! raw mode and leave all that to the guest. This guest kernel has no tty
//! layer: its console is a serial line. So vmm, which takes the terminal in
//! raw mode (no echo, no line editing, no signals from keys:
//! vmm-sys-util's `Terminal::set_raw_mode`), plays n_tty's canonical mode
//! itself on the host side of the line ([`LineDiscipline`]): it echoes,
//! edits, sends a line when Enter is pressed, ends the input at ^D, and
//! stops vmm at ^C (README, "The VMM's threads and event loop").
//!
//! The terminal's settings are restored on every way out: when the VMM
//! thread ends, in a panic hook, in the SIGSYS handler (seccomp/sigsys.rs) — a
//! terminal left in raw mode would not echo the shell's next command.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use vmm_sys_util::terminal::Terminal;

/// The terminal's settings before raw mode, for [`restore`].
static SAVED: OnceLock<libc::termios> = OnceLock::new();
/// Raw mode is on (so [`restore`] has something to do).
static RAW: AtomicBool = AtomicBool::new(false);

/// Stdin, for vmm-sys-util's `Terminal` (fd 0 stays open for the whole run).
struct Stdin;

// SAFETY: fd 0 is a valid descriptor for the life of the process (Rust's
// runtime opens /dev/null there if it was closed at start).
unsafe impl Terminal for Stdin {
    fn tty_fd(&self) -> RawFd {
        0
    }
}

/// The special characters of the terminal's own settings (`stty -a`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys {
    pub intr: u8,
    pub eof: u8,
    pub erase: u8,
    pub kill: u8,
}

impl Default for Keys {
    /// Linux's defaults: ^C, ^D, DEL, ^U.
    fn default() -> Keys {
        Keys {
            intr: 0x03,
            eof: 0x04,
            erase: 0x7f,
            kill: 0x15,
        }
    }
}

/// Put the terminal on stdin in raw mode; its keys (^C, ^D, erase, kill)
/// as configured. Call before any seccomp filter (tcgetattr is an ioctl the
/// filters do not allow).
pub fn enter_raw_mode() -> std::io::Result<Keys> {
    // SAFETY: termios is plain data; tcgetattr fills it or fails.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd and a pointer to a termios we own.
    if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let keys = Keys {
        intr: t.c_cc[libc::VINTR],
        eof: t.c_cc[libc::VEOF],
        erase: t.c_cc[libc::VERASE],
        kill: t.c_cc[libc::VKILL],
    };
    let _ = SAVED.set(t);
    install_panic_hook();
    Stdin
        .set_raw_mode()
        .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))?;
    RAW.store(true, Ordering::SeqCst);
    Ok(keys)
}

/// vmm is in the terminal's foreground process group. A background job
/// (`vmm run ... &`) must not change the terminal's settings: tcsetattr
/// would stop it with SIGTTOU (and reading stops it with SIGTTIN, as job
/// control intends).
pub fn in_foreground() -> bool {
    // SAFETY: plain queries on fd 0 and this process.
    unsafe { libc::tcgetpgrp(0) == libc::getpgrp() }
}

/// Give the terminal back its settings from before raw mode. Idempotent, and
/// async-signal-safe (the SIGSYS handler calls it): one tcsetattr, an ioctl
/// every seccomp filter of vmm allows on fd 0.
pub fn restore() {
    if RAW.swap(false, Ordering::SeqCst) {
        if let Some(t) = SAVED.get() {
            // SAFETY: a valid fd and the termios tcgetattr gave us.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, t) };
        }
    }
}

/// A panic anywhere restores the terminal before the message is printed.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info)
        }));
    });
}

/// What one key does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effect {
    /// To show on the terminal (the echo).
    pub echo: Vec<u8>,
    /// A finished line (or, after ^D, a partial one) for the guest.
    pub send: Vec<u8>,
    /// ^D at the start of a line: the input ends.
    pub eof: bool,
    /// ^C: the user wants vmm stopped.
    pub interrupt: bool,
}

/// n_tty's canonical mode, the part a console needs: echo, erase, kill,
/// Enter sends the line, ^D ends the input (or sends a partial line), ^C
/// interrupts. Pure: the VMM thread does the reading and writing.
#[derive(Debug, Default)]
pub struct LineDiscipline {
    keys: Keys,
    line: Vec<u8>,
}

/// Longest line held back, as n_tty's 4095: further keys are dropped until
/// Enter, so typing cannot grow vmm's memory.
pub const MAX_LINE: usize = 4095;

impl LineDiscipline {
    pub fn new(keys: Keys) -> LineDiscipline {
        LineDiscipline { keys, line: Vec::new() }
    }

    /// Feed the bytes one read() returned.
    pub fn keys(&mut self, bytes: &[u8]) -> Effect {
        let mut fx = Effect::default();
        for &b in bytes {
            if fx.eof || fx.interrupt {
                break;
            }
            self.key(b, &mut fx);
        }
        fx
    }

    fn key(&mut self, b: u8, fx: &mut Effect) {
        let k = self.keys;
        match b {
            _ if b == k.intr => {
                // As n_tty with ECHOCTL: "^C", and the line is thrown away.
                fx.echo.extend_from_slice(b"^C\n");
                self.line.clear();
                fx.interrupt = true;
            }
            _ if b == k.eof => {
                if self.line.is_empty() {
                    fx.eof = true;
                } else {
                    fx.send.append(&mut self.line);
                }
            }
            _ if b == k.erase || b == 0x08 => {
                // One character: a UTF-8 sequence's continuation bytes go too.
                while let Some(c) = self.line.pop() {
                    if c & 0xc0 != 0x80 {
                        fx.echo
                            .extend_from_slice(if c < 0x20 { b"\x08\x08  \x08\x08" } else { b"\x08 \x08" });
                        break;
                    }
                }
            }
            _ if b == k.kill => {
                for &c in self.line.iter().filter(|&&c| c & 0xc0 != 0x80) {
                    fx.echo
                        .extend_from_slice(if c < 0x20 { b"\x08\x08  \x08\x08" } else { b"\x08 \x08" });
                }
                self.line.clear();
            }
            // The terminal's ICRNL (left on) already turns Enter's CR into NL.
            b'\n' | b'\r' => {
                self.line.push(b'\n');
                fx.send.append(&mut self.line);
                fx.echo.push(b'\n');
            }
            _ if self.line.len() >= MAX_LINE => {}
            _ => {
                self.line.push(b);
                if b < 0x20 && b != b'\t' {
                    // Control characters as ^X, as ECHOCTL shows them.
                    fx.echo.extend_from_slice(&[b'^', b + 0x40]);
                } else {
                    fx.echo.push(b);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld() -> LineDiscipline {
        LineDiscipline::new(Keys::default())
    }

    #[test]
    fn a_line_is_echoed_and_sent_at_enter() {
        let mut l = ld();
        let fx = l.keys(b"ab");
        assert_eq!((fx.echo.as_slice(), fx.send.as_slice()), (&b"ab"[..], &b""[..]));
        let fx = l.keys(b"c\r");
        assert_eq!(fx.send, b"abc\n");
        assert_eq!(fx.echo, b"c\n");
    }

    #[test]
    fn erase_and_kill_edit_the_line_before_the_guest_sees_it() {
        let mut l = ld();
        let fx = l.keys(b"abx\x7fc\n");
        assert_eq!(fx.send, b"abc\n");
        assert_eq!(fx.echo, b"abx\x08 \x08c\n");
        let fx = l.keys("héllo\x15ok\n".as_bytes());
        assert_eq!(fx.send, b"ok\n");
        // Five characters erased, though é is two bytes.
        assert_eq!(fx.echo.windows(3).filter(|w| w == b"\x08 \x08").count(), 5);
        // Erase on an empty line does nothing.
        assert_eq!(l.keys(b"\x7f"), Effect::default());
    }

    #[test]
    fn ctrl_d_ends_the_input_at_a_line_start_else_sends_the_partial_line() {
        let mut l = ld();
        let fx = l.keys(b"ab\x04");
        assert_eq!(fx.send, b"ab");
        assert!(!fx.eof);
        let fx = l.keys(b"\x04rest");
        assert!(fx.eof);
        assert!(fx.send.is_empty(), "nothing after the end of input is taken");
    }

    #[test]
    fn ctrl_c_interrupts_and_drops_the_line() {
        let mut l = ld();
        let fx = l.keys(b"abc\x03def\n");
        assert!(fx.interrupt);
        assert!(fx.send.is_empty());
        assert_eq!(fx.echo, b"abc^C\n");
    }

    #[test]
    fn the_terminals_own_keys_are_used() {
        let mut l = LineDiscipline::new(Keys {
            intr: b'q',
            eof: b'z',
            erase: b'#',
            kill: b'@',
        });
        assert_eq!(l.keys(b"ab#c\n").send, b"ac\n");
        assert!(l.keys(b"z").eof);
        assert!(ld().keys(b"\x03").interrupt && l.keys(b"q").interrupt);
    }

    #[test]
    fn a_line_stops_growing_at_max_line() {
        let mut l = ld();
        l.keys(&vec![b'x'; MAX_LINE + 100]);
        assert_eq!(l.keys(b"\n").send.len(), MAX_LINE + 1);
    }

    #[test]
    fn control_characters_echo_as_caret_letters_and_erase_both_columns() {
        let mut l = ld();
        let fx = l.keys(b"\x01\x7f\n");
        assert_eq!(fx.echo, b"^A\x08\x08  \x08\x08\n");
        assert_eq!(fx.send, b"\n");
    }
}
