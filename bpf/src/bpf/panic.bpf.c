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

/* Syscall sampling (the loader attaches the syscall path in windows): when
 * the current window was attached (bpf_ktime_get_ns); a call that began
 * before it began in an earlier window and is not counted. 0 when the path
 * stays attached. Written by the loader. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} sys_window SEC(".maps");

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
    if (ts && ts->state < PANIC_TS_DEAD)
        check_current(ts, now); /* the current task: on this CPU */
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

/* Adds the task's pending per-site time to the shared per-site array. */
static void flush_site(struct panic_task *ts)
{
    struct panic_time *p = &ts->pend;
    if ((p->cpu_ns | p->runq_ns | p->blocked_ns) == 0)
        return;
    struct panic_time *st = site_time(ts->pend_site);
    if (st) {
        if (p->cpu_ns)
            __sync_fetch_and_add(&st->cpu_ns, p->cpu_ns);
        if (p->runq_ns)
            __sync_fetch_and_add(&st->runq_ns, p->runq_ns);
        if (p->blocked_ns)
            __sync_fetch_and_add(&st->blocked_ns, p->blocked_ns);
        if (p->io_ns)
            __sync_fetch_and_add(&st->io_ns, p->io_ns);
    }
    p->cpu_ns = 0;
    p->runq_ns = 0;
    p->blocked_ns = 0;
    p->io_ns = 0;
}

/* Adds `d` ns of the kind `state` names to the task and to `site` (through
 * the task's pending time: see panic_task.pend). */
static void add_time(struct panic_task *ts, __u32 state, __u32 site, __u64 d)
{
    if (d == 0)
        return;
    if (site != ts->pend_site) {
        flush_site(ts);
        ts->pend_site = site;
    }
    struct panic_time *p = &ts->pend;
    switch (state) {
    case PANIC_TS_ONCPU:
        ts->t.cpu_ns += d;
        p->cpu_ns += d;
        break;
    case PANIC_TS_RUNQ:
        ts->t.runq_ns += d;
        p->runq_ns += d;
        break;
    case PANIC_TS_IO:
        ts->t.io_ns += d;
        p->io_ns += d;
        /* fall through: I/O wait is blocked time too */
    case PANIC_TS_BLOCKED:
        ts->t.blocked_ns += d;
        p->blocked_ns += d;
        break;
    default:
        break;
    }
}

/* The clock of the run queue task `p` is on (rq->clock, which sched_info
 * stamps arrivals with; fresh at sched_switch: the scheduler updates it
 * first), reached through p's CFS run queue; 0 when the kernel does not link
 * them (no CONFIG_FAIR_GROUP_SCHED). (The per-CPU `runqueues` symbol is not
 * in kallsyms on every kernel, so a ksym cannot be relied on.) */
static __always_inline __u64 rq_clock_of(struct task_struct *p)
{
    if (!bpf_core_field_exists(p->se.cfs_rq) || !bpf_core_field_exists(struct cfs_rq, rq))
        return 0;
    struct cfs_rq *c = p->se.cfs_rq;
    if (!c)
        return 0;
    struct rq *rq = c->rq;
    return rq ? rq->clock : 0;
}

/* Per CPU: the monotonic clock minus this CPU's scheduler clock, as last
 * seen at a switch (for exits, where rq->clock can be a tick old). */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __s64);
} clock_skew SEC(".maps");

/* Whether this kernel keeps sched_info (CONFIG_SCHED_INFO): each task's
 * last arrival on a CPU and its total wait in run queues. */
static __always_inline bool have_sched_info(struct task_struct *p)
{
    return bpf_core_field_exists(p->sched_info.last_arrival);
}

/* Starts a task's books at `now` (its first switch-out seen). */
static void open_books(struct panic_task *ts, struct task_struct *p, __u64 now, __u64 exec)
{
    if (ts->started == 0)
        ts->started = now;
    ts->since = now;
    ts->exec = exec;
    if (have_sched_info(p))
        ts->run_delay = p->sched_info.run_delay;
}

/* Closes a task's books since its last switch-out (`ts->since`) at `now`,
 * while it runs: it was off the CPU, in the state and for the site recorded
 * then, until it arrived on this CPU at `arrived` (monotonic, from
 * sched_info), and on it since, for `site`. The kernel's run-delay count
 * grew by its wait in a run queue meanwhile: that much of the off-CPU time
 * is run-queue time, the rest blocked (all of it run-queue time for a task
 * that was preempted). `exec`, the kernel's on-CPU total, shows a switch-out
 * the programs missed: more on-CPU time than the last slice holds. Only the
 * outgoing task is looked at on each switch, which is what keeps a switch
 * to one task-storage lookup. */
static __always_inline void close_books(struct panic_task *ts, struct task_struct *p,
                                        __u64 now, __u64 arrived, __u64 exec, __u32 site)
{
    __u64 wall = now - ts->since;
    __u64 ran = exec > ts->exec ? exec - ts->exec : 0;
    __u64 on;
    if (arrived == 0)
        on = ran < wall ? ran : wall; /* no arrival time: the kernel's on-CPU clock */
    else
        on = arrived > ts->since && arrived < now ? now - arrived : wall;
    if (ran > on + 20000 && on < wall) {
        /* Slices before this one: a switch-out was missed. */
        ts->missed++;
        on = ran < wall ? ran : wall;
    }
    __u64 off = wall - on;
    __u64 q = 0;
    if (have_sched_info(p)) {
        __u64 rd = p->sched_info.run_delay;
        q = rd > ts->run_delay ? rd - ts->run_delay : 0;
        ts->run_delay = rd;
    }
    if (q > off || ts->state == PANIC_TS_RUNQ)
        q = off;
    add_time(ts, PANIC_TS_RUNQ, ts->site, q);
    add_time(ts, ts->state, ts->site, off - q);
    add_time(ts, PANIC_TS_ONCPU, site, on);
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
        __u64 exec = prev->se.sum_exec_runtime;
        if (ts->since == 0) {
            open_books(ts, prev, now, exec);
        } else {
            __u64 arrived = 0;
            __u64 clock = have_sched_info(prev) ? rq_clock_of(prev) : 0;
            if (clock != 0) {
                __s64 skew = (__s64)(now - clock);
                __s64 *sk = bpf_map_lookup_elem(&clock_skew, &zero);
                if (sk)
                    *sk = skew;
                arrived = prev->sched_info.last_arrival + skew;
            }
            close_books(ts, prev, now, arrived, exec, site);
        }
        ts->site = site;
        if (preempt || prev_state == 0)
            ts->state = PANIC_TS_RUNQ;
        else if (BPF_CORE_READ_BITFIELD(prev, in_iowait))
            ts->state = PANIC_TS_IO;
        else
            ts->state = PANIC_TS_BLOCKED;
    }
    if (cpu) {
        /* The syscall path's per-CPU view needs the incoming task. */
        ts = bpf_task_storage_get(&tasks, next, 0, 0);
        if (ts && ts->state < PANIC_TS_DEAD) {
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
    ts->exec = child->se.sum_exec_runtime;
    if (have_sched_info(child))
        ts->run_delay = child->sched_info.run_delay;
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
    __u32 site = published_site(ts);
    if (ts->since == 0) {
        /* Never switched out while watched: nothing to close. */
        ts->started = ts->started ? ts->started : now;
    } else {
        /* rq->clock can be a tick old here: convert the arrival with the
         * skew of this CPU's last switch, when there was one. */
        __u64 arrived = 0;
        __u64 clock = have_sched_info(p) ? rq_clock_of(p) : 0;
        if (clock != 0) {
            __u32 zero = 0;
            __s64 *sk = bpf_map_lookup_elem(&clock_skew, &zero);
            __s64 skew = sk && *sk ? *sk : (__s64)(now - clock);
            arrived = p->sched_info.last_arrival + skew;
        }
        /* sum_exec_runtime can lag by the current slice here (no tick on
         * a tickless CPU): it only serves to spot missed switch-outs. */
        close_books(ts, p, now, arrived, p->se.sum_exec_runtime, site);
    }
    flush_site(ts);
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
 * lookup), and per call number count and time. The raw syscall tracepoints
 * are the one way in that sees every call here (fentry on the x64_sys_call
 * dispatcher is refused with EPERM on the kernel measured); while attached
 * they send every system call of the machine down the kernel's slow entry
 * path. */
static __always_inline void sys_begin(__u32 nr)
{
    __u32 zero = 0;
    struct panic_cpu *cpu = bpf_map_lookup_elem(&cpu_cur, &zero);
    if (!cpu || cpu->tid == 0 || cpu->tid != (__u32)bpf_get_current_pid_tgid())
        return;
    cpu->sys_nr = nr;
    cpu->sys_since = bpf_ktime_get_ns();
}

static __always_inline void sys_end(void)
{
    __u32 zero = 0;
    struct panic_cpu *cpu = bpf_map_lookup_elem(&cpu_cur, &zero);
    if (!cpu || cpu->tid == 0 || cpu->sys_since == 0 || cpu->tid != (__u32)bpf_get_current_pid_tgid())
        return;
    __u64 *window = bpf_map_lookup_elem(&sys_window, &zero);
    if (window && cpu->sys_since < *window) {
        cpu->sys_since = 0;
        return;
    }
    __u32 nr = cpu->sys_nr < PANIC_SYSCALLS ? cpu->sys_nr : PANIC_SYSCALLS - 1;
    struct panic_syscall *sc = bpf_map_lookup_elem(&syscalls, &nr);
    if (sc) {
        sc->count++;
        sc->ns += bpf_ktime_get_ns() - cpu->sys_since;
    }
    cpu->sys_since = 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(panic_sys_enter, struct pt_regs *regs, long id)
{
    sys_begin((__u32)id);
    return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(panic_sys_exit, struct pt_regs *regs, long ret)
{
    sys_end();
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
