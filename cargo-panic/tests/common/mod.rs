//! What the integration tests share: where the repository is, the `cargo-panic`
//! command they run (with cargo-panic's home inside `target/`, so tests never
//! write to the user's home, and no compiler settings from outside), output
//! formatting, copying examples, building them and running them profiled.
//! Each test crate uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// cargo-panic's home for the tests: compiler wrappers and the clang plugin,
/// built once and shared by every test.
pub fn home() -> PathBuf {
    repo().join("target").join("e2e-home")
}

/// `cargo-panic`, with the tests' home and no CC/CXX/flags from outside.
pub fn cargo_panic() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cargo-panic"));
    c.env("CARGO_PANIC_HOME", home());
    for var in ["CC", "CXX", "CFLAGS", "CXXFLAGS", "LDFLAGS"] {
        c.env_remove(var);
    }
    c
}

pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Fails the test, saying how to get them, unless every tool answers `--version`.
pub fn require_tools(tools: &[&str]) {
    for tool in tools {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "`{tool}` is missing: these tests need {}; run `bash scripts/install-deps.sh`",
            tools.join(", ")
        );
    }
}

/// Copies a source tree, leaving out build outputs (`target/`, `build/`).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name();
        if name == "target" || name == "build" {
            continue;
        }
        let dest = to.join(&name);
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// `cargo panic build --release --locked <extra>` in `dir`; returns the
/// executables it printed, each checked to exist with its manifest.
pub fn build_in(dir: &Path, target_dir: &Path, extra: &[&str]) -> Vec<PathBuf> {
    let out = cargo_panic()
        .args(["build", "--release", "--locked", "--target-dir"])
        .arg(target_dir)
        .args(extra)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo panic build failed in {}:\n{}",
        dir.display(),
        show(&out)
    );
    let exes: Vec<PathBuf> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(PathBuf::from)
        .collect();
    assert!(!exes.is_empty(), "no executable printed");
    for e in &exes {
        assert!(e.is_file(), "{} does not exist", e.display());
        assert!(
            PathBuf::from(format!("{}.panic.json", e.display())).is_file(),
            "no manifest beside {}",
            e.display()
        );
    }
    exes
}

/// `cargo panic run` with a fresh profile path; returns (output, profile).
pub fn run_profiled(exe: &Path, args: &[&str]) -> (Output, Value) {
    let dir = tempfile::tempdir().unwrap();
    run_profiled_to(exe, args, &dir.path().join("p.json"))
}

/// `cargo panic run --out <profile>`; returns (output, profile).
pub fn run_profiled_to(exe: &Path, args: &[&str], profile: &Path) -> (Output, Value) {
    run_profiled_with(&[], exe, args, profile)
}

/// `cargo panic run <run_args> --out <profile>`; returns (output, profile).
pub fn run_profiled_with(
    run_args: &[&str],
    exe: &Path,
    args: &[&str],
    profile: &Path,
) -> (Output, Value) {
    run_profiled_env(run_args, exe, args, profile, &[])
}

/// [`run_profiled_with`] with `envs` set for cargo-panic and the target.
pub fn run_profiled_env(
    run_args: &[&str],
    exe: &Path,
    args: &[&str],
    profile: &Path,
    envs: &[(&str, &str)],
) -> (Output, Value) {
    let out = cargo_panic()
        .envs(envs.iter().copied())
        .arg("run")
        .args(run_args)
        .arg("--out")
        .arg(profile)
        .arg("--")
        .arg(exe)
        .args(args)
        .output()
        .unwrap();
    assert!(profile.is_file(), "no profile written:\n{}", show(&out));
    let v: Value = serde_json::from_slice(&std::fs::read(profile).unwrap()).unwrap();
    (out, v)
}

/// `cargo panic cc` in a copy of examples/`name` with `cc_args`; returns the dir.
pub fn build_c_example(name: &str, cc_args: &[&str]) -> tempfile::TempDir {
    require_tools(&["clang-19", "make"]);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("examples").join(name), dir.path());
    let out = cargo_panic()
        .arg("cc")
        .args(cc_args)
        .args(["--", "make"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    dir
}

/// A C example built through `cargo panic cc` once per test process (in a
/// temp dir kept for the process's life); its executable `<dir>/<exe>`.
pub fn c_example_once(name: &'static str, exe: &str) -> PathBuf {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static DIRS: OnceLock<Mutex<HashMap<&'static str, &'static tempfile::TempDir>>> =
        OnceLock::new();
    let mut dirs = DIRS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let dir = dirs
        .entry(name)
        .or_insert_with(|| Box::leak(Box::new(build_c_example(name, &[]))));
    dir.path().join(exe)
}

/// A Rust example built with `cargo panic build --release` once per test
/// process, into the shared target dir `target/e2e`; its executable.
pub fn rust_example_once(name: &'static str) -> PathBuf {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static EXES: OnceLock<Mutex<HashMap<&'static str, PathBuf>>> = OnceLock::new();
    let mut exes = EXES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    exes.entry(name)
        .or_insert_with(|| {
            build_in(
                &repo().join("examples").join(name),
                &repo().join("target").join("e2e"),
                &[],
            )
            .remove(0)
        })
        .clone()
}

/// The 1-based number of the first line of `file` that contains `needle`
/// at or after the first line that contains `after`.
pub fn line_of(file: &Path, after: &str, needle: &str) -> u64 {
    let text = std::fs::read_to_string(file).unwrap();
    let start = text.lines().position(|l| l.contains(after)).unwrap();
    let off = text
        .lines()
        .skip(start)
        .position(|l| l.contains(needle))
        .unwrap();
    (start + off + 1) as u64
}
