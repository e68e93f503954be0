//! Evidence as facts: each [`Fact`] is one thing seen, with what it says in
//! words and the sites it names; [`facts_of`] lists them and [`load`] puts
//! them into the rules' relations. Pure.

use panic_runtime::SiteKind;
use serde::{Deserialize, Serialize};

use super::evidence::Evidence;
use super::rules::{FactId, Program, signal_name};
use super::stderr::{HeapErrorKind, PanicKind};

/// What the rules need of a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteInfo {
    /// Its counter index (data-driven test cases leave it out: position).
    #[serde(default)]
    pub index: u32,
    pub kind: SiteKind,
    pub function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default)]
    pub line: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callee: Option<String>,
    #[serde(default)]
    pub count: u64,
}

impl From<&crate::profile::ProfileSite> for SiteInfo {
    fn from(s: &crate::profile::ProfileSite) -> SiteInfo {
        SiteInfo {
            index: s.index,
            kind: s.kind,
            function: s.function.clone(),
            file: s.file.clone(),
            line: s.line,
            callee: s.callee.clone(),
            count: s.count,
        }
    }
}

impl SiteInfo {
    /// `function (file:line)`, or `function` when the site has no line.
    pub fn describe(&self) -> String {
        match &self.file {
            Some(file) if self.line > 0 => format!("{} ({file}:{})", self.function, self.line),
            _ => self.function.clone(),
        }
    }
}

/// One thing seen, in the form the rules use.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    Signal(i32),
    FatalSignal(i32),
    ExitCode(i32),
    FaultAddr(u64),
    PanicMessage {
        kind: &'static str,
        message: String,
        location: String,
    },
    PanicCall {
        site: u32,
        kind: &'static str,
    },
    StackOverflowMessage {
        thread: String,
    },
    Sanitizer {
        tool: String,
        kind: &'static str,
        summary: String,
    },
    HeapError {
        kind: &'static str,
        message: String,
    },
    AllocFailure {
        bytes: u64,
    },
    Assertion {
        message: String,
    },
    Exhausted {
        what: &'static str,
        line: String,
    },
    Recursion {
        site: u32,
        count: u64,
        cycle: Vec<String>,
    },
    Hang {
        reason: &'static str,
        window_ns: u64,
    },
    LockWait {
        tid: u32,
        site: u32,
        addr: u64,
    },
    LockOwner {
        addr: u64,
        tid: u32,
    },
    Spinning {
        tid: u32,
        site: Option<u32>,
        ticks: u64,
    },
    OomKill {
        cgroup: String,
        limit: Option<u64>,
    },
    MemoryTrend {
        trend: &'static str,
        from: u64,
        to: u64,
    },
    AllocGrowing {
        site: u32,
        first: u64,
        last: u64,
    },
    BudgetKill {
        site: u32,
        budget_ns: u64,
        dwell_ns: u64,
        action: String,
    },
    Stressed {
        event: String,
    },
    FaultInjected {
        what: &'static str,
        count: u64,
    },
    FaultingRegion {
        tid: u32,
        site: u32,
    },
    /// A fault just below the stack pointer: the stack's guard region.
    StackGuard {
        below_sp: u64,
    },
}

/// The kinds of instrumented panic calls, by callee (Rust's panic entry
/// points and C's abort paths); `None` for a callee that is not one.
pub fn panic_call_kind(callee: &str) -> Option<&'static str> {
    const BY_PART: &[(&str, &str)] = &[
        ("core::option::unwrap_failed", "unwrap"),
        ("core::option::expect_failed", "expect"),
        ("core::result::unwrap_failed", "result_unwrap"),
        ("core::panicking::panic_bounds_check", "index"),
        ("core::slice::index::", "index"),
        ("core::str::slice_error_fail", "index"),
        ("_by_zero", "divide_by_zero"),
        ("_overflow", "overflow"),
        ("core::panicking::", "explicit"),
        ("std::panicking::", "explicit"),
        ("std::panic::", "explicit"),
        ("__assert_fail", "assert"),
        ("__cxa_throw", "throw"),
        ("__stack_chk_fail", "stack_smash"),
    ];
    // "abort" matches exactly: `std::process::abort` is Rust's, "abort" C's.
    if callee == "abort" || callee == "std::process::abort" {
        return Some("abort");
    }
    BY_PART
        .iter()
        .find(|(part, _)| callee.contains(part))
        .map(|(_, kind)| *kind)
}

fn panic_kind(k: PanicKind) -> &'static str {
    match k {
        PanicKind::Unwrap => "unwrap",
        PanicKind::Expect => "expect",
        PanicKind::Index => "index",
        PanicKind::Overflow => "overflow",
        PanicKind::DivideByZero => "divide_by_zero",
        PanicKind::Explicit => "explicit",
    }
}

/// UBSan's checks, as `stderr` names them (`null-pointer-use` included).
pub const UBSAN_CHECKS: &[&str] = &[
    "signed-integer-overflow",
    "unsigned-integer-overflow",
    "divide-by-zero",
    "shift-exponent",
    "shift-base",
    "array-bounds",
    "misaligned-pointer-use",
    "pointer-overflow",
    "invalid-bool-load",
    "invalid-enum-load",
    "missing-return",
    "unreachable",
    "vla-bound",
    "float-cast-overflow",
    "function-type-mismatch",
    "nonnull-attribute",
    "returns-nonnull-attribute",
    "implicit-conversion",
    "dynamic-type-mismatch",
    "invalid-builtin-use",
    "alignment-assumption",
    "undefined-behavior",
];

/// Sanitizer kinds the rules know; any other is `other`.
fn sanitizer_kind(kind: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "heap-use-after-free",
        "double-free",
        "heap-buffer-overflow",
        "stack-buffer-overflow",
        "global-buffer-overflow",
        "stack-use-after-return",
        "stack-use-after-scope",
        "stack-overflow",
        "segv",
        "bus",
        "fpe",
        "leak",
        "bad-free",
        "alloc-dealloc-mismatch",
        "allocation-size-too-big",
        "out-of-memory",
        "calloc-overflow",
        "data-race",
        "data-race-vptr",
        "thread-leak",
        "lock-order-inversion",
        "use-of-uninitialized-value",
        "null-pointer-use",
    ];
    let k = kind.to_ascii_lowercase().replace([' ', '_'], "-");
    KNOWN
        .iter()
        .chain(UBSAN_CHECKS)
        .find(|&&n| n == k)
        .copied()
        .unwrap_or("other")
}

/// What a strerror text in a failure message says ran out.
fn exhausted_kind(line: &str) -> Option<&'static str> {
    const BY_TEXT: &[(&str, &str)] = &[
        ("Too many open files", "fds"),
        ("No space left on device", "disk"),
        ("Disk quota exceeded", "disk"),
        ("Cannot allocate memory", "memory"),
        ("Resource temporarily unavailable", "threads"),
    ];
    BY_TEXT
        .iter()
        .find(|(t, _)| line.contains(t))
        .map(|(_, k)| *k)
}

fn errno_kind(what: &str) -> &'static str {
    match what {
        "alloc" => "alloc",
        "ENOSPC" => "ENOSPC",
        "EIO" => "EIO",
        "EINTR" => "EINTR",
        _ => "errno",
    }
}

/// At least this many entries of a function on a call-graph cycle, in a run
/// that died by a fault, count as runaway recursion (a default 8 MiB stack
/// holds about this many 100-byte frames).
pub const RECURSION_MIN_COUNT: u64 = 10_000;

/// Memory "grows steadily" when at least this share of sampling intervals saw
/// the resident size grow, over at least `TREND_MIN_SAMPLES` samples.
const LEAK_GROWING_SHARE: f64 = 0.6;
const TREND_MIN_SAMPLES: usize = 5;
/// A "spike": at least this share of the growth in one interval.
const SPIKE_SHARE: f64 = 0.5;

/// The resident-memory trend of a series: `leak` (growth spread over the
/// run), `spike` (most of it in one interval), or none (no growth worth
/// naming, or too few samples).
pub fn memory_trend(samples: &[super::evidence::MemorySample]) -> Option<&'static str> {
    if samples.len() < TREND_MIN_SAMPLES {
        return None;
    }
    let first = samples.first()?.rss_bytes;
    let last_max = samples.iter().map(|s| s.rss_bytes).max()?;
    let growth = last_max.saturating_sub(first);
    // Less than 4 MiB or a quarter of the start is not a trend worth naming.
    if growth < (4 << 20).max(first / 4) {
        return None;
    }
    let steps: Vec<i128> = samples
        .windows(2)
        .map(|w| i128::from(w[1].rss_bytes) - i128::from(w[0].rss_bytes))
        .collect();
    let biggest = steps.iter().copied().max().unwrap_or(0).max(0) as f64;
    if biggest >= SPIKE_SHARE * growth as f64 {
        return Some("spike");
    }
    let growing = steps.iter().filter(|&&d| d > 0).count();
    (growing as f64 >= LEAK_GROWING_SHARE * steps.len() as f64).then_some("leak")
}

/// Every fact of `e`, in a stable order (so fact ids, derivations and their
/// printing are deterministic).
pub fn facts_of(e: &Evidence, sites: &[SiteInfo]) -> Vec<Fact> {
    let mut out = Vec::new();
    if let Some(sig) = e.exit.signal {
        out.push(Fact::Signal(sig));
    }
    // The first fatal signal the runtime caught, when the process then died
    // another way (Rust's overflow handler aborts after a SIGSEGV).
    if let Some(sig) = e.exit.fatal_signal.filter(|&s| Some(s) != e.exit.signal) {
        out.push(Fact::FatalSignal(sig));
    }
    if let Some(code) = e.exit.code.filter(|&c| c != 0) {
        out.push(Fact::ExitCode(code));
    }
    if let Some(addr) = e.exit.fault_addr {
        out.push(Fact::FaultAddr(addr));
        if let Some(below_sp) = e.exit.fault_sp.and_then(|sp| in_guard(addr, sp)) {
            out.push(Fact::StackGuard { below_sp });
        }
    }
    let faulting = e
        .exit
        .signal_tid
        .and_then(|tid| e.threads.iter().find(|t| t.tid == tid));
    if let Some(site) = faulting.and_then(|t| t.site) {
        out.push(Fact::FaultingRegion {
            tid: faulting.map_or(0, |t| t.tid),
            site,
        });
    }
    let s = &e.stderr;
    if let Some(p) = &s.rust_panic {
        out.push(Fact::PanicMessage {
            kind: panic_kind(p.kind),
            message: first_line(&p.message),
            location: format!("{}:{}:{}", p.file, p.line, p.column),
        });
    }
    for site in sites
        .iter()
        .filter(|s| s.kind == SiteKind::Panic && s.count > 0)
    {
        if let Some(kind) = site.callee.as_deref().and_then(panic_call_kind) {
            out.push(Fact::PanicCall {
                site: site.index,
                kind,
            });
        }
    }
    if let Some(o) = &s.stack_overflow {
        out.push(Fact::StackOverflowMessage {
            thread: o.thread.clone(),
        });
    }
    if let Some(r) = &s.sanitizer {
        out.push(Fact::Sanitizer {
            tool: format!("{:?}", r.tool),
            kind: sanitizer_kind(&r.kind),
            summary: r.summary.clone().unwrap_or_else(|| r.kind.clone()),
        });
        if let (Some(addr), None) = (r.address, e.exit.fault_addr) {
            out.push(Fact::FaultAddr(addr));
        }
    }
    if let Some(h) = &s.heap_error {
        out.push(Fact::HeapError {
            kind: match h.kind {
                HeapErrorKind::DoubleFree => "double_free",
                HeapErrorKind::Corruption => "corruption",
                HeapErrorKind::InvalidPointer => "invalid_pointer",
            },
            message: h.message.clone(),
        });
    }
    if let Some(bytes) = s.alloc_failure {
        out.push(Fact::AllocFailure { bytes });
    }
    if let Some(a) = &s.assertion {
        out.push(Fact::Assertion {
            message: a.message.clone(),
        });
    }
    for line in &s.errno_messages {
        if let Some(what) = exhausted_kind(line) {
            out.push(Fact::Exhausted {
                what,
                line: line.clone(),
            });
        }
    }
    let died_by_fault = [e.exit.signal, e.exit.fatal_signal]
        .iter()
        .any(|s| matches!(s, Some(libc::SIGSEGV | libc::SIGBUS)));
    let guard = e
        .exit
        .fault_addr
        .zip(e.exit.fault_sp)
        .is_some_and(|(a, sp)| in_guard(a, sp).is_some());
    for r in &e.recursion {
        let runaway = r.count >= RECURSION_MIN_COUNT || guard;
        if (runaway && died_by_fault) || s.stack_overflow.is_some() {
            out.push(Fact::Recursion {
                site: r.site,
                count: r.count,
                cycle: r.cycle.clone(),
            });
            break; // the most-entered one names the overflow
        }
    }
    if let Some(h) = &e.hang {
        out.push(Fact::Hang {
            reason: if h.reason == "timeout" {
                "timeout"
            } else {
                "quiet"
            },
            window_ns: h.window_ns,
        });
        for t in &e.threads {
            if let (Some(site), Some(addr)) = (t.site, t.futex) {
                let lock_site = |i: u32| sites.get(i as usize).filter(|s| s.kind == SiteKind::Lock);
                if lock_site(site).is_some() {
                    // The program's own lock call names the wait: the
                    // innermost open lock region outside Rust's standard
                    // library (`Mutex::lock` around std's `lock_contended`).
                    let named = t
                        .stack
                        .iter()
                        .rev()
                        .copied()
                        .find(|&i| lock_site(i).is_some_and(|s| !in_rust_std(s)))
                        .unwrap_or(site);
                    out.push(Fact::LockWait {
                        tid: t.tid,
                        site: named,
                        addr,
                    });
                    if let Some(owner) = t.lock_owner {
                        out.push(Fact::LockOwner { addr, tid: owner });
                    }
                }
            }
            if let Some(ticks) = t.cpu_ticks_during_hang.filter(|&n| n > 0) {
                out.push(Fact::Spinning {
                    tid: t.tid,
                    site: t.site,
                    ticks,
                });
            }
        }
    }
    if let Some(o) = &e.oom {
        out.push(Fact::OomKill {
            cgroup: o.cgroup.clone(),
            limit: o.limit_bytes,
        });
    }
    if let Some(trend) = memory_trend(&e.memory) {
        let from = e.memory.first().map_or(0, |m| m.rss_bytes);
        let to = e.memory.iter().map(|m| m.rss_bytes).max().unwrap_or(0);
        out.push(Fact::MemoryTrend { trend, from, to });
    }
    for a in &e.allocations {
        let steady = a.intervals > 0
            && f64::from(a.growing_intervals) >= LEAK_GROWING_SHARE * f64::from(a.intervals);
        if steady && a.last > a.first {
            out.push(Fact::AllocGrowing {
                site: a.site,
                first: a.first,
                last: a.last,
            });
        }
    }
    for b in &e.budgets {
        out.push(Fact::BudgetKill {
            site: b.site,
            budget_ns: b.budget_ns,
            dwell_ns: b.dwell_ns,
            action: b.action.clone(),
        });
    }
    for ev in &e.stressors {
        out.push(Fact::Stressed { event: ev.clone() });
    }
    for fi in e.faults.iter().filter(|f| f.count > 0) {
        out.push(Fact::FaultInjected {
            what: errno_kind(&fi.what),
            count: fi.count,
        });
    }
    out
}

/// How far below the stack pointer a fault that hit the stack's guard
/// region lies: a stack overflow faults on the page the next push or frame
/// would use, so the address is at most a frame below the stack pointer
/// (or a page above, for a push that crossed the edge). `None` otherwise.
pub fn in_guard(addr: u64, sp: u64) -> Option<u64> {
    /// The largest frame a single overflowing call is taken to reserve.
    const MAX_FRAME: u64 = 1 << 20;
    (addr <= sp.saturating_add(4096) && sp.saturating_sub(addr) <= MAX_FRAME)
        .then(|| sp.saturating_sub(addr))
}

/// Whether a site is in Rust's standard library (its sources as rustup's
/// toolchains name them in debug info).
fn in_rust_std(s: &SiteInfo) -> bool {
    s.file.as_deref().is_some_and(|f| f.starts_with("/rustc/"))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// Fills the program's input relations from the facts (id = position).
pub fn load(facts: &[Fact], p: &mut Program) {
    for (i, fact) in facts.iter().enumerate() {
        let id = i as FactId;
        match fact {
            Fact::Signal(s) => p.signal.push((id, *s)),
            Fact::FatalSignal(s) => p.fatal_signal.push((id, *s)),
            Fact::ExitCode(c) => p.exit_code.push((id, *c)),
            Fact::FaultAddr(a) => p.fault_addr.push((id, *a)),
            Fact::PanicMessage { kind, .. } => p.panic_message.push((id, kind)),
            Fact::PanicCall { site, kind } => p.panic_call.push((id, *site, kind)),
            Fact::StackOverflowMessage { .. } => p.stack_overflow_message.push((id,)),
            Fact::Sanitizer { kind, .. } => p.sanitizer.push((id, kind)),
            Fact::HeapError { kind, .. } => p.heap_error.push((id, kind)),
            Fact::AllocFailure { .. } => p.alloc_failure.push((id,)),
            Fact::Assertion { .. } => p.assertion.push((id,)),
            Fact::Exhausted { what, .. } => p.exhausted.push((id, what)),
            Fact::Recursion { site, .. } => p.recursion.push((id, *site)),
            Fact::Hang { reason, .. } => p.hang.push((id, reason)),
            Fact::LockWait { tid, site, addr } => p.lock_wait.push((id, *tid, *site, *addr)),
            Fact::LockOwner { addr, tid } => p.lock_owner.push((id, *addr, *tid)),
            Fact::Spinning { tid, .. } => p.spinning.push((id, *tid)),
            Fact::OomKill { .. } => p.oom_kill.push((id,)),
            Fact::MemoryTrend { trend, .. } => p.memory_trend.push((id, trend)),
            Fact::AllocGrowing { site, .. } => p.alloc_growing.push((id, *site)),
            Fact::BudgetKill { site, .. } => p.budget_kill.push((id, *site)),
            Fact::Stressed { .. } => p.stressed.push((id,)),
            Fact::FaultInjected { what, .. } => p.fault_injected.push((id, what)),
            Fact::FaultingRegion { site, .. } => p.faulting_region.push((id, *site)),
            Fact::StackGuard { .. } => p.stack_guard.push((id,)),
        }
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

impl Fact {
    /// What the fact says, for the derivation.
    pub fn text(&self, sites: &[SiteInfo]) -> String {
        let site = |i: &u32| {
            sites.get(*i as usize).map_or_else(
                || format!("site #{i}"),
                |s| format!("#{i} {}", s.describe()),
            )
        };
        match self {
            Fact::Signal(s) => format!("the process was killed by {} ({s})", signal_name(*s)),
            Fact::FatalSignal(s) => format!("the runtime caught {} ({s}) first", signal_name(*s)),
            Fact::ExitCode(c) => format!("the process exited with status {c}"),
            Fact::FaultAddr(a) => format!("the faulting address was {a:#x}"),
            Fact::PanicMessage {
                kind,
                message,
                location,
            } => format!("stderr: a Rust panic ({kind}) at {location}: {message}"),
            Fact::PanicCall { site: s, kind } => {
                let n = sites.get(*s as usize).map_or(0, |x| x.count);
                format!("panic call ({kind}) at {} ran {n} time(s)", site(s))
            }
            Fact::StackOverflowMessage { thread } => {
                format!("stderr: thread '{thread}' has overflowed its stack")
            }
            Fact::Sanitizer {
                tool,
                kind,
                summary,
            } => {
                format!("stderr: {tool} sanitizer report ({kind}): {summary}")
            }
            Fact::HeapError { message, .. } => format!("stderr: glibc: {message}"),
            Fact::AllocFailure { bytes } => {
                format!("stderr: memory allocation of {bytes} bytes failed")
            }
            Fact::Assertion { message } => format!("stderr: {message}"),
            Fact::Exhausted { what, line } => format!("stderr ({what}): {line}"),
            Fact::Recursion {
                site: s,
                count,
                cycle,
            } => format!(
                "{} is recursive (cycle: {}) and was entered {count} times",
                site(s),
                cycle.join(" -> ")
            ),
            Fact::Hang { reason, window_ns } => match *reason {
                "timeout" => format!(
                    "the program was still running at its time limit ({})",
                    crate::profile::fmt_ns(*window_ns)
                ),
                _ => format!(
                    "no instrumented code ran for {}; cargo-panic stopped the program",
                    crate::profile::fmt_ns(*window_ns)
                ),
            },
            Fact::LockWait { tid, site: s, addr } => format!(
                "thread {tid} sleeps on lock {addr:#x} at lock site {}",
                site(s)
            ),
            Fact::LockOwner { addr, tid } => format!("lock {addr:#x} is held by thread {tid}"),
            Fact::Spinning {
                tid,
                site: s,
                ticks,
            } => match s {
                Some(s) => format!(
                    "thread {tid} used {ticks} CPU ticks in {} during the hang",
                    site(s)
                ),
                None => format!("thread {tid} used {ticks} CPU ticks during the hang"),
            },
            Fact::OomKill { cgroup, limit } => match limit {
                Some(l) => format!(
                    "the OOM killer acted in cgroup {cgroup} (limit {})",
                    mib(*l)
                ),
                None => format!("the OOM killer acted in cgroup {cgroup}"),
            },
            Fact::MemoryTrend { trend, from, to } => {
                format!(
                    "resident memory went from {} to {} ({trend})",
                    mib(*from),
                    mib(*to)
                )
            }
            Fact::AllocGrowing {
                site: s,
                first,
                last,
            } => format!(
                "allocation site {} kept growing: {first} -> {last} calls",
                site(s)
            ),
            Fact::BudgetKill {
                site: s,
                budget_ns,
                dwell_ns,
                action,
            } => format!(
                "region {} dwelt {} over its {} budget; the kernel side did `{action}`",
                site(s),
                crate::profile::fmt_ns(*dwell_ns),
                crate::profile::fmt_ns(*budget_ns)
            ),
            Fact::Stressed { event } => format!("stressor event `{event}` was active"),
            Fact::FaultInjected { what, count } => {
                format!("the attack injected {count} {what} fault(s)")
            }
            Fact::StackGuard { below_sp } => format!(
                "the faulting address is {below_sp} bytes below the stack pointer: the stack's guard region"
            ),
            Fact::FaultingRegion { tid, site: s } => {
                format!("thread {tid} took the signal inside region {}", site(s))
            }
        }
    }

    /// The sites the fact names.
    pub fn sites(&self) -> Vec<u32> {
        match self {
            Fact::PanicCall { site, .. }
            | Fact::Recursion { site, .. }
            | Fact::LockWait { site, .. }
            | Fact::AllocGrowing { site, .. }
            | Fact::BudgetKill { site, .. }
            | Fact::FaultingRegion { site, .. } => vec![*site],
            Fact::Spinning { site: Some(s), .. } => vec![*s],
            _ => Vec::new(),
        }
    }
}
