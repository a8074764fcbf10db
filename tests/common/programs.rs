//! The test programs of tests/programs/, built from source the three ways
//! users build static Linux programs: as + ld, gcc -static -nostdlib, and
//! musl-gcc -static.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub struct Programs {
    pub hello_asm: PathBuf,
    pub getpid_asm: PathBuf,
    pub nostdlib: PathBuf,
    pub musl: PathBuf,
    pub echo: PathBuf,
    pub clock: PathBuf,
    pub dynamic: PathBuf,
    /// Copies stdin to stdout until end of file.
    pub cat: PathBuf,
    /// Writes N bytes without a newline.
    pub spew: PathBuf,
    /// Console writes and user copies at their edges; one big write.
    pub conwrite: PathBuf,
    /// Prints argc and each argument in brackets.
    pub args: PathBuf,
    /// Stresses spawn: loops, a memory hog, argument limits.
    pub spawner: PathBuf,
    /// Preemption, SIGXCPU and nanosleep, seen from ring 3.
    pub timer: PathBuf,
    /// A prompt without a newline, then a read.
    pub prompt: PathBuf,
    /// Several CPUs from ring 3: sysconf, sched_getcpu, the affinity and
    /// getcpu calls' errors, mmap/munmap churn across CPUs.
    pub smp: PathBuf,
    /// `syscall` / `int 0x80` in the last two bytes of user space.
    pub top_syscall: PathBuf,
    pub top_int80: PathBuf,
}

fn run(cmd: &mut Command, what: &str, package: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({e}); install the Debian package {package}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn programs() -> &'static Programs {
    static P: OnceLock<Programs> = OnceLock::new();
    P.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let src = root.join("tests/programs");
        let out = root.join("target/test-programs");
        std::fs::create_dir_all(&out).unwrap();
        let p = |n: &str| out.join(n);
        run(
            Command::new("as")
                .arg("-o")
                .arg(p("hello_asm.o"))
                .arg(src.join("hello_asm.S")),
            "as",
            "binutils",
        );
        run(
            Command::new("ld").arg("-o").arg(p("hello_asm")).arg(p("hello_asm.o")),
            "ld",
            "binutils",
        );
        let obj = p("getpid_asm.o");
        run(
            Command::new("as").arg("-o").arg(&obj).arg(src.join("getpid_asm.S")),
            "as",
            "binutils",
        );
        run(
            Command::new("ld").arg("-o").arg(p("getpid_asm")).arg(&obj),
            "ld",
            "binutils",
        );
        run(
            Command::new("gcc")
                .args([
                    "-static",
                    "-nostdlib",
                    "-O2",
                    "-fno-stack-protector",
                    "-fno-builtin",
                    "-o",
                ])
                .arg(p("nostdlib"))
                .arg(src.join("nostdlib.c")),
            "gcc",
            "gcc",
        );
        for prog in [
            "echo", "clock", "cat", "spew", "args", "spawner", "conwrite", "timer", "prompt", "smp",
        ] {
            run(
                Command::new("musl-gcc")
                    .args(["-static", "-O2", "-o"])
                    .arg(p(prog))
                    .arg(src.join(format!("{prog}.c"))),
                "musl-gcc",
                "musl-tools",
            );
        }
        run(
            Command::new("musl-gcc")
                .args(["-static", "-O2", "-o"])
                .arg(p("musl"))
                .arg(src.join("musl.c")),
            "musl-gcc",
            "musl-tools",
        );
        run(
            Command::new("gcc")
                .args(["-O2", "-o"])
                .arg(p("dynamic"))
                .arg(src.join("musl.c")),
            "gcc",
            "gcc",
        );
        for (name, defs) in [("top_syscall", &[][..]), ("top_int80", &["-DINT80"][..])] {
            let obj = p(&format!("{name}.o"));
            run(
                Command::new("gcc")
                    .arg("-c")
                    .args(defs)
                    .arg("-o")
                    .arg(&obj)
                    .arg(src.join("top.S")),
                "gcc",
                "gcc",
            );
            run(
                Command::new("ld")
                    .arg("-T")
                    .arg(src.join("top.ld"))
                    .arg("-o")
                    .arg(p(name))
                    .arg(&obj),
                "ld",
                "binutils",
            );
        }
        Programs {
            cat: p("cat"),
            spew: p("spew"),
            conwrite: p("conwrite"),
            args: p("args"),
            spawner: p("spawner"),
            timer: p("timer"),
            prompt: p("prompt"),
            smp: p("smp"),
            top_syscall: p("top_syscall"),
            top_int80: p("top_int80"),
            hello_asm: p("hello_asm"),
            getpid_asm: p("getpid_asm"),
            nostdlib: p("nostdlib"),
            musl: p("musl"),
            echo: p("echo"),
            clock: p("clock"),
            dynamic: p("dynamic"),
        }
    })
}

/// The system calls tests/programs/musl.c makes with argument "x", in order.
/// (gettimeofday goes through the vDSO: no system call.)
pub const MUSL_SYSCALLS: [&str; 12] = [
    "arch_prctl",
    "set_tid_address",
    "ioctl",
    "writev",
    "getpid",
    "getppid",
    "getpid",
    "getpid",
    "getpid",
    "syscount",
    "writev",
    "exit_group",
];

/// tests/programs/linux_init.c, a static musl /init for a stock Linux guest.
pub fn linux_init() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let out = root.join("target/test-programs");
        std::fs::create_dir_all(&out).unwrap();
        let p = out.join("linux_init");
        run(
            Command::new("musl-gcc")
                .args(["-static", "-O2", "-o"])
                .arg(&p)
                .arg(root.join("tests/programs/linux_init.c")),
            "musl-gcc",
            "musl-tools",
        );
        p
    })
}

/// The newest /boot/vmlinuz-* (Debian's linux-image-cloud-amd64 in CI), if any.
pub fn host_vmlinuz() -> Option<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .filter(|p| std::fs::File::open(p).is_ok())
        .collect();
    v.sort();
    v.pop()
}
