//! `panic-passes`: LLVM IR instrumentation for cargo-panic.
//!
//! The crate is version-neutral: it selects no LLVM itself; its consumer enables
//! `llvm22` (rustc's own LLVM, for Rust) or `llvm19` (Debian's clang-19 plugin).
//!
//! - [`classify`] decides which calls are sites (pure).
//! - [`rule`] decides which functions are timed regions (pure).
//! - [`cfg`] finds natural loops (pure).
//! - [`instrument`] inserts the probes into a module and returns its sites, with
//!   what each function calls and touches.
//! - [`touches`] is the vocabulary of what a function touches (pure).
//! - [`assail`] is each function's static risk profile (`risks` on its entry
//!   site), read from the IR before probes are inserted.
//! - `returns` finds the functions that always return, whose exit counts
//!   come from their entry counts.
//!
//! The crate never does IO and never links: it turns one module into an
//! instrumented module plus the list of its sites.

pub mod assail;
pub mod cfg;
pub mod classify;
pub mod instrument;
pub mod names;
mod returns;
pub mod rule;
pub mod touches;

pub use assail::Risks;
pub use classify::FaultPoint;
pub use instrument::{
    FunctionUses, InstrumentError, ModuleSites, Options, SiteKind, SiteRecord, counters_symbol,
    hists_symbol, instrument_module, module_suffix,
};
pub use rule::{CompiledRule, DwellRule, Reason};
pub use touches::{LockObject, Touch};

/// Environment variables the clang plugin reads; `cargo panic cc`'s compiler
/// wrappers and `cargo panic build` set them. Defined once here, for both sides.
pub mod plugin_env {
    /// The dwell rule, as JSON (`DwellRule`); the link driver reads the same one.
    pub const RULE: &str = "CARGO_PANIC_RULE";
    /// The object file a compile writes, added to the module key so the same
    /// source compiled into two objects gets distinct sites.
    pub const OBJECT: &str = "CARGO_PANIC_OBJECT";
    /// `uninstrumented`: when instrumentation fails, warn and compile the file
    /// without probes instead of failing the compile.
    pub const ON_ERROR: &str = "CARGO_PANIC_ON_ERROR";
    pub const ON_ERROR_UNINSTRUMENTED: &str = "uninstrumented";
}

/// Bumped whenever the instrumentation of a given input can change; part of every
/// object cache key. 3: entry sites record `callees` and `touches`. 4: fault
/// points (allocation sizes a fault replaces; `fault` in the sites). 5: entry
/// sites record `risks` (`assail`). 6: sites inlined from Rust's std take
/// the caller's line. 7: calls of std's `Mutex::lock`, `RwLock::read/write`
/// are lock sites. 8: the one exit of an untimed function that calls nothing
/// has no probe (`from_entry`). 9: nor that of one that always returns. 10:
/// nor, mostly, that of one whose calls may not come back (`pending`).
pub const PASS_VERSION: u32 = 10;
