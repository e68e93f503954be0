/* c-split: known places for time to go, for the kernel's per-site split
 * (`cargo panic run --kernel`). Build with the regions timed:
 *   cargo panic cc --time spin --time nap --time burn --time hog --time stuck -- make
 *
 *   c-split spin MS      spin() burns MS ms of this thread's CPU time
 *   c-split nap MS       nap() sleeps MS ms
 *   c-split compete MS   two threads, both pinned to CPU 0, each burn MS ms of
 *                        CPU time in burn(): each waits in the run queue
 *                        while the other runs
 *   c-split hog MS       hog() burns MS ms of CPU time; SIGUSR1 makes it exit
 *                        with status 42 (for dwell budgets: --time hog)
 *   c-split stuck MS     stuck() sleeps MS ms; SIGUSR1 makes it exit with 42
 *   c-split syscalls N   calls getppid() N times in calls() and prints the
 *                        loop's wall time: "loop_s S" (for --syscalls)
 *   c-split price MS     burns MS ms of CPU time and prints the CPU price
 *                        (panic.h) each time it changes: "cpu_price P seq S"
 *   c-split woken MS     a thread naps 20 ms on CPU 0 while the main thread,
 *                        real-time (SCHED_FIFO, needs root) on the same CPU,
 *                        holds it from 5 ms to 5 + MS ms: the napper, woken
 *                        at 20 ms, waits in the run queue until then
 *
 * Expected (see README.md): spin's region is on-CPU for MS ms; nap's sleep is
 * blocked time of the nanosleep call inside nap (the innermost region); in
 * compete, burn is on-CPU for 2*MS ms and each burn thread waits in the run
 * queue for a large part of MS; in woken, nap's nanosleep is blocked for
 * 20 ms and in the run queue for MS - 15 ms. */

#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The price API: `cargo panic cc` puts panic.h on the include path; a plain
 * build has no prices. */
#if __has_include(<panic.h>)
#include <panic.h>
#else
#define PANIC_CPU 0
static double cargo_panic_price(unsigned r) { (void)r; return 0; }
static unsigned long long cargo_panic_price_seq(void) { return 0; }
#endif

#define NOINLINE __attribute__((noinline))

static double thread_cpu_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Burns `ms` of the calling thread's CPU time. */
NOINLINE void spin(long ms) {
    double t0 = thread_cpu_ms();
    while (thread_cpu_ms() - t0 < (double)ms) {
    }
}

NOINLINE void nap(long ms) {
    struct timespec d = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&d, &d) != 0) {
    }
}

static volatile sig_atomic_t got_usr1;

static void on_usr1(int sig) {
    (void)sig;
    got_usr1 = 1;
}

/* A busy loop that a budget can stop: SIGUSR1 ends the program with 42. */
NOINLINE void hog(long ms) {
    double t0 = thread_cpu_ms();
    while (thread_cpu_ms() - t0 < (double)ms) {
        if (got_usr1)
            exit(42);
    }
}

/* Blocked for ms (a signal interrupts the sleep; SIGUSR1 ends it with 42). */
NOINLINE void stuck(long ms) {
    struct timespec d = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&d, &d) != 0) {
        if (got_usr1)
            exit(42);
    }
}

/* Burns ms of CPU time, printing the CPU price whenever the controller moves it. */
NOINLINE void watch_price(long ms) {
    double t0 = thread_cpu_ms();
    unsigned long long seen = cargo_panic_price_seq();
    printf("cpu_price %.6f seq %llu\n", cargo_panic_price(PANIC_CPU), seen);
    while (thread_cpu_ms() - t0 < (double)ms) {
        unsigned long long seq = cargo_panic_price_seq();
        if (seq != seen) {
            seen = seq;
            printf("cpu_price %.6f seq %llu\n", cargo_panic_price(PANIC_CPU), seq);
        }
    }
    fflush(stdout);
}

static double mono_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* n system calls that do next to nothing: the syscall path's worst case. */
NOINLINE void calls(long n) {
    double t0 = mono_s();
    for (long i = 0; i < n; i++)
        getppid();
    printf("loop_s %.6f\n", mono_s() - t0);
}

static void pin_to_cpu0(void) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    if (pthread_setaffinity_np(pthread_self(), sizeof one, &one) != 0) {
        fprintf(stderr, "c-split: cannot pin to CPU 0\n");
        exit(2);
    }
}

static long burn_ms;
static pthread_barrier_t start;

/* One competitor: pinned to CPU 0, then the same loop as spin (inline, so that
 * the time is burn's own, not a child region's). */
NOINLINE void *burn(void *name) {
    pthread_setname_np(pthread_self(), name);
    pin_to_cpu0();
    pthread_barrier_wait(&start);
    double t0 = thread_cpu_ms();
    while (thread_cpu_ms() - t0 < (double)burn_ms) {
    }
    return NULL;
}

static void *napper(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "napper");
    pin_to_cpu0();
    pthread_barrier_wait(&start);
    nap(20);
    return NULL;
}

/* Holds CPU 0 for ms as a real-time thread, from 5 ms after the napper
 * started its nap. */
NOINLINE void hold(long ms) {
    pin_to_cpu0();
    pthread_barrier_wait(&start);
    struct timespec d = {0, 5000000L};
    while (nanosleep(&d, &d) != 0) {
    }
    struct sched_param rt = {.sched_priority = 1};
    int err = pthread_setschedparam(pthread_self(), SCHED_FIFO, &rt);
    if (err != 0) {
        fprintf(stderr, "c-split: cannot become real-time (%s): run as root\n", strerror(err));
        exit(2);
    }
    double t0 = mono_s();
    while ((mono_s() - t0) * 1e3 < (double)ms) {
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: c-split spin|nap|compete|hog|stuck|syscalls|price|woken MS\n");
        return 2;
    }
    long ms = strtol(argv[2], NULL, 10);
    if (ms <= 0) {
        fprintf(stderr, "c-split: MS must be a positive number of milliseconds\n");
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    if (strcmp(argv[1], "spin") == 0) {
        spin(ms);
    } else if (strcmp(argv[1], "nap") == 0) {
        nap(ms);
    } else if (strcmp(argv[1], "hog") == 0) {
        hog(ms);
    } else if (strcmp(argv[1], "stuck") == 0) {
        stuck(ms);
    } else if (strcmp(argv[1], "syscalls") == 0) {
        calls(ms);
    } else if (strcmp(argv[1], "price") == 0) {
        watch_price(ms);
    } else if (strcmp(argv[1], "compete") == 0) {
        burn_ms = ms;
        pthread_barrier_init(&start, NULL, 2);
        pthread_t a, b;
        pthread_create(&a, NULL, burn, "burn-a");
        pthread_create(&b, NULL, burn, "burn-b");
        pthread_join(a, NULL);
        pthread_join(b, NULL);
    } else if (strcmp(argv[1], "woken") == 0) {
        pthread_barrier_init(&start, NULL, 2);
        pthread_t n;
        pthread_create(&n, NULL, napper, NULL);
        hold(ms);
        pthread_join(n, NULL);
    } else {
        fprintf(stderr, "c-split: unknown mode %s (spin, nap, compete, hog, stuck, syscalls, price or woken)\n", argv[1]);
        return 2;
    }
    return 0;
}
