//! Library side of `cargo-panic`: the data formats and pure logic shared by the CLI
//! (`cargo-panic`) and the link driver (`cargo-panic-link`). Nothing here links LLVM.

pub mod assail;
pub mod attack;
pub mod budget;
pub mod ccargs;
pub mod cgroup;
pub mod clang;
pub mod controller;
pub mod env;
pub mod fsutil;
pub mod fuse;
pub mod kernel;
pub mod linkargs;
pub mod linked;
pub mod manifest;
pub mod metrics;
pub mod pricing;
pub mod procfs;
pub mod profile;
pub mod segfile;
pub mod signature;
pub mod toolchain;

/// The exit code a command-line tool reports for a child's status: its own code,
/// or 128 + the signal that killed it (as shells do).
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        _ => 1,
    }
}
