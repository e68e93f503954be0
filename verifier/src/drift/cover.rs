//! How the decrease check is split: over the cliques of a clique tree the
//! caller hands in, over the independent components of the coupling graph,
//! or not at all.
//!
//! Soundness never depends on the split: whatever the cover, the exact check
//! verifies `M = Σ_v l_v l_vᵀ + Σ_k E_k` entry by entry and each `E_k`
//! diagonally dominant, and a sum of squares plus diagonally dominant
//! matrices is positive semidefinite. Chordality and the running
//! intersection property only make the split *possible*: they give an
//! elimination order in which Cholesky creates no fill outside the cliques
//! (so each `l_v` lives in one clique), which is the constructive side of the
//! Agler / Grone–Johnson–Sá–Wolkowicz theorem that a PSD matrix with chordal
//! sparsity is a sum of PSD matrices, one per maximal clique.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Cliques over resource indices and the edges of a clique tree (or forest)
/// joining them, as the chordal module computes them for the coupling graph
/// ([`crate::drift::Controller::coupling_pairs`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CliqueTree {
    /// Each clique: resource indices.
    pub cliques: Vec<Vec<usize>>,
    /// Tree edges between clique indices.
    pub edges: Vec<(usize, usize)>,
}

/// How the check was split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecompositionKind {
    /// One check over all resources.
    None,
    /// One check per connected component of the coupling graph.
    Components,
    /// One check per clique of the given clique tree.
    Cliques,
}

/// The sets the check is split over, and an elimination order compatible
/// with them.
#[derive(Clone, Debug)]
pub(crate) struct CoverPlan {
    pub sets: Vec<Vec<usize>>,
    /// Vertices in elimination order.
    pub order: Vec<usize>,
    /// `owner[v]`: the set in which `v` is eliminated; it holds `v` and all
    /// of `v`'s neighbours eliminated after it.
    pub owner: Vec<usize>,
    pub kind: DecompositionKind,
    pub summary: String,
}

impl CoverPlan {
    /// No split.
    pub fn single(n: usize, summary: String) -> CoverPlan {
        CoverPlan {
            sets: vec![(0..n).collect()],
            order: (0..n).collect(),
            owner: vec![0; n],
            kind: DecompositionKind::None,
            summary,
        }
    }

    /// The connected components of `pattern`, or no split when it is
    /// connected.
    pub fn components(
        n: usize,
        pattern: &BTreeSet<(usize, usize)>,
        why_no_tree: &str,
    ) -> CoverPlan {
        let mut uf: Vec<usize> = (0..n).collect();
        fn find(uf: &mut [usize], mut x: usize) -> usize {
            while uf[x] != x {
                uf[x] = uf[uf[x]];
                x = uf[x];
            }
            x
        }
        for &(i, j) in pattern {
            let (ri, rj) = (find(&mut uf, i), find(&mut uf, j));
            if ri != rj {
                uf[ri.max(rj)] = ri.min(rj);
            }
        }
        let mut sets: Vec<Vec<usize>> = Vec::new();
        let mut root_set = vec![usize::MAX; n];
        let mut owner = vec![0; n];
        for (v, o) in owner.iter_mut().enumerate() {
            let r = find(&mut uf, v);
            if root_set[r] == usize::MAX {
                root_set[r] = sets.len();
                sets.push(Vec::new());
            }
            sets[root_set[r]].push(v);
            *o = root_set[r];
        }
        if sets.len() == 1 {
            return CoverPlan::single(
                n,
                format!("not decomposed: the coupling graph is connected and {why_no_tree}"),
            );
        }
        let order = sets.iter().flatten().copied().collect();
        let summary = format!(
            "decomposed over {} independent components (sizes {})",
            sets.len(),
            sizes(&sets)
        );
        CoverPlan {
            sets,
            order,
            owner,
            kind: DecompositionKind::Components,
            summary,
        }
    }

    /// The split over a caller's clique tree, or why it cannot be used.
    pub fn from_tree(
        n: usize,
        tree: &CliqueTree,
        pattern: &BTreeSet<(usize, usize)>,
        names: &[String],
    ) -> Result<CoverPlan, String> {
        let m = tree.cliques.len();
        if m == 0 {
            return Err("the clique tree has no cliques".into());
        }
        let mut sets: Vec<Vec<usize>> = Vec::with_capacity(m);
        for (k, c) in tree.cliques.iter().enumerate() {
            if c.is_empty() {
                return Err(format!("clique {k} is empty"));
            }
            let mut s = c.clone();
            s.sort_unstable();
            s.dedup();
            if s.len() != c.len() {
                return Err(format!("clique {k} lists a resource twice"));
            }
            if let Some(&v) = s.iter().find(|&&v| v >= n) {
                return Err(format!(
                    "clique {k} names resource index {v}, but there are {n} resources"
                ));
            }
            sets.push(s);
        }
        // The edges must form a forest.
        let mut adj: Vec<Vec<usize>> = vec![Vec::new(); m];
        let mut uf: Vec<usize> = (0..m).collect();
        fn find(uf: &mut [usize], mut x: usize) -> usize {
            while uf[x] != x {
                uf[x] = uf[uf[x]];
                x = uf[x];
            }
            x
        }
        for &(a, b) in &tree.edges {
            if a >= m || b >= m || a == b {
                return Err(format!(
                    "clique tree edge ({a}, {b}) does not join two of the {m} cliques"
                ));
            }
            let (ra, rb) = (find(&mut uf, a), find(&mut uf, b));
            if ra == rb {
                return Err(format!(
                    "the clique tree edges contain a cycle through cliques {a} and {b}"
                ));
            }
            uf[ra] = rb;
            adj[a].push(b);
            adj[b].push(a);
        }
        // Every resource in some clique; running intersection property.
        let mut holders: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (k, s) in sets.iter().enumerate() {
            for &v in s {
                holders[v].push(k);
            }
        }
        for v in 0..n {
            let hv = &holders[v];
            if hv.is_empty() {
                return Err(format!("resource `{}` is in no clique", names[v]));
            }
            let inside: BTreeSet<usize> = hv.iter().copied().collect();
            let mut seen = BTreeSet::from([hv[0]]);
            let mut stack = vec![hv[0]];
            while let Some(k) = stack.pop() {
                for &l in &adj[k] {
                    if inside.contains(&l) && seen.insert(l) {
                        stack.push(l);
                    }
                }
            }
            if seen.len() != inside.len() {
                let apart = inside.difference(&seen).next().copied().unwrap_or(hv[0]);
                return Err(format!(
                    "not a clique tree: resource `{}` is in cliques {} and {apart} but not in every clique on the tree path between them (running intersection property)",
                    names[v], hv[0]
                ));
            }
        }
        // Coverage of the coupling pattern.
        for &(i, j) in pattern {
            if i != j
                && !holders[i]
                    .iter()
                    .any(|k| sets[*k].binary_search(&j).is_ok())
            {
                return Err(format!(
                    "the decrease condition couples `{}` and `{}`, which share no clique (triangulate the coupling graph, not only K's pattern)",
                    names[i], names[j]
                ));
            }
        }
        // Elimination order: post-order over each tree, a vertex eliminated in
        // the highest clique that holds it.
        let mut parent = vec![usize::MAX; m];
        let mut visited = vec![false; m];
        let mut post: Vec<usize> = Vec::with_capacity(m);
        for root in 0..m {
            if visited[root] {
                continue;
            }
            visited[root] = true;
            let mut stack = vec![(root, false)];
            while let Some((k, done)) = stack.pop() {
                if done {
                    post.push(k);
                    continue;
                }
                stack.push((k, true));
                for &l in &adj[k] {
                    if !visited[l] {
                        visited[l] = true;
                        parent[l] = k;
                        stack.push((l, false));
                    }
                }
            }
        }
        let mut owner = vec![usize::MAX; n];
        let mut order = Vec::with_capacity(n);
        for &k in &post {
            for &v in &sets[k] {
                let leaves = parent[k] == usize::MAX || sets[parent[k]].binary_search(&v).is_err();
                if owner[v] == usize::MAX && leaves {
                    owner[v] = k;
                    order.push(v);
                }
            }
        }
        if order.len() != n {
            return Err("internal: the clique tree elimination missed a resource".into());
        }
        // Keep only cliques that own a vertex (a non-maximal clique may own
        // none and then carries no check).
        let used: Vec<usize> = (0..m).filter(|k| owner.contains(k)).collect();
        let dropped = m - used.len();
        let remap: Vec<usize> = {
            let mut r = vec![usize::MAX; m];
            for (new, &old) in used.iter().enumerate() {
                r[old] = new;
            }
            r
        };
        let sets: Vec<Vec<usize>> = used.iter().map(|&k| sets[k].clone()).collect();
        let owner: Vec<usize> = owner.iter().map(|&k| remap[k]).collect();
        let mut summary = format!(
            "decomposed over {} cliques (sizes {}): one decrease check per clique",
            sets.len(),
            sizes(&sets)
        );
        if dropped > 0 {
            summary.push_str(&format!("; {dropped} non-maximal cliques carried no check"));
        }
        Ok(CoverPlan {
            sets,
            order,
            owner,
            kind: DecompositionKind::Cliques,
            summary,
        })
    }

    /// The set that checks pair `(i, j)`: the owner of whichever of the two
    /// is eliminated first.
    pub fn pair_set(&self, pos: &[usize], i: usize, j: usize) -> usize {
        if pos[i] <= pos[j] {
            self.owner[i]
        } else {
            self.owner[j]
        }
    }

    /// `pos[v]`: position of `v` in the elimination order.
    pub fn positions(&self) -> Vec<usize> {
        let mut pos = vec![0; self.order.len()];
        for (t, &v) in self.order.iter().enumerate() {
            pos[v] = t;
        }
        pos
    }
}

/// Set sizes, largest first, runs collapsed: `"5, 3 ×4, 2"`.
fn sizes(sets: &[Vec<usize>]) -> String {
    let mut s: Vec<usize> = sets.iter().map(Vec::len).collect();
    s.sort_unstable_by(|a, b| b.cmp(a));
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let run = s[i..].iter().take_while(|&&x| x == s[i]).count();
        out.push(if run > 1 {
            format!("{} ×{run}", s[i])
        } else {
            s[i].to_string()
        });
        i += run;
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("r{i}")).collect()
    }

    #[test]
    fn a_path_of_cliques_gives_a_perfect_elimination_order() {
        // Cliques {0,1,2}, {1,2,3}, {2,3,4} in a path.
        let tree = CliqueTree {
            cliques: vec![vec![0, 1, 2], vec![1, 2, 3], vec![2, 3, 4]],
            edges: vec![(0, 1), (1, 2)],
        };
        let pattern: BTreeSet<_> = [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (2, 4), (3, 4)].into();
        let plan = CoverPlan::from_tree(5, &tree, &pattern, &names(5)).unwrap();
        assert_eq!(plan.kind, DecompositionKind::Cliques);
        let pos = plan.positions();
        // Each vertex's later neighbours lie in its owner clique.
        for &(i, j) in &pattern {
            let k = plan.pair_set(&pos, i, j);
            assert!(plan.sets[k].contains(&i) && plan.sets[k].contains(&j));
        }
    }

    #[test]
    fn bad_trees_are_refused_with_a_reason() {
        let pattern: BTreeSet<_> = [(0, 1), (1, 2), (0, 2)].into();
        let tree = CliqueTree {
            cliques: vec![vec![0, 1], vec![1, 2]],
            edges: vec![(0, 1)],
        };
        let err = CoverPlan::from_tree(3, &tree, &pattern, &names(3)).unwrap_err();
        assert!(err.contains("`r0` and `r2`"), "{err}");
        let rip = CliqueTree {
            cliques: vec![vec![0, 1], vec![2], vec![1, 3]],
            edges: vec![(0, 1), (1, 2)],
        };
        let err = CoverPlan::from_tree(4, &rip, &BTreeSet::new(), &names(4)).unwrap_err();
        assert!(err.contains("running intersection"), "{err}");
        let cyc = CliqueTree {
            cliques: vec![vec![0], vec![1], vec![2]],
            edges: vec![(0, 1), (1, 2), (2, 0)],
        };
        assert!(
            CoverPlan::from_tree(3, &cyc, &BTreeSet::new(), &names(3))
                .unwrap_err()
                .contains("cycle")
        );
        let out = CliqueTree {
            cliques: vec![vec![0, 5]],
            edges: vec![],
        };
        assert!(
            CoverPlan::from_tree(3, &out, &BTreeSet::new(), &names(3))
                .unwrap_err()
                .contains("index 5")
        );
        let missing = CliqueTree {
            cliques: vec![vec![0, 1]],
            edges: vec![],
        };
        assert!(
            CoverPlan::from_tree(3, &missing, &BTreeSet::new(), &names(3))
                .unwrap_err()
                .contains("`r2` is in no clique")
        );
    }

    #[test]
    fn components_split_block_diagonal_patterns() {
        let pattern: BTreeSet<_> = [(0, 2), (1, 3)].into();
        let plan = CoverPlan::components(5, &pattern, "no clique tree was given");
        assert_eq!(plan.kind, DecompositionKind::Components);
        assert_eq!(plan.sets, vec![vec![0, 2], vec![1, 3], vec![4]]);
        let connected: BTreeSet<_> = [(0, 1), (1, 2)].into();
        assert_eq!(
            CoverPlan::components(3, &connected, "x").kind,
            DecompositionKind::None
        );
    }
}
