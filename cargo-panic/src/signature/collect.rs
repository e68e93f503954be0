//! Collecting evidence while a program runs and after it ends: its stderr
//! (forwarded as it comes, the tail kept), a watcher thread that samples the
//! segment and `/proc` (memory, allocation counts, progress) and stops a hung
//! program after reading what each thread waits on, the cgroup's OOM count,
//! and the segment's thread slots at the end. The IO shell of `signature`;
//! the pure parts (`recursion`, `growth`, `parse_syscall`) are tested here.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use panic_runtime::SiteKind;
use panic_runtime::segment::{Live, Snapshot};

use super::evidence::{
    AllocationGrowth, HangEvidence, MemorySample, OomEvidence, RecursionEvidence,
    STDERR_TAIL_LINES, ThreadEvidence,
};
use super::stderr::StderrEvidence;
use crate::manifest::{FromEntry, Manifest};

/// The most stderr kept for parsing (the tail: reports come last).
const STDERR_KEEP: usize = 2 << 20;

/// Forwards a child's stderr to ours as it comes and keeps its tail.
pub struct StderrTee {
    kept: Arc<std::sync::Mutex<Vec<u8>>>,
    done: std::sync::mpsc::Receiver<()>,
}

/// How long [`StderrTee::finish`] waits for the end of the stream after the
/// program ended: a child the program left running may hold it open forever.
const STDERR_LINGER: Duration = Duration::from_millis(500);

impl StderrTee {
    pub fn start(mut from: impl Read + Send + 'static) -> StderrTee {
        let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, done) = std::sync::mpsc::channel();
        let k = kept.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 << 10];
            let mut out = std::io::stderr();
            loop {
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let _ = out.write_all(&buf[..n]);
                        let mut kept = k.lock().unwrap_or_else(|e| e.into_inner());
                        kept.extend_from_slice(&buf[..n]);
                        if kept.len() > STDERR_KEEP {
                            let cut = kept.len() - STDERR_KEEP / 2;
                            kept.drain(..cut);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(());
        });
        StderrTee { kept, done }
    }

    /// What was kept, once the stream ended (every writer closed it) or
    /// [`STDERR_LINGER`] passed, whichever comes first.
    pub fn finish(self) -> Vec<u8> {
        let _ = self.done.recv_timeout(STDERR_LINGER);
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.clone()
    }
}

/// Parses captured stderr: the evidence and the last lines as printed.
pub fn stderr_evidence(bytes: &[u8]) -> (StderrEvidence, Vec<String>) {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..]
        .iter()
        .map(|l| l.chars().take(400).collect())
        .collect();
    (StderrEvidence::parse(&text), tail)
}

/// What the watcher does.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Sampling period.
    pub period: Duration,
    /// Stop the program when no counter moved for this long.
    pub hang_after: Option<Duration>,
    /// Stop the program when it runs longer than this.
    pub timeout: Option<Duration>,
}

/// Sites the watcher needs to know about, from the manifest.
#[derive(Debug, Clone, Default)]
pub struct WatchSites {
    /// Allocation sites (their counts are sampled).
    pub alloc: Vec<u32>,
    /// Lock sites whose lock is a glibc `pthread_mutex_t` (its owner can be read).
    pub mutex: Vec<u32>,
    /// Exits counted from their entries (`Manifest::count`).
    pub from_entry: Vec<FromEntry>,
}

impl WatchSites {
    pub fn of(m: &Manifest) -> WatchSites {
        let mut w = WatchSites::default();
        for (i, s) in m.sites.iter().enumerate() {
            w.from_entry.extend(FromEntry::of(m, i));
            match s.kind {
                SiteKind::Alloc => w.alloc.push(i as u32),
                SiteKind::Lock if s.callee.as_deref().is_some_and(is_pthread_mutex_lock) => {
                    w.mutex.push(i as u32)
                }
                _ => {}
            }
        }
        w
    }

    /// Every site's count from a snapshot's counters (`Manifest::count`).
    pub fn counts(&self, counters: &[u64]) -> Vec<u64> {
        let mut counts = counters.to_vec();
        for d in &self.from_entry {
            if let Some(c) = counts.get_mut(d.site as usize) {
                *c = d.count(counters);
            }
        }
        counts
    }
}

/// Lock calls whose lock is a `pthread_mutex_t` (C, and libstdc++'s mutexes,
/// which wrap one).
fn is_pthread_mutex_lock(callee: &str) -> bool {
    callee.starts_with("pthread_mutex_")
        || callee.starts_with("__gthread_mutex_lock")
        || callee.starts_with("__gthread_recursive_mutex_lock")
        || callee.starts_with("std::mutex::lock")
        || callee.starts_with("std::recursive_mutex::lock")
        || callee.starts_with("std::lock_guard")
        || callee.starts_with("std::unique_lock")
        || callee.starts_with("std::scoped_lock")
}

/// What the watcher saw.
#[derive(Debug, Default)]
pub struct Watched {
    pub memory: Vec<MemorySample>,
    pub allocations: Vec<AllocationGrowth>,
    pub hang: Option<HangEvidence>,
    /// Per thread, what `/proc` said when the program was stopped as hung.
    pub threads: Vec<ThreadEvidence>,
}

/// The watcher thread.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Watched>,
}

/// At most this many samples are kept (older ones thinned by half).
const MAX_SAMPLES: usize = 512;

impl Watcher {
    /// Starts watching `pid` (signalled only through `pidfd`) and its segment.
    pub fn start(
        pid: u32,
        pidfd: OwnedFd,
        segment: PathBuf,
        sites: WatchSites,
        opts: WatchOptions,
    ) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("cargo-panic-watch".into())
            .spawn(move || watch(pid, &pidfd, &segment, &sites, &opts, &flag))
            .expect("spawning the watcher thread");
        Watcher { stop, handle }
    }

    /// Stops the watcher (the program has ended) and returns what it saw.
    pub fn finish(self) -> Watched {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

fn watch(
    pid: u32,
    pidfd: &OwnedFd,
    segment: &Path,
    sites: &WatchSites,
    opts: &WatchOptions,
    stop: &AtomicBool,
) -> Watched {
    let started = Instant::now();
    let page = crate::procfs::page_size();
    let mut live: Option<Live> = None;
    let mut memory = Vec::new();
    let mut alloc_samples: Vec<Vec<u64>> = Vec::new();
    let mut last_total: Option<u64> = None;
    let mut last_counts: Vec<u64> = Vec::new();
    let mut quiet_since = Instant::now();
    let mut stride = 1usize;
    let mut tick = 0usize;
    let mut out = Watched::default();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(opts.period);
        if stop.load(Ordering::Relaxed) {
            break;
        }
        tick += 1;
        if live.is_none() {
            live = Live::open(segment).ok();
        }
        let snap = live.as_mut().and_then(|l| l.snapshot().ok());
        // A snapshot may fail before the runtime set the segment up: open again.
        if snap.is_none() {
            live = None;
        }
        if tick.is_multiple_of(stride) {
            if let Some(rss) = std::fs::read_to_string(format!("/proc/{pid}/statm"))
                .ok()
                .and_then(|t| crate::procfs::statm_resident_pages(&t))
            {
                memory.push(MemorySample {
                    t_ns: started.elapsed().as_nanos() as u64,
                    rss_bytes: rss * page,
                });
            }
            if let Some(s) = &snap {
                alloc_samples.push(
                    sites
                        .alloc
                        .iter()
                        .map(|&i| s.counters.get(i as usize).copied().unwrap_or(0))
                        .collect(),
                );
            }
            if memory.len() >= MAX_SAMPLES || alloc_samples.len() >= MAX_SAMPLES {
                thin(&mut memory);
                thin(&mut alloc_samples);
                stride *= 2;
            }
        }
        let mut moving = Vec::new();
        if let Some(s) = &snap {
            let total = s.counters.iter().fold(0u64, |a, &c| a.wrapping_add(c));
            if last_total != Some(total) {
                quiet_since = Instant::now();
            }
            let counts = sites.counts(&s.counters);
            moving = moving_sites(&last_counts, &counts);
            last_total = Some(total);
            last_counts = counts;
        }
        let quiet = quiet_since.elapsed();
        let reason = match (opts.hang_after, opts.timeout) {
            (Some(h), _) if snap.is_some() && quiet >= h => Some(("quiet", quiet)),
            (_, Some(t)) if started.elapsed() >= t => Some(("timeout", started.elapsed())),
            _ => None,
        };
        if let Some((reason, window)) = reason {
            out.threads = threads_at_hang(pid);
            out.hang = Some(HangEvidence {
                reason: reason.to_string(),
                window_ns: window.as_nanos() as u64,
                progress: 0,
                moving_sites: moving,
            });
            eprintln!(
                "cargo-panic: stopping the program: {}",
                if reason == "quiet" {
                    format!(
                        "no instrumented code ran for {}",
                        crate::profile::fmt_ns(window.as_nanos() as u64)
                    )
                } else {
                    format!(
                        "it outlived --timeout ({})",
                        crate::profile::fmt_ns(window.as_nanos() as u64)
                    )
                }
            );
            kill(pidfd);
            break;
        }
    }
    out.memory = memory;
    out.allocations = growth(&sites.alloc, &alloc_samples);
    out
}

/// Keeps every other element (the first and the last included).
fn thin<T: Clone>(v: &mut Vec<T>) {
    let (n, last) = (v.len(), v.last().cloned());
    let mut i = 0;
    v.retain(|_| {
        i += 1;
        i % 2 == 1
    });
    // An even length dropped the last element: keep it.
    if let Some(l) = last.filter(|_| n % 2 == 0) {
        v.push(l);
    }
}

/// The (at most 3) sites whose counters moved most between two samples.
fn moving_sites(before: &[u64], after: &[u64]) -> Vec<u32> {
    let mut d: Vec<(u64, u32)> = after
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            (
                a.saturating_sub(before.get(i).copied().unwrap_or(a)),
                i as u32,
            )
        })
        .filter(|(delta, _)| *delta > 0)
        .collect();
    d.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    d.into_iter().take(3).map(|(_, i)| i).collect()
}

/// Allocation sites whose counts grew, most growth first (at most 8).
pub fn growth(sites: &[u32], samples: &[Vec<u64>]) -> Vec<AllocationGrowth> {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Vec::new();
    };
    let mut out: Vec<AllocationGrowth> = sites
        .iter()
        .enumerate()
        .filter(|&(j, _)| last[j] > first[j])
        .map(|(j, &site)| AllocationGrowth {
            site,
            first: first[j],
            last: last[j],
            growing_intervals: samples.windows(2).filter(|w| w[1][j] > w[0][j]).count() as u32,
            intervals: samples.len().saturating_sub(1) as u32,
        })
        .collect();
    out.sort_by(|a, b| {
        (b.last - b.first)
            .cmp(&(a.last - a.first))
            .then(a.site.cmp(&b.site))
    });
    out.truncate(8);
    out
}

fn kill(pidfd: &OwnedFd) {
    // SAFETY: pidfd_send_signal with a pidfd we own, SIGKILL, no siginfo, no flags.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        );
    }
}

/// How long a hung program's threads are watched for CPU use before it is
/// stopped: long enough for a spinning thread to be charged a few clock
/// ticks on a loaded machine.
const SPIN_WINDOW: Duration = Duration::from_millis(300);

/// What `/proc` says of each thread of a hung program: state, system call,
/// the futex it sleeps on and (for a glibc mutex) its owner, and its CPU use
/// over [`SPIN_WINDOW`].
pub fn threads_at_hang(pid: u32) -> Vec<ThreadEvidence> {
    let tids = task_ids(pid);
    let ticks = |tid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
            .ok()
            .and_then(|t| crate::procfs::stat_cpu_ticks(&t))
    };
    let before: Vec<Option<u64>> = tids.iter().map(|&t| ticks(t)).collect();
    std::thread::sleep(SPIN_WINDOW);
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok();
    let mut out = Vec::new();
    for (k, &tid) in tids.iter().enumerate() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok();
        let state = stat
            .as_deref()
            .and_then(crate::procfs::stat_fields)
            .and_then(|f| f.first().and_then(|s| s.chars().next()));
        let after = stat.as_deref().and_then(crate::procfs::stat_cpu_ticks);
        let syscall = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))
            .ok()
            .and_then(|t| parse_syscall(&t));
        let futex = syscall.and_then(|(nr, a0)| (nr == libc::SYS_futex).then_some(a0));
        let owner = futex
            .zip(mem.as_ref())
            .and_then(|(addr, m)| read_u32(m, addr + 8))
            .filter(|&o| o != 0 && tids.contains(&o) && o != tid);
        out.push(ThreadEvidence {
            tid,
            state,
            syscall: syscall.map(|(nr, _)| nr),
            futex,
            lock_owner: owner,
            cpu_ticks_during_hang: before[k].zip(after).map(|(b, a)| a.saturating_sub(b)),
            ..ThreadEvidence::default()
        });
    }
    out
}

fn task_ids(pid: u32) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

fn read_u32(mem: &std::fs::File, addr: u64) -> Option<u32> {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 4];
    mem.read_exact_at(&mut b, addr).ok()?;
    Some(u32::from_ne_bytes(b))
}

/// `/proc/<pid>/task/<tid>/syscall`: the system call number and first
/// argument of a thread blocked in a system call (`None` when it is running,
/// `-1 ...` when it is not in one).
pub fn parse_syscall(text: &str) -> Option<(i64, u64)> {
    let mut it = text.split_whitespace();
    let nr: i64 = it.next()?.parse().ok()?;
    if nr < 0 {
        return None;
    }
    let a0 = it.next()?.strip_prefix("0x")?;
    Some((nr, u64::from_str_radix(a0, 16).ok()?))
}

/// Watches the OOM-kill count of the cgroup a process runs in (v2
/// `memory.events`, v1 `memory.oom_control`) and the kernel's global count.
pub struct OomWatch {
    file: Option<(PathBuf, String)>,
    limit: Option<u64>,
    before: Option<u64>,
    global_before: Option<u64>,
}

impl OomWatch {
    /// Notes the counts for `pid`'s cgroup (call right after the spawn).
    pub fn start(pid: u32) -> OomWatch {
        let file = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|t| memory_cgroup(&t));
        let limit = file.as_ref().and_then(|(dir, _)| {
            let v2 = std::fs::read_to_string(dir.join("memory.max")).ok();
            let v1 = std::fs::read_to_string(dir.join("memory.limit_in_bytes")).ok();
            v2.or(v1)?
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|&l| l < 1 << 60)
        });
        OomWatch {
            before: file.as_ref().and_then(|(d, _)| oom_kills(d)),
            file,
            limit,
            global_before: global_oom_kills(),
        }
    }

    /// The OOM evidence, when the count rose and the program died by SIGKILL.
    pub fn finish(&self, signal: Option<i32>) -> Option<OomEvidence> {
        if signal != Some(libc::SIGKILL) {
            return None;
        }
        if let Some((dir, name)) = &self.file {
            let after = oom_kills(dir);
            if let (Some(b), Some(a)) = (self.before, after)
                && a > b
            {
                return Some(OomEvidence {
                    cgroup: name.clone(),
                    limit_bytes: self.limit,
                    oom_kills: a - b,
                });
            }
        }
        let after = global_oom_kills()?;
        (after > self.global_before?).then(|| OomEvidence {
            cgroup: "/".to_string(),
            limit_bytes: None,
            oom_kills: after - self.global_before.unwrap_or(0),
        })
    }
}

/// The directory of the memory cgroup in a `/proc/<pid>/cgroup` text, and
/// its name.
fn memory_cgroup(text: &str) -> Option<(PathBuf, String)> {
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (id, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        if ctrls.split(',').any(|c| c == "memory") {
            let dir = Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
            return Some((dir, path.to_string()));
        }
        if id == "0" && ctrls.is_empty() {
            let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
            if dir.join("memory.events").is_file() {
                return Some((dir, path.to_string()));
            }
        }
    }
    None
}

fn oom_kills(dir: &Path) -> Option<u64> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    let text = read("memory.events").or_else(|| read("memory.oom_control"))?;
    crate::cgroup::keyed_value(&text, "oom_kill")
}

fn global_oom_kills() -> Option<u64> {
    crate::cgroup::keyed_value(&std::fs::read_to_string("/proc/vmstat").ok()?, "oom_kill")
}

/// The segment's threads at the end, joined with what `/proc` said of them
/// at a hang (by tid; threads only `/proc` saw are kept too). A lock owner
/// read from memory is kept only for a thread asleep in a lock site whose
/// lock is a glibc mutex (`mutex_sites`): any other futex word has no owner
/// field to read.
pub fn threads(
    snapshot: &Snapshot,
    at_hang: Vec<ThreadEvidence>,
    mutex_sites: &[u32],
) -> Vec<ThreadEvidence> {
    let mut out: Vec<ThreadEvidence> = snapshot
        .threads
        .iter()
        .filter(|t| t.tid != 0)
        .map(|t| ThreadEvidence {
            tid: t.tid,
            site: t.cur_site,
            stack: t.frames.clone(),
            depth: t.depth,
            ..ThreadEvidence::default()
        })
        .collect();
    for h in at_hang {
        match out.iter_mut().find(|t| t.tid == h.tid) {
            Some(t) => {
                t.state = h.state;
                t.syscall = h.syscall;
                t.futex = h.futex;
                t.lock_owner = h
                    .lock_owner
                    .filter(|_| t.site.is_some_and(|s| mutex_sites.contains(&s)));
                t.cpu_ticks_during_hang = h.cpu_ticks_during_hang;
            }
            None => out.push(ThreadEvidence {
                lock_owner: None,
                ..h
            }),
        }
    }
    out.sort_by_key(|t| t.tid);
    out
}

/// Functions on a call-graph cycle (direct or mutual recursion) that ran,
/// most-entered first (at most 4): from the manifest's callees and the
/// entry counts.
pub fn recursion(m: &Manifest, counts: &[u64]) -> Vec<RecursionEvidence> {
    use petgraph::graph::DiGraph;
    use std::collections::HashMap;
    let entries: Vec<(u32, &crate::manifest::Site)> = m
        .sites
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind == SiteKind::Entry)
        .map(|(i, s)| (i as u32, s))
        .collect();
    let mut g = DiGraph::<u32, ()>::new();
    let mut node = HashMap::new();
    for (i, s) in &entries {
        node.entry(s.function.as_str())
            .or_insert_with(|| g.add_node(*i));
    }
    for (_, s) in &entries {
        let from = node[s.function.as_str()];
        for c in s.callees.iter().flatten() {
            if let Some(&to) = node.get(c.as_str()) {
                g.update_edge(from, to, ());
            }
        }
    }
    let mut out = Vec::new();
    for scc in petgraph::algo::tarjan_scc(&g) {
        let cyclic = scc.len() > 1 || g.contains_edge(scc[0], scc[0]);
        if !cyclic {
            continue;
        }
        let mut names: Vec<String> = scc
            .iter()
            .map(|&n| m.sites[g[n] as usize].function.clone())
            .collect();
        names.sort();
        for &n in &scc {
            let site = g[n];
            let count = counts.get(site as usize).copied().unwrap_or(0);
            if count > 0 {
                out.push(RecursionEvidence {
                    site,
                    count,
                    cycle: names.clone(),
                });
            }
        }
    }
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.site.cmp(&b.site)));
    out.truncate(4);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_lines() {
        assert_eq!(
            parse_syscall("202 0x55d0c0a0e040 0x80 0x2 0x0 0x0 0x0 0x7ffc 0x7f12\n"),
            Some((202, 0x55d0c0a0e040))
        );
        assert_eq!(parse_syscall("running\n"), None);
        assert_eq!(parse_syscall("-1 0x7ffc 0x7f12\n"), None);
        assert_eq!(parse_syscall(""), None);
    }

    #[test]
    fn growth_ranks_steady_sites() {
        let samples = vec![vec![1, 5, 9], vec![2, 5, 9], vec![4, 5, 10], vec![8, 5, 10]];
        let g = growth(&[10, 11, 12], &samples);
        assert_eq!(g.len(), 2);
        assert_eq!((g[0].site, g[0].first, g[0].last), (10, 1, 8));
        assert_eq!((g[0].growing_intervals, g[0].intervals), (3, 3));
        assert_eq!((g[1].site, g[1].growing_intervals), (12, 1));
        assert!(growth(&[1], &[]).is_empty());
    }

    #[test]
    fn moving_sites_are_the_biggest_deltas() {
        assert_eq!(moving_sites(&[1, 1, 1, 1], &[1, 9, 3, 100]), vec![3, 1, 2]);
        assert!(moving_sites(&[5], &[5]).is_empty());
    }

    #[test]
    fn thinning_keeps_the_ends() {
        let mut v: Vec<u32> = (0..10).collect();
        thin(&mut v);
        assert_eq!(v, vec![0, 2, 4, 6, 8, 9]);
    }

    #[test]
    fn memory_cgroup_lines() {
        let v1 = "12:memory:/user.slice\n0::/user.slice/x\n";
        assert_eq!(
            memory_cgroup(v1),
            Some((
                PathBuf::from("/sys/fs/cgroup/memory/user.slice"),
                "/user.slice".into()
            ))
        );
    }
}
