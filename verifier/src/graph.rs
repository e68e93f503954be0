//! An undirected simple graph in compressed sparse row (CSR) form, and the
//! edge-list reader that builds it.
//!
//! Invariants:
//!
//! - Vertex ids are `0..n` as `u32`, with `n` at most [`MAX_VERTICES`] (below
//!   2^31), so the algorithms built on top can use `u32::MAX` for "no vertex"
//!   and the top bit as a flag.
//! - `neighbors(v)` is sorted ascending and holds no duplicate and never `v`
//!   itself: the graph is simple even when its input had self-loops or repeated
//!   edges, and adjacency is symmetric.
//! - Every vertex keeps the name it had in the input; the verdicts speak in ids
//!   and the caller maps them back through [`Graph::name`].
//! - Nothing here does IO, and nothing allocates per vertex or per line: names
//!   live in one string buffer, adjacency in two flat arrays.
//!
//! The reader takes the whole text, reports the first malformed line with its
//! 1-based number, and accepts self-loops and duplicate edges while listing
//! them (the first [`REPORT_CAP`] of each, plus a total count) so the caller can
//! warn without a huge file blowing up the report.

use rustc_hash::{FxHashMap, FxHashSet};

/// How many self-loops and duplicate edges [`ParsedGraph`] keeps by line; the
/// totals are counted past it.
pub const REPORT_CAP: usize = 100;

/// The largest number of vertices a graph can hold: ids are `u32` below 2^31,
/// leaving the top bit free for the algorithms' flags.
pub const MAX_VERTICES: usize = (1 << 31) - 1;

/// An undirected simple graph: CSR adjacency with sorted neighbour lists and a
/// name for every vertex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Graph {
    /// `adj[offsets[v]..offsets[v + 1]]` are the neighbours of `v`.
    offsets: Vec<usize>,
    adj: Vec<u32>,
    names: NameTable,
}

/// All vertex names concatenated in one buffer: name `v` is
/// `bytes[ends[v - 1]..ends[v]]` (from 0 for `v == 0`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct NameTable {
    bytes: String,
    ends: Vec<usize>,
}

impl NameTable {
    fn push(&mut self, name: &str) {
        self.bytes.push_str(name);
        self.ends.push(self.bytes.len());
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, v: usize) -> &str {
        let start = if v == 0 { 0 } else { self.ends[v - 1] };
        &self.bytes[start..self.ends[v]]
    }
}

impl Graph {
    /// Builds a graph on `names.len()` vertices from an edge list over ids.
    ///
    /// Self-loops are dropped and repeated edges (in either direction) are kept
    /// once, so the result is simple; [`parse_edge_list`] is the way to learn
    /// which ones there were.
    ///
    /// # Panics
    ///
    /// If an endpoint is not below `names.len()`, or there are more than
    /// [`MAX_VERTICES`] names.
    pub fn from_edges(names: Vec<String>, edges: &[(u32, u32)]) -> Graph {
        let mut table = NameTable::default();
        table.bytes.reserve(names.iter().map(String::len).sum());
        table.ends.reserve(names.len());
        for name in &names {
            table.push(name);
        }
        Graph::from_name_table(table, edges).0
    }

    /// Builds a graph whose vertex `i` is named by the decimal `i`: handy for
    /// tests and generators.
    ///
    /// # Panics
    ///
    /// As [`Graph::from_edges`].
    pub fn with_numbered_vertices(n: usize, edges: &[(u32, u32)]) -> Graph {
        let mut table = NameTable::default();
        table.ends.reserve(n);
        for i in 0..n {
            table.push(&i.to_string());
        }
        Graph::from_name_table(table, edges).0
    }

    /// Builds the CSR and returns it with the number of duplicate edges
    /// dropped (an edge given `k` times counts `k - 1`).
    fn from_name_table(names: NameTable, edges: &[(u32, u32)]) -> (Graph, usize) {
        let n = names.len();
        assert!(
            n <= MAX_VERTICES,
            "a graph holds at most {MAX_VERTICES} vertices"
        );
        let (offsets, adj, duplicates) = build_csr(n, edges);
        (
            Graph {
                offsets,
                adj,
                names,
            },
            duplicates,
        )
    }

    /// The number of vertices.
    pub fn n(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The number of edges (each undirected edge once).
    pub fn m(&self) -> usize {
        self.adj.len() / 2
    }

    /// The neighbours of `v`, sorted ascending.
    pub fn neighbors(&self, v: u32) -> &[u32] {
        let v = v as usize;
        &self.adj[self.offsets[v]..self.offsets[v + 1]]
    }

    /// The number of neighbours of `v`.
    pub fn degree(&self, v: u32) -> usize {
        let v = v as usize;
        self.offsets[v + 1] - self.offsets[v]
    }

    /// Whether `u` and `v` are adjacent: a binary search in the shorter of the
    /// two neighbour lists.
    pub fn has_edge(&self, u: u32, v: u32) -> bool {
        let (a, b) = if self.degree(u) <= self.degree(v) {
            (u, v)
        } else {
            (v, u)
        };
        self.neighbors(a).binary_search(&b).is_ok()
    }

    /// The name vertex `v` had in the input.
    pub fn name(&self, v: u32) -> &str {
        self.names.get(v as usize)
    }

    /// This graph with `extra` edges added (self-loops and repeats dropped),
    /// names kept: how a triangulation is re-checked.
    ///
    /// # Panics
    ///
    /// If an endpoint of `extra` is not a vertex.
    pub fn with_added_edges(&self, extra: &[(u32, u32)]) -> Graph {
        let mut edges: Vec<(u32, u32)> = Vec::with_capacity(self.m() + extra.len());
        edges.extend(self.edges());
        edges.extend_from_slice(extra);
        Graph::from_name_table(self.names.clone(), &edges).0
    }

    /// Every edge once, as `(u, v)` with `u < v`, in ascending order.
    pub fn edges(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        (0..self.n() as u32).flat_map(move |u| {
            self.neighbors(u)
                .iter()
                .filter(move |&&v| u < v)
                .map(move |&v| (u, v))
        })
    }
}

/// Builds sorted, deduplicated CSR adjacency for `n` vertices, dropping
/// self-loops; returns `(offsets, adj, duplicate edges dropped)`.
fn build_csr(n: usize, edges: &[(u32, u32)]) -> (Vec<usize>, Vec<u32>, usize) {
    // Degrees first, then an inclusive prefix sum so that `offsets[v]` is the
    // end of `v`'s range; filling decrements it back to the start.
    let mut offsets = vec![0usize; n + 1];
    for &(u, v) in edges {
        assert!(
            (u as usize) < n && (v as usize) < n,
            "edge ({u}, {v}) names a vertex outside 0..{n}"
        );
        if u != v {
            offsets[u as usize] += 1;
            offsets[v as usize] += 1;
        }
    }
    let mut total = 0usize;
    for slot in offsets.iter_mut().take(n) {
        total += *slot;
        *slot = total;
    }
    offsets[n] = total;
    let mut adj = vec![0u32; total];
    for &(u, v) in edges {
        if u != v {
            offsets[u as usize] -= 1;
            adj[offsets[u as usize]] = v;
            offsets[v as usize] -= 1;
            adj[offsets[v as usize]] = u;
        }
    }
    // Sort every list and squeeze out repeats in place: the write cursor never
    // passes the read cursor, so one array suffices.
    let mut write = 0usize;
    for v in 0..n {
        let (start, end) = (offsets[v], offsets[v + 1]);
        adj[start..end].sort_unstable();
        offsets[v] = write;
        let mut last = u32::MAX;
        for i in start..end {
            let x = adj[i];
            if x != last {
                adj[write] = x;
                write += 1;
                last = x;
            }
        }
    }
    offsets[n] = write;
    let duplicates = (total - write) / 2;
    adj.truncate(write);
    adj.shrink_to_fit();
    (offsets, adj, duplicates)
}

/// A graph read from an edge list, with what the reader accepted but the
/// caller should hear about.
#[derive(Clone, Debug)]
pub struct ParsedGraph {
    /// The simple graph: self-loops dropped, duplicate edges kept once.
    pub graph: Graph,
    /// `(line, vertex name)` for the first [`REPORT_CAP`] self-loops.
    pub self_loops: Vec<(usize, String)>,
    /// How many self-loop lines there were in all.
    pub self_loop_count: usize,
    /// `(line, u, v)` as written, for the first [`REPORT_CAP`] edges that
    /// repeat an earlier line's edge (in either direction).
    pub duplicate_edges: Vec<(usize, String, String)>,
    /// How many duplicate edge lines there were in all.
    pub duplicate_edge_count: usize,
}

/// Why an edge list could not be read. The caller prefixes the file name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EdgeListError {
    /// A line has three or more tokens.
    #[error(
        "line {line}: expected an edge `u v` or a lone vertex `v`, found {tokens} tokens in `{excerpt}` (a `#` starts a comment)"
    )]
    TooManyTokens {
        /// 1-based line number.
        line: usize,
        /// How many whitespace-separated tokens the line has before any `#`.
        tokens: usize,
        /// The line, cut to 80 characters.
        excerpt: String,
    },
    /// No line declared a vertex.
    #[error(
        "the edge list declares no vertices: write one edge `u v` or one lone vertex `v` per line (`#` starts a comment)"
    )]
    Empty,
    /// The input names more vertices than a `u32` id can count.
    #[error("line {line}: more than {max} distinct vertices, which is more than ids can count")]
    TooManyVertices {
        /// 1-based line number of the vertex that did not fit.
        line: usize,
        /// The most vertices a graph can hold.
        max: usize,
    },
}

impl EdgeListError {
    /// The 1-based line the error is about, if it is about one line.
    pub fn line(&self) -> Option<usize> {
        match self {
            EdgeListError::TooManyTokens { line, .. }
            | EdgeListError::TooManyVertices { line, .. } => Some(*line),
            EdgeListError::Empty => None,
        }
    }
}

/// Byte classes for the tokenizer.
const REGULAR: u8 = 0;
const BLANK: u8 = 1;
const NEWLINE: u8 = 2;
const HASH: u8 = 3;

static CLASS: [u8; 256] = {
    let mut t = [REGULAR; 256];
    t[b' ' as usize] = BLANK;
    t[b'\t' as usize] = BLANK;
    t[b'\r' as usize] = BLANK;
    t[0x0b] = BLANK;
    t[0x0c] = BLANK;
    t[b'\n' as usize] = NEWLINE;
    t[b'#' as usize] = HASH;
    t
};

/// A token's position in the text and, when it is a canonical decimal (no sign,
/// no leading zero, at most 18 digits), its value.
#[derive(Clone, Copy, Default)]
struct Token {
    start: usize,
    end: usize,
    int: Option<u64>,
}

/// Maps vertex names to ids in order of first appearance. Canonical decimal
/// names below a bound go through a dense table instead of hashing: they can
/// never collide with a hashed name, since a hashed name is never a canonical
/// decimal below the bound.
struct Interner<'a> {
    by_int: Vec<u32>,
    int_limit: u64,
    by_str: FxHashMap<&'a str, u32>,
    names: NameTable,
}

impl<'a> Interner<'a> {
    fn new(text_len: usize) -> Interner<'a> {
        Interner {
            by_int: Vec::new(),
            // n distinct names need at least 2n bytes, so a dense table this
            // size is at most twice the text in bytes.
            int_limit: (text_len as u64) / 2 + 1024,
            by_str: FxHashMap::default(),
            names: NameTable::default(),
        }
    }

    fn fresh(&mut self, name: &str, line: usize) -> Result<u32, EdgeListError> {
        let id = self.names.len();
        if id >= MAX_VERTICES {
            return Err(EdgeListError::TooManyVertices {
                line,
                max: MAX_VERTICES,
            });
        }
        self.names.push(name);
        Ok(id as u32)
    }

    fn intern(&mut self, text: &'a str, tok: Token, line: usize) -> Result<u32, EdgeListError> {
        let name = &text[tok.start..tok.end];
        match tok.int {
            Some(value) if value < self.int_limit => {
                let slot = value as usize;
                if slot >= self.by_int.len() {
                    let grown = (slot + 1)
                        .max(self.by_int.len() * 2)
                        .min(self.int_limit as usize);
                    self.by_int.resize(grown, u32::MAX);
                }
                let id = self.by_int[slot];
                if id != u32::MAX {
                    return Ok(id);
                }
                let id = self.fresh(name, line)?;
                self.by_int[slot] = id;
                Ok(id)
            }
            _ => {
                if let Some(&id) = self.by_str.get(name) {
                    return Ok(id);
                }
                let id = self.fresh(name, line)?;
                self.by_str.insert(name, id);
                Ok(id)
            }
        }
    }
}

/// Reads an undirected graph from an edge list.
///
/// One edge `u v` per line; a line with a single token declares an isolated
/// vertex (or just mentions a vertex again); `#` starts a comment anywhere on a
/// line, so names cannot contain it; blank lines are ignored; `\r\n` line ends
/// are fine. Vertex names are arbitrary tokens without ASCII whitespace, ids
/// are given in order of first appearance. A line with three or more tokens is
/// an error, and so is an input that names no vertex at all. Self-loops and
/// duplicate edges are accepted and reported.
///
/// Runs in one pass over the bytes plus a CSR build: no allocation per line,
/// and decimal names skip hashing.
pub fn parse_edge_list(text: &str) -> Result<ParsedGraph, EdgeListError> {
    let bytes = text.as_bytes();
    let len = bytes.len();
    let mut reader = Reader {
        text,
        interner: Interner::new(len),
        // Edge lines are rarely shorter than 8 bytes; pages reserved beyond
        // what is written are never touched.
        edges: Vec::with_capacity(len / 8 + 16),
        edge_lines: Vec::with_capacity(len / 8 + 16),
        self_loops: Vec::new(),
        self_loop_count: 0,
    };
    let mut batch: Vec<Pending> = Vec::with_capacity(BATCH);
    let mut i = 0usize;
    let mut line = 0usize;
    while i < len {
        line += 1;
        let line_start = i;
        let mut toks = [Token::default(); 2];
        let mut ntok = 0usize;
        loop {
            while i < len && CLASS[bytes[i] as usize] == BLANK {
                i += 1;
            }
            if i >= len {
                break;
            }
            match CLASS[bytes[i] as usize] {
                NEWLINE => {
                    i += 1;
                    break;
                }
                HASH => {
                    while i < len && bytes[i] != b'\n' {
                        i += 1;
                    }
                    continue;
                }
                _ => {}
            }
            let start = i;
            let mut value = 0u64;
            let mut decimal = true;
            while i < len {
                let c = bytes[i];
                if CLASS[c as usize] != REGULAR {
                    break;
                }
                let digit = c.wrapping_sub(b'0');
                if digit < 10 {
                    value = value.wrapping_mul(10).wrapping_add(digit as u64);
                } else {
                    decimal = false;
                }
                i += 1;
            }
            let digits = i - start;
            let canonical = decimal && digits <= 18 && (digits == 1 || bytes[start] != b'0');
            if ntok < 2 {
                toks[ntok] = Token {
                    start,
                    end: i,
                    int: canonical.then_some(value),
                };
            }
            ntok += 1;
        }
        match ntok {
            0 => {}
            1 | 2 => {
                batch.push(Pending {
                    line,
                    toks,
                    ntok: ntok as u8,
                });
                if batch.len() == BATCH {
                    reader.take(&mut batch)?;
                }
            }
            tokens => {
                // The lines before this one come first: they may hold an
                // earlier error.
                reader.take(&mut batch)?;
                let end = text[line_start..]
                    .find('\n')
                    .map_or(len, |k| line_start + k);
                let whole = text[line_start..end].trim();
                let excerpt: String = if whole.chars().count() > 80 {
                    whole.chars().take(77).chain("...".chars()).collect()
                } else {
                    whole.to_owned()
                };
                return Err(EdgeListError::TooManyTokens {
                    line,
                    tokens,
                    excerpt,
                });
            }
        }
    }
    reader.take(&mut batch)?;
    let Reader {
        interner,
        edges,
        edge_lines,
        self_loops,
        self_loop_count,
        ..
    } = reader;
    if interner.names.len() == 0 {
        return Err(EdgeListError::Empty);
    }
    let names = interner.names;
    let (graph, duplicates) = Graph::from_name_table(names, &edges);
    let mut duplicate_edges = Vec::new();
    if duplicates > 0 {
        // The rare path: find which lines repeated an edge, in file order.
        let mut seen: FxHashSet<(u32, u32)> = FxHashSet::default();
        seen.reserve(edges.len());
        for (k, &(u, v)) in edges.iter().enumerate() {
            if !seen.insert((u.min(v), u.max(v))) {
                if duplicate_edges.len() >= REPORT_CAP {
                    break;
                }
                duplicate_edges.push((
                    edge_lines[k] as usize,
                    graph.name(u).to_owned(),
                    graph.name(v).to_owned(),
                ));
            }
        }
    }
    Ok(ParsedGraph {
        graph,
        self_loops,
        self_loop_count,
        duplicate_edges,
        duplicate_edge_count: duplicates,
    })
}

/// How many lines are tokenized before their names are looked up.
const BATCH: usize = 256;

/// A tokenized line with one or two tokens, waiting for its names.
#[derive(Clone, Copy)]
struct Pending {
    line: usize,
    toks: [Token; 2],
    ntok: u8,
}

/// What the reader has gathered so far.
struct Reader<'a> {
    text: &'a str,
    interner: Interner<'a>,
    edges: Vec<(u32, u32)>,
    edge_lines: Vec<u32>,
    self_loops: Vec<(usize, String)>,
    self_loop_count: usize,
}

impl Reader<'_> {
    /// Interns a batch of lines, in order, and records their edges.
    ///
    /// The lookups come in a batch because with names spread at random over
    /// a large table each one is a cache miss: a first tight loop touches
    /// every slot the batch will need, so the misses overlap instead of
    /// waiting on each other.
    fn take(&mut self, batch: &mut Vec<Pending>) -> Result<(), EdgeListError> {
        let table = &self.interner.by_int;
        let mut touched = 0u32;
        for p in batch.iter() {
            for t in &p.toks[..p.ntok as usize] {
                if let Some(&id) = t.int.and_then(|v| table.get(v as usize)) {
                    touched ^= id;
                }
            }
        }
        std::hint::black_box(touched);
        for p in batch.drain(..) {
            let u = self.interner.intern(self.text, p.toks[0], p.line)?;
            if p.ntok == 1 {
                continue;
            }
            let v = self.interner.intern(self.text, p.toks[1], p.line)?;
            if u == v {
                self.self_loop_count += 1;
                if self.self_loops.len() < REPORT_CAP {
                    let t = p.toks[0];
                    self.self_loops
                        .push((p.line, self.text[t.start..t.end].to_owned()));
                }
            } else {
                self.edges.push((u, v));
                self.edge_lines
                    .push(u32::try_from(p.line).unwrap_or(u32::MAX));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_is_sorted_symmetric_and_simple() {
        let g = Graph::with_numbered_vertices(4, &[(2, 0), (0, 1), (1, 0), (3, 3), (0, 2), (3, 1)]);
        assert_eq!(g.n(), 4);
        assert_eq!(g.m(), 3);
        assert_eq!(g.neighbors(0), &[1, 2]);
        assert_eq!(g.neighbors(1), &[0, 3]);
        assert_eq!(g.neighbors(3), &[1]);
        assert!(g.has_edge(3, 1) && g.has_edge(1, 3));
        assert!(!g.has_edge(3, 3) && !g.has_edge(2, 3));
        assert_eq!(g.edges().collect::<Vec<_>>(), vec![(0, 1), (0, 2), (1, 3)]);
    }

    #[test]
    fn names_round_trip() {
        let g = Graph::from_edges(vec!["a".into(), "".into(), "ccc".into()], &[(0, 2)]);
        assert_eq!(g.name(0), "a");
        assert_eq!(g.name(1), "");
        assert_eq!(g.name(2), "ccc");
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn from_edges_rejects_out_of_range_ids() {
        Graph::with_numbered_vertices(2, &[(0, 2)]);
    }

    #[test]
    fn decimal_and_other_names_do_not_collide() {
        // "7" goes through the dense table, "07" and "+7" through the hash map,
        // and a 25-digit name is too long for the table.
        let p = parse_edge_list("7 07\n+7 7\n1234567890123456789012345 7\n").unwrap();
        let g = &p.graph;
        assert_eq!(g.n(), 4);
        assert_eq!(g.name(0), "7");
        assert_eq!(g.name(1), "07");
        assert_eq!(g.name(2), "+7");
        assert_eq!(g.name(3), "1234567890123456789012345");
        assert_eq!(g.neighbors(0), &[1, 2, 3]);
    }

    #[test]
    fn empty_graph_has_no_vertices() {
        let g = Graph::from_edges(Vec::new(), &[]);
        assert_eq!((g.n(), g.m()), (0, 0));
        assert_eq!(g.edges().count(), 0);
    }
}
