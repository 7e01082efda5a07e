/* Memory that exited threads leave behind goes back to the OS (design.md §10), run under
 * LD_PRELOAD by tests/preload.rs:
 *   memory_return trim    a thread allocates 96 MiB of medium blocks, frees 7 in 8 and exits;
 *                         malloc_trim(0) on another thread must return most of it.
 *   memory_return decay   the same, then no trim: with HAKOZUNA_DECAY_MS=50, threads that
 *                         start and exit afterwards run the released heap's decay, which must
 *                         return most of it.
 *   memory_return churn   200 generations of 4 threads, each allocating about 4 MiB and
 *                         handing a quarter to the next generation: peak RSS stays bounded.
 * Prints one line per figure and exits 0 when the check holds, 1 otherwise. RSS is read from
 * /proc/self/statm (resident pages) and /proc/self/status (VmHWM); no timing is checked. */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    /* Each generation holds about 4 x 4 MiB at once plus the quarter handed on: a bound of
     * 256 MiB is generous, and a heap per generation kept resident would exceed it. */
    return hwm <= 256 * 1024 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s trim|decay|churn\n", argv[0]);
        return 2;
    }
    if (!strcmp(argv[1], "trim"))
        return trim_mode();
    if (!strcmp(argv[1], "decay"))
        return decay_mode();
    if (!strcmp(argv[1], "churn"))
        return churn_mode();
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
