//! Dwell budgets (`cargo panic run --budget 'PATTERN=50ms:kill'`): parsing and
//! resolving them against a manifest. Pure.
//!
//! A budget bounds how long a thread may stay inside one region (a timed
//! function, from its entry to its exit, children included). Over budget, the
//! kernel side acts on that thread only: `record` (an event), `signal=SIG` or
//! `kill`.

use std::fmt;

use globset::Glob;
use panic_runtime::SiteKind;

use crate::manifest::Manifest;

/// What the kernel does to a thread over budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Record,
    Signal(i32),
    Kill,
}

impl Action {
    /// The signal sent, if any (SIGKILL for `kill`).
    pub fn signal(self) -> Option<i32> {
        match self {
            Action::Record => None,
            Action::Signal(s) => Some(s),
            Action::Kill => Some(libc::SIGKILL),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Record => f.write_str("record"),
            Action::Kill => f.write_str("kill"),
            Action::Signal(s) => match signal_name(*s) {
                Some(n) => write!(f, "signal={n}"),
                None => write!(f, "signal={s}"),
            },
        }
    }
}

/// One `--budget` as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// A glob over demangled function names, or `#<site index>`.
    pub pattern: String,
    pub budget_ns: u64,
    pub action: Action,
}

const EXAMPLE: &str = "--budget 'my_crate::handle_request=50ms:kill'";

/// A bad `--budget`: the whole argument, the bad part and what was expected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad budget '{spec}': {problem}; example: {EXAMPLE}")]
pub struct BudgetError {
    spec: String,
    problem: String,
}

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ABRT", libc::SIGABRT),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STOP", libc::SIGSTOP),
    ("CONT", libc::SIGCONT),
    ("XCPU", libc::SIGXCPU),
    ("PROF", libc::SIGPROF),
];

fn signal_name(sig: i32) -> Option<String> {
    SIGNALS
        .iter()
        .find(|(_, n)| *n == sig)
        .map(|(name, _)| format!("SIG{name}"))
}

fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// `50ms`, `1.5s`, `200us`, `750µs`, `100000ns`.
pub fn parse_duration(s: &str) -> Option<u64> {
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let scale = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    };
    let v: f64 = num.parse().ok()?;
    let ns = (v * scale).round();
    (ns >= 1.0 && ns < u64::MAX as f64).then_some(ns as u64)
}

impl Budget {
    /// Parses `PATTERN=DURATION[:ACTION]`.
    pub fn parse(spec: &str) -> Result<Budget, BudgetError> {
        let err = |problem: String| BudgetError {
            spec: spec.to_string(),
            problem,
        };
        // The action comes off the end first (it may hold '=': `signal=USR1`),
        // then the duration after the last '=' (patterns hold ':' in paths).
        let (head, action) = match spec.rfind(":signal=") {
            Some(i) => (&spec[..i], Some(&spec[i + 1..])),
            None => match spec.rsplit_once(':') {
                Some((h, a)) if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphabetic()) => {
                    (h, Some(a))
                }
                _ => (spec, None),
            },
        };
        let (pattern, duration) = head
            .rsplit_once('=')
            .ok_or_else(|| err("no '=': write PATTERN=DURATION[:ACTION]".into()))?;
        if pattern.is_empty() {
            return Err(err("the pattern before '=' is empty".into()));
        }
        let budget_ns = parse_duration(duration).ok_or_else(|| {
            err(format!(
                "'{duration}' is not a duration (a positive number with ns, us, ms or s, e.g. 50ms)"
            ))
        })?;
        let action = match action {
            None | Some("record") => Action::Record,
            Some("kill") => Action::Kill,
            Some(a) => match a.strip_prefix("signal=") {
                Some(sig) => Action::Signal(parse_signal(sig).ok_or_else(|| {
                    err(format!(
                        "'{sig}' is not a signal (a name such as SIGUSR1 or USR1, or a number 1..64)"
                    ))
                })?),
                None => {
                    return Err(err(format!(
                        "'{a}' is not an action (record, kill or signal=SIGNAME)"
                    )));
                }
            },
        };
        if !pattern.starts_with('#') {
            Glob::new(pattern).map_err(|e| err(format!("'{pattern}' is not a valid glob: {e}")))?;
        }
        Ok(Budget {
            pattern: pattern.to_string(),
            budget_ns,
            action,
        })
    }
}

/// A budget placed on one site (a timed region's entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteBudget {
    pub site: u32,
    pub budget_ns: u64,
    pub action: Action,
}

/// Places the budgets on the manifest's timed entry sites. A pattern that
/// matches nothing, or only functions that are not timed, is an error that
/// names the closest timed functions; two budgets on one site are an error.
pub fn resolve(budgets: &[Budget], manifest: &Manifest) -> anyhow::Result<Vec<SiteBudget>> {
    let mut out: Vec<(SiteBudget, &str)> = Vec::new();
    for b in budgets {
        let hits: Vec<u32> = if let Some(idx) = b.pattern.strip_prefix('#') {
            let i: u32 = idx.parse().map_err(|_| {
                anyhow::anyhow!("budget '{}': '{idx}' is not a site index", b.pattern)
            })?;
            match manifest.sites.get(i as usize) {
                Some(s) if s.kind == SiteKind::Entry && s.timed => vec![i],
                Some(s) => anyhow::bail!(
                    "budget '{}': site {i} is a {} site of {}, not the entry of a timed region",
                    b.pattern,
                    s.kind.name(),
                    s.function
                ),
                None => anyhow::bail!(
                    "budget '{}': there is no site {i} (the program has {})",
                    b.pattern,
                    manifest.sites.len()
                ),
            }
        } else {
            let glob = Glob::new(&b.pattern)?.compile_matcher();
            let entries = manifest
                .sites
                .iter()
                .enumerate()
                .filter(|(_, s)| s.kind == SiteKind::Entry && glob.is_match(&s.function));
            let (timed, untimed): (Vec<_>, Vec<_>) = entries.partition(|(_, s)| s.timed);
            if timed.is_empty() {
                if let Some((_, s)) = untimed.first() {
                    anyhow::bail!(
                        "budget '{}' matches {} but it is not timed, so it has no region to bound; \
                         rebuild with --time '{}'",
                        b.pattern,
                        s.function,
                        s.function
                    );
                }
                anyhow::bail!(
                    "budget '{}' matches no function of the program{}",
                    b.pattern,
                    near_matches(&b.pattern, manifest)
                );
            }
            timed.into_iter().map(|(i, _)| i as u32).collect()
        };
        for site in hits {
            if let Some((_, other)) = out.iter().find(|(sb, _)| sb.site == site) {
                anyhow::bail!(
                    "site {site} ({}) has two budgets, '{other}' and '{}': give it one",
                    manifest.sites[site as usize].function,
                    b.pattern
                );
            }
            out.push((
                SiteBudget {
                    site,
                    budget_ns: b.budget_ns,
                    action: b.action,
                },
                &b.pattern,
            ));
        }
    }
    Ok(out.into_iter().map(|(sb, _)| sb).collect())
}

/// "; closest timed functions: a, b, c" (by edit distance), or "".
fn near_matches(pattern: &str, manifest: &Manifest) -> String {
    let literal: String = pattern.chars().filter(|c| !"*?[]{}".contains(*c)).collect();
    let mut names: Vec<&str> = manifest
        .sites
        .iter()
        .filter(|s| s.kind == SiteKind::Entry && s.timed)
        .map(|s| s.function.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut scored: Vec<(usize, &str)> = names
        .into_iter()
        .map(|n| (strsim::levenshtein(&literal, n), n))
        .collect();
    scored.sort();
    let best: Vec<&str> = scored.iter().take(5).map(|(_, n)| *n).collect();
    if best.is_empty() {
        "; the program has no timed function (build with --time PATTERN)".into()
    } else {
        format!("; closest timed functions: {}", best.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse() {
        let b = Budget::parse("my_crate::handle_request=50ms:kill").unwrap();
        assert_eq!(b.pattern, "my_crate::handle_request");
        assert_eq!(b.budget_ns, 50_000_000);
        assert_eq!(b.action, Action::Kill);
        assert_eq!(Budget::parse("f=1.5s").unwrap().action, Action::Record);
        assert_eq!(Budget::parse("f=1.5s").unwrap().budget_ns, 1_500_000_000);
        assert_eq!(
            Budget::parse("f*=200us:signal=SIGUSR1").unwrap().action,
            Action::Signal(libc::SIGUSR1)
        );
        assert_eq!(
            Budget::parse("f=2ms:signal=USR2").unwrap().action,
            Action::Signal(libc::SIGUSR2)
        );
        assert_eq!(
            Budget::parse("#12=2ms:signal=10").unwrap().action,
            Action::Signal(10)
        );
        assert_eq!(Action::Signal(libc::SIGUSR1).to_string(), "signal=SIGUSR1");
    }

    #[test]
    fn bad_budgets_say_what_is_wrong_and_show_an_example() {
        for (spec, needle) in [
            ("handle_request", "no '='"),
            ("=50ms", "pattern before '=' is empty"),
            ("f=50", "'50' is not a duration"),
            ("f=50min", "'50min' is not a duration"),
            ("f=0ms", "'0ms' is not a duration"),
            ("f=50ms:explode", "'explode' is not an action"),
            ("f=50ms:signal=SIGFOO", "'SIGFOO' is not a signal"),
            ("f[=50ms", "not a valid glob"),
        ] {
            let e = Budget::parse(spec).unwrap_err().to_string();
            assert!(e.contains(needle), "{spec}: {e}");
            assert!(e.contains(EXAMPLE), "{spec}: {e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("750µs"), Some(750_000));
        assert_eq!(parse_duration("100000ns"), Some(100_000));
        assert_eq!(parse_duration("ms"), None);
        assert_eq!(parse_duration("1.2.3s"), None);
    }
}
