//! The C/C++ toolchain: which clang cargo-panic drives, the pass plugin built for
//! it (on first use, under cargo-panic's home), and the runtime archive C links.
//!
//! Invariants: the plugin is only ever handed to the clang whose LLVM it was built
//! against (same major.minor.patch); the plugin file is named by the hash of the
//! sources it was built from, so a stale plugin is never reused; concurrent first
//! uses (a parallel make) build it once, under a file lock, and publish it with a
//! rename.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::fsutil;

/// The clang major version the plugin targets (Debian 12's clang-19).
pub const CLANG_MAJOR: u32 = 19;
/// Where clang-19 lives on Debian besides PATH.
const LLVM_BIN: &str = "/usr/lib/llvm-19/bin";
const INSTALL_HINT: &str = "install Debian's clang-19 and llvm-19-dev (`apt-get install clang-19 llvm-19-dev`, \
     or `bash scripts/install-deps.sh` in cargo-panic's source tree)";

/// The llvm-symbolizer of the clang `cargo panic cc` drives (sanitizer
/// reports need their own LLVM's to name functions and lines): Debian's
/// beside clang-19, else the one that clang names; None when neither is
/// installed.
pub fn symbolizer() -> Option<PathBuf> {
    let beside = Path::new(LLVM_BIN).join("llvm-symbolizer");
    if beside.is_file() {
        return Some(beside);
    }
    let out = std::process::Command::new(default_compiler(false))
        .arg("-print-prog-name=llvm-symbolizer")
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    p.is_absolute().then_some(p).filter(|p| p.is_file())
}

/// `$CARGO_PANIC_HOME`, else `$XDG_CACHE_HOME/cargo-panic`, else `~/.cache/cargo-panic`.
pub fn home() -> Result<PathBuf> {
    if let Some(h) = std::env::var_os(crate::env::HOME).filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(x).join("cargo-panic"));
    }
    match std::env::var_os("HOME") {
        Some(h) => Ok(PathBuf::from(h).join(".cache/cargo-panic")),
        None => bail!(
            "no home directory: set {} to a writable directory",
            crate::env::HOME
        ),
    }
}

/// The runtime archive, written once per content hash under `dir`.
pub fn runtime_archive(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let path = dir.join(format!(
        "libpanic_runtime-{}.a",
        panic_runtime::STATIC_LIB_HASH
    ));
    if !path.exists() {
        fsutil::write_atomic(&path, panic_runtime::STATIC_LIB)?;
    }
    Ok(path)
}

/// Writes the user header `panic.h` (the price API, weak so that a plain
/// build still links) into `<dir>/include-<hash>/` once and returns that
/// directory, for `-I`.
pub fn user_include_dir(dir: &Path) -> Result<PathBuf> {
    let inc = dir.join(format!("include-{}", panic_runtime::USER_HEADER_HASH));
    std::fs::create_dir_all(&inc).with_context(|| format!("failed to create {}", inc.display()))?;
    let path = inc.join(panic_runtime::USER_HEADER_FILE_NAME);
    if !path.exists() {
        fsutil::write_atomic(&path, panic_runtime::USER_HEADER.as_bytes())?;
    }
    Ok(inc)
}

/// A clang compiler: its path and LLVM version.
#[derive(Debug, Clone)]
pub struct Clang {
    pub path: PathBuf,
    /// `major.minor.patch`
    pub version: String,
}

/// The version line of `clang --version`, as `major.minor.patch`.
pub fn parse_clang_version(text: &str) -> Option<String> {
    let first = text.lines().next()?;
    if !first.contains("clang version") {
        return None;
    }
    let after = &first[first.find("clang version")? + "clang version".len()..];
    let v = after.split_whitespace().next()?;
    let v: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (v.split('.').count() >= 2).then_some(v)
}

/// Finds `clang-19` (or `clang++-19`) on PATH or in Debian's LLVM 19 bin dir.
pub fn default_compiler(cxx: bool) -> PathBuf {
    let name = if cxx { "clang++-19" } else { "clang-19" };
    if let Some(p) = which(name) {
        return p;
    }
    let p = Path::new(LLVM_BIN).join(if cxx { "clang++" } else { "clang" });
    if p.exists() { p } else { PathBuf::from(name) }
}

pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Checks that `compiler` is clang 19 and returns its version; the error says
/// which clang is needed and how to get it.
pub fn check_compiler(compiler: &Path, what: &str) -> Result<Clang> {
    let out = Command::new(compiler).arg("--version").output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        _ => bail!(
            "{what} `{}` cannot be run: cargo-panic needs clang {CLANG_MAJOR}; {INSTALL_HINT}",
            compiler.display()
        ),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = parse_clang_version(&text) else {
        bail!(
            "{what} `{}` is not clang ({}): cargo-panic's pass plugin runs inside clang {CLANG_MAJOR}; \
             use CC=clang-{CLANG_MAJOR} CXX=clang++-{CLANG_MAJOR} ({INSTALL_HINT})",
            compiler.display(),
            text.lines().next().unwrap_or("no version").trim()
        );
    };
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major != CLANG_MAJOR {
        bail!(
            "{what} `{}` is clang {version}, but the plugin is for clang {CLANG_MAJOR} (a pass plugin loads \
             only into the LLVM it was built against); use CC=clang-{CLANG_MAJOR} CXX=clang++-{CLANG_MAJOR} \
             ({INSTALL_HINT})",
            compiler.display()
        );
    }
    Ok(Clang {
        path: compiler.to_path_buf(),
        version,
    })
}

/// What `plugin.json` beside a built plugin records.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct PluginInfo {
    llvm_version: String,
    source_hash: String,
}

pub const PLUGIN_SOURCE_HASH: &str = env!("CARGO_PANIC_PLUGIN_SOURCE_HASH");
const PLUGIN_SOURCE_DIR: &str = env!("CARGO_PANIC_PLUGIN_SOURCE_DIR");

/// The plugin for `clang`, built on first use. `quiet` keeps cargo's progress
/// off stderr (the compiler wrappers use it).
pub fn ensure_plugin(clang: &Clang, quiet: bool) -> Result<PathBuf> {
    let dir = home()?.join("clang-plugin").join(PLUGIN_SOURCE_HASH);
    let so = dir.join("libpanic_clang_plugin.so");
    let info_path = dir.join("plugin.json");
    let current = |info_path: &Path| -> Option<PluginInfo> {
        fsutil::read_json::<PluginInfo>(info_path).ok()
    };
    if so.exists()
        && let Some(info) = current(&info_path)
        && info.llvm_version == clang.version
    {
        return Ok(so);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let lock = std::fs::File::create(dir.join("lock"))?;
    lock.lock()
        .context("failed to lock the plugin build directory")?;
    if so.exists()
        && let Some(info) = current(&info_path)
        && info.llvm_version == clang.version
    {
        return Ok(so);
    }
    let llvm_version = llvm_config_version()?;
    if llvm_version != clang.version {
        bail!(
            "clang `{}` is LLVM {} but llvm-19-dev is {llvm_version}: the plugin must be built against \
             the clang that loads it; upgrade both together (`apt-get install clang-19 llvm-19-dev`)",
            clang.path.display(),
            clang.version
        );
    }
    let src = Path::new(PLUGIN_SOURCE_DIR);
    if !src.join("Cargo.toml").exists() {
        bail!(
            "the clang plugin's sources ({}) are gone; reinstall cargo-panic from its source tree",
            src.display()
        );
    }
    if !quiet {
        eprintln!("cargo-panic: building the clang {CLANG_MAJOR} plugin (once) ...");
    }
    let target = home()?.join("clang-plugin").join("target");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--locked",
            "--quiet",
            "--manifest-path",
        ])
        .arg(src.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        // The plugin's own workspace, whatever the caller's cargo settings are.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .context("failed to run cargo to build the clang plugin")?;
    if !out.status.success() {
        bail!(
            "building the clang plugin failed:\n{}\n(needs llvm-19-dev: {INSTALL_HINT})",
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    let built = target.join("release/libpanic_clang_plugin.so");
    let bytes =
        std::fs::read(&built).with_context(|| format!("failed to read {}", built.display()))?;
    fsutil::write_atomic(&so, &bytes)?;
    fsutil::write_json_atomic(
        &info_path,
        &PluginInfo {
            llvm_version,
            source_hash: PLUGIN_SOURCE_HASH.into(),
        },
    )?;
    Ok(so)
}

fn llvm_config_version() -> Result<String> {
    let out = Command::new("llvm-config-19").arg("--version").output();
    match out {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        _ => {
            bail!("llvm-config-19 is missing, so the clang plugin cannot be built: {INSTALL_HINT}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clang_versions() {
        assert_eq!(
            parse_clang_version(
                "Debian clang version 19.1.7 (3~deb12u1)\nTarget: x86_64-pc-linux-gnu\n"
            ),
            Some("19.1.7".into())
        );
        assert_eq!(
            parse_clang_version("clang version 14.0.6\n"),
            Some("14.0.6".into())
        );
        assert_eq!(parse_clang_version("gcc (Debian 12.2.0-14) 12.2.0\n"), None);
        assert_eq!(parse_clang_version(""), None);
    }
}
