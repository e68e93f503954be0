//! `panic-verifier`: the checks `cargo panic verify` runs before any stress run.
//!
//! Pure: no IO, no LLVM, no BPF. Every check answers with evidence (DESIGN §4
//! "Verdict"): a certificate the caller can re-check, or a counterexample.
//!
//! - [`graph`]: an undirected graph in compressed adjacency form, read from an
//!   edge list with located errors.
//! - [`chordal`]: chordality in O(V+E): perfect elimination ordering, maximal
//!   cliques, clique tree and treewidth, or a chordless cycle and a minimal
//!   triangulation.
//! - [`depgraph`]: a program's dependence graph (resources and shared objects
//!   its regions use together) from what the pass recorded per function.
//! - [`drift`]: a quadratic Lyapunov certificate for the projected dual-ascent
//!   price controller, checked by z3 in exact rational arithmetic, or a price
//!   vector whose drift is positive.
//! - [`feasible`]: whether a stress timeline can happen as written (acyclic
//!   chains, satisfiable start conditions with a model or an unsat core, loads
//!   within the machine at every instant, windows within the run).

pub mod chordal;
pub mod depgraph;
pub mod drift;
pub mod feasible;
pub mod graph;
pub mod rng;
