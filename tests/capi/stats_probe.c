/* Drives the remote-free paths the stats must show (run with HAKOZUNA_STATS=1 under the
 * preload library; tests/preload.rs checks the summary printed at exit):
 * 1. main allocates small and medium blocks, a second thread frees them (remote frees: small
 *    ones reach main's owner stash when that thread exits, medium ones are adopted by it),
 *    then main allocates the small class again and is refilled from its stash;
 * 2. main fills a medium bin, then only allocates a small class for several epochs, so the
 *    idle medium bin is trimmed. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 20000
#define M 300
static void *small[N];
static void *medium[M];

static void *freer(void *arg) {
    (void)arg;
    /* This thread allocates the medium class too, so it is one it uses. */
    void *own[M];
    for (int i = 0; i < M; i++) own[i] = malloc(4000);
    for (int i = 0; i < M; i++) free(own[i]);
    for (int i = 0; i < N; i++) free(small[i]);
    for (int i = 0; i < M; i++) free(medium[i]);
    return NULL;
}

int main(void) {
    for (int i = 0; i < N; i++) {
        small[i] = malloc(64);
        if (!small[i]) return 1;
        memset(small[i], 1, 64);
    }
    for (int i = 0; i < M; i++) {
        medium[i] = malloc(4000);
        if (!medium[i]) return 1;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, freer, NULL) != 0) return 1;
    pthread_join(t, NULL);
    for (int i = 0; i < N; i++) small[i] = malloc(64);
    for (int i = 0; i < N; i++) free(small[i]);

    for (int i = 0; i < M; i++) medium[i] = malloc(4000);
    for (int i = 0; i < M; i++) free(medium[i]);
    enum { K = 200000 };
    void **keep = malloc(K * sizeof *keep);
    if (!keep) return 1;
    for (int i = 0; i < K; i++) keep[i] = malloc(16);
    for (int i = 0; i < K; i++) free(keep[i]);
    free(keep);
    puts("stats_probe done");
    return 0;
}
