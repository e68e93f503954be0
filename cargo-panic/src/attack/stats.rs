//! The statistics behind `cargo panic compare` and the per-site latency
//! percentiles of attack reports. Pure functions over plain samples: no IO, no
//! clock, no global random state (the bootstrap takes its seed explicitly).
//!
//! # Input rules (all functions)
//!
//! Samples must be finite. A NaN or an infinity is rejected, never dropped:
//! [`Summary::of`], [`mann_whitney`], [`bootstrap_median_diff`] and
//! [`median`] return `None` for them, and [`compare`] gives the metric the
//! verdict [`Verdict::InvalidSamples`]. (A NaN in a report means a measurement
//! went wrong; silently dropping it would bias the comparison.) Empty input
//! gives `None` too.
//!
//! # Quantiles
//!
//! [`quantile`] is Hyndman & Fan type 7, the default of numpy
//! (`method="linear"`), R and Excel `PERCENTILE.INC`: for `n` sorted values
//! `x[0..n]` and `q` in `[0, 1]`, with `h = (n - 1) q`,
//! `Q(q) = x[floor h] + (h - floor h) (x[floor h + 1] - x[floor h])`,
//! i.e. linear interpolation between the closest ranks. `Q(0)` is the minimum,
//! `Q(1)` the maximum, `Q(0.5)` the usual median. With few samples the high
//! percentiles are interpolations towards the maximum (p999 of 100 samples is
//! almost the maximum); they are descriptive, not estimates of the tail.
//!
//! # Mann-Whitney U (two-sided)
//!
//! [`mann_whitney`] tests H0: "a and b are drawn from the same continuous
//! distribution" against the alternative that one tends to give larger values
//! (`P(A > B) != P(A < B)`). It is valid for independent samples (runs of an
//! attack are independent if nothing carries over between them, e.g. warm
//! caches; they are not independent when they share one process). It does not
//! assume normality. It is *not* a test of equal medians in general; it detects
//! a shift of the distribution.
//!
//! `U` is the statistic of `a`: the number of pairs `(a_i, b_j)` with
//! `a_i > b_j`, ties counting one half (`U_a + U_b = n_a n_b`). The effect size
//! is the rank-biserial correlation `r = (U_a - U_b) / (n_a n_b) =
//! P(A > B) - P(A < B)`, in `[-1, 1]`; positive means a tends to be larger.
//!
//! The p-value comes from one of:
//! * [`MwMethod::Exact`], when the pooled sample has no ties and
//!   `n_a * n_b <= EXACT_MAX_PRODUCT` (2500, e.g. 50 x 50): the exact null
//!   distribution of U (every one of the `C(n_a + n_b, n_a)` assignments of
//!   the ranks equally likely), counted exactly in `i128` through the
//!   Gaussian-binomial recurrence (Andrews; Harding 1984). The largest count,
//!   `C(100, 50) ~ 1e29`, is far below `i128::MAX ~ 1.7e38`: no overflow, no
//!   rounding until the final division. `p = min(1, 2 min(P(U <= u),
//!   P(U >= u)))`. Note that the smallest achievable p is
//!   `2 / C(n_a + n_b, n_a)`: 0.1 for 3 vs 3, 0.029 for 4 vs 4.
//! * [`MwMethod::Normal`] otherwise (ties, or larger samples): `z = (|U - mu| -
//!   1/2) / sigma` (continuity correction, floored at 0) with `mu = n_a n_b / 2`
//!   and the tie-corrected variance `sigma^2 = n_a n_b / 12 ((N + 1) -
//!   sum(t^3 - t) / (N (N - 1)))` (`t` the sizes of the tie groups, `N = n_a +
//!   n_b`), `p = 2 (1 - Phi(z))`. That variance is exactly the permutation
//!   variance of U given the ties (checked by enumeration in the tests). With
//!   ties and very small samples the approximation is crude (and the true
//!   permutation distribution lumpy); there the p-value is only indicative.
//! * [`MwMethod::Degenerate`] when every pooled value is equal: there is no
//!   evidence either way, `p = 1`.
//!
//! # Bootstrap confidence interval of the difference of medians
//!
//! [`bootstrap_median_diff`] resamples a and b independently with replacement
//! (`B` times, default 2000), computes `median(b*) - median(a*)` each time and
//! returns the `alpha/2` and `1 - alpha/2` type-7 quantiles of those `B`
//! differences (percentile method), around the point estimate `median(b) -
//! median(a)`. It is valid asymptotically for independent samples of a
//! distribution with a density at the median; with few samples or very discrete
//! values the bootstrap distribution of a median is lumpy and the coverage can
//! be below nominal. Randomness comes only from `rand_pcg::Pcg64::seed_from_u64
//! (seed)`: the same inputs, seed and `B` give bit-identical results (with the
//! same rand/rand_pcg versions).
//!
//! # Comparing reports, and what `significant` means
//!
//! [`compare`] (and [`Comparison::new`], which also lists the metrics present
//! on one side only) compares, for every metric present in both `before` (a)
//! and `after` (b): the medians, `delta = median_b - median_a`, `delta_pct =
//! 100 delta / |median_a|` (none when `median_a == 0`), the Mann-Whitney
//! p-value, the bootstrap CI of `median_b - median_a` (per-metric seed derived
//! from `opts.seed` and the metric name, so a metric's CI does not depend on
//! which other metrics are present). Then:
//!
//! * a metric with fewer than `opts.min_samples` (default 3) samples on either
//!   side is [`Verdict::TooFewSamples`]: no test, no claim;
//! * the raw p-values of the metrics actually tested are Holm-Bonferroni
//!   adjusted together ([`holm_adjust`]), since many metrics are compared at
//!   once; both are reported;
//! * `significant` is exactly: `p_adjusted < alpha` **and** the `1 - alpha`
//!   bootstrap CI excludes 0 (`lower > 0` or `upper < 0`) **and** the
//!   rank-biserial effect points the same way as the CI (b larger: `r < 0`).
//!   The conjunction is at least as conservative as the Holm test alone, so the
//!   family-wise error rate over the compared metrics stays <= alpha (under the
//!   test's assumptions). The CI itself is a per-metric `1 - alpha` interval,
//!   not a simultaneous one;
//! * the verdict is then [`Verdict::Better`] / [`Verdict::Worse`] from the sign
//!   of the CI and the metric's direction ([`Better`]), or
//!   [`Verdict::NoSignificantChange`]. "No significant change" is absence of
//!   evidence, not evidence of no change: with few samples (see the smallest
//!   achievable p above, and Holm multiplies it by the number of metrics) a
//!   real change can go undetected.
//!
//! The direction of a metric is [`CompareOptions::better_for`]: the longest
//! prefix of the metric name found in `opts.better` wins; otherwise
//! [`Better::guess`] from the name's tokens (see there; lower is better for
//! latency-like names and for anything unrecognised).
//!
//! # How this is tested (the `tests` module)
//!
//! No external reference implementation (no scipy): the references are
//! textbook values or brute force inside the tests.
//! * Quantiles: numpy's default on `[1, 2, 3, 4]` (0.25 -> 1.75, 0.5 -> 2.5,
//!   0.99 -> 3.97) and Wikipedia's "Percentile" example (40th of 15, 20, 35,
//!   40, 50 is 29); the summary on Wikipedia's standard-deviation example.
//! * Exact U distribution: equal to the enumeration of every rank assignment
//!   for all sizes up to 7 x 7; the p-value of every arrangement up to 5 x 5
//!   against the enumerated tails; `C(100, 50)` total at the 50 x 50 bound.
//! * scipy's documented example (U = 17, exact p = 1/9, asymptotic p =
//!   0.11134688653314041).
//! * Ties: U against the pairwise definition on random tied data; the
//!   tie-corrected variance equal to the variance of U over all splits of the
//!   pooled sample; the normal p against Simpson integration of the normal
//!   density; `erfc` against tabulated values.
//! * Behaviour: identical samples -> p = 1, not significant; a 5-sigma shift
//!   of 20 vs 20 -> significant, worse for a latency, better for a
//!   throughput, mirrored when swapped; swapping a and b mirrors U and r and
//!   keeps p; the exact test's rejection rate under H0 stays <= ~0.05.
//! * Holm on Wikipedia's example (0.01, 0.04, 0.03, 0.005 -> 0.03, 0.06,
//!   0.06, 0.02), and a case where Holm removes a raw significance.
//! * Bootstrap: bit-identical for one seed, different for another; the CI of
//!   a + 3 vs a contains 3; coverage of 200 simulated 95% intervals >= 85%.
//! * `compare`: unmatched, too-few, invalid and zero-baseline metrics; Holm
//!   applied over the tested metrics only; JSON round trip; the table golden.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// Quantiles and summaries
// ---------------------------------------------------------------------------

/// The `q` quantile of `sorted` (ascending, finite), Hyndman & Fan type 7:
/// linear interpolation between the closest ranks, `h = (n - 1) q`, numpy's
/// default. `None` when `sorted` is empty or `q` is not in `[0, 1]` (or NaN).
///
/// The slice must be sorted ascending and free of NaN (checked in debug
/// builds only).
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    debug_assert!(sorted.is_sorted(), "quantile needs sorted, NaN-free input");
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let frac = h - lo as f64;
    let (x0, x1) = (sorted[lo], sorted[hi]);
    // `x0 + frac (x1 - x0)` is exact at the ends and monotone in q.
    Some(if frac == 0.0 {
        x0
    } else {
        x0 + frac * (x1 - x0)
    })
}

/// The type-7 median of unsorted samples. `None` when empty or not all finite.
pub fn median(samples: &[f64]) -> Option<f64> {
    let sorted = sorted_finite(samples)?;
    quantile(&sorted, 0.5)
}

/// A copy of `samples` sorted ascending, or `None` when empty or any value is
/// not finite.
fn sorted_finite(samples: &[f64]) -> Option<Vec<f64>> {
    if samples.is_empty() || !all_finite(samples) {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_unstable_by(f64::total_cmp);
    Some(v)
}

fn all_finite(samples: &[f64]) -> bool {
    samples.iter().all(|x| x.is_finite())
}

/// Descriptive statistics of one sample; percentiles are type 7 ([`quantile`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Sample standard deviation (divisor `n - 1`); `None` when `n == 1`.
    pub stddev: Option<f64>,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
}

impl Summary {
    /// `None` when `samples` is empty or holds a NaN or an infinity.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let sorted = sorted_finite(samples)?;
        let n = sorted.len();
        // Welford: no catastrophic cancellation, no sum that can overflow
        // before the mean does.
        let (mut mean, mut m2) = (0.0_f64, 0.0_f64);
        for (k, &x) in sorted.iter().enumerate() {
            let d = x - mean;
            mean += d / (k + 1) as f64;
            m2 += d * (x - mean);
        }
        let q = |p| quantile(&sorted, p).expect("non-empty, p in [0, 1]");
        Some(Summary {
            n,
            min: sorted[0],
            max: sorted[n - 1],
            mean,
            stddev: (n > 1).then(|| (m2 / (n - 1) as f64).sqrt()),
            p50: q(0.5),
            p95: q(0.95),
            p99: q(0.99),
            p999: q(0.999),
        })
    }
}

// ---------------------------------------------------------------------------
// Mann-Whitney U
// ---------------------------------------------------------------------------

/// The exact null distribution is used when there are no ties and
/// `n_a * n_b` is at most this (50 x 50, 10 x 250, ...). The counts then stay
/// below `C(100, 50) ~ 1e29`, far inside `i128`.
pub const EXACT_MAX_PRODUCT: usize = 2500;

/// How the p-value of [`MannWhitney`] was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MwMethod {
    /// Exact null distribution of U (no ties, small samples).
    Exact,
    /// Normal approximation, tie-corrected variance, continuity correction.
    Normal,
    /// All pooled values equal: p = 1.
    Degenerate,
}

/// The result of a two-sided Mann-Whitney U test of a against b.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MannWhitney {
    pub n_a: usize,
    pub n_b: usize,
    /// U of a: pairs with `a_i > b_j`, ties counting 1/2. U of b is
    /// `n_a * n_b - u`.
    pub u: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// `(U_a - U_b) / (n_a n_b) = P(A > B) - P(A < B)`; positive when a tends
    /// to be larger than b.
    pub rank_biserial: f64,
    pub method: MwMethod,
    /// The continuity-corrected z (>= 0) of the normal approximation.
    pub z: Option<f64>,
    /// Whether the pooled sample had tied values.
    pub ties: bool,
}

/// Two-sided Mann-Whitney U test (see the module docs for method selection).
/// `None` when either side is empty or holds a NaN or an infinity.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    if a.is_empty() || b.is_empty() || !all_finite(a) || !all_finite(b) {
        return None;
    }
    let (n_a, n_b) = (a.len(), b.len());
    let n = n_a + n_b;
    // `+ 0.0` turns -0.0 into 0.0 so that the two zeros tie.
    let mut pooled: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x + 0.0, true))
        .chain(b.iter().map(|&x| (x + 0.0, false)))
        .collect();
    pooled.sort_unstable_by(|x, y| x.0.total_cmp(&y.0));

    // Twice U of a, exactly: every a in a tie group beats the b's below the
    // group and half-beats the b's in it.
    let mut two_u: u128 = 0;
    let mut b_below: u128 = 0;
    let mut tie_term = 0.0_f64; // sum of t^3 - t over tie groups
    let mut ties = false;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j < n && pooled[j].0 == pooled[i].0 {
            j += 1;
        }
        let t = j - i;
        let a_in = pooled[i..j].iter().filter(|p| p.1).count() as u128;
        let b_in = t as u128 - a_in;
        two_u += a_in * (2 * b_below + b_in);
        b_below += b_in;
        if t > 1 {
            ties = true;
            let t = t as f64;
            tie_term += t * t * t - t;
        }
        i = j;
    }
    let u = two_u as f64 / 2.0;
    let nab = n_a as f64 * n_b as f64;
    let rank_biserial = 2.0 * u / nab - 1.0;
    let mut out = MannWhitney {
        n_a,
        n_b,
        u,
        p_value: 1.0,
        rank_biserial,
        method: MwMethod::Degenerate,
        z: None,
        ties,
    };
    if pooled[0].0 == pooled[n - 1].0 {
        return Some(out);
    }
    if !ties && n_a.saturating_mul(n_b) <= EXACT_MAX_PRODUCT {
        out.method = MwMethod::Exact;
        out.p_value = exact_p((two_u / 2) as usize, n_a, n_b);
    } else {
        let (z, p) = normal_p(u, n_a, n_b, tie_term);
        out.method = MwMethod::Normal;
        out.z = Some(z);
        out.p_value = p;
    }
    Some(out)
}

/// The number of rank assignments giving each value of U (index = U) under
/// H0, for sample sizes `m` and `n`: the coefficients of the Gaussian binomial
/// `[m + n choose m]_q = prod_{i=1..k} (1 - q^(l+i)) / (1 - q^i)` with
/// `k = min(m, n)`, `l = max(m, n)`. After step `i` the polynomial is
/// `[l + i choose i]_q` (all counts `<= C(l + i, i)`); each step multiplies by
/// `1 - q^(l+i)` and divides exactly by `1 - q^i`, in integers.
fn u_distribution(m: usize, n: usize) -> Vec<i128> {
    let (k, l) = (m.min(n), m.max(n));
    let len = k * l + 1;
    // Room for the degree `(i - 1) l + l + i` reached before each division.
    let mut c = vec![0_i128; len + k + 1];
    c[0] = 1;
    for i in 1..=k {
        let deg = (i - 1) * l + l + i;
        let s = l + i;
        for d in (s..=deg).rev() {
            c[d] -= c[d - s];
        }
        for d in i..=deg {
            c[d] += c[d - i];
        }
        debug_assert!(c[i * l + 1..=deg].iter().all(|&x| x == 0));
    }
    c.truncate(len);
    c
}

/// Exact two-sided p-value of an integer U for sizes `m`, `n` (no ties).
fn exact_p(u: usize, m: usize, n: usize) -> f64 {
    let counts = u_distribution(m, n);
    let total: i128 = counts.iter().sum();
    let lower: i128 = counts[..=u].iter().sum();
    let upper: i128 = counts[u..].iter().sum();
    let tail = 2 * lower.min(upper);
    if tail >= total {
        1.0
    } else {
        tail as f64 / total as f64
    }
}

/// The continuity-corrected z and two-sided p of the normal approximation.
fn normal_p(u: f64, n_a: usize, n_b: usize, tie_term: f64) -> (f64, f64) {
    let (na, nb) = (n_a as f64, n_b as f64);
    let n = na + nb;
    let mu = na * nb / 2.0;
    let var = na * nb / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if var <= 0.0 {
        return (0.0, 1.0);
    }
    let z = ((u - mu).abs() - 0.5).max(0.0) / var.sqrt();
    (z, erfc(z / std::f64::consts::SQRT_2).min(1.0))
}

/// The complementary error function, to ~1e-15 relative: a series with
/// positive terms for `x < 2`, a continued fraction (modified Lentz) beyond.
fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    let two_over_sqrt_pi = std::f64::consts::FRAC_2_SQRT_PI;
    if x < 2.0 {
        // erf(x) = 2/sqrt(pi) e^{-x^2} sum_k (2x^2)^k x / (1 3 5 ... (2k+1))
        let x2 = x * x;
        let (mut term, mut sum) = (x, x);
        // At most ~60 terms for x < 2 (the terms fall once 2k + 1 > 2x^2).
        for k in 1..200 {
            term *= 2.0 * x2 / (2 * k + 1) as f64;
            sum += term;
            if term <= sum * 1e-17 {
                break;
            }
        }
        1.0 - two_over_sqrt_pi * (-x2).exp() * sum
    } else {
        // erfc(x) = e^{-x^2}/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))
        let tiny = 1e-300;
        let mut f = x;
        let mut c = x;
        let mut d = 0.0;
        for k in 1..500 {
            let ak = k as f64 / 2.0;
            d = x + ak * d;
            if d.abs() < tiny {
                d = tiny;
            }
            c = x + ak / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = c * d;
            f *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (-x * x).exp() / (f * std::f64::consts::PI.sqrt())
    }
}

// ---------------------------------------------------------------------------
// Holm-Bonferroni
// ---------------------------------------------------------------------------

/// Holm-Bonferroni adjusted p-values, in the order of `p`: with `p_(1) <= ...
/// <= p_(m)`, `adj_(i) = min(1, max_{j <= i} (m - j + 1) p_(j))`. Rejecting
/// `adj < alpha` is Holm's step-down procedure (family-wise error <= alpha).
pub fn holm_adjust(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let mut out = vec![0.0; m];
    let mut running = 0.0_f64;
    for (rank, &i) in order.iter().enumerate() {
        let adj = ((m - rank) as f64 * p[i]).min(1.0);
        running = running.max(adj);
        out[i] = running;
    }
    out
}

// ---------------------------------------------------------------------------
// Bootstrap
// ---------------------------------------------------------------------------

/// Parameters of [`bootstrap_median_diff`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BootstrapOptions {
    /// Number of resamples B (default 2000).
    pub resamples: usize,
    /// The interval has confidence `1 - alpha` (default 0.05).
    pub alpha: f64,
    /// Seed of the `Pcg64` (default 0).
    pub seed: u64,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        BootstrapOptions {
            resamples: 2000,
            alpha: 0.05,
            seed: 0,
        }
    }
}

/// A percentile bootstrap interval of `median(b) - median(a)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapCi {
    /// `median(b) - median(a)` on the original samples.
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
    /// `1 - alpha`.
    pub confidence: f64,
    pub resamples: usize,
    pub seed: u64,
}

impl BootstrapCi {
    /// Whether 0 lies outside `[lower, upper]`.
    pub fn excludes_zero(&self) -> bool {
        self.lower > 0.0 || self.upper < 0.0
    }
}

/// Percentile bootstrap CI of `median(b) - median(a)` (see the module docs).
/// `None` when a side is empty or not all finite, `resamples == 0`, or `alpha`
/// is not in `(0, 1)`.
///
/// Each resample draws `n_a` indices into a, then `n_b` into b, from one
/// `Pcg64::seed_from_u64(opts.seed)`.
pub fn bootstrap_median_diff(a: &[f64], b: &[f64], opts: &BootstrapOptions) -> Option<BootstrapCi> {
    if opts.resamples == 0 || !(opts.alpha > 0.0 && opts.alpha < 1.0) {
        return None;
    }
    let sa = sorted_finite(a)?;
    let sb = sorted_finite(b)?;
    let estimate = quantile(&sb, 0.5)? - quantile(&sa, 0.5)?;
    let mut rng = Pcg64::seed_from_u64(opts.seed);
    let (mut ra, mut rb) = (vec![0.0; sa.len()], vec![0.0; sb.len()]);
    let mut diffs = Vec::with_capacity(opts.resamples);
    for _ in 0..opts.resamples {
        for (src, dst) in [(&sa, &mut ra), (&sb, &mut rb)] {
            for slot in dst.iter_mut() {
                *slot = src[rng.random_range(0..src.len())];
            }
            dst.sort_unstable_by(f64::total_cmp);
        }
        diffs.push(quantile(&rb, 0.5)? - quantile(&ra, 0.5)?);
    }
    diffs.sort_unstable_by(f64::total_cmp);
    Some(BootstrapCi {
        estimate,
        lower: quantile(&diffs, opts.alpha / 2.0)?,
        upper: quantile(&diffs, 1.0 - opts.alpha / 2.0)?,
        confidence: 1.0 - opts.alpha,
        resamples: opts.resamples,
        seed: opts.seed,
    })
}

// ---------------------------------------------------------------------------
// Comparing two reports
// ---------------------------------------------------------------------------

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Lower is better (latency, errors, memory, ...).
    Lower,
    /// Higher is better (throughput, successes, ...).
    Higher,
}

/// Name tokens that make a metric lower-is-better even when a higher-is-better
/// token is present too (`failed_ops`, `ops_dropped`).
const LOWER_TOKENS: &[&str] = &[
    "latency", "lat", "duration", "time", "elapsed", "wait", "error", "errors", "err", "fail",
    "failed", "failure", "failures", "timeout", "timeouts", "drop", "drops", "dropped", "loss",
    "lost", "miss", "misses", "retry", "retries", "panic", "panics", "crash", "crashes", "oom",
    "kill", "kills", "killed", "rejected", "shed",
];

/// Name tokens that make a metric higher-is-better.
const HIGHER_TOKENS: &[&str] = &[
    "throughput",
    "goodput",
    "bandwidth",
    "ops",
    "rps",
    "qps",
    "tps",
    "iops",
    "hit",
    "hits",
    "success",
    "successes",
    "succeeded",
    "completed",
    "score",
    "availability",
    "uptime",
    "speedup",
];

impl Better {
    /// The default direction of a metric from its name: the name is lowercased
    /// and split on every non-alphanumeric character (`latency.p99_ms` ->
    /// `latency`, `p99`, `ms`). If any token is latency/failure-like (`latency`,
    /// `duration`, `time`, `errors`, `failed`, `timeouts`, `dropped`,
    /// `misses`, ... see `LOWER_TOKENS`) it is [`Better::Lower`]; else if any
    /// token is throughput/success-like (`throughput`, `ops`, `rps`, `qps`,
    /// `iops`, `hits`, `success`, `completed`, `score`, ... see
    /// `HIGHER_TOKENS`) it is [`Better::Higher`]; otherwise (memory, cpu,
    /// anything unrecognised) [`Better::Lower`]. Override with
    /// [`CompareOptions::better`].
    pub fn guess(metric: &str) -> Better {
        let lower = metric.to_lowercase();
        let tokens: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|t| !t.is_empty())
            .collect();
        if tokens.iter().any(|t| LOWER_TOKENS.contains(t)) {
            Better::Lower
        } else if tokens.iter().any(|t| HIGHER_TOKENS.contains(t)) {
            Better::Higher
        } else {
            Better::Lower
        }
    }
}

/// Options of [`compare`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompareOptions {
    /// Significance level (family-wise, via Holm) and `1 - confidence` of the
    /// bootstrap CI. Default 0.05. Outside `(0, 1)` there is no CI, so nothing
    /// is significant.
    pub alpha: f64,
    /// Fewer samples than this on either side: "too few samples". Default 3.
    pub min_samples: usize,
    /// Bootstrap resamples per metric. Default 2000. With 0 there is no CI, so
    /// nothing is significant.
    pub resamples: usize,
    /// Base seed; each metric's bootstrap uses a seed derived from it and the
    /// metric name. Default 0.
    pub seed: u64,
    /// Metric name prefix -> direction; the longest matching prefix wins
    /// (a full name is its own prefix). Unmatched names use [`Better::guess`].
    pub better: BTreeMap<String, Better>,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            alpha: 0.05,
            min_samples: 3,
            resamples: 2000,
            seed: 0,
            better: BTreeMap::new(),
        }
    }
}

impl CompareOptions {
    /// The direction of `metric`: the longest prefix in `self.better`, else
    /// [`Better::guess`].
    pub fn better_for(&self, metric: &str) -> Better {
        self.better
            .iter()
            .filter(|(prefix, _)| metric.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, &b)| b)
            .unwrap_or_else(|| Better::guess(metric))
    }

    /// The bootstrap seed of `metric`: `seed` xor the FNV-1a hash of the name.
    pub fn seed_for(&self, metric: &str) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in metric.bytes() {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.seed ^ h
    }
}

/// The outcome for one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Significant change in the good direction.
    Better,
    /// Significant change in the bad direction.
    Worse,
    /// Tested, not significant (absence of evidence, not proof of equality).
    NoSignificantChange,
    /// Fewer than `min_samples` on a side: not tested.
    TooFewSamples,
    /// A NaN or an infinity among the samples: not tested.
    InvalidSamples,
}

impl Verdict {
    /// The label used in [`render_table`].
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::NoSignificantChange => "no significant change",
            Verdict::TooFewSamples => "too few samples",
            Verdict::InvalidSamples => "invalid samples",
        }
    }
}

/// One metric compared between `before` (a) and `after` (b).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricDelta {
    pub metric: String,
    pub better: Better,
    pub n_a: usize,
    pub n_b: usize,
    /// `None` when that side is empty or invalid.
    pub median_a: Option<f64>,
    pub median_b: Option<f64>,
    /// `median_b - median_a`.
    pub delta: Option<f64>,
    /// `100 delta / |median_a|`; `None` when `median_a` is 0 or missing.
    pub delta_pct: Option<f64>,
    /// Raw two-sided Mann-Whitney p (only for tested metrics).
    pub p_value: Option<f64>,
    /// Holm-adjusted p across the tested metrics of the same comparison.
    pub p_adjusted: Option<f64>,
    pub mann_whitney: Option<MannWhitney>,
    pub ci: Option<BootstrapCi>,
    /// See the module docs: `p_adjusted < alpha`, the CI excludes 0, and the
    /// rank-biserial sign agrees with it.
    pub significant: bool,
    pub verdict: Verdict,
}

/// Compares every metric present in both maps (in name order); metrics present
/// on one side only are skipped (see [`unmatched_metrics`] and
/// [`Comparison`]).
pub fn compare(
    a: &BTreeMap<String, Vec<f64>>,
    b: &BTreeMap<String, Vec<f64>>,
    opts: &CompareOptions,
) -> Vec<MetricDelta> {
    let mut deltas: Vec<MetricDelta> = a
        .iter()
        .filter_map(|(name, sa)| b.get(name).map(|sb| compare_one(name, sa, sb, opts)))
        .collect();

    let tested: Vec<usize> = (0..deltas.len())
        .filter(|&i| deltas[i].p_value.is_some())
        .collect();
    let raw: Vec<f64> = tested
        .iter()
        .map(|&i| deltas[i].p_value.expect("tested"))
        .collect();
    for (&i, adj) in tested.iter().zip(holm_adjust(&raw)) {
        let d = &mut deltas[i];
        d.p_adjusted = Some(adj);
        let r = d.mann_whitney.as_ref().expect("tested").rank_biserial;
        // No CI (bad alpha or no resamples): never significant.
        let (ci_excludes_zero, b_larger) =
            d.ci.as_ref()
                .map_or((false, false), |ci| (ci.excludes_zero(), ci.lower > 0.0));
        let agrees = if b_larger { r < 0.0 } else { r > 0.0 };
        d.significant = adj < opts.alpha && ci_excludes_zero && agrees;
        d.verdict = match (d.significant, b_larger == (d.better == Better::Higher)) {
            (false, _) => Verdict::NoSignificantChange,
            (true, true) => Verdict::Better,
            (true, false) => Verdict::Worse,
        };
    }
    deltas
}

/// Everything but the multiple-testing step, for one metric.
fn compare_one(name: &str, sa: &[f64], sb: &[f64], opts: &CompareOptions) -> MetricDelta {
    let (median_a, median_b) = (median(sa), median(sb));
    let delta = median_a.zip(median_b).map(|(ma, mb)| mb - ma);
    let delta_pct = median_a
        .zip(delta)
        .filter(|(ma, _)| *ma != 0.0)
        .map(|(ma, d)| 100.0 * d / ma.abs());
    let mut out = MetricDelta {
        metric: name.to_owned(),
        better: opts.better_for(name),
        n_a: sa.len(),
        n_b: sb.len(),
        median_a,
        median_b,
        delta,
        delta_pct,
        p_value: None,
        p_adjusted: None,
        mann_whitney: None,
        ci: None,
        significant: false,
        verdict: Verdict::TooFewSamples,
    };
    if !all_finite(sa) || !all_finite(sb) {
        out.verdict = Verdict::InvalidSamples;
        return out;
    }
    if sa.len() < opts.min_samples.max(1) || sb.len() < opts.min_samples.max(1) {
        return out;
    }
    let boot = BootstrapOptions {
        resamples: opts.resamples,
        alpha: opts.alpha,
        seed: opts.seed_for(name),
    };
    // Succeeds: both sides are non-empty and finite.
    let Some(mw) = mann_whitney(sa, sb) else {
        return out;
    };
    out.p_value = Some(mw.p_value);
    out.mann_whitney = Some(mw);
    // `None` only for an alpha outside (0, 1) or `resamples == 0`.
    out.ci = bootstrap_median_diff(sa, sb, &boot);
    out.verdict = Verdict::NoSignificantChange;
    out
}

/// Metric names present only in `a` and only in `b`, in name order.
pub fn unmatched_metrics(
    a: &BTreeMap<String, Vec<f64>>,
    b: &BTreeMap<String, Vec<f64>>,
) -> (Vec<String>, Vec<String>) {
    let only = |x: &BTreeMap<String, Vec<f64>>, y: &BTreeMap<String, Vec<f64>>| {
        x.keys().filter(|k| !y.contains_key(*k)).cloned().collect()
    };
    (only(a, b), only(b, a))
}

/// A whole comparison: the per-metric deltas and the metrics present on one
/// side only. This is what `cargo panic compare --json` can print as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub options: CompareOptions,
    pub deltas: Vec<MetricDelta>,
    pub only_before: Vec<String>,
    pub only_after: Vec<String>,
}

impl Comparison {
    pub fn new(
        before: &BTreeMap<String, Vec<f64>>,
        after: &BTreeMap<String, Vec<f64>>,
        opts: &CompareOptions,
    ) -> Comparison {
        let (only_before, only_after) = unmatched_metrics(before, after);
        Comparison {
            options: opts.clone(),
            deltas: compare(before, after, opts),
            only_before,
            only_after,
        }
    }

    /// [`render_table`], then one line per side listing its unmatched metrics.
    pub fn render(&self) -> String {
        let mut out = render_table(&self.deltas);
        for (label, names) in [
            ("only in before", &self.only_before),
            ("only in after", &self.only_after),
        ] {
            if !names.is_empty() {
                let _ = writeln!(out, "{label}: {}", names.join(", "));
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

/// A number for the table: 4 significant digits in plain notation for
/// magnitudes in `[1e-3, 1e6)`, otherwise `{:.3e}`.
fn fmt_num(x: f64) -> String {
    let ax = x.abs();
    if x == 0.0 {
        "0".to_owned()
    } else if !(1e-3..1e6).contains(&ax) {
        format!("{x:.3e}")
    } else {
        let decimals = (3 - ax.log10().floor() as i32).max(0) as usize;
        format!("{x:.decimals$}")
    }
}

fn fmt_pct(p: f64) -> String {
    if p.abs() < 0.05 {
        "0.0%".to_owned()
    } else {
        format!("{p:+.1}%")
    }
}

fn fmt_p(p: f64) -> String {
    if p < 1e-4 {
        "<0.0001".to_owned()
    } else {
        format!("{p:.4}")
    }
}

/// An aligned plain-text table: metric, before (median), after (median),
/// delta %, p (Holm-adjusted), verdict. Metric and verdict are left-aligned,
/// numbers right-aligned; a missing value is `-`. No trailing spaces; ends
/// with a newline. Deterministic: depends only on `deltas`.
pub fn render_table(deltas: &[MetricDelta]) -> String {
    let dash = || "-".to_owned();
    let header = ["metric", "before", "after", "delta %", "p (adj)", "verdict"].map(str::to_owned);
    let mut rows = vec![header];
    for d in deltas {
        rows.push([
            d.metric.clone(),
            d.median_a.map_or_else(dash, fmt_num),
            d.median_b.map_or_else(dash, fmt_num),
            d.delta_pct.map_or_else(dash, fmt_pct),
            d.p_adjusted.map_or_else(dash, fmt_p),
            d.verdict.label().to_owned(),
        ]);
    }
    let mut widths = [0_usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (k, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c > 0 {
                line.push_str("  ");
            }
            let right = (1..=4).contains(&c);
            if right {
                line.push_str(&" ".repeat(pad));
            }
            line.push_str(cell);
            if !right {
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if k == 0 {
            let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(x: f64, y: f64, tol: f64) -> bool {
        (x - y).abs() <= tol * (1.0 + y.abs())
    }

    #[track_caller]
    fn assert_close(x: f64, y: f64, tol: f64) {
        assert!(close(x, y, tol), "{x} != {y} (tol {tol})");
    }

    /// `n` draws of N(mean, sd^2), Box-Muller on a seeded Pcg64.
    fn normals(seed: u64, n: usize, mean: f64, sd: f64) -> Vec<f64> {
        let mut rng = Pcg64::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let u1: f64 = 1.0 - rng.random::<f64>();
                let u2: f64 = rng.random::<f64>();
                mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
            })
            .collect()
    }

    /// U of a by the definition: pairs a > b, ties one half.
    fn pairwise_u(a: &[f64], b: &[f64]) -> f64 {
        let mut u = 0.0;
        for &x in a {
            for &y in b {
                u += if x > y {
                    1.0
                } else if x == y {
                    0.5
                } else {
                    0.0
                };
            }
        }
        u
    }

    /// Every way to split `pooled` into a (`n_a` values) and b, as index masks.
    fn splits(n: usize, n_a: usize) -> impl Iterator<Item = u32> {
        (0u32..(1 << n)).filter(move |m| m.count_ones() as usize == n_a)
    }

    fn split(pooled: &[f64], mask: u32) -> (Vec<f64>, Vec<f64>) {
        let (mut a, mut b) = (vec![], vec![]);
        for (i, &x) in pooled.iter().enumerate() {
            if mask >> i & 1 == 1 {
                a.push(x)
            } else {
                b.push(x)
            }
        }
        (a, b)
    }

    /// The null distribution of U by enumerating all rank assignments.
    fn brute_u_counts(m: usize, n: usize) -> Vec<i128> {
        let ranks: Vec<f64> = (1..=m + n).map(|r| r as f64).collect();
        let mut counts = vec![0_i128; m * n + 1];
        for mask in splits(m + n, m) {
            let (a, b) = split(&ranks, mask);
            counts[pairwise_u(&a, &b) as usize] += 1;
        }
        counts
    }

    /// 2 (1 - Phi(z)) by composite Simpson integration of the normal density
    /// over [z, z + 40]; independent of `erfc`.
    fn simpson_two_sided(z: f64) -> f64 {
        let steps = 400_000;
        let h = 40.0 / steps as f64;
        let pdf = |x: f64| (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let mut s = pdf(z) + pdf(z + 40.0);
        for k in 1..steps {
            s += pdf(z + k as f64 * h) * if k % 2 == 1 { 4.0 } else { 2.0 };
        }
        2.0 * s * h / 3.0
    }

    // --- quantiles and summaries -----------------------------------------

    #[test]
    fn quantile_type7_matches_numpy_default() {
        // numpy.quantile([1, 2, 3, 4], q) (method="linear").
        let x = [1.0, 2.0, 3.0, 4.0];
        for (q, want) in [
            (0.0, 1.0),
            (0.25, 1.75),
            (0.5, 2.5),
            (0.75, 3.25),
            (0.99, 3.97),
            (1.0, 4.0),
        ] {
            assert_close(quantile(&x, q).unwrap(), want, 1e-12);
        }
        // Wikipedia "Percentile", linear interpolation variant C = 1:
        // the 40th percentile of 15, 20, 35, 40, 50 is 29.
        assert_close(
            quantile(&[15.0, 20.0, 35.0, 40.0, 50.0], 0.4).unwrap(),
            29.0,
            1e-12,
        );
        assert_eq!(quantile(&[7.0], 0.0), Some(7.0));
        assert_eq!(quantile(&[7.0], 0.999), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
        for q in [-0.01, 1.01, f64::NAN] {
            assert_eq!(quantile(&x, q), None, "q = {q}");
        }
    }

    #[test]
    fn summary_of_known_sample() {
        // Wikipedia "Standard deviation": mean 5, population sd 2, so the
        // sample sd is sqrt(32 / 7).
        let s = Summary::of(&[9.0, 2.0, 5.0, 4.0, 4.0, 5.0, 4.0, 7.0]).unwrap();
        assert_eq!((s.n, s.min, s.max), (8, 2.0, 9.0));
        assert_close(s.mean, 5.0, 1e-15);
        assert_close(s.stddev.unwrap(), (32.0_f64 / 7.0).sqrt(), 1e-14);
        // Sorted 2 4 4 4 5 5 7 9; h = 7 q.
        assert_close(s.p50, 4.5, 1e-15);
        assert_close(s.p95, 7.0 + 0.65 * 2.0, 1e-12);
        assert_close(s.p99, 7.0 + 0.93 * 2.0, 1e-12);
        assert_close(s.p999, 7.0 + 0.993 * 2.0, 1e-12);

        let one = Summary::of(&[3.5]).unwrap();
        assert_eq!((one.n, one.mean, one.stddev, one.p999), (1, 3.5, None, 3.5));
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[1.0, f64::NAN]), None);
        assert_eq!(Summary::of(&[1.0, f64::INFINITY]), None);
        // No cancellation on a large offset.
        let s = Summary::of(&[1e9 + 1.0, 1e9 + 2.0, 1e9 + 3.0]).unwrap();
        assert_close(s.stddev.unwrap(), 1.0, 1e-9);
    }

    // --- Mann-Whitney: exact distribution ---------------------------------

    #[test]
    fn exact_distribution_matches_enumeration() {
        for m in 1..=7 {
            for n in 1..=7 {
                assert_eq!(
                    u_distribution(m, n),
                    brute_u_counts(m, n),
                    "m = {m}, n = {n}"
                );
            }
        }
    }

    #[test]
    fn exact_distribution_at_the_bound_does_not_overflow() {
        let c = u_distribution(50, 50);
        assert_eq!(c.len(), 2501);
        // C(100, 50).
        assert_eq!(
            c.iter().sum::<i128>(),
            100_891_344_545_564_193_334_812_497_256
        );
        assert!(c.iter().all(|&x| x > 0));
        assert!(
            (0..c.len()).all(|u| c[u] == c[c.len() - 1 - u]),
            "symmetric about mn/2"
        );
        let c = u_distribution(1, 2500);
        assert_eq!(c, vec![1; 2501]);
        // 50 x 50 without ties is exact; 51 x 50 is not.
        let a: Vec<f64> = (0..50).map(|i| 2.0 * i as f64).collect();
        let b: Vec<f64> = (0..50).map(|i| 2.0 * i as f64 + 1.0).collect();
        assert_eq!(mann_whitney(&a, &b).unwrap().method, MwMethod::Exact);
        let a51: Vec<f64> = (0..51).map(|i| 2.0 * i as f64).collect();
        assert_eq!(mann_whitney(&a51, &b).unwrap().method, MwMethod::Normal);
        // Fully separated 50 vs 50: p = 2 / C(100, 50).
        let hi: Vec<f64> = (100..150).map(f64::from).collect();
        let mw = mann_whitney(&a, &hi).unwrap();
        assert_eq!(mw.u, 0.0);
        assert_close(
            mw.p_value,
            2.0 / 100_891_344_545_564_193_334_812_497_256.0,
            1e-12,
        );
    }

    #[test]
    fn exact_p_matches_enumeration_for_every_arrangement() {
        for m in 1..=5 {
            for n in 1..=5 {
                let counts = brute_u_counts(m, n);
                let total: i128 = counts.iter().sum();
                let ranks: Vec<f64> = (1..=m + n).map(|r| r as f64 * 1.5 - 4.0).collect();
                for mask in splits(m + n, m) {
                    let (a, b) = split(&ranks, mask);
                    let u = pairwise_u(&a, &b);
                    let ui = u as usize;
                    let lo: i128 = counts[..=ui].iter().sum();
                    let hi: i128 = counts[ui..].iter().sum();
                    let want = (2.0 * lo.min(hi) as f64 / total as f64).min(1.0);
                    let mw = mann_whitney(&a, &b).unwrap();
                    assert_eq!((mw.method, mw.u), (MwMethod::Exact, u));
                    assert_close(mw.p_value, want, 1e-14);
                }
            }
        }
    }

    #[test]
    fn scipy_documentation_example() {
        // scipy.stats.mannwhitneyu docs: males vs females, U1 = 17,
        // exact p = 0.1111 (= 14 / 126), asymptotic p = 0.11134688653314041.
        let males = [19.0, 22.0, 16.0, 29.0, 24.0];
        let females = [20.0, 11.0, 17.0, 12.0];
        let mw = mann_whitney(&males, &females).unwrap();
        assert_eq!((mw.u, mw.method), (17.0, MwMethod::Exact));
        assert_close(mw.p_value, 14.0 / 126.0, 1e-14);
        assert_close(mw.rank_biserial, 2.0 * 17.0 / 20.0 - 1.0, 1e-15);
        let (z, p) = normal_p(17.0, 5, 4, 0.0);
        assert_close(z, 6.5 / (50.0_f64 / 3.0).sqrt(), 1e-14);
        assert_close(p, 0.11134688653314041, 1e-12);
        assert_close(p, simpson_two_sided(z), 1e-10);
    }

    // --- Mann-Whitney: ties and the normal approximation ------------------

    #[test]
    fn u_matches_the_pairwise_definition_with_ties() {
        let mut rng = Pcg64::seed_from_u64(7);
        for _ in 0..200 {
            let na = rng.random_range(1..15);
            let nb = rng.random_range(1..15);
            let a: Vec<f64> = (0..na).map(|_| rng.random_range(0..6) as f64).collect();
            let b: Vec<f64> = (0..nb).map(|_| rng.random_range(0..6) as f64).collect();
            let mw = mann_whitney(&a, &b).unwrap();
            assert_eq!(mw.u, pairwise_u(&a, &b), "{a:?} {b:?}");
        }
        // -0.0 and 0.0 tie.
        let mw = mann_whitney(&[-0.0, 1.0], &[0.0, 2.0]).unwrap();
        assert!(mw.ties);
        // Pairs: (-0, 0) tie, (1, 0) win: U = 1.5.
        assert_eq!(mw.u, 1.5);
    }

    #[test]
    fn tie_corrected_variance_is_the_permutation_variance() {
        // Pooled samples with ties; enumerate every split into a and b and
        // take the moments of U over them: that is the null distribution given
        // the ties. The tie-corrected formula must give exactly that variance,
        // and the p-value must equal the continuity-corrected normal tail
        // computed from those moments by numerical integration.
        let cases: [(&[f64], usize); 4] = [
            (
                &[1.0, 1.0, 2.0, 3.0, 3.0, 3.0, 4.0, 5.0, 5.0, 6.0, 7.0, 7.0],
                6,
            ),
            (&[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 9.0], 3),
            (&[5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 6.0, 6.0, 6.0, 6.0], 5),
            (
                &[
                    1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 4.0, 4.0, 8.0, 8.0, 9.0, 10.0, 11.0,
                ],
                4,
            ),
        ];
        for (pooled, n_a) in cases {
            let n = pooled.len();
            let us: Vec<f64> = splits(n, n_a)
                .map(|mask| {
                    let (a, b) = split(pooled, mask);
                    pairwise_u(&a, &b)
                })
                .collect();
            let k = us.len() as f64;
            let mean = us.iter().sum::<f64>() / k;
            let var = us.iter().map(|u| (u - mean).powi(2)).sum::<f64>() / k;
            let n_b = n - n_a;
            assert_close(mean, (n_a * n_b) as f64 / 2.0, 1e-12);
            let mut tie_term = 0.0;
            let mut sorted = pooled.to_vec();
            sorted.sort_by(f64::total_cmp);
            for g in sorted.chunk_by(|x, y| x == y) {
                let t = g.len() as f64;
                tie_term += t * t * t - t;
            }
            let (na, nb, nn) = (n_a as f64, n_b as f64, n as f64);
            let formula = na * nb / 12.0 * ((nn + 1.0) - tie_term / (nn * (nn - 1.0)));
            assert_close(formula, var, 1e-12);

            // A few splits: the test's p against the independent computation.
            for mask in splits(n, n_a).step_by(37) {
                let (a, b) = split(pooled, mask);
                let mw = mann_whitney(&a, &b).unwrap();
                assert_eq!(mw.method, MwMethod::Normal);
                let z = ((mw.u - mean).abs() - 0.5).max(0.0) / var.sqrt();
                assert_close(mw.z.unwrap(), z, 1e-12);
                let want = simpson_two_sided(z).min(1.0);
                assert!(
                    (mw.p_value - want).abs() < 1e-10,
                    "{} vs {want}",
                    mw.p_value
                );
            }
        }
    }

    #[test]
    fn normal_approximation_for_large_samples_matches_integration() {
        let a = normals(1, 60, 0.0, 1.0);
        let b = normals(2, 70, 0.4, 1.0);
        let mw = mann_whitney(&a, &b).unwrap();
        assert_eq!(mw.method, MwMethod::Normal);
        assert!(!mw.ties);
        let (na, nb) = (60.0, 70.0);
        let sd = (na * nb * (na + nb + 1.0) / 12.0_f64).sqrt();
        let z = ((pairwise_u(&a, &b) - na * nb / 2.0).abs() - 0.5) / sd;
        assert_close(mw.p_value, simpson_two_sided(z), 1e-10);
    }

    #[test]
    fn exact_and_normal_agree_for_moderate_samples() {
        // 40 x 40 = 1600 pairs: exact; the normal approximation (without ties
        // the formula is the same) must be close.
        for (seed, shift) in [(3, 0.0), (4, 0.3), (5, 0.6), (6, 1.0)] {
            let a = normals(seed, 40, 0.0, 1.0);
            let b = normals(seed + 100, 40, shift, 1.0);
            let mw = mann_whitney(&a, &b).unwrap();
            assert_eq!(mw.method, MwMethod::Exact);
            let (_, p_norm) = normal_p(mw.u, 40, 40, 0.0);
            assert!(
                (mw.p_value - p_norm).abs() < 0.005,
                "{} vs {p_norm}",
                mw.p_value
            );
        }
    }

    #[test]
    fn erfc_known_values() {
        // Reference values of erfc (Abramowitz & Stegun table 7.1 / mpmath).
        for (x, want) in [
            (0.0, 1.0),
            (0.5, 0.4795001221869535),
            (1.0, 0.15729920705028513),
            (2.0, 0.004677734981047266),
            (3.0, 2.209049699858544e-05),
            (5.0, 1.537_459_794_428_035e-12),
            (-1.0, 1.8427007929497148),
        ] {
            assert_close(erfc(x), want, 1e-14);
        }
        // The two branches meet at 2.
        assert_close(erfc(2.0 - 1e-12), erfc(2.0), 1e-10);
        // Phi(1.959963984540054) = 0.975.
        assert_close(
            0.5 * erfc(1.959963984540054 / std::f64::consts::SQRT_2),
            0.025,
            1e-12,
        );
        assert_eq!(erfc(40.0), 0.0);
    }

    #[test]
    fn degenerate_and_invalid_inputs() {
        let mw = mann_whitney(&[3.0; 10], &[3.0; 7]).unwrap();
        assert_eq!(
            (mw.method, mw.p_value, mw.u, mw.rank_biserial),
            (MwMethod::Degenerate, 1.0, 35.0, 0.0)
        );
        let one = mann_whitney(&[1.0], &[2.0]).unwrap();
        assert_eq!((one.method, one.p_value), (MwMethod::Exact, 1.0));
        assert_eq!(mann_whitney(&[], &[1.0]), None);
        assert_eq!(mann_whitney(&[1.0], &[]), None);
        assert_eq!(mann_whitney(&[1.0, f64::NAN], &[1.0]), None);
        assert_eq!(mann_whitney(&[1.0], &[f64::NEG_INFINITY]), None);
    }

    #[test]
    fn identical_samples_are_not_significant() {
        let a = normals(11, 30, 50.0, 5.0);
        let mw = mann_whitney(&a, &a).unwrap();
        assert_eq!(mw.u, 450.0);
        assert_eq!(mw.p_value, 1.0);
        let mut before = BTreeMap::new();
        before.insert("latency_ms".to_owned(), a.clone());
        let d = &compare(&before, &before, &CompareOptions::default())[0];
        assert!(!d.significant);
        assert_eq!(d.verdict, Verdict::NoSignificantChange);
        assert_eq!((d.delta, d.delta_pct), (Some(0.0), Some(0.0)));
    }

    #[test]
    fn swapping_the_samples_mirrors_u_and_keeps_p() {
        let cases: Vec<(Vec<f64>, Vec<f64>)> = vec![
            (
                vec![19.0, 22.0, 16.0, 29.0, 24.0],
                vec![20.0, 11.0, 17.0, 12.0],
            ),
            (normals(21, 12, 0.0, 1.0), normals(22, 9, 0.5, 1.0)),
            (normals(23, 80, 0.0, 1.0), normals(24, 60, 0.2, 1.0)),
            (
                vec![1.0, 1.0, 2.0, 3.0, 3.0],
                vec![2.0, 2.0, 3.0, 4.0, 4.0, 5.0],
            ),
        ];
        for (a, b) in cases {
            let ab = mann_whitney(&a, &b).unwrap();
            let ba = mann_whitney(&b, &a).unwrap();
            assert_eq!(ab.method, ba.method);
            assert_eq!(ab.u + ba.u, (a.len() * b.len()) as f64);
            assert_close(ab.p_value, ba.p_value, 1e-14);
            assert_close(ab.rank_biserial, -ba.rank_biserial, 1e-14);
        }
    }

    #[test]
    fn exact_test_holds_its_level_under_the_null() {
        // 2000 pairs of samples from one distribution: the exact test is
        // conservative (discrete), so the rejection rate at 0.05 must not
        // exceed 0.05 by more than the Monte-Carlo noise (sd ~ 0.005).
        let mut rejections = 0;
        for seed in 0..2000 {
            let a = normals(1000 + seed, 10, 0.0, 1.0);
            let b = normals(9000 + seed, 10, 0.0, 1.0);
            if mann_whitney(&a, &b).unwrap().p_value < 0.05 {
                rejections += 1;
            }
        }
        let rate = rejections as f64 / 2000.0;
        assert!((0.025..=0.06).contains(&rate), "rate {rate}");
    }

    // --- Holm -------------------------------------------------------------

    #[test]
    fn holm_on_known_vectors() {
        // Wikipedia "Holm-Bonferroni method" example: p = 0.01, 0.04, 0.03,
        // 0.005 at alpha 0.05 rejects H1 and H4. Adjusted: 4 x 0.005 = 0.02,
        // 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, max(1 x 0.04, 0.06) = 0.06.
        let adj = holm_adjust(&[0.01, 0.04, 0.03, 0.005]);
        for (x, want) in adj.iter().zip([0.03, 0.06, 0.06, 0.02]) {
            assert_close(*x, want, 1e-15);
        }
        let rejected: Vec<bool> = adj.iter().map(|&p| p < 0.05).collect();
        assert_eq!(rejected, [true, false, false, true]);
        // Capped at 1, monotone.
        assert_eq!(holm_adjust(&[0.5, 0.9]), vec![1.0, 1.0]);
        assert_eq!(holm_adjust(&[0.2]), vec![0.2]);
        assert!(holm_adjust(&[]).is_empty());
        let adj = holm_adjust(&[0.001, 0.001, 0.02, 0.3]);
        for (x, want) in adj.iter().zip([0.004, 0.004, 0.04, 0.3]) {
            assert_close(*x, want, 1e-15);
        }
    }

    // --- bootstrap --------------------------------------------------------

    #[test]
    fn bootstrap_is_deterministic_per_seed() {
        let a = normals(31, 25, 10.0, 2.0);
        let b = normals(32, 30, 11.0, 2.0);
        let opts = BootstrapOptions {
            seed: 42,
            ..BootstrapOptions::default()
        };
        let x = bootstrap_median_diff(&a, &b, &opts).unwrap();
        let y = bootstrap_median_diff(&a, &b, &opts).unwrap();
        assert_eq!(x, y);
        assert_eq!(x.lower.to_bits(), y.lower.to_bits());
        let z = bootstrap_median_diff(
            &a,
            &b,
            &BootstrapOptions {
                seed: 43,
                ..opts.clone()
            },
        )
        .unwrap();
        assert_ne!((x.lower, x.upper), (z.lower, z.upper));
        assert_eq!(x.estimate, median(&b).unwrap() - median(&a).unwrap());
        assert!(x.lower <= x.estimate && x.estimate <= x.upper);
        assert_eq!((x.resamples, x.confidence, x.seed), (2000, 0.95, 42));

        assert_eq!(bootstrap_median_diff(&[], &b, &opts), None);
        assert_eq!(bootstrap_median_diff(&a, &[f64::NAN], &opts), None);
        assert_eq!(
            bootstrap_median_diff(
                &a,
                &b,
                &BootstrapOptions {
                    resamples: 0,
                    ..opts.clone()
                }
            ),
            None
        );
        assert_eq!(
            bootstrap_median_diff(&a, &b, &BootstrapOptions { alpha: 1.0, ..opts }),
            None
        );
    }

    #[test]
    fn bootstrap_ci_contains_the_true_shift() {
        // A clean shifted sample: b is exactly a + 3, so the medians differ
        // by exactly 3 (the bootstrap still resamples the two independently).
        let a = normals(41, 40, 100.0, 1.0);
        let b: Vec<f64> = a.iter().map(|x| x + 3.0).collect();
        let ci = bootstrap_median_diff(&a, &b, &BootstrapOptions::default()).unwrap();
        assert_close(ci.estimate, 3.0, 1e-12);
        assert!(ci.lower < 3.0 && 3.0 < ci.upper && ci.lower > 0.0, "{ci:?}");

        // Coverage over independent draws: N(10, 1) vs N(13, 1), 30 each, 200
        // replications of a 95% interval. The percentile interval of a median
        // is roughly right; accept 85%..100% (binomial sd ~ 1.5%).
        let opts = BootstrapOptions {
            resamples: 500,
            ..BootstrapOptions::default()
        };
        let covered = (0..200)
            .filter(|&r| {
                let a = normals(5000 + r, 30, 10.0, 1.0);
                let b = normals(7000 + r, 30, 13.0, 1.0);
                let ci = bootstrap_median_diff(
                    &a,
                    &b,
                    &BootstrapOptions {
                        seed: r,
                        ..opts.clone()
                    },
                )
                .unwrap();
                ci.lower <= 3.0 && 3.0 <= ci.upper
            })
            .count();
        assert!(covered >= 170, "covered {covered} / 200");
    }

    // --- compare ----------------------------------------------------------

    fn map(entries: &[(&str, Vec<f64>)]) -> BTreeMap<String, Vec<f64>> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn five_sigma_shift_is_significant_in_the_right_direction() {
        let base = normals(51, 20, 100.0, 10.0);
        let shifted = normals(52, 20, 150.0, 10.0);
        let before = map(&[
            ("latency_ms", base.clone()),
            ("throughput_rps", base.clone()),
        ]);
        let after = map(&[
            ("latency_ms", shifted.clone()),
            ("throughput_rps", shifted.clone()),
        ]);
        let opts = CompareOptions::default();
        let deltas = compare(&before, &after, &opts);
        assert_eq!(deltas.len(), 2);
        for d in &deltas {
            let mw = d.mann_whitney.as_ref().unwrap();
            assert_eq!(mw.method, MwMethod::Exact);
            assert!(d.p_value.unwrap() < 1e-6 && d.p_adjusted.unwrap() < 1e-6);
            assert!(d.ci.as_ref().unwrap().lower > 0.0);
            assert!(d.delta.unwrap() > 30.0 && d.delta_pct.unwrap() > 30.0);
            assert!(d.significant);
        }
        assert_eq!(
            (deltas[0].metric.as_str(), deltas[0].verdict),
            ("latency_ms", Verdict::Worse)
        );
        assert_eq!(
            (deltas[1].metric.as_str(), deltas[1].verdict),
            ("throughput_rps", Verdict::Better)
        );
        // The other way round.
        let back = compare(&after, &before, &opts);
        assert_eq!(back[0].verdict, Verdict::Better);
        assert_eq!(back[1].verdict, Verdict::Worse);
        assert!(back[0].ci.as_ref().unwrap().upper < 0.0);
    }

    #[test]
    fn compare_sorts_out_unmatched_small_and_invalid_metrics() {
        let before = map(&[
            ("a_only", vec![1.0, 2.0, 3.0]),
            ("few", vec![1.0, 2.0]),
            ("nan", vec![1.0, f64::NAN, 3.0]),
            ("ok", vec![1.0, 2.0, 3.0, 4.0]),
            ("separated_3v3", vec![1.0, 2.0, 3.0]),
            ("zero_base", vec![0.0, 0.0, 0.0]),
        ]);
        let after = map(&[
            ("b_only", vec![1.0]),
            ("few", vec![5.0, 6.0, 7.0]),
            ("nan", vec![1.0, 2.0, 3.0]),
            ("ok", vec![1.5, 2.5, 3.5, 4.5]),
            ("separated_3v3", vec![10.0, 11.0, 12.0]),
            ("zero_base", vec![1.0, 1.0, 1.0]),
        ]);
        let opts = CompareOptions::default();
        let c = Comparison::new(&before, &after, &opts);
        assert_eq!(
            (c.only_before.clone(), c.only_after.clone()),
            (vec!["a_only".to_owned()], vec!["b_only".to_owned()])
        );
        let names: Vec<&str> = c.deltas.iter().map(|d| d.metric.as_str()).collect();
        assert_eq!(names, ["few", "nan", "ok", "separated_3v3", "zero_base"]);
        let get = |name: &str| c.deltas.iter().find(|d| d.metric == name).unwrap();

        let few = get("few");
        assert_eq!(
            (few.verdict, few.p_value, few.significant),
            (Verdict::TooFewSamples, None, false)
        );
        assert_eq!(
            (few.median_a, few.median_b, few.delta),
            (Some(1.5), Some(6.0), Some(4.5))
        );
        let nan = get("nan");
        assert_eq!(
            (nan.verdict, nan.median_a, nan.delta),
            (Verdict::InvalidSamples, None, None)
        );
        // 3 vs 3 fully separated: the smallest exact p, 2 / C(6, 3) = 0.1.
        let sep = get("separated_3v3");
        assert_close(sep.p_value.unwrap(), 0.1, 1e-15);
        assert_eq!(sep.verdict, Verdict::NoSignificantChange);
        assert_eq!(get("zero_base").delta_pct, None);
        assert_eq!(get("ok").delta_pct, Some(20.0));

        // Holm over the tested metrics only.
        let tested: Vec<&MetricDelta> = c.deltas.iter().filter(|d| d.p_value.is_some()).collect();
        assert_eq!(tested.len(), 3);
        let raw: Vec<f64> = tested.iter().map(|d| d.p_value.unwrap()).collect();
        let adj: Vec<f64> = tested.iter().map(|d| d.p_adjusted.unwrap()).collect();
        assert_eq!(adj, holm_adjust(&raw));
        assert!(
            c.deltas
                .iter()
                .filter(|d| d.p_value.is_none())
                .all(|d| d.p_adjusted.is_none())
        );

        // JSON round trip (no NaN anywhere, so it is lossless).
        let json = serde_json::to_string(&c).unwrap();
        let back: Comparison = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn holm_can_turn_a_raw_significance_off() {
        // Four metrics with the same moderate shift: 6 vs 6 with U = 3, exact
        // p = 2 x 7 / 924 = 0.01515 < 0.05, but Holm makes it 4 p = 0.0606.
        let a = vec![10.0, 11.0, 12.0, 13.0, 14.0, 15.0];
        let b: Vec<f64> = a.iter().map(|x| x + 3.5).collect();
        let names = ["m1", "m2", "m3", "m4"];
        let before = map(&names.map(|n| (n, a.clone())));
        let after = map(&names.map(|n| (n, b.clone())));
        let deltas = compare(&before, &after, &CompareOptions::default());
        for d in &deltas {
            let (raw, adj) = (d.p_value.unwrap(), d.p_adjusted.unwrap());
            assert_close(raw, 14.0 / 924.0, 1e-14);
            assert!(raw < 0.05 && adj >= 0.05, "{raw} {adj}");
            assert_close(adj, (4.0 * raw).min(1.0), 1e-15);
            assert_eq!(d.verdict, Verdict::NoSignificantChange);
        }
    }

    #[test]
    fn without_a_ci_nothing_is_significant() {
        let before = map(&[("latency_ms", normals(61, 20, 100.0, 10.0))]);
        let after = map(&[("latency_ms", normals(62, 20, 150.0, 10.0))]);
        for opts in [
            CompareOptions {
                resamples: 0,
                ..CompareOptions::default()
            },
            CompareOptions {
                alpha: 1.5,
                ..CompareOptions::default()
            },
        ] {
            let d = &compare(&before, &after, &opts)[0];
            assert!(d.p_value.unwrap() < 1e-6 && d.ci.is_none());
            assert_eq!(
                (d.significant, d.verdict),
                (false, Verdict::NoSignificantChange)
            );
        }
    }

    #[test]
    fn direction_guess_and_prefix_overrides() {
        for (name, want) in [
            ("latency_ms", Better::Lower),
            ("site.p99_latency_us", Better::Lower),
            ("rss_bytes", Better::Lower),
            ("cpu", Better::Lower),
            ("throughput", Better::Higher),
            ("net.ops_per_sec", Better::Higher),
            ("failed_ops", Better::Lower),
            ("cache.hit_rate", Better::Higher),
            ("cache.miss_rate", Better::Lower),
            ("Requests.Completed", Better::Higher),
            ("unknown_thing", Better::Lower),
        ] {
            assert_eq!(Better::guess(name), want, "{name}");
        }
        let mut opts = CompareOptions::default();
        opts.better.insert("mem".to_owned(), Better::Higher);
        opts.better.insert("mem.rss".to_owned(), Better::Lower);
        assert_eq!(opts.better_for("mem.free_bytes"), Better::Higher);
        assert_eq!(opts.better_for("mem.rss_peak"), Better::Lower);
        assert_eq!(opts.better_for("latency"), Better::Lower);
        assert_ne!(opts.seed_for("a"), opts.seed_for("b"));
    }

    #[test]
    fn render_table_is_aligned_and_deterministic() {
        let delta = |metric: &str,
                     ma: Option<f64>,
                     mb: Option<f64>,
                     pct: Option<f64>,
                     padj: Option<f64>,
                     verdict| MetricDelta {
            metric: metric.to_owned(),
            better: Better::Lower,
            n_a: 10,
            n_b: 10,
            median_a: ma,
            median_b: mb,
            delta: None,
            delta_pct: pct,
            p_value: padj,
            p_adjusted: padj,
            mann_whitney: None,
            ci: None,
            significant: matches!(verdict, Verdict::Better | Verdict::Worse),
            verdict,
        };
        let deltas = vec![
            delta(
                "latency.p99_ms",
                Some(12.3),
                Some(15.1),
                Some(22.764),
                Some(0.00123),
                Verdict::Worse,
            ),
            delta(
                "throughput_rps",
                Some(15234.0),
                Some(15100.0),
                Some(-0.8796),
                Some(0.41),
                Verdict::NoSignificantChange,
            ),
            delta(
                "rss",
                Some(0.0),
                Some(2.5e7),
                None,
                Some(3e-9),
                Verdict::Better,
            ),
            delta(
                "x",
                Some(0.000123),
                None,
                None,
                None,
                Verdict::TooFewSamples,
            ),
        ];
        let want = "\
metric            before    after  delta %  p (adj)  verdict
--------------------------------------------------------------------------
latency.p99_ms     12.30    15.10   +22.8%   0.0012  worse
throughput_rps     15234    15100    -0.9%   0.4100  no significant change
rss                    0  2.500e7        -  <0.0001  better
x               1.230e-4        -        -        -  too few samples
";
        let got = render_table(&deltas);
        assert_eq!(got, want, "\n{got}");
        assert_eq!(render_table(&deltas), got);
        assert_eq!(
            render_table(&[]),
            "metric  before  after  delta %  p (adj)  verdict\n------------------------------------------------\n"
        );
    }
}
