/* Interrupts seen from ring 3 (the LAPIC timer and IRQ 4):
 *   timer yield        spawn `timer spin` (a ring-3 loop with no system
 *                      call), sched_yield(), and exit 0: we only get the CPU
 *                      back if the timer preempts the spinner
 *   timer spin         (child) spin forever
 *   timer sleep MS     nanosleep(MS) and clock_nanosleep(MS), each timed
 *                      with clock_gettime (the vDSO); exit 0 if both took
 *                      MS +-20%
 *   timer reap         setrlimit(RLIMIT_CPU, 1 s), spawn `timer spin`, wait
 *                      for it: exit 0 if it got SIGXCPU
 * Prints one line per check. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <sched.h>
#include <unistd.h>

#define SYS_spawn 500

/* The spinner inherits RLIMIT_CPU: 1 s, as `ulimit -t 1`. */
static long spawn_spinner(const char *me) {
    char *argv[] = {(char *)me, "spin", NULL};
    long r = syscall(SYS_spawn, me, argv);
    return r < 0 ? -errno : r;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int within(const char *what, double took, long ms) {
    int ok = took >= ms * 0.8 && took <= ms * 1.2;
    printf("timer: %s(%ld ms) took %.1f ms: %s\n", what, ms, took, ok ? "ok" : "OUT OF RANGE");
    return ok;
}

int main(int argc, char **argv) {
    const char *cmd = argc > 1 ? argv[1] : "";
    if (!strcmp(cmd, "spin")) {
        for (;;) __asm__ volatile("" ::: "memory");
    }
    if (!strcmp(cmd, "yield")) {
        long pid = spawn_spinner(argv[0]);
        if (pid < 0) {
            printf("timer: spawn failed: %ld\n", pid);
            return 1;
        }
        sched_yield();
        printf("timer: back from sched_yield with a spinning child\n");
        return 0;
    }
    if (!strcmp(cmd, "reap")) {
        struct rlimit one = {1, 1};
        if (setrlimit(RLIMIT_CPU, &one) != 0) {
            printf("timer: setrlimit: errno %d\n", errno);
            return 1;
        }
        long pid = spawn_spinner(argv[0]);
        int st = 0;
        if (pid < 0 || waitpid((pid_t)pid, &st, 0) != pid) return 1;
        int ok = WIFSIGNALED(st) && WTERMSIG(st) == SIGXCPU;
        printf("timer: the spinner ended with status %#x (%s)\n", st, ok ? "SIGXCPU" : "unexpected");
        return ok ? 0 : 1;
    }
    if (!strcmp(cmd, "sleep") && argc > 2) {
        long ms = atol(argv[2]);
        struct timespec req = {ms / 1000, (ms % 1000) * 1000000L};
        double t0 = now_ms();
        if (nanosleep(&req, NULL) != 0) return 2;
        int ok = within("nanosleep", now_ms() - t0, ms);
        t0 = now_ms();
        if (clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL) != 0) return 2;
        ok &= within("clock_nanosleep", now_ms() - t0, ms);
        struct timespec bad = {0, 1000000000L};
        if (nanosleep(&bad, NULL) != -1 || errno != EINVAL) {
            printf("timer: nanosleep accepted tv_nsec = 1e9\n");
            ok = 0;
        }
        return ok ? 0 : 1;
    }
    printf("usage: timer yield|spin|reap|sleep MS\n");
    return 2;
}
