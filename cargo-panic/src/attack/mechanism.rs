//! The stress mechanisms the engine owns directly (stressor processes,
//! cgroup limits and the proxy have their own modules): the freezer's duty
//! cycle, the size-limited scratch filesystem, and how levels map onto them
//! (what "achieved" means per mechanism, network faults combined).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::proxy::Faults;
use super::timeline::{Level, NetLevel, Via};
use crate::cgroup::{self, Group, RunCgroup};

/// The freezer's duty cycle, run on its own thread so pauses are timed
/// precisely whatever the tick loop does.
pub struct Freezer {
    pause_ns: Arc<AtomicU64>,
    every_ns: Arc<AtomicU64>,
    frozen_ns: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    last_frozen: u64,
    last_at: Instant,
}

impl Freezer {
    pub fn start(cg: Arc<RunCgroup>) -> Freezer {
        let pause_ns = Arc::new(AtomicU64::new(0));
        let every_ns = Arc::new(AtomicU64::new(1));
        let frozen_ns = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, e, f, s) = (
            pause_ns.clone(),
            every_ns.clone(),
            frozen_ns.clone(),
            stop.clone(),
        );
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let pause = p.load(Ordering::Relaxed);
                let every = e.load(Ordering::Relaxed).max(1);
                if pause == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                let t = Instant::now();
                if cg.freeze(Group::Target, true).is_ok() {
                    std::thread::sleep(Duration::from_nanos(pause));
                    let _ = cg.freeze(Group::Target, false);
                    f.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                }
                let rest = Duration::from_nanos(every.saturating_sub(pause));
                let until = t + Duration::from_nanos(pause) + rest;
                while !s.load(Ordering::Relaxed) && Instant::now() < until {
                    std::thread::sleep(
                        until
                            .saturating_duration_since(Instant::now())
                            .min(Duration::from_millis(5)),
                    );
                }
            }
            let _ = cg.freeze(Group::Target, false);
        });
        Freezer {
            pause_ns,
            every_ns,
            frozen_ns,
            stop,
            thread: Some(thread),
            last_frozen: 0,
            last_at: Instant::now(),
        }
    }

    pub fn set(&self, pause_ns: u64, every_ns: u64) {
        self.every_ns.store(every_ns.max(1), Ordering::Relaxed);
        self.pause_ns.store(pause_ns, Ordering::Relaxed);
    }

    /// The fraction of time frozen since the previous call.
    pub fn achieved(&mut self) -> Option<f64> {
        let f = self.frozen_ns.load(Ordering::Relaxed);
        let dt = self.last_at.elapsed().as_nanos() as f64;
        let frac = (dt > 0.0).then(|| (f - self.last_frozen) as f64 / dt);
        self.last_frozen = f;
        self.last_at = Instant::now();
        frac
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A size-limited tmpfs for the target's files (the disk axis's `fill`).
pub struct Scratch {
    pub dir: PathBuf,
    mounted: bool,
    filler: Option<PathBuf>,
}

const SCRATCH_PREFIX: &str = "cargo-panic-scratch-";

impl Scratch {
    pub fn create(size: u64) -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("{SCRATCH_PREFIX}{}", cgroup::new_run_id()));
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let opts = format!("size={size},mode=0777");
        let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
        let (src, target, fstype, data) = (
            c("cargo-panic"),
            c(dir.to_str().context("temp dir path is not UTF-8")?),
            c("tmpfs"),
            c(&opts),
        );
        // SAFETY: valid NUL-terminated strings; mounting needs root, the error says so.
        let r = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            let _ = std::fs::remove_dir(&dir);
            bail!(
                "cannot mount a size-limited tmpfs for the disk axis's fill events at {}: {e} (run as root)",
                dir.display()
            );
        }
        Ok(Scratch {
            dir,
            mounted: true,
            filler: None,
        })
    }

    pub fn free(&self) -> Option<f64> {
        let c = std::ffi::CString::new(self.dir.to_str()?).ok()?;
        // SAFETY: statvfs fills the struct we pass.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid path and out pointer.
        (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0)
            .then_some(st.f_bavail as f64 * st.f_frsize as f64)
    }

    /// Grows the filler file so that at most `free` bytes stay free (never shrinks it).
    pub fn fill_to(&mut self, free: u64) -> Result<()> {
        let now = self.free().unwrap_or(0.0) as u64;
        if now <= free {
            return Ok(());
        }
        let path = self.dir.join(".cargo-panic-fill");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let cur = f.metadata()?.len();
        let grow = now - free;
        // SAFETY: fallocate on an open file we own.
        let r = unsafe {
            libc::fallocate(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                0,
                cur as i64,
                grow as i64,
            )
        };
        if r != 0 {
            bail!(
                "cannot fill the scratch filesystem: {}",
                std::io::Error::last_os_error()
            );
        }
        self.filler = Some(path);
        Ok(())
    }

    pub fn unfill(&mut self) {
        if let Some(p) = self.filler.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.mounted {
            let c = std::ffi::CString::new(self.dir.to_str().unwrap_or_default()).expect("no NUL");
            // SAFETY: detaching our own mount.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Unmounts and removes scratch mounts whose creator is gone.
pub fn sweep_stale_scratch() {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    for line in info.lines() {
        let Some(mp) = line.split_whitespace().nth(4) else {
            continue;
        };
        let Some(name) = Path::new(mp).file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(id) = name.strip_prefix(SCRATCH_PREFIX) else {
            continue;
        };
        // The same rule as the run's cgroups: the creator is dead, or its
        // pid was reused by a later process.
        if cgroup::run_id_stale(id) == Some(true)
            && let Ok(c) = std::ffi::CString::new(mp)
        {
            // SAFETY: detaching a stale mount of ours.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            let _ = std::fs::remove_dir_all(mp);
        }
    }
}

/// What an event's "achieved" value measures.
pub fn achieved_means(via: Via) -> &'static str {
    match via {
        Via::Spin => "CPU used by the spinner process, cores",
        Via::Quota => "CPU the target used under the quota, cores",
        Via::Hog => "resident memory of the hog process, bytes",
        Via::Limit => "memory the target's cgroup uses under the limit, bytes",
        Via::IoHog => "bytes/s the I/O hog wrote",
        Via::Fill => "free bytes on the target's scratch filesystem",
        Via::Proxy => {
            "mean delay the proxy added to target->client chunks, ns (requested: latency)"
        }
        Via::Cpuset => "CPUs the target may run on (read back)",
        Via::Pids => "tasks in the target's cgroup (under the limit)",
        Via::Herd => "connections of the last burst that connected",
        Via::Freeze => "fraction of time the target was frozen (requested: pause/every)",
        Via::FailAlloc | Via::FailIo | Via::Eintr => {
            "fraction of the eligible calls at its sites that failed, since it started \
             (with nth: calls failed)"
        }
    }
}

/// The primary scalar of a level, for requested-vs-achieved samples.
pub fn primary(level: &Level) -> f64 {
    match level {
        Level::Scalar(v) => *v,
        Level::Net(n) => n.latency_ns as f64,
        Level::Freeze(f) => f.pause_ns as f64 / f.every_ns.max(1) as f64,
    }
}

pub fn faults(n: &NetLevel) -> Faults {
    Faults {
        latency_ns: n.latency_ns,
        jitter_ns: n.jitter_ns.min(n.latency_ns),
        bandwidth_bytes_per_s: n.bandwidth_bps.map(|b| b.max(1.0) as u64),
        loss: n.loss.clamp(0.0, 1.0),
        timeout_ns: n.timeout_ns,
        slice: None,
        down: n.down,
    }
}

/// The most stressful of several network levels, field by field.
pub fn harsher(a: &NetLevel, b: &NetLevel) -> NetLevel {
    NetLevel {
        latency_ns: a.latency_ns.max(b.latency_ns),
        jitter_ns: a.jitter_ns.max(b.jitter_ns),
        loss: a.loss.max(b.loss),
        bandwidth_bps: match (a.bandwidth_bps, b.bandwidth_bps) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        },
        timeout_ns: match (a.timeout_ns, b.timeout_ns) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        },
        down: a.down || b.down,
    }
}
