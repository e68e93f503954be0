//! `panic-api` (the `cargo_panic` library programs use to read prices) in a
//! real program: examples/prices built plain (no runtime: everything reads 0)
//! and through `cargo panic build` (the link driver exports the runtime's price
//! API, which the crate finds with dlsym; without a price map, prices read 0).
//! Builds share the end-to-end tests' target directory (`target/e2e`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use panic_runtime::abi;

mod common;
use common::{build_in, repo, run_profiled, show};

fn shared_target() -> PathBuf {
    repo().join("target").join("e2e")
}

fn example() -> PathBuf {
    repo().join("examples").join("prices")
}

/// The program, run directly: none of the runtime's variables, so the
/// instrumented runtime finds no price map.
fn run(exe: &Path, args: &[&str], stdin: &str) -> Output {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in [
        abi::ENV_SHM,
        abi::ENV_DUMP,
        abi::ENV_KTHREADS,
        abi::ENV_CLOCK,
    ] {
        cmd.env_remove(var);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    out
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The names `nm -D --defined-only` lists as defined functions (`T`).
fn exported_functions(exe: &Path) -> Vec<String> {
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(exe)
        .output()
        .unwrap();
    // nm says "no symbols" (status 0 or 1 by version) for an empty table.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [_, "T", name] => Some(name.to_string()),
            _ => None,
        })
        .collect()
}

const PRICE_API: [&str; 2] = [abi::SYM_PRICE, abi::SYM_PRICE_SEQ];

#[test]
fn a_plain_build_finds_no_runtime_and_reads_zero() {
    let target = shared_target().join("plain");
    let out = Command::new("cargo")
        .args(["build", "--release", "--locked", "--target-dir"])
        .arg(&target)
        .current_dir(example())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let exe = target.join("release").join("prices");
    let line = "instrumented=false cpu=0 memory=0 seq=0";
    assert_eq!(stdout_lines(&run(&exe, &[], "")), [line]);
    assert_eq!(
        stdout_lines(&run(&exe, &["watch", "2"], "a\nb\n")),
        [line, line]
    );
    let exported = exported_functions(&exe);
    for sym in PRICE_API {
        assert!(!exported.iter().any(|s| s == sym), "{sym} in a plain build");
    }
}

#[test]
fn an_instrumented_build_exports_the_price_api_and_finds_it() {
    let exe = build_in(&example(), &shared_target(), &[]).remove(0);
    let exported = exported_functions(&exe);
    for sym in PRICE_API {
        assert!(
            exported.iter().any(|s| s == sym),
            "{sym} is not in the dynamic symbol table of {}: {exported:?}",
            exe.display()
        );
    }
    // Nothing else of the runtime's leaks out: its other symbols are hidden.
    let leaked: Vec<&String> = exported
        .iter()
        .filter(|s| s.starts_with("__panic") || s.starts_with("panic_runtime"))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");

    // No price map: the API is there, every price reads 0, the seq too.
    let line = "instrumented=true cpu=0 memory=0 seq=0";
    assert_eq!(stdout_lines(&run(&exe, &[], "")), [line]);
    assert_eq!(
        stdout_lines(&run(&exe, &["watch", "3"], "1\n2\n3\n")),
        [line, line, line]
    );
    // The same under `cargo panic run` (a segment, no kernel side).
    let (out, p) = run_profiled(&exe, &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout_lines(&out), [line]);
    assert_eq!(p["exit"]["code"], 0);
}

/// Under `cargo panic run --config` with a memory capacity far below what the
/// program holds, the controller raises the memory price every period, and
/// the Rust program reads each new value through `cargo_panic::price`.
#[test]
fn a_rust_program_reads_live_prices() {
    let exe = build_in(&example(), &shared_target(), &[]).remove(0);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("run.yaml");
    std::fs::write(
        &config,
        "period: 20ms\ncontroller:\n  resources: [memory]\n  capacity: [1]\n  step: [1.0e-9]\n",
    )
    .unwrap();
    let profile = dir.path().join("p.json");
    let mut child = common::cargo_panic()
        .args(["run", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&profile)
        .arg("--")
        .arg(&exe)
        .args(["watch", "4"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for _ in 0..4 {
        // Several controller periods between two reads.
        std::thread::sleep(std::time::Duration::from_millis(150));
        stdin.write_all(b"\n").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let read: Vec<f64> = stdout_lines(&out)
        .iter()
        .map(|l| {
            let m = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("memory="))
                .unwrap();
            m.parse().unwrap()
        })
        .collect();
    assert_eq!(read.len(), 4, "{}", show(&out));
    assert!(
        read[0] > 0.0,
        "the price had risen before the first read: {read:?}"
    );
    assert!(read.windows(2).all(|w| w[1] > w[0]), "rising: {read:?}");
    let p: serde_json::Value = serde_json::from_slice(&std::fs::read(&profile).unwrap()).unwrap();
    let published: Vec<f64> = p["controller"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["price"][0].as_f64().unwrap())
        .collect();
    for r in &read {
        assert!(
            published.iter().any(|p| (p - r).abs() < 1e-6),
            "read {r}, published {published:?}"
        );
    }
}
