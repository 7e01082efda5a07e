/* Preloaded next to hakozuna by tests/rare_paths.rs (no_key mode of rare_paths.c): makes
 * pthread_key_create fail with EAGAIN, as when every one of PTHREAD_KEYS_MAX keys is taken —
 * every call with RARE_PATHS_FAIL_KEYS=all, only the first (hakozuna's, at start-up) with
 * RARE_PATHS_FAIL_KEYS=first. An interposed definition, so it works whichever library's
 * constructor runs first. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static int failed;

int rare_paths_shim_failed(void) { return __atomic_load_n(&failed, __ATOMIC_RELAXED); }

int pthread_key_create(pthread_key_t *key, void (*dtor)(void *)) {
    const char *m = getenv("RARE_PATHS_FAIL_KEYS");
    if (m && (!strcmp(m, "all") || (!strcmp(m, "first") && rare_paths_shim_failed() == 0))) {
        __atomic_add_fetch(&failed, 1, __ATOMIC_RELAXED);
        return EAGAIN;
    }
    int (*real)(pthread_key_t *, void (*)(void *)) =
        (int (*)(pthread_key_t *, void (*)(void *)))dlsym(RTLD_NEXT, "pthread_key_create");
    return real ? real(key, dtor) : EAGAIN;
}
