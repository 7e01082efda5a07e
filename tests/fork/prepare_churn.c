/*
 * prepare_churn.c - forks whose prepare handler allocates and frees heavily while other
 * threads allocate (issue 16, item 1d).
 *
 * Before anything has called malloc, main registers handlers: prepare allocates and frees
 * a few hundred blocks in every tier and frees blocks other threads allocated (taking them
 * from the workers' shared slots), parent does a little of the same. WORKERS threads then
 * allocate and free in a loop (also freeing each other's blocks) while main forks ROUNDS
 * times. Each child frees blocks allocated by threads that do not exist in it, allocates in
 * every tier, starts threads that do the same, and exits 0. Before the fix the allocator's
 * prepare handler ran before ours and held its locks while ours allocated: the first fork
 * hung.
 *
 * Exit 0 and "PREPARE_CHURN OK".
 */
#include "common.h"

enum { ROUNDS = 30, WORKERS = 3 };

static atomic_int g_prepared;
static uint64_t g_seed = 1;

/* Frees up to n blocks the workers left in the shared slots (remote frees). */
static void free_slots(int from, int n)
{
    for (int i = 0; i < n; i++) {
        unsigned char *p = atomic_exchange(&g_slots[(from + i) % SLOTS], NULL);
        if (p)
            f_free(p);
    }
}

static void prepare(void)
{
    g_seed++;
    if (!churn(g_seed, 30))
        FAIL("prepare: churn failed");
    free_slots((int)(g_seed * 37), 64);
    /* Many small blocks at once: the thread cache empties and refills from its heap. */
    void *p[600];
    for (int i = 0; i < 600; i++)
        CHECK((p[i] = f_malloc(16 + i % 500)) != NULL, "prepare: malloc");
    for (int i = 0; i < 600; i++)
        f_free(p[i]);
    atomic_fetch_add(&g_prepared, 1);
}

static void parent(void)
{
    if (!churn(g_seed + 1000, 3))
        FAIL("parent handler: churn failed");
}

int main(void)
{
    CHECK(pthread_atfork(prepare, parent, NULL) == 0, "pthread_atfork");
    pthread_t w[WORKERS];
    start_workers(w, WORKERS);
    for (int i = 0; i < ROUNDS; i++) {
        pid_t pid = fork();
        CHECK(pid >= 0, "fork: %s", strerror(errno));
        if (pid == 0) {
            free_slots(0, SLOTS);
            _exit(child_work(100 + i));
        }
        expect_child_ok(pid, 10, "fork", i);
    }
    stop_workers(w, WORKERS);
    CHECK(atomic_load(&g_prepared) == ROUNDS, "prepare ran %d times, expected %d",
          atomic_load(&g_prepared), ROUNDS);
    printf("PREPARE_CHURN OK\n");
    return 0;
}
