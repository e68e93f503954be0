//! `cargo panic run`: runs an instrumented binary with a shared segment, passes its
//! stdin, stdout, stderr and exit status through, and writes the profile from the
//! segment once the program has ended, whichever way it ended (the segment is a
//! file, so even a SIGKILLed program leaves its counts behind).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cargo_panic_core::budget::{self, Budget};
use cargo_panic_core::controller::{self, RunConfig};
use cargo_panic_core::fuse::FuseRule;
use cargo_panic_core::manifest::Manifest;
use cargo_panic_core::metrics;
use cargo_panic_core::pricing::{PriceLoop, Usage};
use cargo_panic_core::profile::{Exit, Profile};
use cargo_panic_core::signature::evidence::{BudgetEvidence, Evidence, ExitEvidence};
use cargo_panic_core::signature::facts::SiteInfo;
use cargo_panic_core::signature::{self, Signature, collect};
use panic_runtime::Clock;
use panic_runtime::abi;
use panic_runtime::segment::Snapshot;

/// `--kernel`: whether to watch the program with the eBPF side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelMode {
    /// No kernel data.
    Off,
    /// Kernel data, or an error saying why it cannot be had.
    On,
    /// Kernel data when it can be had; otherwise the profile says why not.
    Auto,
}

/// Starts the kernel side for a program with `n_sites` sites, as `mode` asks.
/// Returns the monitor, or (auto only) why there is none.
fn start_monitor(
    mode: KernelMode,
    n_sites: usize,
    opts: &panic_bpf::Options<'_>,
) -> Result<Option<Result<panic_bpf::Monitor, String>>> {
    if mode == KernelMode::Off {
        return Ok(None);
    }
    let n = u32::try_from(n_sites).context("too many sites for the kernel side")?;
    match panic_bpf::Monitor::start(n, opts) {
        Ok(m) => Ok(Some(Ok(m))),
        Err(e) if mode == KernelMode::Auto => {
            eprintln!("cargo-panic: running without kernel data: {e}");
            Ok(Some(Err(e.to_string())))
        }
        Err(e) => Err(anyhow::Error::new(e).context("cannot watch the program from the kernel")),
    }
}

/// The program's own cgroup: with a memory limit (`--memory-limit`), when
/// its usage is measured (`measured`: the kernel side watches it or a
/// controller prices it; the cgroup counts all its processes) and when a
/// controller prices pressure. Needed (an error without it) for the limit
/// and for pressure; otherwise the run goes on without one and says so.
fn target_cgroup(
    memory_limit: Option<u64>,
    measured: bool,
    pressure: bool,
) -> Result<Option<cargo_panic_core::cgroup::RunCgroup>> {
    use cargo_panic_core::cgroup::{self, Controller, Group, RunCgroup};
    if memory_limit.is_none() && !measured && !pressure {
        return Ok(None);
    }
    // Not the cpu controller: in a cpu group of its own (RT group
    // scheduling), a program could no longer make threads real-time. CPU
    // time comes from cgroup v2's core cpu.stat, or else from /proc.
    let mut want = vec![Controller::Memory];
    if pressure {
        want.push(Controller::Pressure);
    }
    let cg = match RunCgroup::create(&cgroup::new_run_id(), &want) {
        Ok(cg) => cg,
        Err(e) if memory_limit.is_some() => {
            return Err(e.context("--memory-limit needs a memory cgroup of its own"));
        }
        Err(e) if pressure => {
            return Err(e.context(
                "the controller prices pressure, which is read from a cgroup of the program's own",
            ));
        }
        Err(e) => {
            eprintln!(
                "cargo-panic: the program runs in no cgroup of its own ({e:#}); its CPU and \
                 memory use are read from /proc of its main process"
            );
            return Ok(None);
        }
    };
    if let Some(limit) = memory_limit {
        cg.set_memory_max(Group::Target, Some(limit))?;
    }
    Ok(Some(cg))
}

/// The kernel mode for a feature that needs the kernel side: on, unless the
/// user made the kernel side off or optional, which is an error.
fn needs_kernel(kernel: Option<KernelMode>, what: &str) -> Result<KernelMode> {
    match kernel {
        None | Some(KernelMode::On) => Ok(KernelMode::On),
        Some(m) => bail!(
            "{what} needs the kernel side, so it cannot go with --kernel={}; use --kernel (or leave it out)",
            if m == KernelMode::Off { "off" } else { "auto" }
        ),
    }
}

/// The budgets of `--budget`, placed on the manifest's sites, and the kernel
/// mode they leave: budgets need the kernel side, so they turn it on.
fn budgets(
    specs: &[String],
    kernel: Option<KernelMode>,
    manifest: &Manifest,
) -> Result<(Vec<panic_bpf::BudgetSpec>, KernelMode)> {
    let parsed = specs
        .iter()
        .map(|s| Budget::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let placed = budget::resolve(&parsed, manifest)?;
    let mode = match kernel {
        _ if placed.is_empty() => kernel.unwrap_or(KernelMode::Off),
        _ => needs_kernel(kernel, "--budget (budgets are enforced by the kernel side)")?,
    };
    let specs = placed
        .iter()
        .map(|b| panic_bpf::BudgetSpec {
            site: b.site,
            hist: manifest.sites[b.site as usize].hist.unwrap_or(u32::MAX),
            budget_ns: b.budget_ns,
            signal: b.action.signal(),
        })
        .collect();
    Ok((specs, mode))
}

/// `cargo panic run`'s options beyond the profile path and the command.
#[derive(Debug, Default)]
pub struct RunOptions {
    pub kernel: Option<KernelMode>,
    pub budgets: Vec<String>,
    pub config: Option<PathBuf>,
    pub metrics: Option<String>,
    /// The kernel's syscall path (count and time per system call).
    pub syscalls: bool,
    /// The syscall path attached for this percentage of the time only (the
    /// profile holds the calls seen in those windows).
    pub syscall_sample: Option<u32>,
    /// Stop the program as hung when no instrumented code ran for this long (ns).
    pub hang_timeout_ns: Option<u64>,
    /// Stop the program when it runs longer than this (ns).
    pub timeout_ns: Option<u64>,
    /// Run the program in a cgroup of its own with this memory limit (bytes):
    /// going over it OOM-kills the program, and the signature says so.
    pub memory_limit: Option<u64>,
    /// Run a failing program again this many times to see whether it fails
    /// the same way (the signature's confidence reflects it).
    pub replay: u32,
}

/// What the checks before a run settle: the manifest, the config, the
/// budgets placed and the kernel mode.
struct Plan<'a> {
    opts: &'a RunOptions,
    binary: PathBuf,
    args: &'a [String],
    manifest: std::sync::Arc<Manifest>,
    run_config: Option<RunConfig>,
    budget_list: Vec<panic_bpf::BudgetSpec>,
    kernel: KernelMode,
    /// For sanitizer reports (found once, not per replay).
    symbolizer: Option<PathBuf>,
}

pub fn run(out: &Path, opts: &RunOptions, command: &[String]) -> Result<i32> {
    let (kernel, budget_specs, config) = (opts.kernel, &opts.budgets, opts.config.as_deref());
    let binary = PathBuf::from(&command[0]);
    let args = &command[1..];
    // Everything that can be wrong is checked before the program runs.
    let manifest = Manifest::for_binary(&binary)?;
    let run_config = config.map(RunConfig::read).transpose()?;
    let (budget_list, mut mode) = budgets(budget_specs, kernel, &manifest)?;
    if run_config.as_ref().is_some_and(|c| c.controller.is_some()) {
        mode = needs_kernel(
            kernel,
            "a price controller (its prices live in the kernel side's price map)",
        )?;
    }
    if opts.syscalls || opts.syscall_sample.is_some() {
        mode = needs_kernel(
            kernel,
            if opts.syscalls {
                "--syscalls"
            } else {
                "--syscall-sample"
            },
        )?;
    }
    if run_config.as_ref().is_some_and(|c| !c.fuses.is_empty()) {
        mode = needs_kernel(kernel, "fuses (their table is in the kernel side's maps)")?;
    }
    let out_dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !out_dir.is_dir() {
        bail!(
            "cannot write the profile to {}: directory {} does not exist; create it or choose another --out",
            out.display(),
            out_dir.display()
        );
    }
    let plan = Plan {
        opts,
        binary,
        args,
        manifest: std::sync::Arc::new(manifest),
        run_config,
        budget_list,
        kernel: mode,
        symbolizer: cargo_panic_core::clang::symbolizer(),
    };

    let (status, mut profile) = execute(&plan)?;
    if let Some(sig) = profile.signature.take() {
        profile.signature = Some(replay(&plan, sig)?);
    }
    cargo_panic_core::fsutil::write_json_atomic(out, &profile)?;
    eprintln!(
        "cargo-panic: profile of {} written to {} ({} sites)",
        plan.binary.display(),
        out.display(),
        profile.sites.len()
    );
    if let Some(sig) = &profile.signature {
        eprintln!("{}", one_line(sig, out));
    }
    Ok(cargo_panic_core::exit_code(status))
}

/// The failure in one line, and where to read why.
fn one_line(sig: &Signature, out: &Path) -> String {
    format!(
        "cargo-panic: the program failed: {}; `cargo panic explain {}` says why",
        sig.headline(),
        out.display()
    )
}

/// `--replay N`: runs the failing configuration again N times and counts
/// the runs that end with the same signature hash.
fn replay(plan: &Plan<'_>, sig: Signature) -> Result<Signature> {
    let n = plan.opts.replay;
    if n == 0 {
        return Ok(sig);
    }
    let mut same = 1;
    for i in 1..=n {
        eprintln!("cargo-panic: replay {i} of {n}");
        let (_, p) = execute(plan)?;
        match &p.signature {
            Some(s) if s.hash == sig.hash => same += 1,
            Some(s) => eprintln!(
                "cargo-panic: replay {i} ended differently: {} (signature {})",
                s.class, s.hash
            ),
            None => eprintln!("cargo-panic: replay {i} did not fail"),
        }
    }
    Ok(sig.with_replay(n + 1, same))
}

/// One run of the program: spawned watched, waited for, its profile built
/// (with evidence and signature when it failed).
fn execute(plan: &Plan<'_>) -> Result<(std::process::ExitStatus, Profile)> {
    let (opts, binary, args, manifest) = (plan.opts, &plan.binary, plan.args, &plan.manifest);
    let (run_config, budget_list) = (plan.run_config.as_ref(), &plan.budget_list);
    cargo_panic_core::segfile::sweep_stale();
    let seg = cargo_panic_core::segfile::SegmentFile::new()?;

    let fuse_rules: Vec<FuseRule> = run_config.map(|c| c.fuses.clone()).unwrap_or_default();
    let fuse_names: Vec<String> = fuse_rules.iter().map(|f| f.name.clone()).collect();
    // Loaded before the program starts, so it is watched from its first instruction.
    let monitor = start_monitor(
        plan.kernel,
        manifest.sites.len(),
        &panic_bpf::Options {
            budgets: budget_list,
            syscalls: opts.syscalls || opts.syscall_sample.is_some(),
            syscall_sample: opts.syscall_sample,
            network: run_config.is_some_and(PriceLoop::needs_network),
            fuses: &fuse_names,
        },
    )?;

    let exec_path = if binary.components().count() == 1 {
        Path::new(".").join(binary)
    } else {
        binary.clone()
    };
    let shared_prices: metrics::SharedPrices = std::sync::Arc::new(std::sync::Mutex::new(
        matches!(monitor, Some(Ok(_))).then(|| vec![0.0; panic_bpf::RESOURCES.len()]),
    ));
    let _metrics = match &opts.metrics {
        Some(addr) => {
            let server = metrics::Server::start(
                addr,
                manifest.clone(),
                seg.path().to_path_buf(),
                shared_prices.clone(),
            )?;
            eprintln!("cargo-panic: metrics on http://{}/metrics", server.addr);
            Some(server)
        }
        None => None,
    };
    let mut cmd = Command::new(&exec_path);
    cmd.args(args)
        .env(abi::ENV_SHM, seg.path())
        .stderr(std::process::Stdio::piped());
    // Sanitizer reports name functions and lines only with a symbolizer of
    // their own LLVM (the one on PATH may be older and print bare addresses).
    if std::env::var_os("ASAN_SYMBOLIZER_PATH").is_none()
        && let Some(sym) = plan.symbolizer.as_ref()
    {
        for var in [
            "ASAN_SYMBOLIZER_PATH",
            "UBSAN_SYMBOLIZER_PATH",
            "TSAN_SYMBOLIZER_PATH",
        ] {
            cmd.env(var, sym);
        }
    }
    // Kept until the end: dropping it removes the cgroup (after the OOM count
    // was read).
    let cgroup = target_cgroup(
        opts.memory_limit,
        matches!(monitor, Some(Ok(_))) || run_config.is_some_and(|c| c.controller.is_some()),
        run_config.is_some_and(controller::RunConfig::needs_pressure),
    )?;
    if let Some(cg) = &cgroup {
        cg.join_on_spawn(cargo_panic_core::cgroup::Group::Target, &mut cmd)?;
    }
    let started = Instant::now();
    let mut child = match &monitor {
        Some(Ok(m)) => {
            cmd.env(abi::ENV_KTHREADS, m.threads_pin());
            m.spawn(&mut cmd).map_err(anyhow::Error::new)
        }
        _ => cmd.spawn().map_err(anyhow::Error::new),
    }
    .with_context(|| format!("failed to start {}", binary.display()))?;
    // Its stderr goes on to ours as it comes; the tail is kept as evidence.
    let tee = child.stderr.take().map(collect::StderrTee::start);
    let oom = collect::OomWatch::start(child.id());
    let watch_sites = collect::WatchSites::of(manifest);
    let watcher = collect::Watcher::start(
        child.id(),
        cargo_panic_core::cgroup::pidfd_open(child.id())
            .context("cannot open a pidfd for the program")?,
        seg.path().to_path_buf(),
        watch_sites.clone(),
        collect::WatchOptions {
            period: WATCH_PERIOD,
            hang_after: opts.hang_timeout_ns.map(std::time::Duration::from_nanos),
            timeout: opts.timeout_ns.map(std::time::Duration::from_nanos),
        },
    );
    // While the target runs, Ctrl-C goes to it (same process group); we wait for
    // it to end and still write the profile. (Set after the spawn: an ignored
    // signal would be inherited by the target.)
    let guard = IgnoreInterrupts::new(child.id());
    let mut prices_loop = run_config.map(|c| {
        let usage = match &cgroup {
            Some(cg) => Usage::in_cgroup(
                child.id(),
                cg.stats_reader(cargo_panic_core::cgroup::Group::Target),
            ),
            None => Usage::new(child.id()),
        };
        PriceLoop::new(c, manifest, usage)
    });
    let status = match &monitor {
        Some(Ok(m)) => {
            let period = run_config.map_or(controller::DEFAULT_PERIOD_NS, |c| c.period_ns);
            let ticking = prices_loop.as_ref().is_some_and(PriceLoop::ticking);
            let period = ticking.then(|| std::time::Duration::from_nanos(period));
            let r = m.wait(&mut child, period, || {
                let Some(pl) = prices_loop.as_mut() else {
                    return;
                };
                let t_ns = started.elapsed().as_nanos() as u64;
                let (prices, fuses) = pl.tick(t_ns, seg.path(), Some(m.net_bytes()));
                if let Some(p) = prices {
                    m.set_prices(&p);
                    if let Ok(mut shared) = shared_prices.lock() {
                        *shared = Some(p.to_vec());
                    }
                }
                if !fuses.is_empty() {
                    m.set_fuses(&fuses);
                }
            });
            r.map_err(anyhow::Error::new)
        }
        _ => child.wait().map_err(anyhow::Error::new),
    }
    .context("failed to wait for the target")?;
    drop(guard);
    let watched = watcher.finish();
    let stderr_bytes = tee.map(|t| t.finish()).unwrap_or_default();
    let wall_ns = started.elapsed().as_nanos() as u64;
    let end = Clock::now();
    // Read, then unload (links, maps and pins go with the monitor).
    let kernel_report = match &monitor {
        Some(Ok(m)) => Some(m.report().context("reading the kernel's accounting")?),
        _ => None,
    };
    let fuse_counts = match &monitor {
        Some(Ok(m)) => Some(m.fuse_counts()),
        _ => None,
    };
    let unavailable = match monitor {
        Some(Err(reason)) => Some(reason),
        _ => None,
    };

    let bytes = std::fs::read(seg.path()).map_err(|e| {
        anyhow::anyhow!(
            "{} did not create its profiling segment ({e}); the program ended before the cargo-panic \
             runtime started, or it is not an instrumented build",
            binary.display()
        )
    })?;
    let snapshot = Snapshot::parse(&bytes).with_context(|| {
        format!(
            "the profiling segment of {} is unreadable",
            binary.display()
        )
    })?;
    let exit = Exit {
        code: status.code(),
        signal: status.signal(),
    };
    let mut profile = Profile::build(
        manifest,
        &snapshot,
        end,
        binary.display().to_string(),
        args.to_vec(),
        exit,
        wall_ns,
    )?;
    if let Some((counts, unknown)) = fuse_counts {
        profile.fuse_unknown_asks = unknown;
        if let Some(pl) = prices_loop {
            let (series, fuses) = pl.finish(&counts);
            profile.controller = series;
            profile.fuses = fuses;
        }
    }
    if let Some(report) = &kernel_report {
        profile.add_kernel(manifest, &snapshot, end, report, budget_list);
    } else if let Some(reason) = unavailable {
        profile.kernel = Some(cargo_panic_core::kernel::KernelSection::unavailable(reason));
    }
    let (stderr, stderr_tail) = collect::stderr_evidence(&stderr_bytes);
    // A sanitizer report is a finding even when the program went on to exit 0
    // (UBSan by default, ASan with halt_on_error=0).
    let failed = status.code() != Some(0) || watched.hang.is_some() || stderr.sanitizer.is_some();
    if failed {
        let evidence = Evidence {
            exit: ExitEvidence {
                code: status.code(),
                signal: status.signal(),
                fatal_signal: profile.runtime.fatal_signal,
                fault_addr: profile.runtime.fault_addr,
                fault_sp: profile.runtime.fault_sp,
                signal_tid: profile.runtime.signal_tid,
            },
            stderr,
            stderr_tail,
            threads: collect::threads(&snapshot, watched.threads, &watch_sites.mutex),
            hang: watched.hang,
            oom: oom.finish(status.signal()),
            memory: watched.memory,
            allocations: watched.allocations,
            recursion: collect::recursion(manifest, &snapshot.counters),
            budgets: profile
                .budget_events
                .iter()
                .filter(|b| b.action != "record")
                .map(|b| BudgetEvidence {
                    site: b.site,
                    tid: b.tid,
                    budget_ns: b.budget_ns,
                    dwell_ns: b.dwell_ns,
                    action: b.action.clone(),
                })
                .collect(),
            ..Evidence::default()
        };
        let sites: Vec<SiteInfo> = profile.sites.iter().map(SiteInfo::from).collect();
        profile.signature = signature::classify(&evidence, &sites);
        profile.evidence = Some(evidence);
    }
    drop(cgroup);
    Ok((status, profile))
}

/// How often the watcher samples the segment and `/proc`.
const WATCH_PERIOD: std::time::Duration = std::time::Duration::from_millis(100);

/// The target's pid while it runs, for the forwarding handler (0: none).
static TARGET_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// SIGTERM or SIGHUP to cargo-panic goes on to the target; cargo-panic keeps
/// waiting, so the target's end is still profiled and everything this run
/// made (pins, links, segment) is still removed.
extern "C" fn forward(sig: libc::c_int) {
    let pid = TARGET_PID.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// While the target runs: SIGINT and SIGQUIT are ignored here (the terminal
/// delivers them to the target too, in the same process group), SIGTERM and
/// SIGHUP are forwarded to it. Restored on drop.
struct IgnoreInterrupts {
    old: [(libc::c_int, libc::sighandler_t); 4],
}

impl IgnoreInterrupts {
    fn new(target: u32) -> Self {
        TARGET_PID.store(target as i32, std::sync::atomic::Ordering::Relaxed);
        let handler = forward as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: SIG_IGN and a handler that only calls kill are sound dispositions.
        unsafe {
            IgnoreInterrupts {
                old: [
                    (libc::SIGINT, libc::signal(libc::SIGINT, libc::SIG_IGN)),
                    (libc::SIGQUIT, libc::signal(libc::SIGQUIT, libc::SIG_IGN)),
                    (libc::SIGTERM, libc::signal(libc::SIGTERM, handler)),
                    (libc::SIGHUP, libc::signal(libc::SIGHUP, handler)),
                ],
            }
        }
    }
}

impl Drop for IgnoreInterrupts {
    fn drop(&mut self) {
        // SAFETY: restores the dispositions saved in `new`.
        unsafe {
            for (sig, old) in self.old {
                libc::signal(sig, old);
            }
        }
        TARGET_PID.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}
