/* Prints argc and every argument in brackets, so empty ones show. */
#include <stdio.h>

int main(int argc, char **argv) {
    printf("argc=%d", argc);
    for (int i = 0; i < argc; i++) printf(" [%s]", argv[i]);
    printf("\n");
    return 0;
}
