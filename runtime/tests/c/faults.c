/* Fault injection: the driver asks the runtime the way instrumented code does
 * (alloc sites call __panic_fault_alloc; blocking calls run inside their
 * site's region) and prints what each call returned, one line per part:
 *   alloc: 12 asks at site 2 ('1' = fail), then malloc/calloc/realloc/
 *          posix_memalign of PANIC_FAULT_HUGE: what the allocator says
 *   write: 6 writes in site 3's region, then 2 outside any region
 *   read:  4 reads in site 4's region
 *   sleep: nanosleep and clock_nanosleep in site 5's region
 *   stdio: fwrite and fflush in site 6's region (and ferror)
 *   fsync: fsync in site 7's region (a rule for EINTR: not eligible)
 * A call that succeeded prints "ok", a failure the errno's number.
 * With the argument "sites" it prints the runtime's site count instead (the
 * size a fault table for it must have). */
#include "driver.h"

#include <errno.h>
#include <fcntl.h>

#define SITE(s) (&__start_panic_counters[(s)])

static void result(long r, int err) {
    if (r < 0)
        printf(" %d", err);
    else
        printf(" ok");
}

/* The runtime's own (hidden: this driver links its archive statically). */
uint64_t panic_n_sites(void);

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "sites") == 0) {
        printf("%llu\n", (unsigned long long)panic_n_sites());
        return 0;
    }
    printf("alloc ");
    for (int i = 0; i < 12; i++)
        printf("%d", __panic_fault_alloc(SITE(2)) != 0);
    /* Volatile: the compiler must not judge the size itself. */
    volatile size_t huge = (size_t)PANIC_FAULT_HUGE;
    errno = 0;
    void *p = malloc(huge);
    printf(" malloc:%s:%d", p ? "ptr" : "null", errno);
    errno = 0;
    p = calloc(huge, huge);
    printf(" calloc:%s:%d", p ? "ptr" : "null", errno);
    void *q = malloc(16);
    p = realloc(q, huge);
    printf(" realloc:%s", p ? "ptr" : "null");
    /* A failed realloc leaves q allocated. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuse-after-free"
    free(p ? p : q);
#pragma GCC diagnostic pop
    printf(" posix_memalign:%d\n", posix_memalign(&p, 64, huge));

    int null = open("/dev/null", O_WRONLY);
    int zero = open("/dev/zero", O_RDONLY);
    CHECK(null >= 0 && zero >= 0);
    char buf[8];
    printf("write");
    uint32_t t = ENTER(3, 0);
    for (int i = 0; i < 6; i++) {
        errno = 0;
        long r = write(null, "x", 1);
        result(r, errno);
    }
    EXIT(t);
    for (int i = 0; i < 2; i++) {
        errno = 0;
        long r = write(null, "x", 1);
        result(r, errno);
    }
    printf("\nread");
    t = ENTER(4, 1);
    for (int i = 0; i < 4; i++) {
        errno = 0;
        long r = read(zero, buf, sizeof buf);
        result(r, errno);
    }
    EXIT(t);

    printf("\nsleep");
    t = ENTER(5, 2);
    struct timespec req = {0, 1000000}, rem = {0, 0};
    errno = 0;
    long r = nanosleep(&req, &rem);
    result(r, errno);
    printf(" rem:%ld", rem.tv_nsec);
    int e = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL);
    result(e ? -1 : 0, e);
    EXIT(t);

    printf("\nstdio");
    FILE *f = tmpfile();
    CHECK(f != NULL);
    t = ENTER(6, 3);
    errno = 0;
    size_t n = fwrite("abc", 1, 3, f);
    result(n == 3 ? 0 : -1, errno);
    printf(" ferror:%d", ferror(f) != 0);
    errno = 0;
    r = fflush(f);
    result(r, errno);
    EXIT(t);

    printf("\nfsync");
    t = ENTER(7, 4);
    errno = 0;
    r = fsync(fileno(f));
    result(r, errno);
    EXIT(t);
    printf("\n");
    fflush(stdout);
    return 0;
}
