//! `panic-api` (the `cargo_panic` library programs use to read prices and ask
//! fuses) in a real program: examples/prices built plain (no runtime:
//! everything reads 0, no fuse trips) and through `cargo panic build` (the
//! link driver exports the runtime's price and fuse API, which the crate finds
//! with dlsym; without a price or fuse map, prices read 0 and no fuse trips).
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

/// examples/prices through `cargo panic build`, built once for all the tests
/// here (they run in parallel and share the target directory).
fn instrumented() -> PathBuf {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| build_in(&example(), &shared_target(), &[]).remove(0))
        .clone()
}

/// `cargo panic run --config <config> --out <profile> -- <exe> watch <n>`,
/// with the program's stdin, stdout and stderr piped to the test.
fn watch_under_config(exe: &Path, config: &Path, profile: &Path, n: u32) -> std::process::Child {
    common::cargo_panic()
        .args(["run", "--config"])
        .arg(config)
        .arg("--out")
        .arg(profile)
        .arg("--")
        .arg(exe)
        .args(["watch", &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
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

/// What `panic-api` looks up, as the runtime's ABI header names it.
const RUNTIME_API: [&str; 3] = [abi::SYM_PRICE, abi::SYM_PRICE_SEQ, abi::SYM_FUSE];

/// `panic-api` has no dependencies, so it spells the runtime's names itself:
/// they must be the header's (the tests below would not tell a misspelt
/// `panic_fuse` from a run without fuses), and its longest fuse name must be
/// `panic.h`'s.
#[test]
fn the_crate_spells_the_runtimes_names() {
    let api = std::fs::read_to_string(repo().join("api").join("src").join("lib.rs")).unwrap();
    for sym in RUNTIME_API {
        assert!(
            api.contains(&format!("= c\"{sym}\";")),
            "api/src/lib.rs looks up {sym}"
        );
    }
    let max = panic_runtime::USER_HEADER
        .lines()
        .find_map(|l| l.strip_prefix("#define PANIC_FUSE_NAME_MAX "))
        .expect("panic.h defines PANIC_FUSE_NAME_MAX")
        .trim();
    assert!(
        api.contains(&format!("pub const FUSE_NAME_MAX: usize = {max};")),
        "api/src/lib.rs: FUSE_NAME_MAX is not panic.h's {max}"
    );
}

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
    let line = "instrumented=false cpu=0 memory=0 seq=0 fuse=false";
    assert_eq!(stdout_lines(&run(&exe, &[], "")), [line]);
    assert_eq!(
        stdout_lines(&run(&exe, &["watch", "2"], "a\nb\n")),
        [line, line]
    );
    let exported = exported_functions(&exe);
    for sym in RUNTIME_API {
        assert!(!exported.iter().any(|s| s == sym), "{sym} in a plain build");
    }
}

#[test]
fn an_instrumented_build_exports_the_price_and_fuse_api_and_finds_it() {
    let exe = instrumented();
    let exported = exported_functions(&exe);
    for sym in RUNTIME_API {
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

    // No price or fuse map: the API is there, every price reads 0, the seq
    // too, and the fuse does not trip.
    let line = "instrumented=true cpu=0 memory=0 seq=0 fuse=false";
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
    let exe = instrumented();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("run.yaml");
    std::fs::write(
        &config,
        "period: 20ms\ncontroller:\n  resources: [memory]\n  capacity: [1]\n  step: [1.0e-9]\n",
    )
    .unwrap();
    let profile = dir.path().join("p.json");
    let mut child = watch_under_config(&exe, &config, &profile, 4);
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
    // Usage stays far above capacity, so the price only rises; how many
    // periods fall between two reads depends on the machine's load.
    assert!(
        read.windows(2).all(|w| w[1] >= w[0]),
        "never falling: {read:?}"
    );
    assert!(read[3] > read[0] && read[3] > 0.0, "rising: {read:?}");
    let p: serde_json::Value = serde_json::from_slice(&std::fs::read(&profile).unwrap()).unwrap();
    let published: Vec<f64> = p["controller"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["price"][0].as_f64().unwrap())
        .collect();
    // Every read is a price the controller published, or the map's initial
    // 0 when a loaded machine had the first read come before the first
    // period's update.
    for r in &read {
        assert!(
            *r == 0.0 || published.iter().any(|p| (p - r).abs() < 1e-6),
            "read {r}, published {published:?}"
        );
    }
}

/// A fuse on the memory price under the same rising-price config: once the
/// price is above 0 the rule holds every period, and the Rust program's
/// `cargo_panic::fuse!("ingest")` answers true from then on; the run counts
/// each ask, and each "shed" answer.
#[test]
fn a_rust_program_sees_its_fuse_trip() {
    let exe = instrumented();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("run.yaml");
    std::fs::write(
        &config,
        "period: 20ms\ncontroller:\n  resources: [memory]\n  capacity: [1]\n  step: [1.0e-9]\n\
         fuses:\n  - name: ingest\n    trip: {price: memory, above: 0.0}\n",
    )
    .unwrap();
    let profile = dir.path().join("p.json");
    let mut child = watch_under_config(&exe, &config, &profile, 1000);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    // Owns the program's stdin: dropping it ends `watch`.
    let mut ask = move || {
        stdin.write_all(b"\n").unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        line.trim_end().to_string()
    };
    // Until the controller has run a period or two (start-up takes a
    // while on a loaded machine), then twice more: it stays tripped.
    let is_tripped = |l: &String| l.ends_with(" fuse=true");
    let mut lines = Vec::new();
    while lines.len() < 100 && !lines.last().is_some_and(is_tripped) {
        std::thread::sleep(std::time::Duration::from_millis(50));
        lines.push(ask());
    }
    for _ in 0..2 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        lines.push(ask());
    }
    drop(ask);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{lines:?}\n{}", show(&out));
    let Some(tripped) = lines.iter().position(is_tripped) else {
        panic!("never tripped: {lines:?}\n{}", show(&out));
    };
    for l in &lines {
        assert!(l.starts_with("instrumented=true "), "{l}");
    }
    assert!(
        lines[tripped..].iter().all(is_tripped),
        "stays tripped: {lines:?}"
    );
    assert_eq!(lines.len() - tripped, 3, "{lines:?}");
    let p: serde_json::Value = serde_json::from_slice(&std::fs::read(&profile).unwrap()).unwrap();
    let f = &p["fuses"][0];
    assert_eq!(f["name"], "ingest", "{f}");
    // One ask per line printed, and a "shed" for each `fuse=true`.
    assert_eq!(f["asks"], lines.len(), "{f}");
    assert_eq!(f["sheds"], 3, "{f}");
    // No ask with another name (the profile leaves out a count of 0).
    assert!(p.get("fuse_unknown_asks").is_none(), "{p}");
}
