//! `init`: the built-in tour. Spawns `hello`, then each attack in its own
//! process, and prints one table row per attack with what was expected, what
//! happened, and whether it was contained. Exits 0 if everything was.
#![no_std]
#![no_main]

use core::fmt::Write;
use guest_user::*;

#[derive(Clone, Copy, PartialEq)]
enum Expect {
    /// #GP/#PF: the kernel kills the process (SIGSEGV; any signal counts).
    Killed,
    /// The syscall returns -EFAULT; the child reports it and exits 0.
    Efault,
    /// The child reads its own memory (exit 0) or is killed.
    Isolated,
    /// The kernel refuses (the child checks the error, or that every other
    /// process is unaffected) and the child exits 0; the text says how.
    Refused(&'static str),
    /// A debug trap in ring 3: killed by SIGTRAP, as Linux does.
    Trapped,
}
use Expect::*;

const ATTACKS: [(&str, Expect); 26] = [
    ("cli", Killed),
    ("hlt", Killed),
    ("in", Killed),
    ("out", Killed),
    ("mov-cr3", Killed),
    ("wrmsr", Killed),
    ("lgdt", Killed),
    ("mov-ds", Killed),
    ("mov-ss", Killed),
    ("far-call", Killed),
    ("int-gate", Killed),
    ("read-kernel", Killed),
    ("write-kernel", Killed),
    ("efault-write", Efault),
    ("efault-read", Efault),
    ("efault-unmapped", Efault),
    ("efault-gettimeofday", Efault),
    ("efault-straddle", Efault),
    ("sibling-read", Isolated),
    ("vdso-write", Refused("private copy")),
    ("bench-hook", Refused("-EPERM")),
    ("mmap-zero", Refused("-EPERM")),
    ("mmap-exhaust", Refused("-ENOMEM")),
    ("tf-syscall", Trapped),
    ("nt-flag", Refused("child ran")),
    ("spin", Refused("SIGXCPU; preempted")),
];

/// What `attack sibling-read` tries to read out of our address space.
static SECRET: [u8; 8] = *b"SECRET!!";

#[derive(Clone, Copy)]
enum Outcome {
    SpawnFailed(isize),
    WaitFailed(isize),
    Status(i32),
}

/// Spawns `path argv...` and waits for it.
fn run(path: &str, argv: &[&str]) -> Outcome {
    let pid = spawn(path, argv);
    if pid < 0 {
        return Outcome::SpawnFailed(pid);
    }
    let mut status = 0;
    let r = wait4(pid, &mut status, 0);
    if r < 0 {
        return Outcome::WaitFailed(r);
    }
    Outcome::Status(status)
}

fn contained(expect: Expect, o: Outcome) -> bool {
    match o {
        Outcome::Status(s) => match expect {
            Killed => wifsignaled(s),
            Efault | Refused(_) => wifexited(s) && wexitstatus(s) == 0,
            Trapped => wifsignaled(s) && wtermsig(s) == SIGTRAP,
            Isolated => wifsignaled(s) || (wifexited(s) && wexitstatus(s) == 0),
        },
        _ => false,
    }
}

fn errno(w: &mut StrBuf<24>, what: &str, e: isize) {
    match errno_name(-e) {
        "" => write!(w, "{what} {e}"),
        n => write!(w, "{what} -{n}"),
    }
    .ok();
}

fn observed(expect: Expect, o: Outcome) -> StrBuf<24> {
    let mut w = StrBuf::new();
    match o {
        Outcome::SpawnFailed(e) => errno(&mut w, "spawn", e),
        Outcome::WaitFailed(e) => errno(&mut w, "wait4", e),
        Outcome::Status(s) if wifsignaled(s) => {
            let sig = wtermsig(s);
            match signal_name(sig) {
                "" => write!(w, "killed (signal {sig})"),
                n => write!(w, "killed ({n})"),
            }
            .ok();
        }
        Outcome::Status(s) if wifexited(s) => {
            let code = wexitstatus(s);
            match (expect, code) {
                (Efault, 0) => w.write_str("-EFAULT").ok(),
                (Refused(how), 0) => w.write_str(how).ok(),
                (Isolated, 0) => w.write_str("own memory").ok(),
                (Isolated, 1) => w.write_str("read the secret").ok(),
                _ => write!(w, "exited {code}").ok(),
            };
        }
        Outcome::Status(s) => {
            write!(w, "status {s:#x}").ok();
        }
    }
    w
}

#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    println!(
        "init: ring-3 tour: hello, then {} attacks, each in its own process",
        ATTACKS.len()
    );

    let mut ok = true;
    match run("hello", &["hello"]) {
        Outcome::SpawnFailed(e) if e == -ENOSYS => {
            println!("init: spawn (syscall 500) returned -ENOSYS: not on the guest kernel; no tour");
            return 1;
        }
        Outcome::Status(s) if wifexited(s) && wexitstatus(s) == 0 => {}
        o => {
            println!("init: hello failed: {}", observed(Killed, o).as_str());
            ok = false;
        }
    }

    let mut secret = StrBuf::<24>::new();
    write!(secret, "{:#x}", core::ptr::addr_of!(SECRET) as usize).ok();

    let mut outcomes = [Outcome::SpawnFailed(0); ATTACKS.len()];
    for (&(name, expect), out) in ATTACKS.iter().zip(outcomes.iter_mut()) {
        *out = if expect == Isolated {
            run("attack", &["attack", name, secret.as_str()])
        } else {
            run("attack", &["attack", name])
        };
    }

    println!("{:<20}{:<19}{:<21}{}", "attack", "expected", "observed", "result");
    let mut n = 0;
    for (&(name, expect), &o) in ATTACKS.iter().zip(outcomes.iter()) {
        let good = contained(expect, o);
        n += good as usize;
        let exp = match expect {
            Killed => "killed (SIGSEGV)",
            Efault => "-EFAULT",
            Isolated => "isolated",
            Refused(how) => how,
            Trapped => "killed (SIGTRAP)",
        };
        let res = if good { "contained" } else { "NOT CONTAINED" };
        println!("{:<20}{:<19}{:<21}{}", name, exp, observed(expect, o).as_str(), res);
    }
    println!("{}/{} contained", n, ATTACKS.len());
    if ok && n == ATTACKS.len() {
        0
    } else {
        1
    }
}
