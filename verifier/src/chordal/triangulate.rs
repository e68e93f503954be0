//! Minimal triangulations: sets of fill edges that make a graph chordal, none
//! of which can be left out.
//!
//! Two routes, both returning an inclusion-minimal fill:
//!
//! - [`mcs_m`] (Berry, Blair, Heggernes and Peyton 2004): one search per
//!   vertex, O(V·(V+E)) time, O(V+E) memory. Used when that product is small.
//! - [`pruned_elimination_fill`]: the elimination game along a given order,
//!   then fill edges are deleted one at a time while the graph stays chordal.
//!   The game is played symbolically and only where it fills: from the
//!   vertices that fail the parent test up through the elimination tree, so a
//!   graph that is chordal but for a few edges costs a few vertices' work, not
//!   a pass (see [`elimination_fill`]). For chordal H, deleting edge `uv`
//!   keeps it chordal exactly when the common neighbourhood of `u` and `v` is
//!   a clique (otherwise `uv` is the unique chord of a 4-cycle). At the
//!   fixpoint no single fill edge can go, and by Rose, Tarjan and Lueker
//!   (1976) that makes H a minimal triangulation. Deleting `uv` can only make
//!   edges at `u` or `v` deletable, so only those are queued again.
//!   Near-linear when the fill and the cliques are small.
//!
//! Invariants: the filled graph stays chordal after every deletion; no original
//! edge is ever deleted; both the fill and the pruning work are bounded by
//! [`FillLimits`], past which the route gives up with a reason instead of
//! running on; memory beyond the graph is proportional to the fill, plus a
//! few zero-initialised per-vertex arrays whose untouched pages cost nothing.
//! No recursion.

use serde::Serialize;

use crate::graph::Graph;

/// Which algorithm produced a fill-in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FillAlgorithm {
    /// Maximum cardinality search for minimal triangulations.
    #[serde(rename = "mcs-m")]
    McsM,
    /// Elimination game along the MCS order, pruned to a minimal fill.
    #[serde(rename = "pruned-elimination")]
    PrunedElimination,
}

impl FillAlgorithm {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            FillAlgorithm::McsM => "mcs-m",
            FillAlgorithm::PrunedElimination => "pruned-elimination",
        }
    }
}

/// Why no fill-in was computed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FillNotComputed {
    /// The elimination game would add more fill edges than allowed.
    #[error(
        "the elimination game along the search order needs more than {limit} fill edges; raise the limit or make the graph closer to chordal"
    )]
    FillTooLarge {
        /// [`FillLimits::max_fill_edges`].
        limit: usize,
    },
    /// Pruning the fill to a minimal one took more steps than allowed.
    #[error("pruning the fill to a minimal one needs more than {limit} steps; raise the limit")]
    PruneWorkExceeded {
        /// [`FillLimits::max_prune_work`].
        limit: u64,
    },
    /// The caller asked for no fill-in.
    #[error("fill-in was not requested")]
    Skipped,
}

/// Bounds that keep the elimination route from running away on graphs far
/// from chordal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FillLimits {
    /// The most fill edges the elimination game may add before pruning.
    pub max_fill_edges: usize,
    /// The most elementary steps the pruning may take: adjacency tests (a
    /// binary search or two each) and list entries scanned.
    pub max_prune_work: u64,
}

impl Default for FillLimits {
    /// At most 2,000,000 fill edges (a fill that large tells nobody which
    /// coupling to change) and 50,000,000 pruning steps, about a second: on a
    /// graph that is chordal but for a handful of edges the fill is tens of
    /// edges and the pruning thousands of steps, while a graph with a large
    /// tangled core can need billions, since each deletion test looks at
    /// every pair in a common neighbourhood.
    fn default() -> FillLimits {
        FillLimits {
            max_fill_edges: 2_000_000,
            max_prune_work: 50_000_000,
        }
    }
}

const NONE: u32 = u32::MAX;

/// MCS-M: a minimal triangulation of `g`, as fill edges `(u, v)` with `u < v`,
/// sorted.
///
/// Repeatedly numbers an unnumbered vertex `v` of maximum weight, then raises
/// the weight of every unnumbered `u` reachable from `v` through unnumbered
/// vertices all lighter than `u`, adding `uv` when they are not adjacent. The
/// reachability is a search over weight levels, lightest first, so a vertex is
/// first reached through the lightest possible path. O(V·(V+E)) time.
pub fn mcs_m(g: &Graph) -> Vec<(u32, u32)> {
    let n = g.n();
    let mut weight = vec![0u32; n];
    let mut numbered = vec![false; n];
    let mut reached = vec![NONE; n];
    let mut levels: Vec<Vec<u32>> = vec![Vec::new(); n + 1];
    let mut raise: Vec<u32> = Vec::new();
    let mut fill = Vec::new();
    for step in 0..n as u32 {
        let mut v = NONE;
        let mut top = 0u32;
        for x in 0..n {
            if !numbered[x] && (v == NONE || weight[x] > top) {
                v = x as u32;
                top = weight[x];
            }
        }
        numbered[v as usize] = true;
        reached[v as usize] = step;
        raise.clear();
        for &u in g.neighbors(v) {
            if !numbered[u as usize] {
                reached[u as usize] = step;
                levels[weight[u as usize] as usize].push(u);
                raise.push(u);
            }
        }
        let direct = raise.len();
        for level in 0..=top as usize {
            while let Some(y) = levels[level].pop() {
                for &z in g.neighbors(y) {
                    let zi = z as usize;
                    if numbered[zi] || reached[zi] == step {
                        continue;
                    }
                    reached[zi] = step;
                    if weight[zi] as usize > level {
                        raise.push(z);
                        levels[weight[zi] as usize].push(z);
                    } else {
                        levels[level].push(z);
                    }
                }
            }
        }
        for &u in &raise {
            weight[u as usize] += 1;
        }
        fill.extend(raise[direct..].iter().map(|&u| (u.min(v), u.max(v))));
    }
    fill.sort_unstable();
    fill
}

/// A minimal triangulation of `g` through the elimination game along `order`
/// (`order[0]` eliminated first, a permutation of the vertices), pruned to a
/// minimal fill: fill edges `(u, v)` with `u < v`, sorted.
///
/// Gives up with a reason when the unpruned fill or the pruning work passes
/// `limits`.
///
/// # Panics
///
/// If `order` is not a permutation of the vertices of `g`.
pub fn pruned_elimination_fill(
    g: &Graph,
    order: &[u32],
    limits: &FillLimits,
) -> Result<Vec<(u32, u32)>, FillNotComputed> {
    let n = g.n();
    assert_eq!(
        order.len(),
        n,
        "the order is not a permutation of the vertices"
    );
    let mut pos = vec![NONE; n];
    for (i, &v) in order.iter().enumerate() {
        assert!(
            (v as usize) < n && pos[v as usize] == NONE,
            "the order is not a permutation of the vertices"
        );
        pos[v as usize] = i as u32;
    }
    let violators: Vec<u32> = order
        .iter()
        .copied()
        .filter(|&v| fails_parent_test(g, &pos, v))
        .collect();
    pruned_fill_with(g, order, &pos, &violators, limits)
}

/// Whether `v`'s later neighbours in the order given by `pos` are not all
/// adjacent to the earliest of them.
fn fails_parent_test(g: &Graph, pos: &[u32], v: u32) -> bool {
    let here = pos[v as usize];
    let later = || {
        g.neighbors(v)
            .iter()
            .copied()
            .filter(move |&x| pos[x as usize] > here)
    };
    let Some(parent) = later().min_by_key(|&x| pos[x as usize]) else {
        return false;
    };
    later().any(|w| w != parent && !g.has_edge(parent, w))
}

/// [`pruned_elimination_fill`] given what a search already knows: each
/// vertex's position in `order`, and the vertices that fail the parent test.
pub(crate) fn pruned_fill_with(
    g: &Graph,
    order: &[u32],
    pos: &[u32],
    violators: &[u32],
    limits: &FillLimits,
) -> Result<Vec<(u32, u32)>, FillNotComputed> {
    let fill = elimination_fill(g, order, pos, violators, limits.max_fill_edges)?;
    let mut filled = Filled::new(g, &fill);
    drop(fill);
    filled.prune(limits.max_prune_work)?;
    Ok(filled.live_fill())
}

/// The fill of the elimination game along `order`, edges in the order made.
///
/// Symbolic elimination: a vertex's later neighbours in the filled graph H
/// are its later neighbours in G plus those of its children in the
/// elimination tree of H, less itself. A vertex that passes the parent test
/// and gained nothing from its children hands its parent nothing the parent
/// does not already have, so only the vertices that fail the test and their
/// ancestors through vertices that gained something ("dirty" ones) are
/// visited, lowest position first from a heap. On a graph that is chordal but
/// for a few edges this touches a few vertices instead of all of them; in
/// general it is O(|E(H)| + k log k) for k dirty vertices. The per-vertex
/// arrays are zero-initialised allocations, so pages no dirty vertex touches
/// cost nothing.
fn elimination_fill(
    g: &Graph,
    order: &[u32],
    pos: &[u32],
    violators: &[u32],
    max_fill: usize,
) -> Result<Vec<(u32, u32)>, FillNotComputed> {
    let n = g.n();
    let mut violator = vec![false; n];
    let mut queued = vec![false; n];
    // Children lists and set indices, stored plus one so zero means none.
    let mut first_child = vec![0u32; n];
    let mut next_sibling = vec![0u32; n];
    let mut set_of = vec![0u32; n];
    let mut mark = vec![0u32; n];
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let mut later: Vec<u32> = Vec::new();
    let mut heap = std::collections::BinaryHeap::with_capacity(violators.len());
    for &v in violators {
        violator[v as usize] = true;
        queued[v as usize] = true;
        heap.push(std::cmp::Reverse(pos[v as usize]));
    }
    let mut stamp = 0u32;
    let mut fill = Vec::new();
    while let Some(std::cmp::Reverse(here)) = heap.pop() {
        let v = order[here as usize];
        stamp += 1;
        mark[v as usize] = stamp;
        let from = later.len();
        let mut parent = NONE;
        for &x in g.neighbors(v) {
            let p = pos[x as usize];
            if p > here {
                mark[x as usize] = stamp;
                later.push(x);
                parent = parent.min(p);
            }
        }
        let own = later.len();
        let mut child = first_child[v as usize];
        while child != 0 {
            let c = (child - 1) as usize;
            let (start, end) = ranges[set_of[c] as usize - 1];
            for k in start..end {
                let x = later[k];
                if mark[x as usize] != stamp {
                    mark[x as usize] = stamp;
                    later.push(x);
                    fill.push((v, x));
                    parent = parent.min(pos[x as usize]);
                }
            }
            child = next_sibling[c];
        }
        if fill.len() > max_fill {
            return Err(FillNotComputed::FillTooLarge { limit: max_fill });
        }
        ranges.push((from, later.len()));
        set_of[v as usize] = ranges.len() as u32;
        let hands_on = violator[v as usize] || later.len() > own;
        if hands_on && parent != NONE {
            let up = order[parent as usize] as usize;
            next_sibling[v as usize] = first_child[up];
            first_child[up] = v + 1;
            if !queued[up] {
                queued[up] = true;
                heap.push(std::cmp::Reverse(parent));
            }
        }
    }
    Ok(fill)
}

/// Flags on a fill entry.
const DEAD: u8 = 1;
const QUEUED: u8 = 2;

/// The filled graph H: the original graph plus the fill edges, which are kept
/// in both directions, grouped by endpoint (`to[start[v]..start[v] +
/// count[v]]`, sorted), with flags: `DEAD` (on both entries) once pruned,
/// `QUEUED` (on the entry [`Filled::entry`] picks) while the edge waits in
/// the work list.
/// Original edges are never pruned, so they need no flags and stay in the
/// graph's own lists. The per-vertex arrays are zero-initialised allocations
/// touched only at fill endpoints.
struct Filled<'g> {
    g: &'g Graph,
    start: Vec<u32>,
    count: Vec<u32>,
    touched: Vec<u32>,
    to: Vec<u32>,
    flags: Vec<u8>,
    queue: Vec<(u32, u32)>,
}

impl<'g> Filled<'g> {
    fn new(g: &'g Graph, fill: &[(u32, u32)]) -> Filled<'g> {
        let n = g.n();
        let mut count = vec![0u32; n];
        let mut touched = Vec::new();
        for &(u, v) in fill {
            for x in [u, v] {
                if count[x as usize] == 0 {
                    touched.push(x);
                }
                count[x as usize] += 1;
            }
        }
        // Each range's end first, then filled backwards down to its start.
        let mut start = vec![0u32; n];
        let mut at = 0u32;
        for &x in &touched {
            at += count[x as usize];
            start[x as usize] = at;
        }
        let mut to = vec![0u32; at as usize];
        for &(u, v) in fill {
            start[u as usize] -= 1;
            to[start[u as usize] as usize] = v;
            start[v as usize] -= 1;
            to[start[v as usize] as usize] = u;
        }
        let mut filled = Filled {
            g,
            start,
            count,
            touched,
            to,
            flags: vec![0; at as usize],
            queue: Vec::with_capacity(fill.len()),
        };
        for i in 0..filled.touched.len() {
            let r = filled.range(filled.touched[i]);
            filled.to[r].sort_unstable();
        }
        // Queue in the order made, so the last made is tried first.
        for &(u, v) in fill {
            filled.enqueue(u, v);
        }
        filled
    }

    /// The entries for fill edges at `a`.
    fn range(&self, a: u32) -> std::ops::Range<usize> {
        let start = self.start[a as usize] as usize;
        start..start + self.count[a as usize] as usize
    }

    /// The index of `b` in `a`'s fill entries.
    fn slot(&self, a: u32, b: u32) -> Option<usize> {
        let r = self.range(a);
        let start = r.start;
        self.to[r].binary_search(&b).ok().map(|k| start + k)
    }

    /// The entry that speaks for the fill edge `ab`: the one in the shorter
    /// list (the smaller id on a tie), so a hub's long list is searched only
    /// when both ends are hubs.
    fn entry(&self, a: u32, b: u32) -> Option<usize> {
        if (self.count[a as usize], a) <= (self.count[b as usize], b) {
            self.slot(a, b)
        } else {
            self.slot(b, a)
        }
    }

    /// Whether `ab` is an edge of H now.
    fn live(&self, a: u32, b: u32) -> bool {
        self.g.has_edge(a, b) || self.entry(a, b).is_some_and(|s| self.flags[s] & DEAD == 0)
    }

    fn enqueue(&mut self, a: u32, b: u32) {
        if let Some(s) = self.entry(a, b)
            && self.flags[s] & (QUEUED | DEAD) == 0
        {
            self.flags[s] |= QUEUED;
            self.queue.push((a, b));
        }
    }

    /// Deletes fill edges whose endpoints' common neighbourhood is a clique
    /// until none is left in the queue.
    fn prune(&mut self, max_work: u64) -> Result<(), FillNotComputed> {
        let mut work = 0u64;
        let mut common: Vec<u32> = Vec::new();
        while let Some((a, b)) = self.queue.pop() {
            let Some(s) = self.entry(a, b) else { continue };
            self.flags[s] &= !QUEUED;
            if self.flags[s] & DEAD != 0 {
                continue;
            }
            // Live common neighbours: walk the shorter list, test the other.
            let (ra, rb) = (self.range(a), self.range(b));
            let (short, long, fill_range) =
                if self.g.degree(a) + ra.len() <= self.g.degree(b) + rb.len() {
                    (a, b, ra)
                } else {
                    (b, a, rb)
                };
            common.clear();
            for &z in self.g.neighbors(short) {
                if self.live(long, z) {
                    common.push(z);
                }
            }
            for k in fill_range.clone() {
                if self.flags[k] & DEAD == 0 && self.live(long, self.to[k]) {
                    common.push(self.to[k]);
                }
            }
            work += (self.g.degree(short) + fill_range.len()) as u64 + 1;
            let mut clique = true;
            'pairs: for (i, &x) in common.iter().enumerate() {
                for &y in &common[i + 1..] {
                    work += 1;
                    if !self.live(x, y) {
                        clique = false;
                        break 'pairs;
                    }
                }
            }
            if clique {
                for (x, y) in [(a, b), (b, a)] {
                    let s = self.slot(x, y).expect("fill edges are kept both ways");
                    self.flags[s] |= DEAD;
                }
                for (x, other) in [(a, b), (b, a)] {
                    let r = self.range(x);
                    work += r.len() as u64;
                    for k in r {
                        if self.flags[k] & DEAD == 0 && self.to[k] != other {
                            self.enqueue(x, self.to[k]);
                        }
                    }
                }
            }
            if work > max_work {
                return Err(FillNotComputed::PruneWorkExceeded { limit: max_work });
            }
        }
        Ok(())
    }

    /// The live fill edges, `(u, v)` with `u < v`, sorted.
    fn live_fill(&self) -> Vec<(u32, u32)> {
        let mut fill = Vec::new();
        for &u in &self.touched {
            for k in self.range(u) {
                let v = self.to[k];
                if u < v && self.flags[k] & DEAD == 0 {
                    fill.push((u, v));
                }
            }
        }
        fill.sort_unstable();
        fill
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cycle(n: u32) -> Graph {
        let edges: Vec<_> = (0..n).map(|i| (i, (i + 1) % n)).collect();
        Graph::with_numbered_vertices(n as usize, &edges)
    }

    #[test]
    fn mcs_m_triangulates_a_cycle_with_n_minus_3_chords() {
        for n in 4..9 {
            let fill = mcs_m(&cycle(n));
            assert_eq!(fill.len(), n as usize - 3, "C{n}: {fill:?}");
        }
    }

    #[test]
    fn elimination_fill_of_a_bad_order_is_pruned() {
        // A star eliminated centre first fills a triangle among the leaves,
        // none of which a tree needs.
        let star = Graph::with_numbered_vertices(4, &[(0, 1), (0, 2), (0, 3)]);
        let fill = pruned_elimination_fill(&star, &[0, 1, 2, 3], &FillLimits::default()).unwrap();
        assert_eq!(fill, vec![]);
        // A path eliminated 1 then 2 fills 0-2 and 0-3, both removable.
        let path = Graph::with_numbered_vertices(4, &[(0, 1), (1, 2), (2, 3)]);
        let fill = pruned_elimination_fill(&path, &[1, 2, 0, 3], &FillLimits::default()).unwrap();
        assert_eq!(fill, vec![]);
        // A 6-cycle keeps exactly 3 chords.
        let fill = pruned_elimination_fill(&cycle(6), &[0, 2, 4, 1, 3, 5], &FillLimits::default())
            .unwrap();
        assert_eq!(fill, vec![(1, 3), (1, 5), (3, 5)]);
    }

    #[test]
    fn elimination_gives_up_past_the_limits() {
        let g = cycle(8);
        let order: Vec<u32> = (0..8).collect();
        let tight = FillLimits {
            max_fill_edges: 2,
            ..FillLimits::default()
        };
        assert_eq!(
            pruned_elimination_fill(&g, &order, &tight),
            Err(FillNotComputed::FillTooLarge { limit: 2 })
        );
        let no_work = FillLimits {
            max_prune_work: 0,
            ..FillLimits::default()
        };
        assert_eq!(
            pruned_elimination_fill(&g, &order, &no_work),
            Err(FillNotComputed::PruneWorkExceeded { limit: 0 })
        );
    }
}
