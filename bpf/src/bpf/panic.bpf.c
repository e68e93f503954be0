// SPDX-License-Identifier: GPL-2.0
/*
 * panic.bpf.c: per-task and per-site time accounting for the watched tasks
 * (DESIGN §4 "Dwell"). The types are in panic_kabi.h; this file is only logic.
 *
 * Watched = has an entry in the `tasks` task storage. The loader creates the
 * first one (the target, through a pidfd, before it runs); sched_process_fork
 * gives every thread or process a watched task creates its own. Unwatched tasks
 * cost one failed storage lookup per event.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "panic_kabi.h"

char LICENSE[] SEC("license") = "GPL";

/* Sites in the program's manifest; the per-site array has one more element,
 * the last, for time spent outside every region. Set by the loader. */
const volatile __u32 n_sites = 0;

/* Whether the syscall path runs (set by the loader, with its programs). */
const volatile __u32 syscall_path = 0;

/* Whether any site has a budget (set by the loader). */
const volatile __u32 have_budgets = 0;
/* How long past its budget a thread that is off-CPU is left before the
 * table scan acts: a thread that is on a CPU is caught by that CPU's own tick
 * first, which can signal it directly. */
const volatile __u64 scan_grace_ns = 2000000;

/* Exited tasks that did not fit in `exited` (it is full). */
__u64 lost_tasks = 0;
/* Budget events that did not fit in the ring buffer. */
__u64 lost_events = 0;
/* Never written: it makes the skeleton carry the event type (a ring buffer
 * has no value type of its own). */
struct panic_budget_event event_layout = {};

struct {
    __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, struct panic_task);
} tasks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct panic_kthreads);
} kthreads SEC(".maps");

/* n_sites + 1 elements (the loader sizes it); mmapable so the loader reads it
 * without a syscall per site. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct panic_time);
} sites SEC(".maps");

/* Written by the controller in user space, read by programs through the
 * runtime; no program here uses it, the object only defines it. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct panic_prices);
} prices SEC(".maps");

/* Fuses: written by the loader and the controller, counted by the runtime. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct panic_fuses);
} fuses SEC(".maps");

/* n_sites + 1 elements (the loader sizes and fills it). */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct panic_site_budget);
} budgets SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, PANIC_SYSCALLS);
    __type(key, __u32);
    __type(value, struct panic_syscall);
} syscalls SEC(".maps");

/* The syscall path's per-CPU view of the task on the CPU: the scheduler
 * programs keep `tid` set to the current task when it is watched (0
 * otherwise) and move its in-flight call to and from its task storage when it
 * switches, so the syscall programs need no task storage lookup. */
struct panic_cpu {
    __u32 tid;
    __u32 sys_nr;
    __u64 sys_since;
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct panic_cpu);
} cpu_cur SEC(".maps");

/* The network path's byte counts (one element, per CPU: no atomics). */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct panic_net);
} net SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, __u32);
    __type(value, struct panic_task);
} exited SEC(".maps");

static struct panic_kthreads *table(void)
{
    __u32 zero = 0;
    return bpf_map_lookup_elem(&kthreads, &zero);
}

/* The task's slot in the thread table, or NULL. Only the owner process's
 * tasks have slots. A task's slot index is cached; the table is searched
 * again only when a slot was claimed since the last search. */
static struct panic_kthread *own_slot(struct panic_kthreads *kt, struct panic_task *ts)
{
    if (!kt || kt->owner == 0 || (__u32)kt->owner != ts->tgid)
        return NULL;
    __u32 k = ts->kslot;
    if (k > 0 && k <= PANIC_KTHREADS && kt->slot[k - 1].tid == ts->tid)
        return &kt->slot[k - 1];
    /* Stored as claims + 1, so 0 means "never searched". (A volatile load:
     * this clang has no BPF acquire loads; on x86 every load is one.) */
    __u32 stamp = (__u32)*(volatile __u64 *)&kt->claims + 1;
    if (ts->kclaims == stamp)
        return NULL;
    ts->kclaims = stamp;
    ts->kslot = 0;
    for (__u32 i = 0; i < PANIC_KTHREADS; i++) {
        if (kt->slot[i].tid == ts->tid) {
            ts->kslot = i + 1;
            return &kt->slot[i];
        }
    }
    return NULL;
}

/* The site a task has published in the thread table, or PANIC_KNO_SITE. */
static __u32 published_site(struct panic_task *ts)
{
    struct panic_kthread *ks = own_slot(table(), ts);
    return ks ? ks->site : PANIC_KNO_SITE;
}

/* Acts on the budgets of thread slot `ks` whose time is up by more than
 * `grace` ns. `on_cpu`: the thread is the current task here, so the kernel can
 * signal it itself; otherwise the event asks the loader to. Each budget entry
 * (one region activation) is acted on once: its `fired` bit. */
static void check_budgets(struct panic_kthread *ks, __u32 pid, __u64 now, bool on_cpu, __u64 grace)
{
    __u32 seq = *(volatile __u32 *)&ks->seq;
    if (seq & 1)
        return; /* the owner is changing the stack: next tick */
    __u32 n = ks->n_budgets;
    __u32 tid = ks->tid;
    for (__u32 i = 0; i < PANIC_KBUDGETS; i++) {
        if (i >= n)
            break;
        if (ks->fired & (1u << i))
            continue;
        __u32 site = ks->budget[i].site;
        __u64 since = ks->budget[i].since;
        struct panic_site_budget *sb = bpf_map_lookup_elem(&budgets, &site);
        if (!sb || sb->budget_ns == 0 || now < since || now - since <= sb->budget_ns + grace)
            continue;
        if (*(volatile __u32 *)&ks->seq != seq)
            return; /* read while it changed */
        if (__sync_fetch_and_or(&ks->fired, 1u << i) & (1u << i))
            continue; /* another CPU acted first */
        if (*(volatile __u32 *)&ks->seq != seq) {
            /* The owner popped and pushed meanwhile: the bit may now belong
             * to a new activation (just begun, so not over budget). */
            __sync_fetch_and_and(&ks->fired, ~(1u << i));
            return;
        }
        __u32 by = PANIC_BY_NOBODY;
        long result = 0;
        if (sb->action == PANIC_BUDGET_SIGNAL) {
            by = PANIC_BY_LOADER;
            if (on_cpu) {
                result = bpf_send_signal_thread(sb->signal);
                if (result == 0)
                    by = PANIC_BY_KERNEL;
            }
        }
        struct panic_budget_event *e = bpf_ringbuf_reserve(&events, sizeof *e, 0);
        if (!e) {
            __sync_fetch_and_add(&lost_events, 1);
            continue;
        }
        e->at = now;
        e->since = since;
        e->budget_ns = sb->budget_ns;
        e->tid = tid;
        e->pid = pid;
        e->site = site;
        e->action = sb->action;
        e->signal = sb->signal;
        e->by = by;
        e->result = (__s32)result;
        e->reserved = 0;
        bpf_ringbuf_submit(e, 0);
    }
}

/* The budgets of the current task, when it is watched and has a slot. */
static void check_current(struct panic_task *ts, __u64 now)
{
    struct panic_kthreads *kt = table();
    struct panic_kthread *ks = own_slot(kt, ts);
    if (ks && ks->n_budgets)
        check_budgets(ks, ts->tgid, now, true, 0);
}

struct scan_ctx {
    __u64 now;
    struct panic_kthreads *kt;
};

static long scan_slot(__u32 i, struct scan_ctx *c)
{
    struct panic_kthreads *kt = c->kt;
    if (!kt || i >= PANIC_KTHREADS)
        return 1;
    struct panic_kthread *ks = &kt->slot[i];
    if (ks->tid != 0 && ks->n_budgets != 0)
        check_budgets(ks, (__u32)kt->owner, c->now, false, scan_grace_ns);
    return 0;
}

/* Every millisecond on every CPU while budgets exist (a cpu-clock perf
 * event): the current task's budgets, so a pure busy loop is caught within
 * a tick of its budget and signalled by the kernel; and on CPU 0 a scan of
 * the whole table for threads that are off-CPU past their budget. */
SEC("perf_event")
int panic_tick(struct bpf_perf_event_data *ctx)
{
    __u64 now = bpf_ktime_get_ns();
    struct task_struct *cur = bpf_get_current_task_btf();
    struct panic_task *ts = bpf_task_storage_get(&tasks, cur, 0, 0);
    if (ts && ts->state == PANIC_TS_ONCPU)
        check_current(ts, now);
    if (bpf_get_smp_processor_id() != 0)
        return 0;
    struct scan_ctx c = {.now = now, .kt = table()};
    if (!c.kt || c.kt->owner == 0)
        return 0;
    /* bpf_loop: the verifier checks the body once, not 256 times. */
    bpf_loop(PANIC_KTHREADS, scan_slot, &c, 0);
    return 0;
}

static struct panic_time *site_time(__u32 site)
{
    __u32 idx = site < n_sites ? site : n_sites;
    return bpf_map_lookup_elem(&sites, &idx);
}

/* Adds `d` ns of the kind `state` names to the task and to `site`. */
static void add_time(struct panic_task *ts, __u32 state, __u32 site, __u64 d)
{
    if (d == 0)
        return;
    struct panic_time *st = site_time(site);
    switch (state) {
    case PANIC_TS_ONCPU:
        ts->t.cpu_ns += d;
        if (st)
            __sync_fetch_and_add(&st->cpu_ns, d);
        break;
    case PANIC_TS_RUNQ:
        ts->t.runq_ns += d;
        if (st)
            __sync_fetch_and_add(&st->runq_ns, d);
        break;
    case PANIC_TS_IO:
        ts->t.io_ns += d;
        if (st)
            __sync_fetch_and_add(&st->io_ns, d);
        /* fall through: I/O wait is blocked time too */
    case PANIC_TS_BLOCKED:
        ts->t.blocked_ns += d;
        if (st)
            __sync_fetch_and_add(&st->blocked_ns, d);
        break;
    default:
        break;
    }
}

/* Whether this kernel counts each task's run-queue wait (CONFIG_SCHED_INFO). */
static __always_inline bool have_run_delay(struct task_struct *p)
{
    return bpf_core_field_exists(p->sched_info.run_delay);
}

/* Off-CPU time of `state` for `site`: with the kernel's run delay, kept until
 * settle_off can split it; without, added as the state it began in. */
static void add_off(struct panic_task *ts, struct task_struct *p, __u32 state, __u32 site, __u64 d)
{
    if (!have_run_delay(p)) {
        add_time(ts, state, site, d);
        return;
    }
    ts->off_ns += d;
    ts->off_state = state;
    ts->off_site = site;
}

/* Splits the off-CPU time kept by add_off, now that the task runs and the
 * kernel has added its last wait for a CPU to its run delay: that growth is
 * run-queue time, the rest blocked (all of it run-queue time for a task that
 * was preempted: it never left the run queue). The two clocks differ a little,
 * so the growth is capped at the time off-CPU. */
static void settle_off(struct panic_task *ts, struct task_struct *p)
{
    if (!have_run_delay(p))
        return;
    __u64 rd = BPF_CORE_READ(p, sched_info.run_delay);
    __u64 off = ts->off_ns;
    if (off != 0) {
        __u64 q = rd > ts->run_delay ? rd - ts->run_delay : 0;
        if (q > off || ts->off_state == PANIC_TS_RUNQ)
            q = off;
        add_time(ts, PANIC_TS_RUNQ, ts->off_site, q);
        add_time(ts, ts->off_state, ts->off_site, off - q);
        ts->off_ns = 0;
    }
    ts->run_delay = rd;
}

/* Closes the task's current interval at `now`; `exec` is the kernel's
 * cumulative on-CPU time of the task, exact at scheduler events, and `site`
 * the site on-CPU time goes to. Normally the interval is all of one kind (the
 * state's). When events were missed it is split: the growth of `exec` is
 * on-CPU time, the rest is off-CPU time of the recorded kind (run-queue time
 * when the task was thought to be on a CPU). */
static void close_interval(struct panic_task *ts, struct task_struct *p, __u64 now, __u64 exec,
                           __u32 site, bool running_now)
{
    __u64 wall = now - ts->since;
    __u64 ran = exec - ts->exec;
    if (ran > wall)
        ran = wall;
    if (ts->state == PANIC_TS_ONCPU && running_now) {
        add_time(ts, PANIC_TS_ONCPU, site, wall);
    } else if (ts->state == PANIC_TS_ONCPU) {
        /* Switching in while thought on a CPU: its switch-out was missed. */
        ts->missed++;
        add_time(ts, PANIC_TS_ONCPU, site, ran);
        add_time(ts, PANIC_TS_RUNQ, ts->site, wall - ran);
    } else if (ts->state != 0) {
        /* Off-CPU; it can have run only if events were missed. */
        if (ran > 0 || running_now)
            ts->missed++;
        add_time(ts, PANIC_TS_ONCPU, site, ran);
        add_off(ts, p, ts->state, ts->site, wall - ran);
    }
    ts->since = now;
    ts->exec = exec;
}

static void copy_counts(struct panic_task *ts, struct task_struct *p)
{
    ts->nvcsw = p->nvcsw;
    ts->nivcsw = p->nivcsw;
    ts->min_flt = p->min_flt;
    ts->maj_flt = p->maj_flt;
    bpf_probe_read_kernel_str(ts->comm, sizeof ts->comm, p->comm);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(panic_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
             unsigned int prev_state)
{
    __u64 now = bpf_ktime_get_ns();
    __u32 zero = 0;
    struct panic_cpu *cpu = syscall_path ? bpf_map_lookup_elem(&cpu_cur, &zero) : NULL;
    struct panic_task *ts = bpf_task_storage_get(&tasks, prev, 0, 0);
    if (cpu) {
        /* prev's call in flight (it blocks inside it) goes with prev. */
        if (ts && cpu->tid == ts->tid) {
            ts->sys_nr = cpu->sys_nr;
            ts->sys_since = cpu->sys_since;
        }
        cpu->tid = 0;
    }
    if (ts && ts->state < PANIC_TS_DEAD) {
        if (have_budgets)
            check_current(ts, now);
        __u32 site = published_site(ts);
        settle_off(ts, prev);
        close_interval(ts, prev, now, prev->se.sum_exec_runtime, site, true);
        ts->site = site;
        if (preempt || prev_state == 0)
            ts->state = PANIC_TS_RUNQ;
        else if (BPF_CORE_READ_BITFIELD(prev, in_iowait))
            ts->state = PANIC_TS_IO;
        else
            ts->state = PANIC_TS_BLOCKED;
    }
    ts = bpf_task_storage_get(&tasks, next, 0, 0);
    if (ts && ts->state < PANIC_TS_DEAD) {
        if (ts->started == 0)
            ts->started = now;
        close_interval(ts, next, now, next->se.sum_exec_runtime, ts->site, false);
        ts->state = PANIC_TS_ONCPU;
        if (cpu) {
            cpu->tid = ts->tid;
            cpu->sys_nr = ts->sys_nr;
            cpu->sys_since = ts->sys_since;
        }
    }
    return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(panic_fork, struct task_struct *parent, struct task_struct *child)
{
    if (!bpf_task_storage_get(&tasks, parent, 0, 0))
        return 0;
    struct panic_task *ts = bpf_task_storage_get(&tasks, child, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!ts)
        return 0;
    ts->tgid = child->tgid;
    ts->tid = child->pid;
    ts->site = PANIC_KNO_SITE;
    /* New, it waits in a run queue until it first runs. */
    __u64 now = bpf_ktime_get_ns();
    ts->started = now;
    ts->since = now;
    ts->state = PANIC_TS_RUNQ;
    if (have_run_delay(child))
        ts->run_delay = BPF_CORE_READ(child, sched_info.run_delay);
    return 0;
}

/* The task is current and about to die: close its books here, before its
 * parent can be told (so a waiting loader always finds them). The few
 * microseconds of exit work after this point are not counted. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(panic_exit, struct task_struct *p, bool group_dead)
{
    struct panic_task *ts = bpf_task_storage_get(&tasks, p, 0, 0);
    if (!ts || ts->state >= PANIC_TS_DEAD)
        return 0;
    __u64 now = bpf_ktime_get_ns();
    /* Running: se.sum_exec_runtime may lag by a tick here, the clock does not. */
    __u64 exec = ts->exec;
    if (ts->state != PANIC_TS_ONCPU) {
        /* Its switch-in was missed, yet it runs (it is exiting). What it ran
         * since: sum_exec_runtime, which can be stale by the whole current
         * slice (no tick updates it on a tickless CPU, measured here: a 200 ms
         * spin read as 15 ms), plus that slice, from exec_start (the
         * scheduler's clock; close_interval clamps to the wall time). */
        __u64 start = p->se.exec_start;
        exec = p->se.sum_exec_runtime;
        if (start != 0 && start < now)
            exec += now - start;
    }
    settle_off(ts, p);
    close_interval(ts, p, now, exec, published_site(ts), true);
    copy_counts(ts, p);
    ts->ended = now;
    ts->state = PANIC_TS_DEAD;
    __u32 tid = ts->tid;
    if (bpf_map_update_elem(&exited, &tid, ts, BPF_ANY) != 0)
        __sync_fetch_and_add(&lost_tasks, 1);
    return 0;
}

/* The syscall path (loaded only when the loader asks for it): the call the
 * current watched task is in, from the per-CPU view (no task storage
 * lookup), and per call number count and time. */
SEC("tp_btf/sys_enter")
int BPF_PROG(panic_sys_enter, struct pt_regs *regs, long id)
{
    __u32 zero = 0;
    struct panic_cpu *cpu = bpf_map_lookup_elem(&cpu_cur, &zero);
    if (!cpu || cpu->tid == 0 || cpu->tid != (__u32)bpf_get_current_pid_tgid())
        return 0;
    cpu->sys_nr = (__u32)id;
    cpu->sys_since = bpf_ktime_get_ns();
    return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(panic_sys_exit, struct pt_regs *regs, long ret)
{
    __u32 zero = 0;
    struct panic_cpu *cpu = bpf_map_lookup_elem(&cpu_cur, &zero);
    if (!cpu || cpu->tid == 0 || cpu->sys_since == 0 || cpu->tid != (__u32)bpf_get_current_pid_tgid())
        return 0;
    __u32 nr = cpu->sys_nr < PANIC_SYSCALLS ? cpu->sys_nr : PANIC_SYSCALLS - 1;
    struct panic_syscall *sc = bpf_map_lookup_elem(&syscalls, &nr);
    if (sc) {
        sc->count++;
        sc->ns += bpf_ktime_get_ns() - cpu->sys_since;
    }
    cpu->sys_since = 0;
    return 0;
}

/* The network path (loaded only when the loader asks for it): bytes a
 * watched task sent or received on a socket, whatever the call (send, write,
 * sendmsg, recv, read, ...): the kernel reports each socket transfer's
 * length at these tracepoints. */
static __always_inline void count_net(int ret, int received)
{
    if (ret <= 0)
        return;
    if (!bpf_task_storage_get(&tasks, bpf_get_current_task_btf(), 0, 0))
        return;
    __u32 zero = 0;
    struct panic_net *n = bpf_map_lookup_elem(&net, &zero);
    if (!n)
        return;
    if (received)
        n->received += ret;
    else
        n->sent += ret;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(panic_sock_send, struct sock *sk, int ret, int flags)
{
    count_net(ret, 0);
    return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(panic_sock_recv, struct sock *sk, int ret, int flags)
{
    count_net(ret, 1);
    return 0;
}
