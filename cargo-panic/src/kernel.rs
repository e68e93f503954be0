//! The profile's kernel section: what `panic-bpf` saw of a run, joined with the
//! runtime's per-region self time. Pure: built from data.
//!
//! Per site, the kernel attributes every off-CPU interval (run queue, blocked,
//! I/O) to the region the thread had published, exactly: a thread cannot
//! change its region while it is off a CPU. On-CPU time per site is the
//! region's self time (the runtime's clock: its duration minus its timed
//! children's) minus that off-CPU time. (The kernel can only attribute whole
//! slices, and a slice often spans several regions.) Time outside every
//! region is what remains of the task totals.

use panic_bpf::{ActedBy, BudgetEvent, BudgetSpec, KernelReport, TaskTimes, Times};
use panic_runtime::segment::Snapshot;
use serde::{Deserialize, Serialize};

use crate::budget::Action;
use crate::manifest::Manifest;

/// Nanoseconds by what a task was doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelTimes {
    pub cpu_ns: u64,
    pub runq_ns: u64,
    /// Sleeping, I/O included.
    pub blocked_ns: u64,
    /// The part of `blocked_ns` the kernel marked as I/O wait.
    pub io_ns: u64,
}

impl From<Times> for KernelTimes {
    fn from(t: Times) -> Self {
        KernelTimes {
            cpu_ns: t.cpu_ns,
            runq_ns: t.runq_ns,
            blocked_ns: t.blocked_ns,
            io_ns: t.io_ns,
        }
    }
}

impl KernelTimes {
    fn add(&mut self, o: &KernelTimes) {
        self.cpu_ns += o.cpu_ns;
        self.runq_ns += o.runq_ns;
        self.blocked_ns += o.blocked_ns;
        self.io_ns += o.io_ns;
    }
}

/// One site's time (timed regions only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteKernel {
    /// The region's self time: inside it and in none of its timed children.
    pub self_ns: u64,
    #[serde(flatten)]
    pub times: KernelTimes,
}

/// One watched thread, from its first scheduler event to its exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelTask {
    pub tid: u32,
    pub pid: u32,
    pub comm: String,
    #[serde(flatten)]
    pub times: KernelTimes,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    pub minor_faults: u64,
    pub major_faults: u64,
    pub lifetime_ns: u64,
    /// Scheduler events the kernel programs missed for this thread: its on-CPU
    /// time is still exact, the kind of part of its off-CPU time is a guess.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missed_events: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// The profile's `kernel` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSection {
    /// `on`, or `unavailable` (with `--kernel=auto`, when the kernel side could
    /// not run: `reason` says why).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether the program published its regions (its runtime mapped the
    /// thread table): without that there is no per-site split.
    #[serde(default)]
    pub per_site: bool,
    /// Sum over the threads.
    #[serde(default)]
    pub totals: KernelTimes,
    /// Sum over the sites.
    #[serde(default)]
    pub regions: KernelTimes,
    /// In no region: off-CPU as the kernel attributed it, on-CPU the remainder
    /// of the totals.
    #[serde(default)]
    pub outside: KernelTimes,
    /// Sites whose self time was shorter than their off-CPU time (clock
    /// skew between the runtime and the kernel): their on-CPU time reads 0.
    #[serde(default)]
    pub clamped_sites: u32,
    #[serde(default)]
    pub missed_events: u64,
    /// Threads whose totals did not fit in the kernel's table.
    #[serde(default)]
    pub lost_threads: u64,
    #[serde(default)]
    pub threads: Vec<KernelTask>,
    /// The budgets in force (`--budget`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<ProfileBudget>,
    /// Per system call over all watched tasks, busiest first (`--syscalls`;
    /// with `--syscall-sample`, the calls the windows saw).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syscalls: Vec<KernelSyscall>,
    /// `--syscall-sample`: how long the syscall path was attached of how
    /// long the program ran; `syscalls` holds what it saw in that time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall_sampling: Option<SyscallSampling>,
    /// Budget events the kernel could not pass on (its ring buffer was full).
    #[serde(default, skip_serializing_if = "is_zero64")]
    pub lost_budget_events: u64,
}

fn is_zero64(v: &u64) -> bool {
    *v == 0
}

/// One system call over all watched tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSyscall {
    pub name: String,
    pub nr: u32,
    pub count: u64,
    /// Entry to exit, summed (time blocked inside included).
    pub total_ns: u64,
}

/// How the syscall path was sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallSampling {
    pub percent: u32,
    pub attached_ns: u64,
    pub elapsed_ns: u64,
}

/// The syscall path's figures as the profile gives them, with the sampling
/// windows when it was sampled. Sampled figures are what the windows saw,
/// not extrapolated to the whole run: the path slows every call it sees
/// (by a few hundred ns here), so a program makes fewer calls per second
/// inside a window than outside, and scaling by time would undercount.
pub fn syscalls(report: &KernelReport) -> (Vec<KernelSyscall>, Option<SyscallSampling>) {
    let calls = report
        .syscalls
        .iter()
        .map(|s| KernelSyscall {
            name: s.name.clone(),
            nr: s.nr,
            count: s.count,
            total_ns: s.ns,
        })
        .collect();
    let sampling = report.syscall_sampling.map(|s| SyscallSampling {
        percent: s.percent,
        attached_ns: s.attached_ns,
        elapsed_ns: s.elapsed_ns,
    });
    (calls, sampling)
}

/// A budget in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileBudget {
    pub site: u32,
    pub function: String,
    pub budget_ns: u64,
    pub action: String,
}

/// A thread over budget (the profile's `budget_events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileBudgetEvent {
    pub site: u32,
    pub function: String,
    pub tid: u32,
    pub pid: u32,
    pub budget_ns: u64,
    /// How long the thread had been in the region when the kernel saw it over budget.
    pub dwell_ns: u64,
    /// `dwell_ns - budget_ns`.
    pub overrun_ns: u64,
    /// `record`, `kill` or `signal=SIG...`.
    pub action: String,
    /// Who acted: `kernel` (the thread was on a CPU and the BPF program
    /// signalled it), `loader` (it was off-CPU: cargo-panic signalled it on the
    /// kernel's event) or `none` (record).
    pub by: String,
    /// What sending the signal returned: 0, or a negative errno.
    pub result: i32,
    /// When the thread exited, how long after its budget ran out (for `kill`:
    /// the latency of the kill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exited_after_budget_ns: Option<u64>,
}

fn action_of(signal: Option<i32>) -> Action {
    match signal {
        None => Action::Record,
        Some(s) if s == libc::SIGKILL => Action::Kill,
        Some(s) => Action::Signal(s),
    }
}

/// The budgets in force, named.
pub fn budgets(manifest: &Manifest, specs: &[BudgetSpec]) -> Vec<ProfileBudget> {
    specs
        .iter()
        .map(|b| ProfileBudget {
            site: b.site,
            function: function_of(manifest, b.site),
            budget_ns: b.budget_ns,
            action: action_of(b.signal).to_string(),
        })
        .collect()
}

fn function_of(manifest: &Manifest, site: u32) -> String {
    manifest
        .sites
        .get(site as usize)
        .map_or_else(|| format!("#{site}"), |s| s.function.clone())
}

/// The report's budget events, named and with the exit time of the thread.
pub fn budget_events(manifest: &Manifest, report: &KernelReport) -> Vec<ProfileBudgetEvent> {
    report
        .budget_events
        .iter()
        .map(|e: &BudgetEvent| {
            let dwell = e.at_ns.saturating_sub(e.since_ns);
            let deadline = e.since_ns + e.budget_ns;
            ProfileBudgetEvent {
                site: e.site,
                function: function_of(manifest, e.site),
                tid: e.tid,
                pid: e.pid,
                budget_ns: e.budget_ns,
                dwell_ns: dwell,
                overrun_ns: dwell.saturating_sub(e.budget_ns),
                action: action_of(e.signal).to_string(),
                by: match e.by {
                    ActedBy::Kernel => "kernel",
                    ActedBy::Loader => "loader",
                    ActedBy::Nobody => "none",
                }
                .into(),
                result: e.result,
                exited_after_budget_ns: report
                    .tasks
                    .iter()
                    .find(|t| t.tid == e.tid && t.ended_ns >= deadline)
                    .map(|t| t.ended_ns - deadline),
            }
        })
        .collect()
}

impl KernelSection {
    /// The section of a run whose kernel side could not start.
    pub fn unavailable(reason: String) -> KernelSection {
        KernelSection {
            status: "unavailable".into(),
            reason: Some(reason),
            per_site: false,
            totals: KernelTimes::default(),
            regions: KernelTimes::default(),
            outside: KernelTimes::default(),
            clamped_sites: 0,
            missed_events: 0,
            lost_threads: 0,
            threads: Vec::new(),
            budgets: Vec::new(),
            syscalls: Vec::new(),
            syscall_sampling: None,
            lost_budget_events: 0,
        }
    }
}

/// Joins the kernel's report with the snapshot: the section, and one entry per
/// site index (None for sites without kernel time).
pub fn join(
    manifest: &Manifest,
    snap: &Snapshot,
    end: (u64, u64),
    report: &KernelReport,
) -> (KernelSection, Vec<Option<SiteKernel>>) {
    let ns = |ticks: u64| snap.header.clock.ticks_to_ns(ticks, end);
    let per_site = snap.header.kthreads;
    let self_ticks = snap.self_ticks();
    let mut regions = KernelTimes::default();
    let mut clamped = 0u32;
    let sites: Vec<Option<SiteKernel>> = manifest
        .sites
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let k = report.sites.get(i).copied().unwrap_or_default();
            let self_ns = s
                .hist
                .and_then(|h| self_ticks.get(h as usize))
                .map_or(0, |&t| ns(t));
            if !per_site || (self_ns == 0 && k == Times::default()) {
                return None;
            }
            let off = k.runq_ns + k.blocked_ns;
            if self_ns < off {
                clamped += 1;
            }
            let times = KernelTimes {
                cpu_ns: self_ns.saturating_sub(off),
                ..KernelTimes::from(k)
            };
            regions.add(&times);
            Some(SiteKernel { self_ns, times })
        })
        .collect();
    let threads: Vec<KernelTask> = report.tasks.iter().map(task).collect();
    let mut totals = KernelTimes::default();
    for t in &threads {
        totals.add(&t.times);
    }
    let outside = KernelTimes {
        cpu_ns: totals.cpu_ns.saturating_sub(regions.cpu_ns),
        ..KernelTimes::from(report.outside)
    };
    let (syscalls, syscall_sampling) = syscalls(report);
    let section = KernelSection {
        status: "on".into(),
        reason: (!per_site).then(|| {
            "the program did not publish its regions (its runtime did not map the thread table; \
             see its stderr): per-thread times only"
                .to_string()
        }),
        per_site,
        totals,
        regions,
        outside,
        clamped_sites: clamped,
        missed_events: threads.iter().map(|t| u64::from(t.missed_events)).sum(),
        lost_threads: report.lost_tasks,
        threads,
        budgets: Vec::new(),
        syscalls,
        syscall_sampling,
        lost_budget_events: report.lost_events,
    };
    (section, sites)
}

fn task(t: &TaskTimes) -> KernelTask {
    KernelTask {
        tid: t.tid,
        pid: t.tgid,
        comm: t.comm.clone(),
        times: t.times.into(),
        voluntary_switches: t.voluntary_switches,
        involuntary_switches: t.involuntary_switches,
        minor_faults: t.minor_faults,
        major_faults: t.major_faults,
        lifetime_ns: t.lifetime_ns,
        missed_events: t.missed_events,
    }
}
