/* Small runs side by side (docs/design.md §7, "Runs side by side"): a single-threaded program
 * that carves three small classes in turn gets each class's runs next to each other, so its
 * objects of one class run on in address order across page boundaries. With one run per take,
 * first fit laid the three classes' pages in turn and every page boundary of a class jumped
 * over the other two's pages. Prints the counts; exits 1 when fewer than 9 in 10 of a class's
 * page crossings go to the next page. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define N 1000

int main(void) {
    /* Three classes of one page run each (993-1,008, 689-704 and 497-512 bytes). */
    static const size_t sizes[3] = {1000, 700, 500};
    static uintptr_t addrs[3][N];
    for (int i = 0; i < N; i++)
        for (int c = 0; c < 3; c++) {
            void *p = malloc(sizes[c]);
            if (!p) return 2;
            addrs[c][i] = (uintptr_t)p; /* kept until exit */
        }
    int bad = 0;
    for (int c = 0; c < 3; c++) {
        int crossings = 0, next_page = 0;
        for (int i = 1; i < N; i++) {
            uintptr_t from = addrs[c][i - 1] >> 12, to = addrs[c][i] >> 12;
            if (from != to) {
                crossings++;
                if (to == from + 1) next_page++;
            }
        }
        printf("class %zu: %d of %d page crossings to the next page\n", sizes[c], next_page,
               crossings);
        if (crossings < 100 || next_page * 10 < crossings * 9) bad = 1;
    }
    return bad;
}
