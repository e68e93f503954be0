//! `cargo panic assail`: a static vulnerability profile of an instrumented
//! binary, from its manifest alone (pure: no IO). The pass records each
//! function's `risks` on its entry site (`panic_passes::assail`); this module
//! joins them with the call graph (`callees`), the lock orders of every
//! function and the panic sites, scores each finding, and ranks functions and
//! units (a Rust crate, from the function's path; a C/C++ object file).
//!
//! Findings and their scores (points; a function's score is the sum of its
//! findings', a unit's the sum of its functions'):
//!
//! | kind               | score                                              |
//! |--------------------|----------------------------------------------------|
//! | `deadlock`         | 100 per lock-order cycle the function is on         |
//! | `recursion`        | 40 + min(60, cycle frame bytes / 32)               |
//! | `alloc_in_loop`    | 30 per line                                        |
//! | `unchecked_alloc`  | 25 per line                                        |
//! | `blocking_in_async`| 20 per line                                        |
//! | `buffer_op`        | 15 per line                                        |
//! | `large_frame`      | 15 when the frame is at least 16 KiB (not recursive)|
//! | `raw_pointer`      | 1 per operation, at most 10                        |
//! | `panic`            | per site: unwrap 8, index 6, divide_by_zero 6, borrow 6, abort 6, expect 5, overflow 4, assert 4, throw 4, explicit 3, alloc_error 2, other 2 |
//!
//! Recursion: the cycles of the call graph over the manifest's `callees`
//! (strongly connected components with more than one function, or a function
//! calling itself), each with its frame bytes (the sum of its functions'
//! `frame_bytes`: the stack one round of the cycle takes). Deadlocks: cycles
//! in the union of every function's `lock_order` pairs (lock A is taken, then
//! B is reachable); each cycle of two locks is reported, and for a larger
//! component without one, one shortest cycle. A cycle that only one function
//! takes part in is not reported: since unlocks are not tracked, a loop that
//! takes A then B also orders B after A through its back-edge (with a second
//! function ordering B before A, the cycle is reported). Panics:
//! the panic sites, by kind of their callee ([`panic_kind`]); `exit` and the
//! abort-while-unwinding paths (`panic_in_cleanup`, `panic_nounwind`) are not
//! risks and are left out.
//!
//! Functions with the same name in the same unit (generic instances, C
//! `static` functions of one object) are merged: their lines are united,
//! their frame is the largest. Ranking: score (highest first), then name, then
//! unit; findings likewise by score, then function, kind and first line. The
//! same manifest always gives the same report.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use panic_passes::{FaultPoint, Risks};
use panic_runtime::SiteKind;
use serde::{Deserialize, Serialize};

use crate::manifest::{Manifest, Site};

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Deadlock,
    Recursion,
    AllocInLoop,
    UncheckedAlloc,
    BlockingInAsync,
    BufferOp,
    LargeFrame,
    RawPointer,
    Panic,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Deadlock => "deadlock",
            Kind::Recursion => "recursion",
            Kind::AllocInLoop => "alloc_in_loop",
            Kind::UncheckedAlloc => "unchecked_alloc",
            Kind::BlockingInAsync => "blocking_in_async",
            Kind::BufferOp => "buffer_op",
            Kind::LargeFrame => "large_frame",
            Kind::RawPointer => "raw_pointer",
            Kind::Panic => "panic",
        }
    }
}

/// The kind of a panic site, by its callee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PanicKind {
    Unwrap,
    Expect,
    Index,
    Overflow,
    DivideByZero,
    Borrow,
    AllocError,
    Assert,
    Abort,
    Throw,
    Explicit,
    Other,
}

impl PanicKind {
    pub fn name(self) -> &'static str {
        match self {
            PanicKind::Unwrap => "unwrap",
            PanicKind::Expect => "expect",
            PanicKind::Index => "index",
            PanicKind::Overflow => "overflow",
            PanicKind::DivideByZero => "divide_by_zero",
            PanicKind::Borrow => "borrow",
            PanicKind::AllocError => "alloc_error",
            PanicKind::Assert => "assert",
            PanicKind::Abort => "abort",
            PanicKind::Throw => "throw",
            PanicKind::Explicit => "explicit",
            PanicKind::Other => "other",
        }
    }

    /// Points per site.
    pub fn weight(self) -> u32 {
        match self {
            PanicKind::Unwrap => 8,
            PanicKind::Index | PanicKind::DivideByZero | PanicKind::Borrow | PanicKind::Abort => 6,
            PanicKind::Expect => 5,
            PanicKind::Overflow | PanicKind::Assert | PanicKind::Throw => 4,
            PanicKind::Explicit => 3,
            PanicKind::AllocError | PanicKind::Other => 2,
        }
    }
}

/// Scores (points), as the module docs list them.
pub mod weights {
    pub const DEADLOCK: u32 = 100;
    pub const RECURSION: u32 = 40;
    /// Recursion: one more point per this many bytes of the cycle's frames...
    pub const RECURSION_FRAME_BYTES_PER_POINT: u64 = 32;
    /// ...up to this many.
    pub const RECURSION_FRAME_MAX: u32 = 60;
    pub const ALLOC_IN_LOOP: u32 = 30;
    pub const UNCHECKED_ALLOC: u32 = 25;
    pub const BLOCKING_IN_ASYNC: u32 = 20;
    pub const BUFFER_OP: u32 = 15;
    pub const LARGE_FRAME: u32 = 15;
    /// A frame at least this large is a `large_frame` finding.
    pub const LARGE_FRAME_BYTES: u64 = 16 * 1024;
    pub const RAW_POINTER: u32 = 1;
    pub const RAW_POINTER_MAX: u32 = 10;
}

/// The kind of a panic site calling `callee` (demangled); `None` for calls
/// that end the program normally (`exit`) or only abort an unwind already
/// under way (`panic_in_cleanup`, `panic_nounwind`, `panic_cannot_unwind`).
pub fn panic_kind(callee: &str) -> Option<PanicKind> {
    let c = callee.split('(').next().unwrap_or(callee);
    let leaf = c.rsplit("::").next().unwrap_or(c);
    if matches!(
        c,
        "exit" | "_exit" | "_Exit" | "quick_exit" | "std::process::exit"
    ) || leaf.starts_with("panic_in_cleanup")
        || leaf.starts_with("panic_nounwind")
        || leaf.starts_with("panic_cannot_unwind")
    {
        return None;
    }
    Some(match c {
        "core::option::unwrap_failed" | "core::result::unwrap_failed" => PanicKind::Unwrap,
        "core::option::expect_failed" => PanicKind::Expect,
        "core::panicking::panic_bounds_check" => PanicKind::Index,
        _ if c.starts_with("core::slice::index::")
            || c.starts_with("core::str::slice_error_fail") =>
        {
            PanicKind::Index
        }
        _ if leaf.starts_with("panic_const_") && leaf.ends_with("_by_zero") => {
            PanicKind::DivideByZero
        }
        _ if leaf.starts_with("panic_const_") && leaf.ends_with("_overflow") => PanicKind::Overflow,
        _ if c.starts_with("core::cell::panic_already_") => PanicKind::Borrow,
        _ if c.ends_with("handle_alloc_error")
            || c.starts_with("alloc::raw_vec::capacity_overflow")
            || c.starts_with("alloc::raw_vec::handle_error") =>
        {
            PanicKind::AllocError
        }
        _ if leaf.starts_with("assert_failed")
            || matches!(c, "__assert_fail" | "__assert_perror_fail")
            || c.ends_with("__glibcxx_assert_fail") =>
        {
            PanicKind::Assert
        }
        "abort"
        | "std::process::abort"
        | "__stack_chk_fail"
        | "std::terminate"
        | "__clang_call_terminate"
        | "llvm.trap"
        | "llvm.ubsantrap"
        | "__cxa_pure_virtual"
        | "__cxa_deleted_virtual" => PanicKind::Abort,
        _ if c.starts_with("__cxa_")
            || c.starts_with("std::__throw_")
            || c == "std::rethrow_exception" =>
        {
            PanicKind::Throw
        }
        _ if c.starts_with("core::panicking::")
            || c.starts_with("std::panicking::")
            || c.starts_with("std::panic::")
            || c == "rust_begin_unwind"
            || c == "__rust_start_panic" =>
        {
            PanicKind::Explicit
        }
        _ => PanicKind::Other,
    })
}

/// One finding in one function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: Kind,
    /// Panic findings: which kind of panic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic: Option<PanicKind>,
    pub function: String,
    /// The crate (Rust) or object file (C/C++) the function is in.
    pub unit: String,
    pub file: Option<String>,
    /// Lines (sorted): in the function's own source for the pass's risks and
    /// lock orders; the panic sites' lines (the innermost location, which may
    /// be in inlined code) for panics; empty when the finding has none.
    pub lines: Vec<u32>,
    /// Ids of the manifest sites involved (panic sites, the function's entry).
    pub sites: Vec<String>,
    pub score: u32,
    /// One sentence saying what was found.
    pub detail: String,
}

/// One function with findings, as ranked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionRisk {
    pub rank: usize,
    pub function: String,
    pub unit: String,
    pub file: Option<String>,
    /// The line of the function's entry.
    pub line: u32,
    pub score: u32,
    /// Its entry sites (one per merged instance).
    pub entries: Vec<String>,
    /// The kinds of its findings, highest score first.
    pub kinds: Vec<Kind>,
    /// The risks the pass recorded (merged over instances).
    pub risks: Risks,
}

/// A crate or object, as ranked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRisk {
    pub rank: usize,
    pub unit: String,
    /// `rust` or `c` (C and C++).
    pub language: String,
    pub score: u32,
    /// Instrumented functions in it, and those with findings.
    pub functions: usize,
    pub risky_functions: usize,
    pub findings: usize,
}

/// A call-graph cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recursion {
    /// The functions on it, sorted.
    pub functions: Vec<String>,
    /// Whether a name on it stands for several instances (generic instances
    /// share a demangled name): the cycle may be calls between instances.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared_names: bool,
    /// The stack one round of the cycle takes (sum of their frame bytes).
    pub frame_bytes: u64,
    pub score: u32,
}

/// One function taking two locks in an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub function: String,
    pub file: Option<String>,
    /// Lines acquiring the first lock, then the second.
    pub first_lines: Vec<u32>,
    pub second_lines: Vec<u32>,
}

/// One edge of a lock-order cycle: `first` is held while `second` is taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockEdge {
    pub first: String,
    pub second: String,
    pub holders: Vec<LockHolder>,
}

/// A cycle of lock orders: a potential deadlock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlock {
    /// The locks, in cycle order (smallest name first).
    pub locks: Vec<String>,
    /// `locks[i] -> locks[i + 1]`, and the last back to the first.
    pub edges: Vec<LockEdge>,
    /// The functions taking part, sorted.
    pub functions: Vec<String>,
    pub score: u32,
}

/// The whole profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The manifest's output (the binary's file name).
    pub binary: String,
    /// Instrumented functions (after merging instances).
    pub functions_analysed: usize,
    /// Functions with findings, ranked.
    pub functions: Vec<FunctionRisk>,
    /// Every finding, ranked.
    pub findings: Vec<Finding>,
    /// Crates and objects, ranked.
    pub units: Vec<UnitRisk>,
    pub recursion: Vec<Recursion>,
    pub deadlocks: Vec<Deadlock>,
    /// Panic sites by kind (those that are risks).
    pub panics: BTreeMap<PanicKind, usize>,
}

/// A function, merged over its instances.
struct Func {
    name: String,
    unit: String,
    language: &'static str,
    file: Option<String>,
    line: u32,
    entries: Vec<String>,
    risks: Risks,
}

/// Whether a site was compiled by rustc (its object is a codegen unit, or its
/// symbol is Rust-mangled).
fn is_rust(s: &Site) -> bool {
    s.object.contains(".rcgu.")
        || s.symbol.starts_with("_R")
        || (s.symbol.starts_with("_ZN") && s.symbol.contains("17h") && s.symbol.ends_with('E'))
}

/// The crate a Rust function belongs to, from its demangled path
/// (`<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop` is `alloc`'s);
/// when the path names no crate (`<&T as ...>`), the crate whose codegen
/// unit holds it.
fn rust_crate(name: &str, object: &str) -> String {
    let path = match name.strip_prefix('<') {
        Some(inner) => inner.split(" as ").next().unwrap_or(inner),
        None => name,
    };
    let first = path.split("::").next().unwrap_or("");
    let first = first.split('<').next().unwrap_or("");
    if path.contains("::")
        && !first.is_empty()
        && first.chars().all(|c| c.is_alphanumeric() || c == '_')
    {
        return first.to_string();
    }
    // `crashy-19db99d92464abeb.crashy.79b538c6fe1444f2-cgu.3.rcgu.o`, or an
    // rlib member: the crate name is the member's first dot-separated part.
    let member = object
        .rsplit_once('(')
        .map_or(object, |(_, m)| m.trim_end_matches(')'));
    let file = member.rsplit('/').next().unwrap_or(member);
    let krate = file.split(['.', '-']).next().unwrap_or(file);
    krate.trim_start_matches("lib").to_string()
}

/// The unit of a site: a Rust crate, or the C/C++ object file (the part after
/// ` -> ` of a `source -> object` key).
fn unit_of(s: &Site) -> (String, &'static str) {
    if is_rust(s) {
        (rust_crate(&s.function, &s.object), "rust")
    } else {
        let object = s.object.rsplit(" -> ").next().unwrap_or(&s.object);
        (object.to_string(), "c")
    }
}

fn union_lines(a: &mut Vec<u32>, b: &[u32]) {
    a.extend_from_slice(b);
    a.sort_unstable();
    a.dedup();
}

fn merge_risks(into: &mut Risks, r: &Risks) {
    into.frame_bytes = into.frame_bytes.max(r.frame_bytes);
    into.raw_pointer_ops = into.raw_pointer_ops.saturating_add(r.raw_pointer_ops);
    union_lines(&mut into.unchecked_alloc, &r.unchecked_alloc);
    union_lines(&mut into.buffer_ops, &r.buffer_ops);
    union_lines(&mut into.alloc_in_loop, &r.alloc_in_loop);
    union_lines(&mut into.blocking_in_async, &r.blocking_in_async);
    into.lock_order.extend(r.lock_order.iter().cloned());
    into.lock_order.sort();
    into.lock_order.dedup();
    for (k, v) in &r.lock_lines {
        union_lines(into.lock_lines.entry(k.clone()).or_default(), v);
    }
}

fn lines_text(lines: &[u32]) -> String {
    let shown: Vec<String> = lines
        .iter()
        .map(|l| {
            if *l == 0 {
                "?".to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    shown.join(", ")
}

/// Plural helper: `1 line`, `2 lines`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The profile of `m`.
pub fn analyse(m: &Manifest) -> Report {
    // Functions, merged by (name, unit), in site order of first appearance.
    let mut funcs: Vec<Func> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    // Which function each site is in: the last entry site before it.
    let mut site_func: Vec<Option<usize>> = Vec::with_capacity(m.sites.len());
    let mut current: Option<usize> = None;
    for s in &m.sites {
        if s.kind == SiteKind::Entry {
            let (unit, language) = unit_of(s);
            let key = (s.function.clone(), unit.clone());
            let i = *index.entry(key).or_insert_with(|| {
                funcs.push(Func {
                    name: s.function.clone(),
                    unit,
                    language,
                    file: s.file.clone(),
                    line: s.line,
                    entries: Vec::new(),
                    risks: Risks::default(),
                });
                funcs.len() - 1
            });
            funcs[i].entries.push(s.id.clone());
            if let Some(r) = &s.risks {
                merge_risks(&mut funcs[i].risks, r);
            }
            current = Some(i);
        } else if current.is_some_and(|c| funcs[c].name != s.function) {
            // A site before its function's entry cannot happen (entries come
            // first); be safe with foreign orders all the same.
            current = funcs.iter().position(|f| f.name == s.function);
        }
        site_func.push(current);
    }

    let mut findings: Vec<(usize, Finding)> = Vec::new();
    let finding = |f: &Func, kind: Kind, lines: Vec<u32>, score: u32, detail: String| Finding {
        kind,
        panic: None,
        function: f.name.clone(),
        unit: f.unit.clone(),
        file: f.file.clone(),
        lines,
        sites: f.entries.clone(),
        score,
        detail,
    };

    // Per-function risks.
    for (i, f) in funcs.iter().enumerate() {
        let r = &f.risks;
        let mut push = |kind, lines: &[u32], per: u32, detail: String| {
            let score = per.saturating_mul(lines.len() as u32);
            findings.push((i, finding(f, kind, lines.to_vec(), score, detail)));
        };
        if !r.alloc_in_loop.is_empty() {
            push(
                Kind::AllocInLoop,
                &r.alloc_in_loop,
                weights::ALLOC_IN_LOOP,
                format!(
                    "allocates inside a loop at {}",
                    lines_text(&r.alloc_in_loop)
                ),
            );
        }
        if !r.unchecked_alloc.is_empty() {
            push(
                Kind::UncheckedAlloc,
                &r.unchecked_alloc,
                weights::UNCHECKED_ALLOC,
                format!(
                    "uses an allocation without a null check at {}",
                    lines_text(&r.unchecked_alloc)
                ),
            );
        }
        if !r.blocking_in_async.is_empty() {
            push(
                Kind::BlockingInAsync,
                &r.blocking_in_async,
                weights::BLOCKING_IN_ASYNC,
                format!(
                    "blocks the executor inside an async body at {}",
                    lines_text(&r.blocking_in_async)
                ),
            );
        }
        if !r.buffer_ops.is_empty() {
            push(
                Kind::BufferOp,
                &r.buffer_ops,
                weights::BUFFER_OP,
                format!(
                    "copies into a buffer with a size that is not a constant (or none) at {}",
                    lines_text(&r.buffer_ops)
                ),
            );
        }
        if r.raw_pointer_ops > 0 {
            let score = (r.raw_pointer_ops.saturating_mul(weights::RAW_POINTER))
                .min(weights::RAW_POINTER_MAX);
            findings.push((
                i,
                finding(
                    f,
                    Kind::RawPointer,
                    Vec::new(),
                    score,
                    format!(
                        "{} not known to stay in bounds",
                        count(r.raw_pointer_ops as usize, "pointer operation")
                    ),
                ),
            ));
        }
    }

    // Recursion: call-graph cycles over `callees`, by name.
    let recursion = call_cycles(m, &funcs);
    let in_cycle: BTreeSet<&str> = recursion
        .iter()
        .flat_map(|c| c.functions.iter().map(String::as_str))
        .collect();
    for c in &recursion {
        let mut around = if c.functions.len() == 1 {
            format!("{0} calls itself", c.functions[0])
        } else {
            format!("cycle {}", c.functions.join(" -> "))
        };
        if c.shared_names {
            around.push_str(" (several instances share a name: maybe calls between instances)");
        }
        for (i, f) in funcs.iter().enumerate() {
            if c.functions.contains(&f.name) {
                findings.push((
                    i,
                    finding(
                        f,
                        Kind::Recursion,
                        Vec::new(),
                        c.score,
                        format!("{around}, {} B of stack per round", c.frame_bytes),
                    ),
                ));
            }
        }
    }
    for (i, f) in funcs.iter().enumerate() {
        if f.risks.frame_bytes >= weights::LARGE_FRAME_BYTES && !in_cycle.contains(f.name.as_str())
        {
            findings.push((
                i,
                finding(
                    f,
                    Kind::LargeFrame,
                    Vec::new(),
                    weights::LARGE_FRAME,
                    format!("a {} B stack frame", f.risks.frame_bytes),
                ),
            ));
        }
    }

    // Deadlocks: cycles in the union of the lock orders.
    let deadlocks = lock_cycles(&funcs);
    for d in &deadlocks {
        for (i, f) in funcs.iter().enumerate() {
            if !d.functions.contains(&f.name) {
                continue;
            }
            let mut lines = Vec::new();
            let mut own = Vec::new();
            let mut others = Vec::new();
            for e in &d.edges {
                for h in &e.holders {
                    let text = format!(
                        "{} ({}) then {} ({})",
                        e.first,
                        lines_text(&h.first_lines),
                        e.second,
                        lines_text(&h.second_lines)
                    );
                    if h.function == f.name {
                        union_lines(&mut lines, &h.first_lines);
                        union_lines(&mut lines, &h.second_lines);
                        own.push(text);
                    } else {
                        others.push(format!("{} takes {text}", h.function));
                    }
                }
            }
            others.dedup();
            let detail = format!(
                "lock-order cycle: takes {}; {}",
                own.join(", "),
                others.join("; ")
            );
            findings.push((i, finding(f, Kind::Deadlock, lines, d.score, detail)));
        }
    }

    // Panics, by kind, per function.
    let mut panics: BTreeMap<PanicKind, usize> = BTreeMap::new();
    type PanicSites = (Vec<u32>, Vec<String>, BTreeSet<String>, BTreeSet<String>);
    let mut by_fn: BTreeMap<(usize, PanicKind), PanicSites> = BTreeMap::new();
    for (s, owner) in m.sites.iter().zip(&site_func) {
        if s.kind != SiteKind::Panic {
            continue;
        }
        let Some(kind) = s.callee.as_deref().and_then(panic_kind) else {
            continue;
        };
        *panics.entry(kind).or_default() += 1;
        if let Some(i) = owner {
            let e = by_fn.entry((*i, kind)).or_default();
            e.0.push(s.line);
            e.1.push(s.id.clone());
            if let Some(c) = &s.callee {
                e.2.insert(c.clone());
            }
            e.3.insert(format!("{}:{}", short_file(&s.file), s.line));
        }
    }
    for ((i, kind), (mut lines, sites, callees, places)) in by_fn {
        lines.sort_unstable();
        lines.dedup();
        let f = &funcs[i];
        let score = kind.weight().saturating_mul(sites.len() as u32);
        let callees: Vec<String> = callees.into_iter().collect();
        let detail = format!(
            "{} at {} ({})",
            count(sites.len(), &format!("{} panic site", kind.name())),
            places.into_iter().collect::<Vec<_>>().join(", "),
            callees.join(", ")
        );
        findings.push((
            i,
            Finding {
                kind: Kind::Panic,
                panic: Some(kind),
                function: f.name.clone(),
                unit: f.unit.clone(),
                file: f.file.clone(),
                lines,
                sites,
                score,
                detail,
            },
        ));
    }

    // Scores and ranks.
    let mut score = vec![0u32; funcs.len()];
    let mut kinds: Vec<BTreeMap<Kind, u32>> = vec![BTreeMap::new(); funcs.len()];
    for (i, f) in &findings {
        score[*i] = score[*i].saturating_add(f.score);
        *kinds[*i].entry(f.kind).or_default() += f.score;
    }
    let mut order: Vec<usize> = (0..funcs.len()).filter(|&i| !kinds[i].is_empty()).collect();
    order.sort_by(|&a, &b| {
        score[b]
            .cmp(&score[a])
            .then_with(|| funcs[a].name.cmp(&funcs[b].name))
            .then_with(|| funcs[a].unit.cmp(&funcs[b].unit))
    });
    let functions: Vec<FunctionRisk> = order
        .iter()
        .enumerate()
        .map(|(rank, &i)| {
            let f = &funcs[i];
            let mut k: Vec<(Kind, u32)> = kinds[i].iter().map(|(k, s)| (*k, *s)).collect();
            k.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            FunctionRisk {
                rank: rank + 1,
                function: f.name.clone(),
                unit: f.unit.clone(),
                file: f.file.clone(),
                line: f.line,
                score: score[i],
                entries: f.entries.clone(),
                kinds: k.into_iter().map(|(k, _)| k).collect(),
                risks: f.risks.clone(),
            }
        })
        .collect();

    let mut units: BTreeMap<String, UnitRisk> = BTreeMap::new();
    for (i, f) in funcs.iter().enumerate() {
        let u = units.entry(f.unit.clone()).or_insert_with(|| UnitRisk {
            rank: 0,
            unit: f.unit.clone(),
            language: f.language.to_string(),
            score: 0,
            functions: 0,
            risky_functions: 0,
            findings: 0,
        });
        u.functions += 1;
        u.score = u.score.saturating_add(score[i]);
        if !kinds[i].is_empty() {
            u.risky_functions += 1;
        }
    }
    for (i, _) in &findings {
        if let Some(u) = units.get_mut(&funcs[*i].unit) {
            u.findings += 1;
        }
    }
    let mut units: Vec<UnitRisk> = units.into_values().collect();
    units.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.unit.cmp(&b.unit)));
    for (r, u) in units.iter_mut().enumerate() {
        u.rank = r + 1;
    }

    let mut findings: Vec<Finding> = findings.into_iter().map(|(_, f)| f).collect();
    findings.sort_by(|a, b| {
        b.score
            .cmp(&a.score)
            .then_with(|| a.function.cmp(&b.function))
            .then_with(|| a.unit.cmp(&b.unit))
            .then_with(|| a.kind.cmp(&b.kind))
            .then_with(|| a.panic.cmp(&b.panic))
            .then_with(|| a.lines.cmp(&b.lines))
    });

    Report {
        binary: m.output.clone(),
        functions_analysed: funcs.len(),
        functions,
        findings,
        units,
        recursion,
        deadlocks,
        panics,
    }
}

/// Cycles of the call graph over the functions' `callees`, by name.
fn call_cycles(m: &Manifest, funcs: &[Func]) -> Vec<Recursion> {
    use petgraph::graph::{DiGraph, NodeIndex};
    // Per name: the largest frame, and how many instances share it.
    let mut names: BTreeMap<&str, u64> = BTreeMap::new();
    let mut instances: BTreeMap<&str, usize> = BTreeMap::new();
    for f in funcs {
        let e = names.entry(f.name.as_str()).or_default();
        *e = (*e).max(f.risks.frame_bytes);
        *instances.entry(f.name.as_str()).or_default() += f.entries.len();
    }
    let mut g = DiGraph::<&str, ()>::new();
    let node: BTreeMap<&str, NodeIndex> = names.keys().map(|n| (*n, g.add_node(*n))).collect();
    let mut edges = BTreeSet::new();
    for s in &m.sites {
        if s.kind != SiteKind::Entry {
            continue;
        }
        let Some(&from) = node.get(s.function.as_str()) else {
            continue;
        };
        for c in s.callees.iter().flatten() {
            if let Some(&to) = node.get(c.as_str())
                && edges.insert((from, to))
            {
                g.add_edge(from, to, ());
            }
        }
    }
    let mut out = Vec::new();
    for scc in petgraph::algo::tarjan_scc(&g) {
        let cyclic = scc.len() > 1 || edges.contains(&(scc[0], scc[0]));
        if !cyclic {
            continue;
        }
        let mut functions: Vec<String> = scc.iter().map(|n| g[*n].to_string()).collect();
        functions.sort();
        let frame_bytes: u64 = functions.iter().map(|f| names[f.as_str()]).sum();
        let extra = (frame_bytes / weights::RECURSION_FRAME_BYTES_PER_POINT)
            .min(u64::from(weights::RECURSION_FRAME_MAX)) as u32;
        let shared_names = functions.iter().any(|f| instances[f.as_str()] > 1);
        out.push(Recursion {
            functions,
            shared_names,
            frame_bytes,
            score: weights::RECURSION + extra,
        });
    }
    out.sort_by(|a, b| {
        b.score
            .cmp(&a.score)
            .then_with(|| a.functions.cmp(&b.functions))
    });
    out
}

/// Cycles in the union of every function's lock order.
fn lock_cycles(funcs: &[Func]) -> Vec<Deadlock> {
    use petgraph::graph::{DiGraph, NodeIndex};
    // (first, second) -> holders.
    let mut edges: BTreeMap<(String, String), Vec<LockHolder>> = BTreeMap::new();
    for f in funcs {
        for [a, b] in &f.risks.lock_order {
            let lines = |l: &String| f.risks.lock_lines.get(l).cloned().unwrap_or_default();
            let holders = edges.entry((a.clone(), b.clone())).or_default();
            if !holders.iter().any(|h| h.function == f.name) {
                holders.push(LockHolder {
                    function: f.name.clone(),
                    file: f.file.clone(),
                    first_lines: lines(a),
                    second_lines: lines(b),
                });
            }
        }
    }
    for h in edges.values_mut() {
        h.sort_by(|a, b| a.function.cmp(&b.function));
    }
    let mut g = DiGraph::<&str, ()>::new();
    let mut node: BTreeMap<&str, NodeIndex> = BTreeMap::new();
    for (a, b) in edges.keys() {
        for n in [a, b] {
            if !node.contains_key(n.as_str()) {
                node.insert(n.as_str(), g.add_node(n.as_str()));
            }
        }
    }
    for (a, b) in edges.keys() {
        g.add_edge(node[a.as_str()], node[b.as_str()], ());
    }
    let edge = |a: &str, b: &str| edges.get(&(a.to_string(), b.to_string()));
    // A cycle counts when at least two functions take part in it: then its
    // orders can be taken by two different functions (threads). One function
    // alone closing a cycle is what a loop does when unlocks are not tracked.
    let reportable = |cycle: &[String]| {
        let functions: BTreeSet<&str> = (0..cycle.len())
            .flat_map(|i| {
                let (a, b) = (&cycle[i], &cycle[(i + 1) % cycle.len()]);
                edge(a, b)
                    .into_iter()
                    .flatten()
                    .map(|h| h.function.as_str())
            })
            .collect();
        functions.len() >= 2
    };
    let mut cycles: Vec<Vec<String>> = Vec::new();
    for scc in petgraph::algo::tarjan_scc(&g) {
        if scc.len() < 2 {
            continue;
        }
        let mut members: Vec<&str> = scc.iter().map(|n| g[*n]).collect();
        members.sort();
        let mut found = Vec::new();
        for (i, a) in members.iter().enumerate() {
            for b in &members[i + 1..] {
                if edge(a, b).is_some() && edge(b, a).is_some() {
                    found.push(vec![a.to_string(), b.to_string()]);
                }
            }
        }
        if found.is_empty()
            && let Some(c) = shortest_cycle(&members, |a, b| edge(a, b).is_some())
        {
            found.push(c);
        }
        cycles.extend(found.into_iter().filter(|c| reportable(c)));
    }
    let mut out: Vec<Deadlock> = cycles
        .into_iter()
        .map(|locks| {
            let edges: Vec<LockEdge> = (0..locks.len())
                .map(|i| {
                    let (a, b) = (&locks[i], &locks[(i + 1) % locks.len()]);
                    LockEdge {
                        first: a.clone(),
                        second: b.clone(),
                        holders: edge(a, b).cloned().unwrap_or_default(),
                    }
                })
                .collect();
            let functions: BTreeSet<String> = edges
                .iter()
                .flat_map(|e| e.holders.iter().map(|h| h.function.clone()))
                .collect();
            Deadlock {
                locks,
                edges,
                functions: functions.into_iter().collect(),
                score: weights::DEADLOCK,
            }
        })
        .collect();
    out.sort_by(|a, b| a.locks.cmp(&b.locks));
    out
}

/// A shortest cycle through the smallest member of `members` (sorted) that
/// can close one, by BFS over `edge`; `None` when none does.
fn shortest_cycle(members: &[&str], edge: impl Fn(&str, &str) -> bool) -> Option<Vec<String>> {
    for &start in members {
        let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        while let Some(a) = queue.pop_front() {
            for &b in members {
                if !edge(a, b) {
                    continue;
                }
                if b == start {
                    let mut path = vec![a.to_string()];
                    let mut at = a;
                    while at != start {
                        at = prev[at];
                        path.push(at.to_string());
                    }
                    path.reverse();
                    return Some(path);
                }
                if !prev.contains_key(b) {
                    prev.insert(b, a);
                    queue.push_back(b);
                }
            }
        }
    }
    None
}

/// The file name of a path (for the table).
fn short_file(file: &Option<String>) -> &str {
    file.as_deref()
        .map(|f| f.rsplit('/').next().unwrap_or(f))
        .unwrap_or("?")
}

/// The report as a table: the `top` riskiest functions with their findings,
/// then the deadlocks, the recursion, the panics and the units.
pub fn render_table(r: &Report, top: usize) -> String {
    let mut out = String::new();
    let risky = r.functions.len();
    let _ = writeln!(
        out,
        "assail {}: {} functions, {} with findings, {} in {}",
        r.binary,
        r.functions_analysed,
        risky,
        count(r.findings.len(), "finding"),
        count(r.units.len(), "unit"),
    );
    if r.functions.is_empty() {
        out.push_str("\nno findings\n");
        return out;
    }
    let shown: Vec<&FunctionRisk> = r.functions.iter().take(top).collect();
    let name_w = shown
        .iter()
        .map(|f| f.function.chars().count())
        .max()
        .unwrap_or(8)
        .clamp(8, 60);
    let where_w = shown
        .iter()
        .map(|f| format!("{}:{}", short_file(&f.file), f.line).len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        out,
        "\n{:>4}  {:>5}  {:<name_w$}  {:<where_w$}  findings",
        "rank", "score", "function", "where"
    );
    for f in &shown {
        let mut name: String = f.function.chars().take(name_w).collect();
        if f.function.chars().count() > name_w {
            name.pop();
            name.push('…');
        }
        let place = format!("{}:{}", short_file(&f.file), f.line);
        let mut first = true;
        for x in r
            .findings
            .iter()
            .filter(|x| x.function == f.function && x.unit == f.unit)
        {
            let what = match x.panic {
                Some(p) => format!("panic/{}", p.name()),
                None => x.kind.name().to_string(),
            };
            if first {
                let _ = writeln!(
                    out,
                    "{:>4}  {:>5}  {:<name_w$}  {:<where_w$}  {what} ({}): {}",
                    f.rank, f.score, name, place, x.score, x.detail
                );
                first = false;
            } else {
                let _ = writeln!(
                    out,
                    "{:>4}  {:>5}  {:<name_w$}  {:<where_w$}  {what} ({}): {}",
                    "", "", "", "", x.score, x.detail
                );
            }
        }
    }
    if risky > shown.len() {
        let _ = writeln!(out, "... {} more (--top N)", risky - shown.len());
    }
    if !r.deadlocks.is_empty() {
        out.push_str("\npotential deadlocks (lock-order cycles; unlocks are not tracked):\n");
        for d in &r.deadlocks {
            let _ = writeln!(out, "  {} -> {}", d.locks.join(" -> "), d.locks[0]);
            for e in &d.edges {
                for h in &e.holders {
                    let _ = writeln!(
                        out,
                        "    {} takes {} ({}:{}) then {} ({})",
                        h.function,
                        e.first,
                        short_file(&h.file),
                        lines_text(&h.first_lines),
                        e.second,
                        lines_text(&h.second_lines)
                    );
                }
            }
        }
    }
    if !r.recursion.is_empty() {
        out.push_str("\nrecursion (call-graph cycles):\n");
        for c in &r.recursion {
            let _ = writeln!(
                out,
                "  {:>5}  {}  ({} B of stack per round{})",
                c.score,
                c.functions.join(" -> "),
                c.frame_bytes,
                if c.shared_names {
                    "; instances share a name"
                } else {
                    ""
                }
            );
        }
    }
    if !r.panics.is_empty() {
        let list: Vec<String> = r
            .panics
            .iter()
            .map(|(k, n)| format!("{} {n}", k.name()))
            .collect();
        let _ = writeln!(out, "\npanic sites: {}", list.join(", "));
    }
    out.push_str("\nby unit:\n");
    let _ = writeln!(
        out,
        "{:>4}  {:>5}  {:>9}  {:>8}  unit",
        "rank", "score", "functions", "findings"
    );
    for u in &r.units {
        let _ = writeln!(
            out,
            "{:>4}  {:>5}  {:>9}  {:>8}  {} ({})",
            u.rank,
            u.score,
            format!("{}/{}", u.risky_functions, u.functions),
            u.findings,
            u.unit,
            u.language
        );
    }
    out
}

/// The report with only the `top` riskiest functions and their findings
/// (units, recursion, deadlocks and panic counts stay whole), for `--json`.
pub fn top(r: &Report, top: usize) -> Report {
    let mut r = r.clone();
    r.functions.truncate(top);
    let keep: BTreeSet<(&str, &str)> = r
        .functions
        .iter()
        .map(|f| (f.function.as_str(), f.unit.as_str()))
        .collect();
    let findings = r
        .findings
        .iter()
        .filter(|f| keep.contains(&(f.function.as_str(), f.unit.as_str())))
        .cloned()
        .collect();
    r.findings = findings;
    r
}

/// Length of each phase of a suggested timeline.
const PHASE_SECS: u64 = 15;
/// At most this many fault events (the engine runs at most 32 at once).
const MAX_FAULT_EVENTS: usize = 4;

/// One event of a suggested timeline, as a YAML flow map, with a comment.
struct Event {
    axis: &'static str,
    comment: String,
    yaml: String,
}

/// A timeline (YAML) aimed at the report's top `top` functions, for
/// `cargo panic attack`: one 15 s phase per kind of risk, in rank order,
/// each with the mechanisms that provoke it (see README "Assail"):
///
/// - lock-order cycles: the target confined to one CPU (`cpuset` 1) while
///   spinners compete for it, so a thread is preempted holding a lock;
/// - recursion and large frames: a memory hog (pressure on what the stack
///   can still take);
/// - allocation in loops: a cgroup memory limit (growth ends in an OOM kill);
/// - unchecked allocations: `fail-alloc` on the first call at each such
///   site that can be failed (its `fault: alloc`), so the null is used;
/// - file I/O in risky functions (buffer operations or any other finding):
///   `fail-io` (EIO) at their file sites and a full scratch disk;
/// - blocking calls in async bodies: a CPU quota and `eintr` at those sites.
///
/// The target restarts after a failure (up to 3 times), so later phases
/// still run; `crashes == 0` (and `oom_kills == 0` with a memory limit) is
/// asserted. Sites are selected by index (`'#N'`, the manifest's order), so
/// the timeline belongs to this build.
pub fn suggest_timeline(r: &Report, m: &Manifest, top: usize) -> String {
    let shown: Vec<&FunctionRisk> = r.functions.iter().take(top).collect();
    let has = |k: Kind| shown.iter().any(|f| f.kinds.contains(&k));
    let names = |k: Kind| -> String {
        let n: Vec<&str> = shown
            .iter()
            .filter(|f| f.kinds.contains(&k))
            .map(|f| f.function.as_str())
            .take(4)
            .collect();
        n.join(", ")
    };
    // Fault points by function: (site index, site).
    let fault_sites = |f: &FunctionRisk, point: FaultPoint| -> Vec<(usize, &Site)> {
        m.sites
            .iter()
            .enumerate()
            .filter(|(_, s)| s.function == f.function && s.fault == Some(point))
            .collect()
    };
    let mut phases: Vec<(String, Vec<Event>)> = Vec::new();

    if has(Kind::Deadlock) {
        phases.push((
            format!("lock-order cycles in {}", names(Kind::Deadlock)),
            vec![
                Event {
                    axis: "concurrency",
                    comment: "one CPU: threads are preempted while holding a lock".into(),
                    yaml: "{id: one-cpu, at: AT, for: FOR, intensity: 1, args: {via: cpuset}}"
                        .into(),
                },
                Event {
                    axis: "cpu",
                    comment: "spinners competing for it: long preemptions".into(),
                    yaml:
                        "{id: contention, at: AT, for: FOR, intensity: medium, args: {via: spin}}"
                            .into(),
                },
            ],
        ));
    }
    if has(Kind::Recursion) || has(Kind::LargeFrame) {
        let mut what = Vec::new();
        if has(Kind::Recursion) {
            what.push(format!("recursion in {}", names(Kind::Recursion)));
        }
        if has(Kind::LargeFrame) {
            what.push(format!("large frames in {}", names(Kind::LargeFrame)));
        }
        phases.push((
            what.join("; "),
            vec![Event {
                axis: "memory",
                comment: "a memory hog: deep stacks compete with it for pages".into(),
                yaml: "{id: stack-pressure, at: AT, for: FOR, intensity: light, shape: ramp, args: {via: hog}}".into(),
            }],
        ));
    }
    if has(Kind::AllocInLoop) {
        phases.push((
            format!("allocation in loops in {}", names(Kind::AllocInLoop)),
            vec![Event {
                axis: "memory",
                comment: "a memory limit: growth ends in an OOM kill".into(),
                yaml: "{id: memory-limit, at: AT, for: FOR, intensity: 64MiB, args: {via: limit}}"
                    .into(),
            }],
        ));
    }
    if has(Kind::UncheckedAlloc) {
        let mut events = Vec::new();
        for f in shown
            .iter()
            .filter(|f| f.kinds.contains(&Kind::UncheckedAlloc))
        {
            let sites = fault_sites(f, FaultPoint::Alloc);
            // The sites on the unchecked lines, else every failable one.
            let on_line: Vec<_> = sites
                .iter()
                .filter(|(_, s)| f.risks.unchecked_alloc.contains(&s.line))
                .copied()
                .collect();
            let chosen = if on_line.is_empty() { sites } else { on_line };
            for (i, s) in chosen {
                if events.len() >= MAX_FAULT_EVENTS {
                    break;
                }
                events.push(Event {
                    axis: "memory",
                    comment: format!(
                        "{} at {}:{} ({}): its first call returns NULL",
                        f.function,
                        short_file(&s.file),
                        s.line,
                        s.callee.as_deref().unwrap_or("allocation")
                    ),
                    yaml: format!(
                        "{{id: fail-alloc-{}, at: AT, for: FOR, args: {{via: fail-alloc, sites: '#{i}', nth: 1}}}}",
                        events.len() + 1
                    ),
                });
            }
        }
        if !events.is_empty() {
            phases.push((
                format!("unchecked allocations in {}", names(Kind::UncheckedAlloc)),
                events,
            ));
        }
    }
    {
        // File I/O in the risky functions (buffer operations first).
        let mut events = Vec::new();
        let mut who = Vec::new();
        let mut candidates: Vec<&&FunctionRisk> = shown.iter().collect();
        candidates.sort_by_key(|f| !f.kinds.contains(&Kind::BufferOp));
        for f in candidates {
            let sites = fault_sites(f, FaultPoint::File);
            if sites.is_empty() {
                continue;
            }
            for (i, s) in sites {
                if events.len() >= MAX_FAULT_EVENTS {
                    break;
                }
                if !who.contains(&f.function) {
                    who.push(f.function.clone());
                }
                events.push(Event {
                    axis: "disk",
                    comment: format!(
                        "{} at {}:{} ({}) fails with EIO half the time",
                        f.function,
                        short_file(&s.file),
                        s.line,
                        s.callee.as_deref().unwrap_or("file I/O")
                    ),
                    yaml: format!(
                        "{{id: fail-io-{}, at: AT, for: FOR, intensity: 50%, args: {{via: fail-io, sites: '#{i}', errno: EIO}}}}",
                        events.len() + 1
                    ),
                });
            }
        }
        if !events.is_empty() {
            events.push(Event {
                axis: "disk",
                comment: "the scratch filesystem (TMPDIR) full: ENOSPC".into(),
                yaml: "{id: disk-full, at: AT, for: FOR, intensity: 1MiB, args: {via: fill}}"
                    .into(),
            });
            phases.push((format!("file I/O in {}", who.join(", ")), events));
        }
    }
    if has(Kind::BlockingInAsync) {
        let mut events = vec![Event {
            axis: "cpu",
            comment: "a CPU quota: a blocked executor thread stalls every task on it".into(),
            yaml: "{id: async-quota, at: AT, for: FOR, intensity: heavy, args: {via: quota}}"
                .into(),
        }];
        for f in shown
            .iter()
            .filter(|f| f.kinds.contains(&Kind::BlockingInAsync))
        {
            for (i, s) in m.sites.iter().enumerate() {
                if events.len() > MAX_FAULT_EVENTS {
                    break;
                }
                if s.function == f.function
                    && s.kind == SiteKind::Blocking
                    && s.fault.is_some()
                    && f.risks.blocking_in_async.contains(&s.line)
                {
                    events.push(Event {
                        axis: "time",
                        comment: format!(
                            "{} at {}:{} ({}) interrupted (EINTR)",
                            f.function,
                            short_file(&s.file),
                            s.line,
                            s.callee.as_deref().unwrap_or("blocking call")
                        ),
                        yaml: format!(
                            "{{id: eintr-{}, at: AT, for: FOR, intensity: 50%, args: {{via: eintr, sites: '#{i}'}}}}",
                            events.len()
                        ),
                    });
                }
            }
        }
        phases.push((
            format!(
                "blocking calls in async bodies in {}",
                names(Kind::BlockingInAsync)
            ),
            events,
        ));
    }
    if phases.is_empty() {
        phases.push((
            "nothing specific found: general CPU and memory pressure".into(),
            vec![
                Event {
                    axis: "cpu",
                    comment: "competing spinners".into(),
                    yaml: "{id: cpu-pressure, at: AT, for: FOR, intensity: light}".into(),
                },
                Event {
                    axis: "memory",
                    comment: "a memory hog".into(),
                    yaml: "{id: memory-pressure, at: AT, for: FOR, intensity: light}".into(),
                },
            ],
        ));
    }

    let memory_limit = phases
        .iter()
        .flat_map(|(_, e)| e)
        .any(|e| e.yaml.contains("via: limit"));
    let duration = PHASE_SECS * phases.len() as u64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Suggested by `cargo panic assail` for {}: one {PHASE_SECS}s phase per kind of risk,",
        r.binary
    );
    out.push_str("# riskiest first. Sites are named by index ('#N' in the manifest): this\n");
    out.push_str("# timeline belongs to this build. Check it: cargo panic timeline --check FILE\n");
    out.push_str("version: 1\n");
    let _ = writeln!(out, "duration: {duration}s");
    out.push_str("seed: 1\n");
    out.push_str("target:\n  restart: on-failure\n  max_restarts: 3\n");
    // Events grouped by axis (one track each), phases in order.
    let mut tracks: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let axis_order = ["cpu", "memory", "disk", "network", "concurrency", "time"];
    for (p, (why, events)) in phases.iter().enumerate() {
        let at = format!("{}s", PHASE_SECS * p as u64);
        let length = format!("{PHASE_SECS}s");
        for e in events {
            let lines = tracks.entry(e.axis).or_default();
            lines.push(format!("      # phase {}: {why}; {}", p + 1, e.comment));
            lines.push(format!(
                "      - {}",
                e.yaml.replace("AT", &at).replace("FOR", &length)
            ));
        }
    }
    out.push_str("tracks:\n");
    for axis in axis_order {
        if let Some(lines) = tracks.get(axis) {
            let _ = writeln!(out, "  - axis: {axis}\n    events:");
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out.push_str("assert:\n  - crashes == 0\n");
    if memory_limit {
        out.push_str("  - oom_kills == 0\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::attack::timeline::Timeline;

    /// A site of `function` in the C object `main.o` (or, with a `::` path, a
    /// Rust codegen unit of crate `app`).
    fn site(id: &str, kind: SiteKind, function: &str, line: u32) -> Site {
        let rust = function.contains("::");
        Site {
            id: id.into(),
            kind,
            function: function.into(),
            file: Some(
                if rust {
                    "/src/app/src/main.rs"
                } else {
                    "/src/main.c"
                }
                .into(),
            ),
            line,
            column: 0,
            object: if rust {
                "app-0123.app.4567-cgu.0.rcgu.o".into()
            } else {
                "/src/main.c -> /src/build/main.o".into()
            },
            timed: false,
            reason: None,
            callee: None,
            unwind: false,
            adaptive: false,
            hist: None,
            symbol: function.into(),
            callees: (kind == SiteKind::Entry).then(Vec::new),
            touches: (kind == SiteKind::Entry).then(Vec::new),
            fault: None,
            risks: None,
            count_of: None,
            pending: false,
        }
    }

    /// An entry site with callees and risks.
    fn entry(function: &str, line: u32, callees: &[&str], risks: Risks) -> Site {
        let mut s = site(
            &format!("{function}@entry"),
            SiteKind::Entry,
            function,
            line,
        );
        s.callees = Some(callees.iter().map(|c| c.to_string()).collect());
        s.risks = (!risks.is_empty()).then_some(risks);
        s
    }

    fn call(function: &str, kind: SiteKind, line: u32, callee: &str) -> Site {
        let mut s = site(&format!("{function}@{line}"), kind, function, line);
        s.callee = Some(callee.into());
        s
    }

    fn manifest(sites: Vec<Site>) -> Manifest {
        let mut m = Manifest::from_linked(Path::new("/x/app"), &crate::linked::Linked::default());
        m.sites = sites;
        m
    }

    fn locks(pairs: &[(&str, &str)], lines: &[(&str, u32)]) -> Risks {
        let mut r = Risks {
            lock_order: pairs
                .iter()
                .map(|(a, b)| [format!("lock:global:{a}"), format!("lock:global:{b}")])
                .collect(),
            ..Risks::default()
        };
        for (l, line) in lines {
            r.lock_lines
                .entry(format!("lock:global:{l}"))
                .or_default()
                .push(*line);
        }
        r
    }

    /// c-bugs in miniature.
    fn bugs() -> Manifest {
        let mut fill_alloc = call("fill", SiteKind::Alloc, 41, "malloc");
        fill_alloc.fault = Some(FaultPoint::Alloc);
        manifest(vec![
            entry(
                "main",
                120,
                &["descend", "worker_ab", "worker_ba", "fill", "grow"],
                Risks::default(),
            ),
            entry(
                "worker_ab",
                67,
                &[],
                locks(&[("a", "b")], &[("a", 68), ("b", 70)]),
            ),
            call("worker_ab", SiteKind::Lock, 68, "pthread_mutex_lock"),
            call("worker_ab", SiteKind::Lock, 70, "pthread_mutex_lock"),
            entry(
                "worker_ba",
                75,
                &[],
                locks(&[("b", "a")], &[("b", 76), ("a", 78)]),
            ),
            entry(
                "descend",
                54,
                &["descend"],
                Risks {
                    frame_bytes: 284,
                    ..Risks::default()
                },
            ),
            entry(
                "fill",
                40,
                &["malloc"],
                Risks {
                    unchecked_alloc: vec![41],
                    buffer_ops: vec![42],
                    ..Risks::default()
                },
            ),
            fill_alloc,
            entry(
                "grow",
                93,
                &["malloc"],
                Risks {
                    alloc_in_loop: vec![96],
                    ..Risks::default()
                },
            ),
        ])
    }

    #[test]
    fn functions_are_ranked_by_score_then_name() {
        let r = analyse(&bugs());
        let ranked: Vec<(usize, &str, u32)> = r
            .functions
            .iter()
            .map(|f| (f.rank, f.function.as_str(), f.score))
            .collect();
        assert_eq!(
            ranked,
            [
                (1, "worker_ab", 100),
                (2, "worker_ba", 100),
                // 40 + 284 / 32
                (3, "descend", 48),
                // 25 + 15
                (4, "fill", 40),
                (5, "grow", 30),
            ]
        );
        assert_eq!(r.functions_analysed, 6);
        assert_eq!(r.functions[3].kinds, [Kind::UncheckedAlloc, Kind::BufferOp]);
        // One unit: the object, not the source.
        assert_eq!(r.units.len(), 1);
        assert_eq!(r.units[0].unit, "/src/build/main.o");
        assert_eq!(r.units[0].language, "c");
        assert_eq!(r.units[0].score, 318);
        assert_eq!((r.units[0].functions, r.units[0].risky_functions), (6, 5));
        // The same manifest, the same report.
        assert_eq!(analyse(&bugs()), r);
    }

    #[test]
    fn a_lock_order_cycle_names_both_functions_and_lines() {
        let r = analyse(&bugs());
        assert_eq!(r.deadlocks.len(), 1);
        let d = &r.deadlocks[0];
        assert_eq!(d.locks, ["lock:global:a", "lock:global:b"]);
        assert_eq!(d.functions, ["worker_ab", "worker_ba"]);
        let e = &d.edges[0];
        assert_eq!(
            (e.first.as_str(), e.second.as_str()),
            ("lock:global:a", "lock:global:b")
        );
        assert_eq!(e.holders[0].function, "worker_ab");
        assert_eq!(
            (
                &e.holders[0].first_lines[..],
                &e.holders[0].second_lines[..]
            ),
            (&[68][..], &[70][..])
        );
        let e = &d.edges[1];
        assert_eq!(e.holders[0].function, "worker_ba");
        assert_eq!(
            (
                &e.holders[0].first_lines[..],
                &e.holders[0].second_lines[..]
            ),
            (&[76][..], &[78][..])
        );
        let f = r
            .findings
            .iter()
            .find(|f| f.function == "worker_ab")
            .unwrap();
        assert_eq!((f.kind, &f.lines[..]), (Kind::Deadlock, &[68, 70][..]));
        assert!(
            f.detail.contains("worker_ba takes lock:global:b (76)"),
            "{}",
            f.detail
        );
    }

    #[test]
    fn a_cycle_all_in_one_function_is_not_a_deadlock() {
        // A loop taking a then b orders b before a through its back-edge.
        let m = manifest(vec![entry(
            "looper",
            1,
            &[],
            locks(&[("a", "b"), ("b", "a")], &[("a", 2), ("b", 3)]),
        )]);
        assert!(analyse(&m).deadlocks.is_empty());
        // With a second function taking b then a, it is one.
        let mut sites = m.sites.clone();
        sites.push(entry(
            "other",
            10,
            &[],
            locks(&[("b", "a")], &[("b", 11), ("a", 12)]),
        ));
        let r = analyse(&manifest(sites));
        assert_eq!(r.deadlocks.len(), 1);
        assert_eq!(r.deadlocks[0].functions, ["looper", "other"]);
    }

    #[test]
    fn a_longer_lock_cycle_is_reported_once() {
        let m = manifest(vec![
            entry("f", 1, &[], locks(&[("a", "b")], &[("a", 2), ("b", 3)])),
            entry("g", 10, &[], locks(&[("b", "c")], &[("b", 11), ("c", 12)])),
            entry("h", 20, &[], locks(&[("c", "a")], &[("c", 21), ("a", 22)])),
        ]);
        let r = analyse(&m);
        assert_eq!(r.deadlocks.len(), 1);
        assert_eq!(
            r.deadlocks[0].locks,
            ["lock:global:a", "lock:global:b", "lock:global:c"]
        );
        assert_eq!(r.deadlocks[0].functions, ["f", "g", "h"]);
        assert_eq!(r.functions.len(), 3);
    }

    #[test]
    fn recursion_is_a_call_graph_cycle_with_its_frames() {
        let frame = |b| Risks {
            frame_bytes: b,
            ..Risks::default()
        };
        let m = manifest(vec![
            entry("app::even", 1, &["app::odd", "app::leaf"], frame(1024)),
            entry("app::odd", 5, &["app::even"], frame(1024)),
            entry("app::leaf", 9, &[], frame(64)),
            entry("app::self_call", 12, &["app::self_call"], Risks::default()),
        ]);
        let r = analyse(&m);
        let cycles: Vec<(&[String], u64, u32)> = r
            .recursion
            .iter()
            .map(|c| (&c.functions[..], c.frame_bytes, c.score))
            .collect();
        assert_eq!(
            cycles,
            [
                (&["app::even".to_string(), "app::odd".into()][..], 2048, 100),
                (&["app::self_call".to_string()][..], 0, 40),
            ]
        );
        assert!(r.recursion.iter().all(|c| !c.shared_names));
        // Each function on a cycle carries it; the leaf does not.
        let names: Vec<&str> = r.functions.iter().map(|f| f.function.as_str()).collect();
        assert_eq!(names, ["app::even", "app::odd", "app::self_call"]);
        assert_eq!(r.units[0].unit, "app");
        assert_eq!(r.units[0].language, "rust");
    }

    #[test]
    fn instances_sharing_a_name_are_merged() {
        let mut a = entry(
            "alloc::sync::Arc<T,A>::drop_slow",
            3,
            &["alloc::sync::Arc<T,A>::drop_slow"],
            Risks {
                buffer_ops: vec![7],
                frame_bytes: 16,
                ..Risks::default()
            },
        );
        let mut b = a.clone();
        b.id = "other".into();
        b.risks = Some(Risks {
            buffer_ops: vec![9, 7],
            frame_bytes: 32,
            ..Risks::default()
        });
        a.object = "app-1.app.2-cgu.1.rcgu.o".into();
        let r = analyse(&manifest(vec![a, b]));
        assert_eq!(r.functions_analysed, 1);
        let f = &r.functions[0];
        assert_eq!(f.unit, "alloc");
        assert_eq!(f.entries.len(), 2);
        assert_eq!(f.risks.buffer_ops, [7, 9]);
        assert_eq!(f.risks.frame_bytes, 32);
        assert!(r.recursion[0].shared_names);
    }

    #[test]
    fn panic_sites_by_kind() {
        let k = panic_kind;
        assert_eq!(k("core::option::unwrap_failed"), Some(PanicKind::Unwrap));
        assert_eq!(k("core::result::unwrap_failed"), Some(PanicKind::Unwrap));
        assert_eq!(k("core::option::expect_failed"), Some(PanicKind::Expect));
        assert_eq!(
            k("core::panicking::panic_bounds_check"),
            Some(PanicKind::Index)
        );
        assert_eq!(
            k("core::slice::index::slice_end_index_len_fail"),
            Some(PanicKind::Index)
        );
        assert_eq!(
            k("core::panicking::panic_const::panic_const_add_overflow"),
            Some(PanicKind::Overflow)
        );
        assert_eq!(
            k("core::panicking::panic_const::panic_const_div_by_zero"),
            Some(PanicKind::DivideByZero)
        );
        assert_eq!(
            k("core::cell::panic_already_borrowed"),
            Some(PanicKind::Borrow)
        );
        assert_eq!(
            k("alloc::alloc::handle_alloc_error"),
            Some(PanicKind::AllocError)
        );
        assert_eq!(k("core::panicking::assert_failed"), Some(PanicKind::Assert));
        assert_eq!(k("__assert_fail"), Some(PanicKind::Assert));
        assert_eq!(k("abort"), Some(PanicKind::Abort));
        assert_eq!(k("__cxa_throw"), Some(PanicKind::Throw));
        assert_eq!(
            k("std::__throw_length_error(char const*)"),
            Some(PanicKind::Throw)
        );
        assert_eq!(k("core::panicking::panic_fmt"), Some(PanicKind::Explicit));
        assert_eq!(k("std::panicking::begin_panic"), Some(PanicKind::Explicit));
        assert_eq!(k("something_else"), Some(PanicKind::Other));
        for none in [
            "exit",
            "_exit",
            "std::process::exit",
            "core::panicking::panic_in_cleanup",
            "core::panicking::panic_nounwind",
            "core::panicking::panic_cannot_unwind",
        ] {
            assert_eq!(k(none), None, "{none}");
        }
        let m = manifest(vec![
            entry("app::lookup", 1, &[], Risks::default()),
            call(
                "app::lookup",
                SiteKind::Panic,
                2,
                "core::option::unwrap_failed",
            ),
            call(
                "app::lookup",
                SiteKind::Panic,
                3,
                "core::option::unwrap_failed",
            ),
            call(
                "app::lookup",
                SiteKind::Panic,
                4,
                "core::panicking::panic_in_cleanup",
            ),
            entry("app::element", 10, &[], Risks::default()),
            call(
                "app::element",
                SiteKind::Panic,
                11,
                "core::panicking::panic_bounds_check",
            ),
        ]);
        let r = analyse(&m);
        assert_eq!(
            r.panics,
            BTreeMap::from([(PanicKind::Unwrap, 2), (PanicKind::Index, 1)])
        );
        let f = &r.findings[0];
        assert_eq!(
            (f.function.as_str(), f.panic, f.score, &f.lines[..]),
            ("app::lookup", Some(PanicKind::Unwrap), 16, &[2, 3][..])
        );
        assert_eq!(f.sites, ["app::lookup@2", "app::lookup@3"]);
        assert_eq!(r.functions[1].function, "app::element");
        assert_eq!(r.functions[1].score, 6);
    }

    #[test]
    fn rust_crates_come_from_the_path() {
        assert_eq!(rust_crate("app::main", "x.rcgu.o"), "app");
        assert_eq!(
            rust_crate("<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop", "x"),
            "alloc"
        );
        assert_eq!(
            rust_crate("core::ptr::drop_in_place<std::io::Error>", "x"),
            "core"
        );
        // No path: the crate of the codegen unit.
        assert_eq!(
            rust_crate(
                "<&T as core::fmt::Debug>::fmt",
                "crashy-19db.crashy.79b5-cgu.3.rcgu.o"
            ),
            "crashy"
        );
        assert_eq!(
            rust_crate("main", "crashy-19db.crashy.79b5-cgu.3.rcgu.o"),
            "crashy"
        );
        assert_eq!(
            rust_crate("main", "libapp-1234.rlib(app-1234.app.5-cgu.0.rcgu.o)"),
            "app"
        );
    }

    #[test]
    fn the_table_shows_findings_deadlocks_recursion_and_units() {
        let r = analyse(&bugs());
        let t = render_table(&r, 20);
        assert!(
            t.starts_with("assail app: 6 functions, 5 with findings"),
            "{t}"
        );
        for needle in [
            "   1    100  worker_ab",
            "main.c:67",
            "deadlock (100)",
            "potential deadlocks",
            "worker_ab takes lock:global:a (main.c:68) then lock:global:b (70)",
            "descend calls itself, 284 B of stack per round",
            "buffer_op (15)",
            "/src/build/main.o (c)",
        ] {
            assert!(t.contains(needle), "{needle}\n{t}");
        }
        let t = render_table(&r, 2);
        assert!(t.contains("... 3 more (--top N)"), "{t}");
        assert!(!t.contains("  grow  "), "{t}");
        let small = top(&r, 2);
        assert_eq!(small.functions.len(), 2);
        assert!(
            small
                .findings
                .iter()
                .all(|f| f.function.starts_with("worker_"))
        );
        assert_eq!(small.deadlocks, r.deadlocks);
        assert!(render_table(&analyse(&manifest(vec![])), 5).contains("no findings"));
    }

    #[test]
    fn the_suggested_timeline_aims_at_the_top_risks_and_validates() {
        let m = bugs();
        let r = analyse(&m);
        let yaml = suggest_timeline(&r, &m, 20);
        let t = Timeline::parse(&yaml, "suggested.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(t.duration_ns, 4 * 15 * 1_000_000_000, "{yaml}");
        // The lock cycle: one CPU and spinners, first.
        assert!(
            yaml.contains("{id: one-cpu, at: 0s, for: 15s, intensity: 1, args: {via: cpuset}}"),
            "{yaml}"
        );
        assert!(yaml.contains("{id: contention, at: 0s,"), "{yaml}");
        // Recursion, then the loop's allocations under a limit.
        assert!(yaml.contains("{id: stack-pressure, at: 15s,"), "{yaml}");
        assert!(
            yaml.contains(
                "{id: memory-limit, at: 30s, for: 15s, intensity: 64MiB, args: {via: limit}}"
            ),
            "{yaml}"
        );
        // fill's unchecked malloc is site #7.
        assert_eq!(m.sites[7].function, "fill");
        assert!(
            yaml.contains("args: {via: fail-alloc, sites: '#7', nth: 1}"),
            "{yaml}"
        );
        assert!(yaml.contains("oom_kills == 0"), "{yaml}");
        // Nothing found: still a valid timeline.
        let empty = manifest(vec![entry("f", 1, &[], Risks::default())]);
        let yaml = suggest_timeline(&analyse(&empty), &empty, 20);
        Timeline::parse(&yaml, "empty.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    }

    #[test]
    fn async_and_file_faults_select_their_sites() {
        let mut read = call(
            "app::handler::{{closure}}",
            SiteKind::Blocking,
            7,
            "std::fs::read",
        );
        read.fault = Some(FaultPoint::File);
        let m = manifest(vec![
            entry(
                "app::handler::{{closure}}",
                5,
                &[],
                Risks {
                    blocking_in_async: vec![7],
                    buffer_ops: vec![8],
                    ..Risks::default()
                },
            ),
            read,
        ]);
        let r = analyse(&m);
        assert_eq!(r.functions[0].score, 35);
        let yaml = suggest_timeline(&r, &m, 20);
        Timeline::parse(&yaml, "t.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert!(
            yaml.contains("args: {via: fail-io, sites: '#1', errno: EIO}"),
            "{yaml}"
        );
        assert!(yaml.contains("args: {via: fill}"), "{yaml}");
        assert!(yaml.contains("args: {via: quota}"), "{yaml}");
        assert!(yaml.contains("args: {via: eintr, sites: '#1'}"), "{yaml}");
    }
}
