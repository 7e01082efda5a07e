/*
 * fork_test.c - fork while other threads allocate (docs/design.md §11, "fork").
 *
 * Worker threads keep allocating/freeing (small, medium, large, with cross-thread
 * frees through a shared array) while the main thread forks FORKS times. Every
 * child checks a block the parent allocated before fork, allocates/frees in all
 * tiers, does the same from a freshly created thread, and _exit(0)s. A child that
 * deadlocks is killed by its own alarm() and by the parent's deadline; a child
 * that crashes or reports corruption fails the test.
 *
 * Build: gcc -O1 -pthread -o fork_test fork_test.c
 * Exit status 0 and "FORK OK" on success.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { WORKERS = 4, SLOTS = 1024, FORKS = 50, CHILD_TIMEOUT_S = 30 };

static void *(*volatile f_malloc)(size_t) = malloc;
static void (*volatile f_free)(void *) = free;
static void *(*volatile f_calloc)(size_t, size_t) = calloc;
static void *(*volatile f_realloc)(void *, size_t) = realloc;
static int (*volatile f_posix_memalign)(void **, size_t, size_t) = posix_memalign;

static atomic_int g_stop;
static atomic_long g_worker_errors;
static atomic_long g_worker_ops;
static _Atomic(unsigned char *) g_slots[SLOTS];

static size_t pick_size(uint64_t x)
{
    unsigned r = (unsigned)(x >> 40) % 100;
    if (r < 70)
        return 16 + (x >> 16) % 2033; /* small */
    if (r < 95)
        return 2049 + (x >> 16) % 63488; /* medium */
    return 65537 + (x >> 16) % 1000000; /* large */
}

static unsigned char *make_block(size_t n, unsigned char tag)
{
    unsigned char *p = f_malloc(n);
    if (!p)
        return NULL;
    memcpy(p, &n, sizeof n);
    memset(p + sizeof n, tag, n - sizeof n);
    return p;
}

static int block_ok(const unsigned char *p)
{
    size_t n;
    memcpy(&n, p, sizeof n);
    if (n < 16 || n > 2000000)
        return 0;
    unsigned char t = p[sizeof n];
    return p[n - 1] == t && p[n / 2] == t;
}

static void *worker(void *arg)
{
    uint64_t x = 88172645463325252ull ^ ((uintptr_t)arg * 0x9E3779B97F4A7C15ull);
    while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t n = pick_size(x);
        unsigned char *p = make_block(n, (unsigned char)x);
        if (!p) {
            atomic_fetch_add(&g_worker_errors, 1);
            continue;
        }
        if ((x & 3) == 0) {
            f_free(p);
        } else {
            unsigned char *old = atomic_exchange(&g_slots[(x >> 8) % SLOTS], p);
            if (old) {
                if (!block_ok(old))
                    atomic_fetch_add(&g_worker_errors, 1);
                f_free(old);
            }
        }
        atomic_fetch_add_explicit(&g_worker_ops, 1, memory_order_relaxed);
    }
    return NULL;
}

/* ---- child side -------------------------------------------------- */

static int child_alloc_round(unsigned seed)
{
    static const size_t sizes[] = {1,    16,    100,   1000,   2048,   2049,    5000,
                                   40000, 65536, 65537, 200000, 1 << 20};
    enum { NS = sizeof sizes / sizeof sizes[0] };
    void *live[NS * 4];
    int bad = 0;
    for (int r = 0; r < 4; r++)
        for (int i = 0; i < NS; i++) {
            size_t n = sizes[i];
            unsigned char *p = (r & 1) ? f_calloc(1, n) : f_malloc(n);
            if (!p)
                return 1;
            if ((r & 1) && (p[0] != 0 || p[n - 1] != 0))
                bad = 1;
            memset(p, (int)(seed + (unsigned)i), n);
            live[r * NS + i] = p;
        }
    for (int r = 0; r < 4; r++)
        for (int i = 0; i < NS; i++) {
            unsigned char *p = live[r * NS + i];
            size_t n = sizes[i];
            unsigned char t = (unsigned char)(seed + (unsigned)i);
            if (p[0] != t || p[n - 1] != t)
                bad = 1;
            if (r == 2) {
                p = f_realloc(p, n * 2 + 1);
                if (!p)
                    return 1;
                if (p[0] != t || p[n - 1] != t)
                    bad = 1;
            }
            f_free(p);
        }
    void *a = NULL;
    if (f_posix_memalign(&a, 4096, 100) != 0 || ((uintptr_t)a & 4095))
        bad = 1;
    f_free(a);
    return bad;
}

static void *child_thread(void *arg)
{
    int bad = 0;
    for (unsigned k = 0; k < 3; k++)
        bad |= child_alloc_round((unsigned)(uintptr_t)arg + k);
    return (void *)(uintptr_t)bad;
}

static void child_main(unsigned char *pre, size_t pre_n, int iter)
{
    alarm(CHILD_TIMEOUT_S); /* a deadlocked child dies with SIGALRM */
    int bad = 0;
    /* memory allocated by the parent before fork is intact and freeable here */
    for (size_t i = 0; i < pre_n; i++)
        if (pre[i] != (unsigned char)(iter + 1)) {
            bad |= 2;
            break;
        }
    f_free(pre);
    /* blocks owned by (now non-existent) worker threads: read and free some */
    for (int i = 0; i < SLOTS; i += 7) {
        unsigned char *p = atomic_exchange(&g_slots[i], NULL);
        if (p) {
            if (!block_ok(p))
                bad |= 4;
            f_free(p);
        }
    }
    for (unsigned k = 0; k < 3; k++)
        bad |= child_alloc_round(k) ? 8 : 0;
    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)iter) != 0) {
        bad |= 16;
    } else {
        void *ret = NULL;
        pthread_join(t, &ret);
        if (ret)
            bad |= 32;
    }
    /* a second thread that frees memory the first (main) thread allocated */
    bad |= child_alloc_round(99) ? 64 : 0;
    _exit(bad);
}

/* ---- parent ------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    pthread_t th[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        if (pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)i) != 0) {
            printf("FAIL: pthread_create\n");
            return 1;
        }
    /* let the workers get going */
    while (atomic_load(&g_worker_ops) < 10000)
        usleep(1000);

    int failures = 0;
    for (int iter = 0; iter < FORKS; iter++) {
        size_t pre_n = 1000 + (size_t)iter * 3001;
        unsigned char *pre = f_malloc(pre_n);
        if (!pre) {
            printf("FAIL: malloc before fork\n");
            failures++;
            break;
        }
        memset(pre, iter + 1, pre_n);
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            printf("FAIL: fork: %s\n", strerror(errno));
            failures++;
            break;
        }
        if (pid == 0)
            child_main(pre, pre_n, iter);
        f_free(pre);

        /* wait with a deadline; kill on timeout */
        double deadline = now_s() + CHILD_TIMEOUT_S + 5;
        int status = 0;
        pid_t w;
        while ((w = waitpid(pid, &status, WNOHANG)) == 0) {
            if (now_s() > deadline) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                printf("FAIL: fork #%d: child %d hung (deadlock?), killed\n", iter, (int)pid);
                failures++;
                goto next;
            }
            usleep(2000);
        }
        if (w < 0) {
            printf("FAIL: fork #%d: waitpid: %s\n", iter, strerror(errno));
            failures++;
        } else if (WIFSIGNALED(status)) {
            int sig = WTERMSIG(status);
            printf("FAIL: fork #%d: child killed by signal %d (%s)%s\n", iter, sig, strsignal(sig),
                   sig == SIGALRM ? " - deadlock in child" : "");
            failures++;
        } else if (WEXITSTATUS(status) != 0) {
            printf("FAIL: fork #%d: child exit status %d (bits: 2=pre-fork block, 4=worker block, "
                   "8=alloc, 16/32=thread, 64=after thread)\n",
                   iter, WEXITSTATUS(status));
            failures++;
        }
    next:
        if (failures > 2)
            break;
        usleep(1000 + (iter % 5) * 1000);
    }

    atomic_store(&g_stop, 1);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < SLOTS; i++) {
        unsigned char *p = atomic_load(&g_slots[i]);
        if (p) {
            if (!block_ok(p))
                atomic_fetch_add(&g_worker_errors, 1);
            f_free(p);
        }
    }
    if (atomic_load(&g_worker_errors)) {
        printf("FAIL: %ld worker errors (corruption or NULL)\n", atomic_load(&g_worker_errors));
        failures++;
    }
    if (failures) {
        printf("FORK FAILED (%d failures)\n", failures);
        return 1;
    }
    printf("FORK OK (%d forks, %ld worker ops)\n", FORKS, atomic_load(&g_worker_ops));
    return 0;
}
