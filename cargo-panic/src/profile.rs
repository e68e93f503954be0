//! The profile `cargo panic run` writes: the manifest's sites joined with the counts
//! and dwell histograms of the runtime segment. Pure: built from data, rendered to
//! strings; the CLI does the IO.
//!
//! Schema (version 2; fields may be added, never renamed): see README "Profile".
//! Version 2 added `evidence` and `signature` (a failing run's crash
//! signature); a version 1 profile has neither.

use std::fmt::Write as _;

use anyhow::{Result, bail};
use panic_runtime::SiteKind;
use panic_runtime::segment::{Snapshot, State};
use serde::{Deserialize, Serialize};

use crate::kernel::{KernelSection, ProfileBudgetEvent, SiteKernel};
use crate::manifest::Manifest;

pub const VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub version: u32,
    pub binary: String,
    pub args: Vec<String>,
    pub exit: Exit,
    pub wall_ns: u64,
    /// How the runtime measured time: `tsc` (invariant TSC, calibrated) or `ns`.
    pub clock: String,
    pub runtime: RuntimeStats,
    /// The threads that held a runtime slot when the program ended, and where they were.
    pub threads: Vec<ThreadState>,
    pub sites: Vec<ProfileSite>,
    /// What the kernel saw (`cargo panic run --kernel`): per-thread times, and
    /// per site in each site's `kernel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelSection>,
    /// Threads that overran a dwell budget (`--budget`), in the order the
    /// kernel saw them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budget_events: Vec<ProfileBudgetEvent>,
    /// The price controller's series (`--config` with a `controller`): per
    /// period, the usage it measured and the prices it published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<crate::controller::ControllerSeries>,
    /// The run's fuses (`--config` with `fuses`): when each tripped and how
    /// often the program asked it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fuses: Vec<crate::fuse::ProfileFuse>,
    /// `panic_fuse` calls with a name the run has no fuse for (never tripped).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fuse_unknown_asks: u64,
    /// What was collected about a failing run (exit, stderr, threads, hang,
    /// OOM, memory), for `cargo panic explain` to derive the signature again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<crate::signature::evidence::Evidence>,
    /// A failing run's crash signature: class, confidence, derivation, sites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::signature::Signature>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeStats {
    /// `running` (ended without running exit handlers, e.g. SIGKILL), `exited` or `signaled`.
    pub state: String,
    /// Fatal signal the runtime caught, with the faulting address and thread.
    pub fatal_signal: Option<i32>,
    pub fault_addr: Option<u64>,
    /// The faulting thread's stack pointer at the fatal signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_sp: Option<u64>,
    pub signal_tid: Option<u32>,
    pub threads_used: u32,
    /// Threads that found no free runtime slot (counted, not timed).
    pub threads_over_capacity: u64,
    /// Regions not timed because nesting exceeded the runtime's depth.
    pub depth_overflows: u64,
    /// Regions closed by an outer exit (unwinding through frames without cleanup).
    pub abandoned_regions: u64,
    /// Threads that found no free counter block (more than the runtime's
    /// maximum alive at once): they counted without a lock into shared
    /// counters, so their counts may be short.
    #[serde(default)]
    pub threads_without_counter_block: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadState {
    pub tid: u32,
    /// Index of the innermost open region's site, if any.
    pub site: Option<u32>,
    pub function: Option<String>,
    pub depth: u32,
    /// Sites of the open regions, outermost first.
    pub stack: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileSite {
    pub index: u32,
    pub id: String,
    pub kind: SiteKind,
    pub function: String,
    pub file: Option<String>,
    pub line: u32,
    pub column: u32,
    pub object: String,
    pub timed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callee: Option<String>,
    /// An exit reached by unwinding (a Rust panic or a C++ exception leaving the
    /// frame), counted apart from normal returns.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unwind: bool,
    pub count: u64,
    /// The runtime stopped timing this region during the run: after 1024
    /// activations its mean was below 1 µs. `dwell_ns` then describes the
    /// activations timed before that; `count` stays exact.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub demoted: bool,
    /// Durations of the site's region, for timed sites that recorded any.
    pub dwell_ns: Option<Dwell>,
    /// The region's self time split by the kernel into on-CPU, run-queue and
    /// blocked time (`--kernel` runs; see `kernel.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<SiteKernel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dwell {
    /// Recorded durations (regions closed normally).
    pub samples: u64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub p999: u64,
    pub min: u64,
    pub max: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Count,
    Dwell,
}

impl Profile {
    /// Joins a manifest and a segment snapshot. `end` is a (ticks, ns) clock point
    /// taken after the program ended, used to calibrate the TSC when the program
    /// could not record its own end (SIGKILL).
    pub fn build(
        manifest: &Manifest,
        snap: &Snapshot,
        end: (u64, u64),
        binary: String,
        args: Vec<String>,
        exit: Exit,
        wall_ns: u64,
    ) -> Result<Profile> {
        if snap.counters.len() as u64 != manifest.counter_slots
            || snap.hists.len() as u64 != manifest.hist_slots
        {
            bail!(
                "the binary's segment has {} sites and {} histograms but its manifest lists {} and {}: \
                 the manifest belongs to another build; rebuild with `cargo panic build`",
                snap.counters.len(),
                snap.hists.len(),
                manifest.counter_slots,
                manifest.hist_slots
            );
        }
        let h = &snap.header;
        let end = end_point(snap, end);
        let clock = h.clock;
        let ns = |ticks: u64| clock.ticks_to_ns(ticks, end);
        let sites = manifest
            .sites
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let hist = s.hist.and_then(|hi| snap.hists.get(hi as usize));
                let dwell = hist.filter(|hist| hist.count > 0).map(|hist| {
                    let q = |p: f64| ns(hist.quantile(p).unwrap_or(0));
                    Dwell {
                        samples: hist.count,
                        p50: q(0.50),
                        p95: q(0.95),
                        p99: q(0.99),
                        p999: q(0.999),
                        min: ns(hist.min),
                        max: ns(hist.max),
                        total: ns(hist.total),
                    }
                });
                ProfileSite {
                    index: i as u32,
                    id: s.id.clone(),
                    kind: s.kind,
                    function: s.function.clone(),
                    file: s.file.clone(),
                    line: s.line,
                    column: s.column,
                    object: s.object.clone(),
                    timed: s.timed,
                    callee: s.callee.clone(),
                    unwind: s.unwind,
                    count: manifest.count(i, &snap.counters),
                    demoted: s.adaptive && hist.is_some_and(|h| h.demoted),
                    dwell_ns: dwell,
                    kernel: None,
                }
            })
            .collect();
        let threads = snap
            .threads
            .iter()
            .filter(|t| t.tid != 0)
            .map(|t| ThreadState {
                tid: t.tid,
                site: t.cur_site,
                function: t
                    .cur_site
                    .and_then(|s| manifest.sites.get(s as usize))
                    .map(|s| s.function.clone()),
                depth: t.depth,
                stack: t.frames.clone(),
            })
            .collect();
        let signaled = h.state == State::Signaled;
        Ok(Profile {
            version: VERSION,
            binary,
            args,
            exit,
            wall_ns,
            clock: if clock.is_tsc() {
                "tsc".into()
            } else {
                "ns".into()
            },
            runtime: RuntimeStats {
                state: match h.state {
                    State::Running => "running",
                    State::Exited => "exited",
                    State::Signaled => "signaled",
                }
                .into(),
                fatal_signal: signaled.then_some(h.signal),
                fault_addr: signaled.then_some(h.fault_addr),
                fault_sp: (signaled && h.fault_sp != 0).then_some(h.fault_sp),
                signal_tid: signaled.then_some(h.signal_tid),
                threads_used: h.threads_used,
                threads_over_capacity: h.threads_over,
                depth_overflows: h.depth_over,
                abandoned_regions: h.abandoned,
                threads_without_counter_block: h.blocks_over,
            },
            threads,
            sites,
            kernel: None,
            budget_events: Vec::new(),
            controller: None,
            fuses: Vec::new(),
            fuse_unknown_asks: 0,
            evidence: None,
            signature: None,
        })
    }

    /// Adds what the kernel saw of the run (same manifest, snapshot and end
    /// point as `build`).
    pub fn add_kernel(
        &mut self,
        manifest: &Manifest,
        snap: &Snapshot,
        end: (u64, u64),
        report: &panic_bpf::KernelReport,
        budgets: &[panic_bpf::BudgetSpec],
    ) {
        let (mut section, sites) =
            crate::kernel::join(manifest, snap, end_point(snap, end), report);
        for (site, k) in self.sites.iter_mut().zip(sites) {
            site.kernel = k;
        }
        section.budgets = crate::kernel::budgets(manifest, budgets);
        self.budget_events = crate::kernel::budget_events(manifest, report);
        self.kernel = Some(section);
    }

    /// The `n` first sites by `by` (count, or total dwell), zero counts left out.
    pub fn top(&self, n: usize, by: SortBy) -> Vec<&ProfileSite> {
        let mut v: Vec<&ProfileSite> = self.sites.iter().filter(|s| s.count > 0).collect();
        match by {
            SortBy::Count => v.sort_by(|a, b| b.count.cmp(&a.count).then(a.index.cmp(&b.index))),
            SortBy::Dwell => v.sort_by(|a, b| {
                let t = |s: &ProfileSite| s.dwell_ns.as_ref().map_or(0, |d| d.total);
                t(b).cmp(&t(a))
                    .then(b.count.cmp(&a.count))
                    .then(a.index.cmp(&b.index))
            }),
        }
        v.truncate(n);
        v
    }

    pub fn render_table(&self, n: usize, by: SortBy) -> String {
        let mut out = String::new();
        let exit = match (&self.exit.code, &self.exit.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "unknown exit".into(),
        };
        let _ = writeln!(
            out,
            "{} {}: {exit}, wall {}, {} sites ({} with counts)",
            self.binary,
            self.args.join(" "),
            fmt_ns(self.wall_ns),
            self.sites.len(),
            self.sites.iter().filter(|s| s.count > 0).count()
        );
        if self.runtime.threads_without_counter_block > 0 {
            let _ = writeln!(
                out,
                "warning: {} threads found no free counter block ({} alive at once is the \
                 runtime's limit); their counts may be short",
                self.runtime.threads_without_counter_block,
                panic_runtime::abi::MAX_BLOCKS
            );
        }
        let split = self.kernel.as_ref().is_some_and(|k| k.per_site);
        if let Some(k) = &self.kernel {
            render_kernel_summary(&mut out, k);
        }
        for e in &self.budget_events {
            let acted = match e.by.as_str() {
                "kernel" => format!("{} sent by the kernel", e.action),
                "loader" => format!("{} sent by cargo-panic (the thread was off-CPU)", e.action),
                _ => "recorded".into(),
            };
            let exited = e
                .exited_after_budget_ns
                .map(|x| format!(", thread exited {} after its budget", fmt_ns(x)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "budget: {} (site {}) over its {} in thread {}, seen {} past it; {acted}{exited}",
                e.function,
                e.site,
                fmt_ns(e.budget_ns),
                e.tid,
                fmt_ns(e.overrun_ns)
            );
        }
        let _ = write!(
            out,
            "{:>12} {:>9} {:>9} {:>9} {:>10} ",
            "count", "p50", "p99", "max", "total"
        );
        if split {
            let _ = write!(out, "{:>10} {:>10} {:>10} ", "cpu", "runq", "blocked");
        }
        let _ = writeln!(out, "{:<8} {:<48} location", "kind", "function");
        for s in self.top(n, by) {
            let (p50, p99, max, total) = match &s.dwell_ns {
                Some(d) => (fmt_ns(d.p50), fmt_ns(d.p99), fmt_ns(d.max), fmt_ns(d.total)),
                None => ("-".into(), "-".into(), "-".into(), "-".into()),
            };
            let mut function = s.function.clone();
            if let Some(c) = &s.callee {
                function = format!("{function} -> {c}");
            }
            let _ = write!(
                out,
                "{:>12} {:>9} {:>9} {:>9} {:>10} ",
                s.count, p50, p99, max, total
            );
            if split {
                let (cpu, runq, blocked) = match &s.kernel {
                    Some(k) => (
                        fmt_ns(k.times.cpu_ns),
                        fmt_ns(k.times.runq_ns),
                        fmt_ns(k.times.blocked_ns),
                    ),
                    None => ("-".into(), "-".into(), "-".into()),
                };
                let _ = write!(out, "{cpu:>10} {runq:>10} {blocked:>10} ");
            }
            let _ = writeln!(
                out,
                "{:<8} {:<48} {}",
                s.kind.name(),
                truncate(&function, 48),
                location(s.file.as_deref(), s.line)
            );
        }
        out
    }
}

/// The kernel section's lines above the site table.
fn render_kernel_summary(out: &mut String, k: &KernelSection) {
    if k.status != "on" {
        let _ = writeln!(
            out,
            "kernel: {} ({})",
            k.status,
            k.reason.as_deref().unwrap_or("no reason given")
        );
        return;
    }
    let t = &k.totals;
    let _ = writeln!(
        out,
        "kernel: {} threads: on-CPU {}, run queue {}, blocked {} (I/O {})",
        k.threads.len(),
        fmt_ns(t.cpu_ns),
        fmt_ns(t.runq_ns),
        fmt_ns(t.blocked_ns),
        fmt_ns(t.io_ns)
    );
    if k.per_site {
        let o = &k.outside;
        let _ = writeln!(
            out,
            "        outside every region: on-CPU {}, run queue {}, blocked {}",
            fmt_ns(o.cpu_ns),
            fmt_ns(o.runq_ns),
            fmt_ns(o.blocked_ns)
        );
    } else if let Some(r) = &k.reason {
        let _ = writeln!(out, "        {r}");
    }
    if !k.syscalls.is_empty() {
        let top: Vec<String> = k
            .syscalls
            .iter()
            .take(6)
            .map(|c| format!("{} {}x {}", c.name, c.count, fmt_ns(c.total_ns)))
            .collect();
        let _ = writeln!(out, "        syscalls (busiest first): {}", top.join(", "));
        if let Some(sm) = &k.syscall_sampling {
            let _ = writeln!(
                out,
                "        (sampled: calls seen while the syscall path was attached, {} of {}; {}% asked)",
                fmt_ns(sm.attached_ns),
                fmt_ns(sm.elapsed_ns),
                sm.percent
            );
        }
    }
    if k.missed_events > 0 {
        let _ = writeln!(
            out,
            "warning: the kernel programs missed {} scheduler events (another tool was updating task storage); on-CPU times stay exact",
            k.missed_events
        );
    }
}

/// The run's end as (ticks, ns): the runtime's own record when it made one,
/// else the caller's reading taken after the program ended.
fn end_point(snap: &Snapshot, end: (u64, u64)) -> (u64, u64) {
    let h = &snap.header;
    if h.tsc_end != 0 {
        (h.tsc_end, h.ns_end)
    } else {
        end
    }
}

fn location(file: Option<&str>, line: u32) -> String {
    match file {
        Some(f) => format!("{f}:{line}"),
        None => "?".into(),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let tail: String = s
        .chars()
        .rev()
        .take(n - 1)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

/// Regions shorter than this on average are not worth a clock read at entry and
/// exit (about 27 ns for the pair, measured): timing them would cost > 3%.
pub const MIN_MEAN_REGION_NS: u64 = 1_000;
/// Below this many activations the cost of timing a function does not matter.
pub const MIN_HOT_COUNT: u64 = 1_000;

/// Functions whose timed entry region an earlier run measured as hot and short
/// (mean < `min_mean_ns` over at least `min_count` samples): the profile-guided
/// part of the dwell rule. Sorted, without duplicates.
pub fn short_regions(p: &Profile, min_mean_ns: u64, min_count: u64) -> Vec<String> {
    let mut out: Vec<String> = p
        .sites
        .iter()
        .filter(|s| s.kind == SiteKind::Entry && s.timed)
        .filter_map(|s| {
            let d = s.dwell_ns.as_ref()?;
            (d.samples >= min_count && d.total / d.samples.max(1) < min_mean_ns)
                .then(|| s.function.clone())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Human duration: ns, µs, ms or s with three significant digits.
pub fn fmt_ns(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.3}µs", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.3}ms", f / 1e6)
    } else {
        format!("{:.3}s", f / 1e9)
    }
}

/// `cargo panic sites`: the manifest's sites as a table or JSON.
pub fn render_sites(m: &Manifest, kind: Option<SiteKind>, json: bool) -> Result<String> {
    let selected: Vec<(usize, &crate::manifest::Site)> = m
        .sites
        .iter()
        .enumerate()
        .filter(|(_, s)| kind.is_none_or(|k| s.kind == k))
        .collect();
    if json {
        let v: Vec<serde_json::Value> = selected
            .iter()
            .map(|(i, s)| {
                let mut v = serde_json::to_value(s).expect("sites serialise");
                v["index"] = serde_json::json!(i);
                v
            })
            .collect();
        return Ok(serde_json::to_string_pretty(&v)? + "\n");
    }
    let mut out = String::new();
    let timed = m.sites.iter().filter(|s| s.timed).count();
    let _ = writeln!(
        out,
        "{}: {} sites ({} timed), {} inputs ({} instrumented)",
        m.output,
        m.sites.len(),
        timed,
        m.inputs.len(),
        m.inputs.iter().filter(|i| i.instrumented).count()
    );
    let _ = writeln!(
        out,
        "{:>7} {:<16} {:<8} {:<5} {:<48} location",
        "index", "id", "kind", "timed", "function"
    );
    for (i, s) in selected {
        let mut function = s.function.clone();
        if let Some(c) = &s.callee {
            function = format!("{function} -> {c}");
        }
        let _ = writeln!(
            out,
            "{:>7} {:<16} {:<8} {:<5} {:<48} {}",
            i,
            s.id,
            s.kind.name(),
            if s.timed { "yes" } else { "no" },
            truncate(&function, 48),
            location(s.file.as_deref(), s.line)
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(function: &str, timed: bool, samples: u64, total: u64) -> ProfileSite {
        ProfileSite {
            index: 0,
            id: String::new(),
            kind: SiteKind::Entry,
            function: function.into(),
            file: None,
            line: 0,
            column: 0,
            object: String::new(),
            timed,
            callee: None,
            unwind: false,
            count: samples,
            demoted: false,
            kernel: None,
            dwell_ns: (samples > 0).then_some(Dwell {
                samples,
                p50: 0,
                p95: 0,
                p99: 0,
                p999: 0,
                min: 0,
                max: 0,
                total,
            }),
        }
    }

    #[test]
    fn short_hot_regions_are_demoted() {
        let p = Profile {
            version: VERSION,
            binary: String::new(),
            args: Vec::new(),
            exit: Exit {
                code: Some(0),
                signal: None,
            },
            wall_ns: 0,
            clock: "tsc".into(),
            runtime: RuntimeStats {
                state: "exited".into(),
                fatal_signal: None,
                fault_addr: None,
                fault_sp: None,
                signal_tid: None,
                threads_used: 1,
                threads_over_capacity: 0,
                depth_overflows: 0,
                abandoned_regions: 0,
                threads_without_counter_block: 0,
            },
            threads: Vec::new(),
            sites: vec![
                site("hot_short", true, 10_000, 10_000 * 50),
                site("hot_long", true, 10_000, 10_000 * 5_000),
                site("cold_short", true, 10, 10 * 50),
                site("hot_short", true, 5_000, 5_000 * 20),
            ],
            kernel: None,
            budget_events: Vec::new(),
            controller: None,
            fuses: Vec::new(),
            fuse_unknown_asks: 0,
            evidence: None,
            signature: None,
        };
        assert_eq!(
            short_regions(&p, MIN_MEAN_REGION_NS, MIN_HOT_COUNT),
            vec!["hot_short".to_string()]
        );
    }

    #[test]
    fn durations_are_human() {
        assert_eq!(fmt_ns(999), "999ns");
        assert_eq!(fmt_ns(20_123_456), "20.123ms");
        assert_eq!(fmt_ns(1_500), "1.500µs");
        assert_eq!(fmt_ns(2_000_000_000), "2.000s");
    }

    #[test]
    fn long_names_keep_their_tail() {
        assert_eq!(truncate("abcdef", 4), "…def");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
