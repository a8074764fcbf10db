//! `attack NAME [ARG]`: tries one privileged or cross-boundary operation from
//! ring 3. Fault attacks must kill us (#GP/#PF -> SIGSEGV); if we survive we
//! print "attack NAME: NOT contained" and exit 1. The efault-* attacks pass
//! kernel, unmapped or straddling pointers to syscalls and expect -EFAULT.
#![no_std]
#![no_main]

use core::arch::asm;
use guest_user::{args, gettimeofday_raw, println, spawn, syscall3, EFAULT, SYS_READ, SYS_WRITE};

/// An address in the kernel image (KERNEL_BASE + 1 MiB, mapped supervisor-only).
const KERNEL_ADDR: usize = 0xffff_ffff_8010_0000;
/// The GDT through the kernel's direct map (DIRECT_MAP_BASE + 0x1000).
const GDT_DIRECT_MAP: usize = 0xffff_8880_0000_1000;
/// Below any program image; never mapped.
const UNMAPPED: usize = 0x10000;
/// 8 bytes below the end of the user half: [p, p+16) crosses into non-canonical space.
const STRADDLE: usize = 0x7fff_ffff_fff8;
/// Kernel selectors (abi::layout::selector), DPL 0.
const KERNEL_CS: u16 = 0x08;
const KERNEL_DS: u16 = 0x10;
/// The VMM's exit port (abi::ports::EXIT); a breach would end the VM with 0x77.
const EXIT_PORT: u16 = 0xf4;
/// The parent's secret as a number, masked: compared as `(v ^ mask) ==
/// SECRET_MASKED` with an opaque mask, so the bytes "SECRET!!" appear nowhere
/// in our own image (where a read at the same address would find them).
const MASK: u64 = 0x5a5a_5a5a_5a5a_5a5a;
const SECRET_MASKED: u64 = u64::from_le_bytes(*b"SECRET!!") ^ MASK;

const NAMES: &str = "cli hlt in out mov-cr3 wrmsr lgdt mov-ds mov-ss far-call int-gate \
read-kernel write-kernel efault-write efault-read efault-unmapped efault-gettimeofday \
efault-straddle sibling-read fake-syscall nt-flag";

#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    let args = args();
    let Some(&name) = args.get(1) else { return usage() };
    // SAFETY: none of this is safe; that is the point. Each asm block either
    // faults or, on a broken kernel, returns with the machine state restored.
    unsafe {
        match name {
            "cli" => asm!("cli", options(nomem, nostack)),
            "hlt" => asm!("hlt", options(nomem, nostack)),
            "in" => asm!("in al, dx", in("dx") EXIT_PORT, out("al") _, options(nomem, nostack)),
            "out" => asm!("out dx, al", in("dx") EXIT_PORT, in("al") 0x77u8, options(nomem, nostack)),
            "mov-cr3" => asm!("mov cr3, {}", in(reg) 0usize, options(nostack)),
            "wrmsr" => asm!("wrmsr", in("ecx") 0xc000_0082u32, in("eax") 0u32, in("edx") 0u32,
                            options(nostack)),
            "lgdt" => {
                let pseudo = [0u8; 10]; // limit 0, base 0
                asm!("lgdt [{}]", in(reg) pseudo.as_ptr(), options(nostack));
            }
            "mov-ds" => asm!("mov {save:x}, ds", "mov ds, {sel:x}", "mov ds, {save:x}",
                             sel = in(reg) KERNEL_DS, save = out(reg) _, options(nostack)),
            "mov-ss" => asm!("mov {save:x}, ss", "mov ss, {sel:x}", "mov ss, {save:x}",
                             sel = in(reg) KERNEL_DS, save = out(reg) _, options(nostack)),
            "far-call" => {
                // m16:32 far pointer: offset (our label 2:, below 4 GiB), selector 0x08.
                // Only a successful far call reaches 2:, having pushed CS and RIP.
                let mut ptr = [0u16; 3];
                asm!("lea {t}, [rip + 2f]",
                     "mov dword ptr [{p}], {t:e}",
                     "mov word ptr [{p} + 4], {sel:x}",
                     "call fword ptr [{p}]",
                     "2:",
                     "add rsp, 16",
                     p = in(reg) ptr.as_mut_ptr(), t = out(reg) _, sel = in(reg) KERNEL_CS);
            }
            "int-gate" => asm!("int 0x0d", options(nomem, nostack)),
            "read-kernel" => {
                let v: u64;
                asm!("mov {v}, qword ptr [{p}]", p = in(reg) KERNEL_ADDR, v = out(reg) v,
                     options(nostack));
                println!("attack read-kernel: read {:#x}", v);
            }
            "write-kernel" => asm!("mov qword ptr [{p}], {v}", p = in(reg) GDT_DIRECT_MAP,
                                   v = in(reg) 0u64, options(nostack)),
            "efault-write" => return efault(name, syscall3(SYS_WRITE, 1, KERNEL_ADDR, 16)),
            "efault-read" => return efault(name, syscall3(SYS_READ, 0, KERNEL_ADDR, 16)),
            "efault-unmapped" => return efault(name, syscall3(SYS_WRITE, 1, UNMAPPED, 16)),
            "efault-gettimeofday" => {
                return efault(name, gettimeofday_raw(KERNEL_ADDR as *mut u8, core::ptr::null_mut()))
            }
            "efault-straddle" => return efault(name, syscall3(SYS_WRITE, 1, STRADDLE, 16)),
            "sibling-read" => {
                let Some(addr) = args.get(2).and_then(|a| parse_hex(a)) else {
                    return usage();
                };
                let v: u64;
                asm!("mov {v}, qword ptr [{p}]", p = in(reg) addr, v = out(reg) v,
                     options(nostack, readonly));
                if v ^ core::hint::black_box(MASK) == SECRET_MASKED {
                    println!("attack sibling-read: NOT contained (read the parent's secret)");
                    return 1;
                }
                println!("attack sibling-read: contained (own memory)");
                return 0;
            }
            "fake-syscall" => {
                // Jump straight to the kernel's syscall entry (ADDR) with a
                // forged, non-canonical return address in RCX and IOPL 3 in
                // R11. On hardware the fetch from a supervisor page is a #PF.
                // On PVM it looks exactly like a `syscall` arriving at LSTAR,
                // so the kernel must refuse to "return" there.
                let Some(addr) = args.get(2).and_then(|a| parse_hex(a)) else {
                    return usage();
                };
                asm!("mov rcx, {bad}", "mov r11, 0x3202", "jmp rdx",
                     bad = const 0x8000_0000_0000u64, in("rdx") addr, in("rax") 39u64,
                     options(noreturn));
            }
            "nt-flag" => return nt_flag(),
            _ => return usage(),
        }
    }
    println!("attack {}: NOT contained", name);
    1
}

/// Enter the kernel through `syscall` with RFLAGS.NT set (`popfq` may set it
/// in ring 3), in a wait4 that makes it start a new process: that process's
/// first return to ring 3 is an `iretq`, which is a #GP in long mode while NT
/// is set. Contained if SFMASK clears NT: the child runs, we reap it, exit 0.
/// Uncontained, the kernel dies (vmm status 240). Hardware semantics only:
/// on PVM the call arrives as a #PF, whose delivery clears NT anyway.
fn nt_flag() -> i32 {
    let pid = spawn("hello", &["hello", "--no-int80"]);
    if pid < 0 {
        println!("attack nt-flag: spawn failed: {}", pid);
        return 1;
    }
    let mut status = 0i32;
    let ret: isize;
    // SAFETY: wait4(pid, &status, 0, NULL) with NT (bit 14) set for the call;
    // the flags are restored from the stack right after it.
    unsafe {
        asm!("pushfq", "pushfq", "or qword ptr [rsp], 0x4000", "popfq", "syscall", "popfq",
             inlateout("rax") 61isize => ret, in("rdi") pid, in("rsi") &mut status as *mut i32,
             in("rdx") 0usize, in("r10") 0usize, lateout("rcx") _, lateout("r11") _);
    }
    if ret == pid && guest_user::wifexited(status) && guest_user::wexitstatus(status) == 0 {
        println!("attack nt-flag: contained (the kernel cleared NT; the child ran and exited 0)");
        0
    } else {
        println!(
            "attack nt-flag: NOT contained (wait4 returned {}, status {:#x})",
            ret, status
        );
        1
    }
}

fn efault(name: &str, ret: isize) -> i32 {
    if ret == -EFAULT {
        println!("attack {}: contained (-EFAULT)", name);
        0
    } else {
        println!("attack {}: NOT contained (returned {})", name, ret);
        1
    }
}

fn parse_hex(s: &str) -> Option<usize> {
    let s = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    usize::from_str_radix(s, 16).ok()
}

fn usage() -> i32 {
    println!("usage: attack NAME [ARG]\nattacks: {}", NAMES);
    2
}
