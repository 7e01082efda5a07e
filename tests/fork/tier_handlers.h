/*
 * tier_handlers.h - what before_malloc.c and after_malloc.c share (include after common.h):
 * the prepare/parent/child handlers they register, each allocating in every tier and counting
 * its runs, so a fork whose allocator locks are held in the wrong order hangs in one of them
 * (a child handler that fails says so with write(2) only and exits 5); and their fork round.
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

/*
 * Round `i`: one fork. The child checks that its handler ran and that `keep` (KEEP_BYTES of
 * 0x5a, allocated before the fork) came through, then allocates (child_work); the parent
 * waits for it to exit 0.
 */
enum { KEEP_BYTES = 200000 };

static void fork_round(const unsigned char *keep, int i)
{
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        if (!g_child_handler_ran)
            _exit(6);
        if (keep[0] != 0x5a || keep[KEEP_BYTES - 1] != 0x5a)
            _exit(7);
        _exit(child_work(100 + i));
    }
    expect_child_ok(pid, 10, "fork", i);
}
