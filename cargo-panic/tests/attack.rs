//! End-to-end attacks (root, for real): `cargo panic attack` against the
//! bundled c-server with known failure modes, one axis or feature per test,
//! asserting on the report: achieved fidelity, a real OOM kill under a memory
//! limit, a real ENOSPC, proxy faults seen by the client, an event chain that
//! fires on a crash, a ToC rule that throttles, hang detection, and that
//! nothing is left behind. Timelines are short (a few seconds); bounds on
//! measured levels are generous (this machine has 2 CPUs and other tests
//! run alongside), limits are exact.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use common::{build_c_example, cargo_panic, show};
use serde_json::Value;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests drive cgroups and mounts for real and need root; run them as root (CI does)"
    );
}

/// The c-server example, built once with `handle_request` timed.
fn server() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| build_c_example("c-server", &["--time", "handle_request"]))
        .path()
}

/// `cargo panic attack --quiet --timeline T --out R EXTRA... -- c-server ARGS...`.
fn attack_command(
    timeline: &Path,
    report: &Path,
    extra: &[&str],
    args: &[&str],
) -> std::process::Command {
    attack_program(&server().join("c-server"), timeline, report, extra, args)
}

/// `cargo panic attack --quiet --timeline T --out R EXTRA... -- PROGRAM ARGS...`.
fn attack_program(
    program: &Path,
    timeline: &Path,
    report: &Path,
    extra: &[&str],
    args: &[&str],
) -> std::process::Command {
    let mut c = cargo_panic();
    c.args(["attack", "--quiet", "--timeline"])
        .arg(timeline)
        .arg("--out")
        .arg(report)
        .args(extra)
        .arg("--")
        .arg(program)
        .args(args);
    c
}

/// Runs an attack with `timeline` (YAML text) against c-server with `args`;
/// returns the process output and the report.
fn attack(timeline: &str, args: &[&str], extra: &[&str]) -> (Output, Value) {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t.yaml");
    std::fs::write(&t, timeline).unwrap();
    let report = dir.path().join("report.json");
    let out = attack_command(&t, &report, extra, args).output().unwrap();
    let text = std::fs::read_to_string(&report)
        .unwrap_or_else(|e| panic!("no report ({e}):\n{}", show(&out)));
    (out, serde_json::from_str(&text).unwrap())
}

fn event<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("no event {id} in {r:#}"))
}

/// Mean of the achieved samples of an event, skipping the first `skip`.
fn achieved_mean(e: &Value, skip: usize) -> f64 {
    let v: Vec<f64> = e["samples"]
        .as_array()
        .unwrap()
        .iter()
        .skip(skip)
        .filter_map(|s| s["achieved"].as_f64())
        .collect();
    assert!(!v.is_empty(), "no achieved samples: {e:#}");
    v.iter().sum::<f64>() / v.len() as f64
}

/// Nothing a finished run made is left: no orphaned stressor process, no
/// scratch mount or run cgroup whose creator is gone. (Other tests run
/// alongside, so live runs' pieces may exist; only orphans are leftovers.)
fn assert_nothing_left() {
    let alive = |pid: &str| Path::new(&format!("/proc/{pid}")).exists();
    let ps = std::process::Command::new("ps")
        .args(["-eo", "pid,ppid,args"])
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.contains("__stress"))
    {
        let ppid = line.split_whitespace().nth(1).unwrap();
        assert!(
            ppid != "1" && alive(ppid),
            "an orphaned stressor process is left: {line}"
        );
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for m in mounts.lines().filter_map(|l| l.split_whitespace().nth(4)) {
        if let Some(id) = m
            .rsplit('/')
            .next()
            .and_then(|n| n.strip_prefix("cargo-panic-scratch-"))
        {
            let pid = id.split('-').next().unwrap();
            assert!(alive(pid), "a scratch mount of a finished run is left: {m}");
        }
    }
    for hier in ["memory", "cpu", "freezer", "pids", "cpuset", "unified"] {
        let Ok(d) = std::fs::read_dir(format!("/sys/fs/cgroup/{hier}/cargo-panic")) else {
            continue;
        };
        for e in d.flatten().filter(|e| e.path().is_dir()) {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().unwrap().to_string();
            assert!(
                alive(&pid),
                "the cgroup of a finished run is left: {}",
                e.path().display()
            );
        }
    }
}

#[test]
fn cpu_spin_reaches_its_level_and_quota_caps_the_target() {
    let (out, r) = attack(
        "duration: 4s\ntarget: {ready: port}\ntracks:\n  - axis: cpu\n    events:\n      - {id: spin, at: 0s, for: 2s, intensity: 0.5 cores}\n      - {id: cap, at: 2s, for: 2s, intensity: 0.2 cores, args: {via: quota}}\nworkload:\n  tcp: {rate: 200/s, concurrency: 8}\n",
        &["--work", "20000"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let spin = event(&r, "spin");
    assert_eq!(spin["outcome"], "survived");
    // The spinner's CPU use after its first second: near 0.5 cores.
    let a = achieved_mean(spin, 4);
    assert!(
        (0.2..0.8).contains(&a),
        "spin achieved {a} cores for 0.5 asked: {spin:#}"
    );
    // The quota is a hard limit: the target, which would use more (20 ms of
    // CPU per request at 200/s), stays under 0.2 cores (+ slack for one period).
    let cap = event(&r, "cap");
    let used = achieved_mean(cap, 2);
    assert!(
        used < 0.3,
        "target used {used} cores under a 0.2-core quota: {cap:#}"
    );
    assert!(
        used > 0.05,
        "the target did not run under the quota: {cap:#}"
    );
    // Fixed-time events start on time, not on the next tick.
    let late = cap["start_late_ns"].as_u64().unwrap();
    assert!(late < 100_000_000, "started {late} ns late");
    assert_nothing_left();
}

#[test]
fn memory_limit_oom_kills_and_the_chain_fires_on_the_crash() {
    let (out, r) = attack(
        "duration: 4s\ntarget: {ready: port, restart: on-failure, max_restarts: 1}\nworkload:\n  tcp: {rate: 200/s, concurrency: 8}\ntracks:\n  - axis: memory\n    events:\n      - {id: limit, at: 0s, intensity: 48MiB, args: {via: limit}}\n  - axis: cpu\n    events:\n      - {id: after-oom, start_when: {event: limit, outcome: crash}, for: 500ms, intensity: 0.2 cores}\n",
        &["--leak", "1048576"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let f = &r["failures"][0];
    assert_eq!(f["kind"], "oom", "{r:#}");
    assert_eq!(f["signal"], 9);
    assert_eq!(f["active_events"][0], "limit");
    // The crash signature: the OOM killer, with the event that was active.
    assert_eq!(f["signature"]["class"], "oom", "{f:#}");
    assert_eq!(event(&r, "limit")["outcome"], "crash");
    let chained = event(&r, "after-oom");
    // The engine wakes when the target ends: the follow-up starts at once,
    // not at the next tick (cadence 250 ms).
    let late = chained["started_ns"].as_u64().unwrap() - f["t_ns"].as_u64().unwrap();
    assert!(
        late < 100_000_000,
        "the follow-up started {late} ns after the crash"
    );
    assert_eq!(chained["outcome"], "survived");
    assert!(
        r["verdict"]["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("oom")
    );
    assert_nothing_left();
}

/// The run failed because c-server exited with `code`, saying `says` on stderr.
fn assert_exited(out: &Output, r: &Value, code: i64, says: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", show(out));
    let f = &r["failures"][0];
    assert_eq!(
        (f["kind"].as_str(), f["code"].as_i64()),
        (Some("exit"), Some(code)),
        "{r:#}"
    );
    let tail = f["stderr_tail"].to_string();
    assert!(tail.contains(says), "{tail}");
}

#[test]
fn fill_gives_the_target_a_real_enospc() {
    let (out, r) = attack(
        "duration: 4s\ntarget: {ready: port}\nworkload:\n  tcp: {rate: 50/s}\ntracks:\n  - axis: disk\n    events:\n      - {id: full, at: 500ms, intensity: 1MiB, args: {via: fill}}\n",
        &["--write", "65536"],
        &[],
    );
    assert_exited(&out, &r, 3, "No space left on device");
    assert_eq!(event(&r, "full")["outcome"], "crash");
    // The free space the fill left: at most the requested 1 MiB.
    let free = event(&r, "full")["samples"][0]["achieved"]
        .as_f64()
        .unwrap();
    assert!(free <= 1048576.0, "{free}");
}

/// The report's entry for fault event `id`.
fn fault<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["faults"]
        .as_array()
        .unwrap_or_else(|| panic!("no faults in {r:#}"))
        .iter()
        .find(|f| f["event"] == id)
        .unwrap_or_else(|| panic!("no fault report for {id} in {r:#}"))
}

#[test]
fn a_failed_allocation_at_a_chosen_site_is_handled_by_the_target() {
    let (out, r) = attack(
        "duration: 4s\ntarget: {ready: port}\nworkload:\n  tcp: {rate: 50/s}\ntracks:\n  - axis: memory\n    events:\n      - {id: fifth, at: 500ms, args: {via: fail-alloc, sites: handle_request, callee: malloc, nth: 5}}\n",
        &["--leak", "4096"],
        &["--replay", "1"],
    );
    // c-server reports the failed malloc (a real NULL and ENOMEM) and exits 4.
    assert_exited(&out, &r, 4, "allocation failed: Cannot allocate memory");
    assert_eq!(event(&r, "fifth")["outcome"], "crash");
    let fr = fault(&r, "fifth");
    assert_eq!(fr["attached"], true, "{fr:#}");
    assert_eq!(
        (fr["calls"].as_u64(), fr["injected"].as_u64()),
        (Some(5), Some(1)),
        "{fr:#}"
    );
    assert_eq!(fr["sites"][0]["function"], "handle_request", "{fr:#}");
    assert_eq!(fr["sites"][0]["callee"], "malloc", "{fr:#}");
    assert_eq!(fr["sites"][0]["injected"], 1, "{fr:#}");
    // The signature knows the attack failed that allocation on purpose.
    let sig = &r["failures"][0]["signature"];
    assert_eq!(
        (&sig["class"], &sig["subclass"], &sig["rule"]),
        (
            &"resource_exhaustion".into(),
            &"memory".into(),
            &"injected-allocation-failure".into()
        ),
        "{sig:#}"
    );
    // The same seed again fails the same way.
    assert_eq!(
        (&sig["replay"]["runs"], &sig["replay"]["same"]),
        (&2.into(), &2.into()),
        "{sig:#}"
    );
}

#[test]
fn enospc_at_the_targets_file_writes_is_real_to_it() {
    let (out, r) = attack(
        "duration: 4s\ntarget: {ready: port}\nworkload:\n  tcp: {rate: 50/s}\ntracks:\n  - axis: disk\n    events:\n      - {id: nospace, at: 500ms, intensity: 100%, args: {via: fail-io, sites: write_scratch, errno: ENOSPC}}\n",
        &["--write", "4096"],
        &[],
    );
    assert_exited(&out, &r, 3, "No space left on device");
    let fr = fault(&r, "nospace");
    assert_eq!(fr["fails_with"], "ENOSPC");
    assert!(fr["injected"].as_u64() >= Some(1), "{fr:#}");
    assert_eq!(fr["sites"][0]["callee"], "fwrite", "{fr:#}");
    // Every eligible call failed while it ran.
    assert_eq!(fr["calls"], fr["injected"], "{fr:#}");
}

#[test]
fn a_rust_target_aborts_when_its_allocator_refuses_an_allocation() {
    require_root();
    // Built into the target directory the e2e tests share.
    let exe = common::build_in(
        &common::repo().join("examples").join("jsonparse"),
        &common::repo().join("target").join("e2e"),
        &[],
    )
    .remove(0);
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t.yaml");
    std::fs::write(
        &t,
        "duration: 4s\ntracks:\n  - axis: memory\n    events:\n      - {id: refuse, at: 300ms, args: {via: fail-alloc, sites: 'alloc::raw_vec::*', nth: 50}}\n",
    )
    .unwrap();
    let report = dir.path().join("r.json");
    let out = attack_program(&exe, &t, &report, &[], &["100000", "1000"])
        .output()
        .unwrap();
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}\n{r:#}", show(&out));
    // Rust's allocation error handler aborts, naming the size the program
    // asked for (not the size the fault passed to the allocator).
    let f = &r["failures"][0];
    assert_eq!(
        (f["kind"].as_str(), f["signal"].as_i64()),
        (Some("crash"), Some(i64::from(libc::SIGABRT))),
        "{r:#}"
    );
    let tail = f["stderr_tail"].to_string();
    assert!(tail.contains("memory allocation of"), "{tail}");
    assert!(!tail.contains("4611686018427387904"), "{tail}");
    let fr = fault(&r, "refuse");
    assert_eq!(
        (fr["calls"].as_u64(), fr["injected"].as_u64()),
        (Some(50), Some(1)),
        "{fr:#}"
    );
    let callee = fr["sites"][0]["callee"].as_str().unwrap();
    assert!(callee.contains("__rust_"), "{fr:#}");
    let sig = &f["signature"];
    assert_eq!(sig["rule"], "injected-allocation-failure", "{sig:#}");
}

#[test]
fn eintr_at_the_targets_reads_breaks_some_requests_and_it_survives() {
    let (out, r) = attack(
        "duration: 3s\nseed: 11\ntarget: {ready: port}\nworkload:\n  tcp: {rate: 100/s}\ntracks:\n  - axis: time\n    events:\n      - {id: signals, at: 500ms, for: 2s, intensity: 50%, args: {via: eintr, sites: serve, callee: read}}\n",
        &[],
        &[],
    );
    // Nothing crashed: c-server closes a connection whose read failed.
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let fr = fault(&r, "signals");
    assert_eq!(fr["fails_with"], "EINTR");
    let (calls, injected) = (
        fr["calls"].as_u64().unwrap(),
        fr["injected"].as_u64().unwrap(),
    );
    assert!(calls >= 50, "{fr:#}");
    // A seeded half of the reads (the bound is loose: a binomial draw).
    let frac = injected as f64 / calls as f64;
    assert!((0.3..=0.7).contains(&frac), "{frac} of {calls}: {fr:#}");
    // Each interrupted read lost its request: the client saw it fail.
    let failed: u64 = r["workload"]["totals"]["failed"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert!(failed > 0, "{:#}", r["workload"]);
}

#[test]
fn proxy_faults_are_seen_by_the_client() {
    let (out, r) = attack(
        "duration: 4s\ntarget: {ready: port}\nworkload:\n  tcp: {rate: 40/s, concurrency: 8, timeout: 500ms}\ntracks:\n  - axis: network\n    events:\n      - {id: slow, at: 500ms, for: 1500ms, intensity: {latency: 80ms}}\n      - {id: cut, at: 2500ms, for: 1s, intensity: {down: true}}\n",
        &[],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // The proxy added the latency it was asked for (never less).
    let slow = event(&r, "slow");
    let added = achieved_mean(slow, 1);
    assert!(
        (80e6..300e6).contains(&added),
        "added {added} ns for 80 ms: {slow:#}"
    );
    let ticks = r["series"].as_array().unwrap();
    let in_window = |from: f64, to: f64| {
        ticks.iter().filter(move |t| {
            let s = t["t_ns"].as_f64().unwrap() / 1e9;
            s > from && s <= to
        })
    };
    // While slow: the client's p99 is above the added latency.
    let p99 = in_window(1.0, 2.0)
        .filter_map(|t| t["workload_p99_ns"].as_f64())
        .fold(0.0, f64::max);
    assert!(p99 >= 80e6, "client p99 {p99} while 80 ms was added");
    // While the network is down: requests fail; before any fault none did.
    let failed_down: u64 = in_window(2.75, 3.5)
        .filter_map(|t| t["workload_failed"].as_u64())
        .sum();
    let failed_before: u64 = in_window(0.0, 0.5)
        .filter_map(|t| t["workload_failed"].as_u64())
        .sum();
    assert!(
        failed_down > 0,
        "no failures while the network was down: {:#}",
        r["series"]
    );
    assert_eq!(failed_before, 0);
}

#[test]
fn a_toc_rule_throttles_the_subordinate_axis() {
    let (out, r) = attack(
        "duration: 3s\ntarget: {ready: port}\ntracks:\n  - axis: cpu\n    events:\n      - {id: spin, at: 0s, for: 3s, intensity: 1 cores}\n  - axis: memory\n    events:\n      - {id: hog, at: 0s, for: 3s, intensity: 16MiB}\nconstraints:\n  bottleneck: memory\n  subordinate:\n    cpu: {if: elapsed >= 1500ms, action: {intensity: 0.25 cores}}\n",
        &[],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let toc = r["toc"].as_array().unwrap();
    assert_eq!(toc.len(), 1, "{toc:#?}");
    assert_eq!(toc[0]["axis"], "cpu");
    assert_eq!(toc[0]["throttled"], true);
    let t_on = toc[0]["t_ns"].as_u64().unwrap();
    for s in event(&r, "spin")["samples"].as_array().unwrap() {
        let t = s["t_ns"].as_u64().unwrap();
        let (req, capped) = (
            s["requested"].as_f64().unwrap(),
            s["capped"].as_bool().unwrap(),
        );
        if t >= t_on {
            assert_eq!((req, capped), (0.25, true), "{s}");
        } else {
            assert_eq!((req, capped), (1.0, false), "{s}");
        }
    }
    // The hog on the bottleneck axis is never throttled and holds its memory.
    let held = achieved_mean(event(&r, "hog"), 4);
    assert!(held >= 15.0 * 1048576.0, "hog held {held} bytes");
}

#[test]
fn a_hang_is_detected_and_the_threads_are_recorded() {
    let (out, r) = attack(
        "duration: 5s\ntarget: {ready: port, hang: 1s}\nworkload:\n  tcp: {rate: 50/s, timeout: 300ms}\n",
        &["--hang-after", "10"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let f = &r["failures"][0];
    assert_eq!(f["kind"], "hang", "{r:#}");
    let threads = f["threads"].as_array().unwrap();
    assert!(threads.len() >= 2, "{f:#}");
    // The signature follows the lock waits: the handler sleeps on `never`,
    // which main holds, and main (back at the top of its accept loop) on
    // `big`, which the handler holds: a cycle.
    let sig = &f["signature"];
    assert_eq!(
        (&sig["class"], &sig["rule"]),
        (&"deadlock".into(), &"deadlock-cycle".into()),
        "{f:#}"
    );
    let mut at: Vec<&str> = sig["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["function"].as_str().unwrap())
        .collect();
    at.sort_unstable();
    assert_eq!(at, ["handle_request", "main"], "{sig:#}");
    assert!(
        threads.iter().all(|t| t[1] != "R"),
        "a hung thread was running: {f:#}"
    );
}

#[test]
fn assertions_decide_the_exit_status() {
    let timeline = "duration: 1s\ntarget: {ready: port}\nworkload:\n  tcp: {rate: 50/s}\n";
    let (out, r) = attack(
        timeline,
        &[],
        &[
            "--assert",
            "crashes == 0",
            "--assert",
            "count(handle_request) > 10",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(r["asserts"][1]["holds"], true, "{:#}", r["asserts"]);
    let (out, r) = attack(timeline, &[], &["--assert", "p99(handle_request) < 1ns"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(r["verdict"]["survived"], false);
    assert!(
        r["verdict"]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("assertion failed")
    );
}

#[test]
fn bad_input_exits_2_with_what_to_do() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["attack", "--preset", "nope", "--", "true"],
            "no preset named 'nope'; presets: production-spike",
        ),
        (&["attack", "--preset", "cascade"], "no program to attack"),
        (
            &[
                "attack",
                "--preset",
                "cascade",
                "--assert",
                "crashs > 1",
                "--",
                "true",
            ],
            "did you mean 'crashes'",
        ),
        (
            &["attack", "--", "true"],
            "--timeline t.yaml, or --preset NAME",
        ),
    ];
    for (args, needle) in cases {
        let out = cargo_panic().args(*args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // A site pattern that matches nothing fails before the run.
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t.yaml");
    std::fs::write(&t, "duration: 1s\nassert: ['p99(no_such_fn) < 1s']\n").unwrap();
    let out = attack_command(&t, &dir.path().join("r.json"), &[], &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("matches no instrumented function"));
}

/// `cargo panic timeline --check FILE`.
fn check(file: &Path) -> Output {
    cargo_panic()
        .args(["timeline", "--check"])
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn timeline_check_prints_the_schedule_or_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "duration: 10s\ntracks:\n  - axis: cpu\n    events: [{id: a, at: 2s, for: 3s, intensity: 1 cores}]\n").unwrap();
    let out = check(&good);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("a              cpu         via spin    1 cores, constant at 2s; for 3s"),
        "{text}"
    );
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "duration: 10s\ntracks:\n  - axis: cpu\n    events: [{id: a, after: b}, {id: b, after: a}]\n").unwrap();
    let out = check(&bad);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:4:", bad.display())) && err.contains("cycle: a -> b -> a"),
        "{err}"
    );
    // Every shipped preset is valid.
    for p in [
        "production-spike",
        "memory-starved",
        "disk-degraded",
        "network-partition",
        "thundering-herd",
        "cascade",
    ] {
        let out = cargo_panic()
            .args(["timeline", "--preset", p])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{p}: {}", show(&out));
        let file = dir.path().join(format!("{p}.yaml"));
        std::fs::write(&file, &out.stdout).unwrap();
        let out = check(&file);
        assert_eq!(out.status.code(), Some(0), "{p}: {}", show(&out));
    }
}

#[test]
fn interrupt_writes_the_report_and_cleans_up() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t.yaml");
    std::fs::write(
        &t,
        "duration: 30s\ntarget: {ready: port}\ntracks:\n  - axis: cpu\n    events: [{id: spin, intensity: 0.2 cores}]\n  - axis: memory\n    events: [{id: cap, intensity: 256MiB, args: {via: limit}}]\n",
    )
    .unwrap();
    let report = dir.path().join("r.json");
    let mut child = attack_command(&t, &report, &[], &[])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait until the run's cgroup exists (the target runs), then interrupt.
    let run_dir = |pid: u32| -> Option<PathBuf> {
        std::fs::read_dir("/sys/fs/cgroup/memory/cargo-panic")
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{pid}-"))
            })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let dir_seen = loop {
        if let Some(d) = run_dir(pid) {
            break d;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run's cgroup never appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["interrupted"], true);
    assert_eq!(event(&r, "spin")["outcome"], "stopped");
    assert!(
        !dir_seen.exists(),
        "the run's cgroup {} is left",
        dir_seen.display()
    );
    assert_nothing_left();
}

#[test]
fn compare_finds_a_latency_regression_and_html_renders_a_report() {
    let timeline = "duration: 2s\ncadence: 100ms\ntarget: {ready: port}\nworkload:\n  tcp: {rate: 50/s, concurrency: 8}\n";
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (name, work) in [("fast", "0"), ("slow", "30000")] {
        let (out, r) = attack(timeline, &["--work", work], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let p = dir.path().join(format!("{name}.json"));
        std::fs::write(&p, r.to_string()).unwrap();
        paths.push(p);
    }
    let out = cargo_panic()
        .arg("compare")
        .args(&paths)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let cmp: Value = serde_json::from_slice(&out.stdout).unwrap();
    let lat = cmp["deltas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["metric"] == "workload.latency_p99_ns")
        .unwrap();
    assert_eq!(lat["verdict"], "worse", "{lat:#}");
    assert!(lat["median_b"].as_f64().unwrap() >= 30e6, "{lat:#}");
    let out = cargo_panic()
        .arg("compare")
        .args([&paths[0], &paths[0]])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(" worse"));
    // The HTML report of a run: self-contained, with its plots and events.
    let html = dir.path().join("slow.html");
    let out = cargo_panic()
        .arg("html")
        .arg(&paths[1])
        .arg("-o")
        .arg(&html)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(text.matches("<svg").count() >= 4, "too few plots");
    assert!(text.contains("workload latency p99") && text.contains("survived"));
    assert!(
        !text.contains("src=\"http") && !text.contains("<script"),
        "not self-contained"
    );
    let out = cargo_panic()
        .arg("compare")
        .arg(&paths[0])
        .arg(dir.path().join("missing.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}

#[test]
fn repeat_runs_with_successive_seeds_and_compare_uses_them() {
    let timeline = "duration: 1s\nseed: 5\ntarget: {ready: port}\nworkload:\n  tcp: {rate: 50/s}\n";
    let (out, r) = attack(timeline, &[], &["--repeat", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let runs = r["runs"].as_array().unwrap();
    let seeds: Vec<u64> = runs.iter().map(|x| x["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds, [5, 6, 7]);
    for run in runs {
        assert_eq!(run["survived"], true);
        assert!(
            run["metrics"]["workload.ok"].as_f64().unwrap() > 0.0,
            "{run:#}"
        );
        assert!(
            run["metrics"]["site.handle_request.p99_ns"]
                .as_f64()
                .is_some(),
            "{run:#}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.json");
    std::fs::write(&p, r.to_string()).unwrap();
    let out = cargo_panic()
        .arg("compare")
        .args([&p, &p])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("run-level metrics of 3 and 3 repeated runs"),
        "{}",
        show(&out)
    );
}

#[test]
fn the_verifier_refuses_an_infeasible_timeline_unless_told() {
    // 64 cores of spinners fit no machine this runs on.
    let timeline = "duration: 1s\ntarget: {ready: port}\ntracks:\n  - axis: cpu\n    events: [{id: too-much, at: 0s, for: 1s, intensity: 64 cores}]\n";
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t.yaml");
    std::fs::write(&t, timeline).unwrap();
    let report = dir.path().join("r.json");
    let run = |extra: &[&str]| attack_command(&t, &report, extra, &[]).output().unwrap();
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cpu load 64 cores exceeds") && err.contains("--no-verify"),
        "{err}"
    );
    assert!(!report.exists(), "a refused run wrote a report");
    let (out, r) = attack(timeline, &[], &["--no-verify"]);
    assert!(out.status.code().is_some_and(|c| c < 2), "{}", show(&out));
    assert_eq!(
        r["feasibility"]["feasible"], false,
        "{:#}",
        r["feasibility"]
    );
    // The spinner refuses a level beyond what it can run: the event says so.
    assert!(
        !event(&r, "too-much")["errors"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn the_kernel_side_splits_the_attacked_regions_time() {
    let (out, r) = attack(
        "duration: 1500ms\ntarget: {ready: port}\nworkload:\n  tcp: {rate: 100/s}\n",
        &["--work", "2000"],
        &["--kernel"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let k = &r["kernel"];
    assert_eq!(
        (k["status"].as_str(), k["per_site"].as_bool()),
        (Some("on"), Some(true)),
        "{k:#}"
    );
    let handle = k["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["function"] == "handle_request")
        .unwrap_or_else(|| panic!("no handle_request in {k:#}"));
    // About 100 requests of 2 ms of CPU each: on-CPU time is most of the
    // region's self time, and never more than it.
    let (cpu, own) = (
        handle["kernel"]["cpu_ns"].as_u64().unwrap(),
        handle["kernel"]["self_ns"].as_u64().unwrap(),
    );
    assert!(
        cpu > 50_000_000 && cpu <= own,
        "cpu {cpu} self {own}: {handle:#}"
    );
}

#[test]
fn clock_offset_moves_the_targets_monotonic_and_boot_clocks() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t.yaml");
    std::fs::write(
        &t,
        "duration: 500ms\ntarget: {clock_offset: 10000s, hang: never}\n",
    )
    .unwrap();
    let uptime = || -> f64 {
        let u = std::fs::read_to_string("/proc/uptime").unwrap();
        u.split_whitespace().next().unwrap().parse().unwrap()
    };
    let before = uptime();
    let out = attack_program(
        Path::new("sh"),
        &t,
        &dir.path().join("r.json"),
        &[],
        &["-c", "cat /proc/uptime; exec sleep 5"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let theirs: f64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("no uptime printed: {}", show(&out)))
        .parse()
        .unwrap();
    // Ahead by the offset (and the time the run took to get there).
    let ahead = theirs - before;
    assert!(
        (10_000.0..10_030.0).contains(&ahead),
        "uptime {theirs}, ours was {before}"
    );
    // A malformed offset is a located error.
    std::fs::write(&t, "duration: 1s\ntarget: {clock_offset: soon}\n").unwrap();
    let out = check(&t);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("t.yaml:2:24: clock_offset 'soon'"),
        "{}",
        show(&out)
    );
}

#[test]
fn a_run_config_prices_the_target_and_fuse_trips_are_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("run.yaml");
    // The server burns 10 ms of CPU per request at 100/s: about one core,
    // four times the capacity, so the CPU price climbs and the fuse trips.
    std::fs::write(
        &config,
        "period: 100ms\ncontroller:\n  resources: [cpu]\n  capacity: [0.25]\n  step: [2.0]\nfuses:\n  - name: shed\n    trip: {price: cpu, above: 0.5}\n",
    )
    .unwrap();
    let (out, r) = attack(
        "duration: 2s\ntarget: {ready: port}\nworkload:\n  tcp: {rate: 100/s, concurrency: 16}\ntracks:\n  - axis: cpu\n    events: [{id: after-trip, start_when: fuse_trips(shed) > 0, for: 200ms, intensity: 0.1 cores}]\n",
        &["--work", "10000"],
        &[
            "--config",
            config.to_str().unwrap(),
            "--assert",
            "fuse_trips > 0",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let samples = r["controller"]["samples"].as_array().unwrap();
    assert!(samples.len() >= 5, "{:#}", r["controller"]);
    let last = samples.last().unwrap()["price"][0].as_f64().unwrap();
    assert!(last > 0.5, "the price stayed at {last}");
    assert_eq!(r["fuses"][0]["name"], "shed");
    assert_eq!(
        r["fuses"][0]["changes"][0]["tripped"], true,
        "{:#}",
        r["fuses"]
    );
    assert!(
        event(&r, "after-trip")["started_ns"].is_u64(),
        "the fuse's trip started the event"
    );
    // A fuse the config does not have is refused before the run.
    let t = dir.path().join("t.yaml");
    std::fs::write(
        &t,
        "duration: 1s
assert: ['fuse_trips(nope) > 0']
",
    )
    .unwrap();
    let out = attack_command(
        &t,
        &dir.path().join("r.json"),
        &["--config", config.to_str().unwrap()],
        &[],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--config has no fuse 'nope' (fuses: shed)"),
        "{}",
        show(&out)
    );
}

/// A real-time target keeps real-time scheduling under attack. The run's
/// cgroups hold the target for memory and CPU-time accounting only: a group
/// of the cpu controller has no real-time budget under RT group scheduling,
/// and `c-split woken` (which makes its main thread `SCHED_FIFO`) would exit
/// 2 with "cannot become real-time" inside one.
#[test]
fn a_real_time_target_keeps_real_time_scheduling() {
    require_root();
    let dir = build_c_example("c-split", &[]);
    let t = dir.path().join("t.yaml");
    std::fs::write(&t, "duration: 2s\n").unwrap();
    let report = dir.path().join("r.json");
    let out = attack_program(
        &dir.path().join("c-split"),
        &t,
        &report,
        &[],
        &["woken", "50"],
    )
    .output()
    .unwrap();
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(r["verdict"]["survived"], true, "{:#}", r["verdict"]);
    assert_eq!(r["exit_code"], 0);
    let cgroup = r["mechanisms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "cgroup")
        .expect("a cgroup mechanism");
    assert_eq!(cgroup["used"], true, "{cgroup}");
    assert_eq!(
        cgroup["detail"]
            .as_str()
            .unwrap()
            .split_once(", ")
            .unwrap()
            .1,
        "controllers [CpuUsage, Memory]",
        "{cgroup}"
    );
}

/// c-server listens on a port the kernel picks, so each restart moves it:
/// the workload (directly, or through the fault proxy when the timeline has
/// network events) follows the target to its new port.
#[test]
fn the_workload_follows_a_restarted_target_to_its_new_port() {
    let direct = "duration: 3s\ntarget: {ready: port, restart: on-failure, max_restarts: 2}\nworkload:\n  tcp: {rate: 100/s, concurrency: 8}\n";
    let proxied = format!(
        "{direct}tracks:\n  - axis: network\n    events:\n      - {{id: slow, at: 0s, intensity: {{latency: 1ms}}}}\n"
    );
    for (timeline, follower) in [
        (direct.to_string(), "the workload sends there"),
        (proxied, "the fault proxy forwards there"),
    ] {
        let (out, r) = attack(&timeline, &["--crash-after", "20"], &[]);
        assert_eq!(out.status.code(), Some(1), "{}", show(&out));
        let restarts: Vec<&str> = r["mechanisms"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["name"] == "restart")
            .map(|m| m["detail"].as_str().unwrap())
            .collect();
        assert_eq!(restarts.len(), 2, "{:#}", r["mechanisms"]);
        assert!(
            restarts.iter().all(|d| d.contains(follower)),
            "{restarts:?}"
        );
        // Each of the three incarnations answers 19 requests and aborts on
        // the 20th: 57 in all when every request after a restart reaches
        // the new port (19 when they kept going to the first).
        let ok = r["workload"]["totals"]["ok"].as_u64().unwrap();
        assert!(ok >= 50, "{ok} ok: {:#}", r["workload"]);
        assert_eq!(r["failures"].as_array().unwrap().len(), 3, "{r:#}");
    }
    assert_nothing_left();
}
