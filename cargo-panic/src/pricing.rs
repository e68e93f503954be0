//! The run config's price loop (DESIGN §4 "Prices", "Fuse"), shared by
//! `cargo panic run --config` and `cargo panic attack --config`: every
//! period it measures the target's usage (its cgroup, /proc, the kernel
//! side's counters; see [`Usage`]), steps the controller,
//! publishes the prices into the kernel side's price map, evaluates the
//! fuse rules (on prices and on live dwell p99s) and publishes their states
//! into the fuse table; at the end it gives the controller's series and the
//! fuses' histories for the report.

use std::path::Path;

use panic_runtime::segment::Live;

use crate::controller::{Controller, ControllerSeries, RunConfig, Sample};
use crate::fuse::{self, FuseRule};
use crate::manifest::Manifest;

/// What the target uses, read each controller period. With the target's
/// own cgroup ([`Usage::in_cgroup`]): memory charged, CPU time where the
/// group reports it (cgroup v2's `cpu.stat`, v1 with a cpuacct group), so
/// every process of the program counts, and pressure (stall time) for
/// `<resource>:pressure`. Otherwise from /proc of the main process: CPU
/// time (utime + stime, all threads) and resident memory. I/O is the main
/// process's block I/O bytes from /proc either way (no I/O controller).
pub struct Usage {
    pid: u32,
    cgroup: Option<crate::cgroup::StatsReader>,
    /// Per configured resource name: the counter's previous reading.
    last: std::collections::HashMap<String, Option<(std::time::Instant, f64)>>,
    ticks_per_s: f64,
    page: f64,
}

impl Usage {
    /// Usage of process `pid` from /proc.
    pub fn new(pid: u32) -> Usage {
        Usage {
            pid,
            cgroup: None,
            last: Default::default(),
            ticks_per_s: crate::procfs::ticks_per_s(),
            page: crate::procfs::page_size() as f64,
        }
    }

    /// Usage of the group `cgroup` reads, with process `pid` (in it) for I/O.
    pub fn in_cgroup(pid: u32, cgroup: crate::cgroup::StatsReader) -> Usage {
        Usage {
            cgroup: Some(cgroup),
            ..Usage::new(pid)
        }
    }

    /// Where the usage comes from, for the profile.
    pub fn source(&self) -> String {
        match &self.cgroup {
            Some(cg) => format!(
                "cgroup {} (CPU: {}; I/O: /proc/{pid}/io)",
                cg.dirs()
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                if cg.read().cpu_usage_ns.is_some() {
                    "the cgroup".to_string()
                } else {
                    format!("/proc/{}", self.pid)
                },
                pid = self.pid
            ),
            None => format!("/proc/{} (the main process only)", self.pid),
        }
    }

    /// A new incarnation of the target (same cgroup): rates start over.
    fn set_pid(&mut self, pid: u32) {
        self.pid = pid;
        self.last.clear();
    }

    /// CPU seconds so far (utime + stime of /proc/PID/stat).
    fn cpu_s(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        Some(crate::procfs::stat_cpu_ticks(&stat)? as f64 / self.ticks_per_s)
    }

    fn rss_bytes(&self) -> Option<f64> {
        let statm = std::fs::read_to_string(format!("/proc/{}/statm", self.pid)).ok()?;
        Some(crate::procfs::statm_resident_pages(&statm)? as f64 * self.page)
    }

    fn io_bytes(&self) -> Option<f64> {
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.pid)).ok()?;
        let field = |name: &str| {
            io.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        Some(field("read_bytes:")? + field("write_bytes:")?)
    }

    /// Usage of each of `resources` since the last sample (cpu in cores, io
    /// and network in bytes/s, pressure as the share of the time stalled;
    /// memory is a level, in bytes). Rates are None on the first sample and
    /// whenever their counter does not answer (the process is gone; no
    /// network path). `net_bytes`: the socket bytes the kernel side counted
    /// so far for the watched tasks.
    pub fn sample(&mut self, resources: &[String], net_bytes: Option<u64>) -> Vec<Option<f64>> {
        let now = std::time::Instant::now();
        // The cgroup's files only when a resource is read from them.
        let from_group =
            |r: &String| r == "cpu" || r == "memory" || crate::controller::is_pressure(r);
        let stats = self
            .cgroup
            .as_ref()
            .filter(|_| resources.iter().any(from_group))
            .map(crate::cgroup::StatsReader::read);
        let from_cgroup = |f: fn(&crate::cgroup::Stats) -> Option<u64>| {
            stats.as_ref().and_then(f).map(|v| v as f64)
        };
        resources
            .iter()
            .map(|r| {
                // Counters (cumulative) go through `rate`; levels do not.
                let counter = match r.as_str() {
                    "cpu" => from_cgroup(|s| s.cpu_usage_ns)
                        .map(|ns| ns / 1e9)
                        .or_else(|| self.cpu_s()),
                    "memory" => {
                        return from_cgroup(|s| s.memory_current).or_else(|| self.rss_bytes());
                    }
                    "io" => self.io_bytes(),
                    "network" => net_bytes.map(|b| b as f64),
                    "cpu:pressure" => from_cgroup(|s| s.cpu_pressure_us).map(|us| us / 1e6),
                    "memory:pressure" => from_cgroup(|s| s.memory_pressure_us).map(|us| us / 1e6),
                    "io:pressure" => from_cgroup(|s| s.io_pressure_us).map(|us| us / 1e6),
                    _ => return None,
                };
                rate(self.last.entry(r.clone()).or_default(), counter, now)
            })
            .collect()
    }
}

/// The rate of a counter since its previous reading (kept in `last`, per
/// counter, so one that /proc stops answering does not stall the others).
pub fn rate(
    last: &mut Option<(std::time::Instant, f64)>,
    cur: Option<f64>,
    now: std::time::Instant,
) -> Option<f64> {
    let cur = cur?;
    let prev = last.replace((now, cur))?;
    let dt = now.duration_since(prev.0).as_secs_f64();
    (dt > 0.0).then_some((cur - prev.1) / dt)
}

/// The regions each fuse rule on dwell watches, resolved against the
/// manifest once, and the live segment their p99s are read from each period.
pub struct DwellWatch {
    /// Per rule (same order): the histogram indices of the timed regions its
    /// pattern matches; None for rules that are not about dwell.
    hists: Vec<Option<Vec<u32>>>,
    live: Option<Live>,
}

impl DwellWatch {
    pub fn new(rules: &[FuseRule], manifest: &Manifest) -> DwellWatch {
        let hists = rules
            .iter()
            .map(|r| {
                let fuse::Trip::DwellP99 { pattern, .. } = &r.trip else {
                    return None;
                };
                // Validated with the run config: the glob compiles.
                let glob = globset::Glob::new(pattern).ok()?.compile_matcher();
                Some(
                    manifest
                        .sites
                        .iter()
                        .filter(|s| {
                            s.kind == panic_runtime::SiteKind::Entry && glob.is_match(&s.function)
                        })
                        .filter_map(|s| s.hist)
                        .collect(),
                )
            })
            .collect();
        DwellWatch { hists, live: None }
    }

    /// For each rule on dwell, the largest p99 among its regions that have
    /// samples, from a live snapshot (None for other rules, or before the
    /// program's segment exists). No snapshot when no rule is about dwell.
    pub fn p99s(&mut self, segment: &Path) -> Vec<Option<u64>> {
        if self.hists.iter().all(Option::is_none) {
            return vec![None; self.hists.len()];
        }
        if self.live.is_none() {
            self.live = Live::open(segment).ok();
        }
        let Some(snap) = self.live.as_mut().and_then(|l| l.snapshot().ok()) else {
            return vec![None; self.hists.len()];
        };
        self.hists
            .iter()
            .map(|hs| {
                hs.as_ref()?
                    .iter()
                    .filter_map(|&h| snap.hists.get(h as usize))
                    .filter(|h| h.count > 0)
                    .filter_map(|h| h.quantile(0.99))
                    .map(|t| snap.ticks_to_ns(t))
                    .max()
            })
            .collect()
    }
}

/// The target's current dwell for the `dwell` resource: the mean time its
/// threads inside a timed region have been in their outermost one
/// (`dwell_seconds_current_average` of `--metrics`), 0 when none is inside
/// one, from a live snapshot of the segment.
#[derive(Default)]
struct DwellNow {
    live: Option<Live>,
}

impl DwellNow {
    fn seconds(&mut self, segment: &Path) -> Option<f64> {
        if self.live.is_none() {
            self.live = Live::open(segment).ok();
        }
        let snap = self.live.as_mut()?.snapshot().ok()?;
        let now = snap.header.end_ticks();
        Some(crate::metrics::current_dwell(None, &snap, now).average())
    }
}

/// The controller and the fuses of one run.
pub struct PriceLoop {
    controller: Option<Controller>,
    series: Option<ControllerSeries>,
    usage: Usage,
    rules: Vec<FuseRule>,
    states: Vec<fuse::FuseState>,
    dwell: DwellWatch,
    dwell_now: DwellNow,
    previous: Option<Vec<f64>>,
}

impl PriceLoop {
    /// The loop of `config` measuring the target with `usage`, its fuse
    /// rules on dwell resolved against `manifest`.
    pub fn new(config: &RunConfig, manifest: &Manifest, usage: Usage) -> PriceLoop {
        PriceLoop {
            controller: config.controller.clone().map(Controller::new),
            series: config.controller.as_ref().map(|c| ControllerSeries {
                measured_from: Some(usage.source()),
                ..ControllerSeries::new(config.period_ns, c)
            }),
            usage,
            rules: config.fuses.clone(),
            states: vec![fuse::FuseState::default(); config.fuses.len()],
            dwell: DwellWatch::new(&config.fuses, manifest),
            dwell_now: DwellNow::default(),
            previous: None,
        }
    }

    /// Whether the controller prices the network (the kernel side's
    /// network path must then count socket bytes).
    pub fn needs_network(config: &RunConfig) -> bool {
        config
            .controller
            .as_ref()
            .is_some_and(|c| c.resources.iter().any(|r| r == "network"))
    }

    /// Whether it has anything to do each period.
    pub fn ticking(&self) -> bool {
        self.controller.is_some() || !self.rules.is_empty()
    }

    /// A new incarnation of the target (after a restart), with its segment.
    pub fn set_pid(&mut self, pid: u32) {
        self.usage.set_pid(pid);
        self.dwell_now = DwellNow::default();
    }

    /// One period at `t_ns`: returns the prices to publish (in the price
    /// map's order), if there is a controller, and the fuse states.
    /// `net_bytes`: the kernel side's socket byte count for the target, when
    /// it counts them (see [`PriceLoop::needs_network`]).
    pub fn tick(
        &mut self,
        t_ns: u64,
        segment: &Path,
        net_bytes: Option<u64>,
    ) -> (Option<[f64; 5]>, Vec<bool>) {
        let mut published = None;
        if let (Some(c), Some(s)) = (self.controller.as_mut(), self.series.as_mut()) {
            let mut u = self.usage.sample(&c.config.resources, net_bytes);
            for (r, v) in c.config.resources.iter().zip(u.iter_mut()) {
                if r == "dwell" {
                    *v = self.dwell_now.seconds(segment);
                }
            }
            c.step(&u);
            published = Some(c.map_prices());
            s.samples.push(Sample {
                t_ns,
                usage: u,
                price: c.prices.clone(),
            });
        }
        if self.rules.is_empty() {
            return (published, Vec::new());
        }
        let p99 = self.dwell.p99s(segment);
        let (resources, prices) = self.controller.as_ref().map_or((&[][..], Vec::new()), |c| {
            (&c.config.resources[..], c.prices.clone())
        });
        let obs = fuse::Observation {
            resources,
            prices: &prices,
            previous: self.previous.as_deref(),
            p99_ns: &p99,
        };
        let tripped = fuse::evaluate(&self.rules, &mut self.states, &obs, t_ns);
        self.previous = Some(prices);
        (published, tripped)
    }

    /// Trips so far (changes to tripped) of the fuse named `name`, or of all.
    pub fn trips(&self, name: Option<&str>) -> u64 {
        self.rules
            .iter()
            .zip(&self.states)
            .filter(|(r, _)| name.is_none_or(|n| r.name == n))
            .map(|(_, s)| s.changes.iter().filter(|(_, t)| *t).count() as u64)
            .sum()
    }

    /// The controller's series and every fuse's history, with the asks and
    /// sheds the kernel side counted (in rule order; missing ones are 0).
    pub fn finish(
        self,
        counts: &[panic_bpf::FuseCounts],
    ) -> (Option<ControllerSeries>, Vec<fuse::ProfileFuse>) {
        let fuses = self
            .rules
            .iter()
            .zip(&self.states)
            .enumerate()
            .map(|(i, (rule, st))| {
                let n = counts.get(i).copied().unwrap_or_default();
                fuse::ProfileFuse {
                    name: rule.name.clone(),
                    trip: rule.trip.clone(),
                    changes: st
                        .changes
                        .iter()
                        .map(|&(t_ns, tripped)| fuse::FuseChange { t_ns, tripped })
                        .collect(),
                    tripped_periods: st.tripped_periods,
                    asks: n.asks,
                    sheds: n.sheds,
                }
            })
            .collect();
        (self.series, fuses)
    }
}
