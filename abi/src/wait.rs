//! Wait statuses (Linux's encoding, see wait(2)) and how vmm's exit status
//! follows the init process's: the kernel encodes, wait4 hands the status to
//! ring 3, and `vmm` exits with what init's status says — the convention a
//! shell uses, 128 + signal for a killed program.

/// Exited with `code`: the code in bits 8..16.
pub const fn exited(code: i32) -> i32 {
    (code & 0xff) << 8
}

/// Killed by `signal`: the signal in bits 0..7.
pub const fn killed(signal: i32) -> i32 {
    signal & 0x7f
}

/// The exit status `vmm` ends with when init ends with wait status `status`:
/// its exit code, or 128 + the signal that killed it.
pub const fn vm_status(status: i32) -> u8 {
    if status & 0x7f != 0 {
        128 + (status & 0x7f) as u8
    } else {
        ((status >> 8) & 0xff) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_encode_as_linux_and_map_as_a_shell() {
        assert_eq!(exited(0), 0);
        assert_eq!(exited(42), 42 << 8);
        assert_eq!(exited(0x1ff), 0xff << 8, "only the low byte of the code counts");
        assert_eq!(killed(11), 11);
        assert_eq!(vm_status(exited(3)), 3);
        assert_eq!(vm_status(killed(11)), 139);
        assert_eq!(vm_status(killed(5)), 133);
    }

    #[test]
    fn every_code_and_signal_comes_back() {
        for code in 0..=255 {
            let st = exited(code);
            assert_eq!(st & 0x7f, 0, "WIFEXITED({code})");
            assert_eq!(vm_status(st), code as u8);
        }
        for sig in 1..=127 {
            assert_ne!(killed(sig) & 0x7f, 0, "WIFSIGNALED({sig})");
            assert_eq!(u32::from(vm_status(killed(sig))), 128 + sig as u32 % 128);
        }
    }
}
