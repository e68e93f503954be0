//! An allocation-heavy JSON workload. It generates a deterministic document of
//! R records, serialises it, then parses it back M times both into typed
//! records and into `serde_json::Value`, counting regex matches on the way.
//! Usage: `jsonparse [RECORDS] [ROUNDS]` (defaults 2000 and 20).

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::hint::black_box;

/// Words that generated strings are built from.
const WORDS: [&str; 12] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima",
];

/// One child entry nested inside a record.
#[derive(Serialize, Deserialize)]
struct Child {
    key: String,
    weight: u32,
    notes: Vec<String>,
}

/// One top-level record of the document.
#[derive(Serialize, Deserialize)]
struct Record {
    id: u64,
    name: String,
    active: bool,
    tags: Vec<String>,
    matrix: Vec<Vec<i64>>,
    children: Vec<Child>,
}

/// A tiny linear congruential generator, so every run sees the same data.
struct Lcg(u64);

impl Lcg {
    /// Returns the next pseudo-random value in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }

    /// Returns a phrase such as "delta-42 kilo" made of one to three words,
    /// where some words carry a numeric suffix the regex looks for.
    fn phrase(&mut self) -> String {
        let words = 1 + self.below(3);
        let mut out = String::new();
        for w in 0..words {
            if w > 0 {
                out.push(' ');
            }
            out.push_str(WORDS[self.below(WORDS.len() as u64) as usize]);
            if self.below(2) == 0 {
                out.push_str(&format!("-{}", self.below(1000)));
            }
        }
        out
    }
}

/// Builds `count` records from a fixed seed.
#[inline(never)]
fn generate(count: u64) -> Vec<Record> {
    let mut rng = Lcg(0x5EED_1234);
    (0..black_box(count))
        .map(|id| Record {
            id,
            name: rng.phrase(),
            active: rng.below(2) == 1,
            tags: (0..rng.below(5)).map(|_| rng.phrase()).collect(),
            matrix: (0..1 + rng.below(4))
                .map(|_| {
                    (0..rng.below(6))
                        .map(|_| rng.below(2001) as i64 - 1000)
                        .collect()
                })
                .collect(),
            children: (0..rng.below(4))
                .map(|_| Child {
                    key: rng.phrase(),
                    weight: rng.below(100) as u32,
                    notes: (0..rng.below(3)).map(|_| rng.phrase()).collect(),
                })
                .collect(),
        })
        .collect()
}

/// Parses the document into typed records.
#[inline(never)]
fn parse_typed(text: &str) -> Vec<Record> {
    serde_json::from_str(black_box(text)).expect("generated JSON must parse")
}

/// Parses the document into an untyped `Value` tree.
#[inline(never)]
fn parse_value(text: &str) -> Value {
    serde_json::from_str(black_box(text)).expect("generated JSON must parse")
}

/// Counts regex matches over every string field of the typed records.
#[inline(never)]
fn count_matches(re: &Regex, records: &[Record]) -> u64 {
    let mut n = 0u64;
    for r in black_box(records) {
        let children = r
            .children
            .iter()
            .flat_map(|c| std::iter::once(&c.key).chain(&c.notes));
        for s in std::iter::once(&r.name).chain(&r.tags).chain(children) {
            n += re.find_iter(s).count() as u64;
        }
    }
    black_box(n)
}

/// Counts every node of a `Value` tree and sums its integers.
#[inline(never)]
fn walk_value(v: &Value, nodes: &mut u64, ints: &mut i64) {
    *nodes += 1;
    match v {
        Value::Array(items) => items.iter().for_each(|x| walk_value(x, nodes, ints)),
        Value::Object(map) => map.values().for_each(|x| walk_value(x, nodes, ints)),
        Value::Number(num) => *ints = ints.wrapping_add(num.as_i64().unwrap_or(0)),
        _ => {}
    }
}

/// Parses argument `idx` as a number, falling back to `default` when absent.
fn arg(args: &[String], idx: usize, default: u64) -> u64 {
    match args.get(idx) {
        Some(s) => s.parse().unwrap_or_else(|_| {
            eprintln!("jsonparse: argument {idx} ({s:?}) is not a non-negative integer");
            std::process::exit(2)
        }),
        None => default,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let records = arg(&args, 1, 2000);
    let rounds = arg(&args, 2, 20);

    let text = serde_json::to_string(&generate(records)).expect("records serialise");
    let re = Regex::new(r"\b[a-z]+-[0-9]+\b").expect("valid regex");

    // Every round does the same work, so the per-round figures must agree and
    // the checksum folds them together in a fixed order.
    let (mut matches, mut nodes, mut ints, mut checksum) = (0u64, 0u64, 0i64, 0u64);
    for _ in 0..rounds {
        let typed = parse_typed(&text);
        let value = parse_value(&text);
        matches = count_matches(&re, &typed);
        (nodes, ints) = (0, 0);
        walk_value(&value, &mut nodes, &mut ints);
        let ids = typed
            .iter()
            .fold(0u64, |acc, r| acc.wrapping_mul(31).wrapping_add(r.id));
        for part in [matches, nodes, ints as u64, ids, typed.len() as u64] {
            checksum = (checksum ^ part).wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
    println!(
        "records {records} rounds {rounds} bytes {} matches {matches} nodes {nodes} ints {ints} checksum {checksum:016x}",
        text.len()
    );
}
