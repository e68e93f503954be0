/* Counting probes in threads that come and go: two waves of workers (8, then 40:
 * more than one chunk of blocks, and blocks handed back by the first wave are
 * reused), each counting site 0 PER_THREAD times; main counts site 1 before,
 * between and after the waves. With argv[1], main then waits for a line on stdin
 * with one worker still running, so a reader can look at the live segment. */
#include "driver.h"

#define PER_THREAD 100000

static pthread_barrier_t all_alive;

/* Counts, then waits until the whole wave has counted: every worker of a wave
 * holds its block at the same time. */
static void *worker(void *arg) {
    (void)arg;
    for (int i = 0; i < PER_THREAD; i++)
        COUNT(0);
    pthread_barrier_wait(&all_alive);
    return NULL;
}

static int go, counted;

static void *parked(void *arg) {
    (void)arg;
    for (int i = 0; i < 7; i++)
        COUNT(2);
    __atomic_store_n(&counted, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE))
        sleep_ms(1);
    return NULL;
}

static void wave(int n) {
    pthread_t th[64];
    CHECK(pthread_barrier_init(&all_alive, NULL, (unsigned)n) == 0);
    for (int i = 0; i < n; i++)
        CHECK(pthread_create(&th[i], NULL, worker, NULL) == 0);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&all_alive);
    COUNT(1);
}

int main(int argc, char **argv) {
    COUNT(1);
    /* Every thread, main included, counts through a block of its own. */
    CHECK(__panic_ctr_delta != 0);
    wave(8);
    wave(40);
    if (argc > 1) {
        pthread_t p;
        CHECK(pthread_create(&p, NULL, parked, NULL) == 0);
        /* "ready" once the parked thread's counts are in its block. */
        while (!__atomic_load_n(&counted, __ATOMIC_ACQUIRE))
            sleep_ms(1);
        printf("ready\n");
        fflush(stdout);
        char line[8];
        CHECK(fgets(line, sizeof line, stdin) != NULL);
        __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
        pthread_join(p, NULL);
    }
    return 0;
}
