/* c-server: a small line-based TCP server with known ways to fail, the
 * bundled target of `cargo panic attack`.
 *
 *   c-server [--port N] [--leak BYTES] [--write BYTES] [--crash-after N]
 *            [--hang-after N] [--work US]
 *
 * It listens on 127.0.0.1 (port 0: the kernel picks one; the port is
 * printed as "listening on PORT"), and answers every line with "pong\n",
 * one thread per connection. Per request, in `handle_request`:
 *   --leak BYTES   allocate BYTES and never free them (grows until a
 *                  memory limit OOM-kills it); if the allocation fails it
 *                  reports the error and exits with status 4
 *   --write BYTES  append BYTES to a file in $TMPDIR; on ENOSPC it reports
 *                  the error and exits with status 3
 *   --crash-after N  abort() on the N-th request
 *   --hang-after N   the N-th request blocks forever on a lock no one
 *                    releases while holding the lock every other request and
 *                    the accept loop take: the whole server stops (no CPU,
 *                    no progress)
 *   --work US      burn US microseconds of CPU (busy loop)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static size_t leak_bytes, write_bytes;
static long crash_after, hang_after, work_us;
static atomic_long requests;
static pthread_mutex_t never = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t big = PTHREAD_MUTEX_INITIALIZER; /* only with --hang-after */
static FILE *scratch;
static void *leaked;
static pthread_mutex_t scratch_lock = PTHREAD_MUTEX_INITIALIZER;

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

__attribute__((noinline)) static void burn(long us) {
    double end = now_us() + us;
    while (now_us() < end) {
    }
}

__attribute__((noinline)) static void write_scratch(void) {
    static char block[4096];
    pthread_mutex_lock(&scratch_lock);
    for (size_t done = 0; done < write_bytes; done += sizeof block) {
        size_t n = write_bytes - done < sizeof block ? write_bytes - done : sizeof block;
        if (fwrite(block, 1, n, scratch) != n || fflush(scratch) != 0) {
            fprintf(stderr, "c-server: write to scratch failed: %s\n", strerror(errno));
            exit(3);
        }
    }
    pthread_mutex_unlock(&scratch_lock);
}

__attribute__((noinline)) static void handle_request(void) {
    long n = atomic_fetch_add(&requests, 1) + 1;
    if (crash_after && n >= crash_after) {
        fprintf(stderr, "c-server: request %ld: crashing as asked\n", n);
        abort();
    }
    if (hang_after && n >= hang_after) {
        pthread_mutex_lock(&never); /* held by main since start: blocks forever */
    }
    if (leak_bytes) {
        /* Kept reachable from a global list, so the compiler cannot drop it. */
        void **p = malloc(leak_bytes);
        if (!p) {
            fprintf(stderr, "c-server: allocation failed: %s\n", strerror(errno));
            exit(4);
        }
        memset(p, 1, leak_bytes);
        pthread_mutex_lock(&scratch_lock);
        *p = leaked;
        leaked = p;
        pthread_mutex_unlock(&scratch_lock);
    }
    if (write_bytes)
        write_scratch();
    if (work_us)
        burn(work_us);
}

static void *serve(void *arg) {
    int fd = (int)(long)arg;
    char buf[256];
    ssize_t got;
    while ((got = read(fd, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < got; i++) {
            if (buf[i] != '\n')
                continue;
            if (hang_after)
                pthread_mutex_lock(&big);
            handle_request();
            if (hang_after)
                pthread_mutex_unlock(&big);
            if (write(fd, "pong\n", 5) != 5)
                goto done;
        }
    }
done:
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    int port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--leak")) leak_bytes = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--write")) write_bytes = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--crash-after")) crash_after = atol(v);
        else if (!strcmp(k, "--hang-after")) hang_after = atol(v);
        else if (!strcmp(k, "--work")) work_us = atol(v);
        else {
            fprintf(stderr, "c-server: unknown option %s\n", k);
            return 2;
        }
    }
    if (write_bytes) {
        const char *dir = getenv("TMPDIR");
        char path[4096];
        snprintf(path, sizeof path, "%s/c-server.data", dir ? dir : "/tmp");
        scratch = fopen(path, "a");
        if (!scratch) {
            fprintf(stderr, "c-server: cannot open %s: %s\n", path, strerror(errno));
            return 3;
        }
    }
    pthread_mutex_lock(&never);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 512) || getsockname(s, (struct sockaddr *)&a, &len)) {
        perror("c-server: listen");
        return 1;
    }
    printf("listening on %d\n", ntohs(a.sin_port));
    fflush(stdout);
    for (;;) {
        if (hang_after) {
            pthread_mutex_lock(&big);
            pthread_mutex_unlock(&big);
        }
        int c = accept(s, NULL, NULL);
        if (c < 0)
            continue;
        pthread_t t;
        if (pthread_create(&t, NULL, serve, (void *)(long)c) != 0) {
            close(c);
            continue;
        }
        pthread_detach(t);
    }
}
