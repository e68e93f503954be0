//! The stressor processes (`cargo_panic_core::attack::stress`) for real: each
//! test starts stressors as child processes and measures them from `/proc`.
//!
//! The stressor executable is this test binary itself: run with
//! `CARGO_PANIC_STRESS_CHILD` set (to the stressor's arguments, as JSON), its
//! test `stress_child_entry` calls `serve` on its stdin and exits, which is
//! what `cargo-panic __stress` does. Every other test starts it with
//! `--exact stress_child_entry --nocapture` through `Stressor::spawn_with`.
//! One test runs the real `cargo-panic __stress` too, which serves on its
//! main thread and so reports its parent-death signal.
//!
//! Bounds. Rates are measured over one second after a settling time of
//! 0.3-0.5 s, and again over the next second, at most 3 times, until in
//! their band (a load spike from another process can spoil a second; a
//! broken stressor misses every one). The bounds are generous because the
//! machine (2 CPUs) may be busy with builds: spin 0.5 cores must measure
//! 0.3-0.75 cores, spin 1.0 cores 0.3-1.3 (low: with two other CPU-bound
//! processes on the machine it measured 0.33-0.7), spin 0 below 0.1 over one
//! second; io at 8 MiB/s must measure 2-16 MiB/s; a hog of 64 MiB must
//! reach 60 MiB resident within 2 s and shrink to at most 24 MiB within 2 s
//! of a 16 MiB level. The rate tests take a lock so that they do not load
//! the CPUs at the same time. Every wait is polled against a deadline (at
//! most 5 s, 10 s for a stressor to start), so a broken stressor fails a
//! test, never hangs it. The ENOSPC test mounts a small tmpfs and needs
//! root; without root it fails saying so (CI runs as root).

use std::fs;
use std::ops::RangeInclusive;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use cargo_panic_core::attack::stress::{self, Kind, Stressor, io_file_name, parse_args, serve};

const MIB: f64 = 1024.0 * 1024.0;
/// Most one-second windows a rate is measured over before it must be in its band.
const WINDOWS: usize = 3;
/// The environment variable that makes this binary a stressor.
const CHILD_ENV: &str = "CARGO_PANIC_STRESS_CHILD";
/// Held by the tests whose assertions depend on CPU time.
static TIMING: Mutex<()> = Mutex::new(());

/// The stressor: does nothing in a normal test run.
#[test]
fn stress_child_entry() {
    let Ok(args) = std::env::var(CHILD_ENV) else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&args).expect("stressor arguments as JSON");
    let r = parse_args(&args).and_then(|kind| serve(kind, std::io::stdin().lock()));
    let code = match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("stressor: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

/// This binary as the stressor of `kind`.
fn child_command(kind: &Kind) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "stress_child_entry",
        "--nocapture",
        "--test-threads=1",
    ]);
    let args: Vec<String> = kind
        .args()
        .iter()
        .map(|a| a.to_str().unwrap().to_string())
        .collect();
    cmd.env(CHILD_ENV, serde_json::to_string(&args).unwrap());
    cmd
}

fn spawn(kind: Kind) -> Stressor {
    Stressor::spawn_with(child_command(&kind), kind)
        .unwrap_or_else(|e| panic!("starting a stressor: {e:#}"))
}

/// Polls `f` every 20 ms until it gives Some, for at most `limit`.
fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        sleep(Duration::from_millis(20));
    }
}

/// The rate `achieved` measures over `window`, after `settle`.
fn rate_over(s: &mut Stressor, settle: Duration, window: Duration) -> f64 {
    sleep(settle);
    s.achieved();
    sleep(window);
    s.achieved().expect("a second sample gives a rate")
}

/// Rates over consecutive one-second windows (after `settle`) until one is
/// in `band`, at most [`WINDOWS`] of them: a load spike from another process
/// can spoil one second, while a broken stressor misses every window. All
/// measured rates are returned, the last one last.
fn rates_until_in(s: &mut Stressor, settle: Duration, band: RangeInclusive<f64>) -> Vec<f64> {
    let mut rates = vec![rate_over(s, settle, Duration::from_secs(1))];
    while !band.contains(rates.last().unwrap()) && rates.len() < WINDOWS {
        rates.push(rate_over(s, Duration::ZERO, Duration::from_secs(1)));
    }
    rates
}

fn threads_of(pid: u32) -> usize {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn mem_total() -> f64 {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap();
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    kib * 1024.0
}

/// Names in `dir` that look like io stressor files.
fn io_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".cargo-panic-io-"))
        .collect()
}

#[test]
fn spin_achieves_its_level_and_idles_at_zero() {
    let _timing = TIMING.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = spawn(Kind::Spin);
    assert_eq!(s.achieved(), None, "the first sample has no rate");

    s.set(0.5).unwrap();
    assert_eq!(s.requested(), 0.5);
    let half = rates_until_in(&mut s, Duration::from_millis(500), 0.3..=0.75);
    eprintln!("spin: requested 0.5 cores, achieved {half:.3?}");
    assert!(
        (0.3..=0.75).contains(half.last().unwrap()),
        "0.5 cores measured {half:.3?}"
    );

    s.set(1.0).unwrap();
    let one = rates_until_in(&mut s, Duration::from_millis(300), 0.3..=1.3);
    eprintln!("spin: requested 1.0 cores, achieved {one:.3?}");
    assert!(
        (0.3..=1.3).contains(one.last().unwrap()),
        "1.0 cores measured {one:.3?}"
    );

    // Threads are retired before `set` returns: idle at once.
    s.set(0.0).unwrap();
    let zero = rate_over(&mut s, Duration::ZERO, Duration::from_secs(1));
    eprintln!("spin: requested 0 cores, achieved {zero:.3}");
    assert!(zero < 0.1, "0 cores measured {zero:.3}");
    s.stop().unwrap();
}

#[test]
fn spin_starts_and_retires_threads_and_refuses_too_many() {
    let _timing = TIMING.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = spawn(Kind::Spin);
    let pid = s.pid();
    let base = threads_of(pid);
    for (level, extra) in [(1.5, 2), (0.5, 1), (2.0, 2), (0.0, 0)] {
        s.set(level).unwrap();
        let want = base + extra;
        let got = wait_for(Duration::from_secs(2), || {
            let n = threads_of(pid);
            (n == want).then_some(n)
        });
        assert_eq!(
            got,
            Some(want),
            "level {level}: {} threads",
            threads_of(pid)
        );
    }
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } as f64;
    let too_many = cpus * stress::SPIN_THREADS_PER_CPU as f64 + 1.0;
    let err = format!("{:#}", s.set(too_many).unwrap_err());
    assert!(
        err.contains("refused level") && err.contains("at most"),
        "{err}"
    );
    assert_eq!(s.requested(), 0.0, "a refused level is not taken");
    assert_eq!(s.try_wait(), None, "the stressor lives on");
    s.set(0.25).unwrap();
    s.stop().unwrap();
}

#[test]
fn hog_holds_and_releases_memory_and_refuses_too_much() {
    let mut s = spawn(Kind::Hog);
    let pid = s.pid();
    let adj = fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap();
    assert_eq!(adj.trim(), "1000");

    let t = Instant::now();
    s.set(64.0 * MIB).unwrap();
    let held = wait_for(Duration::from_secs(2), || {
        s.achieved().filter(|&b| b >= 60.0 * MIB)
    });
    eprintln!(
        "hog: requested 64 MiB, achieved {:.1} MiB resident after {:?}",
        held.unwrap_or(0.0) / MIB,
        t.elapsed()
    );
    assert!(
        held.is_some(),
        "64 MiB hog: {:?} bytes resident after 2 s",
        s.achieved()
    );

    let t = Instant::now();
    s.set(16.0 * MIB).unwrap();
    let shrunk = wait_for(Duration::from_secs(2), || {
        s.achieved().filter(|&b| b <= 24.0 * MIB)
    });
    eprintln!(
        "hog: requested 16 MiB, achieved {:.1} MiB resident after {:?}",
        shrunk.unwrap_or(0.0) / MIB,
        t.elapsed()
    );
    assert!(
        shrunk.is_some(),
        "16 MiB hog: {:?} bytes resident after 2 s",
        s.achieved()
    );

    let err = format!("{:#}", s.set(mem_total() * 2.0).unwrap_err());
    assert!(
        err.contains("refused") && err.contains("is available") && err.contains("MemAvailable"),
        "{err}"
    );
    assert_eq!(s.requested(), 16.0 * MIB, "a refused level is not taken");
    assert_eq!(s.try_wait(), None, "the hog lives on");
    s.set(8.0 * MIB).unwrap();
    s.stop().unwrap();
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn io_writes_at_the_rate_and_leaves_no_file() {
    let _timing = TIMING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn(Kind::io(dir.path()));
    let pid = s.pid();
    let name = io_file_name(pid);

    // The file was created in the directory and unlinked at once: only the
    // stressor's descriptor holds it.
    assert_eq!(io_files(dir.path()), Vec::<String>::new());
    let want = PathBuf::from(format!("{} (deleted)", dir.path().join(&name).display()));
    let held = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| fs::read_link(e.unwrap().path()).ok())
        .any(|t| t == want);
    assert!(held, "the stressor holds {name} open, unlinked");

    s.set(8.0 * MIB).unwrap();
    let band = 2.0 * MIB..=16.0 * MIB;
    let rates = rates_until_in(&mut s, Duration::from_millis(500), band.clone());
    let mib: Vec<f64> = rates.iter().map(|r| r / MIB).collect();
    eprintln!(
        "io: requested 8 MiB/s, achieved {mib:.2?} MiB/s into {}",
        dir.path().display()
    );
    assert!(
        band.contains(rates.last().unwrap()),
        "8 MiB/s measured {mib:.2?} MiB/s"
    );
    s.set(0.0).unwrap();
    s.stop().unwrap();
    assert_eq!(io_files(dir.path()), Vec::<String>::new());
}

#[test]
fn io_file_of_a_killed_stressor_is_removed_by_the_parent() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn(Kind::Io {
        dir: dir.path().to_path_buf(),
        block: 64 * 1024,
    });
    s.set(4.0 * MIB).unwrap();
    let pid = s.pid();
    // As if the stressor had been killed between creating its file and
    // unlinking it.
    let leftover = dir.path().join(io_file_name(pid));
    fs::write(&leftover, b"left over").unwrap();
    // SAFETY: kill(2) with plain integers, to our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let err = format!("{:#}", s.stop().unwrap_err());
    assert!(err.contains("killed by signal 9 (SIGKILL)"), "{err}");
    assert!(!leftover.exists(), "stop removed {}", leftover.display());
    assert_eq!(io_files(dir.path()), Vec::<String>::new());

    // The same through drop, without stop.
    let s = spawn(Kind::io(dir.path()));
    let leftover = dir.path().join(io_file_name(s.pid()));
    fs::write(&leftover, b"left over").unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(s.pid() as i32, libc::SIGKILL) }, 0);
    drop(s);
    assert!(!leftover.exists(), "drop removed {}", leftover.display());
}

#[test]
fn io_into_a_missing_directory_fails_to_spawn_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let kind = Kind::io(&missing);
    let err = format!(
        "{:#}",
        Stressor::spawn_with(child_command(&kind), kind).unwrap_err()
    );
    assert!(
        err.contains("exited with status 1 before it was ready")
            && err.contains("creating the io stressor's file"),
        "{err}"
    );
}

#[test]
fn io_survives_a_full_disk() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "this test mounts a 3 MiB tmpfs to fill it and needs root (euid is {euid}): run it \
         as root, e.g. `sudo -E cargo test -p cargo-panic --test stress`"
    );
    let dir = tempfile::tempdir().unwrap();
    /// Unmounts on drop, whatever happened.
    struct Mount(PathBuf);
    impl Drop for Mount {
        fn drop(&mut self) {
            let ok = Command::new("umount")
                .arg(&self.0)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(&self.0).status();
            }
        }
    }
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "cargo-panic-test"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mounting a tmpfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _mount = Mount(dir.path().to_path_buf());

    let mut s = spawn(Kind::io(dir.path()));
    s.set(8.0 * MIB).unwrap();
    let full = |s: &Stressor| {
        s.messages()
            .iter()
            .filter(|m| m.contains("No space left on device"))
            .count()
    };
    assert!(
        wait_for(Duration::from_secs(5), || (full(&s) > 0).then_some(())).is_some(),
        "no ENOSPC reported; messages: {:?}",
        s.messages()
    );
    // It keeps writing at the rate (over the part of its file it has), and
    // says so once.
    let rate = rate_over(&mut s, Duration::from_millis(200), Duration::from_secs(1));
    eprintln!(
        "io on a full 3 MiB tmpfs: achieved {:.2} MiB/s (wchar)",
        rate / MIB
    );
    assert!(
        rate >= 2.0 * MIB,
        "{:.2} MiB/s written after ENOSPC",
        rate / MIB
    );
    assert_eq!(full(&s), 1, "messages: {:?}", s.messages());
    assert_eq!(s.try_wait(), None);
    s.stop().unwrap();
    assert_eq!(io_files(dir.path()), Vec::<String>::new());
}

#[test]
fn drop_without_stop_ends_the_stressor_through_end_of_input() {
    let mut s = spawn(Kind::Spin);
    s.set(0.5).unwrap();
    let pid = s.pid();
    let t = Instant::now();
    drop(s);
    let took = t.elapsed();
    // The SIGKILL fallback only comes after 2 s.
    assert!(
        took < Duration::from_millis(1500),
        "drop took {took:?}: the stressor did not exit at end of input"
    );
    // Reaped: no zombie, no process.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "{pid} is still there"
    );
}

#[test]
fn the_cargo_panic_binary_serves_on_its_main_thread_with_pdeathsig_sigkill() {
    // `cargo-panic __stress` runs `serve` on its main thread, so the ready
    // line carries the parent-death signal, and spawn checks it.
    let exe = Path::new(env!("CARGO_BIN_EXE_cargo-panic"));
    let mut s = Stressor::spawn(exe, Kind::Spin, |_| Ok(()))
        .unwrap_or_else(|e| panic!("starting `cargo-panic __stress spin`: {e:#}"));
    assert_eq!(s.pdeathsig(), Some(libc::SIGKILL));
    s.set(0.25).unwrap();
    assert_eq!(s.requested(), 0.25);
    s.stop().unwrap();

    // Bad arguments: the binary says what to write, and spawn passes it on.
    let err = Stressor::spawn(exe, Kind::Spin, |cmd| {
        cmd.arg("--fast");
        Ok(())
    })
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("before it was ready") && err.contains("takes no options"),
        "{err}"
    );

    // This test binary runs `serve` in a libtest thread, which cannot see
    // the main thread's parent-death signal: it is not reported.
    let s = spawn(Kind::Spin);
    assert_eq!(s.pdeathsig(), None);
    s.stop().unwrap();
}

#[test]
fn a_stressor_dies_with_the_thread_that_spawned_it() {
    // Linux sends the parent-death signal when the *thread* that forked the
    // child exits: this is why the engine spawns from its main thread. It
    // also shows that spawn sets the signal, and that it is SIGKILL.
    let mut s = thread::spawn(|| spawn(Kind::Spin)).join().unwrap();
    let status = wait_for(Duration::from_secs(5), || s.try_wait());
    assert_eq!(status.and_then(|s| s.signal()), Some(libc::SIGKILL));
    let err = format!("{:#}", s.set(0.5).unwrap_err());
    assert!(err.contains("was killed by signal 9 (SIGKILL)"), "{err}");
    assert!(s.achieved().is_none());
    let err = format!("{:#}", s.stop().unwrap_err());
    assert!(err.contains("SIGKILL"), "{err}");

    // The same child started without spawn's hook outlives the thread.
    let mut child = thread::spawn(|| {
        child_command(&Kind::Spin)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    })
    .join()
    .unwrap();
    sleep(Duration::from_millis(500));
    let alive = child.try_wait().unwrap();
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert_eq!(alive, None, "the child without the hook died: {status}");
    assert!(status.success(), "{status}");
}

#[test]
fn bad_arguments_say_what_to_write() {
    let args = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let err = |v: &[&str]| format!("{:#}", parse_args(&args(v)).unwrap_err());

    let e = err(&["spinn"]);
    assert!(
        e.contains("unknown stressor kind `spinn`")
            && e.contains("write `spin`, `hog` or `io --dir DIR [--block BYTES]`"),
        "{e}"
    );
    let e = err(&["io"]);
    assert!(
        e.contains("needs `--dir DIR`") && e.contains("write `spin`"),
        "{e}"
    );
    let e = err(&["io", "--block", "1MiB"]);
    assert!(e.contains("needs `--dir DIR`"), "{e}");
    for bad in ["12", "lots", "1TiB", "3.5KiB"] {
        let e = err(&["io", "--dir", "/tmp", "--block", bad]);
        assert!(
            e.contains("`--block`") && e.contains("write a size between 4KiB and 64MiB"),
            "{bad}: {e}"
        );
    }
    let e = err(&[]);
    assert!(e.contains("missing stressor kind"), "{e}");
    assert_eq!(
        parse_args(&args(&["io", "--dir", "/tmp", "--block", "64KiB"])).unwrap(),
        Kind::Io {
            dir: "/tmp".into(),
            block: 65536
        }
    );
}
