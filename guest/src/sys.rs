//! Process identity and lifetime, and the small calls a libc makes at start
//! (Linux: kernel/sys.c, kernel/exit.c, arch/x86/kernel/process_64.c).

use crate::percpu;
use crate::process::{self, current};
use crate::usercopy::{copy_from_user, copy_to_user, get_user_u64, strncpy_from_user, EFAULT};
use crate::{cpu, exec, mm, sched, syscall_table};
use vmm_abi::errno::{E2BIG, EINVAL, ENOENT, ENOEXEC, ENOMEM, ESRCH};
use vmm_abi::layout::phys_to_virt;
use vmm_abi::layout::user::{MAX_ARG_BYTES, MAX_ARG_STRINGS};

pub extern "C" fn sys_getpid(_: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    percpu::pid() as i64
}

pub extern "C" fn sys_gettid(_: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    percpu::pid() as i64
}

pub extern "C" fn sys_getppid(_: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    process::ppid() as i64
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
            // SAFETY: a user address; ring 0 does not use FS.
            unsafe { cpu::wrmsr(cpu::MSR_FS_BASE, addr) };
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
    percpu::pid() as i64
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
/// argv is copied in whole, empty strings included, up to the limits of the
/// boot contract (`MAX_ARG_STRINGS`, `MAX_ARG_BYTES`); beyond them, -E2BIG.
pub extern "C" fn sys_spawn(path: u64, argv: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    let mut name = [0u8; 64];
    let n = match strncpy_from_user(&mut name, path) {
        Ok(n) => n,
        Err(e) => return e,
    };
    // The strings, NUL-terminated, back to back, in one page of our own (a
    // page is MAX_ARG_BYTES; the kernel stack is too small to hold it).
    let Some(page) = mm::alloc_page() else {
        return -ENOMEM;
    };
    // SAFETY: a page of our own, through the direct map, freed below.
    let buf = unsafe { &mut *(phys_to_virt(page) as *mut [u8; MAX_ARG_BYTES]) };
    let r = copy_argv(buf, argv).and_then(|used| {
        let args = exec::Argv::new(&buf[..used]).map_err(|_| -E2BIG)?;
        process::spawn(&name[..n], args, percpu::pid() as u32).map_err(|e| match e {
            exec::ExecError::NotFound => -ENOENT,
            exec::ExecError::Elf(_) => -ENOEXEC,
            exec::ExecError::TooManyArgs => -E2BIG,
            exec::ExecError::NoMemory => -ENOMEM,
        })
    });
    mm::free_page(page);
    match r {
        Ok(pid) => pid as i64,
        Err(e) => e,
    }
}

/// Copy a user argv array (pointers, NULL-terminated) into `buf`; the bytes used.
fn copy_argv(buf: &mut [u8; MAX_ARG_BYTES], argv: u64) -> Result<usize, i64> {
    let mut used = 0;
    if argv == 0 {
        return Ok(0);
    }
    for i in 0..=MAX_ARG_STRINGS as u64 {
        let ptr = get_user_u64(argv.checked_add(8 * i).ok_or(-EFAULT)?)?;
        if ptr == 0 {
            return Ok(used);
        }
        if i == MAX_ARG_STRINGS as u64 || used >= buf.len() {
            return Err(-E2BIG);
        }
        let room = &mut buf[used..];
        let len = strncpy_from_user(room, ptr)?;
        // strncpy_from_user leaves the last byte of the room for the NUL: a
        // string that filled the rest fits only if it ends right there.
        if len + 1 == room.len() {
            let mut next = [0u8; 1];
            copy_from_user(&mut next, ptr + len as u64)?;
            if next[0] != 0 {
                return Err(-E2BIG);
            }
        }
        used += len + 1;
    }
    Err(-E2BIG)
}

/// syscount(nr): how many times system call `nr` has been made, kernel-wide.
/// (Also the README's example of adding a system call.)
pub extern "C" fn sys_syscount(nr: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    syscall_table::count(nr) as i64
}

/// The bytes of the kernel's CPU mask (Linux's `cpumask_size()`: whole
/// longs, one for up to 64 CPUs).
const CPUMASK_BYTES: u32 = 8;

/// sched_getaffinity(pid, len, mask): the CPUs `pid` (0: the caller) may
/// run on — every CPU, for every process (there is no sched_setaffinity).
/// As Linux: `len` is an unsigned int; -EINVAL if it cannot hold a bit per
/// CPU (computed as Linux does, wrapping in 32 bits) or is not a whole
/// number of longs, -ESRCH for no such process,
/// -EFAULT for a mask the process may not write. Returns the bytes written
/// (musl's sysconf(_SC_NPROCESSORS_ONLN) counts their bits).
pub extern "C" fn sys_sched_getaffinity(pid: u64, len: u64, mask: u64, _: u64, _: u64, _: u64) -> i64 {
    let len = len as u32;
    let cpus = crate::smp::cpus() as u32;
    // Linux multiplies in 32 bits: a len of 2^29 or more wraps, and is too small.
    if len.wrapping_mul(8) < cpus || !len.is_multiple_of(8) {
        return -EINVAL;
    }
    let pid = pid as i32;
    if pid < 0 || (pid > 0 && !process::exists(pid as u32)) {
        return -ESRCH;
    }
    let bits: u64 = if cpus >= 64 { u64::MAX } else { (1 << cpus) - 1 };
    let n = len.min(CPUMASK_BYTES) as usize;
    match copy_to_user(mask, &bits.to_le_bytes()[..n]) {
        Ok(()) => n as i64,
        Err(e) => e,
    }
}

/// getcpu(cpu, node, cache): the CPU the caller runs on (it may be on
/// another by the time it looks) and its NUMA node (always 0). Either
/// pointer may be NULL; -EFAULT if one cannot be written. The third
/// argument is unused, as on Linux since 2.6.24.
pub extern "C" fn sys_getcpu(cpu: u64, node: u64, _cache: u64, _: u64, _: u64, _: u64) -> i64 {
    let me = percpu::this_cpu() as u32;
    let mut err = false;
    if cpu != 0 {
        err |= copy_to_user(cpu, &me.to_le_bytes()).is_err();
    }
    if node != 0 {
        err |= copy_to_user(node, &0u32.to_le_bytes()).is_err();
    }
    if err {
        -EFAULT
    } else {
        0
    }
}
