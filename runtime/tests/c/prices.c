/* Prices (panic.h): what a program reads through the runtime from the price map
 * pinned next to the kernel thread table. The mode is argv[1]:
 *
 *   layout  prints the thread table's and the price map's layout from
 *           panic_kabi.h, and panic.h's resources (no hand copy in the test):
 *           "name=value" pairs on one line.
 *   read    opens and closes region 1 (an instrumented program), then answers
 *           each line on stdin, until EOF or "quit":
 *             "read":  "prices <seq> <p0> ... <p8> <p1000> <pmax>", the prices
 *                      of resources 0-8, 1000 and UINT_MAX through panic.h's
 *                      wrappers (%.6f) and panic_price_seq;
 *             "dlsym": the same line, "dlsym ..." instead of "prices ...",
 *                      through the functions dlsym(RTLD_DEFAULT) finds under
 *                      PANIC_SYM_PRICE / PANIC_SYM_PRICE_SEQ ("dlsym none"
 *                      when it finds neither, "dlsym partial" for one);
 *             "fork":  forks; the child prints its "child ..." line (as
 *                      "read" does) and exits; the parent waits for it and
 *                      prints "forked".
 *   bench   after region 1, times N calls of cargo_panic_price(PANIC_CPU)
 *           (N = argv[2]), directly and through dlsym's pointer when there is
 *           one, and prints "direct=<ns per read> dlsym=<ns per read or none>
 *           seq=<seq> cpu=<price>". */
#include "driver.h"
#include "panic.h"
#include "panic_kabi.h"
#include "kmode_driver.h"

#include <dlfcn.h>
#include <limits.h>

static void layout(void) {
    print_table_head();
    printf("prices_size=%zu prices_magic=%zu prices_version=%zu n_resources=%zu seq=%zu updated_ns=%zu "
           "price=%zu price_slots=%zu prices_magic_value=%llu price_one=%d resources=%d "
           "res_cpu=%d res_memory=%d res_io=%d res_network=%d res_dwell=%d "
           "cpu=%d memory=%d io=%d network=%d dwell=%d\n",
           sizeof(struct panic_prices), offsetof(struct panic_prices, magic), offsetof(struct panic_prices, version),
           offsetof(struct panic_prices, n_resources), offsetof(struct panic_prices, seq),
           offsetof(struct panic_prices, updated_ns), offsetof(struct panic_prices, price),
           sizeof(((struct panic_prices *)0)->price) / sizeof(((struct panic_prices *)0)->price[0]),
           (unsigned long long)PANIC_PRICES_MAGIC, PANIC_PRICE_ONE, PANIC_RESOURCES, PANIC_RES_CPU, PANIC_RES_MEMORY,
           PANIC_RES_IO, PANIC_RES_NETWORK, PANIC_RES_DWELL, PANIC_CPU, PANIC_MEMORY, PANIC_IO, PANIC_NETWORK,
           PANIC_DWELL);
}

typedef double (*price_fn)(unsigned);
typedef unsigned long long (*seq_fn)(void);

static const unsigned resources[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 1000, UINT_MAX};
#define N_READ (sizeof resources / sizeof resources[0])

static void print_prices(const char *tag, price_fn price, seq_fn seq) {
    printf("%s %llu", tag, seq());
    for (size_t i = 0; i < N_READ; i++)
        printf(" %.6f", price(resources[i]));
    printf("\n");
    fflush(stdout);
}

static double wrapped_price(unsigned r) { return cargo_panic_price(r); }
static unsigned long long wrapped_seq(void) { return cargo_panic_price_seq(); }

static void child_prices(void) { print_prices("child", wrapped_price, wrapped_seq); }

static void read_prices(void) {
    char line[64];
    while (fgets(line, sizeof line, stdin) != NULL) {
        line[strcspn(line, "\n")] = 0;
        if (!strcmp(line, "quit")) {
            break;
        } else if (!strcmp(line, "read")) {
            print_prices("prices", wrapped_price, wrapped_seq);
        } else if (!strcmp(line, "dlsym")) {
            price_fn price = (price_fn)dlsym(RTLD_DEFAULT, PANIC_SYM_PRICE);
            seq_fn seq = (seq_fn)dlsym(RTLD_DEFAULT, PANIC_SYM_PRICE_SEQ);
            if (price && seq)
                print_prices("dlsym", price, seq);
            else
                printf("dlsym %s\n", price || seq ? "partial" : "none");
            fflush(stdout);
        } else if (!strcmp(line, "fork")) {
            fork_child(child_prices);
        } else {
            CHECK(!"unknown command");
        }
    }
}

/* ns per call over n calls of cargo_panic_price(PANIC_CPU) as a program
 * writes it (the sum is kept, so no call can be dropped). */
static double time_direct(long n, double *sink) {
    double sum = 0;
    double t0 = ns_now();
    for (long i = 0; i < n; i++)
        sum += cargo_panic_price(PANIC_CPU);
    double t1 = ns_now();
    *sink += sum;
    return (t1 - t0) / (double)n;
}

/* The same through a function pointer (what dlsym gives the panic-api crate). */
static double time_pointer(price_fn price, long n, double *sink) {
    double sum = 0;
    double t0 = ns_now();
    for (long i = 0; i < n; i++)
        sum += price(PANIC_CPU);
    double t1 = ns_now();
    *sink += sum;
    return (t1 - t0) / (double)n;
}

static void bench(long n) {
    double sink = 0;
    time_direct(n / 10 + 1, &sink); /* warm up */
    double direct = time_direct(n, &sink);
    price_fn looked_up = (price_fn)dlsym(RTLD_DEFAULT, PANIC_SYM_PRICE);
    printf("direct=%.3f", direct);
    if (looked_up)
        printf(" dlsym=%.3f", time_pointer(looked_up, n, &sink));
    else
        printf(" dlsym=none");
    printf(" seq=%llu cpu=%.6f sink=%g\n", cargo_panic_price_seq(), cargo_panic_price(PANIC_CPU), sink);
}

int main(int argc, char **argv) {
    if (layout_or_region(argc, argv, layout))
        return 0;
    if (!strcmp(argv[1], "read")) {
        read_prices();
    } else if (!strcmp(argv[1], "bench")) {
        CHECK(argc == 3);
        bench(atol(argv[2]));
    } else {
        CHECK(!"unknown mode");
    }
    return 0;
}
