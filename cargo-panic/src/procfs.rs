//! The /proc files cargo-panic reads about a process, parsed in one place:
//! `/proc/<pid>/stat` (whose command name may hold spaces and parentheses,
//! so fields are counted after its last `)`), `/proc/<pid>/statm`, and the
//! page size and clock tick they are counted in. Pure parsers over the
//! text; the callers read the files.

/// Fields of a `/proc/<pid>/stat` text after the command name: index 0 is
/// field 3 (state), so field `n` is at `n - 3`.
pub fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let close = stat.rfind(')')?;
    Some(stat[close + 1..].split_whitespace().collect())
}

/// The command name (field 2, between the first `(` and the last `)`).
pub fn stat_comm(stat: &str) -> Option<&str> {
    stat.get(stat.find('(')? + 1..stat.rfind(')')?)
}

fn stat_field<T: std::str::FromStr>(stat: &str, n: usize) -> Option<T> {
    stat_fields(stat)?.get(n - 3)?.parse().ok()
}

/// The parent pid (field 4).
pub fn stat_ppid(stat: &str) -> Option<u32> {
    stat_field(stat, 4)
}

/// utime + stime (fields 14 and 15), in clock ticks.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    Some(stat_field::<u64>(stat, 14)? + stat_field::<u64>(stat, 15)?)
}

/// The start time in clock ticks after boot (field 22).
pub fn stat_start_ticks(stat: &str) -> Option<u64> {
    stat_field(stat, 22)
}

/// What `/proc/<pid>/stat` says about one process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcStat {
    pub threads: u64,
    pub rss_bytes: u64,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// The state letter (R, S, D, Z, T, ...).
    pub state: char,
}

/// Parses `/proc/<pid>/stat`; `page` is the page size (rss is in pages).
pub fn parse_stat(stat: &str, page: u64) -> Option<ProcStat> {
    let f = stat_fields(stat)?;
    let num = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(ProcStat {
        state: f.first()?.chars().next()?,
        cpu_ticks: num(14)? + num(15)?,
        threads: num(20)?,
        rss_bytes: num(24)? * page,
    })
}

/// The resident pages of a `/proc/<pid>/statm` text (its second field).
pub fn statm_resident_pages(statm: &str) -> Option<u64> {
    statm.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The page size in bytes (4096 if sysconf does not say).
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// Clock ticks per second, the unit of stat's times (100 if sysconf does not say).
pub fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 { n as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_after_the_command_name() {
        // A command name with spaces and parentheses.
        let s = "4242 (my (odd) prog) S 17 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 5 0 987654 100000000 2560 18446744073709551615";
        assert_eq!(stat_ppid(s), Some(17));
        assert_eq!(stat_cpu_ticks(s), Some(10));
        assert_eq!(stat_start_ticks(s), Some(987_654));
        assert_eq!(
            parse_stat(s, 4096),
            Some(ProcStat {
                threads: 5,
                rss_bytes: 2560 * 4096,
                cpu_ticks: 10,
                state: 'S'
            })
        );
        assert_eq!(stat_comm(s), Some("my (odd) prog"));
        assert_eq!(stat_ppid("garbage"), None);
        assert_eq!(
            statm_resident_pages("4000 1024 300 10 0 500 0\n"),
            Some(1024)
        );
    }
}
