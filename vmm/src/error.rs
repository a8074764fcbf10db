//! Errors that stop `vmm` before or while it runs a guest. Each message says
//! what is wrong and what to do about it.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot open {path}: {source}\n  vmm needs KVM. Check that the device exists (ls -l {path}), that the kvm module \
         is loaded, and that you may read and write it (root, or membership of its group)"
    )]
    KvmOpen { path: PathBuf, source: std::io::Error },

    #[error("KVM refused {what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },

    #[error("{path} answered KVM_GET_API_VERSION with {version}, not 12: it is not a (stable) KVM device")]
    KvmApiVersion { path: PathBuf, version: i32 },

    #[error("cannot read guest image {path}: {source}")]
    ImageRead { path: PathBuf, source: std::io::Error },

    #[error(
        "the program's arguments are too big for the guest (E2BIG): {count} strings of {bytes} bytes with their \
         NULs, and the guest kernel takes at most {max_count} strings and {max_bytes} bytes; pass fewer or \
         shorter arguments"
    )]
    ArgsTooBig {
        count: usize,
        bytes: usize,
        max_count: usize,
        max_bytes: usize,
    },

    #[error("cannot read program {path}: {source}")]
    ProgramRead { path: PathBuf, source: std::io::Error },

    #[error("{path} is a {kind}, not a regular file: vmm reads the {what} (an ELF) only from a regular file; {hint}")]
    NotRegularFile {
        path: PathBuf,
        what: &'static str,
        kind: &'static str,
        hint: &'static str,
    },

    #[error(
        "{path} is {size} bytes, more than the guest's {mem_mib} MiB of memory (--mem), so the {what} \
         could not be loaded; raise --mem or strip the file"
    )]
    FileTooLarge {
        path: PathBuf,
        what: &'static str,
        size: u64,
        mem_mib: u64,
    },

    #[error("{path} cannot run in the guest: it is {reason}")]
    ProgramNotStatic { path: PathBuf, reason: &'static str },

    #[error("{path} is not an ELF file (no \\x7fELF magic at its start): vmm boots 64-bit x86 ELF kernels")]
    NotElf { path: PathBuf },

    #[error("{path} is a 32-bit ELF: vmm boots 64-bit (ELFCLASS64) x86-64 kernels")]
    Elf32 { path: PathBuf },

    #[error("{path} is a big-endian or malformed ELF (EI_DATA {data}): x86-64 is little-endian")]
    ElfEndian { path: PathBuf, data: u8 },

    #[error("{path} is an ELF for {machine} (e_machine {code}), not x86-64 (62)")]
    ElfMachine {
        path: PathBuf,
        machine: &'static str,
        code: u16,
    },

    #[error("{path} is a malformed ELF: {reason}")]
    ElfMalformed { path: PathBuf, reason: String },

    #[error(
        "{path} is not a fixed-address executable (e_type {etype}): link the kernel with a linker script \
         at fixed addresses (ET_EXEC), as guest/kernel.ld does"
    )]
    ElfType { path: PathBuf, etype: u16 },

    #[error(
        "{path}: segment at physical {start:#x}..{end:#x} lies outside guest memory (0..{mem:#x}); \
         raise --mem or link the segment lower"
    )]
    SegmentOutsideMemory {
        path: PathBuf,
        start: u64,
        end: u64,
        mem: u64,
    },

    #[error(
        "{path}: segment at physical {start:#x}..{end:#x} overlaps the first megabyte, where vmm puts the GDT, \
         IDT, TSS, page tables and stacks; link the kernel at {load:#x} or above"
    )]
    SegmentInBootArea {
        path: PathBuf,
        start: u64,
        end: u64,
        load: u64,
    },

    #[error(
        "{path} has no {section} section, so it was not built for vmm's boot contract \
         (see the abi/ crate and guest/src/header.rs)"
    )]
    NoHeader { path: PathBuf, section: &'static str },

    #[error("{path}: boot header is {found}, but this vmm speaks {expected}; rebuild the kernel against this vmm's abi crate")]
    HeaderMismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },

    #[error("--mem {requested} MiB is too small: this guest needs at least {needed} MiB")]
    MemTooSmall { requested: u64, needed: u64 },

    #[error("--mem {0} MiB is too large: at most {1} MiB")]
    MemTooLarge(u64, u64),

    #[error("--cpus {cpus}: this VM can have 1 to {max} vCPUs; give --cpus 1 to {max}")]
    TooManyCpus { cpus: usize, max: usize },

    #[error(
        "--cpus {0} needs the LAPIC (the CPUs wake each other with interrupts), and this VM has none \
         (VMM_NO_LAPIC is set, or KVM refused the split irqchip); unset VMM_NO_LAPIC or use --cpus 1"
    )]
    CpusWithoutLapic(usize),

    #[error("{what} supports one CPU for now: drop --cpus {cpus} (or give --cpus 1)")]
    OneCpuOnly { what: &'static str, cpus: usize },

    #[error("the VMM's page-table area is full: too much guest memory to map")]
    PageTableSpace,

    #[error("internal error: a page-table mapping overlaps a large page")]
    PageTableConflict,

    #[error("loading the kernel image failed: {0}")]
    Loader(#[from] linux_loader::loader::Error),

    #[error("guest memory access failed: {0}")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),

    #[error("cannot allocate guest memory: {0}")]
    MemoryAlloc(String),

    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),

    #[error(transparent)]
    EventLoop(#[from] crate::vstate::event_loop::EventLoopError),

    #[error(transparent)]
    Archive(#[from] crate::boot::initrd::ArchiveError),

    #[error("--cmdline is {len} bytes; at most {max} fit (a page of the boot contract)")]
    CmdlineTooLong { len: usize, max: u64 },

    #[error("cannot build the MSR list for KVM_SET_MSRS: {0:?}")]
    MsrList(vmm_sys_util::fam::Error),

    #[error("KVM did not accept MSR {index:#x} ({set} of {total} set)")]
    MsrRefused { index: u32, set: usize, total: usize },

    /// The debugger, its engine or the GDB stub.
    #[error(transparent)]
    Debug(#[from] crate::debug::DebugError),

    #[error("--strace-file {path}: {source}")]
    StraceFile { path: PathBuf, source: std::io::Error },

    #[error("{flag} {path}: cannot create it: {source} (name a file in a writable directory)")]
    OutputFile {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "--perfetto writes the --strace stream: add --strace (or use `vmm trace --funcgraph SYMBOL --perfetto FILE`)"
    )]
    PerfettoWithoutStrace,

    #[error("--strace: the kernel has no symbol {0}")]
    StraceSymbol(&'static str),

    #[error("measuring whether debug-register breakpoints exit: {0}; pass --break-by to choose a method")]
    DrProbe(crate::debug::DebugError),

    #[error("{at}: {reason}")]
    Symbol {
        at: String,
        reason: crate::debug::DebugError,
    },

    #[error("--funcgraph {0}: not a kernel function; funcgraph traces the guest kernel")]
    NotAKernelFunction(String),

    #[error(
        "--break-at {at} ({addr:#x}) is a ring-3 address, and on this host's PVM /dev/kvm debug-register \
         breakpoints and single-steps in ring 3 never exit (see `vmm kvm-info`). Break at a kernel symbol \
         (e.g. entry_SYSCALL_64), or use hardware KVM or the KVM box (tests/kvmbox)."
    )]
    RingThreeBreakOnPvm { at: String, addr: u64 },
}

impl Error {
    /// Wrap a KVM ioctl error with what was being done.
    pub fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
        move |source| Error::Kvm { what, source }
    }
}
