/* Reads one line from the console (the guest's serial input) and writes it back. */
#include <unistd.h>

int main(void) {
    char b[128];
    long n = read(0, b, sizeof b);
    if (n <= 0) return 1;
    write(1, "echo: ", 6);
    write(1, b, n);
    return 0;
}
