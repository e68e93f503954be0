//! Independent checkers for the evidence [`check`](super::check) returns: a
//! caller that does not trust the search can re-check a certificate or a
//! witness with these alone.
//!
//! Each one is the plainest algorithm that decides its property, kept free of
//! the search's data structures; none of them trusts its input to be
//! well-formed (wrong lengths, out-of-range ids and repeats are rejected, not
//! assumed away).

use serde::Serialize;

use crate::graph::Graph;

/// Why an order is not a perfect elimination ordering of a graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PeoViolation {
    /// The order does not list as many vertices as the graph has.
    #[error("the order lists {len} vertices but the graph has {n}")]
    WrongLength {
        /// Entries in the order.
        len: usize,
        /// Vertices in the graph.
        n: usize,
    },
    /// An entry is not a vertex id.
    #[error("position {position} holds {vertex}, which is not a vertex id")]
    OutOfRange {
        /// Index into the order.
        position: usize,
        /// The bad id.
        vertex: u32,
    },
    /// A vertex is listed twice.
    #[error("vertex {vertex} is listed at positions {first} and {second}")]
    Repeated {
        /// The repeated vertex.
        vertex: u32,
        /// Its first position.
        first: usize,
        /// Its second position.
        second: usize,
    },
    /// The later neighbours of `vertex` are not a clique: `parent`, the first
    /// of them to be eliminated, is not adjacent to `missing`, another one.
    #[error(
        "vertex {vertex} is not simplicial when eliminated: its later neighbours {parent} and {missing} are not adjacent"
    )]
    NotSimplicial {
        /// The vertex whose later neighbourhood is not a clique.
        vertex: u32,
        /// Its earliest-eliminated later neighbour.
        parent: u32,
        /// A later neighbour not adjacent to `parent`.
        missing: u32,
    },
}

/// Checks that `order` (`order[0]` eliminated first) is a perfect elimination
/// ordering of `g`: every vertex's later neighbours form a clique.
///
/// The classic parent test (Rose, Tarjan and Lueker 1976; Tarjan and
/// Yannakakis 1984), and nothing more: `order` must list every vertex once;
/// then for each vertex `v` let `later(v)` be its neighbours placed after it
/// and `parent(v)` the earliest of them, and fail when some `w` in `later(v)`
/// other than the parent is not in the parent's neighbour list. Soundness:
/// if every vertex passes, then by induction from the last vertex down,
/// `later(v) \ {parent}` lies inside `later(parent)`, a clique, and every
/// member is adjacent to the parent, so `later(v)` is a clique, and a graph
/// with such an order has no chordless cycle of length 4 or more.
///
/// This function is the one the machine-checked proof in `proofs/peo.v`
/// covers (`is_peo` there, theorem `is_peo_no_chordless_cycle`): the same
/// bijection test, the same `later`, `parent` and per-vertex check, with
/// membership in the parent's neighbour list decided by binary search on the
/// sorted list instead of a linear scan. Vertices are checked in id order,
/// which streams through the adjacency arrays; the verdict does not depend on
/// the order in which vertices are checked, only which failure is reported.
/// Keep it this simple.
///
/// O(V + E log Δ) time, O(V) memory.
pub fn is_peo(g: &Graph, order: &[u32]) -> Result<(), PeoViolation> {
    let n = g.n();
    if order.len() != n {
        return Err(PeoViolation::WrongLength {
            len: order.len(),
            n,
        });
    }
    // Positions fit in u32: a graph has fewer than 2^31 vertices.
    let mut pos = vec![u32::MAX; n];
    for (i, &v) in order.iter().enumerate() {
        let Some(slot) = pos.get_mut(v as usize) else {
            return Err(PeoViolation::OutOfRange {
                position: i,
                vertex: v,
            });
        };
        if *slot != u32::MAX {
            return Err(PeoViolation::Repeated {
                vertex: v,
                first: *slot as usize,
                second: i,
            });
        }
        *slot = i as u32;
    }
    for v in 0..n as u32 {
        let here = pos[v as usize];
        let parent = g
            .neighbors(v)
            .iter()
            .copied()
            .filter(|&x| pos[x as usize] > here)
            .min_by_key(|&x| pos[x as usize]);
        let Some(parent) = parent else { continue };
        let parent_nbrs = g.neighbors(parent);
        for &w in g.neighbors(v) {
            if w != parent && pos[w as usize] > here && parent_nbrs.binary_search(&w).is_err() {
                return Err(PeoViolation::NotSimplicial {
                    vertex: v,
                    parent,
                    missing: w,
                });
            }
        }
    }
    Ok(())
}

/// Whether `cycle` is a chordless cycle of `g` of length at least 4: distinct
/// vertex ids, consecutive entries adjacent (and the last adjacent to the
/// first), and no other edge of `g` between any two of them.
pub fn is_chordless_cycle(g: &Graph, cycle: &[u32]) -> bool {
    let len = cycle.len();
    if len < 4 {
        return false;
    }
    let mut member = vec![false; g.n()];
    for &v in cycle {
        match member.get_mut(v as usize) {
            Some(seen) if !*seen => *seen = true,
            _ => return false,
        }
    }
    let consecutive = (0..len).all(|i| g.has_edge(cycle[i], cycle[(i + 1) % len]));
    // With every consecutive pair adjacent, the cycle is chordless exactly when
    // every member has exactly two neighbours among the members.
    consecutive
        && cycle.iter().all(|&x| {
            let mut inside = 0;
            for &y in g.neighbors(x) {
                inside += member[y as usize] as usize;
            }
            inside == 2
        })
}

/// Whether `tree` (edges between indices into `cliques`) is a forest on the
/// cliques with the running-intersection property: for every vertex, the
/// cliques containing it form one connected subtree.
///
/// Rejects edges that name a missing clique, loops, repeated edges and cycles.
/// The check roots every tree and counts, for each vertex, the cliques that
/// contain it while their parent does not: a subtree is connected exactly
/// when that count is one. O(S log S) for S the total clique size.
pub fn has_running_intersection<I>(cliques: I, tree: &[(u32, u32)]) -> bool
where
    I: IntoIterator,
    I::Item: AsRef<[u32]>,
{
    // Sorted, deduplicated copies of the cliques for membership tests.
    let mut offsets = vec![0usize];
    let mut members: Vec<u32> = Vec::new();
    for c in cliques {
        let from = members.len();
        members.extend_from_slice(c.as_ref());
        members[from..].sort_unstable();
        let mut write = from;
        for i in from..members.len() {
            if i == from || members[i] != members[write - 1] {
                members[write] = members[i];
                write += 1;
            }
        }
        members.truncate(write);
        offsets.push(members.len());
    }
    let k = offsets.len() - 1;
    if tree.len() >= k.max(1) {
        // A forest on k nodes has at most k - 1 edges.
        return false;
    }
    if tree
        .iter()
        .any(|&(a, b)| a == b || a as usize >= k || b as usize >= k)
    {
        return false;
    }
    // Tree adjacency in CSR form.
    let mut start = vec![0usize; k + 1];
    for &(a, b) in tree {
        start[a as usize + 1] += 1;
        start[b as usize + 1] += 1;
    }
    for i in 0..k {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut nbr = vec![0u32; 2 * tree.len()];
    for &(a, b) in tree {
        nbr[fill[a as usize]] = b;
        fill[a as usize] += 1;
        nbr[fill[b as usize]] = a;
        fill[b as usize] += 1;
    }
    // Root every component; meeting a visited node other than the parent, or
    // the parent twice, means a cycle.
    const NONE: u32 = u32::MAX;
    let mut parent = vec![NONE; k];
    let mut seen = vec![false; k];
    let mut stack = Vec::new();
    for root in 0..k {
        if seen[root] {
            continue;
        }
        seen[root] = true;
        stack.push(root as u32);
        while let Some(x) = stack.pop() {
            let mut parent_edges = 0;
            for &y in &nbr[start[x as usize]..start[x as usize + 1]] {
                if y == parent[x as usize] {
                    parent_edges += 1;
                    if parent_edges > 1 {
                        return false;
                    }
                } else if seen[y as usize] {
                    return false;
                } else {
                    seen[y as usize] = true;
                    parent[y as usize] = x;
                    stack.push(y);
                }
            }
        }
    }
    // For each vertex, count the cliques holding it whose parent does not: a
    // dense counter when ids are not much larger than the input, else a map.
    let clique = |i: usize| &members[offsets[i]..offsets[i + 1]];
    let max_id = members.iter().copied().max().unwrap_or(0) as usize;
    let mut dense = (max_id <= 4 * members.len() + 1024).then(|| vec![false; max_id + 1]);
    let mut sparse: rustc_hash::FxHashSet<u32> = rustc_hash::FxHashSet::default();
    for (i, &up) in parent.iter().enumerate() {
        for &x in clique(i) {
            let inherited = up != NONE && clique(up as usize).binary_search(&x).is_ok();
            if inherited {
                continue;
            }
            let fresh = match dense.as_mut() {
                Some(tops) => !std::mem::replace(&mut tops[x as usize], true),
                None => sparse.insert(x),
            };
            if !fresh {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square() -> Graph {
        Graph::with_numbered_vertices(4, &[(0, 1), (1, 2), (2, 3), (3, 0)])
    }

    #[test]
    fn is_peo_accepts_a_peo_and_names_the_failure_otherwise() {
        // A triangle with a pendant vertex: eliminating the pendant first works.
        let g = Graph::with_numbered_vertices(4, &[(0, 1), (1, 2), (0, 2), (2, 3)]);
        assert_eq!(is_peo(&g, &[3, 0, 1, 2]), Ok(()));
        // Eliminating 2 first: its later neighbours 0 and 3 are not adjacent.
        assert_eq!(
            is_peo(&g, &[2, 0, 1, 3]),
            Err(PeoViolation::NotSimplicial {
                vertex: 2,
                parent: 0,
                missing: 3
            })
        );
        assert!(matches!(
            is_peo(&square(), &[0, 1, 2, 3]),
            Err(PeoViolation::NotSimplicial { vertex: 0, .. })
        ));
    }

    #[test]
    fn is_peo_rejects_malformed_orders() {
        let g = square();
        assert_eq!(
            is_peo(&g, &[0, 1, 2]),
            Err(PeoViolation::WrongLength { len: 3, n: 4 })
        );
        assert_eq!(
            is_peo(&g, &[0, 1, 2, 9]),
            Err(PeoViolation::OutOfRange {
                position: 3,
                vertex: 9
            })
        );
        assert_eq!(
            is_peo(&g, &[0, 1, 0, 3]),
            Err(PeoViolation::Repeated {
                vertex: 0,
                first: 0,
                second: 2
            })
        );
    }

    #[test]
    fn chordless_cycle_checker() {
        let g = square();
        assert!(is_chordless_cycle(&g, &[0, 1, 2, 3]));
        assert!(is_chordless_cycle(&g, &[2, 1, 0, 3]));
        assert!(
            !is_chordless_cycle(&g, &[0, 2, 1, 3]),
            "0 and 2 are not adjacent"
        );
        assert!(!is_chordless_cycle(&g, &[0, 1, 2]), "too short");
        assert!(
            !is_chordless_cycle(&g, &[0, 1, 2, 3, 0, 1, 2, 3]),
            "repeats"
        );
        let chorded = g.with_added_edges(&[(0, 2)]);
        assert!(!is_chordless_cycle(&chorded, &[0, 1, 2, 3]));
    }

    #[test]
    fn running_intersection_checker() {
        let cliques = [vec![0, 1], vec![1, 2], vec![2, 3]];
        assert!(has_running_intersection(&cliques, &[(0, 1), (1, 2)]));
        // Vertex 1's cliques 0 and 1 are split by clique 2 on the path 0-2-1.
        let cliques2 = [vec![0, 1], vec![1, 2], vec![0, 3]];
        assert!(!has_running_intersection(&cliques2, &[(0, 2), (2, 1)]));
        assert!(has_running_intersection(&cliques2, &[(0, 1), (0, 2)]));
        // Disconnected: vertex 1 in two trees of the forest.
        assert!(!has_running_intersection(&cliques, &[(1, 2)]));
        // Not a forest, or not edges between cliques.
        assert!(!has_running_intersection(
            &cliques,
            &[(0, 1), (1, 2), (2, 0)]
        ));
        assert!(!has_running_intersection(&cliques, &[(0, 1), (0, 1)]));
        assert!(!has_running_intersection(&cliques, &[(0, 3)]));
        assert!(!has_running_intersection(&cliques, &[(1, 1)]));
        // Few enough edges for a forest, but a cycle and an isolated clique.
        let shared = [vec![1], vec![1], vec![1], vec![2]];
        assert!(!has_running_intersection(
            &shared,
            &[(0, 1), (1, 2), (2, 0)]
        ));
        assert!(has_running_intersection(&shared, &[(0, 1), (1, 2)]));
        let none: [Vec<u32>; 0] = [];
        assert!(has_running_intersection(&none, &[]));
        assert!(!has_running_intersection(&none, &[(0, 0)]));
    }
}
