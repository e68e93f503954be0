//! Maximum cardinality search (Tarjan and Yannakakis 1984) in O(V+E), with
//! the perfect-elimination test and the clique tree folded into the same pass.
//!
//! MCS visits vertices one at a time, always one with the most visited
//! neighbours. The reverse of the visit order is a perfect elimination
//! ordering exactly when the graph is chordal.
//!
//! Buckets by weight are stacks with lazy deletion: raising a vertex's weight
//! pushes it again one bucket up and leaves a stale entry below, recognised on
//! pop because its recorded weight no longer matches. Every edge pushes at most
//! once, so the stacks hold at most V+E entries in all, and the walk down to
//! the next non-empty bucket is paid for by the pushes that went up.
//!
//! When a vertex `v` is visited its neighbour list is scanned anyway, to raise
//! the weights of the unvisited ones; the visited ones are `v`'s later
//! neighbours in the elimination order, and the last visited of them is its
//! parent. So the parent test of [`is_peo`](super::is_peo) runs right there
//! (the parent was visited recently, so its list is likely still in cache),
//! and so does the clique construction of Blair and Peyton (1993) described in
//! the module above. One pass over the graph instead of three; the separate
//! [`is_peo`](super::is_peo) stays the checker of record.
//!
//! No recursion, no per-vertex allocation.

use super::{CliqueTree, VertexSets};
use crate::graph::Graph;

/// Marks a visited vertex in `state`; the low bits then hold its visit index.
/// Unvisited vertices hold their weight, which stays below it.
const VISITED: u32 = 1 << 31;
const NONE: u32 = u32::MAX;

/// What one search found.
pub(crate) struct Search {
    /// The visit order: `visit[0]` is visited first.
    pub visit: Vec<u32>,
    /// Each vertex's position in the elimination order (the reverse of
    /// `visit`).
    pub pos: Vec<u32>,
    /// The first vertex, in visit order, whose visited neighbours are not a
    /// clique: `(vertex, parent, missing)` as in
    /// [`PeoViolation::NotSimplicial`](super::PeoViolation::NotSimplicial).
    /// Only looked for when certifying.
    pub violation: Option<(u32, u32, u32)>,
    /// Every vertex that fails the parent test, in visit order, when
    /// certifying: where the elimination game along this order starts to
    /// fill.
    pub violators: Vec<u32>,
    /// The maximal cliques, when certifying and the graph is chordal.
    pub cliques: VertexSets,
    /// The clique tree over `cliques`, likewise.
    pub tree: CliqueTree,
}

/// Runs MCS; with `certify`, also the parent test on every vertex and, while
/// it holds, the maximal cliques and clique tree. Ties go to the most
/// recently raised vertex, and the search starts at vertex 0 (each new
/// component at its lowest unvisited id), so the result is deterministic.
pub(crate) fn search(g: &Graph, certify: bool) -> Search {
    let n = g.n();
    assert!(n < VISITED as usize, "MCS handles fewer than 2^31 vertices");
    let mut state = vec![0u32; n];
    let mut buckets: Vec<Vec<u32>> = vec![(0..n as u32).rev().collect()];
    let mut top = 0usize;
    let mut visit = Vec::with_capacity(n);
    let mut violation = None;
    let mut violators = Vec::new();
    // Room for the worst case (a clique per vertex, each of its visited
    // neighbours and itself): untouched capacity is never paged in.
    let (mut cliques, mut tree) = if certify {
        (
            VertexSets::with_capacity(n, n + g.m()),
            CliqueTree::with_capacity(n, g.m()),
        )
    } else {
        (VertexSets::new(), CliqueTree::default())
    };
    let mut clique_of: Vec<u32> = if certify { vec![NONE; n] } else { Vec::new() };
    let mut earlier: Vec<u32> = Vec::new();
    let mut prev_card = 0usize;
    for i in 0..n as u32 {
        let v = loop {
            match buckets[top].pop() {
                Some(x) if state[x as usize] as usize == top => break x,
                Some(_) => {}
                None => top -= 1,
            }
        };
        state[v as usize] = VISITED | i;
        visit.push(v);
        earlier.clear();
        let mut parent = NONE;
        let mut parent_state = 0u32;
        for &x in g.neighbors(v) {
            let s = state[x as usize];
            if s & VISITED != 0 {
                if certify {
                    earlier.push(x);
                    if s > parent_state {
                        parent_state = s;
                        parent = x;
                    }
                }
            } else {
                let w = s as usize + 1;
                state[x as usize] = w as u32;
                if w == buckets.len() {
                    buckets.push(Vec::new());
                }
                buckets[w].push(x);
                top = top.max(w);
            }
        }
        if !certify {
            continue;
        }
        if parent != NONE {
            let pn = g.neighbors(parent);
            if let Some(&missing) = earlier
                .iter()
                .find(|&&y| y != parent && pn.binary_search(&y).is_err())
            {
                if violation.is_none() {
                    violation = Some((v, parent, missing));
                    cliques = VertexSets::new();
                    tree = CliqueTree::default();
                    clique_of = Vec::new();
                }
                violators.push(v);
                continue;
            }
        }
        if violation.is_some() {
            continue;
        }
        // A visited-neighbour count that did not grow starts a new maximal
        // clique; one that grew (by one, onto the previous vertex) extends it.
        let card = earlier.len();
        if i == 0 || card <= prev_card {
            let k = cliques.len() as u32;
            cliques.push(&earlier);
            cliques.extend_last(v);
            if parent != NONE {
                tree.push(k, clique_of[parent as usize], &earlier);
            }
        } else {
            debug_assert!(card == prev_card + 1 && earlier.contains(&visit[i as usize - 1]));
            cliques.extend_last(v);
        }
        clique_of[v as usize] = cliques.len() as u32 - 1;
        prev_card = card;
    }
    // Reuse the state array: visit index i becomes elimination position
    // n - 1 - i.
    for s in &mut state {
        *s = (n as u32 - 1) - (*s & !VISITED);
    }
    Search {
        visit,
        pos: state,
        violation,
        violators,
        cliques,
        tree,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visits_every_vertex_once_with_maximum_weight() {
        // Two triangles sharing an edge, a pendant vertex and an isolated one.
        let g = Graph::with_numbered_vertices(6, &[(0, 1), (1, 2), (0, 2), (1, 3), (2, 3), (3, 4)]);
        let order = search(&g, false).visit;
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2, 3, 4, 5]);
        // Re-check the defining property: each chosen vertex had the largest
        // number of visited neighbours among the unvisited ones.
        let mut visited = [false; 6];
        for &v in &order {
            let w = |x: u32| {
                g.neighbors(x)
                    .iter()
                    .filter(|&&y| visited[y as usize])
                    .count()
            };
            let best = (0..6u32)
                .filter(|&x| !visited[x as usize])
                .map(w)
                .max()
                .unwrap();
            assert_eq!(w(v), best, "vertex {v} was not of maximum weight");
            visited[v as usize] = true;
        }
        assert_eq!(order[0], 0);
    }

    #[test]
    fn certifying_search_finds_the_square() {
        let g = Graph::with_numbered_vertices(4, &[(0, 1), (1, 2), (2, 3), (3, 0)]);
        let s = search(&g, true);
        let (v, parent, missing) = s.violation.expect("C4 is not chordal");
        assert!(g.has_edge(v, parent) && g.has_edge(v, missing) && !g.has_edge(parent, missing));
        assert_eq!(s.violators, vec![v]);
        assert!(s.cliques.is_empty() && s.tree.is_empty());
        for (i, &x) in s.visit.iter().enumerate() {
            assert_eq!(s.pos[x as usize], 3 - i as u32);
        }
    }
}
