//! The guest kernel and ring-3 programs built into the `vmm` binary
//! (vmm/build.rs compiles them), so `vmm run` works from any directory.

/// 8-byte alignment, so ELF parsers can read the headers in place.
#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);

static KERNEL_ALIGNED: &Aligned<[u8]> = &Aligned(*include_bytes!(env!("VMM_GUEST_KERNEL")));

/// The kernel ELF.
pub static KERNEL: &[u8] = &KERNEL_ALIGNED.0;

/// Where the build left the same ELF on disk, for `vmm run PATH` and for gdb.
pub const KERNEL_PATH: &str = env!("VMM_GUEST_KERNEL");

/// The ring-3 programs of the built-in boot archive (from guest-user/).
pub static USER_PROGRAMS: [(&str, &[u8]); 5] = [
    ("init", include_bytes!(env!("VMM_USER_INIT"))),
    ("hello", include_bytes!(env!("VMM_USER_HELLO"))),
    ("attack", include_bytes!(env!("VMM_USER_ATTACK"))),
    ("bench", include_bytes!(env!("VMM_USER_BENCH"))),
    ("sysfuzz", include_bytes!(env!("VMM_USER_SYSFUZZ"))),
];

/// On-disk paths of the same programs.
pub const USER_PROGRAM_PATHS: [(&str, &str); 5] = [
    ("init", env!("VMM_USER_INIT")),
    ("hello", env!("VMM_USER_HELLO")),
    ("attack", env!("VMM_USER_ATTACK")),
    ("bench", env!("VMM_USER_BENCH")),
    ("sysfuzz", env!("VMM_USER_SYSFUZZ")),
];

/// The vDSO the kernel maps into every process (guest/vdso/).
pub static VDSO: &[u8] = include_bytes!(env!("VMM_VDSO"));
