//! Timeline feasibility (issue 5, item 4): before a stress run, whether the
//! timeline can happen as written. Pure: the caller turns its timeline into a
//! [`Plan`] (events with times, start conditions as [`Formula`]s over
//! signals with known domains, and the load each puts on the machine).
//!
//! The checks, each answered with evidence:
//! - the "starts after" relation among events is acyclic (a cycle is named);
//! - every start condition is satisfiable (z3, linear real/integer
//!   arithmetic over the signals' domains, with the outcome atoms of other
//!   events constrained by what those events can do: an event without `for`
//!   only ends with the run, so it never `survived` in time for a follower;
//!   one without `stop_when` is never `stopped`; one that can never start has
//!   no outcome). A satisfiable condition comes with a model (signal values
//!   under which it holds); an unsatisfiable one with its unsat core, the
//!   smallest set of its parts and facts that cannot hold together;
//! - loads fit the machine at every instant: the CPU of load events (cores)
//!   and their memory (bytes), summed over the fixed-time events active at
//!   each instant, within the machine's cores and RAM. Events that start on a
//!   condition have no fixed window: where they could add to a peak, that is
//!   reported as a possible overload, not a failure;
//! - fixed-time events end within the timeline.
//!
//! z3 `unknown` is reported as such (never as feasible).

use std::collections::BTreeMap;

use serde::Serialize;
use z3::ast::{Bool, Int, Real};
use z3::{SatResult, Solver};

/// What a signal's values can be.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    /// Whole numbers from 0 (counts).
    Count,
    /// Reals from 0 (sizes, durations).
    NonNegative,
    /// Reals in [0, 1] (loads, pressures).
    Fraction,
    /// 0 or 1.
    Flag,
    /// Reals in [lo, hi].
    Range(f64, f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

/// What a condition can ask about another event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Started,
    Ended,
    Crash,
    Survived,
    Stopped,
}

/// A start condition. `label` is how the user wrote the part (for reports).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Formula {
    Cmp {
        label: String,
        var: String,
        domain: Domain,
        op: CmpOp,
        value: f64,
    },
    Outcome {
        label: String,
        /// Index into the plan's events.
        event: usize,
        outcome: OutcomeKind,
        negated: bool,
    },
    All(Vec<Formula>),
    Any(Vec<Formula>),
    Not(Box<Formula>),
}

/// One event of a plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanEvent {
    pub id: String,
    pub at_ns: u64,
    /// None: until its stop condition or the end of the run.
    pub for_ns: Option<u64>,
    pub start: Option<Formula>,
    pub has_stop: bool,
    /// CPU it takes from the machine (cores) and memory it holds (bytes), at its peak.
    pub cores: f64,
    pub bytes: f64,
}

/// A timeline as the verifier sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub duration_ns: u64,
    /// The variable that is the time on the timeline (ns), if conditions use it.
    pub clock_var: Option<String>,
    pub cores: f64,
    pub memory_bytes: f64,
    pub events: Vec<PlanEvent>,
}

/// Why the timeline is not feasible, or what may go wrong.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    Cycle {
        events: Vec<String>,
    },
    NeverStarts {
        event: String,
        why: Vec<String>,
    },
    Overload {
        resource: String,
        at_ns: u64,
        total: f64,
        capacity: f64,
        events: Vec<String>,
    },
    PastEnd {
        event: String,
        ends_ns: u64,
        duration_ns: u64,
    },
    Unknown {
        event: String,
        reason: String,
    },
}

/// The verdict: feasible with its witnesses, or the findings that make it not.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Feasibility {
    pub feasible: bool,
    /// Problems that make it infeasible (or undecided: `Unknown`).
    pub findings: Vec<Finding>,
    /// Possible overloads involving condition-started events (warnings).
    pub possible: Vec<Finding>,
    /// For each event with a start condition: signal values under which it holds.
    pub witnesses: BTreeMap<String, BTreeMap<String, f64>>,
    /// The peak CPU and memory of fixed-time events: (instant, total).
    pub peak_cores: (u64, f64),
    pub peak_bytes: (u64, f64),
}

fn q(v: f64) -> Real {
    // Exact enough for any value a timeline writes (1/1000 of a unit), as a
    // numeral string: z3's integer-pair constructor takes 32-bit ints and
    // nanosecond times do not fit.
    let n = (v * 1000.0).round() as i128;
    Real::from_rational_str(&n.to_string(), "1000").expect("a decimal numeral")
}

/// Every event a formula names.
fn refs(f: &Formula, out: &mut Vec<usize>) {
    match f {
        Formula::Outcome { event, .. } => out.push(*event),
        Formula::All(v) | Formula::Any(v) => v.iter().for_each(|g| refs(g, out)),
        Formula::Not(g) => refs(g, out),
        Formula::Cmp { .. } => {}
    }
}

/// The events in an order where every event comes after those it waits
/// for, or a cycle.
fn order(plan: &Plan) -> Result<Vec<usize>, Vec<usize>> {
    let n = plan.events.len();
    let deps: Vec<Vec<usize>> = plan
        .events
        .iter()
        .map(|e| {
            let mut r = Vec::new();
            if let Some(f) = &e.start {
                refs(f, &mut r);
            }
            r
        })
        .collect();
    // 0 unvisited, 1 on the stack, 2 done; iterative DFS.
    let mut state = vec![0u8; n];
    let mut out = Vec::with_capacity(n);
    for root in 0..n {
        if state[root] != 0 {
            continue;
        }
        let mut stack = vec![(root, 0usize)];
        state[root] = 1;
        while let Some(&mut (v, ref mut i)) = stack.last_mut() {
            if let Some(&w) = deps[v].get(*i) {
                *i += 1;
                match state[w] {
                    0 => {
                        state[w] = 1;
                        stack.push((w, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|&(x, _)| x == w).unwrap_or(0);
                        return Err(stack[from..].iter().map(|&(x, _)| x).collect());
                    }
                    _ => {}
                }
            } else {
                state[v] = 2;
                out.push(v);
                stack.pop();
            }
        }
    }
    Ok(out)
}

/// z3 variables of the signals, with their domains asserted (tracked, so
/// an unsat core can name them).
struct Vars {
    reals: BTreeMap<String, Real>,
    ints: BTreeMap<String, Int>,
}

impl Vars {
    fn term(&mut self, s: &Solver, name: &str, d: Domain) -> Real {
        if d == Domain::Count || d == Domain::Flag {
            let v = self.ints.entry(name.to_string()).or_insert_with(|| {
                let v = Int::new_const(name);
                s.assert(v.ge(Int::from_i64(0)));
                if d == Domain::Flag {
                    s.assert(v.le(Int::from_i64(1)));
                }
                v
            });
            return v.to_real();
        }
        self.reals
            .entry(name.to_string())
            .or_insert_with(|| {
                let v = Real::new_const(name);
                let (lo, hi) = match d {
                    Domain::Fraction => (Some(0.0), Some(1.0)),
                    Domain::Range(a, b) => (Some(a), Some(b)),
                    _ => (Some(0.0), None),
                };
                if let Some(lo) = lo {
                    s.assert(v.ge(q(lo)));
                }
                if let Some(hi) = hi {
                    s.assert(v.le(q(hi)));
                }
                v
            })
            .clone()
    }
}

/// Per event: its outcome booleans, constrained by what it can do.
struct Outcomes {
    started: Bool,
    ended: Bool,
    crash: Bool,
    survived: Bool,
    stopped: Bool,
}

fn encode(
    f: &Formula,
    s: &Solver,
    vars: &mut Vars,
    outs: &mut BTreeMap<usize, Outcomes>,
    plan: &Plan,
    can_start: &[bool],
    facts: &mut Vec<(Bool, String)>,
) -> Bool {
    match f {
        Formula::Cmp {
            var,
            domain,
            op,
            value,
            ..
        } => {
            let x = vars.term(s, var, *domain);
            let v = q(*value);
            match op {
                CmpOp::Lt => x.lt(&v),
                CmpOp::Le => x.le(&v),
                CmpOp::Gt => x.gt(&v),
                CmpOp::Ge => x.ge(&v),
                CmpOp::Eq => x.eq(&v),
                CmpOp::Ne => x.eq(&v).not(),
            }
        }
        Formula::Outcome {
            event,
            outcome,
            negated,
            ..
        } => {
            let o = outs.entry(*event).or_insert_with(|| {
                let e = &plan.events[*event];
                let b = |k: &str| Bool::new_const(format!("{}:{k}", e.id));
                let o = Outcomes {
                    started: b("started"),
                    ended: b("ended"),
                    crash: b("crash"),
                    survived: b("survived"),
                    stopped: b("stopped"),
                };
                // How outcomes relate (always true: not tracked).
                s.assert(o.ended.implies(&o.started));
                let ends = Bool::or(&[&o.crash, &o.survived, &o.stopped]);
                s.assert(ends.eq(&o.ended));
                s.assert(Bool::and(&[&o.crash, &o.survived]).not());
                s.assert(Bool::and(&[&o.crash, &o.stopped]).not());
                s.assert(Bool::and(&[&o.survived, &o.stopped]).not());
                // What this event can do: facts, tracked for the "why".
                if !can_start[*event] {
                    facts.push((o.started.not(), format!("event '{}' can never start", e.id)));
                }
                if e.for_ns.is_none() {
                    facts.push((
                        o.survived.not(),
                        format!("event '{}' has no `for`: it only ends with the run, too late for any follower", e.id),
                    ));
                }
                if !e.has_stop {
                    facts.push((o.stopped.not(), format!("event '{}' has no `stop_when`: it is never stopped", e.id)));
                }
                o
            });
            let atom = match outcome {
                OutcomeKind::Started => o.started.clone(),
                OutcomeKind::Ended => o.ended.clone(),
                OutcomeKind::Crash => o.crash.clone(),
                OutcomeKind::Survived => o.survived.clone(),
                OutcomeKind::Stopped => o.stopped.clone(),
            };
            if *negated { atom.not() } else { atom }
        }
        Formula::All(v) => {
            let parts: Vec<Bool> = v
                .iter()
                .map(|g| encode(g, s, vars, outs, plan, can_start, facts))
                .collect();
            Bool::and(&parts)
        }
        Formula::Any(v) => {
            let parts: Vec<Bool> = v
                .iter()
                .map(|g| encode(g, s, vars, outs, plan, can_start, facts))
                .collect();
            Bool::or(&parts)
        }
        Formula::Not(g) => encode(g, s, vars, outs, plan, can_start, facts).not(),
    }
}

fn label(f: &Formula) -> String {
    match f {
        Formula::Cmp { label, .. } | Formula::Outcome { label, .. } => label.clone(),
        Formula::All(v) => v.iter().map(label).collect::<Vec<_>>().join(" and "),
        Formula::Any(v) => format!("({})", v.iter().map(label).collect::<Vec<_>>().join(" or ")),
        Formula::Not(g) => format!("not ({})", label(g)),
    }
}

/// Whether an event's start condition can hold; Ok(model) or Err(why).
fn satisfiable(
    plan: &Plan,
    i: usize,
    can_start: &[bool],
) -> Result<BTreeMap<String, f64>, Result<Vec<String>, String>> {
    let e = &plan.events[i];
    let Some(f) = &e.start else {
        return Ok(BTreeMap::new());
    };
    let s = Solver::new();
    let mut vars = Vars {
        reals: BTreeMap::new(),
        ints: BTreeMap::new(),
    };
    let mut outs = BTreeMap::new();
    let mut facts: Vec<(Bool, String)> = Vec::new();
    // The condition's top-level parts, each tracked.
    let parts: Vec<&Formula> = match f {
        Formula::All(v) => v.iter().collect(),
        other => vec![other],
    };
    let mut tracked: Vec<(Bool, String)> = Vec::new();
    for p in parts {
        let b = encode(p, &s, &mut vars, &mut outs, plan, can_start, &mut facts);
        tracked.push((b, format!("its condition `{}`", label(p))));
    }
    // The clock: it starts no earlier than `at`, before the end.
    if let Some(clock) = &plan.clock_var {
        let c = vars.term(&s, clock, Domain::NonNegative);
        facts.push((
            c.ge(q(e.at_ns as f64)),
            format!("it starts no earlier than its `at` ({} ns)", e.at_ns),
        ));
        facts.push((
            c.lt(q(plan.duration_ns as f64)),
            format!("the run lasts {} ns", plan.duration_ns),
        ));
    }
    tracked.extend(facts);
    let labels: Vec<Bool> = (0..tracked.len())
        .map(|k| Bool::new_const(format!("track{k}")))
        .collect();
    for ((b, _), l) in tracked.iter().zip(&labels) {
        s.assert_and_track(b.clone(), l);
    }
    let mut params = z3::Params::new();
    params.set_u32("timeout", 5000);
    s.set_params(&params);
    match s.check() {
        SatResult::Sat => {
            let model = s
                .get_model()
                .ok_or_else(|| Err("z3 gave no model".to_string()))?;
            let mut w = BTreeMap::new();
            for (name, v) in &vars.reals {
                if let Some((n, d)) = model.eval(v, true).and_then(|x| x.as_rational()) {
                    w.insert(name.clone(), n as f64 / d as f64);
                }
            }
            for (name, v) in &vars.ints {
                if let Some(x) = model.eval(v, true).and_then(|x| x.as_i64()) {
                    w.insert(name.clone(), x as f64);
                }
            }
            Ok(w)
        }
        SatResult::Unsat => {
            let core = s.get_unsat_core();
            let why = tracked
                .iter()
                .zip(&labels)
                .filter(|(_, l)| core.iter().any(|c| c == *l))
                .map(|((_, text), _)| text.clone())
                .collect();
            Err(Ok(why))
        }
        SatResult::Unknown => Err(Err(s
            .get_reason_unknown()
            .unwrap_or_else(|| "unknown".into()))),
    }
}

/// Checks a plan.
pub fn check(plan: &Plan) -> Feasibility {
    let mut findings = Vec::new();
    let mut possible = Vec::new();
    let mut witnesses = BTreeMap::new();
    let n = plan.events.len();
    let mut can_start = vec![true; n];
    match order(plan) {
        Err(cycle) => findings.push(Finding::Cycle {
            events: cycle.iter().map(|&i| plan.events[i].id.clone()).collect(),
        }),
        Ok(order) => {
            for i in order {
                match satisfiable(plan, i, &can_start) {
                    Ok(w) => {
                        if plan.events[i].start.is_some() {
                            witnesses.insert(plan.events[i].id.clone(), w);
                        }
                    }
                    Err(Ok(why)) => {
                        can_start[i] = false;
                        findings.push(Finding::NeverStarts {
                            event: plan.events[i].id.clone(),
                            why,
                        });
                    }
                    Err(Err(reason)) => findings.push(Finding::Unknown {
                        event: plan.events[i].id.clone(),
                        reason,
                    }),
                }
            }
        }
    }
    // Fixed-time windows; loads summed at every start instant.
    let window = |e: &PlanEvent| {
        (
            e.at_ns,
            e.for_ns
                .map_or(plan.duration_ns, |f| e.at_ns.saturating_add(f)),
        )
    };
    for e in plan.events.iter().filter(|e| e.start.is_none()) {
        let (_, end) = window(e);
        if end > plan.duration_ns {
            findings.push(Finding::PastEnd {
                event: e.id.clone(),
                ends_ns: end,
                duration_ns: plan.duration_ns,
            });
        }
    }
    let mut peak_cores = (0, 0.0);
    let mut peak_bytes = (0, 0.0);
    let mut instants: Vec<u64> = plan.events.iter().map(|e| e.at_ns).collect();
    instants.sort_unstable();
    instants.dedup();
    for &t in &instants {
        let active: Vec<&PlanEvent> = plan
            .events
            .iter()
            .filter(|e| e.start.is_none() && window(e).0 <= t && t < window(e).1)
            .collect();
        let conditional: Vec<&PlanEvent> = plan
            .events
            .iter()
            .zip(&can_start)
            .filter(|(e, ok)| e.start.is_some() && **ok && e.at_ns <= t)
            .map(|(e, _)| e)
            .collect();
        for (resource, capacity, load, peak) in [
            (
                "cpu",
                plan.cores,
                (|e: &PlanEvent| e.cores) as fn(&PlanEvent) -> f64,
                &mut peak_cores,
            ),
            (
                "memory",
                plan.memory_bytes,
                |e: &PlanEvent| e.bytes,
                &mut peak_bytes,
            ),
        ] {
            let total: f64 = active.iter().map(|e| load(e)).sum();
            if total > peak.1 {
                *peak = (t, total);
            }
            let names = |v: &[&PlanEvent]| {
                v.iter()
                    .filter(|e| load(e) > 0.0)
                    .map(|e| e.id.clone())
                    .collect::<Vec<_>>()
            };
            if total > capacity * (1.0 + 1e-9) {
                findings.push(Finding::Overload {
                    resource: resource.into(),
                    at_ns: t,
                    total,
                    capacity,
                    events: names(&active),
                });
            } else {
                let extra: f64 = conditional.iter().map(|e| load(e)).sum();
                if extra > 0.0 && total + extra > capacity * (1.0 + 1e-9) {
                    let mut all = names(&active);
                    all.extend(names(&conditional));
                    possible.push(Finding::Overload {
                        resource: resource.into(),
                        at_ns: t,
                        total: total + extra,
                        capacity,
                        events: all,
                    });
                }
            }
        }
    }
    Feasibility {
        feasible: findings.is_empty(),
        findings,
        possible,
        witnesses,
        peak_cores,
        peak_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn ev(id: &str, at: u64, for_s: Option<u64>, start: Option<Formula>, cores: f64) -> PlanEvent {
        PlanEvent {
            id: id.into(),
            at_ns: at * S,
            for_ns: for_s.map(|f| f * S),
            start,
            has_stop: false,
            cores,
            bytes: 0.0,
        }
    }

    fn cmp(var: &str, domain: Domain, op: CmpOp, value: f64) -> Formula {
        Formula::Cmp {
            label: format!("{var} {op:?} {value}"),
            var: var.into(),
            domain,
            op,
            value,
        }
    }

    fn outcome(event: usize, outcome: OutcomeKind) -> Formula {
        Formula::Outcome {
            label: format!("outcome(#{event}) == {outcome:?}"),
            event,
            outcome,
            negated: false,
        }
    }

    fn plan(events: Vec<PlanEvent>) -> Plan {
        Plan {
            duration_ns: 60 * S,
            clock_var: Some("elapsed".into()),
            cores: 2.0,
            memory_bytes: 1e9,
            events,
        }
    }

    #[test]
    fn a_plain_timeline_is_feasible_with_witnesses() {
        let p = plan(vec![
            ev("a", 0, Some(10), None, 1.0),
            ev("b", 5, Some(10), None, 1.0),
            ev(
                "c",
                0,
                Some(5),
                Some(cmp("cpu_load", Domain::Fraction, CmpOp::Gt, 0.7)),
                0.0,
            ),
            ev(
                "d",
                0,
                Some(5),
                Some(outcome(0, OutcomeKind::Survived)),
                0.0,
            ),
        ]);
        let v = check(&p);
        assert!(v.feasible, "{v:#?}");
        assert!(v.witnesses["c"]["cpu_load"] > 0.7);
        assert_eq!(v.peak_cores, (5 * S, 2.0));
    }

    #[test]
    fn impossible_conditions_say_why() {
        let p = plan(vec![
            ev("a", 0, None, None, 0.0),
            // A fraction above 1.
            ev(
                "b",
                0,
                Some(5),
                Some(cmp("cpu_load", Domain::Fraction, CmpOp::Gt, 1.5)),
                0.0,
            ),
            // `a` has no `for`: it never survives in time.
            ev(
                "c",
                0,
                Some(5),
                Some(outcome(0, OutcomeKind::Survived)),
                0.0,
            ),
            // Waits for an event that can never start.
            ev("d", 0, Some(5), Some(outcome(1, OutcomeKind::Ended)), 0.0),
            // A window after the end.
            ev(
                "e",
                0,
                Some(5),
                Some(cmp("elapsed", Domain::NonNegative, CmpOp::Gt, 70e9)),
                0.0,
            ),
            // Contradictory counts.
            ev(
                "f",
                0,
                Some(5),
                Some(Formula::All(vec![
                    cmp("crashes", Domain::Count, CmpOp::Gt, 0.0),
                    cmp("crashes", Domain::Count, CmpOp::Lt, 1.0),
                ])),
                0.0,
            ),
        ]);
        let v = check(&p);
        assert!(!v.feasible);
        let why = |id: &str| -> Vec<String> {
            v.findings
                .iter()
                .find_map(|f| match f {
                    Finding::NeverStarts { event, why } if event == id => Some(why.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{id} not reported: {v:#?}"))
        };
        assert!(
            why("b").iter().any(|w| w.contains("cpu_load")),
            "{:?}",
            why("b")
        );
        assert!(
            why("c").iter().any(|w| w.contains("has no `for`")),
            "{:?}",
            why("c")
        );
        assert!(
            why("d").iter().any(|w| w.contains("'b' can never start")),
            "{:?}",
            why("d")
        );
        assert!(
            why("e").iter().any(|w| w.contains("the run lasts")),
            "{:?}",
            why("e")
        );
        assert_eq!(why("f").len(), 2, "{:?}", why("f"));
    }

    #[test]
    fn overloads_are_found_at_their_instant() {
        let mut p = plan(vec![
            ev("a", 0, Some(10), None, 1.5),
            ev("b", 5, Some(10), None, 1.0),
        ]);
        p.events.push(PlanEvent {
            bytes: 2e9,
            ..ev("hog", 20, Some(5), None, 0.0)
        });
        p.events.push(ev(
            "maybe",
            0,
            Some(5),
            Some(cmp("rss", Domain::NonNegative, CmpOp::Gt, 1.0)),
            1.0,
        ));
        let v = check(&p);
        let over: Vec<(&str, u64)> = v
            .findings
            .iter()
            .filter_map(|f| match f {
                Finding::Overload {
                    resource, at_ns, ..
                } => Some((resource.as_str(), *at_ns)),
                _ => None,
            })
            .collect();
        assert_eq!(over, [("cpu", 5 * S), ("memory", 20 * S)]);
        // The conditional event could add to the CPU at 0 s: a warning only.
        assert!(
            v.possible
                .iter()
                .any(|f| matches!(f, Finding::Overload { at_ns: 0, .. })),
            "{v:#?}"
        );
    }

    #[test]
    fn cycles_and_past_ends() {
        let p = plan(vec![
            ev("a", 0, Some(5), Some(outcome(1, OutcomeKind::Ended)), 0.0),
            ev("b", 0, Some(5), Some(outcome(0, OutcomeKind::Ended)), 0.0),
        ]);
        assert!(matches!(&check(&p).findings[0], Finding::Cycle { events } if events.len() == 2));
        let p = plan(vec![ev("late", 50, Some(20), None, 0.0)]);
        assert!(
            matches!(&check(&p).findings[0], Finding::PastEnd { ends_ns, .. } if *ends_ns == 70 * S)
        );
    }
}
