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
use cargo_panic_core::pricing::PriceLoop;
use cargo_panic_core::profile::{Exit, Profile};
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
    let mut prices_loop = run_config
        .as_ref()
        .map(|c| PriceLoop::new(c, &manifest, child.id()));
    let status = match &monitor {
        Some(Ok(m)) => {
            let period = run_config
                .as_ref()
                .map_or(controller::DEFAULT_PERIOD_NS, |c| c.period_ns);
            let ticking = prices_loop.as_ref().is_some_and(PriceLoop::ticking);
            let period = ticking.then(|| std::time::Duration::from_nanos(period));
            let r = m.wait(&mut child, period, || {
                let Some(pl) = prices_loop.as_mut() else {
                    return;
                };
                let t_ns = started.elapsed().as_nanos() as u64;
                let (prices, fuses) = pl.tick(t_ns, seg.path());
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
    if let Some((counts, unknown)) = fuse_counts {
        profile.fuse_unknown_asks = unknown;
        if let Some(pl) = prices_loop {
            let (series, fuses) = pl.finish(&counts);
            profile.controller = series;
            profile.fuses = fuses;
        }
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
