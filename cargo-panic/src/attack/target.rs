//! The target program's lifecycle during an attack: one incarnation
//! started in the run's cgroup with its own segment file and process group,
//! its output passed through (the last lines of stderr kept as evidence, the
//! readiness text watched for), readiness, its threads' states at hang time,
//! and shutdown (SIGTERM, then SIGKILL after the grace period).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use panic_runtime::segment::{Live, Snapshot};

use super::probe;
use super::stress::describe_status;
use super::timeline::Ready;
use super::units;
use crate::cgroup::{Group, RunCgroup};
use crate::segfile::SegmentFile;

/// The target program, one incarnation.
pub struct Target {
    pub child: Child,
    pub pid: u32,
    seg: SegmentFile,
    live: Option<Live>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    log_seen: Arc<AtomicBool>,
    forwarders: Vec<std::thread::JoinHandle<()>>,
    pub exited: Option<std::process::ExitStatus>,
    /// When the process ended, as the waiter thread saw it (before it is reaped).
    ended_at: Arc<Mutex<Option<Instant>>>,
}

const TAIL_LINES: usize = 40;

/// Wakes the engine's loop: set by a target's waiter thread when the target
/// ends, so a crash is seen at once, not at the next tick.
#[derive(Clone, Default)]
pub struct Wake(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Wake {
    pub fn notify(&self) {
        let (m, c) = &*self.0;
        if let Ok(mut w) = m.lock() {
            *w = true;
        }
        c.notify_all();
    }

    /// Sleeps until `until` or a notification (which it consumes).
    pub fn sleep_until(&self, until: Instant) {
        let (m, c) = &*self.0;
        let Ok(mut woken) = m.lock() else { return };
        while !*woken {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match c.wait_timeout(woken, left) {
                Ok((g, _)) => woken = g,
                Err(_) => return,
            }
        }
        *woken = false;
    }
}

impl Target {
    pub fn spawn(
        command: &[String],
        env: &[(String, String)],
        cgroup: Option<&RunCgroup>,
        log: Option<&str>,
        wake: &Wake,
        monitor: Option<&panic_bpf::Monitor>,
        clock_offset_ns: i64,
    ) -> Result<Target> {
        let seg = SegmentFile::new()?;
        let program = Path::new(&command[0]);
        let exec_path = if program.components().count() == 1 && program.exists() {
            Path::new(".").join(program)
        } else {
            program.to_path_buf()
        };
        let mut cmd = Command::new(&exec_path);
        cmd.args(&command[1..])
            .env(panic_runtime::abi::ENV_SHM, seg.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: Ctrl-C at the terminal goes to the
            // engine, which ends the run and shuts the target down itself.
            .process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(cg) = cgroup {
            cg.join_on_spawn(Group::Target, &mut cmd)?;
        }
        if clock_offset_ns != 0 {
            enter_time_namespace(&mut cmd, clock_offset_ns);
        }
        // Watched by the kernel side from its first instruction, when there is one.
        let mut child = match monitor {
            Some(m) => {
                cmd.env(panic_runtime::abi::ENV_KTHREADS, m.threads_pin());
                m.spawn(&mut cmd).map_err(anyhow::Error::new)
            }
            None => cmd.spawn().map_err(anyhow::Error::new),
        }
        .with_context(|| {
            if clock_offset_ns != 0 {
                format!(
                    "failed to start {} in a time namespace with its clocks moved (target.clock_offset): \
                     this needs root and a kernel with time namespaces (5.6 or later)",
                    program.display()
                )
            } else {
                format!("failed to start {}", program.display())
            }
        })?;
        let pid = child.id();
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let log_seen = Arc::new(AtomicBool::new(false));
        let mut forwarders = Vec::new();
        let pattern = log.map(str::to_string);
        if let Some(out) = child.stdout.take() {
            let (seen, pat) = (log_seen.clone(), pattern.clone());
            forwarders.push(std::thread::spawn(move || {
                forward(out, false, None, seen, pat)
            }));
        }
        if let Some(err) = child.stderr.take() {
            let (seen, pat, tail) = (log_seen.clone(), pattern, stderr_tail.clone());
            forwarders.push(std::thread::spawn(move || {
                forward(err, true, Some(tail), seen, pat)
            }));
        }
        // The waiter: waitid with WNOWAIT sees the end without reaping, so
        // `poll` still gets the status; the time is exact, and the loop wakes.
        let ended_at = Arc::new(Mutex::new(None));
        {
            let (ended_at, wake) = (ended_at.clone(), wake.clone());
            std::thread::spawn(move || {
                // SAFETY: waitid fills the siginfo we pass; WNOWAIT leaves the child unreaped.
                let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                // SAFETY: as above; a reaped child gives ECHILD and the thread ends.
                let r = unsafe {
                    libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT)
                };
                if r == 0 {
                    if let Ok(mut e) = ended_at.lock() {
                        *e = Some(Instant::now());
                    }
                    wake.notify();
                }
            });
        }
        Ok(Target {
            child,
            pid,
            seg,
            live: None,
            stderr_tail,
            log_seen,
            forwarders,
            exited: None,
            ended_at,
        })
    }

    /// The segment file the runtime maps.
    pub fn segment_path(&self) -> &Path {
        self.seg.path()
    }

    /// When the process ended (None while it runs).
    pub fn ended_at(&self) -> Option<Instant> {
        self.ended_at.lock().ok().and_then(|e| *e)
    }

    pub fn snapshot(&mut self) -> Option<Snapshot> {
        if self.live.is_none() {
            self.live = Live::open(self.seg.path()).ok();
        }
        self.live.as_mut()?.snapshot().ok()
    }

    /// The final snapshot (the segment file outlives the process).
    pub fn final_snapshot(&self) -> Option<Snapshot> {
        Snapshot::read(self.seg.path()).ok()
    }

    pub fn poll(&mut self) -> Option<std::process::ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// The last lines of its stderr. Once it has ended, its last lines may
    /// still be in the pipe: the forwarders (which end at EOF) get up to
    /// 200 ms to read them first.
    pub fn tail(&self) -> Vec<String> {
        if self.exited.is_some() {
            let until = Instant::now() + Duration::from_millis(200);
            while self.forwarders.iter().any(|f| !f.is_finished()) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        self.stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// SIGTERM, then SIGKILL after `grace`; waits and joins the output threads.
    pub fn shutdown(&mut self, grace: Duration) {
        if self.poll().is_none() {
            // SAFETY: signalling our own child, which has not been reaped.
            unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
            let deadline = Instant::now() + grace;
            while self.poll().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if self.poll().is_none() {
                let _ = self.child.kill();
                self.exited = self.child.wait().ok();
            }
        }
        for f in self.forwarders.drain(..) {
            let _ = f.join();
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if self.poll().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Makes `cmd` start in a new time namespace whose CLOCK_MONOTONIC and
/// CLOCK_BOOTTIME are `offset_ns` ahead of the machine's: between fork and
/// exec the child unshares one (it becomes the namespace of its future
/// children), writes the offsets (allowed until a process enters it), and
/// enters it itself with setns (allowed: it has one thread). CLOCK_REALTIME
/// cannot be moved per process; that is the kernel's rule, not ours.
fn enter_time_namespace(cmd: &mut Command, offset_ns: i64) {
    let secs = offset_ns.div_euclid(1_000_000_000);
    let nanos = offset_ns.rem_euclid(1_000_000_000);
    let text = format!("monotonic {secs} {nanos}\nboottime {secs} {nanos}\n");
    // SAFETY: the hook runs between fork and exec and makes only system
    // calls (unshare, open, write, setns, close) on data prepared before fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWTIME) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = libc::open(c"/proc/self/timens_offsets".as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = libc::write(fd, text.as_ptr().cast(), text.len());
            libc::close(fd);
            if n != text.len() as isize {
                return Err(std::io::Error::last_os_error());
            }
            let ns = libc::open(c"/proc/self/ns/time_for_children".as_ptr(), libc::O_RDONLY);
            if ns < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let r = libc::setns(ns, libc::CLONE_NEWTIME);
            libc::close(ns);
            if r != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Copies the target's output to ours, line by line, keeping the last lines
/// of stderr and noticing the readiness text.
fn forward(
    r: impl std::io::Read,
    is_err: bool,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
    seen: Arc<AtomicBool>,
    pattern: Option<String>,
) {
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let _ = if is_err {
            std::io::stderr().write_all(&line)
        } else {
            std::io::stdout().write_all(&line)
        };
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if let Some(p) = &pattern
            && text.contains(p.as_str())
        {
            seen.store(true, Ordering::Relaxed);
        }
        if let Some(t) = &tail
            && let Ok(mut t) = t.lock()
        {
            if t.len() == TAIL_LINES {
                t.pop_front();
            }
            t.push_back(text);
        }
    }
}

/// Thread states of a process from /proc (tid, state, name).
pub fn thread_states(pid: u32) -> Vec<(u32, String, String)> {
    let mut out = Vec::new();
    if let Ok(d) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in d.flatten() {
            let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            let name = crate::procfs::stat_comm(&stat)
                .unwrap_or_default()
                .to_string();
            let state = crate::procfs::stat_fields(&stat)
                .and_then(|f| f.first().map(|s| s.to_string()))
                .unwrap_or_else(|| "?".into());
            out.push((tid, state, name));
        }
    }
    out.sort();
    out
}

/// Waits until the target is ready; returns the port it listens on when
/// that is how readiness is known (or `find_port` asks for it).
pub fn wait_ready(
    t: &mut Target,
    ready: &Ready,
    timeout_ns: u64,
    find_port: bool,
) -> Result<Option<u16>, String> {
    let deadline = Instant::now() + Duration::from_nanos(timeout_ns);
    loop {
        if let Some(s) = t.poll() {
            return Err(format!(
                "the target ended before it was ready: {}",
                describe_status(s)
            ));
        }
        let ok = match ready {
            Ready::Started => true,
            Ready::Delay(d) => {
                std::thread::sleep(Duration::from_nanos(*d));
                true
            }
            Ready::Port(Some(p)) => {
                if std::net::TcpStream::connect_timeout(
                    &([127, 0, 0, 1], *p).into(),
                    Duration::from_millis(100),
                )
                .is_ok()
                {
                    return Ok(Some(*p));
                }
                false
            }
            Ready::Port(None) => {
                if let Some(p) = probe::listening_ports(&probe::descendants(t.pid)).first() {
                    return Ok(Some(*p));
                }
                false
            }
            Ready::Log(_) => t.log_seen.load(Ordering::Relaxed),
        };
        if ok {
            if !find_port {
                return Ok(None);
            }
            // Readiness said nothing about a port: look for one briefly.
            let until = Instant::now()
                + Duration::from_secs(2).min(deadline.saturating_duration_since(Instant::now()));
            loop {
                if let Some(p) = probe::listening_ports(&probe::descendants(t.pid)).first() {
                    return Ok(Some(*p));
                }
                if Instant::now() >= until {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the target was not ready after {} (target.ready_timeout)",
                units::fmt_duration(timeout_ns as f64)
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
