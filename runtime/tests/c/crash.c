/* Dies in the way argv[1] names, inside region site 2 (after counting site 0 five times). */
#include "driver.h"

static volatile int sink;
/* Far deeper than any stack: the recursion ends by overflowing it. */
static volatile int depth_limit = 1 << 30;

static int recurse(int n) {
    volatile char pad[1024];
    pad[0] = (char)n;
    if (n > depth_limit)
        return 0;
    return recurse(n + 1) + pad[0];
}

static void *thread_overflow(void *arg) {
    (void)arg;
    ENTER(3, 1);
    printf("thread %u\n", tid());
    fflush(stdout);
    sink = recurse(0);
    return NULL;
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    for (int i = 0; i < 5; i++)
        COUNT(0);
    /* "bare-" modes die before the main thread ever opens a region (so it has
     * no slot, and only the constructor's alternate stack). */
    int bare = !strncmp(argv[1], "bare-", 5);
    if (bare)
        COUNT(2);
    else
        ENTER(2, 0);
    printf("main %u\n", tid());
    fflush(stdout);
    if (!strcmp(argv[1], "segv")) {
        *(volatile int *)16 = 1;
    } else if (!strcmp(argv[1], "abort")) {
        abort();
    } else if (!strcmp(argv[1], "raise-segv")) {
        raise(SIGSEGV);
    } else if (!strcmp(argv[1], "overflow") || !strcmp(argv[1], "bare-overflow")) {
        sink = recurse(0);
    } else if (!strcmp(argv[1], "thread-overflow")) {
        pthread_t th;
        CHECK(pthread_create(&th, NULL, thread_overflow, NULL) == 0);
        pthread_join(th, NULL);
    }
    printf("survived\n");
    return 0;
}
