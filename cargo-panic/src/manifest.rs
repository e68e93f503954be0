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
pub const FORMAT: u32 = 2;

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
    /// Counter slots the runtime reports: the sites, then padding up to a page.
    pub counter_slots: u64,
    /// Histogram slots the runtime reports.
    pub hist_slots: u64,
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

/// The manifest's sites for a linked file: every module's sites in counter order,
/// with global histogram indexes.
pub fn sites_from_linked(linked: &crate::linked::Linked) -> Vec<Site> {
    let mut sites = Vec::with_capacity(linked.n_sites());
    for m in &linked.modules {
        for s in &m.sites.sites {
            sites.push(Site {
                id: s.id.clone(),
                kind: s.kind,
                function: s.function.clone(),
                file: s.file.clone(),
                line: s.line,
                column: s.column,
                object: m.sites.key.clone(),
                timed: s.timed,
                reason: s.reason.map(|r| r.name().to_string()),
                callee: s.callee.clone(),
                unwind: s.unwind,
                adaptive: s.adaptive,
                hist: s.hist.map(|h| h + m.first_hist as u32),
                symbol: s.symbol.clone(),
            });
        }
    }
    sites
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
            // Linked by hand (`cargo panic ldflags`): the binary carries its sites.
            if let Ok(linked) = crate::linked::read(binary)
                && linked.n_sites() > 0
            {
                return Ok(Manifest::from_linked(binary, &linked));
            }
            bail!(
                "{} has no site manifest ({} is missing): it was not linked by cargo-panic; \
                 build it with `cargo panic build` (or `cargo panic cc` for C/C++)",
                binary.display(),
                path.display()
            );
        }
        // The format first, so an older manifest gets this message, not a
        // missing field.
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let f: Format = crate::fsutil::read_json(&path)?;
        if f.format != FORMAT {
            bail!(
                "{}: manifest format {} is not supported by this cargo-panic (expects {FORMAT}); \
                 rebuild the binary with this cargo-panic",
                path.display(),
                f.format
            );
        }
        crate::fsutil::read_json(&path)
    }

    /// The manifest of a binary linked without cargo-panic's link step, from the
    /// sites it carries; what only the link step knows (inputs, rule) is empty.
    pub fn from_linked(binary: &Path, linked: &crate::linked::Linked) -> Manifest {
        Manifest {
            format: FORMAT,
            tool: format!("cargo-panic {}", env!("CARGO_PKG_VERSION")),
            pass_version: 0,
            driver: String::new(),
            abi_version: panic_runtime::abi::ABI_VERSION as u32,
            toolchain: String::new(),
            output: binary
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            opt_level: String::new(),
            target_cpu: String::new(),
            dwell_rule: serde_json::Value::Null,
            inputs: Vec::new(),
            counter_slots: linked.counter_slots,
            hist_slots: linked.hist_slots,
            sites: sites_from_linked(linked),
        }
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        crate::fsutil::write_json_atomic(path, self)
            .with_context(|| format!("failed to write the manifest {}", path.display()))
    }
}
