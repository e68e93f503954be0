/*
 * panic_runtime.c: the runtime linked into every instrumented program.
 *
 * What it does: counts sites, times dwell regions per thread, and keeps the
 * segment described in panic_abi.h (header, thread slots, counters, histograms)
 * either in private memory or, when CARGO_PANIC_SHM names a file, in that file
 * mapped MAP_SHARED so a reader sees it live. At exit and on fatal signals it
 * can write a copy of the segment to CARGO_PANIC_DUMP. When CARGO_PANIC_KTHREADS
 * names cargo-panic's pinned BPF thread table ("kernel mode"), it also publishes
 * there which region each thread is in, and keeps each region's self time; when
 * per-site budgets are pinned next to the table, it also publishes the stack of
 * budgeted regions each thread is inside, which the kernel enforces; when the
 * price map is pinned there, it maps it read-only for panic_price and
 * panic_price_seq (panic.h), the program's view of the controller's prices;
 * when the fuse map is pinned there, it maps it read-write for panic_fuse
 * (panic.h), which answers whether a named piece of work is to be shed now
 * and counts every ask there.
 *
 * What it never does: allocate (no malloc), use stdio, or call anything that is
 * not async-signal-safe on a path a signal handler can take. The hot paths
 * (__panic_dwell_enter, __panic_dwell_exit) take no lock and make no call on
 * their fast path; everything rare lives in cold, non-inlined functions.
 *
 * Invariant that keeps the hot paths free of indirection: the header, the thread
 * slots and the site tables are static, page-aligned storage that exists before
 * any constructor runs. Shared mode does not move them; it maps the shared file
 * over them (MAP_FIXED) after copying their current contents into the file, so
 * instrumented code that ran before our constructor loses nothing.
 */
#define _GNU_SOURCE
#include "panic_abi.h"
#include "panic_kabi.h"
#include "panic_internal.h"
/* The user header's declarations, exported rather than weak (see panic.h). */
#define CARGO_PANIC_API __attribute__((visibility("default")))
#include "panic.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/bpf.h>
#include <pthread.h>
#include <signal.h>
#include <ucontext.h>
#include <stdio.h> /* rename(2) only: nothing here uses FILE or printf */
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <x86intrin.h>
#define PANIC_HAVE_TSC 1
#else
#define PANIC_HAVE_TSC 0
#endif

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define COLD __attribute__((noinline, cold))
#define RELAXED __ATOMIC_RELAXED

#define PAD(n) (((uint64_t)(n) + PANIC_PAGE - 1) & ~(uint64_t)(PANIC_PAGE - 1))
#define SLOTS_BYTES PAD((uint64_t)PANIC_MAX_THREADS * PANIC_SLOT_SIZE)
#define OFF_COUNTERS ((uint64_t)PANIC_HEADER_SIZE + SLOTS_BYTES)

/* Kernel thread table slot i belongs to runtime thread slot i, and a slot's
 * cur_site is published there as is. */
_Static_assert(PANIC_KTHREADS == PANIC_MAX_THREADS, "the kernel thread table needs one slot per thread slot");
_Static_assert(PANIC_KNO_SITE == PANIC_NO_SITE, "the kernel's no-site value must be the runtime's");
/* Bytes of the thread table's mapping (a BPF array maps whole pages). */
#define KTHREADS_BYTES PAD(sizeof(struct panic_kthreads))
/* Bytes of the budgets' mapping: one panic_site_budget per counter slot, plus
 * one (the map's own elements first, zeroes after them). */
#define KBUDGETS_BYTES PAD((N_SITES + 1) * sizeof(struct panic_site_budget))
_Static_assert(PANIC_KBUDGETS <= 32, "fired has one bit per budget entry");
/* Bytes of the price map's mapping (one struct panic_prices). */
#define KPRICES_BYTES PAD(sizeof(struct panic_prices))
#define KPRICE_SLOTS (sizeof(((struct panic_prices *)0)->price) / sizeof(((struct panic_prices *)0)->price[0]))
/* The user header (panic.h) names the kernel's resources. */
_Static_assert(PANIC_CPU == PANIC_RES_CPU && PANIC_MEMORY == PANIC_RES_MEMORY && PANIC_IO == PANIC_RES_IO &&
                   PANIC_NETWORK == PANIC_RES_NETWORK && PANIC_DWELL == PANIC_RES_DWELL,
               "panic.h's resources must be panic_kabi.h's");
_Static_assert(PANIC_RESOURCES == 5 && PANIC_RESOURCES <= KPRICE_SLOTS,
               "panic.h names every resource; each has a price slot");
_Static_assert(sizeof(unsigned long long) == sizeof(uint64_t), "panic_price_seq returns the 64-bit seq");
/* Bytes of the fuse map's mapping (one struct panic_fuses). */
#define KFUSES_BYTES PAD(sizeof(struct panic_fuses))
/* The fuse name index: open addressing over KFUSE_HASH buckets (a power of
 * two, at least twice PANIC_FUSES, so a probe meets an empty bucket soon),
 * each the entry's index + 1 in a byte (0: empty). */
#define KFUSE_HASH 128
_Static_assert(PANIC_FUSES <= 255 && KFUSE_HASH >= 2 * PANIC_FUSES && (KFUSE_HASH & (KFUSE_HASH - 1)) == 0,
               "fuse indexes + 1 fit a byte, and the index has room");
/* The user header (panic.h) says how long a fuse name can be. */
_Static_assert(PANIC_FUSE_NAME_MAX + 1 == PANIC_FUSE_NAME, "panic.h's longest fuse name must be panic_kabi.h's");

/* Alternate signal stacks: one for the main thread, one per slot for the others. */
#define MAIN_ALTSTACK_SIZE (64 * 1024)
#define SLOT_ALTSTACK_SIZE (32 * 1024)

/* How long a thread that takes a fatal signal while another thread is already
 * writing the dump waits for it (in 1 ms steps) before going on regardless. */
#define WAIT_STEPS_MS 5000

/* ------------------------------------------------------------------------- */
/* Static storage                                                            */
/* ------------------------------------------------------------------------- */

/* The header page followed by the thread slots, exactly as laid out at the
 * start of the segment. Page aligned and a whole number of pages long, so shared
 * mode can map the segment file over it. */
struct segment_head {
    union {
        struct panic_header h;
        unsigned char page[PANIC_HEADER_SIZE];
    } hdr;
    struct panic_thread_slot slots[PANIC_MAX_THREADS];
} __attribute__((aligned(PANIC_PAGE)));

_Static_assert(offsetof(struct segment_head, slots) == PANIC_HEADER_SIZE,
               "slots must start right after the header page");
_Static_assert(sizeof(struct segment_head) == OFF_COUNTERS,
               "header and slots must fill whole pages");

static struct segment_head seg;

/* The trailer pages (see panic_abi.h): linked after every instrumented object,
 * they end the data sections on a page boundary. */
static uint64_t ctr_trailer[PANIC_PAGE / 8]
    __attribute__((section(PANIC_SECTION_COUNTERS), aligned(PANIC_PAGE), used, retain));
static unsigned char hist_trailer[PANIC_PAGE]
    __attribute__((section(PANIC_SECTION_HISTS), aligned(PANIC_PAGE), used, retain));
/* Link-time constants: the counter and histogram slots of this executable. */
#define N_SITES (((uint64_t)(uintptr_t)ctr_trailer - (uint64_t)(uintptr_t)__start_panic_counters) / 8)
#define N_HISTS (((uint64_t)(uintptr_t)hist_trailer - (uint64_t)(uintptr_t)__start_panic_hists) / PANIC_HIST_SIZE)
#define HDR (&seg.hdr.h)

static char main_altstack[MAIN_ALTSTACK_SIZE] __attribute__((aligned(16)));
static char slot_altstacks[PANIC_MAX_THREADS][SLOT_ALTSTACK_SIZE] __attribute__((aligned(16)));

/* The calling thread's slot, or NULL before its first region. */
static _Thread_local struct panic_thread_slot *tls_slot;
/* Why a thread has no slot: 0 = not claimed yet, TLS_OVER = none was free,
 * TLS_RETIRED = the thread is exiting and gave its slot back. */
static _Thread_local unsigned char tls_state;
#define TLS_OVER 1
#define TLS_RETIRED 2

/* The calling thread's counter offset (PANIC_SYM_CTR_DELTA): 0 counts into the
 * shared arrays, anything else into the thread's own block. */
_Thread_local int64_t __panic_ctr_delta __attribute__((visibility("hidden")));

/* Per-thread counter blocks (panic_abi.h, "per-thread counters"). Chunk c holds
 * blocks c * BLOCKS_PER_CHUNK onwards and is mapped at chunk_addr[c]: from the
 * segment file in shared mode, anonymous memory otherwise. */
#define MAX_CHUNKS (PANIC_MAX_BLOCKS / PANIC_BLOCKS_PER_CHUNK)
static char *chunk_addr[MAX_CHUNKS];
/* Kernel tid of each block's thread, 0 = free (claimed by CAS). */
static uint32_t block_owner[PANIC_MAX_BLOCKS];
/* Blocks that have storage (atomic; grows under grow_lock). */
static uint32_t blocks_ready;
static pthread_mutex_t grow_lock = PTHREAD_MUTEX_INITIALIZER;
/* Set once the constructor has decided where blocks live (file or memory). */
static int blocks_enabled;
/* The calling thread's block + 1, 0 = none; tls_block_state says why not. */
static _Thread_local uint32_t tls_block;
static _Thread_local unsigned char tls_block_state;

/* Counts one execution of a site, the way instrumented code does. */
static inline __attribute__((always_inline)) void count_site(uint64_t *site_counter) {
    uint64_t *c = (uint64_t *)((char *)site_counter + __panic_ctr_delta);
    __atomic_store_n(c, __atomic_load_n(c, RELAXED) + 1, RELAXED);
}

/* 0 = not decided yet, CLOCK_IS_NS, CLOCK_IS_TSC. */
static int clock_state;
#define CLOCK_IS_NS 1
#define CLOCK_IS_TSC 2

/* The kernel thread table (PANIC_ENV_KTHREADS) while this process writes it:
 * set by the main executable's constructor, NULL otherwise (no table, a copy of
 * the runtime in a shared library, a forked child). */
static struct panic_kthreads *kthreads;
/* The per-site budgets ("budgets" next to the thread table, read-only; N_SITES + 1
 * elements, zero past the map's) while kernel mode has them; NULL otherwise. Set
 * before kthreads, and cleared with it. */
static const struct panic_site_budget *kbudgets;
/* The price map ("prices" next to the thread table, read-only) once kernel mode
 * found a usable one; NULL otherwise. Unlike the thread table it stays in a
 * forked child (kthreads_detach). kprices_n: its n_resources, bounded by the
 * price array, stored before kprices. */
static const struct panic_prices *kprices;
static uint32_t kprices_n;
/* The fuse map ("fuses" next to the thread table, read-write: panic_fuse adds
 * to its counters) once kernel mode found a usable one; NULL otherwise. Like
 * the prices it stays in a forked child. Set once, at start-up, after the
 * private index below is complete (release), which is then never written:
 * kfuse_name, the first n entries' names as they were at start-up (the loader
 * wrote them before the program started; they never change), and
 * kfuse_bucket, their index by hash (entry index + 1, 0: empty). */
static struct panic_fuses *kfuses;
static char kfuse_name[PANIC_FUSES][PANIC_FUSE_NAME];
static uint8_t kfuse_bucket[KFUSE_HASH];
/* The entry of the last fuse the calling thread asked for, + 1 (0: none): the
 * next ask compares its name with that entry's first. */
static _Thread_local uint8_t tls_fuse;

/* Which fast path the entry points take; derived from clock_state and kthreads
 * by set_hot_mode. It is the entry points' first load: kernel mode is one more
 * value of it rather than a second test, so it costs the plain fast path
 * nothing. 0: the general paths only (clock not decided, or not the TSC). */
static int hot_mode;
#define HOT_TSC 1        /* the TSC fast path */
#define HOT_TSC_KERNEL 2 /* the TSC fast path that also writes the thread table */

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t slot_key;
static int slot_key_ok;
static pthread_key_t block_key;
static int block_key_ok;

static char dump_path[PATH_MAX];
static int shm_fd = -1;

/* Thread id of the first thread that took a fatal signal (0 = none yet), and
 * whether it finished recording it. */
static uint32_t fatal_tid;
static uint32_t fatal_done;
/* Thread id of the thread writing the dump right now (0 = nobody). */
static uint32_t dump_owner;

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
#define N_FATAL ((int)(sizeof fatal_signals / sizeof fatal_signals[0]))
/* The disposition each fatal signal had before ours; restored before re-raising. */
static struct sigaction previous_action[N_FATAL];
/* Whether the runtime's handler is the one installed for fatal_signals[i]. */
static int handler_installed[N_FATAL];
/* glibc's sigaction under its other (exported) name: `sigaction` itself is
 * defined below for the program's callers. */
extern int __sigaction(int, const struct sigaction *, struct sigaction *);

/* ------------------------------------------------------------------------- */
/* Clock                                                                     */
/* ------------------------------------------------------------------------- */

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void set_hot_mode(void) {
    int mode = 0;
    if (PANIC_HAVE_TSC && __atomic_load_n(&clock_state, RELAXED) == CLOCK_IS_TSC)
        mode = __atomic_load_n(&kthreads, RELAXED) ? HOT_TSC_KERNEL : HOT_TSC;
    __atomic_store_n(&hot_mode, mode, __ATOMIC_RELEASE);
}

/* Picks the clock once: the TSC when cpuid says it is invariant, else
 * CLOCK_MONOTONIC. `force_ns` comes from CARGO_PANIC_CLOCK=ns and only counts
 * when nothing has been timed yet, so one run never mixes two kinds of ticks. */
static COLD void clock_decide(int force_ns) {
    int kind = CLOCK_IS_NS;
#if PANIC_HAVE_TSC
    unsigned a, b, c, d;
    if (!force_ns && __get_cpuid(0x80000007u, &a, &b, &c, &d) && (d & (1u << 8)))
        kind = CLOCK_IS_TSC;
#else
    (void)force_ns;
#endif
    int expected = 0;
    __atomic_compare_exchange_n(&clock_state, &expected, kind, 0, RELAXED, RELAXED);
    set_hot_mode();
}

static COLD uint64_t now_slow(void) {
    if (__atomic_load_n(&clock_state, RELAXED) == 0)
        clock_decide(0);
#if PANIC_HAVE_TSC
    if (__atomic_load_n(&clock_state, RELAXED) == CLOCK_IS_TSC)
        return __rdtsc();
#endif
    return mono_ns();
}

/* Ticks of the chosen clock. */
static inline uint64_t now(void) {
#if PANIC_HAVE_TSC
    if (LIKELY(__atomic_load_n(&clock_state, RELAXED) == CLOCK_IS_TSC))
        return __rdtsc();
#endif
    return now_slow();
}

/* Ticks and CLOCK_MONOTONIC nanoseconds taken back to back, for calibration
 * (one reading when the ticks are the nanoseconds). */
static void clock_pair(uint64_t *ticks, uint64_t *ns) {
    *ticks = now();
    *ns = __atomic_load_n(&clock_state, RELAXED) == CLOCK_IS_TSC ? mono_ns() : *ticks;
}

/* ------------------------------------------------------------------------- */
/* Small async-signal-safe helpers                                           */
/* ------------------------------------------------------------------------- */

static uint32_t current_tid(void) { return (uint32_t)syscall(SYS_gettid); }

/* Appends `s` to buf[*len] (capacity cap, one byte kept for a newline). */
static void append(char *buf, size_t *len, size_t cap, const char *s) {
    while (*s && *len + 1 < cap)
        buf[(*len)++] = *s++;
}

static void append_u64(char *buf, size_t *len, size_t cap, uint64_t v) {
    char digits[24];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n && *len + 1 < cap)
        buf[(*len)++] = digits[--n];
}

static void append_errno(char *buf, size_t *len, size_t cap, int err) {
    /* strerrordesc_np reads a static table: no locale, no allocation. */
    const char *desc = strerrordesc_np(err);
    if (desc) {
        append(buf, len, cap, desc);
    } else {
        append(buf, len, cap, "errno ");
        append_u64(buf, len, cap, (uint64_t)err);
    }
}

/* Writes one line "cargo-panic runtime: <what> <path>: <reason><tail>" to stderr
 * with a single write(2), so it never interleaves with other output. */
static void say(const char *what, const char *path, int err, const char *tail) {
    char buf[PATH_MAX + 256];
    size_t len = 0;
    append(buf, &len, sizeof buf, "cargo-panic runtime: ");
    append(buf, &len, sizeof buf, what);
    append(buf, &len, sizeof buf, " ");
    append(buf, &len, sizeof buf, path);
    append(buf, &len, sizeof buf, ": ");
    append_errno(buf, &len, sizeof buf, err);
    append(buf, &len, sizeof buf, tail);
    buf[len++] = '\n';
    ssize_t r;
    do {
        r = (ssize_t)syscall(SYS_write, STDERR_FILENO, buf, len);
    } while (r < 0 && errno == EINTR);
}

void panic_say(const char *what, const char *path, int err, const char *tail) { say(what, path, err, tail); }

/* pwrite of the whole buffer; returns 0 or an errno value. */
static int pwrite_all(int fd, const void *data, uint64_t len, uint64_t off) {
    const char *p = data;
    while (len > 0) {
        ssize_t n = (ssize_t)syscall(SYS_pwrite64, fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (n == 0)
            return EIO;
        p += n;
        len -= (uint64_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static void atomic_max_u32(uint32_t *p, uint32_t v) {
    uint32_t cur = __atomic_load_n(p, RELAXED);
    while (cur < v && !__atomic_compare_exchange_n(p, &cur, v, 1, RELAXED, RELAXED)) {
    }
}

static void sleep_1ms(void) {
    struct timespec ts = {0, 1000000};
    syscall(SYS_nanosleep, &ts, NULL);
}

/* ------------------------------------------------------------------------- */
/* Histograms                                                                */
/* ------------------------------------------------------------------------- */

/* The bucket of a duration, as documented in panic_abi.h. With
 * e = floor(log2 v) and sh = max(e - SUB_BITS, 0) the documented
 * g * 2^SUB_BITS + s simplifies to (sh << SUB_BITS) + (v >> sh); values below
 * 2^(SUB_BITS+1) land on index v. Or-ing in bit SUB_BITS computes that max
 * without a compare: floor(log2(v | 2^SUB_BITS)) = max(e, SUB_BITS). */
static inline uint32_t hist_index(uint64_t v) {
    uint32_t sh = 63u - (uint32_t)__builtin_clzll(v | (1u << PANIC_HIST_SUB_BITS)) - PANIC_HIST_SUB_BITS;
    uint64_t idx = ((uint64_t)sh << PANIC_HIST_SUB_BITS) + (v >> sh);
    return idx < PANIC_HIST_BUCKETS ? (uint32_t)idx : PANIC_HIST_BUCKETS - 1;
}

/* Raises *p to v unless another thread already stored something larger. */
static void raise_to(uint64_t *p, uint64_t v) {
    uint64_t cur = __atomic_load_n(p, RELAXED);
    while (cur < v && !__atomic_compare_exchange_n(p, &cur, v, 1, RELAXED, RELAXED)) {
    }
}

/* The rare part of recording: a new largest or smallest duration. */
static COLD void hist_extremes(struct panic_hist *h, uint64_t v) {
    raise_to(&h->max, v);
    raise_to(&h->min, ~v);
}

/* Whether regions may be demoted (PANIC_ENV_ADAPTIVE). */
static int adaptive = 1;

/* Called by the thread that records a histogram's 2^k-th duration: from
 * PANIC_DEMOTE_AFTER on, demotes the region when its mean is below
 * PANIC_DEMOTE_BELOW_NS. The clock must have been calibrated over at least 1 ms;
 * until then the decision waits for the next power of two. A pinned region
 * (PANIC_HIST_FLAG_PINNED: it has a budget) is never demoted. */
static COLD void consider_demotion(struct panic_hist *h, uint64_t count) {
    if (!adaptive || count < PANIC_DEMOTE_AFTER ||
        (__atomic_load_n(&h->flags, RELAXED) & (PANIC_HIST_FLAG_DEMOTED | PANIC_HIST_FLAG_PINNED)))
        return;
    uint64_t total = __atomic_load_n(&h->total, RELAXED);
    double ticks_per_ns = 1.0;
    if (__atomic_load_n(&clock_state, RELAXED) == CLOCK_IS_TSC) {
        uint64_t t, ns;
        clock_pair(&t, &ns);
        uint64_t dns = ns - HDR->ns0, dt = t - HDR->tsc0;
        if (HDR->ns0 == 0 || dns < 1000000u || dt == 0)
            return;
        ticks_per_ns = (double)dt / (double)dns;
    }
    double mean_ns = (double)total / (double)count / ticks_per_ns;
    if (mean_ns >= (double)PANIC_DEMOTE_BELOW_NS)
        return;
    /* Never over a pin set meanwhile (start-up, while other threads run). */
    uint64_t f = __atomic_load_n(&h->flags, RELAXED);
    while (!(f & (PANIC_HIST_FLAG_DEMOTED | PANIC_HIST_FLAG_PINNED)) &&
           !__atomic_compare_exchange_n(&h->flags, &f, f | PANIC_HIST_FLAG_DEMOTED, 1, RELAXED, RELAXED)) {
    }
}

/* Records one duration. `min` is stored complemented (see PANIC_HIST_MIN), so
 * both extremes are "raise to" updates and zeroed memory is an empty hist. */
static inline __attribute__((always_inline)) void hist_record(struct panic_hist *h, uint64_t v) {
    /* Keeps the compiler from re-deriving h for every field (saves two multiplies). */
    __asm__("" : "+r"(h));
    uint64_t c = __atomic_add_fetch(&h->count, 1, RELAXED);
    __atomic_fetch_add(&h->total, v, RELAXED);
    __atomic_fetch_add(&h->buckets[hist_index(v)], 1, RELAXED);
    if (UNLIKELY(v > __atomic_load_n(&h->max, RELAXED) || ~v > __atomic_load_n(&h->min, RELAXED)))
        hist_extremes(h, v);
    if (UNLIKELY((c & (c - 1)) == 0))
        consider_demotion(h, c);
}

/* ------------------------------------------------------------------------- */
/* Thread slots                                                              */
/* ------------------------------------------------------------------------- */

static void release_slot(void *arg);
static void release_block(void *arg);
static void attach_block(void);

static void make_key(void) {
    slot_key_ok = pthread_key_create(&slot_key, release_slot) == 0;
    block_key_ok = pthread_key_create(&block_key, release_block) == 0;
}

/* Gives the thread an alternate signal stack from the slot's pool entry unless
 * it already has one (the main thread's, Rust's, or the program's own). */
static void give_altstack(char *stack, size_t size) {
    stack_t cur;
    if (sigaltstack(NULL, &cur) != 0 || !(cur.ss_flags & SS_DISABLE))
        return;
    stack_t ss = {.ss_sp = stack, .ss_flags = 0, .ss_size = size};
    sigaltstack(&ss, NULL);
}

/* Slot s's entry in the kernel thread table k. */
static inline __attribute__((always_inline)) struct panic_kthread *kslot(struct panic_kthreads *k,
                                                                        struct panic_thread_slot *s) {
    return &k->slot[s - seg.slots];
}

/* The budget stack (panic_kthread.budget) is a seqlock for its readers, the
 * BPF programs: the owner makes seq odd, changes the stack, makes seq even. The
 * release fence after the odd store keeps the changes from becoming visible
 * before it; the release store of the even value keeps them before it. */
static inline __attribute__((always_inline)) uint32_t kbudget_begin(struct panic_kthread *ks) {
    uint32_t seq = __atomic_load_n(&ks->seq, RELAXED);
    __atomic_store_n(&ks->seq, seq + 1, RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    return seq + 2;
}

static inline __attribute__((always_inline)) void kbudget_end(struct panic_kthread *ks, uint32_t seq) {
    __atomic_store_n(&ks->seq, seq, __ATOMIC_RELEASE);
}

/* Entering a region of a budgeted site at depth d (a timed frame): pushes it on
 * the thread's budget stack, or counts it in budgets_over when the stack is full
 * (not enforced then). Only budgeted regions pay for the clock read. Returns d
 * (the enter's token), so that the enter can tail-call it. */
static __attribute__((noinline)) uint32_t kbudget_push(struct panic_kthreads *k, struct panic_kthread *ks,
                                                       uint32_t site, uint32_t d) {
    uint32_t n = __atomic_load_n(&ks->n_budgets, RELAXED);
    if (n >= PANIC_KBUDGETS) {
        __atomic_fetch_add(&k->budgets_over, 1, RELAXED);
        return d;
    }
    uint64_t since = mono_ns(); /* bpf_ktime_get_ns's clock */
    uint32_t seq = kbudget_begin(ks);
    __atomic_store_n(&ks->budget[n].site, site, RELAXED);
    __atomic_store_n(&ks->budget[n].depth, d, RELAXED);
    __atomic_store_n(&ks->budget[n].since, since, RELAXED);
    /* The kernel may have acted on the previous region pushed at n. */
    __atomic_fetch_and(&ks->fired, ~(1u << n), RELAXED);
    __atomic_store_n(&ks->n_budgets, n + 1, RELAXED);
    kbudget_end(ks, seq);
    return d;
}

/* Closing the frame at depth `token` (and every frame above it): pops the
 * budget entries of those frames (n_budgets = n > 0 on entry), abandoned ones
 * included. */
static void kbudget_pop(struct panic_kthread *ks, uint32_t n, uint32_t token) {
    uint32_t seq = kbudget_begin(ks);
    while (n > 0 && __atomic_load_n(&ks->budget[n - 1].depth, RELAXED) >= token)
        n--;
    __atomic_store_n(&ks->n_budgets, n, RELAXED);
    kbudget_end(ks, seq);
}

/* pthread key destructor: runs at thread exit and hands the slot back. */
static void release_slot(void *arg) {
    struct panic_thread_slot *s = arg;
    size_t i = (size_t)(s - seg.slots);
    /* The kernel's entry first: once the slot is free, its next owner writes it. */
    struct panic_kthreads *k = __atomic_load_n(&kthreads, RELAXED);
    if (k && i < PANIC_MAX_THREADS) {
        struct panic_kthread *ks = kslot(k, s);
        uint32_t n = __atomic_load_n(&ks->n_budgets, RELAXED);
        if (n != 0)
            kbudget_pop(ks, n < PANIC_KBUDGETS ? n : PANIC_KBUDGETS, 0);
        __atomic_store_n(&ks->site, PANIC_KNO_SITE, RELAXED);
        __atomic_store_n(&ks->tid, 0, __ATOMIC_RELEASE);
    }
    stack_t cur;
    if (i < PANIC_MAX_THREADS && sigaltstack(NULL, &cur) == 0 &&
        cur.ss_sp == (void *)slot_altstacks[i] && !(cur.ss_flags & SS_ONSTACK)) {
        stack_t off = {.ss_sp = NULL, .ss_flags = SS_DISABLE, .ss_size = 0};
        sigaltstack(&off, NULL);
    }
    __atomic_store_n(&s->depth, 0, RELAXED);
    __atomic_store_n(&s->cur_site, PANIC_NO_SITE, RELAXED);
    __atomic_store_n(&s->tid, 0, __ATOMIC_RELEASE);
    /* Instrumented code in later destructors is still counted, never timed. */
    tls_slot = NULL;
    tls_state = TLS_RETIRED;
}

/* Publishes slot s as tid's in the kernel thread table: the site and an empty
 * budget stack before the tid (a new tid never shows the previous owner's),
 * then a new claims count, so the kernel side rechecks the slot indexes it
 * cached. (Regions opened before the table was mapped are not budgeted.) */
static void kthread_claim(struct panic_kthreads *k, struct panic_thread_slot *s, uint32_t tid) {
    struct panic_kthread *ks = kslot(k, s);
    __atomic_store_n(&ks->site, __atomic_load_n(&s->cur_site, RELAXED), RELAXED);
    if (__atomic_load_n(&ks->n_budgets, RELAXED) != 0) {
        uint32_t seq = kbudget_begin(ks);
        __atomic_store_n(&ks->n_budgets, 0, RELAXED);
        kbudget_end(ks, seq);
    }
    __atomic_store_n(&ks->tid, tid, __ATOMIC_RELEASE);
    __atomic_fetch_add(&k->claims, 1, __ATOMIC_RELEASE);
}

/* First region of a thread: claim a free slot (tid 0 -> our tid). */
static COLD struct panic_thread_slot *claim_slot(void) {
    if (tls_state != 0)
        return NULL;
    attach_block();
    pthread_once(&key_once, make_key);
    uint32_t tid = current_tid();
    for (uint32_t i = 0; i < PANIC_MAX_THREADS; i++) {
        struct panic_thread_slot *s = &seg.slots[i];
        uint32_t expected = 0;
        if (__atomic_load_n(&s->tid, RELAXED) != 0 ||
            !__atomic_compare_exchange_n(&s->tid, &expected, tid, 0, __ATOMIC_SEQ_CST, RELAXED))
            continue;
        __atomic_store_n(&s->depth, 0, RELAXED);
        __atomic_store_n(&s->cur_site, PANIC_NO_SITE, RELAXED);
        __atomic_store_n(&s->last_exit, PANIC_NO_SITE, RELAXED);
        __atomic_store_n(&s->entered, 0, RELAXED);
        /* Seq-cst pairs with kthreads_setup's: a slot claimed while the table
         * is being attached is published by this thread, by the setup's scan,
         * or by both. (Such a thread, started by an earlier constructor, may
         * have a region change unpublished until its next one.) */
        struct panic_kthreads *k = __atomic_load_n(&kthreads, __ATOMIC_SEQ_CST);
        if (k)
            kthread_claim(k, s, tid);
        atomic_max_u32(&HDR->threads_used, i + 1);
        tls_slot = s;
        if (slot_key_ok)
            pthread_setspecific(slot_key, s);
        give_altstack(slot_altstacks[i], SLOT_ALTSTACK_SIZE);
        return s;
    }
    tls_state = TLS_OVER;
    __atomic_fetch_add(&HDR->threads_over, 1, RELAXED);
    return NULL;
}

/* ------------------------------------------------------------------------- */
/* Per-thread counter blocks                                                 */
/* ------------------------------------------------------------------------- */

static uint64_t *block_addr(uint32_t i) {
    return (uint64_t *)(chunk_addr[i / PANIC_BLOCKS_PER_CHUNK] +
                        (uint64_t)(i % PANIC_BLOCKS_PER_CHUNK) * HDR->block_size);
}

/* Maps one more chunk of blocks (caller holds grow_lock). In shared mode the
 * file is extended first and the new size published after, so a reader never
 * sees a total_size longer than the file. Returns 0 or an errno value. */
static int grow_chunk(void) {
    struct panic_header *h = HDR;
    uint32_t have = __atomic_load_n(&blocks_ready, RELAXED);
    uint32_t c = have / PANIC_BLOCKS_PER_CHUNK;
    if (c >= MAX_CHUNKS)
        return ENOSPC;
    uint64_t len = (uint64_t)PANIC_BLOCKS_PER_CHUNK * h->block_size;
    uint64_t off = h->off_blocks + (uint64_t)c * len;
    int fd = shm_fd;
    void *addr;
    if (fd >= 0) {
        if (ftruncate(fd, (off_t)(off + len)) != 0)
            return errno;
        addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)off);
    } else {
        addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    }
    if (addr == MAP_FAILED)
        return errno;
    chunk_addr[c] = addr;
    __atomic_store_n(&blocks_ready, have + PANIC_BLOCKS_PER_CHUNK, __ATOMIC_RELEASE);
    __atomic_store_n(&h->n_blocks, (uint64_t)have + PANIC_BLOCKS_PER_CHUNK, RELAXED);
    __atomic_store_n(&h->total_size, off + len, __ATOMIC_RELEASE);
    return 0;
}

/* Gives the calling thread a block of its own (a free one, or a new chunk's),
 * unless it has one, gave its block back, or none can be had. */
static COLD void attach_block(void) {
    if (tls_block != 0 || tls_block_state != 0 || !__atomic_load_n(&blocks_enabled, __ATOMIC_ACQUIRE))
        return;
    uint32_t tid = current_tid();
    for (;;) {
        uint32_t n = __atomic_load_n(&blocks_ready, __ATOMIC_ACQUIRE);
        for (uint32_t i = 0; i < n; i++) {
            uint32_t expected = 0;
            if (__atomic_load_n(&block_owner[i], RELAXED) != 0 ||
                !__atomic_compare_exchange_n(&block_owner[i], &expected, tid, 0, __ATOMIC_ACQUIRE, RELAXED))
                continue;
            tls_block = i + 1;
            __panic_ctr_delta = (int64_t)((char *)block_addr(i) - (char *)__start_panic_counters);
            pthread_once(&key_once, make_key);
            if (block_key_ok)
                pthread_setspecific(block_key, (void *)(uintptr_t)(i + 1));
            return;
        }
        pthread_mutex_lock(&grow_lock);
        int err = __atomic_load_n(&blocks_ready, RELAXED) == n ? grow_chunk() : 0;
        pthread_mutex_unlock(&grow_lock);
        if (err) {
            tls_block_state = TLS_OVER;
            __atomic_fetch_add(&HDR->blocks_over, 1, RELAXED);
            return;
        }
    }
}

/* Adds block i to the shared counters and zeroes it. */
static void fold_block(uint32_t i) {
    uint64_t *blk = block_addr(i);
    uint64_t n = HDR->n_sites;
    for (uint64_t j = 0; j < n; j++) {
        uint64_t v = __atomic_load_n(&blk[j], RELAXED);
        if (v) {
            __atomic_fetch_add(&__start_panic_counters[j], v, RELAXED);
            __atomic_store_n(&blk[j], 0, RELAXED);
        }
    }
}

/* pthread key destructor: at thread exit, hands the thread's counts to the
 * shared counters and its block to the next thread. Instrumented code in later
 * destructors counts into the shared counters. */
static void release_block(void *arg) {
    uint32_t i = (uint32_t)(uintptr_t)arg - 1;
    __panic_ctr_delta = 0;
    tls_block = 0;
    tls_block_state = TLS_RETIRED;
    if (i >= __atomic_load_n(&blocks_ready, __ATOMIC_ACQUIRE))
        return;
    fold_block(i);
    __atomic_store_n(&block_owner[i], 0, __ATOMIC_RELEASE);
}

/* Every counter summed over the shared array and the blocks, for sites
 * [from, from + n): what a dump records. Async-signal-safe. */
static void sum_counters(uint64_t from, uint64_t n, uint64_t *out) {
    for (uint64_t j = 0; j < n; j++)
        out[j] = __atomic_load_n(&__start_panic_counters[from + j], RELAXED);
    uint32_t nb = __atomic_load_n(&blocks_ready, __ATOMIC_ACQUIRE);
    for (uint32_t i = 0; i < nb; i++) {
        const uint64_t *blk = block_addr(i);
        for (uint64_t j = 0; j < n; j++)
            out[j] += __atomic_load_n(&blk[from + j], RELAXED);
    }
}

/* ------------------------------------------------------------------------- */
/* Threads started through pthread_create                                    */
/* ------------------------------------------------------------------------- */

/* The runtime's pthread_create gives each new thread its block before the
 * thread runs any code of the program. It is weak: a static link against
 * libc.a keeps libc's own, and threads then get blocks at their first timed
 * region (or count into the shared counters). The start routine and argument
 * travel through a fixed pool of records (no allocation); when the pool is
 * exhausted the thread is started directly. */
#define START_RECORDS 256
struct start_record {
    void *(*fn)(void *);
    void *arg;
    uint32_t busy;
};
static struct start_record start_records[START_RECORDS];

typedef int (*pthread_create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

static void *start_thread(void *p) {
    struct start_record *r = p;
    void *(*fn)(void *) = r->fn;
    void *arg = r->arg;
    __atomic_store_n(&r->busy, 0, __ATOMIC_RELEASE);
    attach_block();
    return fn(arg);
}

/* The C library's pthread_create (the next definition after this module's),
 * found once; NULL if there is none. */
static pthread_create_fn libc_pthread_create(void) {
    static pthread_create_fn real;
    pthread_create_fn next = __atomic_load_n(&real, __ATOMIC_ACQUIRE);
    if (next == NULL) {
        next = (pthread_create_fn)dlsym(RTLD_NEXT, "pthread_create");
        if (next != NULL)
            __atomic_store_n(&real, next, __ATOMIC_RELEASE);
    }
    return next;
}

/* Starts fn(arg) through `next` (a pthread_create), giving the thread its
 * block first. */
static int create_thread(pthread_create_fn next, pthread_t *thread, const pthread_attr_t *attr,
                         void *(*fn)(void *), void *arg) {
    for (int i = 0; i < START_RECORDS; i++) {
        struct start_record *r = &start_records[i];
        uint32_t expected = 0;
        if (__atomic_load_n(&r->busy, RELAXED) != 0 ||
            !__atomic_compare_exchange_n(&r->busy, &expected, 1, 0, __ATOMIC_ACQUIRE, RELAXED))
            continue;
        r->fn = fn;
        r->arg = arg;
        int err = next(thread, attr, start_thread, r);
        if (err)
            __atomic_store_n(&r->busy, 0, __ATOMIC_RELEASE);
        return err;
    }
    return next(thread, attr, fn, arg);
}

__attribute__((weak, visibility("default"))) int pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                                                                void *(*fn)(void *), void *arg) {
    pthread_create_fn next = libc_pthread_create();
    return next ? create_thread(next, thread, attr, fn, arg) : EAGAIN;
}

/* With ASan or TSan (cargo panic cc --sanitize): their runtime is linked
 * before every object and defines pthread_create (weak) too, so the one
 * above loses, and a thread would count into the shared counters (losing
 * counts to races) until its first timed region. Their interceptor must see
 * every thread start, so the runtime cannot call the C library's directly
 * either. The cc wrappers link such executables with
 * --defsym=pthread_create=<this> (PANIC_SYM_SANITIZED_PTHREAD_CREATE), which
 * overrides both weak definitions, also for shared libraries (the sanitizer
 * exports it): the thread gets its block and starts through the sanitizer's
 * interceptor (__interceptor_pthread_create, its name in compiler-rt), which
 * calls the C library's. Never named by `pthread_create` here: with the
 * defsym, that symbol is this function. Default visibility, as the symbol
 * the defsym makes takes this one's and must stay exported. */
extern int __interceptor_pthread_create(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *)
    __attribute__((weak));

__attribute__((visibility("default"))) int __panic_sanitized_pthread_create(pthread_t *thread,
                                                                          const pthread_attr_t *attr,
                                                                          void *(*fn)(void *), void *arg) {
    pthread_create_fn next = __interceptor_pthread_create ? __interceptor_pthread_create : libc_pthread_create();
    return next ? create_thread(next, thread, attr, fn, arg) : EAGAIN;
}

/* ------------------------------------------------------------------------- */
/* Hot paths                                                                 */
/* ------------------------------------------------------------------------- */

/* The fast paths run only with the TSC clock, a claimed slot and a frame to
 * spare; they make no call, so they need no stack frame. Anything else goes to
 * the general versions below, which are tail calls.
 *
 * Kernel mode: open_frame and close_frame take the thread table `k` (NULL when
 * there is none). The plain fast path passes a constant NULL, so its kernel
 * code is compiled out; kernel mode has its own out-of-line copy of the fast
 * path (enter_kernel, exit_kernel), which hot_mode selects. */
static inline __attribute__((always_inline)) uint64_t fast_ticks(void) {
#if PANIC_HAVE_TSC
    return __rdtsc();
#else
    return 0;
#endif
}

/* Opens a region at depth d of slot s (the counter is already counted). */
static inline __attribute__((always_inline)) uint32_t open_frame(struct panic_thread_slot *s, uint32_t d,
                                                                 uint64_t *site_counter,
                                                                 struct panic_hist *hist, uint64_t t,
                                                                 struct panic_kthreads *k) {
    uint32_t site = (uint32_t)(site_counter - __start_panic_counters);
    /* Kernel mode: the budgets when this frame is timed (NULL otherwise). */
    const struct panic_site_budget *b = NULL;
    if (LIKELY(d < PANIC_MAX_DEPTH)) {
        struct panic_frame *f = &s->stack[d];
        __atomic_store_n(&f->site, site, RELAXED);
        __atomic_store_n(&f->hist, (uint32_t)(hist - __start_panic_hists), RELAXED);
        __atomic_store_n(&f->t, t, RELAXED);
        __atomic_store_n(&s->cur_site, site, RELAXED);
        if (k) {
            __atomic_store_n(&f->child, 0, RELAXED);
            __atomic_store_n(&kslot(k, s)->site, site, RELAXED);
            b = __atomic_load_n(&kbudgets, RELAXED);
        }
    } else {
        __atomic_fetch_add(&HDR->depth_over, 1, RELAXED);
    }
    __atomic_store_n(&s->depth, d + 1, RELAXED);
    __atomic_store_n(&s->entered, __atomic_load_n(&s->entered, RELAXED) + 1, RELAXED);
    /* Last, so that it is a tail call: the fast path needs no stack frame. */
    if (k && UNLIKELY(b != NULL) && __atomic_load_n(&b[site].budget_ns, RELAXED) != 0)
        return kbudget_push(k, kslot(k, s), site, d);
    return d;
}

/* The general enter: any clock, first region of a thread, nesting too deep. */
static COLD uint32_t enter_slow(uint64_t *site_counter, struct panic_hist *hist) {
    count_site(site_counter);
    struct panic_thread_slot *s = tls_slot;
    if (s == NULL) {
        s = claim_slot();
        if (s == NULL)
            return PANIC_NO_TOKEN;
    }
    uint32_t d = __atomic_load_n(&s->depth, RELAXED);
    return open_frame(s, d, site_counter, hist, d < PANIC_MAX_DEPTH ? now() : 0,
                      __atomic_load_n(&kthreads, RELAXED));
}

/* The TSC fast path of enter for the calling thread's slot s, with thread
 * table k (a constant at each use). */
static inline __attribute__((always_inline)) uint32_t enter_fast(struct panic_thread_slot *s,
                                                                 uint64_t *site_counter,
                                                                 struct panic_hist *hist,
                                                                 struct panic_kthreads *k) {
    uint32_t d;
    if (UNLIKELY(s == NULL || (d = __atomic_load_n(&s->depth, RELAXED)) >= PANIC_MAX_DEPTH))
        return enter_slow(site_counter, hist);
    count_site(site_counter);
    return open_frame(s, d, site_counter, hist, fast_ticks(), k);
}

/* Kernel mode's fast path for the calling thread's slot s (hot in kernel mode,
 * so not COLD). */
static __attribute__((noinline)) uint32_t enter_kernel(struct panic_thread_slot *s, uint64_t *site_counter,
                                                       struct panic_hist *hist) {
    struct panic_kthreads *k = __atomic_load_n(&kthreads, RELAXED);
    if (UNLIKELY(k == NULL))
        return enter_slow(site_counter, hist);
    return enter_fast(s, site_counter, hist, k);
}

uint64_t panic_n_sites(void) { return N_SITES; }

uint32_t panic_current_site(void) {
    struct panic_thread_slot *s = tls_slot;
    return s ? __atomic_load_n(&s->cur_site, RELAXED) : PANIC_NO_SITE;
}

uint32_t __panic_dwell_enter(uint64_t *site_counter, struct panic_hist *hist) {
    struct panic_thread_slot *s = tls_slot;
    int mode = __atomic_load_n(&hot_mode, RELAXED);
    uint32_t d;
    /* Written as one test, the way the fast path was tuned (the compiler keeps
     * it free of register moves). */
    if (UNLIKELY(mode != HOT_TSC || s == NULL || (d = __atomic_load_n(&s->depth, RELAXED)) >= PANIC_MAX_DEPTH))
        return mode == HOT_TSC_KERNEL ? enter_kernel(s, site_counter, hist) : enter_slow(site_counter, hist);
    count_site(site_counter);
    return open_frame(s, d, site_counter, hist, fast_ticks(), NULL);
}

/* Records a closed region's duration v into hist hi, and in kernel mode its
 * self time. */
static inline __attribute__((always_inline)) void record_closed(uint32_t hi, uint64_t v, uint64_t self,
                                                               int kernel) {
    /* The bound check keeps a bad hist pointer from writing anywhere. */
    if (LIKELY(hi < N_HISTS)) {
        struct panic_hist *h = &__start_panic_hists[hi];
        if (kernel)
            __atomic_fetch_add(&h->self_total, self, RELAXED);
        hist_record(h, v);
    }
}

/* The end of close_frame (closing depth `token`) while the thread is inside
 * budgeted regions (n_budgets = n > 0): pops those the close ends, records. */
static __attribute__((noinline)) void close_budgeted(struct panic_kthread *ks, uint32_t n, uint32_t token,
                                                     uint32_t hi, uint64_t v, uint64_t self) {
    /* n is in shared memory: never index past the stack. */
    if (n <= PANIC_KBUDGETS && __atomic_load_n(&ks->budget[n - 1].depth, RELAXED) >= token)
        kbudget_pop(ks, n, token);
    record_closed(hi, v, self, 1);
}

/* Closes the region at depth `token` (which is < depth): publishes the site
 * below it, drops everything from `token` up, and records the duration. In
 * kernel mode also the region's self time: its duration minus its closed
 * children's (frames above `token` that are still open were abandoned; their
 * time stays in this region's self time), and adds the duration to the
 * parent's children. */
static inline __attribute__((always_inline)) void close_frame(struct panic_thread_slot *s, uint32_t token,
                                                              uint64_t t, struct panic_kthreads *k) {
    if (UNLIKELY(token >= PANIC_MAX_DEPTH)) {
        /* Nothing above MAX_DEPTH was timed, and cur_site already names the
         * deepest timed frame, which is still open. */
        __atomic_store_n(&s->depth, token, RELAXED);
        return;
    }
    struct panic_frame *f = &s->stack[token];
    uint32_t hi = __atomic_load_n(&f->hist, RELAXED);
    uint64_t v = t - __atomic_load_n(&f->t, RELAXED);
    __atomic_store_n(&s->last_exit, __atomic_load_n(&f->site, RELAXED), RELAXED);
    uint32_t cur = LIKELY(token != 0) ? __atomic_load_n(&s->stack[token - 1].site, RELAXED) : PANIC_NO_SITE;
    __atomic_store_n(&s->cur_site, cur, RELAXED);
    __atomic_store_n(&s->depth, token, RELAXED);
    uint64_t self = 0;
    if (k) {
        struct panic_kthread *ks = kslot(k, s);
        __atomic_store_n(&ks->site, cur, RELAXED);
        uint64_t child = __atomic_load_n(&f->child, RELAXED);
        /* Clock steps aside, children fit in their parent; never wrap below 0. */
        self = LIKELY(v >= child) ? v - child : 0;
        if (LIKELY(token != 0)) {
            /* Only this thread writes its frames: no atomic add needed. */
            uint64_t *pc = &s->stack[token - 1].child;
            __atomic_store_n(pc, __atomic_load_n(pc, RELAXED) + v, RELAXED);
        }
        /* Budgeted regions closed here, abandoned ones included (whatever
         * kbudgets is now: the stack holds what was pushed). The rest is a
         * tail call, so the fast path needs no stack frame for it. */
        uint32_t n = __atomic_load_n(&ks->n_budgets, RELAXED);
        if (UNLIKELY(n != 0)) {
            close_budgeted(ks, n, token, hi, v, self);
            return;
        }
    }
    record_closed(hi, v, self, k != NULL);
}

/* The general exit: any clock, stale tokens, and outer tokens whose inner
 * regions were abandoned by unwinding or longjmp. */
static COLD void exit_slow(uint32_t token, int have_t, uint64_t t) {
    if (!have_t)
        t = now();
    struct panic_thread_slot *s = tls_slot;
    if (s == NULL)
        return;
    uint32_t d = __atomic_load_n(&s->depth, RELAXED);
    if (token >= d)
        return;
    if (token + 1 != d)
        __atomic_fetch_add(&HDR->abandoned, (uint64_t)(d - token - 1), RELAXED);
    close_frame(s, token, t, __atomic_load_n(&kthreads, RELAXED));
}

/* The TSC fast path of exit, with thread table k (a constant at each use). */
static inline __attribute__((always_inline)) void exit_fast(uint32_t token, struct panic_kthreads *k) {
    uint64_t t = fast_ticks();
    struct panic_thread_slot *s = tls_slot;
    if (UNLIKELY(s == NULL || (uint64_t)token + 1 != __atomic_load_n(&s->depth, RELAXED) ||
                 token >= PANIC_MAX_DEPTH)) {
        exit_slow(token, 1, t);
        return;
    }
    close_frame(s, token, t, k);
}

/* Kernel mode's fast path (hot in kernel mode, so not COLD). */
static __attribute__((noinline)) void exit_kernel(uint32_t token) {
    struct panic_kthreads *k = __atomic_load_n(&kthreads, RELAXED);
    if (UNLIKELY(k == NULL)) {
        exit_slow(token, 0, 0);
        return;
    }
    exit_fast(token, k);
}

void __panic_dwell_exit(uint32_t token) {
    int mode = __atomic_load_n(&hot_mode, RELAXED);
    if (LIKELY(mode == HOT_TSC)) {
        exit_fast(token, NULL);
        return;
    }
    if (mode == HOT_TSC_KERNEL) {
        exit_kernel(token);
        return;
    }
    exit_slow(token, 0, 0);
}

/* ------------------------------------------------------------------------- */
/* Dump                                                                      */
/* ------------------------------------------------------------------------- */

/* Writes the segment to "<dump_path>.tmp.<pid>" and renames it to dump_path. */
static void write_dump(void) {
    char tmp[PATH_MAX + 32];
    size_t len = 0;
    append(tmp, &len, sizeof tmp, dump_path);
    append(tmp, &len, sizeof tmp, ".tmp.");
    append_u64(tmp, &len, sizeof tmp, (uint64_t)getpid());
    tmp[len] = 0;

    const struct panic_header *h = HDR;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        say("cannot write dump", tmp, errno, "");
        return;
    }
    /* A dump holds no blocks: its counters are the sums (panic_abi.h). */
    struct panic_header hdr = *h;
    hdr.n_blocks = 0;
    hdr.total_size = hdr.off_blocks;
    int err = 0;
    if (ftruncate(fd, (off_t)hdr.total_size) != 0)
        err = errno;
    if (!err)
        err = pwrite_all(fd, &seg, sizeof seg, 0);
    if (!err)
        err = pwrite_all(fd, &hdr, sizeof hdr, 0);
    uint64_t sums[512];
    for (uint64_t from = 0; from < h->n_sites && !err; from += 512) {
        uint64_t n = h->n_sites - from < 512 ? h->n_sites - from : 512;
        sum_counters(from, n, sums);
        err = pwrite_all(fd, sums, n * 8, h->off_counters + from * 8);
    }
    if (!err)
        err = pwrite_all(fd, __start_panic_hists, h->n_hists * PANIC_HIST_SIZE, h->off_hists);
    if (close(fd) != 0 && !err && errno != EINTR)
        err = errno;
    if (!err && rename(tmp, dump_path) != 0)
        err = errno;
    if (err) {
        unlink(tmp);
        say("cannot write dump", dump_path, err, "");
    }
}

/* Writes the dump unless no dump was asked for; one writer at a time. A thread
 * that re-enters (a signal during its own dump) leaves the dump to the outer
 * call; a second thread waits for the first, boundedly. */
static void dump_once(uint32_t tid) {
    if (!dump_path[0])
        return;
    for (int step = 0;; step++) {
        uint32_t owner = 0;
        if (__atomic_compare_exchange_n(&dump_owner, &owner, tid, 0, __ATOMIC_ACQUIRE, RELAXED))
            break;
        if (owner == tid || step >= WAIT_STEPS_MS)
            return;
        sleep_1ms();
    }
    write_dump();
    __atomic_store_n(&dump_owner, 0, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------------------- */
/* Exit and fatal signals                                                    */
/* ------------------------------------------------------------------------- */

static void on_exit_cb(int status, void *arg) {
    (void)arg;
    struct panic_header *h = HDR;
    uint64_t t, ns;
    clock_pair(&t, &ns);
    /* A fatal signal that is being recorded keeps its state. */
    if (__atomic_load_n(&fatal_tid, __ATOMIC_ACQUIRE) == 0) {
        __atomic_store_n(&h->exit_code, status, RELAXED);
        __atomic_store_n(&h->tsc_end, t, RELAXED);
        __atomic_store_n(&h->ns_end, ns, RELAXED);
        __atomic_store_n(&h->state, PANIC_STATE_EXITED, __ATOMIC_RELEASE);
    }
    dump_once(current_tid());
}

static int fatal_index(int sig) {
    for (int i = 0; i < N_FATAL; i++)
        if (fatal_signals[i] == sig)
            return i;
    return -1;
}

/* The stack pointer of the interrupted code, for telling a stack overflow
 * (a fault just below it, in the guard region) from other faults. */
static uint64_t fault_sp(void *uc) {
#if defined(__x86_64__)
    return uc ? (uint64_t)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RSP] : 0;
#elif defined(__aarch64__)
    return uc ? (uint64_t)((ucontext_t *)uc)->uc_mcontext.sp : 0;
#else
    (void)uc;
    return 0;
#endif
}

static void on_fatal(int sig, siginfo_t *si, void *uc) {
    int saved_errno = errno;
    uint32_t tid = current_tid();
    uint32_t first = 0;
    if (__atomic_compare_exchange_n(&fatal_tid, &first, tid, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        struct panic_header *h = HDR;
        uint64_t t, ns;
        clock_pair(&t, &ns);
        __atomic_store_n(&h->signal, sig, RELAXED);
        __atomic_store_n(&h->fault_addr, (uint64_t)(uintptr_t)si->si_addr, RELAXED);
        __atomic_store_n(&h->signal_tid, tid, RELAXED);
        __atomic_store_n(&h->fault_sp, fault_sp(uc), RELAXED);
        __atomic_store_n(&h->tsc_end, t, RELAXED);
        __atomic_store_n(&h->ns_end, ns, RELAXED);
        __atomic_store_n(&h->state, PANIC_STATE_SIGNALED, __ATOMIC_RELEASE);
        dump_once(tid);
        __atomic_store_n(&fatal_done, 1, __ATOMIC_RELEASE);
    } else if (first != tid) {
        /* Another thread is recording its signal: let it finish the dump
         * before this one takes the process down. */
        for (int step = 0; step < WAIT_STEPS_MS && !__atomic_load_n(&fatal_done, __ATOMIC_ACQUIRE); step++)
            sleep_1ms();
    }

    /* Back to the program's own disposition of the signal (the one it had
     * before us, or installed since: see sigaction below; normally SIG_DFL). */
    int i = fatal_index(sig);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    if (i >= 0)
        __atomic_store_n(&handler_installed[i], 0, RELAXED);
    __sigaction(sig, i >= 0 ? &previous_action[i] : &dfl, NULL);
    /* Sent by kill/raise/abort: send it again (it stays pending until we return).
     * Raised by the faulting instruction: returning re-executes it. */
    if (si->si_code <= 0)
        raise(sig);
    errno = saved_errno;
}

static void install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fatal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < N_FATAL; i++)
        sigaddset(&sa.sa_mask, fatal_signals[i]);
    for (int i = 0; i < N_FATAL; i++) {
        struct sigaction old;
        if (__sigaction(fatal_signals[i], NULL, &old) != 0)
            continue;
        /* A signal the parent set to ignore stays ignored. */
        if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_IGN)
            continue;
        previous_action[i] = old;
        if (__sigaction(fatal_signals[i], &sa, NULL) == 0)
            __atomic_store_n(&handler_installed[i], 1, RELAXED);
    }
}

/* The program's view of the fatal signals stays its own. While the
 * runtime's handler is installed for one, the program's sigaction calls on
 * it read and set the disposition the handler hands over to, instead of
 * replacing the handler: Rust's standard library installs its stack
 * overflow handler only over SIG_DFL, so without this an instrumented Rust
 * program would lose its "has overflowed its stack" message, and a C
 * program's own SIGSEGV handler would end the runtime's record of the
 * fault. Hidden and weak like the fault wrappers: it binds only this
 * module's callers, and a sanitizer's interceptor (strong) wins over it. */
__attribute__((visibility("hidden"), weak)) int sigaction(int sig, const struct sigaction *act,
                                                          struct sigaction *old) {
    int i = fatal_index(sig);
    if (i < 0 || !__atomic_load_n(&handler_installed[i], RELAXED))
        return __sigaction(sig, act, old);
    struct sigaction cur = previous_action[i];
    if (act)
        previous_action[i] = *act;
    if (old)
        *old = cur;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Shared mode                                                               */
/* ------------------------------------------------------------------------- */

struct region {
    void *addr;
    uint64_t len;
    uint64_t off;
};

/* The three page-aligned regions the segment file mirrors. */
static int segment_regions(struct region r[3]) {
    const struct panic_header *h = HDR;
    r[0] = (struct region){&seg, sizeof seg, 0};
    r[1] = (struct region){__start_panic_counters, PAD(h->n_sites * 8), h->off_counters};
    r[2] = (struct region){__start_panic_hists, PAD(h->n_hists * PANIC_HIST_SIZE), h->off_hists};
    return 3;
}

/* Whether the data sections are laid out as panic_abi.h says: page aligned, with
 * this runtime's trailers last. Otherwise (the runtime was linked before some
 * instrumented object) mapping the segment over them would cover other data. */
static uintptr_t addr_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    /* Hide where the address came from: the compiler may otherwise fold the
     * comparison of two distinct objects' addresses to false. */
    __asm__("" : "+r"(a));
    return a;
}

static int layout_ok(void) {
    return addr_of(__start_panic_counters) % PANIC_PAGE == 0 &&
           addr_of(ctr_trailer) + PANIC_PAGE == addr_of(__stop_panic_counters) &&
           addr_of(__start_panic_hists) % PANIC_PAGE == 0 &&
           addr_of(hist_trailer) + PANIC_PAGE == addr_of(__stop_panic_hists);
}

static void shm_setup(const char *path) {
    const struct panic_header *h = HDR;
    if (!layout_ok()) {
        say("cannot map shared segment", path, EINVAL,
            ": the cargo-panic runtime was linked before an instrumented object; "
            "put the runtime last on the link line");
        return;
    }
    struct region r[3];
    int n = segment_regions(r);
    int err = 0;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        say("cannot map shared segment", path, errno, "; profiling into private memory");
        return;
    }
    if (ftruncate(fd, (off_t)h->total_size) != 0)
        err = errno;
    /* Copy what is counted so far (instrumented code may have run already). */
    for (int i = 0; i < n && !err; i++)
        err = pwrite_all(fd, r[i].addr, r[i].len, r[i].off);
    /* Map the file once where the kernel likes, so a file that cannot be mapped
     * fails here, before any region is touched. */
    if (!err) {
        void *probe = mmap(NULL, h->total_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (probe == MAP_FAILED)
            err = errno;
        else
            munmap(probe, h->total_size);
    }
    for (int i = 0; i < n && !err; i++) {
        if (r[i].len == 0)
            continue;
        if (mmap(r[i].addr, r[i].len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, (off_t)r[i].off) ==
            MAP_FAILED) {
            err = errno;
            /* Put private copies of the file's contents back wherever a mapping
             * may have gone, shared ones included. */
            for (int j = 0; j < n; j++)
                if (r[j].len)
                    mmap(r[j].addr, r[j].len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd,
                         (off_t)r[j].off);
        }
    }
    if (err) {
        close(fd);
        unlink(path);
        say("cannot map shared segment", path, err, "; profiling into private memory");
        return;
    }
    shm_fd = fd;
}

/* ------------------------------------------------------------------------- */
/* Kernel thread table                                                       */
/* ------------------------------------------------------------------------- */

/* Whether a loader-made map's header (magic, KABI version) is the one this
 * runtime reads; if not, says why in one line ending with `consequence`. */
static int kmap_header_ok(const char *what, const char *path, uint64_t magic, uint64_t want_magic,
                          uint32_t version, const char *consequence) {
    if (magic == want_magic && version == PANIC_KABI_VERSION)
        return 1;
    char tail[160];
    size_t n = 0;
    int err;
    if (magic != want_magic) {
        err = EBADMSG;
        append(tail, &n, sizeof tail, " (wrong magic: the loader did not set it up)");
    } else {
        err = EPROTONOSUPPORT;
        append(tail, &n, sizeof tail, " (version ");
        append_u64(tail, &n, sizeof tail, version);
        append(tail, &n, sizeof tail, ", this runtime reads version ");
        append_u64(tail, &n, sizeof tail, PANIC_KABI_VERSION);
        append(tail, &n, sizeof tail, ")");
    }
    append(tail, &n, sizeof tail, consequence);
    tail[n] = 0;
    say(what, path, err, tail);
    return 0;
}

#define NO_KERNEL_TIMES "; running without per-site kernel times"
#define NO_BUDGETS "; running without budgets"
#define NO_PRICES "; every price reads 0"
#define NO_FUSES "; no fuse trips"

/* "<what><name><tail>" into msg[cap] (say's first argument). */
static const char *kmap_msg(char *msg, size_t cap, const char *what, const char *name, const char *tail) {
    size_t n = 0;
    append(msg, &n, cap, what);
    append(msg, &n, cap, name);
    append(msg, &n, cap, tail);
    msg[n] = 0;
    return msg;
}

/* Opens the map pinned as `name` next to the thread table at `threads_path`
 * (path: its path, PATH_MAX bytes) and checks that it is a mmapable array of
 * `value_size`-byte elements. Returns its fd and sets *entries, or returns -1:
 * silently when there is no such pin, after one line (ending in `tail`)
 * otherwise. */
static int kmap_open(const char *threads_path, const char *name, uint32_t value_size, const char *tail,
                     char *path, uint32_t *entries) {
    char msg[64];
    const char *slash = strrchr(threads_path, '/');
    size_t dir = slash ? (size_t)(slash - threads_path) + 1 : 0;
    size_t name_len = strlen(name);
    if (dir + name_len + 1 > PATH_MAX) {
        say(kmap_msg(msg, sizeof msg, "cannot open ", name, " next to"), threads_path, ENAMETOOLONG, tail);
        return -1;
    }
    memcpy(path, threads_path, dir);
    memcpy(path + dir, name, name_len + 1);

    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.pathname = (uint64_t)(uintptr_t)path;
    /* Not BPF_F_RDONLY: the kernel maps a BPF array only MAP_SHARED, which a
     * read-only file cannot be. The mappings themselves are read-only. */
    int fd = (int)syscall(SYS_bpf, BPF_OBJ_GET, &attr, sizeof attr);
    if (fd < 0) {
        if (errno != ENOENT)
            say(kmap_msg(msg, sizeof msg, "cannot open ", name, ""), path, errno, tail);
        return -1;
    }
    struct bpf_map_info info;
    memset(&info, 0, sizeof info);
    memset(&attr, 0, sizeof attr);
    attr.info.bpf_fd = (uint32_t)fd;
    attr.info.info_len = sizeof info;
    attr.info.info = (uint64_t)(uintptr_t)&info;
    if (syscall(SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &attr, sizeof attr) != 0) {
        say(kmap_msg(msg, sizeof msg, "cannot inspect ", name, ""), path, errno, tail);
        close(fd);
        return -1;
    }
    /* A map of another shape would be misread: say what it is. */
    if (info.type != BPF_MAP_TYPE_ARRAY || !(info.map_flags & BPF_F_MMAPABLE) || info.value_size != value_size ||
        info.max_entries == 0) {
        close(fd);
        char why[160];
        size_t n = 0;
        if (info.type != BPF_MAP_TYPE_ARRAY) {
            append(why, &n, sizeof why, " (not an array map)");
        } else if (!(info.map_flags & BPF_F_MMAPABLE)) {
            append(why, &n, sizeof why, " (not mmapable)");
        } else if (info.value_size != value_size) {
            append(why, &n, sizeof why, " (elements of ");
            append_u64(why, &n, sizeof why, info.value_size);
            append(why, &n, sizeof why, " bytes, this runtime reads ");
            append_u64(why, &n, sizeof why, value_size);
            append(why, &n, sizeof why, ")");
        } else {
            append(why, &n, sizeof why, " (no elements)");
        }
        append(why, &n, sizeof why, tail);
        why[n] = 0;
        say(kmap_msg(msg, sizeof msg, "cannot use ", name, ""), path, EINVAL, why);
        return -1;
    }
    *entries = info.max_entries;
    return fd;
}

/* Maps the per-site budgets pinned as "budgets" next to the thread table at
 * `threads_path` and pins the histogram of every budgeted site, so that it is
 * never demoted. The map has one element per site of the manifest plus one
 * (panic_kabi.h), which this runtime cannot count: it reserves N_SITES + 1
 * elements of zeroes (read-only) and maps the map's first elements over them,
 * so any site past the map reads as unbudgeted and the hot path needs no bound.
 * No such pin: no budgets in this run, silently. Any other failure says one
 * line and leaves kbudgets NULL. */
static void kbudgets_setup(const char *threads_path) {
    char path[PATH_MAX];
    uint32_t entries;
    int fd = kmap_open(threads_path, "budgets", sizeof(struct panic_site_budget), NO_BUDGETS, path, &entries);
    if (fd < 0)
        return;
    uint64_t elems = entries < N_SITES + 1 ? entries : N_SITES + 1;
    void *area = mmap(NULL, KBUDGETS_BYTES, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int err = area == MAP_FAILED ? errno : 0;
    if (!err &&
        mmap(area, PAD(elems * sizeof(struct panic_site_budget)), PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0) ==
            MAP_FAILED) {
        err = errno;
        munmap(area, KBUDGETS_BYTES);
    }
    close(fd); /* the mapping keeps the map alive */
    if (err) {
        say("cannot map budgets", path, err, NO_BUDGETS);
        return;
    }
    const struct panic_site_budget *b = area;
    uint64_t n_hists = N_HISTS;
    for (uint64_t i = 0; i < elems; i++) {
        uint32_t hist = __atomic_load_n(&b[i].hist, RELAXED);
        if (__atomic_load_n(&b[i].budget_ns, RELAXED) != 0 && hist < n_hists)
            __atomic_fetch_or(&__start_panic_hists[hist].flags, PANIC_HIST_FLAG_PINNED, RELAXED);
    }
    __atomic_store_n(&kbudgets, b, __ATOMIC_RELEASE);
}

/* Maps the price map pinned as "prices" next to the thread table at
 * `threads_path` (read-only) for panic_price. No such pin: no prices in this
 * run, silently. Any other failure, or a map the loader did not set up for
 * this ABI (magic, version), says one line and leaves kprices NULL: every
 * price reads 0. */
static void kprices_setup(const char *threads_path) {
    char path[PATH_MAX];
    uint32_t entries;
    int fd = kmap_open(threads_path, "prices", sizeof(struct panic_prices), NO_PRICES, path, &entries);
    if (fd < 0)
        return;
    void *map = mmap(NULL, KPRICES_BYTES, PROT_READ, MAP_SHARED, fd, 0);
    int err = map == MAP_FAILED ? errno : 0;
    close(fd); /* the mapping keeps the map alive */
    if (err) {
        say("cannot map prices", path, err, NO_PRICES);
        return;
    }
    const struct panic_prices *p = map;
    uint64_t magic = __atomic_load_n(&p->magic, __ATOMIC_ACQUIRE);
    uint32_t version = __atomic_load_n(&p->version, RELAXED);
    if (!kmap_header_ok("cannot use prices", path, magic, PANIC_PRICES_MAGIC, version, NO_PRICES)) {
        munmap(map, KPRICES_BYTES);
        return;
    }
    /* Fixed by the loader before the program started; past the array, never. */
    uint32_t n_res = __atomic_load_n(&p->n_resources, RELAXED);
    __atomic_store_n(&kprices_n, n_res < KPRICE_SLOTS ? n_res : (uint32_t)KPRICE_SLOTS, RELAXED);
    __atomic_store_n(&kprices, p, __ATOMIC_RELEASE);
}

/* Tries panic_price makes while the controller is writing (seq odd or moved)
 * before it settles for the last value it read. An update is a few stores, so
 * a reader that keeps meeting one has met a writer preempted mid-update: it
 * must not wait for it. */
#define PRICE_TRIES 64

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* The price of `resource` (panic.h, PANIC_SYM_PRICE). The map is a seqlock:
 * the controller makes seq odd, writes, makes seq even (release). A read
 * between two equal even seq values is a whole update's. Plain loads only:
 * async-signal-safe, no call, never blocks. */
double panic_price(unsigned resource) {
    const struct panic_prices *p = __atomic_load_n(&kprices, __ATOMIC_ACQUIRE);
    if (p == NULL || resource >= __atomic_load_n(&kprices_n, RELAXED))
        return 0.0;
    const __u64 *slot = &p->price[resource];
    uint64_t v = 0;
    for (int i = 0; i < PRICE_TRIES; i++) {
        uint64_t s0 = __atomic_load_n(&p->seq, __ATOMIC_ACQUIRE);
        v = __atomic_load_n(slot, RELAXED);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        uint64_t s1 = __atomic_load_n(&p->seq, RELAXED);
        if (LIKELY(s0 == s1 && !(s0 & 1)))
            return s0 == 0 ? 0.0 : (double)v / (double)PANIC_PRICE_ONE; /* seq 0: no update yet */
        cpu_relax();
    }
    return (double)v / (double)PANIC_PRICE_ONE;
}

/* The price map's seq (panic.h, PANIC_SYM_PRICE_SEQ): it moves with every
 * update; 0 without a price map. */
unsigned long long panic_price_seq(void) {
    const struct panic_prices *p = __atomic_load_n(&kprices, __ATOMIC_ACQUIRE);
    return p ? __atomic_load_n(&p->seq, __ATOMIC_ACQUIRE) : 0;
}

/* The fuse name `name` (NUL-terminated or PANIC_FUSE_NAME bytes long) is
 * `entry` (a kfuse_name: the same) over at most PANIC_FUSE_NAME bytes. Reads
 * no byte of `name` past its NUL. */
static inline int fuse_name_is(const char *name, const char *entry) {
    for (size_t i = 0; i < PANIC_FUSE_NAME; i++) {
        char c = name[i];
        if (c != entry[i])
            return 0;
        if (c == 0)
            return 1;
    }
    return 1;
}

/* FNV-1a of a fuse name: its bytes up to the NUL, at most PANIC_FUSE_NAME. */
static inline uint32_t fuse_hash(const char *name) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < PANIC_FUSE_NAME && name[i] != 0; i++)
        h = (h ^ (uint8_t)name[i]) * 16777619u;
    return h;
}

/* Maps the fuse map pinned as "fuses" next to the thread table at
 * `threads_path` (read-write: panic_fuse counts there) and indexes its names.
 * No such pin: no fuses in this run, silently. Any other failure, or a map
 * the loader did not set up for this ABI (magic, version), says one line and
 * leaves kfuses NULL: no fuse trips. The first n entries (n capped at
 * PANIC_FUSES) are the run's fuses, their names fixed from now on; an entry
 * with an empty name, or with the name of an earlier entry, is never
 * answered. */
static void kfuses_setup(const char *threads_path) {
    char path[PATH_MAX];
    uint32_t entries;
    int fd = kmap_open(threads_path, "fuses", sizeof(struct panic_fuses), NO_FUSES, path, &entries);
    if (fd < 0)
        return;
    void *map = mmap(NULL, KFUSES_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int err = map == MAP_FAILED ? errno : 0;
    close(fd); /* the mapping keeps the map alive */
    if (err) {
        say("cannot map fuses", path, err, NO_FUSES);
        return;
    }
    struct panic_fuses *f = map;
    uint64_t magic = __atomic_load_n(&f->magic, __ATOMIC_ACQUIRE);
    uint32_t version = __atomic_load_n(&f->version, RELAXED);
    if (!kmap_header_ok("cannot use fuses", path, magic, PANIC_FUSES_MAGIC, version, NO_FUSES)) {
        munmap(map, KFUSES_BYTES);
        return;
    }
    uint32_t n = __atomic_load_n(&f->n, RELAXED);
    if (n > PANIC_FUSES)
        n = PANIC_FUSES;
    for (uint32_t i = 0; i < n; i++) {
        char *name = kfuse_name[i];
        for (size_t b = 0; b < PANIC_FUSE_NAME; b++)
            name[b] = __atomic_load_n(&f->fuse[i].name[b], RELAXED);
        if (name[0] == 0)
            continue;
        uint32_t k = fuse_hash(name) & (KFUSE_HASH - 1);
        for (;; k = (k + 1) & (KFUSE_HASH - 1)) {
            uint8_t e = kfuse_bucket[k];
            if (e == 0) {
                kfuse_bucket[k] = (uint8_t)(i + 1);
                break;
            }
            if (fuse_name_is(name, kfuse_name[e - 1]))
                break; /* a duplicate: the first entry answers */
        }
    }
    __atomic_store_n(&kfuses, f, __ATOMIC_RELEASE);
}

/* The entry of the fuse named `name` (entry index + 1), 0 when none is. */
static uint32_t fuse_find(const char *name) {
    uint32_t k = fuse_hash(name) & (KFUSE_HASH - 1);
    for (;; k = (k + 1) & (KFUSE_HASH - 1)) {
        uint32_t e = kfuse_bucket[k];
        if (e == 0 || fuse_name_is(name, kfuse_name[e - 1]))
            return e;
    }
}

/* Whether to shed the work `name` names now (panic.h, PANIC_SYM_FUSE): the
 * fuse's `tripped`, counted in its asks (and sheds); a NULL or unknown name
 * is counted in `unknown` and answered 0. A thread asking for the fuse it
 * asked for last finds it with one name comparison, any other name through
 * the hash index. Plain loads and atomic adds on memory mapped at start-up:
 * async-signal-safe, no allocation, never blocks. */
int panic_fuse(const char *name) {
    struct panic_fuses *f = __atomic_load_n(&kfuses, __ATOMIC_ACQUIRE);
    if (f == NULL)
        return 0;
    if (UNLIKELY(name == NULL)) {
        __atomic_fetch_add(&f->unknown, 1, RELAXED);
        return 0;
    }
    uint32_t e = tls_fuse;
    if (UNLIKELY(e == 0 || !fuse_name_is(name, kfuse_name[e - 1]))) {
        e = fuse_find(name);
        if (UNLIKELY(e == 0)) {
            __atomic_fetch_add(&f->unknown, 1, RELAXED);
            return 0;
        }
        tls_fuse = (uint8_t)e;
    }
    struct panic_fuse *fuse = &f->fuse[e - 1];
    int shed = __atomic_load_n(&fuse->tripped, RELAXED) == 1;
    __atomic_fetch_add(&fuse->asks, 1, RELAXED);
    if (shed)
        __atomic_fetch_add(&fuse->sheds, 1, RELAXED);
    return shed;
}

/* Maps the pinned thread table at `path` (PANIC_ENV_KTHREADS) and, if the
 * loader set it up for this ABI, enters kernel mode. Any failure says one line
 * and leaves the run as it would be without the table. */
static void kthreads_setup(const char *path) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.pathname = (uint64_t)(uintptr_t)path;
    int fd = (int)syscall(SYS_bpf, BPF_OBJ_GET, &attr, sizeof attr);
    if (fd < 0) {
        say("cannot open kernel thread table", path, errno, NO_KERNEL_TIMES);
        return;
    }
    void *map = mmap(NULL, KTHREADS_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int err = map == MAP_FAILED ? errno : 0;
    close(fd); /* the mapping keeps the map alive */
    if (err) {
        say("cannot map kernel thread table", path, err, NO_KERNEL_TIMES);
        return;
    }
    struct panic_kthreads *k = map;
    uint64_t magic = __atomic_load_n(&k->magic, __ATOMIC_ACQUIRE);
    uint32_t version = k->version;
    if (!kmap_header_ok("cannot use kernel thread table", path, magic, PANIC_KTHREADS_MAGIC, version,
                        NO_KERNEL_TIMES)) {
        munmap(map, KTHREADS_BYTES);
        return;
    }
    kbudgets_setup(path);
    kprices_setup(path);
    kfuses_setup(path);
    /* The owner before any slot: the kernel side reads slots only for it. */
    __atomic_store_n(&k->owner, (int32_t)getpid(), __ATOMIC_RELEASE);
    __atomic_store_n(&kthreads, k, __ATOMIC_SEQ_CST);
    /* Threads that claimed a slot before now (instrumented code that ran before
     * this constructor) publish nothing themselves: publish them here. */
    for (uint32_t i = 0; i < PANIC_MAX_THREADS; i++) {
        uint32_t tid = __atomic_load_n(&seg.slots[i].tid, __ATOMIC_SEQ_CST);
        if (tid != 0)
            kthread_claim(k, &seg.slots[i], tid);
    }
    HDR->kthreads = 1;
    set_hot_mode();
}

/* In a forked child: the table belongs to the parent (the mapping is shared),
 * and the kernel side reads it only for the parent's tasks. Leave kernel mode
 * before anything writes it. The prices stay: they are per run, and the child
 * only reads them (its mapping is the parent's, shared and read-only), so a
 * forked worker sees the same prices as its parent. So do the fuses: the
 * child answers from the same `tripped` flags and counts its asks into the
 * run's map (shared; atomic adds), as a worker of the run. */
static void kthreads_detach(void) {
    struct panic_kthreads *k = kthreads;
    const struct panic_site_budget *b = kbudgets;
    if (k == NULL)
        return;
    __atomic_store_n(&kthreads, NULL, RELAXED);
    __atomic_store_n(&kbudgets, NULL, RELAXED);
    set_hot_mode();
    munmap(k, KTHREADS_BYTES);
    if (b)
        munmap((void *)b, KBUDGETS_BYTES);
}

/* Replaces a shared mapping with a private copy of its current contents. */
static void privatize(void *addr, uint64_t len) {
    void *tmp = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (tmp == MAP_FAILED)
        return;
    memcpy(tmp, addr, len);
    if (mremap(tmp, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, addr) == MAP_FAILED)
        munmap(tmp, len);
}

/* In a forked child: stop writing into the parent's segment, dump and kernel
 * thread table (the table first: it is shared memory that nothing here may
 * touch). The child keeps counting into private memory, without kernel mode
 * (it keeps the prices and fuses: kthreads_detach); only the forking thread
 * survives, so every other slot is freed. */
static void atfork_child(void) {
    kthreads_detach();
    dump_path[0] = 0;
    /* A thread that was growing the blocks when the parent forked does not
     * exist here: its lock would never be released. */
    pthread_mutex_init(&grow_lock, NULL);
    int shm_detached = shm_fd >= 0;
    if (shm_fd >= 0) {
        struct region r[3];
        int n = segment_regions(r);
        for (int i = 0; i < n; i++)
            if (r[i].len)
                privatize(r[i].addr, r[i].len);
        close(shm_fd);
        shm_fd = -1;
    }
    /* Only this thread survives: its block stays, the others are folded into
     * the (now private) shared counters and freed. */
    uint32_t nb = __atomic_load_n(&blocks_ready, __ATOMIC_ACQUIRE);
    for (uint32_t c = 0; c * PANIC_BLOCKS_PER_CHUNK < nb; c++)
        if (shm_detached)
            privatize(chunk_addr[c], (uint64_t)PANIC_BLOCKS_PER_CHUNK * HDR->block_size);
    for (uint32_t i = 0; i < nb; i++) {
        if (i + 1 == tls_block) {
            __atomic_store_n(&block_owner[i], current_tid(), RELAXED);
        } else if (__atomic_load_n(&block_owner[i], RELAXED) != 0) {
            fold_block(i);
            __atomic_store_n(&block_owner[i], 0, RELAXED);
        }
    }
    HDR->pid = (int32_t)getpid();
    HDR->kthreads = 0;
    for (uint32_t i = 0; i < PANIC_MAX_THREADS; i++)
        if (&seg.slots[i] != tls_slot)
            __atomic_store_n(&seg.slots[i].tid, 0, RELAXED);
    if (tls_slot)
        __atomic_store_n(&tls_slot->tid, current_tid(), RELAXED);
}

/* ------------------------------------------------------------------------- */
/* Constructor                                                               */
/* ------------------------------------------------------------------------- */

/* From now on threads get counter blocks; the calling thread first. */
static void enable_blocks(void) {
    if (HDR->block_size == 0)
        return;
    __atomic_store_n(&blocks_enabled, 1, __ATOMIC_RELEASE);
    attach_block();
}

/* The ELF header of the module this copy of the runtime is linked into. */
extern const Elf64_Ehdr __ehdr_start __attribute__((visibility("hidden")));

static int in_main_executable(void) {
    return getauxval(AT_PHDR) == (uintptr_t)&__ehdr_start + __ehdr_start.e_phoff;
}

__attribute__((constructor(101))) static void panic_runtime_init(void) {
    struct panic_header *h = HDR;

    const char *clock_env = getenv(PANIC_ENV_CLOCK);
    clock_decide(clock_env && strcmp(clock_env, "ns") == 0);
    const char *adaptive_env = getenv(PANIC_ENV_ADAPTIVE);
    adaptive = !(adaptive_env && strcmp(adaptive_env, "0") == 0);

    uint64_t n_sites = N_SITES;
    uint64_t n_hists = N_HISTS;
    h->abi_version = PANIC_ABI_VERSION;
    h->n_sites = n_sites;
    h->n_hists = n_hists;
    h->off_threads = PANIC_HEADER_SIZE;
    h->off_counters = OFF_COUNTERS;
    h->off_hists = OFF_COUNTERS + PAD(n_sites * 8);
    h->off_blocks = h->off_hists + PAD(n_hists * PANIC_HIST_SIZE);
    h->block_size = PAD(n_sites * 8);
    h->n_blocks = 0;
    h->total_size = h->off_blocks;
    h->clock_kind = clock_state == CLOCK_IS_TSC ? PANIC_CLOCK_TSC : PANIC_CLOCK_NS;
    h->pid = (int32_t)getpid();
    clock_pair(&h->tsc0, &h->ns0);
    h->max_threads = PANIC_MAX_THREADS;
    h->max_depth = PANIC_MAX_DEPTH;
    h->slot_size = PANIC_SLOT_SIZE;
    h->hist_size = PANIC_HIST_SIZE;
    h->hist_buckets = PANIC_HIST_BUCKETS;
    h->hist_sub_bits = PANIC_HIST_SUB_BITS;
    __atomic_store_n(&h->state, PANIC_STATE_RUNNING, RELAXED);
    __atomic_store_n(&h->magic, (uint64_t)PANIC_SEGMENT_MAGIC, __ATOMIC_RELEASE);

    pthread_once(&key_once, make_key);
    /* A copy of the runtime linked into a shared library counts into that
     * library's own sections but leaves the process-wide duties (the segment,
     * the dump, the environment, signals) to the executable's copy. */
    if (!in_main_executable()) {
        enable_blocks();
        return;
    }
    give_altstack(main_altstack, sizeof main_altstack);

    const char *dump = getenv(PANIC_ENV_DUMP);
    if (dump && *dump) {
        size_t len = strlen(dump);
        if (len < sizeof dump_path)
            memcpy(dump_path, dump, len + 1);
        else
            say("cannot write dump", dump, ENAMETOOLONG, "");
    }

    const char *shm = getenv(PANIC_ENV_SHM);
    if (shm && *shm)
        shm_setup(shm);
    const char *kt = getenv(PANIC_ENV_KTHREADS);
    if (kt && *kt)
        kthreads_setup(kt);
    const char *faults = getenv(PANIC_ENV_FAULTS);
    if (faults && *faults)
        panic_faults_setup(faults);
    /* Blocks go where the segment is, so they are decided after it. */
    enable_blocks();

    /* Children that exec must not clobber our segment or dump. */
    unsetenv(PANIC_ENV_SHM);
    unsetenv(PANIC_ENV_DUMP);
    unsetenv(PANIC_ENV_CLOCK);
    unsetenv(PANIC_ENV_ADAPTIVE);
    unsetenv(PANIC_ENV_KTHREADS);
    unsetenv(PANIC_ENV_FAULTS);

    install_signal_handlers();
    on_exit(on_exit_cb, NULL);
    pthread_atfork(NULL, NULL, atfork_child);
}
