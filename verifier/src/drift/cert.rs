//! From a numeric candidate to an exact certificate: rational `P` and `ε`,
//! and a witness that `M = (1−ε)P − AᵀPA` is positive semidefinite,
//! confirmed here in exact integer arithmetic before z3 is asked.
//!
//! The witness: `M = Σ_v l_v l_vᵀ + Σ_k E_k` where the `l_v` are a
//! Cholesky factor of `W M W − δI` (`W = diag(2^e_i)` balancing the
//! diagonal) rounded to multiples of `2^-r` and scaled back by `W⁻¹`, each
//! column inside one set of the cover, and each `E_k` (supported in set `k`)
//! has `W E_k W` diagonally dominant with a non-negative diagonal. Gram
//! matrices and such matrices are PSD (Gershgorin), hence so is `M`. The
//! residual `E = M − Σ l_v l_vᵀ ≈ δ W⁻²` is what the margin `δ` pays for.

use std::collections::{BTreeMap, BTreeSet};

use num_bigint::BigInt;
use num_traits::{One, Signed, Zero};

use super::cover::CoverPlan;
use super::dense::{self, Mat};
use super::exact::{self, Q};
use super::search::Candidate;

/// A checked decomposition `M = Σ_v l_v l_vᵀ + Σ_k E_k`.
#[derive(Clone, Debug)]
pub(crate) struct PsdWitness {
    /// `l_v = entries · 2^-bits`, one per eliminated vertex `v`.
    pub columns: Vec<(usize, Vec<(usize, BigInt)>)>,
    pub bits: u32,
    /// `E_k`: entries `(i, j)` with `i <= j`, per set of the plan.
    pub residual: Vec<BTreeMap<(usize, usize), Q>>,
    /// Which set checks the identity at pair `(i, j)`, `i <= j`.
    pub pair_set: BTreeMap<(usize, usize), usize>,
    /// `w_i = 2^weights[i]`: each `E_k` satisfies `w_i E_ii >= Σ_j w_j
    /// |E_ij|` (`W E_k W` diagonally dominant).
    pub weights: Vec<i32>,
    /// Whether the `E_k` are strictly dominant (so the matrix is definite).
    pub strict: bool,
}

/// An exactly checked certificate.
#[derive(Clone, Debug)]
pub(crate) struct ExactCert {
    pub diagonal: bool,
    /// Symmetric, rational.
    pub p: Vec<Vec<Q>>,
    pub eps: Q,
    /// Witness for `(1−ε)P − AᵀPA ⪰ 0` over `plan`.
    pub decrease: PsdWitness,
    /// Witness for `P ≻ 0` (full `P` only; a diagonal `P` has a positive
    /// diagonal).
    pub positivity: Option<PsdWitness>,
    pub plan: CoverPlan,
}

/// Why no exact certificate came out of a candidate.
#[derive(Clone, Debug)]
pub(crate) enum CertFailure {
    /// The cover's elimination order created fill (or a pair outside the
    /// cover): retry without decomposition.
    Cover(String),
    /// No margin was left, or the requested `ε` is too large.
    Margin(String),
}

/// A symmetric matrix as integer numerators over one denominator, on a set
/// of pairs `(i, j)`, `i <= j`; missing pairs are zero.
struct ScaledSym {
    num: BTreeMap<(usize, usize), BigInt>,
    den: BigInt,
}

impl ScaledSym {
    fn to_dense(&self, n: usize) -> Mat {
        let mut m = dense::zeros(n, n);
        for (&(i, j), v) in &self.num {
            let x = exact::to_f64(&Q::new(v.clone(), self.den.clone()));
            m[i][j] = x;
            m[j][i] = x;
        }
        m
    }
}

/// Non-zero pattern of `A`, by rows.
pub(crate) fn row_supports(a: &[Vec<Q>]) -> Vec<Vec<usize>> {
    a.iter()
        .map(|r| (0..r.len()).filter(|&j| !r[j].is_zero()).collect())
        .collect()
}

/// Pairs `(i, j)`, `i < j`, at which `(1−ε)P − AᵀPA` can be non-zero for a
/// diagonal `P`.
pub(crate) fn diagonal_pattern(a: &[Vec<Q>]) -> BTreeSet<(usize, usize)> {
    let mut out = BTreeSet::new();
    for s in row_supports(a) {
        for (x, &i) in s.iter().enumerate() {
            for &j in &s[x + 1..] {
                out.insert((i, j));
            }
        }
    }
    out
}

/// Builds and exactly checks a certificate for `cand`.
pub(crate) fn build(
    a: &[Vec<Q>],
    cand: &Candidate,
    eps_requested: Option<&Q>,
    plan: &CoverPlan,
) -> Result<ExactCert, CertFailure> {
    let n = a.len();
    let (p, p_num, p_bits) = rationalise_p(cand);
    let p_f: Mat = p
        .iter()
        .map(|r| r.iter().map(exact::to_f64).collect())
        .collect();
    let positivity = if cand.diagonal {
        None
    } else {
        let mut num = BTreeMap::new();
        for i in 0..n {
            for j in i..n {
                num.insert((i, j), p_num[i][j].clone());
            }
        }
        let sym = ScaledSym {
            num,
            den: exact::pow2(p_bits),
        };
        let single = CoverPlan::single(n, String::new());
        Some(psd_witness(&sym, n, &single, true).map_err(|e| match e {
            CertFailure::Cover(s) | CertFailure::Margin(s) => CertFailure::Margin(s),
        })?)
    };
    // The contraction factor of the rounded P, measured by Cholesky (a
    // reliable definiteness test), not by the search's power iterations.
    let a_f: Mat = a
        .iter()
        .map(|r| r.iter().map(exact::to_f64).collect())
        .collect();
    let Some(gamma) = contraction(&a_f, &p_f) else {
        return Err(CertFailure::Margin(format!(
            "the rounded {} Lyapunov matrix does not make V decrease in f64",
            if cand.diagonal { "diagonal" } else { "full" }
        )));
    };
    let eps_list: Vec<Q> = match eps_requested {
        Some(e) => vec![e.clone()],
        None => [0.75, 0.5, 0.25, 0.05]
            .iter()
            .filter_map(|f| dyadic_floor(f * (1.0 - gamma)))
            .collect(),
    };
    if eps_list.is_empty() {
        return Err(CertFailure::Margin(format!(
            "the best Lyapunov function found contracts V by a factor {gamma:.6} per step, which leaves no margin"
        )));
    }
    let mut last = String::new();
    for eps in eps_list {
        if 1.0 - exact::to_f64(&eps) <= gamma {
            last = format!(
                "ε = {} is not provable: the best Lyapunov function found only contracts V by a factor {gamma:.6} per step (ε < {:.6})",
                exact::to_f64(&eps),
                1.0 - gamma
            );
            continue;
        }
        let m = decrease_matrix(a, &p_num, p_bits, &eps, cand.diagonal);
        match psd_witness(&m, n, plan, false) {
            Ok(decrease) => {
                return Ok(ExactCert {
                    diagonal: cand.diagonal,
                    p,
                    eps,
                    decrease,
                    positivity,
                    plan: plan.clone(),
                });
            }
            Err(CertFailure::Cover(s)) => return Err(CertFailure::Cover(s)),
            Err(CertFailure::Margin(s)) => last = s,
        }
    }
    Err(CertFailure::Margin(last))
}

/// `P` rounded to multiples of `2^-bits` (after scaling its largest entry
/// to 1), as numerators and as rationals.
pub(crate) fn rationalise_p(cand: &Candidate) -> (Vec<Vec<Q>>, Vec<Vec<BigInt>>, u32) {
    let n = cand.p.len();
    let top = cand.p.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    let bits = if cand.diagonal {
        let small = (0..n).map(|i| cand.p[i][i] / top).fold(1.0f64, f64::min);
        let extra = (-small.log2()).ceil().clamp(0.0, 900.0) as u32;
        30 + extra
    } else {
        40
    };
    let mut num = vec![vec![BigInt::zero(); n]; n];
    for i in 0..n {
        for j in 0..n {
            if cand.diagonal && i != j {
                continue;
            }
            let v = if i <= j { cand.p[i][j] } else { cand.p[j][i] };
            num[i][j] = exact::round_scaled(v / top, bits);
        }
        if cand.diagonal && num[i][i] < BigInt::one() {
            num[i][i] = BigInt::one();
        }
    }
    let den = exact::pow2(bits);
    let p = num
        .iter()
        .map(|r| r.iter().map(|x| Q::new(x.clone(), den.clone())).collect())
        .collect();
    (p, num, bits)
}

/// The largest `k / 2^t` below `x` with 8 significant bits, if `x > 0`.
fn dyadic_floor(x: f64) -> Option<Q> {
    if !x.is_finite() || x <= 1e-300 {
        return None;
    }
    let t = (8.0 - x.log2().floor()).max(0.0) as u32;
    let k = (x * f64::powi(2.0, t as i32)).floor();
    if k < 1.0 {
        return None;
    }
    let k = Q::from_float(k)?.to_integer();
    Some(Q::new(k, exact::pow2(t)))
}

/// `M = (1−ε)P − AᵀPA` exactly, on the pairs where it can be non-zero.
fn decrease_matrix(
    a: &[Vec<Q>],
    p_num: &[Vec<BigInt>],
    p_bits: u32,
    eps: &Q,
    diagonal: bool,
) -> ScaledSym {
    let n = a.len();
    let d_a = exact::common_denominator(a.iter().flatten());
    let ah: Vec<Vec<BigInt>> = a
        .iter()
        .map(|r| r.iter().map(|q| exact::scale_to_int(q, &d_a)).collect())
        .collect();
    let one_minus = Q::one() - eps;
    let (e_num, d_e) = (one_minus.numer().clone(), one_minus.denom().clone());
    let d_a2 = &d_a * &d_a;
    let lead = &e_num * &d_a2;
    let mut num: BTreeMap<(usize, usize), BigInt> = BTreeMap::new();
    if diagonal {
        for (i, row) in p_num.iter().enumerate() {
            num.insert((i, i), &lead * &row[i]);
        }
        for (k, s) in row_supports(a).iter().enumerate() {
            for (x, &i) in s.iter().enumerate() {
                let aki_pk = &ah[k][i] * &p_num[k][k];
                for &j in &s[x..] {
                    let t = &aki_pk * &ah[k][j] * &d_e;
                    *num.entry((i, j)).or_insert_with(BigInt::zero) -= t;
                }
            }
        }
    } else {
        // W = P̂ Â, then M = lead·P̂ − d_e Âᵀ W.
        let w: Vec<Vec<BigInt>> = (0..n)
            .map(|k| {
                (0..n)
                    .map(|j| {
                        let mut s = BigInt::zero();
                        for l in 0..n {
                            if !p_num[k][l].is_zero() && !ah[l][j].is_zero() {
                                s += &p_num[k][l] * &ah[l][j];
                            }
                        }
                        s
                    })
                    .collect()
            })
            .collect();
        for i in 0..n {
            for j in i..n {
                let mut s = BigInt::zero();
                for k in 0..n {
                    if !ah[k][i].is_zero() {
                        s += &ah[k][i] * &w[k][j];
                    }
                }
                num.insert((i, j), &lead * &p_num[i][j] - &d_e * s);
            }
        }
    }
    ScaledSym {
        num,
        den: d_e * exact::pow2(p_bits) * d_a2,
    }
}

/// `2^k` as a rational, for any sign of `k`.
pub(crate) fn pow2_q(k: i32) -> Q {
    if k >= 0 {
        Q::from_integer(exact::pow2(k.unsigned_abs()))
    } else {
        Q::new(BigInt::one(), exact::pow2(k.unsigned_abs()))
    }
}

/// `W = diag(2^e_i)` with `e_i ≈ −log2(m_ii)/2`, so `W m W` has a diagonal
/// near 1.
fn balance(m: &[Vec<f64>]) -> Vec<i32> {
    m.iter()
        .enumerate()
        .map(|(i, r)| {
            let d = r[i];
            if d > 0.0 && d.is_finite() {
                (-0.5 * d.log2()).round().clamp(-480.0, 480.0) as i32
            } else {
                0
            }
        })
        .collect()
}

fn scaled(m: &[Vec<f64>], e: &[i32]) -> Mat {
    let w: Vec<f64> = e.iter().map(|&k| f64::powi(2.0, k)).collect();
    m.iter()
        .enumerate()
        .map(|(i, r)| r.iter().enumerate().map(|(j, v)| w[i] * w[j] * v).collect())
        .collect()
}

/// The smallest `γ` with `AᵀPA ⪯ γ P`, to about 1e-9, by bisection on
/// whether `W (γ P − AᵀPA) W` has a Cholesky factor; `None` if not even
/// `γ = 1` works.
fn contraction(a: &[Vec<f64>], p: &[Vec<f64>]) -> Option<f64> {
    let c = dense::mat_mul(&dense::mat_mul(&dense::transpose(a), p), a);
    let e = balance(p);
    let feasible = |g: f64| {
        let m: Mat = p
            .iter()
            .zip(&c)
            .map(|(pr, cr)| pr.iter().zip(cr).map(|(x, y)| g * x - y).collect())
            .collect();
        dense::cholesky(&scaled(&m, &e)).is_some()
    };
    let (mut lo, mut hi) = (0.0, 1.0 - 1e-12);
    if !feasible(hi) {
        return None;
    }
    if feasible(lo) {
        return Some(0.0);
    }
    while hi - lo > 1e-9 {
        let mid = 0.5 * (lo + hi);
        if feasible(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// Rounded Cholesky of `W M W − δI` (`W = diag(2^e_i)` balancing the
/// diagonal) in the plan's elimination order, the exact residual, and its
/// split into pieces per set that are diagonally dominant after the same
/// scaling: `w_i E_ii >= Σ_j w_j |E_ij|`, i.e. `W E W` dominant, hence
/// `E ⪰ 0`. The margin `δ` is half the largest shift that still has a
/// Cholesky factor (found by bisection), then smaller if rounding needs it.
fn psd_witness(
    m: &ScaledSym,
    n: usize,
    plan: &CoverPlan,
    strict: bool,
) -> Result<PsdWitness, CertFailure> {
    let md = m.to_dense(n);
    let e = balance(&md);
    let mt = scaled(&md, &e);
    let permuted_minus = |delta: f64| -> Mat {
        (0..n)
            .map(|s| {
                (0..n)
                    .map(|t| mt[plan.order[s]][plan.order[t]] - if s == t { delta } else { 0.0 })
                    .collect()
            })
            .collect()
    };
    // The scaled diagonal is about 1: below 1e-13, f64 cannot tell.
    let (mut lo, mut hi) = (1e-13, 2.0);
    if dense::cholesky(&permuted_minus(lo)).is_none() {
        return Err(CertFailure::Margin(
            "the decrease matrix is not positive definite in f64 (no margin left)".into(),
        ));
    }
    for _ in 0..60 {
        let mid = (lo * hi).sqrt();
        if dense::cholesky(&permuted_minus(mid)).is_some() {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi / lo < 1.01 {
            break;
        }
    }
    let mut delta = 0.5 * lo;
    let pos = plan.positions();
    let mut last = String::from("no attempt");
    for _ in 0..6 {
        if delta < 1e-13 {
            last = format!("the margin δ = {delta:.3e} is below f64 resolution");
            break;
        }
        let Some(l) = dense::cholesky(&permuted_minus(delta)) else {
            last = format!("W M W − δI is not positive definite in f64 (δ = {delta:.3e})");
            delta *= 0.25;
            continue;
        };
        let lmax = l
            .iter()
            .flatten()
            .fold(0.0f64, |m, v| m.max(v.abs()))
            .max(f64::MIN_POSITIVE);
        let need = (8.0 * (n * n) as f64 * lmax / delta)
            .log2()
            .ceil()
            .max(20.0) as u32;
        for bits in [need, need + 16, need + 40] {
            match try_round(m, n, plan, &pos, &l, bits, &e, strict) {
                Ok(w) => return Ok(w),
                Err(CertFailure::Cover(s)) => return Err(CertFailure::Cover(s)),
                Err(CertFailure::Margin(s)) => last = s,
            }
        }
        delta *= 0.25;
    }
    Err(CertFailure::Margin(format!(
        "could not round the PSD witness exactly: {last}"
    )))
}

#[expect(clippy::too_many_arguments, reason = "one private step of psd_witness")]
fn try_round(
    m: &ScaledSym,
    n: usize,
    plan: &CoverPlan,
    pos: &[usize],
    l: &Mat,
    r: u32,
    e: &[i32],
    strict: bool,
) -> Result<PsdWitness, CertFailure> {
    // Factor entries of the unscaled matrix: round(L̃·2^r) · 2^(−e_i − r),
    // all over the common denominator 2^bits.
    let e_max = e.iter().copied().max().unwrap_or(0);
    let e_min = e.iter().copied().min().unwrap_or(0);
    let bits = u32::try_from((i64::from(r) + i64::from(e_max)).max(0)).unwrap_or(0);
    let mut columns: Vec<(usize, Vec<(usize, BigInt)>)> = Vec::with_capacity(n);
    for t in 0..n {
        let v = plan.order[t];
        let set = &plan.sets[plan.owner[v]];
        let mut entries = Vec::new();
        for s in t..n {
            let x = l[s][t];
            if x == 0.0 {
                continue;
            }
            let i = plan.order[s];
            if set.binary_search(&i).is_err() {
                return Err(CertFailure::Cover(format!(
                    "eliminating resource {v} fills in an entry with resource {i} outside its clique"
                )));
            }
            let rounded = exact::round_scaled(x, r);
            if !rounded.is_zero() {
                let up = i64::from(bits) - i64::from(r) - i64::from(e[i]);
                entries.push((i, rounded << u32::try_from(up).unwrap_or(0)));
            }
        }
        columns.push((v, entries));
    }
    // E·den·2^(2 bits) = M_num·2^(2 bits) − den·Σ l̂ l̂ᵀ, on every pair that
    // M or a column touches.
    let shift = exact::pow2(2 * bits);
    let mut ent: BTreeMap<(usize, usize), BigInt> =
        m.num.iter().map(|(&k, v)| (k, v * &shift)).collect();
    for (_, entries) in &columns {
        for (x, (i, li)) in entries.iter().enumerate() {
            for (j, lj) in &entries[x..] {
                let key = if i <= j { (*i, *j) } else { (*j, *i) };
                *ent.entry(key).or_insert_with(BigInt::zero) -= &m.den * li * lj;
            }
        }
    }
    let den = &m.den * &shift;
    // Assign pairs to sets; every pair must lie in its set.
    let mut pair_set = BTreeMap::new();
    for &(i, j) in ent.keys() {
        let k = plan.pair_set(pos, i, j);
        if plan.sets[k].binary_search(&i).is_err() || plan.sets[k].binary_search(&j).is_err() {
            return Err(CertFailure::Cover(format!(
                "resources {i} and {j} are coupled but share no set of the cover"
            )));
        }
        pair_set.insert((i, j), k);
    }
    // Scaled row dominance, in integers: w_i / 2^e_min = 2^(e_i − e_min).
    let wi = |i: usize| exact::pow2(u32::try_from(e[i] - e_min).unwrap_or(0));
    let mut off = vec![BigInt::zero(); n];
    for (&(i, j), v) in &ent {
        if i != j {
            off[i] += v.abs() * wi(j);
            off[j] += v.abs() * wi(i);
        }
    }
    for i in 0..n {
        let d = ent.get(&(i, i)).cloned().unwrap_or_default() * wi(i);
        let ok = if strict { d > off[i] } else { d >= off[i] };
        if !ok {
            return Err(CertFailure::Margin(format!(
                "the rounded residual is not diagonally dominant in row {i} at {r} bits"
            )));
        }
    }
    // Split E: off-diagonal entries go to their pair's set; a vertex's
    // diagonal gives each non-owner set exactly the (scaled) row sum it
    // needs there, and the owner the rest.
    let sets = plan.sets.len();
    let mut residual: Vec<BTreeMap<(usize, usize), Q>> = vec![BTreeMap::new(); sets];
    let mut need: Vec<BTreeMap<usize, BigInt>> = vec![BTreeMap::new(); sets];
    for (&(i, j), v) in &ent {
        if i == j {
            continue;
        }
        let k = pair_set[&(i, j)];
        residual[k].insert((i, j), Q::new(v.clone(), den.clone()));
        *need[k].entry(i).or_insert_with(BigInt::zero) += v.abs() * wi(j);
        *need[k].entry(j).or_insert_with(BigInt::zero) += v.abs() * wi(i);
    }
    for i in 0..n {
        let own = plan.owner[i];
        let mut rest = Q::new(ent.get(&(i, i)).cloned().unwrap_or_default(), den.clone());
        for k in 0..sets {
            if k == own {
                continue;
            }
            if let Some(x) = need[k].get(&i) {
                let share = Q::new(x.clone(), &den * wi(i));
                rest -= &share;
                residual[k].insert((i, i), share);
            }
        }
        residual[own].insert((i, i), rest);
    }
    Ok(PsdWitness {
        columns,
        bits,
        residual,
        pair_set,
        weights: e.to_vec(),
        strict,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(n: i64, d: i64) -> Q {
        Q::new(n.into(), d.into())
    }

    #[test]
    fn dyadic_floor_stays_below() {
        for x in [0.3, 1e-5, 0.999, 0.75] {
            let d = dyadic_floor(x).unwrap();
            assert!(
                exact::to_f64(&d) <= x && exact::to_f64(&d) > 0.99 * x,
                "{x}"
            );
        }
        assert!(dyadic_floor(0.0).is_none());
    }

    #[test]
    fn a_scalar_certificate_is_exact() {
        // A = 1 − a K = 1 − 0.5·1.2 = 0.4.
        let a = vec![vec![q(2, 5)]];
        let cand = Candidate {
            p: vec![vec![1.0]],
            diagonal: true,
            gamma: 0.16,
        };
        let plan = CoverPlan::single(1, String::new());
        let c = build(&a, &cand, None, &plan).unwrap();
        // M = (1 − ε) − 0.16 must equal l² + E with E >= 0.
        let m = Q::one() - &c.eps - q(4, 25);
        let l: Q = c.decrease.columns[0]
            .1
            .iter()
            .map(|(_, x)| Q::new(x * x, exact::pow2(2 * c.decrease.bits)))
            .sum();
        let e = c.decrease.residual[0][&(0, 0)].clone();
        assert_eq!(l + &e, m * &c.p[0][0]);
        assert!(!e.is_negative());
        // A requested ε beyond the contraction is refused.
        let too_big = q(9, 10);
        assert!(matches!(
            build(&a, &cand, Some(&too_big), &plan),
            Err(CertFailure::Margin(_))
        ));
    }
}
