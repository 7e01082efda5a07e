/*
 * before_malloc.c - a fork handler registered before the first malloc (issue 16, item 1a).
 *
 * main registers prepare/parent/child handlers that allocate in every tier, before anything
 * in the process has called malloc (glibc's start-up does not, and no stdio is used before),
 * then allocates, then forks ROUNDS times; each child allocates (also from new threads) and
 * exits 0. fork runs prepare handlers in reverse registration order and parent/child handlers
 * in registration order, so this works only if the allocator registered its own handlers
 * (which hold every allocator lock from prepare to parent/child) before ours, i.e. from its
 * constructor. Registered on its first malloc, as before the fix, its prepare runs first and
 * ours then waits forever for a large-tier lock: the program hangs in its first fork.
 *
 * Exit 0 and "BEFORE_MALLOC OK".
 */
#include "common.h"
#include "tier_handlers.h"

enum { ROUNDS = 20 };

int main(void)
{
    CHECK(pthread_atfork(prepare, parent, child) == 0, "pthread_atfork");
    unsigned char *keep = f_malloc(KEEP_BYTES);
    CHECK(keep, "malloc");
    memset(keep, 0x5a, KEEP_BYTES);
    for (int i = 0; i < ROUNDS; i++) {
        fork_round(keep, i);
    }
    CHECK(atomic_load(&g_prepared) == ROUNDS && atomic_load(&g_parented) == ROUNDS,
          "handlers ran %d/%d times, expected %d", atomic_load(&g_prepared),
          atomic_load(&g_parented), ROUNDS);
    f_free(keep);
    printf("BEFORE_MALLOC OK\n");
    return 0;
}
