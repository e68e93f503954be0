//! The monitor on real processes (root: CI runs these for real).

use std::process::Command;

use panic_bpf::{Monitor, Times};

const MS: u64 = 1_000_000;

fn monitor() -> Monitor {
    Monitor::start(4, &Default::default()).unwrap_or_else(|e| {
        panic!("the kernel side cannot load here ({e}); these tests need root on a kernel with BTF")
    })
}

/// `got` within `want` ± `tol` (a fraction).
fn within(what: &str, got: u64, want: u64, tol: f64) {
    let lo = (want as f64 * (1.0 - tol)) as u64;
    let hi = (want as f64 * (1.0 + tol)) as u64;
    assert!(
        (lo..=hi).contains(&got),
        "{what}: {} ms, expected {} ms ±{:.0}%",
        got / MS,
        want / MS,
        tol * 100.0
    );
}

/// Compiles a small C program (gcc is on every machine this builds on).
fn c_program(name: &str, source: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("panic-bpf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("{name}.c"));
    let exe = dir.join(name);
    std::fs::write(&src, source).unwrap();
    let out = Command::new("cc")
        .arg("-O1")
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

const SPIN_SLEEP: &str = r#"
#include <time.h>
static double cpu(void) {
    struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
int main(void) {
    double t0 = cpu();
    while (cpu() - t0 < 0.2) {}
    struct timespec d = {0, 200000000};
    nanosleep(&d, 0);
    return 0;
}
"#;

/// A program that spins 200 ms of CPU time, then sleeps 200 ms.
#[test]
fn spin_then_sleep_splits_into_cpu_and_blocked() {
    let exe = c_program("spin_sleep", SPIN_SLEEP);
    let m = monitor();
    let mut child = m.spawn(&mut Command::new(&exe)).unwrap();
    assert!(child.wait().unwrap().success());
    let r = m.report().unwrap();
    let main: Vec<_> = r.tasks.iter().filter(|t| t.tid == child.id()).collect();
    assert_eq!(
        main.len(),
        1,
        "the target's main thread is reported: {:?}",
        r.tasks
    );
    let t = main[0].times;
    eprintln!("{:?}", main[0]);
    // One-sided: exec and start-up add a little of each.
    within("on-CPU", t.cpu_ns, 215 * MS, 0.08);
    within("blocked", t.blocked_ns, 215 * MS, 0.08);
    assert!(t.io_ns <= t.blocked_ns);
    // Every nanosecond of the watched tasks is in exactly one site or outside.
    let (sites, tasks): (Times, Times) = (r.site_totals(), r.task_totals());
    assert_eq!(
        sites.runq_ns + sites.blocked_ns,
        tasks.runq_ns + tasks.blocked_ns
    );
    assert_eq!(sites.cpu_ns, tasks.cpu_ns);
    drop(m);
}

/// Only the target's tree is watched: an identical process next to it is not.
#[test]
fn an_unwatched_twin_is_not_accounted() {
    let m = monitor();
    let mut twin = Command::new("sleep").arg("0.1").spawn().unwrap();
    let mut child = m.spawn(Command::new("sleep").arg("0.1")).unwrap();
    child.wait().unwrap();
    twin.wait().unwrap();
    let r = m.report().unwrap();
    assert!(r.tasks.iter().any(|t| t.tid == child.id()));
    assert!(r.tasks.iter().all(|t| t.tid != twin.id()), "{:?}", r.tasks);
}

/// Children and threads of the target are watched too.
#[test]
fn the_process_tree_is_watched() {
    let m = monitor();
    let mut child = m
        .spawn(Command::new("sh").args(["-c", "sleep 0.05; sleep 0.05"]))
        .unwrap();
    child.wait().unwrap();
    let r = m.report().unwrap();
    let sleeps = r.tasks.iter().filter(|t| t.comm == "sleep").count();
    assert_eq!(
        sleeps, 2,
        "both sleeps are the target's children: {:?}",
        r.tasks
    );
}

/// Dropping the monitor removes its pins and run directory.
#[test]
fn dropping_the_monitor_removes_its_pins() {
    let m = monitor();
    let dir = m.run_dir().to_path_buf();
    assert!(m.threads_pin().exists());
    drop(m);
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

/// With budgets the tick program loads and attaches on every CPU, the budgets
/// are pinned next to the thread table, and both pins go with the monitor.
#[test]
fn budgets_are_pinned_and_removed_with_the_monitor() {
    let budget = panic_bpf::BudgetSpec {
        site: 1,
        hist: 0,
        budget_ns: 50 * MS,
        signal: Some(9),
    };
    let m = Monitor::start(
        4,
        &panic_bpf::Options {
            budgets: &[budget],
            ..Default::default()
        },
    )
    .unwrap();
    let dir = m.run_dir().to_path_buf();
    let pin = dir.join(panic_bpf::BUDGETS_PIN);
    assert!(pin.exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&pin), 0o600);
    assert_eq!(mode(&m.threads_pin()), 0o600);
    assert_eq!(mode(&dir), 0o700);
    drop(m);
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

/// The price map is pinned 0600 and holds what set_prices wrote, under an
/// even sequence number; a non-root process cannot open it.
#[test]
fn prices_are_published_and_only_root_opens_them() {
    let m = monitor();
    let pin = m.run_dir().join(panic_bpf::PRICES_PIN);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&pin).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(m.prices(), vec![0.0; 5]);
    m.set_prices(&[1.5, 0.25, 0.0, 0.0, 3.0]);
    assert_eq!(m.prices(), vec![1.5, 0.25, 0.0, 0.0, 3.0]);
    m.set_prices(&[-1.0, 0.0000004, 0.0, 0.0, 0.0]);
    assert_eq!(m.prices()[0], 0.0, "prices are never negative");
    assert_eq!(m.prices()[1], 0.0, "fixed point: millionths");
    // An unprivileged process cannot open the pin (the run directory is 0700).
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(&pin)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied"), "{err}");
}

const SYSCALLS: &str = r#"
#include <unistd.h>
int main(void) {
    for (int i = 0; i < 1000; i++)
        getppid();
    return 0;
}
"#;

/// The syscall path counts every call of the watched tree by number.
#[test]
fn the_syscall_path_counts_calls_by_name() {
    let exe = c_program("syscalls", SYSCALLS);
    let m = Monitor::start(
        4,
        &panic_bpf::Options {
            syscalls: true,
            syscall_sample: None,
            ..Default::default()
        },
    )
    .unwrap();
    let mut child = m.spawn(&mut Command::new(&exe)).unwrap();
    assert!(child.wait().unwrap().success());
    let r = m.report().unwrap();
    let getppid: Vec<_> = r.syscalls.iter().filter(|s| s.name == "getppid").collect();
    assert_eq!(getppid.len(), 1, "{:?}", r.syscalls);
    assert_eq!(getppid[0].count, 1000);
    assert!(getppid[0].ns > 0);
    assert!(
        r.syscalls.iter().any(|s| s.name == "execve"),
        "{:?}",
        r.syscalls
    );
    // Off by default: nothing counted.
    let m = monitor();
    let mut child = m.spawn(&mut Command::new(&exe)).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(m.report().unwrap().syscalls.is_empty());
}
