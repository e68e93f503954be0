//! `cargo panic assail`: the IO shell around `cargo_panic_core::assail` (the
//! pure profile): reads the binary's manifest (after building the crate with
//! `cargo panic build` for `-p`), prints the table, the JSON or a suggested
//! timeline.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use cargo_panic_core::assail;
use cargo_panic_core::manifest::Manifest;

/// The first pass version whose entry sites record `risks`.
const FIRST_PASS_WITH_RISKS: u32 = 5;

pub struct AssailOptions {
    pub binary: Option<PathBuf>,
    pub package: Option<String>,
    pub json: bool,
    pub top: usize,
    pub suggest_timeline: bool,
    /// More `cargo build` arguments, for `-p`.
    pub cargo_args: Vec<String>,
}

pub fn assail(o: &AssailOptions) -> Result<i32> {
    let binary = match (&o.binary, &o.package) {
        (Some(b), None) => b.clone(),
        (None, Some(p)) => build(p, &o.cargo_args)?,
        (Some(_), Some(_)) => bail!("give --binary BIN or -p CRATE, not both"),
        (None, None) => bail!("nothing to assail: give --binary BIN or -p CRATE"),
    };
    if o.binary.is_some() && !o.cargo_args.is_empty() {
        bail!("cargo arguments after `--` are for -p CRATE (the build); --binary takes none");
    }
    let m = Manifest::for_binary(&binary)?;
    if m.pass_version != 0 && m.pass_version < FIRST_PASS_WITH_RISKS {
        bail!(
            "{}: its manifest was written by an older cargo-panic (pass version {}), whose \
             functions record no risks: rebuild it with this cargo-panic (`cargo panic build`, or \
             `cargo panic cc` after a clean for C/C++)",
            binary.display(),
            m.pass_version
        );
    }
    let mut report = assail::analyse(&m);
    // The manifest's `output` is the file the linker wrote (cargo's
    // `deps/<name>-<hash>`); name the binary as the user did.
    if let Some(name) = binary.file_name() {
        report.binary = name.to_string_lossy().into_owned();
    }
    if o.suggest_timeline {
        print!("{}", assail::suggest_timeline(&report, &m, o.top));
    } else if o.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&assail::top(&report, o.top))?
        );
    } else {
        print!("{}", assail::render_table(&report, o.top));
    }
    Ok(0)
}

/// `cargo panic build --release -p CRATE [cargo_args]` (the same command,
/// run as a child so its output and errors pass through as they are); the
/// crate's executable.
fn build(package: &str, cargo_args: &[String]) -> Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find the cargo-panic executable")?;
    let mut cmd = Command::new(me);
    cmd.arg("build").args(["-p", package]);
    let profile_given = cargo_args
        .iter()
        .any(|a| a == "--release" || a == "-r" || a.starts_with("--profile"));
    if !profile_given {
        cmd.arg("--release");
    }
    cmd.args(cargo_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let out = cmd
        .output()
        .with_context(|| format!("failed to run `cargo panic build -p {package}`"))?;
    if !out.status.success() {
        bail!(
            "`cargo panic build -p {package}` failed ({}): its errors are above",
            out.status
        );
    }
    let exes: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(PathBuf::from)
        .collect();
    let named = |p: &PathBuf| {
        p.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            n == package || n.replace('-', "_") == package.replace('-', "_")
        })
    };
    match exes.as_slice() {
        [] => bail!("`cargo panic build -p {package}` built no executable: nothing to assail"),
        [one] => Ok(one.clone()),
        many => match many.iter().find(|p| named(p)) {
            Some(p) => Ok(p.clone()),
            None => bail!(
                "`cargo panic build -p {package}` built several executables ({}): pick one with \
                 --binary",
                many.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    }
}
