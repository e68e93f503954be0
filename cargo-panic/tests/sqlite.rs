//! A real third-party C code base: SQLite's amalgamation, built into a small
//! shell (`tests/sqlite/shell.c`) once plain and once through `cargo panic cc`.
//! Both builds run `tests/sqlite/script.sql` and must print the same bytes; the
//! instrumented one, run under `cargo panic run`, must count `sqlite3VdbeExec`.
//!
//! The amalgamation comes from the `libsqlite3-sys` crate, a dev-dependency of
//! cargo-panic that is there only for its sources (`sqlite3/sqlite3.c`): cargo
//! fetches it, pinned by `Cargo.lock`, with the rest of the test's dependencies,
//! so this test needs no network of its own. Needs clang-19 and llvm-19-dev
//! (`scripts/install-deps.sh`); without them the test fails saying so.
//!
//! The builds go to `target/e2e-sqlite/` (rebuilt on every run, both at once:
//! about 25 s each on a 2-core machine), and the clang plugin is shared with
//! `tests/cc.rs` in `target/e2e-home`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{cargo_panic, repo, require_tools, show};

/// What both builds are compiled with, besides `-I<amalgamation dir>`.
const CFLAGS: &[&str] = &[
    "-O2",
    "-DSQLITE_THREADSAFE=0",
    "-DSQLITE_OMIT_LOAD_EXTENSION",
];

fn out_dir() -> PathBuf {
    repo().join("target").join("e2e-sqlite")
}

/// The directory holding `sqlite3.c` and `sqlite3.h`, inside the `libsqlite3-sys`
/// sources that cargo fetched for this package's dev-dependencies.
fn amalgamation() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let vv = Command::new(rustc).arg("-vV").output().unwrap();
    let host = String::from_utf8_lossy(&vv.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("`rustc -vV` printed no host");
    let out = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(repo())
        .output()
        .unwrap();
    let fix = "libsqlite3-sys (a dev-dependency of cargo-panic, kept only for its SQLite \
               sources) must be in cargo's cache: run `cargo fetch --locked` in the repository";
    assert!(
        out.status.success(),
        "`cargo metadata --offline` failed; {fix}\n{}",
        show(&out)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "libsqlite3-sys")
        .and_then(|p| p["manifest_path"].as_str())
        .unwrap_or_else(|| panic!("no package libsqlite3-sys in `cargo metadata`; {fix}"));
    let dir = Path::new(manifest).parent().unwrap().join("sqlite3");
    for f in ["sqlite3.c", "sqlite3.h"] {
        assert!(
            dir.join(f).is_file(),
            "{} is missing; {fix}",
            dir.join(f).display()
        );
    }
    dir
}

/// The compiler arguments for both builds: flags, sources, output, libraries.
fn compile_args(amalgamation: &Path, exe: &Path) -> Vec<String> {
    let mut args: Vec<String> = CFLAGS.iter().map(|s| s.to_string()).collect();
    args.push(format!("-I{}", amalgamation.display()));
    args.push(amalgamation.join("sqlite3.c").display().to_string());
    args.push(
        repo()
            .join("cargo-panic/tests/sqlite/shell.c")
            .display()
            .to_string(),
    );
    args.extend(["-o".into(), exe.display().to_string(), "-lm".into()]);
    args
}

/// Builds `dir/sqlite-shell`, plain or through `cargo panic cc`; returns it and
/// how long the build took.
fn build(amalgamation: &Path, dir: &Path, instrumented: bool) -> (PathBuf, Duration) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let exe = dir.join("sqlite-shell");
    let args = compile_args(amalgamation, &exe);
    let start = Instant::now();
    let out = if instrumented {
        // The build command is what a Makefile would run: `$CC <args>`.
        cargo_panic()
            .args(["cc", "--", "sh", "-c", "exec \"$CC\" \"$@\"", "sh"])
            .args(&args)
            .current_dir(dir)
            .output()
            .unwrap()
    } else {
        Command::new("clang-19")
            .args(&args)
            .current_dir(dir)
            .output()
            .unwrap()
    };
    let took = start.elapsed();
    let what = if instrumented {
        "`cargo panic cc` build"
    } else {
        "plain build"
    };
    assert!(
        out.status.success(),
        "{what} of the SQLite shell failed:\n{}",
        show(&out)
    );
    assert!(exe.is_file(), "{what} wrote no {}", exe.display());
    if instrumented {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("executable {}", exe.display())),
            "`cargo panic cc` did not report the link of {}:\n{}",
            exe.display(),
            show(&out)
        );
    }
    (exe, took)
}

fn run_script(exe: &Path, script: &Path) -> Output {
    let out = Command::new(exe).arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{} {} failed:\n{}",
        exe.display(),
        script.display(),
        show(&out)
    );
    out
}

#[test]
fn sqlite_shell_runs_the_same_and_counts_the_vdbe() {
    require_tools(&["clang-19", "llvm-config-19"]);
    let amalgamation = amalgamation();
    let script = repo().join("cargo-panic/tests/sqlite/script.sql");

    // Both builds at once: each is one long compile of sqlite3.c.
    let (plain, instr) = std::thread::scope(|s| {
        let plain = s.spawn(|| build(&amalgamation, &out_dir().join("plain"), false));
        let instr = s.spawn(|| build(&amalgamation, &out_dir().join("instrumented"), true));
        (plain.join().unwrap(), instr.join().unwrap())
    });
    eprintln!(
        "sqlite3.c + shell.c: plain build {:.1} s, `cargo panic cc` build {:.1} s (run side by side)",
        plain.1.as_secs_f64(),
        instr.1.as_secs_f64()
    );
    let (plain, instr) = (plain.0, instr.0);

    // The manifest: many sites, and sqlite3.c really went through the plugin.
    let manifest_path = PathBuf::from(format!("{}.panic.json", instr.display()));
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(&manifest_path)
            .unwrap_or_else(|e| panic!("no manifest {}: {e}", manifest_path.display())),
    )
    .unwrap();
    let n_sites = manifest["sites"].as_array().unwrap().len();
    assert!(
        n_sites > 1000,
        "only {n_sites} sites in {}",
        manifest_path.display()
    );
    let sqlite3_c = manifest["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"].as_str().unwrap().ends_with("sqlite3.c"))
        .unwrap_or_else(|| panic!("sqlite3.c is not an input of {}", manifest_path.display()));
    assert_eq!(
        sqlite3_c["instrumented"], true,
        "sqlite3.c was not instrumented: {sqlite3_c}"
    );

    // Same output, plain and instrumented (run directly).
    let expected = run_script(&plain, &script);
    let text = String::from_utf8_lossy(&expected.stdout);
    assert!(
        text.starts_with("2000|") && text.ends_with("\nok\n"),
        "unexpected output of the plain shell:\n{text}"
    );
    let direct = run_script(&instr, &script);
    assert_eq!(
        text,
        String::from_utf8_lossy(&direct.stdout),
        "the instrumented shell printed something else than the plain one"
    );

    // Under `cargo panic run`: same output again, and a profile with counts.
    let profile = out_dir().join("instrumented").join("profile.json");
    let out = cargo_panic()
        .args(["run", "--out"])
        .arg(&profile)
        .arg("--")
        .arg(&instr)
        .arg(&script)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        text,
        String::from_utf8_lossy(&out.stdout),
        "under `cargo panic run`, the instrumented shell printed something else"
    );
    let p: Value = serde_json::from_slice(
        &std::fs::read(&profile)
            .unwrap_or_else(|e| panic!("no profile {}: {e}\n{}", profile.display(), show(&out))),
    )
    .unwrap();
    assert_eq!(p["exit"]["code"], 0);
    let sites = p["sites"].as_array().unwrap();
    assert_eq!(sites.len(), n_sites, "profile and manifest disagree");
    let count = |function: &str, kind: &str| -> u64 {
        sites
            .iter()
            .filter(|s| s["function"] == function && s["kind"] == kind)
            .map(|s| s["count"].as_u64().unwrap())
            .sum()
    };
    let vdbe_entries = count("sqlite3VdbeExec", "entry");
    assert!(
        vdbe_entries > 0,
        "no entry into sqlite3VdbeExec counted in {}",
        profile.display()
    );
    assert!(
        count("sqlite3VdbeExec", "loop") > 0,
        "no loop back-edge counted in sqlite3VdbeExec"
    );
    // shell.c calls sqlite3_prepare_v2 at least once per statement of the script (21).
    let prepares = count("sqlite3_prepare_v2", "entry");
    assert!(
        prepares >= 21,
        "sqlite3_prepare_v2 counted {prepares} times, expected >= 21"
    );
    eprintln!("sqlite3VdbeExec entered {vdbe_entries} times; {n_sites} sites");
}
