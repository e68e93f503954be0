//! The timeline's clock: which events run at each tick, at what level, and
//! what the Theory-of-Constraints rules decided. Pure: the engine passes the
//! time and the signal values in, and applies the levels that come out.
//!
//! One tick, in order:
//! 1. a failure of the target since the last tick ends every active event
//!    with the outcome `crash`;
//! 2. an active event whose `for` has run out ends `survived`; one whose
//!    `stop_when` holds ends `stopped`;
//! 3. a pending event starts when its `at` has come and its `start_when`
//!    holds; step 2-3 repeat until nothing changes, so a chain (`after: a`)
//!    starts in the tick where `a` ended;
//! 4. each active event's level is its intensity shaped by its shape, then
//!    capped by the ToC rules whose condition holds.

use serde::Serialize;

use super::condition::{Cond, EventPhase, Outcome, Signal, Signals};
use super::timeline::{Event, FreezeLevel, Level, Machine, NetLevel, Timeline, Via};

/// The unconstrained `pids` limit (the end a shaped limit starts from).
const PIDS_UNLIMITED: f64 = 32768.0;

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Pending,
    Active { since_ns: u64 },
    Ended { outcome: Outcome },
}

/// Something that happened to an event.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Started {
        event: String,
        t_ns: u64,
        requested_ns: u64,
    },
    Ended {
        event: String,
        t_ns: u64,
        outcome: Outcome,
    },
}

/// An active event's level for this tick.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Applied {
    /// Index into the timeline's events.
    pub event: usize,
    pub via: Via,
    pub level: Level,
    /// The shape's factor in [0, 1].
    pub factor: f64,
    /// Index of the ToC rule that capped it, if one did.
    pub capped_by: Option<usize>,
}

/// A ToC rule switching on or off.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Decision {
    pub t_ns: u64,
    /// Index into the constraints' subordinate rules.
    pub rule: usize,
    pub axis: super::timeline::Axis,
    /// Whether the rule now holds (the axis is throttled) or was released.
    pub throttled: bool,
    /// The rule's condition, and the values of the signals it read.
    pub condition: String,
    pub values: Vec<(String, Option<f64>)>,
}

/// What one tick produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TickResult {
    pub changes: Vec<Change>,
    pub active: Vec<Applied>,
    pub decisions: Vec<Decision>,
}

/// The scheduler of one run.
pub struct Scheduler<'t> {
    timeline: &'t Timeline,
    machine: Machine,
    states: Vec<State>,
    /// Per ToC rule: whether it held at the last tick.
    rules_on: Vec<bool>,
}

/// The signal values of this tick and the scheduler's phases, as conditions read them.
struct View<'a> {
    values: &'a dyn Fn(&Signal) -> Option<f64>,
    events: &'a [Event],
    states: &'a [State],
}

impl Signals for View<'_> {
    fn value(&self, s: &Signal) -> Option<f64> {
        (self.values)(s)
    }

    fn phase(&self, id: &str) -> EventPhase {
        match self
            .events
            .iter()
            .position(|e| e.id == id)
            .map(|i| self.states[i])
        {
            Some(State::Active { .. }) => EventPhase::Active,
            Some(State::Ended { outcome }) => EventPhase::Ended(outcome),
            _ => EventPhase::Pending,
        }
    }
}

impl<'t> Scheduler<'t> {
    pub fn new(timeline: &'t Timeline, machine: Machine) -> Scheduler<'t> {
        let rules = timeline
            .constraints
            .as_ref()
            .map_or(0, |c| c.subordinate.len());
        Scheduler {
            timeline,
            machine,
            states: vec![State::Pending; timeline.events.len()],
            rules_on: vec![false; rules],
        }
    }

    /// The phase of every event, in timeline order.
    pub fn phases(&self) -> Vec<EventPhase> {
        self.states
            .iter()
            .map(|s| match s {
                State::Pending => EventPhase::Pending,
                State::Active { .. } => EventPhase::Active,
                State::Ended { outcome } => EventPhase::Ended(*outcome),
            })
            .collect()
    }

    /// Evaluates a condition against this tick's values and the events' phases.
    pub fn holds(&self, c: &Cond, values: &dyn Fn(&Signal) -> Option<f64>) -> bool {
        c.holds(&View {
            values,
            events: &self.timeline.events,
            states: &self.states,
        })
    }

    /// The earliest time at which an event changes on its own: a fixed-time
    /// event comes due or an active event's `for` runs out (the engine wakes
    /// then, not only at its cadence). It may be in the past (`now_ns`): an
    /// event that came due while the last tick was being applied is overdue
    /// and the engine ticks again at once.
    pub fn next_due(&self, now_ns: u64) -> Option<u64> {
        self.timeline
            .events
            .iter()
            .zip(&self.states)
            .filter_map(|(e, st)| match *st {
                State::Pending if e.start_when.is_none() => Some(e.at_ns),
                State::Active { since_ns } => e.for_ns.map(|f| since_ns + f),
                _ => None,
            })
            .min()
            .map(|t| t.max(now_ns))
    }

    /// Three-valued evaluation against these values and the events' phases.
    pub fn eval(&self, c: &Cond, values: &dyn Fn(&Signal) -> Option<f64>) -> Option<bool> {
        c.eval(&View {
            values,
            events: &self.timeline.events,
            states: &self.states,
        })
    }

    /// Advances to `now_ns`. `failed`: the target failed since the last tick.
    pub fn tick(
        &mut self,
        now_ns: u64,
        failed: bool,
        values: &dyn Fn(&Signal) -> Option<f64>,
    ) -> TickResult {
        let mut out = TickResult::default();
        let events = &self.timeline.events;
        if failed {
            for (i, st) in self.states.iter_mut().enumerate() {
                if let State::Active { .. } = st {
                    *st = State::Ended {
                        outcome: Outcome::Crash,
                    };
                    out.changes.push(Change::Ended {
                        event: events[i].id.clone(),
                        t_ns: now_ns,
                        outcome: Outcome::Crash,
                    });
                }
            }
        }
        // Ends and starts until nothing changes (a chain may go several links in a tick).
        loop {
            let mut changed = false;
            for (i, e) in events.iter().enumerate() {
                let next = match self.states[i] {
                    State::Active { since_ns } => {
                        if e.for_ns.is_some_and(|f| now_ns >= since_ns + f) {
                            Some(State::Ended {
                                outcome: Outcome::Survived,
                            })
                        } else if e.stop_when.as_ref().is_some_and(|c| self.holds(c, values)) {
                            Some(State::Ended {
                                outcome: Outcome::Stopped,
                            })
                        } else {
                            None
                        }
                    }
                    State::Pending if now_ns >= e.at_ns && now_ns < self.timeline.duration_ns => {
                        let ready = e.start_when.as_ref().is_none_or(|c| self.holds(c, values));
                        ready.then_some(State::Active { since_ns: now_ns })
                    }
                    _ => None,
                };
                if let Some(n) = next {
                    out.changes.push(match n {
                        State::Active { .. } => Change::Started {
                            event: e.id.clone(),
                            t_ns: now_ns,
                            requested_ns: e.at_ns,
                        },
                        State::Ended { outcome } => Change::Ended {
                            event: e.id.clone(),
                            t_ns: now_ns,
                            outcome,
                        },
                        State::Pending => unreachable!("never a next state"),
                    });
                    self.states[i] = n;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        // ToC rules.
        let mut caps: Vec<Option<usize>> = vec![None; self.rules_on.len()];
        if let Some(c) = &self.timeline.constraints {
            for (r, rule) in c.subordinate.iter().enumerate() {
                let on = self.holds(&rule.when, values);
                if on != self.rules_on[r] {
                    self.rules_on[r] = on;
                    out.decisions.push(Decision {
                        t_ns: now_ns,
                        rule: r,
                        axis: rule.axis,
                        throttled: on,
                        condition: rule.when.to_string(),
                        values: rule
                            .when
                            .signals()
                            .into_iter()
                            .map(|s| (s.to_string(), values(s)))
                            .collect(),
                    });
                }
                caps[r] = on.then_some(r);
            }
        }
        for (i, st) in self.states.iter().enumerate() {
            let State::Active { since_ns } = *st else {
                continue;
            };
            let e = &events[i];
            let factor = e.shape.factor(now_ns - since_ns, e.for_ns);
            let mut level = shaped(
                &e.intensity.level(e.via, &self.machine),
                e.via,
                factor,
                &self.machine,
            );
            let mut capped_by = None;
            if let Some(c) = &self.timeline.constraints {
                for (r, rule) in c.subordinate.iter().enumerate() {
                    if caps[r].is_some() && rule.axis == e.axis {
                        let cap = rule.intensity.level(e.via, &self.machine);
                        let lower = gentler(&level, &cap, e.via);
                        if lower != level {
                            level = lower;
                            capped_by = Some(r);
                        }
                    }
                }
            }
            out.active.push(Applied {
                event: i,
                via: e.via,
                level,
                factor,
                capped_by,
            });
        }
        out
    }

    /// The end of the run: active events end `survived` (the run ran its
    /// course) or `stopped` (it was cut short: `interrupted`). Returns the changes.
    pub fn finish(&mut self, now_ns: u64, interrupted: bool) -> Vec<Change> {
        let outcome = if interrupted {
            Outcome::Stopped
        } else {
            Outcome::Survived
        };
        let mut out = Vec::new();
        for (i, st) in self.states.iter_mut().enumerate() {
            if let State::Active { .. } = st {
                *st = State::Ended { outcome };
                out.push(Change::Ended {
                    event: self.timeline.events[i].id.clone(),
                    t_ns: now_ns,
                    outcome,
                });
            }
        }
        out
    }
}

/// The value a limit has when it does not constrain (a shape moves a limit
/// from here towards the requested value).
fn unconstrained(via: Via, m: &Machine) -> f64 {
    match via {
        Via::Quota | Via::Cpuset => f64::from(m.cpus.max(1)),
        Via::Limit => m.mem_total as f64,
        Via::Pids => PIDS_UNLIMITED,
        _ => 0.0,
    }
}

/// A level scaled by a shape's factor. Loads scale linearly; limits move
/// from unconstrained (factor 0) to the requested value (factor 1); `fill`
/// ignores shapes (free space is set once).
pub fn shaped(level: &Level, via: Via, f: f64, m: &Machine) -> Level {
    match level {
        Level::Scalar(v) => Level::Scalar(match via {
            Via::Fill => *v,
            _ if via.is_limit() => {
                let u = unconstrained(via, m).max(*v);
                let x = u - f * (u - v);
                if matches!(via, Via::Cpuset | Via::Pids) {
                    x.round().max(1.0)
                } else {
                    x
                }
            }
            Via::Herd => (v * f).round(),
            _ => v * f,
        }),
        Level::Net(n) => Level::Net(NetLevel {
            latency_ns: (n.latency_ns as f64 * f).round() as u64,
            jitter_ns: (n.jitter_ns as f64 * f).round() as u64,
            loss: n.loss * f,
            bandwidth_bps: match n.bandwidth_bps {
                Some(b) if f > 0.0 => Some(b / f),
                _ => None,
            },
            timeout_ns: n.timeout_ns.filter(|_| f > 0.0),
            down: n.down && f > 0.0,
        }),
        Level::Freeze(z) => Level::Freeze(FreezeLevel {
            pause_ns: (z.pause_ns as f64 * f).round() as u64,
            every_ns: z.every_ns,
        }),
    }
}

/// Of two levels of the same mechanism, the one that stresses less (per
/// field for network faults).
pub fn gentler(a: &Level, b: &Level, via: Via) -> Level {
    match (a, b) {
        (Level::Scalar(x), Level::Scalar(y)) => {
            Level::Scalar(if via.is_limit() { x.max(*y) } else { x.min(*y) })
        }
        (Level::Net(x), Level::Net(y)) => Level::Net(NetLevel {
            latency_ns: x.latency_ns.min(y.latency_ns),
            jitter_ns: x.jitter_ns.min(y.jitter_ns),
            loss: x.loss.min(y.loss),
            bandwidth_bps: match (x.bandwidth_bps, y.bandwidth_bps) {
                (Some(p), Some(q)) => Some(p.max(q)),
                _ => None,
            },
            timeout_ns: x
                .timeout_ns
                .and(y.timeout_ns)
                .map(|_| x.timeout_ns.max(y.timeout_ns).unwrap_or(0)),
            down: x.down && y.down,
        }),
        (Level::Freeze(x), Level::Freeze(y)) => Level::Freeze(FreezeLevel {
            pause_ns: x.pause_ns.min(y.pause_ns),
            every_ns: x.every_ns.max(y.every_ns),
        }),
        _ => a.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const M: Machine = Machine::TEST;
    const S: u64 = 1_000_000_000;

    fn timeline(text: &str) -> Timeline {
        Timeline::parse(text, "t.yaml").unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs the scheduler at a 250 ms cadence; `script` gives, per tick time
    /// (ns), signal values and whether the target failed. Returns every
    /// change and decision in order, as text.
    fn run(t: &Timeline, script: &dyn Fn(u64) -> (HashMap<String, f64>, bool)) -> Vec<String> {
        let mut s = Scheduler::new(t, M);
        let mut log = Vec::new();
        let mut now = 0;
        while now < t.duration_ns {
            let (vals, failed) = script(now);
            let r = s.tick(now, failed, &|sig| vals.get(&sig.to_string()).copied());
            for c in r.changes {
                log.push(match c {
                    Change::Started { event, t_ns, .. } => {
                        format!("{:.2}s start {event}", t_ns as f64 / 1e9)
                    }
                    Change::Ended {
                        event,
                        t_ns,
                        outcome,
                    } => {
                        format!("{:.2}s end {event} {outcome:?}", t_ns as f64 / 1e9)
                    }
                });
            }
            for d in r.decisions {
                log.push(format!(
                    "{:.2}s rule {} {}",
                    d.t_ns as f64 / 1e9,
                    d.rule,
                    if d.throttled { "on" } else { "off" }
                ));
            }
            now += t.cadence_ns;
        }
        for c in s.finish(now, false) {
            if let Change::Ended {
                event,
                t_ns,
                outcome,
            } = c
            {
                log.push(format!("{:.2}s end {event} {outcome:?}", t_ns as f64 / 1e9));
            }
        }
        log
    }

    fn quiet(_: u64) -> (HashMap<String, f64>, bool) {
        (HashMap::new(), false)
    }

    #[test]
    fn fixed_times_and_chains() {
        let t = timeline(
            "duration: 5s\ntracks:\n  - axis: cpu\n    events:\n      - {id: a, at: 1s, for: 1s}\n      - {id: b, after: a, for: 500ms}\n      - {id: c, after: b}\n",
        );
        assert_eq!(
            run(&t, &quiet),
            [
                "1.00s start a",
                "2.00s end a Survived",
                "2.00s start b",
                "2.50s end b Survived",
                "2.50s start c",
                "5.00s end c Survived",
            ]
        );
    }

    #[test]
    fn crash_ends_active_events_and_fires_followups() {
        let t = timeline(
            "duration: 4s\ntracks:\n  - axis: cpu\n    events:\n      - {id: spike-1, at: 0s, for: 3s}\n  - axis: memory\n    events:\n      - {id: next, start_when: {event: spike-1, outcome: crash}, for: 1s}\n      - {id: never, start_when: {event: spike-1, outcome: survived}}\n",
        );
        let log = run(&t, &|now| (HashMap::new(), now == 1_500_000_000));
        assert_eq!(
            log,
            [
                "0.00s start spike-1",
                "1.50s end spike-1 Crash",
                "1.50s start next",
                "2.50s end next Survived"
            ]
        );
    }

    #[test]
    fn conditions_start_and_stop() {
        let t = timeline(
            "duration: 3s\ntracks:\n  - axis: cpu\n    events:\n      - {id: a, start_when: rss > 100MiB, stop_when: crashes >= 1}\n",
        );
        let log = run(&t, &|now| {
            let mut v = HashMap::new();
            v.insert(
                "rss".to_string(),
                if now >= S { 200.0 * 1048576.0 } else { 0.0 },
            );
            v.insert("crashes".to_string(), if now >= 2 * S { 1.0 } else { 0.0 });
            (v, false)
        });
        assert_eq!(log, ["1.00s start a", "2.00s end a Stopped"]);
    }

    #[test]
    fn shapes_and_toc_caps() {
        let t = timeline(
            "duration: 4s\ntracks:\n  - axis: cpu\n    events:\n      - {id: a, for: 4s, intensity: 2 cores, shape: ramp}\n  - axis: memory\n    events:\n      - {id: m, intensity: 1GiB, args: {via: limit}}\nconstraints:\n  bottleneck: memory\n  subordinate:\n    cpu: {if: memory_pressure > 50%, action: {intensity: 0.5 cores}}\n",
        );
        let mut s = Scheduler::new(&t, M);
        let vals = |p: f64| move |sig: &Signal| (sig.to_string() == "memory_pressure").then_some(p);
        let r = s.tick(0, false, &vals(0.0));
        assert_eq!(r.active[0].level, Level::Scalar(0.0));
        // The memory limit is not shaped (constant): the requested value.
        assert_eq!(r.active[1].level, Level::Scalar((1u64 << 30) as f64));
        let r = s.tick(2 * S, false, &vals(0.0));
        assert_eq!(r.active[0].level, Level::Scalar(1.0));
        let r = s.tick(3 * S, false, &vals(0.9));
        assert_eq!(r.active[0].level, Level::Scalar(0.5));
        assert_eq!(r.active[0].capped_by, Some(0));
        assert_eq!(r.decisions.len(), 1);
        assert!(r.decisions[0].throttled);
        assert_eq!(
            r.decisions[0].values,
            vec![("memory_pressure".to_string(), Some(0.9))]
        );
        let r = s.tick(3 * S + S / 2, false, &vals(0.1));
        assert_eq!(r.active[0].level, Level::Scalar(1.75));
        assert!(!r.decisions[0].throttled);
    }

    #[test]
    fn limits_shape_from_unconstrained() {
        // A ramped quota goes from all CPUs (2) down to the requested 0.5.
        let l = Level::Scalar(0.5);
        assert_eq!(shaped(&l, Via::Quota, 0.0, &M), Level::Scalar(2.0));
        assert_eq!(shaped(&l, Via::Quota, 0.5, &M), Level::Scalar(1.25));
        assert_eq!(shaped(&l, Via::Quota, 1.0, &M), Level::Scalar(0.5));
        assert_eq!(
            gentler(&Level::Scalar(0.5), &Level::Scalar(1.0), Via::Quota),
            Level::Scalar(1.0)
        );
        assert_eq!(
            gentler(&Level::Scalar(0.5), &Level::Scalar(1.0), Via::Spin),
            Level::Scalar(0.5)
        );
        let net = Level::Net(NetLevel {
            latency_ns: 100,
            loss: 0.1,
            bandwidth_bps: Some(1000.0),
            ..Default::default()
        });
        let Level::Net(half) = shaped(&net, Via::Proxy, 0.5, &M) else {
            panic!()
        };
        assert_eq!(
            (half.latency_ns, half.loss, half.bandwidth_bps),
            (50, 0.05, Some(2000.0))
        );
    }

    #[test]
    fn next_due_covers_starts_and_ends() {
        let t = timeline(
            "duration: 9s\ntracks:\n  - axis: cpu\n    events:\n      - {id: a, at: 2s, for: 3s}\n      - {id: b, start_when: crashes > 0}\n",
        );
        let mut s = Scheduler::new(&t, M);
        assert_eq!(s.next_due(0), Some(2 * S));
        s.tick(2 * S, false, &|_| None);
        assert_eq!(s.next_due(2 * S), Some(5 * S));
        s.tick(5 * S, false, &|_| None);
        assert_eq!(s.next_due(5 * S), None);
    }

    #[test]
    fn pending_events_never_start_after_the_end() {
        let t = timeline(
            "duration: 1s\ntracks:\n  - axis: cpu\n    events:\n      - {id: a, start_when: crashes > 5}\n",
        );
        assert!(run(&t, &quiet).is_empty());
    }
}
