//! The dependence graph of a program: which resources and shared objects its
//! regions use together.
//!
//! Input: what the pass recorded per function (its direct callees and what it
//! touches directly: resources such as `memory` or `io`, and shared objects such
//! as `global:COUNTER` or `lock:global:POOL`), and optionally which functions
//! actually ran.
//!
//! Regions follow the dwell semantics (DESIGN §4): the runtime attributes a
//! thread's time to its innermost instrumented region, so a region is a *root*
//! function together with every function it reaches through calls without
//! passing another root. Roots are the timed functions (the dwell regions) and
//! the functions nothing instrumented calls (`main`, thread entry points,
//! callbacks). A function reachable from two roots belongs to both regions.
//! Every region makes the set of things it touches a clique: an edge joins two
//! vertices that one region uses together. A lock that lives in a global
//! (`lock:global:X`) is the object `global:X`: one vertex, however the region
//! uses it.
//!
//! Invariants: pure (no IO); vertices are named by the recorded strings and
//! numbered in sorted order, regions are listed by root name, so the same input
//! gives the same graph; nothing recurses (call graphs can be deep).

use std::collections::{BTreeMap, BTreeSet};

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, NodeFiltered};
use serde::Serialize;

use crate::graph::Graph;

/// What the pass recorded for one function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionUse {
    /// Demangled name, as the manifest spells it.
    pub name: String,
    /// Whether its entry is a timed site (a dwell region of its own).
    pub timed: bool,
    /// Functions it calls directly (names; unknown ones are ignored).
    pub callees: Vec<String>,
    /// What it touches directly.
    pub touches: Vec<String>,
}

/// One region: a root and what it and its callees touch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Region {
    pub root: String,
    /// Why this function is a root: `timed`, `entry` (nothing calls it) or
    /// `unreached` (only called from a cycle no other region reaches).
    pub kind: &'static str,
    /// Functions in the region, the root included.
    pub functions: usize,
    /// Vertices (graph ids) the region touches, sorted.
    pub touches: Vec<u32>,
}

/// The graph and the regions that made its edges.
#[derive(Clone, Debug)]
pub struct DependenceGraph {
    pub graph: Graph,
    pub regions: Vec<Region>,
    /// Functions considered (after the profile restriction).
    pub functions: usize,
}

impl DependenceGraph {
    /// The roots of the regions that use both `u` and `v` (the regions that
    /// put the edge `u v` into the graph), in name order.
    pub fn regions_using(&self, u: u32, v: u32) -> Vec<&str> {
        self.regions
            .iter()
            .filter(|r| r.touches.binary_search(&u).is_ok() && r.touches.binary_search(&v).is_ok())
            .map(|r| r.root.as_str())
            .collect()
    }
}

/// The vertex a touch names: a lock in a global is that global.
fn object_of(touch: &str) -> &str {
    match touch.strip_prefix("lock:") {
        Some(rest) if rest.starts_with("global:") => rest,
        _ => touch,
    }
}

/// Builds the dependence graph. With `ran`, only functions for which it returns
/// true take part (a profile's view: what actually ran).
pub fn build(functions: &[FunctionUse], ran: Option<&dyn Fn(&str) -> bool>) -> DependenceGraph {
    // Functions by name; a name recorded twice (two objects) merges its records.
    let mut by_name: BTreeMap<&str, (bool, BTreeSet<&str>, BTreeSet<&str>)> = BTreeMap::new();
    for f in functions {
        if ran.is_some_and(|ran| !ran(&f.name)) {
            continue;
        }
        let e = by_name.entry(f.name.as_str()).or_default();
        e.0 |= f.timed;
        e.1.extend(f.callees.iter().map(String::as_str));
        e.2.extend(f.touches.iter().map(|t| object_of(t)));
    }
    let names: Vec<&str> = by_name.keys().copied().collect();
    let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    // The call graph over the functions considered (unknown callees dropped).
    let mut calls: DiGraph<(), ()> = DiGraph::with_capacity(names.len(), 0);
    for _ in &names {
        calls.add_node(());
    }
    for (caller, (_, cs, _)) in by_name.values().enumerate() {
        for c in cs.iter().filter_map(|c| index.get(c)) {
            if *c != caller {
                calls.add_edge(NodeIndex::new(caller), NodeIndex::new(*c), ());
            }
        }
    }
    let called: Vec<bool> = calls
        .node_indices()
        .map(|f| {
            calls
                .neighbors_directed(f, Direction::Incoming)
                .next()
                .is_some()
        })
        .collect();
    let timed: Vec<bool> = by_name.values().map(|(t, _, _)| *t).collect();

    // Vertices: every touched name, sorted.
    let vertex_names: BTreeSet<&str> = by_name
        .values()
        .flat_map(|(_, _, ts)| ts.iter().copied())
        .collect();
    let vertex: BTreeMap<&str, u32> = vertex_names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, i as u32))
        .collect();
    let touches: Vec<Vec<u32>> = by_name
        .values()
        .map(|(_, _, ts)| ts.iter().map(|t| vertex[t]).collect())
        .collect();

    let mut regions = Vec::new();
    let mut seen = vec![usize::MAX; names.len()];
    // A second pass makes a root of every function no region reached (code
    // only called through cycles of its own, e.g. mutually recursive callbacks),
    // so nothing a function touches is left out.
    let order = (0..names.len())
        .map(|f| (false, f))
        .chain((0..names.len()).map(|f| (true, f)));
    for (second, root) in order {
        let kind = if second {
            if seen[root] != usize::MAX {
                continue;
            }
            "unreached"
        } else if timed[root] {
            "timed"
        } else if !called[root] {
            "entry"
        } else {
            continue;
        };
        // Petgraph's DFS is iterative; the filter keeps it out of other roots
        // (and, for the leftover roots, out of code a region already has).
        let is_root = |f: usize| timed[f] || !called[f];
        let claimed = |f: usize| second && seen[f] != usize::MAX;
        let enter = |f: NodeIndex| {
            let f = f.index();
            f == root || !(is_root(f) || claimed(f))
        };
        let region = NodeFiltered::from_fn(&calls, enter);
        let mut dfs = Dfs::new(&region, NodeIndex::new(root));
        let mut members = Vec::new();
        let mut used = BTreeSet::new();
        while let Some(f) = dfs.next(&region) {
            members.push(f.index());
            used.extend(touches[f.index()].iter().copied());
        }
        for &f in &members {
            seen[f] = root;
        }
        let members = members.len();
        regions.push(Region {
            root: names[root].to_string(),
            kind,
            functions: members,
            touches: used.into_iter().collect(),
        });
    }

    let mut edges = BTreeSet::new();
    for r in &regions {
        for (i, &u) in r.touches.iter().enumerate() {
            for &v in &r.touches[i + 1..] {
                edges.insert((u, v));
            }
        }
    }
    let edges: Vec<(u32, u32)> = edges.into_iter().collect();
    let graph = Graph::from_edges(vertex_names.iter().map(|s| s.to_string()).collect(), &edges);
    DependenceGraph {
        graph,
        regions,
        functions: names.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, timed: bool, callees: &[&str], touches: &[&str]) -> FunctionUse {
        FunctionUse {
            name: name.into(),
            timed,
            callees: callees.iter().map(|s| s.to_string()).collect(),
            touches: touches.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn edge_names(d: &DependenceGraph) -> Vec<(String, String)> {
        d.graph
            .edges()
            .map(|(u, v)| (d.graph.name(u).to_string(), d.graph.name(v).to_string()))
            .collect()
    }

    #[test]
    fn regions_stop_at_timed_callees() {
        // main -> handle (timed) -> parse; main -> log. handle's use of memory
        // and the lock is its own region's, not main's.
        let d = build(
            &[
                f("main", false, &["handle", "log"], &["cpu"]),
                f(
                    "handle",
                    true,
                    &["parse"],
                    &["lock:global:POOL", "global:POOL"],
                ),
                f("parse", false, &[], &["memory"]),
                f("log", false, &[], &["io"]),
            ],
            None,
        );
        let roots: Vec<_> = d
            .regions
            .iter()
            .map(|r| (r.root.as_str(), r.kind, r.functions))
            .collect();
        assert_eq!(roots, vec![("handle", "timed", 2), ("main", "entry", 2)]);
        assert_eq!(
            edge_names(&d),
            vec![
                ("cpu".to_string(), "io".to_string()),
                ("global:POOL".to_string(), "memory".to_string())
            ]
        );
        let (u, v) = d.graph.edges().next().expect("an edge");
        assert_eq!(d.regions_using(u, v), vec!["main"]);
    }

    #[test]
    fn a_profile_drops_what_did_not_run() {
        let funcs = [
            f("main", false, &["a", "b"], &[]),
            f("a", false, &[], &["global:X", "global:Y"]),
            f("b", false, &[], &["global:Y", "global:Z"]),
        ];
        assert_eq!(build(&funcs, None).graph.m(), 3);
        let only_a = |n: &str| n != "b";
        let d = build(&funcs, Some(&only_a));
        assert_eq!(
            edge_names(&d),
            vec![("global:X".to_string(), "global:Y".to_string())]
        );
        assert_eq!(d.functions, 2);
    }

    #[test]
    fn recursion_and_long_call_chains_terminate_without_recursion() {
        let n = 200_000;
        let mut funcs: Vec<FunctionUse> = (0..n)
            .map(|i| {
                let next = format!("f{}", (i + 1) % n);
                f(&format!("f{i}"), false, &[next.as_str()], &[])
            })
            .collect();
        funcs[7].touches = vec!["global:A".into()];
        funcs[n - 1].touches = vec!["global:B".into()];
        // A cycle with no entry: its first function becomes an `unreached` root.
        let d = build(&funcs, None);
        assert_eq!(d.regions.len(), 1);
        assert_eq!(
            (d.regions[0].kind, d.regions[0].functions),
            ("unreached", n)
        );
        funcs.push(f("main", false, &["f0"], &[]));
        let d = build(&funcs, None);
        assert_eq!(d.regions.len(), 1);
        assert_eq!(d.regions[0].functions, n + 1);
        assert_eq!(
            edge_names(&d),
            vec![("global:A".to_string(), "global:B".to_string())]
        );
    }

    #[test]
    fn a_four_cycle_of_regions_is_not_chordal() {
        // Four timed handlers, each coupling two neighbouring locks: C4.
        let d = build(
            &[
                f("h1", true, &[], &["lock:a", "lock:b"]),
                f("h2", true, &[], &["lock:b", "lock:c"]),
                f("h3", true, &[], &["lock:c", "lock:d"]),
                f("h4", true, &[], &["lock:d", "lock:a"]),
            ],
            None,
        );
        assert_eq!(d.graph.m(), 4);
        match crate::chordal::check(&d.graph) {
            crate::chordal::Chordality::NotChordal(w) => {
                assert_eq!(w.cycle.len(), 4);
                let c = &w.cycle;
                let mut who: Vec<&str> = (0..4)
                    .flat_map(|i| d.regions_using(c[i], c[(i + 1) % 4]))
                    .collect();
                who.sort_unstable();
                assert_eq!(who, vec!["h1", "h2", "h3", "h4"]);
            }
            other => panic!("expected a chordless cycle, got {other:?}"),
        }
    }
}
