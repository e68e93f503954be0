/*
 * panic_abi.h: the ABI shared by the instrumentation pass, the runtime and every
 * reader of the runtime's shared segment. This file is the single definition:
 * the runtime includes it, and `panic-runtime`'s build script reads every
 * `#define PANIC_*` below into Rust constants (see runtime/build.rs). Layout
 * offsets are spelled out as numbers and checked against the C structs with
 * _Static_assert, so the Rust reader never depends on a hand copy of a struct.
 *
 * Change anything here and bump PANIC_ABI_VERSION.
 */
#ifndef PANIC_ABI_H
#define PANIC_ABI_H

#define PANIC_ABI_VERSION 10
/* "PANICSEG" little-endian: the first 8 bytes of a segment or dump file. */
#define PANIC_SEGMENT_MAGIC 0x47455343494e4150

/* ---- site kinds (the manifest's `kind`, the pass's classification) ---- */
#define PANIC_KIND_ENTRY 1
#define PANIC_KIND_EXIT 2
#define PANIC_KIND_LOOP 3
#define PANIC_KIND_ALLOC 4
#define PANIC_KIND_FREE 5
#define PANIC_KIND_BLOCKING 6
#define PANIC_KIND_LOCK 7
#define PANIC_KIND_PANIC 8

/* ---- where instrumented modules keep their data ----
 * Every instrumented module M (key hash H, 16 hex digits) defines, with internal
 * linkage:
 *   __panic_ctr_H   : one u64 counter per site of M, in section PANIC_SECTION_COUNTERS
 *   __panic_hist_H  : one struct panic_hist per timed site of M, in PANIC_SECTION_HISTS
 * and appends one record to the non-allocated section PANIC_SECTION_SITES:
 *   [8-byte aligned] "PANICMOD" | u64 ABI version | u64 &__panic_ctr_H |
 *   u64 &__panic_hist_H (0 when M has no timed site) | u64 len | len bytes of JSON
 *   (M's sites, `panic_passes::ModuleSites`)
 * The addresses are absolute relocations the linker resolves to link-time
 * addresses, so reading the linked file's sections tells where each module's
 * counters landed: the manifest is derived from the linked output itself.
 * The linker concatenates the two data sections (their names are C identifiers,
 * so it defines __start_/__stop_ symbols for them). The runtime, linked after
 * every instrumented object, adds one page-aligned trailer page to each: the
 * sections therefore start and end on page boundaries, and the runtime can map
 * its shared segment over them. Counter slots = (trailer - start) / 8, histogram
 * slots = (trailer - start) / PANIC_HIST_SIZE (rounded down: the padding before
 * the trailer is smaller than one histogram). */
#define PANIC_SECTION_COUNTERS "panic_counters"
#define PANIC_SECTION_HISTS "panic_hists"
#define PANIC_SECTION_SITES ".panic_sites"
#define PANIC_RECORD_MAGIC "PANICMOD"
#define PANIC_RECORD_HEADER 40 /* bytes before the JSON */
#define PANIC_SYM_CTR_PREFIX "__panic_ctr_"
#define PANIC_SYM_HIST_PREFIX "__panic_hist_"
/* _Thread_local int64_t __panic_ctr_delta: added to a counter's address, it
 * gives the calling thread's copy of that counter. Instrumented code counts with
 * an unlocked add at (&counter + delta); see "per-thread counters" below. */
#define PANIC_SYM_CTR_DELTA "__panic_ctr_delta"
/* uint32_t __panic_dwell_enter(uint64_t *site_counter, struct panic_hist *hist):
 * counts the site, opens a region, returns a token (the depth before entering). */
#define PANIC_SYM_DWELL_ENTER "__panic_dwell_enter"
/* void __panic_dwell_exit(uint32_t token): closes every region opened at or above
 * `token` (regions abandoned by unwinding are closed too, and counted). */
#define PANIC_SYM_DWELL_EXIT "__panic_dwell_exit"
/* The price API (user header panic.h; prices: PANIC_ENV_KTHREADS below). The
 * runtime defines these two with default visibility (unlike its other
 * functions), so that a program's own code can call them, and the panic-api
 * crate finds them with dlsym(RTLD_DEFAULT, ...); the link driver exports
 * them from executables (--export-dynamic-symbol).
 *   double panic_price(unsigned resource): price[resource] / PANIC_PRICE_ONE
 *     (panic_kabi.h), read under the map's seqlock with a bounded number of
 *     retries; 0 without a price map, for resource >= n_resources, and before
 *     the controller's first update. Async-signal-safe, never blocks.
 *   unsigned long long panic_price_seq(void): the map's seq (64 bits, even
 *     between updates), 0 without a price map. */
#define PANIC_SYM_PRICE "panic_price"
#define PANIC_SYM_PRICE_SEQ "panic_price_seq"
/* The runtime's pthread_create for executables linked with ASan or TSan, which
 * intercept pthread_create themselves: the cc wrappers link them with
 * --defsym=pthread_create=<it> (hidden; panic_runtime.c says why). */
#define PANIC_SYM_SANITIZED_PTHREAD_CREATE "__panic_sanitized_pthread_create"
/* The fuse API (user header panic.h; fuses: PANIC_ENV_KTHREADS below), defined
 * and exported like the price API:
 *   int panic_fuse(const char *name): 1 when the fuse named `name` (the
 *     "fuses" map of panic_kabi.h, struct panic_fuses) is tripped, i.e. the
 *     program should shed that work now, else 0. Names are compared over at
 *     most PANIC_FUSE_NAME bytes. Every call with a fuse map is counted in it:
 *     a known name in its entry's `asks` (and `sheds` when the answer is 1),
 *     a NULL or unknown name in `unknown` (answer 0). 0, uncounted, without a
 *     fuse map. Async-signal-safe, never allocates, never blocks. */
#define PANIC_SYM_FUSE "panic_fuse"

/* Page size the data sections are aligned and padded to. */
#define PANIC_PAGE 4096

/* int __panic_fault_alloc(uint64_t *site_counter): instrumented code calls it
 * just before the allocation call of an alloc site whose callee takes a size
 * (the manifest's `fault: alloc`: malloc, calloc, realloc, reallocarray,
 * aligned_alloc, memalign, posix_memalign, valloc, pvalloc, every non-placement
 * operator new and new[], __rust_alloc, __rust_alloc_zeroed, __rust_realloc).
 * Nonzero: a fault rule (PANIC_ENV_FAULTS) fails this call, and the code passes
 * PANIC_FAULT_HUGE for every size argument, so the real allocator fails it the
 * way it fails any request it cannot satisfy: NULL and ENOMEM from malloc and
 * its kin, ENOMEM returned by posix_memalign, std::bad_alloc (after the new
 * handler) from a throwing operator new, NULL from Rust's allocator functions
 * (and then the caller's own handle_alloc_error or fallible path). 0 at once
 * when no rule is armed. */
#define PANIC_SYM_FAULT_ALLOC "__panic_fault_alloc"
/* 2^62: no address space holds it, and it is a valid Rust Layout size for any
 * alignment up to 2^61 (Layout::from_size_align_unchecked's precondition). */
#define PANIC_FAULT_HUGE 0x4000000000000000

/* ---- environment ---- */
/* Path of a file (normally under /dev/shm) the runtime creates, sizes and maps as
 * its live segment; a reader maps the same file. */
#define PANIC_ENV_SHM "CARGO_PANIC_SHM"
/* Path the runtime writes a copy of its segment to at exit, on panic-abort and on
 * fatal signals (write to PATH.tmp.PID, then rename). */
#define PANIC_ENV_DUMP "CARGO_PANIC_DUMP"
/* "ns" makes the runtime use CLOCK_MONOTONIC even where the TSC is invariant
 * (tests use it to cover that path; a user who distrusts the TSC can too). */
#define PANIC_ENV_CLOCK "CARGO_PANIC_CLOCK"
/* Path of a pinned BPF map on bpffs: the thread table of bpf/src/bpf/panic_kabi.h
 * (struct panic_kthreads), set up by cargo-panic's BPF loader. The runtime of the
 * main executable maps it and publishes, for each of its threads, the tid and the
 * innermost open region's site, so the kernel side can split each site's time
 * into on-CPU, run queue and blocked; it also keeps each region's self time
 * (PANIC_HIST_SELF). Any failure (no such pin, not mappable, wrong magic or
 * version) is said in one line, and the run goes on without it.
 * Budgets: the per-site budgets ("budgets", struct panic_site_budget, one per
 * site of the manifest plus one; the runtime reads any site past the map's end
 * as unbudgeted) may be pinned in the same directory. The runtime then
 * publishes, in each thread's table slot, the budgeted regions the thread is
 * inside (a stack of at most PANIC_KBUDGETS, with their entry times), and pins
 * their histograms (PANIC_HIST_FLAG_PINNED). No such pin means no budgets, said
 * nothing; any other failure is said in one line and the run goes on without
 * budgets (kernel mode otherwise on).
 * Prices: the price map ("prices", struct panic_prices of panic_kabi.h) may be
 * pinned in the same directory too; the runtime maps it read-only, and
 * PANIC_SYM_PRICE / PANIC_SYM_PRICE_SEQ read it. No such pin means no prices
 * (every price reads 0), said nothing; any other failure (not such a map,
 * wrong magic or version) is said in one line and prices read 0. A forked
 * child leaves kernel mode but keeps the prices: they are per run and
 * read-only.
 * Fuses: the fuse map ("fuses", struct panic_fuses of panic_kabi.h) may be
 * pinned in the same directory too; the runtime maps it read-write (it counts
 * asks, sheds and unknown names there with atomic adds; it never writes
 * anything else) and PANIC_SYM_FUSE reads it. The entries' names and n are
 * read once, at start-up. No such pin means no fuses (none ever trips,
 * nothing is counted), said nothing; any other failure (not such a map, wrong
 * magic or version) is said in one line and no fuse trips. A forked child
 * keeps the fuses too: it reads the same `tripped` flags and counts into the
 * same map (the run's, shared). */
#define PANIC_ENV_KTHREADS "CARGO_PANIC_KTHREADS"
/* Path of a fault table (layout below) that cargo-panic created; the runtime
 * of the main executable maps it read-write (it counts there; it never writes
 * anything else) and fails the calls its armed rules select:
 *   - alloc rules at alloc sites, through PANIC_SYM_FAULT_ALLOC;
 *   - errno rules at blocking sites: the runtime defines (hidden, weak) the
 *     C library calls below, which check the calling thread's innermost open
 *     region (its slot's cur_site) and fail with the rule's errno instead of
 *     calling the C library; outside a selected region they only forward.
 *     A call is eligible for the errnos it can really return: ENOSPC for
 *     write, pwrite, writev, pwritev, fsync, fdatasync, fwrite, fputs,
 *     fflush and open/openat/creat with O_CREAT; EIO for those and read,
 *     pread, readv, preadv, open, openat; EINTR for every one of them except
 *     fsync, fdatasync and the stdio calls, and for accept, accept4, connect,
 *     recv, recvfrom, recvmsg, send, sendto, sendmsg, poll, ppoll, select,
 *     epoll_wait, epoll_pwait, nanosleep, clock_nanosleep, wait, waitpid,
 *     wait4 and waitid. A call that is not
 *     eligible for its rule's errno is not counted in the rule's calls.
 *     The stdio calls also set the stream's error flag.
 * A bad table (wrong magic, ABI or number of sites) is said in one line and
 * no fault is injected. A forked child keeps the table (the same run's). */
#define PANIC_ENV_FAULTS "CARGO_PANIC_FAULTS"


/* ---- dwell histograms: log-linear buckets over clock ticks ----
 * Values below 2^SUB_BITS get one bucket each. A value v >= 2^SUB_BITS with
 * e = floor(log2 v) falls into group g = e - SUB_BITS + 1 and sub-bucket
 * s = (v >> (e - SUB_BITS)) - 2^SUB_BITS, index = g * 2^SUB_BITS + s.
 * Bucket width / lower bound <= 2^-SUB_BITS; reporting the midpoint keeps the
 * relative error <= 2^-(SUB_BITS+1) = 0.78%. Values with e > PANIC_HIST_MAX_EXP
 * go to the last bucket (max is exact regardless). */
#define PANIC_HIST_SUB_BITS 6
#define PANIC_HIST_MAX_EXP 47
#define PANIC_HIST_BUCKETS 2752 /* (MAX_EXP - SUB_BITS + 2) << SUB_BITS */

/* ---- clock ---- */
#define PANIC_CLOCK_NS 0  /* ticks are CLOCK_MONOTONIC nanoseconds */
#define PANIC_CLOCK_TSC 1 /* ticks are invariant TSC cycles; calibrate with tsc0/ns0 */

/* ---- process state in the header ---- */
#define PANIC_STATE_RUNNING 1
#define PANIC_STATE_EXITED 2   /* exit()/return from main: exit_code valid */
#define PANIC_STATE_SIGNALED 3 /* fatal signal caught: signal and fault_addr valid */

/* ---- thread slots ---- */
#define PANIC_MAX_THREADS 256
#define PANIC_MAX_DEPTH 64
#define PANIC_NO_SITE 0xffffffffu
/* What __panic_dwell_enter returns in a thread that found no free slot: such a
 * thread is counted but never timed, and __panic_dwell_exit ignores the token. */
#define PANIC_NO_TOKEN 0xffffffffu

/* ---- per-thread counters ----
 * A thread counts into its own block of n_sites counters, laid out like the
 * shared counters, so that no probe needs a lock. The runtime gives a thread a
 * block when the thread starts (its pthread_create wrapper; the main thread at
 * start-up; any other thread at its first timed region) by pointing the thread's
 * PANIC_SYM_CTR_DELTA at it. When a thread exits, its block is added to the
 * shared counters with atomic adds, zeroed and handed to the next thread.
 * A site's count is therefore the shared counter plus that counter in every
 * block. Readers of a live segment may see a block's counts twice for the
 * moment of a fold; a finished run's counts are exact. Instrumented code loads
 * the offset as invariant (it may keep it in a register for a whole function):
 * the runtime changes it only where no instrumented frame of the thread is live
 * (before a thread's start routine, after it returned), with one exception: a
 * thread the runtime did not start gets its block at its first timed region,
 * and the function that entered that region may go on counting into the shared
 * counters (unlocked) until it returns. Blocks are allocated
 * PANIC_BLOCKS_PER_CHUNK at a time, at most PANIC_MAX_BLOCKS; a thread that
 * finds none free counts into the shared counters without a lock (counted in
 * the header's blocks_over: such threads may lose counts to each other). */
#define PANIC_BLOCKS_PER_CHUNK 16
#define PANIC_MAX_BLOCKS 4096

/* ---- layout of the segment ----
 * [header: PANIC_HEADER_SIZE][thread slots: MAX_THREADS * SLOT_SIZE, padded to a page]
 * [counters: n_sites * 8, padded to a page][hists: n_hists * HIST_SIZE, padded to a page]
 * [counter blocks: n_blocks * block_size]
 * The header records each offset; readers use the recorded offsets. The blocks
 * grow while the program runs: the runtime extends the file first and then
 * publishes the new n_blocks and total_size (release), so a reader that loads
 * total_size (acquire) finds that many bytes. A dump holds no blocks: its
 * counters are already the sums. */
#define PANIC_HEADER_SIZE 4096

#define PANIC_HDR_MAGIC 0          /* u64 */
#define PANIC_HDR_ABI_VERSION 8    /* u32 */
#define PANIC_HDR_STATE 12         /* u32, PANIC_STATE_* (atomic) */
#define PANIC_HDR_N_SITES 16       /* u64 */
#define PANIC_HDR_N_HISTS 24       /* u64 */
#define PANIC_HDR_OFF_THREADS 32   /* u64 */
#define PANIC_HDR_OFF_COUNTERS 40  /* u64 */
#define PANIC_HDR_OFF_HISTS 48     /* u64 */
#define PANIC_HDR_TOTAL_SIZE 56    /* u64 */
#define PANIC_HDR_CLOCK_KIND 64    /* u32 */
#define PANIC_HDR_PID 68           /* i32 */
#define PANIC_HDR_TSC0 72          /* u64 ticks at init */
#define PANIC_HDR_NS0 80           /* u64 CLOCK_MONOTONIC ns at init */
#define PANIC_HDR_TSC_END 88       /* u64 ticks at exit/signal (0 while running) */
#define PANIC_HDR_NS_END 96        /* u64 CLOCK_MONOTONIC ns at exit/signal */
#define PANIC_HDR_EXIT_CODE 104    /* i32 */
#define PANIC_HDR_SIGNAL 108       /* i32 */
#define PANIC_HDR_FAULT_ADDR 112   /* u64 si_addr of the fatal signal */
#define PANIC_HDR_SIGNAL_TID 120   /* u32 thread that took the fatal signal */
#define PANIC_HDR_THREADS_USED 124 /* u32 high-water mark of claimed slots */
#define PANIC_HDR_THREADS_OVER 128 /* u64 threads that found no free slot (untimed) */
#define PANIC_HDR_DEPTH_OVER 136   /* u64 regions not timed: nesting deeper than MAX_DEPTH */
#define PANIC_HDR_ABANDONED 144    /* u64 regions closed by an outer exit (unwinding, longjmp) */
#define PANIC_HDR_MAX_THREADS 152  /* u32 */
#define PANIC_HDR_MAX_DEPTH 156    /* u32 */
#define PANIC_HDR_SLOT_SIZE 160    /* u32 */
#define PANIC_HDR_HIST_SIZE 164    /* u32 */
#define PANIC_HDR_HIST_BUCKETS 168 /* u32 */
#define PANIC_HDR_HIST_SUB_BITS 172 /* u32 */
#define PANIC_HDR_OFF_BLOCKS 176   /* u64 where the counter blocks start */
#define PANIC_HDR_BLOCK_SIZE 184   /* u64 bytes per block: n_sites * 8, padded to a page */
#define PANIC_HDR_N_BLOCKS 192     /* u64 blocks in the segment (atomic, grows) */
#define PANIC_HDR_BLOCKS_OVER 200  /* u64 threads that found no free block */
#define PANIC_HDR_KTHREADS 208     /* u32 1 when the kernel thread table was mapped: self times are kept */
#define PANIC_HDR_FAULT_SP 216     /* u64 the faulting thread's stack pointer at the fatal signal (0: unknown) */

/* Thread slot: written only by its owning thread (relaxed atomics), read by anyone. */
#define PANIC_SLOT_TID 0       /* u32 kernel tid, 0 = free (atomic, claimed by CAS) */
#define PANIC_SLOT_DEPTH 4     /* u32 current region depth (may exceed MAX_DEPTH) */
#define PANIC_SLOT_CUR_SITE 8  /* u32 innermost open region's site index or PANIC_NO_SITE */
#define PANIC_SLOT_LAST_EXIT 12 /* u32 site of the last region this thread closed */
#define PANIC_SLOT_ENTERED 16  /* u64 regions entered by this thread */
#define PANIC_SLOT_STACK 24    /* MAX_DEPTH frames of PANIC_FRAME_SIZE */
#define PANIC_FRAME_SITE 0     /* u32 site index */
#define PANIC_FRAME_HIST 4     /* u32 hist index */
#define PANIC_FRAME_T 8        /* u64 ticks at entry */
#define PANIC_FRAME_CHILD 16   /* u64 ticks of this region's closed timed child regions (kernel mode only) */
#define PANIC_FRAME_SIZE 24
#define PANIC_SLOT_SIZE 1560   /* 24 + MAX_DEPTH * FRAME_SIZE */

/* Histogram of one timed site (updated with atomics by any thread). */
#define PANIC_HIST_COUNT 0     /* u64 recorded durations */
#define PANIC_HIST_TOTAL 8     /* u64 sum of ticks */
#define PANIC_HIST_MAX 16      /* u64 largest duration in ticks */
/* The smallest duration is stored complemented, as ~min, so that a zero-filled
 * table (the link driver's site table is plain zeroed memory) reads as empty:
 * stored 0 decodes to min = UINT64_MAX. Writers raise the stored value with a
 * CAS loop (max of ~v); readers decode it with ~stored. */
#define PANIC_HIST_MIN 24      /* u64 ~(smallest duration in ticks); 0 when empty */
#define PANIC_HIST_FLAGS 32    /* u64, PANIC_HIST_FLAG_* bits (atomic) */
/* Self time: a region's duration minus the durations of the timed regions
 * closed inside it (its direct children), summed over its recorded durations.
 * Kept only while the kernel thread table is mapped (PANIC_ENV_KTHREADS,
 * PANIC_HDR_KTHREADS); 0 otherwise. Some time stays in the self time of the
 * region whose exit ends it: that of regions abandoned by unwinding or longjmp
 * (closed by an outer exit, they record nothing), of regions nested deeper
 * than PANIC_MAX_DEPTH (never timed), and, for a region opened before the table
 * was mapped (code run before the runtime's constructor), that of its children
 * closed before then. A region still open at the end has no self time here: a
 * reader derives it from the thread's open frames, innermost first, as
 * (end - t) - child - (end - t of the next inner open frame, if any). */
#define PANIC_HIST_SELF 40     /* u64 sum of self times in ticks (atomic) */
#define PANIC_HIST_BUCKETS_OFF 48 /* u64[PANIC_HIST_BUCKETS] */
#define PANIC_HIST_SIZE 22064  /* 48 + BUCKETS * 8 */

/* Adaptive timing. After PANIC_DEMOTE_AFTER recorded durations, a region whose
 * mean is below PANIC_DEMOTE_BELOW_NS is demoted: the runtime sets
 * PANIC_HIST_FLAG_DEMOTED, and instrumented code that checks the flag (function
 * regions the rule chose, not forced ones, not blocking or lock calls) stops
 * calling the runtime for it: the site is then only counted. A clock read costs
 * more than a few percent of such a region. CARGO_PANIC_ADAPTIVE=0 turns this off
 * for a run. */
#define PANIC_HIST_FLAG_DEMOTED 1
/* A budget bounds this region: never demoted (a demoted region stops calling the
 * runtime, so its budget could not be tracked). Set in kernel mode, at start-up,
 * for each site with a budget (PANIC_ENV_KTHREADS, "budgets"). */
#define PANIC_HIST_FLAG_PINNED 2
#define PANIC_DEMOTE_AFTER 1024
#define PANIC_DEMOTE_BELOW_NS 1000
#define PANIC_ENV_ADAPTIVE "CARGO_PANIC_ADAPTIVE"

/* ---- the fault table (PANIC_ENV_FAULTS) ----
 * [header: PANIC_FAULTS_HEADER][rules: PANIC_FAULT_RULES * PANIC_FAULT_RULE_SIZE]
 * [sites: n_sites * PANIC_FAULT_SITE_SIZE]. cargo-panic writes it; the runtime
 * only adds to the counters (atomics). To arm a rule the writer fills it in
 * (counters zeroed), sets `active` (release), points sites at it, then raises
 * `armed`; to disarm it, the reverse. Changing a live rule's `n` (a shaped
 * fraction) is a single store. The runtime checks `armed` first: 0 means no
 * call is failed and nothing more is read. */
#define PANIC_FAULTS_MAGIC 0x544c4643494e4150 /* "PANICFLT" little-endian */
#define PANIC_FAULT_RULES 32
#define PANIC_FAULTS_HEADER 64
#define PANIC_FLT_MAGIC 0          /* u64 */
#define PANIC_FLT_ABI_VERSION 8    /* u32 */
#define PANIC_FLT_ATTACHED 12      /* u32 set to 1 by the runtime that mapped the table */
#define PANIC_FLT_N_SITES 16       /* u64 must equal the program's site count */
#define PANIC_FLT_ARMED 24         /* u32 active rules (atomic); 0: every check returns at once */
#define PANIC_FAULT_RULE_SIZE 64
#define PANIC_RULE_ACTIVE 0        /* u32 1 while armed (atomic) */
#define PANIC_RULE_WHAT 4          /* u32 PANIC_FAULT_ALLOC | PANIC_FAULT_ERRNO */
#define PANIC_RULE_ERRNO 8         /* i32 errno rules: the errno to fail with */
#define PANIC_RULE_MODE 12         /* u32 PANIC_FAULT_MODE_* */
#define PANIC_RULE_N 16            /* u64 NTH, EVERY: n; FRACTION: chance out of 2^32 */
#define PANIC_RULE_LIMIT 24        /* u64 most faults to inject (0: no limit) */
#define PANIC_RULE_SEED 32         /* u64 FRACTION: the seed of the choice */
#define PANIC_RULE_CALLS 40        /* u64 eligible calls at its sites while armed (runtime, atomic) */
#define PANIC_RULE_INJECTED 48     /* u64 calls failed (runtime, atomic) */
#define PANIC_FAULT_SITE_SIZE 8
#define PANIC_FSITE_RULE 0         /* u32 0: none, else rule index + 1 */
#define PANIC_FSITE_INJECTED 4     /* u32 calls failed at this site (runtime, atomic) */
#define PANIC_FAULT_ALLOC 1
#define PANIC_FAULT_ERRNO 2
/* The n-th eligible call since the rule was armed fails (once). */
#define PANIC_FAULT_MODE_NTH 1
/* Every n-th eligible call fails. */
#define PANIC_FAULT_MODE_EVERY 2
/* Call c fails when splitmix64(seed + c) >> 32 < n: a seeded, reproducible
 * fraction n / 2^32 of the calls (c counts from 1 since the rule was armed). */
#define PANIC_FAULT_MODE_FRACTION 3

#ifndef PANIC_ABI_NO_TYPES
#include <stddef.h>
#include <stdint.h>

/* The first PANIC_HEADER_SIZE bytes of a segment (the rest of the page is zero). */
struct panic_header {
    uint64_t magic;
    uint32_t abi_version;
    uint32_t state;
    uint64_t n_sites;
    uint64_t n_hists;
    uint64_t off_threads;
    uint64_t off_counters;
    uint64_t off_hists;
    uint64_t total_size;
    uint32_t clock_kind;
    int32_t pid;
    uint64_t tsc0;
    uint64_t ns0;
    uint64_t tsc_end;
    uint64_t ns_end;
    int32_t exit_code;
    int32_t signal;
    uint64_t fault_addr;
    uint32_t signal_tid;
    uint32_t threads_used;
    uint64_t threads_over;
    uint64_t depth_over;
    uint64_t abandoned;
    uint32_t max_threads;
    uint32_t max_depth;
    uint32_t slot_size;
    uint32_t hist_size;
    uint32_t hist_buckets;
    uint32_t hist_sub_bits;
    uint64_t off_blocks;
    uint64_t block_size;
    uint64_t n_blocks;
    uint64_t blocks_over;
    uint32_t kthreads;
    uint32_t pad0;
    uint64_t fault_sp;
};

struct panic_hist {
    uint64_t count;
    uint64_t total;
    uint64_t max;
    uint64_t min; /* stored as ~min: see PANIC_HIST_MIN */
    uint64_t flags; /* PANIC_HIST_FLAG_* */
    uint64_t self_total; /* see PANIC_HIST_SELF */
    uint64_t buckets[PANIC_HIST_BUCKETS];
};

struct panic_frame {
    uint32_t site;
    uint32_t hist;
    uint64_t t;
    uint64_t child; /* see PANIC_FRAME_CHILD */
};

struct panic_thread_slot {
    uint32_t tid;
    uint32_t depth;
    uint32_t cur_site;
    uint32_t last_exit;
    uint64_t entered;
    struct panic_frame stack[PANIC_MAX_DEPTH];
};

struct panic_faults_head {
    uint64_t magic;
    uint32_t abi_version;
    uint32_t attached;
    uint64_t n_sites;
    uint32_t armed;
    uint32_t pad;
    uint64_t reserved[4];
};

struct panic_fault_rule {
    uint32_t active;
    uint32_t what;
    int32_t err;
    uint32_t mode;
    uint64_t n;
    uint64_t limit;
    uint64_t seed;
    uint64_t calls;
    uint64_t injected;
    uint64_t reserved;
};

struct panic_fault_site {
    uint32_t rule;
    uint32_t injected;
};

/* The numbers above are the layout; the structs must agree with them. */
#ifndef __cplusplus
#define PANIC_CHECK_OFF(type, field, off) \
    _Static_assert(offsetof(struct type, field) == (off), #type "." #field " is not at " #off)
PANIC_CHECK_OFF(panic_header, magic, PANIC_HDR_MAGIC);
PANIC_CHECK_OFF(panic_header, abi_version, PANIC_HDR_ABI_VERSION);
PANIC_CHECK_OFF(panic_header, state, PANIC_HDR_STATE);
PANIC_CHECK_OFF(panic_header, n_sites, PANIC_HDR_N_SITES);
PANIC_CHECK_OFF(panic_header, n_hists, PANIC_HDR_N_HISTS);
PANIC_CHECK_OFF(panic_header, off_threads, PANIC_HDR_OFF_THREADS);
PANIC_CHECK_OFF(panic_header, off_counters, PANIC_HDR_OFF_COUNTERS);
PANIC_CHECK_OFF(panic_header, off_hists, PANIC_HDR_OFF_HISTS);
PANIC_CHECK_OFF(panic_header, total_size, PANIC_HDR_TOTAL_SIZE);
PANIC_CHECK_OFF(panic_header, clock_kind, PANIC_HDR_CLOCK_KIND);
PANIC_CHECK_OFF(panic_header, pid, PANIC_HDR_PID);
PANIC_CHECK_OFF(panic_header, tsc0, PANIC_HDR_TSC0);
PANIC_CHECK_OFF(panic_header, ns0, PANIC_HDR_NS0);
PANIC_CHECK_OFF(panic_header, tsc_end, PANIC_HDR_TSC_END);
PANIC_CHECK_OFF(panic_header, ns_end, PANIC_HDR_NS_END);
PANIC_CHECK_OFF(panic_header, exit_code, PANIC_HDR_EXIT_CODE);
PANIC_CHECK_OFF(panic_header, signal, PANIC_HDR_SIGNAL);
PANIC_CHECK_OFF(panic_header, fault_addr, PANIC_HDR_FAULT_ADDR);
PANIC_CHECK_OFF(panic_header, signal_tid, PANIC_HDR_SIGNAL_TID);
PANIC_CHECK_OFF(panic_header, fault_sp, PANIC_HDR_FAULT_SP);
PANIC_CHECK_OFF(panic_header, threads_used, PANIC_HDR_THREADS_USED);
PANIC_CHECK_OFF(panic_header, threads_over, PANIC_HDR_THREADS_OVER);
PANIC_CHECK_OFF(panic_header, depth_over, PANIC_HDR_DEPTH_OVER);
PANIC_CHECK_OFF(panic_header, abandoned, PANIC_HDR_ABANDONED);
PANIC_CHECK_OFF(panic_header, max_threads, PANIC_HDR_MAX_THREADS);
PANIC_CHECK_OFF(panic_header, max_depth, PANIC_HDR_MAX_DEPTH);
PANIC_CHECK_OFF(panic_header, slot_size, PANIC_HDR_SLOT_SIZE);
PANIC_CHECK_OFF(panic_header, hist_size, PANIC_HDR_HIST_SIZE);
PANIC_CHECK_OFF(panic_header, hist_buckets, PANIC_HDR_HIST_BUCKETS);
PANIC_CHECK_OFF(panic_header, hist_sub_bits, PANIC_HDR_HIST_SUB_BITS);
PANIC_CHECK_OFF(panic_header, off_blocks, PANIC_HDR_OFF_BLOCKS);
PANIC_CHECK_OFF(panic_header, block_size, PANIC_HDR_BLOCK_SIZE);
PANIC_CHECK_OFF(panic_header, n_blocks, PANIC_HDR_N_BLOCKS);
PANIC_CHECK_OFF(panic_header, blocks_over, PANIC_HDR_BLOCKS_OVER);
PANIC_CHECK_OFF(panic_header, kthreads, PANIC_HDR_KTHREADS);
_Static_assert(sizeof(struct panic_header) <= PANIC_HEADER_SIZE, "header does not fit its page");
PANIC_CHECK_OFF(panic_thread_slot, tid, PANIC_SLOT_TID);
PANIC_CHECK_OFF(panic_thread_slot, depth, PANIC_SLOT_DEPTH);
PANIC_CHECK_OFF(panic_thread_slot, cur_site, PANIC_SLOT_CUR_SITE);
PANIC_CHECK_OFF(panic_thread_slot, last_exit, PANIC_SLOT_LAST_EXIT);
PANIC_CHECK_OFF(panic_thread_slot, entered, PANIC_SLOT_ENTERED);
PANIC_CHECK_OFF(panic_thread_slot, stack, PANIC_SLOT_STACK);
_Static_assert(sizeof(struct panic_thread_slot) == PANIC_SLOT_SIZE, "PANIC_SLOT_SIZE is wrong");
_Static_assert(PANIC_SLOT_SIZE == PANIC_SLOT_STACK + PANIC_MAX_DEPTH * PANIC_FRAME_SIZE, "PANIC_SLOT_SIZE is wrong");
PANIC_CHECK_OFF(panic_frame, site, PANIC_FRAME_SITE);
PANIC_CHECK_OFF(panic_frame, hist, PANIC_FRAME_HIST);
PANIC_CHECK_OFF(panic_frame, t, PANIC_FRAME_T);
PANIC_CHECK_OFF(panic_frame, child, PANIC_FRAME_CHILD);
_Static_assert(sizeof(struct panic_frame) == PANIC_FRAME_SIZE, "PANIC_FRAME_SIZE is wrong");
PANIC_CHECK_OFF(panic_hist, count, PANIC_HIST_COUNT);
PANIC_CHECK_OFF(panic_hist, total, PANIC_HIST_TOTAL);
PANIC_CHECK_OFF(panic_hist, max, PANIC_HIST_MAX);
PANIC_CHECK_OFF(panic_hist, min, PANIC_HIST_MIN);
PANIC_CHECK_OFF(panic_hist, flags, PANIC_HIST_FLAGS);
PANIC_CHECK_OFF(panic_hist, self_total, PANIC_HIST_SELF);
PANIC_CHECK_OFF(panic_hist, buckets, PANIC_HIST_BUCKETS_OFF);
_Static_assert(sizeof(struct panic_hist) == PANIC_HIST_SIZE, "PANIC_HIST_SIZE is wrong");
_Static_assert(PANIC_HIST_SIZE == PANIC_HIST_BUCKETS_OFF + PANIC_HIST_BUCKETS * 8, "PANIC_HIST_SIZE is wrong");
_Static_assert(PANIC_HIST_BUCKETS == (PANIC_HIST_MAX_EXP - PANIC_HIST_SUB_BITS + 2) << PANIC_HIST_SUB_BITS,
               "PANIC_HIST_BUCKETS does not match SUB_BITS and MAX_EXP");
PANIC_CHECK_OFF(panic_faults_head, magic, PANIC_FLT_MAGIC);
PANIC_CHECK_OFF(panic_faults_head, abi_version, PANIC_FLT_ABI_VERSION);
PANIC_CHECK_OFF(panic_faults_head, attached, PANIC_FLT_ATTACHED);
PANIC_CHECK_OFF(panic_faults_head, n_sites, PANIC_FLT_N_SITES);
PANIC_CHECK_OFF(panic_faults_head, armed, PANIC_FLT_ARMED);
_Static_assert(sizeof(struct panic_faults_head) == PANIC_FAULTS_HEADER, "PANIC_FAULTS_HEADER is wrong");
PANIC_CHECK_OFF(panic_fault_rule, active, PANIC_RULE_ACTIVE);
PANIC_CHECK_OFF(panic_fault_rule, what, PANIC_RULE_WHAT);
PANIC_CHECK_OFF(panic_fault_rule, err, PANIC_RULE_ERRNO);
PANIC_CHECK_OFF(panic_fault_rule, mode, PANIC_RULE_MODE);
PANIC_CHECK_OFF(panic_fault_rule, n, PANIC_RULE_N);
PANIC_CHECK_OFF(panic_fault_rule, limit, PANIC_RULE_LIMIT);
PANIC_CHECK_OFF(panic_fault_rule, seed, PANIC_RULE_SEED);
PANIC_CHECK_OFF(panic_fault_rule, calls, PANIC_RULE_CALLS);
PANIC_CHECK_OFF(panic_fault_rule, injected, PANIC_RULE_INJECTED);
_Static_assert(sizeof(struct panic_fault_rule) == PANIC_FAULT_RULE_SIZE, "PANIC_FAULT_RULE_SIZE is wrong");
PANIC_CHECK_OFF(panic_fault_site, rule, PANIC_FSITE_RULE);
PANIC_CHECK_OFF(panic_fault_site, injected, PANIC_FSITE_INJECTED);
_Static_assert(sizeof(struct panic_fault_site) == PANIC_FAULT_SITE_SIZE, "PANIC_FAULT_SITE_SIZE is wrong");
#undef PANIC_CHECK_OFF
#endif

/* Defined by the linker around the data sections (see above). Hidden: in a shared
 * library they name the library's own sections, never the executable's. */
extern uint64_t __start_panic_counters[] __attribute__((visibility("hidden")));
extern uint64_t __stop_panic_counters[] __attribute__((visibility("hidden")));
extern struct panic_hist __start_panic_hists[] __attribute__((visibility("hidden")));
extern struct panic_hist __stop_panic_hists[] __attribute__((visibility("hidden")));

extern _Thread_local int64_t __panic_ctr_delta __attribute__((visibility("hidden")));

uint32_t __panic_dwell_enter(uint64_t *site_counter, struct panic_hist *hist);
void __panic_dwell_exit(uint32_t token);
int __panic_fault_alloc(uint64_t *site_counter);
#endif

#endif
