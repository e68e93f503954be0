//! `cargo-panic-link`: the linker `cargo panic build` installs into rustc.
//!
//! rustc (with `-C linker-plugin-lto`) hands it LLVM bitcode: loose `*.rcgu.o`
//! files and rlibs whose members are bitcode. It instruments every bitcode module,
//! optimises it at the profile's level, emits native objects in parallel (cached by
//! content), and links the result with the runtime (last) and the native inputs
//! (std, C from build scripts) through the real linker, exporting the runtime's
//! price API from the executable (`--export-dynamic-symbol`, for `panic-api`'s
//! dlsym). It then reads the linked file's sites section and writes
//! `<output>.panic.json`.
//!
//! Invariants:
//! - No bitcode reaches the real linker: every final input is checked, and a bitcode
//!   input the driver did not handle is an error, never a silent uninstrumented link.
//! - The cache is keyed by content (bitcode, pass version, options, module key), and
//!   instrumented objects depend on no other module, so a hit is always valid.

mod archive;
mod codegen;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cargo_panic_core::linkargs::{self, Arg};
use cargo_panic_core::manifest::{self, Input, Manifest};
use cargo_panic_core::{env, fsutil};
use panic_passes::DwellRule;

use crate::archive::{Format, Loaded, sniff};
use crate::codegen::{Job, Settings};

fn main() {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("cargo-panic-link: error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// What one link did, for `cargo panic build` and the tests.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stats {
    output: String,
    bitcode_modules: usize,
    cache_hits: usize,
    cache_misses: usize,
    sites: usize,
    timed_sites: usize,
    instrumented: bool,
    elapsed_ms: u128,
}

fn run() -> Result<i32> {
    let started = Instant::now();
    let Some(target_dir) = std::env::var_os(env::TARGET_DIR).map(PathBuf::from) else {
        bail!(
            "cargo-panic-link is the linker that `cargo panic build` installs into rustc; \
             it is not run by hand. Build with `cargo panic build` instead"
        );
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let argv = linkargs::expand_response_files(&raw, &mut |p| std::fs::read_to_string(p))
        .context("failed to read a linker response file")?;
    let line = linkargs::parse(&argv);
    let output = line
        .output
        .clone()
        .context("the link line has no `-o <output>`")?;
    let rule: DwellRule = match std::env::var(env::RULE) {
        Ok(json) => {
            serde_json::from_str(&json).with_context(|| format!("invalid {}", env::RULE))?
        }
        Err(_) => DwellRule::default(),
    };
    let compiled = rule.compile()?;
    let instrument = !line.shared;

    let panic_dir = target_dir.join("panic");
    let cache_dir = panic_dir.join("cache");
    std::fs::create_dir_all(&cache_dir)
        .with_context(|| format!("failed to create {}", cache_dir.display()))?;
    let tmp_root = panic_dir.join("tmp");
    std::fs::create_dir_all(&tmp_root)?;
    let tmp = tempfile::Builder::new()
        .prefix("link-")
        .tempdir_in(&tmp_root)
        .context("failed to create a temporary directory for the link")?;

    // 1. Find every bitcode module among the inputs.
    let mut loaded: Vec<Loaded> = Vec::new();
    let mut jobs: Vec<Job> = Vec::new();
    let mut inputs: Vec<Input> = Vec::new();
    for arg in &line.args {
        match arg {
            Arg::File(path) => {
                let l = archive::load(path, &mut jobs)?;
                inputs.extend(l.inputs());
                loaded.push(l);
            }
            Arg::Lib { spec, static_mode } => {
                if let Some(p) = linkargs::resolve_lib(spec, *static_mode, &line.search_paths)
                    && let Some(member) = archive::first_bitcode_member(&p)?
                {
                    bail!(
                        "library `-l{spec}` ({}) contains LLVM bitcode ({member}) that cargo-panic \
                             cannot instrument when it comes through `-l`; build that library as \
                             native code (without -flto), or link it by path",
                        p.display()
                    );
                }
            }
            Arg::Other(_) => {}
        }
    }

    // 2. Instrument, optimise and emit, in parallel, through the cache.
    let settings = Settings {
        opt: line.opt_level(),
        cpu: line.cpu(),
        features: line.features(),
        rule: compiled,
        rule_json: serde_json::to_string(&rule)?,
        cache_dir,
        instrument,
        driver_id: codegen::driver_id()?,
    };
    let jobs_n = std::env::var(env::JOBS)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let done = codegen::run_all(&jobs, &settings, jobs_n)?;
    let hits = done.iter().filter(|d| d.cache_hit).count();

    let mut counts_by_key: BTreeMap<&str, u32> = BTreeMap::new();
    for d in &done {
        counts_by_key.insert(&d.sites.key, d.sites.sites.len() as u32);
    }
    for input in &mut inputs {
        if let Some(n) = counts_by_key.get(input.name.as_str()) {
            input.sites = *n;
        }
        if !instrument && input.format == "bitcode" {
            input.instrumented = false;
            input.note = Some("shared library output: compiled without probes (cargo-panic instruments executables)".into());
        }
    }

    // 4. Replace every bitcode input by its native object(s).
    let objects: BTreeMap<&str, &Path> = done
        .iter()
        .map(|d| (d.sites.key.as_str(), d.object.as_path()))
        .collect();
    let mut final_args: Vec<String> = Vec::new();
    let mut loaded_iter = loaded.iter();
    for arg in &line.args {
        match arg {
            Arg::File(_) => {
                let l = loaded_iter.next().expect("one Loaded per file operand");
                final_args.push(
                    archive::materialise(l, &objects, tmp.path())?
                        .display()
                        .to_string(),
                );
            }
            Arg::Lib { spec, .. } => final_args.push(format!("-l{spec}")),
            Arg::Other(words) => final_args.extend(words.iter().cloned()),
        }
    }
    if instrument {
        // The price API, found by dlsym from the program's own code (panic-api):
        // an executable exports nothing unless told (a shared output would
        // export it anyway, but gets no runtime).
        final_args.push(linkargs::export_dynamic(&linkargs::RUNTIME_EXPORTS));
        // The runtime goes last: its trailer pages must end the data sections.
        final_args.push(
            cargo_panic_core::clang::runtime_archive(&panic_dir.join("runtime"))?
                .display()
                .to_string(),
        );
    }

    // 5. The check: nothing the real linker sees is bitcode.
    check_no_bitcode(&final_args)?;

    let linker = std::env::var(env::REAL_LINKER).unwrap_or_else(|_| "cc".into());
    let status = link(&linker, &final_args, tmp.path())?;
    if !status.success() {
        eprintln!("cargo-panic-link: the real linker `{linker}` failed ({status})");
        return Ok(status.code().unwrap_or(1));
    }

    // 6. Manifest and stats, only for a successful link: the sites come from
    // the linked file itself (Rust modules and any instrumented C alike).
    let linked = cargo_panic_core::linked::read(&output)?;
    let manifest = Manifest {
        format: manifest::FORMAT,
        tool: format!("cargo-panic {}", env!("CARGO_PKG_VERSION")),
        pass_version: panic_passes::PASS_VERSION,
        driver: settings.driver_id.clone(),
        abi_version: panic_runtime::abi::ABI_VERSION as u32,
        toolchain: std::env::var(env::TOOLCHAIN).unwrap_or_default(),
        output: file_name(&output),
        opt_level: settings.opt.clone(),
        target_cpu: settings.cpu.clone(),
        dwell_rule: serde_json::to_value(&rule)?,
        inputs,
        counter_slots: linked.counter_slots,
        hist_slots: linked.hist_slots,
        sites: manifest::sites_from_linked(&linked),
    };
    manifest.write(&manifest::path_for(&output))?;
    let stats = Stats {
        output: file_name(&output),
        bitcode_modules: done.len(),
        cache_hits: hits,
        cache_misses: done.len() - hits,
        sites: manifest.sites.len(),
        timed_sites: manifest.sites.iter().filter(|s| s.timed).count(),
        instrumented: instrument,
        elapsed_ms: started.elapsed().as_millis(),
    };
    let stats_dir = panic_dir.join("link-stats");
    std::fs::create_dir_all(&stats_dir)?;
    fsutil::write_json_atomic(
        &stats_dir.join(format!("{}.json", file_name(&output))),
        &stats,
    )?;
    Ok(0)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn check_no_bitcode(args: &[String]) -> Result<()> {
    for a in args {
        if a.starts_with('-') {
            continue;
        }
        let p = Path::new(a);
        if !p.is_file() {
            continue;
        }
        match sniff(p)? {
            Format::Bitcode => bail!(
                "internal error: bitcode input {} would reach the real linker uninstrumented",
                p.display()
            ),
            Format::Archive => {
                if let Some(m) = archive::first_bitcode_member(p)? {
                    bail!(
                        "internal error: archive {} still holds bitcode member {m}; refusing to link it uninstrumented",
                        p.display()
                    );
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Runs the real linker, through a response file when the command line is long.
fn link(linker: &str, args: &[String], tmp: &Path) -> Result<std::process::ExitStatus> {
    let total: usize = args.iter().map(|a| a.len() + 1).sum();
    let mut cmd = Command::new(linker);
    if total > 100_000 {
        let rsp = tmp.join("link.rsp");
        let text: String = args
            .iter()
            .map(|a| linkargs::escape_for_response_file(a) + "\n")
            .collect();
        std::fs::write(&rsp, text)?;
        cmd.arg(format!("@{}", rsp.display()));
    } else {
        cmd.args(args);
    }
    cmd.status()
        .with_context(|| format!("failed to run the real linker `{linker}`"))
}
