/* The rare paths of design.md §11 ("Rare paths"), one mode per path; tests/rare_paths.rs runs
 * each under both preload libraries (and sets the environment and limits each needs). Every
 * mode prints "ok <mode>" and exits 0, or prints what failed and exits 1. The allocator's
 * figures come from hakozuna_stats_json (looked up with dlsym).
 *
 *   exit_round   threads whose first allocation is in glibc's last TLS-destructor round
 *   no_key       pthread_key_create fails (the rare_paths_shim.so preload makes it fail)
 *   heap_limit   more threads than HAKOZUNA_MAX_HEAPS allocate and free across threads
 *   arena_limit  small and medium allocations under a low RLIMIT_AS (set by the harness)
 *   aligned      alignments of 8 KiB to 2 MiB allocated and freed in a loop
 *   fork_child   threads of a fork child on the stacks of the parent's other threads
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;
#define CHECK(c, ...)                                                                        \
    do {                                                                                     \
        if (!(c)) {                                                                          \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                      \
            printf(__VA_ARGS__);                                                             \
            printf("\n");                                                                    \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

/* ---- statistics ---------------------------------------------------------------------- */

static char stats_buf[1 << 16];

static void snap(void) {
    size_t (*json)(char *, size_t) =
        (size_t(*)(char *, size_t))dlsym(RTLD_DEFAULT, "hakozuna_stats_json");
    if (!json) {
        printf("FAIL: hakozuna_stats_json not found (library not preloaded?)\n");
        exit(1);
    }
    json(stats_buf, sizeof stats_buf);
}

/* The value of "key" in the last snapshot (figures and events alike); exits if absent. */
static long long stat_of(const char *key) {
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(stats_buf, pat);
    if (!p) {
        printf("FAIL: no \"%s\" in the statistics\n", key);
        exit(1);
    }
    return atoll(p + strlen(pat));
}

static long long stat_now(const char *key) {
    snap();
    return stat_of(key);
}

/* A block's content pattern, checked before it is freed. */
static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i + 1 < n; i += 61) p[i] = (unsigned char)(seed + i);
    p[n - 1] = (unsigned char)seed;
}

static int intact(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i + 1 < n; i += 61)
        if (p[i] != (unsigned char)(seed + i)) return 0;
    return p[n - 1] == (unsigned char)seed;
}

static const size_t sizes[] = {16, 48, 100, 256, 1000, 2500, 4096, 9000, 40000, 200000};
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* ---- exit_round ---------------------------------------------------------------------- */

#define EXIT_THREADS 200
#define EXIT_KEEP 16
static pthread_key_t exit_key;
static __thread int exit_rounds;
/* Blocks each thread allocated in its last round and left for main to free. */
static void *exit_kept[EXIT_THREADS][EXIT_KEEP];
static int exit_last_round[EXIT_THREADS];
static int exit_index;

static void exit_dtor(void *v) {
    int me = (int)(intptr_t)v - 1;
    exit_rounds++;
    exit_last_round[me] = exit_rounds;
    if (exit_rounds < PTHREAD_DESTRUCTOR_ITERATIONS) {
        /* Re-arm: glibc runs another round. No allocation before the last one. */
        pthread_setspecific(exit_key, v);
        return;
    }
    /* The last round: this thread's first allocation. */
    void *tmp[64];
    for (int i = 0; i < 64; i++) {
        size_t n = sizes[i % NSIZES];
        tmp[i] = malloc(n);
        if (!tmp[i]) return;
        fill(tmp[i], n, (unsigned)(me + i));
    }
    for (int i = 0; i < 64; i++) {
        size_t n = sizes[i % NSIZES];
        if (i < EXIT_KEEP) {
            exit_kept[me][i] = tmp[i];
        } else {
            if (!intact(tmp[i], n, (unsigned)(me + i))) exit_last_round[me] = -1;
            free(tmp[i]);
        }
    }
    /* Re-armed in the last round: glibc must not run a further one. */
    pthread_setspecific(exit_key, v);
}

static void *exit_thread(void *arg) {
    pthread_setspecific(exit_key, arg); /* key < 32: no allocation */
    return NULL;
}

static int exit_round_mode(void) {
    if (pthread_key_create(&exit_key, exit_dtor) != 0) return 1;
    snap();
    long long heaps0 = stat_of("heaps");
    for (exit_index = 0; exit_index < EXIT_THREADS; exit_index++) {
        pthread_t t;
        /* Joined one at a time: glibc gives each new thread the stack of the last. */
        if (pthread_create(&t, NULL, exit_thread, (void *)(intptr_t)(exit_index + 1)) != 0)
            return 1;
        pthread_join(t, NULL);
    }
    for (int t = 0; t < EXIT_THREADS; t++) {
        CHECK(exit_last_round[t] == PTHREAD_DESTRUCTOR_ITERATIONS,
              "thread %d: destructor rounds %d (expected exactly %d)", t, exit_last_round[t],
              PTHREAD_DESTRUCTOR_ITERATIONS);
        for (int i = 0; i < EXIT_KEEP; i++) {
            void *p = exit_kept[t][i];
            CHECK(p && intact(p, sizes[i % NSIZES], (unsigned)(t + i)), "thread %d block %d", t,
                  i);
            free(p);
        }
    }
    long long heaps = stat_now("heaps");
    printf("exit_round: heaps %lld before, %lld after %d threads\n", heaps0, heaps,
           EXIT_THREADS);
    /* Without recovery every thread leaves a heap claimed for good (heaps0 + 200). */
    CHECK(heaps - heaps0 <= 4, "heaps grew by %lld for %d threads", heaps - heaps0,
          EXIT_THREADS);
    return failures != 0;
}

/* ---- shared work: threads allocating and freeing across threads --------------------- */

#define WORK_SLOTS 4096
static void *volatile work_slot[WORK_SLOTS];
static unsigned work_seed[WORK_SLOTS];
static pthread_mutex_t work_lock = PTHREAD_MUTEX_INITIALIZER;
static int work_bad;

/* Allocates blocks, keeps some in shared slots (to be freed by whichever thread comes
 * next to the slot: cross-thread frees), frees the others itself. */
static void *worker(void *arg) {
    unsigned s = (unsigned)(uintptr_t)arg * 2654435761u;
    for (int i = 0; i < 3000; i++) {
        s = s * 1664525u + 1013904223u;
        size_t n = sizes[(s >> 8) % NSIZES];
        unsigned char *p = malloc(n);
        if (!p) {
            __atomic_add_fetch(&work_bad, 1, __ATOMIC_RELAXED);
            continue;
        }
        fill(p, n, s);
        if (s & 0x10000) {
            free(p);
            continue;
        }
        int k = (s >> 4) % WORK_SLOTS;
        pthread_mutex_lock(&work_lock);
        void *old = work_slot[k];
        unsigned os = work_seed[k];
        work_slot[k] = p;
        work_seed[k] = s;
        pthread_mutex_unlock(&work_lock);
        if (old) {
            size_t on = sizes[(os >> 8) % NSIZES];
            if (!intact(old, on, os)) __atomic_add_fetch(&work_bad, 1, __ATOMIC_RELAXED);
            free(old);
        }
    }
    return NULL;
}

static void work_drain(void) {
    for (int k = 0; k < WORK_SLOTS; k++) {
        if (work_slot[k]) {
            size_t n = sizes[(work_seed[k] >> 8) % NSIZES];
            if (!intact(work_slot[k], n, work_seed[k])) work_bad++;
            free(work_slot[k]);
            work_slot[k] = NULL;
        }
    }
}

/* Waves of `width` concurrent workers, `waves` times. */
static void run_waves(int waves, int width) {
    for (int w = 0; w < waves; w++) {
        pthread_t t[16];
        for (int i = 0; i < width; i++)
            if (pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(w * width + i + 1)))
                exit(1);
        for (int i = 0; i < width; i++) pthread_join(t[i], NULL);
    }
}

/* ---- no_key -------------------------------------------------------------------------- */

static int no_key_mode(void) {
    int (*failed)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "rare_paths_shim_failed");
    CHECK(failed != NULL, "the shim is not preloaded");
    if (!failed) return 1;
    malloc(1); /* make sure this thread activated (a retry of the key may follow) */
    int f0 = failed();
    CHECK(f0 >= 1, "pthread_key_create never failed (shim not interposed?)");
    snap();
    long long heaps0 = stat_of("heaps"), adopted0 = stat_of("heaps_adopted");
    enum { WAVES = 50, WIDTH = 4 };
    run_waves(WAVES, WIDTH);
    work_drain();
    snap();
    long long heaps = stat_of("heaps"), adopted = stat_of("heaps_adopted");
    printf("no_key: %d failed key creations; heaps %lld -> %lld, heaps adopted %lld -> %lld "
           "over %d threads\n",
           failed(), heaps0, heaps, adopted0, adopted, WAVES * WIDTH);
    CHECK(work_bad == 0, "%d blocks corrupt or not allocated", work_bad);
    /* Released at exit: later threads claim the released heaps. */
    CHECK(heaps - heaps0 <= WIDTH + 2, "heaps grew by %lld", heaps - heaps0);
    CHECK(adopted - adopted0 >= WAVES * WIDTH / 2, "only %lld claims of released heaps",
          adopted - adopted0);
    return failures != 0;
}

/* ---- heap_limit ---------------------------------------------------------------------- */

static int heap_limit_mode(void) {
    const char *lim = getenv("HAKOZUNA_MAX_HEAPS");
    CHECK(lim != NULL, "run with HAKOZUNA_MAX_HEAPS set");
    if (!lim) return 1;
    long max = atol(lim);
    snap();
    long long large0 = stat_of("large_allocs");
    enum { WAVES = 6, WIDTH = 8 };
    run_waves(WAVES, WIDTH);
    work_drain();
    snap();
    long long heaps = stat_of("heaps"), large = stat_of("large_allocs") - large0;
    /* Every worker allocates 3000 blocks, a tenth of them 200,000 bytes (arena classes). */
    printf("heap_limit: %lld heaps (limit %ld), %lld large allocations over %d threads\n", heaps,
           max, large, WAVES * WIDTH);
    CHECK(work_bad == 0, "%d blocks corrupt or not allocated", work_bad);
    /* The threads' heaps and the fallback heap. */
    CHECK(heaps <= max + 1, "%lld heaps", heaps);
    /* Served from the fallback heap, not by a mapping per call. */
    CHECK(large < 100, "%lld large allocations", large);
    return failures != 0;
}

/* ---- arena_limit --------------------------------------------------------------------- */

static int arena_limit_mode(void) {
    enum { N = 200000 };
    static void *keep[N];
    for (int i = 0; i < N; i++) {
        size_t n = i % 100 == 0 ? 20000 : 64 + i % 200;
        keep[i] = malloc(n);
        CHECK(keep[i] != NULL, "malloc %d", i);
        if (!keep[i]) return 1;
        fill(keep[i], n, (unsigned)i);
    }
    snap();
    long long reserved = stat_of("arena_reserved_bytes");
    long long large = stat_of("large_peak_blocks");
    printf("arena_limit: arena %lld MiB, large blocks at peak %lld\n", reserved >> 20, large);
    CHECK(reserved >= 64ll << 20, "arena of %lld bytes", reserved);
    CHECK(large < 100, "%lld large blocks: small requests went to the large tier", large);
    for (int i = 0; i < N; i++) {
        size_t n = i % 100 == 0 ? 20000 : 64 + i % 200;
        CHECK(intact(keep[i], n, (unsigned)i), "block %d", i);
        free(keep[i]);
        if (failures > 5) break;
    }
    return failures != 0;
}

/* ---- aligned ------------------------------------------------------------------------- */

static long maps_count(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    long n = 0;
    int c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

static long rss_pages(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, rss = -1;
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &size, &rss) != 2) rss = -1;
    fclose(f);
    return rss;
}

/* One aligned block by one of the three entry points. */
static void *aligned(int how, size_t align, size_t n) {
    void *p = NULL;
    switch (how % 3) {
    case 0: return memalign(align, n);
    case 1: return aligned_alloc(align, (n + align - 1) / align * align);
    default: return posix_memalign(&p, align, n) == 0 ? p : NULL;
    }
}

static int aligned_round(int rounds, int live) {
    void *ring[8] = {0};
    int bad = 0;
    for (int r = 0; r < rounds; r++) {
        int k = 0;
        for (size_t align = 8 << 10; align <= 2 << 20; align <<= 1, k++) {
            size_t n = k % 3 == 0 ? 16 : k % 3 == 1 ? align / 2 + 100 : 300 << 10;
            unsigned char *p = aligned(r + k, align, n);
            if (!p || (uintptr_t)p % align) {
                bad++;
                continue;
            }
            p[0] = 1;
            p[n - 1] = 2;
            int slot = (r * 9 + k) % live;
            free(ring[slot]);
            ring[slot] = p;
        }
    }
    for (int i = 0; i < 8; i++) free(ring[i]);
    return bad;
}

static int aligned_mode(void) {
    /* Warm-up: the blocks the loop will reuse get mapped once. */
    CHECK(aligned_round(20, 1) == 0, "misaligned or failed blocks");
    CHECK(aligned_round(20, 8) == 0, "misaligned or failed blocks");
    snap();
    long long allocs0 = stat_of("large_allocs"), hits0 = stat_of("large_cache_hits");
    long long unmaps0 = stat_of("large_unmaps");
    long maps0 = maps_count(), rss0 = rss_pages();
    enum { ROUNDS = 1000 };
    int bad = aligned_round(ROUNDS, 1) + aligned_round(ROUNDS, 8);
    snap();
    long long allocs = stat_of("large_allocs") - allocs0;
    long long hits = stat_of("large_cache_hits") - hits0;
    long long unmaps = stat_of("large_unmaps") - unmaps0;
    long maps = maps_count(), rss = rss_pages();
    printf("aligned: %lld large allocations, %lld cache hits, %lld unmaps; maps %ld -> %ld, "
           "rss %ld -> %ld pages\n",
           allocs, hits, unmaps, maps0, maps, rss0, rss);
    CHECK(bad == 0, "%d misaligned or failed blocks", bad);
    CHECK(allocs >= 2 * ROUNDS * 9, "%lld large allocations", allocs);
    /* Reused: nearly every call a cache hit, nearly no block unmapped. */
    CHECK(hits * 10 >= allocs * 9, "%lld hits of %lld", hits, allocs);
    CHECK(unmaps * 10 <= allocs, "%lld unmaps of %lld", unmaps, allocs);
    CHECK(maps - maps0 <= 64, "mappings grew from %ld to %ld", maps0, maps);
    CHECK(rss - rss0 <= 16384, "rss grew from %ld to %ld pages", rss0, rss);
    return failures != 0;
}

/* ---- fork_child ---------------------------------------------------------------------- */

#define HOLDERS 4
static pthread_t holder_id[HOLDERS];
static pthread_barrier_t held;
static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cond = PTHREAD_COND_INITIALIZER;
static int hold_done;

/* Holds a heap (allocates, then waits) while main forks. */
static void *holder(void *arg) {
    void *p = malloc(100);
    fill(p, 100, 7);
    pthread_barrier_wait(&held);
    pthread_mutex_lock(&hold_lock);
    while (!hold_done) pthread_cond_wait(&hold_cond, &hold_lock);
    pthread_mutex_unlock(&hold_lock);
    free(p);
    return arg;
}

static void *child_thread(void *arg) {
    *(pthread_t *)arg = pthread_self();
    void *p[32];
    for (int i = 0; i < 32; i++) {
        p[i] = malloc(sizes[i % NSIZES]);
        if (p[i]) fill(p[i], sizes[i % NSIZES], (unsigned)i);
    }
    for (int i = 0; i < 32; i++) {
        if (!p[i] || !intact(p[i], sizes[i % NSIZES], (unsigned)i)) work_bad++;
        free(p[i]);
    }
    return NULL;
}

/* In a fork child, threads start on the stacks (thread pointers) of the parent's other
 * threads, which held heaps at the fork: they must claim heaps of their own, not adopt
 * those (a parent thread may have been inside an allocator call). */
static int fork_child_mode(void) {
    pthread_barrier_init(&held, NULL, HOLDERS + 1);
    for (int i = 0; i < HOLDERS; i++)
        if (pthread_create(&holder_id[i], NULL, holder, NULL)) return 1;
    pthread_barrier_wait(&held);
    malloc(16); /* main holds a heap too */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        long long heaps0 = stat_now("heaps");
        int reused = 0;
        for (int i = 0; i < 2 * HOLDERS; i++) {
            pthread_t t, self = 0;
            if (pthread_create(&t, NULL, child_thread, &self)) _exit(1);
            pthread_join(t, NULL);
            for (int k = 0; k < HOLDERS; k++) reused += pthread_equal(self, holder_id[k]);
        }
        long long heaps = stat_now("heaps");
        printf("fork_child: child threads on parent threads' stacks %d, heaps %lld -> %lld\n",
               reused, heaps0, heaps);
        CHECK(work_bad == 0, "%d blocks corrupt", work_bad);
        CHECK(reused > 0, "no child thread started on a parent thread's stack");
        CHECK(heaps > heaps0, "child threads adopted the parent threads' heaps");
        fflush(stdout);
        _exit(failures != 0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    pthread_mutex_lock(&hold_lock);
    hold_done = 1;
    pthread_cond_broadcast(&hold_cond);
    pthread_mutex_unlock(&hold_lock);
    for (int i = 0; i < HOLDERS; i++) pthread_join(holder_id[i], NULL);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
    return failures != 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s exit_round|no_key|heap_limit|arena_limit|aligned|fork_child\n", argv[0]);
        return 2;
    }
    const char *m = argv[1];
    int r;
    if (!strcmp(m, "exit_round")) r = exit_round_mode();
    else if (!strcmp(m, "no_key")) r = no_key_mode();
    else if (!strcmp(m, "heap_limit")) r = heap_limit_mode();
    else if (!strcmp(m, "arena_limit")) r = arena_limit_mode();
    else if (!strcmp(m, "aligned")) r = aligned_mode();
    else if (!strcmp(m, "fork_child")) r = fork_child_mode();
    else {
        fprintf(stderr, "unknown mode %s\n", m);
        return 2;
    }
    if (r == 0) printf("ok %s\n", m);
    return r;
}
