/* Several CPUs, seen from ring 3:
 *   smp cpus          print sysconf(_SC_NPROCESSORS_ONLN) and sched_getcpu()
 *                     as musl computes them (sched_getaffinity, getcpu)
 *   smp abuse         sched_getaffinity and getcpu with bad sizes, kernel
 *                     pointers, unmapped buffers and bad pids: Linux's errors
 *                     (it passes on the host's Linux too)
 *   smp churn R       R rounds of mmap, write, sched_yield, munmap, then
 *                     mmap(MAP_FIXED) at the same address, which must read
 *                     zeros: a CPU that kept the old page in its TLB would
 *                     show the old bytes (exit 1)
 *   smp mm N R        spawn N children running `churn R`, churn R itself,
 *                     and reap them: exit 0 if every process stayed clean
 *   smp par N M       spawn N children that each add up M million numbers
 *                     in ring 3, wait for them, print the wall time (a
 *                     measurement: several CPUs run them at once)
 * Prints one line per check. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SYS_spawn 500

static int failures;

static void check(const char *what, long got, long want) {
    int ok = got == want;
    printf("smp: %s = %ld%s\n", what, got, ok ? "" : " (WRONG)");
    if (!ok) {
        printf("smp:   expected %ld\n", want);
        failures++;
    }
}

/* The raw call: -errno on failure (no libc wrapper in between). */
static long affinity(long pid, unsigned long len, void *mask) {
    long r = syscall(SYS_sched_getaffinity, pid, len, mask);
    return r < 0 ? -errno : r;
}

static long getcpu(void *cpu, void *node) {
    long r = syscall(SYS_getcpu, cpu, node, NULL);
    return r < 0 ? -errno : r;
}

static int abuse(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t mask[16] = {0};
    void *kernel = (void *)0xffff888000001000UL;
    void *unmapped = (void *)0x10000UL;
    /* Linux returns its cpumask_size(): whole longs, how many depends on
     * its NR_CPUS (8 bytes here, for up to 64 CPUs). */
    long size = affinity(0, sizeof mask, mask);
    check("affinity(0, 128, buf) is whole longs", size > 0 && size % 8 == 0, 1);
    check("its bits", __builtin_popcountll(mask[0]), n);
    check("affinity(getpid(), 8, buf)", affinity(getpid(), 8, mask), 8);
    check("affinity(0, 0, buf)", affinity(0, 0, mask), -EINVAL);
    check("affinity(0, 4, buf)", affinity(0, 4, mask), -EINVAL);
    check("affinity(0, 12, buf)", affinity(0, 12, mask), -EINVAL);
    /* len is an unsigned int: 2^32 + 8 is 8. */
    check("affinity(0, 2^32 + 8, buf)", affinity(0, (1UL << 32) + 8, mask), 8);
    /* Linux checks len * 8 >= CPUs in 32 bits: 2^31 * 8 wraps to 0. */
    check("affinity(0, 2^31, buf)", affinity(0, 1UL << 31, mask), -EINVAL);
    check("affinity(0, 8, kernel)", affinity(0, 8, kernel), -EFAULT);
    check("affinity(0, 8, unmapped)", affinity(0, 8, unmapped), -EFAULT);
    check("affinity(0, 8, NULL)", affinity(0, 8, NULL), -EFAULT);
    check("affinity(0, 8, last byte of the stack's page)",
          affinity(0, 8, (char *)0x7ffffffff000UL - 4), -EFAULT);
    check("affinity(99999, 8, buf)", affinity(99999, 8, mask), -ESRCH);
    check("affinity(-1, 8, buf)", affinity(-1, 8, mask), -ESRCH);
    unsigned cpu = 12345, node = 12345;
    check("getcpu(&cpu, &node)", getcpu(&cpu, &node), 0);
    check("cpu < online", cpu < (unsigned)n, 1);
    check("node", node, 0);
    check("getcpu(NULL, NULL)", getcpu(NULL, NULL), 0);
    check("getcpu(kernel, NULL)", getcpu(kernel, NULL), -EFAULT);
    check("getcpu(NULL, kernel)", getcpu(NULL, kernel), -EFAULT);
    check("getcpu(unmapped, &node)", getcpu(unmapped, &node), -EFAULT);
    printf("smp: abuse: %s\n", failures ? "FAILED" : "all as Linux");
    return failures ? 1 : 0;
}

static int churn(long rounds, unsigned seed) {
    for (long r = 0; r < rounds; r++) {
        size_t pages = 1 + (size_t)(r + seed) % 8, len = pages * 4096;
        unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            printf("smp: churn %u: mmap failed: %d\n", seed, errno);
            return 1;
        }
        for (size_t i = 0; i < len; i += 512) p[i] = (unsigned char)(seed + r + i / 512 + 1);
        sched_yield(); /* let another CPU take us: its TLB learns these pages */
        for (size_t i = 0; i < len; i += 512) {
            if (p[i] != (unsigned char)(seed + r + i / 512 + 1)) {
                printf("smp: churn %u: round %ld: byte %zu changed\n", seed, r, i);
                return 1;
            }
        }
        if (munmap(p, len) != 0) {
            printf("smp: churn %u: munmap failed: %d\n", seed, errno);
            return 1;
        }
        sched_yield();
        unsigned char *q = mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (q != p) {
            printf("smp: churn %u: mmap(MAP_FIXED) failed: %d\n", seed, errno);
            return 1;
        }
        for (size_t i = 0; i < len; i += 512) {
            if (q[i] != 0) {
                printf("smp: churn %u: round %ld: a fresh page shows old byte %#x at %zu (stale TLB)\n", seed,
                       r, q[i], i);
                return 1;
            }
        }
        munmap(q, len);
    }
    return 0;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    const char *cmd = argc > 1 ? argv[1] : "";
    if (!strcmp(cmd, "work") && argc > 2) {
        volatile unsigned long sum = 0;
        for (long i = 0; i < atol(argv[2]) * 1000000L; i++) sum += (unsigned long)i;
        return 0;
    }
    if (!strcmp(cmd, "par") && argc > 3) {
        long n = atol(argv[2]), pids[32];
        if (n > 30) n = 30;
        double t0 = now_ms();
        for (long i = 0; i < n; i++) {
            char *args[] = {argv[0], "work", argv[3], NULL};
            pids[i] = syscall(SYS_spawn, argv[0], args);
        }
        int bad = 0;
        for (long i = 0; i < n; i++) {
            int st = 0;
            if (pids[i] < 0 || waitpid((pid_t)pids[i], &st, 0) != pids[i] || st != 0) bad++;
        }
        printf("smp: %ld processes x %s million additions: %.0f ms%s\n", n, argv[3], now_ms() - t0,
               bad ? " (FAILED)" : "");
        return bad ? 1 : 0;
    }
    if (!strcmp(cmd, "cpus")) {
        printf("smp: online %ld, sched_getcpu %d\n", sysconf(_SC_NPROCESSORS_ONLN), sched_getcpu());
        return 0;
    }
    if (!strcmp(cmd, "abuse")) return abuse();
    if (!strcmp(cmd, "churn") && argc > 3) return churn(atol(argv[2]), (unsigned)atol(argv[3]));
    if (!strcmp(cmd, "mm") && argc > 3) {
        long n = atol(argv[2]);
        char seed[16];
        long pids[32];
        if (n > 30) n = 30;
        for (long i = 0; i < n; i++) {
            snprintf(seed, sizeof seed, "%ld", i + 1);
            char *args[] = {argv[0], "churn", argv[3], seed, NULL};
            pids[i] = syscall(SYS_spawn, argv[0], args);
            if (pids[i] < 0) {
                printf("smp: spawn failed: %d\n", errno);
                return 1;
            }
        }
        int bad = churn(atol(argv[3]), 0);
        for (long i = 0; i < n; i++) {
            int st = 0;
            if (waitpid((pid_t)pids[i], &st, 0) != pids[i] || st != 0) bad++;
        }
        printf("smp: %ld processes x %s rounds of mmap/munmap: %s\n", n + 1, argv[3], bad ? "FAILED" : "all clean");
        return bad ? 1 : 0;
    }
    printf("usage: smp cpus|abuse|churn R SEED|mm N R\n");
    return 2;
}
