/* Writes argv[1] bytes of 'x' and never a newline: the VMM must not hold
 * the whole "line" in memory. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    static char b[4096];
    long left = argc > 1 ? atol(argv[1]) : 0;
    memset(b, 'x', sizeof b);
    while (left > 0) {
        long n = write(1, b, left < (long)sizeof b ? left : (long)sizeof b);
        if (n <= 0) return 1;
        left -= n;
    }
    return 0;
}
