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
    unsigned char *keep = f_malloc(200000);
    CHECK(keep, "malloc");
    memset(keep, 0x5a, 200000);
    for (int i = 0; i < ROUNDS; i++) {
        pid_t pid = fork();
        CHECK(pid >= 0, "fork: %s", strerror(errno));
        if (pid == 0) {
            if (!g_child_handler_ran)
                _exit(6);
            if (keep[0] != 0x5a || keep[199999] != 0x5a)
                _exit(7);
            _exit(child_work(100 + i));
        }
        expect_child_ok(pid, 10, "fork", i);
    }
    CHECK(atomic_load(&g_prepared) == ROUNDS && atomic_load(&g_parented) == ROUNDS,
          "handlers ran %d/%d times, expected %d", atomic_load(&g_prepared),
          atomic_load(&g_parented), ROUNDS);
    f_free(keep);
    printf("BEFORE_MALLOC OK\n");
    return 0;
}
