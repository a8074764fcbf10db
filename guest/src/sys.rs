//! Process identity and lifetime, and the small calls a libc makes at start
//! (Linux: kernel/sys.c, kernel/exit.c, arch/x86/kernel/process_64.c).

use crate::percpu::percpu;
use crate::process::{self, current};
use crate::usercopy::{copy_to_user, get_user_u64, strncpy_from_user, EFAULT};
use crate::{cpu, sched, syscall_table};

const EINVAL: i64 = 22;
const ENOENT: i64 = 2;
const ENOEXEC: i64 = 8;
const ENOMEM: i64 = 12;
const E2BIG: i64 = 7;

pub extern "C" fn sys_getpid(_: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    percpu().pid as i64
}

pub extern "C" fn sys_gettid(_: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    percpu().pid as i64
}

pub extern "C" fn sys_getppid(_: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    current().ppid as i64
}

pub extern "C" fn sys_getuid(_: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    0
}

pub extern "C" fn sys_sched_yield(_: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    sched::yield_now();
    0
}

pub extern "C" fn sys_exit(code: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    process::exit_current(process::exited(code as i32))
}

pub extern "C" fn sys_wait4(pid: u64, status: u64, options: u64, _rusage: u64, _: u64, _: u64) -> i64 {
    match process::wait(pid as i64, options) {
        Ok((0, _)) => 0,
        Ok((child, st)) => {
            if status != 0 {
                if let Err(e) = copy_to_user(status, &st.to_le_bytes()) {
                    return e;
                }
            }
            child as i64
        }
        Err(e) => -e,
    }
}

pub extern "C" fn sys_uname(buf: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    // struct utsname: six fields of 65 bytes.
    let mut u = [0u8; 6 * 65];
    let fields: [&[u8]; 6] = [
        b"Linux",
        b"vmm-guest",
        b"0.1.0-vmm",
        b"#1 vmm teaching kernel",
        b"x86_64",
        b"(none)",
    ];
    for (i, f) in fields.iter().enumerate() {
        u[i * 65..i * 65 + f.len()].copy_from_slice(f);
    }
    match copy_to_user(buf, &u) {
        Ok(()) => 0,
        Err(e) => e,
    }
}

const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;

pub extern "C" fn sys_arch_prctl(code: u64, addr: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    match code {
        ARCH_SET_FS => {
            if addr >= crate::usercopy::TASK_SIZE_MAX {
                return -EFAULT;
            }
            current().fs_base = addr;
            cpu::wrmsr(cpu::MSR_FS_BASE, addr);
            0
        }
        ARCH_GET_FS => match copy_to_user(addr, &current().fs_base.to_le_bytes()) {
            Ok(()) => 0,
            Err(e) => e,
        },
        _ => -EINVAL,
    }
}

/// One thread per process: nothing to clear at exit, so just the TID.
pub extern "C" fn sys_set_tid_address(_: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    percpu().pid as i64
}

/// No signals are ever delivered; handlers and masks are accepted and ignored.
pub extern "C" fn sys_rt_sigaction(_: u64, _: u64, old: u64, _: u64, _: u64, _: u64) -> i64 {
    if old != 0 && copy_to_user(old, &[0u8; 32]).is_err() {
        return -EFAULT;
    }
    0
}

pub extern "C" fn sys_rt_sigprocmask(_: u64, _: u64, old: u64, _: u64, _: u64, _: u64) -> i64 {
    if old != 0 && copy_to_user(old, &[0u8; 8]).is_err() {
        return -EFAULT;
    }
    0
}

/// spawn(path, argv): this kernel's own process creation — no fork, no exec,
/// just "run this program from the boot archive as my child". Returns the pid.
pub extern "C" fn sys_spawn(path: u64, argv: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    let mut name = [0u8; 64];
    let n = match strncpy_from_user(&mut name, path) {
        Ok(n) => n,
        Err(e) => return e,
    };
    // Arguments: copied into one kernel buffer, NUL-separated.
    let mut buf = [0u8; 1024];
    let mut spans = [(0usize, 0usize); 32];
    let (mut used, mut argc) = (0, 0);
    if argv != 0 {
        loop {
            let ptr = match get_user_u64(argv + 8 * argc as u64) {
                Ok(p) => p,
                Err(e) => return e,
            };
            if ptr == 0 {
                break;
            }
            if argc == spans.len() || used >= buf.len() {
                return -E2BIG;
            }
            let len = match strncpy_from_user(&mut buf[used..], ptr) {
                Ok(l) => l,
                Err(e) => return e,
            };
            spans[argc] = (used, len);
            used += len + 1;
            argc += 1;
        }
    }
    let mut args: [&[u8]; 32] = [&[]; 32];
    for (i, &(s, l)) in spans[..argc].iter().enumerate() {
        args[i] = &buf[s..s + l];
    }
    let ppid = current().pid;
    match process::spawn(&name[..n], &args[..argc], ppid) {
        Ok(pid) => pid as i64,
        Err(crate::exec::ExecError::NotFound) => -ENOENT,
        Err(crate::exec::ExecError::Elf(_)) => -ENOEXEC,
        Err(crate::exec::ExecError::TooManyArgs) => -E2BIG,
        Err(crate::exec::ExecError::NoMemory) => -ENOMEM,
    }
}

/// syscount(nr): how many times system call `nr` has been made, kernel-wide.
/// (Also the README's example of adding a system call.)
pub extern "C" fn sys_syscount(nr: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    syscall_table::count(nr) as i64
}
