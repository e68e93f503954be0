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
