//! A fixed line buffer for `print!`: one formatted message is collected and
//! handed to its sink whole (every write is a VM exit for the kernel, a
//! system call for a ring-3 program). The kernel and the ring-3 runtime
//! include this one file, as they do string.rs.

use core::fmt;

/// Bytes collected before the sink is called; a longer message goes out in pieces.
pub const LINE: usize = 256;

pub struct LineBuf {
    buf: [u8; LINE],
    len: usize,
    sink: fn(&[u8]),
}

impl LineBuf {
    pub const fn new(sink: fn(&[u8])) -> LineBuf {
        LineBuf {
            buf: [0; LINE],
            len: 0,
            sink,
        }
    }

    /// Hand what was collected to the sink.
    pub fn flush(&mut self) {
        if self.len > 0 {
            (self.sink)(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut s = s.as_bytes();
        while !s.is_empty() {
            if self.len == LINE {
                self.flush();
            }
            let n = s.len().min(LINE - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
            self.len += n;
            s = &s[n..];
        }
        Ok(())
    }
}
