//! Crash signatures end to end: the bug examples (`examples/c-bugs`, and
//! `examples/crashy`'s Rust modes) built through cargo panic, run under
//! `cargo panic run`, and the class, sites and hash their profiles carry;
//! `cargo panic explain` on those profiles and on bad input.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

/// c-bugs built once per test process (plain, no sanitizer).
fn c_bugs() -> PathBuf {
    c_example_once("c-bugs", "c-bugs")
}

fn crashy() -> PathBuf {
    rust_example_once("crashy")
}

fn c_source() -> PathBuf {
    c_bugs().parent().unwrap().join("main.c")
}

/// Runs `exe args` profiled with `run_args`; returns the profile's signature.
fn signature_of(
    run_args: &[&str],
    exe: &Path,
    args: &[&str],
) -> (Value, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.json");
    let (out, p) = run_profiled_with(run_args, exe, args, &path);
    let sig = p["signature"].clone();
    assert!(
        sig.is_object(),
        "no signature:\n{}\n{:#}",
        show(&out),
        p["evidence"]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cargo-panic: the program failed:")
            && stderr.contains("cargo panic explain"),
        "{}",
        show(&out)
    );
    (sig, path, dir)
}

fn site_named<'a>(sig: &'a Value, function: &str) -> &'a Value {
    sig["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["function"] == function)
        .unwrap_or_else(|| panic!("no site in {function}: {sig:#}"))
}

#[test]
fn c_deadlock_names_both_lock_sites() {
    let (sig, _, _d) = signature_of(&["--hang-timeout", "1s"], &c_bugs(), &["deadlock"]);
    assert_eq!(sig["class"], "deadlock", "{sig:#}");
    assert_eq!(sig["rule"], "deadlock-cycle", "{sig:#}");
    let src = c_source();
    let ab = site_named(&sig, "worker_ab");
    let ba = site_named(&sig, "worker_ba");
    // Each waits at its second lock call.
    assert_eq!(
        ab["line"],
        line_of(&src, "void *worker_ab", "pthread_mutex_lock(&b)"),
        "{sig:#}"
    );
    assert_eq!(
        ba["line"],
        line_of(&src, "void *worker_ba", "pthread_mutex_lock(&a)"),
        "{sig:#}"
    );
    assert_eq!(ab["role"], "lock wait");
    assert_eq!(sig["sites"].as_array().unwrap().len(), 2, "{sig:#}");
    assert!(sig["confidence"].as_f64().unwrap() >= 0.9);
}

#[test]
fn c_double_free_from_glibc_offers_the_sanitizer() {
    let (sig, _, _d) = signature_of(&[], &c_bugs(), &["double-free"]);
    assert_eq!(sig["class"], "double_free", "{sig:#}");
    assert_eq!(sig["rule"], "glibc-double-free");
    assert!(
        sig["confirm"]
            .as_str()
            .unwrap()
            .contains("cargo panic cc --sanitize address"),
        "{sig:#}"
    );
}

#[test]
fn c_unbounded_recursion_is_a_stack_overflow_in_descend() {
    let (sig, _, _d) = signature_of(&[], &c_bugs(), &["recurse"]);
    assert_eq!(sig["class"], "stack_overflow", "{sig:#}");
    // The runtime's fatal-signal record puts the fault in the guard region.
    assert_eq!(sig["rule"], "stack-guard-recursion", "{sig:#}");
    assert_eq!(site_named(&sig, "descend")["role"], "recursive function");
}

#[test]
fn c_null_store_is_a_null_dereference() {
    let (sig, _, _d) = signature_of(&[], &c_bugs(), &["null"]);
    assert_eq!(sig["class"], "null_dereference", "{sig:#}");
}

#[test]
fn c_leak_under_a_memory_limit_is_an_oom_leak_at_the_growing_site() {
    let (sig, path, _d) = signature_of(&["--memory-limit", "64MiB"], &c_bugs(), &["leak"]);
    assert_eq!(sig["class"], "oom", "{sig:#}");
    assert_eq!(sig["subclass"], "leak", "{sig:#}");
    let grow = site_named(&sig, "grow");
    assert_eq!(grow["role"], "growing allocation");
    assert_eq!(
        grow["line"],
        line_of(&c_source(), "void grow(void)", "malloc(")
    );
    let p: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert!(
        p["evidence"]["oom"]["limit_bytes"] == 64 << 20,
        "{:#}",
        p["evidence"]["oom"]
    );
}

#[test]
fn c_descriptor_exhaustion_is_resource_exhaustion() {
    let (sig, _, _d) = signature_of(&[], &c_bugs(), &["fds"]);
    assert_eq!(sig["class"], "resource_exhaustion", "{sig:#}");
    assert_eq!(sig["subclass"], "fds");
}

#[test]
fn a_clean_run_has_no_signature() {
    let dir = tempfile::tempdir().unwrap();
    let (out, p) = run_profiled_to(&c_bugs(), &["ok"], &dir.path().join("p.json"));
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        p.get("signature").is_none() && p.get("evidence").is_none(),
        "{p:#}"
    );
    let e = cargo_panic()
        .arg("explain")
        .arg(dir.path().join("p.json"))
        .output()
        .unwrap();
    assert_eq!(e.status.code(), Some(2), "{}", show(&e));
    assert!(
        String::from_utf8_lossy(&e.stderr).contains("did not fail (exit status 0)"),
        "{}",
        show(&e)
    );
}

/// The same bug three times: one hash; another bug: another hash. `explain`
/// derives the same signature from the profile.
#[test]
fn signatures_group_runs_of_one_bug() {
    let hashes: Vec<String> = (0..3)
        .map(|_| {
            let (sig, _, _d) = signature_of(&[], &c_bugs(), &["double-free"]);
            sig["hash"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(hashes.iter().all(|h| h == &hashes[0]), "{hashes:?}");
    let (other, path, _d) = signature_of(&[], &c_bugs(), &["null"]);
    assert_ne!(other["hash"].as_str().unwrap(), hashes[0]);

    let e = cargo_panic()
        .args(["explain", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(e.status.success(), "{}", show(&e));
    let again: Value = serde_json::from_slice(&e.stdout).unwrap();
    assert_eq!(again["hash"], other["hash"]);
    assert_eq!(again["class"], other["class"]);
    let text = cargo_panic().arg("explain").arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains("null_dereference: confidence"), "{text}");
    assert!(text.contains("[null-dereference]"), "{text}");
    assert!(text.contains("the faulting address was 0x0"), "{text}");
}

#[test]
fn replays_count_runs_that_fail_the_same_way() {
    let (sig, _, _d) = signature_of(&["--replay", "2"], &c_bugs(), &["double-free"]);
    assert_eq!(sig["replay"]["runs"], 3, "{sig:#}");
    assert_eq!(sig["replay"]["same"], 3, "{sig:#}");
    assert_eq!(sig["confidence"].as_f64(), Some(0.92));
}

#[test]
fn explain_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.json");
    std::fs::write(&old, r#"{"version": 1, "binary": "x"}"#).unwrap();
    let e = cargo_panic().arg("explain").arg(&old).output().unwrap();
    assert_eq!(e.status.code(), Some(2), "{}", show(&e));
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(
        err.contains("format 1") && err.contains("format 2"),
        "{err}"
    );

    let (_, path, _d) = signature_of(&[], &c_bugs(), &["null"]);
    let e = cargo_panic()
        .arg("explain")
        .arg(&path)
        .args(["--stderr", "/nonexistent/log.txt"])
        .output()
        .unwrap();
    assert_eq!(e.status.code(), Some(2), "{}", show(&e));
    assert!(
        String::from_utf8_lossy(&e.stderr)
            .contains("cannot read the stderr log /nonexistent/log.txt"),
        "{}",
        show(&e)
    );
    // A stderr log from elsewhere is parsed like the run's own.
    let log = dir.path().join("log.txt");
    std::fs::write(&log, "free(): double free detected in tcache 2\n").unwrap();
    let e = cargo_panic()
        .arg("explain")
        .arg(&path)
        .arg("--stderr")
        .arg(&log)
        .output()
        .unwrap();
    assert!(e.status.success(), "{}", show(&e));
}

#[test]
fn asan_use_after_free_names_the_allocation_and_free_sites() {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| build_c_example("c-bugs", &["--sanitize", "address"]));
    let exe = dir.path().join("c-bugs");
    let (sig, _, _d) = signature_of(&[], &exe, &["uaf"]);
    assert_eq!(sig["class"], "use_after_free", "{sig:#}");
    assert_eq!(sig["rule"], "sanitizer-use-after-free");
    let src = dir.path().join("main.c");
    let frame = |role: &str| {
        sig["frames"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["role"] == role)
            .unwrap_or_else(|| panic!("no {role} frame: {sig:#}"))
            .clone()
    };
    let (access, freed, allocated) = (frame("access"), frame("freed"), frame("allocated"));
    assert_eq!(access["function"], "use_buffer");
    assert_eq!(
        access["line"],
        line_of(&src, "int use_buffer", "return buf[32]")
    );
    assert_eq!(freed["function"], "drop_buffer");
    assert_eq!(
        freed["line"],
        line_of(&src, "void drop_buffer", "free(buf)")
    );
    assert_eq!(allocated["function"], "make_buffer");
    assert_eq!(
        allocated["line"],
        line_of(&src, "char *make_buffer", "malloc(64)")
    );
}

#[test]
fn rust_unwrap_on_none_is_a_panic_of_kind_unwrap_at_its_line() {
    let exe = crashy();
    let (sig, _, _d) = signature_of(&[], &exe, &["unwrap"]);
    assert_eq!(
        (&sig["class"], &sig["subclass"]),
        (&"rust_panic".into(), &"unwrap".into()),
        "{sig:#}"
    );
    assert_eq!(sig["rule"], "rust-panic-at-site", "{sig:#}");
    let src = repo().join("examples/crashy/src/main.rs");
    let line = line_of(&src, "fn lookup", ".unwrap()");
    let site = site_named(&sig, "crashy::lookup");
    assert_eq!(site["line"], line, "{sig:#}");
    assert!(
        site["file"].as_str().unwrap().ends_with("src/main.rs"),
        "{sig:#}"
    );
    let panic = sig["frames"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["role"] == "panic")
        .unwrap();
    assert_eq!(panic["line"], line, "{sig:#}");
}

#[test]
fn rust_index_out_of_bounds_is_a_panic_of_kind_index() {
    let (sig, _, _d) = signature_of(&[], &crashy(), &["index"]);
    assert_eq!(
        (&sig["class"], &sig["subclass"]),
        (&"rust_panic".into(), &"index".into()),
        "{sig:#}"
    );
}

#[test]
fn rust_unbounded_recursion_is_a_stack_overflow_in_descend() {
    let (sig, _, _d) = signature_of(&[], &crashy(), &["recurse"]);
    assert_eq!(sig["class"], "stack_overflow", "{sig:#}");
    assert_eq!(sig["rule"], "stack-guard-recursion", "{sig:#}");
    assert_eq!(
        site_named(&sig, "crashy::descend")["role"],
        "recursive function"
    );
}

/// Rust's futex mutexes record no owner: both threads asleep on lock sites
/// is a deadlock of lower confidence. The wait is named by the program's own
/// `lock()` call (the second one in `take_both`), not by std's slow path.
#[test]
fn rust_opposite_lock_order_is_a_deadlock_at_the_programs_lock_call() {
    let (sig, path, _d) = signature_of(&["--hang-timeout", "1s"], &crashy(), &["deadlock"]);
    assert_eq!(sig["class"], "deadlock", "{sig:#}");
    assert_eq!(sig["rule"], "deadlock-lock-waits", "{sig:#}");
    assert!(sig["confidence"].as_f64().unwrap() < 0.9, "{sig:#}");
    let src = repo().join("examples/crashy/src/main.rs");
    let site = site_named(&sig, "crashy::take_both");
    assert_eq!(site["role"], "lock wait", "{sig:#}");
    assert_eq!(
        site["line"],
        line_of(&src, "fn take_both", "second.lock()"),
        "{sig:#}"
    );
    assert!(
        site["file"].as_str().unwrap().ends_with("src/main.rs"),
        "{sig:#}"
    );
    // Both threads were seen asleep on a futex, each in a lock region.
    let p: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let waiting = p["evidence"]["threads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["futex"].is_u64() && t["site"].is_u64())
        .count();
    assert_eq!(waiting, 2, "{:#}", p["evidence"]["threads"]);
}
