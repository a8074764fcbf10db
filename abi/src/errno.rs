//! Error numbers (Linux's `asm-generic/errno-base.h`): system calls return
//! them negated. The kernel, the ring-3 runtime and strace share this list.

pub const EPERM: i64 = 1;
pub const ENOENT: i64 = 2;
pub const ESRCH: i64 = 3;
pub const E2BIG: i64 = 7;
pub const ENOEXEC: i64 = 8;
pub const EBADF: i64 = 9;
pub const ECHILD: i64 = 10;
pub const EAGAIN: i64 = 11;
pub const ENOMEM: i64 = 12;
pub const EFAULT: i64 = 14;
pub const ENODEV: i64 = 19;
pub const EINVAL: i64 = 22;
pub const ENOTTY: i64 = 25;
pub const ENOSYS: i64 = 38;

/// The name and strerror text of the errors this kernel returns.
pub fn describe(e: i64) -> Option<(&'static str, &'static str)> {
    Some(match e {
        EPERM => ("EPERM", "Operation not permitted"),
        ENOENT => ("ENOENT", "No such file or directory"),
        ESRCH => ("ESRCH", "No such process"),
        E2BIG => ("E2BIG", "Argument list too long"),
        ENOEXEC => ("ENOEXEC", "Exec format error"),
        EBADF => ("EBADF", "Bad file descriptor"),
        ECHILD => ("ECHILD", "No child processes"),
        EAGAIN => ("EAGAIN", "Resource temporarily unavailable"),
        ENOMEM => ("ENOMEM", "Cannot allocate memory"),
        EFAULT => ("EFAULT", "Bad address"),
        ENODEV => ("ENODEV", "No such device"),
        EINVAL => ("EINVAL", "Invalid argument"),
        ENOTTY => ("ENOTTY", "Inappropriate ioctl for device"),
        ENOSYS => ("ENOSYS", "Function not implemented"),
        _ => return None,
    })
}

/// Mnemonics for the 32 exception vectors (Intel SDM Vol. 3A, Table 6-1).
pub const EXCEPTION_NAMES: [&str; 32] = [
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#CSO", "#TS", "#NP", "#SS", "#GP", "#PF", "#15",
    "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "#22", "#23", "#24", "#25", "#26", "#27", "#HV", "#VC", "#SX", "#31",
];

/// The mnemonic of an exception vector ("#PF"), or "int N" beyond 31.
pub fn exception_name(vector: u64) -> Option<&'static str> {
    EXCEPTION_NAMES.get(vector as usize).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_linuxs_and_each_has_its_text() {
        for (e, name) in [
            (EPERM, "EPERM"),
            (ENOENT, "ENOENT"),
            (E2BIG, "E2BIG"),
            (ENOEXEC, "ENOEXEC"),
            (EBADF, "EBADF"),
            (ECHILD, "ECHILD"),
            (EAGAIN, "EAGAIN"),
            (ENOMEM, "ENOMEM"),
            (EFAULT, "EFAULT"),
            (ENODEV, "ENODEV"),
            (EINVAL, "EINVAL"),
            (ENOTTY, "ENOTTY"),
            (ENOSYS, "ENOSYS"),
        ] {
            let (n, text) = describe(e).unwrap();
            assert_eq!(n, name);
            assert!(!text.is_empty());
        }
        // asm-generic/errno-base.h and errno.h.
        assert_eq!((EFAULT, EINVAL, ENOTTY, ENOSYS), (14, 22, 25, 38));
        assert_eq!(describe(0), None);
        assert_eq!(describe(-14), None, "negated values are results, not errors");
    }

    #[test]
    fn exception_names_follow_the_sdm() {
        for (v, name) in [
            (0, "#DE"),
            (1, "#DB"),
            (2, "NMI"),
            (3, "#BP"),
            (6, "#UD"),
            (8, "#DF"),
            (9, "#CSO"),
            (13, "#GP"),
            (14, "#PF"),
            (18, "#MC"),
        ] {
            assert_eq!(exception_name(v), Some(name), "vector {v}");
        }
        assert_eq!(exception_name(32), None);
        assert_eq!(exception_name(0x80), None);
    }
}
