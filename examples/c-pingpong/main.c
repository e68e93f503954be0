/* c-pingpong: a context-switch heavy workload, for the cost of the kernel side
 * (`cargo panic run --kernel`; bench/kernel.sh). Two threads bounce one byte
 * over a pair of pipes N times:
 *
 *   c-pingpong [N]           N round trips (default 200000), the threads free
 *                            to run on any CPU
 *   c-pingpong N one-cpu     the same with both threads pinned to CPU 0
 *
 * The main thread ("ping") calls bounce() once per round trip: it writes the
 * byte into one pipe and blocks reading the other until the second thread
 * ("pong") has read it and written it back. Each round trip is therefore two
 * blocking reads and one voluntary context switch per thread. With one-cpu the
 * two threads hand the CPU to each other directly; otherwise each usually
 * runs on its own CPU, which goes idle while it waits (on a VM, each wake-up
 * of an idle CPU is an IPI through the hypervisor, and that dominates the
 * round trip). The program prints the wall time of the loop alone (MONOTONIC
 * clock; thread start-up and exit excluded), so that the figure does not
 * include loading the program or the tool around it:
 *
 *   rounds 200000 loop_s 1.234567 */

#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

static int to_pong[2], to_ping[2];

static void must(int ok, const char *what) {
    if (!ok) {
        perror(what);
        exit(1);
    }
}

static unsigned char get(int fd) {
    unsigned char b;
    ssize_t n;
    while ((n = read(fd, &b, 1)) < 0 && errno == EINTR) {
    }
    must(n == 1, "c-pingpong: read");
    return b;
}

static void put(int fd, unsigned char b) {
    ssize_t n;
    while ((n = write(fd, &b, 1)) < 0 && errno == EINTR) {
    }
    must(n == 1, "c-pingpong: write");
}

/* One round trip: send the byte, wait for it to come back incremented. */
NOINLINE unsigned char bounce(unsigned char b) {
    put(to_pong[1], b);
    return get(to_ping[0]);
}

/* The other end: returns each byte incremented until the pipe closes. */
NOINLINE void *pong(void *unused) {
    (void)unused;
    pthread_setname_np(pthread_self(), "pong");
    for (;;) {
        unsigned char b;
        ssize_t n;
        while ((n = read(to_pong[0], &b, 1)) < 0 && errno == EINTR) {
        }
        if (n == 0) {
            return NULL;
        }
        must(n == 1, "c-pingpong: read");
        put(to_ping[1], (unsigned char)(b + 1));
    }
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    long n = 200000;
    if (argc > 3 || (argc >= 2 && (n = strtol(argv[1], NULL, 10)) <= 0) ||
        (argc == 3 && strcmp(argv[2], "one-cpu") != 0)) {
        fprintf(stderr, "usage: c-pingpong [N [one-cpu]]   (N > 0 round trips, default 200000)\n");
        return 2;
    }
    if (argc == 3) {
        /* Before pthread_create: the second thread inherits the mask. */
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(0, &one);
        must(sched_setaffinity(0, sizeof one, &one) == 0, "c-pingpong: cannot pin to CPU 0");
    }
    must(pipe(to_pong) == 0 && pipe(to_ping) == 0, "c-pingpong: pipe");
    pthread_setname_np(pthread_self(), "ping");
    pthread_t t;
    must(pthread_create(&t, NULL, pong, NULL) == 0, "c-pingpong: pthread_create");

    unsigned char b = 0;
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        unsigned char back = bounce(b);
        must(back == (unsigned char)(b + 1), "c-pingpong: wrong byte back");
        b = back;
    }
    double loop_s = now_s() - t0;

    close(to_pong[1]);
    pthread_join(t, NULL);
    printf("rounds %ld loop_s %.6f\n", n, loop_s);
    return 0;
}
