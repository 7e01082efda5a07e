/* glibc's introspection calls (mallinfo2, mallinfo, malloc_stats, malloc_info, mallopt) and,
 * when the library provides it, hakozuna_stats_json; run by tests/surface.rs under plain glibc
 * (the checks common to both must pass there too) and under each hakozuna lane with
 * HZ_EXPECT_PRELOAD=1.
 *
 * The figures must move the right way: after allocating 100 MiB of large blocks (1 MiB each)
 * and 100 MiB of medium ones (32 KiB each), after freeing all of it, and after malloc_trim.
 * hakozuna's in-use figure counts pages given to size classes, which also hold free blocks
 * cached in thread bins and heap lists (up to 16 MiB per medium class here), so after the free
 * it must drop by at least 50 MiB, not by all 200.
 *
 * Each hakozuna_stats_json document is printed as one line "JSON <phase> {...}" for the Rust
 * test to parse. */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MiB ((size_t)1 << 20)
static int failures;
#define CHECK(c)                                                                   \
    do {                                                                           \
        if (!(c)) {                                                                \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c);           \
            failures++;                                                            \
        }                                                                          \
    } while (0)

static int hz;
static size_t (*stats_json)(char *, size_t);

static void show(const char *phase, const struct mallinfo2 *m) {
    printf("%-8s arena=%zu ordblks=%zu hblks=%zu hblkhd=%zu uordblks=%zu fordblks=%zu "
           "keepcost=%zu\n",
           phase, m->arena, m->ordblks, m->hblks, m->hblkhd, m->uordblks, m->fordblks,
           m->keepcost);
    if (stats_json) {
        static char buf[8192];
        size_t n = stats_json(buf, sizeof buf);
        CHECK(n < sizeof buf && strlen(buf) == n);
        printf("JSON %s %s", phase, buf); /* the document ends with a newline */
    }
    fflush(stdout);
}

static void json_api(void) {
    size_t need = stats_json(NULL, 0);
    CHECK(need > 100);
    char *full = malloc(need + 1);
    CHECK(stats_json(full, need + 1) >= need - 64); /* figures may move in between */
    CHECK(full[0] == '{');
    char small[10];
    memset(small, 'x', sizeof small);
    size_t n = stats_json(small, sizeof small);
    CHECK(n > sizeof small && small[9] == 0 && strlen(small) == 9);
    CHECK(memcmp(small, "{\"version", 9) == 0);
    free(full);
}

static void mallinfo_checks(void) {
    enum { NBIG = 100, NMED = 3200 };
    static void *big[NBIG], *med[NMED];
    struct mallinfo2 m0 = mallinfo2();
    show("start", &m0);

    for (int i = 0; i < NBIG; i++) {
        big[i] = malloc(MiB);
        CHECK(big[i] != NULL);
        memset(big[i], i, MiB);
    }
    struct mallinfo2 m1 = mallinfo2();
    show("large", &m1);
    CHECK(m1.hblkhd >= m0.hblkhd + 100 * MiB);
    CHECK(m1.hblks >= m0.hblks + NBIG);

    for (int i = 0; i < NMED; i++) {
        med[i] = malloc(32768);
        CHECK(med[i] != NULL);
        memset(med[i], i, 32768);
    }
    struct mallinfo2 m2 = mallinfo2();
    show("medium", &m2);
    CHECK(m2.uordblks >= m1.uordblks + 100 * MiB);
    CHECK(m2.arena >= m1.arena + 95 * MiB);
    CHECK(m2.arena == m2.uordblks + m2.fordblks);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    struct mallinfo mi = mallinfo();
#pragma GCC diagnostic pop
    CHECK((size_t)mi.uordblks == m2.uordblks && (size_t)mi.hblkhd == m2.hblkhd &&
          (size_t)mi.arena == m2.arena);

    for (int i = 0; i < NMED; i++) free(med[i]);
    for (int i = 0; i < NBIG; i++) free(big[i]);
    struct mallinfo2 m3 = mallinfo2();
    show("freed", &m3);
    CHECK(m3.hblkhd + 100 * MiB <= m2.hblkhd);
    CHECK(m3.uordblks + 50 * MiB <= m2.uordblks);
    CHECK(m3.arena == m3.uordblks + m3.fordblks);
    if (hz) {
        /* The large blocks wait in the large cache; the medium runs beyond the central
         * lists' cap went back to their segments as free pages. */
        CHECK(m3.fordblks >= m2.fordblks + 150 * MiB);
        CHECK(m3.keepcost >= 90 * MiB);
        CHECK(m3.ordblks >= 90);
    }

    int released = malloc_trim(0);
    struct mallinfo2 m4 = mallinfo2();
    show("trimmed", &m4);
    if (hz) {
        CHECK(released == 1);
        /* The cached large blocks are unmapped: out of arena, fordblks and keepcost. The
         * medium runs the central lists kept (16 MiB of this class) go back to their segments
         * too: out of uordblks, into fordblks as free pages. */
        CHECK(m4.arena + 90 * MiB <= m3.arena);
        CHECK(m4.uordblks + 10 * MiB <= m3.uordblks);
        CHECK(m4.fordblks + 75 * MiB <= m3.fordblks);
        CHECK(m4.keepcost + 90 * MiB <= m3.keepcost);
        CHECK(m4.hblkhd == m3.hblkhd);
    }
    CHECK(m4.arena == m4.uordblks + m4.fordblks);
}

static void malloc_info_checks(void) {
    /* A file: written through its descriptor. */
    FILE *f = tmpfile();
    CHECK(f != NULL);
    fputs("before\n", f); /* buffered: malloc_info must flush it first */
    CHECK(malloc_info(0, f) == 0);
    fputs("after\n", f);
    fflush(f);
    rewind(f);
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    CHECK(strncmp(text, "before\n<malloc version=\"1\">\n", 28) == 0);
    CHECK(strstr(text, "<heap nr=\"0\">") != NULL);
    CHECK(strstr(text, "<total type=\"mmap\"") != NULL);
    CHECK(strstr(text, "<system type=\"current\"") != NULL);
    CHECK(n > 16 && strcmp(text + n - 16, "</malloc>\nafter\n") == 0);

    /* A memory stream: no descriptor, written with fwrite. */
    char *mem = NULL;
    size_t len = 0;
    FILE *ms = open_memstream(&mem, &len);
    CHECK(ms != NULL);
    CHECK(malloc_info(0, ms) == 0);
    fclose(ms);
    CHECK(mem && strncmp(mem, "<malloc version=\"1\">", 20) == 0);
    CHECK(len > 20 && strstr(mem, "</malloc>\n") == mem + len - 10);
    free(mem);

    CHECK(malloc_info(1, stdout) == EINVAL);
}

static void mallopt_checks(void) {
    /* What glibc 2.36 returns (0 only for M_MXFAST outside 0..160); the plain-glibc run
     * proves the table. */
    CHECK(mallopt(M_MXFAST, 64) == 1);
    CHECK(mallopt(M_MXFAST, 0) == 1);
    CHECK(mallopt(M_MXFAST, 161) == 0);
    CHECK(mallopt(M_MXFAST, -1) == 0);
    CHECK(mallopt(M_MMAP_THRESHOLD, 256 * 1024) == 1);
    CHECK(mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024) == 1);
    CHECK(mallopt(M_MMAP_THRESHOLD, 64 * 1024 * 1024) == 1);
    CHECK(mallopt(M_MMAP_THRESHOLD, -1) == 1);
    CHECK(mallopt(M_TRIM_THRESHOLD, -1) == 1);
    CHECK(mallopt(M_TRIM_THRESHOLD, 128 * 1024) == 1);
    CHECK(mallopt(M_TOP_PAD, 0) == 1);
    CHECK(mallopt(M_MMAP_MAX, 65536) == 1);
    CHECK(mallopt(M_CHECK_ACTION, 3) == 1);
    CHECK(mallopt(M_PERTURB, 0) == 1);
    CHECK(mallopt(M_ARENA_TEST, 8) == 1);
    CHECK(mallopt(M_ARENA_MAX, 0) == 1);
    CHECK(mallopt(M_ARENA_MAX, 4) == 1);
    CHECK(mallopt(12345, 1) == 1);
    /* Allocation still works. */
    void *p = malloc(100);
    CHECK(p != NULL);
    free(p);
}

int main(void) {
    hz = getenv("HZ_EXPECT_PRELOAD") != NULL;
    stats_json = (size_t(*)(char *, size_t))dlsym(RTLD_DEFAULT, "hakozuna_stats_json");
    CHECK(!hz || stats_json != NULL);
    CHECK(hz || stats_json == NULL);
    if (stats_json) json_api();
    mallinfo_checks();
    fprintf(stderr, "--- malloc_stats\n");
    malloc_stats();
    fprintf(stderr, "--- end of malloc_stats\n");
    malloc_info_checks();
    mallopt_checks();
    if (failures) {
        printf("%d FAILURES\n", failures);
        return 1;
    }
    printf("INTROSPECT OK\n");
    return 0;
}
