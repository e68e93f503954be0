//! End-to-end: the real `cargo-panic` binary builds the programs under `examples/`
//! instrumented, runs them, and the tests check the profiles against counts known
//! in closed form (see each example's README). Builds share one target directory
//! (`target/e2e`), so dependencies compile once per machine.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

mod common;
use common::{build_in, cargo_panic, copy_dir, repo, run_profiled, run_profiled_to, show};

fn shared_target() -> PathBuf {
    repo().join("target").join("e2e")
}

/// Each example built once per test process, in place, into the shared target dir.
fn built(example: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<std::collections::HashMap<String, PathBuf>>> = OnceLock::new();
    let map = BUILT.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(example.to_string())
        .or_insert_with(|| {
            // loops: `nap` is forced timed, so its region is observable as a function too.
            let extra: &[&str] = if example == "loops" {
                &["--time", "loops::nap"]
            } else {
                &[]
            };
            build_in(
                &repo().join("examples").join(example),
                &shared_target(),
                extra,
            )
            .remove(0)
        })
        .clone()
}

fn sites<'a>(p: &'a Value, function: &str, kind: &str) -> Vec<&'a Value> {
    p["sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["function"] == function && s["kind"] == kind)
        .collect()
}

fn count(p: &Value, function: &str, kind: &str) -> u64 {
    sites(p, function, kind)
        .iter()
        .map(|s| s["count"].as_u64().unwrap())
        .sum()
}

#[test]
fn counts_are_exact() {
    let exe = built("loops");
    let (out, p) = run_profiled(&exe, &["calls", "1000"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&p, "loops::bump", "entry"), 1000);
    assert_eq!(count(&p, "loops::bump", "exit"), 1000);
    assert_eq!(count(&p, "loops::drive_calls", "entry"), 1);

    // A single-latch loop of N iterations takes its back-edge N-1 times.
    let (_, p) = run_profiled(&exe, &["iter", "1000"]);
    assert_eq!(count(&p, "loops::triangle", "loop"), 999);

    // Naive recursion: 2*F(N+1)-1 calls, F(21) = 10946.
    let (_, p) = run_profiled(&exe, &["fib", "20"]);
    assert_eq!(count(&p, "loops::fib", "entry"), 2 * 10946 - 1);
    assert_eq!(count(&p, "loops::fib", "exit"), 2 * 10946 - 1);

    // Exact under contention: 8 threads x 1,000,000 calls.
    let (out, p) = run_profiled(&exe, &["threads", "8", "1000000"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&p, "loops::work", "entry"), 8_000_000);
    assert_eq!(count(&p, "loops::work", "exit"), 8_000_000);
}

#[test]
fn dwell_of_a_sleeping_region() {
    let exe = built("loops");
    let (out, p) = run_profiled(&exe, &["sleep", "10", "20"]);
    assert!(out.status.success(), "{}", show(&out));
    let in_range = |s: &Value| {
        let p50 = s["dwell_ns"]["p50"].as_u64().unwrap();
        assert!(
            (20_000_000..=30_000_000).contains(&p50),
            "p50 {p50} ns outside [20 ms, 30 ms]: {s}"
        );
        assert_eq!(s["dwell_ns"]["samples"], 10);
        assert!(s["dwell_ns"]["max"].as_u64().unwrap() >= p50);
    };
    // The function (forced timed with --time) and the blocking call inside it.
    let entry = sites(&p, "loops::nap", "entry");
    assert_eq!(entry.len(), 1);
    assert_eq!(entry[0]["count"], 10);
    in_range(entry[0]);
    let blocking = sites(&p, "loops::nap", "blocking");
    assert_eq!(blocking.len(), 1, "the sleep call is a blocking site");
    assert!(blocking[0]["callee"].as_str().unwrap().contains("sleep"));
    in_range(blocking[0]);
    // Count-only sites carry no durations.
    assert!(sites(&p, "loops::nap", "exit")[0]["dwell_ns"].is_null());
}

#[test]
fn profiles_survive_panic_segfault_abort_and_exit_from_a_thread() {
    let exe = built("crashy");
    for (mode, code, signal) in [
        ("panic", Some(101), None),
        ("segv", None, Some(11)),
        ("abort", None, Some(6)),
        ("exit-thread", Some(3), None),
    ] {
        let (out, p) = run_profiled(&exe, &[mode]);
        assert_eq!(
            p["exit"]["code"].as_i64(),
            code.map(i64::from),
            "{mode}: {}",
            show(&out)
        );
        assert_eq!(
            p["exit"]["signal"].as_i64(),
            signal.map(i64::from),
            "{mode}"
        );
        // The exit status is passed through (128 + signal for a signal).
        assert_eq!(
            out.status.code(),
            Some(code.unwrap_or(128 + signal.unwrap_or(0))),
            "{mode}"
        );
        assert_eq!(count(&p, "crashy::step", "entry"), 100, "{mode}");
        if let Some(sig) = signal {
            assert_eq!(p["runtime"]["state"], "signaled", "{mode}");
            assert_eq!(p["runtime"]["fatal_signal"], sig, "{mode}");
        } else {
            assert_eq!(p["runtime"]["state"], "exited", "{mode}");
        }
    }
    let (_, p) = run_profiled(&exe, &["panic"]);
    assert!(
        count(&p, "crashy::main", "panic") >= 1,
        "the panic path is a counted site"
    );
}

#[test]
fn instrumented_and_plain_builds_print_the_same() {
    let cases: &[(&str, &[&str])] = &[
        ("loops", &["calls", "1000"]),
        ("loops", &["fib", "15"]),
        ("lockpool", &["4", "500"]),
        ("crashy", &["ok"]),
        ("jsonparse", &["300", "3"]),
    ];
    for &(example, args) in cases {
        let exe = built(example);
        let plain_target = shared_target().join("plain");
        let out = Command::new("cargo")
            .args(["build", "--release", "--locked", "--target-dir"])
            .arg(&plain_target)
            .current_dir(repo().join("examples").join(example))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
        let plain = Command::new(plain_target.join("release").join(example))
            .args(args)
            .output()
            .unwrap();
        let instrumented = Command::new(&exe).args(args).output().unwrap();
        assert!(plain.status.success(), "{}", show(&plain));
        assert_eq!(
            String::from_utf8_lossy(&plain.stdout),
            String::from_utf8_lossy(&instrumented.stdout),
            "{example} {args:?}"
        );
    }
}

#[test]
fn dependencies_are_counted_and_relinks_hit_the_cache() {
    let exe = built("jsonparse");
    let (out, p) = run_profiled(&exe, &["300", "3"]);
    assert!(out.status.success(), "{}", show(&out));
    let counted = |prefix: &str| {
        p["sites"].as_array().unwrap().iter().any(|s| {
            s["function"].as_str().unwrap().starts_with(prefix) && s["count"].as_u64().unwrap() > 0
        })
    };
    assert!(counted("serde_json::"), "no counted site in serde_json");
    assert!(
        counted("regex_automata::") || counted("regex::"),
        "no counted site in regex"
    );
    assert!(count_kind(&p, "alloc") > 0 && count_kind(&p, "free") > 0);
    // Hot, short regions the rule chose are demoted during the run; their counts stay exact.
    let demoted: Vec<&Value> = p["sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["demoted"] == true)
        .collect();
    assert!(!demoted.is_empty(), "no region was demoted");
    for s in &demoted {
        assert_eq!(s["kind"], "entry");
        assert!(s["count"].as_u64().unwrap() >= 1024, "{s}");
        assert!(
            s["dwell_ns"]["samples"].as_u64().unwrap() < s["count"].as_u64().unwrap(),
            "{s}"
        );
    }

    // A copy of the crate, relinked after a touch and after an edit.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("examples").join("jsonparse"), dir.path());
    let target = shared_target().join("cache-test");
    build_in(dir.path(), &target, &[]);
    let stats = |target: &Path| -> Value {
        let path = target.join("panic").join("link-stats");
        let entry = std::fs::read_dir(&path)
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("jsonparse-"));
        serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap()
    };
    let main_rs = dir.path().join("src").join("main.rs");
    let text = std::fs::read_to_string(&main_rs).unwrap();
    std::fs::write(&main_rs, &text).unwrap(); // touch: same content, new mtime
    build_in(dir.path(), &target, &[]);
    let s = stats(&target);
    assert_eq!(s["cache_misses"], 0, "a touch changes no bitcode: {s}");
    assert!(s["cache_hits"].as_u64().unwrap() > 20, "{s}");

    let manifest: Value = serde_json::from_slice(
        &std::fs::read(format!(
            "{}.panic.json",
            target
                .join("x86_64-unknown-linux-gnu/release/jsonparse")
                .display()
        ))
        .unwrap(),
    )
    .unwrap();
    let own_modules = manifest["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            i["format"] == "bitcode" && i["name"].as_str().unwrap().starts_with("jsonparse-")
        })
        .count() as u64;
    assert!(own_modules >= 1);
    assert!(
        text.contains("checksum"),
        "the edit below changes a string literal"
    );
    std::fs::write(&main_rs, text.replacen("checksum", "checksum:", 1)).unwrap();
    build_in(dir.path(), &target, &[]);
    let s = stats(&target);
    let misses = s["cache_misses"].as_u64().unwrap();
    assert!(
        misses >= 1 && misses <= own_modules,
        "only the edited crate's modules recompile: {s}"
    );
    assert_eq!(
        s["cache_hits"].as_u64().unwrap() + misses,
        s["bitcode_modules"].as_u64().unwrap()
    );
}

fn count_kind(p: &Value, kind: &str) -> u64 {
    p["sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == kind)
        .map(|s| s["count"].as_u64().unwrap())
        .sum()
}

#[test]
fn two_clean_builds_give_identical_manifests() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("examples").join("loops"), dir.path());
    let target = dir.path().join("target");
    let exe = build_in(dir.path(), &target, &[]).remove(0);
    let first = std::fs::read(format!("{}.panic.json", exe.display())).unwrap();
    std::fs::remove_dir_all(&target).unwrap();
    let exe = build_in(dir.path(), &target, &[]).remove(0);
    let second = std::fs::read(format!("{}.panic.json", exe.display())).unwrap();
    assert!(first == second, "manifests differ between two clean builds");
    let m: Value = serde_json::from_slice(&first).unwrap();
    // Sites say which time and which only count, and why.
    let entry = m["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["function"] == "loops::bump" && s["kind"] == "entry");
    assert_eq!(entry.unwrap()["timed"], false);
    assert_eq!(entry.unwrap()["reason"], "small");
    assert!(
        m["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["instrumented"] == false),
        "std is listed as native"
    );
}

#[test]
fn the_live_segment_is_read_by_another_process() {
    let exe = built("loops");
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("segment");
    let mut child = Command::new(&exe)
        .args(["wait", "500"])
        .env("CARGO_PANIC_SHM", &seg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The program prints once it has made its calls and is about to block.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 8];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(format!("{}.panic.json", exe.display())).unwrap())
            .unwrap();
    let index_of = |function: &str, kind: &str| {
        manifest["sites"]
            .as_array()
            .unwrap()
            .iter()
            .position(|s| s["function"] == function && s["kind"] == kind)
            .unwrap()
    };
    let bump = index_of("loops::bump", "entry");
    let waiting = manifest["sites"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| {
            s["function"] == "loops::wait_for_eof"
                && s["kind"] == "blocking"
                && s["callee"].as_str().unwrap().contains("read_to_end")
        })
        .expect("the read_to_end call is a blocking site");
    let mut live = panic_runtime::Live::open(&seg).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let snap = live.snapshot().unwrap();
        assert_eq!(snap.counters[bump], 500);
        if snap
            .threads
            .iter()
            .any(|t| t.tid != 0 && t.cur_site == Some(waiting as u32))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the main thread never showed up in wait_for_eof's read"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.stdin.take().unwrap().write_all(b"hello").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(rest.contains("read 5 bytes"), "{rest}");
    assert!(child.wait().unwrap().success());
}

#[test]
fn both_command_forms_parse_the_same() {
    let exe = built("loops");
    let a = cargo_panic().args(["sites"]).arg(&exe).output().unwrap();
    let b = cargo_panic()
        .args(["panic", "sites"])
        .arg(&exe)
        .output()
        .unwrap();
    assert!(a.status.success(), "{}", show(&a));
    assert_eq!(a.stdout, b.stdout);
    let text = String::from_utf8_lossy(&a.stdout);
    assert!(
        text.contains("loops::bump") && text.contains("timed"),
        "{text}"
    );
    let json = cargo_panic()
        .args(["sites", "--json", "--kind", "loop"])
        .arg(&exe)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(v.as_array().unwrap().iter().all(|s| s["kind"] == "loop"));
    assert!(!v.as_array().unwrap().is_empty());
}

#[test]
fn report_sorts_and_limits() {
    let exe = built("loops");
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p.json");
    let (out, _) = run_profiled_to(&exe, &["calls", "77"], &profile);
    assert!(out.status.success(), "{}", show(&out));
    let rep = cargo_panic()
        .arg("report")
        .arg(&profile)
        .args(["--top", "3", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&rep.stdout).unwrap();
    let counts: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts.len(), 3);
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
    assert_eq!(counts[0], 77);
    let table = cargo_panic()
        .arg("report")
        .arg(&profile)
        .args(["--by", "dwell"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains("loops::main"));
}

#[test]
fn test_executables_of_a_debug_build_get_manifests() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("examples").join("crashy"), dir.path());
    let out = cargo_panic()
        .args(["build", "--tests", "--locked", "--target-dir"])
        .arg(dir.path().join("target"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let exe = PathBuf::from(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    );
    assert!(
        exe.to_string_lossy().contains("/debug/deps/crashy-"),
        "{}",
        exe.display()
    );
    let (out, p) = run_profiled(&exe, &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        count_kind(&p, "entry") > 0,
        "the test harness itself is instrumented"
    );
}

/// What every manifest's functions must say about their own sites: a lock site
/// gives a `lock:` touch, an allocation or free `alloc` and `memory`, a
/// back-edge `cpu`, a timed entry `dwell`; lists are sorted and unique.
fn check_touches_follow_sites(m: &cargo_panic_core::manifest::Manifest) {
    use panic_runtime::SiteKind;
    let functions = m.functions();
    for f in &functions {
        for list in [&f.callees, &f.touches] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "{}: {list:?}", f.name);
        }
        for t in &f.touches {
            assert!(
                panic_passes::Touch::parse(t).is_some(),
                "{}: `{t}` is outside the vocabulary",
                f.name
            );
        }
        assert_eq!(
            f.timed,
            f.touches.contains(&"dwell".to_string()),
            "{}",
            f.name
        );
    }
    // Sites follow their entry in counter order.
    let mut current = None;
    for s in &m.sites {
        if s.kind == SiteKind::Entry {
            current = functions.iter().find(|f| f.entry == s.id);
            assert!(current.is_some(), "entry {} is a function", s.id);
            continue;
        }
        let f = current.expect("an entry comes first");
        let has = |p: &str| f.touches.iter().any(|t| t.starts_with(p));
        match s.kind {
            SiteKind::Lock => assert!(has("lock:"), "{}: {:?}", f.name, f.touches),
            SiteKind::Alloc | SiteKind::Free => {
                assert!(has("alloc") && has("memory"), "{}: {:?}", f.name, f.touches)
            }
            SiteKind::Loop => assert!(has("cpu"), "{}: {:?}", f.name, f.touches),
            _ => {}
        }
    }
}

#[test]
fn the_manifest_records_what_each_function_calls_and_touches() {
    let exe = built("lockpool");
    let m = cargo_panic_core::manifest::Manifest::for_binary(&exe).unwrap();
    check_touches_follow_sites(&m);
    let functions = m.functions();
    let f = |name: &str| {
        functions
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no function {name}"))
    };
    // Leaf loops: CPU only, no calls.
    for leaf in ["lockpool::process", "lockpool::hold"] {
        assert!(f(leaf).callees.is_empty(), "{:?}", f(leaf).callees);
        assert_eq!(f(leaf).touches, ["cpu"], "{leaf}");
    }
    let worker = f("lockpool::worker");
    for callee in [
        "lockpool::hold",
        "lockpool::process",
        "std::sync::poison::mutex::Mutex<T>::lock",
    ] {
        assert!(
            worker.callees.iter().any(|c| c == callee),
            "{callee} in {:?}",
            worker.callees
        );
    }
    assert!(worker.touches.iter().any(|t| t == "cpu"));
    // The mutexes live on main's stack: their lock is named by its call site,
    // in the function the worker calls.
    let lock = f("std::sync::poison::mutex::Mutex<T>::lock");
    assert!(
        lock.touches
            .iter()
            .any(|t| t.starts_with("lock:lock:std::sync::poison::mutex::Mutex<T>::lock@")),
        "{:?}",
        lock.touches
    );
    // println! writes stdout: a file by call site.
    let main = f("lockpool::main");
    assert!(main.touches.iter().any(|t| t == "io"));
    assert!(
        main.touches
            .iter()
            .any(|t| t.starts_with("file:lockpool::main@")),
        "{:?}",
        main.touches
    );
    // A profile keeps the functions that ran.
    let (out, p) = run_profiled(&exe, &["2", "20"]);
    assert!(out.status.success(), "{}", show(&out));
    let p: cargo_panic_core::profile::Profile = serde_json::from_value(p).unwrap();
    let ran = m.functions_that_ran(&p);
    assert!(ran.iter().any(|f| f.name == "lockpool::worker"));
    assert!(ran.len() < functions.len(), "some error paths never ran");
    assert!(ran.iter().all(|r| functions.contains(r)));
}
