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

static void own_handler(int sig) {
    (void)sig;
    static const char msg[] = "own handler\n";
    (void)!write(1, msg, sizeof msg - 1);
    _exit(42);
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
    } else if (!strcmp(argv[1], "own-handler-segv")) {
        /* The program's own SIGSEGV handler: it sees the default before it,
         * and runs after the runtime recorded the fault. */
        struct sigaction old, sa;
        CHECK(sigaction(SIGSEGV, NULL, &old) == 0);
        printf("old %s\n", old.sa_handler == SIG_DFL ? "default" : "other");
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = own_handler;
        CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
        CHECK(sigaction(SIGSEGV, NULL, &old) == 0 && old.sa_handler == own_handler);
        fflush(stdout);
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
