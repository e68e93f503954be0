//! Reads what an instrumented link produced, from the linked file itself: every
//! instrumented module's record in the sites section, and where the linker put
//! its counters and histograms (see `runtime/c/panic_abi.h`). Pure over the file's
//! bytes; the manifest is derived from this, whatever built the objects (the Rust
//! link driver, the clang plugin, a `cc`-crate build script, LTO).

use std::path::Path;

use anyhow::{Context, Result, bail};
use object::{Object, ObjectSection};
use panic_passes::ModuleSites;
use panic_runtime::abi;

/// One instrumented module as linked.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkedModule {
    pub sites: ModuleSites,
    /// Index of the module's first counter slot in the counters section.
    pub first_site: u64,
    /// Index of its first histogram slot (meaningless without timed sites).
    pub first_hist: u64,
}

/// Every instrumented module of a linked file, in counter order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Linked {
    pub modules: Vec<LinkedModule>,
    /// Counter slots the runtime will report (up to its trailer page).
    pub counter_slots: u64,
    /// Histogram slots the runtime will report.
    pub hist_slots: u64,
    /// Whether the runtime (its trailer pages) is in the file.
    pub has_runtime: bool,
}

impl Linked {
    pub fn n_sites(&self) -> usize {
        self.modules.iter().map(|m| m.sites.sites.len()).sum()
    }
}

/// Reads the linked executable or shared library at `path`.
pub fn read(path: &Path) -> Result<Linked> {
    let data = std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
    parse(&data).with_context(|| format!("{}: cannot read its instrumentation", path.display()))
}

/// Parses a linked ELF file's instrumentation sections.
pub fn parse(data: &[u8]) -> Result<Linked> {
    let file = object::File::parse(data).context("not an object file the reader understands")?;
    let section = |name: &str| file.section_by_name(name);
    let Some(records) = section(abi::SECTION_SITES) else {
        return Ok(Linked {
            has_runtime: section(abi::SECTION_COUNTERS).is_some(),
            ..Linked::default()
        });
    };
    let (ctr_addr, ctr_size) = match section(abi::SECTION_COUNTERS) {
        Some(s) => (s.address(), s.size()),
        None => bail!(
            "it has instrumented modules but no `{}` section: it was not linked with the cargo-panic runtime",
            abi::SECTION_COUNTERS
        ),
    };
    let (hist_addr, hist_size) =
        section(abi::SECTION_HISTS).map_or((0, 0), |s| (s.address(), s.size()));
    let trailer = |size: u64, what: &str| -> Result<u64> {
        if size < abi::PAGE {
            bail!(
                "its `{what}` section has no runtime trailer page: link the cargo-panic runtime \
                 (`cargo panic ldflags`) after every instrumented object"
            );
        }
        Ok(size - abi::PAGE)
    };
    let ctr_bytes = trailer(ctr_size, abi::SECTION_COUNTERS)?;
    let hist_bytes = trailer(hist_size, abi::SECTION_HISTS)?;
    let bytes = records
        .uncompressed_data()
        .context("cannot read the sites section")?;
    let mut modules = parse_records(&bytes)?
        .into_iter()
        .filter_map(|r| {
            // A module whose counters the linker discarded (section GC) ran no code.
            if r.counters < ctr_addr || r.counters >= ctr_addr + ctr_bytes {
                return None;
            }
            Some((r, ctr_addr, hist_addr))
        })
        .map(|(r, ctr_addr, hist_addr)| -> Result<LinkedModule> {
            let off = r.counters - ctr_addr;
            if off % 8 != 0 {
                bail!(
                    "module `{}`: counters at a misaligned offset {off}",
                    r.sites.key
                );
            }
            let first_hist = if r.sites.n_hists == 0 {
                0
            } else {
                let h = r
                    .hists
                    .checked_sub(hist_addr)
                    .filter(|h| h % abi::HIST_SIZE == 0);
                match h {
                    Some(h) if h + u64::from(r.sites.n_hists) * abi::HIST_SIZE <= hist_bytes => {
                        h / abi::HIST_SIZE
                    }
                    _ => bail!(
                        "module `{}`: its histograms are not where the runtime expects them",
                        r.sites.key
                    ),
                }
            };
            Ok(LinkedModule {
                first_site: off / 8,
                first_hist,
                sites: r.sites,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    modules.sort_by_key(|m| m.first_site);
    // Counters are laid out back to back: each module starts where the last ended.
    let mut next = 0u64;
    for m in &modules {
        if m.first_site != next {
            bail!(
                "module `{}`: its counters start at slot {} but the previous module ends at {next}; \
                 the counters section holds data cargo-panic did not put there",
                m.sites.key,
                m.first_site
            );
        }
        next += m.sites.sites.len() as u64;
    }
    if next * 8 > ctr_bytes {
        bail!("the counters section is smaller than its modules' sites");
    }
    Ok(Linked {
        modules,
        counter_slots: ctr_bytes / 8,
        hist_slots: hist_bytes / abi::HIST_SIZE,
        has_runtime: true,
    })
}

struct Record {
    counters: u64,
    hists: u64,
    sites: ModuleSites,
}

const MAGIC: &[u8] = abi::RECORD_MAGIC.as_bytes();

/// Splits the concatenated records (each 8-byte aligned; the linker pads between
/// input sections with zeros).
fn parse_records(b: &[u8]) -> Result<Vec<Record>> {
    let header = abi::RECORD_HEADER as usize;
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    let mut out = Vec::new();
    let mut off = 0usize;
    while off + 8 <= b.len() {
        if b[off..off + 8] != *MAGIC {
            if b[off..off + 8].iter().all(|&x| x == 0) {
                off += 8;
                continue;
            }
            bail!("corrupt sites section: no record at offset {off}");
        }
        if off + header > b.len() {
            bail!("corrupt sites section: truncated record at offset {off}");
        }
        let version = u64_at(off + 8);
        if version != abi::ABI_VERSION {
            bail!(
                "an object was instrumented for runtime ABI {version}, this cargo-panic uses {}: \
                 rebuild it (clean the build) with this cargo-panic",
                abi::ABI_VERSION
            );
        }
        let len = u64_at(off + 32) as usize;
        let start = off + header;
        let Some(json) = b.get(start..start + len) else {
            bail!("corrupt sites section: record at offset {off} runs past the end");
        };
        let sites: ModuleSites = serde_json::from_slice(json)
            .with_context(|| format!("corrupt sites record at offset {off}"))?;
        if !sites.records_uses() {
            bail!(
                "module `{}` was instrumented by an older cargo-panic (its functions do not \
                 record what they call and touch): rebuild it (clean the build) with this cargo-panic",
                sites.key
            );
        }
        out.push(Record {
            counters: u64_at(off + 16),
            hists: u64_at(off + 24),
            sites,
        });
        off = (start + len).next_multiple_of(8);
    }
    Ok(out)
}

/// What a link input (object, bitcode file or archive member) is, for the
/// manifest's `inputs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputFacts {
    /// Bitcode (LTO), not a native object.
    pub bitcode: bool,
    /// It has code at all (an object without code needs no probes).
    pub has_code: bool,
    /// It carries instrumentation: a native object has the sites section;
    /// bitcode names a `__panic_ctr_` array in its string table.
    pub instrumented: bool,
}

/// Reads an input once for all of [`InputFacts`].
pub fn inspect_input(data: &[u8]) -> InputFacts {
    if data.starts_with(b"BC\xc0\xde") {
        let needle = abi::SYM_CTR_PREFIX.as_bytes();
        return InputFacts {
            bitcode: true,
            has_code: true,
            instrumented: data.windows(needle.len()).any(|w| w == needle),
        };
    }
    match object::File::parse(data) {
        Ok(f) => InputFacts {
            bitcode: false,
            has_code: f
                .sections()
                .any(|s| s.kind() == object::SectionKind::Text && s.size() > 0),
            instrumented: f.section_by_name(abi::SECTION_SITES).is_some(),
        },
        Err(_) => InputFacts {
            bitcode: false,
            has_code: false,
            instrumented: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One record as an instrumented module emits it (`record_asm`).
    fn record(json: &str) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        for v in [abi::ABI_VERSION, 0x1000, 0, json.len() as u64] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(b.len() as u64, abi::RECORD_HEADER);
        b.extend_from_slice(json.as_bytes());
        b.resize(b.len().next_multiple_of(8), 0);
        b
    }

    const ENTRY: &str = r#"{"id":"00","kind":"entry","function":"f","symbol":"f","file":null,"line":0,"column":0,"timed":false,"reason":"small""#;

    #[test]
    fn records_carry_what_functions_call_and_touch() {
        let json = format!(
            r#"{{"key":"m.o","suffix":"s","n_hists":0,"sites":[{ENTRY},"callees":["g"],"touches":["cpu","global:x"]}}]}}"#
        );
        let r = parse_records(&record(&json)).unwrap();
        let f: Vec<_> = r[0].sites.functions().collect();
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].name, f[0].entry), ("f", "00"));
        assert_eq!(f[0].callees, ["g"]);
        assert_eq!(f[0].touches, ["cpu", "global:x"]);
    }

    #[test]
    fn an_exit_counted_by_its_entry_reads_the_entry_counter() {
        let exit = |id: &str, from_entry: bool, pending: bool| {
            format!(
                r#"{{"id":"{id}","kind":"exit","function":"f","symbol":"f","file":null,"line":0,"column":0,"timed":false,"from_entry":{from_entry},"pending":{pending}}}"#
            )
        };
        let entry = format!(r#"{ENTRY},"callees":[],"touches":[]}}"#);
        let json = format!(
            r#"{{"key":"m.o","suffix":"s","n_hists":0,"sites":[{entry},{},{entry},{},{entry},{}]}}"#,
            exit("01", true, false),
            exit("03", false, false),
            exit("05", true, true),
        );
        let r = parse_records(&record(&json)).unwrap();
        let linked = Linked {
            modules: vec![LinkedModule {
                sites: r[0].sites.clone(),
                first_site: 10,
                first_hist: 0,
            }],
            ..Linked::default()
        };
        let sites = crate::manifest::sites_from_linked(&linked);
        let count_of: Vec<_> = sites.iter().map(|s| s.count_of).collect();
        assert_eq!(count_of, [None, Some(10), None, None, None, Some(14)]);
        let pending: Vec<_> = sites.iter().map(|s| s.pending).collect();
        assert_eq!(pending, [false, false, false, false, false, true]);

        // Counts: the module's sites are the binary's 10..16 (0..10 stand in
        // for another module's). The pending exit is its entry less the
        // frames still inside (2 of 7); a racy live read whose pending
        // counter ran ahead of the entry it read gives 0.
        let mut m = crate::manifest::Manifest::from_linked(Path::new("b"), &linked);
        m.sites
            .splice(0..0, std::iter::repeat_n(sites[0].clone(), 10));
        let mut counters = vec![0u64; 16];
        counters[10..16].copy_from_slice(&[5, 9, 4, 3, 7, 2]);
        assert_eq!(m.counts(&counters)[10..], [5, 5, 4, 3, 7, 5]);
        counters[15] = 8;
        assert_eq!(m.count(15, &counters), 0);
    }

    #[test]
    fn records_carry_risks_and_manifests_keep_them() {
        let json = format!(
            r#"{{"key":"m.o","suffix":"s","n_hists":0,"sites":[{ENTRY},"callees":[],"touches":[],"risks":{{"frame_bytes":512,"alloc_in_loop":[7]}}}}]}}"#
        );
        let r = parse_records(&record(&json)).unwrap();
        let risks = r[0].sites.sites[0].risks.clone().unwrap();
        assert_eq!(
            (risks.frame_bytes, &risks.alloc_in_loop[..]),
            (512, &[7][..])
        );
        let linked = Linked {
            modules: vec![LinkedModule {
                sites: r[0].sites.clone(),
                first_site: 0,
                first_hist: 0,
            }],
            ..Linked::default()
        };
        let sites = crate::manifest::sites_from_linked(&linked);
        assert_eq!(sites[0].risks, Some(risks));
        // A record without them (no risk found, or an older pass) reads as none.
        let json = format!(
            r#"{{"key":"m.o","suffix":"s","n_hists":0,"sites":[{ENTRY},"callees":[],"touches":[]}}]}}"#
        );
        assert_eq!(
            parse_records(&record(&json)).unwrap()[0].sites.sites[0].risks,
            None
        );
    }

    #[test]
    fn a_record_from_an_older_pass_asks_for_a_rebuild() {
        let json = format!(r#"{{"key":"old.o","suffix":"s","n_hists":0,"sites":[{ENTRY}}}]}}"#);
        let e = format!("{:#}", parse_records(&record(&json)).err().unwrap());
        assert!(
            e.contains("`old.o`") && e.contains("older cargo-panic"),
            "{e}"
        );
        assert!(e.contains("rebuild"), "{e}");
    }
}
