//! `cargo panic run`: runs an instrumented binary with a shared segment, passes its
//! stdin, stdout, stderr and exit status through, and writes the profile from the
//! segment once the program has ended, whichever way it ended (the segment is a
//! file, so even a SIGKILLed program leaves its counts behind).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cargo_panic::manifest::Manifest;
use cargo_panic::profile::{Exit, Profile};
use panic_runtime::Clock;
use panic_runtime::abi;
use panic_runtime::segment::Snapshot;

/// Segment files live in /dev/shm (memory, not disk) when it exists.
fn segment_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

const SEGMENT_PREFIX: &str = "cargo-panic-seg-";

/// Removes segment files left by runs that were killed before they cleaned up:
/// their name carries the pid of the `cargo panic run` that made them.
fn sweep_stale_segments(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(SEGMENT_PREFIX) else {
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

/// Deletes the segment file on every exit path of `run`.
struct SegmentFile(PathBuf);

impl Drop for SegmentFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn run(out: &Path, command: &[String]) -> Result<i32> {
    let binary = PathBuf::from(&command[0]);
    let args = &command[1..];
    // Everything that can be wrong is checked before the program runs.
    let manifest = Manifest::for_binary(&binary)?;
    let out_dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !out_dir.is_dir() {
        bail!(
            "cannot write the profile to {}: directory {} does not exist; create it or choose another --out",
            out.display(),
            out_dir.display()
        );
    }

    let dir = segment_dir();
    sweep_stale_segments(&dir);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seg = SegmentFile(dir.join(format!("{SEGMENT_PREFIX}{}-{nanos}", std::process::id())));

    let started = Instant::now();
    let exec_path = if binary.components().count() == 1 {
        Path::new(".").join(&binary)
    } else {
        binary.clone()
    };
    let mut child = Command::new(&exec_path)
        .args(args)
        .env(abi::ENV_SHM, &seg.0)
        .spawn()
        .with_context(|| format!("failed to start {}", binary.display()))?;
    // While the target runs, Ctrl-C goes to it (same process group); we wait for
    // it to end and still write the profile. (Set after the spawn: an ignored
    // signal would be inherited by the target.)
    let guard = IgnoreInterrupts::new();
    let status = child.wait().context("failed to wait for the target")?;
    drop(guard);
    let wall_ns = started.elapsed().as_nanos() as u64;
    let end = Clock::now();

    let bytes = std::fs::read(&seg.0).map_err(|e| {
        anyhow::anyhow!(
            "{} did not create its profiling segment ({e}); the program ended before the cargo-panic \
             runtime started, or it is not an instrumented build",
            binary.display()
        )
    })?;
    let snapshot = Snapshot::parse(&bytes).with_context(|| {
        format!(
            "the profiling segment of {} is unreadable",
            binary.display()
        )
    })?;
    let exit = match (status.code(), status.signal()) {
        (Some(code), _) => Exit {
            code: Some(code),
            signal: None,
        },
        (None, sig) => Exit {
            code: None,
            signal: sig,
        },
    };
    let profile = Profile::build(
        &manifest,
        &snapshot,
        end,
        binary.display().to_string(),
        args.to_vec(),
        exit,
        wall_ns,
    )?;
    cargo_panic::fsutil::write_json_atomic(out, &profile)?;
    eprintln!(
        "cargo-panic: profile of {} written to {} ({} sites)",
        binary.display(),
        out.display(),
        profile.sites.len()
    );
    Ok(cargo_panic::exit_code(status))
}

/// Ignores SIGINT and SIGQUIT in this process while the target runs (the terminal
/// delivers them to the target too), restoring them on drop.
struct IgnoreInterrupts {
    old_int: libc::sighandler_t,
    old_quit: libc::sighandler_t,
}

impl IgnoreInterrupts {
    fn new() -> Self {
        // SAFETY: setting a signal disposition to SIG_IGN is always sound.
        unsafe {
            IgnoreInterrupts {
                old_int: libc::signal(libc::SIGINT, libc::SIG_IGN),
                old_quit: libc::signal(libc::SIGQUIT, libc::SIG_IGN),
            }
        }
    }
}

impl Drop for IgnoreInterrupts {
    fn drop(&mut self) {
        // SAFETY: restores the dispositions saved in `new`.
        unsafe {
            libc::signal(libc::SIGINT, self.old_int);
            libc::signal(libc::SIGQUIT, self.old_quit);
        }
    }
}
