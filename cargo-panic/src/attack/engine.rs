//! The attack engine's run loop: starts the target in its cgroup, waits
//! until it is ready, starts the workload, then ticks through the timeline:
//! samples signals, asks the scheduler what runs at which level, drives the
//! stressors (cgroup limits, stressor processes, the fault proxy, the
//! freezer), records requested vs achieved, detects crashes and hangs,
//! restarts the target by policy, and at the end checks the assertions and
//! builds the report.
//!
//! Everything the run creates (cgroups, stressor processes, the proxy, the
//! scratch mount, the target, segment files) is owned by [`Run`], whose
//! drop removes it, so every exit path (an error, Ctrl-C, the target
//! crashing) cleans up; a run that was SIGKILLed is swept at the next start
//! (`cgroup::sweep_stale`, `mechanism::sweep_stale_scratch`, stale
//! segment files). The target's lifecycle is in `target`, the freezer and
//! the scratch filesystem in `mechanism`, site lookups in `sites`.
//!
//! The timeline's clock starts when the target is ready. The loop wakes at
//! every cadence tick and also exactly when a fixed-time event is due or an
//! event's `for` runs out, so events start on time, not on the next tick.

use std::collections::HashMap;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use panic_runtime::segment::Snapshot;

use super::condition::{Cond, Signal};
use super::inject::Injector;
use super::mechanism::{Freezer, Scratch, achieved_means, faults, harsher, primary};
use super::probe::{self, CpuLoad};
use super::proxy::Proxy;
use super::report::{
    self, AssertResult, EventReport, EventSample, Failure, Mechanism, Report, Tick,
};
use super::schedule::{Applied, Change, Scheduler};
use super::sites::{self, Sites};
use super::stress::{self, Stressor, describe_status};
use super::target::{Target, Wake, thread_states, wait_ready};
use super::timeline::{Level, NetLevel, Ready, Restart, Timeline, Via, Workload};
use super::units;
use super::verdict;
use super::workload::{self, LoadGen, LoadSpec};
use crate::cgroup::{self, Controller, Group, RunCgroup};
use crate::manifest::Manifest;
use crate::pricing::{PriceLoop, Usage, rate};
use crate::signature::collect;

/// What to attack and how.
pub struct Options {
    pub timeline: Timeline,
    /// The timeline file or preset name, for the report.
    pub source: String,
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Assertions from the command line (the timeline's own are added).
    pub asserts: Vec<Cond>,
    /// The cargo-panic executable (stressors are it, re-executed).
    pub exe: PathBuf,
    /// Print progress lines on stderr.
    pub progress: bool,
    /// The verifier's verdict on the timeline, when it ran.
    pub feasibility: Option<panic_verifier::feasible::Feasibility>,
    /// Whether to watch the target from the kernel (eBPF).
    pub kernel: KernelUse,
    /// The run config (`--config`): a price controller and fuses, as for
    /// `cargo panic run --config`.
    pub run_config: Option<crate::controller::RunConfig>,
}

/// `--kernel` of an attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelUse {
    Off,
    /// The kernel side, or an error saying why it cannot be had.
    On,
    /// The kernel side when it can be had (root, an instrumented target);
    /// otherwise the report says why not.
    Auto,
}

/// Set by SIGINT/SIGTERM: the run stops at the next wake-up and reports.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM end the run cleanly instead of killing cargo-panic.
pub fn catch_interrupts() {
    let h = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, h);
        libc::signal(libc::SIGTERM, h);
    }
}

/// Everything a run owns. Dropped in field order after `finish`; each
/// part's own Drop cleans it up on error paths too.
struct Run {
    workload: Option<LoadGen>,
    workload_cmd: Option<Child>,
    stressors: HashMap<usize, Stressor>,
    freezer: Option<Freezer>,
    proxy: Option<Proxy>,
    target: Option<Target>,
    scratch: Option<Scratch>,
    io_dir: Option<tempfile::TempDir>,
    cgroup: Option<Arc<RunCgroup>>,
    /// The fault table (fault events); removed after the target is down.
    injector: Option<Injector>,
    /// Dropped last (after the target is down): unloads the BPF programs.
    monitor: Option<panic_bpf::Monitor>,
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(w) = self.workload.take() {
            w.stop();
        }
        if let Some(mut c) = self.workload_cmd.take() {
            // SAFETY: the workload command leads its own process group.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
        for (_, s) in self.stressors.drain() {
            let _ = s.stop();
        }
        self.freezer.take();
        if let Some(p) = self.proxy.take() {
            p.stop();
        }
        if let Some(mut t) = self.target.take() {
            t.shutdown(Duration::from_millis(100));
        }
        self.scratch.take();
        if let Some(cg) = self.cgroup.take()
            && let Ok(cg) = Arc::try_unwrap(cg)
            && let Err(e) = cg.destroy()
        {
            eprintln!("cargo-panic: cleaning up the run's cgroups: {e:#}");
        }
    }
}

/// Points what sends to the target at `port`, where a restarted target now
/// listens: the fault proxy's upstream when there is one (the workload keeps
/// sending to the proxy), else the built-in workload. Says what followed.
fn follow_port(run: &Run, port: u16) -> Result<String> {
    let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    Ok(if let Some(p) = &run.proxy {
        p.set_upstream(to)?;
        format!(
            "the fault proxy forwards there from now on ({} -> {to})",
            p.local_addr()
        )
    } else if let Some(w) = &run.workload {
        w.set_addr(to)?;
        "the workload sends there from now on".to_string()
    } else if run.workload_cmd.is_some() {
        "the workload command was given the first port (CARGO_PANIC_TARGET) and still \
         uses it: give the target a fixed port"
            .to_string()
    } else {
        "nothing sends to it".to_string()
    })
}

/// The cgroup controllers a timeline and the run config need (required, with
/// what needs them) and would like (for measurements: memory and CPU time,
/// never the cpu controller itself, which only a quota event needs).
fn controllers(
    t: &Timeline,
    config: Option<&crate::controller::RunConfig>,
) -> (Vec<Controller>, Vec<(Controller, String)>) {
    let mut need: Vec<(Controller, String)> = Vec::new();
    if config.is_some_and(|c| c.needs_pressure()) {
        need.push((Controller::Pressure, "the run config's controller".into()));
    }
    for e in &t.events {
        let c = match e.via {
            Via::Quota => Controller::Cpu,
            Via::Limit => Controller::Memory,
            Via::Cpuset => Controller::Cpuset,
            Via::Pids => Controller::Pids,
            Via::Freeze => Controller::Freezer,
            _ => continue,
        };
        if !need.iter().any(|(x, _)| *x == c) {
            need.push((c, e.id.clone()));
        }
    }
    let mut want: Vec<Controller> = need.iter().map(|(c, _)| *c).collect();
    for c in [Controller::Memory, Controller::CpuUsage] {
        if !want.contains(&c) {
            want.push(c);
        }
    }
    (want, need)
}

/// Runs the attack and returns its report. Errors are the tool's own (bad
/// input, no privileges): the caller exits 2 with them.
pub fn attack(opts: &Options) -> Result<Report> {
    let t = &opts.timeline;
    let machine = probe::machine();
    let binary = PathBuf::from(&opts.command[0]);
    let mut mechanisms = Vec::new();
    let manifest = match Manifest::for_binary(&binary) {
        Ok(m) => Some(m),
        Err(e) => {
            mechanisms.push(Mechanism {
                name: "sites".into(),
                used: false,
                detail: format!("no per-site data: {e:#}"),
            });
            None
        }
    };
    let mut sites = Sites::new(manifest);
    let mut asserts = t.asserts.clone();
    asserts.extend(opts.asserts.iter().cloned());
    let conds: Vec<&Cond> = t
        .events
        .iter()
        .flat_map(|e| e.start_when.iter().chain(e.stop_when.iter()))
        .chain(
            t.constraints
                .iter()
                .flat_map(|c| c.subordinate.iter().map(|s| &s.when)),
        )
        .chain(asserts.iter())
        .collect();
    let mut wanted: Vec<Signal> = Vec::new();
    for c in &conds {
        for s in c.signals() {
            if let Signal::Quantile(_, p) | Signal::Count(p) = s {
                sites.resolve(p)?;
            }
            if !wanted.contains(s) {
                wanted.push(s.clone());
            }
        }
    }
    let port_needed = t
        .workload
        .as_ref()
        .is_some_and(|w| !matches!(w, Workload::Command(_)))
        || t.events
            .iter()
            .any(|e| matches!(e.via, Via::Proxy | Via::Herd));
    if t.events.iter().any(|e| e.via == Via::Herd)
        && matches!(t.workload, Some(Workload::Command(_)))
    {
        bail!(
            "herd events burst connections with the built-in load generator, which speaks tcp or \
             http: use `workload: {{tcp: ..}}` or `{{http: ..}}` (a command workload's protocol is unknown)"
        );
    }
    if t.events
        .iter()
        .any(|e| matches!(e.via, Via::Proxy | Via::Herd))
        && t.workload.is_none()
    {
        bail!(
            "the timeline has network or herd events but no workload: they act on the workload's connections; \
             add a `workload:` (tcp, http or a command)"
        );
    }

    // Sweep what killed runs left, then build this run's pieces.
    cgroup::sweep_stale();
    super::mechanism::sweep_stale_scratch();
    crate::segfile::sweep_stale();
    let (want, need) = controllers(t, opts.run_config.as_ref());
    let mut run = Run {
        workload: None,
        workload_cmd: None,
        stressors: HashMap::new(),
        freezer: None,
        proxy: None,
        target: None,
        scratch: None,
        io_dir: None,
        cgroup: None,
        injector: None,
        monitor: None,
    };
    match RunCgroup::create(&cgroup::new_run_id(), &want) {
        Ok(cg) => {
            mechanisms.push(Mechanism {
                name: "cgroup".into(),
                used: true,
                detail: format!("{:?}, controllers {:?}", cg.version(), cg.controllers()),
            });
            run.cgroup = Some(Arc::new(cg));
        }
        Err(e) if need.is_empty() => {
            // Try with only what is needed: nothing; run without cgroups.
            mechanisms.push(Mechanism {
                name: "cgroup".into(),
                used: false,
                detail: format!("no cgroup (target CPU and memory come from /proc): {e:#}"),
            });
        }
        Err(e) => {
            let need_only: Vec<Controller> = need.iter().map(|(c, _)| *c).collect();
            match RunCgroup::create(&cgroup::new_run_id(), &need_only) {
                Ok(cg) => run.cgroup = Some(Arc::new(cg)),
                Err(_) => {
                    let (c, id) = &need[0];
                    let who = if *c == Controller::Pressure {
                        id.clone()
                    } else {
                        format!("event '{id}'")
                    };
                    return Err(
                        e.context(format!("{who} needs the cgroup {} controller", c.name()))
                    );
                }
            }
        }
    }
    // Prices and fuses live in the kernel side's maps.
    let priced = opts
        .run_config
        .as_ref()
        .is_some_and(|c| c.controller.is_some() || !c.fuses.is_empty());
    if priced && (opts.kernel == KernelUse::Off || sites.manifest.is_none()) {
        bail!(
            "--config's controller and fuses need the kernel side and an instrumented target: \
             leave --kernel on (not off) and build the target with cargo panic"
        );
    }
    let kernel_mode = if priced { KernelUse::On } else { opts.kernel };
    for s in &wanted {
        if let Signal::FuseTrips(name) = s {
            let names: Vec<&str> = opts
                .run_config
                .iter()
                .flat_map(|c| c.fuses.iter().map(|f| f.name.as_str()))
                .collect();
            match name {
                _ if names.is_empty() => bail!(
                    "the timeline reads {s}, but no fuse is configured: give --config with `fuses:`"
                ),
                Some(n) if !names.contains(&n.as_str()) => bail!(
                    "the timeline reads {s}, but --config has no fuse '{n}' (fuses: {})",
                    names.join(", ")
                ),
                _ => {}
            }
        }
    }
    let fuse_names: Vec<String> = opts
        .run_config
        .as_ref()
        .map(|c| c.fuses.iter().map(|f| f.name.clone()).collect())
        .unwrap_or_default();
    // The kernel side: loaded before the target starts, so it is watched
    // from its first instruction.
    match (&sites.manifest, kernel_mode) {
        (_, KernelUse::Off) => mechanisms.push(Mechanism {
            name: "kernel".into(),
            used: false,
            detail: "off (--kernel=off)".into(),
        }),
        (None, KernelUse::On) => bail!(
            "--kernel needs an instrumented target (its sites are what the kernel side splits time by)"
        ),
        (None, KernelUse::Auto) => mechanisms.push(Mechanism {
            name: "kernel".into(),
            used: false,
            detail: "not an instrumented target".into(),
        }),
        (Some(m), mode) => {
            let n = u32::try_from(m.sites.len()).context("too many sites for the kernel side")?;
            let opts_k = panic_bpf::Options {
                budgets: &[],
                syscalls: false,
                syscall_sample: None,
                network: opts
                    .run_config
                    .as_ref()
                    .is_some_and(PriceLoop::needs_network),
                fuses: &fuse_names,
            };
            match panic_bpf::Monitor::start(n, &opts_k) {
                Ok(mon) => {
                    mechanisms.push(Mechanism {
                        name: "kernel".into(),
                        used: true,
                        detail: "eBPF: per-thread and per-site on-CPU, run-queue and blocked time (`kernel`)".into(),
                    });
                    run.monitor = Some(mon);
                }
                Err(e) if mode == KernelUse::Auto => mechanisms.push(Mechanism {
                    name: "kernel".into(),
                    used: false,
                    detail: format!("unavailable: {e}"),
                }),
                Err(e) => {
                    return Err(
                        anyhow::Error::new(e).context("cannot watch the target from the kernel")
                    );
                }
            }
        }
    }
    mechanisms.push(Mechanism {
        name: "verifier".into(),
        used: opts.feasibility.is_some(),
        detail: match &opts.feasibility {
            Some(v) if v.feasible => "timeline feasible (verdict in `feasibility`)".into(),
            Some(_) => {
                "timeline NOT feasible, run with --no-verify (verdict in `feasibility`)".into()
            }
            None => "not run".into(),
        },
    });

    let mut env: Vec<(String, String)> = Vec::new();
    let fills: Vec<f64> = t
        .events
        .iter()
        .filter(|e| e.via == Via::Fill)
        .map(|e| primary(&e.intensity.level(e.via, &machine)))
        .collect();
    if !fills.is_empty() {
        let most = fills.iter().copied().fold(0.0, f64::max) as u64;
        let size = (most * 4).max(64 << 20);
        let s = Scratch::create(size)?;
        let d = s.dir.display().to_string();
        env.push(("CARGO_PANIC_SCRATCH".into(), d.clone()));
        env.push(("TMPDIR".into(), d));
        mechanisms.push(Mechanism {
            name: "scratch".into(),
            used: true,
            detail: format!(
                "tmpfs of {} at {} (TMPDIR, CARGO_PANIC_SCRATCH)",
                units::fmt_bytes(size as f64),
                s.dir.display()
            ),
        });
        run.scratch = Some(s);
    }
    if t.events.iter().any(|e| e.via == Via::IoHog) {
        run.io_dir = Some(
            tempfile::Builder::new()
                .prefix("cargo-panic-io-")
                .tempdir_in("/var/tmp")
                .context("cannot create the I/O hog's directory in /var/tmp")?,
        );
    }
    run.injector = Injector::prepare(t, sites.manifest.as_ref())?;
    if let Some(inj) = &run.injector {
        let (k, v) = inj.env();
        mechanisms.push(Mechanism {
            name: "faults".into(),
            used: true,
            detail: format!(
                "fault table {v} ({k}): the target's runtime fails the calls fault events select"
            ),
        });
        env.push((k, v));
    }
    let scratch_dir = run.scratch.as_ref().map(|s| s.dir.display().to_string());
    let command: Vec<String> = opts
        .command
        .iter()
        .map(|a| match &scratch_dir {
            Some(d) => a.replace("{scratch}", d),
            None => a.clone(),
        })
        .collect();
    let log = match &t.target.ready {
        Ready::Log(s) => Some(s.as_str()),
        _ => None,
    };
    let wake = Wake::default();
    let spawn_target = |cg: Option<&RunCgroup>, m: Option<&panic_bpf::Monitor>| {
        Target::spawn(&command, &env, cg, log, &wake, m, t.target.clock_offset_ns)
    };
    run.target = Some(spawn_target(run.cgroup.as_deref(), run.monitor.as_ref())?);
    let spawned = Instant::now();
    let mut prices = match (&opts.run_config, &sites.manifest, &run.target) {
        (Some(c), Some(m), Some(tg)) if priced => {
            let usage = match run.cgroup.as_deref() {
                Some(cg) => Usage::in_cgroup(tg.pid, cg.stats_reader(Group::Target)),
                None => Usage::new(tg.pid),
            };
            Some((PriceLoop::new(c, m, usage), c.period_ns, 0u64))
        }
        _ => None,
    };

    let mut failures: Vec<Failure> = Vec::new();
    // Readiness.
    let port = match wait_ready(
        run.target.as_mut().expect("spawned"),
        &t.target.ready,
        t.target.ready_timeout_ns,
        port_needed,
    ) {
        Ok(p) => p,
        Err(why) => {
            let tgt = run.target.as_mut().expect("spawned");
            let status = tgt.poll();
            failures.push(Failure {
                t_ns: 0,
                kind: "not-ready".into(),
                signal: status.and_then(|s| s.signal()),
                code: status.and_then(|s| s.code()),
                detail: why,
                active_events: Vec::new(),
                stderr_tail: tgt.tail(),
                threads: Vec::new(),
                signature: None,
            });
            None
        }
    };
    let ready_after_ns = failures
        .is_empty()
        .then(|| spawned.elapsed().as_nanos() as u64);
    let mut port = port.or(match &t.workload {
        Some(Workload::Tcp { port, .. } | Workload::Http { port, .. }) => *port,
        _ => None,
    });
    if failures.is_empty() && port_needed && port.is_none() {
        bail!(
            "the workload needs the target's TCP port: set `port` in the workload, or `target: {{ready: {{port: N}}}}`, \
             or `ready: port` so the port the target listens on is found"
        );
    }

    // The proxy sits between the workload and the target when there are network events.
    let upstream = port.map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p)));
    if failures.is_empty() && t.events.iter().any(|e| e.via == Via::Proxy) {
        let up = upstream.expect("checked above");
        let p = Proxy::start("127.0.0.1:0".parse().expect("literal"), up, t.seed)?;
        mechanisms.push(Mechanism {
            name: "proxy".into(),
            used: true,
            detail: format!("TCP fault proxy {} -> {up}", p.local_addr()),
        });
        run.proxy = Some(p);
    }
    let workload_addr = run.proxy.as_ref().map(|p| p.local_addr()).or(upstream);
    let mut workload_report = None;
    if failures.is_empty() {
        match &t.workload {
            None => {}
            Some(Workload::Command(argv)) => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]).stdin(Stdio::null()).process_group(0);
                if let Some(a) = workload_addr {
                    c.env("CARGO_PANIC_TARGET", a.to_string());
                }
                run.workload_cmd = Some(
                    c.spawn()
                        .with_context(|| format!("failed to start the workload {}", argv[0]))?,
                );
                workload_report = Some(report::WorkloadReport {
                    kind: "command".into(),
                    address: workload_addr.map(|a| a.to_string()).unwrap_or_default(),
                    totals: None,
                    exit: None,
                });
            }
            Some(w) => {
                let (request, rate, concurrency, timeout_ns, kind) = match w {
                    Workload::Tcp {
                        send,
                        expect,
                        rate,
                        concurrency,
                        timeout_ns,
                        ..
                    } => (
                        workload::Request::Tcp {
                            send: send.clone().into_bytes(),
                            expect: expect.clone().map(String::into_bytes),
                        },
                        *rate,
                        *concurrency,
                        *timeout_ns,
                        "tcp",
                    ),
                    Workload::Http {
                        path,
                        rate,
                        concurrency,
                        timeout_ns,
                        ..
                    } => (
                        workload::Request::Http { path: path.clone() },
                        *rate,
                        *concurrency,
                        *timeout_ns,
                        "http",
                    ),
                    Workload::Command(_) => unreachable!("handled above"),
                };
                let addr = workload_addr.expect("checked above");
                run.workload = Some(LoadGen::start(LoadSpec {
                    addr,
                    request,
                    rate,
                    concurrency,
                    timeout: Duration::from_nanos(timeout_ns),
                    seed: t.seed,
                })?);
                workload_report = Some(report::WorkloadReport {
                    kind: kind.into(),
                    address: addr.to_string(),
                    totals: None,
                    exit: None,
                });
            }
        }
    }
    if t.events.iter().any(|e| e.via == Via::Freeze)
        && let Some(cg) = &run.cgroup
    {
        run.freezer = Some(Freezer::start(cg.clone()));
    }

    // The timeline.
    let mut sched = Scheduler::new(t, machine);
    let mut events: Vec<EventReport> = t
        .events
        .iter()
        .map(|e| EventReport {
            id: e.id.clone(),
            axis: e.axis,
            via: e.via,
            requested: e.intensity.level(e.via, &machine),
            achieved_means: achieved_means(e.via).into(),
            due_ns: e.at_ns,
            started_ns: None,
            start_late_ns: None,
            ended_ns: None,
            outcome: None,
            samples: Vec::new(),
            fidelity: None,
            errors: Vec::new(),
        })
        .collect();
    let mut series: Vec<Tick> = Vec::new();
    let mut toc = Vec::new();
    let mut restarts = 0u32;
    let mut cpu_load = CpuLoad::default();
    let hz = crate::procfs::ticks_per_s();
    let mut last_cpu: Option<(Instant, f64)> = None;
    let mut last_cg_cpu: Option<(Instant, f64)> = None;
    let mut progress_at = (0u64, Instant::now());
    let mut last_print = Instant::now();
    let mut limits: HashMap<Via, Option<f64>> = HashMap::new();
    let mut net_now: Option<NetLevel> = None;
    let mut herds: HashMap<usize, workload::BurstHandle> = HashMap::new();
    let mut herd_done: HashMap<usize, f64> = HashMap::new();
    let mut final_snaps: Vec<Snapshot> = Vec::new();
    let mut oom_base = 0.0;
    let t0 = Instant::now();
    let mut next_tick = 0u64;
    let mut interrupted = false;
    let mut ended_early = !failures.is_empty();
    let mut last_values: HashMap<Signal, Option<f64>> = HashMap::new();
    while !ended_early {
        let now_ns = t0.elapsed().as_nanos() as u64;
        if INTERRUPTED.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        if now_ns >= t.duration_ns {
            break;
        }
        let active_ids: Vec<String> = sched
            .phases()
            .iter()
            .zip(&t.events)
            .filter(|(p, _)| matches!(p, super::condition::EventPhase::Active))
            .map(|(_, e)| e.id.clone())
            .collect();
        // The target.
        let cg_stats = run.cgroup.as_ref().map(|c| c.stats(Group::Target));
        let oom_kills = cg_stats
            .as_ref()
            .and_then(|s| s.oom_kills)
            .map(|n| n as f64);
        let tgt = run.target.as_mut().expect("a target while the loop runs");
        let mut failed = false;
        if let Some(status) = tgt.poll() {
            let code = status.code();
            let sig = status.signal();
            let oom = oom_kills.is_some_and(|n| n > oom_base);
            if code != Some(0) {
                failed = true;
                // The waiter thread saw the exact moment.
                let at = tgt.ended_at().map_or(now_ns, |e| {
                    e.saturating_duration_since(t0).as_nanos() as u64
                });
                let stderr_tail = tgt.tail();
                let signature = verdict::signature(
                    verdict::FailureSeen::new(
                        tgt.snapshot(),
                        sites.manifest.as_ref(),
                        &stderr_tail,
                        &series,
                        &active_ids,
                        run.injector.as_ref(),
                    )
                    .ended(status, oom),
                );
                failures.push(Failure {
                    t_ns: at.min(now_ns),
                    kind: match (code, sig) {
                        (_, Some(9)) if oom => "oom".into(),
                        (_, Some(_)) => "crash".into(),
                        _ => "exit".into(),
                    },
                    signal: sig,
                    code,
                    detail: describe_status(status),
                    active_events: active_ids.clone(),
                    stderr_tail,
                    threads: Vec::new(),
                    signature,
                });
                oom_base = oom_kills.unwrap_or(oom_base);
            }
        }
        let stat = probe::proc_stat(tgt.pid).filter(|_| tgt.exited.is_none());
        let snap = tgt.snapshot();
        let calls = snap.as_ref().map(|s| s.counters.iter().sum::<u64>());
        let wl = run.workload.as_ref().map(LoadGen::take_window);
        // Hang: no runtime progress and no CPU for target.hang, while there
        // is demand. With the built-in workload, demand is requests coming
        // due: a server nobody asks anything is idle, not hung. Without it
        // (no workload, or a command) any stillness counts.
        let demand = wl.as_ref().is_none_or(|w| w.due > 0);
        if !failed && let (Some(h), Some(st)) = (t.target.hang_ns, stat) {
            let progress = calls.unwrap_or(0).wrapping_add(st.cpu_ticks);
            if progress != progress_at.0 || !demand {
                progress_at = (progress, Instant::now());
            } else if progress_at.1.elapsed().as_nanos() as u64 >= h {
                let threads = thread_states(tgt.pid);
                let hang_threads = collect::threads_at_hang(tgt.pid);
                // SAFETY: our own unreaped child.
                unsafe { libc::kill(tgt.pid as i32, libc::SIGKILL) };
                let _ = tgt.child.wait().map(|s| tgt.exited = Some(s));
                failed = true;
                let stderr_tail = tgt.tail();
                let signature = verdict::signature(
                    verdict::FailureSeen::new(
                        tgt.snapshot(),
                        sites.manifest.as_ref(),
                        &stderr_tail,
                        &series,
                        &active_ids,
                        run.injector.as_ref(),
                    )
                    .hung(h, hang_threads),
                );
                failures.push(Failure {
                    t_ns: now_ns,
                    kind: "hang".into(),
                    signal: None,
                    code: None,
                    detail: format!(
                        "no progress (runtime counts and CPU time unchanged) for {}; killed",
                        units::fmt_duration(h as f64)
                    ),
                    active_events: active_ids.clone(),
                    stderr_tail,
                    threads,
                    signature,
                });
            }
        }
        // CPU seconds per second: the target's (from /proc) and its cgroup's.
        let cpu_cores = rate(
            &mut last_cpu,
            stat.map(|s| s.cpu_ticks as f64 / hz),
            Instant::now(),
        );
        let cg_cores = rate(
            &mut last_cg_cpu,
            cg_stats
                .as_ref()
                .and_then(|s| s.cpu_usage_ns)
                .map(|ns| ns as f64 / 1e9),
            Instant::now(),
        );
        let load = cpu_load.sample();
        let (cpu_p, mem_p, io_p) = (
            probe::pressure("cpu"),
            probe::pressure("memory"),
            probe::pressure("io"),
        );
        let exited = tgt.exited.is_some();
        let values = |s: &Signal| -> Option<f64> {
            Some(match s {
                Signal::Crashes => failures.len() as f64,
                Signal::Exited => f64::from(u8::from(exited)),
                Signal::ExitCode => f64::from(tgt.exited?.code()?),
                Signal::Restarts => f64::from(restarts),
                Signal::OomKills => oom_kills?,
                Signal::Rss => stat?.rss_bytes as f64,
                Signal::Threads => stat?.threads as f64,
                Signal::Elapsed => now_ns as f64,
                Signal::FuseTrips(name) => prices.as_ref()?.0.trips(name.as_deref()) as f64,
                Signal::Quantile(q, p) => sites.quantile(p, *q, snap.as_ref()?)?,
                Signal::Count(p) => sites.count(p, snap.as_ref()?)?,
                Signal::CpuLoad => load?,
                Signal::CpuPressure => cpu_p?,
                Signal::MemoryPressure => mem_p?,
                Signal::IoPressure => io_p?,
            })
        };
        for s in &wanted {
            last_values.insert(s.clone(), values(s));
        }
        let r = sched.tick(now_ns, failed, &values);
        // The run config's period: prices and fuses move.
        if let (Some((pl, period, last)), Some(m)) = (prices.as_mut(), run.monitor.as_ref())
            && now_ns >= *last + *period
        {
            *last = now_ns;
            let seg = run.target.as_ref().map(|t| t.segment_path().to_path_buf());
            if let Some(seg) = seg {
                let (p, f) = pl.tick(now_ns, &seg, Some(m.net_bytes()));
                if let Some(p) = p {
                    m.set_prices(&p);
                }
                if !f.is_empty() {
                    m.set_fuses(&f);
                }
            }
        }
        toc.extend(r.decisions.iter().cloned());
        note_changes(&r.changes, &mut events, t, opts.progress);
        // Apply what runs now.
        apply(
            &r.active,
            &r.changes,
            t,
            &mut run,
            &mut limits,
            &mut net_now,
            &mut herds,
            &mut events,
            opts,
        );
        // Achieved values.
        let proxy_window = run.proxy.as_ref().map(|p| p.take_window());
        let frozen = run.freezer.as_mut().and_then(Freezer::achieved);
        let scratch_free = run.scratch.as_ref().and_then(Scratch::free);
        let allowed = probe::cpus_allowed(run.target.as_ref().map_or(0, |t| t.pid));
        herds.retain(|ev, h| match h.try_result() {
            None => true,
            Some(r) => {
                match r {
                    Ok(r) => {
                        herd_done.insert(*ev, f64::from(r.connected));
                    }
                    Err(e) => events[*ev].errors.push(format!("{e:#}")),
                }
                false
            }
        });
        for a in &r.active {
            let e = &t.events[a.event];
            let achieved = match e.via {
                Via::Spin | Via::Hog | Via::IoHog => {
                    run.stressors.get_mut(&a.event).and_then(Stressor::achieved)
                }
                Via::Quota => cg_cores.or(cpu_cores),
                Via::Limit => cg_stats
                    .as_ref()
                    .and_then(|s| s.memory_current)
                    .map(|b| b as f64),
                Via::Pids => cg_stats
                    .as_ref()
                    .and_then(|s| s.pids_current)
                    .map(|n| n as f64),
                Via::Cpuset => allowed,
                Via::Fill => scratch_free,
                Via::Proxy => proxy_window
                    .as_ref()
                    .map(|w| w.target_to_client.delay.mean_achieved_ns() as f64),
                Via::Freeze => frozen,
                Via::Herd => herd_done.get(&a.event).copied(),
                Via::FailAlloc | Via::FailIo | Via::Eintr => {
                    run.injector.as_ref().and_then(|i| i.achieved(a.event))
                }
            };
            events[a.event].samples.push(EventSample {
                t_ns: now_ns,
                requested: primary(&a.level),
                achieved,
                capped: a.capped_by.is_some(),
            });
        }
        series.push(Tick {
            t_ns: now_ns,
            alive: run.target.as_mut().is_some_and(|t| t.poll().is_none()),
            rss: stat.map(|s| s.rss_bytes as f64),
            threads: stat.map(|s| s.threads as f64),
            cpu_cores: cg_cores.or(cpu_cores),
            cpu_load: load,
            cpu_pressure: cpu_p,
            memory_pressure: mem_p,
            io_pressure: io_p,
            oom_kills,
            calls,
            workload_ok: wl.as_ref().map(|w| w.ok),
            workload_failed: wl.as_ref().map(|w| w.failed.values().sum()),
            workload_p99_ns: wl.as_ref().and_then(|w| w.latency.p99_ns),
            active: active_ids,
        });
        if opts.progress && last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            print_progress(t, series.last().expect("pushed"));
        }
        // The target ended: restart it, or end the run. A failure that came
        // after this iteration's check is recorded first (the next
        // iteration, at once), so no failure goes unreported.
        let tgt = run.target.as_mut().expect("target");
        if let Some(status) = tgt.poll() {
            if !failed && !status.success() {
                continue;
            }
            let want_restart = match t.target.restart {
                Restart::Never => false,
                Restart::OnFailure => !status.success(),
                Restart::Always => true,
            };
            if let Some(s) = tgt.final_snapshot() {
                final_snaps.push(s);
            }
            if want_restart && restarts < t.target.max_restarts {
                restarts += 1;
                let mut old = run.target.take().expect("target");
                old.shutdown(Duration::ZERO);
                run.target = Some(spawn_target(run.cgroup.as_deref(), run.monitor.as_ref())?);
                if let (Some((pl, ..)), Some(tg)) = (prices.as_mut(), &run.target) {
                    pl.set_pid(tg.pid);
                }
                last_cpu = None;
                match wait_ready(
                    run.target.as_mut().expect("spawned"),
                    &t.target.ready,
                    t.target.ready_timeout_ns,
                    port_needed,
                ) {
                    Err(why) => {
                        eprintln!("cargo-panic: the restarted target did not become ready: {why}")
                    }
                    Ok(Some(p)) if Some(p) != port => {
                        let detail = follow_port(&run, p)?;
                        mechanisms.push(Mechanism {
                            name: "restart".into(),
                            used: true,
                            detail: format!(
                                "restart {restarts}: the target now listens on port {p}, not {}; {detail}",
                                port.map_or("?".into(), |p| p.to_string())
                            ),
                        });
                        port = Some(p);
                    }
                    Ok(_) => {}
                }
            } else {
                ended_early = true;
            }
        }
        // Sleep until the next tick or the next due event, whichever is first.
        next_tick += t.cadence_ns;
        let now_ns = t0.elapsed().as_nanos() as u64;
        while next_tick <= now_ns {
            next_tick += t.cadence_ns;
        }
        let next = sched
            .next_due(now_ns)
            .map_or(next_tick, |d| d.min(next_tick));
        let until = t0 + Duration::from_nanos(next.min(t.duration_ns));
        // Woken early when the target ends; every 50 ms for Ctrl-C.
        while Instant::now() < until && !INTERRUPTED.load(Ordering::Relaxed) {
            let slice = (Instant::now() + Duration::from_millis(50)).min(until);
            wake.sleep_until(slice);
            if run.target.as_ref().is_some_and(|t| t.ended_at().is_some()) {
                break;
            }
        }
    }
    let ran_ns = t0.elapsed().as_nanos() as u64;
    let ended = sched.finish(ran_ns.min(t.duration_ns), interrupted);
    note_changes(&ended, &mut events, t, opts.progress);

    // Shut down: workload, stressors, target.
    if let Some(w) = run.workload.take() {
        let totals = w.stop();
        if let Some(r) = &mut workload_report {
            r.totals = serde_json::to_value(&totals).ok();
        }
    }
    if let Some(mut c) = run.workload_cmd.take() {
        // SAFETY: the workload command leads its own process group.
        unsafe { libc::kill(-(c.id() as i32), libc::SIGTERM) };
        let status = c.wait().ok();
        if let (Some(r), Some(s)) = (&mut workload_report, status) {
            r.exit = Some(describe_status(s));
        }
    }
    for (i, s) in run.stressors.drain() {
        if let Err(e) = s.stop() {
            events[i].errors.push(format!("{e:#}"));
        }
    }
    if let Some(mut tgt) = run.target.take() {
        let was_running = tgt.poll().is_none();
        tgt.shutdown(Duration::from_nanos(t.target.grace_ns));
        if was_running && let Some(s) = tgt.final_snapshot() {
            final_snaps.push(s);
        }
    }
    // The kernel's accounting, read before the programs unload. The per-site
    // split needs the runtime's self times of the same process, so it is
    // there only when the target ran once.
    let (controller_series, fuses) = match (prices.take(), &run.monitor) {
        (Some((pl, ..)), Some(m)) => pl.finish(&m.fuse_counts().0),
        _ => (None, Vec::new()),
    };
    let kernel = match &run.monitor {
        Some(m) => Some(kernel_section(
            m,
            sites.manifest.as_ref(),
            &final_snaps,
            restarts,
        )?),
        None => None,
    };
    let faults = run
        .injector
        .as_mut()
        .map(|i| i.finish(t, sites.manifest.as_ref()))
        .unwrap_or_default();
    // Checked at the end: the target maps the table when its runtime starts.
    for f in faults.iter().filter(|f| !f.attached) {
        if let Some(e) = events.iter_mut().find(|e| e.id == f.event) {
            e.errors.push(
                "the target's runtime never mapped the fault table, so no call could fail: \
                 rebuild the target with this cargo-panic"
                    .into(),
            );
        }
    }
    drop(run);

    for e in &mut events {
        let both: Vec<(f64, f64)> = e
            .samples
            .iter()
            .filter_map(|s| Some((s.requested, s.achieved?)))
            .collect();
        let ratio_ok = !matches!(
            e.via,
            Via::Quota | Via::Limit | Via::Pids | Via::Fill | Via::Herd
        );
        if ratio_ok && !both.is_empty() {
            let req: f64 = both.iter().map(|p| p.0).sum();
            let ach: f64 = both.iter().map(|p| p.1).sum();
            e.fidelity = (req > 0.0).then(|| ach / req);
        }
    }
    let site_report = sites::latencies(sites.manifest.as_ref(), &final_snaps);
    let final_values = |s: &Signal| -> Option<f64> {
        match s {
            Signal::Crashes => Some(failures.len() as f64),
            Signal::Restarts => Some(f64::from(restarts)),
            // Over every incarnation of the target.
            Signal::Quantile(q, p) => sites.quantile_over(p, *q, &final_snaps),
            Signal::Count(p) => {
                let counts: Vec<f64> = final_snaps
                    .iter()
                    .filter_map(|sn| sites.count(p, sn))
                    .collect();
                (!counts.is_empty()).then(|| counts.iter().sum())
            }
            other => last_values.get(other).copied().flatten(),
        }
    };
    let assert_results: Vec<AssertResult> = asserts
        .iter()
        .map(|c| AssertResult {
            condition: c.to_string(),
            holds: sched.eval(c, &final_values),
            values: c
                .signals()
                .into_iter()
                .map(|s| (s.to_string(), final_values(s)))
                .collect(),
        })
        .collect();
    let mut reasons = Vec::new();
    for f in &failures {
        reasons.push(format!(
            "{} at {}: {}",
            f.kind,
            units::fmt_duration(f.t_ns as f64),
            f.detail
        ));
    }
    for a in &assert_results {
        match a.holds {
            Some(true) => {}
            Some(false) => reasons.push(format!("assertion failed: {}", a.condition)),
            None => reasons.push(format!(
                "assertion could not be decided (a signal had no value): {}",
                a.condition
            )),
        }
    }
    if interrupted {
        reasons.push("interrupted before the end of the timeline".into());
    }
    let survived = reasons.is_empty();
    Ok(Report {
        version: report::REPORT_VERSION,
        tool: format!("cargo-panic {}", env!("CARGO_PKG_VERSION")),
        source: opts.source.clone(),
        timeline: serde_json::to_value(t).unwrap_or_default(),
        seed: t.seed,
        program: opts.command[0].clone(),
        args: opts.command[1..].to_vec(),
        machine: report::MachineReport::new(&machine),
        mechanisms,
        ready_after_ns,
        ran_ns,
        events,
        failures,
        toc,
        series,
        sites: site_report,
        workload: workload_report,
        asserts: assert_results,
        verdict: report::RunVerdict { survived, reasons },
        exit_code: if survived { 0 } else { 1 },
        interrupted,
        runs: Vec::new(),
        feasibility: opts
            .feasibility
            .as_ref()
            .and_then(|v| serde_json::to_value(v).ok()),
        kernel,
        controller: controller_series,
        fuses,
        faults,
    })
}

fn print_progress(t: &Timeline, tick: &Tick) {
    let mut line = format!(
        "cargo-panic: [{:>6}/{}]",
        units::fmt_duration((tick.t_ns / 100_000_000 * 100_000_000) as f64),
        units::fmt_duration(t.duration_ns as f64)
    );
    if !tick.active.is_empty() {
        line.push_str(&format!(" active: {}", tick.active.join(",")));
    }
    if let Some(r) = tick.rss {
        line.push_str(&format!(" | rss {}", units::fmt_bytes(r)));
    }
    if let Some(c) = tick.cpu_cores {
        line.push_str(&format!(" | cpu {c:.2}"));
    }
    if let (Some(ok), Some(f)) = (tick.workload_ok, tick.workload_failed) {
        line.push_str(&format!(" | ok {ok} failed {f}"));
    }
    if !tick.alive {
        line.push_str(" | target down");
    }
    eprintln!("{line}");
}

fn note_changes(changes: &[Change], events: &mut [EventReport], t: &Timeline, progress: bool) {
    for c in changes {
        match c {
            Change::Started {
                event,
                t_ns,
                requested_ns,
            } => {
                if let Some(i) = t.events.iter().position(|e| &e.id == event) {
                    events[i].started_ns = Some(*t_ns);
                    if t.events[i].start_when.is_none() {
                        events[i].start_late_ns = Some(t_ns.saturating_sub(*requested_ns));
                    }
                }
                if progress {
                    eprintln!("cargo-panic: {} start {event}", units::fmt_secs(*t_ns));
                }
            }
            Change::Ended {
                event,
                t_ns,
                outcome,
            } => {
                if let Some(i) = t.events.iter().position(|e| &e.id == event) {
                    events[i].ended_ns = Some(*t_ns);
                    events[i].outcome = Some(*outcome);
                }
                if progress {
                    eprintln!(
                        "cargo-panic: {} end {event} ({})",
                        units::fmt_secs(*t_ns),
                        format!("{outcome:?}").to_lowercase()
                    );
                }
            }
        }
    }
}

/// The report's kernel section: thread totals over every incarnation and,
/// for a target that ran once, the per-site split of the timed regions
/// (the 30 with the most self time).
fn kernel_section(
    m: &panic_bpf::Monitor,
    manifest: Option<&Manifest>,
    snaps: &[Snapshot],
    restarts: u32,
) -> Result<serde_json::Value> {
    let rep = m.report().context("reading the kernel's accounting")?;
    let (Some(manifest), Some(snap), 0) = (manifest, snaps.last(), restarts) else {
        let totals = crate::kernel::KernelTimes::from(rep.task_totals());
        return Ok(serde_json::json!({
            "status": "on",
            "per_site": false,
            "reason": "the target was restarted (or left no segment): thread totals only",
            "totals": totals,
            "threads": rep.tasks.len(),
        }));
    };
    let h = &snap.header;
    let end = if h.tsc_end != 0 {
        (h.tsc_end, h.ns_end)
    } else {
        panic_runtime::Clock::now()
    };
    let (section, per_site) = crate::kernel::join(manifest, snap, end, &rep);
    let mut top: Vec<(usize, crate::kernel::SiteKernel)> = per_site
        .into_iter()
        .enumerate()
        .filter_map(|(i, k)| Some((i, k?)))
        .collect();
    top.sort_by_key(|(_, k)| std::cmp::Reverse(k.self_ns));
    let sites: Vec<serde_json::Value> = top
        .iter()
        .take(30)
        .map(|(i, k)| {
            let s = &manifest.sites[*i];
            serde_json::json!({"function": s.function, "file": s.file, "line": s.line, "kernel": k})
        })
        .collect();
    let mut v = serde_json::to_value(&section)?;
    v["sites"] = serde_json::Value::Array(sites);
    Ok(v)
}

/// Drives the mechanisms to this tick's levels.
#[allow(clippy::too_many_arguments)]
fn apply(
    active: &[Applied],
    changes: &[Change],
    t: &Timeline,
    run: &mut Run,
    limits: &mut HashMap<Via, Option<f64>>,
    net_now: &mut Option<NetLevel>,
    herds: &mut HashMap<usize, workload::BurstHandle>,
    events: &mut [EventReport],
    opts: &Options,
) {
    // Stressor processes: one per load event, stopped when it ends.
    for c in changes {
        if let Change::Ended { event, .. } = c
            && let Some(i) = t.events.iter().position(|e| &e.id == event)
        {
            if let Some(s) = run.stressors.remove(&i)
                && let Err(e) = s.stop()
            {
                events[i].errors.push(format!("{e:#}"));
            }
            if t.events[i].via == Via::Fill
                && let Some(s) = &mut run.scratch
                && !active.iter().any(|a| a.via == Via::Fill)
            {
                s.unfill();
            }
        }
    }
    let mut want: HashMap<Via, f64> = HashMap::new();
    let mut net: Option<NetLevel> = None;
    let mut freeze: Option<(u64, u64)> = None;
    for a in active {
        let e = &t.events[a.event];
        match (&a.level, e.via) {
            (Level::Scalar(v), Via::Spin | Via::Hog | Via::IoHog) => {
                if !run.stressors.contains_key(&a.event) {
                    let kind = match e.via {
                        Via::Spin => stress::Kind::Spin,
                        Via::Hog => stress::Kind::Hog,
                        _ => stress::Kind::Io {
                            dir: run
                                .io_dir
                                .as_ref()
                                .map_or_else(std::env::temp_dir, |d| d.path().to_path_buf()),
                            // Validated with the timeline (4KiB..=64MiB).
                            block: e
                                .args
                                .get("block")
                                .and_then(|b| {
                                    units::parse_as(
                                        &b.to_string().replace('"', ""),
                                        units::Dim::Bytes,
                                    )
                                    .ok()
                                })
                                .map_or(stress::DEFAULT_IO_BLOCK, |b| b as usize),
                        },
                    };
                    let cg = run.cgroup.clone();
                    match Stressor::spawn(&opts.exe, kind, |cmd| match &cg {
                        Some(cg) => cg.join_on_spawn(Group::Stress, cmd),
                        None => Ok(()),
                    }) {
                        Ok(s) => {
                            run.stressors.insert(a.event, s);
                        }
                        Err(err) => events[a.event].errors.push(format!("{err:#}")),
                    }
                }
                if let Some(s) = run.stressors.get_mut(&a.event)
                    && (s.requested() - v).abs() > 1e-9 * v.abs().max(1.0)
                    && let Err(err) = s.set(*v)
                {
                    let msg = format!("{err:#}");
                    if events[a.event].errors.last() != Some(&msg) {
                        events[a.event].errors.push(msg);
                    }
                }
            }
            (
                Level::Scalar(v),
                via @ (Via::Quota | Via::Limit | Via::Cpuset | Via::Pids | Via::Fill),
            ) => {
                let w = want.entry(via).or_insert(*v);
                *w = w.min(*v);
            }
            (Level::Scalar(_), Via::Herd) => {
                if !herds.contains_key(&a.event)
                    && let Some(w) = &run.workload
                {
                    let n = primary(&a.level).max(1.0) as u32;
                    let hold = e
                        .args
                        .get("hold")
                        .and_then(|h| units::parse_duration_ns(h.as_str().unwrap_or("")).ok())
                        .unwrap_or(1_000_000_000);
                    herds.insert(a.event, w.burst(n, Duration::from_nanos(hold)));
                }
            }
            (Level::Net(n), _) => net = Some(net.map_or(n.clone(), |m| harsher(&m, n))),
            (Level::Freeze(f), _) => {
                let frac = |p: u64, e: u64| p as f64 / e.max(1) as f64;
                if freeze.is_none_or(|(p, e)| frac(f.pause_ns, f.every_ns) > frac(p, e)) {
                    freeze = Some((f.pause_ns, f.every_ns));
                }
            }
            _ => {}
        }
    }
    // Limits: set when they change, lifted when no event asks for them.
    for via in [Via::Quota, Via::Limit, Via::Cpuset, Via::Pids, Via::Fill] {
        let v = want.get(&via).copied();
        if limits.get(&via).copied().flatten() == v && limits.contains_key(&via) {
            continue;
        }
        limits.insert(via, v);
        let result = match (via, &run.cgroup) {
            (Via::Fill, _) => match (&mut run.scratch, v) {
                (Some(s), Some(free)) => s.fill_to(free as u64),
                _ => Ok(()),
            },
            (_, None) if v.is_none() => Ok(()),
            (_, None) => Err(anyhow::anyhow!("no cgroup for the target")),
            (Via::Quota, Some(cg)) => cg.set_cpu_max(Group::Target, v),
            (Via::Limit, Some(cg)) => cg.set_memory_max(Group::Target, v.map(|b| b as u64)),
            (Via::Pids, Some(cg)) => cg.set_pids_max(Group::Target, v.map(|n| n as u64)),
            (Via::Cpuset, Some(cg)) => {
                let cpus: Vec<u32> = (0..v.map_or(0, |n| n as u32)).collect();
                cg.set_cpus(Group::Target, v.map(|_| &cpus[..]))
            }
            _ => Ok(()),
        };
        if let Err(err) = result {
            for a in active.iter().filter(|a| a.via == via) {
                events[a.event].errors.push(format!("{err:#}"));
            }
        }
    }
    if *net_now != net {
        if let Some(p) = &run.proxy {
            let f = net.as_ref().map(faults).unwrap_or_default();
            if let Err(err) = p.set_faults(f) {
                for a in active.iter().filter(|a| a.via == Via::Proxy) {
                    events[a.event].errors.push(err.to_string());
                }
            }
        }
        *net_now = net;
    }
    if let Some(f) = &run.freezer {
        let (p, e) = freeze.unwrap_or((0, 1));
        f.set(p, e);
    }
    if let Some(inj) = &mut run.injector {
        for (event, msg) in inj.apply(active) {
            if !events[event].errors.contains(&msg) {
                events[event].errors.push(msg);
            }
        }
    }
}
