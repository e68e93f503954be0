//! Conditions of a timeline (`start_when`, `stop_when`, a ToC rule's `if`,
//! `--assert`): parsing, type checking and evaluation. Pure: the engine
//! supplies signal values through [`Signals`].
//!
//! A condition is written as a string,
//!
//! ```text
//! crashes >= 1
//! p99(my_crate::handle_request) > 20ms and rss > 300MiB
//! not (cpu_load < 50%) or outcome(spike-1) == crash
//! ```
//!
//! or in YAML as `{event: spike-1, outcome: crash}`, `{all: [..]}`,
//! `{any: [..]}`, `{not: ..}`. (YAML reads `{ crashes >= 1 }` as a map with
//! one key and no value; that is accepted as the string it looks like.)
//!
//! Comparisons are typed: `p99(..)` is a duration, so `p99(f) > 20` is an
//! error that asks for `20ms`. A signal with no value yet (no samples for a
//! site, the target not started, PSI not available) makes its comparison
//! *unknown*; `and`/`or`/`not` follow Kleene's three-valued logic and an
//! unknown condition does not hold.

use std::fmt;

use super::units::{self, Dim};

/// The quantile a latency signal asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Quantile {
    P50,
    P95,
    P99,
    P999,
}

impl Quantile {
    pub fn q(self) -> f64 {
        match self {
            Quantile::P50 => 0.50,
            Quantile::P95 => 0.95,
            Quantile::P99 => 0.99,
            Quantile::P999 => 0.999,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Quantile::P50 => "p50",
            Quantile::P95 => "p95",
            Quantile::P99 => "p99",
            Quantile::P999 => "p999",
        }
    }
}

/// Something the engine measures every tick.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Failures of the target so far (crash, abort, kill, non-zero exit, hang).
    Crashes,
    /// 1 once the target has exited (any way), else 0.
    Exited,
    /// The target's exit code, once it exited normally.
    ExitCode,
    /// Restarts done by the restart policy.
    Restarts,
    /// OOM kills in the target's cgroup.
    OomKills,
    /// The target's resident memory (bytes).
    Rss,
    /// The target's thread count.
    Threads,
    /// Seconds since the run started (as a duration).
    Elapsed,
    /// Fuse trips so far, of one fuse or all.
    FuseTrips(Option<String>),
    /// A quantile of the dwell of the regions whose function matches the
    /// pattern (a glob, or `#<site id>`), over the run so far.
    Quantile(Quantile, String),
    /// Entries into the regions the pattern matches, so far.
    Count(String),
    /// Busy fraction of all CPUs of the machine over the last tick.
    CpuLoad,
    /// PSI `some avg10` as a fraction.
    CpuPressure,
    MemoryPressure,
    IoPressure,
}

impl Signal {
    /// The dimension of the signal's values.
    pub fn dim(&self) -> Dim {
        match self {
            Signal::Crashes
            | Signal::Exited
            | Signal::ExitCode
            | Signal::Restarts
            | Signal::OomKills
            | Signal::Threads
            | Signal::FuseTrips(_)
            | Signal::Count(_) => Dim::Count,
            Signal::Rss => Dim::Bytes,
            Signal::Elapsed | Signal::Quantile(..) => Dim::Duration,
            Signal::CpuLoad | Signal::CpuPressure | Signal::MemoryPressure | Signal::IoPressure => {
                Dim::Fraction
            }
        }
    }

    /// Every signal name, for hints.
    pub const NAMES: &'static [&'static str] = &[
        "crashes",
        "exited",
        "exit_code",
        "restarts",
        "oom_kills",
        "rss",
        "threads",
        "elapsed",
        "fuse_trips",
        "fuse_trips(NAME)",
        "p50(SITE)",
        "p95(SITE)",
        "p99(SITE)",
        "p999(SITE)",
        "count(SITE)",
        "cpu_load",
        "cpu_pressure",
        "memory_pressure",
        "io_pressure",
    ];
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signal::Crashes => f.write_str("crashes"),
            Signal::Exited => f.write_str("exited"),
            Signal::ExitCode => f.write_str("exit_code"),
            Signal::Restarts => f.write_str("restarts"),
            Signal::OomKills => f.write_str("oom_kills"),
            Signal::Rss => f.write_str("rss"),
            Signal::Threads => f.write_str("threads"),
            Signal::Elapsed => f.write_str("elapsed"),
            Signal::FuseTrips(None) => f.write_str("fuse_trips"),
            Signal::FuseTrips(Some(n)) => write!(f, "fuse_trips({n})"),
            Signal::Quantile(q, s) => write!(f, "{}({s})", q.name()),
            Signal::Count(s) => write!(f, "count({s})"),
            Signal::CpuLoad => f.write_str("cpu_load"),
            Signal::CpuPressure => f.write_str("cpu_pressure"),
            Signal::MemoryPressure => f.write_str("memory_pressure"),
            Signal::IoPressure => f.write_str("io_pressure"),
        }
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Eq => a == b,
            Op::Ne => a != b,
        }
    }

    /// The operator with its sides swapped (`3 < x` is `x > 3`).
    fn flip(self) -> Op {
        match self {
            Op::Lt => Op::Gt,
            Op::Le => Op::Ge,
            Op::Gt => Op::Lt,
            Op::Ge => Op::Le,
            o => o,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// How an event ended, or that it started, as conditions ask about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The event has started (whether or not it has ended).
    Started,
    /// The event has ended, any way.
    Ended,
    /// The target failed while the event was active.
    Crash,
    /// The event ran its course and the target was still up.
    Survived,
    /// Its `stop_when` ended it (or the run ended first).
    Stopped,
}

impl Outcome {
    pub const NAMES: &'static [&'static str] =
        &["started", "ended", "crash", "survived", "stopped"];

    fn parse(s: &str) -> Option<Outcome> {
        Some(match s {
            "started" => Outcome::Started,
            "ended" => Outcome::Ended,
            "crash" | "crashed" => Outcome::Crash,
            "survived" => Outcome::Survived,
            "stopped" => Outcome::Stopped,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Outcome::Started => "started",
            Outcome::Ended => "ended",
            Outcome::Crash => "crash",
            Outcome::Survived => "survived",
            Outcome::Stopped => "stopped",
        }
    }
}

/// Where an event is, as the scheduler reports it to conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventPhase {
    Pending,
    Active,
    /// Ended with this outcome (one of Crash, Survived, Stopped).
    Ended(Outcome),
}

impl EventPhase {
    /// Whether an event in this phase has the asked-for outcome.
    pub fn has(self, want: Outcome) -> bool {
        match (self, want) {
            (EventPhase::Pending, _) => false,
            (EventPhase::Active, w) => w == Outcome::Started,
            (EventPhase::Ended(_), Outcome::Started | Outcome::Ended) => true,
            (EventPhase::Ended(o), w) => o == w,
        }
    }
}

/// A parsed, type-checked condition.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cond {
    /// `signal op value`, the value in the signal's base unit.
    Cmp {
        signal: Signal,
        op: Op,
        value: f64,
    },
    /// An event's phase.
    Outcome {
        event: String,
        outcome: Outcome,
        negated: bool,
    },
    /// A signal used as a truth value (`exited`): it is non-zero.
    Truthy(Signal),
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
}

/// What a condition reads while it is evaluated.
pub trait Signals {
    /// The current value of a signal in its base unit; None when there is none yet.
    fn value(&self, signal: &Signal) -> Option<f64>;
    /// The phase of the event with this id (validated to exist).
    fn phase(&self, event: &str) -> EventPhase;
}

impl Cond {
    /// Whether the condition holds now: unknown counts as not holding.
    pub fn holds(&self, s: &dyn Signals) -> bool {
        self.eval(s) == Some(true)
    }

    /// Three-valued evaluation: None when a signal it needs has no value.
    pub fn eval(&self, s: &dyn Signals) -> Option<bool> {
        match self {
            Cond::Cmp { signal, op, value } => s.value(signal).map(|v| op.holds(v, *value)),
            Cond::Truthy(signal) => s.value(signal).map(|v| v != 0.0),
            Cond::Outcome {
                event,
                outcome,
                negated,
            } => Some(s.phase(event).has(*outcome) != *negated),
            Cond::Not(c) => c.eval(s).map(|b| !b),
            Cond::All(cs) => {
                let mut unknown = false;
                for c in cs {
                    match c.eval(s) {
                        Some(false) => return Some(false),
                        None => unknown = true,
                        Some(true) => {}
                    }
                }
                (!unknown).then_some(true)
            }
            Cond::Any(cs) => {
                let mut unknown = false;
                for c in cs {
                    match c.eval(s) {
                        Some(true) => return Some(true),
                        None => unknown = true,
                        Some(false) => {}
                    }
                }
                (!unknown).then_some(false)
            }
        }
    }

    /// Every signal the condition reads.
    pub fn signals(&self) -> Vec<&Signal> {
        let mut out = Vec::new();
        self.walk(&mut |c| match c {
            Cond::Cmp { signal, .. } | Cond::Truthy(signal) => out.push(signal),
            _ => {}
        });
        out
    }

    /// Every event id the condition refers to.
    pub fn events(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.walk(&mut |c| {
            if let Cond::Outcome { event, .. } = c {
                out.push(event.as_str());
            }
        });
        out
    }

    fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a Cond)) {
        f(self);
        match self {
            Cond::All(cs) | Cond::Any(cs) => cs.iter().for_each(|c| c.walk(f)),
            Cond::Not(c) => c.walk(f),
            _ => {}
        }
    }
}

impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cond::Cmp { signal, op, value } => write!(
                f,
                "{signal} {} {}",
                op.symbol(),
                units::fmt(*value, signal.dim())
            ),
            Cond::Truthy(s) => write!(f, "{s}"),
            Cond::Outcome {
                event,
                outcome,
                negated,
            } => write!(
                f,
                "outcome({event}) {} {}",
                if *negated { "!=" } else { "==" },
                outcome.name()
            ),
            Cond::Not(c) => write!(f, "not ({c})"),
            Cond::All(cs) | Cond::Any(cs) => {
                let join = if matches!(self, Cond::All(_)) {
                    " and "
                } else {
                    " or "
                };
                for (i, c) in cs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(join)?;
                    }
                    match c {
                        Cond::All(_) | Cond::Any(_) => write!(f, "({c})")?,
                        _ => write!(f, "{c}")?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// A parse error: the byte offset in the condition text and the message.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at column {}: {}", self.offset + 1, self.message)
    }
}

/// Parses a condition string.
pub fn parse(text: &str) -> Result<Cond, ParseError> {
    let mut p = Parser { text, pos: 0 };
    let c = p.or()?;
    p.skip_ws();
    if p.pos < text.len() {
        return Err(p.err(format!(
            "unexpected '{}'; join conditions with 'and' / 'or'",
            p.rest_word()
        )));
    }
    Ok(c)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

/// What a condition's comparison side is before type checking.
enum Operand {
    Signal(Signal),
    Literal(units::Quantity, String),
    Outcome(String),
    Word(String),
}

impl<'a> Parser<'a> {
    fn err(&self, message: String) -> ParseError {
        ParseError {
            offset: self.pos,
            message,
        }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn rest_word(&self) -> &'a str {
        let r = self.rest();
        let end = r.find(char::is_whitespace).unwrap_or(r.len());
        &r[..end]
    }

    fn skip_ws(&mut self) {
        let r = self.rest();
        self.pos += r.len() - r.trim_start().len();
    }

    /// Consumes `kw` when it comes next as a whole word (or symbol).
    fn eat(&mut self, kws: &[&str]) -> bool {
        self.skip_ws();
        let r = self.rest();
        for kw in kws {
            if let Some(after) = r.strip_prefix(kw) {
                let word = kw.chars().all(|c| c.is_ascii_alphabetic());
                if word && after.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                self.pos += kw.len();
                return true;
            }
        }
        false
    }

    fn or(&mut self) -> Result<Cond, ParseError> {
        let mut parts = vec![self.and()?];
        while self.eat(&["or", "||"]) {
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Cond::Any(parts)
        })
    }

    fn and(&mut self) -> Result<Cond, ParseError> {
        let mut parts = vec![self.unary()?];
        while self.eat(&["and", "&&"]) {
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Cond::All(parts)
        })
    }

    fn unary(&mut self) -> Result<Cond, ParseError> {
        if self.eat(&["not", "!"]) {
            // `!=` is an operator, not a negation: only reached at the start of a term.
            return Ok(Cond::Not(Box::new(self.unary()?)));
        }
        if self.eat(&["("]) {
            let c = self.or()?;
            if !self.eat(&[")"]) {
                return Err(self.err("missing ')'".into()));
            }
            return Ok(c);
        }
        self.comparison()
    }

    fn op(&mut self) -> Option<Op> {
        for (s, op) in [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
            ("=", Op::Eq),
        ] {
            if self.eat(&[s]) {
                return Some(op);
            }
        }
        None
    }

    fn comparison(&mut self) -> Result<Cond, ParseError> {
        self.skip_ws();
        let start = self.pos;
        let left = self.operand()?;
        self.skip_ws();
        let op_at = self.pos;
        let Some(op) = self.op() else {
            return match left {
                Operand::Signal(s) if s == Signal::Exited => Ok(Cond::Truthy(s)),
                Operand::Signal(s) => Err(ParseError {
                    offset: op_at,
                    message: format!(
                        "{s} needs a comparison, e.g. {s} > {}",
                        units::fmt(example_value(s.dim()), s.dim())
                    ),
                }),
                _ => Err(ParseError {
                    offset: start,
                    message: "a condition compares a signal with a value, e.g. crashes >= 1".into(),
                }),
            };
        };
        self.skip_ws();
        let right_at = self.pos;
        let right = self.operand()?;
        let (signal, op, lit, lit_text, lit_at) = match (left, right) {
            (Operand::Outcome(event), Operand::Word(w)) => {
                return outcome_cond(event, op, &w).map_err(|message| ParseError {
                    offset: right_at,
                    message,
                });
            }
            (Operand::Outcome(_), _) => {
                return Err(ParseError {
                    offset: right_at,
                    message: format!(
                        "outcome(..) is compared with one of {}",
                        Outcome::NAMES.join(", ")
                    ),
                });
            }
            (Operand::Signal(s), Operand::Literal(q, t)) => (s, op, q, t, right_at),
            (Operand::Literal(q, t), Operand::Signal(s)) => (s, op.flip(), q, t, start),
            (Operand::Signal(_), Operand::Signal(_)) => {
                return Err(ParseError {
                    offset: right_at,
                    message: "compare a signal with a value, not with another signal".into(),
                });
            }
            (_, Operand::Word(w)) | (Operand::Word(w), _) => {
                return Err(ParseError {
                    offset: start,
                    message: unknown_signal(&w),
                });
            }
            (Operand::Literal(..), _) | (Operand::Signal(_), Operand::Outcome(_)) => {
                return Err(ParseError {
                    offset: start,
                    message: "a comparison is between a signal and a value".into(),
                });
            }
        };
        let value = lit.as_dim(signal.dim()).map_err(|e| ParseError {
            offset: lit_at,
            message: format!("{signal} is a {}: '{lit_text}' {e}", signal.dim()),
        })?;
        Ok(Cond::Cmp { signal, op, value })
    }

    /// A signal, `outcome(id)`, a literal with its unit, or another word.
    fn operand(&mut self) -> Result<Operand, ParseError> {
        self.skip_ws();
        let r = self.rest();
        if r.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == '-' || c == '+') {
            // A number, then an optional unit, possibly after one space.
            let end = r
                .find(|c: char| c.is_whitespace() || "()<>=!&|".contains(c))
                .unwrap_or(r.len());
            let mut text = r[..end].to_string();
            let mut len = end;
            let after = &r[end..];
            let trimmed = after.trim_start();
            let word_end = trimmed
                .find(|c: char| !(c.is_alphabetic() || c == '/' || c == '%'))
                .unwrap_or(trimmed.len());
            let word = &trimmed[..word_end];
            let is_signal = Signal::NAMES
                .iter()
                .any(|n| n.split('(').next() == Some(word));
            if !word.is_empty()
                && !matches!(word, "and" | "or" | "not")
                && !is_signal
                && text
                    .chars()
                    .all(|c| c.is_ascii_digit() || ".+-eE".contains(c))
            {
                if let Err(m) = units::parse(&format!("1{word}")) {
                    return Err(self.err(m.replacen("'1", &format!("'{text} "), 1)));
                }
                text = format!("{text} {word}");
                len = end + (after.len() - trimmed.len()) + word_end;
            }
            let q = units::parse(&text).map_err(|m| self.err(m))?;
            self.pos += len;
            return Ok(Operand::Literal(q, text));
        }
        let end = r
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(r.len());
        if end == 0 {
            return Err(self.err(if r.is_empty() {
                "the condition ends too early: a signal or value is missing".into()
            } else {
                format!("unexpected '{}'", self.rest_word())
            }));
        }
        // `p99.9` is the one name with a dot.
        let end = if &r[..end] == "p99" && r[end..].starts_with(".9") {
            end + 2
        } else {
            end
        };
        let name = &r[..end];
        self.pos += end;
        let arg = if self.rest().starts_with('(') {
            let close = self
                .rest()
                .find(')')
                .ok_or_else(|| self.err("missing ')'".into()))?;
            let a = self.rest()[1..close].trim().to_string();
            if a.is_empty() {
                return Err(self.err(format!("{name}(..) needs an argument")));
            }
            self.pos += close + 1;
            Some(a)
        } else {
            None
        };
        let q = |q| Quantile::parse_arg(q, name, arg.clone());
        Ok(Operand::Signal(match (name, arg.clone()) {
            ("crashes", None) => Signal::Crashes,
            ("exited" | "exit", None) => Signal::Exited,
            ("exit_code", None) => Signal::ExitCode,
            ("restarts", None) => Signal::Restarts,
            ("oom_kills", None) => Signal::OomKills,
            ("rss", None) => Signal::Rss,
            ("threads", None) => Signal::Threads,
            ("elapsed", None) => Signal::Elapsed,
            ("fuse_trips", a) => Signal::FuseTrips(a),
            ("cpu_load", None) => Signal::CpuLoad,
            ("cpu_pressure", None) => Signal::CpuPressure,
            ("memory_pressure", None) => Signal::MemoryPressure,
            ("io_pressure", None) => Signal::IoPressure,
            ("count", Some(site)) => Signal::Count(site),
            ("p50", _) => q(Quantile::P50).map_err(|m| self.err(m))?,
            ("p95", _) => q(Quantile::P95).map_err(|m| self.err(m))?,
            ("p99", _) => q(Quantile::P99).map_err(|m| self.err(m))?,
            ("p999" | "p99.9", _) => q(Quantile::P999).map_err(|m| self.err(m))?,
            ("outcome", Some(event)) => return Ok(Operand::Outcome(event)),
            ("outcome" | "count", None) => {
                return Err(self.err(format!("{name}(..) needs an argument")));
            }
            (_, Some(_)) => {
                return Err(ParseError {
                    offset: self.pos - end,
                    message: unknown_signal(name),
                });
            }
            (_, None)
                if Signal::NAMES
                    .iter()
                    .any(|n| n.starts_with(&format!("{name}("))) =>
            {
                return Err(self.err(format!("{name} takes an argument: {name}(..)")));
            }
            (_, None) => return Ok(Operand::Word(name.to_string())),
        }))
    }
}

impl Quantile {
    fn parse_arg(q: Quantile, name: &str, arg: Option<String>) -> Result<Signal, String> {
        match arg {
            Some(site) => Ok(Signal::Quantile(q, site)),
            None => Err(format!(
                "{name} needs the site it is about: {name}(my_crate::handle_request) or {name}(#12)"
            )),
        }
    }
}

fn outcome_cond(event: String, op: Op, word: &str) -> Result<Cond, String> {
    let negated = match op {
        Op::Eq => false,
        Op::Ne => true,
        _ => return Err("outcome(..) is compared with == or !=".into()),
    };
    let outcome = Outcome::parse(word).ok_or_else(|| {
        format!(
            "'{word}' is not an outcome; outcomes: {}",
            Outcome::NAMES.join(", ")
        )
    })?;
    Ok(Cond::Outcome {
        event,
        outcome,
        negated,
    })
}

fn unknown_signal(word: &str) -> String {
    let names: Vec<&str> = Signal::NAMES
        .iter()
        .map(|n| n.split('(').next().unwrap_or(n))
        .collect();
    let best = names
        .iter()
        .map(|n| (strsim::jaro_winkler(word, n), *n))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .filter(|(s, _)| *s > 0.8);
    let mut m = format!("unknown signal '{word}'");
    if let Some((_, n)) = best {
        m.push_str(&format!(" (did you mean '{n}'?)"));
    }
    m.push_str(&format!("; signals: {}", Signal::NAMES.join(", ")));
    m
}

fn example_value(dim: Dim) -> f64 {
    match dim {
        Dim::Duration => 20e6,
        Dim::Bytes => 300.0 * 1048576.0,
        Dim::Fraction => 0.8,
        _ => 0.0,
    }
}

/// Builds a condition from its YAML/JSON form (see the module docs); errors
/// carry the byte offset inside a string condition when there is one.
pub fn from_value(v: &serde_json::Value) -> Result<Cond, ParseError> {
    use serde_json::Value;
    let plain = |message: String| ParseError { offset: 0, message };
    match v {
        Value::String(s) => parse(s),
        Value::Bool(_) | Value::Number(_) | Value::Null | Value::Array(_) => Err(plain(
            "a condition is a string such as 'crashes >= 1', or {event: ID, outcome: crash}, \
             {all: [..]}, {any: [..]}, {not: ..}"
                .into(),
        )),
        Value::Object(m) => {
            if m.len() == 1 {
                let (k, val) = m.iter().next().expect("one entry");
                match (k.as_str(), val) {
                    ("all" | "any", Value::Array(items)) => {
                        let cs = items
                            .iter()
                            .map(from_value)
                            .collect::<Result<Vec<_>, _>>()?;
                        if cs.is_empty() {
                            return Err(plain(format!("{k}: [] lists no condition")));
                        }
                        return Ok(if k == "all" {
                            Cond::All(cs)
                        } else {
                            Cond::Any(cs)
                        });
                    }
                    ("not", c) => return Ok(Cond::Not(Box::new(from_value(c)?))),
                    // YAML's `{ crashes >= 1 }`: a one-key map with no value.
                    (text, Value::Null) => return parse(text),
                    _ => {}
                }
            }
            let event = m.get("event").and_then(Value::as_str);
            let outcome = m.get("outcome").and_then(Value::as_str).unwrap_or("ended");
            match event {
                Some(e) if m.keys().all(|k| k == "event" || k == "outcome") => {
                    outcome_cond(e.to_string(), Op::Eq, outcome).map_err(plain)
                }
                _ => Err(plain(format!(
                    "unknown condition form with keys [{}]; use {{event: ID, outcome: crash}}, \
                     {{all: [..]}}, {{any: [..]}}, {{not: ..}} or a string",
                    m.keys().cloned().collect::<Vec<_>>().join(", ")
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Fake {
        values: HashMap<String, f64>,
        phases: HashMap<String, EventPhase>,
    }

    impl Signals for Fake {
        fn value(&self, s: &Signal) -> Option<f64> {
            self.values.get(&s.to_string()).copied()
        }
        fn phase(&self, e: &str) -> EventPhase {
            self.phases.get(e).copied().unwrap_or(EventPhase::Pending)
        }
    }

    fn fake(values: &[(&str, f64)], phases: &[(&str, EventPhase)]) -> Fake {
        Fake {
            values: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            phases: phases.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    /// (condition, signal values, event phases, expected three-valued result)
    #[test]
    fn evaluates_data_driven_cases() {
        use EventPhase::*;
        let crash = Ended(Outcome::Crash);
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, f64)],
            &'a [(&'a str, EventPhase)],
            Option<bool>,
        );
        let cases: &[Case] = &[
            ("crashes >= 1", &[("crashes", 1.0)], &[], Some(true)),
            ("crashes >= 1", &[("crashes", 0.0)], &[], Some(false)),
            ("crashes >= 1", &[], &[], None),
            ("1 <= crashes", &[("crashes", 2.0)], &[], Some(true)),
            (
                "rss > 300MiB",
                &[("rss", 400.0 * 1048576.0)],
                &[],
                Some(true),
            ),
            (
                "rss > 300 MiB",
                &[("rss", 200.0 * 1048576.0)],
                &[],
                Some(false),
            ),
            (
                "p99(my::handle) > 20ms",
                &[("p99(my::handle)", 25e6)],
                &[],
                Some(true),
            ),
            ("p99.9(#3) < 1s", &[("p999(#3)", 2e9)], &[], Some(false)),
            ("cpu_load > 70%", &[("cpu_load", 0.75)], &[], Some(true)),
            (
                "memory_pressure > 0.8",
                &[("memory_pressure", 0.5)],
                &[],
                Some(false),
            ),
            (
                "count(f*) >= 100 and threads < 8",
                &[("count(f*)", 100.0), ("threads", 3.0)],
                &[],
                Some(true),
            ),
            // Kleene: false and unknown is false; true or unknown is true.
            (
                "crashes > 0 and rss > 1MiB",
                &[("crashes", 0.0)],
                &[],
                Some(false),
            ),
            (
                "crashes > 0 or rss > 1MiB",
                &[("crashes", 1.0)],
                &[],
                Some(true),
            ),
            ("crashes > 0 or rss > 1MiB", &[("crashes", 0.0)], &[], None),
            ("not crashes > 0", &[("crashes", 0.0)], &[], Some(true)),
            (
                "not (crashes > 0 or exited)",
                &[("crashes", 0.0), ("exited", 1.0)],
                &[],
                Some(false),
            ),
            ("exited", &[("exited", 1.0)], &[], Some(true)),
            (
                "outcome(spike-1) == crash",
                &[],
                &[("spike-1", crash)],
                Some(true),
            ),
            (
                "outcome(spike-1) == crash",
                &[],
                &[("spike-1", Active)],
                Some(false),
            ),
            (
                "outcome(spike-1) == started",
                &[],
                &[("spike-1", Active)],
                Some(true),
            ),
            (
                "outcome(spike-1) == ended",
                &[],
                &[("spike-1", crash)],
                Some(true),
            ),
            (
                "outcome(spike-1) != survived",
                &[],
                &[("spike-1", Pending)],
                Some(true),
            ),
            (
                "elapsed >= 10s && fuse_trips(shed) > 0",
                &[("elapsed", 11e9), ("fuse_trips(shed)", 1.0)],
                &[],
                Some(true),
            ),
        ];
        for (text, values, phases, want) in cases {
            let c = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                c.eval(&fake(values, phases)),
                *want,
                "{text} parsed as {c:?}"
            );
            // The printed form parses back to the same condition.
            let again = parse(&c.to_string()).unwrap_or_else(|e| panic!("{c}: {e}"));
            assert_eq!(again, c, "{text} printed as {c}");
        }
    }

    #[test]
    fn errors_point_at_the_mistake() {
        let cases: &[(&str, usize, &str)] = &[
            ("p99(handle) > 20", 14, "no unit; write a duration"),
            ("rss > 2s", 6, "is a duration, not a size"),
            ("crashs >= 1", 0, "did you mean 'crashes'"),
            ("crashes >= 1 rss > 1", 13, "join conditions with 'and'"),
            ("(crashes > 1", 12, "missing ')'"),
            ("rss", 3, "rss needs a comparison"),
            ("p99 > 20ms", 3, "p99 needs the site it is about"),
            ("outcome(a) == exploded", 14, "not an outcome"),
            ("outcome(a) > crash", 13, "compared with == or !="),
            ("crashes >=", 10, "ends too early"),
            ("rss > 3 parsecs", 6, "unknown unit"),
            ("rss > threads", 6, "not with another signal"),
        ];
        for (text, offset, needle) in cases {
            let e = parse(text).expect_err(text);
            assert!(e.message.contains(needle), "{text}: {e}");
            assert_eq!(e.offset, *offset, "{text}: {e}");
        }
    }

    #[test]
    fn yaml_forms() {
        let v = |s: &str| -> serde_json::Value { serde_norway::from_str(s).unwrap() };
        assert_eq!(
            from_value(&v("{ crashes >= 1 }")).unwrap(),
            parse("crashes >= 1").unwrap()
        );
        assert_eq!(
            from_value(&v("{event: spike-1, outcome: crash}")).unwrap(),
            parse("outcome(spike-1) == crash").unwrap()
        );
        assert_eq!(
            from_value(&v("{event: spike-1}")).unwrap(),
            parse("outcome(spike-1) == ended").unwrap()
        );
        assert_eq!(
            from_value(&v("{all: ['crashes > 0', {not: 'rss > 1MiB'}]}")).unwrap(),
            parse("crashes > 0 and not rss > 1MiB").unwrap()
        );
        assert!(
            from_value(&v("{when: 3}"))
                .unwrap_err()
                .message
                .contains("unknown condition form")
        );
        assert!(from_value(&v("[]")).is_err());
        assert!(from_value(&v("{any: []}")).is_err());
    }

    #[test]
    fn lists_what_it_reads() {
        let c = parse("p99(a) > 1ms and (outcome(x) == crash or rss > 1MiB)").unwrap();
        assert_eq!(c.events(), vec!["x"]);
        let names: Vec<String> = c.signals().iter().map(|s| s.to_string()).collect();
        assert_eq!(names, vec!["p99(a)", "rss"]);
    }
}
