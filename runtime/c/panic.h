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
 * Build: put the directory cargo-panic keeps this file in on the include path
 * (-I), or copy the file next to your sources. A program built without cargo-panic
 * still compiles and links: the runtime's functions are declared weak, and the
 * wrappers return 0 when they are absent. Call the wrappers, never
 * panic_price / panic_price_seq directly (those are NULL without the runtime).
 * A forked child keeps reading its parent's prices (they are per run and
 * read-only); a program that execs starts without them.
 */
#ifndef CARGO_PANIC_H
#define CARGO_PANIC_H

/* Resources (the index passed to cargo_panic_price). */
#define PANIC_CPU 0     /* time on a CPU */
#define PANIC_MEMORY 1  /* memory */
#define PANIC_IO 2      /* disk and file I/O */
#define PANIC_NETWORK 3 /* network I/O */
#define PANIC_DWELL 4   /* time spent inside instrumented regions */

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
#endif

#endif
