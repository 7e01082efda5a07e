/* Memory that exited threads leave behind goes back to the OS (design.md §10), run under
 * LD_PRELOAD by tests/preload.rs:
 *   memory_return trim    a thread allocates 96 MiB of medium blocks, frees 7 in 8 and exits;
 *                         malloc_trim(0) on another thread must return most of it.
 *   memory_return decay   the same, then no trim: with HAKOZUNA_DECAY_MS=50, threads that
 *                         start and exit afterwards run the released heap's decay, which must
 *                         return most of it.
 *   memory_return churn   200 generations of 4 threads, each allocating about 4 MiB and
 *                         handing a quarter to the next generation: peak RSS stays bounded.
 *   memory_return small-trim    4 threads allocate 128 MiB of small blocks (16 B – 14 KiB),
 *                         free them all (half on another thread) and exit; malloc_trim(0) on
 *                         the main thread must return them (whole small runs back to their
 *                         segments, empty segments to the arena, purged).
 *   memory_return small-main-frees  the same burst, but the threads exit with their blocks
 *                         live and the main thread frees them all, then calls malloc_trim(0).
 *   memory_return small-idle    the same burst, then no trim: past the decay interval, one
 *                         slow-path malloc on the main thread must give the released heaps
 *                         back.
 *   memory_return burst-exit    4 threads allocate 64 MiB each of mixed sizes (16 B – 256 KiB),
 *                         free them all (half on another thread) and exit; with the default
 *                         decay interval, no malloc_trim and no background thread, RSS right
 *                         after the joins must be back near the start: a heap that went
 *                         through a burst is given back at its thread's exit, and what the
 *                         later threads flush into it at theirs is taken by the exits after.
 *   memory_return sweep-stress  correctness while sweeps run constantly (HAKOZUNA_DECAY_MS=0):
 *                         threads of several generations allocate, fill, hand over, verify and
 *                         free small blocks while one of them trims; calloc reads zero; once
 *                         all have exited, malloc_trim(0) returns what they used.
 * Prints one line per figure and exits 0 when the check holds, 1 otherwise. RSS is read from
 * /proc/self/statm (resident pages) and /proc/self/status (VmHWM); no timing is checked. */
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static long rss_kib(void) {
    long size = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &size, &res) != 2) {
        perror("statm");
        exit(2);
    }
    fclose(f);
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static long hwm_kib(void) {
    char line[256];
    long v = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) {
        perror("status");
        exit(2);
    }
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &v) == 1)
            break;
    fclose(f);
    return v;
}

#define BURST_BYTES (96L << 20)
#define BLOCK (24 * 1024)

/* Blocks `burst` keeps alive (every KEEP_EVERY-th), so that the freed ones leave free pages
 * inside segments still in use, which only a purge of the heap's free pages returns. */
#define KEEP_EVERY 8
static char **kept;
static long nkept;

/* Allocates BURST_BYTES in medium blocks, touches every page, frees them all, or all but
 * every KEEP_EVERY-th when `arg` is non-null. */
static void *burst(void *arg) {
    long n = BURST_BYTES / BLOCK;
    char **p = calloc(n, sizeof *p);
    for (long i = 0; i < n; i++) {
        p[i] = malloc(BLOCK);
        if (!p[i]) {
            fprintf(stderr, "malloc failed\n");
            exit(2);
        }
        memset(p[i], 1, BLOCK);
    }
    for (long i = 0; i < n; i++) {
        if (arg && i % KEEP_EVERY == 0)
            kept[nkept++] = p[i];
        else
            free(p[i]);
    }
    free(p);
    return NULL;
}

/* Where small_work keeps its block, so the compiler cannot elide the malloc/free pair. */
static void *volatile sink;

static void *small_work(void *arg) {
    (void)arg;
    sink = malloc(64);
    memset(sink, 2, 64);
    free(sink);
    return NULL;
}

static void run_thread(void *(*fn)(void *), void *arg) {
    pthread_t t;
    if (pthread_create(&t, NULL, fn, arg) != 0) {
        perror("pthread_create");
        exit(2);
    }
    pthread_join(t, NULL);
}

/* What the run may still hold after the burst: the blocks kept alive, plus 24 MiB for what
 * an allocator legitimately keeps cached (thread bins, central lists, the current segments). */
#define SLACK_KIB (24L << 10)

static int check_return(const char *what, long base, long before, long after, long kept_kib) {
    printf("%s: rss at start %ld KiB, after the burst %ld KiB, at the end %ld KiB (kept alive "
           "%ld KiB)\n",
           what, base, before, after, kept_kib);
    return after - base <= kept_kib + SLACK_KIB ? 0 : 1;
}

/* The exited thread's heap keeps segments with live blocks: its free pages go back only
 * through a purge of that heap, which the trimming thread does not own. */
static int trim_mode(void) {
    kept = calloc(BURST_BYTES / BLOCK / KEEP_EVERY + 1, sizeof *kept);
    run_thread(small_work, NULL); /* the main allocator state exists before the burst */
    long base = rss_kib();
    run_thread(burst, kept);
    long before = rss_kib();
    malloc_trim(0);
    int rc = check_return("trim", base, before, rss_kib(), nkept * (BLOCK / 1024));
    for (long i = 0; i < nkept; i++)
        free(kept[i]);
    return rc;
}

static int decay_mode(void) {
    run_thread(small_work, NULL);
    long base = rss_kib();
    run_thread(burst, NULL);
    long before = rss_kib();
    /* Each thread's exit may run a released-heap decay pass (at most one per interval); two
     * passes purge what stayed free for a whole interval. */
    for (int i = 0; i < 40 && rss_kib() - base > SLACK_KIB; i++) {
        usleep(60 * 1000);
        run_thread(small_work, NULL);
    }
    return check_return("decay", base, before, rss_kib(), 0);
}

#define GENERATIONS 200
#define THREADS 4
#define OBJS 1024

struct slot {
    void *handed[OBJS / 4];
    int n;
};

static struct slot slots[2][THREADS];

/* Allocates about 4 MiB (1,024 blocks of 16 B – 8 KiB), frees three quarters, hands the
 * rest to the same slot of the next generation, and frees what the previous one handed over. */
static void *churn_worker(void *arg) {
    long id = (long)arg;
    int gen = (int)(id >> 8), t = (int)(id & 0xff);
    struct slot *in = &slots[(gen + 1) & 1][t], *out = &slots[gen & 1][t];
    for (int i = 0; i < in->n; i++)
        free(in->handed[i]);
    in->n = 0;
    unsigned s = 0x12345678u + 977u * (unsigned)id;
    out->n = 0;
    for (int i = 0; i < OBJS; i++) {
        s = s * 1664525u + 1013904223u;
        size_t size = 16 + (s >> 8) % 8192;
        char *p = malloc(size);
        p[0] = 1;
        p[size - 1] = 1;
        if (i % 4 == 0)
            out->handed[out->n++] = p;
        else
            free(p);
    }
    return NULL;
}

static int churn_mode(void) {
    pthread_t th[THREADS];
    long max_rss = 0;
    for (int g = 0; g < GENERATIONS; g++) {
        for (long t = 0; t < THREADS; t++)
            if (pthread_create(&th[t], NULL, churn_worker, (void *)(((long)g << 8) | t)) != 0) {
                perror("pthread_create");
                return 2;
            }
        for (int t = 0; t < THREADS; t++)
            pthread_join(th[t], NULL);
        long r = rss_kib();
        if (r > max_rss)
            max_rss = r;
    }
    long hwm = hwm_kib();
    printf("churn: %d generations of %d threads, max rss %ld KiB, VmHWM %ld KiB\n", GENERATIONS,
           THREADS, max_rss, hwm);
    /* Each thread frees three blocks of four at once, so a generation holds about 4 x 1 MiB
     * plus the quarter handed on; measured VmHWM 9.7-10.4 MiB (up to 14.9 MiB before a warm
     * thread exit parked its free objects in the shared pool, docs/ab.md). A bound of 32 MiB is
     * generous, and a heap per generation kept resident would exceed it. */
    return hwm <= 32 * 1024 ? 0 : 1;
}

/* The burst of the small-* and burst-exit modes: BURST_THREADS threads each allocate `bytes`
 * in blocks whose sizes `size` draws (at most `max_objs` blocks), touch them, and after a
 * barrier free their even blocks and the previous thread's odd ones (handed over through the
 * pointer arrays, mapped outside the allocator so they are not part of what it must give
 * back). One burst per process: the mode fills in `bu` first. */
#define BURST_THREADS 4
static struct {
    long bytes;    /* per thread */
    long max_objs; /* per thread */
    size_t (*size)(unsigned *);
    unsigned seed; /* thread t starts from seed * (t + 1) */
    /* The threads free nothing and exit at once, their blocks live; burst_unmap frees them. */
    int main_frees;
    /* The threads exit together, after a second barrier. */
    int exit_together;
    char **objs[BURST_THREADS];
    long n[BURST_THREADS];
    pthread_barrier_t barrier;
} bu;

static void *burst_worker(void *arg) {
    long t = (long)arg;
    char **p = bu.objs[t];
    unsigned s = bu.seed * (unsigned)(t + 1);
    long bytes = 0, n = 0;
    while (bytes < bu.bytes && n < bu.max_objs) {
        size_t size = bu.size(&s);
        p[n] = malloc(size);
        if (!p[n]) {
            fprintf(stderr, "malloc failed\n");
            exit(2);
        }
        memset(p[n], (int)t + 1, size);
        bytes += size;
        n++;
    }
    bu.n[t] = n;
    if (bu.main_frees)
        return NULL;
    pthread_barrier_wait(&bu.barrier);
    long prev = (t + BURST_THREADS - 1) % BURST_THREADS;
    for (long i = 0; i < n; i += 2)
        free(p[i]);
    for (long i = 1; i < bu.n[prev]; i += 2)
        free(bu.objs[prev][i]);
    if (bu.exit_together)
        pthread_barrier_wait(&bu.barrier);
    return NULL;
}

/* Maps the pointer arrays (without the allocator). */
static void burst_map(void) {
    pthread_barrier_init(&bu.barrier, NULL, BURST_THREADS);
    for (int t = 0; t < BURST_THREADS; t++) {
        bu.objs[t] = mmap(NULL, bu.max_objs * sizeof(char *), PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (bu.objs[t] == MAP_FAILED) {
            perror("mmap");
            exit(2);
        }
    }
}

/* Runs the burst and joins its threads; calls the allocator on this thread only through
 * pthread_create and pthread_join. */
static void burst_run(void) {
    pthread_t th[BURST_THREADS];
    for (long t = 0; t < BURST_THREADS; t++)
        if (pthread_create(&th[t], NULL, burst_worker, (void *)t) != 0) {
            perror("pthread_create");
            exit(2);
        }
    for (int t = 0; t < BURST_THREADS; t++)
        pthread_join(th[t], NULL);
}

/* Frees the blocks the threads left (main_frees) and unmaps the arrays. */
static void burst_unmap(void) {
    pthread_barrier_destroy(&bu.barrier);
    for (int t = 0; t < BURST_THREADS && bu.main_frees; t++)
        for (long i = 0; i < bu.n[t]; i++)
            free(bu.objs[t][i]);
    for (int t = 0; t < BURST_THREADS; t++)
        munmap(bu.objs[t], bu.max_objs * sizeof(char *));
}

/* Small blocks: 7 in 8 of 16 B – 2 KiB, the rest 2 KiB – 14 KiB (about 1.9 KiB on average). */
static size_t sb_size(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (*s >> 8) % 8 ? 16 + (*s >> 11) % 2033 : 2049 + (*s >> 11) % 12288;
}

/* The small burst: 128 MiB in all, freed by the threads (which exit together), or by the
 * main thread after they have exited (`main_frees`: small-main-frees). */
static void small_burst_all(int main_frees) {
    bu.bytes = (128L << 20) / BURST_THREADS;
    bu.max_objs = 1L << 16;
    bu.size = sb_size;
    bu.seed = 0x9e3779b9u;
    bu.main_frees = main_frees;
    bu.exit_together = 1;
    burst_map();
    burst_run();
    burst_unmap();
}

/* What small-trim, small-idle and sweep-stress may still hold when every block is freed:
 * thread bins, central lists and the current segments of the main thread and a few runs of
 * other heaps, not the 128 MiB burst (measured: under 1 MiB after small-trim and small-idle,
 * 3-6 MiB after sweep-stress; before the sweep, 135 MiB and 145 MiB and 84 MiB). */
#define SMALL_SLACK_KIB (16L << 10)

static int check_small(const char *what, long base, long before, long after) {
    printf("%s: rss at start %ld KiB, when the threads had exited %ld KiB, at the end %ld KiB "
           "(bound: start + %ld KiB)\n",
           what, base, before, after, SMALL_SLACK_KIB);
    return after - base <= SMALL_SLACK_KIB ? 0 : 1;
}

static int small_trim_mode(void) {
    run_thread(small_work, NULL);
    sink = malloc(64);
    free(sink);
    long base = rss_kib();
    small_burst_all(0);
    long before = rss_kib();
    malloc_trim(0);
    return check_small("small-trim", base, before, rss_kib());
}

/* The main thread frees every block of the exited threads and then trims: the remote frees
 * it buffered must reach their heaps before their sweep, or their runs (and segments) stay.
 * Bound: the 8 MiB the issue sets for what stays after malloc_trim (measured 0.9 MiB; 5.7 MiB
 * on the scale lane and 12.2 MiB on the fast lane when the trim left the caller's remote
 * buffer unflushed). */
static int small_main_frees_mode(void) {
    run_thread(small_work, NULL);
    sink = malloc(64);
    free(sink);
    long base = rss_kib();
    small_burst_all(1);
    long before = rss_kib();
    malloc_trim(0);
    long after = rss_kib();
    printf("small-main-frees: rss at start %ld KiB, after the frees %ld KiB, after malloc_trim "
           "%ld KiB (bound: start + %ld KiB)\n",
           base, before, after, 8L << 10);
    return after - base <= (8L << 10) ? 0 : 1;
}

/* Run with a short HAKOZUNA_DECAY_MS (100): the released heaps are due long before the main
 * thread's next call, which takes a slow path (classes it never used) and so runs the pass. */
static int small_idle_mode(void) {
    static void *volatile fresh[3];
    run_thread(small_work, NULL);
    sink = malloc(64);
    free(sink);
    long base = rss_kib();
    small_burst_all(0);
    long before = rss_kib();
    usleep(400 * 1000);
    fresh[0] = malloc(1000);
    fresh[1] = malloc(3000);
    fresh[2] = malloc(9000);
    long after = rss_kib();
    for (int i = 0; i < 3; i++)
        free(fresh[i]);
    return check_small("small-idle", base, before, after);
}

/* burst-exit: the burst of bench/src/benches/burst_idle.rs, smaller: 64 MiB per thread. */
/* What may stay: each heap's warm remainder (1 MiB of medium runs, small objects of partly
 * used runs), a few pooled segments and large-cache blocks, the main thread's own state.
 * Measured about 6 MiB; 256 MiB when the heaps waited for decay (before issue 19). */
#define BE_SLACK_KIB (32L << 10)

/* RSS without calling the allocator (fopen would), so no slow path of the main thread runs
 * between the joins and the reading. */
static long rss_kib_raw(void) {
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY);
    long size = 0, res = 0;
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (n <= 0 || (buf[n] = 0, sscanf(buf, "%ld %ld", &size, &res) != 2)) {
        perror("statm");
        exit(2);
    }
    close(fd);
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Sizes as burst-idle draws them: 850 in 1000 of 16-256 B, 120 of 257 B-2 KiB, 26 of
 * 2-32 KiB, 4 of 32-256 KiB. */
static size_t be_size(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    unsigned r = *s >> 8, pm = (r >> 14) % 1000;
    if (pm < 850)
        return 16 + r % 241;
    if (pm < 970)
        return 257 + r % 1792;
    if (pm < 996)
        return 2049 + r % 30720;
    return 32769 + r % 229376;
}

static int burst_exit_mode(void) {
    run_thread(small_work, NULL);
    sink = malloc(64);
    free(sink);
    bu.bytes = 64L << 20;
    bu.max_objs = 1L << 17;
    bu.size = be_size;
    bu.seed = 0x51ed270bu;
    burst_map();
    long base = rss_kib_raw();
    burst_run();
    long after = rss_kib_raw();
    burst_unmap();
    printf("burst-exit: %d threads x %ld MiB, rss at start %ld KiB, after the threads exited "
           "%ld KiB (bound: start + %ld KiB)\n",
           BURST_THREADS, bu.bytes >> 20, base, after, BE_SLACK_KIB);
    return after - base <= BE_SLACK_KIB ? 0 : 1;
}

/* sweep-stress: ST_SLOTS threads at a time, each slot restarted ST_GENS times (so heaps are
 * released and decayed while the other slots run), each thread doing ST_ITERS operations on a
 * table of ST_LIVE blocks; about half of the blocks are freed by another thread, through a
 * mutex-protected queue. Every block is filled with a pattern derived from its address and
 * size and verified before it is freed or handed over. */
#define ST_SLOTS 4
#define ST_GENS 6
#define ST_ITERS 40000
#define ST_LIVE 512
#define ST_QCAP 1024
/* Blocks grow by realloc up to about twice this (into the medium tier), no further. */
#define ST_GROW_MAX (16 << 10)
#define ST_TRIM_EVERY 4000
/* Every ST_BULK_EVERY operations a thread allocates ST_BULK blocks of one size and frees them:
 * its bins overflow and refill, so it reaches epochs (every 1,024th refill), where its own
 * decay pass sweeps. */
#define ST_BULK_EVERY 64
#define ST_BULK 128

struct blk {
    unsigned char *p;
    size_t n;
};

static pthread_mutex_t st_lock = PTHREAD_MUTEX_INITIALIZER;
static struct blk st_q[ST_QCAP];
static long st_qhead, st_qlen;
static long st_handed, st_ops, st_trims, st_callocs;

static uint64_t st_seed(uintptr_t key, size_t n) {
    uint64_t x = (uint64_t)key * 0x9e3779b97f4a7c15ull ^ (uint64_t)n * 0xc2b2ae3d27d4eb4full;
    return x ^ x >> 31;
}

/* The pattern of a block of `n` bytes at address `key`: word i is seed + i * odd constant;
 * the bytes past the last whole word come from the next word. */
static void st_fill(unsigned char *p, size_t n) {
    uint64_t seed = st_seed((uintptr_t)p, n), w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        w = seed + (i / 8) * 0x100000001b3ull;
        memcpy(p + i, &w, 8);
    }
    w = seed + (i / 8) * 0x100000001b3ull;
    memcpy(p + i, &w, n - i);
}

/* Checks that the first `upto` bytes of `p` hold the pattern of a block of `n` bytes at
 * address `key` (its address before a realloc); exits 1 naming `what` when not. */
static void st_check(const unsigned char *p, uintptr_t key, size_t n, size_t upto,
                     const char *what) {
    uint64_t seed = st_seed(key, n), w, got;
    size_t i = 0;
    for (; i + 8 <= upto; i += 8) {
        w = seed + (i / 8) * 0x100000001b3ull;
        memcpy(&got, p + i, 8);
        if (got != w)
            goto bad;
    }
    if (i < upto) {
        w = seed + (i / 8) * 0x100000001b3ull;
        got = 0;
        memcpy(&got, p + i, upto - i);
        if (memcmp(&got, &w, upto - i) != 0)
            goto bad;
    }
    return;
bad:
    fprintf(stderr,
            "sweep-stress: %s: block %p (pattern of %#lx, %zu bytes) differs in the word at "
            "byte %zu\n",
            what, (void *)p, (unsigned long)key, n, i);
    exit(1);
}

static void st_zero(const unsigned char *p, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) {
            fprintf(stderr, "sweep-stress: %s: calloc block %p of %zu bytes has %#x at byte %zu\n",
                    what, (void *)p, n, p[i], i);
            exit(1);
        }
}

static void st_free(struct blk b, const char *what) {
    st_check(b.p, (uintptr_t)b.p, b.n, b.n, what);
    free(b.p);
}

/* Hands `b` to whichever thread pops it next; frees it here when the queue is full. */
static void st_hand(struct blk b) {
    st_check(b.p, (uintptr_t)b.p, b.n, b.n, "before handing over");
    pthread_mutex_lock(&st_lock);
    if (st_qlen < ST_QCAP) {
        st_q[(st_qhead + st_qlen++) % ST_QCAP] = b;
        st_handed++;
        b.p = NULL;
    }
    pthread_mutex_unlock(&st_lock);
    if (b.p)
        free(b.p);
}

static int st_take(struct blk *b) {
    int got = 0;
    pthread_mutex_lock(&st_lock);
    if (st_qlen > 0) {
        *b = st_q[st_qhead];
        st_qhead = (st_qhead + 1) % ST_QCAP;
        st_qlen--;
        got = 1;
    }
    pthread_mutex_unlock(&st_lock);
    return got;
}

static size_t st_size(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    unsigned r = *s >> 8;
    if (r % 16 == 0)
        return 2049 + (r >> 4) % 12288;
    if (r % 16 == 1)
        return 1 + (r >> 4) % 16;
    return 16 + (r >> 4) % 2033;
}

static unsigned char *st_alloc(size_t n) {
    unsigned char *p = malloc(n);
    if (!p) {
        fprintf(stderr, "sweep-stress: malloc(%zu) failed\n", n);
        exit(1);
    }
    return p;
}

/* calloc of about `n` bytes, checked zero, then filled. */
static struct blk st_calloc(size_t n, const char *what) {
    size_t cnt = 1 + n % 4, each = n / cnt + 1;
    unsigned char *p = calloc(cnt, each);
    if (!p) {
        fprintf(stderr, "sweep-stress: calloc(%zu, %zu) failed\n", cnt, each);
        exit(1);
    }
    st_zero(p, cnt * each, what);
    st_fill(p, cnt * each);
    return (struct blk){p, cnt * each};
}

static void *st_worker(void *arg) {
    long id = (long)arg;
    int trimmer = (id % ST_SLOTS) == 0;
    struct blk live[ST_LIVE] = {{0}};
    unsigned s = 0x2545f491u ^ (unsigned)id * 2654435761u;
    long trims = 0, callocs = 0;
    for (long it = 0; it < ST_ITERS; it++) {
        s = s * 1664525u + 1013904223u;
        unsigned r = s >> 8;
        struct blk *b = &live[r % ST_LIVE];
        unsigned op = (r >> 9) % 16;
        if (b->p) {
            if (op < 3 && b->n < ST_GROW_MAX) {
                /* realloc growth: the old contents follow the block */
                size_t n2 = b->n + 1 + (r >> 13) % (b->n + 16);
                uintptr_t old = (uintptr_t)b->p;
                st_check(b->p, old, b->n, b->n, "before realloc");
                unsigned char *q = realloc(b->p, n2);
                if (!q) {
                    fprintf(stderr, "sweep-stress: realloc(%zu) failed\n", n2);
                    exit(1);
                }
                st_check(q, old, b->n, b->n, "after realloc");
                st_fill(q, n2);
                *b = (struct blk){q, n2};
                continue;
            }
            if (op < 10)
                st_hand(*b);
            else
                st_free(*b, "before free");
            b->p = NULL;
        }
        size_t n = st_size(&s);
        if (op >= 13) {
            *b = st_calloc(n, "calloc");
            callocs++;
        } else {
            b->p = st_alloc(n);
            b->n = n;
            st_fill(b->p, n);
        }
        struct blk got;
        if (op % 2 == 0 && st_take(&got))
            st_free(got, "before freeing a block handed over");
        if (it % ST_BULK_EVERY == 0) {
            static __thread struct blk bulk[ST_BULK];
            size_t bn = st_size(&s);
            for (int k = 0; k < ST_BULK; k++) {
                bulk[k] = (struct blk){st_alloc(bn), bn};
                st_fill(bulk[k].p, bn);
            }
            for (int k = 0; k < ST_BULK; k++)
                st_free(bulk[k], "freeing a bulk block");
        }
        if (trimmer && it % ST_TRIM_EVERY == ST_TRIM_EVERY - 1) {
            /* Its own blocks freed first, so the trim can find runs and segments empty. */
            for (int i = 0; i < ST_LIVE; i++)
                if (live[i].p) {
                    st_free(live[i], "freeing before malloc_trim");
                    live[i].p = NULL;
                }
            malloc_trim(0);
            trims++;
            for (int k = 0; k < 8; k++) {
                struct blk z = st_calloc(st_size(&s), "calloc after malloc_trim");
                st_free(z, "freeing a calloc block after malloc_trim");
            }
            callocs += 8;
        }
    }
    for (int i = 0; i < ST_LIVE; i++)
        if (live[i].p) {
            if (i % 2)
                st_hand(live[i]);
            else
                st_free(live[i], "freeing at thread exit");
        }
    pthread_mutex_lock(&st_lock);
    st_ops += ST_ITERS;
    st_trims += trims;
    st_callocs += callocs;
    pthread_mutex_unlock(&st_lock);
    return NULL;
}

static int sweep_stress_mode(void) {
    pthread_t th[ST_SLOTS];
    int gen[ST_SLOTS] = {0};
    long base = rss_kib();
    for (long t = 0; t < ST_SLOTS; t++)
        if (pthread_create(&th[t], NULL, st_worker, (void *)t) != 0) {
            perror("pthread_create");
            return 2;
        }
    /* Restart the slots one at a time, so one thread starts while the others run. */
    for (int live = ST_SLOTS; live > 0;) {
        for (int t = 0; t < ST_SLOTS; t++) {
            if (gen[t] == ST_GENS)
                continue;
            pthread_join(th[t], NULL);
            if (++gen[t] == ST_GENS) {
                live--;
                continue;
            }
            if (pthread_create(&th[t], NULL, st_worker, (void *)(long)(gen[t] * ST_SLOTS + t)) !=
                0) {
                perror("pthread_create");
                return 2;
            }
        }
    }
    struct blk b;
    long left = 0;
    while (st_take(&b)) {
        st_free(b, "freeing a block handed over, at the end");
        left++;
    }
    long before = rss_kib();
    malloc_trim(0);
    long after = rss_kib();
    struct blk z = st_calloc(5000, "calloc after the last malloc_trim");
    st_free(z, "freeing the last calloc block");
    printf("sweep-stress: %d threads x %d generations, %ld operations, %ld blocks handed over "
           "(%ld left at the end), %ld callocs, %ld trims: all blocks intact\n",
           ST_SLOTS, ST_GENS, st_ops, st_handed, left, st_callocs + 1, st_trims);
    /* Every thread has exited and every block is freed: the trim returns what they used. */
    return check_small("sweep-stress", base, before, after);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr,
                "usage: %s trim|decay|churn|small-trim|small-main-frees|small-idle|burst-exit|"
                "sweep-stress\n",
                argv[0]);
        return 2;
    }
    if (!strcmp(argv[1], "trim"))
        return trim_mode();
    if (!strcmp(argv[1], "decay"))
        return decay_mode();
    if (!strcmp(argv[1], "churn"))
        return churn_mode();
    if (!strcmp(argv[1], "small-trim"))
        return small_trim_mode();
    if (!strcmp(argv[1], "small-main-frees"))
        return small_main_frees_mode();
    if (!strcmp(argv[1], "small-idle"))
        return small_idle_mode();
    if (!strcmp(argv[1], "burst-exit"))
        return burst_exit_mode();
    if (!strcmp(argv[1], "sweep-stress"))
        return sweep_stress_mode();
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
