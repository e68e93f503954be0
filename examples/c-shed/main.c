/* c-shed: a fuse keeps a server alive. Requests arrive every millisecond;
 * each takes 1 MiB until it is served, and the server serves one every other
 * millisecond, so memory grows by about 500 MiB/s. The process limits its own
 * address space (RLIMIT_AS) to LIMIT MiB: without shedding, malloc fails and
 * the server aborts. With `fuse`, it asks the fuse "ingest" before accepting
 * a request and drops the request while the fuse is tripped; cargo-panic's
 * controller trips it when the memory price rises (see README.md).
 *
 *   c-shed fuse|nofuse SECONDS LIMIT_MIB
 *
 * Prints "served N shed M peak_mib P" when it lasts SECONDS. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#if __has_include(<panic.h>)
#include <panic.h>
#else
static int cargo_panic_fuse(const char *name) { (void)name; return 0; }
#endif

#define NOINLINE __attribute__((noinline))
#define MIB (1024 * 1024)
#define QUEUE 4096

static char *queue[QUEUE];
static unsigned head, tail;

static double mono_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* Accepts one request: 1 MiB, touched, queued. 0 when memory ran out. */
NOINLINE int accept_request(void) {
    if (tail - head == QUEUE)
        return 1; /* the queue is full: the request waits (not reached in practice) */
    char *buf = malloc(MIB);
    if (buf == NULL)
        return 0;
    memset(buf, 1, MIB);
    queue[tail++ % QUEUE] = buf;
    return 1;
}

NOINLINE void serve_one(void) {
    if (head != tail)
        free(queue[head++ % QUEUE]);
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[1], "fuse") != 0 && strcmp(argv[1], "nofuse") != 0)) {
        fprintf(stderr, "usage: c-shed fuse|nofuse SECONDS LIMIT_MIB\n");
        return 2;
    }
    int use_fuse = strcmp(argv[1], "fuse") == 0;
    double seconds = atof(argv[2]);
    long limit = atol(argv[3]);
    struct rlimit rl = {(rlim_t)limit * MIB, (rlim_t)limit * MIB};
    if (setrlimit(RLIMIT_AS, &rl) != 0) {
        perror("c-shed: setrlimit");
        return 2;
    }
    unsigned long served = 0, shed = 0, peak = 0;
    double t0 = mono_s();
    struct timespec tick = {0, 1000000};
    for (unsigned long i = 0; mono_s() - t0 < seconds; i++) {
        if (use_fuse && cargo_panic_fuse("ingest")) {
            shed++;
        } else if (!accept_request()) {
            fprintf(stderr, "c-shed: out of memory with %u requests queued (%lu served)\n", tail - head, served);
            abort();
        }
        if (i % 2 == 1 && head != tail) {
            serve_one();
            served++;
        }
        if (tail - head > peak)
            peak = tail - head;
        nanosleep(&tick, NULL);
    }
    printf("served %lu shed %lu peak_mib %lu\n", served, shed, peak);
    return 0;
}
