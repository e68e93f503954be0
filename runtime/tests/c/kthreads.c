/* Kernel mode (CARGO_PANIC_KTHREADS): what the runtime writes into the BPF
 * thread table, and the self times it keeps. The mode is argv[1]:
 *
 *   layout  prints the thread table's layout from panic_kabi.h (no hand copy in
 *           the test): "name=value" pairs on one line.
 *   park    main sits in region 2 (inside 1) and a worker in region 3 (blocked
 *           on a pipe); prints "parked <main tid> <worker tid> <set|unset>"
 *           (whether CARGO_PANIC_KTHREADS is still in the environment), waits for a
 *           line on stdin; then the worker leaves its region and exits, main
 *           closes its regions, prints "closed" and waits for another line.
 *   nested  regions with known sleeps (the test checks their self times):
 *           4 (100 ms) around 5 (200 ms); 8 (40 ms) around two 9 (30 ms each);
 *           10 around 11, which is abandoned (10's exit closes it), 30 ms each;
 *           then exits with 6 (50 ms) and 7 inside it (100 ms) still open.
 *   count   region 1, ten times.
 *   fork    main sits in region 1, prints "ready", waits for a line; forks a
 *           child that enters regions (5 among them) and starts a thread that
 *           does too (all of which would write the table if the child still
 *           could); waits for it, prints "forked <child pid>", waits for
 *           another line.
 *   budgets a worker walks through budgeted regions (the test budgets sites
 *           5-9; 1-4 have none), printing a line at each step and then waiting,
 *           blocked reading stdin (a pipe), for a line from the test:
 *             "parked <tid> <before> <after>": in 1 (depth 0) and 5 (depth 1),
 *               with CLOCK_MONOTONIC ns read just before and after entering 5;
 *             "nested": 2 (depth 2, no budget) and 6 (depth 3) inside;
 *             "inner closed": 6 closed; "unbudgeted closed": 2 closed;
 *             "outer closed": 5 closed (only 1 open);
 *             "five deep": 5, 6, 7, 8, 9 at depths 1-5;
 *             "fifth closed": 9 closed; "fourth closed": 8 closed;
 *             "abandoned by a budgeted exit": 5 closed with 6 and 7 open;
 *             "abandoned by an unbudgeted exit": 2 (depth 1) closed with
 *               5 and 6 open inside it;
 *             "exiting inside": in 7 (depth 1); then the worker exits with
 *               it open; main joins it, prints "joined", waits for a line.
 *   pin     after 2 ms (the clock's calibration, which demotion waits for),
 *           4096 empty regions 5, then 4096 empty regions 2.
 *
 * Before the constructor (.preinit_array) main opens and closes region 0: its
 * slot is claimed before the runtime maps the table. Not in mode nested, nor
 * with CARGO_PANIC_CLOCK set (a region timed before the constructor fixes the
 * clock). Sites and hists share their numbers. */
#include "driver.h"
#include "panic_kabi.h"

#include <stddef.h>
#include <sys/wait.h>
#include <time.h>

static void early(int argc, char **argv, char **envp) {
    if (argc == 2 && !strcmp(argv[1], "nested"))
        return;
    /* The environment as passed: libc may not have set up getenv's yet. */
    for (char **e = envp; *e; e++)
        if (!strncmp(*e, PANIC_ENV_CLOCK "=", strlen(PANIC_ENV_CLOCK "=")))
            return;
    uint32_t t = ENTER(0, 0);
    EXIT(t);
}
__attribute__((section(".preinit_array"), used)) static void (*const early_entry)(int, char **, char **) = early;

static void wait_line(void) {
    char line[16];
    CHECK(fgets(line, sizeof line, stdin) != NULL);
}

static void layout(void) {
    printf("size=%zu magic=%zu version=%zu owner=%zu claims=%zu budgets_over=%zu slot=%zu slot_size=%zu tid=%zu "
           "site=%zu seq=%zu n_budgets=%zu fired=%zu budget=%zu kbudget_size=%zu kb_site=%zu kb_depth=%zu "
           "kb_since=%zu kbudgets=%d sb_size=%zu sb_budget_ns=%zu sb_action=%zu sb_hist=%zu budget_record=%d "
           "slots=%d magic_value=%llu version_value=%d no_site=%u\n",
           sizeof(struct panic_kthreads), offsetof(struct panic_kthreads, magic),
           offsetof(struct panic_kthreads, version), offsetof(struct panic_kthreads, owner),
           offsetof(struct panic_kthreads, claims), offsetof(struct panic_kthreads, budgets_over),
           offsetof(struct panic_kthreads, slot), sizeof(struct panic_kthread), offsetof(struct panic_kthread, tid),
           offsetof(struct panic_kthread, site), offsetof(struct panic_kthread, seq),
           offsetof(struct panic_kthread, n_budgets), offsetof(struct panic_kthread, fired),
           offsetof(struct panic_kthread, budget), sizeof(struct panic_kbudget), offsetof(struct panic_kbudget, site),
           offsetof(struct panic_kbudget, depth), offsetof(struct panic_kbudget, since), PANIC_KBUDGETS,
           sizeof(struct panic_site_budget), offsetof(struct panic_site_budget, budget_ns),
           offsetof(struct panic_site_budget, action), offsetof(struct panic_site_budget, hist),
           PANIC_BUDGET_RECORD, PANIC_KTHREADS, (unsigned long long)PANIC_KTHREADS_MAGIC, PANIC_KABI_VERSION,
           PANIC_KNO_SITE);
}

static int pipe_fds[2];
static pthread_barrier_t parked;
static unsigned worker_tid;

static void *parked_worker(void *arg) {
    (void)arg;
    uint32_t t = ENTER(3, 3);
    worker_tid = tid();
    pthread_barrier_wait(&parked);
    char c;
    CHECK(read(pipe_fds[0], &c, 1) == 1);
    EXIT(t);
    return NULL;
}

static void park(void) {
    uint32_t a = ENTER(1, 1), b = ENTER(2, 2);
    CHECK(pipe(pipe_fds) == 0);
    pthread_barrier_init(&parked, NULL, 2);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, parked_worker, NULL) == 0);
    pthread_barrier_wait(&parked);
    /* The runtime took the variable out of the environment children inherit. */
    printf("parked %u %u %s\n", tid(), worker_tid, getenv(PANIC_ENV_KTHREADS) ? "set" : "unset");
    fflush(stdout);
    wait_line();
    CHECK(write(pipe_fds[1], "x", 1) == 1);
    CHECK(pthread_join(th, NULL) == 0);
    EXIT(b);
    EXIT(a);
    printf("closed\n");
    fflush(stdout);
    wait_line();
}

static void inner(uint32_t site, long ms) {
    uint32_t t = ENTER(site, site);
    sleep_ms(ms);
    EXIT(t);
}

static void nested(void) {
    uint32_t t = ENTER(4, 4);
    sleep_ms(100);
    inner(5, 200);
    EXIT(t);

    t = ENTER(8, 8);
    inner(9, 30);
    sleep_ms(40);
    inner(9, 30);
    EXIT(t);

    t = ENTER(10, 10);
    sleep_ms(30);
    ENTER(11, 11);
    sleep_ms(30);
    EXIT(t);

    ENTER(6, 6);
    sleep_ms(50);
    ENTER(7, 7);
    sleep_ms(100);
    fflush(stdout);
    exit(0);
}

static void *child_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < 10; i++)
        inner(3, 0);
    ENTER(3, 3);
    sleep_ms(5);
    return NULL;
}

static void fork_child(void) {
    uint32_t t = ENTER(1, 1);
    sleep_ms(50);
    inner(2, 1);
    inner(5, 1);
    ENTER(5, 5); /* open */
    ENTER(2, 2); /* open */
    pthread_t th;
    CHECK(pthread_create(&th, NULL, child_thread, NULL) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    sleep_ms(20);
    EXIT(t);
    ENTER(2, 2);
    _exit(0);
}

static void forking(void) {
    uint32_t t = ENTER(1, 1);
    printf("ready\n");
    fflush(stdout);
    wait_line();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        fork_child();
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    printf("forked %d\n", (int)pid);
    fflush(stdout);
    wait_line();
    EXIT(t);
}

static unsigned long long mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

/* Prints `what` and waits, blocked reading stdin, for the test's line. */
static void step(const char *what) {
    printf("%s\n", what);
    fflush(stdout);
    wait_line();
}

static void *budget_worker(void *arg) {
    (void)arg;
    ENTER(1, 1); /* depth 0, never closed */
    unsigned long long before = mono_ns();
    uint32_t a = ENTER(5, 5);
    unsigned long long after = mono_ns();
    printf("parked %u %llu %llu\n", tid(), before, after);
    fflush(stdout);
    wait_line();
    uint32_t b = ENTER(2, 2), c = ENTER(6, 6);
    step("nested");
    EXIT(c);
    step("inner closed");
    EXIT(b);
    step("unbudgeted closed");
    EXIT(a);
    step("outer closed");
    uint32_t d[5];
    for (int i = 0; i < 5; i++)
        d[i] = ENTER(5 + i, 5 + i);
    step("five deep");
    EXIT(d[4]);
    step("fifth closed");
    EXIT(d[3]);
    step("fourth closed");
    EXIT(d[0]);
    step("abandoned by a budgeted exit");
    b = ENTER(2, 2);
    ENTER(5, 5);
    ENTER(6, 6);
    EXIT(b);
    step("abandoned by an unbudgeted exit");
    ENTER(7, 7);
    step("exiting inside");
    return NULL;
}

static void budgets(void) {
    pthread_t th;
    CHECK(pthread_create(&th, NULL, budget_worker, NULL) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    step("joined");
}

static void pin(void) {
    sleep_ms(2);
    for (int i = 0; i < 4096; i++) {
        uint32_t t = ENTER(5, 5);
        EXIT(t);
    }
    for (int i = 0; i < 4096; i++) {
        uint32_t t = ENTER(2, 2);
        EXIT(t);
    }
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    if (!strcmp(argv[1], "layout"))
        layout();
    else if (!strcmp(argv[1], "park"))
        park();
    else if (!strcmp(argv[1], "nested"))
        nested();
    else if (!strcmp(argv[1], "fork"))
        forking();
    else if (!strcmp(argv[1], "budgets"))
        budgets();
    else if (!strcmp(argv[1], "pin"))
        pin();
    else if (!strcmp(argv[1], "count"))
        for (int i = 0; i < 10; i++)
            inner(1, 0);
    else
        CHECK(!"unknown mode");
    return 0;
}
