//! `cargo panic assail` end to end: the static profile of the bug examples
//! (`examples/c-bugs` through `cargo panic cc`, `examples/crashy` through
//! `cargo panic build`), where their known bugs rank, the suggested timelines
//! (checked by `cargo panic timeline --check`), `-p CRATE`, and bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use serde_json::Value;

/// c-bugs built once per test process (plain, no sanitizer).
fn c_bugs() -> PathBuf {
    c_example_once("c-bugs", "c-bugs")
}

fn crashy_dir() -> PathBuf {
    repo().join("examples").join("crashy")
}

fn shared_target() -> PathBuf {
    repo().join("target").join("e2e")
}

fn crashy() -> PathBuf {
    rust_example_once("crashy")
}

fn assail(args: &[&str]) -> Output {
    cargo_panic().arg("assail").args(args).output().unwrap()
}

fn assail_json(binary: &Path, top: usize) -> Value {
    let out = assail(&[
        "--binary",
        binary.to_str().unwrap(),
        "--json",
        "--top",
        &top.to_string(),
    ]);
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn function<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["function"] == name)
        .unwrap_or_else(|| panic!("{name} not ranked:\n{report:#}"))
}

fn kinds(f: &Value) -> Vec<&str> {
    f["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect()
}

/// Writes the suggested timeline of `binary` and checks it with `cargo panic
/// timeline --check`; returns its text.
fn suggested_timeline_checks(binary: &Path) -> String {
    let out = assail(&["--binary", binary.to_str().unwrap(), "--suggest-timeline"]);
    assert!(out.status.success(), "{}", show(&out));
    let yaml = String::from_utf8(out.stdout).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let check = cargo_panic()
        .args(["timeline", "--check"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(check.status.success(), "{yaml}\n{}", show(&check));
    yaml
}

#[test]
fn c_bugs_ranks_the_deadlock_then_the_recursion_then_the_allocations() {
    let exe = c_bugs();
    let src = exe.parent().unwrap().join("main.c");
    let r = assail_json(&exe, 20);
    let ranked: Vec<(&str, u64)> = r["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["function"].as_str().unwrap(), f["rank"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        ranked,
        [
            ("worker_ab", 1),
            ("worker_ba", 2),
            ("descend", 3),
            ("fill", 4),
            ("grow", 5),
            ("make_buffer", 6)
        ],
        "{r:#}"
    );
    assert_eq!(kinds(function(&r, "worker_ab")), ["deadlock"]);
    assert_eq!(kinds(function(&r, "descend")), ["recursion"]);
    assert_eq!(
        kinds(function(&r, "fill")),
        ["unchecked_alloc", "buffer_op"]
    );
    assert_eq!(kinds(function(&r, "grow")), ["alloc_in_loop"]);
    assert_eq!(kinds(function(&r, "make_buffer")), ["unchecked_alloc"]);

    // The lock-order cycle names both workers and the lines of their locks.
    let d = &r["deadlocks"].as_array().unwrap()[0];
    assert_eq!(
        d["locks"],
        serde_json::json!(["lock:global:a", "lock:global:b"])
    );
    assert_eq!(
        d["functions"],
        serde_json::json!(["worker_ab", "worker_ba"])
    );
    let holder = |i: usize| &d["edges"][i]["holders"][0];
    let lock = |f: &str, m: &str| {
        line_of(
            &src,
            &format!("*{f}(void *arg)"),
            &format!("pthread_mutex_lock(&{m})"),
        )
    };
    assert_eq!(holder(0)["function"], "worker_ab");
    assert_eq!(
        holder(0)["first_lines"],
        serde_json::json!([lock("worker_ab", "a")])
    );
    assert_eq!(
        holder(0)["second_lines"],
        serde_json::json!([lock("worker_ab", "b")])
    );
    assert_eq!(holder(1)["function"], "worker_ba");
    assert_eq!(
        holder(1)["first_lines"],
        serde_json::json!([lock("worker_ba", "b")])
    );
    assert_eq!(
        holder(1)["second_lines"],
        serde_json::json!([lock("worker_ba", "a")])
    );

    // The recursion: descend calls itself, with its 256-byte pad on the frame.
    let rec = &r["recursion"].as_array().unwrap()[0];
    assert_eq!(rec["functions"], serde_json::json!(["descend"]));
    assert!(rec["frame_bytes"].as_u64().unwrap() >= 256, "{rec}");

    // The pass's lines: grow's malloc in its loop, fill's unchecked malloc and
    // its memset of n bytes, make_buffer's unchecked malloc.
    let risks = |f: &str| function(&r, f)["risks"].clone();
    assert_eq!(
        risks("grow")["alloc_in_loop"],
        serde_json::json!([line_of(&src, "void grow(void)", "malloc(")])
    );
    assert_eq!(
        risks("fill")["unchecked_alloc"],
        serde_json::json!([line_of(&src, "int fill(size_t n)", "malloc(")])
    );
    assert_eq!(
        risks("fill")["buffer_ops"],
        serde_json::json!([line_of(&src, "int fill(size_t n)", "memset(")])
    );
    assert_eq!(
        risks("make_buffer")["unchecked_alloc"],
        serde_json::json!([line_of(&src, "char *make_buffer(void)", "malloc(")])
    );
    // One object, C.
    assert_eq!(r["units"].as_array().unwrap().len(), 1);
    assert_eq!(r["units"][0]["language"], "c");
    assert!(
        r["units"][0]["unit"]
            .as_str()
            .unwrap()
            .ends_with("build/main.o")
    );

    // The table says the same.
    let out = assail(&["--binary", exe.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "assail c-bugs:",
        "   1    100  worker_ab",
        "potential deadlocks",
        "descend calls itself",
        "main.o (c)",
    ] {
        assert!(table.contains(needle), "{needle}\n{table}");
    }
}

#[test]
fn c_bugs_suggested_timeline_passes_the_check() {
    let exe = c_bugs();
    let yaml = suggested_timeline_checks(&exe);
    for needle in [
        "via: cpuset",
        "via: spin",
        "via: hog",
        "intensity: 64MiB, args: {via: limit}",
        "via: fail-alloc",
        "crashes == 0",
        "oom_kills == 0",
    ] {
        assert!(yaml.contains(needle), "{needle}\n{yaml}");
    }
    // fail-alloc selects the unchecked mallocs by index: check them in the manifest.
    let m: Value =
        serde_json::from_slice(&std::fs::read(format!("{}.panic.json", exe.display())).unwrap())
            .unwrap();
    let mut selected = Vec::new();
    for part in yaml.split("sites: '#").skip(1) {
        let n: usize = part.split('\'').next().unwrap().parse().unwrap();
        let s = &m["sites"][n];
        assert_eq!(s["fault"], "alloc", "{s}");
        selected.push(s["function"].as_str().unwrap().to_string());
    }
    selected.sort();
    assert_eq!(selected, ["fill", "make_buffer"], "{yaml}");
}

#[test]
fn crashy_ranks_its_recursion_first_and_lists_its_panics() {
    let exe = crashy();
    let r = assail_json(&exe, 1000);
    let descend = function(&r, "crashy::descend");
    assert_eq!(descend["rank"], 1, "{r:#}");
    assert_eq!(kinds(descend), ["recursion"]);
    // Its own 512-byte `inner` array is on the frame.
    assert!(
        descend["risks"]["frame_bytes"].as_u64().unwrap() >= 512,
        "{descend}"
    );
    let rec = r["recursion"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["functions"] == serde_json::json!(["crashy::descend"]))
        .unwrap();
    assert_eq!(rec["score"], descend["score"]);
    // The unwrap in lookup, the index in element.
    let panic_kinds = |f: &str| -> Vec<String> {
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["function"] == f && x["kind"] == "panic")
            .map(|x| x["panic"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(panic_kinds("crashy::lookup"), ["unwrap"]);
    assert_eq!(panic_kinds("crashy::element"), ["index"]);
    assert!(r["panics"]["unwrap"].as_u64().unwrap() >= 1);
    assert!(r["panics"]["index"].as_u64().unwrap() >= 1);
    // Units are crates, from the paths.
    let units: Vec<&str> = r["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["unit"].as_str().unwrap())
        .collect();
    assert!(units.contains(&"crashy"), "{units:?}");
    assert!(
        r["units"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["language"] == "rust")
    );
    assert_eq!(r["binary"], "crashy");

    let yaml = suggested_timeline_checks(&exe);
    assert!(yaml.contains("recursion in crashy::descend"), "{yaml}");
    assert!(yaml.contains("via: hog"), "{yaml}");
}

#[test]
fn a_crate_is_built_with_cargo_panic_build_for_p() {
    crashy();
    let out = cargo_panic()
        .args(["assail", "-p", "crashy", "--json", "--top", "3", "--"])
        .args(["--locked", "--target-dir"])
        .arg(shared_target())
        .current_dir(crashy_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["functions"][0]["function"], "crashy::descend", "{r:#}");
    assert_eq!(r["functions"].as_array().unwrap().len(), 3);
}

#[test]
fn a_crate_that_fails_to_build_passes_the_error_through() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"broken\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("src/main.rs"),
        "fn main() { let x: u32 = undefined_name; }\n",
    )
    .unwrap();
    let out = cargo_panic()
        .args(["assail", "-p", "broken", "--", "--target-dir"])
        .arg(dir.path().join("target"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("undefined_name"), "{}", show(&out));
    assert!(
        err.contains("`cargo panic build -p broken` failed"),
        "{}",
        show(&out)
    );
    assert!(out.stdout.is_empty(), "{}", show(&out));
}

#[test]
fn a_binary_without_a_manifest_is_refused_with_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    std::fs::copy("/bin/true", &plain).unwrap();
    let out = assail(&["--binary", plain.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no site manifest"), "{err}");
    assert!(err.contains("cargo panic build"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let out = assail(&["--binary", dir.path().join("missing").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"));

    let out = assail(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--binary BIN or -p CRATE"));
}

#[test]
fn a_manifest_from_an_older_pass_asks_for_a_rebuild() {
    let exe = c_bugs();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("c-bugs");
    std::fs::copy(&exe, &copy).unwrap();
    let mut m: Value =
        serde_json::from_slice(&std::fs::read(format!("{}.panic.json", exe.display())).unwrap())
            .unwrap();
    m["pass_version"] = serde_json::json!(4);
    std::fs::write(format!("{}.panic.json", copy.display()), m.to_string()).unwrap();
    let out = assail(&["--binary", copy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("older cargo-panic") && err.contains("rebuild"),
        "{err}"
    );
}
