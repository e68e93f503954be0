//! The run's cgroups for real (`cargo_panic_core::cgroup`): these tests create cgroups,
//! put coreutils processes in them and check what the kernel does. They need root and
//! a mounted cgroup filesystem; without either every test fails saying how to fix it
//! (CI runs as root). Each test uses its own run id, so they may run in parallel, and
//! each cleans up through a guard even when it fails.
//!
//! Time bounds: waits are polled with generous deadlines (10 s for a process to
//! exit); the only rate assertion is the CPU quota test's (0.2 cores must measure
//! above 0 and below 0.5 cores over about a second).

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cargo_panic_core::cgroup::{
    self, Controller, Group, Mounts, RunCgroup, Version, new_run_id, parse_cpu_list,
};

const MIB: u64 = 1 << 20;

/// Fails (never skips) when the tests cannot run here, saying what to do.
fn require_cgroups() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "the cgroup tests create cgroups for real and need root (euid is {euid}): run them \
         as root, e.g. `sudo -E cargo test -p cargo-panic --test cgroup`"
    );
    let mounts = Mounts::current().expect("reading /proc/self/mountinfo");
    assert!(
        !mounts.is_empty(),
        "the cgroup tests need a mounted cgroup filesystem and /proc/self/mountinfo has \
         none: mount one, e.g. `mount -t cgroup2 none /sys/fs/cgroup`"
    );
}

/// A run under test: destroys its cgroups and kills and reaps its children on drop,
/// whatever happened.
struct Run {
    cg: Option<RunCgroup>,
    children: Vec<Child>,
}

impl Run {
    fn new(want: &[Controller]) -> Run {
        Run::with(want, None).unwrap_or_else(|e| panic!("creating the run's cgroups: {e:#}"))
    }

    fn with(want: &[Controller], version: Option<Version>) -> anyhow::Result<Run> {
        require_cgroups();
        let cg = RunCgroup::create_with(&new_run_id(), want, version)?;
        Ok(Run {
            cg: Some(cg),
            children: Vec::new(),
        })
    }

    fn cg(&self) -> &RunCgroup {
        self.cg.as_ref().expect("run destroyed")
    }

    /// Spawns `cmd` into group `g` (joined before exec); returns its index.
    fn spawn(&mut self, g: Group, mut cmd: Command) -> usize {
        self.cg()
            .join_on_spawn(g, &mut cmd)
            .expect("installing the join hook");
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?} into the {g:?} group: {e}"));
        self.children.push(child);
        self.children.len() - 1
    }

    fn pid(&self, i: usize) -> u32 {
        self.children[i].id()
    }

    fn wait(&mut self, i: usize) -> ExitStatus {
        wait_bounded(&mut self.children[i], Duration::from_secs(10))
    }

    fn destroy(&mut self) {
        let cg = self.cg.take().expect("run destroyed twice");
        let dirs: Vec<PathBuf> = cg.run_dirs();
        cg.destroy()
            .unwrap_or_else(|e| panic!("destroying the run: {e:#}"));
        for d in dirs {
            assert!(!d.exists(), "{} is still there after destroy", d.display());
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(cg) = self.cg.take() {
            let _ = cg.destroy();
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("waiting for a child") {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "pid {} did not exit within {limit:?}",
            child.id()
        );
        sleep(Duration::from_millis(10));
    }
}

fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn is_sigkill(st: ExitStatus) -> bool {
    st.signal() == Some(libc::SIGKILL)
}

/// The CPU time the group has used, ns.
fn cpu_ns(cg: &RunCgroup, g: Group) -> u64 {
    cg.stats(g).cpu_usage_ns.expect("the run reports CPU usage")
}

/// The versions whose freezer can be used here (at least one, or the test fails).
fn freezer_runs(extra: &[Controller]) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut why = Vec::new();
    for v in [Version::V2, Version::V1] {
        // v2 counts CPU time without a controller; v1 needs cpuacct (via Cpu).
        let mut want = vec![Controller::Freezer];
        want.extend_from_slice(extra);
        if v == Version::V1 {
            want.push(Controller::Cpu);
        }
        match Run::with(&want, Some(v)) {
            Ok(r) => runs.push(r),
            Err(e) => why.push(format!("{v:?}: {e:#}")),
        }
    }
    assert!(
        !runs.is_empty(),
        "no cgroup version offers the freezer here: {}",
        why.join("; ")
    );
    for w in &why {
        eprintln!("note: not tested on this machine: {w}");
    }
    runs
}

#[test]
fn join_before_exec_puts_the_process_in_and_destroy_removes_everything() {
    let mut run = Run::new(&Controller::ALL);
    let cg = run.cg();
    let version = cg.version();
    let run_id = cg.run_id().to_string();
    let target_dirs = cg.dirs(Group::Target);
    assert!(!target_dirs.is_empty());
    for d in &target_dirs {
        assert!(d.is_dir(), "{} missing", d.display());
    }
    let i = run.spawn(Group::Target, cmd("sleep", &["10"]));
    let pid = run.pid(i);
    assert_eq!(run.cg().procs(Group::Target), vec![pid]);
    assert_eq!(run.cg().procs(Group::Stress), Vec::<u32>::new());

    // /proc/<pid>/cgroup names the target group in every hierarchy the run uses.
    let member = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let want_suffix = format!("/cargo-panic/{run_id}/target");
    let lines = member.lines().filter(|l| l.ends_with(&want_suffix)).count();
    assert_eq!(
        lines,
        target_dirs.len(),
        "{version:?}: /proc/{pid}/cgroup should name {want_suffix} once per hierarchy \
         ({target_dirs:?}):\n{member}"
    );

    // add: a process this run started (not joined at spawn) goes in ...
    let plain = cmd("sleep", &["10"]).spawn().unwrap();
    let plain_pid = plain.id();
    run.children.push(plain); // killed and reaped by the guard
    let res = run.cg().add(Group::Stress, plain_pid);
    let in_stress = run.cg().procs(Group::Stress);
    // ... but never the test process itself or a process it did not start.
    let me = run.cg().add(Group::Stress, std::process::id());
    let init = run.cg().add(Group::Stress, 1);
    res.unwrap_or_else(|e| panic!("add: {e:#}"));
    assert_eq!(in_stress, vec![plain_pid]);
    let me = format!("{:#}", me.unwrap_err());
    assert!(me.contains("the calling process itself"), "{me}");
    let init = format!("{:#}", init.unwrap_err());
    assert!(init.contains("not a process this run started"), "{init}");

    run.destroy();
    for d in &target_dirs {
        assert!(!d.exists(), "{} is still there", d.display());
    }
    assert!(is_sigkill(run.wait(i)), "the target was not SIGKILLed");
    assert!(
        is_sigkill(run.wait(1)),
        "the added process was not SIGKILLed"
    );
}

#[test]
fn drop_cleans_up_too() {
    let mut run = Run::new(&[Controller::Pids]);
    let i = run.spawn(Group::Stress, cmd("sleep", &["10"]));
    let dirs = run.cg().run_dirs();
    drop(run.cg.take());
    for d in &dirs {
        assert!(!d.exists(), "{} is still there after drop", d.display());
    }
    assert!(is_sigkill(run.wait(i)));
}

#[test]
fn memory_limit_gives_a_real_oom_kill() {
    let mut run = Run::new(&[Controller::Memory]);
    run.cg()
        .set_memory_max(Group::Target, Some(16 * MIB))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let i = run.spawn(
        Group::Target,
        cmd("dd", &["if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]),
    );
    let st = run.wait(i);
    assert!(
        is_sigkill(st),
        "dd should be OOM-killed (SIGKILL), got {st:?}"
    );
    let stats = run.cg().stats(Group::Target);
    assert!(
        stats.oom_kills.is_some_and(|n| n >= 1),
        "no OOM kill counted: {stats:?}"
    );
    if let Some(peak) = stats.memory_peak {
        assert!(
            peak <= 16 * MIB,
            "peak {peak} over the 16 MiB limit: {stats:?}"
        );
    }
    // The other group is not affected.
    assert_eq!(run.cg().stats(Group::Stress).oom_kills, Some(0));
    // Lifting the limit: the same dd now completes.
    run.cg().set_memory_max(Group::Target, None).unwrap();
    let j = run.spawn(
        Group::Target,
        cmd("dd", &["if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]),
    );
    let st = run.wait(j);
    assert!(st.success(), "dd without a limit: {st:?}");
    run.destroy();
}

#[test]
fn memory_limit_below_usage_is_refused_on_v1_and_oom_kills_on_v2() {
    let mut run = Run::new(&[Controller::Memory]);
    // sh holds 32 MiB of anonymous memory (no swap can take it on v1: the limit covers
    // swap) in a variable.
    let i = run.spawn(
        Group::Target,
        cmd(
            "sh",
            &[
                "-c",
                r#"x=$(head -c 33554432 /dev/zero | tr '\0' a); sleep 30; echo ${#x}"#,
            ],
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while run.cg().stats(Group::Target).memory_current.unwrap_or(0) < 32 * MIB {
        assert!(
            Instant::now() < deadline,
            "sh did not reach 32 MiB: {:?}",
            run.cg().stats(Group::Target)
        );
        sleep(Duration::from_millis(10));
    }
    let res = run.cg().set_memory_max(Group::Target, Some(8 * MIB));
    match run.cg().version() {
        Version::V1 => {
            let msg = format!(
                "{:#}",
                res.expect_err("v1 should refuse a limit below usage")
            );
            assert!(
                msg.contains("EBUSY") && msg.contains("could not reclaim"),
                "{msg}"
            );
            assert!(
                run.children[i].try_wait().unwrap().is_none(),
                "the process should live on"
            );
            let dir = &run.cg().dirs(Group::Target)[0];
            let limit: u64 = fs::read_to_string(dir.join("memory.limit_in_bytes"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert!(limit > 8 * MIB, "the old limit should stay, got {limit}");
            // A limit above usage is fine.
            run.cg()
                .set_memory_max(Group::Target, Some(256 * MIB))
                .unwrap_or_else(|e| panic!("{e:#}"));
        }
        Version::V2 => {
            res.unwrap_or_else(|e| panic!("v2 takes any limit: {e:#}"));
            assert!(is_sigkill(run.wait(i)), "v2 should OOM-kill the process");
            assert!(run.cg().stats(Group::Target).oom_kills.unwrap() >= 1);
        }
    }
    run.destroy();
}

#[test]
fn cpu_quota_limits_a_spinner() {
    let mut run = Run::new(&[Controller::Cpu]);
    run.cg()
        .set_cpu_max(Group::Target, Some(0.2))
        .unwrap_or_else(|e| panic!("{e:#}"));
    run.spawn(Group::Target, cmd("yes", &[]));
    sleep(Duration::from_millis(100));
    let (t0, u0) = (Instant::now(), cpu_ns(run.cg(), Group::Target));
    sleep(Duration::from_secs(1));
    let (t1, u1) = (Instant::now(), cpu_ns(run.cg(), Group::Target));
    let cores = (u1 - u0) as f64 / (t1 - t0).as_nanos() as f64;
    eprintln!("yes at a 0.2-core quota used {cores:.3} cores");
    assert!(cores > 0.0, "the spinner got no CPU at all");
    assert!(
        cores < 0.5,
        "the 0.2-core quota let {cores:.3} cores through"
    );
    // Throttling is reported (not asserted > 0: on a loaded machine the spinner may
    // never get as much as its quota).
    let stats = run.cg().stats(Group::Target);
    assert!(stats.cpu_throttled_ns.is_some(), "{stats:?}");
    eprintln!(
        "throttled for {} ms",
        stats.cpu_throttled_ns.unwrap() / 1_000_000
    );

    // Invalid values are refused before the kernel sees them; None lifts the limit.
    let e = format!(
        "{:#}",
        run.cg().set_cpu_max(Group::Target, Some(-1.0)).unwrap_err()
    );
    assert!(e.contains("positive number of cores"), "{e}");
    run.cg().set_cpu_max(Group::Target, None).unwrap();
    let dir = &run.cg().dirs(Group::Target)[0];
    match run.cg().version() {
        Version::V1 => assert_eq!(
            fs::read_to_string(dir.join("cpu.cfs_quota_us"))
                .unwrap()
                .trim(),
            "-1"
        ),
        Version::V2 => assert_eq!(
            fs::read_to_string(dir.join("cpu.max")).unwrap().trim(),
            "max 100000"
        ),
    }
    // A controller the run was made without is an error that says what to do.
    let e = format!(
        "{:#}",
        run.cg().set_pids_max(Group::Target, Some(5)).unwrap_err()
    );
    assert!(
        e.contains("without the pids controller") && e.contains("Controller::Pids"),
        "{e}"
    );
    run.destroy();
}

#[test]
fn freeze_stops_cpu_time_and_thaw_resumes() {
    for mut run in freezer_runs(&[]) {
        let version = run.cg().version();
        let i = run.spawn(Group::Target, cmd("yes", &[]));
        sleep(Duration::from_millis(100));
        run.cg()
            .freeze(Group::Target, true)
            .unwrap_or_else(|e| panic!("{version:?} freeze: {e:#}"));
        assert_eq!(
            run.cg().stats(Group::Target).frozen,
            Some(true),
            "{version:?}"
        );
        let u0 = cpu_ns(run.cg(), Group::Target);
        sleep(Duration::from_millis(500));
        let u1 = cpu_ns(run.cg(), Group::Target);
        eprintln!(
            "{version:?}: frozen for 0.5 s, the spinner gained {} ns",
            u1 - u0
        );
        assert!(
            u1 - u0 < 5_000_000,
            "{version:?}: a frozen spinner gained {} ns of CPU in 0.5 s",
            u1 - u0
        );
        assert!(
            run.children[i].try_wait().unwrap().is_none(),
            "frozen, not dead"
        );
        assert_eq!(
            run.cg().stats(Group::Stress).frozen,
            Some(false),
            "{version:?}"
        );

        run.cg()
            .freeze(Group::Target, false)
            .unwrap_or_else(|e| panic!("{version:?} thaw: {e:#}"));
        assert_eq!(
            run.cg().stats(Group::Target).frozen,
            Some(false),
            "{version:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while cpu_ns(run.cg(), Group::Target) <= u1 {
            assert!(Instant::now() < deadline, "{version:?}: no CPU after thaw");
            sleep(Duration::from_millis(10));
        }
        // Destroying a frozen group works too.
        run.cg().freeze(Group::Target, true).unwrap();
        run.destroy();
        assert!(is_sigkill(run.wait(i)), "{version:?}");
    }
}

#[test]
fn pids_limit_stops_forks() {
    let mut run = Run::new(&[Controller::Pids]);
    run.cg()
        .set_pids_max(Group::Target, Some(3))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let stderr = tempfile::NamedTempFile::new().unwrap();
    let mut c = cmd("sh", &["-c", "for i in 1 2 3 4 5; do sleep 5 & done; wait"]);
    c.stderr(stderr.reopen().unwrap());
    let i = run.spawn(Group::Target, c);
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while run.children[i].try_wait().unwrap().is_none() {
        most = most.max(run.cg().stats(Group::Target).pids_current.unwrap());
        assert!(Instant::now() < deadline, "sh did not finish");
        sleep(Duration::from_millis(2));
    }
    let stats = run.cg().stats(Group::Target);
    most = most.max(stats.pids_current.unwrap());
    assert!(most <= 3, "pids.current reached {most} over a limit of 3");
    assert!(
        stats.pids_max_events.is_some_and(|n| n >= 1),
        "no refused fork counted: {stats:?}"
    );
    let err = fs::read_to_string(stderr.path()).unwrap();
    assert!(err.to_lowercase().contains("fork"), "sh's stderr: {err:?}");
    // The sleeps that did start are still in the group (orphaned); destroy kills them.
    let left = run.cg().procs(Group::Target);
    assert!(!left.is_empty() && left.len() <= 2, "{left:?}");
    let run_id = run.cg().run_id().to_string();
    run.destroy();
    for p in left {
        // Gone, or the pid already belongs to an unrelated process.
        let still =
            fs::read_to_string(format!("/proc/{p}/cgroup")).is_ok_and(|c| c.contains(&run_id));
        assert!(!still, "pid {p} of the run survived destroy");
    }
}

#[test]
fn cpuset_pins_the_process() {
    let mut run = Run::new(&[Controller::Cpuset]);
    run.cg()
        .set_cpus(Group::Target, Some(&[0]))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let i = run.spawn(Group::Target, cmd("sleep", &["10"]));
    let allowed = |pid: u32| -> String {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_string()
    };
    let pid = run.pid(i);
    assert_eq!(allowed(pid), "0");

    let all =
        parse_cpu_list(&fs::read_to_string("/sys/devices/system/cpu/online").unwrap()).unwrap();
    let run_cpus =
        run.cg().dirs(Group::Target)[0]
            .parent()
            .unwrap()
            .join(match run.cg().version() {
                Version::V1 => "cpuset.cpus",
                Version::V2 => "cpuset.cpus.effective",
            });
    let run_cpus = parse_cpu_list(&fs::read_to_string(run_cpus).unwrap()).unwrap();
    if run_cpus.len() >= 2 {
        // Re-pinning moves the running process.
        let other = run_cpus[1];
        run.cg().set_cpus(Group::Target, Some(&[other])).unwrap();
        assert_eq!(allowed(pid), other.to_string());
    } else {
        eprintln!("note: the run's cpuset has one CPU ({run_cpus:?}), re-pinning not tested");
    }
    run.cg().set_cpus(Group::Target, None).unwrap();
    assert_eq!(parse_cpu_list(&allowed(pid)).unwrap(), run_cpus);

    let bad = all.iter().max().unwrap() + 1000;
    let e = format!(
        "{:#}",
        run.cg().set_cpus(Group::Target, Some(&[bad])).unwrap_err()
    );
    assert!(e.contains("not all available"), "{e}");
    let e = format!(
        "{:#}",
        run.cg().set_cpus(Group::Target, Some(&[])).unwrap_err()
    );
    assert!(e.contains("empty CPU list"), "{e}");
    run.destroy();
}

/// Leftovers of a stale run made by the sweep test: removed on drop if the sweep did
/// not.
struct Leftovers {
    dirs: Vec<PathBuf>,
    children: Vec<Child>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in &self.dirs {
            for g in ["target", "stress"] {
                let _ = fs::remove_dir(d.join(g));
            }
            let _ = fs::remove_dir(d);
        }
    }
}

#[test]
fn sweep_stale_removes_dead_creators_runs_only() {
    require_cgroups();
    let mut versions: Vec<(Vec<Controller>, Option<Version>)> = vec![(
        vec![Controller::Memory, Controller::Pids, Controller::Freezer],
        None,
    )];
    if Run::with(&[Controller::Freezer], Some(Version::V2)).is_ok() {
        versions.push((vec![Controller::Freezer], Some(Version::V2)));
    }
    for (want, version) in versions {
        // A "creator" that will die: a process of ours, named in the run id.
        let mut left = Leftovers {
            dirs: Vec::new(),
            children: Vec::new(),
        };
        let mut creator = cmd("sleep", &["30"]).spawn().unwrap();
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let stale_id = format!("{}-{stamp}", creator.id());
        let cg =
            RunCgroup::create_with(&stale_id, &want, version).unwrap_or_else(|e| panic!("{e:#}"));
        let v = cg.version();
        left.dirs = cg.run_dirs();
        let mut victim = cmd("sleep", &["30"]);
        cg.join_on_spawn(Group::Target, &mut victim).unwrap();
        left.children.push(victim.spawn().unwrap());
        // The creator "crashes": its cgroups stay behind.
        std::mem::forget(cg);
        creator.kill().unwrap();
        creator.wait().unwrap();

        // A live run (this process's) must survive the sweep.
        let mut live = Run::new(&want);
        let live_i = live.spawn(Group::Stress, cmd("sleep", &["30"]));

        let sweep = cgroup::sweep_stale_report();
        for (id, why) in &sweep.failed {
            assert_ne!(id, &stale_id, "{v:?}: sweeping {id} failed: {why}");
        }
        for d in &left.dirs {
            assert!(
                !d.exists(),
                "{v:?}: {} is still there: {sweep:?}",
                d.display()
            );
            if !sweep.removed.contains(d) {
                // Another process's sweep (a parallel test run) got there first.
                eprintln!("note: {} was swept by someone else", d.display());
            }
        }
        let st = wait_bounded(&mut left.children[0], Duration::from_secs(10));
        assert!(
            is_sigkill(st),
            "{v:?}: the stale run's process was not killed: {st:?}"
        );
        for d in live.cg().run_dirs() {
            assert!(d.exists(), "{v:?}: the live run {} was swept", d.display());
            assert!(!sweep.removed.contains(&d));
        }
        assert_eq!(live.cg().procs(Group::Stress), vec![live.pid(live_i)]);
        live.destroy();
    }
}

#[test]
fn bad_run_ids_are_refused() {
    require_cgroups();
    for bad in ["", "x", "12", "../../etc", "1-2/3"] {
        let e = format!(
            "{:#}",
            RunCgroup::create(bad, &[Controller::Pids]).unwrap_err()
        );
        assert!(
            e.contains("invalid run id") && e.contains("new_run_id"),
            "{bad}: {e}"
        );
    }
    // The pid of a process that no longer exists.
    let mut gone = cmd("true", &[]).spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let e = format!(
        "{:#}",
        RunCgroup::create(&format!("{gone_pid}-1"), &[Controller::Pids]).unwrap_err()
    );
    assert!(e.contains("does not exist"), "{e}");
    // A stamp from before the process started.
    let e = format!(
        "{:#}",
        RunCgroup::create(
            &format!("{}-1000000000000000000", std::process::id()),
            &[Controller::Pids]
        )
        .unwrap_err()
    );
    assert!(e.contains("started after"), "{e}");
}
