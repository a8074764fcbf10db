/* An ordinary libc program (musl-gcc -static): printf through stdio,
 * gettimeofday, and syscall(2) — including this kernel's own syscount. */
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    struct timeval tv;
    if (gettimeofday(&tv, 0) != 0) return 2;
    printf("musl: printf works, argc=%d argv[1]=%s\n", argc, argc > 1 ? argv[1] : "(none)");
    printf("musl: gettimeofday %s\n", tv.tv_sec > 1600000000 ? "plausible" : "implausible");
    long pid = syscall(SYS_getpid);
    printf("musl: getpid=%ld getppid=%ld\n", pid, (long)getppid());
    for (int i = 0; i < 3; i++) syscall(SYS_getpid);
    printf("musl: syscount(getpid)=%ld\n", syscall(501, SYS_getpid));
    fflush(stdout);
    return argc > 2 ? 7 : 0;
}
