//! Each kind of bad input gets one clear error that says what to do.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{cargo_panic, repo};

fn link_driver() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cargo-panic-link"))
}

/// Runs and expects failure (exit 2 unless told otherwise) with `needle` in stderr.
fn fails_with(out: Output, code: i32, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
    err
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// `cargo panic build` in examples/loops with `RUSTC` set to `rustc`.
fn build_loops_with_rustc(rustc: &Path) -> Output {
    cargo_panic()
        .arg("build")
        .env("RUSTC", rustc)
        .current_dir(repo().join("examples/loops"))
        .output()
        .unwrap()
}

#[test]
fn not_a_cargo_project() {
    let dir = tempfile::tempdir().unwrap();
    let out = cargo_panic()
        .arg("build")
        .current_dir(dir.path())
        .output()
        .unwrap();
    fails_with(out, 2, "not a cargo project");
}

#[test]
fn a_non_host_target() {
    let out = cargo_panic()
        .args(["build", "--target", "aarch64-unknown-linux-gnu"])
        .current_dir(repo().join("examples/loops"))
        .output()
        .unwrap();
    fails_with(out, 2, "host builds only");
}

#[test]
fn another_rustc_than_cargo_panic_was_built_with() {
    let dir = tempfile::tempdir().unwrap();
    let fake = script(
        dir.path(),
        "rustc",
        "if [ \"$1\" = -vV ]; then printf 'rustc 1.99.0\\nbinary: rustc\\ncommit-hash: 0000000000000000000000000000000000000000\\nhost: x86_64-unknown-linux-gnu\\nrelease: 1.99.0\\nLLVM version: 23.0.0\\n'; else exec rustc \"$@\"; fi",
    );
    let out = build_loops_with_rustc(&fake);
    let err = fails_with(out, 2, "cargo-panic was built with rustc");
    assert!(
        err.contains("1.99.0") && err.contains("cargo install"),
        "{err}"
    );
}

#[test]
fn rustc_llvm_library_missing() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("sysroot");
    std::fs::create_dir_all(empty.join("lib")).unwrap();
    let fake = script(
        dir.path(),
        "rustc",
        &format!(
            "if [ \"$1\" = --print ] && [ \"$2\" = sysroot ]; then echo {}; else exec rustc \"$@\"; fi",
            empty.display()
        ),
    );
    let out = build_loops_with_rustc(&fake);
    fails_with(out, 2, "is missing");
}

#[test]
fn the_link_driver_is_not_run_by_hand() {
    let out = link_driver().args(["-o", "x", "y.o"]).output().unwrap();
    fails_with(out, 1, "not run by hand");
}

#[test]
fn unreadable_bitcode_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.rcgu.o");
    std::fs::write(&bad, b"BC\xC0\xDEthis is not bitcode at all").unwrap();
    let out = link_driver()
        .env("CARGO_PANIC_TARGET_DIR", dir.path())
        .arg("-o")
        .arg(dir.path().join("out"))
        .arg(&bad)
        .output()
        .unwrap();
    fails_with(out, 1, "cannot read the LLVM bitcode of bad.rcgu.o");
    assert!(!dir.path().join("out").exists());
}

#[test]
fn bitcode_the_driver_cannot_handle_is_never_linked_silently() {
    // A static library found through -l whose member is bitcode.
    let dir = tempfile::tempdir().unwrap();
    let member = dir.path().join("m.o");
    std::fs::write(&member, b"BC\xC0\xDEpretend bitcode").unwrap();
    let st = Command::new("ar")
        .arg("rc")
        .arg(dir.path().join("libbc.a"))
        .arg(&member)
        .status()
        .unwrap();
    assert!(
        st.success(),
        "ar (binutils) is needed: apt-get install binutils"
    );
    let out = link_driver()
        .env("CARGO_PANIC_TARGET_DIR", dir.path())
        .arg("-o")
        .arg(dir.path().join("out"))
        .arg("-L")
        .arg(dir.path())
        .args(["-Wl,-Bstatic", "-lbc"])
        .output()
        .unwrap();
    fails_with(out, 1, "contains LLVM bitcode (m.o)");
}

#[test]
fn binaries_without_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("plain");
    std::fs::copy("/bin/true", &bin).unwrap();
    fails_with(
        cargo_panic().arg("sites").arg(&bin).output().unwrap(),
        2,
        "has no site manifest",
    );
    fails_with(
        cargo_panic()
            .args(["run", "--"])
            .arg(&bin)
            .output()
            .unwrap(),
        2,
        "cargo panic build",
    );
    fails_with(
        cargo_panic()
            .arg("sites")
            .arg(dir.path().join("nope"))
            .output()
            .unwrap(),
        2,
        "no such file",
    );
}

/// `cargo panic run --out <missing dir>/p.json -- prog` where `prog.panic.json`
/// holds `manifest`.
fn run_into_missing_dir(manifest: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("prog");
    std::fs::copy("/bin/true", &bin).unwrap();
    std::fs::write(dir.path().join("prog.panic.json"), manifest).unwrap();
    cargo_panic()
        .arg("run")
        .arg("--out")
        .arg(dir.path().join("missing/p.json"))
        .arg("--")
        .arg(&bin)
        .output()
        .unwrap()
}

#[test]
fn a_broken_manifest_is_reported_with_file_and_line() {
    fails_with(run_into_missing_dir("{}"), 2, "prog.panic.json:1:");
}

#[test]
fn out_directory_is_checked_before_running() {
    let good = serde_json::json!({
        "format": cargo_panic_core::manifest::FORMAT, "tool": "t", "pass_version": 1, "driver": "d",
        "abi_version": 1, "toolchain": "",
        "output": "prog", "opt_level": "O3", "target_cpu": "x86-64", "dwell_rule": {},
        "inputs": [], "counter_slots": 0, "hist_slots": 0, "sites": []
    });
    fails_with(run_into_missing_dir(&good.to_string()), 2, "does not exist");
}

/// `--syscall-sample` takes a percentage from 1 to 99 and is not combined
/// with `--syscalls` (which attaches the path for all of the run).
#[test]
fn a_bad_syscall_sample_is_refused_before_anything_runs() {
    for (args, needle) in [
        (
            &["--syscall-sample", "0"][..],
            "'0' is not a percentage from 1 to 99",
        ),
        (
            &["--syscall-sample", "150%"][..],
            "'150%' is not a percentage",
        ),
        (
            &["--syscall-sample", "ten"][..],
            "'ten' is not a percentage",
        ),
        (
            &["--syscalls", "--syscall-sample", "10%"][..],
            "cannot be used with",
        ),
    ] {
        let out = cargo_panic()
            .arg("run")
            .args(args)
            .args(["--", "true"])
            .output()
            .unwrap();
        fails_with(out, 2, needle);
    }
}
