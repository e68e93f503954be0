//! End-to-end for C and C++: the examples under `examples/` built through
//! `cargo panic cc` (make, CMake), by hand with `cargo panic cflags/ldflags`, and
//! C inside a Rust crate (`cc` crate); counts checked against the closed forms
//! in each example's README. Needs clang-19 and llvm-19-dev
//! (`scripts/install-deps.sh`); without them every test here fails saying so.
//!
//! The clang plugin is built once, into `target/e2e-home` (cargo-panic's home for
//! these tests), and shared by every test.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::{build_in, cargo_panic, copy_dir, repo, require_tools, show};

/// `cargo-panic` for these tests: they all need the C toolchain.
fn cc_panic() -> Command {
    require_tools(&["clang-19", "llvm-config-19", "make", "cmake"]);
    cargo_panic()
}

/// A fresh copy of `examples/<name>` in a temp dir.
fn example(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("examples").join(name), dir.path());
    dir
}

/// `cargo panic cc [extra] -- <command>` in `dir`; asserts success.
fn cc_build(dir: &Path, extra: &[&str], command: &[&str]) -> Output {
    let out = cc_panic()
        .arg("cc")
        .args(extra)
        .arg("--")
        .args(command)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo panic cc failed:\n{}",
        show(&out)
    );
    out
}

/// `cargo panic run` of `exe`, which must succeed; returns (output, profile).
fn run_profiled(exe: &Path, args: &[&str]) -> (Output, Value) {
    let (out, p) = common::run_profiled(exe, args);
    assert!(out.status.success(), "run failed:\n{}", show(&out));
    (out, p)
}

/// Whether a profile's function name is `name` (C) or `name(...)` (C++).
fn is_fn(f: &str, name: &str) -> bool {
    f == name || (f.starts_with(name) && f[name.len()..].starts_with('('))
}

/// Sum of the counts of `function`'s sites of `kind`; for exits, `unwind`
/// selects exits by unwinding or normal returns.
fn count(p: &Value, function: &str, kind: &str, unwind: bool) -> u64 {
    p["sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            is_fn(s["function"].as_str().unwrap(), function)
                && s["kind"] == kind
                && s["unwind"].as_bool().unwrap_or(false) == unwind
        })
        .map(|s| s["count"].as_u64().unwrap())
        .sum()
}

/// (function, entries, normal exits, back-edges, allocs, frees)
type Row = (&'static str, u64, u64, u64, u64, u64);

fn check(p: &Value, rows: &[Row], what: &str) {
    for &(f, entries, exits, loops, allocs, frees) in rows {
        let got = (
            count(p, f, "entry", false),
            count(p, f, "exit", false),
            count(p, f, "loop", false),
            count(p, f, "alloc", false),
            count(p, f, "free", false),
        );
        assert_eq!(
            got,
            (entries, exits, loops, allocs, frees),
            "{what}: {f} (entries, exits, back-edges, allocs, frees)"
        );
    }
}

/// examples/c-basic/README.md, default arguments.
const C_BASIC: &[Row] = &[
    ("main", 1, 1, 0, 0, 0),
    ("parse_arg", 10, 10, 0, 0, 0),
    ("sum_adds", 1, 1, 1000, 0, 0),
    ("add", 1000, 1000, 0, 0, 0),
    ("nested", 1, 1, 210, 0, 0),
    ("cell", 200, 200, 0, 0, 0),
    ("fib", 1973, 1973, 0, 0, 0),
    ("churn", 1, 1, 100, 100, 100),
    ("grow", 1, 1, 8, 9, 1),
    ("while_loop", 1, 1, 50, 0, 0),
    ("do_loop", 1, 1, 29, 0, 0),
    ("search", 2, 2, 65, 0, 0),
];

#[test]
fn c_counts_are_exact_at_o0_o2_and_with_lto() {
    let plain = example("c-basic");
    let out = Command::new("make")
        .args(["CC=clang-19", "CFLAGS=-O2"])
        .current_dir(plain.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "plain build:\n{}", show(&out));
    let expected = Command::new(plain.path().join("c-basic")).output().unwrap();

    for (cflags, ldflags) in [("-O0", ""), ("-O2", ""), ("-O2 -flto", "-flto")] {
        let dir = example("c-basic");
        cc_build(
            dir.path(),
            &[],
            &[
                "make",
                &format!("CFLAGS={cflags}"),
                &format!("LDFLAGS={ldflags}"),
            ],
        );
        let exe = dir.path().join("c-basic");
        assert!(
            dir.path().join("c-basic.panic.json").is_file(),
            "{cflags}: no manifest"
        );
        let (out, p) = run_profiled(&exe, &[]);
        assert_eq!(
            out.stdout, expected.stdout,
            "{cflags}: instrumented output differs from the plain build"
        );
        check(&p, C_BASIC, cflags);
        let fib = p["sites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["function"] == "fib" && s["kind"] == "entry")
            .unwrap();
        assert!(
            fib["file"].as_str().unwrap().ends_with("main.c") && fib["line"].as_u64() > Some(0),
            "{cflags}: sites carry file:line: {fib}"
        );
    }
}

#[test]
fn threaded_c_counts_are_exact() {
    let dir = example("c-threads");
    cc_build(dir.path(), &[], &["make", "CFLAGS=-O2"]);
    let (out, p) = run_profiled(&dir.path().join("c-threads"), &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("40000"),
        "{}",
        show(&out)
    );
    check(
        &p,
        &[
            ("worker", 4, 4, 40000, 0, 0),
            ("step", 40000, 40000, 0, 0, 0),
        ],
        "c-threads",
    );
    assert_eq!(count(&p, "worker", "lock", false), 40000);
    assert_eq!(
        count(&p, "main", "blocking", false),
        4,
        "pthread_join calls"
    );
}

/// Frames that never return: `main` leaves through `exit` (from inside
/// `relay` → `maybe_quit`) while a second thread is blocked in `read` inside
/// `wait_for`. Those three functions count their exits from their entries,
/// less the frames inside a call that may not come back (`pending` in the
/// manifest), so the frames still open at the end must not count as exits.
const NEVER_RETURNS: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

static int fds[2];   /* nobody writes this pipe */
static int ready[2]; /* the waiter says here that it is about to read */

NOINLINE void announce(void) {
    if (write(ready[1], "r", 1) != 1) {
        abort();
    }
}

/* Returns at once, or announces itself and reads a pipe nobody writes. */
NOINLINE int wait_for(void (*hello)(void), int block) {
    char c = 0;
    if (block) {
        hello();
        ssize_t n = read(fds[0], &c, 1);
        c = (char)(c + n);
    }
    return c;
}

NOINLINE void maybe_quit(int quit) {
    if (quit) {
        fflush(stdout);
        exit(3);
    }
}

NOINLINE int relay(void (*f)(int), int arg) {
    if (f != NULL) {
        f(arg);
    }
    return arg;
}

static void *waiter(void *arg) {
    (void)arg;
    wait_for(announce, 1);
    return NULL;
}

int main(void) {
    if (pipe(fds) != 0 || pipe(ready) != 0) {
        return 1;
    }
    for (int i = 0; i < 5; i++) {
        wait_for(announce, 0);
        relay(maybe_quit, 0);
    }
    pthread_t t;
    if (pthread_create(&t, NULL, waiter, NULL) != 0) {
        return 1;
    }
    char r;
    if (read(ready[0], &r, 1) != 1) {
        return 1;
    }
    printf("quitting\n");
    relay(maybe_quit, 1);
    return 0;
}
"#;

#[test]
fn frames_that_never_return_do_not_count_as_exits() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("never.c"), NEVER_RETURNS).unwrap();
    cc_build(
        dir.path(),
        &[],
        &["sh", "-c", r#"exec "$CC" -O2 -pthread never.c -o never"#],
    );
    let exe = dir.path().join("never");
    let m: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("never.panic.json")).unwrap())
            .unwrap();
    let mut pending: Vec<&str> = m["sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "exit" && s["pending"] == true)
        .map(|s| s["function"].as_str().unwrap())
        .collect();
    pending.sort();
    assert_eq!(pending, ["maybe_quit", "relay", "wait_for"]);

    let (out, p) = common::run_profiled(&exe, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("quitting"));
    check(
        &p,
        &[
            ("main", 1, 0, 5, 0, 0),
            ("wait_for", 6, 5, 0, 0, 0),
            ("relay", 6, 5, 0, 0, 0),
            ("maybe_quit", 6, 5, 0, 0, 0),
            ("waiter", 1, 0, 0, 0, 0),
        ],
        "never",
    );
    // `announce` may or may not have returned when `main` exits: only its
    // entry is certain.
    assert_eq!(count(&p, "announce", "entry", false), 1);
}

#[test]
fn cpp_exceptions_through_instrumented_frames_keep_exit_counts_exact() {
    for (flags, ldflags) in [("-O0", ""), ("-O2", ""), ("-O2 -flto", "-flto")] {
        let dir = example("cpp-basic");
        cc_build(
            dir.path(),
            &[],
            &[
                "make",
                &format!("CXXFLAGS={flags}"),
                &format!("LDFLAGS={ldflags}"),
            ],
        );
        let (_, p) = run_profiled(&dir.path().join("cpp-basic"), &[]);
        check(
            &p,
            &[
                ("widget_churn", 1, 1, 100, 100, 100),
                ("array_churn", 1, 1, 65, 10, 10),
                ("catch_site", 10, 10, 0, 0, 0),
                ("thrower", 50, 25, 0, 0, 0),
                ("Tracker::Tracker", 50, 50, 0, 0, 0),
                ("Tracker::~Tracker", 50, 50, 0, 0, 0),
            ],
            flags,
        );
        assert_eq!(
            count(&p, "thrower", "exit", true),
            25,
            "{flags}: thrower frames left by unwinding"
        );
        assert_eq!(
            count(&p, "thrower", "panic", false),
            5,
            "{flags}: __cxa_throw"
        );
        // passthrough has no landing pad: the exception leaves without running
        // code there, so its exit is not observable (README).
        assert_eq!(count(&p, "passthrough", "entry", false), 10);
        assert_eq!(count(&p, "passthrough", "exit", false), 5);
        assert_eq!(
            count(
                &p,
                "std::lock_guard<std::mutex>::lock_guard",
                "entry",
                false
            ),
            51,
            "{flags}: demangled C++ names"
        );
    }
}

#[test]
fn make_and_cmake_projects_build_through_cargo_panic_cc() {
    let dir = example("make-project");
    let out_dir = dir.path().join("panic-out");
    cc_build(
        dir.path(),
        &["--out", out_dir.to_str().unwrap()],
        // With -flto: archives of LLVM 19 bitcode need LLVM 19's ar, which
        // `cargo panic cc` provides as AR.
        &["make", "CFLAGS=-O2 -flto", "LDFLAGS=-flto"],
    );
    let links: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("links.json")).unwrap()).unwrap();
    assert_eq!(links.as_array().unwrap().len(), 1, "{links}");
    assert!(out_dir.join("app.panic.json").is_file());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("app.panic.json")).unwrap()).unwrap();
    let inputs = manifest["inputs"].as_array().unwrap();
    assert!(
        inputs.iter().any(
            |i| i["name"].as_str().unwrap().contains("libutil.a(queue.o)")
                && i["instrumented"] == true
        ),
        "archive members are listed: {inputs:?}"
    );
    let (_, p) = run_profiled(&dir.path().join("app"), &[]);
    assert_eq!(count(&p, "queue_push", "entry", false), 1000);
    assert_eq!(count(&p, "queue_push", "alloc", false), 1000);
    assert_eq!(count(&p, "hash_bytes", "loop", false), 2012);

    // CMake, configure step included, with Ninja.
    let dir = example("cmake-cpp");
    cc_build(
        dir.path(),
        &[],
        &[
            "sh",
            "-c",
            "cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build",
        ],
    );
    let exe = dir.path().join("build").join("cmake-cpp");
    assert!(
        dir.path().join("build/cmake-cpp.panic.json").is_file(),
        "no manifest beside {}",
        exe.display()
    );
    let (_, p) = run_profiled(&exe, &[]);
    assert_eq!(count(&p, "make_shape", "entry", false), 30);
    assert_eq!(count(&p, "Scene::total_area2", "loop", false), 30);
    assert_eq!(count(&p, "Triangle::area2", "entry", false), 10);
}

#[test]
fn by_hand_with_plugin_path_cflags_and_ldflags() {
    let dir = tempfile::tempdir().unwrap();
    let src = repo().join("examples/c-basic/main.c");
    let flag = |cmd: &str| -> String {
        let out = cc_panic().arg(cmd).output().unwrap();
        assert!(out.status.success(), "{cmd}:\n{}", show(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let plugin = flag("plugin-path");
    assert!(Path::new(&plugin).is_file(), "{plugin}");
    let cflags = flag("cflags");
    let words: Vec<&str> = cflags.split_whitespace().collect();
    assert_eq!(words[0], format!("-fpass-plugin={plugin}"));
    assert_eq!(words[1], "-idirafter", "{cflags}");
    assert!(Path::new(words[2]).join("panic.h").is_file(), "{cflags}");
    let obj = dir.path().join("main.o");
    let exe = dir.path().join("prog");
    let out = Command::new("clang-19")
        .arg("-O2")
        .args(&words)
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let out = Command::new("clang-19")
        .arg(&obj)
        .arg(flag("ldflags"))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    // No manifest was written by a hand-made link: the binary carries its sites.
    let (_, p) = run_profiled(&exe, &[]);
    check(&p, C_BASIC, "by hand");
}

#[test]
fn rust_and_c_sites_share_one_profile() {
    require_tools(&["clang-19", "llvm-config-19"]);
    let exe = build_in(
        &repo().join("examples/mixed"),
        &repo().join("target/e2e"),
        &[],
    )
    .remove(0);
    let (out, p) = run_profiled(&exe, &["3", "100"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("mixed: "));
    check(
        &p,
        &[
            ("native_sum", 3, 3, 300, 3, 3),
            ("native_step", 300, 300, 0, 0, 0),
        ],
        "C from the cc crate",
    );
    assert!(
        count(&p, "mixed::rust_side", "entry", false) == 1,
        "Rust sites in the same profile"
    );
}

// ---- bad input ----

fn fails_with(out: &Output, code: i32, needle: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", show(out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(needle),
        "expected `{needle}` in:\n{}",
        show(out)
    );
}

#[test]
fn cc_that_is_not_clang_19_says_which_clang_is_needed() {
    let out = cc_panic()
        .args(["cc", "--", "true"])
        .env("CC", "gcc")
        .output()
        .unwrap();
    fails_with(&out, 2, "CC=clang-19");
    // Another clang major version.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("clang-18");
    std::fs::write(&fake, "#!/bin/sh\necho 'Debian clang version 18.1.8'\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = cc_panic()
        .args(["cc", "--", "true"])
        .env("CC", &fake)
        .output()
        .unwrap();
    fails_with(&out, 2, "is clang 18.1.8, but the plugin is for clang 19");
}

#[test]
fn a_failing_build_keeps_its_output_and_exit_status() {
    let out = cc_panic()
        .args([
            "cc",
            "--",
            "sh",
            "-c",
            "echo built-half; echo broken >&2; exit 3",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("built-half"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken"));
}

#[test]
fn a_compile_that_bypassed_the_wrapper_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.c"),
        "int b(int);\nint main(void) { return b(0); }\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("b.c"), "int b(int x) { return x; }\n").unwrap();
    std::fs::write(
        dir.path().join("Makefile"),
        "prog: a.o b.o\n\t$(CC) a.o b.o -o prog\na.o: a.c\n\t$(CC) -c a.c -o a.o\n\
         b.o: b.c\n\tgcc -c b.c -o b.o\n",
    )
    .unwrap();
    let out = cc_build(dir.path(), &[], &["make"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: b.o was not compiled through cargo-panic's plugin"),
        "{}",
        show(&out)
    );
    let m: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("prog.panic.json")).unwrap())
            .unwrap();
    let b = m["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "b.o")
        .expect("b.o listed");
    assert_eq!(b["instrumented"], false, "{b}");
    let a = m["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "a.o")
        .expect("a.o listed");
    assert_eq!(a["instrumented"], true, "{a}");
}

#[test]
fn shared_libraries_get_their_own_manifest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lib.c"),
        "int twice(int x) { return 2 * x; }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("main.c"),
        "#include <stdio.h>\nint twice(int);\nint main(void) { int s = 0; \
         for (int i = 0; i < 7; i++) s += twice(i); printf(\"%d\\n\", s); return 0; }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("Makefile"),
        "app: main.c libtwice.so\n\t$(CC) main.c -L. -ltwice -Wl,-rpath,'$$ORIGIN' -o app\n\
         libtwice.so: lib.c\n\t$(CC) -fPIC -shared lib.c -o libtwice.so\n",
    )
    .unwrap();
    cc_build(dir.path(), &[], &["make"]);
    let lib: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("libtwice.so.panic.json")).unwrap())
            .unwrap();
    assert!(
        lib["sites"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["function"] == "twice"),
        "{lib}"
    );
    let (out, p) = run_profiled(&dir.path().join("app"), &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    // The executable's own sites; the library counts in its own runtime copy.
    assert_eq!(count(&p, "main", "loop", false), 7);
    assert_eq!(count(&p, "twice", "entry", false), 0);
}

/// A directory on PATH holding only the given tools (symlinks or scripts).
fn path_with(tools: &[(&str, Option<&str>)]) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for (name, script) in tools {
        let p = dir.path().join(name);
        match script {
            Some(text) => {
                std::fs::write(&p, text).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            None => {
                let real = cargo_panic_core::clang::which(name).unwrap_or_else(|| panic!("{name}"));
                std::os::unix::fs::symlink(real, &p).unwrap();
            }
        }
    }
    dir
}

#[test]
fn missing_llvm_dev_and_mismatched_llvm_are_explained() {
    // A fresh home (no plugin yet) and no llvm-config-19 on PATH.
    let home = tempfile::tempdir().unwrap();
    let bin = path_with(&[("clang-19", None), ("clang++-19", None)]);
    let out = cc_panic()
        .arg("plugin-path")
        .env("CARGO_PANIC_HOME", home.path())
        .env("PATH", bin.path())
        .output()
        .unwrap();
    fails_with(&out, 2, "apt-get install clang-19 llvm-19-dev");
    // A clang of another LLVM 19 release than llvm-19-dev: the plugin would not
    // be built for the clang that loads it.
    let bin = path_with(&[
        (
            "clang-19",
            Some("#!/bin/sh\necho 'Debian clang version 19.1.2'\n"),
        ),
        ("llvm-config-19", None),
    ]);
    let out = cc_panic()
        .arg("plugin-path")
        .env("CARGO_PANIC_HOME", home.path())
        .env("PATH", bin.path())
        .output()
        .unwrap();
    fails_with(&out, 2, "is LLVM 19.1.2 but llvm-19-dev is");
}

#[test]
fn instrumentation_errors_are_clang_diagnostics() {
    // Loading the plugin twice makes its second run find an instrumented module:
    // a real instrumentation error, reported through clang.
    let out = cc_panic().arg("plugin-path").output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let plugin = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    let compile = |lenient: bool| {
        let mut c = Command::new("clang-19");
        c.args(["-O2", "-c"])
            .arg(format!("-fpass-plugin={plugin}"))
            .arg(format!("-fpass-plugin={plugin}"))
            .arg(repo().join("examples/c-basic/main.c"))
            .arg("-o")
            .arg(dir.path().join("main.o"))
            .env_remove("CARGO_PANIC_ON_ERROR");
        if lenient {
            c.env("CARGO_PANIC_ON_ERROR", "uninstrumented");
        }
        c.output().unwrap()
    };
    let out = compile(false);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: cargo-panic: module") && err.contains("is already instrumented"),
        "{}",
        show(&out)
    );
    assert!(!dir.path().join("main.o").exists(), "no object on error");
    let out = compile(true);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("warning: cargo-panic: module"),
        "{}",
        show(&out)
    );
    assert!(dir.path().join("main.o").is_file());
}

#[test]
fn the_manifest_records_what_c_functions_call_and_touch() {
    let dir = example("c-threads");
    cc_build(dir.path(), &[], &["make", "CFLAGS=-O2"]);
    let m =
        cargo_panic_core::manifest::Manifest::for_binary(&dir.path().join("c-threads")).unwrap();
    let functions = m.functions();
    let f = |name: &str| {
        functions
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no function {name}"))
    };
    let worker = f("worker");
    assert_eq!(
        worker.callees,
        ["pthread_mutex_lock", "pthread_mutex_unlock", "step"]
    );
    // The mutex is a global: the lock is named by it, and passing its address
    // uses it; `counter` is loaded and stored, `iterations` loaded.
    let mut want = vec![
        "cpu",
        "global:counter",
        "global:counter_mu",
        "global:iterations",
        "lock:global:counter_mu",
    ];
    if worker.timed {
        want.insert(1, "dwell");
    }
    assert_eq!(worker.touches, want);
    assert!(f("step").touches.is_empty() && f("step").callees.is_empty());
    let main = f("main");
    for callee in ["parse_arg", "pthread_create", "pthread_join"] {
        assert!(
            main.callees.iter().any(|c| c == callee),
            "{:?}",
            main.callees
        );
    }
    // `stderr` is a global; pthread_join blocks on neither a file nor a socket.
    assert!(
        main.touches.iter().any(|t| t == "global:stderr"),
        "{:?}",
        main.touches
    );
    assert!(
        !main.touches.iter().any(|t| t == "io" || t == "network"),
        "{:?}",
        main.touches
    );
}

// ---- sanitizers ----

/// `cargo panic run` with an environment for the target; the profile must be
/// written whatever the exit status. Returns (output, profile).
fn run_profiled_env(exe: &Path, args: &[&str], envs: &[(&str, &str)]) -> (Output, Value) {
    let dir = tempfile::tempdir().unwrap();
    common::run_profiled_env(&[], exe, args, &dir.path().join("p.json"), envs)
}

/// Where ASan finds clang 19's symbolizer (`llvm-symbolizer` on PATH may be
/// another version's, or missing): reports name functions and lines with it.
fn symbolizer() -> String {
    let out = Command::new("clang-19")
        .arg("-print-prog-name=llvm-symbolizer")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn asan_reports_a_use_after_free_and_the_profile_survives() {
    let dir = example("c-bugs");
    cc_build(dir.path(), &["--sanitize", "address"], &["make"]);
    let exe = dir.path().join("c-bugs");
    let sym = symbolizer();

    // A clean run: exact counts, exit 0.
    let (out, p) = run_profiled_env(&exe, &["ok"], &[("ASAN_SYMBOLIZER_PATH", &sym)]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    assert_eq!(count(&p, "main", "entry", false), 1);
    assert_eq!(count(&p, "main", "exit", false), 1);
    assert_eq!(p["runtime"]["state"], "exited");

    // examples/c-bugs/README.md: the read at line 28, the free at 25, the
    // malloc at 20.
    let (out, p) = run_profiled_env(&exe, &["uaf"], &[("ASAN_SYMBOLIZER_PATH", &sym)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    for needle in [
        "ERROR: AddressSanitizer: heap-use-after-free",
        "READ of size 1",
        "in use_buffer ",
        "main.c:28:",
        "freed by thread T0 here:",
        "in drop_buffer ",
        "main.c:25:",
        "previously allocated by thread T0 here:",
        "in make_buffer ",
        "main.c:20:",
        "SUMMARY: AddressSanitizer: heap-use-after-free",
    ] {
        assert!(err.contains(needle), "`{needle}` missing:\n{}", show(&out));
    }
    assert!(
        out.stdout.is_empty(),
        "ASan stops it before the print: {}",
        show(&out)
    );
    assert_eq!(p["exit"]["code"], 1, "{p:#}");
    for f in ["make_buffer", "drop_buffer", "use_buffer", "main"] {
        assert_eq!(count(&p, f, "entry", false), 1, "{f}");
    }
    assert_eq!(count(&p, "make_buffer", "alloc", false), 1);
    assert_eq!(count(&p, "drop_buffer", "free", false), 1);
    // ASan ends the process with _exit: no exit handler ran.
    assert_eq!(p["runtime"]["state"], "running");

    // A fault: the runtime records the signal, then ASan reports it.
    let (out, p) = run_profiled_env(&exe, &["null"], &[("ASAN_SYMBOLIZER_PATH", &sym)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AddressSanitizer: SEGV on unknown address 0x000000000000")
            && err.contains("in poke "),
        "{}",
        show(&out)
    );
    assert_eq!(p["runtime"]["state"], "signaled");
    assert_eq!(p["runtime"]["fatal_signal"], 11);
    assert_eq!(p["runtime"]["fault_addr"], 0);
    assert_eq!(count(&p, "poke", "entry", false), 1);
}

/// Thread bodies with no timed region: with ASan or TSan every count must
/// still land (the runtime's pthread_create has to win over theirs, else
/// such threads count into the shared counters and lose counts to races).
const UNTIMED_THREADS: &str = r#"
#include <pthread.h>
#include <stdio.h>
__attribute__((noinline)) unsigned long leaf(unsigned long x) { return x * 3 + 1; }
__attribute__((noinline)) unsigned long down(unsigned long n) { return n == 0 ? 0 : leaf(n) + down(n - 1); }
static void *worker(void *arg) { return (void *)(down(20000) + down(20000) + (unsigned long)arg); }
int main(void) {
    pthread_t t[8];
    for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    printf("done\n");
    return 0;
}
"#;

#[test]
fn threads_count_exactly_under_asan_and_tsan() {
    for sanitizer in ["address", "thread"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("untimed.c"), UNTIMED_THREADS).unwrap();
        cc_build(
            dir.path(),
            &["--sanitize", sanitizer],
            &["sh", "-c", "$CC -O2 -pthread -o untimed untimed.c"],
        );
        let (out, p) = run_profiled(&dir.path().join("untimed"), &[]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n");
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("Sanitizer"),
            "{sanitizer}: {}",
            show(&out)
        );
        // 8 threads x 2 calls of down(20000): 20001 entries each, 20000 leaves.
        assert_eq!(
            count(&p, "down", "entry", false),
            8 * 2 * 20001,
            "{sanitizer}"
        );
        assert_eq!(
            count(&p, "leaf", "entry", false),
            8 * 2 * 20000,
            "{sanitizer}"
        );
    }
    // UBSan links and runs too.
    let dir = example("c-threads");
    cc_build(dir.path(), &["--sanitize", "undefined"], &["make"]);
    let (_, p) = run_profiled(&dir.path().join("c-threads"), &[]);
    assert_eq!(count(&p, "step", "entry", false), 40000);
}

#[test]
fn sanitizers_that_cannot_be_combined_or_do_not_exist_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Refused before the build command runs: it would create `ran`.
    for (args, needle) in [
        (
            &["--sanitize", "address,thread"][..],
            "--sanitize address and thread cannot be combined",
        ),
        (
            &["--sanitize", "thread", "--sanitize", "address"][..],
            "--sanitize address and thread cannot be combined",
        ),
        (
            &["--sanitize", "bogus"][..],
            "unknown sanitizer `bogus` in --sanitize: cargo panic cc supports address, undefined, thread",
        ),
    ] {
        let out = cc_panic()
            .arg("cc")
            .args(args)
            .args(["--", "touch", "ran"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        fails_with(&out, 2, needle);
        assert!(!dir.path().join("ran").exists(), "{args:?}: the build ran");
    }
}
