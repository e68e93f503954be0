//! The dwell rule: which functions become timed regions (a clock read at entry and
//! exit, a duration histogram) and which are only counted. Pure.
//!
//! Timing costs two runtime calls and two clock reads per activation, so it only
//! pays for functions that do enough work per call. The rule decides from static
//! size and structure (a loop means unbounded work per call); the user overrides it
//! per function with glob patterns on the demangled name, which win over the rule.

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

/// How functions are chosen as timed regions. Serialised into the link driver's
/// environment and into the manifest, so a manifest says how it was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DwellRule {
    /// A function with a loop whose body calls a function, and at least this many
    /// IR instructions, is timed.
    pub min_insts_with_loop: usize,
    /// A function with at least this many IR instructions is timed.
    pub min_insts: usize,
    /// Globs on demangled names: always timed.
    pub time: Vec<String>,
    /// Globs on demangled names: never timed (still counted). Wins over `time`.
    pub no_time: Vec<String>,
    /// Exact demangled names never timed because an earlier run measured their
    /// regions as too short to pay for a clock read (`--dwell-from`). `time`
    /// patterns win over this list: the user's word beats the measurement.
    pub demoted: Vec<String>,
}

impl Default for DwellRule {
    fn default() -> Self {
        DwellRule {
            min_insts_with_loop: 40,
            min_insts: 400,
            time: Vec::new(),
            no_time: Vec::new(),
            demoted: Vec::new(),
        }
    }
}

/// What the rule looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct FunctionFacts {
    pub insts: usize,
    pub has_loop: bool,
    /// Some loop's body calls a function (not an intrinsic): a loop that drives
    /// other code, rather than a tight scan that is usually short per call.
    pub loop_calls: bool,
}

/// Why a function is timed or not; written into the manifest per entry site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Matched a `time` pattern.
    Forced,
    /// Matched a `no_time` pattern.
    Excluded,
    /// Measured too short by an earlier run (`demoted`).
    Profiled,
    /// Has a loop that calls functions, and enough instructions.
    Loop,
    /// Large enough on its own.
    Size,
    /// Too small to be worth a clock read.
    Small,
}

impl Reason {
    /// The name the manifest uses (the serde name).
    pub fn name(self) -> &'static str {
        match self {
            Reason::Forced => "forced",
            Reason::Excluded => "excluded",
            Reason::Profiled => "profiled",
            Reason::Loop => "loop",
            Reason::Size => "size",
            Reason::Small => "small",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid dwell pattern `{pattern}`: {source}")]
pub struct PatternError {
    pattern: String,
    source: globset::Error,
}

/// A rule with its patterns compiled.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    rule: DwellRule,
    time: GlobSet,
    no_time: GlobSet,
    demoted: std::collections::HashSet<String>,
}

impl DwellRule {
    pub fn compile(&self) -> Result<CompiledRule, PatternError> {
        Ok(CompiledRule {
            rule: self.clone(),
            time: globs(&self.time)?,
            no_time: globs(&self.no_time)?,
            demoted: self.demoted.iter().cloned().collect(),
        })
    }
}

fn globs(patterns: &[String]) -> Result<GlobSet, PatternError> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g = Glob::new(p).map_err(|source| PatternError {
            pattern: p.clone(),
            source,
        })?;
        b.add(g);
    }
    b.build().map_err(|source| PatternError {
        pattern: patterns.join(","),
        source,
    })
}

impl CompiledRule {
    /// Decides for one function, by its demangled name and its facts.
    pub fn decide(&self, name: &str, facts: FunctionFacts) -> (bool, Reason) {
        if self.no_time.is_match(name) {
            return (false, Reason::Excluded);
        }
        if self.time.is_match(name) {
            return (true, Reason::Forced);
        }
        if self.demoted.contains(name) {
            return (false, Reason::Profiled);
        }
        if facts.loop_calls && facts.insts >= self.rule.min_insts_with_loop {
            return (true, Reason::Loop);
        }
        if facts.insts >= self.rule.min_insts {
            return (true, Reason::Size);
        }
        (false, Reason::Small)
    }

    pub fn rule(&self) -> &DwellRule {
        &self.rule
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_are_the_serde_names() {
        for r in [
            Reason::Forced,
            Reason::Excluded,
            Reason::Profiled,
            Reason::Loop,
            Reason::Size,
            Reason::Small,
        ] {
            assert_eq!(
                serde_json::to_value(r).expect("serialises"),
                serde_json::Value::String(r.name().into())
            );
        }
    }

    #[test]
    fn rule_and_overrides() {
        let rule = DwellRule {
            time: vec!["app::tiny*".into()],
            no_time: vec!["app::hot_loop".into(), "app::tiny_but_not".into()],
            ..DwellRule::default()
        }
        .compile()
        .unwrap();
        let small = FunctionFacts {
            insts: 5,
            has_loop: false,
            loop_calls: false,
        };
        let looping = FunctionFacts {
            insts: 60,
            has_loop: true,
            loop_calls: true,
        };
        let big = FunctionFacts {
            insts: 1000,
            has_loop: false,
            loop_calls: false,
        };
        assert_eq!(rule.decide("app::f", small), (false, Reason::Small));
        assert_eq!(rule.decide("app::f", looping), (true, Reason::Loop));
        assert_eq!(rule.decide("app::f", big), (true, Reason::Size));
        // A tight loop that calls nothing is usually short per call: not timed.
        let scan = FunctionFacts {
            insts: 60,
            has_loop: true,
            loop_calls: false,
        };
        assert_eq!(rule.decide("app::f", scan), (false, Reason::Small));
        assert_eq!(rule.decide("app::tiny", small), (true, Reason::Forced));
        assert_eq!(
            rule.decide("app::hot_loop", looping),
            (false, Reason::Excluded)
        );
        assert_eq!(
            rule.decide("app::tiny_but_not", small),
            (false, Reason::Excluded)
        );
        assert_eq!(
            rule.decide(
                "app::f",
                FunctionFacts {
                    insts: 10,
                    has_loop: true,
                    loop_calls: true
                }
            ),
            (false, Reason::Small)
        );
    }

    #[test]
    fn measured_demotions_yield_to_forced_timing() {
        let rule = DwellRule {
            time: vec!["app::keep".into()],
            demoted: vec!["app::short".into(), "app::keep".into()],
            ..DwellRule::default()
        }
        .compile()
        .unwrap();
        let looping = FunctionFacts {
            insts: 60,
            has_loop: true,
            loop_calls: true,
        };
        assert_eq!(
            rule.decide("app::short", looping),
            (false, Reason::Profiled)
        );
        assert_eq!(rule.decide("app::keep", looping), (true, Reason::Forced));
        assert_eq!(rule.decide("app::other", looping), (true, Reason::Loop));
    }

    #[test]
    fn bad_pattern_is_an_error() {
        let err = DwellRule {
            time: vec!["a[".into()],
            ..DwellRule::default()
        }
        .compile();
        assert!(err.unwrap_err().to_string().contains("a["));
    }
}
