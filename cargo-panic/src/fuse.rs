//! Fuses (DESIGN §4 "Fuse"): the run config's trip rules and their
//! evaluation every controller period. Pure: the IO shell reads the prices and
//! region p99s and writes the states into the fuse table, where the program's
//! `panic_fuse("name")` / `cargo_panic::fuse!("name")` reads them.
//!
//! ```yaml
//! fuses:
//!   - name: ingest
//!     trip: {price: memory, above: 1.0}        # a price above a threshold
//!   - name: batch
//!     trip: {price: cpu, rising_for: 3}        # a price that rose 3 periods in a row
//!   - name: slow
//!     trip: {dwell_p99: "handle_*", above: 50ms}  # a region's p99 dwell over a bound
//! ```
//!
//! A fuse is tripped in every period its rule holds and reset in the others.

use globset::Glob;
use serde::{Deserialize, Serialize};

use crate::budget::parse_duration;

/// A fuse as the run config writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FuseFile {
    name: String,
    trip: TripFile,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TripFile {
    #[serde(default)]
    price: Option<String>,
    #[serde(default)]
    dwell_p99: Option<String>,
    #[serde(default)]
    above: Option<serde_norway::Value>,
    #[serde(default)]
    rising_for: Option<u32>,
}

/// What trips a fuse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trip {
    /// The price of `resource` above `above`.
    PriceAbove { resource: String, above: f64 },
    /// The price of `resource` higher than the period before, `periods` periods in a row.
    PriceRising { resource: String, periods: u32 },
    /// The p99 dwell of the timed regions whose function matches `pattern`
    /// (the largest of them) above `above_ns`.
    DwellP99 { pattern: String, above_ns: u64 },
}

/// A validated fuse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FuseRule {
    pub name: String,
    pub trip: Trip,
}

/// Checks the config's fuses. `priced`: the resources the controller prices
/// (a price rule on another would never fire).
pub fn validate(fuses: Vec<FuseFile>, priced: &[String]) -> Result<Vec<FuseRule>, String> {
    if fuses.len() > panic_bpf::MAX_FUSES {
        return Err(format!(
            " {} fuses: a run can have at most {}",
            fuses.len(),
            panic_bpf::MAX_FUSES
        ));
    }
    let mut out: Vec<FuseRule> = Vec::new();
    for (i, f) in fuses.into_iter().enumerate() {
        let at = format!(" fuses[{i}] '{}'", f.name);
        if f.name.is_empty() || f.name.len() >= panic_bpf::FUSE_NAME_BYTES || f.name.contains('\0')
        {
            return Err(format!(
                "{at}: a fuse name has 1 to {} bytes and no NUL",
                panic_bpf::FUSE_NAME_BYTES - 1
            ));
        }
        if out.iter().any(|r| r.name == f.name) {
            return Err(format!("{at}: the name is used twice"));
        }
        let t = f.trip;
        let trip = match (t.price, t.dwell_p99, t.above, t.rising_for) {
            (Some(r), None, Some(above), None) => {
                check_priced(&at, &r, priced)?;
                let above = above
                    .as_f64()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| format!("{at}: trip.above is a price, a number >= 0"))?;
                Trip::PriceAbove { resource: r, above }
            }
            (Some(r), None, None, Some(k)) => {
                check_priced(&at, &r, priced)?;
                if k == 0 {
                    return Err(format!("{at}: trip.rising_for counts periods, at least 1"));
                }
                Trip::PriceRising {
                    resource: r,
                    periods: k,
                }
            }
            (None, Some(pattern), Some(above), None) => {
                Glob::new(&pattern)
                    .map_err(|e| format!("{at}: '{pattern}' is not a valid glob: {e}"))?;
                let above_ns = above.as_str().and_then(parse_duration).ok_or_else(|| {
                    format!("{at}: trip.above is a duration for dwell_p99 (e.g. 50ms)")
                })?;
                Trip::DwellP99 { pattern, above_ns }
            }
            _ => {
                return Err(format!(
                    "{at}: trip is one of {{price: R, above: P}}, {{price: R, rising_for: K}} or \
                     {{dwell_p99: PATTERN, above: DURATION}}"
                ));
            }
        };
        out.push(FuseRule { name: f.name, trip });
    }
    Ok(out)
}

/// Whether the controller resource `configured` is the one a fuse names
/// `named`: as configured, or by the price it sets (`memory` for
/// `memory:pressure`).
fn prices(configured: &str, named: &str) -> bool {
    configured == named || crate::controller::kind(configured) == named
}

fn check_priced(at: &str, r: &str, priced: &[String]) -> Result<(), String> {
    if priced.iter().any(|p| prices(p, r)) {
        Ok(())
    } else {
        Err(format!(
            "{at}: trip.price '{r}' is not priced by the controller (it prices: {}), so it would never trip",
            if priced.is_empty() {
                "nothing".to_string()
            } else {
                priced.join(", ")
            }
        ))
    }
}

/// What one period's evaluation sees.
#[derive(Debug, Clone, Default)]
pub struct Observation<'a> {
    /// Prices now and one period before, by controller resource.
    pub resources: &'a [String],
    pub prices: &'a [f64],
    pub previous: Option<&'a [f64]>,
    /// For each rule (same order), the p99 dwell its pattern matched, if it
    /// matched a region with samples.
    pub p99_ns: &'a [Option<u64>],
}

/// A fuse's state over the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FuseState {
    pub tripped: bool,
    rising: u32,
    /// (t_ns, tripped) at every change.
    pub changes: Vec<(u64, bool)>,
    pub tripped_periods: u64,
}

/// One period for every fuse; returns the states to publish.
pub fn evaluate(
    rules: &[FuseRule],
    states: &mut [FuseState],
    obs: &Observation<'_>,
    t_ns: u64,
) -> Vec<bool> {
    let price = |p: &[f64], r: &str| {
        obs.resources
            .iter()
            .position(|x| prices(x, r))
            .and_then(|i| p.get(i).copied())
    };
    rules
        .iter()
        .zip(states.iter_mut())
        .enumerate()
        .map(|(i, (rule, st))| {
            let now = match &rule.trip {
                Trip::PriceAbove { resource, above } => {
                    price(obs.prices, resource).is_some_and(|p| p > *above)
                }
                Trip::PriceRising { resource, periods } => {
                    let rose = match (
                        price(obs.prices, resource),
                        obs.previous.and_then(|p| price(p, resource)),
                    ) {
                        (Some(a), Some(b)) => a > b,
                        _ => false,
                    };
                    st.rising = if rose { st.rising + 1 } else { 0 };
                    st.rising >= *periods
                }
                Trip::DwellP99 { above_ns, .. } => obs
                    .p99_ns
                    .get(i)
                    .copied()
                    .flatten()
                    .is_some_and(|p| p > *above_ns),
            };
            if now != st.tripped {
                st.changes.push((t_ns, now));
                st.tripped = now;
            }
            if now {
                st.tripped_periods += 1;
            }
            now
        })
        .collect()
}

/// One fuse in the profile's `fuses`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileFuse {
    pub name: String,
    pub trip: Trip,
    /// Every change of state: when (ns since the program started) and to what.
    pub changes: Vec<FuseChange>,
    /// Periods the fuse was tripped.
    pub tripped_periods: u64,
    /// `panic_fuse` calls with this name, and how many answered "shed".
    pub asks: u64,
    pub sheds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FuseChange {
    pub t_ns: u64,
    pub tripped: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str, priced: &[&str]) -> Result<Vec<FuseRule>, String> {
        let f: Vec<FuseFile> = serde_norway::from_str(yaml).unwrap();
        validate(f, &priced.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn rules_parse_and_bad_ones_say_why() {
        let r = rules(
            "- {name: a, trip: {price: memory, above: 1.5}}\n- {name: b, trip: {price: cpu, rising_for: 3}}\n- {name: c, trip: {dwell_p99: 'h*', above: 50ms}}\n",
            &["cpu", "memory"],
        )
        .unwrap();
        assert_eq!(
            r[0].trip,
            Trip::PriceAbove {
                resource: "memory".into(),
                above: 1.5
            }
        );
        assert_eq!(
            r[2].trip,
            Trip::DwellP99 {
                pattern: "h*".into(),
                above_ns: 50_000_000
            }
        );
        for (yaml, needle) in [
            (
                "- {name: a, trip: {price: io, above: 1}}",
                "not priced by the controller",
            ),
            ("- {name: a, trip: {price: cpu}}", "trip is one of"),
            (
                "- {name: a, trip: {price: cpu, rising_for: 0}}",
                "at least 1",
            ),
            ("- {name: a, trip: {dwell_p99: f, above: 2}}", "a duration"),
            (
                "- {name: a, trip: {price: cpu, above: 1}}\n- {name: a, trip: {price: cpu, above: 2}}",
                "used twice",
            ),
            (
                "- {name: '', trip: {price: cpu, above: 1}}",
                "1 to 47 bytes",
            ),
        ] {
            let e = rules(yaml, &["cpu"]).unwrap_err();
            assert!(e.contains(needle), "{yaml}: {e}");
        }
    }

    #[test]
    fn fuses_trip_and_reset_with_their_rules() {
        let r = rules(
            "- {name: hi, trip: {price: cpu, above: 1.0}}\n- {name: up, trip: {price: cpu, rising_for: 2}}\n",
            &["cpu"],
        )
        .unwrap();
        let res = vec!["cpu".to_string()];
        let mut st = vec![FuseState::default(), FuseState::default()];
        let mut prev: Option<Vec<f64>> = None;
        let mut got = Vec::new();
        for (t, p) in [0.5, 0.8, 1.2, 1.5, 1.4, 0.2].into_iter().enumerate() {
            let prices = vec![p];
            let obs = Observation {
                resources: &res,
                prices: &prices,
                previous: prev.as_deref(),
                p99_ns: &[],
            };
            got.push(evaluate(&r, &mut st, &obs, t as u64));
            prev = Some(prices);
        }
        let hi: Vec<bool> = got.iter().map(|v| v[0]).collect();
        let up: Vec<bool> = got.iter().map(|v| v[1]).collect();
        assert_eq!(hi, [false, false, true, true, true, false]);
        assert_eq!(up, [false, false, true, true, false, false]);
        assert_eq!(st[0].changes, vec![(2, true), (5, false)]);
        assert_eq!(st[0].tripped_periods, 3);
    }
}
