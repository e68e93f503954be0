//! The run's cgroups: one for the target program, one for the stressors, on cgroup v1
//! or cgroup v2, with the limits the attack engine drives during a run.
//!
//! # Layout
//!
//! Every hierarchy a run uses gets the same three directories:
//!
//! ```text
//! <hierarchy root>/cargo-panic/                 shared by all runs; no processes, no limits
//! <hierarchy root>/cargo-panic/<run id>/        one per run ("<pid>-<nanos>", see new_run_id)
//! <hierarchy root>/cargo-panic/<run id>/target  the program under attack
//! <hierarchy root>/cargo-panic/<run id>/stress  the stressor processes
//! ```
//!
//! On cgroup v2 there is one hierarchy (the cgroup2 mount, e.g. `/sys/fs/cgroup`). On
//! cgroup v1 there is one hierarchy per mounted controller group, e.g.
//! `/sys/fs/cgroup/memory`, `/sys/fs/cgroup/cpu` (or `/sys/fs/cgroup/cpu,cpuacct` when
//! co-mounted); a run uses only the hierarchies of the controllers it asked for, and a
//! process of the run is a member of its group in each of them. CPU-time accounting
//! ([`Controller::CpuUsage`]) never brings a cpu group: that would take real-time
//! scheduling away from the program under RT group scheduling.
//!
//! # Which version
//!
//! Mounts come from `/proc/self/mountinfo`. cgroup v2 is used when a cgroup2 mount's
//! root offers every wanted controller in `cgroup.controllers` (the freezer is built
//! into v2 and needs none); otherwise each wanted controller must have a v1 hierarchy.
//! A run is entirely one version; [`RunCgroup::create_with`] can insist on one.
//!
//! # Invariants
//!
//! - Only processes this run started ever go in: [`RunCgroup::join_before_exec`] moves
//!   the child of a spawn before it execs, and [`RunCgroup::add`] refuses any process
//!   that is not a descendant of the calling process (and the calling process itself,
//!   which destroy would otherwise kill).
//! - Everything is removed: [`RunCgroup::destroy`] (and `Drop`, best effort) thaws the
//!   groups, SIGKILLs every process in them, waits until they are empty (bounded) and
//!   removes the leaves and the run directory in every hierarchy. [`sweep_stale`]
//!   does the same for the run directories of a creator that no longer exists (a
//!   crashed or SIGKILLed `cargo panic`). The shared `cargo-panic/` parent stays: it is
//!   empty scaffolding that concurrent runs share, and removing it would race with a
//!   run that is being created.
//! - Processes are only ever signalled through a pidfd opened while the process was
//!   listed in the run's `cgroup.procs` and checked again after opening, so a recycled
//!   pid is never signalled.
//!
//! # What differs between v1 and v2
//!
//! | | v1 | v2 |
//! |---|---|---|
//! | CPU quota | `cpu.cfs_period_us` + `cpu.cfs_quota_us` (`-1`) | `cpu.max` (`max 100000`) |
//! | CPU usage | `cpuacct.usage` (needs the cpuacct hierarchy) | `cpu.stat` `usage_usec` (always there) |
//! | memory limit | `memory.limit_in_bytes` (+ `memory.memsw.limit_in_bytes`) | `memory.max` (+ `memory.swap.max`) |
//! | memory usage / peak | `memory.usage_in_bytes` / `memory.max_usage_in_bytes` | `memory.current` / `memory.peak` |
//! | OOM kills | `memory.oom_control` `oom_kill` | `memory.events` `oom_kill` |
//! | cpuset | `cpuset.cpus` and `cpuset.mems` must be set at every level before a task joins (copied from the parent) | empty means "inherit" |
//! | freezer | own hierarchy, `freezer.state` (`FREEZING` -> `FROZEN`) | built in: `cgroup.freeze`, `cgroup.events` `frozen` |
//! | controllers | one hierarchy each | enabled level by level in `cgroup.subtree_control` |
//! | kill all | freeze, SIGKILL each listed process, thaw | `cgroup.kill` |
//!
//! A memory limit covers swap as well (v1 `memsw`, v2 `memory.swap.max = 0`): a group
//! over its limit is OOM-killed instead of thrashing swap. Lowering the limit below what
//! the group uses differs: v2 reclaims and then OOM-kills, so the write always
//! succeeds; v1 reclaims and, when it cannot free enough (anonymous memory without
//! swap), refuses the write with EBUSY. [`RunCgroup::set_memory_max`] retries a few
//! times (the target may free memory meanwhile) and then fails saying so, leaving the
//! previous limit in place.
//!
//! v2's no-internal-process rule holds because processes only ever go into the leaves.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};

/// The directory under each hierarchy's root that holds the run directories.
pub const PARENT_DIR: &str = "cargo-panic";
/// The CPU bandwidth period (100 ms).
pub const CPU_PERIOD_US: u64 = 100_000;
/// How long destroy and sweep wait for the killed processes to leave.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long freeze and thaw wait for the kernel to report the new state.
pub const FREEZE_TIMEOUT: Duration = Duration::from_secs(2);

/// The cgroup version a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    V1,
    V2,
}

/// The two leaf groups of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// The program under attack.
    Target,
    /// The stressor processes.
    Stress,
}

impl Group {
    pub const ALL: [Group; 2] = [Group::Target, Group::Stress];

    /// The leaf directory's name.
    pub fn dir_name(self) -> &'static str {
        match self {
            Group::Target => "target",
            Group::Stress => "stress",
        }
    }
}

/// A controller a run can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Controller {
    /// CPU quotas. A new group of the cpu controller has no real-time budget
    /// under RT group scheduling (v1 `cpu.rt_runtime_us` is 0), so a
    /// `SCHED_FIFO`/`SCHED_RR` thread cannot run in it: only a run that sets
    /// a quota asks for it.
    Cpu,
    /// CPU time accounting, for measurements: v2's `cpu.stat` (always there,
    /// nothing to enable); v1's cpuacct hierarchy, unless it is mounted
    /// together with cpu and [`Controller::Cpu`] is not asked for (joining it
    /// would join a cpu group too). Never required: without it CPU time
    /// comes from /proc.
    CpuUsage,
    Memory,
    Pids,
    Cpuset,
    Freezer,
    /// Pressure stall information (`cpu.pressure`, `memory.pressure`,
    /// `io.pressure`): built into every cgroup v2 group (not a controller to
    /// enable). On cgroup v1 the run's groups get a twin in the hybrid
    /// layout's cgroup2 mount (e.g. `/sys/fs/cgroup/unified`), which only
    /// reports pressure.
    Pressure,
}

impl Controller {
    pub const ALL: [Controller; 7] = [
        Controller::Cpu,
        Controller::CpuUsage,
        Controller::Memory,
        Controller::Pids,
        Controller::Cpuset,
        Controller::Freezer,
        Controller::Pressure,
    ];

    /// The kernel's name (v1 subsystem, v2 controller).
    pub fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::CpuUsage => "cpuacct",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpuset => "cpuset",
            Controller::Freezer => "freezer",
            Controller::Pressure => "pressure",
        }
    }

    /// What the attack engine needs the controller for (for error messages).
    pub fn feature(self) -> &'static str {
        match self {
            Controller::Cpu => "CPU quotas (cpu faults)",
            Controller::CpuUsage => "CPU time accounting (measurements)",
            Controller::Memory => "memory limits and OOM accounting (memory faults)",
            Controller::Pids => "process-count limits (fork faults)",
            Controller::Cpuset => "CPU pinning (cpuset faults)",
            Controller::Freezer => "freezing and thawing (pause faults)",
            Controller::Pressure => "pressure stall information (controller usage `:pressure`)",
        }
    }

    /// The v2 controller to enable in `cgroup.subtree_control`; the v2 freezer is
    /// built in.
    fn v2_name(self) -> Option<&'static str> {
        match self {
            Controller::Freezer | Controller::Pressure | Controller::CpuUsage => None,
            c => Some(c.name()),
        }
    }
}

// ---------------------------------------------------------------------------------
// Mounts and the plan (pure)
// ---------------------------------------------------------------------------------

/// A cgroup v1 hierarchy as mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Mount {
    pub path: PathBuf,
    /// The subsystems bound to it (`cpu`, `cpuacct`, ...); named hierarchies
    /// (`name=systemd`) have none.
    pub subsystems: Vec<String>,
}

/// The cgroup filesystems of a mount table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    /// The cgroup2 mount (the one at /sys/fs/cgroup when there are several).
    pub v2: Option<PathBuf>,
    /// One per v1 hierarchy that has a subsystem.
    pub v1: Vec<V1Mount>,
}

impl Mounts {
    /// Reads /proc/self/mountinfo.
    pub fn current() -> Result<Mounts> {
        let text = fs::read_to_string("/proc/self/mountinfo")
            .context("failed to read /proc/self/mountinfo (is /proc mounted?)")?;
        Ok(parse_mountinfo(&text))
    }

    /// The v1 hierarchy a subsystem is bound to.
    pub fn v1_for(&self, subsystem: &str) -> Option<&V1Mount> {
        self.v1
            .iter()
            .find(|m| m.subsystems.iter().any(|s| s == subsystem))
    }

    pub fn is_empty(&self) -> bool {
        self.v2.is_none() && self.v1.is_empty()
    }
}

/// The v1 subsystems the kernel knows (mount options that are not one of these are
/// mount flags such as `rw`, `name=systemd`, `clone_children`).
const V1_SUBSYSTEMS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "io",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// Parses a mountinfo text (proc(5)): the cgroup2 mount and the v1 hierarchies with
/// their subsystems (from the super options). When a hierarchy is mounted more than
/// once, the mount of its root (`/`) wins, then the first.
pub fn parse_mountinfo(text: &str) -> Mounts {
    struct Seen {
        path: PathBuf,
        root_is_slash: bool,
    }
    let mut v2: Option<Seen> = None;
    let mut v1: Vec<(V1Mount, bool)> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if sep < 5 || fields.len() < sep + 3 {
            continue;
        }
        let root_is_slash = fields[3] == "/";
        let path = PathBuf::from(unescape_mount_field(fields[4]));
        let fstype = fields[sep + 1];
        let super_opts = fields[sep + 3];
        match fstype {
            "cgroup2" => {
                let better = match &v2 {
                    None => true,
                    Some(old) => {
                        let at_default = |p: &Path| p == Path::new("/sys/fs/cgroup");
                        (!at_default(&old.path) && at_default(&path))
                            || (!old.root_is_slash && root_is_slash && !at_default(&old.path))
                    }
                };
                if better {
                    v2 = Some(Seen {
                        path,
                        root_is_slash,
                    });
                }
            }
            "cgroup" => {
                let subsystems: Vec<String> = super_opts
                    .split(',')
                    .filter(|o| V1_SUBSYSTEMS.contains(o))
                    .map(str::to_string)
                    .collect();
                if subsystems.is_empty() {
                    continue;
                }
                match v1.iter_mut().find(|(m, _)| m.subsystems == subsystems) {
                    Some((old, old_root)) => {
                        if !*old_root && root_is_slash {
                            old.path = path;
                            *old_root = true;
                        }
                    }
                    None => v1.push((V1Mount { path, subsystems }, root_is_slash)),
                }
            }
            _ => {}
        }
    }
    Mounts {
        v2: v2.map(|s| s.path),
        v1: v1.into_iter().map(|(m, _)| m).collect(),
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_mount_field(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One hierarchy a run will use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedHierarchy {
    /// The hierarchy's mount point.
    pub mount: PathBuf,
    /// v1: the subsystems bound to it; v2: the controllers to enable for the run.
    pub controllers: Vec<String>,
}

/// Where a run's groups go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub version: Version,
    pub hierarchies: Vec<PlannedHierarchy>,
}

/// Chooses the version and hierarchies for `want`: v2 when `mounts.v2` exists and its
/// root's `cgroup.controllers` (`v2_offered`) has every wanted controller, otherwise v1
/// with the hierarchy of each wanted controller (`cpu` also brings `cpuacct` when it
/// is mounted, for CPU usage). `force` insists on one version.
pub fn plan(
    mounts: &Mounts,
    v2_offered: Option<&[String]>,
    want: &[Controller],
    force: Option<Version>,
) -> Result<Plan> {
    if mounts.is_empty() {
        bail!(
            "no cgroup filesystem is mounted (nothing of type cgroup or cgroup2 in \
             /proc/self/mountinfo): mount one, e.g. `mount -t cgroup2 none /sys/fs/cgroup`"
        );
    }
    let mut want: Vec<Controller> = want.to_vec();
    want.sort();
    want.dedup();

    let v2_missing: Vec<Controller> = match (&mounts.v2, v2_offered) {
        (Some(_), Some(offered)) => want
            .iter()
            .copied()
            .filter(|c| c.v2_name().is_some_and(|n| !offered.iter().any(|o| o == n)))
            .collect(),
        _ => want.clone(),
    };
    let v2_ok = mounts.v2.is_some() && v2_offered.is_some() && v2_missing.is_empty();
    if force != Some(Version::V1) && v2_ok {
        return Ok(Plan {
            version: Version::V2,
            hierarchies: vec![PlannedHierarchy {
                mount: mounts.v2.clone().expect("checked"),
                controllers: want
                    .iter()
                    .filter_map(|c| c.v2_name())
                    .map(str::to_string)
                    .collect(),
            }],
        });
    }

    // Pressure on v1 comes from the hybrid layout's cgroup2 mount; CPU usage
    // is never missing (see `Controller::CpuUsage`).
    let v1_has = |c: Controller| match c {
        Controller::Pressure => mounts.v2.is_some(),
        Controller::CpuUsage => true,
        c => mounts.v1_for(c.name()).is_some(),
    };
    let v1_missing: Vec<Controller> = want.iter().copied().filter(|&c| !v1_has(c)).collect();
    let mut hierarchies: Vec<PlannedHierarchy> = Vec::new();
    if v1_missing.is_empty() {
        let mut add = |m: &V1Mount| {
            if !hierarchies.iter().any(|h| h.mount == m.path) {
                hierarchies.push(PlannedHierarchy {
                    mount: m.path.clone(),
                    controllers: m.subsystems.clone(),
                });
            }
        };
        let with_cpu = want.contains(&Controller::Cpu);
        for c in &want {
            match c {
                Controller::Pressure => {}
                Controller::Cpu | Controller::CpuUsage => {
                    if *c == Controller::Cpu {
                        add(mounts.v1_for("cpu").expect("checked"));
                    }
                    // cpuacct for CPU usage, unless joining it joins a cpu
                    // group nobody asked for.
                    if let Some(acct) = mounts.v1_for("cpuacct")
                        && (with_cpu || !acct.subsystems.iter().any(|s| s == "cpu"))
                    {
                        add(acct);
                    }
                }
                c => add(mounts.v1_for(c.name()).expect("checked")),
            }
        }
        if want.contains(&Controller::Pressure) {
            hierarchies.push(PlannedHierarchy {
                mount: mounts.v2.clone().expect("checked"),
                controllers: vec![Controller::Pressure.name().to_string()],
            });
        }
    }
    if force != Some(Version::V2) && !hierarchies.is_empty() {
        return Ok(Plan {
            version: Version::V1,
            hierarchies,
        });
    }

    // Neither works: say what is missing where.
    let names = |cs: &[Controller]| {
        cs.iter()
            .map(|c| format!("{} (needed for {})", c.name(), c.feature()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let v2_part = match (&mounts.v2, v2_offered) {
        (None, _) => "no cgroup2 filesystem is mounted".to_string(),
        (Some(p), None) => format!("{}/cgroup.controllers could not be read", p.display()),
        (Some(p), Some(offered)) => format!(
            "cgroup v2 at {} offers [{}], missing {}",
            p.display(),
            offered.join(" "),
            names(&v2_missing)
        ),
    };
    let v1_part = if v1_missing.is_empty() {
        "cgroup v1 needs at least one controller to group processes".to_string()
    } else if mounts.v1.is_empty() {
        "no cgroup v1 hierarchy is mounted".to_string()
    } else {
        format!(
            "no cgroup v1 hierarchy has {}{}",
            names(&v1_missing),
            if v1_missing.contains(&Controller::Pressure) {
                " (pressure needs a cgroup2 mount beside the v1 hierarchies)"
            } else {
                ""
            }
        )
    };
    let what = match force {
        Some(Version::V1) => format!("cgroup v1 cannot be used: {v1_part}"),
        Some(Version::V2) => format!("cgroup v2 cannot be used: {v2_part}"),
        None => {
            format!("neither cgroup version has the controllers asked for: {v2_part}; {v1_part}")
        }
    };
    bail!(
        "{what}. Enable the missing controllers (v2: they must be listed in the root's \
         cgroup.controllers, i.e. not bound to a v1 hierarchy; v1: mount them, e.g. \
         `mount -t cgroup -o memory cgroup /sys/fs/cgroup/memory`), or leave out the \
         faults that need them"
    )
}

/// Splits a run id `<pid>-<nanos>` into its parts; `None` for anything else.
pub fn parse_run_id(name: &str) -> Option<(u32, u64)> {
    let (pid, nanos) = name.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(nanos) {
        return None;
    }
    let pid: u32 = pid.parse().ok()?;
    let nanos: u64 = nanos.parse().ok()?;
    (pid > 0).then_some((pid, nanos))
}

/// A fresh run id for the calling process: `<pid>-<CLOCK_REALTIME nanoseconds>`,
/// strictly increasing within the process.
pub fn new_run_id() -> String {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut prev = LAST.load(Ordering::Relaxed);
    let stamp = loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(p) => prev = p,
        }
    };
    format!("{}-{stamp}", std::process::id())
}

/// How far a process's start time (from /proc, 1 s granularity) may be after its run
/// id's stamp before the two are taken to be different processes.
const START_SLACK_SECS: f64 = 2.0;

/// Whether a run directory's creator is gone: its pid does not exist, or the process
/// that has that pid now started clearly after the run id was stamped (a recycled
/// pid). The start-time test applies only when the stamp is a plausible wall-clock
/// time (after boot), so an odd stamp never makes a live run look stale.
pub fn creator_gone(
    pid_exists: bool,
    start_secs: Option<f64>,
    stamp_ns: u64,
    boot_secs: Option<u64>,
) -> bool {
    if !pid_exists {
        return true;
    }
    let stamp = stamp_ns as f64 / 1e9;
    match (start_secs, boot_secs) {
        (Some(start), Some(boot)) if stamp >= boot as f64 => start > stamp + START_SLACK_SECS,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------
// Values and stats files (pure)
// ---------------------------------------------------------------------------------

/// The CFS quota (µs per `period_us`) for `cores` CPUs. At least 1 ms (the kernel's
/// minimum).
pub fn cpu_quota_us(cores: f64, period_us: u64) -> Result<u64> {
    if !cores.is_finite() || cores <= 0.0 {
        bail!(
            "invalid CPU limit {cores} cores: give a positive number of cores (e.g. 0.5), or no limit"
        );
    }
    let quota = (cores * period_us as f64).round();
    if quota < 1000.0 {
        bail!(
            "CPU limit {cores} cores is below the kernel's minimum of 1 ms per {} ms period \
             ({} cores): raise it",
            period_us / 1000,
            1000.0 / period_us as f64
        );
    }
    // The kernel's ceiling: 2^44 - 1 µs.
    if quota > ((1u64 << 44) - 1) as f64 {
        bail!(
            "CPU limit {cores} cores is too large: give at most the machine's CPU count, or no limit"
        );
    }
    Ok(quota as u64)
}

/// v2 `cpu.max` for a quota (None = unlimited).
pub fn cpu_max_v2(quota_us: Option<u64>, period_us: u64) -> String {
    match quota_us {
        Some(q) => format!("{q} {period_us}"),
        None => format!("max {period_us}"),
    }
}

/// v1 `cpu.cfs_quota_us` for a quota (None = unlimited).
pub fn cfs_quota_v1(quota_us: Option<u64>) -> String {
    quota_us.map_or_else(|| "-1".to_string(), |q| q.to_string())
}

/// A memory or pids limit as v1 or v2 writes it (None = unlimited).
fn limit_value(version: Version, v: Option<u64>, v1_unlimited: &str) -> String {
    match (v, version) {
        (Some(n), _) => n.to_string(),
        (None, Version::V2) => "max".to_string(),
        (None, Version::V1) => v1_unlimited.to_string(),
    }
}

/// A CPU list in the kernel's list format, with ranges: `[0, 1, 2, 5]` -> `0-2,5`.
pub fn format_cpu_list(cpus: &[u32]) -> String {
    let mut v = cpus.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

/// Parses the kernel's list format (`0-2,5`, empty for none).
pub fn parse_cpu_list(text: &str) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let num = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| anyhow!("invalid CPU list {text:?}: {s:?} is not a CPU number"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    bail!("invalid CPU list {text:?}: range {part} is backwards");
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    Ok(out)
}

/// The value of `key` in a flat keyed file (`key value` lines: `memory.events`,
/// `cpu.stat`, `memory.oom_control`, `cgroup.events`, `pids.events`).
pub fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then(|| it.next()?.parse().ok())?
    })
}

/// The `some` line's `total=` (µs) of a PSI file (`cpu.pressure`,
/// `memory.pressure`, `io.pressure`): how long at least one task stalled.
pub fn psi_some_total_us(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("some "))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}

/// The pids of a `cgroup.procs` text.
pub fn parse_procs(text: &str) -> Vec<u32> {
    text.split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect()
}

/// The controllers of a `cgroup.controllers` or `cgroup.subtree_control` text.
pub fn parse_controllers(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

pub use crate::procfs::{stat_ppid, stat_start_ticks};

// ---------------------------------------------------------------------------------
// Stats
// ---------------------------------------------------------------------------------

/// What a group's cgroup files say; a field is `None` when the run does not have the
/// controller that reports it (or the kernel does not have the file).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// CPU time used, ns (v1 `cpuacct.usage`, v2 `cpu.stat` `usage_usec`).
    pub cpu_usage_ns: Option<u64>,
    /// Time throttled by the CPU quota, ns (`cpu.stat` `throttled_time` / `throttled_usec`).
    pub cpu_throttled_ns: Option<u64>,
    /// Memory charged now, bytes.
    pub memory_current: Option<u64>,
    /// The most memory charged, bytes (v2 only from Linux 5.19, `memory.peak`).
    pub memory_peak: Option<u64>,
    /// Processes the OOM killer killed in the group.
    pub oom_kills: Option<u64>,
    /// Processes (v2: and threads) in the group.
    pub pids_current: Option<u64>,
    /// Forks refused by the pids limit (`pids.events` `max`).
    pub pids_max_events: Option<u64>,
    /// Whether the group is frozen (v1: `freezer.state` reads `FROZEN`).
    pub frozen: Option<bool>,
    /// Time some of the group's tasks stalled waiting for a CPU, for memory
    /// and for I/O, µs (`*.pressure` `some` `total`), with
    /// [`Controller::Pressure`].
    pub cpu_pressure_us: Option<u64>,
    pub memory_pressure_us: Option<u64>,
    pub io_pressure_us: Option<u64>,
}

/// The files one group's [`Stats`] come from ([`RunCgroup::stats_reader`]).
#[derive(Debug, Clone)]
pub enum StatsReader {
    V2 {
        dir: Option<PathBuf>,
        pressure: bool,
    },
    V1(V1Leaves),
}

/// A v1 group's leaf in each hierarchy the run has.
#[derive(Debug, Clone)]
pub struct V1Leaves {
    cpuacct: Option<PathBuf>,
    cpu: Option<PathBuf>,
    memory: Option<PathBuf>,
    pids: Option<PathBuf>,
    freezer: Option<PathBuf>,
    /// The twin in the cgroup2 mount ([`Controller::Pressure`]).
    pressure: Option<PathBuf>,
}

impl StatsReader {
    /// The group's directories (one per hierarchy on v1).
    pub fn dirs(&self) -> Vec<&Path> {
        let mut v: Vec<&Path> = match self {
            StatsReader::V2 { dir, .. } => dir.iter().map(PathBuf::as_path).collect(),
            StatsReader::V1(l) => [
                &l.cpuacct,
                &l.cpu,
                &l.memory,
                &l.pids,
                &l.freezer,
                &l.pressure,
            ]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .collect(),
        };
        v.dedup();
        v
    }

    pub fn read(&self) -> Stats {
        let mut s = Stats::default();
        match self {
            StatsReader::V2 { dir, pressure } => {
                let Some(d) = dir else { return s };
                let cpu = fs::read_to_string(d.join("cpu.stat")).unwrap_or_default();
                s.cpu_usage_ns = keyed_value(&cpu, "usage_usec").map(|u| u * 1000);
                s.cpu_throttled_ns = keyed_value(&cpu, "throttled_usec").map(|u| u * 1000);
                s.memory_current = read_u64(&d.join("memory.current"));
                s.memory_peak = read_u64(&d.join("memory.peak"));
                s.oom_kills = read_keyed(&d.join("memory.events"), "oom_kill");
                s.pids_current = read_u64(&d.join("pids.current"));
                s.pids_max_events = read_keyed(&d.join("pids.events"), "max");
                s.frozen = read_keyed(&d.join("cgroup.events"), "frozen").map(|v| v == 1);
                if *pressure {
                    s.read_pressure(d);
                }
            }
            StatsReader::V1(l) => {
                if let Some(d) = &l.cpuacct {
                    s.cpu_usage_ns = read_u64(&d.join("cpuacct.usage"));
                }
                if let Some(d) = &l.cpu {
                    s.cpu_throttled_ns = read_keyed(&d.join("cpu.stat"), "throttled_time");
                }
                if let Some(d) = &l.memory {
                    s.memory_current = read_u64(&d.join("memory.usage_in_bytes"));
                    s.memory_peak = read_u64(&d.join("memory.max_usage_in_bytes"));
                    s.oom_kills = read_keyed(&d.join("memory.oom_control"), "oom_kill");
                }
                if let Some(d) = &l.pids {
                    s.pids_current = read_u64(&d.join("pids.current"));
                    s.pids_max_events = read_keyed(&d.join("pids.events"), "max");
                }
                if let Some(d) = &l.freezer {
                    s.frozen = fs::read_to_string(d.join("freezer.state"))
                        .ok()
                        .map(|t| t.trim() == "FROZEN");
                }
                if let Some(d) = &l.pressure {
                    s.read_pressure(d);
                }
            }
        }
        s
    }
}

impl Stats {
    fn read_pressure(&mut self, dir: &Path) {
        let psi = |f: &str| psi_some_total_us(&fs::read_to_string(dir.join(f)).ok()?);
        self.cpu_pressure_us = psi("cpu.pressure");
        self.memory_pressure_us = psi("memory.pressure");
        self.io_pressure_us = psi("io.pressure");
    }
}

// ---------------------------------------------------------------------------------
// File helpers
// ---------------------------------------------------------------------------------

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// What to do about an I/O error on a cgroup file.
fn advice(e: &io::Error) -> &'static str {
    match errno(e) {
        libc::EACCES | libc::EPERM => ": cgroups need root, run as root (e.g. with sudo)",
        libc::EROFS => {
            ": the cgroup filesystem is read-only (a container without cgroup write access?); \
             run on the host or give the container a writable cgroup mount"
        }
        _ => "",
    }
}

/// Writes a cgroup control file in one write(2).
fn write_raw(path: &Path, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())
}

/// Writes a cgroup control file, with an error that names the file and the value.
fn write_ctl(path: &Path, value: &str) -> Result<()> {
    write_raw(path, value).map_err(|e| {
        let hint = match errno(&e) {
            libc::EINVAL | libc::ERANGE => {
                ": the kernel rejected the value as invalid for this file"
            }
            _ => advice(&e),
        };
        anyhow::Error::new(e).context(format!(
            "failed to write {:?} to {}{hint}",
            value.trim(),
            path.display()
        ))
    })
}

fn read_ctl(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| {
        let hint = advice(&e);
        anyhow::Error::new(e).context(format!("failed to read {}{hint}", path.display()))
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    keyed_value(&fs::read_to_string(path).ok()?, key)
}

/// Creates a cgroup directory; `Ok(false)` when it was there already.
fn mkdir_cgroup(path: &Path) -> Result<bool> {
    match fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => {
            let hint = advice(&e);
            Err(anyhow::Error::new(e)
                .context(format!("failed to create cgroup {}{hint}", path.display())))
        }
    }
}

/// The pids listed in the `cgroup.procs` files of `dirs`, sorted, without repeats.
fn procs_of(dirs: &[PathBuf]) -> Vec<u32> {
    let mut all: Vec<u32> = dirs
        .iter()
        .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|t| parse_procs(&t))
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// A pidfd for `pid` (signals sent through it can never reach a reused pid).
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory
    // is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a fresh file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_kill(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: pidfd_send_signal with a valid pidfd, a signal number, no siginfo (null
    // is allowed) and no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// SIGKILLs every process listed in the `cgroup.procs` of `dirs`. Each is signalled
/// through a pidfd opened while it was listed and only when it is still listed after
/// the pidfd was opened, so a recycled pid is never hit. Returns how many were listed.
fn kill_listed(dirs: &[PathBuf]) -> usize {
    let listed = procs_of(dirs);
    if listed.is_empty() {
        return 0;
    }
    let mut opened: Vec<(u32, OwnedFd)> = Vec::new();
    let mut no_pidfd = false;
    for &pid in &listed {
        match pidfd_open(pid) {
            Ok(fd) => opened.push((pid, fd)),
            Err(e) if errno(&e) == libc::ENOSYS => {
                no_pidfd = true;
                break;
            }
            Err(_) => {} // gone already
        }
    }
    let still = procs_of(dirs);
    if no_pidfd {
        // Linux < 5.3: plain kill(2) of what is still listed (the window for a
        // recycled pid is the few microseconds between the two reads).
        for pid in still {
            // SAFETY: kill(2) takes plain integers.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        return listed.len();
    }
    for (pid, fd) in &opened {
        if still.binary_search(pid).is_ok() {
            let _ = pidfd_kill(fd);
        }
    }
    listed.len()
}

/// The cgroup directories under and including `dir`, deepest first.
fn subtree_post_order(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        let mut kids: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        kids.sort();
        for k in kids {
            out.extend(subtree_post_order(&k));
        }
    }
    if dir.is_dir() {
        out.push(dir.to_path_buf());
    }
    out
}

/// Sets a v1 `freezer.state` and waits (bounded) until it reads back.
fn v1_freeze(dir: &Path, frozen: bool, timeout: Duration) -> Result<()> {
    let (want, file) = (
        if frozen { "FROZEN" } else { "THAWED" },
        dir.join("freezer.state"),
    );
    write_ctl(&file, want)?;
    let deadline = Instant::now() + timeout;
    loop {
        let got = read_ctl(&file)?;
        if got.trim() == want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} still reads {} {} ms after writing {want}: a process in the group is \
                 probably in uninterruptible sleep (state D in /proc/<pid>/stat); retry, or \
                 thaw it",
                file.display(),
                got.trim(),
                timeout.as_millis()
            );
        }
        // Writing FROZEN again makes the kernel retry the tasks that were not frozen yet.
        if frozen {
            let _ = write_raw(&file, want);
        }
        sleep(Duration::from_millis(5));
    }
}

/// Sets a v2 `cgroup.freeze` and waits (bounded) until `cgroup.events` agrees.
fn v2_freeze(dir: &Path, frozen: bool, timeout: Duration) -> Result<()> {
    let file = dir.join("cgroup.freeze");
    if !file.exists() {
        bail!(
            "{} does not exist: the cgroup v2 freezer needs Linux 5.2 or newer; freezing \
             (pause faults) is not available on this kernel",
            file.display()
        );
    }
    write_ctl(&file, if frozen { "1" } else { "0" })?;
    let events = dir.join("cgroup.events");
    let deadline = Instant::now() + timeout;
    loop {
        let now = read_keyed(&events, "frozen");
        if now == Some(frozen as u64) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} still says frozen {} {} ms after writing {} to cgroup.freeze: a process \
                 in the group is probably in uninterruptible sleep (state D); retry later",
                events.display(),
                now.map_or("?".to_string(), |v| v.to_string()),
                timeout.as_millis(),
                frozen as u8
            );
        }
        sleep(Duration::from_millis(5));
    }
}

/// A run directory in one hierarchy, for teardown.
struct TreeRoot {
    dir: PathBuf,
    version: Version,
    /// v1 only: the hierarchy has the freezer.
    v1_freezer: bool,
}

/// Removes run directories: freezes what can be frozen, SIGKILLs every process in
/// them (v2 `cgroup.kill` when there is one), thaws, waits until they are empty
/// (bounded by `timeout`) and removes every directory deepest first.
fn teardown(roots: &[TreeRoot], timeout: Duration) -> Result<()> {
    let roots: Vec<&TreeRoot> = roots.iter().filter(|r| r.dir.is_dir()).collect();
    if roots.is_empty() {
        return Ok(());
    }
    let all_dirs: Vec<PathBuf> = roots
        .iter()
        .flat_map(|r| subtree_post_order(&r.dir))
        .collect();
    // Stop forks first where a freezer exists, kill, then thaw so the kills land.
    for r in &roots {
        if r.version == Version::V1 && r.v1_freezer {
            let _ = v1_freeze(&r.dir, true, Duration::from_millis(500));
        }
        if r.version == Version::V2 {
            let _ = write_raw(&r.dir.join("cgroup.kill"), "1");
        }
    }
    kill_listed(&all_dirs);
    for r in &roots {
        for d in subtree_post_order(&r.dir) {
            match r.version {
                Version::V1 if r.v1_freezer => {
                    let _ = write_raw(&d.join("freezer.state"), "THAWED");
                }
                Version::V2 => {
                    let _ = write_raw(&d.join("cgroup.freeze"), "0");
                }
                Version::V1 => {}
            }
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        if kill_listed(&all_dirs) == 0 {
            break;
        }
        if Instant::now() >= deadline {
            let left = procs_of(&all_dirs);
            let states: Vec<String> = left
                .iter()
                .map(|p| {
                    let st = fs::read_to_string(format!("/proc/{p}/stat"))
                        .ok()
                        .and_then(|s| {
                            crate::procfs::stat_fields(&s)
                                .and_then(|f| f.first().map(|x| x.to_string()))
                        })
                        .unwrap_or_else(|| "?".into());
                    format!("{p} (state {st})")
                })
                .collect();
            bail!(
                "processes {} are still in {} {} ms after SIGKILL (a process in state D \
                 waits for I/O to finish); the next `cargo panic` run removes these cgroups \
                 once this process has exited, or kill them and rmdir the directories",
                states.join(", "),
                roots
                    .iter()
                    .map(|r| r.dir.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
                timeout.as_millis()
            );
        }
        sleep(Duration::from_millis(5));
    }
    // rmdir may briefly say EBUSY while the last exits are accounted.
    let rm_deadline = Instant::now() + Duration::from_secs(1);
    let mut failed: Vec<String> = Vec::new();
    for d in &all_dirs {
        loop {
            match fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if errno(&e) == libc::EBUSY && Instant::now() < rm_deadline => {
                    sleep(Duration::from_millis(5));
                }
                Err(e) => {
                    failed.push(format!("{}: {e}{}", d.display(), advice(&e)));
                    break;
                }
            }
        }
    }
    if !failed.is_empty() {
        bail!("failed to remove cgroups {}", failed.join("; "));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// The run's cgroups
// ---------------------------------------------------------------------------------

/// One hierarchy the run uses.
#[derive(Debug)]
struct Hierarchy {
    /// v1: the subsystems bound to this hierarchy; v2: the controllers enabled.
    controllers: Vec<String>,
    run_dir: PathBuf,
}

impl Hierarchy {
    fn has(&self, subsystem: &str) -> bool {
        self.controllers.iter().any(|c| c == subsystem)
    }

    fn leaf(&self, g: Group) -> PathBuf {
        self.run_dir.join(g.dir_name())
    }
}

/// The cgroups of one run: `<root>/cargo-panic/<run id>/{target,stress}` in each
/// hierarchy it uses. See the module documentation.
#[derive(Debug)]
pub struct RunCgroup {
    version: Version,
    run_id: String,
    want: Vec<Controller>,
    hierarchies: Vec<Hierarchy>,
    torn_down: bool,
}

/// Moves the calling process into a group; made before a fork, run in the child.
///
/// It holds the group's `cgroup.procs` files (one per hierarchy) open, close-on-exec;
/// [`JoinHook::join`] only write(2)s `"0"` to each, which is async-signal-safe and
/// does not allocate, so it may run between fork and exec:
///
/// ```no_run
/// # use std::os::unix::process::CommandExt;
/// # fn f(cg: &cargo_panic_core::cgroup::RunCgroup) -> anyhow::Result<()> {
/// let hook = cg.join_before_exec(cargo_panic_core::cgroup::Group::Target)?;
/// let mut cmd = std::process::Command::new("sleep");
/// // SAFETY: JoinHook::join is async-signal-safe.
/// unsafe { cmd.pre_exec(move || hook.join()) };
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct JoinHook {
    fds: Vec<OwnedFd>,
}

impl JoinHook {
    /// Writes "0" (the calling process) to each `cgroup.procs`. Async-signal-safe: one
    /// write(2) per file, no allocation, errno turned into an `io::Error` without
    /// allocating. A failure makes the spawn fail with that error (e.g. ENOSPC: a v1
    /// cpuset without CPUs or memory nodes).
    pub fn join(&self) -> io::Result<()> {
        for fd in &self.fds {
            // SAFETY: write(2) of one byte from a static buffer to a file descriptor
            // this hook owns.
            let r = unsafe { libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

impl RunCgroup {
    /// Creates the run's groups for the controllers in `want`, preferring cgroup v2
    /// (see the module documentation). `run_id` must be `<pid>-<nanos>` as made by
    /// [`new_run_id`]: the pid of the creating process (or of a process whose
    /// lifetime bounds the run's) and the wall-clock time in ns; [`sweep_stale`]
    /// removes the run once that process is gone.
    pub fn create(run_id: &str, want: &[Controller]) -> Result<RunCgroup> {
        RunCgroup::create_with(run_id, want, None)
    }

    /// [`RunCgroup::create`] on the given version only (`None`: prefer v2).
    pub fn create_with(
        run_id: &str,
        want: &[Controller],
        version: Option<Version>,
    ) -> Result<RunCgroup> {
        check_run_id(run_id)?;
        let mounts = Mounts::current()?;
        let offered = mounts
            .v2
            .as_ref()
            .and_then(|p| fs::read_to_string(p.join("cgroup.controllers")).ok())
            .map(|t| parse_controllers(&t));
        let plan = plan(&mounts, offered.as_deref(), want, version)?;
        let mut want: Vec<Controller> = want.to_vec();
        want.sort();
        want.dedup();
        let mut cg = RunCgroup {
            version: plan.version,
            run_id: run_id.to_string(),
            want,
            hierarchies: Vec::new(),
            torn_down: false,
        };
        // On failure, dropping `cg` removes what was made so far.
        for h in &plan.hierarchies {
            cg.make_hierarchy(h)?;
        }
        if cg.version == Version::V2
            && cg.has(Controller::Freezer)
            && !cg.hierarchies[0]
                .leaf(Group::Target)
                .join("cgroup.freeze")
                .exists()
        {
            bail!(
                "the cgroup v2 freezer needs Linux 5.2 or newer (no cgroup.freeze in {}): \
                 freezing (pause faults) is not available on this kernel",
                cg.hierarchies[0].run_dir.display()
            );
        }
        if let Some(h) = cg
            .has(Controller::Pressure)
            .then(|| cg.find("pressure"))
            .flatten()
            && !h.leaf(Group::Target).join("cpu.pressure").exists()
        {
            bail!(
                "this kernel reports no pressure stall information (no cpu.pressure in {}): \
                 it needs CONFIG_PSI=y and, where PSI is off by default, the boot \
                 parameter psi=1",
                h.run_dir.display()
            );
        }
        Ok(cg)
    }

    fn make_hierarchy(&mut self, p: &PlannedHierarchy) -> Result<()> {
        let parent = p.mount.join(PARENT_DIR);
        let run_dir = parent.join(&self.run_id);
        let v1_cpuset = self.version == Version::V1 && p.controllers.iter().any(|c| c == "cpuset");
        if self.version == Version::V2 {
            enable_v2(&p.mount, &p.controllers)?;
        }
        mkdir_cgroup(&parent)?;
        if v1_cpuset {
            copy_cpuset_if_empty(&p.mount, &parent)?;
        }
        if self.version == Version::V2 {
            enable_v2(&parent, &p.controllers)?;
        }
        if !mkdir_cgroup(&run_dir)? {
            bail!(
                "cgroup {} exists already: run id {} is in use (give each run a fresh id \
                 from cgroup::new_run_id)",
                run_dir.display(),
                self.run_id
            );
        }
        self.hierarchies.push(Hierarchy {
            controllers: p.controllers.clone(),
            run_dir: run_dir.clone(),
        });
        if v1_cpuset {
            copy_cpuset_if_empty(&parent, &run_dir)?;
        }
        if self.version == Version::V2 {
            enable_v2(&run_dir, &p.controllers)?;
        }
        for g in Group::ALL {
            let leaf = run_dir.join(g.dir_name());
            mkdir_cgroup(&leaf)?;
            if v1_cpuset {
                copy_cpuset_if_empty(&run_dir, &leaf)?;
            }
        }
        Ok(())
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The controllers asked for.
    pub fn controllers(&self) -> &[Controller] {
        &self.want
    }

    /// The group's directory in each hierarchy the run uses.
    pub fn dirs(&self, g: Group) -> Vec<PathBuf> {
        self.hierarchies.iter().map(|h| h.leaf(g)).collect()
    }

    /// The run directory in each hierarchy the run uses.
    pub fn run_dirs(&self) -> Vec<PathBuf> {
        self.hierarchies.iter().map(|h| h.run_dir.clone()).collect()
    }

    fn has(&self, c: Controller) -> bool {
        self.want.contains(&c)
    }

    /// The hierarchy holding `subsystem` (v2: the only one); an error saying how to
    /// get it when the run was made without `c`.
    fn hierarchy(&self, c: Controller, subsystem: &str) -> Result<&Hierarchy> {
        if !self.has(c) {
            bail!(
                "run {} was created without the {} controller, which {} needs: add \
                 Controller::{:?} when creating it",
                self.run_id,
                c.name(),
                c.feature(),
                c
            );
        }
        self.find(subsystem).ok_or_else(|| {
            anyhow!(
                "internal error: no hierarchy with {subsystem} in run {}",
                self.run_id
            )
        })
    }

    fn find(&self, subsystem: &str) -> Option<&Hierarchy> {
        match self.version {
            Version::V2 => self.hierarchies.first(),
            Version::V1 => self.hierarchies.iter().find(|h| h.has(subsystem)),
        }
    }

    /// Opens the group's `cgroup.procs` files (one per hierarchy) now, before a fork;
    /// the hook moves the child in before it execs. See [`JoinHook`].
    pub fn join_before_exec(&self, g: Group) -> Result<JoinHook> {
        let mut fds = Vec::with_capacity(self.hierarchies.len());
        for h in &self.hierarchies {
            let path = h.leaf(g).join("cgroup.procs");
            let f = fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| {
                    let hint = advice(&e);
                    anyhow::Error::new(e)
                        .context(format!("failed to open {}{hint}", path.display()))
                })?;
            fds.push(OwnedFd::from(f));
        }
        Ok(JoinHook { fds })
    }

    /// Installs the join hook on `cmd`: the process it spawns starts in group `g`.
    pub fn join_on_spawn(&self, g: Group, cmd: &mut Command) -> Result<()> {
        let hook = self.join_before_exec(g)?;
        // SAFETY: the closure only calls JoinHook::join, which is async-signal-safe and
        // does not allocate.
        unsafe { cmd.pre_exec(move || hook.join()) };
        Ok(())
    }

    /// Moves a running process (all its threads) into group `g`. Only processes this
    /// run started: `pid` must be a descendant of the calling process, never the
    /// calling process itself (destroy would kill it).
    pub fn add(&self, g: Group, pid: u32) -> Result<()> {
        let me = std::process::id();
        if pid == me {
            bail!(
                "refusing to move pid {pid}, the calling process itself, into run {}: \
                 destroying the run would kill it; spawn the program with join_before_exec",
                self.run_id
            );
        }
        if !is_descendant(pid, me) {
            bail!(
                "refusing to move pid {pid} into run {}: it is not a process this run \
                 started (not a descendant of pid {me}, or it has exited)",
                self.run_id
            );
        }
        for h in &self.hierarchies {
            let file = h.leaf(g).join("cgroup.procs");
            write_raw(&file, &pid.to_string()).map_err(|e| {
                let hint = match errno(&e) {
                    libc::ESRCH => ": the process has exited",
                    libc::ENOSPC => ": the v1 cpuset has no CPUs or memory nodes",
                    _ => advice(&e),
                };
                anyhow::Error::new(e).context(format!(
                    "failed to move pid {pid} into {}{hint}",
                    file.display()
                ))
            })?;
        }
        Ok(())
    }

    /// Limits group `g` to `cores` CPUs (quota per 100 ms period); `None` removes the
    /// limit.
    pub fn set_cpu_max(&self, g: Group, cores: Option<f64>) -> Result<()> {
        let h = self.hierarchy(Controller::Cpu, "cpu")?;
        let quota = cores.map(|c| cpu_quota_us(c, CPU_PERIOD_US)).transpose()?;
        let leaf = h.leaf(g);
        match self.version {
            Version::V2 => write_ctl(&leaf.join("cpu.max"), &cpu_max_v2(quota, CPU_PERIOD_US)),
            Version::V1 => {
                write_ctl(&leaf.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                write_ctl(&leaf.join("cpu.cfs_quota_us"), &cfs_quota_v1(quota))
            }
        }
    }

    /// Limits group `g`'s memory (swap included) to `bytes`; `None` removes the limit.
    /// Going over the limit OOM-kills a process of the group. Lowering it below the
    /// group's usage: v2 reclaims, then OOM-kills; v1 reclaims and, when it cannot free
    /// enough, refuses (EBUSY): this retries for about 150 ms and then fails, keeping
    /// the old limit.
    pub fn set_memory_max(&self, g: Group, bytes: Option<u64>) -> Result<()> {
        let h = self.hierarchy(Controller::Memory, "memory")?;
        if let Some(b) = bytes
            && b < 4096
        {
            bail!(
                "invalid memory limit {b} bytes: give at least one page (4096 bytes), or no limit"
            );
        }
        let leaf = h.leaf(g);
        match self.version {
            Version::V2 => {
                let swap = leaf.join("memory.swap.max");
                if swap.exists() {
                    write_ctl(&swap, if bytes.is_some() { "0" } else { "max" })?;
                }
                write_ctl(
                    &leaf.join("memory.max"),
                    &limit_value(Version::V2, bytes, "-1"),
                )
            }
            Version::V1 => {
                let mem = leaf.join("memory.limit_in_bytes");
                let memsw = leaf.join("memory.memsw.limit_in_bytes");
                let value = limit_value(Version::V1, bytes, "-1");
                // The kernel keeps memory <= memsw: raise memsw first, lower it last.
                let memsw_now = read_u64(&memsw);
                let raise_memsw_first = match (bytes, memsw_now) {
                    (_, None) => false,
                    (None, Some(_)) => true,
                    (Some(b), Some(now)) => b > now,
                };
                if raise_memsw_first {
                    write_ctl(&memsw, &value)?;
                }
                self.write_v1_memory_limit(&mem, &value, bytes)?;
                if memsw_now.is_some() && !raise_memsw_first {
                    write_ctl(&memsw, &value)?;
                }
                Ok(())
            }
        }
    }

    fn write_v1_memory_limit(&self, file: &Path, value: &str, bytes: Option<u64>) -> Result<()> {
        let mut tries = 0;
        loop {
            match write_raw(file, value) {
                Ok(()) => return Ok(()),
                Err(e) if errno(&e) == libc::EBUSY && tries < 3 => {
                    tries += 1;
                    sleep(Duration::from_millis(50));
                }
                Err(e) if errno(&e) == libc::EBUSY => {
                    let usage = file
                        .parent()
                        .and_then(|d| read_u64(&d.join("memory.usage_in_bytes")))
                        .map_or("?".to_string(), |u| u.to_string());
                    return Err(anyhow::Error::new(e).context(format!(
                        "cannot lower the memory limit of {} to {} bytes: the group uses {usage} \
                         bytes and the kernel could not reclaim enough (EBUSY: cgroup v1 refuses \
                         a limit below usage it cannot reclaim, where v2 would OOM-kill); the old \
                         limit stays. Give a limit above the usage, or lower it in steps while \
                         the program frees memory",
                        file.parent().unwrap_or(file).display(),
                        bytes.unwrap_or(0)
                    )));
                }
                Err(e) => {
                    let hint = match errno(&e) {
                        libc::EINVAL => ": the kernel rejected the value as invalid",
                        _ => advice(&e),
                    };
                    return Err(anyhow::Error::new(e).context(format!(
                        "failed to write {value:?} to {}{hint}",
                        file.display()
                    )));
                }
            }
        }
    }

    /// Limits the number of processes (v2: tasks) in group `g`; `None` removes the
    /// limit. A fork over the limit fails with EAGAIN.
    pub fn set_pids_max(&self, g: Group, n: Option<u64>) -> Result<()> {
        let h = self.hierarchy(Controller::Pids, "pids")?;
        write_ctl(
            &h.leaf(g).join("pids.max"),
            &limit_value(self.version, n, "max"),
        )
    }

    /// Pins group `g` to `cpus`; `None` gives it every CPU of the run's cpuset.
    pub fn set_cpus(&self, g: Group, cpus: Option<&[u32]>) -> Result<()> {
        let h = self.hierarchy(Controller::Cpuset, "cpuset")?;
        let leaf = h.leaf(g);
        let value = match (cpus, self.version) {
            (Some([]), _) => {
                bail!("empty CPU list for the cpuset: give at least one CPU, or None for all")
            }
            (Some(c), _) => format_cpu_list(c),
            (None, Version::V2) => "\n".to_string(), // empty: inherit the parent's
            (None, Version::V1) => read_ctl(&h.run_dir.join("cpuset.cpus"))?.trim().to_string(),
        };
        write_raw(&leaf.join("cpuset.cpus"), &value).map_err(|e| {
            let hint = if matches!(errno(&e), libc::EINVAL | libc::ERANGE) {
                let avail =
                    fs::read_to_string(h.run_dir.join("cpuset.effective_cpus")).unwrap_or_default();
                format!(
                    ": CPUs {value} are not all available to the run (it has {}); pick from those",
                    avail.trim()
                )
            } else {
                advice(&e).to_string()
            };
            anyhow::Error::new(e).context(format!(
                "failed to write {:?} to {}{hint}",
                value.trim(),
                leaf.join("cpuset.cpus").display()
            ))
        })
    }

    /// Freezes (`true`) or thaws group `g` and waits (at most [`FREEZE_TIMEOUT`]) until
    /// the kernel reports it done: v1 `freezer.state` reads `FROZEN`/`THAWED`, v2
    /// `cgroup.events` says `frozen 1`/`0`.
    pub fn freeze(&self, g: Group, frozen: bool) -> Result<()> {
        let h = self.hierarchy(Controller::Freezer, "freezer")?;
        match self.version {
            Version::V1 => v1_freeze(&h.leaf(g), frozen, FREEZE_TIMEOUT),
            Version::V2 => v2_freeze(&h.leaf(g), frozen, FREEZE_TIMEOUT),
        }
    }

    /// What group `g`'s cgroup files say now.
    pub fn stats(&self, g: Group) -> Stats {
        self.stats_reader(g).read()
    }

    /// A reader of group `g`'s statistics that does not borrow the run (for
    /// a loop that reads them every period). It reads nothing once the run's
    /// groups are gone.
    pub fn stats_reader(&self, g: Group) -> StatsReader {
        let leaf = |sub: &str| self.find(sub).map(|h| h.leaf(g));
        match self.version {
            Version::V2 => StatsReader::V2 {
                dir: self.hierarchies.first().map(|h| h.leaf(g)),
                pressure: self.has(Controller::Pressure),
            },
            Version::V1 => StatsReader::V1(V1Leaves {
                cpuacct: leaf("cpuacct"),
                cpu: leaf("cpu"),
                memory: leaf("memory"),
                pids: leaf("pids"),
                freezer: leaf("freezer"),
                pressure: leaf("pressure"),
            }),
        }
    }

    /// The processes in group `g` (in any of the run's hierarchies), sorted.
    pub fn procs(&self, g: Group) -> Vec<u32> {
        procs_of(&self.dirs(g))
    }

    /// Thaws both groups, SIGKILLs every process in them, waits until they are empty
    /// (at most [`KILL_TIMEOUT`]) and removes the leaves and the run directory in every
    /// hierarchy.
    pub fn destroy(mut self) -> Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let roots: Vec<TreeRoot> = self
            .hierarchies
            .iter()
            .map(|h| TreeRoot {
                dir: h.run_dir.clone(),
                version: self.version,
                v1_freezer: self.version == Version::V1 && h.has("freezer"),
            })
            .collect();
        teardown(&roots, KILL_TIMEOUT)
            .with_context(|| format!("failed to destroy the cgroups of run {}", self.run_id))
    }
}

impl Drop for RunCgroup {
    /// Best effort: what cannot be removed is said on stderr and left for the next
    /// run's [`sweep_stale`] (once this process has exited).
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("cargo-panic: {e:#}");
        }
    }
}

/// Checks a run id's form and that its pid is consistent with its stamp.
fn check_run_id(run_id: &str) -> Result<()> {
    let Some((pid, stamp)) = parse_run_id(run_id) else {
        bail!("invalid run id {run_id:?}: it must be <pid>-<nanoseconds> (use cgroup::new_run_id)");
    };
    let alive = pid_exists(pid);
    if !alive {
        bail!(
            "invalid run id {run_id}: pid {pid} does not exist, so the run would be swept as \
             stale at once; use the creating process's pid (cgroup::new_run_id)"
        );
    }
    // Stricter than creator_gone (which leaves odd stamps alone): the stamp must not
    // predate the process, so that sweep_stale's recycled-pid test can rely on it.
    if process_start_secs(pid).is_some_and(|start| start > stamp as f64 / 1e9 + START_SLACK_SECS) {
        bail!(
            "invalid run id {run_id}: pid {pid} started after the id's time stamp, so the \
             run would be swept as stale; make the id with cgroup::new_run_id"
        );
    }
    Ok(())
}

/// kill(pid, 0) does not say ESRCH.
fn pid_exists(pid: u32) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks for the process.
    let r = unsafe { libc::kill(p, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn boot_time_secs() -> Option<u64> {
    keyed_value(&fs::read_to_string("/proc/stat").ok()?, "btime")
}

/// A process's start time, in seconds since the epoch (1 s granularity from btime).
/// Whether the process that made run `<pid>-<stamp>` is gone (dead, or its
/// pid now belongs to a process started after the stamp). `boot` is
/// [`boot_time_secs`], read once per sweep.
fn run_creator_gone(pid: u32, stamp: u64, boot: Option<u64>) -> bool {
    let exists = pid_exists(pid);
    let start = if exists {
        process_start_secs(pid)
    } else {
        None
    };
    creator_gone(exists, start, stamp, boot)
}

/// Whether a run id's creator is gone: what sweeps of things named by run
/// id use (cgroups here, the attack's scratch mounts). None: not a run id.
pub fn run_id_stale(run_id: &str) -> Option<bool> {
    let (pid, stamp) = parse_run_id(run_id)?;
    Some(run_creator_gone(pid, stamp, boot_time_secs()))
}

fn process_start_secs(pid: u32) -> Option<f64> {
    let ticks = stat_start_ticks(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    // SAFETY: sysconf takes an integer.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Some(boot_time_secs()? as f64 + ticks as f64 / hz)
}

/// Whether `pid` descends from `ancestor` (walking parent pids, bounded).
fn is_descendant(pid: u32, ancestor: u32) -> bool {
    let mut cur = pid;
    for _ in 0..128 {
        let Some(ppid) = fs::read_to_string(format!("/proc/{cur}/stat"))
            .ok()
            .and_then(|s| stat_ppid(&s))
        else {
            return false;
        };
        if ppid == ancestor {
            return true;
        }
        if ppid <= 1 {
            return false;
        }
        cur = ppid;
    }
    false
}

/// Enables `controllers` for the children of `dir` (cgroup v2), those not enabled yet.
fn enable_v2(dir: &Path, controllers: &[String]) -> Result<()> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = parse_controllers(&fs::read_to_string(&file).unwrap_or_default());
    for c in controllers {
        if enabled.contains(c) {
            continue;
        }
        write_raw(&file, &format!("+{c}")).map_err(|e| {
            let hint = match errno(&e) {
                libc::EBUSY => {
                    ": the cgroup has processes of its own, and cgroup v2 lets only cgroups \
                     without processes enable controllers for their children (run cargo-panic \
                     on the host, or in a container whose processes live in a child cgroup)"
                }
                libc::ENOENT | libc::EINVAL => {
                    ": the parent cgroup does not offer it (see its cgroup.controllers)"
                }
                _ => advice(&e),
            };
            anyhow::Error::new(e).context(format!(
                "failed to enable the {c} controller in {}{hint}",
                file.display()
            ))
        })?;
    }
    Ok(())
}

/// v1 cpuset: a cgroup's `cpuset.cpus` and `cpuset.mems` start empty and no task can
/// join until both are set; copy them from the parent when empty.
fn copy_cpuset_if_empty(parent: &Path, child: &Path) -> Result<()> {
    for f in ["cpuset.mems", "cpuset.cpus"] {
        let mine = read_ctl(&child.join(f))?;
        if mine.trim().is_empty() {
            let theirs = read_ctl(&parent.join(f))?;
            if theirs.trim().is_empty() {
                bail!(
                    "{} is empty, so no process could join the run's cpuset: set it \
                     (e.g. copy it from the parent) and retry",
                    parent.join(f).display()
                );
            }
            write_ctl(&child.join(f), theirs.trim())?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Sweeping stale runs
// ---------------------------------------------------------------------------------

/// What [`sweep_stale_report`] did.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Run directories removed (one per hierarchy).
    pub removed: Vec<PathBuf>,
    /// Run ids that were stale but could not be removed, with why.
    pub failed: Vec<(String, String)>,
}

/// Removes the run directories (`cargo-panic/<pid>-<nanos>` in every cgroup
/// hierarchy) whose creator is gone (kill(pid, 0) says ESRCH, or the pid now belongs
/// to a process started after the run), SIGKILLing their processes first; returns the
/// directories removed. Directories with other names are left alone.
pub fn sweep_stale() -> Vec<PathBuf> {
    sweep_stale_report().removed
}

/// [`sweep_stale`], also saying what could not be removed.
pub fn sweep_stale_report() -> Sweep {
    let mut sweep = Sweep::default();
    let Ok(mounts) = Mounts::current() else {
        return sweep;
    };
    let mut hierarchies: Vec<(PathBuf, Version, bool)> = Vec::new();
    if let Some(p) = &mounts.v2 {
        hierarchies.push((p.clone(), Version::V2, false));
    }
    for m in &mounts.v1 {
        hierarchies.push((
            m.path.clone(),
            Version::V1,
            m.subsystems.iter().any(|s| s == "freezer"),
        ));
    }
    let boot = boot_time_secs();
    let mut stale: BTreeMap<String, Vec<TreeRoot>> = BTreeMap::new();
    for (mount, version, v1_freezer) in hierarchies {
        let Ok(rd) = fs::read_dir(mount.join(PARENT_DIR)) else {
            continue;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some((pid, stamp)) = parse_run_id(name) else {
                continue;
            };
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if run_creator_gone(pid, stamp, boot) {
                stale.entry(name.to_string()).or_default().push(TreeRoot {
                    dir: e.path(),
                    version,
                    v1_freezer,
                });
            }
        }
    }
    for (run_id, roots) in stale {
        match teardown(&roots, KILL_TIMEOUT) {
            Ok(()) => sweep.removed.extend(roots.into_iter().map(|r| r.dir)),
            Err(e) => {
                sweep
                    .removed
                    .extend(roots.into_iter().map(|r| r.dir).filter(|d| !d.exists()));
                sweep.failed.push((run_id, format!("{e:#}")));
            }
        }
    }
    sweep
}

/// Whether a path is a run directory name (for callers listing `cargo-panic/`).
pub fn is_run_dir_name(name: &OsStr) -> bool {
    name.to_str().and_then(parse_run_id).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine: v1 controllers each on its own hierarchy, a named systemd
    /// hierarchy, and a cgroup2 mount without controllers.
    const HYBRID: &str = "\
22 1 254:1 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A systemd hybrid layout with cpu and cpuacct co-mounted, with optional fields.
    const COMOUNTED: &str = "\
30 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:6 - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,memory
37 30 0:33 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,net_cls,net_prio
";

    /// A pure cgroup v2 machine.
    const V2_ONLY: &str = "\
24 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn mountinfo_of_this_machine() {
        let m = parse_mountinfo(HYBRID);
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let names: Vec<(String, Vec<String>)> =
            m.v1.iter()
                .map(|h| (h.path.display().to_string(), h.subsystems.clone()))
                .collect();
        assert_eq!(
            names,
            vec![
                ("/sys/fs/cgroup/cpu".into(), s(&["cpu"])),
                ("/sys/fs/cgroup/cpuacct".into(), s(&["cpuacct"])),
                ("/sys/fs/cgroup/cpuset".into(), s(&["cpuset"])),
                ("/sys/fs/cgroup/memory".into(), s(&["memory"])),
                ("/sys/fs/cgroup/devices".into(), s(&["devices"])),
                ("/sys/fs/cgroup/freezer".into(), s(&["freezer"])),
                ("/sys/fs/cgroup/blkio".into(), s(&["blkio"])),
                ("/sys/fs/cgroup/pids".into(), s(&["pids"])),
            ]
        );
    }

    #[test]
    fn mountinfo_comounted_and_v2_only() {
        let m = parse_mountinfo(COMOUNTED);
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(
            m.v1_for("cpuacct").unwrap().path,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(m.v1_for("cpu").unwrap().subsystems, s(&["cpu", "cpuacct"]));
        assert_eq!(
            m.v1_for("net_prio").unwrap().subsystems,
            s(&["net_cls", "net_prio"])
        );
        assert!(m.v1_for("pids").is_none());

        let m = parse_mountinfo(V2_ONLY);
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup")));
        assert!(m.v1.is_empty());

        assert!(parse_mountinfo("22 1 254:1 / / rw - ext4 /dev/vda rw\n").is_empty());
        assert!(parse_mountinfo("garbage\n\n").is_empty());
    }

    #[test]
    fn mountinfo_escapes_and_duplicates() {
        let text = "\
50 1 0:40 /sub /mnt/a\\040b rw - cgroup2 cgroup2 rw
51 1 0:40 / /mnt/cg2 rw - cgroup2 cgroup2 rw
52 1 0:41 /x /mnt/mem-bind rw - cgroup cgroup rw,memory
53 1 0:41 / /mnt/mem rw - cgroup cgroup rw,memory
";
        let m = parse_mountinfo(text);
        assert_eq!(m.v2, Some(PathBuf::from("/mnt/cg2")));
        assert_eq!(m.v1.len(), 1);
        assert_eq!(m.v1[0].path, PathBuf::from("/mnt/mem"));
        assert_eq!(unescape_mount_field("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape_mount_field("/tail\\04"), "/tail\\04");
    }

    #[test]
    fn psi_files_give_the_some_total() {
        let text = "some avg10=19.98 avg60=9.57 avg300=5.03 total=7088766797\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(psi_some_total_us(text), Some(7_088_766_797));
        assert_eq!(psi_some_total_us("full avg10=0 total=5\n"), None);
        assert_eq!(psi_some_total_us(""), None);
    }

    #[test]
    fn plan_prefers_v2_with_the_controllers() {
        let m = parse_mountinfo(V2_ONLY);
        let offered = s(&[
            "cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc",
        ]);
        // CPU usage needs nothing enabled on v2 (`cpu.stat` is always there).
        let p = plan(&m, Some(&offered), &Controller::ALL, None).unwrap();
        assert_eq!(p.version, Version::V2);
        assert_eq!(p.hierarchies.len(), 1);
        assert_eq!(p.hierarchies[0].mount, PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(
            p.hierarchies[0].controllers,
            s(&["cpu", "memory", "pids", "cpuset"])
        );

        let err = plan(&m, Some(&offered), &[Controller::Memory], Some(Version::V1)).unwrap_err();
        assert!(
            format!("{err}").contains("cgroup v1 cannot be used"),
            "{err}"
        );

        let err = plan(&m, Some(&s(&["cpu"])), &[Controller::Memory], None).unwrap_err();
        let msg = format!("{err}");
        assert!(
            msg.contains("missing memory (needed for memory limits"),
            "{msg}"
        );
        assert!(msg.contains("no cgroup v1 hierarchy is mounted"), "{msg}");
    }

    #[test]
    fn plan_on_this_machine() {
        let m = parse_mountinfo(HYBRID);
        let none: Vec<String> = Vec::new();
        // Freezer only: the empty cgroup2 hierarchy is enough.
        let p = plan(&m, Some(&none), &[Controller::Freezer], None).unwrap();
        assert_eq!(p.version, Version::V2);
        assert_eq!(
            p.hierarchies[0].mount,
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        assert!(p.hierarchies[0].controllers.is_empty());
        let p = plan(&m, Some(&none), &[], None).unwrap();
        assert_eq!(p.version, Version::V2);

        // Anything else: v1, one hierarchy per controller, cpu brings cpuacct.
        let p = plan(
            &m,
            Some(&none),
            &[Controller::Memory, Controller::Cpu, Controller::Cpu],
            None,
        )
        .unwrap();
        assert_eq!(p.version, Version::V1);
        let mounts: Vec<String> = p
            .hierarchies
            .iter()
            .map(|h| h.mount.display().to_string())
            .collect();
        assert_eq!(
            mounts,
            [
                "/sys/fs/cgroup/cpu",
                "/sys/fs/cgroup/cpuacct",
                "/sys/fs/cgroup/memory"
            ]
        );

        // CPU usage alone joins cpuacct, never the cpu hierarchy (which would
        // take real-time scheduling away from the program).
        let p = plan(
            &m,
            Some(&none),
            &[Controller::Memory, Controller::CpuUsage],
            None,
        )
        .unwrap();
        let mounts: Vec<String> = p
            .hierarchies
            .iter()
            .map(|h| h.mount.display().to_string())
            .collect();
        assert_eq!(mounts, ["/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/memory"]);

        // Pressure on v1: a twin in the cgroup2 mount, which only reports it.
        let p = plan(
            &m,
            Some(&none),
            &[Controller::Pressure, Controller::Memory],
            None,
        )
        .unwrap();
        assert_eq!(p.version, Version::V1);
        let hs: Vec<(String, Vec<String>)> = p
            .hierarchies
            .iter()
            .map(|h| (h.mount.display().to_string(), h.controllers.clone()))
            .collect();
        assert_eq!(
            hs,
            [
                ("/sys/fs/cgroup/memory".to_string(), s(&["memory"])),
                ("/sys/fs/cgroup/unified".to_string(), s(&["pressure"])),
            ]
        );
        // Without a cgroup2 mount there is none.
        let v1_only = parse_mountinfo(
            &HYBRID
                .lines()
                .filter(|l| !l.contains(" - cgroup2 "))
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
        );
        let err = plan(
            &v1_only,
            None,
            &[Controller::Pressure, Controller::Memory],
            None,
        )
        .unwrap_err();
        assert!(
            format!("{err}").contains("pressure needs a cgroup2 mount"),
            "{err}"
        );

        let p = plan(&m, Some(&none), &[Controller::Freezer], Some(Version::V1)).unwrap();
        assert_eq!(p.version, Version::V1);
        assert_eq!(
            p.hierarchies[0].mount,
            PathBuf::from("/sys/fs/cgroup/freezer")
        );

        let err = plan(&m, Some(&none), &[], Some(Version::V1)).unwrap_err();
        assert!(
            format!("{err}").contains("at least one controller"),
            "{err}"
        );
    }

    #[test]
    fn plan_comounted_and_missing() {
        let m = parse_mountinfo(COMOUNTED);
        let p = plan(&m, Some(&[]), &[Controller::Cpu, Controller::Memory], None).unwrap();
        let mounts: Vec<String> = p
            .hierarchies
            .iter()
            .map(|h| h.mount.display().to_string())
            .collect();
        assert_eq!(
            mounts,
            ["/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory"]
        );
        assert_eq!(p.hierarchies[0].controllers, s(&["cpu", "cpuacct"]));

        // Where cpuacct shares its hierarchy with cpu, CPU usage does not
        // join it unless the cpu controller is asked for too; alone, it
        // groups nothing.
        let mounts_of = |want: &[Controller]| -> Vec<String> {
            plan(&m, Some(&[]), want, None)
                .unwrap()
                .hierarchies
                .iter()
                .map(|h| h.mount.display().to_string())
                .collect()
        };
        assert_eq!(
            mounts_of(&[Controller::CpuUsage, Controller::Memory]),
            ["/sys/fs/cgroup/memory"]
        );
        assert_eq!(
            mounts_of(&[Controller::CpuUsage, Controller::Memory, Controller::Cpu]),
            ["/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory"]
        );
        let err = plan(&m, Some(&[]), &[Controller::CpuUsage], Some(Version::V1)).unwrap_err();
        assert!(
            format!("{err}").contains("at least one controller"),
            "{err}"
        );

        let err = plan(&m, Some(&[]), &[Controller::Pids, Controller::Memory], None).unwrap_err();
        let msg = format!("{err}");
        assert!(
            msg.contains("no cgroup v1 hierarchy has pids (needed for process-count"),
            "{msg}"
        );
        assert!(!msg.contains("has memory"), "{msg}");

        let err = plan(&Mounts::default(), None, &[Controller::Cpu], None).unwrap_err();
        assert!(format!("{err}").contains("mount -t cgroup2"), "{err}");
    }

    #[test]
    fn run_ids() {
        assert_eq!(
            parse_run_id("1234-1700000000000000000"),
            Some((1234, 1_700_000_000_000_000_000))
        );
        for bad in [
            "",
            "-",
            "12-",
            "-12",
            "0-5",
            "a-1",
            "1-a",
            "1-2-3",
            "1 -2",
            "+1-2",
            "99999999999-1",
        ] {
            assert_eq!(parse_run_id(bad), None, "{bad:?}");
        }
        let a = new_run_id();
        let b = new_run_id();
        assert_ne!(a, b);
        let (pa, na) = parse_run_id(&a).unwrap();
        let (pb, nb) = parse_run_id(&b).unwrap();
        assert_eq!(pa, std::process::id());
        assert_eq!(pa, pb);
        assert!(nb > na);
        assert!(is_run_dir_name(OsStr::new(&a)));
        assert!(!is_run_dir_name(OsStr::new("target")));
    }

    #[test]
    fn stale_creators() {
        let boot = Some(1_700_000_000);
        let stamp = 1_700_000_100_000_000_000; // 100 s after boot
        assert!(creator_gone(false, None, stamp, boot));
        assert!(!creator_gone(true, Some(1_700_000_050.0), stamp, boot)); // started before
        assert!(!creator_gone(true, Some(1_700_000_101.5), stamp, boot)); // within the slack
        assert!(creator_gone(true, Some(1_700_000_200.0), stamp, boot)); // recycled pid
        assert!(!creator_gone(true, None, stamp, boot)); // /proc unreadable: keep
        // A stamp that is not wall-clock time never makes a live creator stale.
        assert!(!creator_gone(
            true,
            Some(1_700_000_200.0),
            5_000_000_000,
            boot
        ));
        assert!(!creator_gone(true, Some(1_700_000_200.0), stamp, None));
    }

    #[test]
    fn cpu_values() {
        assert_eq!(cpu_quota_us(0.2, 100_000).unwrap(), 20_000);
        assert_eq!(cpu_quota_us(1.5, 100_000).unwrap(), 150_000);
        assert_eq!(cpu_quota_us(0.01, 100_000).unwrap(), 1000);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 0.009, 1e12] {
            let e = cpu_quota_us(bad, 100_000).unwrap_err();
            assert!(format!("{e}").contains("cores"), "{bad}: {e}");
        }
        assert!(
            format!("{}", cpu_quota_us(0.001, 100_000).unwrap_err()).contains("minimum of 1 ms")
        );
        assert_eq!(cpu_max_v2(Some(20_000), 100_000), "20000 100000");
        assert_eq!(cpu_max_v2(None, 100_000), "max 100000");
        assert_eq!(cfs_quota_v1(Some(20_000)), "20000");
        assert_eq!(cfs_quota_v1(None), "-1");
        assert_eq!(limit_value(Version::V1, None, "-1"), "-1");
        assert_eq!(limit_value(Version::V1, None, "max"), "max");
        assert_eq!(limit_value(Version::V2, None, "-1"), "max");
        assert_eq!(limit_value(Version::V2, Some(16 << 20), "-1"), "16777216");
    }

    #[test]
    fn cpu_lists() {
        for (cpus, text) in [
            (&[0u32][..], "0"),
            (&[0, 1, 2, 5][..], "0-2,5"),
            (&[5, 3, 4, 4, 9, 10][..], "3-5,9-10"),
            (&[][..], ""),
        ] {
            assert_eq!(format_cpu_list(cpus), text);
        }
        assert_eq!(parse_cpu_list("0-2,5\n").unwrap(), vec![0, 1, 2, 5]);
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<u32>::new());
        assert_eq!(parse_cpu_list("7").unwrap(), vec![7]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
    }

    #[test]
    fn stats_files() {
        let oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed_value(oom_control, "oom_kill"), Some(3));
        assert_eq!(keyed_value(oom_control, "oom_kill_disable"), Some(0));
        let events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(keyed_value(events, "oom_kill"), Some(1));
        assert_eq!(keyed_value(events, "oom"), Some(2));
        assert_eq!(keyed_value(events, "oom_group_kill"), Some(0));
        let cpu_stat = "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n\
                        nr_periods 10\nnr_throttled 8\nthrottled_usec 640000\n";
        assert_eq!(keyed_value(cpu_stat, "usage_usec"), Some(1_234_567));
        assert_eq!(keyed_value(cpu_stat, "throttled_usec"), Some(640_000));
        let v1_cpu_stat =
            "nr_periods 0\nnr_throttled 0\nthrottled_time 0\nnr_bursts 0\nburst_time 0\n";
        assert_eq!(keyed_value(v1_cpu_stat, "throttled_time"), Some(0));
        assert_eq!(keyed_value("populated 1\nfrozen 1\n", "frozen"), Some(1));
        assert_eq!(keyed_value("max 1\n", "max"), Some(1));
        assert_eq!(keyed_value("", "max"), None);
        assert_eq!(keyed_value("max x\n", "max"), None);
        assert_eq!(parse_procs("12\n345\n\n"), vec![12, 345]);
        assert_eq!(parse_procs(""), Vec::<u32>::new());
        assert_eq!(
            parse_controllers("cpuset cpu io memory pids\n"),
            s(&["cpuset", "cpu", "io", "memory", "pids"])
        );
    }

    #[test]
    fn proc_stat_fields() {
        // A command name with spaces and parentheses.
        let stat = "4242 (we(i)rd name) S 17 4242 4242 0 -1 4194560 100 0 0 0 3 4 0 0 20 0 1 0 987654 \
                    1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(stat_ppid(stat), Some(17));
        assert_eq!(stat_start_ticks(stat), Some(987_654));
        assert_eq!(stat_ppid("garbage"), None);
    }

    #[test]
    fn error_advice() {
        let e = io::Error::from_raw_os_error(libc::EACCES);
        assert!(advice(&e).contains("run as root"));
        let e = io::Error::from_raw_os_error(libc::EROFS);
        assert!(advice(&e).contains("read-only"));
        assert_eq!(advice(&io::Error::from_raw_os_error(libc::EIO)), "");
    }
}
