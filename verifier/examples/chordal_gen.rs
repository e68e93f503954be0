//! Writes a benchmark graph for `cargo panic verify --chordal` as an edge list
//! on stdout.
//!
//! ```text
//! cargo run --release -p panic-verifier --example chordal_gen -- N [--extra K] [--seed S]
//! ```
//!
//! The graph is random chordal: vertex `i` picks a random earlier vertex `j`
//! and joins a random subset of 1 to 4 members of the clique `j` joined with
//! (`j` itself included), so every vertex is simplicial when added and the
//! reverse insertion order is a perfect elimination ordering. That makes
//! about 2.5 edges per vertex (average degree about 5) and cliques of at most
//! 5. With `--extra K` it adds `K` edges between vertices at distance 3 or
//! more, each closing a chordless cycle, so the graph is not chordal. Vertex
//! names are a seeded random permutation of `0..N`, so ids carry no locality.

use panic_verifier::rng::SplitMix64 as Rng;
use std::io::{BufWriter, Write};

fn usage() -> ! {
    eprintln!("usage: chordal_gen N [--extra K] [--seed S]");
    std::process::exit(2);
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut n: Option<usize> = None;
    let mut extra = 0usize;
    let mut seed = 1u64;
    let mut i = 0;
    while i < args.len() {
        let value = |i: usize| {
            args.get(i + 1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| usage())
        };
        match args[i].as_str() {
            "--extra" => {
                extra = value(i) as usize;
                i += 1;
            }
            "--seed" => {
                seed = value(i);
                i += 1;
            }
            s => n = Some(s.parse().unwrap_or_else(|_| usage())),
        }
        i += 1;
    }
    let n = n.unwrap_or_else(|| usage());
    if n < 2 {
        usage();
    }
    let mut rng = Rng::new(seed);

    // Each vertex's home clique, stored flat: at most 5 members.
    let mut home: Vec<[u32; 5]> = Vec::with_capacity(n);
    let mut home_len: Vec<u8> = Vec::with_capacity(n);
    let mut edges: Vec<(u32, u32)> = Vec::with_capacity(n * 5 / 2);
    home.push([0; 5]);
    home_len.push(1);
    for v in 1..n as u32 {
        let j = rng.below(v as usize);
        let mut base = home[j];
        let mut len = home_len[j] as usize;
        let keep = (1 + rng.below(4)).min(len);
        while len > keep {
            let k = rng.below(len);
            base[k] = base[len - 1];
            len -= 1;
        }
        for &u in &base[..len] {
            edges.push((u, v));
        }
        base[len] = v;
        home.push(base);
        home_len.push(len as u8 + 1);
    }

    if extra > 0 {
        // Adjacency for the distance test: no edge and no common neighbour.
        let mut deg = vec![0usize; n + 1];
        for &(u, v) in &edges {
            deg[u as usize + 1] += 1;
            deg[v as usize + 1] += 1;
        }
        for k in 0..n {
            deg[k + 1] += deg[k];
        }
        let mut at = deg.clone();
        let mut adj = vec![0u32; 2 * edges.len()];
        for &(u, v) in &edges {
            adj[at[u as usize]] = v;
            at[u as usize] += 1;
            adj[at[v as usize]] = u;
            at[v as usize] += 1;
        }
        let nbrs = |x: u32| &adj[deg[x as usize]..deg[x as usize + 1]];
        let mut added = 0;
        while added < extra {
            let (a, b) = (rng.below(n) as u32, rng.below(n) as u32);
            let near =
                a == b || nbrs(a).contains(&b) || nbrs(a).iter().any(|&x| nbrs(x).contains(&b));
            if !near {
                edges.push((a, b));
                added += 1;
            }
        }
    }

    // Random names, random edge order, random endpoint order.
    let mut name: Vec<u32> = (0..n as u32).collect();
    for k in (1..n).rev() {
        name.swap(k, rng.below(k + 1));
    }
    for k in (1..edges.len()).rev() {
        edges.swap(k, rng.below(k + 1));
    }
    let out = std::io::stdout().lock();
    let mut out = BufWriter::with_capacity(1 << 20, out);
    for &(u, v) in &edges {
        let (u, v) = if rng.next_u64() & 1 == 0 {
            (u, v)
        } else {
            (v, u)
        };
        writeln!(out, "{} {}", name[u as usize], name[v as usize])?;
    }
    out.flush()
}
