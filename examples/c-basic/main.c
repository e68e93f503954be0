/* c-basic: calls, nested loops, recursion, malloc/free, while, do-while and an
 * early return, with probe counts known in closed form (see README.md).
 *
 *   c-basic [N [M [K [F [A [G [W [D [L [P]]]]]]]]]]
 *
 * Every counted function is a plain external function marked noinline, so a
 * plain build keeps every call. main itself has no loop. */

#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline))

/* Adds with wrap-around (no signed overflow for any argument). */
NOINLINE int add(int a, int b) {
    return (int)((unsigned)a + (unsigned)b);
}

/* Calls add exactly n times from one for loop: n back-edges. */
NOINLINE int sum_adds(int n) {
    int acc = 0;
    for (int i = 0; i < n; i++) {
        acc = add(acc, i % 1000);
    }
    return acc;
}

/* The unit of work of the inner loop. */
NOINLINE unsigned cell(unsigned i, unsigned j) {
    return i * 31u + j;
}

/* An outer loop of m iterations, each running an inner loop of k iterations:
 * outer back-edges m, inner back-edges m*k, cell called m*k times. */
NOINLINE unsigned nested(int m, int k) {
    unsigned acc = 0;
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < k; j++) {
            acc ^= cell((unsigned)i, (unsigned)j) + (acc << 1);
        }
    }
    return acc;
}

/* Naive recursion, both calls kept: 2*fib(n+1)-1 calls in all. */
NOINLINE unsigned fib(int n) {
    if (n < 2) {
        return (unsigned)(n < 0 ? 0 : n);
    }
    return fib(n - 1) + fib(n - 2);
}

/* Exactly a malloc and a free per iteration: a of each, a back-edges. */
NOINLINE unsigned long churn(int a) {
    unsigned long acc = 0;
    for (int i = 0; i < a; i++) {
        size_t len = 16 + (size_t)i % 64;
        unsigned char *p = malloc(len);
        if (p == NULL) {
            return 0;
        }
        p[0] = (unsigned char)i;
        p[len - 1] = (unsigned char)(i >> 3);
        acc += (unsigned long)p[0] + p[len - 1];
        free(p);
    }
    return acc;
}

/* One calloc, then g reallocs that each grow the buffer by one int, then one
 * free: allocation sites 1 + g, free sites 1, back-edges g. */
NOINLINE long grow(int g) {
    int *buf = calloc(4, sizeof *buf);
    if (buf == NULL) {
        return -1;
    }
    long acc = 0;
    for (int i = 0; i < g; i++) {
        int *next = realloc(buf, (size_t)(5 + i) * sizeof *buf);
        if (next == NULL) {
            free(buf);
            return -1;
        }
        buf = next;
        buf[4 + i] = i * i;
        acc += buf[4 + i] + buf[0];
    }
    free(buf);
    return acc;
}

/* A while loop whose body runs w times: w back-edges. */
NOINLINE unsigned while_loop(int w) {
    unsigned acc = 1;
    int i = 0;
    while (i < w) {
        acc = acc * 33u + (unsigned)i;
        i++;
    }
    return acc;
}

/* A do-while loop: the body runs max(d, 1) times, the back-edge (the jump
 * from the condition to the top of the body) is taken max(d, 1) - 1 times. */
NOINLINE unsigned do_loop(int d) {
    unsigned acc = 7;
    int i = 0;
    do {
        acc = acc * 5u + (unsigned)i;
        i++;
    } while (i < d);
    return acc;
}

/* Returns the first i in [0, len) with i == stop, from the middle of the loop;
 * -1 when there is none. Back-edges: min(stop, len) for stop >= 0. */
NOINLINE int search(int len, int stop) {
    for (int i = 0; i < len; i++) {
        if (i == stop) {
            return i;
        }
    }
    return -1;
}

/* Argument idx as a non-negative int, or def when absent; -1 when invalid. */
NOINLINE int parse_arg(int argc, char **argv, int idx, int def) {
    if (idx >= argc) {
        return def;
    }
    char *end = NULL;
    long v = strtol(argv[idx], &end, 10);
    if (end == argv[idx] || *end != '\0' || v < 0 || v > 100000000L) {
        return -1;
    }
    return (int)v;
}

int main(int argc, char **argv) {
    int n = parse_arg(argc, argv, 1, 1000);
    int m = parse_arg(argc, argv, 2, 10);
    int k = parse_arg(argc, argv, 3, 20);
    int f = parse_arg(argc, argv, 4, 15);
    int a = parse_arg(argc, argv, 5, 100);
    int g = parse_arg(argc, argv, 6, 8);
    int w = parse_arg(argc, argv, 7, 50);
    int d = parse_arg(argc, argv, 8, 30);
    int l = parse_arg(argc, argv, 9, 40);
    int p = parse_arg(argc, argv, 10, 25);
    if (argc > 11 || n < 0 || m < 0 || k < 0 || f < 0 || f > 40 || a < 0 || g < 0 || w < 0 ||
        d < 0 || l < 0 || p < 0) {
        fprintf(stderr, "usage: c-basic [N [M [K [F<=40 [A [G [W [D [L [P]]]]]]]]]]\n");
        return 2;
    }
    printf("add x%d = %d\n", n, sum_adds(n));
    printf("nested %dx%d = %u\n", m, k, nested(m, k));
    printf("fib(%d) = %u\n", f, fib(f));
    printf("churn %d = %lu\n", a, churn(a));
    printf("grow %d = %ld\n", g, grow(g));
    printf("while %d = %u\n", w, while_loop(w));
    printf("do-while %d = %u\n", d, do_loop(d));
    printf("search %d for %d = %d\n", l, p, search(l, p));
    printf("search %d for %d = %d\n", l, l, search(l, l));
    return 0;
}
