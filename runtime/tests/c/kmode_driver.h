/* Shared by the drivers of the maps pinned next to the kernel thread table
 * (fuses.c, prices.c): the thread table's head in their `layout` line, the
 * start of main, a fork whose child prints one line, and a clock. Include it
 * after driver.h and panic_kabi.h. */
#ifndef KMODE_DRIVER_H
#define KMODE_DRIVER_H
#include <stddef.h>
#include <sys/wait.h>

/* The head of struct panic_kthreads as "name=value " pairs, the start of a
 * `layout` line (the test's TableHead reads them). */
static void print_table_head(void) {
    printf("size=%zu magic=%zu version=%zu owner=%zu magic_value=%llu version_value=%d ",
           sizeof(struct panic_kthreads), offsetof(struct panic_kthreads, magic),
           offsetof(struct panic_kthreads, version), offsetof(struct panic_kthreads, owner),
           (unsigned long long)PANIC_KTHREADS_MAGIC, PANIC_KABI_VERSION);
}

/* The start of main: in `layout` mode (argv[1]) prints the layout with
 * `layout` and returns 1; otherwise opens and closes region 1 (an
 * instrumented program) and returns 0. */
static int layout_or_region(int argc, char **argv, void (*layout)(void)) {
    CHECK(argc >= 2);
    if (!strcmp(argv[1], "layout")) {
        layout();
        return 1;
    }
    uint32_t t = ENTER(1, 1);
    EXIT(t);
    return 0;
}

/* Forks; the child runs `child` (which prints its line) and exits; the
 * parent waits for it and prints "forked". */
static void fork_child(void (*child)(void)) {
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        child();
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    printf("forked\n");
    fflush(stdout);
}

static double ns_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}
#endif
