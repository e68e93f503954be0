/* Shared by the test drivers: the probes the pass would emit, spelled as macros. */
#ifndef DRIVER_H
#define DRIVER_H
#define _GNU_SOURCE
#include "panic_abi.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Opens a timed region of site `site` recorded into hist `hist`. */
#define ENTER(site, hist) __panic_dwell_enter(&__start_panic_counters[(site)], &__start_panic_hists[(hist)])
/* Closes every region from `token` up. */
#define EXIT(token) __panic_dwell_exit(token)
/* A counting probe: what the pass emits for an untimed site (an unlocked add to
 * the thread's own copy of the counter). */
#define COUNT(site)                                                                       \
    do {                                                                                  \
        uint64_t *c_ = (uint64_t *)((char *)&__start_panic_counters[(site)] + __panic_ctr_delta); \
        __atomic_store_n(c_, __atomic_load_n(c_, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);  \
    } while (0)

static inline unsigned tid(void) { return (unsigned)syscall(SYS_gettid); }

static inline void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "driver check failed at line %d: %s\n", __LINE__, #cond); \
            _exit(99);                                                           \
        }                                                                        \
    } while (0)
#endif
