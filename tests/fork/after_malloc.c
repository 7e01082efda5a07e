/*
 * after_malloc.c - a fork handler registered after the first malloc (issue 16, item 1b).
 *
 * The ordinary case: the program allocates (and uses stdio) first, then registers
 * prepare/parent/child handlers that allocate in every tier, then forks ROUNDS times from a
 * process whose worker threads allocate; each child allocates (also from new threads) and
 * exits 0. A second handler is registered half-way, after some forks. This order worked
 * before the constructor too; it guards the fix (e.g. against registering the allocator's
 * handlers late or twice: a second copy of its prepare would wait on its own locks).
 *
 * Exit 0 and "AFTER_MALLOC OK".
 */
#include "common.h"
#include "tier_handlers.h"

enum { ROUNDS = 20, WORKERS = 2 };

static atomic_int g_prepared2;

static void prepare2(void)
{
    if (!churn(4, 2))
        FAIL("second prepare: churn failed");
    atomic_fetch_add(&g_prepared2, 1);
}

int main(void)
{
    unsigned char *keep = f_malloc(KEEP_BYTES);
    CHECK(keep, "malloc");
    memset(keep, 0x5a, KEEP_BYTES);
    printf("after_malloc: allocated first\n");
    fflush(stdout);
    CHECK(pthread_atfork(prepare, parent, child) == 0, "pthread_atfork");
    pthread_t w[WORKERS];
    start_workers(w, WORKERS);
    for (int i = 0; i < ROUNDS; i++) {
        if (i == ROUNDS / 2)
            CHECK(pthread_atfork(prepare2, NULL, NULL) == 0, "second pthread_atfork");
        fork_round(keep, i);
    }
    stop_workers(w, WORKERS);
    CHECK(atomic_load(&g_prepared) == ROUNDS && atomic_load(&g_parented) == ROUNDS &&
              atomic_load(&g_prepared2) == ROUNDS - ROUNDS / 2,
          "handlers ran %d/%d/%d times", atomic_load(&g_prepared), atomic_load(&g_parented),
          atomic_load(&g_prepared2));
    f_free(keep);
    printf("AFTER_MALLOC OK\n");
    return 0;
}
