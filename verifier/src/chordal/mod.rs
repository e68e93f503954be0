//! Chordality with evidence, in linear time.
//!
//! [`check`] runs maximum cardinality search (MCS) and, in the same pass over
//! the graph, the parent test of [`is_peo`] on the reverse of the visit
//! order. Tarjan and Yannakakis (1984): the order passes exactly when the
//! graph is chordal. [`is_peo`] itself stays a separate, plain function for
//! re-checking a certificate (debug builds re-check every one).
//!
//! - Chordal: the certificate is the perfect elimination ordering, the maximal
//!   cliques, a clique tree (a forest when the graph is disconnected) with the
//!   running-intersection property, and the treewidth. Cliques and tree come
//!   from the MCS visit order in one pass (Blair and Peyton 1993): a vertex
//!   whose visited-neighbour count did not grow over its predecessor's starts a
//!   new maximal clique, made of itself and its visited neighbours, and joins
//!   the tree at the clique of its last-visited neighbour; any other vertex
//!   extends the current clique.
//! - Not chordal: the witness is a chordless cycle of length at least 4 and a
//!   minimal triangulation (see [`triangulate()`]). When the parent test fails at
//!   `v`, with parent `u` and another later neighbour `w` not adjacent to `u`,
//!   the cycle is `v` plus a shortest `w`–`u` path in G minus
//!   `N[v] \ {u, w}`: a shortest path is induced, its inner vertices miss
//!   `N(v)`, and `u`, `w` are not adjacent, so the cycle is chordless and has
//!   length at least 4 (certifying recognition after Tarjan and Yannakakis
//!   1985, Heggernes and Kratsch 2007). The path exists because `v` is the
//!   last vertex of an MCS of the subgraph induced by `v` and the vertices
//!   visited before it (a prefix of an MCS is an MCS of what it induces), and
//!   the last vertex of an MCS is avoidable (Berry and Bordat 1998; Beisegel et
//!   al. 2019): any two non-adjacent neighbours of it are joined by a path
//!   avoiding its other neighbours. (This was also checked by brute force for
//!   every MCS order, all tie-breaks, of every graph on up to 7 vertices; the
//!   tests run [`check`] on every graph with up to 6 vertices, and [`check`]
//!   asserts that the path exists.)
//!
//! Invariants: O(V+E) time and memory for the verdict (the fill-in has its own
//! bounds, [`ChordalConfig`]); no recursion anywhere, so a path or cycle of
//! millions of vertices runs on a default thread stack; no per-vertex
//! allocation on the way to a verdict (cliques and separators are stored flat,
//! [`VertexSets`]); deterministic output for a given graph. Vertex ids are the
//! graph's; the caller maps them to names with [`Graph::name`].

mod search;
mod triangulate;
mod verify;

use std::ops::Index;

use serde::{Serialize, Serializer};

use crate::graph::Graph;

pub use triangulate::{FillAlgorithm, FillLimits, FillNotComputed, mcs_m, pruned_elimination_fill};
pub use verify::{PeoViolation, has_running_intersection, is_chordless_cycle, is_peo};

/// A list of vertex sets stored flat: one offsets array and one members array,
/// so a million small cliques cost two allocations. Serialises as a list of
/// lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VertexSets {
    /// Set `i` is `members[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<usize>,
    members: Vec<u32>,
}

impl Default for VertexSets {
    fn default() -> VertexSets {
        VertexSets::new()
    }
}

impl VertexSets {
    /// No sets.
    pub fn new() -> VertexSets {
        VertexSets {
            offsets: vec![0],
            members: Vec::new(),
        }
    }

    /// No sets, with room for `sets` sets of `members` members in all.
    pub fn with_capacity(sets: usize, members: usize) -> VertexSets {
        let mut offsets = Vec::with_capacity(sets + 1);
        offsets.push(0);
        VertexSets {
            offsets,
            members: Vec::with_capacity(members),
        }
    }

    /// The number of sets.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether there are no sets.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Set `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&[u32]> {
        (i < self.len()).then(|| &self.members[self.offsets[i]..self.offsets[i + 1]])
    }

    /// The sets in order.
    pub fn iter(&self) -> SetIter<'_> {
        SetIter {
            sets: self,
            next: 0,
        }
    }

    /// The sum of the set sizes.
    pub fn total_len(&self) -> usize {
        self.members.len()
    }

    /// Appends a set.
    pub fn push(&mut self, set: &[u32]) {
        self.members.extend_from_slice(set);
        self.offsets.push(self.members.len());
    }

    /// Adds `v` to the last set.
    fn extend_last(&mut self, v: u32) {
        self.members.push(v);
        *self.offsets.last_mut().expect("offsets starts with 0") = self.members.len();
    }

    /// The sets as nested vectors.
    pub fn to_vecs(&self) -> Vec<Vec<u32>> {
        self.iter().map(<[u32]>::to_vec).collect()
    }
}

impl Index<usize> for VertexSets {
    type Output = [u32];

    fn index(&self, i: usize) -> &[u32] {
        self.get(i).expect("set index out of range")
    }
}

impl<S: AsRef<[u32]>> FromIterator<S> for VertexSets {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> VertexSets {
        let mut sets = VertexSets::new();
        for s in iter {
            sets.push(s.as_ref());
        }
        sets
    }
}

/// Iterator over the sets of a [`VertexSets`].
#[derive(Clone, Debug)]
pub struct SetIter<'a> {
    sets: &'a VertexSets,
    next: usize,
}

impl<'a> Iterator for SetIter<'a> {
    type Item = &'a [u32];

    fn next(&mut self) -> Option<&'a [u32]> {
        let set = self.sets.get(self.next)?;
        self.next += 1;
        Some(set)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.sets.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for SetIter<'_> {}

impl<'a> IntoIterator for &'a VertexSets {
    type Item = &'a [u32];
    type IntoIter = SetIter<'a>;

    fn into_iter(self) -> SetIter<'a> {
        self.iter()
    }
}

impl Serialize for VertexSets {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// One edge of a clique tree: cliques `a` and `b` (indices into
/// [`ChordalCertificate::cliques`]) and their intersection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CliqueTreeEdge<'a> {
    /// The clique that joined the tree by this edge.
    pub a: u32,
    /// The clique it joined.
    pub b: u32,
    /// `cliques[a] ∩ cliques[b]`, a minimal separator of the graph.
    pub separator: &'a [u32],
}

/// A clique tree (a forest when the graph is disconnected): edges between
/// clique indices, each with its separator. Serialises as a list of
/// `{a, b, separator}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CliqueTree {
    ends: Vec<(u32, u32)>,
    separators: VertexSets,
}

impl CliqueTree {
    /// The number of edges.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are no edges.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Edge `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<CliqueTreeEdge<'_>> {
        let &(a, b) = self.ends.get(i)?;
        Some(CliqueTreeEdge {
            a,
            b,
            separator: &self.separators[i],
        })
    }

    /// The edges in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = CliqueTreeEdge<'_>> + '_ {
        (0..self.len()).map(|i| self.get(i).expect("in range"))
    }

    /// The edges as `(a, b)` pairs, the shape [`has_running_intersection`]
    /// takes.
    pub fn pairs(&self) -> &[(u32, u32)] {
        &self.ends
    }

    /// No edges, with room for `edges` edges whose separators have `members`
    /// members in all.
    fn with_capacity(edges: usize, members: usize) -> CliqueTree {
        CliqueTree {
            ends: Vec::with_capacity(edges),
            separators: VertexSets::with_capacity(edges, members),
        }
    }

    fn push(&mut self, a: u32, b: u32, separator: &[u32]) {
        self.ends.push((a, b));
        self.separators.push(separator);
    }
}

impl Serialize for CliqueTree {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// The evidence that a graph is chordal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChordalCertificate {
    /// A perfect elimination ordering: `peo[0]` is eliminated first, and each
    /// vertex's neighbours later in the order form a clique. Re-check with
    /// [`is_peo`].
    pub peo: Vec<u32>,
    /// The maximal cliques, each exactly once, members in no particular order.
    pub cliques: VertexSets,
    /// A clique tree over `cliques`; re-check with [`has_running_intersection`].
    pub clique_tree: CliqueTree,
    /// The largest clique's size minus one (0 for an edgeless or empty graph).
    pub treewidth: usize,
}

/// A minimal triangulation, or why there is none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Triangulation {
    /// Adding `fill_in` makes the graph chordal, and leaving out any one of
    /// its edges does not.
    Minimal {
        /// The algorithm that produced it.
        algorithm: FillAlgorithm,
        /// The added edges, `(u, v)` with `u < v`, sorted.
        fill_in: Vec<(u32, u32)>,
    },
    /// The fill-in was not computed.
    NotComputed {
        /// Why not.
        reason: FillNotComputed,
    },
}

impl Triangulation {
    /// The fill edges, when computed.
    pub fn fill_in(&self) -> Option<&[(u32, u32)]> {
        match self {
            Triangulation::Minimal { fill_in, .. } => Some(fill_in),
            Triangulation::NotComputed { .. } => None,
        }
    }
}

/// The evidence that a graph is not chordal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotChordalWitness {
    /// A chordless cycle of length at least 4: consecutive vertices (and the
    /// last and the first) are adjacent, no other two are. Re-check with
    /// [`is_chordless_cycle`].
    pub cycle: Vec<u32>,
    /// Which couplings to add to make the graph chordal, minimally.
    pub triangulation: Triangulation,
}

/// The verdict on chordality, always with its evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Chordality {
    /// The graph is chordal.
    Chordal(ChordalCertificate),
    /// The graph is not chordal.
    NotChordal(NotChordalWitness),
}

impl Chordality {
    /// Whether the verdict is "chordal".
    pub fn is_chordal(&self) -> bool {
        matches!(self, Chordality::Chordal(_))
    }
}

/// Which minimal-triangulation algorithm to run for a non-chordal graph.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TriangulationRoute {
    /// MCS-M when `n·(n+m)` is at most [`ChordalConfig::mcs_m_max_work`],
    /// the pruned elimination game otherwise.
    #[default]
    Auto,
    /// Always MCS-M, whatever the size.
    McsM,
    /// Always the pruned elimination game.
    PrunedElimination,
    /// No fill-in.
    Skip,
}

/// Knobs for [`check_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChordalConfig {
    /// Which triangulation algorithm runs.
    pub triangulation: TriangulationRoute,
    /// The largest `n·(n+m)` for which [`TriangulationRoute::Auto`] picks
    /// MCS-M.
    pub mcs_m_max_work: u64,
    /// Bounds on the pruned elimination route.
    pub limits: FillLimits,
}

impl Default for ChordalConfig {
    fn default() -> ChordalConfig {
        ChordalConfig {
            triangulation: TriangulationRoute::Auto,
            mcs_m_max_work: 20_000_000,
            limits: FillLimits::default(),
        }
    }
}

/// Decides whether `g` is chordal and returns the evidence, with the default
/// [`ChordalConfig`].
pub fn check(g: &Graph) -> Chordality {
    check_with(g, &ChordalConfig::default())
}

/// Decides whether `g` is chordal and returns the evidence.
///
/// # Panics
///
/// Never for any graph, by the theorems in the module documentation; an
/// internal inconsistency would panic rather than return false evidence.
pub fn check_with(g: &Graph, config: &ChordalConfig) -> Chordality {
    let found = search::search(g, true);
    let peo: Vec<u32> = found.visit.iter().rev().copied().collect();
    match found.violation {
        None => {
            debug_assert_eq!(is_peo(g, &peo), Ok(()));
            let treewidth = found
                .cliques
                .iter()
                .map(<[u32]>::len)
                .max()
                .unwrap_or(1)
                .max(1)
                - 1;
            Chordality::Chordal(ChordalCertificate {
                peo,
                cliques: found.cliques,
                clique_tree: found.tree,
                treewidth,
            })
        }
        Some((vertex, parent, missing)) => {
            let cycle = chordless_cycle(g, vertex, parent, missing);
            let triangulation = triangulate_along(g, &peo, &found.pos, &found.violators, config);
            Chordality::NotChordal(NotChordalWitness {
                cycle,
                triangulation,
            })
        }
    }
}

/// The reverse of an MCS visit order: a perfect elimination ordering exactly
/// when `g` is chordal, and the order the pruned elimination route eliminates
/// along.
pub fn mcs_elimination_order(g: &Graph) -> Vec<u32> {
    let mut order = search::search(g, false).visit;
    order.reverse();
    order
}

/// A minimal triangulation of `g` by the route `config` picks (empty for a
/// chordal graph).
pub fn triangulate(g: &Graph, config: &ChordalConfig) -> Triangulation {
    let found = search::search(g, true);
    let peo: Vec<u32> = found.visit.iter().rev().copied().collect();
    triangulate_along(g, &peo, &found.pos, &found.violators, config)
}

/// Triangulates along `order`, given each vertex's position in it and the
/// vertices failing the parent test there.
fn triangulate_along(
    g: &Graph,
    order: &[u32],
    pos: &[u32],
    violators: &[u32],
    config: &ChordalConfig,
) -> Triangulation {
    let (n, m) = (g.n() as u64, g.m() as u64);
    let route = match config.triangulation {
        TriangulationRoute::Auto => {
            if n.saturating_mul(n + m) <= config.mcs_m_max_work {
                TriangulationRoute::McsM
            } else {
                TriangulationRoute::PrunedElimination
            }
        }
        other => other,
    };
    match route {
        TriangulationRoute::McsM => Triangulation::Minimal {
            algorithm: FillAlgorithm::McsM,
            fill_in: mcs_m(g),
        },
        TriangulationRoute::PrunedElimination => {
            match triangulate::pruned_fill_with(g, order, pos, violators, &config.limits) {
                Ok(fill_in) => Triangulation::Minimal {
                    algorithm: FillAlgorithm::PrunedElimination,
                    fill_in,
                },
                Err(reason) => Triangulation::NotComputed { reason },
            }
        }
        TriangulationRoute::Skip | TriangulationRoute::Auto => Triangulation::NotComputed {
            reason: FillNotComputed::Skipped,
        },
    }
}

/// A chordless cycle through `v`, given later neighbours `u` and `w` of `v`
/// that are not adjacent: `v`, then a shortest `w`–`u` path avoiding the rest
/// of `N[v]`. Breadth-first, O(V+E).
fn chordless_cycle(g: &Graph, v: u32, u: u32, w: u32) -> Vec<u32> {
    const UNSEEN: u32 = u32::MAX;
    const BANNED: u32 = u32::MAX - 1;
    let mut pred = vec![UNSEEN; g.n()];
    pred[v as usize] = BANNED;
    for &x in g.neighbors(v) {
        pred[x as usize] = BANNED;
    }
    pred[u as usize] = UNSEEN;
    pred[w as usize] = w;
    let mut queue = vec![w];
    let mut head = 0;
    while head < queue.len() && pred[u as usize] == UNSEEN {
        let x = queue[head];
        head += 1;
        for &y in g.neighbors(x) {
            if pred[y as usize] == UNSEEN {
                pred[y as usize] = x;
                queue.push(y);
            }
        }
    }
    assert!(
        pred[u as usize] != UNSEEN,
        "no path closes a chordless cycle at vertex {v}: the MCS order contradicts the avoidable-vertex theorem"
    );
    let mut path = vec![u];
    let mut x = u;
    while x != w {
        x = pred[x as usize];
        path.push(x);
    }
    let mut cycle = Vec::with_capacity(path.len() + 1);
    cycle.push(v);
    cycle.extend(path.iter().rev());
    cycle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_triangles_sharing_an_edge() {
        let g = Graph::with_numbered_vertices(4, &[(0, 1), (1, 2), (0, 2), (1, 3), (2, 3)]);
        let Chordality::Chordal(cert) = check(&g) else {
            panic!("a diamond is chordal")
        };
        assert_eq!(is_peo(&g, &cert.peo), Ok(()));
        let mut cliques: Vec<Vec<u32>> = cert.cliques.to_vecs();
        for c in &mut cliques {
            c.sort_unstable();
        }
        cliques.sort();
        assert_eq!(cliques, vec![vec![0, 1, 2], vec![1, 2, 3]]);
        assert_eq!(cert.treewidth, 2);
        assert_eq!(cert.clique_tree.len(), 1);
        let edge = cert.clique_tree.get(0).unwrap();
        let mut sep = edge.separator.to_vec();
        sep.sort_unstable();
        assert_eq!(sep, vec![1, 2]);
        assert!(has_running_intersection(&cliques, cert.clique_tree.pairs()));
    }

    #[test]
    fn square_gives_itself_as_witness() {
        let g = Graph::with_numbered_vertices(4, &[(0, 1), (1, 2), (2, 3), (3, 0)]);
        let Chordality::NotChordal(w) = check(&g) else {
            panic!("C4 is not chordal")
        };
        assert_eq!(w.cycle.len(), 4);
        assert!(is_chordless_cycle(&g, &w.cycle));
        assert_eq!(w.triangulation.fill_in().map(<[_]>::len), Some(1));
    }

    #[test]
    fn empty_and_edgeless_graphs_are_chordal() {
        let Chordality::Chordal(c) = check(&Graph::with_numbered_vertices(0, &[])) else {
            panic!("the empty graph is chordal")
        };
        assert_eq!((c.peo.len(), c.cliques.len(), c.treewidth), (0, 0, 0));
        let Chordality::Chordal(c) = check(&Graph::with_numbered_vertices(3, &[])) else {
            panic!("an edgeless graph is chordal")
        };
        assert_eq!(
            (c.cliques.len(), c.clique_tree.len(), c.treewidth),
            (3, 0, 0)
        );
    }

    #[test]
    fn verdict_serialises_with_its_evidence() {
        let g = Graph::with_numbered_vertices(4, &[(0, 1), (1, 2), (2, 3), (3, 0)]);
        let json = serde_json::to_value(check(&g)).unwrap();
        assert_eq!(json["verdict"], "not_chordal");
        assert_eq!(json["cycle"].as_array().unwrap().len(), 4);
        assert_eq!(json["triangulation"]["status"], "minimal");
        assert_eq!(json["triangulation"]["algorithm"], "mcs-m");
        let path = Graph::with_numbered_vertices(3, &[(0, 1), (1, 2)]);
        let json = serde_json::to_value(check(&path)).unwrap();
        assert_eq!(json["verdict"], "chordal");
        assert_eq!(json["treewidth"], 1);
        assert_eq!(json["cliques"].as_array().unwrap().len(), 2);
        assert_eq!(json["clique_tree"][0]["separator"], serde_json::json!([1]));
        let skipped = ChordalConfig {
            triangulation: TriangulationRoute::Skip,
            ..ChordalConfig::default()
        };
        let json = serde_json::to_value(check_with(&g, &skipped)).unwrap();
        assert_eq!(json["triangulation"]["status"], "not_computed");
        assert_eq!(json["triangulation"]["reason"]["kind"], "skipped");
    }
}
