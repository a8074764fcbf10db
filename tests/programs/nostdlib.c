/* A C program without libc (gcc -static -nostdlib): raw system calls, argv
 * from the initial stack, and the usercopy edge cases the kernel must turn
 * into -EFAULT rather than a crash. Exit status: number of failed checks. */
typedef unsigned long u64;

static long sys3(long nr, long a, long b, long c) {
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

static u64 slen(const char *s) { u64 n = 0; while (((volatile const char *)s)[n]) n++; return n; }
static void puts1(const char *s) { sys3(1, 1, (long)s, (long)slen(s)); }

static int failures;
static void check(const char *what, long got, long want) {
    puts1(what);
    puts1(got == want ? ": ok\n" : ": FAILED\n");
    if (got != want) failures++;
}

void __attribute__((used)) cmain(long *sp) {
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    puts1("nostdlib: argv:");
    for (long i = 0; i < argc; i++) { puts1(" "); puts1(argv[i]); }
    puts1("\n");
    char buf[16] = {0};
    check("write from a kernel pointer", sys3(1, 1, (long)0xffffffff80100000UL, 16), -14);
    check("write from an unmapped page", sys3(1, 1, 0x1000, 16), -14);
    check("write straddling the user top", sys3(1, 1, (long)0x7ffffffffff8UL, 16), -14);
    check("write with a huge length", sys3(1, 1, (long)buf, (long)1 << 62), -14);
    check("write wrapping around", sys3(1, 1, (long)buf, -1), -14);
    check("read into a kernel pointer", sys3(0, 0, (long)0xffff888000001000UL, 8), -14);
    check("gettimeofday to a kernel pointer", sys3(96, (long)0xffffffff80100000UL, 0, 0), -14);
    check("unknown system call", sys3(333, 0, 0, 0), -38);
    /* 126 TiB of nothing: the kernel must skip absent tables, not walk pages. */
    check("munmap of a huge empty range", sys3(11, 0x10000000000L, 0x7e0000000000L, 0), 0);
    check("getpid", sys3(39, 0, 0, 0) > 0, 1);
    sys3(60, failures, 0, 0);
}

__asm__(".globl _start\n_start:\n mov %rsp, %rdi\n and $-16, %rsp\n call cmain\n hlt\n");
