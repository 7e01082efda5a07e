/* The malloc/free hit paths in a loop, for tests/fast_path.rs: after a warm-up, N times
 * malloc(32) (a pop from the thread bin) and free of the same block (a push onto the bin of the
 * calling thread's own heap, which never overflows here). Under callgrind each function's own
 * instruction count divided by N is the length of its hit path. */
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    void *volatile keep[64];
    /* Warm-up: activate the thread cache and fill the bin past one refill. */
    for (int i = 0; i < 64; i++)
        keep[i] = malloc(32);
    for (int i = 0; i < 64; i++)
        free(keep[i]);
    for (long i = 0; i < n; i++) {
        char *volatile p = malloc(32);
        p[0] = 1;
        free(p);
    }
    return 0;
}
