//! Test harness: builds the C drivers in `tests/c/` against the embedded
//! runtime archive and a fake site table, runs them with a time limit, and
//! checks what every histogram must satisfy.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use panic_runtime::hist::bucket_index;
use panic_runtime::{
    ABI_HEADER, Hist, STATIC_LIB, STATIC_LIB_FILE_NAME, USER_HEADER, USER_HEADER_FILE_NAME,
};

pub mod bpf;

/// How long any driver may run before the test kills it and fails.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// A temporary directory holding the archive, the header and built drivers.
pub struct Harness {
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub fn new() -> Harness {
        require_gcc();
        let dir = tempfile::Builder::new()
            .prefix("panic-runtime-test")
            .tempdir()
            .expect("create a temp dir");
        std::fs::write(dir.path().join(STATIC_LIB_FILE_NAME), STATIC_LIB)
            .expect("write the archive");
        std::fs::write(dir.path().join("panic_abi.h"), ABI_HEADER).expect("write the header");
        Harness { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Builds `tests/c/<driver>.c` with a site table of `n_sites` counters and
    /// `n_hists` histograms, linked against the runtime archive.
    pub fn build(&self, driver: &str, n_sites: u64, n_hists: u64) -> PathBuf {
        self.build_with(driver, n_sites, n_hists, true)
    }

    /// Like [`Harness::build`]; without `link_runtime` the driver must bring
    /// the runtime itself (it includes its source).
    pub fn build_with(
        &self,
        driver: &str,
        n_sites: u64,
        n_hists: u64,
        link_runtime: bool,
    ) -> PathBuf {
        self.build_args(driver, driver, n_sites, n_hists, link_runtime, &[])
    }

    /// Like [`Harness::build_with`], into `exe_name`, with `extra` compiler
    /// and linker arguments after everything else.
    pub fn build_args(
        &self,
        driver: &str,
        exe_name: &str,
        n_sites: u64,
        n_hists: u64,
        link_runtime: bool,
        extra: &[&str],
    ) -> PathBuf {
        let table = self.path(&format!("{exe_name}_table.c"));
        std::fs::write(&table, site_table(n_sites, n_hists)).expect("write the site table");
        let exe = self.path(exe_name);
        let c_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c");
        let runtime_src = Path::new(env!("CARGO_MANIFEST_DIR")).join("c");
        // panic_kabi.h, for drivers that include the runtime's source or the
        // kernel thread table's layout.
        let kabi = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bpf/src/bpf");
        let mut cmd = Command::new("gcc");
        cmd.args([
            "-std=gnu11",
            "-O1",
            "-g",
            "-pthread",
            "-Wall",
            "-Werror",
            "-Wno-prio-ctor-dtor",
        ])
        .arg("-I")
        .arg(self.dir.path())
        .arg("-I")
        .arg(&c_dir)
        .arg("-I")
        .arg(&runtime_src)
        .arg("-I")
        .arg(&kabi)
        .arg(c_dir.join(format!("{driver}.c")))
        .arg(&table);
        if link_runtime {
            cmd.arg(self.path(STATIC_LIB_FILE_NAME));
        }
        cmd.args(extra).arg("-o").arg(&exe);
        let out = cmd.output().expect("run gcc");
        assert!(
            out.status.success(),
            "gcc failed to build {driver}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        exe
    }

    /// Builds `tests/c/<driver>.c` the way a program built without
    /// cargo-panic is: no runtime, no site table, and of cargo-panic's
    /// headers only the user header ([`USER_HEADER`], written alone into a
    /// directory of its own). `-Wall -Wextra -Wpedantic -Werror`, C99.
    pub fn build_plain(&self, driver: &str) -> PathBuf {
        let include = self.path("user-include");
        std::fs::create_dir_all(&include).expect("create the include dir");
        std::fs::write(include.join(USER_HEADER_FILE_NAME), USER_HEADER)
            .expect("write the user header");
        let exe = self.path(driver);
        let c_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c");
        let out = Command::new("gcc")
            .args([
                "-std=c99",
                "-O2",
                "-Wall",
                "-Wextra",
                "-Wpedantic",
                "-Werror",
            ])
            .arg("-I")
            .arg(&include)
            .arg(c_dir.join(format!("{driver}.c")))
            .arg("-o")
            .arg(&exe)
            .output()
            .expect("run gcc");
        assert!(
            out.status.success(),
            "gcc failed to build {driver} without cargo-panic:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        exe
    }

    /// A command for `exe` with no CARGO_PANIC_* variables from outside.
    pub fn command(&self, exe: &Path) -> Command {
        let mut cmd = Command::new(exe);
        for var in [
            "CARGO_PANIC_SHM",
            "CARGO_PANIC_DUMP",
            "CARGO_PANIC_CLOCK",
            "CARGO_PANIC_KTHREADS",
        ] {
            cmd.env_remove(var);
        }
        cmd.current_dir(self.dir.path());
        cmd
    }
}

/// Fails the test, loudly, when gcc is missing.
fn require_gcc() {
    match Command::new("gcc").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "these tests compile C drivers with gcc, which is not installed: apt-get install gcc"
        ),
    }
}

/// The data an instrumented module would define: counters and histograms in the
/// runtime's sections (linked before the runtime archive, as the pass's objects are).
fn site_table(n_sites: u64, n_hists: u64) -> String {
    format!(
        r#"#define PANIC_ABI_NO_TYPES
#include "panic_abi.h"
#include <stdint.h>
__attribute__((section(PANIC_SECTION_COUNTERS), aligned(8), used)) uint64_t test_counters[{n_sites} + 1];
__attribute__((section(PANIC_SECTION_HISTS), aligned(8), used)) unsigned char test_hists[{n_hists} * (uint64_t)PANIC_HIST_SIZE + 8];
"#
    )
}

/// Waits for `child` at most [`RUN_LIMIT`], killing it (and failing) past that.
pub fn wait_limited(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for the driver") {
            return status;
        }
        if start.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("driver still running after {RUN_LIMIT:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `cmd` to completion within [`RUN_LIMIT`], collecting its output.
pub fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Drain both pipes on threads so a chatty driver cannot block on a full pipe.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).map(|_| v)
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        err.read_to_end(&mut v).map(|_| v)
    });
    let status = wait_limited(&mut child);
    Output {
        status,
        stdout: out_t.join().expect("stdout reader").expect("read stdout"),
        stderr: err_t.join().expect("stderr reader").expect("read stderr"),
    }
}

/// Describes how a driver ended, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?} (signal {:?})\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        out.status.signal(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What every histogram must satisfy, live or final.
pub fn check_hist(h: &Hist) {
    assert_eq!(
        h.buckets.iter().sum::<u64>(),
        h.count,
        "bucket counts do not add up to count"
    );
    if h.count == 0 {
        assert_eq!(
            (h.total, h.max, h.min),
            (0, 0, u64::MAX),
            "empty hist with data"
        );
        return;
    }
    assert!(h.min <= h.max);
    // The C runtime put min and max in the buckets the Rust index names.
    assert!(
        h.buckets[bucket_index(h.min)] > 0,
        "no count in min's bucket"
    );
    assert!(
        h.buckets[bucket_index(h.max)] > 0,
        "no count in max's bucket"
    );
    let total = u128::from(h.total);
    assert!(total >= u128::from(h.min) * u128::from(h.count));
    assert!(total <= u128::from(h.max) * u128::from(h.count));
}

/// The first `n` counters of `snap` (the sites a test driver defined), after
/// checking that the slots past them (the padding up to the runtime's trailer
/// page) are whole pages' worth and never counted.
pub fn sites(snap: &panic_runtime::Snapshot, n: usize) -> Vec<u64> {
    let slots = snap.counters.len();
    assert_eq!(
        (slots * 8) % 4096,
        0,
        "counter slots end where the trailer page starts"
    );
    assert!(slots >= n, "{slots} slots, fewer than the {n} sites");
    assert!(
        snap.counters[n..].iter().all(|&c| c == 0),
        "padding slots were counted: {:?}",
        &snap.counters[n..]
    );
    snap.counters[..n].to_vec()
}

/// Asserts that a dump records what the live segment showed at the end. The live
/// segment keeps the threads' counter blocks, the dump holds their sums instead,
/// so the two differ in `n_blocks` and `total_size` and nowhere else.
#[track_caller]
pub fn assert_dump_matches_live(dump: &panic_runtime::Snapshot, live: &panic_runtime::Snapshot) {
    assert!(live.header.n_blocks >= 1, "live: {:?}", live.header);
    assert_eq!(dump.header.n_blocks, 0, "dump: {:?}", dump.header);
    let mut live = live.clone();
    live.header.n_blocks = 0;
    live.header.total_size = dump.header.total_size;
    assert!(
        *dump == live,
        "the dump differs from the live segment:\ndump: {:?}\nlive: {:?}\ncounters equal: {}",
        dump.header,
        live.header,
        dump.counters == live.counters
    );
}

/// A driver built for a test, with the layout it printed (`<driver> layout`).
pub struct Setup<L> {
    pub h: Harness,
    pub exe: PathBuf,
    pub layout: L,
}

impl<L> Setup<L> {
    /// Builds `tests/c/<driver>.c` the way the link driver links programs,
    /// with `export` (the `--export-dynamic-symbol` flags of its API), and
    /// reads its layout with `layout`.
    pub fn exported(
        driver: &str,
        export: &[&str],
        layout: impl FnOnce(&Harness, &Path) -> L,
    ) -> Setup<L> {
        let h = Harness::new();
        let exe = h.build_args(driver, driver, 4, 4, true, export);
        let layout = layout(&h, &exe);
        Setup { h, exe, layout }
    }

    /// A command running the driver with `args`, in kernel mode on the thread
    /// table pinned at `kthreads` when there is one.
    pub fn command(&self, args: &[&str], kthreads: Option<&Path>) -> Command {
        let mut cmd = self.h.command(&self.exe);
        cmd.args(args);
        if let Some(pin) = kthreads {
            cmd.env("CARGO_PANIC_KTHREADS", pin);
        }
        cmd
    }

    /// Spawns the driver in `mode` (see [`Setup::command`]) to talk to it.
    pub fn spawn(&self, mode: &str, kthreads: Option<&Path>) -> Driver {
        Driver::spawn(self.command(&[mode], kthreads))
    }
}

/// The `name=value` pairs (all numbers) a driver prints on one line in its
/// `layout` mode, so that no layout number is copied by hand into a test.
pub struct LayoutValues {
    text: String,
    values: HashMap<String, u64>,
}

impl LayoutValues {
    pub fn parse(text: String) -> LayoutValues {
        let values = text
            .split_whitespace()
            .map(|f| {
                let (k, v) = f.split_once('=').expect("name=value");
                (k.to_string(), v.parse().expect("a number"))
            })
            .collect();
        LayoutValues { text, values }
    }

    /// Runs `exe layout` (which must succeed) and parses what it prints.
    pub fn from_driver(h: &Harness, exe: &Path) -> LayoutValues {
        let out = run(h.command(exe).arg("layout"));
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        LayoutValues::parse(String::from_utf8(out.stdout).expect("utf-8"))
    }

    /// The value of `name`, failing when the driver did not print it.
    pub fn get(&self, name: &str) -> u64 {
        *self
            .values
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.text))
    }

    /// The value of `name` as an offset or a size.
    pub fn at(&self, name: &str) -> usize {
        usize::try_from(self.get(name)).expect("small")
    }
}

/// A driver that talks over pipes: it prints lines and waits for lines on
/// stdin between its steps.
pub struct Driver {
    pub child: Child,
    pub stdin: ChildStdin,
    pub stdout: BufReader<ChildStdout>,
}

impl Driver {
    pub fn spawn(mut cmd: std::process::Command) -> Driver {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the driver");
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Driver {
            child,
            stdin,
            stdout,
        }
    }

    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read a line");
        line
    }

    pub fn go(&mut self) {
        self.send("go");
    }

    /// Writes `line` and a newline to the driver's stdin.
    pub fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to the driver");
        self.stdin.flush().expect("flush");
    }

    /// Waits for the end (boundedly); returns the exit code and stderr.
    pub fn finish(mut self) -> (Option<i32>, String) {
        drop(self.stdin);
        let status = wait_limited(&mut self.child);
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .expect("piped")
            .read_to_string(&mut err)
            .expect("read stderr");
        (status.code(), err)
    }
}

/// `(name, defined)` of every dynamic symbol of `exe` (`nm -D`).
pub fn dynamic_symbols(exe: &Path) -> Vec<(String, bool)> {
    let out = Command::new("nm")
        .arg("-D")
        .arg(exe)
        .output()
        .expect("run nm (binutils)");
    assert!(
        out.status.success(),
        "nm -D failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<_> = l.split_whitespace().collect();
            match f.as_slice() {
                [_, kind, name] => Some(((*name).to_string(), !matches!(*kind, "U" | "w" | "v"))),
                [kind, name] => Some(((*name).to_string(), !matches!(*kind, "U" | "w" | "v"))),
                _ => None,
            }
        })
        .collect()
}
