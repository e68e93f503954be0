//! Environment variables through which `cargo panic build` configures the link
//! driver it installs as rustc's linker. Defined once here.

/// The target directory of the build (the object cache lives under `<it>/panic/`).
pub const TARGET_DIR: &str = "CARGO_PANIC_TARGET_DIR";
/// The dwell rule, as JSON (`panic_passes::DwellRule`).
pub const RULE: &str = "CARGO_PANIC_RULE";
/// The linker the driver delegates the final native link to (default `cc`).
pub const REAL_LINKER: &str = "CARGO_PANIC_REAL_LINKER";
/// Worker threads for instrumentation and code generation (default: all cores).
pub const JOBS: &str = "CARGO_PANIC_JOBS";
/// The toolchain's `rustc -vV` release, commit and LLVM version, for the manifest.
pub const TOOLCHAIN: &str = "CARGO_PANIC_TOOLCHAIN";
/// A directory where the link driver writes every module it instruments as
/// textual IR (`<cache key>.ll`), after instrumentation. For debugging.
pub const DUMP_IR: &str = "CARGO_PANIC_DUMP_IR";
/// cargo-panic's own directory (built clang plugin, runtime archive, compiler
/// wrappers). Default `$XDG_CACHE_HOME/cargo-panic` or `~/.cache/cargo-panic`.
pub const HOME: &str = "CARGO_PANIC_HOME";
/// The compilers the `cargo panic cc` wrappers delegate to.
pub const REAL_CC: &str = "CARGO_PANIC_REAL_CC";
pub const REAL_CXX: &str = "CARGO_PANIC_REAL_CXX";
/// The plugin and runtime archive the wrappers use (resolved once by `cargo panic cc`).
pub const PLUGIN: &str = "CARGO_PANIC_PLUGIN";
pub const RUNTIME: &str = "CARGO_PANIC_RUNTIME";
/// A directory where each wrapped link writes a record of what it linked.
pub const CC_LOG: &str = "CARGO_PANIC_CC_LOG";
/// Set by `cargo panic build` for the `cc` crate: instrument only compiles for
/// the target (build scripts whose rustflags carry cargo-panic's linker).
pub const CC_FROM_CARGO: &str = "CARGO_PANIC_CC_FROM_CARGO";
/// The sanitizers `cargo panic cc --sanitize` asked for, as a comma list in
/// clang's spelling (`address,undefined`): the wrappers add `-fsanitize=` with
/// it to every compile and link.
pub const SANITIZE: &str = "CARGO_PANIC_SANITIZE";
