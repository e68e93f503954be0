//! Where the target's timed regions are, by the patterns conditions use
//! (`p99(SITE)`, `count(SITE)`), and their latencies for the report, read
//! from the runtime's live segment and merged across the target's
//! incarnations.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use panic_runtime::SiteKind;
use panic_runtime::hist::Hist;
use panic_runtime::segment::Snapshot;

use super::condition::Quantile;
use super::report;
use crate::manifest::Manifest;

/// Where timed regions of the target are, by the patterns conditions use.
pub struct Sites {
    pub manifest: Option<Manifest>,
    /// pattern -> (site ids for counts, hist ids for quantiles)
    resolved: HashMap<String, (Vec<usize>, Vec<usize>)>,
}

impl Sites {
    pub fn new(manifest: Option<Manifest>) -> Sites {
        Sites {
            manifest,
            resolved: HashMap::new(),
        }
    }

    /// Resolves a site pattern (`#12` or a glob over entry functions).
    pub fn resolve(&mut self, pattern: &str) -> Result<()> {
        if self.resolved.contains_key(pattern) {
            return Ok(());
        }
        let Some(m) = &self.manifest else {
            bail!(
                "the timeline asks about site '{pattern}', but the target is not an instrumented build \
                 (no site manifest): build it with `cargo panic build` or `cargo panic cc`"
            );
        };
        let hit = |i: usize| (i, m.sites[i].hist);
        let ids: Vec<(usize, Option<u32>)> = if let Some(n) = pattern.strip_prefix('#') {
            let i: usize = n
                .parse()
                .ok()
                .filter(|&i| i < m.sites.len())
                .with_context(|| {
                    format!(
                        "site '{pattern}' is not a site id of the target (it has {} sites)",
                        m.sites.len()
                    )
                })?;
            vec![hit(i)]
        } else {
            let glob = globset::Glob::new(pattern)
                .with_context(|| format!("'{pattern}' is not a valid function pattern"))?
                .compile_matcher();
            (0..m.sites.len())
                .filter(|&i| {
                    m.sites[i].kind == SiteKind::Entry && glob.is_match(&m.sites[i].function)
                })
                .map(hit)
                .collect()
        };
        if ids.is_empty() {
            bail!(
                "site pattern '{pattern}' matches no instrumented function of the target; \
                 `cargo panic sites <binary>` lists them"
            );
        }
        let counts = ids.iter().map(|(i, _)| *i).collect();
        let hists = ids
            .iter()
            .filter_map(|(_, h)| h.map(|h| h as usize))
            .collect();
        self.resolved.insert(pattern.to_string(), (counts, hists));
        Ok(())
    }

    pub fn count(&self, pattern: &str, snap: &Snapshot) -> Option<f64> {
        let (ids, _) = self.resolved.get(pattern)?;
        let m = self.manifest.as_ref()?;
        Some(ids.iter().map(|&i| m.count(i, &snap.counters)).sum::<u64>() as f64)
    }

    /// A quantile over several snapshots (the target's incarnations), with
    /// their histograms merged.
    pub fn quantile_over(&self, pattern: &str, q: Quantile, snaps: &[Snapshot]) -> Option<f64> {
        let (_, hists) = self.resolved.get(pattern)?;
        let last = snaps.last()?;
        let merged = merge(
            snaps
                .iter()
                .flat_map(|sn| hists.iter().filter_map(|&h| sn.hists.get(h))),
        );
        (merged.count > 0).then(|| merged.quantile(q.q()).map(|t| last.ticks_to_ns(t) as f64))?
    }

    pub fn quantile(&self, pattern: &str, q: Quantile, snap: &Snapshot) -> Option<f64> {
        let (_, hists) = self.resolved.get(pattern)?;
        let merged = merge(hists.iter().filter_map(|&h| snap.hists.get(h)));
        merged
            .quantile(q.q())
            .filter(|_| merged.count > 0)
            .map(|t| snap.ticks_to_ns(t) as f64)
    }
}

pub fn merge<'a>(hists: impl Iterator<Item = &'a Hist>) -> Hist {
    let mut m = Hist::new();
    for h in hists {
        m.count += h.count;
        m.total = m.total.wrapping_add(h.total);
        m.max = m.max.max(h.max);
        m.min = m.min.min(h.min);
        for (a, b) in m.buckets.iter_mut().zip(&h.buckets) {
            *a += b;
        }
    }
    m
}

/// Per timed region: count and latency quantiles, over every incarnation's
/// final snapshot (histograms merged).
pub fn latencies(m: Option<&Manifest>, snaps: &[Snapshot]) -> Vec<report::SiteLatency> {
    let Some(m) = m else { return Vec::new() };
    let Some(last) = snaps.last() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, s) in m.sites.iter().enumerate() {
        let Some(h) = s.hist else { continue };
        let merged = merge(snaps.iter().filter_map(|sn| sn.hists.get(h as usize)));
        if merged.count == 0 {
            continue;
        }
        let q = |q: f64| merged.quantile(q).map_or(0, |t| last.ticks_to_ns(t));
        out.push(report::SiteLatency {
            function: s.function.clone(),
            file: s.file.clone(),
            line: s.line,
            count: snaps.iter().filter_map(|sn| sn.counters.get(i)).sum(),
            p50_ns: q(0.5),
            p95_ns: q(0.95),
            p99_ns: q(0.99),
            p999_ns: q(0.999),
            max_ns: last.ticks_to_ns(merged.max),
        });
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.p99_ns));
    out
}
