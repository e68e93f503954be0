/*
 * panic_faults.c: fault injection at instrumented sites (PANIC_ENV_FAULTS in
 * panic_abi.h says what a user sees; this file is how).
 *
 * cargo-panic writes a fault table (rules, and which rule each site follows)
 * into a file; the main executable's runtime maps it. Two kinds of rules:
 *   - alloc rules: the pass calls __panic_fault_alloc before each allocation
 *     call that takes a size; a nonzero answer makes the code ask the real
 *     allocator for PANIC_FAULT_HUGE bytes, which it refuses;
 *   - errno rules: this file defines (hidden, weak) the C library's blocking
 *     calls. Each asks whether the calling thread's innermost open region is a
 *     site whose rule fails this call; if so it returns the failure the C
 *     library would (-1 and errno, or the error number for clock_nanosleep),
 *     otherwise it calls the C library's own function.
 *
 * Hidden definitions bind only the references of the module they are linked
 * into (the instrumented program and, for Rust, the standard library linked
 * into it); other shared libraries keep calling the C library directly. Weak,
 * so that a static C library's own definitions never clash with them. The C
 * library's function is found with dlsym(RTLD_NEXT) (resolved once, at start
 * or at first use); a static executable, without dlsym, makes the system call
 * itself, and its stdio calls use glibc's _IO_ names. Semaphores are not
 * wrapped: their waits live in the C library, which a static executable could
 * not reach past a wrapper.
 *
 * Everything here is async-signal-safe: no allocation, no lock. With no table
 * or no armed rule a wrapper costs one load and a test before the C library's
 * function.
 */
#define _GNU_SOURCE
#include "panic_abi.h"
#include "panic_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define RELAXED __ATOMIC_RELAXED
#define WEAK_HIDDEN __attribute__((weak, visibility("hidden")))

/* The mapped table: NULL without one (and in every copy of the runtime but
 * the main executable's). */
static unsigned char *table;
static uint64_t table_sites;

/* The parts of a mapped table t (loaded once per call, acquire). */
static struct panic_faults_head *head(unsigned char *t) { return (struct panic_faults_head *)t; }
static struct panic_fault_rule *rules(unsigned char *t) { return (struct panic_fault_rule *)(t + PANIC_FAULTS_HEADER); }
static struct panic_fault_site *fsites(unsigned char *t) {
    return (struct panic_fault_site *)(t + PANIC_FAULTS_HEADER + PANIC_FAULT_RULES * PANIC_FAULT_RULE_SIZE);
}

/* The table, or NULL; acquire, so table_sites (written before it) is seen. */
static inline unsigned char *mapped(void) { return __atomic_load_n(&table, __ATOMIC_ACQUIRE); }

void panic_faults_setup(const char *path) {
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        panic_say("cannot open fault table", path, errno, "; no faults are injected");
        return;
    }
    struct stat st;
    uint64_t n_sites = panic_n_sites();
    uint64_t want = PANIC_FAULTS_HEADER + (uint64_t)PANIC_FAULT_RULES * PANIC_FAULT_RULE_SIZE +
                    n_sites * PANIC_FAULT_SITE_SIZE;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != want) {
        syscall(SYS_close, fd);
        panic_say("cannot use fault table", path, EINVAL,
                  " (its size is not that of this program's sites: made for another build?); no faults are "
                  "injected");
        return;
    }
    void *map = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    syscall(SYS_close, fd);
    if (map == MAP_FAILED) {
        panic_say("cannot map fault table", path, errno, "; no faults are injected");
        return;
    }
    struct panic_faults_head *h = map;
    if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != (uint64_t)PANIC_FAULTS_MAGIC ||
        h->abi_version != PANIC_ABI_VERSION || h->n_sites != n_sites) {
        munmap(map, want);
        panic_say("cannot use fault table", path, EINVAL,
                  " (wrong magic, ABI version or site count); no faults are injected");
        return;
    }
    table_sites = n_sites;
    __atomic_store_n(&h->attached, 1, RELAXED);
    __atomic_store_n(&table, (unsigned char *)map, __ATOMIC_RELEASE);
}

/* splitmix64: a well-mixed 64-bit function of (seed + call number). */
static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Whether the rule of `site` fails this call. `what` is the kind of call;
 * errno calls pass the errnos they are eligible for (a bit per ERR_*) and get
 * the errno in *err. */
#define ERR_NOSPC 1u
#define ERR_IO 2u
#define ERR_INTR 4u

static unsigned err_bit(int e) {
    switch (e) {
    case ENOSPC:
        return ERR_NOSPC;
    case EIO:
        return ERR_IO;
    case EINTR:
        return ERR_INTR;
    default:
        return 0;
    }
}

static __attribute__((noinline)) int decide(unsigned char *t, uint32_t site, uint32_t what, unsigned eligible,
                                            int *err) {
    if (site >= table_sites)
        return 0;
    struct panic_fault_site *s = &fsites(t)[site];
    uint32_t r = __atomic_load_n(&s->rule, RELAXED);
    if (r == 0 || r > PANIC_FAULT_RULES)
        return 0;
    struct panic_fault_rule *rule = &rules(t)[r - 1];
    if (!__atomic_load_n(&rule->active, __ATOMIC_ACQUIRE) || rule->what != what)
        return 0;
    int e = rule->err;
    if (what == PANIC_FAULT_ERRNO && !(err_bit(e) & eligible))
        return 0;
    uint64_t c = __atomic_add_fetch(&rule->calls, 1, RELAXED);
    uint64_t n = __atomic_load_n(&rule->n, RELAXED);
    int hit;
    switch (rule->mode) {
    case PANIC_FAULT_MODE_NTH:
        hit = c == n;
        break;
    case PANIC_FAULT_MODE_EVERY:
        hit = n != 0 && c % n == 0;
        break;
    case PANIC_FAULT_MODE_FRACTION:
        hit = (mix(rule->seed + c) >> 32) < n;
        break;
    default:
        hit = 0;
    }
    if (!hit)
        return 0;
    uint64_t limit = rule->limit;
    if (limit) {
        uint64_t done = __atomic_load_n(&rule->injected, RELAXED);
        do {
            if (done >= limit)
                return 0;
        } while (!__atomic_compare_exchange_n(&rule->injected, &done, done + 1, 1, RELAXED, RELAXED));
    } else {
        __atomic_fetch_add(&rule->injected, 1, RELAXED);
    }
    __atomic_fetch_add(&s->injected, 1, RELAXED);
    if (err)
        *err = e;
    return 1;
}

int __panic_fault_alloc(uint64_t *site_counter) {
    unsigned char *t = mapped();
    if (LIKELY(t == NULL) || LIKELY(__atomic_load_n(&head(t)->armed, RELAXED) == 0))
        return 0;
    return decide(t, (uint32_t)(site_counter - __start_panic_counters), PANIC_FAULT_ALLOC, 0, NULL);
}

/* The errno a wrapped call must fail with now, or 0. Keeps errno. */
static inline int errno_fault(unsigned eligible) {
    unsigned char *t = mapped();
    if (LIKELY(t == NULL) || LIKELY(__atomic_load_n(&head(t)->armed, RELAXED) == 0))
        return 0;
    uint32_t site = panic_current_site();
    if (site == PANIC_NO_SITE)
        return 0;
    int saved = errno, e = 0;
    int hit = decide(t, site, PANIC_FAULT_ERRNO, eligible, &e);
    errno = saved;
    return hit ? e : 0;
}

/* The C library's function `name`, found once. NULL in a static executable. */
static void *real(void **slot, const char *name) {
    void *p = __atomic_load_n(slot, RELAXED);
    if (LIKELY(p != NULL))
        return p;
    extern void *dlsym(void *, const char *) __attribute__((weak));
    if (dlsym == NULL)
        return NULL;
    p = dlsym(RTLD_NEXT, name);
    if (p != NULL)
        __atomic_store_n(slot, p, RELAXED);
    return p;
}

#define FAILS(eligible)                                                                                           \
    do {                                                                                                          \
        int e_ = errno_fault(eligible);                                                                           \
        if (UNLIKELY(e_ != 0)) {                                                                                  \
            errno = e_;                                                                                           \
            return -1;                                                                                            \
        }                                                                                                         \
    } while (0)

/* A wrapper for a call that is one system call: fail it, or call the C
 * library's function, or (static executables) make the system call. */
#define SYSCALL_WRAPPER(ret, name, eligible, params, args, sysargs)                                          \
    static void *real_##name;                                                                                     \
    WEAK_HIDDEN ret name params {                                                                                 \
        FAILS(eligible);                                                                                          \
        ret(*f) params = (ret(*) params)real(&real_##name, #name);                                               \
        if (LIKELY(f != NULL))                                                                                    \
            return f args;                                                                                        \
        return (ret)syscall sysargs;                                                                              \
    }

#define W_DATA (ERR_NOSPC | ERR_IO | ERR_INTR)
#define W_READ (ERR_IO | ERR_INTR)
#define W_WAIT ERR_INTR

SYSCALL_WRAPPER(ssize_t, write, W_DATA, (int fd, const void *b, size_t n), (fd, b, n), (SYS_write, fd, b, n))
SYSCALL_WRAPPER(ssize_t, pwrite, W_DATA, (int fd, const void *b, size_t n, off_t o), (fd, b, n, o),
                (SYS_pwrite64, fd, b, n, o))
SYSCALL_WRAPPER(ssize_t, pwrite64, W_DATA, (int fd, const void *b, size_t n, off_t o), (fd, b, n, o),
                (SYS_pwrite64, fd, b, n, o))
SYSCALL_WRAPPER(ssize_t, writev, W_DATA, (int fd, const struct iovec *v, int n), (fd, v, n),
                (SYS_writev, fd, v, n))
SYSCALL_WRAPPER(ssize_t, pwritev, W_DATA, (int fd, const struct iovec *v, int n, off_t o), (fd, v, n, o),
                (SYS_pwritev, fd, v, n, o, 0))
SYSCALL_WRAPPER(ssize_t, pwritev64, W_DATA, (int fd, const struct iovec *v, int n, off_t o), (fd, v, n, o),
                (SYS_pwritev, fd, v, n, o, 0))
SYSCALL_WRAPPER(int, fsync, ERR_NOSPC | ERR_IO, (int fd), (fd), (SYS_fsync, fd))
SYSCALL_WRAPPER(int, fdatasync, ERR_NOSPC | ERR_IO, (int fd), (fd), (SYS_fdatasync, fd))
SYSCALL_WRAPPER(ssize_t, read, W_READ, (int fd, void *b, size_t n), (fd, b, n), (SYS_read, fd, b, n))
SYSCALL_WRAPPER(ssize_t, pread, W_READ, (int fd, void *b, size_t n, off_t o), (fd, b, n, o),
                (SYS_pread64, fd, b, n, o))
SYSCALL_WRAPPER(ssize_t, pread64, W_READ, (int fd, void *b, size_t n, off_t o), (fd, b, n, o),
                (SYS_pread64, fd, b, n, o))
SYSCALL_WRAPPER(ssize_t, readv, W_READ, (int fd, const struct iovec *v, int n), (fd, v, n),
                (SYS_readv, fd, v, n))
SYSCALL_WRAPPER(ssize_t, preadv, W_READ, (int fd, const struct iovec *v, int n, off_t o), (fd, v, n, o),
                (SYS_preadv, fd, v, n, o, 0))
SYSCALL_WRAPPER(ssize_t, preadv64, W_READ, (int fd, const struct iovec *v, int n, off_t o), (fd, v, n, o),
                (SYS_preadv, fd, v, n, o, 0))
SYSCALL_WRAPPER(int, accept, W_WAIT, (int fd, __SOCKADDR_ARG a, socklen_t *l), (fd, a, l),
                (SYS_accept, fd, a.__sockaddr__, l))
SYSCALL_WRAPPER(int, accept4, W_WAIT, (int fd, __SOCKADDR_ARG a, socklen_t *l, int fl), (fd, a, l, fl),
                (SYS_accept4, fd, a.__sockaddr__, l, fl))
SYSCALL_WRAPPER(int, connect, W_WAIT, (int fd, __CONST_SOCKADDR_ARG a, socklen_t l), (fd, a, l),
                (SYS_connect, fd, a.__sockaddr__, l))
SYSCALL_WRAPPER(ssize_t, recv, W_WAIT, (int fd, void *b, size_t n, int fl), (fd, b, n, fl),
                (SYS_recvfrom, fd, b, n, fl, NULL, NULL))
SYSCALL_WRAPPER(ssize_t, recvfrom, W_WAIT, (int fd, void *b, size_t n, int fl, __SOCKADDR_ARG a, socklen_t *l),
                (fd, b, n, fl, a, l), (SYS_recvfrom, fd, b, n, fl, a.__sockaddr__, l))
SYSCALL_WRAPPER(ssize_t, recvmsg, W_WAIT, (int fd, struct msghdr *m, int fl), (fd, m, fl),
                (SYS_recvmsg, fd, m, fl))
SYSCALL_WRAPPER(ssize_t, send, W_WAIT, (int fd, const void *b, size_t n, int fl), (fd, b, n, fl),
                (SYS_sendto, fd, b, n, fl, NULL, 0))
SYSCALL_WRAPPER(ssize_t, sendto, W_WAIT,
                (int fd, const void *b, size_t n, int fl, __CONST_SOCKADDR_ARG a, socklen_t l),
                (fd, b, n, fl, a, l), (SYS_sendto, fd, b, n, fl, a.__sockaddr__, l))
SYSCALL_WRAPPER(ssize_t, sendmsg, W_WAIT, (int fd, const struct msghdr *m, int fl), (fd, m, fl),
                (SYS_sendmsg, fd, m, fl))
SYSCALL_WRAPPER(int, poll, W_WAIT, (struct pollfd *p, nfds_t n, int ms), (p, n, ms), (SYS_poll, p, n, ms))
SYSCALL_WRAPPER(int, ppoll, W_WAIT, (struct pollfd *p, nfds_t n, const struct timespec *t, const sigset_t *m),
                (p, n, t, m), (SYS_ppoll, p, n, t, m, (size_t)(_NSIG / 8)))
SYSCALL_WRAPPER(int, select, W_WAIT, (int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *t),
                (n, r, w, e, t), (SYS_select, n, r, w, e, t))
SYSCALL_WRAPPER(int, epoll_wait, W_WAIT, (int fd, struct epoll_event *ev, int n, int ms), (fd, ev, n, ms),
                (SYS_epoll_wait, fd, ev, n, ms))
SYSCALL_WRAPPER(int, epoll_pwait, W_WAIT, (int fd, struct epoll_event *ev, int n, int ms, const sigset_t *m),
                (fd, ev, n, ms, m), (SYS_epoll_pwait, fd, ev, n, ms, m, (size_t)(_NSIG / 8)))
SYSCALL_WRAPPER(pid_t, wait4, W_WAIT, (pid_t p, int *s, int o, struct rusage *r), (p, s, o, r),
                (SYS_wait4, p, s, o, r))
SYSCALL_WRAPPER(pid_t, waitpid, W_WAIT, (pid_t p, int *s, int o), (p, s, o), (SYS_wait4, p, s, o, NULL))
SYSCALL_WRAPPER(pid_t, wait, W_WAIT, (int *s), (s), (SYS_wait4, -1, s, 0, NULL))
SYSCALL_WRAPPER(int, waitid, W_WAIT, (idtype_t t, id_t i, siginfo_t *s, int o), (t, i, s, o),
                (SYS_waitid, t, i, s, o, NULL))

/* nanosleep: on EINTR the remaining time is the whole request. */
static void *real_nanosleep;
WEAK_HIDDEN int nanosleep(const struct timespec *req, struct timespec *rem) {
    if (UNLIKELY(errno_fault(W_WAIT) != 0)) {
        if (rem && req)
            *rem = *req;
        errno = EINTR;
        return -1;
    }
    int (*f)(const struct timespec *, struct timespec *) =
        (int (*)(const struct timespec *, struct timespec *))real(&real_nanosleep, "nanosleep");
    if (LIKELY(f != NULL))
        return f(req, rem);
    return (int)syscall(SYS_nanosleep, req, rem);
}

/* clock_nanosleep returns the error number; errno is left alone. */
static void *real_clock_nanosleep;
WEAK_HIDDEN int clock_nanosleep(clockid_t c, int fl, const struct timespec *req, struct timespec *rem) {
    if (UNLIKELY(errno_fault(W_WAIT) != 0)) {
        if (rem && req && !(fl & TIMER_ABSTIME))
            *rem = *req;
        return EINTR;
    }
    int (*f)(clockid_t, int, const struct timespec *, struct timespec *) =
        (int (*)(clockid_t, int, const struct timespec *, struct timespec *))real(&real_clock_nanosleep,
                                                                                  "clock_nanosleep");
    if (LIKELY(f != NULL))
        return f(c, fl, req, rem);
    long r = syscall(SYS_clock_nanosleep, c, fl, req, rem);
    return r < 0 ? errno : 0;
}

/* Opening: ENOSPC only when the call may create the file. */
static unsigned open_eligible(int flags) {
    return ERR_IO | ERR_INTR | ((flags & (O_CREAT | O_TMPFILE)) ? ERR_NOSPC : 0);
}

static mode_t open_mode(int flags, va_list ap) {
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

#define OPEN_WRAPPER(name)                                                                                       \
    static void *real_##name;                                                                                     \
    WEAK_HIDDEN int name(const char *path, int flags, ...) {                                                      \
        va_list ap;                                                                                               \
        va_start(ap, flags);                                                                                      \
        mode_t mode = open_mode(flags, ap);                                                                       \
        va_end(ap);                                                                                               \
        FAILS(open_eligible(flags));                                                                              \
        int (*f)(const char *, int, ...) = (int (*)(const char *, int, ...))real(&real_##name, #name);           \
        if (LIKELY(f != NULL))                                                                                    \
            return f(path, flags, mode);                                                                          \
        return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);                                             \
    }
OPEN_WRAPPER(open)
OPEN_WRAPPER(open64)

#define OPENAT_WRAPPER(name)                                                                                     \
    static void *real_##name;                                                                                     \
    WEAK_HIDDEN int name(int dir, const char *path, int flags, ...) {                                             \
        va_list ap;                                                                                               \
        va_start(ap, flags);                                                                                      \
        mode_t mode = open_mode(flags, ap);                                                                       \
        va_end(ap);                                                                                               \
        FAILS(open_eligible(flags));                                                                              \
        int (*f)(int, const char *, int, ...) = (int (*)(int, const char *, int, ...))real(&real_##name, #name); \
        if (LIKELY(f != NULL))                                                                                    \
            return f(dir, path, flags, mode);                                                                     \
        return (int)syscall(SYS_openat, dir, path, flags, mode);                                                  \
    }
OPENAT_WRAPPER(openat)
OPENAT_WRAPPER(openat64)

static void *real_creat;
WEAK_HIDDEN int creat(const char *path, mode_t mode) {
    FAILS(ERR_NOSPC | ERR_IO | ERR_INTR);
    int (*f)(const char *, mode_t) = (int (*)(const char *, mode_t))real(&real_creat, "creat");
    if (LIKELY(f != NULL))
        return f(path, mode);
    return (int)syscall(SYS_openat, AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

/* stdio: a failed write marks the stream's error, as a real one would. */
/* glibc's own names of these functions (exported by libc.so.6 and libc.a):
 * what a static executable calls. */
extern size_t _IO_fwrite(const void *, size_t, size_t, FILE *);
extern int _IO_fputs(const char *, FILE *);
extern int _IO_fflush(FILE *);

/* The errno a stdio write must fail with now (marking the stream), or 0. */
static int stdio_fault(FILE *stream) {
    int e = errno_fault(ERR_NOSPC | ERR_IO);
    if (UNLIKELY(e != 0) && stream != NULL)
        stream->_flags |= _IO_ERR_SEEN;
    return e;
}

#define STDIO_FAILS(stream, value)                                                                                \
    do {                                                                                                          \
        int e_ = stdio_fault(stream);                                                                             \
        if (UNLIKELY(e_ != 0)) {                                                                                  \
            errno = e_;                                                                                           \
            return value;                                                                                         \
        }                                                                                                         \
    } while (0)

static void *real_fwrite;
WEAK_HIDDEN size_t fwrite(const void *p, size_t size, size_t n, FILE *stream) {
    STDIO_FAILS(stream, 0);
    size_t (*f)(const void *, size_t, size_t, FILE *) =
        (size_t (*)(const void *, size_t, size_t, FILE *))real(&real_fwrite, "fwrite");
    return LIKELY(f != NULL) ? f(p, size, n, stream) : _IO_fwrite(p, size, n, stream);
}

static void *real_fputs;
WEAK_HIDDEN int fputs(const char *s, FILE *stream) {
    STDIO_FAILS(stream, EOF);
    int (*f)(const char *, FILE *) = (int (*)(const char *, FILE *))real(&real_fputs, "fputs");
    return LIKELY(f != NULL) ? f(s, stream) : _IO_fputs(s, stream);
}

static void *real_fflush;
WEAK_HIDDEN int fflush(FILE *stream) {
    STDIO_FAILS(stream, EOF);
    int (*f)(FILE *) = (int (*)(FILE *))real(&real_fflush, "fflush");
    return LIKELY(f != NULL) ? f(stream) : _IO_fflush(stream);
}
