/*
 * spawn.c - vfork + exec and posix_spawn while other threads allocate (issue 16, item 1e).
 *
 * WORKERS threads allocate and free in a loop while main starts ROUNDS copies of this program
 * with vfork + execve and ROUNDS with posix_spawn (neither runs fork handlers; the child
 * must not allocate before exec, and does not). Each copy, started with "exec-child", runs
 * under the same LD_PRELOAD in a fresh image: it registers a prepare handler that allocates,
 * before its first malloc, then allocates and forks, and its child allocates and exits 0 — so
 * it needs the allocator's handlers registered from its constructor again (before the fix
 * it hung in that fork and main reported the copy as hung).
 *
 * Exit 0 and "SPAWN OK".
 */
#include "common.h"
#include <spawn.h>

extern char **environ;

enum { ROUNDS = 8, WORKERS = 3 };

static atomic_int g_prepared;

static void prepare(void)
{
    if (!churn(21, 3))
        FAIL("exec-child prepare: churn failed");
    atomic_fetch_add(&g_prepared, 1);
}

static int exec_child(void)
{
    CHECK(pthread_atfork(prepare, NULL, NULL) == 0, "exec-child: pthread_atfork");
    unsigned char *keep = f_malloc(100000);
    CHECK(keep, "exec-child: malloc");
    keep[0] = 7;
    pid_t pid = fork();
    CHECK(pid >= 0, "exec-child: fork: %s", strerror(errno));
    if (pid == 0)
        _exit(keep[0] == 7 ? child_work(7) : 9);
    expect_child_ok(pid, 8, "exec-child fork", 0);
    CHECK(atomic_load(&g_prepared) == 1, "exec-child: prepare ran %d times",
          atomic_load(&g_prepared));
    f_free(keep);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "exec-child") == 0)
        return exec_child();
    char *child_argv[] = {argv[0], "exec-child", NULL};
    pthread_t w[WORKERS];
    start_workers(w, WORKERS);
    for (int i = 0; i < ROUNDS; i++) {
        pid_t pid = vfork();
        CHECK(pid >= 0, "vfork: %s", strerror(errno));
        if (pid == 0) {
            execve(argv[0], child_argv, environ);
            _exit(127);
        }
        expect_child_ok(pid, 12, "vfork+exec", i);

        int e = posix_spawn(&pid, argv[0], NULL, NULL, child_argv, environ);
        CHECK(e == 0, "posix_spawn: %s", strerror(e));
        expect_child_ok(pid, 12, "posix_spawn", i);
    }
    stop_workers(w, WORKERS);
    printf("SPAWN OK\n");
    return 0;
}
