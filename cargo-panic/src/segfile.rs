//! The files that hold an instrumented program's shared segment while it
//! runs (`CARGO_PANIC_SHM`): where they live, their names, and the sweep of
//! files left behind by a killed `cargo panic run`/`attack`. Shared by both.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Segment files live in /dev/shm (memory, not disk) when it exists.
pub fn dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Every segment file's name starts with this, then the pid of the
/// cargo-panic that made it.
pub const PREFIX: &str = "cargo-panic-seg-";

/// Removes segment files left by runs that were killed before they cleaned
/// up: their name carries the pid of the cargo-panic that made them.
pub fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A segment file's path, deleted on drop (every exit path of a run).
pub struct SegmentFile(PathBuf);

impl SegmentFile {
    /// A fresh, unused path (the program creates the file).
    pub fn new() -> std::io::Result<SegmentFile> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        Ok(SegmentFile(dir().join(format!(
            "{PREFIX}{}-{nanos}-{seq}",
            std::process::id()
        ))))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SegmentFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
