/* Heap errors for the hardened lane (tests/secure.rs). `errors MODE` first exercises valid
 * allocations of the sizes involved (printing "valid ok"), then commits the error MODE names
 * and prints "NOT CAUGHT" if it survives it. Under libhakozuna_secure.so every error must end
 * the process with SIGABRT after one line on stderr; `errors valid` must exit 0 under every
 * lane. */
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int global_object[8];

/* Keeps the compiler from reasoning about the pointers below (these are deliberate errors). */
static void *volatile sink;
static void *launder(void *p) {
    sink = p;
    return sink;
}

/* Valid use of every size class the errors touch, freed in and out of order. */
static void valid(void) {
    static const size_t sizes[] = {16, 24, 48, 100, 1000, 1552, 2600, 5000, 20000, 70000, 300000};
    void *keep[64];
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            for (int j = 0; j < 4; j++) {
                char *p = malloc(sizes[i]);
                if (!p) abort();
                memset(p, 0xA5, sizes[i]);
                keep[j] = p;
            }
            free(keep[2]);
            free(keep[0]);
            keep[0] = realloc(keep[1], sizes[i] * 2);
            free(keep[3]);
            free(keep[0]);
        }
    }
    /* A live block whose first words look like anything must free cleanly. */
    uint64_t *q = malloc(64);
    q[0] = (uint64_t)(uintptr_t)q;
    q[1] = ~(uint64_t)0;
    free(q);
    void *c = calloc(10, 100);
    free(c);
    puts("valid ok");
    fflush(stdout);
}

/* double_free_remote: the blocks main allocated, freed by another thread (remote frees,
 * buffered as one chain in that thread's remote ring), then the chain's head freed again. */
static char *remote_blocks[2];
static void *free_remote_twice(void *arg) {
    (void)arg;
    free(remote_blocks[0]);
    free(remote_blocks[1]);
    free(launder(remote_blocks[1]));
    return NULL;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "valid";
    valid();
    if (!strcmp(mode, "valid")) return 0;

    if (!strcmp(mode, "double_free")) {
        char *p = malloc(40);
        free(p);
        free(launder(p));
    } else if (!strcmp(mode, "double_free_later")) {
        /* Other frees and allocations of the class between the two frees. */
        char *p = malloc(200);
        char *a = malloc(200), *b = malloc(200);
        free(p);
        free(a);
        char *c = malloc(200);
        free(launder(p));
        free(b);
        free(c);
    } else if (!strcmp(mode, "double_free_remote")) {
        remote_blocks[0] = malloc(336);
        remote_blocks[1] = malloc(336);
        pthread_t t;
        if (pthread_create(&t, NULL, free_remote_twice, NULL)) abort();
        pthread_join(t, NULL);
    } else if (!strcmp(mode, "never_handed_out")) {
        /* A class nothing above used: its first malloc carves a fresh run into the thread's
         * bin; free the next block, which the bin still holds. */
        char *p = malloc(272);
        free(launder(p + 272));
    } else if (!strcmp(mode, "never_carved")) {
        /* 80-byte objects: 51 to a page, 32 carved by the first refill; free one the carve has
         * not reached. */
        char *p = malloc(80);
        free(launder(p + 80 * 45));
    } else if (!strcmp(mode, "misaligned")) {
        char *p = malloc(48);
        free(launder(p + 1));
    } else if (!strcmp(mode, "double_free_medium")) {
        char *p = malloc(20000);
        free(p);
        free(launder(p));
    } else if (!strcmp(mode, "double_free_large")) {
        char *p = malloc(1 << 20);
        free(p);
        free(launder(p));
    } else if (!strcmp(mode, "interior")) {
        char *p = malloc(100);
        free(launder(p + 16));
    } else if (!strcmp(mode, "interior_multipage")) {
        /* 1,552-byte objects: two-page runs, objects across the page boundary. */
        char *p[8];
        for (int i = 0; i < 8; i++) p[i] = malloc(1552);
        free(launder(p[3] + 32));
    } else if (!strcmp(mode, "interior_medium")) {
        char *p = malloc(20000);
        free(launder(p + 4096));
    } else if (!strcmp(mode, "interior_large")) {
        char *p = malloc(1 << 20);
        free(launder(p + 4096));
    } else if (!strcmp(mode, "stack")) {
        int local[8];
        free(launder(local));
    } else if (!strcmp(mode, "global")) {
        free(launder(global_object));
    } else if (!strcmp(mode, "freed_run")) {
        /* Medium blocks freed past what the heap keeps, and trimmed: their runs go back to
         * their segments, whose pages then hold no block (usable size 0 here). */
        enum { N = 400 };
        static char *p[N];
        for (int i = 0; i < N; i++) p[i] = malloc(100000);
        for (int i = 0; i < N; i++) free(p[i]);
        malloc_trim(0);
        int gone = -1;
        for (int i = 0; i < N && gone < 0; i++)
            if (malloc_usable_size(launder(p[i])) == 0) gone = i;
        if (gone < 0) {
            puts("no run went back to its segment");
            return 3;
        }
        free(launder(p[gone]));
    } else if (!strcmp(mode, "uaf_write")) {
        /* A use-after-free write over the free list's link, then allocations that pop it. */
        uint64_t *p = malloc(64);
        free(p);
        ((volatile uint64_t *)launder(p))[0] = 0x4141414141414141ull;
        void *a = malloc(64);
        void *b = malloc(64);
        printf("got %p %p\n", a, b);
    } else if (!strcmp(mode, "uaf_forge")) {
        /* Overwrite the link with a plausible pointer (another live block of the class). */
        uint64_t *live = malloc(64);
        uint64_t *p = malloc(64);
        free(p);
        ((volatile uint64_t *)launder(p))[0] = (uint64_t)(uintptr_t)live;
        void *a = malloc(64);
        void *b = malloc(64);
        printf("got %p %p (live %p)\n", a, b, (void *)live);
    } else if (!strcmp(mode, "overflow")) {
        /* A heap overflow out of one block over the link of the free block after it. */
        char *a[16];
        for (int i = 0; i < 16; i++) a[i] = malloc(80);
        int i = 0;
        while (i < 15 && a[i + 1] != a[i] + 80) i++;
        if (i == 15) {
            puts("no two adjacent blocks");
            return 3;
        }
        free(a[i + 1]);
        memset(launder(a[i]), 'A', 88);
        void *x = malloc(80);
        void *y = malloc(80);
        printf("got %p %p\n", x, y);
    } else if (!strcmp(mode, "zero_check")) {
        /* Not an error to catch: reports whether a freed block's bytes past its first two
         * words (the free list's) were zeroed (HAKOZUNA_ZERO_ON_FREE=1). */
        unsigned char *p = malloc(256);
        memset(launder(p), 0xAB, 256); /* laundered: a store before free is otherwise dead */
        free(p);
        volatile unsigned char *q = launder(p);
        int zero = 1;
        for (int i = 16; i < 256; i++) zero &= q[i] == 0;
        puts(zero ? "zeroed" : "not zeroed");
        return 0;
    } else if (!strcmp(mode, "realloc_invalid")) {
        int local[8];
        void *r = realloc(launder(local), 100);
        printf("realloc returned %p\n", r);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    puts("NOT CAUGHT");
    return 0;
}
