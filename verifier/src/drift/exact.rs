//! Exact rational arithmetic: reading `f64`s as rationals, an exact linear
//! solve (fraction-free Bareiss), and the exact equilibrium as the solution of
//! a linear complementarity problem.
//!
//! Nothing here rounds: every function either returns an exact answer or
//! `None`.

use num_bigint::BigInt;
use num_integer::Integer;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};

/// A rational number.
pub(crate) type Q = BigRational;

/// The rational a controller file means by `x`: the shortest decimal that
/// reads back as the same `f64` (Rust's `{:e}` formatting), so `0.1` is
/// exactly `1/10`, not the binary double nearest to it.
pub(crate) fn exact_decimal(x: f64) -> Q {
    debug_assert!(x.is_finite());
    let s = format!("{x:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: BigInt = format!("{int}{frac}").parse().unwrap_or_default();
    let exp = exp - i64::try_from(frac.len()).unwrap_or(0);
    let ten = BigInt::from(10u8);
    let mut q = if exp >= 0 {
        Q::from_integer(digits * num_traits::pow(ten, usize::try_from(exp).unwrap_or(0)))
    } else {
        Q::new(
            digits,
            num_traits::pow(ten, usize::try_from(-exp).unwrap_or(0)),
        )
    };
    if neg {
        q = -q;
    }
    q
}

/// The exact binary value of a finite `f64` (for points the verifier itself
/// computed in floating point).
pub(crate) fn exact_binary(x: f64) -> Q {
    Q::from_float(x).unwrap_or_else(Q::zero)
}

/// Nearest `f64` (saturating).
pub(crate) fn to_f64(q: &Q) -> f64 {
    q.to_f64().unwrap_or_else(|| {
        // num-rational gives up on huge numerators and denominators; scale.
        let shift = q.numer().bits().max(q.denom().bits()).saturating_sub(1000);
        let n = (q.numer() >> shift).to_f64().unwrap_or(f64::NAN);
        let d = (q.denom() >> shift).to_f64().unwrap_or(f64::NAN);
        n / d
    })
}

/// `"n/d"`, or `"n"` for an integer.
pub(crate) fn q_string(q: &Q) -> String {
    q.to_string()
}

/// `x` rounded to the nearest multiple of `2^-bits`, as an integer numerator.
pub(crate) fn round_scaled(x: f64, bits: u32) -> BigInt {
    let scaled = x * f64::powi(2.0, i32::try_from(bits).unwrap_or(i32::MAX));
    if scaled.is_finite() {
        // `from_float` is exact for finite doubles; round half away from zero.
        let r = scaled.round();
        Q::from_float(r).map(|q| q.to_integer()).unwrap_or_default()
    } else {
        BigInt::zero()
    }
}

/// `2^k` as a `BigInt`.
pub(crate) fn pow2(k: u32) -> BigInt {
    BigInt::one() << k
}

/// Least common multiple of the denominators.
pub(crate) fn common_denominator<'a>(qs: impl IntoIterator<Item = &'a Q>) -> BigInt {
    qs.into_iter()
        .fold(BigInt::one(), |acc, q| acc.lcm(q.denom()))
}

/// `q * d` as an integer; `d` must be a multiple of `q`'s denominator.
pub(crate) fn scale_to_int(q: &Q, d: &BigInt) -> BigInt {
    let (quot, rem) = (q.numer() * d).div_rem(q.denom());
    debug_assert!(rem.is_zero());
    quot
}

/// Solves `m x = rhs` exactly, or `None` when `m` is singular.
///
/// Fraction-free Gaussian elimination (Bareiss) on the integer matrix obtained
/// by scaling each row by its denominators, then a fraction-free back
/// substitution, so intermediate numbers stay minors of the input.
pub(crate) fn solve(m: &[Vec<Q>], rhs: &[Q]) -> Option<Vec<Q>> {
    let n = m.len();
    if n == 0 {
        return Some(Vec::new());
    }
    // Integer augmented matrix.
    let mut a: Vec<Vec<BigInt>> = (0..n)
        .map(|i| {
            let d = common_denominator(m[i].iter().chain(std::iter::once(&rhs[i])));
            m[i].iter()
                .chain(std::iter::once(&rhs[i]))
                .map(|q| scale_to_int(q, &d))
                .collect()
        })
        .collect();
    let mut prev = BigInt::one();
    for k in 0..n {
        let piv = (k..n).find(|&r| !a[r][k].is_zero())?;
        a.swap(k, piv);
        for i in k + 1..n {
            for j in k + 1..=n {
                let v = (&a[k][k] * &a[i][j] - &a[i][k] * &a[k][j]) / &prev;
                a[i][j] = v;
            }
            a[i][k] = BigInt::zero();
        }
        prev = a[k][k].clone();
    }
    // Now `a` is upper triangular and `det = ±a[n-1][n-1]`, so `X = det·x`
    // is an integer vector: back-substitute on X with exact divisions.
    let det = a[n - 1][n - 1].clone();
    let mut x = vec![BigInt::zero(); n];
    for i in (0..n).rev() {
        let mut acc = &det * &a[i][n];
        for j in i + 1..n {
            acc -= &a[i][j] * &x[j];
        }
        let (qt, rem) = acc.div_rem(&a[i][i]);
        if !rem.is_zero() {
            // Cannot happen for a consistent Bareiss reduction; fall back to
            // an exact rational back substitution rather than guess.
            return solve_rational(&a, n);
        }
        x[i] = qt;
    }
    Some(x.into_iter().map(|xi| Q::new(xi, det.clone())).collect())
}

fn solve_rational(a: &[Vec<BigInt>], n: usize) -> Option<Vec<Q>> {
    let mut x: Vec<Q> = vec![Q::zero(); n];
    for i in (0..n).rev() {
        let mut acc = Q::from_integer(a[i][n].clone());
        for j in i + 1..n {
            acc -= Q::from_integer(a[i][j].clone()) * &x[j];
        }
        if a[i][i].is_zero() {
            return None;
        }
        x[i] = acc / Q::from_integer(a[i][i].clone());
    }
    Some(x)
}

/// `m x` exactly.
pub(crate) fn mat_vec(m: &[Vec<Q>], x: &[Q]) -> Vec<Q> {
    m.iter()
        .map(|row| {
            row.iter()
                .zip(x)
                .filter(|(a, _)| !a.is_zero())
                .map(|(a, b)| a * b)
                .sum()
        })
        .collect()
}

/// One step of the projected iteration, exactly: `max(0, A p + b)`.
pub(crate) fn step(a: &[Vec<Q>], b: &[Q], p: &[Q]) -> Vec<Q> {
    mat_vec(a, p)
        .into_iter()
        .zip(b)
        .map(|(y, bi)| {
            let v = y + bi;
            if v.is_negative() { Q::zero() } else { v }
        })
        .collect()
}

/// `(x − c)ᵀ P (x − c)` for a symmetric `P`.
pub(crate) fn quad(p: &[Vec<Q>], x: &[Q], c: &[Q]) -> Q {
    let d: Vec<Q> = x.iter().zip(c).map(|(a, b)| a - b).collect();
    let mut acc = Q::zero();
    for (i, row) in p.iter().enumerate() {
        for (j, pij) in row.iter().enumerate() {
            if !pij.is_zero() {
                acc += pij * &d[i] * &d[j];
            }
        }
    }
    acc
}

/// The solution `z >= 0` of the linear complementarity problem
/// `w = M z + q >= 0, zᵀ w = 0`, by Murty's least-index principal pivoting
/// from the basis `start` (`true` = `z_i` basic), exactly, with at most
/// `max_pivots` pivots. For a P-matrix `M` it terminates from any start and
/// the solution is unique. Returns `None` on a singular principal block or
/// when the pivot budget runs out. The answer is checked before it is
/// returned.
pub(crate) fn lcp(m: &[Vec<Q>], q: &[Q], start: &[bool], max_pivots: usize) -> Option<Vec<Q>> {
    let n = q.len();
    let mut basic = start.to_vec();
    for _ in 0..=max_pivots {
        let idx: Vec<usize> = (0..n).filter(|&i| basic[i]).collect();
        let sub: Vec<Vec<Q>> = idx
            .iter()
            .map(|&i| idx.iter().map(|&j| m[i][j].clone()).collect())
            .collect();
        let rhs: Vec<Q> = idx.iter().map(|&i| -q[i].clone()).collect();
        let zs = solve(&sub, &rhs)?;
        let mut z = vec![Q::zero(); n];
        for (k, &i) in idx.iter().enumerate() {
            z[i] = zs[k].clone();
        }
        let w: Vec<Q> = mat_vec(m, &z)
            .into_iter()
            .zip(q)
            .map(|(a, b)| a + b)
            .collect();
        let bad = (0..n).find(|&i| {
            if basic[i] {
                z[i].is_negative()
            } else {
                w[i].is_negative()
            }
        });
        match bad {
            None => {
                let ok = (0..n).all(|i| {
                    !z[i].is_negative() && !w[i].is_negative() && (&z[i] * &w[i]).is_zero()
                });
                return ok.then_some(z);
            }
            Some(i) => basic[i] = !basic[i],
        }
    }
    None
}

/// The same pivoting in `f64` with a tolerance, to find a good start basis.
pub(crate) fn lcp_f64(m: &[Vec<f64>], q: &[f64], max_pivots: usize) -> Option<Vec<bool>> {
    let n = q.len();
    let scale = 1.0 + q.iter().fold(0.0f64, |a, b| a.max(b.abs()));
    let tol = 1e-10 * scale;
    let mut basic = vec![true; n];
    for _ in 0..=max_pivots {
        let idx: Vec<usize> = (0..n).filter(|&i| basic[i]).collect();
        let sub: Vec<Vec<f64>> = idx
            .iter()
            .map(|&i| idx.iter().map(|&j| m[i][j]).collect())
            .collect();
        let rhs: Vec<f64> = idx.iter().map(|&i| -q[i]).collect();
        let zs = super::dense::solve(&sub, &rhs)?;
        let mut z = vec![0.0; n];
        for (k, &i) in idx.iter().enumerate() {
            z[i] = zs[k];
        }
        let mz = super::dense::mat_vec(m, &z);
        let bad = (0..n).find(|&i| {
            if basic[i] {
                z[i] < -tol
            } else {
                mz[i] + q[i] < -tol
            }
        });
        match bad {
            None => return Some(basic),
            Some(i) => basic[i] = !basic[i],
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(n: i64, d: i64) -> Q {
        Q::new(n.into(), d.into())
    }

    #[test]
    fn decimals_are_read_as_written() {
        assert_eq!(exact_decimal(0.1), q(1, 10));
        assert_eq!(exact_decimal(-2.5), q(-5, 2));
        assert_eq!(exact_decimal(1e-3), q(1, 1000));
        assert_eq!(exact_decimal(1234.5), q(2469, 2));
        assert_eq!(
            exact_decimal(3e20),
            Q::from_integer("300000000000000000000".parse().unwrap())
        );
        assert_eq!(exact_decimal(0.0), q(0, 1));
        assert_ne!(exact_binary(0.1), q(1, 10));
    }

    #[test]
    fn solve_is_exact() {
        let m = vec![vec![q(2, 1), q(1, 3)], vec![q(1, 7), q(5, 2)]];
        let rhs = vec![q(1, 1), q(-2, 5)];
        let x = solve(&m, &rhs).unwrap();
        assert_eq!(mat_vec(&m, &x), rhs);
        let singular = vec![vec![q(1, 1), q(2, 1)], vec![q(2, 1), q(4, 1)]];
        assert!(solve(&singular, &rhs).is_none());
        // A zero leading entry needs a row swap.
        let m = vec![
            vec![q(0, 1), q(1, 1), q(2, 1)],
            vec![q(3, 1), q(0, 1), q(1, 2)],
            vec![q(1, 1), q(1, 1), q(1, 1)],
        ];
        let rhs = vec![q(1, 1), q(2, 1), q(3, 1)];
        let x = solve(&m, &rhs).unwrap();
        assert_eq!(mat_vec(&m, &x), rhs);
    }

    #[test]
    fn lcp_finds_the_boundary_solution() {
        // w = K z + q with q = (-1, 2): z = (1, 0) gives w = (0, 2 + 0.5).
        let k = vec![vec![q(1, 1), q(1, 2)], vec![q(1, 2), q(1, 1)]];
        let qv = vec![q(-1, 1), q(2, 1)];
        let z = lcp(&k, &qv, &[true, true], 10).unwrap();
        assert_eq!(z, vec![q(1, 1), q(0, 1)]);
        let kf = vec![vec![1.0, 0.5], vec![0.5, 1.0]];
        assert_eq!(lcp_f64(&kf, &[-1.0, 2.0], 10), Some(vec![true, false]));
    }
}
