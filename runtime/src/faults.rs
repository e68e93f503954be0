//! The fault table (`CARGO_PANIC_FAULTS`, layout in `panic_abi.h`): the
//! writer's side. cargo-panic creates the file before the program starts,
//! arms and disarms rules while it runs, and reads back how many calls each
//! rule saw and failed. The program's runtime maps the same file and only
//! adds to its counters.
//!
//! Every access to the shared bytes is an atomic load or store of a naturally
//! aligned word: the runtime in another process reads and writes the same
//! memory concurrently.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use crate::abi;

/// What a rule fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    /// Allocation calls at alloc sites (the allocator refuses them).
    Alloc,
    /// Blocking calls at blocking sites fail with this errno.
    Errno(i32),
}

/// Which of a rule's eligible calls fail (counted from 1 since it was armed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Only the n-th call.
    Nth(u64),
    /// Every n-th call.
    Every(u64),
    /// Each call with this probability, chosen from the seed and the call's
    /// number (reproducible).
    Fraction(f64),
}

/// One rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rule {
    pub what: What,
    pub mode: Mode,
    /// At most this many faults (None: no limit).
    pub limit: Option<u64>,
    pub seed: u64,
}

/// How many eligible calls an armed rule saw and how many it failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleStats {
    pub calls: u64,
    pub injected: u64,
}

/// The runtime's threshold for a probability: calls whose 32-bit draw is
/// below it fail.
pub fn fraction_threshold(p: f64) -> u64 {
    (p.clamp(0.0, 1.0) * 4_294_967_296.0).round() as u64
}

/// A fault table file, mapped read-write. The file is removed on drop.
pub struct Table {
    path: PathBuf,
    map: MmapRaw,
    n_sites: u64,
    _file: File,
}

const RULES: usize = abi::FAULT_RULES as usize;

fn table_len(n_sites: u64) -> u64 {
    abi::FAULTS_HEADER + abi::FAULT_RULES * abi::FAULT_RULE_SIZE + n_sites * abi::FAULT_SITE_SIZE
}

impl Table {
    /// Creates the table at `path` (which must not exist) for a program with
    /// `n_sites` counter slots, every rule disarmed.
    pub fn create(path: &Path, n_sites: u64) -> io::Result<Table> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.set_len(table_len(n_sites))?;
        let map = MmapOptions::new().map_raw(&file)?;
        let t = Table {
            path: path.to_owned(),
            map,
            n_sites,
            _file: file,
        };
        t.u32(abi::FLT_ABI_VERSION)
            .store(abi::ABI_VERSION as u32, Ordering::Relaxed);
        t.u64(abi::FLT_N_SITES).store(n_sites, Ordering::Relaxed);
        // Last: a runtime that sees the magic sees the rest.
        t.u64(abi::FLT_MAGIC)
            .store(abi::FAULTS_MAGIC, Ordering::Release);
        Ok(t)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn n_sites(&self) -> u64 {
        self.n_sites
    }

    /// Whether a program's runtime mapped the table (it sets a flag).
    pub fn attached(&self) -> bool {
        self.u32(abi::FLT_ATTACHED).load(Ordering::Relaxed) != 0
    }

    fn u32(&self, off: u64) -> &AtomicU32 {
        assert!(
            off.is_multiple_of(4) && off + 4 <= self.map.len() as u64,
            "offset {off}"
        );
        // SAFETY: in bounds and aligned (checked; the mapping is page
        // aligned); the mapping lives as long as `self`; the memory is shared
        // with another process that accesses it only with atomics.
        unsafe { AtomicU32::from_ptr(self.map.as_mut_ptr().add(off as usize).cast()) }
    }

    fn u64(&self, off: u64) -> &AtomicU64 {
        assert!(
            off.is_multiple_of(8) && off + 8 <= self.map.len() as u64,
            "offset {off}"
        );
        // SAFETY: as in `u32`.
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().add(off as usize).cast()) }
    }

    fn rule_off(slot: usize, field: u64) -> u64 {
        assert!(slot < RULES, "rule slot {slot} of {RULES}");
        abi::FAULTS_HEADER + slot as u64 * abi::FAULT_RULE_SIZE + field
    }

    fn site_off(&self, site: u32, field: u64) -> u64 {
        assert!(
            u64::from(site) < self.n_sites,
            "site {site} of {}",
            self.n_sites
        );
        abi::FAULTS_HEADER
            + abi::FAULT_RULES * abi::FAULT_RULE_SIZE
            + u64::from(site) * abi::FAULT_SITE_SIZE
            + field
    }

    /// Arms rule `slot` (which must be disarmed) with counters from zero.
    /// Sites follow it once [`Table::set_site`] points them at it.
    pub fn arm(&self, slot: usize, rule: &Rule) {
        let r = |f| Self::rule_off(slot, f);
        assert_eq!(self.u32(r(abi::RULE_ACTIVE)).load(Ordering::Relaxed), 0);
        let (what, err) = match rule.what {
            What::Alloc => (abi::FAULT_ALLOC, 0),
            What::Errno(e) => (abi::FAULT_ERRNO, e),
        };
        let (mode, n) = match rule.mode {
            Mode::Nth(n) => (abi::FAULT_MODE_NTH, n),
            Mode::Every(n) => (abi::FAULT_MODE_EVERY, n),
            Mode::Fraction(p) => (abi::FAULT_MODE_FRACTION, fraction_threshold(p)),
        };
        self.u32(r(abi::RULE_WHAT))
            .store(what as u32, Ordering::Relaxed);
        self.u32(r(abi::RULE_ERRNO))
            .store(err as u32, Ordering::Relaxed);
        self.u32(r(abi::RULE_MODE))
            .store(mode as u32, Ordering::Relaxed);
        self.u64(r(abi::RULE_N)).store(n, Ordering::Relaxed);
        self.u64(r(abi::RULE_LIMIT))
            .store(rule.limit.unwrap_or(0), Ordering::Relaxed);
        self.u64(r(abi::RULE_SEED))
            .store(rule.seed, Ordering::Relaxed);
        self.u64(r(abi::RULE_CALLS)).store(0, Ordering::Relaxed);
        self.u64(r(abi::RULE_INJECTED)).store(0, Ordering::Relaxed);
        self.u32(r(abi::RULE_ACTIVE)).store(1, Ordering::Release);
        self.u32(abi::FLT_ARMED).fetch_add(1, Ordering::Release);
    }

    /// Changes an armed fraction rule's probability (a shaped level).
    pub fn set_fraction(&self, slot: usize, p: f64) {
        self.u64(Self::rule_off(slot, abi::RULE_N))
            .store(fraction_threshold(p), Ordering::Relaxed);
    }

    /// Disarms rule `slot`; its counters stay readable. Point its sites
    /// elsewhere first.
    pub fn disarm(&self, slot: usize) {
        let active = self.u32(Self::rule_off(slot, abi::RULE_ACTIVE));
        if active.swap(0, Ordering::Release) != 0 {
            self.u32(abi::FLT_ARMED).fetch_sub(1, Ordering::Release);
        }
    }

    /// Points `site` at rule `slot` (None: no rule).
    pub fn set_site(&self, site: u32, slot: Option<usize>) {
        let v = slot.map_or(0, |s| {
            assert!(s < RULES);
            s as u32 + 1
        });
        self.u32(self.site_off(site, abi::FSITE_RULE))
            .store(v, Ordering::Release);
    }

    pub fn stats(&self, slot: usize) -> RuleStats {
        RuleStats {
            calls: self
                .u64(Self::rule_off(slot, abi::RULE_CALLS))
                .load(Ordering::Relaxed),
            injected: self
                .u64(Self::rule_off(slot, abi::RULE_INJECTED))
                .load(Ordering::Relaxed),
        }
    }

    /// Calls failed at `site` since the table was made.
    pub fn site_injected(&self, site: u32) -> u64 {
        u64::from(
            self.u32(self.site_off(site, abi::FSITE_INJECTED))
                .load(Ordering::Relaxed),
        )
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arming_writes_the_documented_layout() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let t = Table::create(&p, 10).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), table_len(10));
        t.arm(
            3,
            &Rule {
                what: What::Errno(28),
                mode: Mode::Fraction(0.25),
                limit: Some(7),
                seed: 42,
            },
        );
        t.set_site(9, Some(3));
        let bytes = std::fs::read(&p).unwrap();
        let u32_at =
            |o: u64| u32::from_le_bytes(bytes[o as usize..o as usize + 4].try_into().unwrap());
        let u64_at =
            |o: u64| u64::from_le_bytes(bytes[o as usize..o as usize + 8].try_into().unwrap());
        assert_eq!(u64_at(abi::FLT_MAGIC), abi::FAULTS_MAGIC);
        assert_eq!(u64_at(abi::FLT_N_SITES), 10);
        assert_eq!(u32_at(abi::FLT_ARMED), 1);
        let rule = abi::FAULTS_HEADER + 3 * abi::FAULT_RULE_SIZE;
        assert_eq!(u32_at(rule + abi::RULE_ACTIVE), 1);
        assert_eq!(u32_at(rule + abi::RULE_WHAT), abi::FAULT_ERRNO as u32);
        assert_eq!(u32_at(rule + abi::RULE_ERRNO), 28);
        assert_eq!(
            u32_at(rule + abi::RULE_MODE),
            abi::FAULT_MODE_FRACTION as u32
        );
        assert_eq!(u64_at(rule + abi::RULE_N), 1 << 30);
        assert_eq!(u64_at(rule + abi::RULE_LIMIT), 7);
        assert_eq!(u64_at(rule + abi::RULE_SEED), 42);
        let site9 = abi::FAULTS_HEADER + abi::FAULT_RULES * abi::FAULT_RULE_SIZE + 9 * 8;
        assert_eq!(u32_at(site9 + abi::FSITE_RULE), 4);
        t.set_site(9, None);
        t.disarm(3);
        t.disarm(3);
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes[abi::FLT_ARMED as usize], 0);
        drop(t);
        assert!(!p.exists(), "the table is removed on drop");
    }

    #[test]
    fn thresholds_cover_zero_to_one() {
        assert_eq!(fraction_threshold(0.0), 0);
        assert_eq!(fraction_threshold(1.0), 1 << 32);
        assert_eq!(fraction_threshold(2.0), 1 << 32);
        assert_eq!(fraction_threshold(0.5), 1 << 31);
    }
}
