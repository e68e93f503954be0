/* Fuses (panic.h): what a program asks through the runtime of the fuse map
 * pinned next to the kernel thread table. The mode is argv[1]:
 *
 *   layout  prints the thread table's and the fuse map's layout from
 *           panic_kabi.h, and panic.h's longest fuse name (no hand copy in
 *           the test): "name=value" pairs on one line.
 *   ask     opens and closes region 1 (an instrumented program), then answers
 *           each line on stdin, until EOF or "quit":
 *             "ask":          "<ingest> <batch> <nope>", the answers of
 *                             cargo_panic_fuse("ingest"), ("batch"), ("nope");
 *             "names A B ..": "names" and the answer for each name given;
 *             "null":         "null <answer>" for cargo_panic_fuse(NULL);
 *             "dlsym":        "dlsym <ingest> <batch> <nope>" through the
 *                             function dlsym(RTLD_DEFAULT) finds under
 *                             PANIC_SYM_FUSE ("dlsym none" without one);
 *             "fork":         forks; the child prints "child <ingest> <batch>
 *                             <nope>" and exits; the parent waits for it and
 *                             prints "forked";
 *             "threads T N":  T threads each ask "ingest" and "batch" N times
 *                             each, alternating; prints "threads <ingest
 *                             answers that were 1> <batch answers that were 1>".
 *   bench   after region 1, times N calls (N = argv[2]) of
 *           cargo_panic_fuse(argv[3]) (the same name each time), of calls
 *           alternating between argv[3] and argv[4], of calls with a name no
 *           fuse has, and of calls of argv[3] through dlsym's pointer, and
 *           prints "same=<ns> alternating=<ns> unknown=<ns> dlsym=<ns or none>
 *           answer=<answer for argv[3]>". */
#include "driver.h"
#include "panic.h"
#include "panic_kabi.h"
#include "kmode_driver.h"

#include <dlfcn.h>

static void layout(void) {
    print_table_head();
    printf("fuses_size=%zu fuses_magic=%zu fuses_version=%zu fuses_n=%zu unknown=%zu fuse=%zu fuse_size=%zu "
           "name=%zu tripped=%zu asks=%zu sheds=%zu fuses=%d name_len=%d name_max=%d fuses_magic_value=%llu\n",
           sizeof(struct panic_fuses),
           offsetof(struct panic_fuses, magic), offsetof(struct panic_fuses, version), offsetof(struct panic_fuses, n),
           offsetof(struct panic_fuses, unknown), offsetof(struct panic_fuses, fuse), sizeof(struct panic_fuse),
           offsetof(struct panic_fuse, name), offsetof(struct panic_fuse, tripped), offsetof(struct panic_fuse, asks),
           offsetof(struct panic_fuse, sheds), PANIC_FUSES, PANIC_FUSE_NAME, PANIC_FUSE_NAME_MAX,
           (unsigned long long)PANIC_FUSES_MAGIC);
}

typedef int (*fuse_fn)(const char *);

static void print_answers(const char *tag, fuse_fn fuse) {
    int a = fuse("ingest"), b = fuse("batch"), c = fuse("nope");
    if (tag)
        printf("%s ", tag);
    printf("%d %d %d\n", a, b, c);
    fflush(stdout);
}

static int wrapped_fuse(const char *name) { return cargo_panic_fuse(name); }

static void child_answers(void) { print_answers("child", wrapped_fuse); }

struct asker {
    pthread_t thread;
    long n;
    long ingest, batch; /* answers that were 1 */
};

static void *ask_many(void *arg) {
    struct asker *a = arg;
    for (long i = 0; i < a->n; i++) {
        a->ingest += cargo_panic_fuse("ingest");
        a->batch += cargo_panic_fuse("batch");
    }
    return NULL;
}

static void threads(int t, long n) {
    struct asker a[64];
    CHECK(t > 0 && t <= 64);
    for (int i = 0; i < t; i++) {
        a[i] = (struct asker){.n = n};
        CHECK(pthread_create(&a[i].thread, NULL, ask_many, &a[i]) == 0);
    }
    long ingest = 0, batch = 0;
    for (int i = 0; i < t; i++) {
        CHECK(pthread_join(a[i].thread, NULL) == 0);
        ingest += a[i].ingest;
        batch += a[i].batch;
    }
    printf("threads %ld %ld\n", ingest, batch);
    fflush(stdout);
}

static void ask(void) {
    char line[512];
    while (fgets(line, sizeof line, stdin) != NULL) {
        line[strcspn(line, "\n")] = 0;
        if (!strcmp(line, "quit")) {
            break;
        } else if (!strcmp(line, "ask")) {
            print_answers(NULL, wrapped_fuse);
        } else if (!strncmp(line, "names", 5)) {
            printf("names");
            for (char *save = NULL, *w = strtok_r(line + 5, " ", &save); w; w = strtok_r(NULL, " ", &save))
                printf(" %d", cargo_panic_fuse(w));
            printf("\n");
            fflush(stdout);
        } else if (!strcmp(line, "null")) {
            printf("null %d\n", cargo_panic_fuse(NULL));
            fflush(stdout);
        } else if (!strcmp(line, "dlsym")) {
            fuse_fn fuse = (fuse_fn)dlsym(RTLD_DEFAULT, PANIC_SYM_FUSE);
            if (fuse) {
                print_answers("dlsym", fuse);
            } else {
                printf("dlsym none\n");
                fflush(stdout);
            }
        } else if (!strcmp(line, "fork")) {
            fork_child(child_answers);
        } else if (!strncmp(line, "threads ", 8)) {
            int t;
            long n;
            CHECK(sscanf(line + 8, "%d %ld", &t, &n) == 2);
            threads(t, n);
        } else {
            CHECK(!"unknown command");
        }
    }
}

/* ns per call over n calls of cargo_panic_fuse, the name alternating between
 * a and b (the same name when a == b), as a program writes it (the answers
 * are summed, so no call can be dropped). */
static double time_wrapped(const char *a, const char *b, long n, long *sink) {
    long sum = 0;
    double t0 = ns_now();
    for (long i = 0; i < n; i += 2) {
        sum += cargo_panic_fuse(a);
        sum += cargo_panic_fuse(b);
    }
    double t1 = ns_now();
    *sink += sum;
    return (t1 - t0) / (double)(n + (n & 1));
}

/* The same through a function pointer (what dlsym gives a program). */
static double time_pointer(fuse_fn fuse, const char *name, long n, long *sink) {
    long sum = 0;
    double t0 = ns_now();
    for (long i = 0; i < n; i++)
        sum += fuse(name);
    double t1 = ns_now();
    *sink += sum;
    return (t1 - t0) / (double)n;
}

static void bench(long n, const char *name, const char *other) {
    long sink = 0;
    time_wrapped(name, name, n / 10 + 1, &sink); /* warm up */
    double same = time_wrapped(name, name, n, &sink);
    double alternating = time_wrapped(name, other, n, &sink);
    double unknown = time_wrapped("no such fuse", "no such fuse", n, &sink);
    fuse_fn looked_up = (fuse_fn)dlsym(RTLD_DEFAULT, PANIC_SYM_FUSE);
    printf("same=%.3f alternating=%.3f unknown=%.3f", same, alternating, unknown);
    if (looked_up)
        printf(" dlsym=%.3f", time_pointer(looked_up, name, n, &sink));
    else
        printf(" dlsym=none");
    printf(" answer=%d sink=%ld\n", cargo_panic_fuse(name), sink);
}

int main(int argc, char **argv) {
    if (layout_or_region(argc, argv, layout))
        return 0;
    if (!strcmp(argv[1], "ask")) {
        ask();
    } else if (!strcmp(argv[1], "bench")) {
        CHECK(argc == 5);
        bench(atol(argv[2]), argv[3], argv[4]);
    } else {
        CHECK(!"unknown mode");
    }
    return 0;
}
