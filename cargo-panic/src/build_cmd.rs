//! `cargo panic build`: runs `cargo build` for the host target with bitcode
//! objects (`-C linker-plugin-lto`) and `cargo-panic-link` as the linker, then puts
//! each executable's site manifest beside it and prints the executables' paths.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use cargo_panic_core::{env, manifest, toolchain};

const USAGE: &str = "\
Build the crate instrumented: cargo panic build [--time GLOB]... [--no-time GLOB]... [cargo build args]

  --time GLOB      always time functions whose demangled name matches (e.g. 'my_crate::handle_*')
  --no-time GLOB   never time them (they are still counted); wins over --time
  --dwell-from P   also stop timing functions that the profile P (from `cargo panic run`)
                   measured as hot and short (mean region < 1 µs over >= 1000 calls)
  --link-jobs N    worker threads of the link driver (default: all cores)

Every other argument goes to `cargo build` (--release, -p, --bin, --features, ...).
The build is for the host target; instrumented executables land in target/<host>/<profile>/
with <executable>.panic.json beside each, and their paths are printed on stdout.
";

struct Own {
    dwell_from: Option<PathBuf>,
    time: Vec<String>,
    no_time: Vec<String>,
    link_jobs: Option<String>,
    cargo: Vec<String>,
}

fn split_own_args(args: &[String]) -> Result<Own> {
    let mut own = Own {
        dwell_from: None,
        time: Vec::new(),
        no_time: Vec::new(),
        link_jobs: None,
        cargo: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let mut take = |name: &str| -> Result<Option<String>> {
            if a == name {
                i += 1;
                return args
                    .get(i)
                    .cloned()
                    .map(Some)
                    .with_context(|| format!("{name} needs a value"));
            }
            Ok(a.strip_prefix(&format!("{name}=")).map(String::from))
        };
        if let Some(v) = take("--time")? {
            own.time.push(v);
        } else if let Some(v) = take("--no-time")? {
            own.no_time.push(v);
        } else if let Some(v) = take("--dwell-from")? {
            own.dwell_from = Some(PathBuf::from(v));
        } else if let Some(v) = take("--link-jobs")? {
            own.link_jobs = Some(v);
        } else if a == "--" {
            own.cargo.extend(args[i..].iter().cloned());
            break;
        } else {
            own.cargo.push(a.clone());
        }
        i += 1;
    }
    Ok(own)
}

/// The value of a cargo option given as `--name v` or `--name=v`.
fn cargo_opt(args: &[String], name: &str) -> Option<String> {
    let eq = format!("{name}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if a == name {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix(&eq).map(String::from)
        }
    })
}

fn remove_opt(args: &mut Vec<String>, name: &str) {
    let eq = format!("{name}=");
    let mut i = 0;
    while i < args.len() {
        if args[i] == name {
            args.drain(i..(i + 2).min(args.len()));
        } else if args[i].starts_with(&eq) {
            args.remove(i);
        } else {
            i += 1;
        }
    }
}

pub fn build(args: &[String]) -> Result<i32> {
    if args
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--help" || a == "-h")
    {
        print!("{USAGE}");
        return Ok(0);
    }
    let mut own = split_own_args(args)?;
    let cwd = std::env::current_dir().context("failed to read the current directory")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());

    // A cargo project?
    let manifest_path = cargo_opt(&own.cargo, "--manifest-path");
    let mut locate = Command::new(&cargo);
    locate.args(["locate-project", "--message-format", "plain"]);
    if let Some(m) = &manifest_path {
        locate.args(["--manifest-path", m]);
    }
    let located = locate
        .output()
        .with_context(|| format!("failed to run `{cargo} locate-project`"))?;
    if !located.status.success() {
        bail!(
            "not a cargo project: no Cargo.toml in {} or any parent directory; run `cargo panic build` \
             inside a crate or pass --manifest-path",
            cwd.display()
        );
    }
    let project_dir = PathBuf::from(String::from_utf8_lossy(&located.stdout).trim())
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(cwd.clone());

    let tc = toolchain::current(&project_dir)?;
    toolchain::check(&tc)?;
    if let Some(t) = cargo_opt(&own.cargo, "--target") {
        if t != tc.host {
            bail!(
                "cargo panic build instruments host builds only, and `--target {t}` is not the host \
                 ({}); drop --target (the host target is always used)",
                tc.host
            );
        }
        remove_opt(&mut own.cargo, "--target");
    }
    if cargo_opt(&own.cargo, "--message-format").is_some() {
        bail!("--message-format is set by cargo panic build itself; drop it");
    }
    let target_dir = target_dir(&cargo, &own.cargo, manifest_path.as_deref())?;
    let link_bin = link_driver()?;
    warn_config_rustflags(&project_dir);

    let demoted = match &own.dwell_from {
        Some(p) => {
            let profile: cargo_panic_core::profile::Profile =
                cargo_panic_core::fsutil::read_json(p).with_context(|| {
                    format!("--dwell-from {}: not a cargo-panic profile", p.display())
                })?;
            cargo_panic_core::profile::short_regions(
                &profile,
                cargo_panic_core::profile::MIN_MEAN_REGION_NS,
                cargo_panic_core::profile::MIN_HOT_COUNT,
            )
        }
        None => Vec::new(),
    };
    let rule = serde_json::json!({ "time": own.time, "no_time": own.no_time, "demoted": demoted });
    let mut flags: Vec<String> = [
        "-C",
        "linker-plugin-lto",
        "-C",
        &format!("linker={}", link_bin.display()),
        "-C",
        "linker-flavor=gcc",
        "-C",
        "debuginfo=line-tables-only",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // The user's flags last: theirs win over ours.
    flags.extend(user_rustflags());
    let profile = if own.cargo.iter().any(|a| a == "--release" || a == "-r") {
        "release".to_string()
    } else {
        cargo_opt(&own.cargo, "--profile").unwrap_or_else(|| "dev".into())
    };
    let profile_env = profile.to_uppercase().replace('-', "_");

    let driver = cargo_panic_core::fsutil::content_id(&link_bin)?;

    let c_compilers = c_compilers()?;
    let started = SystemTime::now();
    // Cargo cannot see the link driver's own inputs (the dwell rule, the driver
    // itself) and keeps an executable linked under other settings. Such outputs
    // are removed and cargo runs once more, which relinks just them (their
    // objects come from the cache).
    for attempt in 0..2 {
        let mut cmd = Command::new(&cargo);
        cmd.arg("build")
            .args([
                "--target",
                &tc.host,
                "--message-format=json-render-diagnostics",
            ])
            .args(&own.cargo)
            .current_dir(&cwd)
            .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"))
            .env_remove("RUSTFLAGS")
            // `-C lto` conflicts with `-C linker-plugin-lto`; the link driver does the work.
            .env(format!("CARGO_PROFILE_{profile_env}_LTO"), "false")
            .env(env::TARGET_DIR, &target_dir)
            .env(env::RULE, rule.to_string())
            .env(env::TOOLCHAIN, tc.describe())
            .env("LD_LIBRARY_PATH", ld_library_path(&tc.sysroot.join("lib")))
            .stdout(Stdio::piped());
        if let Some(j) = &own.link_jobs {
            cmd.env(env::JOBS, j);
        }
        if let Some(c) = &c_compilers {
            c.apply(&mut cmd, &tc.host);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("failed to run `{cargo} build`"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut executables = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.context("failed to read cargo's output")?;
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if msg["reason"] == "compiler-artifact"
                && let Some(exe) = msg["executable"].as_str()
            {
                executables.push(PathBuf::from(exe));
            }
        }
        let status = child.wait().context("failed to wait for cargo")?;
        if !status.success() {
            return Ok(status.code().unwrap_or(101));
        }
        let mut stale = Vec::new();
        let mut placed = Vec::new();
        for exe in &executables {
            let (source, m) = find_manifest(exe)?;
            let current =
                m.is_some_and(|m| rule_in_force(&m.dwell_rule, &rule) && m.driver == driver);
            if !current {
                stale.push((exe.clone(), source));
            } else {
                placed.push((exe.clone(), source));
            }
        }
        if !stale.is_empty() && attempt == 0 {
            for (exe, source) in &stale {
                for p in [exe.clone(), linked_file(source), source.clone()] {
                    let _ = std::fs::remove_file(p);
                }
            }
            continue;
        }
        if let Some((exe, _)) = stale.first() {
            bail!(
                "{} is still linked under other cargo-panic settings after a relink; run `cargo clean`",
                exe.display()
            );
        }
        for (exe, source) in &placed {
            let want = manifest::path_for(exe);
            if *source != want {
                let bytes = std::fs::read(source)?;
                cargo_panic_core::fsutil::write_atomic(&want, &bytes)?;
            }
            println!("{}", exe.display());
        }
        break;
    }
    report_links(&target_dir, started);
    Ok(0)
}

fn user_rustflags() -> Vec<String> {
    if let Ok(enc) = std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        return enc
            .split('\x1f')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
    }
    std::env::var("RUSTFLAGS")
        .map(|f| f.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

fn ld_library_path(lib: &Path) -> String {
    match std::env::var("LD_LIBRARY_PATH") {
        Ok(old) if !old.is_empty() => format!("{}:{old}", lib.display()),
        _ => lib.display().to_string(),
    }
}

fn target_dir(cargo: &str, cargo_args: &[String], manifest_path: Option<&str>) -> Result<PathBuf> {
    if let Some(d) = cargo_opt(cargo_args, "--target-dir") {
        return Ok(std::path::absolute(d)?);
    }
    let mut cmd = Command::new(cargo);
    cmd.args(["metadata", "--format-version", "1", "--no-deps"]);
    if let Some(m) = manifest_path {
        cmd.args(["--manifest-path", m]);
    }
    let out = cmd
        .output()
        .with_context(|| format!("failed to run `{cargo} metadata`"))?;
    if !out.status.success() {
        bail!(
            "`cargo metadata` failed:\n{}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata printed invalid JSON")?;
    meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata gave no target_directory")
}

/// `cargo-panic-link`, installed next to this executable.
fn link_driver() -> Result<PathBuf> {
    let me = std::env::current_exe().context("failed to find the cargo-panic executable")?;
    let p = me.with_file_name("cargo-panic-link");
    if !p.exists() {
        bail!(
            "the link driver {} is missing; reinstall cargo-panic (`cargo install --path cargo-panic`) \
             so that both cargo-panic and cargo-panic-link are installed",
            p.display()
        );
    }
    Ok(p)
}

fn warn_config_rustflags(dir: &Path) {
    for d in dir.ancestors() {
        for name in ["config.toml", "config"] {
            let p = d.join(".cargo").join(name);
            if std::fs::read_to_string(&p).is_ok_and(|t| t.contains("rustflags")) {
                eprintln!(
                    "warning: {} sets rustflags, which cargo ignores when cargo panic build passes its own; \
                     put them in RUSTFLAGS to keep them",
                    p.display()
                );
            }
        }
    }
}

/// The link driver wrote `<linked file>.panic.json` (under `deps/`); cargo then
/// hard-linked or copied the executable elsewhere. Finds that manifest by file
/// identity (or content, for a copy) and reads it.
fn find_manifest(exe: &Path) -> Result<(PathBuf, Option<manifest::Manifest>)> {
    let want = manifest::path_for(exe);
    // Test and bench executables are the linker's own output (`deps/name-<hash>`).
    if is_linker_output(exe) && want.is_file() {
        return Ok((
            want.clone(),
            cargo_panic_core::fsutil::read_json(&want).ok(),
        ));
    }
    let dir = exe.parent().unwrap_or(Path::new("."));
    let exe_meta =
        std::fs::metadata(exe).with_context(|| format!("failed to stat {}", exe.display()))?;
    for cand_dir in [dir.join("deps"), dir.to_path_buf()] {
        let Ok(entries) = std::fs::read_dir(&cand_dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            // The copy placed beside an uplifted executable by an earlier build is
            // never its own source.
            if !path.to_string_lossy().ends_with(".panic.json") || path == want {
                continue;
            }
            let bin = linked_file(&path);
            let Ok(m) = std::fs::metadata(&bin) else {
                continue;
            };
            let same = (m.dev(), m.ino()) == (exe_meta.dev(), exe_meta.ino())
                || (m.len() == exe_meta.len() && std::fs::read(&bin)? == std::fs::read(exe)?);
            if same {
                // Unreadable (e.g. written by an older cargo-panic): treated as stale.
                let manifest = cargo_panic_core::fsutil::read_json(&path).ok();
                return Ok((path, manifest));
            }
        }
    }
    bail!(
        "{} was built but has no site manifest: it was not linked by cargo-panic-link \
         (run `cargo clean` and build again with `cargo panic build`)",
        exe.display()
    )
}

/// Whether `exe` is named as rustc names a linker output: `<name>-<16 hex digits>`.
fn is_linker_output(exe: &Path) -> bool {
    let name = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.rsplit_once('-')
        .is_some_and(|(_, h)| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether a manifest's dwell rule (complete, with defaults) is the one this
/// build asks for: every field the CLI sets, whatever fields it has.
fn rule_in_force(manifest_rule: &serde_json::Value, wanted: &serde_json::Value) -> bool {
    wanted
        .as_object()
        .is_some_and(|w| w.iter().all(|(k, v)| manifest_rule.get(k) == Some(v)))
}

/// `x.panic.json` -> `x`
fn linked_file(manifest: &Path) -> PathBuf {
    PathBuf::from(manifest.to_string_lossy().trim_end_matches(".panic.json"))
}

/// One line per link this build did, from the link driver's stats.
fn report_links(target_dir: &Path, since: SystemTime) {
    let Ok(entries) = std::fs::read_dir(target_dir.join("panic").join("link-stats")) else {
        return;
    };
    for e in entries.flatten() {
        let fresh = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since);
        if !fresh {
            continue;
        }
        let Ok(s) = cargo_panic_core::fsutil::read_json::<serde_json::Value>(&e.path()) else {
            continue;
        };
        eprintln!(
            "cargo-panic: linked {}: {} sites ({} timed) from {} bitcode modules ({} from cache) in {} ms",
            s["output"].as_str().unwrap_or("?"),
            s["sites"],
            s["timed_sites"],
            s["bitcode_modules"],
            s["cache_hits"],
            s["elapsed_ms"]
        );
    }
}

/// The compiler wrappers the `cc` crate gets for the target, so C/C++ compiled by
/// build scripts is instrumented into the same manifest as the Rust code.
struct CCompilers {
    cc: PathBuf,
    cxx: PathBuf,
    real_cc: PathBuf,
    real_cxx: PathBuf,
}

impl CCompilers {
    fn apply(&self, cmd: &mut Command, host: &str) {
        let triple = host.replace('-', "_");
        cmd.env(format!("CC_{triple}"), &self.cc)
            .env(format!("CXX_{triple}"), &self.cxx)
            .env(env::REAL_CC, &self.real_cc)
            .env(env::REAL_CXX, &self.real_cxx)
            .env(env::CC_FROM_CARGO, "1");
    }
}

/// clang-19 when it is installed (the user's `CC_<target>`/`CC` are respected:
/// then build scripts compile C as they would without cargo-panic).
fn c_compilers() -> Result<Option<CCompilers>> {
    use cargo_panic_core::clang;
    let host = env!("CARGO_PANIC_BUILT_HOST").replace('-', "_");
    if std::env::var_os(format!("CC_{host}")).is_some() || std::env::var_os("CC").is_some() {
        return Ok(None);
    }
    let real_cc = clang::default_compiler(false);
    let real_cxx = clang::default_compiler(true);
    if clang::check_compiler(&real_cc, "clang").is_err() {
        return Ok(None);
    }
    // Not worth failing a Rust build over: without the wrappers, C from build
    // scripts is compiled as usual (uninstrumented), and the user is told.
    let wrappers = clang::home().and_then(|h| crate::cc_cmd::install_wrappers(&h));
    let (cc, cxx) = match wrappers {
        Ok(w) => w,
        Err(e) => {
            eprintln!(
                "cargo-panic: warning: C/C++ from build scripts will not be instrumented: {e:#}"
            );
            return Ok(None);
        }
    };
    Ok(Some(CCompilers {
        cc,
        cxx,
        real_cc,
        real_cxx,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rule_is_in_force_only_when_every_requested_field_matches() {
        let manifest = json!({"min_insts": 400, "time": ["a::*"], "no_time": [], "demoted": ["b"]});
        assert!(rule_in_force(
            &manifest,
            &json!({"time": ["a::*"], "no_time": [], "demoted": ["b"]})
        ));
        assert!(!rule_in_force(
            &manifest,
            &json!({"time": [], "no_time": [], "demoted": ["b"]})
        ));
        assert!(!rule_in_force(
            &manifest,
            &json!({"time": ["a::*"], "no_time": [], "demoted": []})
        ));
        // A field the manifest does not have (written by an older cargo-panic) is a change.
        assert!(!rule_in_force(
            &manifest,
            &json!({"time": ["a::*"], "sample": 3})
        ));
    }
}
