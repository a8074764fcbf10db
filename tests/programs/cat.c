/* Copies the console's input to its output until read() returns 0 (end of
 * file), as cat(1) does. Exit 0 at end of file, 2 if read failed. */
#include <unistd.h>

int main(void) {
    char b[4096];
    long n;
    while ((n = read(0, b, sizeof b)) > 0)
        if (write(1, b, n) != n) return 3;
    return n < 0 ? 2 : 0;
}
