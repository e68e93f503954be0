//! The attack report (`cargo panic attack --out report.json`), versioned.
//! Every figure in it was measured during the run; where something could
//! not be measured the field is absent (or says why), never guessed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::condition::Outcome;
use super::schedule::Decision;
use super::timeline::{Axis, Level, Machine, Via};

/// The report format version this build writes.
pub const REPORT_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    pub tool: String,
    /// The timeline file or preset the run came from.
    pub source: String,
    /// The validated timeline, as it ran (after `--duration`/`--seed`).
    pub timeline: serde_json::Value,
    pub seed: u64,
    pub program: String,
    pub args: Vec<String>,
    pub machine: MachineReport,
    /// What the run could and could not use, and why not.
    pub mechanisms: Vec<Mechanism>,
    /// When the target was ready, ns after it was started (the timeline's 0).
    pub ready_after_ns: Option<u64>,
    /// How long the timeline ran, ns.
    pub ran_ns: u64,
    pub events: Vec<EventReport>,
    pub failures: Vec<Failure>,
    /// ToC rules switching on and off.
    pub toc: Vec<Decision>,
    /// One row per tick.
    pub series: Vec<Tick>,
    /// Per timed region, over the last incarnation of the target.
    pub sites: Vec<SiteLatency>,
    pub workload: Option<WorkloadReport>,
    pub asserts: Vec<AssertResult>,
    /// `survived` or `failed`, and why.
    pub verdict: RunVerdict,
    pub exit_code: i32,
    /// The run was cut short by Ctrl-C or SIGTERM.
    pub interrupted: bool,
    /// With `--repeat N`: every run's seed, outcome and run-level metrics
    /// (the rest of the report is the first failing run, or the first run
    /// when all survived). Empty for a single run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunSummary>,
    /// The verifier's verdict on the timeline (panic_verifier::feasible).
    #[serde(default)]
    pub feasibility: Option<serde_json::Value>,
    /// The kernel side's accounting (the profile's `kernel` section, with the
    /// timed regions' split under `sites`), when it watched the target.
    #[serde(default)]
    pub kernel: Option<serde_json::Value>,
    /// With `--config`: the price controller's series (as in a profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<crate::controller::ControllerSeries>,
    /// With `--config`: every fuse's changes, and the program's asks and sheds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fuses: Vec<crate::fuse::ProfileFuse>,
    /// Fault events (`fail-alloc`, `fail-io`, `eintr`): what each failed, where.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultReport>,
}

/// One fault event's injections, counted by the target's runtime.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultReport {
    pub event: String,
    pub via: Via,
    /// `alloc`, or the errno calls failed with.
    pub fails_with: String,
    /// `fraction`, `nth N` or `every N`.
    pub pick: String,
    /// How many sites it selected.
    pub sites_selected: usize,
    /// Eligible calls at those sites while it was active, and calls failed.
    pub calls: u64,
    pub injected: u64,
    /// Whether the target's runtime mapped the fault table (an older build,
    /// or a target that is not the instrumented executable, does not).
    pub attached: bool,
    /// The selected sites that failed calls, most first (over the whole run,
    /// so sites shared with another fault event count both).
    pub sites: Vec<FaultSite>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultSite {
    /// The site's index (`#N` in timelines).
    pub site: u32,
    pub function: String,
    pub callee: Option<String>,
    pub file: Option<String>,
    pub line: u32,
    pub injected: u64,
}

/// One run of a repeated attack.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    pub seed: u64,
    pub survived: bool,
    pub reasons: Vec<String>,
    /// Run-level figures (what `compare` tests when both sides have runs):
    /// `failures`, `target.rss_max_bytes`, `target.cpu_cores_mean`,
    /// `workload.ok`, `workload.failed`, `workload.latency_p50_ns`,
    /// `workload.latency_p99_ns`, `site.<function>.p99_ns`.
    pub metrics: BTreeMap<String, f64>,
}

impl RunSummary {
    /// The summary of one run's report.
    pub fn of(r: &Report) -> RunSummary {
        let mut m = BTreeMap::new();
        m.insert("failures".to_string(), r.failures.len() as f64);
        let rss = r
            .series
            .iter()
            .filter_map(|t| t.rss)
            .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))));
        if let Some(v) = rss {
            m.insert("target.rss_max_bytes".into(), v);
        }
        let cpu: Vec<f64> = r.series.iter().filter_map(|t| t.cpu_cores).collect();
        if !cpu.is_empty() {
            m.insert(
                "target.cpu_cores_mean".into(),
                cpu.iter().sum::<f64>() / cpu.len() as f64,
            );
        }
        if let Some(tot) = r.workload.as_ref().and_then(|w| w.totals.as_ref()) {
            let num = |v: &serde_json::Value| v.as_f64();
            if let Some(v) = num(&tot["ok"]) {
                m.insert("workload.ok".into(), v);
            }
            if let Some(f) = tot["failed"].as_object() {
                m.insert("workload.failed".into(), f.values().filter_map(num).sum());
            }
            for q in ["p50", "p99"] {
                if let Some(v) = num(&tot["latency"][format!("{q}_ns")]) {
                    m.insert(format!("workload.latency_{q}_ns"), v);
                }
            }
        }
        for s in &r.sites {
            m.insert(format!("site.{}.p99_ns", s.function), s.p99_ns as f64);
        }
        RunSummary {
            seed: r.seed,
            survived: r.verdict.survived,
            reasons: r.verdict.reasons.clone(),
            metrics: m,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MachineReport {
    pub cpus: u32,
    pub mem_total: u64,
    pub mem_available: u64,
    pub kernel: String,
}

impl MachineReport {
    pub fn new(m: &Machine) -> MachineReport {
        MachineReport {
            cpus: m.cpus,
            mem_total: m.mem_total,
            mem_available: m.mem_available,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Mechanism {
    pub name: String,
    pub used: bool,
    pub detail: String,
}

/// One event: what was asked, what was achieved, how it ended.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventReport {
    pub id: String,
    pub axis: Axis,
    pub via: Via,
    /// The full requested level (before shapes and ToC caps).
    pub requested: Level,
    /// What "achieved" measures for this mechanism, and its unit.
    pub achieved_means: String,
    /// When it was due (its `at`) and when it started, ns on the timeline.
    pub due_ns: u64,
    pub started_ns: Option<u64>,
    /// started − due for events with a fixed time (the scheduler's jitter).
    pub start_late_ns: Option<u64>,
    pub ended_ns: Option<u64>,
    /// None: it never started.
    pub outcome: Option<Outcome>,
    /// Per tick while active: the requested (shaped, capped) primary value and the achieved one.
    pub samples: Vec<EventSample>,
    /// Mean achieved / mean requested over the samples that have both (loads
    /// and network latency; limits report what the target used under them).
    pub fidelity: Option<f64>,
    /// Errors applying it (a refused level, a stressor that died).
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventSample {
    pub t_ns: u64,
    pub requested: f64,
    pub achieved: Option<f64>,
    pub capped: bool,
}

/// A failure of the target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Failure {
    pub t_ns: u64,
    /// crash (signal), exit (non-zero code), hang, oom (SIGKILL with an OOM kill counted), not-ready
    pub kind: String,
    pub signal: Option<i32>,
    pub code: Option<i32>,
    pub detail: String,
    /// The events active when it happened.
    pub active_events: Vec<String>,
    /// The last lines of the target's stderr.
    pub stderr_tail: Vec<String>,
    /// Thread states from /proc at hang time (tid, state letter, name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub threads: Vec<(u32, String, String)>,
    /// The crash signature: class, confidence, derivation, sites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::signature::Signature>,
}

/// Signals sampled at one tick.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Tick {
    pub t_ns: u64,
    pub alive: bool,
    pub rss: Option<f64>,
    pub threads: Option<f64>,
    /// The target's CPU use over the last tick, cores.
    pub cpu_cores: Option<f64>,
    pub cpu_load: Option<f64>,
    pub cpu_pressure: Option<f64>,
    pub memory_pressure: Option<f64>,
    pub io_pressure: Option<f64>,
    pub oom_kills: Option<f64>,
    /// Runtime counts summed over every site (progress).
    pub calls: Option<u64>,
    pub workload_ok: Option<u64>,
    pub workload_failed: Option<u64>,
    pub workload_p99_ns: Option<u64>,
    pub active: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SiteLatency {
    pub function: String,
    pub file: Option<String>,
    pub line: u32,
    pub count: u64,
    pub p50_ns: u64,
    pub p95_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkloadReport {
    pub kind: String,
    pub address: String,
    /// Totals of the built-in load (absent for a command).
    pub totals: Option<serde_json::Value>,
    /// A command workload's exit status.
    pub exit: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AssertResult {
    pub condition: String,
    /// None: a signal it needs had no value at the end.
    pub holds: Option<bool>,
    pub values: Vec<(String, Option<f64>)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunVerdict {
    pub survived: bool,
    pub reasons: Vec<String>,
}
