/* The vDSO: clock_gettime and gettimeofday without entering the kernel.
 *
 * The kernel maps this shared object into every process (AT_SYSINFO_EHDR in
 * the auxiliary vector, as Linux does) next to a read-only data page, the
 * vvar page, where it published the TSC's parameters at boot. A libc that
 * knows the vDSO (musl, glibc) calls these functions instead of `syscall`:
 * reading the clock is then rdtsc, a multiply and a shift, all in ring 3.
 *
 * Built by vmm/build.rs: gcc -shared -nostdlib -fPIC, with VVAR_ADDR from
 * vmm_abi::layout so the address is written down once. */

typedef unsigned long u64;
typedef long i64;

/* Layout of the vvar page: keep in step with guest/src/time.rs (Vvar). */
struct vvar {
    u64 boot_tsc;     /* TSC at boot */
    u64 mult;         /* nanoseconds per tick, << 32 */
    u64 boot_wall_ns; /* host wall clock at boot, ns since the epoch */
};

struct timespec { i64 tv_sec; i64 tv_nsec; };
struct timeval { i64 tv_sec; i64 tv_usec; };

#define VVAR ((const volatile struct vvar *)VVAR_ADDR)

static inline u64 rdtsc(void) {
    unsigned lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

static u64 monotonic_ns(void) {
    u64 ticks = rdtsc() - VVAR->boot_tsc;
    return (u64)(((unsigned __int128)ticks * VVAR->mult) >> 32);
}

static long fallback(long nr, long a, long b) {
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b) : "rcx", "r11", "memory");
    return ret;
}

int __vdso_clock_gettime(int clock, struct timespec *ts) {
    u64 ns;
    switch (clock) {
    case 0: case 5:                 /* CLOCK_REALTIME, _COARSE */
        ns = VVAR->boot_wall_ns + monotonic_ns();
        break;
    case 1: case 4: case 6: case 7: /* MONOTONIC, _RAW, _COARSE, BOOTTIME */
        ns = monotonic_ns();
        break;
    default:
        return (int)fallback(228, clock, (long)ts);
    }
    ts->tv_sec = (i64)(ns / 1000000000);
    ts->tv_nsec = (i64)(ns % 1000000000);
    return 0;
}

int __vdso_gettimeofday(struct timeval *tv, void *tz) {
    (void)tz;
    if (tv) {
        u64 ns = VVAR->boot_wall_ns + monotonic_ns();
        tv->tv_sec = (i64)(ns / 1000000000);
        tv->tv_usec = (i64)((ns % 1000000000) / 1000);
    }
    return 0;
}

int clock_gettime(int, struct timespec *) __attribute__((weak, alias("__vdso_clock_gettime")));
int gettimeofday(struct timeval *, void *) __attribute__((weak, alias("__vdso_gettimeofday")));
