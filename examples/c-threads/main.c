/* c-threads: T threads each take a pthread mutex I times, with probe counts
 * known in closed form (see README.md).
 *
 *   c-threads [T [I]]        defaults T = 4, I = 10000, 1 <= T <= 64
 *
 * The shared counter ends at T*I; each thread's checksum depends only on its
 * id, so the printed total does not depend on scheduling. */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline))
#define MAX_THREADS 64

static pthread_mutex_t counter_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned long counter;
static unsigned long iterations;

struct job {
    unsigned long id;
    unsigned long checksum;
};

/* The per-iteration unit of work outside the lock. */
NOINLINE unsigned long step(unsigned long acc, unsigned long id, unsigned long i) {
    return (acc ^ (id * 1000003ul + i)) * 0x9E3779B97F4A7C15ul >> 7;
}

/* The thread body: I iterations, each locks, increments, unlocks and then
 * calls step once. I back-edges per thread. */
NOINLINE void *worker(void *arg) {
    struct job *job = arg;
    unsigned long acc = job->id;
    for (unsigned long i = 0; i < iterations; i++) {
        pthread_mutex_lock(&counter_mu);
        counter++;
        pthread_mutex_unlock(&counter_mu);
        acc = step(acc, job->id, i);
    }
    job->checksum = acc;
    return NULL;
}

/* Argument idx as an unsigned long, def when absent; sets *ok = 0 when the
 * argument is not a decimal number. */
NOINLINE unsigned long parse_arg(int argc, char **argv, int idx, unsigned long def, int *ok) {
    if (idx >= argc) {
        return def;
    }
    char *end = NULL;
    unsigned long v = strtoul(argv[idx], &end, 10);
    if (end == argv[idx] || *end != '\0' || argv[idx][0] == '-') {
        *ok = 0;
    }
    return v;
}

int main(int argc, char **argv) {
    int ok = 1;
    unsigned long t = parse_arg(argc, argv, 1, 4, &ok);
    unsigned long n = parse_arg(argc, argv, 2, 10000, &ok);
    if (!ok || argc > 3 || t < 1 || t > MAX_THREADS) {
        fprintf(stderr, "usage: c-threads [T (1..%d) [I]]\n", MAX_THREADS);
        return 2;
    }
    iterations = n;
    pthread_t threads[MAX_THREADS];
    struct job jobs[MAX_THREADS];
    for (unsigned long k = 0; k < t; k++) {
        jobs[k].id = k;
        jobs[k].checksum = 0;
        if (pthread_create(&threads[k], NULL, worker, &jobs[k]) != 0) {
            fprintf(stderr, "c-threads: pthread_create failed\n");
            return 1;
        }
    }
    for (unsigned long k = 0; k < t; k++) {
        pthread_join(threads[k], NULL);
    }
    unsigned long sum = 0;
    for (unsigned long k = 0; k < t; k++) {
        sum ^= jobs[k].checksum;
    }
    printf("threads %lu x %lu counter %lu\n", t, n, counter);
    printf("checksum %lu\n", sum);
    return counter == t * n ? 0 : 1;
}
