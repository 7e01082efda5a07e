/*
 * probe.c - prints, one per line, "<symbol> <path of the object defining it>" for the
 * allocator entry points as the dynamic linker resolves them in this process (global
 * scope, so LD_PRELOAD wins). Used by tests/preload.rs to make sure a preloaded library
 * really interposes malloc & co. before trusting a real-program test.
 *
 * Build: gcc -O1 -o probe probe.c
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    static const char *const names[] = {"malloc", "free", "calloc", "realloc",
                                        "posix_memalign", "aligned_alloc", "malloc_usable_size"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *sym = dlsym(RTLD_DEFAULT, names[i]);
        Dl_info info;
        if (sym && dladdr(sym, &info) && info.dli_fname)
            printf("%s %s\n", names[i], info.dli_fname);
        else
            printf("%s ?\n", names[i]);
    }
    /* and the allocator works at all */
    void *p = malloc(100);
    free(p);
    return 0;
}
