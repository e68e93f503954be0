//! `cargo panic attack` and `cargo panic timeline`: the IO shell around the
//! attack engine (`cargo_panic_core::attack`): reads the timeline or preset,
//! runs the engine, writes the report, prints the summary, picks the exit
//! status (0 survived, 1 failed, 2 the tool could not run).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cargo_panic_core::attack::condition;
use cargo_panic_core::attack::engine::{self, Options};
use cargo_panic_core::attack::feasibility;
use cargo_panic_core::attack::html;
use cargo_panic_core::attack::report::{Report, RunSummary};
use cargo_panic_core::attack::stats;
use cargo_panic_core::attack::timeline::Timeline;
use cargo_panic_core::attack::units;

/// The presets shipped with cargo-panic (the files are in `cargo-panic/presets/`).
pub const PRESETS: [(&str, &str); 6] = [
    (
        "production-spike",
        include_str!("../presets/production-spike.yaml"),
    ),
    (
        "memory-starved",
        include_str!("../presets/memory-starved.yaml"),
    ),
    (
        "disk-degraded",
        include_str!("../presets/disk-degraded.yaml"),
    ),
    (
        "network-partition",
        include_str!("../presets/network-partition.yaml"),
    ),
    (
        "thundering-herd",
        include_str!("../presets/thundering-herd.yaml"),
    ),
    ("cascade", include_str!("../presets/cascade.yaml")),
];

/// A preset's text.
pub fn preset(name: &str) -> Result<&'static str> {
    PRESETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .with_context(|| {
            format!(
                "no preset named '{name}'; presets: {}",
                PRESETS.map(|(n, _)| n).join(", ")
            )
        })
}

/// Reads and validates a timeline file; every error carries file:line:column.
pub fn read_timeline(path: &Path) -> Result<Timeline> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the timeline {}", path.display()))?;
    Ok(Timeline::parse(&text, &path.display().to_string())?)
}

/// `cargo panic attack`'s options.
#[derive(clap::Args)]
pub struct AttackArgs {
    /// The timeline (YAML or JSON; see docs/timeline.md)
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,
    /// A shipped timeline: production-spike, memory-starved, disk-degraded,
    /// network-partition, thundering-herd, cascade
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// Stretch or shrink the timeline to this length (every time scales)
    #[arg(long)]
    pub duration: Option<String>,
    /// Override the timeline's seed
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where to write the report (JSON)
    #[arg(long, short, default_value = "panic-attack.json")]
    pub out: PathBuf,
    /// A condition that must hold at the end, e.g. 'crashes == 0' or
    /// 'p99(my_crate::handle) < 20ms' (repeatable)
    #[arg(long = "assert", value_name = "COND")]
    pub asserts: Vec<String>,
    /// Run the attack N times, the seed increased by one each time; the
    /// report keeps every run's outcome and run-level metrics (what
    /// `compare` then tests) and the details of the first failing run
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub repeat: u32,
    /// When a run fails, run the same configuration (same seed) N more
    /// times: the failure's signature gets how many of them failed the same
    /// way, and its confidence is scaled by that share
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub replay: u32,
    /// Watch the target from the kernel (eBPF): per-thread and per-site
    /// on-CPU, run-queue and blocked time in the report. `auto` (default)
    /// uses it when it can be had and says why not otherwise.
    #[arg(long, value_enum, default_value = "auto", num_args = 0..=1, default_missing_value = "on", require_equals = true)]
    pub kernel: crate::run_cmd::KernelMode,
    /// The run config (YAML or JSON, as for `cargo panic run --config`): a
    /// price controller and fuses; `fuse_trips` conditions read its fuses
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run even when the verifier finds the timeline infeasible (the verdict
    /// still goes into the report)
    #[arg(long)]
    pub no_verify: bool,
    /// Also write the report as one self-contained HTML file with plots
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// No progress lines
    #[arg(long)]
    pub quiet: bool,
    /// The program and its arguments (or `program:` in the timeline)
    #[arg(last = true, num_args = 0..)]
    pub command: Vec<String>,
}

pub fn attack(a: AttackArgs) -> Result<i32> {
    let (mut t, source) = match (&a.timeline, &a.preset) {
        (Some(_), Some(_)) => bail!("give --timeline or --preset, not both"),
        (Some(f), None) => (read_timeline(f)?, f.display().to_string()),
        (None, Some(p)) => (
            Timeline::parse(preset(p)?, &format!("preset {p}"))?,
            format!("preset {p}"),
        ),
        (None, None) => bail!(
            "say what to do: --timeline t.yaml, or --preset NAME (presets: {})",
            PRESETS.map(|(n, _)| n).join(", ")
        ),
    };
    if let Some(d) = &a.duration {
        let ns = units::parse_duration_ns(d)
            .ok()
            .filter(|&ns| ns > 0)
            .with_context(|| format!("--duration {d} is not a duration such as 60s"))?;
        t = t.scaled_to(ns);
    }
    if let Some(s) = a.seed {
        t.seed = s;
    }
    let command = if !a.command.is_empty() {
        a.command.clone()
    } else if let Some(p) = &t.program {
        std::iter::once(p.clone())
            .chain(t.args.iter().cloned())
            .collect()
    } else {
        bail!("no program to attack: give it after `--` (or as `program:` in the timeline)");
    };
    let asserts = a
        .asserts
        .iter()
        .map(|s| condition::parse(s).map_err(|e| anyhow::anyhow!("--assert '{s}': {e}")))
        .collect::<Result<Vec<_>>>()?;
    for c in &asserts {
        if let Some(id) = c.events().into_iter().find(|id| t.event(id).is_none()) {
            bail!("--assert names event '{id}', which the timeline does not have");
        }
    }
    let out_dir = match a.out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !out_dir.is_dir() {
        bail!(
            "cannot write the report to {}: directory {} does not exist",
            a.out.display(),
            out_dir.display()
        );
    }
    let run_config = a
        .config
        .as_deref()
        .map(cargo_panic_core::controller::RunConfig::read)
        .transpose()?;
    // The verifier first: a timeline that cannot happen is refused.
    let machine = cargo_panic_core::attack::probe::machine();
    let verdict = panic_verifier::feasible::check(&feasibility::plan(&t, &machine));
    if !verdict.feasible && !a.no_verify {
        bail!(
            "{}the verifier refuses this timeline; fix it, or run anyway with --no-verify",
            feasibility::describe(&verdict)
        );
    }
    let exe = std::env::current_exe().context("cannot find the cargo-panic executable")?;
    engine::catch_interrupts();
    if a.repeat == 0 {
        bail!("--repeat 0 runs nothing; give at least 1");
    }
    let base_seed = t.seed;
    let run_once = |seed: u64| {
        let mut t = t.clone();
        t.seed = seed;
        engine::attack(&Options {
            timeline: t,
            source: source.clone(),
            command: command.clone(),
            asserts: asserts.clone(),
            exe: exe.clone(),
            progress: !a.quiet,
            feasibility: Some(verdict.clone()),
            run_config: run_config.clone(),
            kernel: match a.kernel {
                crate::run_cmd::KernelMode::Off => engine::KernelUse::Off,
                crate::run_cmd::KernelMode::On => engine::KernelUse::On,
                crate::run_cmd::KernelMode::Auto => engine::KernelUse::Auto,
            },
        })
    };
    let mut reports = Vec::new();
    let mut failing_seed = None;
    for i in 0..a.repeat {
        let seed = base_seed.wrapping_add(u64::from(i));
        if a.repeat > 1 {
            eprintln!("cargo-panic: run {}/{} (seed {seed})", i + 1, a.repeat);
        }
        let r = run_once(seed)?;
        let stop = r.interrupted;
        if failing_seed.is_none() && first_signature(&r).is_some() {
            failing_seed = Some(seed);
        }
        reports.push(r);
        if stop {
            break;
        }
    }
    let mut report = combine(reports);
    if let (Some(seed), true) = (failing_seed, a.replay > 0) {
        let hash = first_signature(&report).map(|s| s.hash.clone());
        let (mut runs, mut same) = (1, 1);
        for i in 1..=a.replay {
            eprintln!("cargo-panic: replay {i}/{} (seed {seed})", a.replay);
            let r = run_once(seed)?;
            if r.interrupted {
                break;
            }
            runs += 1;
            if first_signature(&r).map(|s| &s.hash) == hash.as_ref() {
                same += 1;
            }
        }
        if let Some(f) = report.failures.iter_mut().find(|f| f.signature.is_some()) {
            f.signature = f.signature.take().map(|s| s.with_replay(runs, same));
        }
    }
    cargo_panic_core::fsutil::write_json_atomic(&a.out, &report)?;
    if let Some(h) = &a.html {
        cargo_panic_core::fsutil::write_atomic(h, html::render(&report).as_bytes())?;
        eprintln!("cargo-panic: HTML report written to {}", h.display());
    }
    eprint!("{}", summary(&report));
    eprintln!("cargo-panic: report written to {}", a.out.display());
    Ok(report.exit_code)
}

/// The signature of a report's first failure that has one.
fn first_signature(r: &Report) -> Option<&cargo_panic_core::signature::Signature> {
    r.failures.iter().find_map(|f| f.signature.as_ref())
}

/// One report for a repeated attack: the first failing run's details (or
/// the first run's), every run's summary, and the verdict over all of them.
fn combine(mut reports: Vec<Report>) -> Report {
    if reports.len() == 1 {
        return reports.remove(0);
    }
    let runs: Vec<RunSummary> = reports.iter().map(RunSummary::of).collect();
    let pick = reports
        .iter()
        .position(|r| !r.verdict.survived)
        .unwrap_or(0);
    let mut report = reports.swap_remove(pick);
    report.verdict.reasons = runs
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            r.reasons
                .iter()
                .map(move |why| format!("run {} (seed {}): {why}", i + 1, r.seed))
        })
        .collect();
    report.verdict.survived = runs.iter().all(|r| r.survived);
    report.exit_code = i32::from(!report.verdict.survived);
    report.runs = runs;
    report
}

/// The end-of-run summary for the terminal.
pub fn summary(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "cargo-panic: attack on {} ({}, seed {}): {}",
        r.program,
        r.source,
        r.seed,
        if r.verdict.survived {
            "SURVIVED"
        } else {
            "FAILED"
        }
    );
    for e in &r.events {
        let when = match (e.started_ns, e.ended_ns) {
            (Some(a), Some(b)) => format!("{}..{}", units::fmt_secs(a), units::fmt_secs(b)),
            (Some(a), None) => format!("{}..", units::fmt_secs(a)),
            _ => "never started".into(),
        };
        let fid = e
            .fidelity
            .map(|f| format!(", achieved/requested {:.2}", f))
            .unwrap_or_default();
        let outcome = e
            .outcome
            .map(|o| format!(" {}", format!("{o:?}").to_lowercase()))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  {:<16} {:<11} {:<7} {when}{outcome}{fid}",
            e.id,
            e.axis.name(),
            e.via.name()
        );
        for err in &e.errors {
            let _ = writeln!(s, "      error: {err}");
        }
    }
    if !r.runs.is_empty() {
        let ok = r.runs.iter().filter(|x| x.survived).count();
        let _ = writeln!(
            s,
            "  {} runs, {ok} survived (details above: run with seed {})",
            r.runs.len(),
            r.seed
        );
    }
    for reason in &r.verdict.reasons {
        let _ = writeln!(s, "  - {reason}");
    }
    for sig in r.failures.iter().filter_map(|f| f.signature.as_ref()) {
        let _ = writeln!(s, "  failure: {}", sig.headline());
    }
    s
}

/// The metrics `compare` tests, as samples: the per-tick values of one
/// report's series (a tick without a value gives no sample).
pub fn metrics(r: &Report) -> BTreeMap<String, Vec<f64>> {
    let mut m: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut put = |name: &str, v: Option<f64>| {
        if let Some(v) = v {
            m.entry(name.to_string()).or_default().push(v);
        }
    };
    for t in &r.series {
        put("target.rss_bytes", t.rss);
        put("target.cpu_cores", t.cpu_cores);
        put("target.threads", t.threads);
        put("workload.ok_per_tick", t.workload_ok.map(|v| v as f64));
        put(
            "workload.failed_per_tick",
            t.workload_failed.map(|v| v as f64),
        );
        put(
            "workload.latency_p99_ns",
            t.workload_p99_ns.map(|v| v as f64),
        );
    }
    m
}

/// The run-level metrics of a repeated attack, one sample per run.
pub fn run_metrics(r: &Report) -> BTreeMap<String, Vec<f64>> {
    let mut m: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for run in &r.runs {
        for (k, v) in &run.metrics {
            m.entry(k.clone()).or_default().push(*v);
        }
    }
    m
}

/// `cargo panic compare`: per-metric deltas between two attack reports,
/// with significance. Exit status 1 when a metric got significantly worse.
pub fn compare(before: &Path, after: &Path, alpha: f64, json: bool) -> Result<i32> {
    if !(alpha > 0.0 && alpha < 1.0) {
        bail!("--alpha {alpha} must be between 0 and 1 (e.g. 0.05)");
    }
    let a: Report = cargo_panic_core::fsutil::read_json(before)?;
    let b: Report = cargo_panic_core::fsutil::read_json(after)?;
    for (r, p) in [(&a, before), (&b, after)] {
        if r.version != cargo_panic_core::attack::report::REPORT_VERSION {
            bail!(
                "{} is a version {} attack report; this cargo-panic reads version {}",
                p.display(),
                r.version,
                cargo_panic_core::attack::report::REPORT_VERSION
            );
        }
    }
    let mut opts = stats::CompareOptions {
        alpha,
        ..Default::default()
    };
    for higher in ["workload.ok_per_tick", "workload.ok"] {
        opts.better.insert(higher.into(), stats::Better::Higher);
    }
    // Repeated runs give independent samples; otherwise the ticks of one run.
    let per_run = a.runs.len() >= 2 && b.runs.len() >= 2;
    let (ma, mb) = if per_run {
        (run_metrics(&a), run_metrics(&b))
    } else {
        (metrics(&a), metrics(&b))
    };
    let cmp = stats::Comparison::new(&ma, &mb, &opts);
    let worse = cmp
        .deltas
        .iter()
        .any(|d| d.verdict == stats::Verdict::Worse);
    if json {
        println!("{}", serde_json::to_string_pretty(&cmp)?);
    } else {
        if a.timeline != b.timeline {
            println!("note: the two runs used different timelines (or seeds)");
        }
        print!("{}", cmp.render());
        if per_run {
            println!(
                "samples are the run-level metrics of {} and {} repeated runs",
                a.runs.len(),
                b.runs.len()
            );
        } else {
            println!(
                "samples are the per-tick values of each run; ticks of one run are not \
                 independent, so treat p-values as optimistic and confirm with --repeat"
            );
        }
        for (name, r) in [("before", &a), ("after", &b)] {
            println!(
                "{name}: {} failure(s), {}",
                r.failures.len(),
                if r.verdict.survived {
                    "survived"
                } else {
                    "failed"
                }
            );
        }
    }
    Ok(i32::from(worse))
}
