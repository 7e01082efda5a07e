/* The background purge thread (HAKOZUNA_BACKGROUND=1, design.md §10), run under LD_PRELOAD by
 * tests/preload.rs:
 *   background idle     4 threads allocate and free 48 MiB each (medium and large blocks),
 *                       exit; the main thread then sleeps without calling the allocator and
 *                       prints RSS before the burst, after it and after the sleep. The test
 *                       runs it with and without the thread and compares.
 *   background fork     threads allocate while the main thread forks; each child allocates
 *                       until a refill has restarted its own purge thread (a bounded number
 *                       of rounds) and exits; the parent must still have its thread.
 *   background exit     the main thread leaves with pthread_exit while another thread works:
 *                       the process must still end when that thread does.
 *   background alone    the main thread alone churns small blocks (leak-churn's shape: each
 *                       round keeps a growing share, frees the rest); the test compares the
 *                       refill statistics with and without the thread.
 * Prints one line per figure; exits 0 when the mode's own check holds. RSS is read from
 * /proc/self/statm with open/read (stdio would allocate); no timing is checked. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long rss_kib(void) {
    char buf[128];
    long size = 0, res = 0;
    int fd = open("/proc/self/statm", O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (fd >= 0)
        close(fd);
    if (n <= 0) {
        perror("statm");
        exit(2);
    }
    buf[n] = 0;
    if (sscanf(buf, "%ld %ld", &size, &res) != 2)
        exit(2);
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void run_threads(int n, void *(*fn)(void *)) {
    pthread_t t[8];
    for (long i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, fn, (void *)i) != 0) {
            perror("pthread_create");
            exit(2);
        }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
}

#define THREAD_BYTES (48L << 20)

/* 48 MiB of blocks from 4 KiB to 64 KiB (medium) and every 16th from 256 KiB to 1 MiB
 * (large), every page touched, then all freed. */
static void *burst(void *arg) {
    unsigned s = 0x9e3779b9u * (unsigned)(long)arg + 1;
    enum { MAX = 8192 };
    char **p = calloc(MAX, sizeof *p);
    long total = 0;
    int n = 0;
    while (total < THREAD_BYTES && n < MAX) {
        s = s * 1664525u + 1013904223u;
        size_t size = n % 16 == 15 ? (256 << 10) + (s >> 8) % (768 << 10) : 4096 + (s >> 8) % 61440;
        p[n] = malloc(size);
        if (!p[n]) {
            fprintf(stderr, "malloc failed\n");
            exit(2);
        }
        memset(p[n], 1, size);
        total += size;
        n++;
    }
    for (int i = 0; i < n; i++)
        free(p[i]);
    free(p);
    return NULL;
}

static void *small_work(void *arg) {
    (void)arg;
    void *volatile q = malloc(64);
    memset(q, 2, 64);
    free(q);
    return NULL;
}

static int idle_mode(void) {
    long decay = 1000;
    const char *d = getenv("HAKOZUNA_DECAY_MS");
    if (d)
        decay = atol(d);
    run_threads(1, small_work); /* the allocator's own state exists before the baseline */
    long base = rss_kib();
    run_threads(4, burst);
    long after = rss_kib();
    /* Decay purges what stayed unused for a whole interval, in two steps (aged, then purged;
     * a segment goes to the pool, then out of it): 20 intervals leave room for both. */
    sleep_ms(20 * decay);
    long idle = rss_kib();
    printf("idle: rss before %ld KiB, after the burst %ld KiB, after idling %ld KiB\n", base,
           after, idle);
    return 0;
}

/* Whether this process has a thread named hakozuna-bg. */
static int has_purge_thread(void) {
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int found = 0;
    if (!d)
        return 0;
    while (!found && (e = readdir(d))) {
        char path[300], name[64] = {0};
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, name, sizeof name - 1);
        close(fd);
        found = n > 0 && !strncmp(name, "hakozuna-bg", 11);
    }
    closedir(d);
    return found;
}

static atomic_int stop;

static void *churn(void *arg) {
    unsigned s = 12345u + (unsigned)(long)arg;
    void *keep[256] = {0};
    while (!atomic_load(&stop)) {
        s = s * 1664525u + 1013904223u;
        int i = (s >> 8) % 256;
        free(keep[i]);
        keep[i] = malloc(16 + (s >> 12) % 40000);
        if (keep[i])
            memset(keep[i], 3, 16);
    }
    for (int i = 0; i < 256; i++)
        free(keep[i]);
    return NULL;
}

/* A child's work: rounds of small allocations, each refilling bins, until the purge thread a
 * refill restarts is there (a bounded number of rounds). */
static int child_work(void) {
    enum { N = 20000, ROUNDS = 100 };
    void **p = malloc(N * sizeof *p);
    if (!p)
        return 2;
    run_threads(2, small_work);
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < N; i++) {
            p[i] = malloc(16 + (i * 7919 + r) % 1024);
            if (!p[i])
                return 2;
        }
        for (int i = 0; i < N; i++)
            free(p[i]);
        if (has_purge_thread())
            return 0;
    }
    return 3;
}

static int fork_mode(void) {
    enum { WORKERS = 3, FORKS = 20 };
    pthread_t w[WORKERS];
    /* The constructor started the parent's thread. */
    if (!has_purge_thread()) {
        printf("fork: no purge thread in the parent\n");
        return 1;
    }
    for (long i = 0; i < WORKERS; i++)
        pthread_create(&w[i], NULL, churn, (void *)i);
    int bad = 0;
    for (int f = 0; f < FORKS; f++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0) {
            alarm(60);
            _exit(child_work());
        }
        int st = 0;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            printf("fork: child %d ended with status %#x\n", f, st);
            bad = 1;
        }
        sleep_ms(5);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(w[i], NULL);
    if (!has_purge_thread()) {
        printf("fork: the parent lost its purge thread\n");
        return 1;
    }
    if (!bad)
        printf("fork: %d children found their purge thread\n", FORKS);
    return bad;
}

static void *last_worker(void *arg) {
    (void)arg;
    sleep_ms(200);
    burst((void *)7);
    printf("exit: last thread done\n");
    fflush(stdout);
    return NULL;
}

static int exit_mode(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, last_worker, NULL) != 0)
        return 2;
    pthread_exit(NULL);
}

#define ALONE_ROUNDS 20
#define ALONE_N 50000

static void *alone_ptrs[ALONE_N];

/* One thread: round r allocates ALONE_N blocks of 16-512 bytes, keeps about r/5 % of them
 * (up to 4 %) and frees the rest in allocation order. Deterministic (a fixed LCG). */
static int alone_mode(void) {
    unsigned long long x = 88172645463325252ULL;
    void **kept = NULL;
    size_t nkept = 0, cap = 0;
    for (int r = 1; r <= ALONE_ROUNDS; r++) {
        for (int i = 0; i < ALONE_N; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t size = 16 + (x >> 33) % 497;
            alone_ptrs[i] = malloc(size);
            if (!alone_ptrs[i])
                return 2;
            memset(alone_ptrs[i], r, 16);
        }
        for (int i = 0; i < ALONE_N; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            if ((x >> 48) % 10000 < (unsigned)(400 * r / ALONE_ROUNDS)) {
                if (nkept == cap) {
                    cap = cap ? 2 * cap : 1024;
                    kept = realloc(kept, cap * sizeof *kept);
                    if (!kept)
                        return 2;
                }
                kept[nkept++] = alone_ptrs[i];
            } else {
                free(alone_ptrs[i]);
            }
        }
    }
    for (size_t i = 0; i < nkept; i++)
        free(kept[i]);
    free(kept);
    printf("alone kept %zu\n", nkept);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s idle|fork|exit|alone\n", argv[0]);
        return 2;
    }
    if (!strcmp(argv[1], "idle"))
        return idle_mode();
    if (!strcmp(argv[1], "fork"))
        return fork_mode();
    if (!strcmp(argv[1], "exit"))
        return exit_mode();
    if (!strcmp(argv[1], "alone"))
        return alone_mode();
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
