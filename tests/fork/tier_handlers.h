/*
 * tier_handlers.h - the prepare/parent/child handlers that before_malloc.c and after_malloc.c
 * register (include after common.h): each allocates in every tier and counts its runs, so a
 * fork whose allocator locks are held in the wrong order hangs in one of them. A child
 * handler that fails says so with write(2) only and exits 5.
 */

static atomic_int g_prepared, g_parented;
static volatile int g_child_handler_ran;

static void prepare(void)
{
    if (!churn(1, 3))
        FAIL("prepare: churn failed");
    atomic_fetch_add(&g_prepared, 1);
}

static void parent(void)
{
    if (!churn(2, 3))
        FAIL("parent handler: churn failed");
    atomic_fetch_add(&g_parented, 1);
}

static void child(void)
{
    if (!churn(3, 3)) {
        say("child handler: churn failed\n");
        _exit(5);
    }
    g_child_handler_ran = 1;
}
