//! Times the whole certified chordality verdict on an edge-list file: parse,
//! then `check` (PEO or witness, cliques and clique tree or fill-in).
//!
//! ```text
//! cargo run --release -p panic-verifier --example chordal_time -- FILE
//! ```
//!
//! Reading the file is not timed; everything after it is.

use std::time::Instant;

use panic_verifier::chordal::{Chordality, Triangulation, check};
use panic_verifier::graph::parse_edge_list;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: chordal_time FILE");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        eprintln!("failed to read {path}: {e}");
        std::process::exit(2);
    });
    let start = Instant::now();
    let parsed = match parse_edge_list(&text) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    };
    let parse = start.elapsed();
    let g = &parsed.graph;
    let verdict = check(g);
    let total = start.elapsed();
    println!("file       {path} ({:.1} MB)", text.len() as f64 / 1e6);
    println!("graph      {} vertices, {} edges", g.n(), g.m());
    println!(
        "reported   {} self-loops, {} duplicate edges",
        parsed.self_loop_count, parsed.duplicate_edge_count
    );
    match &verdict {
        Chordality::Chordal(c) => println!(
            "verdict    chordal: {} maximal cliques, {} clique-tree edges, treewidth {}",
            c.cliques.len(),
            c.clique_tree.len(),
            c.treewidth
        ),
        Chordality::NotChordal(w) => {
            let fill = match &w.triangulation {
                Triangulation::Minimal { algorithm, fill_in } => {
                    format!("{} fill edges by {}", fill_in.len(), algorithm.name())
                }
                Triangulation::NotComputed { reason } => format!("no fill: {reason}"),
            };
            println!(
                "verdict    not chordal: chordless cycle of {}, {fill}",
                w.cycle.len()
            );
        }
    }
    println!("parse      {:.3} s", parse.as_secs_f64());
    println!("check      {:.3} s", (total - parse).as_secs_f64());
    println!("total      {:.3} s", total.as_secs_f64());
    drop(verdict);
}
