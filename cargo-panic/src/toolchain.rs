//! The Rust toolchain: the one cargo-panic was built with (its link driver links
//! that toolchain's libLLVM) and the one a project would build with now.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    pub release: String,
    pub commit: String,
    pub llvm: String,
    pub host: String,
    pub sysroot: PathBuf,
}

impl Toolchain {
    /// `rustc 1.95.0 (59807616e) LLVM 22.1.2`
    pub fn describe(&self) -> String {
        let short = &self.commit[..self.commit.len().min(9)];
        format!("rustc {} ({short}) LLVM {}", self.release, self.llvm)
    }
}

/// The toolchain this cargo-panic was compiled with.
pub fn built_with() -> (String, String, String, String) {
    (
        env!("CARGO_PANIC_BUILT_RUSTC_RELEASE").to_string(),
        env!("CARGO_PANIC_BUILT_RUSTC_COMMIT").to_string(),
        env!("CARGO_PANIC_BUILT_LLVM_VERSION").to_string(),
        env!("CARGO_PANIC_BUILT_HOST").to_string(),
    )
}

/// File name of the libLLVM the link driver is linked against.
pub const LLVM_LIB: &str = env!("CARGO_PANIC_LLVM_LIB");

/// The rustc a cargo build in `dir` would use (`$RUSTC`, else `rustc`, which honours
/// rustup's toolchain files there).
pub fn current(dir: &Path) -> Result<Toolchain> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(&rustc)
        .arg("-vV")
        .current_dir(dir)
        .output()
        .with_context(|| {
            format!("failed to run `{rustc} -vV`: is Rust installed (rustup) and on PATH?")
        })?;
    if !out.status.success() {
        bail!(
            "`{rustc} -vV` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let sys = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .current_dir(dir)
        .output()
        .with_context(|| format!("failed to run `{rustc} --print sysroot`"))?;
    Ok(Toolchain {
        release: field("release:"),
        commit: field("commit-hash:"),
        llvm: field("LLVM version:"),
        host: field("host:"),
        sysroot: PathBuf::from(String::from_utf8_lossy(&sys.stdout).trim()),
    })
}

/// Fails with what to do when `tc` is not the toolchain cargo-panic was built for,
/// or when its libLLVM is missing.
pub fn check(tc: &Toolchain) -> Result<()> {
    let (release, commit, llvm, _host) = built_with();
    if tc.commit != commit {
        bail!(
            "this project builds with rustc {} (LLVM {}), but cargo-panic was built with rustc {release} \
             (LLVM {llvm}); its link driver must use the same LLVM as rustc. Rebuild cargo-panic with \
             the project's toolchain: `cargo install --force --path <cargo-panic checkout>/cargo-panic` \
             (run it where that toolchain is active), or switch this project back to rustc {release}",
            tc.release,
            tc.llvm
        );
    }
    let lib = tc.sysroot.join("lib").join(LLVM_LIB);
    if !lib.exists() {
        bail!(
            "rustc's LLVM library {} is missing: the link driver needs it. Reinstall the toolchain \
             (`rustup toolchain install {release} --force`) and rebuild cargo-panic",
            lib.display()
        );
    }
    Ok(())
}
