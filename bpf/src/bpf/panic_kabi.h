/*
 * panic_kabi.h: the kernel/user boundary, defined once. The BPF programs
 * (panic.bpf.c) include it; their Rust loader gets the same types from the
 * libbpf-cargo skeleton (never from a hand copy); the runtime includes it for
 * the thread table it writes. Change anything here and bump PANIC_KABI_VERSION.
 *
 * Semantics (DESIGN §4 "Dwell"): every watched task is always in exactly one of
 * four states: on a CPU, waiting in a run queue, blocked on I/O, or blocked on
 * anything else. The BPF programs look at a task only when it leaves a CPU
 * (sched_switch; and at fork and exit): the interval since it last left is
 * off-CPU time until it arrived back (sched_info.last_arrival) and on-CPU time
 * since, and the growth of its run-delay count (sched_info.run_delay) is the
 * run-queue part of the off-CPU time, the rest blocked. Off-CPU time goes to
 * the site the task had published when it left, on-CPU time to the one it has
 * published now. So no program runs at wake-ups, and a switch costs one task
 * storage lookup. A kernel without CONFIG_SCHED_INFO gets the split from the
 * kernel's on-CPU clock instead, and a woken task's wait for a CPU stays in
 * its blocked time (preempted tasks still count as run-queue time). A task cannot change its
 * site while it is off the CPU, so off-CPU time (run queue and blocked) is
 * attributed to sites exactly. On-CPU time is attributed per slice, to the site
 * published when the slice ended; the profile derives the exact per-site on-CPU
 * time from the runtime's self time instead (see ARCHITECTURE.md).
 *
 * A program can miss an event (task storage is unavailable on a CPU while a
 * task storage update from user space is in progress there). Intervals then
 * merge; the kernel's own on-CPU clock (se.sum_exec_runtime, exact at every
 * scheduler event) splits a merged interval into its on-CPU and off-CPU parts,
 * so no time is lost, and the miss is counted.
 */
#ifndef PANIC_KABI_H
#define PANIC_KABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define PANIC_KABI_VERSION 7
/* "PANICKTH" little-endian: the loader writes it into the thread table. */
#define PANIC_KTHREADS_MAGIC 0x48544b43494e4150ULL
/* Slots in the thread table: one per runtime thread slot (the runtime checks
 * that this equals its PANIC_MAX_THREADS). */
#define PANIC_KTHREADS 256
/* A slot's site when its thread is in no instrumented region. */
#define PANIC_KNO_SITE 0xffffffffu

/* Budgeted regions a thread can be inside at once and have enforced (deeper
 * ones are counted in budgets_over and not enforced). */
#define PANIC_KBUDGETS 4

/* A budgeted region a thread is inside. */
struct panic_kbudget {
    __u32 site;  /* the region's entry site */
    __u32 depth; /* its depth in the thread's region stack: closing that depth pops it */
    __u64 since; /* CLOCK_MONOTONIC ns (bpf_ktime_get_ns's clock) when the thread entered it */
};

/* One runtime thread slot as the kernel sees it. Written only by the thread
 * that owns it (plain stores), read by the BPF programs; `fired` is also
 * written by the BPF programs (atomic or) and cleared bit by bit by the owner
 * (atomic and). */
struct panic_kthread {
    __u32 tid;       /* kernel tid of the owner, 0 = free */
    __u32 site;      /* innermost open region's site index, or PANIC_KNO_SITE */
    __u32 seq;       /* odd while the owner changes the budget stack (a seqlock for readers) */
    __u32 n_budgets; /* entries of `budget` in use, innermost last */
    __u32 fired;     /* bit i: the kernel acted on budget[i]; the owner clears it when it pushes budget[i] */
    __u32 reserved;
    struct panic_kbudget budget[PANIC_KBUDGETS];
};

/* The thread table: the only value of a one-entry BPF_F_MMAPABLE array, pinned
 * under the run's bpffs directory as "threads". The loader fills magic and
 * version before the target starts and passes the pin path in
 * CARGO_PANIC_KTHREADS; the runtime of the target's main executable maps it,
 * checks magic and version, and writes owner (its pid) before any slot. */
struct panic_kthreads {
    __u64 magic;
    __u32 version;
    __s32 owner;  /* tgid whose runtime writes the slots; the BPF side reads slots only for its tasks */
    __u64 claims; /* bumped (release) each time a slot gets a new tid: cached slot indexes are rechecked */
    __u64 budgets_over; /* budgeted regions entered with PANIC_KBUDGETS already open (not enforced) */
    struct panic_kthread slot[PANIC_KTHREADS];
};

/* Resources with a price (DESIGN §4 "Prices"): indexes into panic_prices.price. */
#define PANIC_RES_CPU 0
#define PANIC_RES_MEMORY 1
#define PANIC_RES_IO 2
#define PANIC_RES_NETWORK 3
#define PANIC_RES_DWELL 4
#define PANIC_RESOURCES 5
/* Prices are fixed point: the price of resource r is price[r] / PANIC_PRICE_ONE. */
#define PANIC_PRICE_ONE 1000000
/* "PANICPRC" little-endian: the loader writes it into the price map. */
#define PANIC_PRICES_MAGIC 0x43525043494e4150ULL

/* The price map: the only value of a one-entry BPF_F_MMAPABLE array pinned as
 * "prices" next to "threads" (mode 0600). The loader fills magic, version and
 * n_resources before the target starts; the controller (cargo-panic) writes
 * the prices every period under the seqlock `seq` (odd while writing);
 * programs read them through the runtime with plain loads, retrying while seq
 * is odd or changed. */
struct panic_prices {
    __u64 magic;
    __u32 version;     /* PANIC_KABI_VERSION */
    __u32 n_resources; /* PANIC_RESOURCES */
    __u64 seq;         /* 2 x the number of updates; odd during one */
    __u64 updated_ns;  /* CLOCK_MONOTONIC ns of the last update (0: none yet) */
    __u64 price[8];    /* fixed point (PANIC_PRICE_ONE); entries >= n_resources are 0 */
};

/* Fuses (DESIGN §4 "Fuse"): named checks a program makes (panic_fuse("name"))
 * to learn whether to shed that work now. The "fuses" map, pinned next to
 * "threads" (0600): the only value of a one-entry BPF_F_MMAPABLE array. The
 * loader writes magic, version, n and the names of the run's fuses (from the
 * run config) before the target starts; the controller sets and clears
 * `tripped`; the runtime looks names up and counts every ask (atomic adds). */
#define PANIC_FUSES 64
#define PANIC_FUSE_NAME 48
/* "PANICFUS" little-endian. */
#define PANIC_FUSES_MAGIC 0x53554643494e4150ULL

struct panic_fuse {
    char name[PANIC_FUSE_NAME]; /* NUL-terminated, written once by the loader */
    __u32 tripped;              /* 1 while the program should shed this work */
    __u32 reserved;
    __u64 asks;                 /* panic_fuse() calls with this name */
    __u64 sheds;                /* ... of them answered "shed" (tripped) */
};

struct panic_fuses {
    __u64 magic;
    __u32 version; /* PANIC_KABI_VERSION */
    __u32 n;       /* entries in use */
    __u64 unknown; /* asks with a name that is no entry's (answered "go on") */
    __u64 reserved;
    struct panic_fuse fuse[PANIC_FUSES];
};

/* Budget actions (panic_site_budget.action). */
#define PANIC_BUDGET_RECORD 1 /* an event only */
#define PANIC_BUDGET_SIGNAL 2 /* the signal `signal` to the thread over budget */

/* The budget of one site: the only value type of the "budgets" array (one
 * element per site of the manifest, plus one), pinned next to "threads". The
 * loader writes it before the target starts; the runtime reads it (which
 * regions to push on the budget stack; budgeted regions are never demoted)
 * and the BPF programs enforce it. */
struct panic_site_budget {
    __u64 budget_ns; /* 0: the site has no budget */
    __u32 action;    /* PANIC_BUDGET_* */
    __u32 signal;    /* for PANIC_BUDGET_SIGNAL (SIGKILL for kill) */
    __u32 hist;      /* the site's histogram index (the runtime pins it: never demoted) */
    __u32 reserved;
};

/* Who acted on an over-budget thread (panic_budget_event.by). */
#define PANIC_BY_KERNEL 1 /* the BPF program signalled it (it was on a CPU) */
#define PANIC_BY_LOADER 2 /* it was off-CPU, where the kernel cannot signal from
                           * interrupt context: the loader signals it on this event */
#define PANIC_BY_NOBODY 3 /* record only */

/* One over-budget thread (ring buffer "events"): at most one per budget entry
 * of a thread, i.e. per region activation. */
struct panic_budget_event {
    __u64 at;        /* bpf_ktime_get_ns() when the kernel saw it */
    __u64 since;     /* when the thread entered the region */
    __u64 budget_ns;
    __u32 tid;
    __u32 pid;
    __u32 site;
    __u32 action;    /* PANIC_BUDGET_* */
    __u32 signal;
    __u32 by;        /* PANIC_BY_* */
    __s32 result;    /* what the signal helper returned (0: queued) */
    __u32 reserved;
};

/* What a task or a site spent its time on, in nanoseconds. */
struct panic_time {
    __u64 cpu_ns;     /* on a CPU (for a site: slices that ended while it was published) */
    __u64 runq_ns;    /* runnable, waiting for a CPU (after a wakeup or a preemption) */
    __u64 blocked_ns; /* sleeping, I/O included */
    __u64 io_ns;      /* the part of blocked_ns the kernel marked as I/O wait */
};

/* The optional syscall path: count and time per system call number over all
 * watched tasks, in a per-CPU array of PANIC_SYSCALLS elements (numbers at or
 * above it are counted in the last element). */
#define PANIC_SYSCALLS 512
struct panic_syscall {
    __u64 count;
    __u64 ns; /* from sys_enter to sys_exit (time blocked inside included) */
};

/* Task states (panic_task.state). */
#define PANIC_TS_ONCPU 1
#define PANIC_TS_RUNQ 2
#define PANIC_TS_BLOCKED 3
#define PANIC_TS_IO 4
#define PANIC_TS_DEAD 5 /* passed sched_process_exit: its books are closed */
/* Never accounted: only passes watching on to the tasks it creates (the
 * loader's own thread while it starts the target). */
#define PANIC_TS_CARRIER 6

/* Per-task accounting, kept in task storage while the task lives (its existence
 * is what "watched" means) and copied to the `exited` hash map (key: tid) at
 * sched_process_exit, before the task's parent can learn that it exited. */
/* Socket bytes of the watched tasks (network path), per CPU. */
struct panic_net {
    __u64 sent;
    __u64 received;
};

struct panic_task {
    struct panic_time t;
    __u64 nvcsw;   /* voluntary context switches (the kernel's count) */
    __u64 nivcsw;  /* involuntary ones */
    __u64 min_flt; /* page faults without I/O */
    __u64 maj_flt; /* page faults that read from disk */
    __u64 since;   /* bpf_ktime_get_ns() at its last switch-out (0: none seen yet) */
    __u64 started; /* when the task was first seen (fork or watch) */
    __u64 ended;   /* when it passed sched_process_exit (0 while alive) */
    __u64 exec;    /* the kernel's se.sum_exec_runtime at `since` */
    __u32 tgid;
    __u32 tid;
    __u32 state;   /* PANIC_TS_*: how it left the CPU last (or DEAD) */
    __u32 site;    /* site published when it left: its off-CPU time goes there */
    __u32 kslot;   /* thread table slot + 1 that named this tid; 0 = not found yet */
    __u32 kclaims; /* low 32 bits of claims + 1 when the table was last searched */
    __u32 missed;  /* scheduler events of this task the programs did not see */
    __u32 sys_nr;  /* syscall path: the call it is in while switched out */
    __u64 sys_since; /* when it entered it; 0 when not in one */
    __u64 run_delay; /* sched_info.run_delay at the last switch-out */
    /* Time for `pend_site` not yet added to the shared per-site array: a
     * task's time goes there only when its site changes (and at exit), so
     * a thread that keeps switching in the same region costs no atomic add. */
    struct panic_time pend;
    __u32 pend_site;
    __u32 pad;
    char comm[16];
};

#endif
