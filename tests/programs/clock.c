/* Reads the clock through the vDSO: musl finds __vdso_clock_gettime through
 * AT_SYSINFO_EHDR. The kernel's syscount(501) then shows that no
 * clock_gettime (228) or gettimeofday (96) system call was made. */
#include <stdio.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    struct timespec a, b;
    struct timeval tv;
    clock_gettime(CLOCK_MONOTONIC, &a);
    clock_gettime(CLOCK_MONOTONIC, &b);
    gettimeofday(&tv, 0);
    long before = syscall(501, SYS_clock_gettime) + syscall(501, SYS_gettimeofday);
    printf("vdso: AT_SYSINFO_EHDR %#lx\n", getauxval(AT_SYSINFO_EHDR));
    printf("vdso: monotonic %s, realtime %s\n",
           (b.tv_sec > a.tv_sec || (b.tv_sec == a.tv_sec && b.tv_nsec >= a.tv_nsec)) ? "non-decreasing" : "WENT BACK",
           tv.tv_sec > 1600000000 ? "plausible" : "implausible");
    printf("vdso: clock system calls made: %ld\n", before);
    return before == 0 ? 0 : 1;
}
