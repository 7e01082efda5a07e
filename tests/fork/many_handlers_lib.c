/*
 * many_handlers_lib.c - a library whose constructor registers FILL fork handlers that do not
 * allocate (used by many_handlers.c).
 *
 * The program links it, so its constructor runs before the preloaded allocator's. glibc
 * (2.28 and later) keeps its first 48 handlers in static storage; with these 48 in place,
 * the allocator's own registration, made during its start-up, is the one that makes glibc
 * call malloc to grow the array — a malloc that re-enters the allocator while it starts up.
 */
#include <pthread.h>
#include <stdatomic.h>

enum { FILL = 48 };

atomic_int many_handlers_prepared, many_handlers_child_ran;

static void prepare(void) { atomic_fetch_add(&many_handlers_prepared, 1); }
static void child(void) { atomic_fetch_add(&many_handlers_child_ran, 1); }

__attribute__((constructor)) static void fill(void)
{
    for (int i = 0; i < FILL; i++)
        if (pthread_atfork(prepare, NULL, child) != 0)
            __builtin_trap();
}
