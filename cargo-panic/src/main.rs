//! `cargo panic`: the cargo subcommand. Parses the same whether cargo runs it
//! (`cargo-panic panic build ...`) or a person does (`cargo-panic build ...`).
//! Exit codes: the target's own for `run`; otherwise 0 on success, 2 when the tool
//! itself failed (bad input, missing toolchain).

mod assail_cmd;
mod attack_cmd;
mod build_cmd;
mod cc_cmd;
mod explain_cmd;
mod run_cmd;
mod verify_cmd;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

/// A size on the command line (`64MiB`, `1GB`), in bytes.
fn bytes(text: &str) -> Result<u64, String> {
    use cargo_panic_core::attack::units;
    units::parse_as(text, units::Dim::Bytes).map(|b| b as u64)
}

/// A share of the time on the command line: `10` or `10%`, 1 to 99.
fn percent(text: &str) -> Result<u32, String> {
    text.trim_end_matches('%')
        .parse::<u32>()
        .ok()
        .filter(|p| (1..=99).contains(p))
        .ok_or_else(|| format!("'{text}' is not a percentage from 1 to 99 (e.g. 10%)"))
}

/// A duration on the command line (`500ms`, `2s`, `1m`), in ns.
fn duration_ns(text: &str) -> Result<u64, String> {
    cargo_panic_core::attack::units::parse_duration_ns(text)
}

#[derive(Parser)]
#[command(
    name = "cargo-panic",
    version,
    about = "Instrumented builds and per-site profiles: how, where and why a program fails under pressure"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the crate instrumented (any `cargo build` arguments pass through)
    ///
    /// Own options (before or among cargo's): `--time GLOB` always times the
    /// functions whose demangled name matches, `--no-time GLOB` never does.
    /// Prints every instrumented executable's path on stdout, one per line.
    #[command(disable_help_flag = true)]
    Build {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Build C/C++ instrumented: runs any build command with CC/CXX set to
    /// wrappers that compile through the clang-19 plugin and link the runtime
    ///
    /// Every linked executable and shared library gets `<file>.panic.json`. The
    /// exit status is the build command's.
    Cc {
        /// Also copy every manifest here, with `links.json` listing the links
        #[arg(long)]
        out: Option<PathBuf>,
        /// When instrumenting a file fails, warn and compile it without probes
        /// (default: the compile fails with the reason)
        #[arg(long)]
        uninstrumented_on_error: bool,
        /// Always time functions whose demangled name matches (repeatable)
        #[arg(long = "time", value_name = "GLOB")]
        time: Vec<String>,
        /// Never time functions whose demangled name matches (repeatable)
        #[arg(long = "no-time", value_name = "GLOB")]
        no_time: Vec<String>,
        /// Build with clang's sanitizers as well: `address`, `undefined`,
        /// `thread` (repeatable, or a comma list as in `-fsanitize=`; address
        /// and thread exclude each other). Every compile gets `-fsanitize=...
        /// -fno-omit-frame-pointer -fno-optimize-sibling-calls -g` (your own
        /// -g and -O levels win), every
        /// link `-fsanitize=...`. Needs libclang-rt-19-dev.
        #[arg(long, value_name = "SANITIZER", value_delimiter = ',')]
        sanitize: Vec<String>,
        /// The build command (`make -j2`, `cmake --build build`, ...)
        #[arg(last = true, required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// Print the clang-19 pass plugin's path (built on first use)
    PluginPath,
    /// Print the compile flags for a hand-written build (before your own flags)
    Cflags,
    /// Print the link flags for a hand-written build (after every object)
    Ldflags,
    /// Run an instrumented binary and write its profile
    Run {
        /// Where to write the profile (JSON)
        #[arg(long, short, default_value = "panic-profile.json")]
        out: PathBuf,
        /// Watch the program from the kernel (eBPF): per-thread and per-site
        /// on-CPU, run-queue and blocked time. Needs root (or CAP_BPF and
        /// CAP_PERFMON). `--kernel` alone means `on`; `auto` runs without
        /// kernel data when it cannot load, and says so in the profile.
        #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "on", require_equals = true)]
        kernel: Option<run_cmd::KernelMode>,
        /// A dwell budget, enforced by the kernel: `PATTERN=DURATION[:ACTION]`,
        /// PATTERN a glob over timed functions (or `#<site index>`), ACTION
        /// `record` (default), `kill` or `signal=SIGUSR1`; e.g.
        /// `my_crate::handle_request=50ms:kill`. Repeatable; implies `--kernel`.
        #[arg(long, value_name = "SPEC")]
        budget: Vec<String>,
        /// The run config (YAML or JSON): `period` and a price `controller`
        /// (resources, capacity, step); see README "Prices". Implies `--kernel`.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Serve Prometheus metrics (`dwell_seconds_current`, prices, calls)
        /// on HOST:PORT at /metrics while the program runs (port 0: any free
        /// port; the address is printed)
        #[arg(long, value_name = "HOST:PORT")]
        metrics: Option<String>,
        /// Count and time every system call of the watched tasks, by name
        /// (the kernel side's syscall path; off by default: it costs each
        /// system call two probes). Implies `--kernel`.
        #[arg(long)]
        syscalls: bool,
        /// The syscall path, attached for only this share of every 100 ms
        /// (1 to 99, e.g. `10%`), at that share of the cost of `--syscalls`:
        /// the profile gives the calls seen in those windows (which calls,
        /// how long each took), and how long the windows were. Implies
        /// `--kernel`
        #[arg(long, value_name = "PERCENT", value_parser = percent, conflicts_with = "syscalls")]
        syscall_sample: Option<u32>,
        /// Stop the program as hung when none of its instrumented code ran
        /// for this long (e.g. `2s`); the profile's signature then says
        /// whether threads wait for each other's locks, spin or sleep
        #[arg(long, value_name = "DURATION", value_parser = duration_ns)]
        hang_timeout: Option<u64>,
        /// Stop the program when it runs longer than this (e.g. `30s`)
        #[arg(long, value_name = "DURATION", value_parser = duration_ns)]
        timeout: Option<u64>,
        /// Run the program in a cgroup of its own limited to this much memory
        /// (e.g. `64MiB`): going over it OOM-kills the program
        #[arg(long, value_name = "SIZE", value_parser = bytes)]
        memory_limit: Option<u64>,
        /// When the program fails, run it again N times: the signature's
        /// confidence is scaled by how many runs failed the same way
        #[arg(long, value_name = "N", default_value_t = 0)]
        replay: u32,
        /// The binary and its arguments
        #[arg(last = true, required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// Explain how a profiled run failed: the class, the confidence, the
    /// rules that fired and the facts they used, the sites involved
    Explain {
        /// A profile written by `cargo panic run`
        profile: PathBuf,
        /// Take the program's stderr from this file instead of the profile's
        /// (e.g. when it was captured elsewhere)
        #[arg(long, value_name = "FILE")]
        stderr: Option<PathBuf>,
        /// Print the signature as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print a profile as a table
    Report {
        profile: PathBuf,
        /// Show the N first sites
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// Sort key
        #[arg(long, value_enum, default_value_t = SortBy::Count)]
        by: SortBy,
        /// Print the selected sites as JSON instead
        #[arg(long)]
        json: bool,
    },
    /// Verify before stressing: chordal dependence graphs and price-controller
    /// drift, answered with a certificate or a counterexample
    ///
    /// Exit status: 0 every check certified, 1 a counterexample, 2 bad input,
    /// 3 a check could not decide (never reported as a pass).
    Verify {
        /// Any graph: one `u v` edge per line (a lone `v` declares a vertex, `#` comments)
        #[arg(long, value_name = "EDGES")]
        graph: Option<PathBuf>,
        /// An instrumented binary: its dependence graph, from its manifest
        #[arg(long, value_name = "BIN")]
        binary: Option<PathBuf>,
        /// A price controller (YAML or JSON): a drift certificate for its dual ascent
        #[arg(long, value_name = "FILE")]
        controller: Option<PathBuf>,
        /// A profile: restricts --binary to what ran; for a --controller
        /// without `sensitivity`, K is fitted to its price/usage series
        #[arg(long, value_name = "PROFILE")]
        profile: Option<PathBuf>,
        /// A timeline's feasibility: acyclic chains, satisfiable start
        /// conditions, loads within this machine at every instant
        #[arg(long, value_name = "FILE")]
        timeline: Option<PathBuf>,
        /// Print the machine-readable verdict with its certificates
        #[arg(long)]
        json: bool,
    },
    /// Attack a program: run it under a timeline of stressors and report how
    /// it fails, or that it survived
    ///
    /// Exit status: 0 survived (and every --assert holds), 1 failed (crash,
    /// hang, OOM, non-zero exit, a failed assertion), 2 the tool could not run.
    Attack(attack_cmd::AttackArgs),
    /// Render an attack report as one self-contained HTML file with plots
    Html {
        report: PathBuf,
        /// Where to write the HTML
        #[arg(long, short, default_value = "panic-attack.html")]
        out: PathBuf,
    },
    /// Compare two attack reports: per-metric deltas, Mann-Whitney U with
    /// Holm's correction and a bootstrap CI, and which changes are significant
    ///
    /// Exit status: 0 nothing got significantly worse, 1 something did, 2 bad input.
    Compare {
        before: PathBuf,
        after: PathBuf,
        /// Family-wise significance level
        #[arg(long, default_value_t = 0.05)]
        alpha: f64,
        /// Print the comparison as JSON
        #[arg(long)]
        json: bool,
    },
    /// Validate a timeline and print its resolved schedule; runs nothing
    ///
    /// Exit status: 0 valid, 2 invalid (every error with file:line:column).
    Timeline {
        /// Only check (the one mode there is; kept for the documented spelling)
        #[arg(long)]
        check: bool,
        /// The timeline (YAML or JSON)
        #[arg(required_unless_present = "preset")]
        file: Option<PathBuf>,
        /// Print a shipped preset's file (to copy and edit) instead
        #[arg(long, value_name = "NAME", conflicts_with = "file")]
        preset: Option<String>,
        /// Print the validated timeline as JSON instead
        #[arg(long)]
        json: bool,
    },
    /// Rank an instrumented binary's static risks: recursion, lock-order
    /// cycles, panics, unchecked allocations, buffer operations, allocation
    /// in loops, blocking in async bodies (from its manifest; nothing runs)
    Assail {
        /// An instrumented binary (built by `cargo panic build` or `cargo panic cc`)
        #[arg(long, value_name = "BIN", conflicts_with = "package")]
        binary: Option<PathBuf>,
        /// Build this crate first (`cargo panic build --release -p CRATE`) and
        /// assail its executable
        #[arg(short = 'p', long = "package", value_name = "CRATE")]
        package: Option<String>,
        /// Print the profile as JSON
        #[arg(long)]
        json: bool,
        /// Show the N riskiest functions
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// Print a timeline (YAML, for `cargo panic attack`) aimed at the top risks instead
        #[arg(long, conflicts_with = "json")]
        suggest_timeline: bool,
        /// More `cargo build` arguments for -p
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// List the sites of an instrumented binary (from its manifest)
    Sites {
        binary: PathBuf,
        /// Only sites of this kind (entry, exit, loop, alloc, free, blocking, lock, panic)
        #[arg(long)]
        kind: Option<String>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum SortBy {
    Count,
    Dwell,
}

fn main() {
    // Cargo runs `cargo-panic panic <args>`; a person may run `cargo-panic <args>`.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Under the names `cargo-panic-cc` / `cargo-panic-c++` this is a compiler wrapper.
    if let Some(cxx) = args
        .first()
        .and_then(|a| a.to_str())
        .and_then(cc_cmd::wrapper_kind)
    {
        let rest = args[1..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        std::process::exit(cc_cmd::wrapper(cxx, rest));
    }
    if args.get(1).is_some_and(|a| a == "panic") {
        args.remove(1);
    }
    // The attack engine's stressor processes are this binary, re-executed.
    if args.get(1).is_some_and(|a| a == "__stress") {
        let rest: Vec<String> = args[2..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let r = cargo_panic_core::attack::stress::parse_args(&rest).and_then(|kind| {
            cargo_panic_core::attack::stress::serve(kind, std::io::stdin().lock())
        });
        if let Err(e) = r {
            eprintln!("cargo-panic stressor: {e:#}");
            std::process::exit(2);
        }
        std::process::exit(0);
    }
    let cli = Cli::parse_from(args);
    match dispatch(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn dispatch(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Build { args } => build_cmd::build(&args),
        Command::Run {
            out,
            kernel,
            budget,
            config,
            metrics,
            syscalls,
            syscall_sample,
            hang_timeout,
            timeout,
            memory_limit,
            replay,
            command,
        } => run_cmd::run(
            &out,
            &run_cmd::RunOptions {
                kernel,
                budgets: budget,
                config,
                metrics,
                syscalls,
                syscall_sample,
                hang_timeout_ns: hang_timeout,
                timeout_ns: timeout,
                memory_limit,
                replay,
            },
            &command,
        ),
        Command::Explain {
            profile,
            stderr,
            json,
        } => explain_cmd::explain(&profile, stderr.as_deref(), json),
        Command::Cc {
            out,
            uninstrumented_on_error,
            time,
            no_time,
            sanitize,
            command,
        } => {
            let rule = panic_passes::DwellRule {
                time,
                no_time,
                ..Default::default()
            };
            rule.compile()?;
            cc_cmd::cc(
                &cc_cmd::CcOptions {
                    out,
                    uninstrumented_on_error,
                    rule_json: serde_json::to_string(&rule)?,
                    sanitize,
                },
                &command,
            )
        }
        Command::PluginPath => cc_cmd::plugin_path(),
        Command::Cflags => cc_cmd::cflags(),
        Command::Ldflags => cc_cmd::ldflags(),
        Command::Report {
            profile,
            top,
            by,
            json,
        } => {
            let p: cargo_panic_core::profile::Profile =
                cargo_panic_core::fsutil::read_json(&profile)?;
            let by = match by {
                SortBy::Count => cargo_panic_core::profile::SortBy::Count,
                SortBy::Dwell => cargo_panic_core::profile::SortBy::Dwell,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&p.top(top, by))?);
            } else {
                print!("{}", p.render_table(top, by));
            }
            Ok(0)
        }
        Command::Verify {
            graph,
            binary,
            controller,
            profile,
            timeline,
            json,
        } => verify_cmd::verify(&verify_cmd::VerifyOptions {
            graph,
            binary,
            controller,
            profile,
            timeline,
            json,
        }),
        Command::Attack(args) => attack_cmd::attack(args),
        Command::Html { report, out } => {
            let r: cargo_panic_core::attack::report::Report =
                cargo_panic_core::fsutil::read_json(&report)?;
            let html = cargo_panic_core::attack::html::render(&r);
            cargo_panic_core::fsutil::write_atomic(&out, html.as_bytes())?;
            eprintln!("cargo-panic: {} written", out.display());
            Ok(0)
        }
        Command::Compare {
            before,
            after,
            alpha,
            json,
        } => attack_cmd::compare(&before, &after, alpha, json),
        Command::Timeline {
            check: _,
            file,
            preset,
            json,
        } => {
            let Some(file) = file else {
                print!(
                    "{}",
                    attack_cmd::preset(preset.as_deref().unwrap_or_default())?
                );
                return Ok(0);
            };
            let t = attack_cmd::read_timeline(&file)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                print!(
                    "{}",
                    t.describe(&cargo_panic_core::attack::probe::machine())
                );
            }
            Ok(0)
        }
        Command::Assail {
            binary,
            package,
            json,
            top,
            suggest_timeline,
            cargo_args,
        } => assail_cmd::assail(&assail_cmd::AssailOptions {
            binary,
            package,
            json,
            top,
            suggest_timeline,
            cargo_args,
        }),
        Command::Sites { binary, kind, json } => {
            let m = cargo_panic_core::manifest::Manifest::for_binary(&binary)?;
            let kind = match kind {
                None => None,
                Some(k) => Some(panic_runtime::SiteKind::parse(&k).ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown site kind `{k}`: use one of entry, exit, loop, alloc, free, blocking, lock, panic"
                    )
                })?),
            };
            print!(
                "{}",
                cargo_panic_core::profile::render_sites(&m, kind, json)?
            );
            Ok(0)
        }
    }
}
