/* hakozuna's own C functions, exported by libhakozuna.so and libhakozuna_fast.so next to the C
 * malloc family, the C++ operators and glibc's mallinfo2/malloc_stats/malloc_info/mallopt.
 *
 * A program that may also run without the library preloaded can look them up instead of
 * linking them:
 *     size_t (*json)(char *, size_t) =
 *         (size_t (*)(char *, size_t))dlsym(RTLD_DEFAULT, "hakozuna_stats_json");
 */
#ifndef HAKOZUNA_H
#define HAKOZUNA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Writes the allocator's statistics as one line of JSON (ending in a newline) into buf, at
 * most len - 1 bytes and a terminating NUL, like snprintf, and returns the length of the whole
 * document without the NUL: call it with len 0 (buf may then be NULL) to size a buffer.
 * Never allocates; safe while other threads allocate. The keys are described in the README
 * ("Statistics") and docs/design.md section 13. */
size_t hakozuna_stats_json(char *buf, size_t len);

/* Prints the statistics summary on stderr (what HAKOZUNA_STATS=1 prints at exit). */
void hakozuna_stats_print(void);

#ifdef __cplusplus
}
#endif

#endif /* HAKOZUNA_H */
