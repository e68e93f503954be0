/* c-bugs: one deliberate bug per mode, each in its own small function, for
 * checking what a profile (and a sanitizer) says about a program that goes
 * wrong. README.md lists the modes, how each ends and the lines to look for.
 *
 *   c-bugs MODE [N]     MODE: uaf double-free overflow null recurse deadlock
 *                             spin leak fds ok; N: overflow's length (32) */

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

/* ---- uaf: a 64-byte buffer read after it was freed ---------------------- */
NOINLINE char *make_buffer(void) {
    char *buf = malloc(64);
    memset(buf, 'x', 64);
    return buf;
}
NOINLINE void drop_buffer(char *buf) {
    free(buf);
}
NOINLINE int use_buffer(const char *buf) {
    return buf[32];
}

/* ---- double-free: one node freed twice ---------------------------------- */
NOINLINE void *alloc_node(void) {
    return malloc(32);
}
NOINLINE void release_node(void *node) {
    free(node);
}

/* ---- overflow: n bytes written into a 16-byte block --------------------- */
NOINLINE int fill(size_t n) {
    unsigned char *block = malloc(16);
    memset(block, 'y', n);
    return block[0];
}

/* ---- null: a store through a null pointer ------------------------------- */
static int *volatile nowhere; /* NULL, but the compiler may not assume it */
NOINLINE void poke(int *p) {
    *(volatile int *)p = 42;
}

/* ---- recurse: unbounded recursion, 256 bytes of stack per call ---------- */
static volatile unsigned long bottom = ~0ul; /* never reached */
NOINLINE unsigned long descend(unsigned long depth) {
    volatile unsigned char pad[256];
    pad[depth % 256] = (unsigned char)depth;
    if (depth == bottom)
        return 0;
    unsigned long below = descend(depth + 1);
    return below + pad[(depth * 7) % 256]; /* used after the call: no tail call */
}

/* ---- deadlock: a then b in one thread, b then a in the other ------------ */
static pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t b = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t both_hold_one; /* the two workers and main */
NOINLINE void *worker_ab(void *arg) {
    pthread_mutex_lock(&a);
    pthread_barrier_wait(&both_hold_one);
    pthread_mutex_lock(&b);
    pthread_mutex_unlock(&b);
    pthread_mutex_unlock(&a);
    return arg;
}
NOINLINE void *worker_ba(void *arg) {
    pthread_mutex_lock(&b);
    pthread_barrier_wait(&both_hold_one);
    pthread_mutex_lock(&a);
    pthread_mutex_unlock(&a);
    pthread_mutex_unlock(&b);
    return arg;
}

/* ---- spin: a busy loop that never ends ---------------------------------- */
static volatile unsigned long spins;
NOINLINE void spin(void) {
    for (;;)
        spins++;
}

/* ---- leak: 1 MiB more every 20 ms, every page touched, none freed ------- */
static void *kept; /* the newest block; each block points to the one before */
NOINLINE void grow(void) {
    const struct timespec pause = {0, 20000000};
    for (;;) {
        void **block = malloc(1 << 20);
        if (block == NULL)
            continue;
        memset(block, 'z', 1 << 20);
        *block = kept;
        kept = block;
        nanosleep(&pause, NULL);
    }
}

/* ---- fds: /dev/null opened until open fails ----------------------------- */
static int recent[16]; /* the last 16 descriptors opened, + 1 (0: none) */
NOINLINE int exhaust_fds(void) {
    for (unsigned n = 0;; n++) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 0)
            return -1;
        recent[n % 16] = fd + 1;
    }
}

static int usage(void) {
    fprintf(stderr, "usage: c-bugs uaf|double-free|overflow [N]|null|recurse|deadlock|spin|leak|fds|ok\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "uaf") == 0) {
        char *buf = make_buffer();
        drop_buffer(buf);
        printf("uaf %d\n", use_buffer(buf));
    } else if (strcmp(mode, "double-free") == 0) {
        void *node = alloc_node();
        release_node(node);
        release_node(node);
    } else if (strcmp(mode, "overflow") == 0) {
        size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 32;
        printf("overflow %zu\n", n);
        fflush(stdout);
        fill(n);
    } else if (strcmp(mode, "null") == 0) {
        poke(nowhere);
    } else if (strcmp(mode, "recurse") == 0) {
        printf("%lu\n", descend(0));
    } else if (strcmp(mode, "deadlock") == 0) {
        pthread_t ab, ba;
        pthread_barrier_init(&both_hold_one, NULL, 3);
        pthread_create(&ab, NULL, worker_ab, NULL);
        pthread_create(&ba, NULL, worker_ba, NULL);
        pthread_barrier_wait(&both_hold_one);
        printf("deadlock\n");
        fflush(stdout);
        pthread_join(ab, NULL);
        pthread_join(ba, NULL);
    } else if (strcmp(mode, "spin") == 0) {
        printf("spin\n");
        fflush(stdout);
        spin();
    } else if (strcmp(mode, "leak") == 0) {
        printf("leak\n");
        fflush(stdout);
        grow();
    } else if (strcmp(mode, "fds") == 0) {
        exhaust_fds();
        perror("open");
        for (int i = 0; i < 16; i++) /* room for exit-time checks (LeakSanitizer) */
            if (recent[i])
                close(recent[i] - 1);
        return 3;
    } else if (strcmp(mode, "ok") == 0) {
        printf("ok\n");
    } else {
        return usage();
    }
    return 0;
}
