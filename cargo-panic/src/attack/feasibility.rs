//! A timeline as the verifier's feasibility check sees it
//! (`panic_verifier::feasible`), and its verdict in words. Pure.
//!
//! Signals become variables with the domain their values can have (counts
//! are whole numbers from 0, loads and pressures are fractions, RSS is at
//! most the machine's memory, the exit code is 0..=255); `elapsed` is the
//! clock. The load an event puts on the machine is its peak: spinners take
//! their cores, a hog holds its bytes; limits, the proxy and the freezer take
//! nothing from the machine.

use std::fmt::Write;

use panic_verifier::feasible::{
    CmpOp, Domain, Feasibility, Finding, Formula, OutcomeKind, Plan, PlanEvent,
};

use super::condition::{Cond, Op, Outcome, Signal};
use super::timeline::{Level, Machine, Timeline, Via};
use super::units;

fn domain(s: &Signal, m: &Machine) -> Domain {
    match s {
        Signal::Exited => Domain::Flag,
        Signal::ExitCode => Domain::Range(0.0, 255.0),
        Signal::Rss => Domain::Range(0.0, m.mem_total as f64),
        Signal::Elapsed | Signal::Quantile(..) => Domain::NonNegative,
        Signal::CpuLoad | Signal::CpuPressure | Signal::MemoryPressure | Signal::IoPressure => {
            Domain::Fraction
        }
        Signal::Crashes
        | Signal::Restarts
        | Signal::OomKills
        | Signal::Threads
        | Signal::FuseTrips(_)
        | Signal::Count(_) => Domain::Count,
    }
}

fn formula(c: &Cond, t: &Timeline, m: &Machine) -> Formula {
    match c {
        Cond::Cmp { signal, op, value } => Formula::Cmp {
            label: c.to_string(),
            var: signal.to_string(),
            domain: domain(signal, m),
            op: match op {
                Op::Lt => CmpOp::Lt,
                Op::Le => CmpOp::Le,
                Op::Gt => CmpOp::Gt,
                Op::Ge => CmpOp::Ge,
                Op::Eq => CmpOp::Eq,
                Op::Ne => CmpOp::Ne,
            },
            value: *value,
        },
        Cond::Truthy(signal) => Formula::Cmp {
            label: c.to_string(),
            var: signal.to_string(),
            domain: domain(signal, m),
            op: CmpOp::Ne,
            value: 0.0,
        },
        Cond::Outcome {
            event,
            outcome,
            negated,
        } => Formula::Outcome {
            label: c.to_string(),
            // Validated: the id exists.
            event: t.events.iter().position(|e| &e.id == event).unwrap_or(0),
            outcome: match outcome {
                Outcome::Started => OutcomeKind::Started,
                Outcome::Ended => OutcomeKind::Ended,
                Outcome::Crash => OutcomeKind::Crash,
                Outcome::Survived => OutcomeKind::Survived,
                Outcome::Stopped => OutcomeKind::Stopped,
            },
            negated: *negated,
        },
        Cond::All(v) => Formula::All(v.iter().map(|x| formula(x, t, m)).collect()),
        Cond::Any(v) => Formula::Any(v.iter().map(|x| formula(x, t, m)).collect()),
        Cond::Not(x) => Formula::Not(Box::new(formula(x, t, m))),
    }
}

/// The verifier's view of a timeline on a machine.
pub fn plan(t: &Timeline, m: &Machine) -> Plan {
    Plan {
        duration_ns: t.duration_ns,
        clock_var: Some(Signal::Elapsed.to_string()),
        cores: f64::from(m.cpus.max(1)),
        memory_bytes: m.mem_total as f64,
        events: t
            .events
            .iter()
            .map(|e| {
                let level = match e.intensity.level(e.via, m) {
                    Level::Scalar(v) => v,
                    _ => 0.0,
                };
                PlanEvent {
                    id: e.id.clone(),
                    at_ns: e.at_ns,
                    for_ns: e.for_ns,
                    start: e.start_when.as_ref().map(|c| formula(c, t, m)),
                    has_stop: e.stop_when.is_some(),
                    cores: if e.via == Via::Spin { level } else { 0.0 },
                    bytes: if e.via == Via::Hog { level } else { 0.0 },
                }
            })
            .collect(),
    }
}

fn finding(f: &Finding) -> String {
    let d = |ns: u64| units::fmt_duration(ns as f64);
    match f {
        Finding::Cycle { events } => format!(
            "events wait for each other in a cycle: {}",
            events.join(" -> ")
        ),
        Finding::NeverStarts { event, why } => {
            format!("event '{event}' can never start: {}", why.join("; "))
        }
        Finding::Overload {
            resource,
            at_ns,
            total,
            capacity,
            events,
        } => {
            let (t, c) = if resource == "memory" {
                (units::fmt_bytes(*total), units::fmt_bytes(*capacity))
            } else {
                (
                    format!("{} cores", units::fmt_num(*total)),
                    format!("{} cores", units::fmt_num(*capacity)),
                )
            };
            format!(
                "at {}: {resource} load {t} exceeds the machine's {c} ({})",
                d(*at_ns),
                events.join(", ")
            )
        }
        Finding::PastEnd {
            event,
            ends_ns,
            duration_ns,
        } => {
            format!(
                "event '{event}' would end at {}, after the run's {}",
                d(*ends_ns),
                d(*duration_ns)
            )
        }
        Finding::Unknown { event, reason } => {
            format!("event '{event}': z3 could not decide ({reason})")
        }
    }
}

/// The verdict in words (for `verify --timeline` and the attack's refusal).
pub fn describe(v: &Feasibility) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "timeline feasibility: {}",
        if v.feasible {
            "feasible"
        } else {
            "NOT feasible"
        }
    );
    for f in &v.findings {
        let _ = writeln!(s, "  - {}", finding(f));
    }
    for f in &v.possible {
        let _ = writeln!(s, "  possible: {}", finding(f));
    }
    if v.feasible {
        let _ = writeln!(
            s,
            "  peak load of fixed-time events: {} cores at {}, {} at {}",
            units::fmt_num(v.peak_cores.1),
            units::fmt_duration(v.peak_cores.0 as f64),
            units::fmt_bytes(v.peak_bytes.1),
            units::fmt_duration(v.peak_bytes.0 as f64)
        );
        for (id, w) in &v.witnesses {
            let vals: Vec<String> = w
                .iter()
                .map(|(k, x)| format!("{k} = {}", units::fmt_num(*x)))
                .collect();
            let _ = writeln!(s, "  '{id}' can start, e.g. when {}", vals.join(", "));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Machine = Machine::TEST;

    fn verdict(text: &str) -> Feasibility {
        let t = Timeline::parse(text, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
        panic_verifier::feasible::check(&plan(&t, &M))
    }

    #[test]
    fn every_shipped_preset_is_feasible_on_two_cpus() {
        for (name, text) in [
            (
                "production-spike",
                include_str!("../../presets/production-spike.yaml"),
            ),
            (
                "memory-starved",
                include_str!("../../presets/memory-starved.yaml"),
            ),
            (
                "disk-degraded",
                include_str!("../../presets/disk-degraded.yaml"),
            ),
            (
                "network-partition",
                include_str!("../../presets/network-partition.yaml"),
            ),
            (
                "thundering-herd",
                include_str!("../../presets/thundering-herd.yaml"),
            ),
            ("cascade", include_str!("../../presets/cascade.yaml")),
        ] {
            let v = verdict(text);
            assert!(v.feasible, "{name}: {}", describe(&v));
        }
    }

    #[test]
    fn infeasible_timelines_are_explained() {
        let v = verdict(
            "duration: 10s\ntracks:\n  - axis: cpu\n    events:\n      - {id: a, at: 0s, for: 5s, intensity: 1.5 cores}\n      - {id: b, at: 2s, for: 5s, intensity: 1 cores}\n      - {id: c, start_when: cpu_load > 120%}\n      - {id: d, after: c, for: 1s}\n",
        );
        let text = describe(&v);
        assert!(!v.feasible);
        assert!(
            text.contains("at 2s: cpu load 2.5 cores exceeds the machine's 2 cores (a, b)"),
            "{text}"
        );
        assert!(
            text.contains("event 'c' can never start: its condition `cpu_load > 120%`"),
            "{text}"
        );
        assert!(text.contains("event 'd' can never start: its condition `outcome(c) == ended`; event 'c' can never start"), "{text}");
    }
}
