/* Loads a hakozuna library with dlopen (no LD_PRELOAD) and allocates through its dlsym'd
 * malloc, calloc, realloc and free from several threads: threads created before the library
 * was loaded (glibc must initialise their static TLS for it), the main thread, and threads
 * created after; blocks are freed by threads other than their allocators and threads exit
 * (the library's thread-exit destructor runs) while others still allocate. The late threads
 * also own a pthread key created after the library's, whose destructor runs after the
 * library's and allocates and frees (and frees a block the thread allocated before it
 * exited), in two destructor rounds. Then dlclose (the library is NODELETE, so it stays) and
 * a second round.
 *
 * usage: dlopen_threads /path/to/libhakozuna*.so
 * Prints "dlopen ok" and exits 0 on success; any failure prints a reason and exits 1. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void *(*malloc_fn)(size_t);
typedef void *(*calloc_fn)(size_t, size_t);
typedef void *(*realloc_fn)(void *, size_t);
typedef void (*free_fn)(void *);
typedef size_t (*usable_fn)(void *);

static malloc_fn hz_malloc;
static calloc_fn hz_calloc;
static realloc_fn hz_realloc;
static free_fn hz_free;
static usable_fn hz_usable;

#define EARLY 3   /* threads alive before dlopen */
#define LATE 4    /* threads created after */
#define ROUNDS 2000
#define SLOTS 64

static pthread_barrier_t loaded;

static void fail(const char *what, long a, long b) {
    fprintf(stderr, "FAIL: %s (%ld, %ld)\n", what, a, b);
    exit(1);
}

/* A block handed from one thread to another: freed by the receiver. */
static void *mailbox[EARLY + LATE + 1][SLOTS];
static pthread_mutex_t mail_lock = PTHREAD_MUTEX_INITIALIZER;

static void work(int id) {
    void *mine[SLOTS] = {0};
    unsigned seed = 12345u + (unsigned)id * 7919u;
    for (int r = 0; r < ROUNDS; r++) {
        seed = seed * 1103515245u + 12345u;
        int i = (int)((seed >> 8) % SLOTS);
        size_t sz = 1 + (seed >> 12) % 3000;
        if (mine[i]) {
            /* Check the fill of the previous block, then realloc or free it. */
            unsigned char *p = mine[i];
            if (p[0] != (unsigned char)id) fail("block contents lost", id, p[0]);
            if (r % 3 == 0) {
                unsigned char *q = hz_realloc(p, sz * 2);
                if (!q) fail("realloc returned NULL", id, (long)sz);
                if (q[0] != (unsigned char)id) fail("realloc lost contents", id, q[0]);
                mine[i] = q;
                continue;
            }
            hz_free(p);
            mine[i] = NULL;
        }
        if (r % 5 == 0) {
            unsigned char *p = hz_calloc(sz, 1);
            if (!p) fail("calloc returned NULL", id, (long)sz);
            for (size_t k = 0; k < sz; k++)
                if (p[k]) fail("calloc block not zeroed", id, (long)k);
            p[0] = (unsigned char)id;
            mine[i] = p;
        } else {
            unsigned char *p = hz_malloc(sz);
            if (!p) fail("malloc returned NULL", id, (long)sz);
            if (hz_usable(p) < sz) fail("usable size below the request", id, (long)sz);
            memset(p, id, sz);
            mine[i] = p;
        }
        if (r % 97 == 0) {
            /* Cross-thread: post one block to the next thread's mailbox, free what we got. */
            int to = (id + 1) % (EARLY + LATE + 1);
            pthread_mutex_lock(&mail_lock);
            void *old = mailbox[to][i];
            mailbox[to][i] = hz_malloc(48);
            void *got[SLOTS];
            memcpy(got, mailbox[id], sizeof got);
            memset(mailbox[id], 0, sizeof mailbox[id]);
            pthread_mutex_unlock(&mail_lock);
            hz_free(old);
            for (int k = 0; k < SLOTS; k++) hz_free(got[k]);
        }
    }
    for (int i = 0; i < SLOTS; i++) hz_free(mine[i]);
}

static void *early(void *arg) {
    int id = (int)(intptr_t)arg;
    pthread_barrier_wait(&loaded); /* the main thread loads the library meanwhile */
    work(id);
    return NULL;
}

/* A key created after the library's: its destructor runs after the library retired the
 * thread's cache, and allocates and frees there. It re-arms itself once (a second round). */
static pthread_key_t late_key;
static int late_dtor_runs;

static void late_dtor(void *v) {
    unsigned char *kept = v;
    if (kept[0] != 0xAB) fail("kept block lost its contents", kept[0], 0);
    for (int i = 0; i < 100; i++) {
        unsigned char *p = hz_malloc(16 + (size_t)i * 40);
        if (!p) fail("malloc in a key destructor returned NULL", i, 0);
        memset(p, i, 16 + (size_t)i * 40);
        void *q = hz_realloc(p, 5000);
        if (!q) fail("realloc in a key destructor returned NULL", i, 0);
        hz_free(q);
    }
    int run = __atomic_add_fetch(&late_dtor_runs, 1, __ATOMIC_RELAXED);
    (void)run;
    if (kept[1] == 0) {
        kept[1] = 1;
        pthread_setspecific(late_key, kept); /* again in the next round */
    } else {
        hz_free(kept);
    }
}

static void *late(void *arg) {
    unsigned char *kept = hz_calloc(1, 100);
    if (!kept) fail("calloc returned NULL", 0, 0);
    kept[0] = 0xAB;
    pthread_setspecific(late_key, kept);
    work((int)(intptr_t)arg);
    return NULL;
}

static void *load(const char *path) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "FAIL: dlopen: %s\n", dlerror());
        exit(1);
    }
    hz_malloc = (malloc_fn)dlsym(h, "malloc");
    hz_calloc = (calloc_fn)dlsym(h, "calloc");
    hz_realloc = (realloc_fn)dlsym(h, "realloc");
    hz_free = (free_fn)dlsym(h, "free");
    hz_usable = (usable_fn)dlsym(h, "malloc_usable_size");
    if (!hz_malloc || !hz_calloc || !hz_realloc || !hz_free || !hz_usable)
        fail("dlsym", 0, 0);
    /* The symbols must be the library's own, not glibc's. */
    Dl_info info;
    if (!dladdr((void *)hz_malloc, &info) || !strstr(info.dli_fname, "hakozuna"))
        fail("dlsym'd malloc is not the library's", 0, 0);
    if (hz_malloc == (malloc_fn)malloc) fail("dlsym'd malloc is glibc's", 0, 0);
    return h;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s lib.so\n", argv[0]);
        return 2;
    }
    pthread_t t[EARLY + LATE];
    pthread_barrier_init(&loaded, NULL, EARLY + 1);
    for (int i = 0; i < EARLY; i++)
        if (pthread_create(&t[i], NULL, early, (void *)(intptr_t)(i + 1))) fail("pthread_create", i, 0);

    void *h = load(argv[1]);
    if (pthread_key_create(&late_key, late_dtor)) fail("pthread_key_create", 0, 0);
    pthread_barrier_wait(&loaded);
    for (int i = EARLY; i < EARLY + LATE; i++)
        if (pthread_create(&t[i], NULL, late, (void *)(intptr_t)(i + 1))) fail("pthread_create", i, 0);
    work(0);
    for (int i = 0; i < EARLY + LATE; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < EARLY + LATE + 1; i++)
        for (int k = 0; k < SLOTS; k++) hz_free(mailbox[i][k]);
    memset(mailbox, 0, sizeof mailbox);

    /* dlclose: the library is NODELETE, so its code stays for the thread-exit destructors of
     * the threads below (which allocate through the pointers we still hold). */
    dlclose(h);
    for (int i = 0; i < LATE; i++)
        if (pthread_create(&t[i], NULL, late, (void *)(intptr_t)(i + 1))) fail("pthread_create", i, 0);
    for (int i = 0; i < LATE; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < EARLY + LATE + 1; i++)
        for (int k = 0; k < SLOTS; k++) hz_free(mailbox[i][k]);
    /* Two destructor rounds per late thread, two batches of late threads. */
    if (__atomic_load_n(&late_dtor_runs, __ATOMIC_RELAXED) != 2 * 2 * LATE)
        fail("key destructors did not run", late_dtor_runs, 2 * 2 * LATE);
    puts("dlopen ok");
    return 0;
}
