/*
 * common.h - helpers shared by the fork-ordering programs (tests/fork_order.rs).
 *
 * Every program exits 0 and prints "<NAME> OK" on success. A check that fails prints one
 * line on stderr and exits 1. A child that hangs is killed by wait_child's deadline (the
 * Rust harness kills the whole process group after 20 s as well).
 */
#define _GNU_SOURCE
/* Not every program uses every helper. */
#pragma GCC diagnostic ignored "-Wunused-function"
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

/* Through volatile pointers so the compiler cannot elide or merge allocation pairs. */
static void *(*volatile f_malloc)(size_t) = malloc;
static void *(*volatile f_calloc)(size_t, size_t) = calloc;
static void *(*volatile f_realloc)(void *, size_t) = realloc;
static void (*volatile f_free)(void *) = free;

#define FAIL(...)                                                                          \
    do {                                                                                   \
        fprintf(stderr, __VA_ARGS__);                                                      \
        fputc('\n', stderr);                                                               \
        exit(1);                                                                           \
    } while (0)

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond))                                                                       \
            FAIL(__VA_ARGS__);                                                             \
    } while (0)

/* A message from a fork child or handler: write(2) only, no stdio state. */
static void say(const char *s)
{
    ssize_t r = write(2, s, strlen(s));
    (void)r;
}

/*
 * Allocates, writes, checks and frees blocks in every tier the allocator has: small (thread
 * cache), medium, and large (above 64 KiB: the large tier and its locks, which a fork
 * handler of the allocator holds). Returns 1 if every block came back intact.
 */
static int churn(uint64_t seed, int rounds)
{
    static const size_t sizes[] = {8, 24, 100, 1000, 3000, 20000, 70000, 300000, 1 << 20};
    enum { N = sizeof sizes / sizeof sizes[0] };
    uint64_t x = seed | 1;
    for (int r = 0; r < rounds; r++) {
        unsigned char *p[N];
        for (int i = 0; i < N; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            size_t n = sizes[i] + (x % 64);
            p[i] = (i % 3 == 1) ? f_calloc(1, n) : f_malloc(n);
            if (!p[i])
                return 0;
            if (i % 3 == 1 && (p[i][0] | p[i][n - 1]))
                return 0;
            memset(p[i], (int)(i + r), n);
        }
        /* Grow one block across tiers. */
        unsigned char *q = f_realloc(p[1], sizes[7]);
        if (!q || q[0] != (unsigned char)(1 + r))
            return 0;
        p[1] = q;
        memset(p[1], (int)(1 + r), sizes[7]);
        for (int i = 0; i < N; i++) {
            if (p[i][0] != (unsigned char)(i + r))
                return 0;
            f_free(p[i]);
        }
    }
    return 1;
}

/* Waits up to `secs` for `pid`; returns its wait status, or -1 after killing it on timeout. */
static int wait_child(pid_t pid, int secs)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0 && errno != EINTR)
            FAIL("waitpid(%d): %s", (int)pid, strerror(errno));
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec >= secs) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(1000);
    }
}

/* Checks a child's wait status: exited 0 in time. */
static void expect_child_ok(pid_t pid, int secs, const char *what, int round)
{
    int st = wait_child(pid, secs);
    CHECK(st != -1, "%s %d: child %d hung (killed after %d s)", what, round, (int)pid, secs);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "%s %d: child %d did not exit 0 (status 0x%x%s%s)", what, round, (int)pid, st,
          WIFSIGNALED(st) ? ", signal " : "", WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "");
}

static void *churn_thread(void *arg)
{
    return churn((uintptr_t)arg, 20) ? (void *)1 : NULL;
}

/*
 * What a fork child does before _exit: allocates in every tier, then from two new threads.
 * Returns the exit code (0 = fine). An alarm kills a child that deadlocks.
 */
static int child_work(uint64_t seed)
{
    alarm(10);
    if (!churn(seed, 20)) {
        say("child: churn failed\n");
        return 2;
    }
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, churn_thread, (void *)(uintptr_t)(seed + i + 1))) {
            say("child: pthread_create failed\n");
            return 3;
        }
    for (int i = 0; i < 2; i++) {
        void *ok;
        pthread_join(t[i], &ok);
        if (!ok) {
            say("child: churn in a thread failed\n");
            return 4;
        }
    }
    return 0;
}

/* Worker threads that allocate and free in a loop (with frees of other threads' blocks
 * through a shared slot array) until g_stop. */
enum { SLOTS = 256 };
static atomic_int g_stop;
static atomic_long g_worker_errors;
static _Atomic(unsigned char *) g_slots[SLOTS];

static void *alloc_loop(void *arg)
{
    uint64_t x = 0x9E3779B97F4A7C15ull * ((uintptr_t)arg + 1);
    while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        unsigned r = (unsigned)(x >> 40) % 100;
        size_t n = r < 70 ? 16 + (x >> 16) % 2000 : r < 95 ? 2049 + (x >> 16) % 60000
                                                           : 65537 + (x >> 16) % 500000;
        unsigned char *p = f_malloc(n);
        if (!p) {
            atomic_fetch_add(&g_worker_errors, 1);
            continue;
        }
        p[0] = p[n - 1] = (unsigned char)n;
        unsigned char *old = atomic_exchange(&g_slots[x % SLOTS], p);
        if (old)
            f_free(old);
    }
    return NULL;
}

static void start_workers(pthread_t *t, int n)
{
    for (int i = 0; i < n; i++)
        CHECK(pthread_create(&t[i], NULL, alloc_loop, (void *)(uintptr_t)i) == 0,
              "pthread_create");
}

static void stop_workers(pthread_t *t, int n)
{
    atomic_store(&g_stop, 1);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < SLOTS; i++)
        f_free(atomic_exchange(&g_slots[i], NULL));
    CHECK(atomic_load(&g_worker_errors) == 0, "a worker's malloc returned NULL");
}
