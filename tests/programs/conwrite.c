/* Console writes and user copies at their edges (musl-gcc -static).
 *
 *   conwrite big N    one write(1) of N bytes of a pattern (a newline every
 *                     64 bytes), then "big: wrote N" on its own line
 *   conwrite edges    buffers that run into an unmapped page, kernel
 *                     pointers, huge lengths: to the console (the VMM reads
 *                     the buffer through the page tables) and to /dev/null
 *                     (the kernel copies it in: copy_user_generic's fixup)
 *
 * Exit status: the number of failed checks. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static int failures;

/* The raw system call: -errno, not musl's -1. */
static long wr(int fd, const void *p, unsigned long n) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(1L), "D"((long)fd), "S"(p), "d"(n) : "rcx", "r11", "memory");
    return r;
}

static void say(const char *s) { wr(1, s, strlen(s)); }

static void check(const char *what, long got, long want) {
    char line[160];
    snprintf(line, sizeof line, "\n%s: got %ld want %ld %s\n", what, got, want, got == want ? "ok" : "FAILED");
    say(line);
    if (got != want) failures++;
}

static char pattern(unsigned long i) { return (i % 64 == 63) ? '\n' : 'a' + i % 26; }

static int big(unsigned long n) {
    char *b = malloc(n);
    if (!b) return 100;
    for (unsigned long i = 0; i < n; i++) b[i] = pattern(i);
    long r = wr(1, b, n);
    char line[64];
    snprintf(line, sizeof line, "\nbig: wrote %ld\n", r);
    say(line);
    return r != (long)n;
}

static int edges(void) {
    /* Two pages, the second unmapped: p[0..4096) is readable, p[4096..) faults. */
    char *p = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 100;
    for (int i = 0; i < 4096; i++) p[i] = 'A' + i % 26;
    if (munmap(p + 4096, 4096)) return 101;
    char *end = p + 4096;
    int null = open("/dev/null", O_WRONLY);
    if (null < 0) return 102;

    /* The console: the bytes before the unmapped page, then -EFAULT, as
     * Linux answers for a regular file (`conwrite edges > FILE` on a Linux
     * host passes the console checks; a pipe or a terminal gives -EFAULT
     * for a chunk that faults at all). The 100 bytes written start at
     * 3996 % 26 = 18 -> 'S'. */
    say("console-straddle<");
    check("console straddling into an unmapped page", wr(1, end - 100, 200), 100);
    check("console from an unmapped page", wr(1, end, 10), -EFAULT);
    check("console from a kernel pointer", wr(1, (void *)0xffffffff80100000UL, 16), -EFAULT);
    check("console from the direct map", wr(1, (void *)0xffff888000100000UL, 16), -EFAULT);
    check("console with a huge length", wr(1, p, 1UL << 62), -EFAULT);
    check("console with a wrapping length", wr(1, p, -1UL), -EFAULT);
    /* In range for access_ok, but mapped only for its first page: the VMM
     * stops there, however long the rest. */
    say("console-long<");
    check("console with a length to the top of user space", wr(1, end - 26, 0x7ffffffff000UL - (unsigned long)(end - 26)), 26);
    check("console with length 0", wr(1, end, 0), 0);
    /* writev stops at the first short buffer: "after" must not follow. */
    struct { const void *base; unsigned long len; } iov[2] = {{end - 10, 20}, {"after", 5}};
    long r;
    say("console-writev<");
    __asm__ volatile("syscall" : "=a"(r) : "a"(20L), "D"(1L), "S"(iov), "d"(2L) : "rcx", "r11", "memory");
    check("console writev stopping at the hole", r, 10);

    /* The guest's /dev/null copies in with copy_user_generic (Linux's
     * reads nothing, so these fail on a Linux host): a fault part way must
     * count exactly the bytes before the bad page, whatever the alignment
     * (the qword loop's faulting qword may hold some of them). */
    static const unsigned long offs[] = {1, 3, 7, 8, 9, 96, 100, 4095};
    for (unsigned i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        char what[80];
        snprintf(what, sizeof what, "/dev/null straddling, %lu bytes before the hole", offs[i]);
        check(what, wr(null, end - offs[i], offs[i] + 50), offs[i]);
    }
    check("/dev/null straddling, 3 bytes before the hole, 6 long", wr(null, end - 3, 6), 3);
    check("/dev/null of exactly the mapped page, asked for two", wr(null, p, 8192), 4096);
    check("/dev/null from 8 bytes in, asked for two pages", wr(null, p + 8, 8192), 4088);
    check("/dev/null from an unmapped page", wr(null, end, 16), -EFAULT);
    check("/dev/null from a kernel pointer", wr(null, (void *)0xffffffff80100000UL, 16), -EFAULT);
    check("/dev/null whole page", wr(null, p, 4096), 4096);

    /* copy_to_user and copy_from_user carry data intact, whatever the
     * length's remainder mod 8: uname's 390-byte struct comes back whole. */
    struct {
        char f[6][65];
    } u;
    memset(&u, 0x5a, sizeof u);
    check("uname", syscall(SYS_uname, &u), 0);
    check("uname sysname", strcmp(u.f[0], "Linux"), 0);
    check("uname machine", strcmp(u.f[4], "x86_64"), 0);
    check("uname domainname", strcmp(u.f[5], "(none)"), 0);
    check("uname's last byte (the copy's byte tail)", u.f[5][64], 0);
    return failures;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "big")) return big(strtoul(argv[2], 0, 0));
    if (argc == 2 && !strcmp(argv[1], "edges")) return edges();
    say("usage: conwrite big N | conwrite edges\n");
    return 2;
}
