//! `cargo panic explain`: a profile's crash signature, derived again from its
//! evidence with the rules of this version (so an explanation never depends
//! on the version that ran the program, only on what it collected).

use std::path::Path;

use anyhow::{Context, Result, bail};
use cargo_panic_core::profile::{self, Profile};
use cargo_panic_core::signature::{self, collect, facts::SiteInfo};

pub fn explain(path: &Path, stderr: Option<&Path>, json: bool) -> Result<i32> {
    let value: serde_json::Value = cargo_panic_core::fsutil::read_json(path)?;
    let version = value.get("version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(profile::VERSION)) {
        bail!(
            "{} is a profile of format {}, and this cargo-panic reads format {} (the first with \
             crash evidence); run the program again with `cargo panic run`",
            path.display(),
            version.map_or_else(|| "unknown".to_string(), |v| v.to_string()),
            profile::VERSION
        );
    }
    let p: Profile = serde_json::from_value(value)
        .with_context(|| format!("{} is not a cargo-panic profile", path.display()))?;
    let Some(mut evidence) = p.evidence else {
        bail!(
            "{}: the run did not fail ({}), so there is nothing to explain",
            path.display(),
            match (p.exit.code, p.exit.signal) {
                (Some(c), _) => format!("exit status {c}"),
                (None, Some(s)) => format!("signal {s}"),
                _ => "no exit status".to_string(),
            }
        );
    };
    if let Some(file) = stderr {
        let bytes = std::fs::read(file)
            .with_context(|| format!("cannot read the stderr log {}", file.display()))?;
        (evidence.stderr, evidence.stderr_tail) = collect::stderr_evidence(&bytes);
    }
    let sites: Vec<SiteInfo> = p.sites.iter().map(SiteInfo::from).collect();
    let Some(mut sig) = signature::classify(&evidence, &sites) else {
        bail!("{}: no rule explains this run's evidence", path.display());
    };
    // Replays happened at run time; their tally stays with the signature.
    if let Some(old) = &p.signature
        && let Some(r) = old.replay
        && old.hash == sig.hash
    {
        sig = sig.with_replay(r.runs, r.same);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&sig)?);
    } else {
        print!("{}", sig.render());
        if !evidence.stderr_tail.is_empty() && stderr.is_none() {
            println!("\nlast lines of stderr:");
            for l in evidence.stderr_tail.iter().rev().take(10).rev() {
                println!("  | {l}");
            }
        }
    }
    Ok(0)
}
