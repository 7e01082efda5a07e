/* Large blocks: one thread keeps LIVE blocks of MIN..MAX MiB (uniform, page-granular) and
 * replaces a random one ITERS times, touching every page of each new block. Prints wall time,
 * CPU time, minor faults and peak RSS of the whole run (getrusage), so allocators can be
 * compared under LD_PRELOAD, and the number of kernel mappings (lines of /proc/self/maps)
 * before the last frees. With IDLE_MS > 0 it then reports RSS (MiB, /proc/self/statm) after the
 * frees, after idling IDLE_MS and making one small allocation, after one 1 MiB malloc/free, and
 * after malloc_trim(0).
 * Usage: large_blocks [iters=1000] [live=32] [min=5] [max=25] [seed=1] [idle_ms=0] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <malloc.h>
#include <unistd.h>

static uint64_t rng;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double rss_mib(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024.0) / 1024.0;
}

static double secs(struct timeval t) { return t.tv_sec + t.tv_usec / 1e6; }

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 1000;
    long live = argc > 2 ? atol(argv[2]) : 32;
    long lo = (argc > 3 ? atol(argv[3]) : 5) << 20;
    long hi = (argc > 4 ? atol(argv[4]) : 25) << 20;
    rng = 0x9E3779B97F4A7C15ull * (uint64_t)(argc > 5 ? atol(argv[5]) : 1);
    char **slot = calloc(live, sizeof *slot);
    if (!slot) return 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned long sum = 0;
    for (long i = 0; i < iters + live; i++) {
        long k = i < live ? i : (long)(next() % live);
        free(slot[k]);
        size_t n = lo + (next() % (hi - lo + 1));
        char *p = malloc(n);
        if (!p) return 2;
        for (size_t off = 0; off < n; off += 4096) p[off] = (char)i;
        sum += p[n - 1];
        slot[k] = p;
    }
    long maps = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    if (f) {
        for (int c; (c = fgetc(f)) != EOF;) maps += c == '\n';
        fclose(f);
    }
    for (long k = 0; k < live; k++) free(slot[k]);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("wall_s %.3f cpu_s %.3f minflt %ld maxrss_mib %.1f maps %ld check %lu\n",
           (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9,
           secs(ru.ru_utime) + secs(ru.ru_stime), ru.ru_minflt, ru.ru_maxrss / 1024.0, maps, sum & 1);
    long idle_ms = argc > 6 ? atol(argv[6]) : 0;
    if (idle_ms > 0) {
        double freed = rss_mib();
        usleep(idle_ms * 1000);
        char *volatile small = malloc(64);
        double idle = rss_mib();
        char *volatile one = malloc(1 << 20);
        one[0] = 1;
        free(one);
        double after_large = rss_mib();
        free(small);
        malloc_trim(0);
        printf("rss_freed_mib %.1f rss_idle_mib %.1f rss_after_large_mib %.1f rss_trim_mib %.1f\n",
               freed, idle, after_large, rss_mib());
    }
    return 0;
}
