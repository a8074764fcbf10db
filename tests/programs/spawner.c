/* The guest kernel's own spawn (500) under load:
 *   spawner loop N [P]   spawn and reap P (default `hello`) N times; every
 *                        spawn must work. P = `self`: this program, silent
 *   spawner exit         (child) exit 0 at once
 *   spawner hog          (child) map most of memory, touch it, exit
 *   spawner hog-then N   run `spawner hog`, then `loop N`: memory a child used
 *                        and freed must serve new processes (kernel stacks too)
 *   spawner args         spawn with 256 and 257 arguments and over-long ones:
 *                        all of the first, -E2BIG for the others
 * Prints one line per check and exits 0 when all hold. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SYS_spawn 500

/* The new pid, or -errno (musl's syscall() returns -1 and sets errno). */
static long spawn(const char *path, char *const argv[]) {
    long r = syscall(SYS_spawn, path, argv);
    return r < 0 ? -errno : r;
}

static int run(const char *path, char *const argv[]) {
    long pid = spawn(path, argv);
    if (pid < 0) return (int)pid;
    int st = 0;
    if (waitpid((pid_t)pid, &st, 0) != pid) return -1000;
    return st;
}

static int loop(const char *me, long n, const char *prog) {
    char *argv[] = {(char *)prog, NULL, NULL};
    if (!strcmp(prog, "self")) {
        argv[0] = (char *)me;
        argv[1] = "exit";
    }
    for (long i = 0; i < n; i++) {
        int st = run(argv[0], argv);
        if (st != 0) {
            printf("%s: spawn %ld of %ld failed: %d\n", me, i + 1, n, st);
            return 1;
        }
    }
    printf("%s: %ld spawns, all reaped\n", me, n);
    return 0;
}

static int hog(void) {
    /* Grab memory 1 MiB at a time until the kernel says no, touching it all. */
    long mib = 0;
    for (;;) {
        char *p = mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) break;
        memset(p, 1, 1 << 20);
        mib++;
    }
    printf("hog: held %ld MiB\n", mib);
    return mib > 0 ? 0 : 1;
}

static int args(const char *me) {
    static char *argv[300];
    for (int i = 0; i < 299; i++) argv[i] = "a";
    argv[0] = "hello";
    argv[256] = NULL;
    int ok = run("hello", argv) == 0;
    argv[256] = "a";
    argv[257] = NULL;
    ok &= spawn("hello", argv) == -7; /* E2BIG */
    static char big[5000];
    memset(big, 'b', sizeof big - 1);
    char *bigv[] = {"hello", big, NULL};
    ok &= spawn("hello", bigv) == -7;
    char *emptyv[] = {"hello", "", "", NULL};
    ok &= run("hello", emptyv) == 0;
    printf("%s: 256 args spawn, 257 and 5000-byte ones get -E2BIG: %s\n", me, ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc >= 2 && !strcmp(argv[1], "hog")) return hog();
    if (argc >= 2 && !strcmp(argv[1], "exit")) return 0;
    if (argc >= 3 && !strcmp(argv[1], "loop")) return loop(argv[0], atol(argv[2]), argc > 3 ? argv[3] : "hello");
    if (argc >= 2 && !strcmp(argv[1], "args")) return args(argv[0]);
    if (argc >= 3 && !strcmp(argv[1], "hog-then")) {
        char *hogv[] = {argv[0], "hog", NULL};
        int st = run(argv[0], hogv);
        if (st != 0) {
            printf("%s: the hog failed: %d\n", argv[0], st);
            return 1;
        }
        return loop(argv[0], atol(argv[2]), "hello");
    }
    fprintf(stderr, "usage: spawner loop N [PROG|self] | exit | hog | hog-then N | args\n");
    return 2;
}
