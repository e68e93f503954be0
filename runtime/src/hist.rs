//! Dwell histograms: log-linear buckets over clock ticks, exactly as
//! `panic_abi.h` lays them out and the C runtime fills them.
//!
//! Values below `2^(SUB_BITS+1)` get a bucket each; above, every power of two
//! is split into `2^SUB_BITS` equal buckets, so a bucket is never wider than
//! `2^-SUB_BITS` of its lower bound and its midpoint is within `2^-(SUB_BITS+1)`
//! (0.78 %) of any value in it. This module does no IO.

use crate::abi;

/// `PANIC_HIST_SUB_BITS`.
pub const SUB_BITS: u32 = abi::HIST_SUB_BITS as u32;

/// Number of buckets, `PANIC_HIST_BUCKETS`.
pub const BUCKETS: usize = abi::HIST_BUCKETS as usize;

/// The bucket a duration of `v` ticks is counted in (the C runtime's
/// `hist_index`): with `sh = max(floor(log2 v) - SUB_BITS, 0)`, the index is
/// `(sh << SUB_BITS) + (v >> sh)`, which is the header's `g * 2^SUB_BITS + s`.
/// Values past `2^(HIST_MAX_EXP+1)` share the last bucket.
pub fn bucket_index(v: u64) -> usize {
    let sh = (v | 1 << SUB_BITS).ilog2() - SUB_BITS;
    let idx = (u64::from(sh) << SUB_BITS) + (v >> sh);
    usize::try_from(idx).map_or(BUCKETS - 1, |i| i.min(BUCKETS - 1))
}

/// The half-open range `[lo, hi)` of values counted in bucket `i`. The last
/// bucket also takes everything above its nominal range: its `hi` is
/// `u64::MAX` (and it holds `u64::MAX` too).
///
/// # Panics
///
/// If `i >= BUCKETS`.
pub fn bucket_bounds(i: usize) -> (u64, u64) {
    let (lo, hi) = nominal_bounds(i);
    (lo, if i == BUCKETS - 1 { u64::MAX } else { hi })
}

/// Bounds as the index formula defines them, the last bucket included.
fn nominal_bounds(i: usize) -> (u64, u64) {
    assert!(i < BUCKETS, "bucket {i} out of range (there are {BUCKETS})");
    let i = i as u64;
    let group = i >> SUB_BITS;
    if group <= 1 {
        return (i, i + 1);
    }
    let sh = group - 1;
    let mantissa = i - (sh << SUB_BITS);
    (mantissa << sh, (mantissa + 1) << sh)
}

/// The value a bucket stands for in reports: its midpoint (exact for buckets
/// one tick wide). For the last bucket it is the midpoint of its nominal range
/// (`2^(HIST_MAX_EXP+1)` is its nominal end); [`Hist::quantile`] clamps it to
/// the exact maximum.
///
/// # Panics
///
/// If `i >= BUCKETS`.
pub fn bucket_midpoint(i: usize) -> u64 {
    let (lo, hi) = nominal_bounds(i);
    lo + (hi - lo) / 2
}

/// One site's dwell histogram, in ticks, decoded (`min` is the real minimum:
/// the segment stores it complemented, see [`crate::segment`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hist {
    /// Recorded durations.
    pub count: u64,
    /// Sum of the recorded durations (wraps after 2^64 ticks, like the C side).
    pub total: u64,
    /// Largest duration, exact; 0 when empty.
    pub max: u64,
    /// Smallest duration, exact; `u64::MAX` when empty.
    pub min: u64,
    /// Sum of the region's self times in ticks: each duration minus the
    /// durations of the timed regions closed inside it (`PANIC_HIST_SELF`).
    /// Kept only in kernel mode ([`crate::Header::kthreads`]), 0 otherwise;
    /// regions still open are not in it ([`crate::Snapshot::self_ticks`] adds them).
    pub self_total: u64,
    /// Counts per bucket, [`BUCKETS`] of them.
    pub buckets: Vec<u64>,
    /// The runtime demoted the region after `PANIC_DEMOTE_AFTER` durations whose
    /// mean was below `PANIC_DEMOTE_BELOW_NS` (see `panic_abi.h`).
    pub demoted: bool,
    /// A budget bounds the region, so the runtime never demotes it
    /// (`PANIC_HIST_FLAG_PINNED`; kernel mode with budgets only).
    pub pinned: bool,
}

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    /// An empty histogram.
    pub fn new() -> Self {
        Hist {
            count: 0,
            total: 0,
            max: 0,
            min: u64::MAX,
            self_total: 0,
            buckets: vec![0; BUCKETS],
            demoted: false,
            pinned: false,
        }
    }

    /// Records one duration the way the C runtime does.
    pub fn record(&mut self, v: u64) {
        self.count += 1;
        self.total = self.total.wrapping_add(v);
        self.max = self.max.max(v);
        self.min = self.min.min(v);
        if self.buckets.len() < BUCKETS {
            self.buckets.resize(BUCKETS, 0);
        }
        self.buckets[bucket_index(v)] += 1;
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Mean duration in ticks, `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.total as f64 / self.count as f64)
    }

    /// The `q` quantile (`0.0..=1.0`, clamped) in ticks, `None` when empty: the
    /// midpoint of the bucket holding the value of rank `ceil(q * count)` (at
    /// least 1), clamped to `[min, max]`. Within 0.78 % of the true value.
    ///
    /// A snapshot of a running program may catch a duration counted in `count`
    /// but not yet in its bucket; a rank past the buckets reports `max`.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate().take(BUCKETS) {
            seen = seen.saturating_add(n);
            if seen >= rank {
                return Some(self.clamp_to_range(bucket_midpoint(i)));
            }
        }
        Some(self.max)
    }

    /// Clamps to `[min, max]` when those are consistent (a live snapshot can
    /// see `count` before the extremes).
    fn clamp_to_range(&self, v: u64) -> u64 {
        if self.min <= self.max {
            v.clamp(self.min, self.max)
        } else {
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded 64-bit LCG (Knuth's MMIX constants): deterministic test values.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0
        }
    }

    #[test]
    fn index_follows_the_header_formula() {
        // The header's own words: g = e - SUB_BITS + 1, s = (v >> (e - SUB_BITS)) - 2^SUB_BITS.
        let by_header = |v: u64| -> usize {
            if v < 1 << SUB_BITS {
                return v as usize;
            }
            let e = v.ilog2();
            let g = u64::from(e - SUB_BITS + 1);
            let s = (v >> (e - SUB_BITS)) - (1 << SUB_BITS);
            if e > abi::HIST_MAX_EXP as u32 {
                BUCKETS - 1
            } else {
                (g * (1 << SUB_BITS) + s) as usize
            }
        };
        let mut rng = Lcg(7);
        let mut values: Vec<u64> = (0..2000).collect();
        for e in 0..64 {
            let p = 1u64 << e;
            values.extend([p - 1, p, p + 1, p | (p >> 1), p.wrapping_mul(3) / 2]);
        }
        values.extend((0..100_000).map(|_| rng.next() >> (rng.next() % 64)));
        values.push(u64::MAX);
        for v in values {
            assert_eq!(bucket_index(v), by_header(v), "v = {v}");
        }
    }

    #[test]
    fn index_edges() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(63), 63);
        assert_eq!(bucket_index(64), 64);
        assert_eq!(bucket_index(127), 127);
        assert_eq!(bucket_index(128), 128);
        assert_eq!(bucket_index(129), 128);
        assert_eq!(bucket_index(130), 129);
        assert_eq!(bucket_index(256), 192);
        let top = 1u64 << (abi::HIST_MAX_EXP + 1);
        assert_eq!(bucket_index(top - 1), BUCKETS - 1);
        assert!(bucket_index((top - 1) >> 1) < BUCKETS - 1);
        assert_eq!(bucket_index(top), BUCKETS - 1);
        assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn bounds_tile_the_line_and_match_the_index() {
        let mut expected_lo = 0;
        for i in 0..BUCKETS {
            let (lo, hi) = bucket_bounds(i);
            assert_eq!(lo, expected_lo, "bucket {i} leaves a gap");
            assert!(hi > lo);
            assert_eq!(bucket_index(lo), i);
            assert_eq!(bucket_index(hi - 1), i);
            assert_eq!(bucket_index(lo + (hi - lo) / 2), i);
            // Width relative to the lower bound is at most 2^-SUB_BITS (the last bucket is open).
            if i + 1 < BUCKETS && lo > 0 {
                assert!(
                    (hi - lo) << SUB_BITS <= lo.max(1 << SUB_BITS),
                    "bucket {i} too wide"
                );
            }
            expected_lo = hi;
        }
        assert_eq!(expected_lo, u64::MAX);
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn bounds_reject_a_bucket_past_the_end() {
        let _ = bucket_bounds(BUCKETS);
    }

    /// Relative error of the reported midpoint, for one value.
    fn rel_error(v: u64) -> f64 {
        let mid = bucket_midpoint(bucket_index(v));
        (mid as f64 - v as f64).abs() / v as f64
    }

    #[test]
    fn midpoint_is_within_one_percent_everywhere_in_range() {
        let limit = 1u64 << (abi::HIST_MAX_EXP + 1);
        let bound = 1.0 / f64::from(1u32 << (SUB_BITS + 1));
        assert!(bound <= 0.01);
        let mut worst = 0.0f64;
        let mut check = |v: u64| {
            if (1..limit).contains(&v) {
                let e = rel_error(v);
                assert!(e <= bound, "v = {v}: relative error {e}");
                worst = worst.max(e);
            }
        };
        // Every value up to 2^16, then each power of two with its neighbours.
        for v in 1..=1 << 16 {
            check(v);
        }
        for e in 0..64 {
            let p = 1u64 << e;
            for d in 0..4 {
                check(p.wrapping_add(d));
                check(p.wrapping_sub(d));
            }
        }
        // Seeded values spread over every magnitude.
        let mut rng = Lcg(0x5eed);
        for _ in 0..500_000 {
            let v = rng.next() >> (16 + rng.next() % 48);
            check(v);
        }
        // The bound is tight: the worst case sits right at a bucket's lower edge.
        assert!(worst > bound * 0.9, "worst relative error {worst}");
    }

    #[test]
    fn quantiles_of_a_known_sample() {
        let mut h = Hist::new();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.mean(), None);
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        assert_eq!(h.count, 10_000);
        assert_eq!(h.min, 1000);
        assert_eq!(h.max, 10_000_000);
        for (q, exact) in [
            (0.5, 5_000_000.0),
            (0.9, 9_000_000.0),
            (0.99, 9_900_000.0),
            (0.001, 10_000.0),
        ] {
            let got = h.quantile(q).expect("not empty") as f64;
            assert!(
                (got - exact).abs() / exact <= 0.01,
                "q{q}: {got} vs {exact}"
            );
        }
        // Rank 1 is the minimum's bucket ([1000, 1008), midpoint 1004); the top
        // bucket's midpoint lies above the maximum and is clamped to it.
        assert_eq!(h.quantile(0.0), Some(1004));
        assert_eq!(h.quantile(1.0), Some(10_000_000));
        assert_eq!(h.quantile(f64::NAN), Some(1004));
        assert_eq!(h.quantile(7.0), Some(10_000_000));
        assert_eq!(h.mean(), Some(5_000_500.0));
    }

    #[test]
    fn quantile_of_one_value_is_that_value() {
        let mut h = Hist::new();
        h.record(123_456_789);
        for q in [0.0, 0.5, 1.0] {
            assert_eq!(h.quantile(q), Some(123_456_789));
        }
    }

    #[test]
    fn quantile_tolerates_a_torn_live_read() {
        // count ahead of the buckets and min not yet written, as a reader racing
        // the runtime can see it.
        let mut h = Hist::new();
        h.record(500);
        h.count = 3;
        h.min = u64::MAX;
        assert_eq!(h.quantile(0.1), Some(bucket_midpoint(bucket_index(500))));
        assert_eq!(h.quantile(1.0), Some(500));
    }
}
