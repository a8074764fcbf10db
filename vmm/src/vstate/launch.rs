//! What to boot: the kernel image (a file, or the one built in) and the boot
//! archive (the built-in ring-3 programs, plus a program from the host to
//! run as init).

use crate::error::Error;
use crate::introspect::symbols::Symbols;
use crate::vstate::vm::{InitProgram, Vm, VmConfig, MAX_MEM_MIB};
use crate::{boot::guest_image, boot::initrd, boot::loader};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;
use vmm_abi::layout::MAX_CPUS;

/// The longest `--timeout`: one year. Longer values cannot be told from
/// "never" (0), and a few orders of magnitude more overflow `Duration`.
pub const MAX_TIMEOUT_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// A `--timeout` clap refuses, with what to give instead.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TimeoutError {
    #[error("'{0}' is not a number of seconds (e.g. 60, 0.5; 0 means never)")]
    NotANumber(String),
    #[error("{0} seconds: the timeout must be 0 (never) or a positive number")]
    Negative(String),
    #[error("{0} seconds is too long: at most {MAX_TIMEOUT_SECS} (one year); use 0 for no timeout")]
    TooLong(String),
}

/// `--timeout SECS`: a number of seconds, 0 (never) up to [`MAX_TIMEOUT_SECS`].
pub fn parse_timeout(s: &str) -> Result<f64, TimeoutError> {
    let t: f64 = s.trim().parse().map_err(|_| TimeoutError::NotANumber(s.into()))?;
    if !(t >= 0.0 && t.is_finite()) {
        return Err(TimeoutError::Negative(s.into()));
    }
    if t > MAX_TIMEOUT_SECS {
        return Err(TimeoutError::TooLong(s.into()));
    }
    Ok(t)
}

/// A `--cpus` clap refuses, with what to give instead.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CpusError {
    #[error("'{0}' is not a number of CPUs: give 1 to {MAX_CPUS}")]
    NotANumber(String),
    #[error("{0} CPUs: give 1 to {MAX_CPUS} (the boot contract's limit, vmm_abi::layout::MAX_CPUS)")]
    OutOfRange(String),
}

/// `--cpus N`: 1 to [`MAX_CPUS`]. More vCPUs than the host has CPUs is
/// allowed: they take turns, as in the KVM box (one CPU).
pub fn parse_cpus(s: &str) -> Result<usize, CpusError> {
    let n: usize = s.trim().parse().map_err(|_| CpusError::NotANumber(s.into()))?;
    if n == 0 || n > MAX_CPUS {
        return Err(CpusError::OutOfRange(s.into()));
    }
    Ok(n)
}

/// The timeout a parsed `--timeout` stands for (None: never).
pub fn timeout_duration(secs: f64) -> Option<Duration> {
    (secs > 0.0).then(|| Duration::try_from_secs_f64(secs.min(MAX_TIMEOUT_SECS)).unwrap_or(Duration::MAX))
}

/// What a guest file is, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileRole {
    Kernel,
    Program,
}

/// Read a kernel image or a program from the host, checking before reading:
/// only a regular file is opened for reading (a FIFO would block, a device
/// such as /dev/zero never end), its ELF header is checked from the first
/// bytes, and a file larger than guest memory (`max_bytes`) is refused
/// before a byte more is read. Then exactly the file's size is read.
pub fn read_guest_file(path: &Path, role: FileRole, max_bytes: u64) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let io = |source: std::io::Error| match role {
        FileRole::Kernel => Error::ImageRead {
            path: path.to_path_buf(),
            source,
        },
        FileRole::Program => Error::ProgramRead {
            path: path.to_path_buf(),
            source,
        },
    };
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let t = meta.file_type();
    let kind = if t.is_file() {
        None
    } else if t.is_dir() {
        Some("directory")
    } else if t.is_fifo() {
        Some("FIFO (named pipe)")
    } else if t.is_char_device() {
        Some("character device")
    } else if t.is_block_device() {
        Some("block device")
    } else if t.is_socket() {
        Some("socket")
    } else {
        Some("special file")
    };
    if let Some(kind) = kind {
        return Err(Error::NotRegularFile {
            path: path.to_path_buf(),
            what: role.what(),
            kind,
            hint: if t.is_dir() {
                "give the path of the ELF file itself"
            } else {
                "save the ELF to a file and pass that file's path"
            },
        });
    }
    // The ELF header first: a file that is not an ELF at all is refused
    // whatever its size.
    let mut head = Vec::with_capacity(64);
    (&file).take(64).read_to_end(&mut head).map_err(io)?;
    match role {
        FileRole::Kernel => loader::check_elf_header(path, &head)?,
        FileRole::Program => loader::check_program_header(path, &head)?,
    }
    let size = meta.len();
    if size > max_bytes {
        return Err(Error::FileTooLarge {
            path: path.to_path_buf(),
            what: role.what(),
            size,
            mem_mib: max_bytes >> 20,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    bytes.extend_from_slice(&head);
    // Exactly the size stat() reported (a file growing meanwhile is cut there).
    (&file)
        .take(size.saturating_sub(head.len() as u64))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(bytes)
}

impl FileRole {
    fn what(self) -> &'static str {
        match self {
            FileRole::Kernel => "kernel image",
            FileRole::Program => "program",
        }
    }
}

/// The kernel ELF: `path`'s contents, or the built-in kernel. A file larger
/// than `max_bytes` (guest memory) is refused before it is read.
pub fn kernel_image(path: Option<&Path>, max_bytes: u64) -> Result<(PathBuf, Cow<'static, [u8]>), Error> {
    match path {
        Some(p) => read_guest_file(p, FileRole::Kernel, max_bytes).map(|b| (p.to_path_buf(), Cow::Owned(b))),
        None => Ok((
            PathBuf::from(guest_image::KERNEL_PATH),
            Cow::Borrowed(guest_image::KERNEL),
        )),
    }
}

/// The boot-archive name of the vDSO (its soname, which no program takes).
pub const VDSO_MEMBER: &str = "linux-vdso.so.1";

/// The symbols of the program init runs, for breakpoints and traces: read
/// from its ELF on first use, so a plain boot does not pay for them.
pub struct ProgramSymbols {
    elf: Cow<'static, [u8]>,
    symbols: OnceLock<Symbols>,
}

impl ProgramSymbols {
    pub fn get(&self) -> &Symbols {
        self.symbols.get_or_init(|| {
            // The built-in programs are include_bytes!, not aligned for the parser.
            loader::with_aligned(&self.elf, |elf| {
                object::File::parse(elf)
                    .map(|f| Symbols::from_object(&f))
                    .unwrap_or_default()
            })
        })
    }
}

/// The boot archive and init's argv: the built-in programs, plus PROGRAM
/// from the host if given (it then runs as init, with its arguments). A
/// PROGRAM larger than `max_bytes` (guest memory) is refused before it is read.
pub fn boot_archive(program: &[String], max_bytes: u64) -> Result<(InitProgram, ProgramSymbols), Error> {
    // The kernel looks members up by walking the archive from its start,
    // and every walked header costs ~800 emulated instructions on PVM: the
    // vDSO (looked up at every boot) goes first, then the program init runs.
    let mut files: Vec<(String, Cow<'static, [u8]>)> =
        vec![(VDSO_MEMBER.to_string(), Cow::Borrowed(guest_image::VDSO))];
    let argv = match program.split_first() {
        None => vec!["init".to_string()],
        Some((path, rest)) => {
            let p = PathBuf::from(path);
            let bytes = read_guest_file(&p, FileRole::Program, max_bytes)?;
            loader::check_user_program(&p, &bytes)?;
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.clone());
            files.push((name.clone(), Cow::Owned(bytes)));
            std::iter::once(name).chain(rest.iter().cloned()).collect()
        }
    };
    check_argv(&argv)?;
    for (name, bytes) in guest_image::USER_PROGRAMS.iter() {
        files.push((name.to_string(), Cow::Borrowed(bytes)));
    }
    let elf = files
        .iter()
        .find(|(n, _)| *n == argv[0])
        .map(|(_, b)| b.clone())
        .unwrap_or_default();
    let symbols = ProgramSymbols {
        elf,
        symbols: OnceLock::new(),
    };
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_ref())).collect();
    Ok((
        InitProgram {
            image: initrd::build(&refs)?,
            argv,
        },
        symbols,
    ))
}

/// Refuse, before booting, arguments the guest kernel would refuse with E2BIG
/// (the limits of the boot contract). Empty strings are arguments too.
pub fn check_argv(argv: &[String]) -> Result<(), Error> {
    use vmm_abi::layout::user::{MAX_ARG_BYTES, MAX_ARG_STRINGS};
    let bytes: usize = argv.iter().map(|a| a.len() + 1).sum();
    if argv.len() > MAX_ARG_STRINGS || bytes > MAX_ARG_BYTES {
        return Err(Error::ArgsTooBig {
            count: argv.len(),
            bytes,
            max_count: MAX_ARG_STRINGS,
            max_bytes: MAX_ARG_BYTES,
        });
    }
    Ok(())
}

/// The arguments every booting subcommand shares (run, debug, trace).
#[derive(clap::Args, Clone, Debug)]
pub struct GuestArgs {
    /// A 64-bit x86 ELF kernel built for vmm's boot contract (default: the built-in one).
    pub image: Option<PathBuf>,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 64, value_name = "MiB")]
    pub mem: u64,
    /// Stop the guest after this many seconds (0: never; at most a year).
    #[arg(long, default_value_t = 60.0, value_name = "SECS", value_parser = parse_timeout)]
    pub timeout: f64,
    /// Kernel command line (default with a PROGRAM: `quiet`, no banner).
    #[arg(long, default_value = "")]
    pub cmdline: String,
    /// The KVM device.
    #[arg(long, env = "VMM_KVM_DEVICE", default_value = "/dev/kvm", value_name = "PATH")]
    pub kvm_device: PathBuf,
    /// vCPUs (1 to 8): the guest runs a process on each (README, "Several CPUs").
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = parse_cpus)]
    pub cpus: usize,
    /// Run without the seccomp allow-lists (to debug a seccomp violation; see README "Seccomp").
    #[arg(long)]
    pub no_seccomp: bool,
    /// A static x86-64 Linux program (and its arguments) to run as init in ring 3.
    #[arg(last = true, value_name = "PROGRAM")]
    pub program: Vec<String>,
}

impl GuestArgs {
    /// Refuse more than one vCPU for `what` (the debugger and the tracers
    /// drive vCPU 0 alone), before anything is read or built.
    pub fn one_cpu_for(&self, what: &'static str) -> Result<(), Error> {
        match self.cpus {
            1 => Ok(()),
            cpus => Err(Error::OneCpuOnly { what, cpus }),
        }
    }

    /// Build the VM these arguments describe; also the init program's symbols.
    pub fn vm(&self, forward_stdin: bool) -> Result<(Vm, ProgramSymbols), Error> {
        // --mem bounds what is read from the host: check it first.
        if self.mem > MAX_MEM_MIB {
            return Err(Error::MemTooLarge(self.mem, MAX_MEM_MIB));
        }
        let mem_bytes = self.mem << 20;
        let (path, image) = kernel_image(self.image.as_deref(), mem_bytes)?;
        let (init, symbols) = boot_archive(&self.program, mem_bytes)?;
        // A program's own output should not be preceded by the kernel's banner.
        let cmdline = if self.cmdline.is_empty() && !self.program.is_empty() {
            "quiet".into()
        } else {
            self.cmdline.clone()
        };
        let cfg = VmConfig {
            kvm_device: self.kvm_device.clone(),
            mem_mib: self.mem,
            timeout: timeout_duration(self.timeout),
            cmdline,
            init: Some(init),
            lapic: std::env::var_os("VMM_NO_LAPIC").is_none(),
            forward_stdin,
            output: Box::new(std::io::stdout()),
            seccomp: !self.no_seccomp,
            cpus: self.cpus,
        };
        if self.no_seccomp {
            eprintln!("vmm: seccomp disabled by --no-seccomp (debugging only)");
        }
        Ok((Vm::new(&path, image, cfg)?, symbols))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_init_has_its_symbols() {
        let (_, symbols) = boot_archive(&[], u64::MAX).unwrap();
        assert!(symbols.get().address_of("_start").is_some());
    }

    #[test]
    fn cpus_are_bounded() {
        assert_eq!(parse_cpus("1"), Ok(1));
        assert_eq!(parse_cpus("8"), Ok(8));
        assert_eq!(parse_cpus("0"), Err(CpusError::OutOfRange("0".into())));
        assert_eq!(parse_cpus("999"), Err(CpusError::OutOfRange("999".into())));
        assert_eq!(parse_cpus("abc"), Err(CpusError::NotANumber("abc".into())));
        assert!(parse_cpus("-1").is_err());
    }

    #[test]
    fn timeouts_are_bounded() {
        assert_eq!(parse_timeout("0"), Ok(0.0));
        assert_eq!(parse_timeout("0.5"), Ok(0.5));
        assert!(parse_timeout("31536000").is_ok());
        for bad in ["1e19", "1e30", "31536000.5", "-1", "nan", "inf", "", "x"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
        assert_eq!(timeout_duration(0.0), None);
        assert_eq!(
            timeout_duration(MAX_TIMEOUT_SECS),
            Some(Duration::from_secs(31_536_000))
        );
    }
}
