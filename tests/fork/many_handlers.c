/*
 * many_handlers.c - the allocator's fork-handler registration allocates (issue 16, item 1:
 * re-entry during start-up).
 *
 * Links many_handlers_lib.c, whose constructor fills glibc's static room for 48 fork
 * handlers before the preloaded allocator's constructor runs, so the allocator's own
 * pthread_atfork (made while it starts up, before it publishes "initialised") calls malloc.
 * That malloc re-enters the allocator on the initialising thread, which must serve it (from
 * its large tier) without waiting for its own start-up. Then, as in before_malloc.c, main
 * registers an allocating prepare handler before its first malloc, registers 100 more
 * handlers (glibc grows, i.e. reallocs and frees, the block allocated during start-up),
 * and forks ROUNDS times; each child allocates and exits 0.
 *
 * Exit 0 and "MANY_HANDLERS OK".
 */
#include "common.h"

enum { ROUNDS = 10, FILL = 48, MORE = 100 };

extern atomic_int many_handlers_prepared, many_handlers_child_ran;
static atomic_int g_prepared;

static void prepare(void)
{
    if (!churn(31, 3))
        FAIL("prepare: churn failed");
    atomic_fetch_add(&g_prepared, 1);
}

static void nothing(void) {}

int main(void)
{
    CHECK(pthread_atfork(prepare, NULL, NULL) == 0, "pthread_atfork");
    unsigned char *keep = f_malloc(100000);
    CHECK(keep, "malloc");
    keep[0] = 3;
    for (int i = 0; i < MORE; i++)
        CHECK(pthread_atfork(nothing, nothing, nothing) == 0, "pthread_atfork %d", i);
    for (int i = 0; i < ROUNDS; i++) {
        pid_t pid = fork();
        CHECK(pid >= 0, "fork: %s", strerror(errno));
        if (pid == 0) {
            if (atomic_load(&many_handlers_child_ran) != FILL || keep[0] != 3)
                _exit(6);
            _exit(child_work(40 + i));
        }
        expect_child_ok(pid, 10, "fork", i);
    }
    CHECK(atomic_load(&g_prepared) == ROUNDS &&
              atomic_load(&many_handlers_prepared) == ROUNDS * FILL,
          "prepare handlers ran %d and %d times", atomic_load(&g_prepared),
          atomic_load(&many_handlers_prepared));
    f_free(keep);
    printf("MANY_HANDLERS OK\n");
    return 0;
}
