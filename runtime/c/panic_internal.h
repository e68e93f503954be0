/*
 * panic_internal.h: what the runtime's translation units share with each
 * other (never with instrumented code: everything here is hidden).
 */
#ifndef PANIC_INTERNAL_H
#define PANIC_INTERNAL_H

#include <stdint.h>

#define PANIC_HIDDEN __attribute__((visibility("hidden")))

/* One line "cargo-panic runtime: <what> <path>: <strerror(err)><tail>" on
 * stderr (panic_runtime.c). Async-signal-safe. */
PANIC_HIDDEN void panic_say(const char *what, const char *path, int err, const char *tail);
/* Counter slots of this module (the sites the manifest numbers). */
PANIC_HIDDEN uint64_t panic_n_sites(void);
/* The calling thread's innermost open region's site, or PANIC_NO_SITE. */
PANIC_HIDDEN uint32_t panic_current_site(void);
/* Maps the fault table at `path` (panic_faults.c), main executable only. */
PANIC_HIDDEN void panic_faults_setup(const char *path);

#endif
