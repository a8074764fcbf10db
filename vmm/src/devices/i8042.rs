//! The PC keyboard controller (i8042) on ports 0x60 (data) and 0x64
//! (status/command), reduced to what a Linux guest uses: the reset line
//! (`out 0x64, 0xfe`, how `reboot=k` and a panic with `panic=-1` restart
//! the machine — the VMM ends the run there), and a controller that answers
//! Linux's probe (self-test, the command byte, a keyboard that ACKs) with
//! its input buffer always empty. The status port matters most: Linux's
//! `kb_wait()` polls it up to 65,536 times for "input buffer empty" before
//! each reset pulse, which cost ~65,000 port exits when it read as 0xff.
//! No keys are ever typed and no IRQ 1 is raised: input goes through the
//! serial console.

use std::collections::VecDeque;

pub const DATA_PORT: u16 = 0x60;
pub const COMMAND_PORT: u16 = 0x64;

/// Status: output buffer full (a byte waits at 0x60).
const STATUS_OBF: u8 = 1 << 0;
/// Status: system flag (set once the self-test passed).
const STATUS_SYS: u8 = 1 << 2;
/// Status: the last write was a command (to 0x64).
const STATUS_CMD: u8 = 1 << 3;

const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_AUX_DISABLE: u8 = 0xa7;
const CMD_AUX_ENABLE: u8 = 0xa8;
const CMD_AUX_TEST: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_KBD_TEST: u8 = 0xab;
const CMD_KBD_DISABLE: u8 = 0xad;
const CMD_KBD_ENABLE: u8 = 0xae;
const CMD_WRITE_AUX_OUT: u8 = 0xd3;
const CMD_WRITE_AUX: u8 = 0xd4;
const CMD_RESET: u8 = 0xfe;

/// Keyboard commands (written to 0x60) with answers beyond the ACK.
const KBD_RESET: u8 = 0xff;
const KBD_GET_ID: u8 = 0xf2;
const KBD_ACK: u8 = 0xfa;

/// What a write asks of the VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    /// The CPU's reset line was pulsed: end the run.
    Reset,
}

/// What the next byte written to 0x60 is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Pending {
    /// A command for the keyboard.
    #[default]
    Keyboard,
    /// The controller's new command byte.
    Ctr,
    /// A byte for the (absent) mouse: dropped.
    Aux,
    /// A byte to hand back as if the mouse had sent it.
    AuxEcho,
}

#[derive(Debug)]
pub struct I8042 {
    /// Bytes waiting at 0x60 (at most a few).
    out: VecDeque<u8>,
    ctr: u8,
    status: u8,
    pending: Pending,
}

impl Default for I8042 {
    fn default() -> Self {
        I8042 {
            out: VecDeque::new(),
            // Keyboard interrupt on, translation on, mouse clock off.
            ctr: 0x61,
            status: STATUS_SYS,
            pending: Pending::Keyboard,
        }
    }
}

impl I8042 {
    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            COMMAND_PORT => self.status | if self.out.is_empty() { 0 } else { STATUS_OBF },
            DATA_PORT => self.out.pop_front().unwrap_or(0),
            _ => 0xff,
        }
    }

    pub fn write(&mut self, port: u16, value: u8) -> Action {
        match port {
            COMMAND_PORT => self.command(value),
            DATA_PORT => {
                self.status &= !STATUS_CMD;
                match std::mem::take(&mut self.pending) {
                    Pending::Ctr => self.ctr = value,
                    Pending::Aux => {}
                    Pending::AuxEcho => self.push(value),
                    Pending::Keyboard => match value {
                        KBD_RESET => self.push_all(&[KBD_ACK, 0xaa]),
                        KBD_GET_ID => self.push_all(&[KBD_ACK, 0xab, 0x83]),
                        _ => self.push(KBD_ACK),
                    },
                }
                Action::None
            }
            _ => Action::None,
        }
    }

    fn command(&mut self, cmd: u8) -> Action {
        self.status |= STATUS_CMD;
        match cmd {
            CMD_READ_CTR => self.push(self.ctr),
            CMD_WRITE_CTR => self.pending = Pending::Ctr,
            CMD_SELF_TEST => {
                self.status |= STATUS_SYS;
                self.push(0x55);
            }
            CMD_KBD_TEST => self.push(0x00),
            // No mouse: its interface test reports the clock line stuck low.
            CMD_AUX_TEST => self.push(0x01),
            CMD_WRITE_AUX => self.pending = Pending::Aux,
            CMD_WRITE_AUX_OUT => self.pending = Pending::AuxEcho,
            CMD_AUX_DISABLE => self.ctr |= 1 << 5,
            CMD_AUX_ENABLE => self.ctr &= !(1 << 5),
            CMD_KBD_DISABLE => self.ctr |= 1 << 4,
            CMD_KBD_ENABLE => self.ctr &= !(1 << 4),
            CMD_RESET => return Action::Reset,
            // Other commands (e.g. 0xf0..0xfd, pulse other output lines) are ignored.
            _ => {}
        }
        Action::None
    }

    fn push(&mut self, b: u8) {
        // A guest that never reads cannot grow the queue.
        if self.out.len() < 16 {
            self.out.push_back(b);
        }
    }

    fn push_all(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|&b| self.push(b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_pulse_ends_the_run_and_the_input_buffer_is_always_empty() {
        let mut k = I8042::default();
        // kb_wait(): bit 1 (input buffer full) must read clear at once.
        assert_eq!(k.read(COMMAND_PORT) & 0x02, 0);
        assert_eq!(k.write(COMMAND_PORT, 0xfe), Action::Reset);
    }

    #[test]
    fn linux_probe_sequence_gets_answers() {
        let mut k = I8042::default();
        assert_eq!(k.write(COMMAND_PORT, CMD_SELF_TEST), Action::None);
        assert_eq!(k.read(COMMAND_PORT) & STATUS_OBF, STATUS_OBF);
        assert_eq!(k.read(DATA_PORT), 0x55);
        assert_eq!(k.read(COMMAND_PORT) & STATUS_OBF, 0);
        k.write(COMMAND_PORT, CMD_READ_CTR);
        assert_eq!(k.read(DATA_PORT), 0x61);
        k.write(COMMAND_PORT, CMD_WRITE_CTR);
        k.write(DATA_PORT, 0x47);
        k.write(COMMAND_PORT, CMD_READ_CTR);
        assert_eq!(k.read(DATA_PORT), 0x47);
        k.write(DATA_PORT, KBD_GET_ID);
        assert_eq!(
            [k.read(DATA_PORT), k.read(DATA_PORT), k.read(DATA_PORT)],
            [0xfa, 0xab, 0x83]
        );
        k.write(COMMAND_PORT, CMD_WRITE_AUX_OUT);
        k.write(DATA_PORT, 0x5a);
        assert_eq!(k.read(DATA_PORT), 0x5a);
    }

    #[test]
    fn the_output_queue_is_bounded() {
        let mut k = I8042::default();
        for _ in 0..1000 {
            k.write(DATA_PORT, KBD_GET_ID);
        }
        assert_eq!(k.out.len(), 16);
    }
}
