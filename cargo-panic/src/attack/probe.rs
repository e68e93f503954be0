//! What the engine reads about the machine and the target each tick, from
//! /proc: CPU load, PSI pressure, memory, a process's threads, resident
//! memory and CPU time, and the TCP ports it listens on. Parsers are pure
//! functions of the file text (tested on literal texts); the readers around
//! them only read the files.

use std::collections::HashSet;
use std::path::Path;

use super::timeline::Machine;

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The machine's CPUs and memory, now.
pub fn machine() -> Machine {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let (total, avail) = read("/proc/meminfo")
        .map(|t| (meminfo(&t, "MemTotal:"), meminfo(&t, "MemAvailable:")))
        .unwrap_or((None, None));
    Machine {
        cpus,
        mem_total: total.unwrap_or(0),
        mem_available: avail.unwrap_or(0),
    }
}

/// A `/proc/meminfo` field in bytes.
pub fn meminfo(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Total and idle jiffies of all CPUs (the `cpu` line of /proc/stat).
pub fn cpu_times(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    // idle + iowait count as idle.
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    // guest and guest_nice are already inside user and nice.
    let total: u64 = v.iter().take(8).sum();
    Some((total, idle))
}

/// The machine's busy fraction between two readings of /proc/stat.
#[derive(Default)]
pub struct CpuLoad {
    last: Option<(u64, u64)>,
}

impl CpuLoad {
    /// The busy fraction of all CPUs since the previous call (None the first time).
    pub fn sample(&mut self) -> Option<f64> {
        let now = cpu_times(&read("/proc/stat")?)?;
        let prev = self.last.replace(now)?;
        let total = now.0.checked_sub(prev.0)?;
        let idle = now.1.checked_sub(prev.1)?;
        (total > 0).then(|| (total - idle.min(total)) as f64 / total as f64)
    }
}

/// PSI `some avg10` of a /proc/pressure file, as a fraction.
pub fn psi_some_avg10(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    let v = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?;
    Some(v.parse::<f64>().ok()? / 100.0)
}

/// PSI for `cpu`, `memory` or `io` (None where the kernel has no PSI).
pub fn pressure(resource: &str) -> Option<f64> {
    psi_some_avg10(&read(format!("/proc/pressure/{resource}"))?)
}

pub use crate::procfs::{ProcStat, parse_stat};

/// /proc/PID/stat of a live process.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(
        &read(format!("/proc/{pid}/stat"))?,
        crate::procfs::page_size(),
    )
}

/// The pids of a process and all its descendants (from /proc/*/stat ppid).
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Some(stat) = read(format!("/proc/{pid}/stat")) else {
                continue;
            };
            if let Some(pp) = crate::procfs::stat_ppid(&stat) {
                parents.push((pid, pp));
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// Socket inodes of LISTEN sockets in /proc/net/tcp or tcp6 text, with their port.
pub fn listening(net_tcp: &str) -> Vec<(u64, u16)> {
    net_tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // sl local rem st tx:rx tr:tm retrnsmt uid timeout inode
            if f.get(3)? != &"0A" {
                return None;
            }
            let port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            let inode = f.get(9)?.parse().ok()?;
            Some((inode, port))
        })
        .collect()
}

/// The TCP ports any of `pids` listens on, lowest first.
pub fn listening_ports(pids: &[u32]) -> Vec<u16> {
    let mut inodes = HashSet::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path())
                && let Some(ino) = link
                    .to_str()
                    .and_then(|s| s.strip_prefix("socket:["))
                    .and_then(|s| s.strip_suffix(']'))
                    .and_then(|s| s.parse::<u64>().ok())
            {
                inodes.insert(ino);
            }
        }
    }
    let mut ports: Vec<u16> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(read)
        .flat_map(|t| listening(&t))
        .filter(|(ino, _)| inodes.contains(ino))
        .map(|(_, p)| p)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// How many CPUs a process may run on (its Cpus_allowed_list).
pub fn cpus_allowed(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let list = s
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    Some(crate::cgroup::parse_cpu_list(list.trim()).ok()?.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let mi = "MemTotal:        8039812 kB\nMemFree:  100 kB\nMemAvailable:    6000000 kB\n";
        assert_eq!(meminfo(mi, "MemTotal:"), Some(8039812 * 1024));
        assert_eq!(meminfo(mi, "MemAvailable:"), Some(6000000 * 1024));
        assert_eq!(meminfo(mi, "SwapTotal:"), None);

        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(cpu_times(stat), Some((1000, 850)));

        let psi = "some avg10=12.50 avg60=3.00 avg300=1.00 total=123\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=5\n";
        assert_eq!(psi_some_avg10(psi), Some(0.125));

        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:1F91 0100007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 999 1\n";
        assert_eq!(listening(tcp), vec![(12345, 8080)]);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let s = proc_stat(me).expect("own /proc/self/stat");
        assert!(s.threads >= 1 && s.rss_bytes > 0);
        assert_eq!(descendants(me)[0], me);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(listening_ports(&[me]).contains(&port));
        assert!(machine().cpus >= 1);
    }
}
