//! Crash signatures: what class of failure a run ended in, how sure, and why.
//!
//! Evidence (`evidence`, collected by the IO shell `collect`) becomes facts
//! (`facts`), the Datalog rules (`rules`, ascent) derive conclusions, and
//! [`classify`] turns them into [`Signature`]s: the class, a confidence in
//! [0, 1], the derivation as a tree (the rules that fired and the facts they
//! used), the sites involved with file:line, and a stable hash that groups
//! runs of the same bug. `stderr` parses what the program printed. Everything
//! but `collect` is pure.

pub mod collect;
pub mod evidence;
pub mod facts;
pub mod rules;
pub mod stderr;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use evidence::Evidence;
use facts::{Fact, SiteInfo};
use rules::{Program, Why};

/// One line of a derivation and what it rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The rule that concluded this line, for derived lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Node>,
}

/// A site a signature names, and its part in the failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRef {
    pub index: u32,
    pub role: String,
    pub function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub line: u32,
}

/// A source frame from a report (sanitizer stacks, a panic's location).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameRef {
    /// `access`, `allocated`, `freed`, `panic`, `backtrace`.
    pub role: String,
    pub function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

/// Another class the evidence supports, less strongly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alternative {
    pub class: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subclass: Option<String>,
    pub confidence: f64,
    pub rule: String,
}

/// How often replays of the failing configuration ended in the same class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replay {
    /// Runs in all, the first included.
    pub runs: u32,
    /// Runs whose signature had the same class and hash.
    pub same: u32,
}

/// The verdict on one failing run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    pub class: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subclass: Option<String>,
    /// In [0, 1]: the deciding rule's confidence, scaled by the replays'
    /// agreement when there were replays.
    pub confidence: f64,
    /// The rule that decided the class.
    pub rule: String,
    /// The stable hash of the class and the code involved (see [`hash`]).
    pub hash: String,
    pub derivation: Node,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<SiteRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<FrameRef>,
    /// How to confirm the class when the run could not (a sanitizer build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<Alternative>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<Replay>,
}

/// Classes that only say "it failed"; listed as alternatives only when
/// nothing better explains the run.
const FALLBACK_CLASSES: &[&str] = &["crash", "error_exit"];

/// One rule's conclusion (its firings merged).
struct Verdict {
    rule: &'static rules::Rule,
    subclass: &'static str,
    support: Vec<Why>,
}

/// Runs the rules over the evidence. Returns `None` when nothing failed (no
/// rule fired). `sites` are the run's sites in counter order.
pub fn classify(e: &Evidence, sites: &[SiteInfo]) -> Option<Signature> {
    let facts = facts::facts_of(e, sites);
    let mut prog = Program::default();
    facts::load(&facts, &mut prog);
    prog.run();

    // Merge the firings of each (rule, subclass).
    let mut merged: BTreeMap<(&'static str, &'static str), Vec<Why>> = BTreeMap::new();
    for (rule, sub, support) in &prog.fired {
        let entry = merged.entry((*rule, *sub)).or_default();
        for w in support {
            if !entry.contains(w) {
                entry.push(w.clone());
            }
        }
    }
    let mut verdicts: Vec<Verdict> = merged
        .into_iter()
        .map(|((name, subclass), mut support)| {
            support.sort();
            Verdict {
                rule: rules::rule_named(name).expect("every fired rule is in the catalogue"),
                subclass,
                support,
            }
        })
        .collect();
    // Strongest first; ties by catalogue order, so the result is deterministic.
    let order = |v: &Verdict| rules::RULES.iter().position(|r| r.name == v.rule.name);
    verdicts.sort_by(|a, b| {
        b.rule
            .confidence
            .total_cmp(&a.rule.confidence)
            .then(order(a).cmp(&order(b)))
    });
    let top = verdicts.first()?;

    let mut seen_classes = vec![top.rule.class];
    let mut alternatives = Vec::new();
    for v in &verdicts[1..] {
        let fallback =
            FALLBACK_CLASSES.contains(&v.rule.class) && !FALLBACK_CLASSES.contains(&top.rule.class);
        if seen_classes.contains(&v.rule.class) || fallback {
            continue;
        }
        seen_classes.push(v.rule.class);
        alternatives.push(Alternative {
            class: v.rule.class.to_string(),
            subclass: non_empty(v.subclass),
            confidence: v.rule.confidence,
            rule: v.rule.name.to_string(),
        });
    }

    let mut used = Vec::new();
    for w in &top.support {
        collect_facts(w, &mut used);
    }
    let mut sites_named = site_refs(&facts, &used, sites);
    // A panic call inlined from the standard library (`Option::unwrap`) has
    // the library's line; the panic message has the caller's.
    if let Some(p) = &e.stderr.rust_panic {
        for r in sites_named.iter_mut().filter(|r| r.role == "panic call") {
            if r.file.as_deref().is_some_and(|f| f.starts_with("/rustc/")) {
                r.file = Some(p.file.clone());
                r.line = p.line;
            }
        }
    }
    let frames = frame_refs(e);
    let class = top.rule.class.to_string();
    let subclass = non_empty(top.subclass);
    let hash = hash(&class, subclass.as_deref(), &sites_named, &frames);
    Some(Signature {
        derivation: Node {
            rule: Some(top.rule.name.to_string()),
            text: top.rule.says.to_string(),
            children: top.support.iter().map(|w| node(w, &facts, sites)).collect(),
        },
        confirm: top
            .rule
            .confirm_with
            .map(|s| confirm_command(s, &sites_named)),
        class,
        subclass,
        confidence: top.rule.confidence,
        rule: top.rule.name.to_string(),
        hash,
        sites: sites_named,
        frames,
        alternatives,
        replay: None,
    })
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn collect_facts(w: &Why, out: &mut Vec<u32>) {
    match w {
        Why::Fact(id) => {
            if !out.contains(id) {
                out.push(*id);
            }
        }
        Why::Derived(_, children) => children.iter().for_each(|c| collect_facts(c, out)),
    }
}

fn node(w: &Why, facts: &[Fact], sites: &[SiteInfo]) -> Node {
    match w {
        Why::Fact(id) => Node {
            rule: None,
            text: facts[*id as usize].text(sites),
            children: Vec::new(),
        },
        Why::Derived(rule, children) => {
            let kids: Vec<Node> = children.iter().map(|c| node(c, facts, sites)).collect();
            Node {
                rule: Some((*rule).to_string()),
                text: derived_text(rule, children, facts),
                children: kids,
            }
        }
    }
}

/// The sentence a derived fact says.
fn derived_text(rule: &str, children: &[Why], facts: &[Fact]) -> String {
    let fact = |i: usize| match children.get(i) {
        Some(Why::Fact(id)) => facts.get(*id as usize),
        _ => None,
    };
    match (rule, fact(0), fact(1)) {
        (
            "waits-for",
            Some(Fact::LockWait { tid, .. }),
            Some(Fact::LockOwner { tid: owner, .. }),
        ) => {
            format!("thread {tid} waits for thread {owner}")
        }
        _ => rule.to_string(),
    }
}

/// The role a fact gives the sites it names.
fn role(f: &Fact) -> &'static str {
    match f {
        Fact::PanicCall { .. } => "panic call",
        Fact::Recursion { .. } => "recursive function",
        Fact::LockWait { .. } => "lock wait",
        Fact::AllocGrowing { .. } => "growing allocation",
        Fact::BudgetKill { .. } => "over budget",
        Fact::Spinning { .. } => "spinning",
        Fact::FaultingRegion { .. } => "crashed in",
        _ => "involved",
    }
}

fn site_refs(facts: &[Fact], used: &[u32], sites: &[SiteInfo]) -> Vec<SiteRef> {
    let mut out: Vec<SiteRef> = Vec::new();
    for &id in used {
        let f = &facts[id as usize];
        for s in f.sites() {
            if out.iter().any(|r| r.index == s) {
                continue;
            }
            let Some(info) = sites.get(s as usize) else {
                continue;
            };
            out.push(SiteRef {
                index: s,
                role: role(f).to_string(),
                function: info.function.clone(),
                file: info.file.clone(),
                line: info.line,
            });
        }
    }
    out
}

/// Frames that belong to the machinery of reporting rather than to the
/// program: sanitizer interceptors, the allocator, the C library's start,
/// Rust's panic and backtrace plumbing.
fn is_machinery(function: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "__interceptor_",
        "___interceptor_",
        "__asan",
        "__sanitizer",
        "__ubsan",
        "__tsan",
        "__lsan",
        "__libc_",
        "_start",
        "malloc",
        "calloc",
        "realloc",
        "free",
        "operator new",
        "operator delete",
        "std::panicking",
        "std::rt::",
        "std::sys::",
        "std::backtrace",
        "core::panicking",
        "core::option::",
        "core::result::",
        "rust_begin_unwind",
        "__rust",
        "__panic_",
        "<unknown>",
    ];
    PREFIXES.iter().any(|p| function.starts_with(p))
}

/// How many frames of each stack a signature keeps.
const FRAMES_PER_STACK: usize = 3;

fn frame_refs(e: &Evidence) -> Vec<FrameRef> {
    let mut out = Vec::new();
    let push = |out: &mut Vec<FrameRef>, role: &str, frames: &[stderr::Frame]| {
        for fr in frames
            .iter()
            .filter(|f| !is_machinery(&f.function))
            .take(FRAMES_PER_STACK)
        {
            out.push(FrameRef {
                role: role.to_string(),
                function: fr.function.clone(),
                file: fr.file.clone(),
                line: fr.line,
            });
        }
    };
    if let Some(r) = &e.stderr.sanitizer {
        push(&mut out, "access", &r.stack);
        push(&mut out, "freed", &r.freed);
        push(&mut out, "allocated", &r.allocated);
        if let Some(loc) = &r.location {
            push(&mut out, "location", std::slice::from_ref(loc));
        }
    }
    if let Some(p) = &e.stderr.rust_panic {
        out.push(FrameRef {
            role: "panic".to_string(),
            function: String::new(),
            file: Some(p.file.clone()),
            line: Some(p.line),
        });
        push(&mut out, "backtrace", &p.backtrace);
    }
    out
}

/// The signature hash: blake3 over the class, the subclass and the code
/// involved, normalised so that what varies between runs of one bug (thread
/// ids, addresses, times, the stressors that provoked it) is left out and
/// what tells two bugs apart (the functions and source lines) is kept:
/// the involved sites' functions and lines, the report frames' functions and
/// lines, sorted. 16 hex digits.
pub fn hash(class: &str, subclass: Option<&str>, sites: &[SiteRef], frames: &[FrameRef]) -> String {
    let mut parts: Vec<String> = sites
        .iter()
        .map(|s| format!("site:{}:{}", s.function, s.line))
        .chain(frames.iter().filter(|f| f.role != "backtrace").map(|f| {
            format!(
                "frame:{}:{}:{}:{}",
                f.role,
                f.function,
                f.file.as_deref().map(basename).unwrap_or(""),
                f.line.unwrap_or(0)
            )
        }))
        .collect();
    parts.sort();
    parts.dedup();
    let mut h = blake3::Hasher::new();
    h.update(class.as_bytes());
    h.update(b"\0");
    h.update(subclass.unwrap_or("").as_bytes());
    for p in &parts {
        h.update(b"\0");
        h.update(p.as_bytes());
    }
    h.finalize().to_hex()[..16].to_string()
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// How to confirm a class that wants `sanitizer`.
fn confirm_command(sanitizer: &str, sites: &[SiteRef]) -> String {
    let rust = sites
        .iter()
        .any(|s| s.file.as_deref().is_some_and(|f| f.ends_with(".rs")));
    if rust {
        format!(
            "confirm with {sanitizer} sanitizer: Rust needs a nightly toolchain for it \
             (RUSTFLAGS=-Zsanitizer={sanitizer}); C and C++ code: \
             `cargo panic cc --sanitize {sanitizer} -- <your build command>`, then run again"
        )
    } else {
        format!(
            "confirm with the {sanitizer} sanitizer: rebuild with \
             `cargo panic cc --sanitize {sanitizer} -- <your build command>` and run again"
        )
    }
}

impl Signature {
    /// Takes replays into account: `same` of `runs` runs (this one included)
    /// ended with this signature's hash; the confidence is scaled by that
    /// share.
    pub fn with_replay(mut self, runs: u32, same: u32) -> Signature {
        let share = if runs == 0 {
            1.0
        } else {
            f64::from(same) / f64::from(runs)
        };
        self.confidence *= share;
        self.replay = Some(Replay { runs, same });
        self
    }

    /// One line: the class, where, the confidence and the hash.
    pub fn headline(&self) -> String {
        let class = match &self.subclass {
            Some(sub) => format!("{} ({sub})", self.class),
            None => self.class.clone(),
        };
        let at = self
            .sites
            .first()
            .map(|s| match &s.file {
                Some(f) => format!(" at {} {f}:{}", s.function, s.line),
                None => format!(" at {}", s.function),
            })
            .unwrap_or_default();
        format!(
            "{class}{at}, confidence {:.2}, signature {}",
            self.confidence, self.hash
        )
    }

    /// The human-readable explanation (`cargo panic explain`).
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let class = match &self.subclass {
            Some(sub) => format!("{} ({sub})", self.class),
            None => self.class.clone(),
        };
        let _ = writeln!(
            s,
            "{class}: confidence {:.2}, signature {}",
            self.confidence, self.hash
        );
        if let Some(r) = self.replay {
            let _ = writeln!(
                s,
                "replayed: {} of {} runs ended the same way",
                r.same, r.runs
            );
        }
        s.push_str("\nwhy:\n");
        render_node(&self.derivation, 1, &mut s);
        if !self.sites.is_empty() {
            s.push_str("\nsites:\n");
            for r in &self.sites {
                let at = match &r.file {
                    Some(f) => format!("{f}:{}", r.line),
                    None => "-".to_string(),
                };
                let _ = writeln!(s, "  #{:<6} {:<20} {} at {at}", r.index, r.role, r.function);
            }
        }
        if !self.frames.is_empty() {
            s.push_str("\nframes:\n");
            for f in &self.frames {
                let at = match (&f.file, f.line) {
                    (Some(file), Some(line)) => format!(" at {file}:{line}"),
                    (Some(file), None) => format!(" at {file}"),
                    _ => String::new(),
                };
                let _ = writeln!(s, "  {:<10} {}{at}", f.role, f.function);
            }
        }
        if !self.alternatives.is_empty() {
            s.push_str("\nalso possible:\n");
            for a in &self.alternatives {
                let class = match &a.subclass {
                    Some(sub) => format!("{} ({sub})", a.class),
                    None => a.class.clone(),
                };
                let _ = writeln!(
                    s,
                    "  {class}: confidence {:.2} (rule {})",
                    a.confidence, a.rule
                );
            }
        }
        if let Some(c) = &self.confirm {
            let _ = writeln!(s, "\n{c}");
        }
        s
    }
}

fn render_node(n: &Node, depth: usize, out: &mut String) {
    let indent = "  ".repeat(depth);
    match &n.rule {
        Some(rule) => out.push_str(&format!("{indent}[{rule}] {}\n", n.text)),
        None => out.push_str(&format!("{indent}- {}\n", n.text)),
    }
    for c in &n.children {
        render_node(c, depth + 1, out);
    }
}

#[cfg(test)]
mod tests;
