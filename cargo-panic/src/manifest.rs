//! The site manifest `<binary>.panic.json`, written by the link driver beside every
//! instrumented executable and read by `run`, `report` and `sites`.
//!
//! Invariants: sites are listed in counter order (a site's position is its counter
//! index in the runtime segment); `hist` is the global histogram index of a timed
//! site; nothing machine- or run-specific (temp dirs, times) is written, so two
//! clean builds of the same source give byte-identical manifests.
//!
//! What each instrumented function uses is on its entry site (one per function):
//! `callees` (the demangled functions it calls directly) and `touches` (what it
//! uses directly, in the vocabulary of `panic_passes::touches`), both sorted and
//! always present on entry sites, absent on the others. [`Manifest::functions`]
//! lists them; [`Manifest::functions_that_ran`] keeps those a profile saw enter.
//! An entry site may also carry `risks` (`panic_passes::assail`, absent when
//! empty), which `cargo panic assail` ranks.
//! (They live on the entry sites rather than in a top-level list so that the
//! manifest stays one list read from the linked file, with nothing repeated.)

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use panic_runtime::SiteKind;
use serde::{Deserialize, Serialize};

/// Bumped on incompatible changes; fields may be added without a bump.
/// 3: entry sites carry `callees` and `touches` (a format 2 manifest has neither,
/// which would read as functions that touch nothing).
pub const FORMAT: u32 = 3;

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
    /// Entry sites: the demangled functions the function calls directly, sorted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callees: Option<Vec<String>>,
    /// Entry sites: what the function uses directly (`panic_passes::touches`),
    /// sorted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touches: Option<Vec<String>>,
    /// Call sites whose call a fault can fail, and how (`alloc`: the
    /// allocation is refused; `file`, `socket`, `wait`: the blocking call
    /// fails with an errno), for `cargo panic attack`'s fault events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<panic_passes::FaultPoint>,
    /// Entry sites: the function's static risks (`panic_passes::assail`:
    /// frame bytes, raw pointer operations, unchecked allocations, buffer
    /// operations, allocations in loops, lock order, blocking calls in async
    /// bodies), for `cargo panic assail`; absent when none was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risks: Option<panic_passes::Risks>,
    /// An exit without a probe at its return: its count is that of the site
    /// at this index, its function's entry (`panic_passes::SiteRecord::from_entry`),
    /// less its own counter when `pending` is set. Read counts through
    /// [`Manifest::count`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count_of: Option<u32>,
    /// With `count_of`: the site's own counter holds the frames inside a call
    /// that may not come back, which have not left (`panic_passes::SiteRecord::pending`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

/// An exit whose count comes from its function's entry (`Site::count_of`):
/// what [`Manifest::count`] needs of it, for readers that keep no manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FromEntry {
    pub site: u32,
    pub entry: u32,
    pub pending: bool,
}

impl FromEntry {
    /// Site `i` of `m`, if its count comes from its entry.
    pub fn of(m: &Manifest, i: usize) -> Option<FromEntry> {
        let s = m.sites.get(i)?;
        Some(FromEntry {
            site: i as u32,
            entry: s.count_of?,
            pending: s.pending,
        })
    }

    /// The exit count: the entry's counter, less the site's own (the frames
    /// still inside a call that may not come back) when `pending`.
    pub fn count(&self, counters: &[u64]) -> u64 {
        let at = |i: u32| counters.get(i as usize).copied().unwrap_or(0);
        if self.pending {
            at(self.entry).saturating_sub(at(self.site))
        } else {
            at(self.entry)
        }
    }
}

/// One instrumented function and what it uses, from its entry site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    /// Demangled name, as the sites' `function` spells it.
    pub name: String,
    /// Id of its entry site: a profile's count there says whether it ran.
    pub entry: String,
    /// Whether its entry is timed (it is a timed region; `dwell` is in `touches`).
    pub timed: bool,
    /// Demangled names of the functions it calls directly, sorted.
    pub callees: Vec<String>,
    /// What it uses directly (`panic_passes::touches`), sorted.
    pub touches: Vec<String>,
}

impl Function {
    /// The function whose entry site is `s`; `None` for any other site.
    pub fn of_entry(s: &Site) -> Option<Function> {
        (s.kind == SiteKind::Entry).then(|| Function {
            name: s.function.clone(),
            entry: s.id.clone(),
            timed: s.timed,
            callees: s.callees.clone().unwrap_or_default(),
            touches: s.touches.clone().unwrap_or_default(),
        })
    }
}

/// The manifest's sites for a linked file: every module's sites in counter order,
/// with global histogram indexes.
pub fn sites_from_linked(linked: &crate::linked::Linked) -> Vec<Site> {
    let mut sites = Vec::with_capacity(linked.n_sites());
    for m in &linked.modules {
        // A function's sites are contiguous, its entry first.
        let mut entry = None;
        for (j, s) in m.sites.sites.iter().enumerate() {
            if s.kind == SiteKind::Entry {
                entry = Some((m.first_site + j as u64) as u32);
            }
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
                callees: s.callees.clone(),
                touches: s.touches.clone(),
                fault: s.fault,
                risks: s.risks.clone(),
                count_of: if s.from_entry { entry } else { None },
                pending: s.from_entry && s.pending,
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

    /// Site `i`'s count from the binary's counters (a snapshot's, one per
    /// site): its own counter, or its entry's less its own for an exit without
    /// a probe (`Site::count_of`, `Site::pending`). A live snapshot reads the
    /// counters one after another, so the difference never goes below zero.
    pub fn count(&self, i: usize, counters: &[u64]) -> u64 {
        match FromEntry::of(self, i) {
            Some(d) => d.count(counters),
            None => counters.get(i).copied().unwrap_or(0),
        }
    }

    /// Every site's count ([`Manifest::count`]), in site order.
    pub fn counts(&self, counters: &[u64]) -> Vec<u64> {
        (0..self.sites.len())
            .map(|i| self.count(i, counters))
            .collect()
    }

    /// Every instrumented function, in site order, with what it calls and
    /// touches (from its entry site).
    pub fn functions(&self) -> Vec<Function> {
        self.sites.iter().filter_map(Function::of_entry).collect()
    }

    /// The functions `profile` (a run of this binary) saw enter at least once.
    pub fn functions_that_ran(&self, profile: &crate::profile::Profile) -> Vec<Function> {
        let ran: std::collections::HashSet<&str> = profile
            .sites
            .iter()
            .filter(|s| s.kind == SiteKind::Entry && s.count > 0)
            .map(|s| s.id.as_str())
            .collect();
        self.sites
            .iter()
            .filter(|s| ran.contains(s.id.as_str()))
            .filter_map(Function::of_entry)
            .collect()
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        crate::fsutil::write_json_atomic(path, self)
            .with_context(|| format!("failed to write the manifest {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(id: &str, kind: SiteKind, function: &str) -> Site {
        let entry = kind == SiteKind::Entry;
        Site {
            id: id.into(),
            kind,
            function: function.into(),
            file: None,
            line: 0,
            column: 0,
            object: "m.o".into(),
            timed: false,
            reason: None,
            callee: None,
            unwind: false,
            adaptive: false,
            hist: None,
            symbol: function.into(),
            callees: entry.then(|| vec!["b".to_string()]),
            touches: entry.then(|| vec![format!("global:{function}_state")]),
            fault: None,
            risks: None,
            count_of: None,
            pending: false,
        }
    }

    fn manifest() -> Manifest {
        let linked = crate::linked::Linked::default();
        let mut m = Manifest::from_linked(Path::new("/x/bin"), &linked);
        m.sites = vec![
            site("a0", SiteKind::Entry, "a"),
            site("a1", SiteKind::Exit, "a"),
            site("b0", SiteKind::Entry, "b"),
            site("b1", SiteKind::Exit, "b"),
        ];
        m
    }

    #[test]
    fn functions_are_read_from_entry_sites() {
        let m = manifest();
        let f: Vec<_> = m
            .functions()
            .into_iter()
            .map(|f| (f.name, f.entry, f.timed, f.callees, f.touches))
            .collect();
        assert_eq!(
            f,
            [
                (
                    "a".into(),
                    "a0".into(),
                    false,
                    vec!["b".to_string()],
                    vec!["global:a_state".to_string()]
                ),
                (
                    "b".into(),
                    "b0".into(),
                    false,
                    vec!["b".to_string()],
                    vec!["global:b_state".to_string()]
                )
            ]
        );
        // Round trip: only entry sites carry the lists.
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["sites"][0]["callees"], serde_json::json!(["b"]));
        assert!(json["sites"][1].get("touches").is_none());
        assert_eq!(serde_json::from_value::<Manifest>(json).unwrap(), m);
    }

    #[test]
    fn a_profile_restricts_functions_to_those_that_ran() {
        let m = manifest();
        let profile = serde_json::json!({
            "version": 1, "binary": "bin", "args": [], "exit": {"code": 0, "signal": null},
            "wall_ns": 1, "clock": "ns",
            "runtime": {"state": "exited", "fatal_signal": null, "fault_addr": null,
                "signal_tid": null, "threads_used": 1, "threads_over_capacity": 0,
                "depth_overflows": 0, "abandoned_regions": 0},
            "threads": [],
            "sites": m.sites.iter().enumerate().map(|(i, s)| serde_json::json!({
                "index": i, "id": s.id, "kind": s.kind, "function": s.function,
                "file": null, "line": 0, "column": 0, "object": "m.o", "timed": false,
                "count": if s.function == "b" { 2 } else { 0 }, "dwell_ns": null,
            })).collect::<Vec<_>>(),
        });
        let profile: crate::profile::Profile = serde_json::from_value(profile).unwrap();
        let ran: Vec<_> = m
            .functions_that_ran(&profile)
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(ran, ["b"]);
    }

    #[test]
    fn an_older_manifest_format_asks_for_a_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::write(&bin, b"").unwrap();
        let mut old = serde_json::to_value(manifest()).unwrap();
        old["format"] = serde_json::json!(2);
        std::fs::write(path_for(&bin), old.to_string()).unwrap();
        let e = Manifest::for_binary(&bin).err().unwrap().to_string();
        assert!(
            e.contains("manifest format 2 is not supported") && e.contains("rebuild"),
            "{e}"
        );
    }
}
