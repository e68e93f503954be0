//! `cargo panic verify`: verdicts with evidence, exit codes, and bad input.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

mod common;
use common::{cargo_panic, show};

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("cargo-panic-verify-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn verify(args: &[&str]) -> Output {
    cargo_panic()
        .arg("verify")
        .args(args)
        .output()
        .expect("run cargo-panic")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(out)))
}

#[test]
fn a_chordal_graph_is_certified_with_its_evidence() {
    let dir = scratch("chordal");
    // Two triangles sharing the edge b-c, and a pendant vertex e; a comment line.
    let g = write(
        &dir,
        "g.txt",
        "# two triangles\na b\nb c\nc a\nb d\nc d # shared b-c\nd e\n",
    );
    let out = verify(&["--graph", g.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.contains("(5 vertices, 6 edges): certified chordal"),
        "{text}"
    );
    assert!(
        text.contains("3 maximal cliques, the largest of 3 (treewidth 2)"),
        "{text}"
    );
    assert!(text.contains("re-checked"), "{text}");

    let out = verify(&["--graph", g.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = json(&out);
    assert_eq!(v["verdict"], "certified");
    let check = &v["checks"][0];
    assert_eq!(check["check"], "chordality");
    let ev = &check["evidence"];
    assert_eq!(ev["chordal"], true);
    assert_eq!(ev["rechecked"], true);
    assert_eq!(ev["treewidth"], 2);
    assert_eq!(ev["peo"].as_array().unwrap().len(), 5);
    let mut cliques: Vec<Vec<String>> = ev["cliques"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut c: Vec<String> = c
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect();
            c.sort();
            c
        })
        .collect();
    cliques.sort();
    assert_eq!(
        cliques,
        vec![vec!["a", "b", "c"], vec!["b", "c", "d"], vec!["d", "e"]]
    );
    assert_eq!(ev["clique_tree"].as_array().unwrap().len(), 2);
}

#[test]
fn a_cycle_is_a_counterexample_with_a_minimal_fill_in() {
    let dir = scratch("cycle");
    let g = write(&dir, "c5.txt", "1 2\n2 3\n3 4\n4 5\n5 1\n");
    let out = verify(&["--graph", g.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("NOT chordal"), "{text}");
    assert!(
        text.contains("chordless cycle of length 5 (re-checked)"),
        "{text}"
    );
    assert!(text.contains("adds 2 edge(s)"), "{text}");

    let v = json(&verify(&["--graph", g.to_str().unwrap(), "--json"]));
    assert_eq!(v["verdict"], "counterexample");
    let ev = &v["checks"][0]["evidence"];
    assert_eq!(ev["chordless_cycle"].as_array().unwrap().len(), 5);
    assert_eq!(ev["triangulation"]["size"], 2);
    assert_eq!(ev["triangulation"]["algorithm"], "mcs-m");
}

#[test]
fn self_loops_and_duplicate_edges_are_accepted_and_reported() {
    let dir = scratch("dups");
    let g = write(&dir, "g.txt", "a b\nb a\na a\nb c\n");
    let out = verify(&["--graph", g.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("(3 vertices, 2 edges)"), "{text}");
    assert!(
        text.contains("1 self-loop(s) ignored (first: line 3, `a`)"),
        "{text}"
    );
    assert!(
        text.contains("1 duplicate edge(s) counted once (first: line 2, `b a`)"),
        "{text}"
    );
}

#[test]
fn bad_input_exits_2_with_a_located_error() {
    let dir = scratch("bad");
    let g = write(&dir, "bad.txt", "a b\nb c d\n");
    let out = verify(&["--graph", g.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:2: expected an edge", g.display())),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no partial verdict: {}", show(&out));

    let empty = write(&dir, "empty.txt", "# nothing here\n\n");
    let out = verify(&["--graph", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("declares no vertices"),
        "{}",
        show(&out)
    );

    let missing = dir.join("missing.txt");
    let out = verify(&["--graph", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read"),
        "{}",
        show(&out)
    );

    let out = verify(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing to verify"),
        "{}",
        show(&out)
    );

    let out = verify(&["--profile", "p.json"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--profile restricts"),
        "{}",
        show(&out)
    );

    let out = verify(&["--timeline", "no-such-timeline.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read the timeline"),
        "{}",
        show(&out)
    );
}

#[test]
fn timelines_are_feasible_or_say_why_not() {
    let dir = scratch("timeline");
    let good = write(
        &dir,
        "good.yaml",
        "duration: 10s\ntracks:\n  - axis: cpu\n    events:\n      - {id: a, at: 0s, for: 5s, intensity: 0.5 cores}\n      - {id: b, start_when: 'cpu_load > 50%', for: 1s}\n",
    );
    let out = verify(&["--timeline", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stdout(&out).contains("'b' can start, e.g. when cpu_load = "),
        "{}",
        show(&out)
    );
    let bad = write(
        &dir,
        "bad.yaml",
        "duration: 10s\ntracks:\n  - axis: cpu\n    events:\n      - {id: a, at: 8s, for: 5s}\n      - {id: b, start_when: 'crashes > 1 and crashes < 2'}\n",
    );
    let out = verify(&["--timeline", bad.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let v = json(&out);
    let findings = &v["checks"][0]["feasibility"]["findings"];
    let kinds: Vec<&str> = findings
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["finding"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"never_starts") && kinds.contains(&"past_end"),
        "{v:#}"
    );
    // A timeline error is bad input, located.
    let broken = write(&dir, "broken.yaml", "duration: 10\n");
    let out = verify(&["--timeline", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("broken.yaml:1:11"),
        "{}",
        show(&out)
    );
}

#[test]
fn cargo_can_run_it_as_a_subcommand() {
    let dir = scratch("subcommand");
    let g = write(&dir, "g.txt", "x y\n");
    let out = cargo_panic()
        .args(["panic", "verify", "--graph", g.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

/// The regions as `root: touches` lines, sorted: the snapshot form.
fn regions(check: &Value) -> Vec<String> {
    let mut v: Vec<String> = check["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let t: Vec<&str> = r["touches"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap())
                .collect();
            format!(
                "{} ({}): {}",
                r["root"].as_str().unwrap(),
                r["kind"].as_str().unwrap(),
                t.join(" ")
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn the_lock_ring_example_has_a_non_chordal_dependence_graph() {
    let dir = common::build_c_example("c-lockring", &["--time", "transfer_*"]);
    let bin = dir.path().join("c-lockring");
    let out = verify(&["--binary", bin.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let v = json(&out);
    let check = &v["checks"][0];
    assert_eq!(
        regions(check),
        vec![
            "main (timed): cpu dwell global:rounds global:stderr",
            "transfer_ab (timed): cpu dwell global:acct_a global:acct_b global:rounds",
            "transfer_bc (timed): cpu dwell global:acct_b global:acct_c global:rounds",
            "transfer_cd (timed): cpu dwell global:acct_c global:acct_d global:rounds",
            "transfer_da (timed): cpu dwell global:acct_a global:acct_d global:rounds",
        ]
    );
    let ev = &check["evidence"];
    let mut cycle: Vec<&str> = ev["chordless_cycle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    cycle.sort_unstable();
    assert_eq!(
        cycle,
        [
            "global:acct_a",
            "global:acct_b",
            "global:acct_c",
            "global:acct_d"
        ]
    );
    assert_eq!(ev["triangulation"]["size"], 1);
    let mut who: Vec<&str> = ev["cycle_regions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| {
            e["regions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
        })
        .collect();
    who.sort_unstable();
    assert_eq!(
        who,
        ["transfer_ab", "transfer_bc", "transfer_cd", "transfer_da"]
    );

    // A profile of a run restricts the graph to what ran: with no rounds the
    // handlers still run (they print), so the verdict stands.
    let prof = dir.path().join("p.json");
    let run = cargo_panic()
        .args([
            "run",
            "--out",
            prof.to_str().unwrap(),
            "--",
            bin.to_str().unwrap(),
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", show(&run));
    let out = verify(&[
        "--binary",
        bin.to_str().unwrap(),
        "--profile",
        prof.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stdout(&out).contains("transfer_da"), "{}", show(&out));
}

#[test]
fn the_threads_example_has_a_chordal_dependence_graph() {
    let dir = common::build_c_example("c-threads", &[]);
    let bin = dir.path().join("c-threads");
    let out = verify(&["--binary", bin.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = json(&out);
    let check = &v["checks"][0];
    assert_eq!(
        regions(check),
        vec![
            "main (timed): cpu dwell global:counter global:iterations global:stderr",
            "worker (timed): cpu dwell global:counter global:counter_mu global:iterations",
        ]
    );
    assert_eq!(check["evidence"]["chordal"], true);
    assert_eq!(check["evidence"]["treewidth"], 4);
}

#[test]
fn a_stable_controller_gets_a_drift_certificate_and_an_unstable_one_a_counterexample() {
    let dir = scratch("controller");
    let ok = write(
        &dir,
        "ok.yaml",
        "# cpu and memory, mildly coupled\nresources: [cpu, memory]\ncapacity: [2.0, 100.0]\n\
         step: [0.2, 0.01]\nsensitivity:\n  - [1.0, 0.1]\n  - [0.5, 20.0]\n",
    );
    let out = verify(&["--controller", ok.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = json(&out);
    let check = &v["checks"][0];
    assert_eq!(check["check"], "drift");
    let ev = &check["evidence"];
    assert_eq!(ev["verdict"], "certified");
    assert_eq!(ev["scope"], "projected_controller");
    assert_eq!(ev["p_matrix"].as_array().unwrap().len(), 2);
    assert_eq!(ev["b"], "0");
    assert!(
        ev["z3"]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["result"] == "unsat"),
        "{ev}"
    );

    // One resource, a*K = 2.5 > 2: the price oscillates forever.
    let bad = write(
        &dir,
        "bad.json",
        r#"{"resources": ["cpu"], "capacity": [1.0], "step": 2.5, "sensitivity": [[1.0]]}"#,
    );
    let out = verify(&["--controller", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("COUNTEREXAMPLE"), "{text}");
    assert!(text.contains("the iteration oscillates"), "{text}");
}

#[test]
fn bad_controllers_exit_2_and_say_what_to_fix() {
    let dir = scratch("bad-controller");
    let cases = [
        (
            "kind.yaml",
            "resources: [cpu, disk]\ncapacity: [1, 2]\nstep: 0.1\nsensitivity: [[1, 0], [0, 1]]\n",
            "unknown kind `disk`",
        ),
        (
            "square.yaml",
            "resources: [cpu, memory]\ncapacity: [1, 2]\nstep: 0.1\nsensitivity: [[1, 0], [0]]\n",
            "row",
        ),
        (
            "negative.yaml",
            "resources: [cpu, memory]\ncapacity: [1, 2]\nstep: 0.1\nsensitivity: [[1, -0.5], [0, 1]]\n",
            "negative",
        ),
        (
            "syntax.yaml",
            "resources: [cpu\ncapacity: 1\n",
            "syntax.yaml:",
        ),
    ];
    for (name, text, needle) in cases {
        let f = write(&dir, name, text);
        let out = verify(&["--controller", f.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{name}: expected `{needle}` in {err}");
        assert!(out.stdout.is_empty(), "{name}: no partial verdict");
    }
}

/// A profile whose controller series follows `u = u0 - K p` exactly, with
/// prices that vary independently (and one sample whose usage could not be
/// measured).
fn profile_with_series(dir: &Path, k: [[f64; 2]; 2], u0: [f64; 2]) -> PathBuf {
    let mut state: u64 = 12345;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut samples = Vec::new();
    for t in 0..12u64 {
        let p = [next(), next()];
        let u: Vec<Value> = (0..2)
            .map(|i| {
                if t == 5 {
                    Value::Null
                } else {
                    (u0[i] - k[i][0] * p[0] - k[i][1] * p[1]).into()
                }
            })
            .collect();
        samples.push(serde_json::json!({"t_ns": t * 50_000_000, "usage": u, "price": p}));
    }
    let profile = serde_json::json!({
        "version": 2, "binary": "app", "args": [], "exit": {"code": 0, "signal": null},
        "wall_ns": 600_000_000u64, "clock": "ns",
        "runtime": {"state": "exited", "fatal_signal": null, "fault_addr": null, "signal_tid": null,
                    "threads_used": 1, "threads_over_capacity": 0, "depth_overflows": 0,
                    "abandoned_regions": 0},
        "threads": [], "sites": [],
        "controller": {"period_ns": 50_000_000u64, "resources": ["cpu", "memory"],
                       "capacity": [1.0, 2.0], "step": [0.5, 0.2], "units": ["cores", "bytes"],
                       "samples": samples}
    });
    write(dir, "p.json", &profile.to_string())
}

#[test]
fn a_controller_without_sensitivity_gets_it_estimated_from_a_profile() {
    let dir = scratch("estimate");
    let k = [[1.0, 0.1], [0.2, 2.0]];
    let profile = profile_with_series(&dir, k, [3.0, 5.0]);
    let ctrl = write(
        &dir,
        "c.yaml",
        "resources: [cpu, memory]\ncapacity: [1.0, 2.0]\nstep: [0.5, 0.2]\n",
    );
    let (c, p) = (ctrl.to_str().unwrap(), profile.to_str().unwrap());
    let out = verify(&["--controller", c, "--profile", p]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("K and u0 estimated from"), "{text}");
    assert!(text.contains("11 samples"), "{text}");

    let out = verify(&["--controller", c, "--profile", p, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = json(&out);
    let fit = &v["checks"][0]["sensitivity_estimate"]["fit"];
    assert_eq!(fit["samples"], 11);
    for (i, row) in k.iter().enumerate() {
        for (j, want) in row.iter().enumerate() {
            let got = fit["sensitivity"][i][j].as_f64().unwrap();
            assert!(
                (got - want).abs() < 1e-9,
                "K[{i}][{j}] = {got}, want {want}"
            );
        }
    }
    assert!((fit["baseline_usage"][1].as_f64().unwrap() - 5.0).abs() < 1e-9);

    // A resource the profile's controller did not price.
    let io = write(
        &dir,
        "io.yaml",
        "resources: [cpu, io]\ncapacity: [1, 1]\nstep: 0.1\n",
    );
    let out = verify(&["--controller", io.to_str().unwrap(), "--profile", p]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("priced cpu, memory, not `io`"),
        "{}",
        show(&out)
    );
    // K in the file and a profile: which one?
    let both = write(
        &dir,
        "both.yaml",
        "resources: [cpu]\ncapacity: [1]\nstep: 0.1\nsensitivity: [[1]]\n",
    );
    let out = verify(&["--controller", both.to_str().unwrap(), "--profile", p]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to estimate"));
    // Neither.
    let out = verify(&["--controller", c]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no `sensitivity`"));
    // A profile of a run without a controller.
    let plain = write(
        &dir,
        "plain.json",
        &std::fs::read_to_string(&profile)
            .unwrap()
            .replace("\"controller\"", "\"unused\""),
    );
    let out = verify(&["--controller", c, "--profile", plain.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no price/usage series"),
        "{}",
        show(&out)
    );
}
