//! Linker inputs: loose files and `ar` archives (rlibs), sniffed by content, never
//! by file name. Bitcode becomes a codegen job; archives holding bitcode are
//! rewritten with the instrumented objects in place of their bitcode members, so
//! the linker keeps its lazy archive semantics.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use ar_archive_writer::{ArchiveKind, DEFAULT_OBJECT_READER, NewArchiveMember};
use cargo_panic_core::manifest::Input;
use memmap2::Mmap;
use object::read::archive::ArchiveFile;

use crate::codegen::Job;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Bitcode,
    Archive,
    Elf,
    Other,
}

fn format_of(head: &[u8]) -> Format {
    if head.starts_with(b"BC\xC0\xDE") || head.starts_with(&[0xDE, 0xC0, 0x17, 0x0B]) {
        Format::Bitcode
    } else if head.starts_with(b"!<arch>\n") || head.starts_with(b"!<thin>\n") {
        Format::Archive
    } else if head.starts_with(b"\x7fELF") {
        Format::Elf
    } else {
        Format::Other
    }
}

/// The format of a file, from its first bytes.
pub fn sniff(path: &Path) -> Result<Format> {
    let mut head = [0u8; 8];
    let mut f =
        std::fs::File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let n = f
        .read(&mut head)
        .with_context(|| format!("failed to read {}", path.display()))?;
    Ok(format_of(&head[..n]))
}

fn map(path: &Path) -> Result<Arc<Mmap>> {
    let f =
        std::fs::File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    // SAFETY: the inputs are build artefacts nobody modifies during the link.
    let m =
        unsafe { Mmap::map(&f) }.with_context(|| format!("failed to map {}", path.display()))?;
    Ok(Arc::new(m))
}

struct Member {
    name: String,
    key: String,
    format: Format,
    range: Range<usize>,
    /// A native object instrumented already (C compiled with the clang plugin).
    instrumented: bool,
}

enum Kind {
    /// A native operand; `instrumented` when it is an object compiled with the
    /// clang plugin.
    Native {
        format: Format,
        instrumented: bool,
    },
    Bitcode {
        key: String,
    },
    Archive {
        data: Arc<Mmap>,
        members: Vec<Member>,
        has_bitcode: bool,
    },
}

/// One file operand of the link line.
pub struct Loaded {
    path: PathBuf,
    name: String,
    kind: Kind,
}

fn display_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Reads one file operand, queueing a job for every bitcode module in it.
pub fn load(path: &Path, jobs: &mut Vec<Job>) -> Result<Loaded> {
    let name = display_name(path);
    let format = sniff(path)?;
    let kind = match format {
        Format::Bitcode => {
            let data = map(path)?;
            let len = data.len();
            jobs.push(Job {
                key: name.clone(),
                data,
                range: 0..len,
            });
            Kind::Bitcode { key: name.clone() }
        }
        Format::Archive => {
            let data = map(path)?;
            let archive = ArchiveFile::parse(&**data).with_context(|| {
                format!(
                    "cannot read archive {}: not a valid `ar` file",
                    path.display()
                )
            })?;
            if archive.is_thin() {
                // Members of a thin archive live in other files; none of rustc's inputs are thin.
                Kind::Native {
                    format: Format::Archive,
                    instrumented: false,
                }
            } else {
                let mut members = Vec::new();
                let mut seen = HashSet::new();
                let mut has_bitcode = false;
                for m in archive.members() {
                    let m =
                        m.with_context(|| format!("cannot read a member of {}", path.display()))?;
                    let mname = String::from_utf8_lossy(m.name()).into_owned();
                    let (off, size) = m.file_range();
                    let range = off as usize..(off + size) as usize;
                    let fmt = format_of(&data[range.clone()]);
                    let mut key = format!("{name}({mname})");
                    let mut n = 1;
                    while !seen.insert(key.clone()) {
                        n += 1;
                        key = format!("{name}({mname})#{n}");
                    }
                    if fmt == Format::Bitcode {
                        has_bitcode = true;
                        jobs.push(Job {
                            key: key.clone(),
                            data: data.clone(),
                            range: range.clone(),
                        });
                    }
                    let instrumented = fmt == Format::Elf
                        && cargo_panic_core::linked::inspect_input(&data[range.clone()]).instrumented;
                    members.push(Member {
                        name: mname,
                        key,
                        format: fmt,
                        range,
                        instrumented,
                    });
                }
                Kind::Archive {
                    data,
                    members,
                    has_bitcode,
                }
            }
        }
        Format::Elf => Kind::Native {
            format: Format::Elf,
            instrumented: cargo_panic_core::linked::inspect_input(&map(path)?).instrumented,
        },
        other => Kind::Native {
            format: other,
            instrumented: false,
        },
    };
    Ok(Loaded {
        path: path.to_path_buf(),
        name,
        kind,
    })
}

impl Loaded {
    /// The manifest's view of this operand.
    pub fn inputs(&self) -> Vec<Input> {
        let native = |name: &str, instrumented: bool, what: &str| Input {
            name: name.to_string(),
            format: "native".into(),
            instrumented,
            sites: 0,
            note: (!instrumented).then(|| format!("{what} (not instrumented)")),
        };
        match &self.kind {
            Kind::Native {
                format: Format::Archive,
                ..
            } => vec![native(&self.name, false, "native archive")],
            Kind::Native { instrumented, .. } => {
                vec![native(&self.name, *instrumented, "native object")]
            }
            Kind::Bitcode { key } => vec![bitcode_input(key)],
            Kind::Archive {
                has_bitcode: false,
                members,
                ..
            } if !members.iter().any(|m| m.instrumented) => {
                vec![native(&self.name, false, "native archive")]
            }
            Kind::Archive { members, .. } => members
                .iter()
                // rustc's metadata member is an ELF wrapper, not code.
                .filter(|m| m.format != Format::Other && m.name != "lib.rmeta")
                .map(|m| match m.format {
                    Format::Bitcode => bitcode_input(&m.key),
                    _ => native(&m.key, m.instrumented, "native archive member"),
                })
                .collect(),
        }
    }
}

fn bitcode_input(key: &str) -> Input {
    Input {
        name: key.to_string(),
        format: "bitcode".into(),
        instrumented: true,
        sites: 0,
        note: None,
    }
}

/// The path the real linker gets for this operand: the original for native input,
/// the instrumented object for loose bitcode, a rewritten archive for archives
/// that held bitcode (native members kept, metadata such as `lib.rmeta` dropped).
pub fn materialise(l: &Loaded, objects: &BTreeMap<&str, &Path>, tmp: &Path) -> Result<PathBuf> {
    match &l.kind {
        Kind::Native { .. }
        | Kind::Archive {
            has_bitcode: false, ..
        } => Ok(l.path.clone()),
        Kind::Bitcode { key } => Ok(objects
            .get(key.as_str())
            .with_context(|| format!("internal error: no object for {key}"))?
            .to_path_buf()),
        Kind::Archive { data, members, .. } => {
            let mut new_members = Vec::new();
            for m in members {
                let bytes: Vec<u8> = match m.format {
                    Format::Bitcode => {
                        let obj = objects
                            .get(m.key.as_str())
                            .with_context(|| format!("internal error: no object for {}", m.key))?;
                        std::fs::read(obj)
                            .with_context(|| format!("failed to read {}", obj.display()))?
                    }
                    Format::Elf => data[m.range.clone()].to_vec(),
                    _ => continue,
                };
                new_members.push(NewArchiveMember::new(
                    bytes,
                    &DEFAULT_OBJECT_READER,
                    m.name.clone(),
                ));
            }
            let dir = tmp.join("archives");
            std::fs::create_dir_all(&dir)?;
            let mut out = dir.join(&l.name);
            let mut n = 1;
            while out.exists() {
                n += 1;
                out = dir.join(format!("{n}-{}", l.name));
            }
            let mut buf = std::io::Cursor::new(Vec::new());
            ar_archive_writer::write_archive_to_stream(
                &mut buf,
                &new_members,
                ArchiveKind::Gnu,
                false,
                None,
            )
            .with_context(|| format!("failed to write the instrumented archive for {}", l.name))?;
            std::fs::write(&out, buf.into_inner())
                .with_context(|| format!("failed to write {}", out.display()))?;
            Ok(out)
        }
    }
}

/// The first bitcode member of an archive, if any.
pub fn first_bitcode_member(path: &Path) -> Result<Option<String>> {
    match sniff(path)? {
        Format::Archive => {}
        Format::Bitcode => return Ok(Some(display_name(path))),
        _ => return Ok(None),
    }
    let data = map(path)?;
    let Ok(archive) = ArchiveFile::parse(&**data) else {
        bail!("cannot read archive {}", path.display());
    };
    for m in archive.members() {
        let m = m?;
        if let Ok(bytes) = m.data(&**data)
            && format_of(bytes) == Format::Bitcode
        {
            return Ok(Some(String::from_utf8_lossy(m.name()).into_owned()));
        }
    }
    Ok(None)
}
