//! Natural loops of a control-flow graph: an edge `latch -> header` is a back-edge
//! when `header` dominates `latch`. Pure: blocks are indices, block 0 is the entry.

use petgraph::algo::dominators;
use petgraph::graph::{DiGraph, NodeIndex};

/// Back-edges `(latch, header)` in a deterministic order (by latch, then header).
/// Blocks unreachable from the entry have no dominator and yield no back-edges.
pub fn back_edges(successors: &[Vec<usize>]) -> Vec<(usize, usize)> {
    if successors.is_empty() {
        return Vec::new();
    }
    let mut g = DiGraph::<(), ()>::with_capacity(successors.len(), successors.len() * 2);
    let nodes: Vec<NodeIndex> = (0..successors.len()).map(|_| g.add_node(())).collect();
    for (from, succs) in successors.iter().enumerate() {
        for &to in succs {
            g.add_edge(nodes[from], nodes[to], ());
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
