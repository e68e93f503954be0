/*
 * panic.h: what a program can ask cargo-panic while it runs. Plain C99 (and
 * C++: the declarations are extern "C"), GCC or clang; no other header of
 * cargo-panic is needed.
 *
 * Prices. Under `cargo panic run` with the kernel side on, cargo-panic's
 * controller puts a price on each resource (CPU, memory, I/O, network, dwell)
 * and moves it every period: a price rises while the program's use of the
 * resource runs above its capacity and falls back toward 0 while it runs
 * below. A program can read the current prices and act on them (shed load,
 * batch more, shrink a cache):
 *
 *     #include <panic.h>
 *
 *     if (cargo_panic_price(PANIC_MEMORY) > 1.0)
 *         shrink_cache();
 *
 *     unsigned long long seen = cargo_panic_price_seq();
 *     ...
 *     if (cargo_panic_price_seq() != seen)   (the prices moved since)
 *         replan();
 *
 * cargo_panic_price(r) is the price of resource r as a double (fixed point with
 * six decimals underneath), >= 0. It reads 0 when the program runs without
 * cargo-panic, without the kernel side (`cargo panic run` without it, a forked
 * child that exec'd, a plain run), before the controller's first update, and
 * for an r it does not know. cargo_panic_price_seq() counts the updates (twice
 * their number; 0 without prices), so a program can tell whether prices moved.
 * Both are a few loads: no system call, no lock, no allocation, async-signal
 * safe, callable from any thread, and they never block (a reader that keeps
 * meeting an update in progress gives up after a bounded number of tries and
 * returns the last value it read).
 *
 * Fuses. A run's config can name fuses: pieces of work a program checks
 * before it does them ("ingest", "batch"), which cargo-panic's controller
 * trips while the program should shed that work (the machine is over what it
 * can give) and resets once it may go on. The program asks by name:
 *
 *     for (;;) {
 *         wait_for_request();
 *         if (cargo_panic_fuse("ingest")) {   (tripped: shed this one)
 *             drop_request();
 *             continue;
 *         }
 *         ingest();
 *     }
 *
 * cargo_panic_fuse(name) is 1 while the fuse `name` is tripped, else 0. It is
 * 0 (never trips) when the program runs without cargo-panic or without the
 * kernel side, when the run has no fuses, and for a name that is no fuse of
 * the run (or NULL): unknown names never trip, and the run counts them, so
 * a misspelt name is seen rather than silently never shedding. Names are
 * compared over at most PANIC_FUSE_NAME_MAX + 1 bytes: a fuse's name has at
 * most PANIC_FUSE_NAME_MAX. With fuses on, every ask is counted in the run
 * (per fuse: asks, and sheds, the asks answered 1). An ask is a name
 * comparison (each thread remembers the last fuse it asked for; other names
 * are hashed) and an atomic add or two: no system call, no lock, no
 * allocation, async-signal safe, callable from any thread, never blocks.
 *
 * Build: put the directory cargo-panic keeps this file in on the include path
 * (-I), or copy the file next to your sources. A program built without cargo-panic
 * still compiles and links: the runtime's functions are declared weak, and the
 * wrappers return 0 when they are absent. Call the wrappers, never
 * panic_price / panic_price_seq / panic_fuse directly (those are NULL
 * without the runtime). A forked child keeps reading its parent's prices and
 * fuses (they are per run; its asks count in the run's fuses too); a program
 * that execs starts without them.
 */
#ifndef CARGO_PANIC_H
#define CARGO_PANIC_H

/* Resources (the index passed to cargo_panic_price). */
#define PANIC_CPU 0     /* time on a CPU */
#define PANIC_MEMORY 1  /* memory */
#define PANIC_IO 2      /* disk and file I/O */
#define PANIC_NETWORK 3 /* network I/O */
#define PANIC_DWELL 4   /* time spent inside instrumented regions */

/* The longest name a fuse can have, in bytes (without the NUL). */
#define PANIC_FUSE_NAME_MAX 47

/* How the runtime's declarations are marked: weak, so that a program linked
 * without the runtime resolves them to NULL. (The runtime itself defines
 * CARGO_PANIC_API, as its export attribute, before including this file: a weak
 * declaration would make its definitions weak. It gets no wrappers.) */
#ifndef CARGO_PANIC_API
#define CARGO_PANIC_API __attribute__((weak))
#define CARGO_PANIC_WRAPPERS
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Defined by the cargo-panic runtime: the price of `resource`, 0 when none. */
CARGO_PANIC_API double panic_price(unsigned resource);
/* Defined by the cargo-panic runtime: the price map's update counter (even
 * between updates), 0 without prices. */
CARGO_PANIC_API unsigned long long panic_price_seq(void);
/* Defined by the cargo-panic runtime: 1 when the fuse `name` is tripped,
 * else 0 (also for an unknown or NULL name, and without fuses). */
CARGO_PANIC_API int panic_fuse(const char *name);

#ifdef __cplusplus
}
#endif

#ifdef CARGO_PANIC_WRAPPERS
/* The price of `resource` (PANIC_CPU ...), 0 without cargo-panic. */
static inline double cargo_panic_price(unsigned resource) {
    return panic_price ? panic_price(resource) : 0.0;
}

/* Changes whenever the prices change; 0 without cargo-panic or without prices. */
static inline unsigned long long cargo_panic_price_seq(void) {
    return panic_price_seq ? panic_price_seq() : 0ull;
}

/* 1 while the fuse `name` is tripped (shed that work now), else 0; 0 without
 * cargo-panic ("never trips"). */
static inline int cargo_panic_fuse(const char *name) {
    return panic_fuse ? panic_fuse(name) : 0;
}
#endif

#endif
