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
use cargo_panic_core::controller::{self, Controller, ControllerSeries, RunConfig, Sample};
use cargo_panic_core::fuse::{self, FuseRule};
use cargo_panic_core::manifest::Manifest;
use cargo_panic_core::metrics;
use cargo_panic_core::profile::{Exit, Profile};
use panic_runtime::Clock;
use panic_runtime::abi;
use panic_runtime::segment::{Live, Snapshot};

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

/// What a process uses, read from /proc each controller period: CPU time
/// (utime + stime, all threads), resident memory, and bytes read and written
/// by block I/O.
struct ProcUsage {
    pid: u32,
    last_cpu: Option<(std::time::Instant, f64)>,
    last_io: Option<(std::time::Instant, f64)>,
    ticks_per_s: f64,
    page: f64,
}

impl ProcUsage {
    fn new(pid: u32) -> ProcUsage {
        // SAFETY: sysconf has no preconditions.
        let (hz, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        ProcUsage {
            pid,
            last_cpu: None,
            last_io: None,
            ticks_per_s: if hz > 0 { hz as f64 } else { 100.0 },
            page: if page > 0 { page as f64 } else { 4096.0 },
        }
    }

    /// CPU seconds so far (utime + stime: fields 14 and 15 of /proc/PID/stat).
    fn cpu_s(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        // The command name (field 2) may hold spaces: count from its ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        Some(ticks / self.ticks_per_s)
    }

    fn rss_bytes(&self) -> Option<f64> {
        let statm = std::fs::read_to_string(format!("/proc/{}/statm", self.pid)).ok()?;
        Some(statm.split_whitespace().nth(1)?.parse::<f64>().ok()? * self.page)
    }

    fn io_bytes(&self) -> Option<f64> {
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.pid)).ok()?;
        let field = |name: &str| {
            io.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        Some(field("read_bytes:")? + field("write_bytes:")?)
    }

    /// Usage of each of `resources` since the last sample (cpu in cores, io
    /// in bytes/s; memory is a level, in bytes). Rates are None on the first
    /// sample and whenever /proc does not answer (the process is gone).
    fn sample(&mut self, resources: &[String]) -> Vec<Option<f64>> {
        let now = std::time::Instant::now();
        resources
            .iter()
            .map(|r| match r.as_str() {
                "cpu" => {
                    let cur = self.cpu_s();
                    rate(&mut self.last_cpu, cur, now)
                }
                "io" => {
                    let cur = self.io_bytes();
                    rate(&mut self.last_io, cur, now)
                }
                "memory" => self.rss_bytes(),
                _ => None,
            })
            .collect()
    }
}

/// The rate of a counter since its previous reading (kept in `last`, per
/// counter, so one that /proc stops answering does not stall the others).
fn rate(
    last: &mut Option<(std::time::Instant, f64)>,
    cur: Option<f64>,
    now: std::time::Instant,
) -> Option<f64> {
    let cur = cur?;
    let prev = last.replace((now, cur))?;
    let dt = now.duration_since(prev.0).as_secs_f64();
    (dt > 0.0).then_some((cur - prev.1) / dt)
}

/// The regions each fuse rule on dwell watches, resolved against the
/// manifest once, and the live segment their p99s are read from each period.
struct DwellWatch {
    /// Per rule (same order): the histogram indices of the timed regions its
    /// pattern matches; None for rules that are not about dwell.
    hists: Vec<Option<Vec<u32>>>,
    live: Option<Live>,
}

impl DwellWatch {
    fn new(rules: &[FuseRule], manifest: &Manifest) -> DwellWatch {
        let hists = rules
            .iter()
            .map(|r| {
                let fuse::Trip::DwellP99 { pattern, .. } = &r.trip else {
                    return None;
                };
                // Validated with the run config: the glob compiles.
                let glob = globset::Glob::new(pattern).ok()?.compile_matcher();
                Some(
                    manifest
                        .sites
                        .iter()
                        .filter(|s| {
                            s.kind == panic_runtime::SiteKind::Entry && glob.is_match(&s.function)
                        })
                        .filter_map(|s| s.hist)
                        .collect(),
                )
            })
            .collect();
        DwellWatch { hists, live: None }
    }

    /// For each rule on dwell, the largest p99 among its regions that have
    /// samples, from a live snapshot (None for other rules, or before the
    /// program's segment exists). No snapshot when no rule is about dwell.
    fn p99s(&mut self, segment: &Path) -> Vec<Option<u64>> {
        if self.hists.iter().all(Option::is_none) {
            return vec![None; self.hists.len()];
        }
        if self.live.is_none() {
            self.live = Live::open(segment).ok();
        }
        let Some(snap) = self.live.as_mut().and_then(|l| l.snapshot().ok()) else {
            return vec![None; self.hists.len()];
        };
        self.hists
            .iter()
            .map(|hs| {
                hs.as_ref()?
                    .iter()
                    .filter_map(|&h| snap.hists.get(h as usize))
                    .filter(|h| h.count > 0)
                    .filter_map(|h| h.quantile(0.99))
                    .map(|t| snap.ticks_to_ns(t))
                    .max()
            })
            .collect()
    }
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
    if opts.syscalls {
        mode = needs_kernel(kernel, "--syscalls")?;
    }
    if run_config.as_ref().is_some_and(|c| !c.fuses.is_empty()) {
        mode = needs_kernel(kernel, "fuses (their table is in the kernel side's maps)")?;
    }
    let kernel = mode;
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

    cargo_panic_core::segfile::sweep_stale();
    let seg = cargo_panic_core::segfile::SegmentFile::new()?;

    let fuse_rules: Vec<FuseRule> = run_config
        .as_ref()
        .map(|c| c.fuses.clone())
        .unwrap_or_default();
    let fuse_names: Vec<String> = fuse_rules.iter().map(|f| f.name.clone()).collect();
    // Loaded before the program starts, so it is watched from its first instruction.
    let monitor = start_monitor(
        kernel,
        manifest.sites.len(),
        &panic_bpf::Options {
            budgets: &budget_list,
            syscalls: opts.syscalls,
            fuses: &fuse_names,
        },
    )?;

    let exec_path = if binary.components().count() == 1 {
        Path::new(".").join(&binary)
    } else {
        binary.clone()
    };
    let manifest = std::sync::Arc::new(manifest);
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
    cmd.args(args).env(abi::ENV_SHM, seg.path());
    let started = Instant::now();
    let mut child = match &monitor {
        Some(Ok(m)) => {
            cmd.env(abi::ENV_KTHREADS, m.threads_pin());
            m.spawn(&mut cmd).map_err(anyhow::Error::new)
        }
        _ => cmd.spawn().map_err(anyhow::Error::new),
    }
    .with_context(|| format!("failed to start {}", binary.display()))?;
    // While the target runs, Ctrl-C goes to it (same process group); we wait for
    // it to end and still write the profile. (Set after the spawn: an ignored
    // signal would be inherited by the target.)
    let guard = IgnoreInterrupts::new(child.id());
    let mut fuse_states = vec![fuse::FuseState::default(); fuse_rules.len()];
    let controller_config = run_config.as_ref().and_then(|c| c.controller.clone());
    let mut series = None;
    let status = match &monitor {
        Some(Ok(m)) => {
            let period = run_config
                .as_ref()
                .map_or(controller::DEFAULT_PERIOD_NS, |c| c.period_ns);
            let mut controller = controller_config.clone().map(Controller::new);
            let mut usage = ProcUsage::new(child.id());
            let mut s = controller_config
                .as_ref()
                .map(|c| ControllerSeries::new(period, c));
            let ticking = controller.is_some() || !fuse_rules.is_empty();
            let period = ticking.then(|| std::time::Duration::from_nanos(period));
            let mut previous: Option<Vec<f64>> = None;
            let mut dwell = DwellWatch::new(&fuse_rules, &manifest);
            let r = m.wait(&mut child, period, || {
                let t_ns = started.elapsed().as_nanos() as u64;
                if let (Some(c), Some(s)) = (controller.as_mut(), s.as_mut()) {
                    let u = usage.sample(&c.config.resources);
                    c.step(&u);
                    m.set_prices(&c.map_prices());
                    if let Ok(mut p) = shared_prices.lock() {
                        *p = Some(c.map_prices().to_vec());
                    }
                    s.samples.push(Sample {
                        t_ns,
                        usage: u,
                        price: c.prices.clone(),
                    });
                }
                if fuse_rules.is_empty() {
                    return;
                }
                let p99 = dwell.p99s(seg.path());
                let (resources, prices) = controller.as_ref().map_or((&[][..], Vec::new()), |c| {
                    (&c.config.resources[..], c.prices.clone())
                });
                let obs = fuse::Observation {
                    resources,
                    prices: &prices,
                    previous: previous.as_deref(),
                    p99_ns: &p99,
                };
                m.set_fuses(&fuse::evaluate(&fuse_rules, &mut fuse_states, &obs, t_ns));
                previous = Some(prices);
            });
            series = s;
            r.map_err(anyhow::Error::new)
        }
        _ => child.wait().map_err(anyhow::Error::new),
    }
    .context("failed to wait for the target")?;
    drop(guard);
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
    let exit = match (status.code(), status.signal()) {
        (Some(code), _) => Exit {
            code: Some(code),
            signal: None,
        },
        (None, sig) => Exit {
            code: None,
            signal: sig,
        },
    };
    let mut profile = Profile::build(
        &manifest,
        &snapshot,
        end,
        binary.display().to_string(),
        args.to_vec(),
        exit,
        wall_ns,
    )?;
    profile.controller = series;
    if let Some((counts, unknown)) = fuse_counts {
        profile.fuse_unknown_asks = unknown;
        profile.fuses = fuse_rules
            .iter()
            .zip(&fuse_states)
            .zip(
                counts
                    .iter()
                    .copied()
                    .chain(std::iter::repeat(Default::default())),
            )
            .map(|((rule, st), n)| fuse::ProfileFuse {
                name: rule.name.clone(),
                trip: rule.trip.clone(),
                changes: st
                    .changes
                    .iter()
                    .map(|&(t_ns, tripped)| fuse::FuseChange { t_ns, tripped })
                    .collect(),
                tripped_periods: st.tripped_periods,
                asks: n.asks,
                sheds: n.sheds,
            })
            .collect();
    }
    if let Some(report) = &kernel_report {
        profile.add_kernel(&manifest, &snapshot, end, report, &budget_list);
    } else if let Some(reason) = unavailable {
        profile.kernel = Some(cargo_panic_core::kernel::KernelSection::unavailable(reason));
    }
    cargo_panic_core::fsutil::write_json_atomic(out, &profile)?;
    eprintln!(
        "cargo-panic: profile of {} written to {} ({} sites)",
        binary.display(),
        out.display(),
        profile.sites.len()
    );
    Ok(cargo_panic_core::exit_code(status))
}

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
