/* Small runs reserved side by side must not hide resident pages from the purge (design.md §7,
 * "Runs side by side"). Single-threaded (reservations are made only while the process has one
 * heap), run with the scale lane preloaded and HAKOZUNA_DECAY_MS=0 (every epoch is a decay
 * pass, so the program counts epochs instead of waiting):
 * 1. class A (1,000 bytes, one-page runs) fills 64 pages, then is freed in address order;
 * 2. medium allocations drive epochs until decay sweeps A's runs back to their segment: the
 *    pass that returns them ages their pages (free, still resident, to be purged next pass);
 * 3. at once, class B (500 bytes, one-page runs) takes four runs: the fourth reserves the
 *    next three runs' pages ahead, which are A's aged pages;
 * 4. malloc_trim(0) gives the reservation back and purges every free resident page.
 * The three pages after B's last run must then not be resident (mincore). When the
 * reservation took aged pages and gave them back neither dirty nor aged, no purge saw them.
 * Exits 0 when they are not resident, 1 when one is, 2 on a setup that did not happen. */
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096
#define NA (4 * 64)
#define NB 25
#define NM 64

typedef size_t (*stats_json_fn)(char *, size_t);
static stats_json_fn stats_json;
static char buf[1 << 16];

/* An event count from the library's JSON statistics. */
static unsigned long long event(const char *name) {
    stats_json(buf, sizeof buf);
    char key[96];
    snprintf(key, sizeof key, "\"%s\":", name);
    const char *p = strstr(buf, key);
    return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

static int resident(uintptr_t page) {
    unsigned char v = 0;
    if (mincore((void *)(page * PAGE), PAGE, &v) != 0) return -1;
    return v & 1;
}

static int cmp(const void *a, const void *b) {
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return (x > y) - (x < y);
}

int main(void) {
    stats_json = (stats_json_fn)dlsym(RTLD_DEFAULT, "hakozuna_stats_json");
    if (!stats_json) {
        puts("setup: hakozuna_stats_json not found (library not preloaded)");
        return 2;
    }
    static uintptr_t a[NA];
    for (int i = 0; i < NA; i++) {
        char *p = malloc(1000);
        if (!p) return 2;
        p[0] = 1;
        a[i] = (uintptr_t)p;
    }
    qsort(a, NA, sizeof a[0], cmp);
    uintptr_t a_lo = a[0] / PAGE, a_hi = a[NA - 1] / PAGE;
    for (int i = 0; i < NA; i++) free((void *)a[i]);

    unsigned long long returned = event("small_runs_returned");
    int rounds = 0;
    while (event("small_runs_returned") < returned + 16) {
        /* Medium runs live in segments of their own: A's small segment stays as it is. */
        static void *m[NM];
        size_t size = 8192 + (size_t)(rounds % 16) * 4096;
        for (int i = 0; i < NM; i++)
            if (!(m[i] = malloc(size))) return 2;
        for (int i = 0; i < NM; i++) free(m[i]);
        if (++rounds > 100000) {
            puts("setup: decay never returned A's runs");
            return 2;
        }
    }

    static uintptr_t b[NB];
    for (int i = 0; i < NB; i++) {
        char *p = malloc(500);
        if (!p) return 2;
        p[0] = 1;
        b[i] = (uintptr_t)p;
    }
    uintptr_t q = 0;
    for (int i = 0; i < NB; i++)
        if (b[i] / PAGE > q) q = b[i] / PAGE;
    if (q + 3 > a_hi || q < a_lo) {
        printf("setup: B's last run (page %lu) not inside A's pages (%lu-%lu)\n",
               (unsigned long)q, (unsigned long)a_lo, (unsigned long)a_hi);
        return 2;
    }
    for (uintptr_t pg = q + 1; pg <= q + 3; pg++)
        if (resident(pg) != 1) {
            printf("setup: page %lu after B's last run not resident before the trim\n",
                   (unsigned long)(pg - q));
            return 2;
        }
    malloc_trim(0);
    int r[3], bad = 0;
    for (int i = 0; i < 3; i++) r[i] = resident(q + 1 + i);
    /* Printed after reading them all: stdout's buffer is allocated at the first print. */
    for (int i = 0; i < 3; i++) {
        printf("page %d after B's last run: %s\n", i + 1, r[i] ? "resident" : "purged");
        bad |= r[i] != 0;
    }
    for (int i = 0; i < NB; i++) free((void *)b[i]);
    return bad;
}
