/* /init for a stock Linux guest (vmm run --linux K --init linux_init [ARGS]):
 * says hello through write(2) on the console Linux gave init, then ends
 * the machine as its first argument says:
 *   (none)      return 0: init exits, Linux panics ("Attempted to kill
 *               init!"), panic=-1 restarts, vmm exits 0
 *   exit N      return N: the same way, vmm exits N
 *   poweroff    reboot(RB_POWER_OFF): without ACPI Linux halts ("reboot:
 *               System halted"), vmm exits 0
 *   reboot      reboot(RB_AUTOBOOT): a restart without a panic, vmm exits 0
 *   getpid N    N getpid() calls first (something to trace) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char msg[128];
    int n = snprintf(msg, sizeof msg, "hello from init: pid %d, argc %d\n", (int)getpid(), argc);
    write(1, msg, n);
    if (argc >= 3 && strcmp(argv[1], "getpid") == 0) {
        long k = atol(argv[2]);
        for (long i = 0; i < k; i++) getpid();
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "exit") == 0) return atoi(argv[2]);
    if (argc >= 2 && strcmp(argv[1], "poweroff") == 0) reboot(RB_POWER_OFF);
    if (argc >= 2 && strcmp(argv[1], "reboot") == 0) reboot(RB_AUTOBOOT);
    return 0;
}
