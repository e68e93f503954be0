//! A failure's crash signature in an attack: the evidence the engine has at
//! the moment the target failed (its segment, the stderr tail, the threads at
//! a hang, the cgroup's OOM count, the resident-memory series, the active
//! events) handed to the signature rules (`crate::signature`).

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use panic_runtime::segment::Snapshot;

use super::report::Tick;
use crate::manifest::Manifest;
use crate::signature::evidence::{
    Evidence, ExitEvidence, HangEvidence, InjectedFault, MemorySample, OomEvidence, ThreadEvidence,
};
use crate::signature::facts::SiteInfo;
use crate::signature::{self, Signature, collect};

/// What the engine knows of one failure.
pub struct FailureSeen<'a> {
    /// How the target ended; `None` for a hang (the engine killed it).
    pub status: Option<ExitStatus>,
    pub snapshot: Option<Snapshot>,
    pub manifest: Option<&'a Manifest>,
    pub stderr_tail: &'a [String],
    pub hang: Option<HangEvidence>,
    /// `/proc`'s view of the threads at a hang.
    pub hang_threads: Vec<ThreadEvidence>,
    pub oom: bool,
    pub series: &'a [Tick],
    pub active: &'a [String],
    /// Faults injected so far: what, how many.
    pub faults: Vec<(String, u64)>,
}

impl<'a> FailureSeen<'a> {
    /// What the engine knows of a failure at the moment it saw it; the
    /// target ended with `status`, unless [`FailureSeen::hung`] says
    /// otherwise.
    pub fn new(
        snapshot: Option<Snapshot>,
        manifest: Option<&'a Manifest>,
        stderr_tail: &'a [String],
        series: &'a [Tick],
        active: &'a [String],
        injector: Option<&super::inject::Injector>,
    ) -> FailureSeen<'a> {
        let faults = injector
            .map(super::inject::Injector::injected)
            .unwrap_or_default();
        FailureSeen {
            status: None,
            snapshot,
            manifest,
            stderr_tail,
            hang: None,
            hang_threads: Vec::new(),
            oom: false,
            series,
            active,
            faults,
        }
    }

    /// The target ended with `status`; `oom`: the cgroup counted an OOM kill.
    pub fn ended(mut self, status: ExitStatus, oom: bool) -> FailureSeen<'a> {
        self.status = Some(status);
        self.oom = oom && status.signal() == Some(libc::SIGKILL);
        self
    }

    /// The engine stopped the target after `window_ns` without progress;
    /// `threads` is what `/proc` said of its threads.
    pub fn hung(mut self, window_ns: u64, threads: Vec<ThreadEvidence>) -> FailureSeen<'a> {
        self.hang = Some(HangEvidence {
            reason: "quiet".into(),
            window_ns,
            progress: 0,
            moving_sites: Vec::new(),
        });
        self.hang_threads = threads;
        self
    }
}

/// The signature of a failure, or `None` when no rule explains it.
pub fn signature(seen: FailureSeen<'_>) -> Option<Signature> {
    let (code, sig) = match seen.status {
        Some(s) => (s.code(), s.signal()),
        None => (None, Some(libc::SIGKILL)),
    };
    let text = seen.stderr_tail.join("\n");
    let (stderr, stderr_tail) = collect::stderr_evidence(text.as_bytes());
    let (sites, threads, recursion, header) = match (&seen.snapshot, seen.manifest) {
        (Some(snap), Some(m)) => {
            let sites: Vec<SiteInfo> = m
                .sites
                .iter()
                .enumerate()
                .map(|(i, s)| SiteInfo {
                    index: i as u32,
                    kind: s.kind,
                    function: s.function.clone(),
                    file: s.file.clone(),
                    line: s.line,
                    callee: s.callee.clone(),
                    count: m.count(i, &snap.counters),
                })
                .collect();
            let mutex = collect::WatchSites::of(m).mutex;
            (
                sites,
                collect::threads(snap, seen.hang_threads, &mutex),
                collect::recursion(m, &snap.counters),
                Some(&snap.header),
            )
        }
        _ => (Vec::new(), seen.hang_threads, Vec::new(), None),
    };
    let evidence = Evidence {
        exit: ExitEvidence {
            code,
            signal: sig,
            fatal_signal: header.and_then(|h| (h.signal != 0).then_some(h.signal)),
            fault_addr: header.and_then(|h| (h.signal != 0).then_some(h.fault_addr)),
            fault_sp: header.and_then(|h| (h.signal != 0 && h.fault_sp != 0).then_some(h.fault_sp)),
            signal_tid: header.and_then(|h| (h.signal_tid != 0).then_some(h.signal_tid)),
        },
        stderr,
        stderr_tail,
        threads,
        hang: seen.hang,
        oom: seen.oom.then(|| OomEvidence {
            cgroup: "target".to_string(),
            // Limit events change it during the run; the report's events say which held.
            limit_bytes: None,
            oom_kills: 1,
        }),
        memory: seen
            .series
            .iter()
            .filter_map(|t| {
                Some(MemorySample {
                    t_ns: t.t_ns,
                    rss_bytes: t.rss? as u64,
                })
            })
            .collect(),
        recursion,
        stressors: seen.active.to_vec(),
        faults: seen
            .faults
            .into_iter()
            .map(|(what, count)| InjectedFault { what, count })
            .collect(),
        ..Evidence::default()
    };
    signature::classify(&evidence, &sites)
}
