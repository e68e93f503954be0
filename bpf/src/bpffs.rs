//! The BPF filesystem: making sure it is mounted, and the per-run directories
//! under it (`/sys/fs/bpf/cargo-panic/<run-id>/`) that hold a run's pins.
//!
//! A run id starts with the pid of the process that made it, so a later run can
//! tell a directory left by a killed run (its pid is gone) from a live one and
//! sweep it.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::KernelError;

/// Where bpffs is mounted on every distribution.
pub const BPFFS: &str = "/sys/fs/bpf";
/// The directory of cargo-panic's run directories, under [`BPFFS`].
pub const RUNS: &str = "cargo-panic";
/// `statfs` magic of bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn statfs_magic(path: &Path) -> io::Result<i64> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut st) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st.f_type)
    }
}

/// Mounts bpffs at [`BPFFS`] unless it is there already. (The mount is left in
/// place afterwards: other runs and other tools share it, as they do where the
/// init system mounts it.) Without bpffs a missing pin path fails with a
/// misleading ENOENT, so this is checked with statfs first.
pub fn ensure_mounted() -> Result<(), KernelError> {
    let root = Path::new(BPFFS);
    if statfs_magic(root).is_ok_and(|m| m == BPF_FS_MAGIC) {
        return Ok(());
    }
    if !root.is_dir() {
        return Err(KernelError::Bpffs(format!(
            "{BPFFS} does not exist, so bpffs cannot be mounted there; this kernel has no sysfs BPF mount point"
        )));
    }
    let src = c"bpf";
    let dst = CString::new(BPFFS).map_err(|e| KernelError::Bpffs(e.to_string()))?;
    // SAFETY: all pointers are valid NUL-terminated strings; data is null.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(KernelError::Bpffs(format!(
            "bpffs is not mounted at {BPFFS} and mounting it failed: {e}; mount it with `mount -t bpf bpf {BPFFS}`"
        )));
    }
    Ok(())
}

/// Whether a process exists (EPERM means it exists but is not ours).
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The pid a run id was made by.
fn run_pid(name: &str) -> Option<i32> {
    name.split('-').next()?.parse().ok()
}

/// A run's directory of pins; removed with everything in it on drop.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates `/sys/fs/bpf/cargo-panic/<pid>-<nanos>` (mode 0700) after
    /// sweeping the directories of runs whose process is gone.
    pub fn create() -> Result<RunDir, KernelError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        RunDir::create_in(
            &Path::new(BPFFS).join(RUNS),
            &format!("{}-{nanos}", std::process::id()),
        )
    }

    /// Creates `<runs>/<id>` (mode 0700, `runs` too if missing) after
    /// sweeping `runs`; an existing `<runs>/<id>` is another run's.
    fn create_in(runs: &Path, id: &str) -> Result<RunDir, KernelError> {
        let io_err = |what: String| move |e: io::Error| KernelError::Io { what, source: e };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(runs)
            .map_err(io_err(format!("creating {}", runs.display())))?;
        sweep(runs);
        let path = runs.join(id);
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => Ok(RunDir { path }),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(KernelError::PinBusy(path)),
            Err(e) => Err(io_err(format!("creating {}", path.display()))(e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets a pin's mode to 0600: only root opens the run's maps.
    pub fn restrict(&self, pin: &Path) -> Result<(), KernelError> {
        std::fs::set_permissions(pin, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
            KernelError::Io {
                what: format!("setting the mode of {}", pin.display()),
                source: e,
            }
        })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        remove_run(&self.path);
    }
}

/// Unlinks every pin of a run directory, then the directory.
fn remove_run(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Removes the run directories whose process no longer exists (a run killed
/// before it could clean up). Returns what it removed.
pub fn sweep(runs: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(runs) else {
        return removed;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if run_pid(&name).is_some_and(|pid| !alive(pid)) {
            remove_run(&e.path());
            removed.push(e.path());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_name_their_pid() {
        assert_eq!(run_pid("1234-99"), Some(1234));
        assert_eq!(run_pid("x-99"), None);
        assert_eq!(run_pid(""), None);
    }

    /// A run directory that exists (a live run's: its pid is ours) is not
    /// taken over or swept; the error names it and what to do.
    #[test]
    fn an_occupied_run_directory_is_refused_by_name() {
        let runs = tempfile::tempdir().unwrap();
        let id = format!("{}-1", std::process::id());
        std::fs::create_dir(runs.path().join(&id)).unwrap();
        std::fs::write(runs.path().join(&id).join("pin"), b"").unwrap();
        let err = RunDir::create_in(runs.path(), &id).unwrap_err();
        assert!(matches!(&err, KernelError::PinBusy(p) if *p == runs.path().join(&id)));
        let msg = err.to_string();
        assert!(msg.contains(&id) && msg.contains("another run"), "{msg}");
        assert!(runs.path().join(&id).join("pin").exists(), "left alone");
        // A free id is created, and removed with everything in it on drop.
        let dir = RunDir::create_in(runs.path(), "2-2").unwrap();
        std::fs::write(dir.path().join("pin"), b"").unwrap();
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
    }
}
