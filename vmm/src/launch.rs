//! What to boot: the kernel image (a file, or the one built in) and the boot
//! archive (the built-in ring-3 programs, plus a program from the host to
//! run as init).

use crate::error::Error;
use crate::symbols::Symbols;
use crate::vm::{InitProgram, Vm, VmConfig};
use crate::{guest_image, initrd, loader};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// The kernel ELF: `path`'s contents, or the built-in kernel.
pub fn kernel_image(path: Option<&Path>) -> Result<(PathBuf, Cow<'static, [u8]>), Error> {
    match path {
        Some(p) => std::fs::read(p)
            .map(|b| (p.to_path_buf(), Cow::Owned(b)))
            .map_err(|source| Error::ImageRead {
                path: p.to_path_buf(),
                source,
            }),
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
            object::File::parse(&*self.elf)
                .map(|f| Symbols::from_object(&f))
                .unwrap_or_default()
        })
    }
}

/// The boot archive and init's argv: the built-in programs, plus PROGRAM
/// from the host if given (it then runs as init, with its arguments).
pub fn boot_archive(program: &[String]) -> Result<(InitProgram, ProgramSymbols), Error> {
    let mut files: Vec<(String, Cow<'static, [u8]>)> = Vec::new();
    let argv = match program.split_first() {
        None => vec!["init".to_string()],
        Some((path, rest)) => {
            let p = PathBuf::from(path);
            let bytes = std::fs::read(&p).map_err(|source| Error::ProgramRead {
                path: p.clone(),
                source,
            })?;
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
    files.push((VDSO_MEMBER.to_string(), Cow::Borrowed(guest_image::VDSO)));
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
            image: initrd::build(&refs),
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
    /// Stop the guest after this many seconds (0: never).
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub timeout: f64,
    /// Kernel command line (default with a PROGRAM: `quiet`, no banner).
    #[arg(long, default_value = "")]
    pub cmdline: String,
    /// The KVM device.
    #[arg(long, env = "VMM_KVM_DEVICE", default_value = "/dev/kvm", value_name = "PATH")]
    pub kvm_device: PathBuf,
    /// A static x86-64 Linux program (and its arguments) to run as init in ring 3.
    #[arg(last = true, value_name = "PROGRAM")]
    pub program: Vec<String>,
}

impl GuestArgs {
    /// Build the VM these arguments describe; also the init program's symbols.
    pub fn vm(&self, forward_stdin: bool) -> Result<(Vm, ProgramSymbols), Error> {
        if !(self.timeout >= 0.0 && self.timeout.is_finite()) {
            return Err(Error::Unsupported(
                "--timeout must be a number of seconds >= 0 (0 means never)".into(),
            ));
        }
        let (path, image) = kernel_image(self.image.as_deref())?;
        let (init, symbols) = boot_archive(&self.program)?;
        // A program's own output should not be preceded by the kernel's banner.
        let cmdline = if self.cmdline.is_empty() && !self.program.is_empty() {
            "quiet".into()
        } else {
            self.cmdline.clone()
        };
        let cfg = VmConfig {
            kvm_device: self.kvm_device.clone(),
            mem_mib: self.mem,
            timeout: (self.timeout > 0.0).then(|| Duration::from_secs_f64(self.timeout)),
            cmdline,
            init: Some(init),
            lapic: std::env::var_os("VMM_NO_LAPIC").is_none(),
            forward_stdin,
            output: Box::new(std::io::stdout()),
        };
        Ok((Vm::new(&path, image, cfg)?, symbols))
    }
}
