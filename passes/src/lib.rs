//! `panic-passes`: LLVM IR instrumentation for cargo-panic.
//!
//! The crate is version-neutral: it selects no LLVM itself; its consumer enables
//! `llvm22` (rustc's own LLVM, for Rust) or `llvm19` (Debian's clang-19 plugin).
//!
//! - [`classify`] decides which calls are sites (pure).
//! - [`rule`] decides which functions are timed regions (pure).
//! - [`cfg`] finds natural loops (pure).
//! - [`instrument`] inserts the probes into a module and returns its sites.
//!
//! The crate never does IO and never links: it turns one module into an
//! instrumented module plus the list of its sites.

pub mod cfg;
pub mod classify;
pub mod instrument;
pub mod names;
pub mod rule;

pub use instrument::{
    InstrumentError, ModuleSites, Options, SiteKind, SiteRecord, counters_symbol, hists_symbol,
    instrument_module, module_suffix,
};
pub use rule::{CompiledRule, DwellRule, Reason};

/// Bumped whenever the instrumentation of a given input can change; part of every
/// object cache key.
pub const PASS_VERSION: u32 = 2;
