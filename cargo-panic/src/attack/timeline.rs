//! The timeline (`cargo panic attack --timeline t.yaml`): what stress to put
//! on the target, when, how hard, and under which conditions. This module
//! reads and validates a timeline file into a [`Timeline`]; it is pure (the
//! text comes in, a value or located errors come out). The complete reference
//! of the format is `docs/timeline.md`.
//!
//! ```yaml
//! version: 1
//! program: ./target/x86_64-unknown-linux-gnu/release/server   # or after `--`
//! args: [--port, "0"]
//! duration: 60s
//! seed: 7
//! cadence: 250ms                 # how often conditions are evaluated
//! tracks:
//!   - axis: cpu
//!     events:
//!       - id: spike-1
//!         at: 10s
//!         for: 20s
//!         intensity: 1.5 cores
//!         shape: ramp
//!   - axis: memory
//!     events:
//!       - id: squeeze
//!         intensity: 300MiB
//!         args: {via: limit}
//!         start_when: {event: spike-1, outcome: survived}
//! constraints:
//!   bottleneck: memory
//!   subordinate:
//!     cpu: {if: memory_pressure > 0.8, action: {intensity: light}}
//! assert: [crashes == 0]
//! ```
//!
//! Invariants of a validated timeline: event ids are unique; every id a
//! condition or `after` names exists; the "starts after" relation among
//! events is acyclic; every intensity is valid for its event's mechanism
//! (`via`), and so is every ToC action's for each event it can throttle.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::condition::{self, Cond};
use super::units::{self, Dim};
use super::yamlpos::Positions;

/// The timeline format version this build reads.
pub const VERSION: u32 = 1;

/// The default condition cadence.
pub const DEFAULT_CADENCE_NS: u64 = 250_000_000;

/// A stress axis (a track of the timeline).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    Cpu,
    Memory,
    Disk,
    Network,
    Concurrency,
    Time,
}

impl Axis {
    pub const ALL: [Axis; 6] = [
        Axis::Cpu,
        Axis::Memory,
        Axis::Disk,
        Axis::Network,
        Axis::Concurrency,
        Axis::Time,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Axis::Cpu => "cpu",
            Axis::Memory => "memory",
            Axis::Disk => "disk",
            Axis::Network => "network",
            Axis::Concurrency => "concurrency",
            Axis::Time => "time",
        }
    }

    fn parse(s: &str) -> Option<Axis> {
        Axis::ALL.into_iter().find(|a| a.name() == s)
    }

    /// The mechanism an event of this axis uses unless its `args.via` says.
    pub fn default_via(self) -> Via {
        match self {
            Axis::Cpu => Via::Spin,
            Axis::Memory => Via::Hog,
            Axis::Disk => Via::IoHog,
            Axis::Network => Via::Proxy,
            Axis::Concurrency => Via::Cpuset,
            Axis::Time => Via::Freeze,
        }
    }
}

impl fmt::Display for Axis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a stressor acts on the target: each axis has several mechanisms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// cpu: spinner threads competing with the target (level: cores).
    Spin,
    /// cpu: a CPU quota on the target's cgroup (level: cores it may use).
    Quota,
    /// memory: a hog process holding memory (level: bytes).
    Hog,
    /// memory: a memory limit on the target's cgroup (level: bytes).
    Limit,
    /// disk: a process writing and syncing (level: bytes/s).
    IoHog,
    /// disk: the target's scratch directory on a filesystem with only this
    /// much free space (level: bytes).
    Fill,
    /// network: faults in the TCP proxy between workload and target.
    Proxy,
    /// concurrency: the CPUs the target may run on (level: count).
    Cpuset,
    /// concurrency: a limit on the target's processes and threads (level: count).
    Pids,
    /// concurrency: a burst of this many connections at once (level: count).
    Herd,
    /// time: the target frozen (all its threads stopped) for `pause` every `every`.
    Freeze,
    /// memory: allocations at the target's instrumented allocation sites
    /// fail (level: the fraction of them that fails).
    FailAlloc,
    /// disk: file I/O calls at the target's instrumented blocking sites fail
    /// with ENOSPC or EIO (level: the fraction).
    FailIo,
    /// time: blocking calls at the target's instrumented blocking sites fail
    /// with EINTR, as if a signal interrupted them (level: the fraction).
    Eintr,
}

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Via::Spin => "spin",
            Via::Quota => "quota",
            Via::Hog => "hog",
            Via::Limit => "limit",
            Via::IoHog => "io-hog",
            Via::Fill => "fill",
            Via::Proxy => "proxy",
            Via::Cpuset => "cpuset",
            Via::Pids => "pids",
            Via::Herd => "herd",
            Via::Freeze => "freeze",
            Via::FailAlloc => "fail-alloc",
            Via::FailIo => "fail-io",
            Via::Eintr => "eintr",
        }
    }

    /// The mechanisms of an axis (the first is the default).
    pub fn of(axis: Axis) -> &'static [Via] {
        match axis {
            Axis::Cpu => &[Via::Spin, Via::Quota],
            Axis::Memory => &[Via::Hog, Via::Limit, Via::FailAlloc],
            Axis::Disk => &[Via::IoHog, Via::Fill, Via::FailIo],
            Axis::Network => &[Via::Proxy],
            Axis::Concurrency => &[Via::Cpuset, Via::Pids, Via::Herd],
            Axis::Time => &[Via::Freeze, Via::Eintr],
        }
    }

    /// The dimension of a scalar level (None: the level is a structure).
    pub fn dim(self) -> Option<Dim> {
        match self {
            Via::Spin | Via::Quota => Some(Dim::Cores),
            Via::Hog | Via::Limit | Via::Fill => Some(Dim::Bytes),
            Via::IoHog => Some(Dim::ByteRate),
            Via::Cpuset | Via::Pids | Via::Herd => Some(Dim::Count),
            Via::FailAlloc | Via::FailIo | Via::Eintr => Some(Dim::Fraction),
            Via::Proxy | Via::Freeze => None,
        }
    }

    /// Whether the level is a limit (more stress = a smaller value) rather
    /// than a load (more stress = a larger value). A shape moves a limit from
    /// the unconstrained value towards the requested one.
    /// Whether the mechanism fails calls at the target's instrumented sites
    /// (it needs an instrumented target).
    pub fn is_fault(self) -> bool {
        matches!(self, Via::FailAlloc | Via::FailIo | Via::Eintr)
    }

    pub fn is_limit(self) -> bool {
        matches!(
            self,
            Via::Quota | Via::Limit | Via::Fill | Via::Cpuset | Via::Pids
        )
    }

    /// The `args` an event using this mechanism may have, besides `via`.
    fn args(self) -> &'static [&'static str] {
        match self {
            Via::Herd => &["hold"],
            Via::IoHog => &["block"],
            Via::FailAlloc | Via::Eintr => &["sites", "callee", "nth", "every", "limit"],
            Via::FailIo => &["sites", "callee", "nth", "every", "limit", "errno"],
            _ => &[],
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Network faults (the proxy's level).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetLevel {
    pub latency_ns: u64,
    pub jitter_ns: u64,
    /// Probability that a forwarded chunk resets its connection.
    pub loss: f64,
    /// Bytes per second per connection and direction; None: unlimited.
    pub bandwidth_bps: Option<f64>,
    /// Data stops; connections close after this long (0: never).
    pub timeout_ns: Option<u64>,
    /// New connections are closed at once, open ones reset.
    pub down: bool,
}

/// Freezer pauses (the time axis's level).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FreezeLevel {
    pub pause_ns: u64,
    pub every_ns: u64,
}

/// A concrete level of stress for one mechanism.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// In the mechanism's dimension ([`Via::dim`]), base unit.
    Scalar(f64),
    Net(NetLevel),
    Freeze(FreezeLevel),
}

impl Level {
    /// The level as the user would write it.
    pub fn describe(&self, via: Via) -> String {
        match self {
            Level::Scalar(v) => units::fmt(*v, via.dim().unwrap_or(Dim::Count)),
            Level::Net(n) => {
                let mut parts = Vec::new();
                if n.down {
                    parts.push("down".to_string());
                }
                if n.latency_ns > 0 {
                    parts.push(format!(
                        "latency {}",
                        units::fmt_duration(n.latency_ns as f64)
                    ));
                }
                if n.jitter_ns > 0 {
                    parts.push(format!(
                        "jitter {}",
                        units::fmt_duration(n.jitter_ns as f64)
                    ));
                }
                if n.loss > 0.0 {
                    parts.push(format!("loss {}", units::fmt(n.loss, Dim::Fraction)));
                }
                if let Some(b) = n.bandwidth_bps {
                    parts.push(format!("bandwidth {}", units::fmt(b, Dim::ByteRate)));
                }
                if let Some(t) = n.timeout_ns {
                    parts.push(format!("timeout {}", units::fmt_duration(t as f64)));
                }
                if parts.is_empty() {
                    "no faults".into()
                } else {
                    parts.join(", ")
                }
            }
            Level::Freeze(f) => format!(
                "pause {} every {}",
                units::fmt_duration(f.pause_ns as f64),
                units::fmt_duration(f.every_ns as f64)
            ),
        }
    }
}

/// `light`, `medium`, `heavy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Named {
    Light,
    Medium,
    Heavy,
}

/// What the machine has, for named levels and for the unconstrained end of
/// limits.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Machine {
    pub cpus: u32,
    pub mem_total: u64,
    pub mem_available: u64,
}

impl Machine {
    /// The machine the unit tests assume: 2 CPUs, 4 GiB, 2 GiB available.
    #[cfg(test)]
    pub const TEST: Machine = Machine {
        cpus: 2,
        mem_total: 4 << 30,
        mem_available: 2 << 30,
    };
}

impl Named {
    /// The level a name stands for, for a mechanism, on a machine (the
    /// reference documents this table).
    pub fn level(self, via: Via, m: &Machine) -> Level {
        let i = match self {
            Named::Light => 0,
            Named::Medium => 1,
            Named::Heavy => 2,
        };
        let cpus = f64::from(m.cpus.max(1));
        let avail = m.mem_available as f64;
        const MIB: f64 = 1024.0 * 1024.0;
        let pick = |v: [f64; 3]| Level::Scalar(v[i]);
        match via {
            Via::Spin => pick([0.25 * cpus, 0.5 * cpus, cpus]),
            Via::Quota => pick([0.5 * cpus, 0.25 * cpus, 0.1 * cpus]),
            Via::Hog => {
                pick([0.25 * avail, 0.5 * avail, 0.8 * avail].map(|b| (b / MIB).floor() * MIB))
            }
            Via::Limit => pick([1024.0 * MIB, 256.0 * MIB, 64.0 * MIB]),
            Via::IoHog => pick([10.0 * MIB, 50.0 * MIB, 1024.0 * MIB]),
            Via::Fill => pick([100.0 * MIB, 10.0 * MIB, MIB]),
            Via::Cpuset => pick([
                (cpus * 0.75).floor().max(1.0),
                (cpus * 0.5).floor().max(1.0),
                1.0,
            ]),
            Via::Pids => pick([256.0, 64.0, 16.0]),
            Via::Herd => pick([50.0, 200.0, 1000.0]),
            Via::FailAlloc | Via::FailIo | Via::Eintr => pick([0.01, 0.1, 0.5]),
            Via::Proxy => Level::Net(match self {
                Named::Light => NetLevel {
                    latency_ns: 20_000_000,
                    jitter_ns: 5_000_000,
                    ..NetLevel::default()
                },
                Named::Medium => NetLevel {
                    latency_ns: 100_000_000,
                    jitter_ns: 20_000_000,
                    loss: 0.01,
                    ..NetLevel::default()
                },
                Named::Heavy => NetLevel {
                    latency_ns: 500_000_000,
                    jitter_ns: 100_000_000,
                    loss: 0.05,
                    bandwidth_bps: Some(64.0 * 1024.0),
                    ..NetLevel::default()
                },
            }),
            Via::Freeze => Level::Freeze(FreezeLevel {
                pause_ns: [50_000_000, 200_000_000, 1_000_000_000][i],
                every_ns: [1_000_000_000, 1_000_000_000, 2_000_000_000][i],
            }),
        }
    }
}

/// An event's requested intensity: a name, resolved on the machine at run
/// time, or an exact level.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Intensity {
    Named(Named),
    Exact(Level),
}

impl Intensity {
    pub fn level(&self, via: Via, m: &Machine) -> Level {
        match self {
            Intensity::Named(n) => n.level(via, m),
            Intensity::Exact(l) => l.clone(),
        }
    }

    fn describe(&self, via: Via) -> String {
        match self {
            Intensity::Named(n) => format!("{n:?}").to_lowercase(),
            Intensity::Exact(l) => l.describe(via),
        }
    }

    /// Reads an intensity for `via` from its YAML value.
    fn parse(v: &Value, via: Via) -> Result<Intensity, String> {
        if let Value::String(s) = v {
            match s.trim() {
                "light" => return Ok(Intensity::Named(Named::Light)),
                "medium" => return Ok(Intensity::Named(Named::Medium)),
                "heavy" => return Ok(Intensity::Named(Named::Heavy)),
                _ => {}
            }
        }
        let level = match via {
            Via::Proxy => Level::Net(net_level(v)?),
            Via::Freeze => Level::Freeze(freeze_level(v)?),
            _ => {
                let dim = via.dim().expect("scalar mechanisms have a dimension");
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => {
                        return Err(format!(
                            "the intensity of a {via} event is light, medium, heavy or {}",
                            dim.example()
                        ));
                    }
                };
                let x = units::parse_as(&text, dim)?;
                if x.is_nan() || x <= 0.0 {
                    return Err(format!("intensity {text} must be more than zero"));
                }
                if via.is_fault() && x > 1.0 {
                    return Err(format!(
                        "intensity {text} is the fraction of calls that fail: at most 100%"
                    ));
                }
                if matches!(via, Via::Cpuset | Via::Pids | Via::Herd) && x.fract() != 0.0 {
                    return Err(format!("intensity {text} must be a whole number"));
                }
                Level::Scalar(x)
            }
        };
        Ok(Intensity::Exact(level))
    }
}

fn map_of<'a>(
    v: &'a Value,
    what: &str,
    keys: &[&str],
) -> Result<&'a serde_json::Map<String, Value>, String> {
    let Value::Object(m) = v else {
        return Err(format!(
            "the intensity of a {what} event is light, medium, heavy or a map with {}",
            keys.join(", ")
        ));
    };
    if let Some(k) = m.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err(format!(
            "unknown {what} setting '{k}'; settings: {}",
            keys.join(", ")
        ));
    }
    Ok(m)
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn net_level(v: &Value) -> Result<NetLevel, String> {
    const KEYS: [&str; 6] = ["latency", "jitter", "loss", "bandwidth", "timeout", "down"];
    let m = map_of(v, "network", &KEYS)?;
    let dur = |k: &str| -> Result<Option<u64>, String> {
        m.get(k)
            .map(|v| units::parse_duration_ns(&text_of(v)).map_err(|e| format!("{k}: {e}")))
            .transpose()
    };
    let loss = match m.get("loss") {
        None => 0.0,
        Some(v) => {
            let l =
                units::parse_as(&text_of(v), Dim::Fraction).map_err(|e| format!("loss: {e}"))?;
            if !(0.0..=1.0).contains(&l) {
                return Err(format!("loss {} is not between 0% and 100%", text_of(v)));
            }
            l
        }
    };
    let bandwidth_bps = m
        .get("bandwidth")
        .map(|v| {
            let b = units::parse_as(&text_of(v), Dim::ByteRate)
                .map_err(|e| format!("bandwidth: {e}"))?;
            if b < 1.0 {
                return Err("bandwidth must be at least 1B/s".to_string());
            }
            Ok(b)
        })
        .transpose()?;
    let down = match m.get("down") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("down is true or false".into()),
    };
    let n = NetLevel {
        latency_ns: dur("latency")?.unwrap_or(0),
        jitter_ns: dur("jitter")?.unwrap_or(0),
        loss,
        bandwidth_bps,
        timeout_ns: dur("timeout")?,
        down,
    };
    if n == NetLevel::default() {
        return Err(format!(
            "this network intensity sets no fault; set one of {}",
            KEYS.join(", ")
        ));
    }
    Ok(n)
}

fn freeze_level(v: &Value) -> Result<FreezeLevel, String> {
    let m = map_of(v, "time (freeze)", &["pause", "every"])?;
    let get = |k: &str| -> Result<u64, String> {
        let v = m.get(k).ok_or_else(|| {
            format!("a freeze intensity needs {k} (e.g. {{pause: 200ms, every: 1s}})")
        })?;
        units::parse_duration_ns(&text_of(v)).map_err(|e| format!("{k}: {e}"))
    };
    let (pause_ns, every_ns) = (get("pause")?, get("every")?);
    if pause_ns == 0 || pause_ns >= every_ns {
        return Err("a freeze pauses for more than zero and less than `every`".into());
    }
    Ok(FreezeLevel { pause_ns, every_ns })
}

/// How intensity moves over an event's life: a factor in [0, 1] of the
/// requested stress.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Shape {
    Constant,
    /// Linear from `from` (a fraction) to 1 over the event.
    Ramp {
        from: f64,
    },
    /// `steps` equal stairs up to 1.
    Step {
        steps: u32,
    },
    /// 0.5 - 0.5·cos(2π t / period), scaled into [floor, 1].
    Sine {
        period_ns: u64,
        floor: f64,
    },
    /// Full at once for `width`, then decays exponentially (time constant `decay`).
    Spike {
        width_ns: u64,
        decay_ns: u64,
    },
}

impl Shape {
    /// The factor `elapsed` into an event that lasts `length` (None: open-ended).
    pub fn factor(&self, elapsed_ns: u64, length_ns: Option<u64>) -> f64 {
        let t = elapsed_ns as f64;
        let f = match *self {
            Shape::Constant => 1.0,
            Shape::Ramp { from } => match length_ns {
                Some(l) if l > 0 => from + (1.0 - from) * (t / l as f64),
                _ => 1.0,
            },
            Shape::Step { steps } => match length_ns {
                Some(l) if l > 0 => {
                    let n = f64::from(steps.max(1));
                    ((t / l as f64 * n).floor() + 1.0).min(n) / n
                }
                _ => 1.0,
            },
            Shape::Sine { period_ns, floor } => {
                let s = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * t / period_ns as f64).cos();
                floor + (1.0 - floor) * s
            }
            Shape::Spike { width_ns, decay_ns } => {
                if t <= width_ns as f64 {
                    1.0
                } else {
                    (-(t - width_ns as f64) / decay_ns.max(1) as f64).exp()
                }
            }
        };
        f.clamp(0.0, 1.0)
    }

    fn describe(&self) -> String {
        match self {
            Shape::Constant => "constant".into(),
            Shape::Ramp { from } => format!("ramp from {}", units::fmt(*from, Dim::Fraction)),
            Shape::Step { steps } => format!("{steps} steps"),
            Shape::Sine { period_ns, floor } => format!(
                "sine, period {}, floor {}",
                units::fmt_duration(*period_ns as f64),
                units::fmt(*floor, Dim::Fraction)
            ),
            Shape::Spike { width_ns, decay_ns } => format!(
                "spike {} then decay {}",
                units::fmt_duration(*width_ns as f64),
                units::fmt_duration(*decay_ns as f64)
            ),
        }
    }

    fn parse(v: &Value, length_ns: Option<u64>) -> Result<Shape, String> {
        const SHAPES: &str = "constant, ramp, step, sine, spike";
        let (kind, params) = match v {
            Value::String(s) => (s.as_str(), serde_json::Map::new()),
            Value::Object(m) if m.len() == 1 => {
                let (k, p) = m.iter().next().expect("one entry");
                let params = match p {
                    Value::Object(p) => p.clone(),
                    Value::Null => serde_json::Map::new(),
                    _ => {
                        return Err(format!(
                            "shape {k}'s settings are a map, e.g. {{{k}: {{..}}}}"
                        ));
                    }
                };
                (k.as_str(), params)
            }
            _ => {
                return Err(format!(
                    "a shape is one of {SHAPES}, or a map such as {{sine: {{period: 10s}}}}"
                ));
            }
        };
        let allowed: &[&str] = match kind {
            "constant" => &[],
            "ramp" => &["from"],
            "step" => &["steps"],
            "sine" => &["period", "floor"],
            "spike" => &["width", "decay"],
            other => return Err(format!("unknown shape '{other}'; shapes: {SHAPES}")),
        };
        if let Some(k) = params.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(format!(
                "shape {kind} has no setting '{k}'{}",
                if allowed.is_empty() {
                    String::new()
                } else {
                    format!("; settings: {}", allowed.join(", "))
                }
            ));
        }
        let frac = |k: &str, default: f64| -> Result<f64, String> {
            match params.get(k) {
                None => Ok(default),
                Some(v) => {
                    let f = units::parse_as(&text_of(v), Dim::Fraction)
                        .map_err(|e| format!("{k}: {e}"))?;
                    if (0.0..=1.0).contains(&f) {
                        Ok(f)
                    } else {
                        Err(format!("{k} is between 0 and 1"))
                    }
                }
            }
        };
        let dur = |k: &str, default: u64| -> Result<u64, String> {
            match params.get(k) {
                None => Ok(default),
                Some(v) => match units::parse_duration_ns(&text_of(v)) {
                    Ok(0) => Err(format!("{k} must be more than zero")),
                    r => r.map_err(|e| format!("{k}: {e}")),
                },
            }
        };
        let length = length_ns.unwrap_or(10_000_000_000).max(1);
        Ok(match kind {
            "constant" => Shape::Constant,
            "ramp" => Shape::Ramp {
                from: frac("from", 0.0)?,
            },
            "step" => Shape::Step {
                steps: match params.get("steps") {
                    None => 4,
                    Some(v) => v
                        .as_u64()
                        .filter(|&n| (1..=1000).contains(&n))
                        .ok_or("steps is a whole number from 1 to 1000")?
                        as u32,
                },
            },
            "sine" => Shape::Sine {
                period_ns: dur("period", length)?,
                floor: frac("floor", 0.0)?,
            },
            _ => {
                let width = dur("width", (length / 10).clamp(1, 1_000_000_000))?;
                Shape::Spike {
                    width_ns: width,
                    decay_ns: dur("decay", width)?,
                }
            }
        })
    }
}

/// One stress event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub id: String,
    pub axis: Axis,
    pub via: Via,
    /// Earliest start (ns from the run's start).
    pub at_ns: u64,
    /// How long it runs once started; None: until `stop_when` or the end.
    pub for_ns: Option<u64>,
    pub intensity: Intensity,
    pub shape: Shape,
    /// Must hold (checked at each tick) before it starts; None: starts at `at`.
    pub start_when: Option<Cond>,
    /// Ends it early when it holds.
    pub stop_when: Option<Cond>,
    /// Mechanism settings other than `via` (validated per mechanism).
    pub args: BTreeMap<String, Value>,
    /// Fault events (`fail-alloc`, `fail-io`, `eintr`): what they fail.
    pub fault: Option<FaultSpec>,
}

/// What a fault event fails, from its `args`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultSpec {
    /// A glob over the demangled function the call is in, or `#N` (a site
    /// index); None: every site of the right kind.
    pub sites: Option<String>,
    /// A glob over the demangled callee; None: any.
    pub callee: Option<String>,
    pub pick: FaultPick,
    /// At most this many faults over the event.
    pub limit: Option<u64>,
    /// The errno calls fail with (`ENOSPC`, `EIO`, `EINTR`); None for
    /// allocations.
    pub errno: Option<&'static str>,
}

/// Which eligible calls fail.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultPick {
    /// A seeded fraction: the (shaped) level.
    Fraction,
    /// Only the n-th call after the event starts.
    Nth(u64),
    /// Every n-th call.
    Every(u64),
}

impl FaultPick {
    fn describe(self) -> Option<String> {
        match self {
            FaultPick::Fraction => None,
            FaultPick::Nth(n) => Some(format!("call {n} only")),
            FaultPick::Every(n) => Some(format!("every call {n}")),
        }
    }
}

/// When the target counts as ready.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ready {
    /// At once.
    Started,
    /// After a fixed delay.
    Delay(u64),
    /// When this TCP port (or, with None, any port of the target) is listening.
    Port(Option<u16>),
    /// When a line of its stdout or stderr contains this text.
    Log(String),
}

/// What to do when the target fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    Never,
    OnFailure,
    Always,
}

/// The target's lifecycle.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Target {
    pub ready: Ready,
    pub ready_timeout_ns: u64,
    pub restart: Restart,
    pub max_restarts: u32,
    /// No progress (the runtime's counts do not move) and no CPU for this
    /// long is a hang; None: never.
    pub hang_ns: Option<u64>,
    /// At the end: SIGTERM, then SIGKILL after this long.
    pub grace_ns: u64,
    /// Moves the target's CLOCK_MONOTONIC and CLOCK_BOOTTIME (and
    /// /proc/uptime) by this many ns, through a time namespace entered
    /// before it starts. 0: its clocks are the machine's.
    pub clock_offset_ns: i64,
}

impl Default for Target {
    fn default() -> Target {
        Target {
            ready: Ready::Started,
            ready_timeout_ns: 30_000_000_000,
            restart: Restart::Never,
            max_restarts: 3,
            hang_ns: Some(10_000_000_000),
            grace_ns: 5_000_000_000,
            clock_offset_ns: 0,
        }
    }
}

/// The load put on the target during the run.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// A command of the user's; `CARGO_PANIC_TARGET` in its environment is
    /// the address to send requests to (the proxy's when there is one).
    Command(Vec<String>),
    /// Built-in TCP requests: send `send`, read until `expect` (or one read).
    Tcp {
        port: Option<u16>,
        rate: f64,
        concurrency: u32,
        send: String,
        expect: Option<String>,
        timeout_ns: u64,
    },
    /// Built-in HTTP/1.1 GET requests.
    Http {
        port: Option<u16>,
        rate: f64,
        concurrency: u32,
        path: String,
        timeout_ns: u64,
    },
}

/// A Theory-of-Constraints rule: while `when` holds, the events of `axis`
/// run at no more than `intensity`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Subordinate {
    pub axis: Axis,
    pub when: Cond,
    pub intensity: Intensity,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Constraints {
    pub bottleneck: Axis,
    pub subordinate: Vec<Subordinate>,
}

/// A validated timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timeline {
    pub version: u32,
    pub program: Option<String>,
    pub args: Vec<String>,
    pub duration_ns: u64,
    pub seed: u64,
    pub cadence_ns: u64,
    pub target: Target,
    pub workload: Option<Workload>,
    /// Every event of every track, in file order.
    pub events: Vec<Event>,
    pub constraints: Option<Constraints>,
    /// Checked at the end of the run (with `--assert`'s).
    pub asserts: Vec<Cond>,
}

/// One error in a timeline file, with where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Located {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// What is wrong with a timeline file: every error found, in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct TimelineError {
    pub file: String,
    pub errors: Vec<Located>,
}

impl fmt::Display for TimelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {}", self.file, e.line, e.col, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for TimelineError {}

// The file as serde reads it; validation turns it into a Timeline.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTimeline {
    version: Option<u32>,
    program: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    duration: Option<Value>,
    seed: Option<u64>,
    cadence: Option<Value>,
    target: Option<FileTarget>,
    workload: Option<FileWorkload>,
    #[serde(default)]
    tracks: Vec<FileTrack>,
    constraints: Option<FileConstraints>,
    #[serde(default)]
    assert: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTrack {
    axis: String,
    #[serde(default)]
    events: Vec<FileEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEvent {
    id: Option<String>,
    at: Option<Value>,
    #[serde(rename = "for")]
    for_: Option<Value>,
    intensity: Option<Value>,
    shape: Option<Value>,
    #[serde(default)]
    args: BTreeMap<String, Value>,
    start_when: Option<Value>,
    stop_when: Option<Value>,
    after: Option<OneOrMany>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTarget {
    ready: Option<Value>,
    ready_timeout: Option<Value>,
    restart: Option<String>,
    max_restarts: Option<u32>,
    hang: Option<Value>,
    grace: Option<Value>,
    clock_offset: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWorkload {
    command: Option<Value>,
    tcp: Option<FileLoad>,
    http: Option<FileLoad>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLoad {
    port: Option<u16>,
    rate: Option<Value>,
    concurrency: Option<u32>,
    send: Option<String>,
    expect: Option<String>,
    path: Option<String>,
    timeout: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConstraints {
    bottleneck: String,
    #[serde(default)]
    subordinate: BTreeMap<String, FileRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    #[serde(rename = "if")]
    when: Value,
    action: FileAction,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAction {
    intensity: Value,
}

/// Collects located errors while validating.
struct Check<'a> {
    pos: &'a Positions,
    errors: Vec<Located>,
}

impl Check<'_> {
    fn at(&mut self, path: &str, message: impl Into<String>) {
        self.at_offset(path, 0, message);
    }

    fn at_offset(&mut self, path: &str, offset: usize, message: impl Into<String>) {
        // The document itself: its start (yaml-rust2 marks a block map later).
        let p = if path.is_empty() {
            None
        } else {
            self.pos.find_in(path, offset)
        };
        self.errors.push(Located {
            line: p.map_or(1, |p| p.line),
            col: p.map_or(1, |p| p.col),
            message: message.into(),
        });
    }

    fn cond(&mut self, path: &str, v: &Value) -> Option<Cond> {
        match condition::from_value(v) {
            Ok(c) => Some(c),
            Err(e) => {
                self.at_offset(path, e.offset, e.message);
                None
            }
        }
    }

    fn duration(&mut self, path: &str, v: &Value) -> Option<u64> {
        match units::parse_duration_ns(&text_of(v)) {
            Ok(ns) => Some(ns),
            Err(e) => {
                self.at(path, e);
                None
            }
        }
    }
}

/// What the model needs from outside to validate: nothing but the text.
impl Timeline {
    /// Parses and validates a timeline (YAML, or JSON). `file` names it in
    /// errors.
    pub fn parse(text: &str, file: &str) -> Result<Timeline, TimelineError> {
        let fail = |line, col, message| TimelineError {
            file: file.to_string(),
            errors: vec![Located { line, col, message }],
        };
        let raw: FileTimeline = serde_norway::from_str(text).map_err(|e| {
            let (line, col) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            fail(line, col, hint_serde(&e.to_string()))
        })?;
        let pos = Positions::of(text);
        let mut ck = Check {
            pos: &pos,
            errors: Vec::new(),
        };
        let t = validate(raw, &mut ck);
        match t {
            Some(t) if ck.errors.is_empty() => Ok(t),
            _ => {
                let mut errors = ck.errors;
                errors.sort_by_key(|e| (e.line, e.col));
                errors.dedup();
                Err(TimelineError {
                    file: file.to_string(),
                    errors,
                })
            }
        }
    }

    /// The event with this id.
    pub fn event(&self, id: &str) -> Option<&Event> {
        self.events.iter().find(|e| e.id == id)
    }

    /// The timeline with every time (duration, `at`, `for`, shape periods)
    /// scaled so that it lasts `duration_ns`: how a preset is stretched to
    /// `--duration`.
    pub fn scaled_to(mut self, duration_ns: u64) -> Timeline {
        let k = duration_ns as f64 / self.duration_ns.max(1) as f64;
        let s = |ns: u64| (ns as f64 * k).round() as u64;
        self.duration_ns = duration_ns;
        for e in &mut self.events {
            e.at_ns = s(e.at_ns);
            e.for_ns = e.for_ns.map(s);
            match &mut e.shape {
                Shape::Sine { period_ns, .. } => *period_ns = s(*period_ns).max(1),
                Shape::Spike { width_ns, decay_ns } => {
                    *width_ns = s(*width_ns).max(1);
                    *decay_ns = s(*decay_ns).max(1);
                }
                _ => {}
            }
        }
        self
    }

    /// The resolved schedule, as `cargo panic timeline --check` prints it.
    pub fn describe(&self, m: &Machine) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "timeline v{}: {} long, seed {}, conditions every {}",
            self.version,
            units::fmt_duration(self.duration_ns as f64),
            self.seed,
            units::fmt_duration(self.cadence_ns as f64)
        );
        if let Some(p) = &self.program {
            let _ = writeln!(out, "program: {} {}", p, self.args.join(" "));
        }
        let tg = &self.target;
        let _ = writeln!(
            out,
            "target: ready {}, restart {}{}, hang after {}",
            match &tg.ready {
                Ready::Started => "at start".to_string(),
                Ready::Delay(d) => format!("after {}", units::fmt_duration(*d as f64)),
                Ready::Port(Some(p)) => format!("when port {p} listens"),
                Ready::Port(None) => "when it listens on a port".to_string(),
                Ready::Log(s) => format!("when its output says {s:?}"),
            },
            match tg.restart {
                Restart::Never => "never",
                Restart::OnFailure => "on failure",
                Restart::Always => "always",
            },
            if tg.restart == Restart::Never {
                String::new()
            } else {
                format!(" (at most {})", tg.max_restarts)
            },
            tg.hang_ns
                .map_or("never".into(), |h| units::fmt_duration(h as f64)),
        );
        match &self.workload {
            None => {
                let _ = writeln!(out, "workload: none");
            }
            Some(Workload::Command(c)) => {
                let _ = writeln!(out, "workload: command {}", c.join(" "));
            }
            Some(Workload::Tcp {
                rate, concurrency, ..
            }) => {
                let _ = writeln!(
                    out,
                    "workload: tcp, {}/s, {concurrency} connections",
                    units::fmt_num(*rate)
                );
            }
            Some(Workload::Http {
                rate,
                concurrency,
                path,
                ..
            }) => {
                let _ = writeln!(
                    out,
                    "workload: http GET {path}, {}/s, {concurrency} connections",
                    units::fmt_num(*rate)
                );
            }
        }
        let _ = writeln!(out, "events:");
        for e in &self.events {
            let level = e.intensity.level(e.via, m).describe(e.via);
            let requested = e.intensity.describe(e.via);
            let lvl = if let Some(d) = e.fault.as_ref().and_then(|f| f.pick.describe()) {
                d
            } else if requested == level {
                level
            } else {
                format!("{requested} = {level}")
            };
            let when = match &e.start_when {
                None => format!("at {}", units::fmt_duration(e.at_ns as f64)),
                Some(c) if e.at_ns == 0 => format!("when {c}"),
                Some(c) => format!("from {} when {c}", units::fmt_duration(e.at_ns as f64)),
            };
            let until = match (e.for_ns, &e.stop_when) {
                (Some(f), None) => format!("for {}", units::fmt_duration(f as f64)),
                (Some(f), Some(c)) => format!("for {} or until {c}", units::fmt_duration(f as f64)),
                (None, Some(c)) => format!("until {c}"),
                (None, None) => "until the end".into(),
            };
            let _ = writeln!(
                out,
                "  {:<14} {:<11} via {:<7} {}, {} {}; {}",
                e.id,
                e.axis.name(),
                e.via.name(),
                lvl,
                e.shape.describe(),
                when,
                until
            );
        }
        if let Some(c) = &self.constraints {
            let _ = writeln!(out, "constraints: bottleneck {}", c.bottleneck);
            for s in &c.subordinate {
                let _ = writeln!(
                    out,
                    "  while {}: {} at most {}",
                    s.when,
                    s.axis,
                    s.intensity.describe(Via::Spin)
                );
            }
        }
        for a in &self.asserts {
            let _ = writeln!(out, "assert: {a}");
        }
        out
    }
}

/// serde's messages, with the hint a user needs.
fn hint_serde(msg: &str) -> String {
    // serde_norway appends " at line L column C"; the location is printed already.
    let msg = match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    if msg.contains("unknown field") {
        format!("{msg} (see docs/timeline.md for every field)")
    } else {
        msg.to_string()
    }
}

fn validate(f: FileTimeline, ck: &mut Check<'_>) -> Option<Timeline> {
    let version = f.version.unwrap_or(VERSION);
    if version != VERSION {
        ck.at("version", format!("timeline version {version} is not supported; this cargo-panic reads version {VERSION}"));
    }
    let duration_ns = match &f.duration {
        None => {
            ck.at("", "the timeline has no duration; add e.g. `duration: 60s`");
            None
        }
        Some(v) => match ck.duration("duration", v) {
            Some(0) => {
                ck.at("duration", "duration must be more than zero");
                None
            }
            d => d,
        },
    };
    let cadence_ns = match &f.cadence {
        None => DEFAULT_CADENCE_NS,
        Some(v) => match ck.duration("cadence", v) {
            Some(c) if c >= 10_000_000 => c,
            Some(_) => {
                ck.at("cadence", "cadence must be at least 10ms");
                DEFAULT_CADENCE_NS
            }
            None => DEFAULT_CADENCE_NS,
        },
    };
    let target = f.target.map(|t| target(t, ck)).unwrap_or_default();
    let workload = f.workload.and_then(|w| workload(w, ck));

    // Events, with ids (given, or `<axis>-<n>` within the track).
    let mut events = Vec::new();
    let mut paths = Vec::new();
    let mut after = Vec::new();
    for (ti, track) in f.tracks.into_iter().enumerate() {
        let tpath = format!("tracks[{ti}]");
        let Some(axis) = Axis::parse(&track.axis) else {
            ck.at(
                &format!("{tpath}.axis"),
                format!(
                    "unknown axis '{}'; axes: {}",
                    track.axis,
                    Axis::ALL.map(Axis::name).join(", ")
                ),
            );
            continue;
        };
        for (ei, e) in track.events.into_iter().enumerate() {
            let path = format!("{tpath}.events[{ei}]");
            if let Some((ev, deps)) = event(e, axis, ei, &path, ck) {
                events.push(ev);
                paths.push(path);
                after.push(deps);
            }
        }
    }
    // Ids are unique.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        if let Some(&first) = seen.get(e.id.as_str()) {
            let line = ck.pos.find(&paths[first]).map_or(1, |p| p.line);
            let msg = format!("event id '{}' is used twice (first on line {line})", e.id);
            ck.at(&format!("{}.id", paths[i]), msg);
        } else {
            seen.insert(&e.id, i);
        }
    }
    // `after: X` is `start_when: outcome(X) == ended`, joined with start_when.
    for (e, deps) in events.iter_mut().zip(after) {
        if deps.is_empty() {
            continue;
        }
        let mut parts: Vec<Cond> = deps
            .into_iter()
            .map(|d| Cond::Outcome {
                event: d,
                outcome: condition::Outcome::Ended,
                negated: false,
            })
            .collect();
        parts.extend(e.start_when.take());
        e.start_when = Some(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Cond::All(parts)
        });
    }
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    for (e, path) in events.iter().zip(&paths) {
        for (field, c) in [("start_when", &e.start_when), ("stop_when", &e.stop_when)] {
            for r in c.iter().flat_map(|c| c.events()) {
                if !ids.iter().any(|i| i == r) {
                    ck.at(&format!("{path}.{field}"), unknown_id(r, &ids));
                } else if r == e.id {
                    ck.at(
                        &format!("{path}.{field}"),
                        format!("event '{r}' waits for itself"),
                    );
                }
            }
        }
        if let Some(d) = duration_ns
            && e.at_ns >= d
        {
            ck.at(
                &format!("{path}.at"),
                format!(
                    "event '{}' never starts: at {} is not before the end of the run ({})",
                    e.id,
                    units::fmt_duration(e.at_ns as f64),
                    units::fmt_duration(d as f64)
                ),
            );
        }
    }
    if let Some(cycle) = find_cycle(&events) {
        let names: Vec<&str> = cycle.iter().map(|&i| events[i].id.as_str()).collect();
        ck.at(
            &format!("{}.start_when", paths[cycle[0]]),
            format!(
                "events wait for each other in a cycle: {} -> {}; none of them can start",
                names.join(" -> "),
                names[0]
            ),
        );
    }
    let constraints = f.constraints.and_then(|c| constraints(c, &events, ck));
    let asserts = f
        .assert
        .iter()
        .enumerate()
        .filter_map(|(i, v)| ck.cond(&format!("assert[{i}]"), v))
        .collect();
    Some(Timeline {
        version,
        program: f.program,
        args: f.args,
        duration_ns: duration_ns?,
        seed: f.seed.unwrap_or(0),
        cadence_ns,
        target,
        workload,
        events,
        constraints,
        asserts,
    })
}

fn unknown_id(r: &str, ids: &[String]) -> String {
    let best = ids
        .iter()
        .map(|i| (strsim::jaro_winkler(r, i), i))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .filter(|(s, _)| *s > 0.8);
    match best {
        Some((_, i)) => format!("no event has the id '{r}' (did you mean '{i}'?)"),
        None if ids.is_empty() => format!("no event has the id '{r}': the timeline has no events"),
        None => format!("no event has the id '{r}'; ids: {}", ids.join(", ")),
    }
}

/// A cycle in "starts after" (an event's start condition names another), as
/// indexes in order, or None: the chains form a DAG.
fn find_cycle(events: &[Event]) -> Option<Vec<usize>> {
    use petgraph::graph::DiGraph;
    let mut g = DiGraph::<usize, ()>::new();
    let nodes: Vec<_> = (0..events.len()).map(|i| g.add_node(i)).collect();
    for (i, e) in events.iter().enumerate() {
        for r in e.start_when.iter().flat_map(|c| c.events()) {
            if let Some(j) = events.iter().position(|x| x.id == r)
                && j != i
            {
                g.add_edge(nodes[j], nodes[i], ());
            }
        }
    }
    // A strongly connected component with more than one node is a cycle;
    // walk it from its first node to show one concrete loop.
    let scc = petgraph::algo::tarjan_scc(&g)
        .into_iter()
        .find(|c| c.len() > 1)?;
    let inside = |n| scc.contains(&n);
    let start = *scc.iter().min_by_key(|n| g[**n])?;
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let next = g
            .neighbors(cur)
            .filter(|&n| inside(n))
            .min_by_key(|n| g[*n])?;
        if let Some(k) = path.iter().position(|&p| p == next) {
            return Some(path[k..].iter().map(|&n| g[n]).collect());
        }
        path.push(next);
        cur = next;
    }
}

fn target(t: FileTarget, ck: &mut Check<'_>) -> Target {
    let mut out = Target::default();
    if let Some(r) = &t.ready {
        match ready(r) {
            Ok(r) => out.ready = r,
            Err(e) => ck.at("target.ready", e),
        }
    }
    if let Some(v) = &t.ready_timeout {
        out.ready_timeout_ns = ck
            .duration("target.ready_timeout", v)
            .unwrap_or(out.ready_timeout_ns);
    }
    if let Some(r) = &t.restart {
        match r.as_str() {
            "never" => out.restart = Restart::Never,
            "on-failure" => out.restart = Restart::OnFailure,
            "always" => out.restart = Restart::Always,
            _ => ck.at(
                "target.restart",
                format!("restart '{r}' is not one of never, on-failure, always"),
            ),
        }
    }
    if let Some(n) = t.max_restarts {
        out.max_restarts = n;
    }
    if let Some(v) = &t.hang {
        out.hang_ns = match v {
            Value::String(s) if s == "never" => None,
            v => ck.duration("target.hang", v).filter(|&h| h > 0),
        };
    }
    if let Some(v) = &t.clock_offset {
        let text = text_of(v);
        let (neg, body) = match text.trim().strip_prefix('-') {
            Some(b) => (true, b.to_string()),
            None => (false, text.clone()),
        };
        match units::parse_duration_ns(&body)
            .ok()
            .and_then(|ns| i64::try_from(ns).ok())
        {
            Some(ns) => out.clock_offset_ns = if neg { -ns } else { ns },
            None => ck.at(
                "target.clock_offset",
                format!(
                    "clock_offset '{text}' is a duration, possibly negative, such as 1h or -10s"
                ),
            ),
        }
    }
    if let Some(v) = &t.grace {
        out.grace_ns = ck.duration("target.grace", v).unwrap_or(out.grace_ns);
    }
    out
}

fn ready(v: &Value) -> Result<Ready, String> {
    const HINT: &str = "ready is `started`, `port` (any port of the target), {port: N}, {log: TEXT} or {delay: DURATION}";
    match v {
        Value::String(s) if s == "started" => Ok(Ready::Started),
        Value::String(s) if s == "port" => Ok(Ready::Port(None)),
        Value::Object(m) if m.len() == 1 => {
            let (k, v) = m.iter().next().expect("one entry");
            match k.as_str() {
                "port" => v
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|&p| p > 0)
                    .map(|p| Ready::Port(Some(p)))
                    .ok_or_else(|| "port is a TCP port number from 1 to 65535".to_string()),
                "log" => v
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(|s| Ready::Log(s.to_string()))
                    .ok_or_else(|| {
                        "log is the text a line of the target's output contains".to_string()
                    }),
                "delay" => units::parse_duration_ns(&text_of(v)).map(Ready::Delay),
                _ => Err(HINT.into()),
            }
        }
        _ => Err(HINT.into()),
    }
}

fn workload(w: FileWorkload, ck: &mut Check<'_>) -> Option<Workload> {
    let given = [w.command.is_some(), w.tcp.is_some(), w.http.is_some()];
    if given.iter().filter(|&&g| g).count() != 1 {
        ck.at(
            "workload",
            "a workload is exactly one of command, tcp or http",
        );
        return None;
    }
    if let Some(c) = w.command {
        let argv = match &c {
            Value::String(s) => Some(vec!["sh".into(), "-c".into(), s.clone()]),
            Value::Array(a) if !a.is_empty() => {
                a.iter().map(|x| x.as_str().map(String::from)).collect()
            }
            _ => None,
        };
        if argv.is_none() {
            ck.at(
                "workload.command",
                "command is a shell command line or a non-empty list of strings",
            );
        }
        return argv.map(Workload::Command);
    }
    let (kind, l) = match (w.tcp, w.http) {
        (Some(l), _) => ("tcp", l),
        (_, Some(l)) => ("http", l),
        _ => return None,
    };
    let p = |k: &str| format!("workload.{kind}.{k}");
    let rate = match &l.rate {
        None => 100.0,
        Some(v) => match units::parse_as(&text_of(v), Dim::EventRate) {
            Ok(r) if r > 0.0 && r <= 1e6 => r,
            Ok(_) => {
                ck.at(&p("rate"), "rate is more than 0/s and at most 1000000/s");
                return None;
            }
            Err(e) => {
                ck.at(&p("rate"), e);
                return None;
            }
        },
    };
    let concurrency = l.concurrency.unwrap_or(4);
    if concurrency == 0 || concurrency > 10_000 {
        ck.at(&p("concurrency"), "concurrency is from 1 to 10000");
    }
    let timeout_ns = match &l.timeout {
        None => 1_000_000_000,
        Some(v) => ck
            .duration(&p("timeout"), v)
            .filter(|&t| t > 0)
            .unwrap_or(1_000_000_000),
    };
    Some(if kind == "tcp" {
        if l.path.is_some() {
            ck.at(&p("path"), "path is for http workloads");
        }
        Workload::Tcp {
            port: l.port,
            rate,
            concurrency,
            send: l.send.unwrap_or_else(|| "ping\n".into()),
            expect: l.expect,
            timeout_ns,
        }
    } else {
        if l.send.is_some() || l.expect.is_some() {
            ck.at(&p("send"), "send and expect are for tcp workloads");
        }
        Workload::Http {
            port: l.port,
            rate,
            concurrency,
            path: l.path.unwrap_or_else(|| "/".into()),
            timeout_ns,
        }
    })
}

fn event(
    e: FileEvent,
    axis: Axis,
    index: usize,
    path: &str,
    ck: &mut Check<'_>,
) -> Option<(Event, Vec<String>)> {
    let id =
        e.id.clone()
            .unwrap_or_else(|| format!("{axis}-{}", index + 1));
    if id.is_empty() || !id.chars().all(|c| c.is_alphanumeric() || "-_.".contains(c)) {
        ck.at(
            &format!("{path}.id"),
            format!("event id '{id}' may use only letters, digits, '-', '_' and '.'"),
        );
    }
    let mut args = e.args;
    let via = match args.remove("via") {
        None => axis.default_via(),
        Some(v) => {
            let name = text_of(&v);
            match Via::of(axis).iter().find(|m| m.name() == name) {
                Some(m) => *m,
                None => {
                    ck.at(
                        &format!("{path}.args.via"),
                        format!(
                            "'{name}' is not a {axis} mechanism; {axis} has: {}",
                            Via::of(axis)
                                .iter()
                                .map(|m| m.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                    return None;
                }
            }
        }
    };
    for k in args.keys() {
        if !via.args().contains(&k.as_str()) {
            let allowed = via.args();
            ck.at(
                &format!("{path}.args.{k}"),
                format!(
                    "a {via} event has no setting '{k}'{}",
                    if allowed.is_empty() {
                        String::new()
                    } else {
                        format!("; settings: via, {}", allowed.join(", "))
                    }
                ),
            );
        }
    }
    for (k, v) in &args {
        let bad = match k.as_str() {
            "block" => units::parse_as(&text_of(v), Dim::Bytes)
                .ok()
                .filter(|b| (4096.0..=64.0 * 1048576.0).contains(b))
                .is_none()
                .then_some("block is a size from 4KiB to 64MiB"),
            "hold" => units::parse_duration_ns(&text_of(v))
                .ok()
                .filter(|&h| h > 0)
                .is_none()
                .then_some("hold is a duration such as 1s"),
            "nth" | "every" | "limit" => v
                .as_u64()
                .filter(|&n| n > 0)
                .is_none()
                .then_some("a whole number of calls, at least 1"),
            "sites" => match v.as_str() {
                Some(p) if p.starts_with('#') => p[1..]
                    .parse::<u32>()
                    .is_err()
                    .then_some("a site is #N, N its index (`cargo panic sites <binary>`)"),
                Some(p) => globset::Glob::new(p)
                    .is_err()
                    .then_some("sites is a function pattern such as 'my_crate::io::*', or #N"),
                None => Some("sites is a function pattern such as 'my_crate::io::*', or #N"),
            },
            "callee" => v
                .as_str()
                .is_none_or(|p| globset::Glob::new(p).is_err())
                .then_some("callee is a pattern over the called function, such as '*write*'"),
            "errno" => v
                .as_str()
                .is_none_or(|e| !matches!(e.to_ascii_uppercase().as_str(), "ENOSPC" | "EIO"))
                .then_some("errno is ENOSPC or EIO"),
            _ => None,
        };
        if let Some(m) = bad {
            ck.at(&format!("{path}.args.{k}"), m);
        }
    }
    let at_ns = match &e.at {
        None => 0,
        Some(v) => ck.duration(&format!("{path}.at"), v)?,
    };
    let for_ns = match &e.for_ {
        None => None,
        Some(v) => match ck.duration(&format!("{path}.for"), v)? {
            0 => {
                ck.at(&format!("{path}.for"), "for must be more than zero");
                return None;
            }
            f => Some(f),
        },
    };
    let fault = via.is_fault().then(|| {
        let n = |k: &str| args.get(k).and_then(Value::as_u64);
        let text = |k: &str| args.get(k).and_then(Value::as_str).map(str::to_string);
        let pick = match (n("nth"), n("every")) {
            (Some(_), Some(_)) => {
                ck.at(&format!("{path}.args"), "give nth or every, not both");
                FaultPick::Fraction
            }
            (Some(k), None) => FaultPick::Nth(k),
            (None, Some(k)) => FaultPick::Every(k),
            (None, None) => FaultPick::Fraction,
        };
        if pick != FaultPick::Fraction {
            if e.intensity.is_some() {
                ck.at(
                    &format!("{path}.intensity"),
                    "with nth or every the calls that fail are counted, not a fraction: leave intensity out",
                );
            }
            if e.shape.is_some() {
                ck.at(
                    &format!("{path}.shape"),
                    "with nth or every there is no level to shape: leave shape out",
                );
            }
        }
        FaultSpec {
            sites: text("sites"),
            callee: text("callee"),
            pick,
            limit: n("limit"),
            errno: match via {
                Via::FailIo if text("errno").is_some_and(|e| e.eq_ignore_ascii_case("EIO")) => {
                    Some("EIO")
                }
                Via::FailIo => Some("ENOSPC"),
                Via::Eintr => Some("EINTR"),
                _ => None,
            },
        }
    });
    let intensity = match &e.intensity {
        None => match fault.as_ref().map(|f| f.pick) {
            Some(FaultPick::Nth(_)) => Intensity::Exact(Level::Scalar(1.0)),
            Some(FaultPick::Every(k)) => Intensity::Exact(Level::Scalar(1.0 / k as f64)),
            _ => Intensity::Named(Named::Medium),
        },
        Some(v) => match Intensity::parse(v, via) {
            Ok(i) => i,
            Err(m) => {
                ck.at(&format!("{path}.intensity"), m);
                return None;
            }
        },
    };
    let shape = match &e.shape {
        None => Shape::Constant,
        Some(v) => match Shape::parse(v, for_ns) {
            Ok(s) => s,
            Err(m) => {
                ck.at(&format!("{path}.shape"), m);
                return None;
            }
        },
    };
    let start_when = e
        .start_when
        .as_ref()
        .and_then(|v| ck.cond(&format!("{path}.start_when"), v));
    let stop_when = e
        .stop_when
        .as_ref()
        .and_then(|v| ck.cond(&format!("{path}.stop_when"), v));
    let after = match e.after {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    };
    for a in &after {
        if *a == id {
            ck.at(
                &format!("{path}.after"),
                format!("event '{id}' comes after itself"),
            );
        }
    }
    Some((
        Event {
            id,
            axis,
            via,
            at_ns,
            for_ns,
            intensity,
            shape,
            start_when,
            stop_when,
            args,
            fault,
        },
        after,
    ))
}

fn constraints(c: FileConstraints, events: &[Event], ck: &mut Check<'_>) -> Option<Constraints> {
    let axes = || Axis::ALL.map(Axis::name).join(", ");
    let Some(bottleneck) = Axis::parse(&c.bottleneck) else {
        ck.at(
            "constraints.bottleneck",
            format!("unknown axis '{}'; axes: {}", c.bottleneck, axes()),
        );
        return None;
    };
    let mut subordinate = Vec::new();
    for (name, rule) in c.subordinate {
        let path = format!("constraints.subordinate.{name}");
        let Some(axis) = Axis::parse(&name) else {
            ck.at(&path, format!("unknown axis '{name}'; axes: {}", axes()));
            continue;
        };
        if axis == bottleneck {
            ck.at(
                &path,
                format!("{axis} is the bottleneck; the bottleneck is not subordinated to itself"),
            );
            continue;
        }
        let when = ck.cond(&format!("{path}.if"), &rule.when);
        // The action must make sense for every event of that axis.
        let mut intensity = None;
        let throttled: Vec<&Event> = events.iter().filter(|e| e.axis == axis).collect();
        if throttled.is_empty() {
            ck.at(
                &path,
                format!("no event is on the {axis} axis, so this rule would never act"),
            );
        }
        let vias: Vec<Via> = if throttled.is_empty() {
            vec![axis.default_via()]
        } else {
            throttled.iter().map(|e| e.via).collect()
        };
        for via in vias {
            match Intensity::parse(&rule.action.intensity, via) {
                Ok(i) => intensity = Some(i),
                Err(m) => {
                    ck.at(
                        &format!("{path}.action.intensity"),
                        format!("for the {via} events of {axis}: {m}"),
                    );
                    intensity = None;
                    break;
                }
            }
        }
        if let (Some(when), Some(intensity)) = (when, intensity) {
            subordinate.push(Subordinate {
                axis,
                when,
                intensity,
            });
        }
    }
    Some(Constraints {
        bottleneck,
        subordinate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MACHINE: Machine = Machine::TEST;

    fn ok(text: &str) -> Timeline {
        Timeline::parse(text, "t.yaml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(text: &str) -> String {
        Timeline::parse(text, "t.yaml")
            .expect_err("should fail")
            .to_string()
    }

    #[test]
    fn reads_the_documented_example() {
        let t = ok(r#"
version: 1
program: ./server
args: [--port, "0"]
duration: 60s
seed: 7
tracks:
  - axis: cpu
    events:
      - id: spike-1
        at: 10s
        for: 20s
        intensity: 1.5 cores
        shape: ramp
  - axis: memory
    events:
      - id: squeeze
        intensity: 300MiB
        args: {via: limit}
        start_when: {event: spike-1, outcome: survived}
      - after: squeeze
        for: 5s
constraints:
  bottleneck: memory
  subordinate:
    cpu: {if: memory_pressure > 0.8, action: {intensity: light}}
assert: [crashes == 0]
"#);
        assert_eq!(t.duration_ns, 60_000_000_000);
        assert_eq!(t.seed, 7);
        assert_eq!(t.events.len(), 3);
        let spike = &t.events[0];
        assert_eq!(
            (spike.axis, spike.via, spike.at_ns, spike.for_ns),
            (Axis::Cpu, Via::Spin, 10_000_000_000, Some(20_000_000_000))
        );
        assert_eq!(spike.intensity, Intensity::Exact(Level::Scalar(1.5)));
        assert_eq!(spike.shape, Shape::Ramp { from: 0.0 });
        assert_eq!(t.events[1].via, Via::Limit);
        assert_eq!(
            t.events[1].intensity,
            Intensity::Exact(Level::Scalar(300.0 * 1048576.0))
        );
        // Ids default to <axis>-<n>; `after` becomes a start condition.
        assert_eq!(t.events[2].id, "memory-2");
        assert_eq!(
            t.events[2].start_when.as_ref().unwrap().to_string(),
            "outcome(squeeze) == ended"
        );
        let c = t.constraints.as_ref().unwrap();
        assert_eq!(c.bottleneck, Axis::Memory);
        assert_eq!(c.subordinate[0].axis, Axis::Cpu);
        assert_eq!(t.asserts[0].to_string(), "crashes == 0");
        let d = t.describe(&MACHINE);
        assert!(
            d.contains(
                "spike-1        cpu         via spin    1.5 cores, ramp from 0% at 10s; for 20s"
            ),
            "{d}"
        );
        assert!(d.contains("squeeze        memory      via limit   300MiB, constant when outcome(spike-1) == survived; until the end"), "{d}");
        assert!(
            d.contains("while memory_pressure > 80%: cpu at most light"),
            "{d}"
        );
    }

    #[test]
    fn json_is_accepted() {
        let t = ok(
            r#"{"duration": "5s", "tracks": [{"axis": "network", "events": [{"intensity": {"latency": "50ms", "loss": "2%"}}]}]}"#,
        );
        let Intensity::Exact(Level::Net(n)) = &t.events[0].intensity else {
            panic!()
        };
        assert_eq!((n.latency_ns, n.loss), (50_000_000, 0.02));
    }

    /// (timeline text, line:col, message part) for located errors.
    #[test]
    fn fault_events_read_their_selection_and_refuse_contradictions() {
        let t = ok(
            "duration: 5s\ntracks:\n  - axis: memory\n    events:\n      - {id: a, args: {via: fail-alloc, sites: 'app::*', nth: 5}}\n  - axis: disk\n    events:\n      - {id: b, intensity: 20%, args: {via: fail-io, errno: eio, callee: '*write*', limit: 3}}\n  - axis: time\n    events:\n      - {id: c, args: {via: eintr, every: 4}}\n",
        );
        let f = |i: usize| t.events[i].fault.clone().unwrap();
        assert_eq!(f(0).pick, FaultPick::Nth(5));
        assert_eq!(f(0).sites.as_deref(), Some("app::*"));
        assert_eq!(f(0).errno, None);
        assert_eq!(t.events[0].intensity, Intensity::Exact(Level::Scalar(1.0)));
        assert_eq!((f(1).errno, f(1).limit), (Some("EIO"), Some(3)));
        assert_eq!(f(1).callee.as_deref(), Some("*write*"));
        assert_eq!(t.events[1].intensity, Intensity::Exact(Level::Scalar(0.2)));
        assert_eq!(
            (f(2).pick, f(2).errno),
            (FaultPick::Every(4), Some("EINTR"))
        );
        assert_eq!(t.events[2].intensity, Intensity::Exact(Level::Scalar(0.25)));
        assert!(t.events.iter().all(|e| e.via.is_fault()));
        let head = "duration: 5s\ntracks:\n  - axis: disk\n    events:\n      - ";
        for (event, want) in [
            (
                "{args: {via: fail-io, nth: 2, every: 3}}",
                "give nth or every, not both",
            ),
            (
                "{intensity: 5%, args: {via: fail-io, nth: 2}}",
                "leave intensity out",
            ),
            (
                "{shape: ramp, args: {via: fail-io, every: 2}}",
                "leave shape out",
            ),
            (
                "{args: {via: fail-io, errno: EPERM}}",
                "errno is ENOSPC or EIO",
            ),
            ("{args: {via: fail-io, nth: 0}}", "at least 1"),
            ("{args: {via: fail-io, sites: '#x'}}", "a site is #N"),
            ("{intensity: 150%, args: {via: fail-io}}", "at most 100%"),
            (
                "{args: {via: fail-alloc}}",
                "'fail-alloc' is not a disk mechanism",
            ),
        ] {
            let e = err(&format!("{head}{event}\n"));
            assert!(e.contains(want), "{event}: {e}");
            assert!(e.contains("t.yaml:5:"), "{event}: located: {e}");
        }
    }

    #[test]
    fn errors_are_located_with_hints() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "duration: 60s\nbogus: 1\n",
                "t.yaml:2:1",
                "unknown field `bogus`",
            ),
            ("tracks: []\n", "t.yaml:1:1", "no duration"),
            ("duration: 60\n", "t.yaml:1:11", "no unit"),
            (
                "duration: 1s\ntracks:\n  - axis: gpu\n",
                "t.yaml:3:11",
                "unknown axis 'gpu'",
            ),
            (
                "duration: 1s\ntracks:\n  - axis: cpu\n    events:\n      - intensity: 300MiB\n",
                "t.yaml:5:20",
                "'300MiB' is a size, not a number of cores",
            ),
            (
                "duration: 1s\ntracks:\n  - axis: cpu\n    events:\n      - args: {via: turbo}\n",
                "t.yaml:5:21",
                "'turbo' is not a cpu mechanism; cpu has: spin, quota",
            ),
            (
                "duration: 1s\ntracks:\n  - axis: cpu\n    events:\n      - start_when: 'crashes >= 1 rss > 1MiB'\n",
                "t.yaml:5:35",
                "join conditions",
            ),
            (
                "duration: 1s\ntracks:\n  - axis: cpu\n    events:\n      - start_when: {event: spike}\n",
                "t.yaml:5:21",
                "no event has the id 'spike'",
            ),
            (
                "duration: 1s\ntracks:\n  - axis: cpu\n    events:\n      - {id: a, after: b}\n      - {id: b, after: a}\n",
                "t.yaml:5:9",
                "cycle: a -> b -> a",
            ),
            (
                "duration: 1s\ntracks:\n  - axis: cpu\n    events:\n      - {id: a}\n      - {id: a}\n",
                "t.yaml:6:14",
                "used twice (first on line 5)",
            ),
            (
                "duration: 1s\ntracks:\n  - axis: cpu\n    events:\n      - {at: 2s}\n",
                "t.yaml:5:14",
                "never starts",
            ),
            (
                "duration: 1s\ntracks:\n  - axis: cpu\n    events:\n      - {shape: wobble}\n",
                "t.yaml:5:17",
                "unknown shape 'wobble'",
            ),
            (
                "duration: 1s\ntracks:\n  - axis: network\n    events:\n      - {intensity: {latency: 5ms, loss: 200%}}\n",
                "t.yaml:5:21",
                "not between 0% and 100%",
            ),
            (
                "duration: 1s\ntracks:\n  - axis: time\n    events:\n      - {intensity: {pause: 2s, every: 1s}}\n",
                "t.yaml:5:21",
                "less than `every`",
            ),
            (
                "duration: 1s\ntracks:\n  - axis: cpu\n    events: [{}]\nconstraints: {bottleneck: cpu, subordinate: {cpu: {if: crashes > 0, action: {intensity: light}}}}\n",
                "t.yaml:5:51",
                "the bottleneck is not subordinated",
            ),
            (
                "duration: 1s\ntracks:\n  - axis: cpu\n    events: [{}]\nconstraints: {bottleneck: memory, subordinate: {cpu: {if: crashes > 0, action: {intensity: 3MiB}}}}\n",
                "t.yaml:5:92",
                "for the spin events of cpu: '3MiB' is a size, not a number of cores",
            ),
            (
                "duration: 1s\nversion: 2\n",
                "t.yaml:2:10",
                "version 2 is not supported",
            ),
            (
                "duration: 1s\nworkload: {tcp: {rate: fast}}\n",
                "t.yaml:2:24",
                "'fast' is not a number",
            ),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .map(|(text, at, part)| (text, at, part, err(text)))
            .filter(|(_, at, part, e)| !(e.starts_with(**at) && e.contains(**part)))
            .map(|(text, at, part, e)| format!("{text}\n--> {e}\n(wanted {at} .. {part})"))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    }

    #[test]
    fn reports_every_error_not_just_the_first() {
        let e = err(
            "duration: 1s\ntracks:\n  - axis: cpu\n    events:\n      - {intensity: 3MiB}\n      - {start_when: nonsense > 1}\n",
        );
        assert_eq!(e.lines().count(), 2, "{e}");
    }

    #[test]
    fn shapes_follow_their_definitions() {
        let ten = Some(10_000_000_000);
        let s = |t: f64| (t * 1e9) as u64;
        assert_eq!(Shape::Constant.factor(s(3.0), ten), 1.0);
        assert!((Shape::Ramp { from: 0.0 }.factor(s(2.5), ten) - 0.25).abs() < 1e-12);
        assert!((Shape::Ramp { from: 0.5 }.factor(s(5.0), ten) - 0.75).abs() < 1e-12);
        let step = Shape::Step { steps: 4 };
        assert_eq!(
            [0.0, 2.4, 2.6, 9.9].map(|t| step.factor(s(t), ten)),
            [0.25, 0.25, 0.5, 1.0]
        );
        let sine = Shape::Sine {
            period_ns: s(4.0),
            floor: 0.0,
        };
        assert!((sine.factor(0, ten)).abs() < 1e-12);
        assert!((sine.factor(s(2.0), ten) - 1.0).abs() < 1e-12);
        assert!((sine.factor(s(1.0), ten) - 0.5).abs() < 1e-12);
        let spike = Shape::Spike {
            width_ns: s(1.0),
            decay_ns: s(1.0),
        };
        assert_eq!(spike.factor(s(0.5), ten), 1.0);
        assert!((spike.factor(s(2.0), ten) - (-1.0f64).exp()).abs() < 1e-12);
    }

    #[test]
    fn named_levels_scale_with_the_machine() {
        assert_eq!(Named::Heavy.level(Via::Spin, &MACHINE), Level::Scalar(2.0));
        assert_eq!(
            Named::Light.level(Via::Cpuset, &MACHINE),
            Level::Scalar(1.0)
        );
        assert_eq!(
            Named::Medium.level(Via::Hog, &MACHINE),
            Level::Scalar((1u64 << 30) as f64)
        );
    }

    #[test]
    fn scaling_stretches_every_time() {
        let t = ok(
            "duration: 10s\ntracks:\n  - axis: cpu\n    events: [{at: 2s, for: 4s, shape: {sine: {period: 1s}}}]\n",
        );
        let t = t.scaled_to(20_000_000_000);
        let e = &t.events[0];
        assert_eq!((e.at_ns, e.for_ns), (4_000_000_000, Some(8_000_000_000)));
        assert_eq!(
            e.shape,
            Shape::Sine {
                period_ns: 2_000_000_000,
                floor: 0.0
            }
        );
    }
}

/// The parser never panics, whatever the text: random bytes, and random
/// YAML built from the format's own keys and values, so that deep paths of
/// validation are reached too.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::Timeline;

    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("1s".to_string()),
            Just("0".to_string()),
            Just("-3".to_string()),
            Just("heavy".to_string()),
            Just("1.5 cores".to_string()),
            Just("300MiB".to_string()),
            Just("'crashes >= 1 and'".to_string()),
            Just("'p99(f) > 2ms'".to_string()),
            Just("'outcome(a) == crash'".to_string()),
            Just("{event: a}".to_string()),
            Just("{all: []}".to_string()),
            Just("[]".to_string()),
            Just("~".to_string()),
            Just("1e400".to_string()),
            Just("\"\\u0000\"".to_string()),
            "[a-z0-9 .%/()<>=!-]{0,12}".prop_map(|s| format!("'{s}'")),
        ]
    }

    fn key() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "id",
            "at",
            "for",
            "intensity",
            "shape",
            "args",
            "start_when",
            "stop_when",
            "after",
            "via",
            "latency",
            "loss",
            "pause",
            "every",
            "sine",
            "period",
            "ramp",
            "from",
            "axis",
            "events",
            "bogus",
        ])
    }

    fn event() -> impl Strategy<Value = String> {
        prop::collection::vec((key(), scalar()), 0..6).prop_map(|kv| {
            let body: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
            format!("{{{}}}", body.join(", "))
        })
    }

    fn document() -> impl Strategy<Value = String> {
        (
            scalar(),
            prop::sample::select(vec!["cpu", "memory", "disk", "network", "concurrency", "time", "gpu"]),
            prop::collection::vec(event(), 0..5),
            prop::option::of(scalar()),
        )
            .prop_map(|(d, axis, events, cond)| {
                let mut t = format!("duration: {d}\ntracks:\n  - axis: {axis}\n    events: [{}]\n", events.join(", "));
                if let Some(c) = cond {
                    t.push_str(&format!(
                        "constraints: {{bottleneck: memory, subordinate: {{{axis}: {{if: {c}, action: {{intensity: {c}}}}}}}}}\nassert: [{c}]\n"
                    ));
                }
                t
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, rng_seed: proptest::test_runner::RngSeed::Fixed(7), ..ProptestConfig::default() })]

        #[test]
        fn random_text_never_panics(text in "\\PC{0,200}") {
            let _ = Timeline::parse(&text, "t.yaml");
        }

        #[test]
        fn random_timelines_never_panic(text in document()) {
            if let Err(e) = Timeline::parse(&text, "t.yaml") {
                // Every error is located on a line the text has.
                for l in &e.errors {
                    prop_assert!(l.line >= 1 && l.line <= text.lines().count().max(1) + 1, "{e}\n{text}");
                }
            }
        }
    }
}
