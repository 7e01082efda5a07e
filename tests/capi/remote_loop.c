/* Remote frees in a loop, for tests/fast_path.rs: the main thread allocates N blocks of 32
 * bytes, then a second thread (whose cache is activated by a malloc of its own first) frees
 * them all. Every free is of another heap's block of one class, so it takes `free`'s remote
 * branch and the remote buffer's push; under callgrind the instructions of `free` and of the
 * function behind its remote branch, divided by N, are the length of that path (the chains
 * handed over every 32 frees are counted elsewhere, out of line). */
#include <pthread.h>
#include <stdlib.h>

static void **blocks;
static long n;

static void *consumer(void *arg) {
    (void)arg;
    free(malloc(64));
    for (long i = 0; i < n; i++)
        free(blocks[i]);
    return NULL;
}

int main(int argc, char **argv) {
    n = argc > 1 ? atol(argv[1]) : 1000000;
    blocks = malloc(n * sizeof *blocks);
    if (!blocks)
        return 1;
    for (long i = 0; i < n; i++) {
        char *p = malloc(32);
        if (!p)
            return 1;
        p[0] = 1;
        blocks[i] = p;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, consumer, NULL) || pthread_join(t, NULL))
        return 1;
    free(blocks);
    return 0;
}
