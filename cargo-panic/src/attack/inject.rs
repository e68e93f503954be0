//! Fault events (`fail-alloc`, `fail-io`, `eintr`): which of the target's
//! instrumented sites each one selects (from the manifest's fault points),
//! and the fault table (`panic_runtime::faults`) the target's runtime reads:
//! rules armed while their events run, each site pointed at the latest
//! active event that selects it, counts read back for the report.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use globset::Glob;
use panic_passes::FaultPoint;
use panic_runtime::faults::{Mode, Rule, RuleStats, Table, What};

use super::report::{FaultReport, FaultSite};
use super::schedule::Applied;
use super::timeline::{FaultPick, FaultSpec, Level, Timeline, Via};
use crate::manifest::Manifest;
use crate::segfile::SegmentFile;

/// The fault points a mechanism can fail.
fn eligible(via: Via, p: FaultPoint) -> bool {
    match via {
        Via::FailAlloc => p == FaultPoint::Alloc,
        Via::FailIo => p == FaultPoint::File,
        Via::Eintr => matches!(p, FaultPoint::File | FaultPoint::Socket | FaultPoint::Wait),
        _ => false,
    }
}

fn kind_words(via: Via) -> &'static str {
    match via {
        Via::FailAlloc => "allocation sites (malloc, operator new, Rust's allocator...)",
        Via::FailIo => "file I/O sites (write, read, fsync, fwrite, std::fs...)",
        _ => "blocking sites (I/O, sockets, sleeps, waits)",
    }
}

/// The sites of `m` a fault event selects. Pure.
pub fn select(m: &Manifest, via: Via, spec: &FaultSpec) -> Result<Vec<u32>, String> {
    let function = match spec.sites.as_deref() {
        Some(p) if !p.starts_with('#') => Some(
            Glob::new(p)
                .map_err(|e| format!("'{p}': {e}"))?
                .compile_matcher(),
        ),
        _ => None,
    };
    let index: Option<usize> = spec
        .sites
        .as_deref()
        .and_then(|p| p.strip_prefix('#'))
        .map(|n| n.parse().map_err(|_| format!("'#{n}' is not a site index")))
        .transpose()?;
    let callee = spec
        .callee
        .as_deref()
        .map(|p| {
            Glob::new(p)
                .map(|g| g.compile_matcher())
                .map_err(|e| format!("'{p}': {e}"))
        })
        .transpose()?;
    let out: Vec<u32> = m
        .sites
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            s.fault.is_some_and(|p| eligible(via, p))
                && index.is_none_or(|n| n == *i)
                && function.as_ref().is_none_or(|g| g.is_match(&s.function))
                && callee
                    .as_ref()
                    .is_none_or(|g| s.callee.as_deref().is_some_and(|c| g.is_match(c)))
        })
        .map(|(i, _)| i as u32)
        .collect();
    if out.is_empty() {
        let what = match (&spec.sites, &spec.callee) {
            (None, None) => String::new(),
            (Some(s), None) => format!(" in '{s}'"),
            (None, Some(c)) => format!(" calling '{c}'"),
            (Some(s), Some(c)) => format!(" in '{s}' calling '{c}'"),
        };
        let n = m
            .sites
            .iter()
            .filter(|s| s.fault.is_some_and(|p| eligible(via, p)))
            .count();
        return Err(format!(
            "no {}{what}: the target has {n} such sites; `cargo panic sites <binary>` lists them \
             (`fault` says which can fail)",
            kind_words(via)
        ));
    }
    Ok(out)
}

fn errno_of(name: &str) -> i32 {
    match name {
        "ENOSPC" => libc::ENOSPC,
        "EIO" => libc::EIO,
        _ => libc::EINTR,
    }
}

struct Plan {
    event: usize,
    via: Via,
    spec: FaultSpec,
    sites: Vec<u32>,
    seed: u64,
}

/// The run's fault table and what each fault event selected.
pub struct Injector {
    table: Table,
    plans: Vec<Plan>,
    /// event -> rule slot, while the event runs.
    slots: HashMap<usize, usize>,
    /// site -> rule slot it follows now.
    assigned: HashMap<u32, usize>,
    /// Counts of events that ended (their slots were reused).
    done: HashMap<usize, RuleStats>,
}

const SLOTS: usize = panic_runtime::abi::FAULT_RULES as usize;

impl Injector {
    /// Resolves every fault event of `t` against the target's manifest and
    /// creates the fault table; None when the timeline has no fault event.
    pub fn prepare(t: &Timeline, manifest: Option<&Manifest>) -> Result<Option<Injector>> {
        let faulty: Vec<usize> = (0..t.events.len())
            .filter(|&i| t.events[i].via.is_fault())
            .collect();
        if faulty.is_empty() {
            return Ok(None);
        }
        let Some(m) = manifest else {
            bail!(
                "event '{}' fails calls at instrumented sites, but the target is not an instrumented \
                 build (no site manifest next to it): build it with `cargo panic build` or `cargo panic cc`",
                t.events[faulty[0]].id
            );
        };
        let mut plans = Vec::new();
        for i in faulty {
            let e = &t.events[i];
            let spec = e.fault.clone().expect("fault events carry their spec");
            let sites = select(m, e.via, &spec).map_err(|why| {
                anyhow::anyhow!("event '{}' ({} via {}): {why}", e.id, e.axis, e.via)
            })?;
            plans.push(Plan {
                event: i,
                via: e.via,
                spec,
                sites,
                seed: t.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            });
        }
        let n_sites = m.counter_slots;
        // Named like a segment file (this process's pid in it), so that the
        // sweep of a killed run's files removes it too; the table removes
        // its file when dropped.
        let path = SegmentFile::new()
            .context("cannot name the fault table")?
            .path()
            .with_extension("faults");
        let table = Table::create(&path, n_sites)
            .with_context(|| format!("cannot create the fault table {}", path.display()))?;
        Ok(Some(Injector {
            table,
            plans,
            slots: HashMap::new(),
            assigned: HashMap::new(),
            done: HashMap::new(),
        }))
    }

    /// The environment variable the target reads the table from.
    pub fn env(&self) -> (String, String) {
        (
            panic_runtime::abi::ENV_FAULTS.to_string(),
            self.table.path().display().to_string(),
        )
    }

    fn plan(&self, event: usize) -> Option<&Plan> {
        self.plans.iter().find(|p| p.event == event)
    }

    /// Arms the rules of the fault events in `active` (at their shaped
    /// levels), points every site at the latest of them that selects it, and
    /// disarms the rest. Returns errors per event.
    pub fn apply(&mut self, active: &[Applied]) -> Vec<(usize, String)> {
        let mut errors = Vec::new();
        let now: Vec<(usize, f64)> = active
            .iter()
            .filter(|a| a.via.is_fault())
            .map(|a| {
                let v = match a.level {
                    Level::Scalar(v) => v,
                    _ => 0.0,
                };
                (a.event, v)
            })
            .collect();
        // New events get a rule; running fractions follow their level.
        for &(event, level) in &now {
            let Some(p) = self.plan(event) else { continue };
            if let Some(&slot) = self.slots.get(&event) {
                if p.spec.pick == FaultPick::Fraction {
                    self.table.set_fraction(slot, level);
                }
                continue;
            }
            let Some(slot) = (0..SLOTS).find(|s| !self.slots.values().any(|u| u == s)) else {
                errors.push((
                    event,
                    format!("more than {SLOTS} fault events at once: this one does not run"),
                ));
                continue;
            };
            let rule = Rule {
                what: match p.spec.errno {
                    None => What::Alloc,
                    Some(e) => What::Errno(errno_of(e)),
                },
                mode: match p.spec.pick {
                    FaultPick::Fraction => Mode::Fraction(level),
                    FaultPick::Nth(n) => Mode::Nth(n),
                    FaultPick::Every(n) => Mode::Every(n),
                },
                limit: p.spec.limit,
                seed: p.seed,
            };
            self.table.arm(slot, &rule);
            self.slots.insert(event, slot);
        }
        // Sites: the latest active event (by index) that selects one wins.
        let mut want: HashMap<u32, usize> = HashMap::new();
        for &(event, _) in &now {
            if let (Some(p), Some(&slot)) = (self.plan(event), self.slots.get(&event)) {
                for &s in &p.sites {
                    want.insert(s, slot);
                }
            }
        }
        for (&site, &slot) in &want {
            if self.assigned.get(&site) != Some(&slot) {
                self.table.set_site(site, Some(slot));
            }
        }
        for &site in self.assigned.keys() {
            if !want.contains_key(&site) {
                self.table.set_site(site, None);
            }
        }
        self.assigned = want;
        // Ended events: keep their counts, free their rule.
        let ended: Vec<(usize, usize)> = self
            .slots
            .iter()
            .filter(|(e, _)| !now.iter().any(|(n, _)| n == *e))
            .map(|(&e, &s)| (e, s))
            .collect();
        for (event, slot) in ended {
            self.table.disarm(slot);
            self.done.insert(event, self.table.stats(slot));
            self.slots.remove(&event);
        }
        errors
    }

    fn stats(&self, event: usize) -> Option<RuleStats> {
        match self.slots.get(&event) {
            Some(&slot) => Some(self.table.stats(slot)),
            None => self.done.get(&event).copied(),
        }
    }

    /// What an active event achieved so far: the fraction of eligible calls
    /// that failed (with nth: how many failed).
    /// Faults injected so far, summed by what failed (`alloc`, or the
    /// errno name), for a failure's evidence.
    pub fn injected(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Vec::new();
        for p in &self.plans {
            let what = p.spec.errno.unwrap_or("alloc").to_string();
            let n = self.stats(p.event).map_or(0, |s| s.injected);
            match out.iter_mut().find(|(w, _)| *w == what) {
                Some((_, total)) => *total += n,
                None => out.push((what, n)),
            }
        }
        out.retain(|(_, n)| *n > 0);
        out
    }

    pub fn achieved(&self, event: usize) -> Option<f64> {
        let p = self.plan(event)?;
        let s = self.stats(event)?;
        match p.spec.pick {
            FaultPick::Nth(_) => Some(s.injected as f64),
            _ => (s.calls > 0).then(|| s.injected as f64 / s.calls as f64),
        }
    }

    /// Disarms everything (the run is over) and reports each fault event.
    pub fn finish(&mut self, t: &Timeline, m: Option<&Manifest>) -> Vec<FaultReport> {
        self.apply(&[]);
        let attached = self.table.attached();
        self.plans
            .iter()
            .map(|p| {
                let s = self.done.get(&p.event).copied().unwrap_or_default();
                let mut sites: Vec<FaultSite> = p
                    .sites
                    .iter()
                    .filter_map(|&i| {
                        let injected = self.table.site_injected(i);
                        let site = m?.sites.get(i as usize)?;
                        (injected > 0).then(|| FaultSite {
                            site: i,
                            function: site.function.clone(),
                            callee: site.callee.clone(),
                            file: site.file.clone(),
                            line: site.line,
                            injected,
                        })
                    })
                    .collect();
                sites.sort_by_key(|s| std::cmp::Reverse(s.injected));
                sites.truncate(20);
                FaultReport {
                    event: t.events[p.event].id.clone(),
                    via: p.via,
                    fails_with: p.spec.errno.unwrap_or("alloc").to_string(),
                    pick: match p.spec.pick {
                        FaultPick::Fraction => "fraction".into(),
                        FaultPick::Nth(n) => format!("nth {n}"),
                        FaultPick::Every(n) => format!("every {n}"),
                    },
                    sites_selected: p.sites.len(),
                    calls: s.calls,
                    injected: s.injected,
                    attached,
                    sites,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Site;
    use panic_runtime::SiteKind;

    fn site(function: &str, callee: &str, kind: SiteKind, fault: Option<FaultPoint>) -> Site {
        Site {
            id: format!("{function}/{callee}"),
            kind,
            function: function.into(),
            file: None,
            line: 1,
            column: 0,
            object: "o".into(),
            timed: false,
            reason: None,
            callee: Some(callee.into()),
            unwind: false,
            adaptive: false,
            hist: None,
            symbol: function.into(),
            callees: None,
            touches: None,
            fault,
            risks: None,
            count_of: None,
            pending: false,
        }
    }

    fn manifest() -> Manifest {
        let mut m = Manifest::from_linked(
            std::path::Path::new("/x"),
            &crate::linked::Linked::default(),
        );
        m.sites = vec![
            site(
                "app::load",
                "malloc",
                SiteKind::Alloc,
                Some(FaultPoint::Alloc),
            ),
            site("app::load", "strdup", SiteKind::Alloc, None),
            site(
                "app::save",
                "write",
                SiteKind::Blocking,
                Some(FaultPoint::File),
            ),
            site(
                "app::serve",
                "accept",
                SiteKind::Blocking,
                Some(FaultPoint::Socket),
            ),
            site(
                "app::save",
                "__rust_alloc",
                SiteKind::Alloc,
                Some(FaultPoint::Alloc),
            ),
        ];
        m
    }

    fn spec(sites: Option<&str>, callee: Option<&str>) -> FaultSpec {
        FaultSpec {
            sites: sites.map(str::to_string),
            callee: callee.map(str::to_string),
            pick: FaultPick::Fraction,
            limit: None,
            errno: None,
        }
    }

    #[test]
    fn events_select_sites_by_kind_function_callee_and_index() {
        let m = manifest();
        assert_eq!(
            select(&m, Via::FailAlloc, &spec(None, None)),
            Ok(vec![0, 4])
        );
        assert_eq!(
            select(&m, Via::FailAlloc, &spec(Some("app::save"), None)),
            Ok(vec![4])
        );
        assert_eq!(select(&m, Via::FailIo, &spec(None, None)), Ok(vec![2]));
        assert_eq!(select(&m, Via::Eintr, &spec(None, None)), Ok(vec![2, 3]));
        assert_eq!(
            select(&m, Via::Eintr, &spec(None, Some("acc*"))),
            Ok(vec![3])
        );
        assert_eq!(select(&m, Via::Eintr, &spec(Some("#3"), None)), Ok(vec![3]));
        // strdup has no size to replace; a socket is no file.
        let e = select(&m, Via::FailAlloc, &spec(None, Some("strdup"))).unwrap_err();
        assert!(e.starts_with("no allocation sites"), "{e}");
        assert!(e.contains("calling 'strdup'"), "{e}");
        assert!(e.contains("the target has 2 such sites"), "{e}");
        let e = select(&m, Via::FailIo, &spec(Some("app::serve"), None)).unwrap_err();
        assert!(e.starts_with("no file I/O sites"), "{e}");
        assert!(e.contains("in 'app::serve'"), "{e}");
    }
}
