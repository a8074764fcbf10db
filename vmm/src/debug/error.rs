//! The debug layer's errors: the debugger's commands, its engine and the
//! GDB stub. Each message says what is wrong and, where there is one, what
//! to do instead.

use crate::introspect::memory::MemoryError;

#[derive(Debug, thiserror::Error)]
pub enum DebugError {
    /// A command line that does not parse (nothing ran).
    #[error(transparent)]
    Command(#[from] CommandError),

    #[error(transparent)]
    Memory(#[from] MemoryError),

    #[error(transparent)]
    GuestMemory(#[from] vm_memory::GuestMemoryError),

    #[error("{what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },

    #[error("{0:?}")]
    MsrList(vmm_sys_util::fam::Error),

    #[error("selector {sel:#x} is beyond the GDT limit {limit:#x} (#GP)")]
    BeyondGdtLimit { sel: u16, limit: u16 },

    #[error("unknown MSR '{name}'; one of {known}")]
    UnknownMsr { name: String, known: String },

    #[error("x: {count} units of {size} bytes at {va:#x} run past the end of the address space")]
    ExaminePastEnd { count: usize, size: usize, va: u64 },

    #[error("the guest has ended")]
    Ended,

    #[error("interrupted (Ctrl-C)")]
    Interrupted,

    #[error("bad offset in {0}")]
    BadOffset(String),

    #[error("unknown register ${0}")]
    UnknownRegister(String),

    #[error("no symbol '{0}' in the kernel or the program")]
    NoSymbol(String),

    #[error("{spec}: {base:#x} + {off:#x} is past the end of the 64-bit address space")]
    PastAddressSpace { spec: String, base: u64, off: u64 },

    #[error(
        "{what}: on this host's PVM /dev/kvm, single-steps and debug-register breakpoints in ring 3 never \
         exit (see `vmm kvm-info`); use hardware KVM or the KVM box (tests/kvmbox)"
    )]
    RingThreeOnPvm { what: String },

    #[error(
        "--break-by exit-insn patches `in al, dx` into kernel code, and {addr:#x} is {what}: \
         use --break-by step (or dr0 where debug registers exit)"
    )]
    ExitInsnNotHere { addr: u64, what: &'static str },

    #[error("only 4 debug registers (DR0–DR3): delete one, or use --break-by step")]
    NoFreeDebugRegister,

    #[error(
        "debug-register watchpoints never fire on PVM (see `vmm kvm-info`); \
         restart with --break-by step, which compares the value after each step"
    )]
    DrWatchpointOnPvm,

    #[error("a watchpoint covers 1, 2, 4 or 8 bytes, aligned")]
    BadWatchpoint,

    #[error("no breakpoint {0}")]
    NoBreakpoint(u32),

    #[error("{0:#x} is not mapped: cannot patch a breakpoint there")]
    PatchNotMapped(u64),

    #[error("completing the breakpoint's port read: {0}")]
    PortRead(kvm_ioctls::Error),

    #[error("completing the breakpoint's port read: KVM_RUN ran the guest")]
    PortReadRanGuest,

    #[error("DR probe VM: {0}")]
    ProbeVm(Box<crate::error::Error>),

    /// The probe's KVM_RUN ended in an exit other than a debug exit (its
    /// `Debug` text: the exit borrows the vCPU's buffers).
    #[error("DR probe: unexpected exit {0}")]
    ProbeExit(String),

    #[error("DR probe: KVM_RUN: {0}")]
    ProbeRun(kvm_ioctls::Error),

    #[error("--gdb {addr}: {source}")]
    GdbSocket { addr: String, source: std::io::Error },

    #[error("gdb session failed: {0}")]
    GdbSession(String),

    #[error("cannot write the JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl DebugError {
    /// Wrap a KVM ioctl error with the ioctl's name.
    pub fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> DebugError {
        move |source| DebugError::Kvm { what, source }
    }
}

pub type Result<T> = std::result::Result<T, DebugError>;

/// A debugger command line that does not parse: the problem, and what the
/// command takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("{what}: '{arg}' is not a number (decimal, or hex with 0x)")]
    NotANumber { what: &'static str, arg: String },

    #[error("{what}: {arg} is too large (at most {max}{hint})")]
    TooLarge {
        what: &'static str,
        arg: String,
        max: u64,
        hint: &'static str,
    },

    #[error("x: count '{0}' is not a number (decimal, or hex with 0x)")]
    ExamineCountNotANumber(String),

    #[error("x: count {0} is too large (at most {max} units; use several x commands)", max = super::parse::MAX_X_UNITS)]
    ExamineCountTooLarge(String),

    #[error("x: count 0: nothing to examine")]
    ExamineNothing,

    #[error("x: unknown letter '{letter}' in x/{spec} (sizes b h w g; x, hex, is the only format)")]
    ExamineLetter { letter: char, spec: String },

    #[error("usage: {0}")]
    Usage(&'static str),

    #[error("continue: 0 stops? use continue or continue N with N >= 1")]
    ContinueZero,

    #[error("watch: length '{0}'? a watchpoint covers 1, 2, 4 or 8 bytes")]
    WatchLength(String),

    #[error("info breakpoints | info registers")]
    Info,

    #[error("check: 'for {0}'? use data, code or stack")]
    CheckUse(String),

    #[error("check: at cpl N")]
    CheckAtCpl,

    #[error("check: unexpected '{0}'")]
    CheckUnexpected(String),

    #[error("unknown command '{0}' (try help)")]
    Unknown(String),
}
