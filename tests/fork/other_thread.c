/*
 * other_thread.c - fork handlers registered from another thread while threads allocate
 * (issue 16, item 1c).
 *
 * Before anything has called malloc, main registers a child-only handler that allocates in
 * every tier: child handlers run in registration order, so the allocator's child handler
 * (which releases the locks its prepare took) must already be registered, i.e. from its
 * constructor. Registered on the first malloc, as before the fix, it runs after ours and
 * every child hangs in our handler's first large allocation.
 *
 * Then WORKERS threads allocate and free in a loop while a registrar thread registers a
 * second set of handlers (prepare/parent/child, all allocating) at a moment racing with the
 * main thread's forks; main forks ROUNDS times (the second half after the registration is
 * known to be done) and each child allocates, also from new threads, and exits 0.
 *
 * Exit 0 and "OTHER_THREAD OK".
 */
#include "common.h"

enum { ROUNDS = 30, WORKERS = 3 };

static volatile int g_child0_ran, g_child1_ran;
static atomic_int g_prepared1, g_parented1;

static void child0(void)
{
    if (!churn(10, 3)) {
        say("first child handler: churn failed\n");
        _exit(5);
    }
    g_child0_ran = 1;
}

static void prepare1(void)
{
    if (!churn(11, 2))
        FAIL("prepare: churn failed");
    atomic_fetch_add(&g_prepared1, 1);
}

static void parent1(void)
{
    if (!churn(12, 2))
        FAIL("parent handler: churn failed");
    atomic_fetch_add(&g_parented1, 1);
}

static void child1(void)
{
    if (!churn(13, 2)) {
        say("second child handler: churn failed\n");
        _exit(5);
    }
    g_child1_ran = 1;
}

static void *registrar(void *arg)
{
    (void)arg;
    /* Let the workers and the first forks get going. */
    if (!churn(14, 200))
        return NULL;
    return pthread_atfork(prepare1, parent1, child1) == 0 ? (void *)1 : NULL;
}

int main(void)
{
    CHECK(pthread_atfork(NULL, NULL, child0) == 0, "pthread_atfork");
    pthread_t w[WORKERS], reg;
    start_workers(w, WORKERS);
    CHECK(pthread_create(&reg, NULL, registrar, NULL) == 0, "pthread_create");
    int registered_at = -1;
    for (int i = 0; i < ROUNDS; i++) {
        if (i == ROUNDS / 2) {
            void *ok;
            pthread_join(reg, &ok);
            CHECK(ok, "registrar thread failed");
        }
        int before = atomic_load(&g_prepared1);
        pid_t pid = fork();
        CHECK(pid >= 0, "fork: %s", strerror(errno));
        if (pid == 0) {
            if (!g_child0_ran)
                _exit(6);
            /* The second child handler ran iff its prepare did for this fork. */
            if (g_child1_ran != (atomic_load(&g_prepared1) != before))
                _exit(8);
            _exit(child_work(100 + i));
        }
        expect_child_ok(pid, 10, "fork", i);
        if (registered_at < 0 && atomic_load(&g_prepared1) != before)
            registered_at = i;
    }
    stop_workers(w, WORKERS);
    int p1 = atomic_load(&g_prepared1);
    CHECK(registered_at >= 0 && registered_at <= ROUNDS / 2 && p1 == ROUNDS - registered_at &&
              atomic_load(&g_parented1) == p1,
          "second handlers: first ran at fork %d, prepare %d, parent %d times", registered_at,
          p1, atomic_load(&g_parented1));
    printf("OTHER_THREAD OK (second handlers from fork %d)\n", registered_at);
    return 0;
}
