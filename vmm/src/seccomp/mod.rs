//! Seccomp: once the VM is built, every VMM thread runs under an allow-list
//! of the system calls it needs, so that a guest that finds a bug in the
//! VMM's exit handling (the port I/O and UART emulation, the tracers'
//! guest-memory walks) cannot make the VMM open files, sockets or programs.
//!
//! The filters are compiled with `seccompiler` (as Firecracker and Cloud
//! Hypervisor do) and installed per thread:
//!
//! - the **vCPU threads**: the main thread (vCPU 0: KVM_RUN, exit handling,
//!   and the debugger's prompt or the GDB stub, which run on it) installs
//!   [`VcpuFilter`] for its [`Profile`] right before its first KVM_RUN
//!   (`Vm::lock_down`). It arms the `--timeout` timer and kicks other vCPUs.
//!   With `--cpus N` it starts the other vCPUs' threads for each run, after
//!   the filter is in place: they inherit it (vstate/vcpu.rs).
//! - the **VMM thread** (vstate/event_loop.rs: stdin, `--timeout`, signals,
//!   gdb's interrupt), installs [`LoopFilter`] itself, first thing (a SIGSYS
//!   handler is in place by then: `Vm::new`): epoll, reads of its own fds
//!   only, the one KVM request that raises IRQ 4, and the kick.
//!
//! A call off the list raises SIGSYS (`SECCOMP_RET_TRAP`); the handler
//! (sigsys.rs) prints which system call it was and how to debug it
//! (`--no-seccomp`), and ends vmm with
//! [`status::SECCOMP_VIOLATION`](crate::status::SECCOMP_VIOLATION). The
//! allow-lists are in filters.rs. `vmm bench` does not use
//! seccomp: it times host system calls in-process (a filter would add its own
//! cost to every host row) and boots two VMs one after the other.
//!
//! `VMM_SECCOMP_SELFTEST=vcpu` (or `loop`) makes that thread call
//! `socket(2)` once its filter is in place: the tests' proof that a
//! forbidden call stops vmm with the message.

/// Why seccomp could not be set up. vmm then stops: it never runs a guest
/// unfiltered unless `--no-seccomp` asked for that.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("cannot build the seccomp filter of the {thread} thread: {source}")]
    Compile {
        thread: &'static str,
        source: seccompiler::BackendError,
    },
    #[error("cannot install the SIGSYS handler for seccomp: {0}")]
    Handler(std::io::Error),
    #[error(
        "cannot install the seccomp filter of the {thread} thread: {source}\n  \
         this kernel may lack CONFIG_SECCOMP_FILTER; --no-seccomp runs without the filter"
    )]
    Install {
        thread: &'static str,
        source: seccompiler::Error,
    },
}

type Result<T> = std::result::Result<T, SeccompError>;

mod filters;
mod sigsys;

pub use filters::{LoopFilter, VcpuFilter};
pub use sigsys::install_sigsys_handler;

/// What the vCPU thread does besides running the guest, which decides its
/// allow-list. Each extra system call lengthens the filter, and the
/// kernel's cost of installing it grows with its length (README, "Seccomp").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `vmm run` and `vmm trace`: the run loop, reports and the tracers
    /// (--strace, --break-at, --funcgraph).
    Run,
    /// Also a prompt or a remote debugger: `vmm debug` (rustyline) and
    /// `vmm run --gdb` (gdbstub on a TCP connection).
    Interactive,
}

/// The test hook: with `VMM_SECCOMP_SELFTEST=<thread>`, that thread makes a
/// call no filter allows, once its filter is in place.
pub(super) fn selftest(thread: &str) {
    let wanted = std::env::var_os("VMM_SECCOMP_SELFTEST");
    if wanted.as_deref().and_then(|w| w.to_str()) == Some(thread) {
        // SAFETY: socket(2) with constant arguments; it either traps (the
        // point) or returns an fd that is closed at once.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            if fd >= 0 {
                libc::close(fd);
            }
        }
    }
}
