/* C compiled by the `cc` crate; `cargo panic build` instruments it too. */
#include <stdint.h>
#include <stdlib.h>

uint64_t native_step(uint64_t acc, uint64_t i) { return acc * 31 + i; }

/* Entered once per call; its loop takes n back-edges and calls native_step n
 * times; one malloc and one free per call. */
uint64_t native_sum(uint64_t n) {
    uint64_t *buf = malloc(sizeof *buf);
    *buf = 7;
    for (uint64_t i = 0; i < n; i++)
        *buf = native_step(*buf, i);
    uint64_t r = *buf;
    free(buf);
    return r;
}
