//! The site manifest `<binary>.panic.json`, written by the link driver beside every
//! instrumented executable and read by `run`, `report` and `sites`.
//!
//! Invariants: sites are listed in counter order (a site's position is its counter
//! index in the runtime segment); `hist` is the global histogram index of a timed
//! site; nothing machine- or run-specific (temp dirs, times) is written, so two
//! clean builds of the same source give byte-identical manifests.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use panic_runtime::SiteKind;
use serde::{Deserialize, Serialize};

/// Bumped on incompatible changes; fields may be added without a bump.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// `cargo-panic <version>` that wrote it.
    pub tool: String,
    pub pass_version: u32,
    /// Content hash of the link driver that wrote it.
    pub driver: String,
    /// Runtime ABI version the binary was linked with.
    pub abi_version: u32,
    pub toolchain: String,
    /// File name of the linked output.
    pub output: String,
    pub opt_level: String,
    pub target_cpu: String,
    /// The dwell rule in force (see `panic_passes::DwellRule`).
    pub dwell_rule: serde_json::Value,
    pub inputs: Vec<Input>,
    pub n_hists: u32,
    pub sites: Vec<Site>,
}

/// One linker input and what the driver did with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// File name, or `archive(member)`.
    pub name: String,
    /// `bitcode` or `native`.
    pub format: String,
    pub instrumented: bool,
    /// Number of sites (instrumented inputs).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sites: u32,
    /// Why an input was not instrumented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    pub id: String,
    pub kind: SiteKind,
    pub function: String,
    pub file: Option<String>,
    pub line: u32,
    pub column: u32,
    /// The object the site was compiled from (`archive(member)` or file name).
    pub object: String,
    /// Whether the site opens a timed region.
    pub timed: bool,
    /// Entry sites: why the function is or is not timed (`forced`, `excluded`,
    /// `loop`, `size`, `small`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callee: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unwind: bool,
    /// A timed entry the rule chose (not forced): the runtime may demote it when
    /// its regions prove too short to time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adaptive: bool,
    /// Global histogram index of a timed site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hist: Option<u32>,
    pub symbol: String,
}

/// `<binary>.panic.json`
pub fn path_for(binary: &Path) -> PathBuf {
    let mut s = binary.as_os_str().to_owned();
    s.push(".panic.json");
    PathBuf::from(s)
}

impl Manifest {
    /// Reads the manifest of `binary`, with an error that says how to get one.
    pub fn for_binary(binary: &Path) -> Result<Manifest> {
        if !binary.exists() {
            bail!("{}: no such file", binary.display());
        }
        let path = path_for(binary);
        if !path.exists() {
            bail!(
                "{} has no site manifest ({} is missing): it was not linked by cargo-panic; \
                 build it with `cargo panic build` (or `cargo panic cc` for C/C++)",
                binary.display(),
                path.display()
            );
        }
        let m: Manifest = crate::fsutil::read_json(&path)?;
        if m.format != FORMAT {
            bail!(
                "{}: manifest format {} is not supported by this cargo-panic (expects {FORMAT}); \
                 rebuild the binary with this cargo-panic",
                path.display(),
                m.format
            );
        }
        Ok(m)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        crate::fsutil::write_json_atomic(path, self)
            .with_context(|| format!("failed to write the manifest {}", path.display()))
    }
}
