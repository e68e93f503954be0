//! What was seen of a failing run, as plain data: filled by the collector
//! (`collect`, the IO shell) from the exit status, the runtime's segment, stderr,
//! `/proc` and the cgroup; read by [`super::facts`], which turns it into the
//! facts the rules use. Stored in the profile (`evidence`), so `cargo panic
//! explain` can derive the signature again from the file alone.

use serde::{Deserialize, Serialize};

use super::stderr::StderrEvidence;

/// Everything collected about one failing run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// How the process ended.
    pub exit: ExitEvidence,
    /// What its stderr said (parsed).
    #[serde(default, skip_serializing_if = "StderrEvidence::is_empty")]
    pub stderr: StderrEvidence,
    /// The last lines of stderr, as printed (at most [`STDERR_TAIL_LINES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stderr_tail: Vec<String>,
    /// Every thread the runtime knew of at the end: where it was, and (at a
    /// hang) what the kernel said it was doing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub threads: Vec<ThreadEvidence>,
    /// Set when cargo-panic stopped the program because it hung.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hang: Option<HangEvidence>,
    /// The kernel's OOM killer, when the program's cgroup says it acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom: Option<OomEvidence>,
    /// Resident memory over the run, sampled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory: Vec<MemorySample>,
    /// Allocation sites whose counts grew over the run, most first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allocations: Vec<AllocationGrowth>,
    /// Functions on a call-graph cycle (recursion) that ran very often, most
    /// first: from the manifest's callees and the entry counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recursion: Vec<RecursionEvidence>,
    /// Dwell budgets the kernel side acted on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetEvidence>,
    /// Stressor events active when the failure happened (attack runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stressors: Vec<String>,
    /// Faults injected before the failure (attack runs): what, how many.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<InjectedFault>,
}

/// At most this many stderr lines are kept verbatim.
pub const STDERR_TAIL_LINES: usize = 40;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitEvidence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// The fatal signal the runtime's handler saw, the address it faulted on
    /// (SIGSEGV, SIGBUS) and the thread it hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fatal_signal: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_addr: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_tid: Option<u32>,
    /// The faulting thread's stack pointer at the signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_sp: Option<u64>,
}

impl ExitEvidence {
    /// Whether the run failed: a non-zero exit or death by a signal.
    pub fn failed(&self) -> bool {
        self.signal.is_some() || self.code.is_some_and(|c| c != 0)
    }
}

/// One thread at the end of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadEvidence {
    pub tid: u32,
    /// Its innermost open region (site index), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<u32>,
    /// The entry sites of its open regions, outermost first (as many as the
    /// runtime keeps).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<u32>,
    /// Region depth (may exceed `stack.len()` when the runtime's stack was full).
    pub depth: u32,
    /// From `/proc/<pid>/task/<tid>` at a hang: state letter, system call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<char>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall: Option<i64>,
    /// The futex word the thread sleeps on (a lock wait), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub futex: Option<u64>,
    /// The thread that owns that futex's mutex, when the lock records it
    /// (glibc's `pthread_mutex_t`, which `std::mutex` wraps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_owner: Option<u32>,
    /// CPU time (clock ticks) the thread used during the hang window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ticks_during_hang: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HangEvidence {
    /// Why the run was judged hung: `quiet` (no counter moved for
    /// `window_ns`) or `timeout` (the run outlived `--timeout`).
    pub reason: String,
    pub window_ns: u64,
    /// Counter increments during the window, and the sites that moved most.
    pub progress: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moving_sites: Vec<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OomEvidence {
    /// The cgroup whose OOM killer acted (its path under the hierarchy).
    pub cgroup: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u64>,
    pub oom_kills: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemorySample {
    pub t_ns: u64,
    pub rss_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationGrowth {
    pub site: u32,
    /// The site's count at the first and last sample.
    pub first: u64,
    pub last: u64,
    /// Of the sampling intervals, how many saw the count grow.
    pub growing_intervals: u32,
    pub intervals: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecursionEvidence {
    /// The function's entry site and how often it ran.
    pub site: u32,
    pub count: u64,
    /// The functions of its cycle (itself alone for direct recursion).
    pub cycle: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetEvidence {
    pub site: u32,
    pub tid: u32,
    pub budget_ns: u64,
    pub dwell_ns: u64,
    pub action: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectedFault {
    /// `alloc`, or the errno name (`ENOSPC`, `EIO`, `EINTR`).
    pub what: String,
    pub count: u64,
}
