/* Asks for a name with a prompt that has no newline, as a shell's does, then
 * waits for the answer on the console and greets. */
#include <unistd.h>

int main(void) {
    char b[128];
    write(1, "name? ", 6);
    long n = read(0, b, sizeof b);
    if (n <= 0) return 1;
    write(1, "hello ", 6);
    write(1, b, n);
    return 0;
}
