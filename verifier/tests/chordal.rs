//! Chordality evidence checked against brute force, on every small graph, on
//! random graphs, on families whose answer is known, and at a million
//! vertices on a default thread stack; plus the edge-list reader.
//!
//! Brute force here means bitmask enumeration of vertex subsets: a graph is
//! chordal exactly when no subset of 4 or more vertices induces a cycle. The
//! random tests run on a fixed seed, so a failure reproduces.

use panic_verifier::chordal::{
    ChordalCertificate, ChordalConfig, Chordality, FillAlgorithm, FillLimits, FillNotComputed,
    Triangulation, TriangulationRoute, check, check_with, has_running_intersection,
    is_chordless_cycle, is_peo, mcs_elimination_order, mcs_m, pruned_elimination_fill, triangulate,
};
use panic_verifier::graph::{EdgeListError, Graph, REPORT_CAP, parse_edge_list};
use panic_verifier::rng::SplitMix64 as Rng;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

// ---------------------------------------------------------------------------
// Brute force on graphs of at most 16 vertices, as adjacency bitmasks.

struct Bits {
    n: usize,
    adj: Vec<u32>,
}

fn bits(g: &Graph) -> Bits {
    assert!(g.n() <= 16);
    let adj = (0..g.n() as u32)
        .map(|v| g.neighbors(v).iter().fold(0u32, |m, &x| m | 1 << x))
        .collect();
    Bits { n: g.n(), adj }
}

fn with_edges(b: &Bits, extra: &[(u32, u32)]) -> Bits {
    let mut adj = b.adj.clone();
    for &(u, v) in extra {
        adj[u as usize] |= 1 << v;
        adj[v as usize] |= 1 << u;
    }
    Bits { n: b.n, adj }
}

fn without_edge(b: &Bits, (u, v): (u32, u32)) -> Bits {
    let mut adj = b.adj.clone();
    adj[u as usize] &= !(1 << v);
    adj[v as usize] &= !(1 << u);
    Bits { n: b.n, adj }
}

fn members(mask: u32) -> impl Iterator<Item = usize> {
    (0..32).filter(move |&i| mask >> i & 1 == 1)
}

fn mask_of(vertices: &[u32]) -> u32 {
    vertices.iter().fold(0, |m, &v| m | 1 << v)
}

fn connected(b: &Bits, mask: u32) -> bool {
    if mask == 0 {
        return true;
    }
    let mut seen = mask & mask.wrapping_neg();
    loop {
        let grown = members(seen).fold(seen, |s, v| s | (b.adj[v] & mask));
        if grown == seen {
            return seen == mask;
        }
        seen = grown;
    }
}

/// A vertex set of size at least 4 inducing a cycle, if any.
fn induced_cycle(b: &Bits) -> Option<u32> {
    (0u32..1 << b.n).find(|&mask| {
        mask.count_ones() >= 4
            && members(mask).all(|v| (b.adj[v] & mask).count_ones() == 2)
            && connected(b, mask)
    })
}

fn chordal_brute(b: &Bits) -> bool {
    induced_cycle(b).is_none()
}

fn maximal_cliques_brute(b: &Bits) -> Vec<u32> {
    let mut cliques: Vec<u32> = (1u32..1 << b.n)
        .filter(|&mask| members(mask).all(|v| mask & !(b.adj[v] | 1 << v) == 0))
        .filter(|&mask| (0..b.n).all(|w| mask >> w & 1 == 1 || mask & !b.adj[w] != 0))
        .collect();
    cliques.sort_unstable();
    cliques
}

/// Whether `cycle` is a chordless cycle, decided on bitmasks.
fn chordless_brute(b: &Bits, cycle: &[u32]) -> bool {
    let mask = mask_of(cycle);
    let len = cycle.len();
    len >= 4
        && mask.count_ones() as usize == len
        && (0..len).all(|i| b.adj[cycle[i] as usize] >> cycle[(i + 1) % len] & 1 == 1)
        && cycle
            .iter()
            .all(|&v| (b.adj[v as usize] & mask).count_ones() == 2)
}

/// Whether every vertex's later neighbours in `order` form a clique.
fn peo_brute(b: &Bits, order: &[u32]) -> bool {
    let mut later = (1u32 << b.n) - 1;
    order.iter().all(|&v| {
        later &= !(1 << v);
        let ln = b.adj[v as usize] & later;
        members(ln).all(|x| ln & !(b.adj[x] | 1 << x) == 0)
    })
}

/// Whether `tree` is a forest over `cliques` in which every vertex's cliques
/// are connected: union-find for the forest, a search per vertex for the rest.
fn running_intersection_brute(cliques: &[u32], tree: &[(u32, u32)]) -> bool {
    let k = cliques.len();
    let mut root: Vec<usize> = (0..k).collect();
    fn find(root: &mut [usize], mut x: usize) -> usize {
        while root[x] != x {
            x = root[x];
        }
        x
    }
    for &(a, b) in tree {
        let (a, b) = (a as usize, b as usize);
        if a >= k || b >= k {
            return false;
        }
        let (ra, rb) = (find(&mut root, a), find(&mut root, b));
        if ra == rb {
            return false;
        }
        root[ra] = rb;
    }
    (0..32).all(|x| {
        let holders: Vec<usize> = (0..k).filter(|&i| cliques[i] >> x & 1 == 1).collect();
        let Some(&first) = holders.first() else {
            return true;
        };
        let mut seen = vec![first];
        let mut i = 0;
        while i < seen.len() {
            let c = seen[i];
            i += 1;
            for &(a, b) in tree {
                let (a, b) = (a as usize, b as usize);
                for (from, to) in [(a, b), (b, a)] {
                    if from == c && cliques[to] >> x & 1 == 1 && !seen.contains(&to) {
                        seen.push(to);
                    }
                }
            }
        }
        seen.len() == holders.len()
    })
}

fn components(g: &Graph) -> usize {
    let mut seen = vec![false; g.n()];
    let mut count = 0;
    for s in 0..g.n() {
        if seen[s] {
            continue;
        }
        count += 1;
        seen[s] = true;
        let mut stack = vec![s as u32];
        while let Some(x) = stack.pop() {
            for &y in g.neighbors(x) {
                if !seen[y as usize] {
                    seen[y as usize] = true;
                    stack.push(y);
                }
            }
        }
    }
    count
}

// ---------------------------------------------------------------------------
// Evidence checks.

fn config(route: TriangulationRoute) -> ChordalConfig {
    ChordalConfig {
        triangulation: route,
        ..ChordalConfig::default()
    }
}

/// Checks a chordal certificate on a small graph against brute force.
fn assert_certificate_brute(g: &Graph, b: &Bits, cert: &ChordalCertificate) {
    assert_eq!(is_peo(g, &cert.peo), Ok(()));
    assert!(peo_brute(b, &cert.peo), "not a PEO: {:?}", cert.peo);
    let masks: Vec<u32> = cert.cliques.iter().map(mask_of).collect();
    for (c, &m) in cert.cliques.iter().zip(&masks) {
        assert_eq!(c.len(), m.count_ones() as usize, "repeated member in {c:?}");
    }
    let mut sorted = masks.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, maximal_cliques_brute(b), "cliques of {:?}", b.adj);
    let tree = cert.clique_tree.pairs();
    assert_eq!(
        tree.len(),
        masks.len() - components(g),
        "not a spanning forest"
    );
    assert!(running_intersection_brute(&masks, tree));
    assert!(has_running_intersection(&cert.cliques, tree));
    for e in cert.clique_tree.iter() {
        assert_eq!(
            mask_of(e.separator),
            masks[e.a as usize] & masks[e.b as usize]
        );
        assert_eq!(
            e.separator.len(),
            mask_of(e.separator).count_ones() as usize
        );
        assert!(!e.separator.is_empty());
    }
    let biggest = masks
        .iter()
        .map(|m| m.count_ones() as usize)
        .max()
        .unwrap_or(1);
    assert_eq!(cert.treewidth, biggest.max(1) - 1);
}

/// Checks that `fill` is a minimal triangulation of a small graph by brute
/// force: it adds only new edges, the result is chordal, and dropping any
/// one fill edge is not (which suffices, by Rose, Tarjan and Lueker).
fn assert_minimal_fill_brute(g: &Graph, b: &Bits, fill: &[(u32, u32)]) {
    assert!(
        fill.windows(2).all(|w| w[0] < w[1]),
        "unsorted or repeated: {fill:?}"
    );
    for &(u, v) in fill {
        assert!(
            u < v && (v as usize) < g.n() && !g.has_edge(u, v),
            "bad fill edge {u}-{v}"
        );
    }
    let h = with_edges(b, fill);
    assert!(chordal_brute(&h), "G + {fill:?} is not chordal");
    for &f in fill {
        assert!(
            !chordal_brute(&without_edge(&h, f)),
            "fill edge {f:?} of {fill:?} is removable"
        );
    }
}

/// Checks everything `check` and both triangulation routes say about a small
/// graph, plus the pruning route along `other_order`.
fn assert_small(g: &Graph, other_order: Option<&[u32]>) {
    let b = bits(g);
    let verdict = check_with(g, &config(TriangulationRoute::McsM));
    assert_eq!(
        verdict.is_chordal(),
        chordal_brute(&b),
        "verdict on {:?}",
        b.adj
    );
    let limits = FillLimits::default();
    let along_mcs = pruned_elimination_fill(g, &mcs_elimination_order(g), &limits).unwrap();
    match verdict {
        Chordality::Chordal(cert) => {
            assert_certificate_brute(g, &b, &cert);
            assert_eq!(mcs_m(g), vec![]);
            assert_eq!(along_mcs, vec![]);
        }
        Chordality::NotChordal(w) => {
            assert!(is_chordless_cycle(g, &w.cycle), "{:?}", w.cycle);
            assert!(chordless_brute(&b, &w.cycle), "{:?}", w.cycle);
            let Triangulation::Minimal { algorithm, fill_in } = &w.triangulation else {
                panic!("no fill: {:?}", w.triangulation)
            };
            assert_eq!(*algorithm, FillAlgorithm::McsM);
            assert_minimal_fill_brute(g, &b, fill_in);
            assert_minimal_fill_brute(g, &b, &along_mcs);
        }
    }
    if let Some(order) = other_order {
        let fill = pruned_elimination_fill(g, order, &limits).unwrap();
        assert_minimal_fill_brute(g, &b, &fill);
    }
}

/// Checks a triangulation of a graph too big for brute force, using the
/// library's own recognition: the filled graph passes, and removing any one
/// fill edge fails.
fn assert_minimal_fill_by_check(g: &Graph, fill: &[(u32, u32)]) {
    assert!(fill.windows(2).all(|w| w[0] < w[1]));
    assert!(fill.iter().all(|&(u, v)| u < v && !g.has_edge(u, v)));
    let h = g.with_added_edges(fill);
    assert_eq!(
        is_peo(&h, &mcs_elimination_order(&h)),
        Ok(()),
        "G + fill is not chordal"
    );
    for i in 0..fill.len() {
        let mut rest = fill.to_vec();
        rest.remove(i);
        let h = g.with_added_edges(&rest);
        assert!(
            !check(&h).is_chordal(),
            "fill edge {:?} is removable",
            fill[i]
        );
    }
}

fn graph_from_bits(n: usize, edge_mask: u32) -> Graph {
    let mut edges = Vec::new();
    let mut k = 0;
    for u in 0..n as u32 {
        for v in u + 1..n as u32 {
            if edge_mask >> k & 1 == 1 {
                edges.push((u, v));
            }
            k += 1;
        }
    }
    Graph::with_numbered_vertices(n, &edges)
}

fn runner(cases: u32, seed: u8) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    )
}

/// Random graphs on 1 to `max_n` vertices, loops and repeats included (the
/// graph drops them), with a random vertex order alongside.
fn graph_and_order(max_n: usize) -> impl Strategy<Value = (Graph, Vec<u32>)> {
    (1..=max_n).prop_flat_map(|n| {
        let edges = proptest::collection::vec((0..n as u32, 0..n as u32), 0..=3 * n);
        let order = Just((0..n as u32).collect::<Vec<_>>()).prop_shuffle();
        (edges, order)
            .prop_map(move |(edges, order)| (Graph::with_numbered_vertices(n, &edges), order))
    })
}

// ---------------------------------------------------------------------------
// Small graphs: exhaustive and random.

#[test]
fn every_graph_on_at_most_six_vertices() {
    let mut chordal = [0usize; 7];
    for (n, count) in chordal.iter_mut().enumerate() {
        let pairs = n * n.saturating_sub(1) / 2;
        for edge_mask in 0u32..1 << pairs {
            let g = graph_from_bits(n, edge_mask);
            let reversed: Vec<u32> = (0..n as u32).rev().collect();
            assert_small(&g, Some(&reversed));
            *count += check(&g).is_chordal() as usize;
        }
    }
    // Labelled chordal graphs on n vertices (OEIS A058862).
    assert_eq!(chordal, [1, 1, 2, 8, 61, 822, 18154]);
}

#[test]
fn random_graphs_up_to_twelve_vertices() {
    runner(400, 1)
        .run(&graph_and_order(12), |(g, order)| {
            assert_small(&g, Some(&order));
            Ok(())
        })
        .unwrap();
}

#[test]
fn checkers_agree_with_brute_force() {
    runner(400, 2)
        .run(&graph_and_order(9), |(g, order)| {
            let b = bits(&g);
            assert_eq!(
                is_peo(&g, &order).is_ok(),
                peo_brute(&b, &order),
                "{order:?}"
            );
            // Every prefix of a random order, read as a cycle.
            for len in 0..=order.len() {
                let seq = &order[..len];
                assert_eq!(
                    is_chordless_cycle(&g, seq),
                    chordless_brute(&b, seq),
                    "{seq:?}"
                );
            }
            // The certificate's cliques under the true tree and under a
            // random one: the checker must agree with brute force both ways.
            if let Chordality::Chordal(cert) = check(&g) {
                let masks: Vec<u32> = cert.cliques.iter().map(mask_of).collect();
                let k = masks.len() as u32;
                let random_tree: Vec<(u32, u32)> = (1..k)
                    .map(|i| (i, order[i as usize % order.len()] % i))
                    .collect();
                // Up to k - 1 arbitrary pairs: loops, repeats and cycles
                // included, so not always a forest.
                let len = order.len();
                let any_pairs: Vec<(u32, u32)> = (1..k as usize)
                    .map(|i| (order[i % len] % k, order[(3 * i + 1) % len] % k))
                    .collect();
                for tree in [cert.clique_tree.pairs(), &random_tree[..], &any_pairs[..]] {
                    assert_eq!(
                        has_running_intersection(&cert.cliques, tree),
                        running_intersection_brute(&masks, tree),
                        "{masks:?} {tree:?}"
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn relabelled_witnesses_stay_chordless() {
    // A witness is still a chordless cycle after rotation and reversal, and a
    // chordless cycle with two members swapped is not one.
    let g = Graph::with_numbered_vertices(6, &[(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0)]);
    let Chordality::NotChordal(w) = check(&g) else {
        panic!("C6 is not chordal")
    };
    let mut cycle = w.cycle.clone();
    cycle.rotate_left(2);
    assert!(is_chordless_cycle(&g, &cycle));
    cycle.reverse();
    assert!(is_chordless_cycle(&g, &cycle));
    cycle.swap(0, 2);
    assert!(!is_chordless_cycle(&g, &cycle));
}

// ---------------------------------------------------------------------------
// Families with known answers.

fn chordal_cert(g: &Graph) -> ChordalCertificate {
    match check(g) {
        Chordality::Chordal(cert) => {
            assert_eq!(is_peo(g, &cert.peo), Ok(()));
            assert!(has_running_intersection(
                &cert.cliques,
                cert.clique_tree.pairs()
            ));
            assert_eq!(cert.clique_tree.len(), cert.cliques.len() - components(g));
            for c in &cert.cliques {
                for (i, &x) in c.iter().enumerate() {
                    assert!(
                        c[i + 1..].iter().all(|&y| g.has_edge(x, y)),
                        "{c:?} is not a clique"
                    );
                }
            }
            cert
        }
        Chordality::NotChordal(w) => panic!("expected chordal, got the cycle {:?}", w.cycle),
    }
}

#[test]
fn trees_are_chordal_with_treewidth_one() {
    let mut rng = Rng::new(3);
    for n in 2..60 {
        let edges: Vec<(u32, u32)> = (1..n).map(|i| (i as u32, rng.below(i) as u32)).collect();
        let cert = chordal_cert(&Graph::with_numbered_vertices(n, &edges));
        assert_eq!(cert.treewidth, 1);
        assert_eq!(cert.cliques.len(), n - 1);
        assert!(cert.cliques.iter().all(|c| c.len() == 2));
    }
}

/// A random k-tree on n vertices: a (k+1)-clique, then each new vertex joins
/// a k-subset of an existing (k+1)-clique.
fn k_tree(k: usize, n: usize, rng: &mut Rng) -> Graph {
    let mut edges = Vec::new();
    let first: Vec<u32> = (0..=k as u32).collect();
    for (i, &u) in first.iter().enumerate() {
        for &v in &first[i + 1..] {
            edges.push((u, v));
        }
    }
    let mut big: Vec<Vec<u32>> = vec![first];
    for v in k as u32 + 1..n as u32 {
        let mut base = big[rng.below(big.len())].clone();
        base.remove(rng.below(base.len()));
        edges.extend(base.iter().map(|&u| (u, v)));
        base.push(v);
        big.push(base);
    }
    Graph::with_numbered_vertices(n, &edges)
}

#[test]
fn k_trees_are_chordal_with_treewidth_k() {
    let mut rng = Rng::new(4);
    for k in 1..=5 {
        for n in [k + 1, k + 2, 20, 45] {
            let cert = chordal_cert(&k_tree(k, n, &mut rng));
            assert_eq!(cert.treewidth, k, "{k}-tree on {n}");
            assert_eq!(cert.cliques.len(), n - k);
            assert!(cert.cliques.iter().all(|c| c.len() == k + 1));
            assert!(cert.clique_tree.iter().all(|e| e.separator.len() == k));
        }
    }
}

#[test]
fn interval_graphs_are_chordal_with_treewidth_max_overlap_minus_one() {
    let mut rng = Rng::new(5);
    for n in 1..50 {
        let intervals: Vec<(usize, usize)> = (0..n)
            .map(|_| {
                let l = rng.below(100);
                (l, l + rng.below(15))
            })
            .collect();
        let mut edges = Vec::new();
        for i in 0..n {
            for j in i + 1..n {
                let (a, b) = (intervals[i], intervals[j]);
                if a.0.max(b.0) <= a.1.min(b.1) {
                    edges.push((i as u32, j as u32));
                }
            }
        }
        let overlap = intervals
            .iter()
            .map(|&(l, _)| intervals.iter().filter(|&&(a, b)| a <= l && l <= b).count())
            .max()
            .unwrap();
        let cert = chordal_cert(&Graph::with_numbered_vertices(n, &edges));
        assert_eq!(cert.treewidth, overlap - 1, "intervals {intervals:?}");
    }
}

#[test]
fn complete_and_disconnected_graphs() {
    for n in 1..12u32 {
        let edges: Vec<_> = (0..n)
            .flat_map(|u| (u + 1..n).map(move |v| (u, v)))
            .collect();
        let cert = chordal_cert(&Graph::with_numbered_vertices(n as usize, &edges));
        assert_eq!((cert.treewidth, cert.cliques.len()), (n as usize - 1, 1));
    }
    // Three triangles and two isolated vertices: a forest of five cliques.
    let edges = [
        (0, 1),
        (1, 2),
        (0, 2),
        (3, 4),
        (4, 5),
        (3, 5),
        (6, 7),
        (7, 8),
        (6, 8),
    ];
    let cert = chordal_cert(&Graph::with_numbered_vertices(11, &edges));
    assert_eq!(
        (cert.cliques.len(), cert.clique_tree.len(), cert.treewidth),
        (5, 0, 2)
    );
}

fn cycle_graph(n: u32) -> Graph {
    let edges: Vec<_> = (0..n).map(|i| (i, (i + 1) % n)).collect();
    Graph::with_numbered_vertices(n as usize, &edges)
}

#[test]
fn cycles_are_their_own_witness_and_need_n_minus_3_chords() {
    for n in 4..40u32 {
        let g = cycle_graph(n);
        for route in [
            TriangulationRoute::McsM,
            TriangulationRoute::PrunedElimination,
        ] {
            let Chordality::NotChordal(w) = check_with(&g, &config(route)) else {
                panic!("C{n} is not chordal")
            };
            assert_eq!(w.cycle.len(), n as usize);
            assert!(is_chordless_cycle(&g, &w.cycle));
            let fill = w.triangulation.fill_in().expect("fill computed");
            assert_eq!(fill.len(), n as usize - 3, "C{n} by {route:?}");
            assert_minimal_fill_by_check(&g, fill);
        }
    }
}

fn grid(rows: u32, cols: u32) -> Graph {
    let id = |r: u32, c: u32| r * cols + c;
    let mut edges = Vec::new();
    for r in 0..rows {
        for c in 0..cols {
            if c + 1 < cols {
                edges.push((id(r, c), id(r, c + 1)));
            }
            if r + 1 < rows {
                edges.push((id(r, c), id(r + 1, c)));
            }
        }
    }
    Graph::with_numbered_vertices((rows * cols) as usize, &edges)
}

#[test]
fn grids_are_not_chordal() {
    for rows in 2..=6 {
        for cols in 2..=6 {
            let g = grid(rows, cols);
            for route in [
                TriangulationRoute::McsM,
                TriangulationRoute::PrunedElimination,
            ] {
                let Chordality::NotChordal(w) = check_with(&g, &config(route)) else {
                    panic!("the {rows}x{cols} grid is not chordal")
                };
                assert!(is_chordless_cycle(&g, &w.cycle));
                // Grids are bipartite, and in a 2-row grid only single squares
                // are chordless.
                assert_eq!(w.cycle.len() % 2, 0);
                if rows == 2 || cols == 2 {
                    assert_eq!(w.cycle.len(), 4);
                }
                assert_minimal_fill_by_check(&g, w.triangulation.fill_in().expect("fill computed"));
            }
        }
    }
}

/// A random chordal graph: each new vertex joins a random non-empty subset of
/// the clique an earlier vertex joined with.
fn random_chordal(n: usize, rng: &mut Rng) -> Graph {
    let mut home: Vec<Vec<u32>> = vec![vec![0]];
    let mut edges = Vec::new();
    for v in 1..n as u32 {
        let mut base = home[rng.below(home.len())].clone();
        let keep = 1 + rng.below(base.len().min(4));
        while base.len() > keep {
            base.swap_remove(rng.below(base.len()));
        }
        edges.extend(base.iter().map(|&u| (u, v)));
        base.push(v);
        home.push(base);
    }
    Graph::with_numbered_vertices(n, &edges)
}

#[test]
fn medium_graphs_both_routes_minimal() {
    let mut rng = Rng::new(6);
    for (n, extra) in [(60, 1), (120, 3), (250, 6)] {
        let g = random_chordal(n, &mut rng);
        chordal_cert(&g);
        let mut edges: Vec<(u32, u32)> = g.edges().collect();
        for _ in 0..extra {
            edges.push((rng.below(n) as u32, rng.below(n) as u32));
        }
        let g = Graph::with_numbered_vertices(n, &edges);
        if check(&g).is_chordal() {
            continue;
        }
        for route in [
            TriangulationRoute::McsM,
            TriangulationRoute::PrunedElimination,
        ] {
            let Triangulation::Minimal { fill_in, .. } = triangulate(&g, &config(route)) else {
                panic!("no fill by {route:?}")
            };
            assert_minimal_fill_by_check(&g, &fill_in);
        }
    }
}

#[test]
fn auto_route_and_limits() {
    let g = cycle_graph(10);
    let Chordality::NotChordal(w) = check(&g) else {
        panic!("C10")
    };
    assert!(matches!(
        w.triangulation,
        Triangulation::Minimal {
            algorithm: FillAlgorithm::McsM,
            ..
        }
    ));
    let big_only = ChordalConfig {
        mcs_m_max_work: 10,
        ..ChordalConfig::default()
    };
    let Chordality::NotChordal(w) = check_with(&g, &big_only) else {
        panic!("C10")
    };
    assert!(matches!(
        w.triangulation,
        Triangulation::Minimal {
            algorithm: FillAlgorithm::PrunedElimination,
            ..
        }
    ));
    let starved = ChordalConfig {
        triangulation: TriangulationRoute::PrunedElimination,
        limits: FillLimits {
            max_fill_edges: 3,
            ..FillLimits::default()
        },
        ..ChordalConfig::default()
    };
    let Chordality::NotChordal(w) = check_with(&grid(6, 6), &starved) else {
        panic!("grid")
    };
    assert_eq!(
        w.triangulation,
        Triangulation::NotComputed {
            reason: FillNotComputed::FillTooLarge { limit: 3 }
        }
    );
    assert!(
        is_chordless_cycle(&grid(6, 6), &w.cycle),
        "the witness does not depend on the fill"
    );
}

// ---------------------------------------------------------------------------
// A million vertices on a default 2 MiB stack: nothing may recurse.

/// Runs `f` on a thread with the default 2 MiB stack, as a test thread has.
fn on_default_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

const MILLION: u32 = 1_000_000;

#[test]
fn million_vertex_path_on_a_default_stack() {
    on_default_stack(|| {
        let path: Vec<(u32, u32)> = (0..MILLION - 1).map(|i| (i, i + 1)).collect();
        let g = Graph::with_numbered_vertices(MILLION as usize, &path);
        let cert = chordal_cert(&g);
        assert_eq!(
            (cert.treewidth, cert.cliques.len()),
            (1, MILLION as usize - 1)
        );
    });
}

#[test]
fn million_vertex_cycle_on_a_default_stack() {
    on_default_stack(|| {
        let mut text = String::with_capacity(16 * MILLION as usize);
        for i in 0..MILLION {
            text.push_str(&i.to_string());
            text.push(' ');
            text.push_str(&((i + 1) % MILLION).to_string());
            text.push('\n');
        }
        let g = parse_edge_list(&text).unwrap().graph;
        assert_eq!((g.n(), g.m()), (MILLION as usize, MILLION as usize));
        let Chordality::NotChordal(w) = check(&g) else {
            panic!("a cycle is not chordal")
        };
        assert_eq!(w.cycle.len(), MILLION as usize);
        assert!(is_chordless_cycle(&g, &w.cycle));
        let Triangulation::Minimal { algorithm, fill_in } = &w.triangulation else {
            panic!("no fill: {:?}", w.triangulation)
        };
        assert_eq!(*algorithm, FillAlgorithm::PrunedElimination);
        assert_eq!(fill_in.len(), MILLION as usize - 3);
        let h = g.with_added_edges(fill_in);
        assert_eq!(is_peo(&h, &mcs_elimination_order(&h)), Ok(()));
    });
}

// ---------------------------------------------------------------------------
// The edge-list reader.

fn names(g: &Graph) -> Vec<&str> {
    (0..g.n() as u32).map(|v| g.name(v)).collect()
}

#[test]
fn parse_comments_blanks_and_isolated_vertices() {
    let p = parse_edge_list("# header\n\na b # trailing\n  c\n\tb\tc \r\nd").unwrap();
    assert_eq!(names(&p.graph), ["a", "b", "c", "d"]);
    assert_eq!(p.graph.edges().collect::<Vec<_>>(), [(0, 1), (1, 2)]);
    assert_eq!(p.graph.degree(3), 0);
    assert!(p.self_loops.is_empty() && p.duplicate_edges.is_empty());
    let p = parse_edge_list("a b\r\nb c\r\n").unwrap();
    assert_eq!(names(&p.graph), ["a", "b", "c"]);
    let p = parse_edge_list("α β\n10 200\n200 3#no space before the comment\n").unwrap();
    assert_eq!(names(&p.graph), ["α", "β", "10", "200", "3"]);
    assert_eq!(p.graph.m(), 3);
}

#[test]
fn parse_reports_self_loops_and_duplicates_by_line() {
    let p = parse_edge_list("a a\nb c\nc b\n# x\nc c\nb c\nd e\n").unwrap();
    assert_eq!(p.self_loops, [(1, "a".to_owned()), (5, "c".to_owned())]);
    assert_eq!(p.self_loop_count, 2);
    assert_eq!(
        p.duplicate_edges,
        [
            (3, "c".to_owned(), "b".to_owned()),
            (6, "b".to_owned(), "c".to_owned())
        ]
    );
    assert_eq!(p.duplicate_edge_count, 2);
    assert_eq!((p.graph.n(), p.graph.m()), (5, 2));
}

#[test]
fn parse_caps_the_reports_but_counts_everything() {
    let mut text = String::from("0 1\n");
    for _ in 0..250 {
        text.push_str("1 0\n7 7\n");
    }
    let p = parse_edge_list(&text).unwrap();
    assert_eq!(
        (p.duplicate_edges.len(), p.duplicate_edge_count),
        (REPORT_CAP, 250)
    );
    assert_eq!((p.self_loops.len(), p.self_loop_count), (REPORT_CAP, 250));
    assert_eq!(p.duplicate_edges[1].0, 4);
    assert_eq!(p.self_loops[1].0, 5);
}

#[test]
fn parse_rejects_long_lines_with_their_number() {
    let err = parse_edge_list("\n# c\na b # fine\nb c d # not fine\n").unwrap_err();
    assert_eq!(
        err,
        EdgeListError::TooManyTokens {
            line: 4,
            tokens: 3,
            excerpt: "b c d # not fine".to_owned()
        }
    );
    assert_eq!(err.line(), Some(4));
    let message = err.to_string();
    assert!(message.starts_with("line 4: "), "{message}");
    assert!(
        message.contains("`u v`"),
        "the message shows a good line: {message}"
    );
    let long = format!("a b {}", "c".repeat(200));
    let EdgeListError::TooManyTokens { excerpt, .. } = parse_edge_list(&long).unwrap_err() else {
        panic!("three tokens")
    };
    assert_eq!(excerpt.chars().count(), 80);
}

#[test]
fn parse_rejects_input_without_vertices() {
    for text in ["", "\n\n", "# only a comment\n   \n\t# another\n"] {
        let err = parse_edge_list(text).unwrap_err();
        assert_eq!(err, EdgeListError::Empty);
        assert_eq!(err.line(), None);
        assert!(err.to_string().contains("one edge `u v`"), "{err}");
    }
}

#[test]
fn parsed_names_map_the_witness_back() {
    let p = parse_edge_list("fetch parse\nparse plan\nplan exec\nexec fetch\n").unwrap();
    let Chordality::NotChordal(w) = check(&p.graph) else {
        panic!("a square")
    };
    let mut cycle: Vec<&str> = w.cycle.iter().map(|&v| p.graph.name(v)).collect();
    cycle.sort_unstable();
    assert_eq!(cycle, ["exec", "fetch", "parse", "plan"]);
}
