//! Natural loops of a control-flow graph (an edge `latch -> header` is a
//! back-edge when `header` dominates `latch`), the blocks on any cycle, and how
//! many marked blocks the paths between two blocks pass. Pure: blocks are
//! indices, block 0 is the entry.

use petgraph::algo::dominators;
use petgraph::graph::{DiGraph, NodeIndex};

/// Back-edges `(latch, header)` in a deterministic order (by latch, then header).
/// Blocks unreachable from the entry have no dominator and yield no back-edges.
pub fn back_edges(successors: &[Vec<usize>]) -> Vec<(usize, usize)> {
    if successors.is_empty() {
        return Vec::new();
    }
    let (g, nodes) = graph(successors);
    let dom = dominators::simple_fast(&g, nodes[0]);
    let mut edges = Vec::new();
    for (latch, succs) in successors.iter().enumerate() {
        for &header in succs {
            let dominated = dom
                .dominators(nodes[latch])
                .is_some_and(|mut it| it.any(|d| d == nodes[header]));
            if dominated && !edges.contains(&(latch, header)) {
                edges.push((latch, header));
            }
        }
    }
    edges
}

/// The body of the natural loop of back-edge `latch -> header`: the header and
/// every block that reaches the latch without passing through the header.
pub fn loop_body(successors: &[Vec<usize>], latch: usize, header: usize) -> Vec<usize> {
    let mut preds = vec![Vec::new(); successors.len()];
    for (from, succs) in successors.iter().enumerate() {
        for &to in succs {
            preds[to].push(from);
        }
    }
    let mut in_body = vec![false; successors.len()];
    in_body[header] = true;
    let mut stack = vec![latch];
    while let Some(b) = stack.pop() {
        if !in_body[b] {
            in_body[b] = true;
            stack.extend(preds[b].iter().copied());
        }
    }
    (0..successors.len()).filter(|&b| in_body[b]).collect()
}

fn graph(successors: &[Vec<usize>]) -> (DiGraph<(), ()>, Vec<NodeIndex>) {
    let mut g = DiGraph::<(), ()>::with_capacity(successors.len(), successors.len() * 2);
    let nodes: Vec<NodeIndex> = (0..successors.len()).map(|_| g.add_node(())).collect();
    for (from, succs) in successors.iter().enumerate() {
        for &to in succs {
            g.add_edge(nodes[from], nodes[to], ());
        }
    }
    (g, nodes)
}

/// The graph's strongly connected components in topological order (a
/// component's successors come after it), and each block's component.
fn components(successors: &[Vec<usize>]) -> (Vec<Vec<usize>>, Vec<usize>) {
    let (g, _) = graph(successors);
    // Tarjan's algorithm yields the components in reverse topological order.
    let mut sccs: Vec<Vec<usize>> = petgraph::algo::tarjan_scc(&g)
        .into_iter()
        .map(|c| c.into_iter().map(|n| n.index()).collect())
        .collect();
    sccs.reverse();
    let mut of = vec![0; successors.len()];
    for (c, blocks) in sccs.iter().enumerate() {
        for &b in blocks {
            of[b] = c;
        }
    }
    (sccs, of)
}

/// Which blocks lie on a cycle (natural loop or not, self-loops included):
/// the ones a single call can run more than once.
pub fn cyclic_blocks(successors: &[Vec<usize>]) -> Vec<bool> {
    let (sccs, of) = components(successors);
    (0..successors.len())
        .map(|b| sccs[of[b]].len() > 1 || successors[b].contains(&b))
        .collect()
}

/// The fewest and the most `marked` blocks that a path from `from` to `to`
/// passes (both ends included), or `None` when `to` cannot be reached from
/// `from`. Exact when no marked block lies on a cycle; otherwise the most is
/// unbounded (`usize::MAX`) and the fewest counts none of the cycle's blocks.
pub fn marked_on_paths(
    successors: &[Vec<usize>],
    marked: &[bool],
    from: usize,
    to: usize,
) -> Option<(usize, usize)> {
    let (sccs, of) = components(successors);
    let cyclic = cyclic_blocks(successors);
    let weight = |c: usize| -> (usize, usize) {
        let n = sccs[c].iter().filter(|&&b| marked[b]).count();
        if sccs[c].iter().any(|&b| marked[b] && cyclic[b]) {
            (0, usize::MAX)
        } else {
            (n, n)
        }
    };
    // Fewest and most marked blocks on the way into each component, in
    // topological order: every path runs through the components in that order.
    let mut reach: Vec<Option<(usize, usize)>> = vec![None; sccs.len()];
    reach[of[from]] = Some(weight(of[from]));
    for c in of[from]..sccs.len() {
        let Some((lo, hi)) = reach[c] else { continue };
        for &b in &sccs[c] {
            for &s in &successors[b] {
                let t = of[s];
                if t == c {
                    continue;
                }
                let (wlo, whi) = weight(t);
                let via = (lo + wlo, hi.saturating_add(whi));
                reach[t] = Some(match reach[t] {
                    None => via,
                    Some((a, b)) => (a.min(via.0), b.max(via.1)),
                });
            }
        }
    }
    reach[of[to]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_include_irreducible_ones_and_self_loops() {
        // 0 -> 1, 0 -> 2, 1 <-> 2 (irreducible); 2 -> 3; 3 -> 3; 3 -> 4.
        let cfg = vec![vec![1, 2], vec![2], vec![1, 3], vec![3, 4], vec![]];
        assert_eq!(cyclic_blocks(&cfg), [false, true, true, true, false]);
    }

    #[test]
    fn marked_blocks_on_the_paths_of_a_diamond() {
        // 0 -> 1 -> 3, 0 -> 2 -> 3, 3 -> 4; 1 is marked.
        let cfg = vec![vec![1, 2], vec![3], vec![3], vec![4], vec![]];
        let mut marked = vec![false; 5];
        marked[1] = true;
        assert_eq!(marked_on_paths(&cfg, &marked, 0, 4), Some((0, 1)));
        marked[3] = true;
        assert_eq!(marked_on_paths(&cfg, &marked, 0, 4), Some((1, 2)));
        marked[2] = true;
        assert_eq!(marked_on_paths(&cfg, &marked, 0, 4), Some((2, 2)));
        // The ends count, and a block cannot reach its predecessor here.
        assert_eq!(marked_on_paths(&cfg, &marked, 1, 3), Some((2, 2)));
        assert_eq!(marked_on_paths(&cfg, &marked, 3, 0), None);
    }

    #[test]
    fn a_marked_block_on_a_cycle_is_unbounded() {
        // 0 -> 1 -> 2 -> 1 (loop), 1 -> 3; the loop's body 2 is marked.
        let cfg = vec![vec![1], vec![2, 3], vec![1], vec![]];
        let mut marked = vec![false; 4];
        marked[2] = true;
        assert_eq!(marked_on_paths(&cfg, &marked, 0, 3), Some((0, usize::MAX)));
        // With the loop unmarked and the entry marked, every path passes one.
        marked[2] = false;
        marked[0] = true;
        assert_eq!(marked_on_paths(&cfg, &marked, 0, 3), Some((1, 1)));
    }

    #[test]
    fn loop_bodies() {
        // 0 -> 1 -> 2 -> 3 -> 1, 2 -> 4 (exit), 3 -> 5 -> 3? no: 3 -> 1 only.
        let cfg = vec![vec![1], vec![2], vec![3, 4], vec![1], vec![]];
        assert_eq!(loop_body(&cfg, 3, 1), vec![1, 2, 3]);
        // A self loop is its own body.
        let cfg = vec![vec![1], vec![1, 2], vec![]];
        assert_eq!(loop_body(&cfg, 1, 1), vec![1]);
    }

    #[test]
    fn simple_loop() {
        // 0 -> 1 -> 2 -> 1, 2 -> 3
        let cfg = vec![vec![1], vec![2], vec![1, 3], vec![]];
        assert_eq!(back_edges(&cfg), vec![(2, 1)]);
    }

    #[test]
    fn self_loop_and_nested() {
        // 0 -> 1; 1 -> 1 (self loop), 1 -> 2; 2 -> 3; 3 -> 3, 3 -> 2, 3 -> 4
        let cfg = vec![vec![1], vec![1, 2], vec![3], vec![3, 2, 4], vec![]];
        assert_eq!(back_edges(&cfg), vec![(1, 1), (3, 3), (3, 2)]);
    }

    #[test]
    fn irreducible_cycle_is_not_a_natural_loop() {
        // 0 -> 1, 0 -> 2, 1 <-> 2: neither header dominates the other's latch.
        let cfg = vec![vec![1, 2], vec![2], vec![1]];
        assert!(back_edges(&cfg).is_empty());
    }

    #[test]
    fn diamond_has_no_loop() {
        let cfg = vec![vec![1, 2], vec![3], vec![3], vec![]];
        assert!(back_edges(&cfg).is_empty());
    }
}
