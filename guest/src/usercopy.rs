//! Moving data across the user/kernel boundary (Linux: arch/x86/lib/copy_user_64.S,
//! lib/strncpy_from_user.c, include/linux/uaccess.h).
//!
//! Two defences: `access_ok` refuses a range that is not wholly in the user
//! half (kernel pointers, wrap-around, ranges straddling the top), and the
//! copy itself survives a fault on an unmapped page: the faulting instruction
//! is listed in the exception table (`__ex_table`), and the #PF handler
//! resumes at its fixup, which returns the bytes not copied. With SMAP on,
//! the kernel may touch user pages only between `stac` and `clac`.

pub use vmm_abi::errno::EFAULT;

/// Highest user address + 1 that system calls accept (Linux's TASK_SIZE_MAX):
/// the top of the stack; the last page above it takes no pointers.
pub const TASK_SIZE_MAX: u64 = vmm_abi::layout::user::STACK_TOP;

/// Set at boot when CR4.SMAP is on; the copy routines (and the exception
/// entry) then use stac/clac. An atomic byte: the assembly reads it as one.
#[no_mangle]
pub static SMAP_ON: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

/// The range [addr, addr + len) lies wholly in the user half (host-tested
/// in the boot contract).
pub use vmm_abi::layout::user::access_ok;

core::arch::global_asm!(
    // copy_user_generic(dst [rdi], src [rsi], len [rdx]) -> bytes NOT copied [rax]
    // Eight bytes per iteration (`rep movsq`), then the last 0-7 one at a
    // time (`rep movsb`), as Linux's copy_user_generic_string does on CPUs
    // without ERMS. A fault in the qword part leaves RCX = qwords not
    // copied, the faulting one included, which may still hold bytes before
    // the bad page: the fixup redoes the rest, RCX * 8 + the tail, a byte at
    // a time, so the count that comes back is exact to the byte.
    ".global copy_user_generic",
    "copy_user_generic:",
    "    cmp byte ptr [rip + SMAP_ON], 0",
    "    je 1f",
    "    stac",
    "1:  mov rcx, rdx",
    "    cmp rdx, 8",
    "    jb 2f",
    "    shr rcx, 3",
    "    and edx, 7",
    "10: rep movsq",
    "    mov ecx, edx",
    "2:  rep movsb",
    "3:  mov rax, rcx",
    "    cmp byte ptr [rip + SMAP_ON], 0",
    "    je 4f",
    "    clac",
    "4:  ret",
    // The qword copy faulted: bytes left = RCX * 8 + RDX (the tail).
    "11: lea rcx, [rdx + rcx * 8]",
    "    jmp 2b",
    // strncpy_user(dst [rdi], src [rsi], max [rdx]) -> length, max if unterminated, -EFAULT
    ".global strncpy_user",
    "strncpy_user:",
    "    cmp byte ptr [rip + SMAP_ON], 0",
    "    je 1f",
    "    stac",
    "1:  xor eax, eax",
    "5:  cmp rax, rdx",
    "    jae 7f",
    "6:  mov cl, [rsi + rax]",
    "    mov [rdi + rax], cl",
    "    test cl, cl",
    "    jz 7f",
    "    inc rax",
    "    jmp 5b",
    "8:  mov rax, -14",
    "7:  cmp byte ptr [rip + SMAP_ON], 0",
    "    je 9f",
    "    clac",
    "9:  ret",
    // Exception table: (faulting instruction, where to resume).
    ".pushsection __ex_table, \"a\"",
    "    .quad 10b, 11b",
    "    .quad 2b, 3b",
    "    .quad 6b, 8b",
    ".popsection",
);

extern "C" {
    fn copy_user_generic(dst: *mut u8, src: *const u8, len: usize) -> usize;
    fn strncpy_user(dst: *mut u8, src: *const u8, max: usize) -> i64;
    static __start___ex_table: [u64; 0];
    static __stop___ex_table: [u64; 0];
}

/// The fixup address for a fault at `rip`, if `rip` is a listed user access.
pub fn search_exception_table(rip: u64) -> Option<u64> {
    // SAFETY: the linker script brackets the table with these symbols.
    let table = unsafe {
        let start = __start___ex_table.as_ptr();
        let len = (__stop___ex_table.as_ptr() as usize - start as usize) / 8;
        core::slice::from_raw_parts(start, len)
    };
    table.chunks_exact(2).find(|e| e[0] == rip).map(|e| e[1])
}

/// Copy `dst.len()` bytes from user address `src`.
pub fn copy_from_user(dst: &mut [u8], src: u64) -> Result<(), i64> {
    if !access_ok(src, dst.len() as u64) {
        return Err(-EFAULT);
    }
    // SAFETY: the range is in the user half; faults are fixed up.
    match unsafe { copy_user_generic(dst.as_mut_ptr(), src as *const u8, dst.len()) } {
        0 => Ok(()),
        _ => Err(-EFAULT),
    }
}

/// Copy up to `dst.len()` bytes from user address `src`, stopping at the
/// first byte that faults: how many were copied (Linux's copy_from_user
/// returns the complement, the bytes not copied).
pub fn copy_from_user_partial(dst: &mut [u8], src: u64) -> Result<usize, i64> {
    if !access_ok(src, dst.len() as u64) {
        return Err(-EFAULT);
    }
    // SAFETY: the range is in the user half; faults are fixed up.
    let left = unsafe { copy_user_generic(dst.as_mut_ptr(), src as *const u8, dst.len()) };
    Ok(dst.len() - left.min(dst.len()))
}

/// Read the bytes of a user instruction at `src` (trap handlers explaining
/// or completing what ring 3 executed). Unlike `copy_from_user`, the last
/// user page counts: a program may run code there even though no system
/// call takes a pointer into it.
pub fn read_user_insn(dst: &mut [u8], src: u64) -> Result<(), i64> {
    if src
        .checked_add(dst.len() as u64)
        .is_none_or(|end| end > vmm_abi::layout::USER_END)
    {
        return Err(-EFAULT);
    }
    // SAFETY: the range is in the user half; faults are fixed up.
    match unsafe { copy_user_generic(dst.as_mut_ptr(), src as *const u8, dst.len()) } {
        0 => Ok(()),
        _ => Err(-EFAULT),
    }
}

/// Copy `src` to user address `dst`.
pub fn copy_to_user(dst: u64, src: &[u8]) -> Result<(), i64> {
    if !access_ok(dst, src.len() as u64) {
        return Err(-EFAULT);
    }
    // SAFETY: as above.
    match unsafe { copy_user_generic(dst as *mut u8, src.as_ptr(), src.len()) } {
        0 => Ok(()),
        _ => Err(-EFAULT),
    }
}

/// Copy a NUL-terminated string of at most `dst.len() - 1` bytes; returns its length.
pub fn strncpy_from_user(dst: &mut [u8], src: u64) -> Result<usize, i64> {
    // Check only the first byte's range here; each byte is checked as the walk goes.
    let max = dst.len().saturating_sub(1);
    let max = max.min(TASK_SIZE_MAX.saturating_sub(src) as usize);
    if !access_ok(src, 1) {
        return Err(-EFAULT);
    }
    // SAFETY: bytes are read only below TASK_SIZE_MAX; faults are fixed up.
    let n = unsafe { strncpy_user(dst.as_mut_ptr(), src as *const u8, max) };
    if n < 0 {
        return Err(-EFAULT);
    }
    let n = n as usize;
    dst[n.min(dst.len() - 1)] = 0;
    Ok(n)
}

/// Read one user u64.
pub fn get_user_u64(addr: u64) -> Result<u64, i64> {
    let mut b = [0u8; 8];
    copy_from_user(&mut b, addr)?;
    Ok(u64::from_le_bytes(b))
}
