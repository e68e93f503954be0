//! Library side of `cargo-panic`: the data formats and pure logic shared by the CLI
//! (`cargo-panic`) and the link driver (`cargo-panic-link`). Nothing here links LLVM.

pub mod ccargs;
pub mod clang;
pub mod env;
pub mod fsutil;
pub mod linkargs;
pub mod linked;
pub mod manifest;
pub mod profile;
pub mod toolchain;
