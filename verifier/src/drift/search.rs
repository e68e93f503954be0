//! The numeric (`f64`) search for a Lyapunov matrix `P`: first diagonal,
//! then full. Its output is only a *candidate*; nothing it says is trusted
//! until the exact check in [`super::cert`] and z3 have confirmed it.

use super::dense::{self, Mat};

/// A candidate `P` with `AᵀPA ⪯ γ P` numerically.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    /// Symmetric, positive definite (numerically).
    pub p: Mat,
    /// Whether `P` is diagonal.
    pub diagonal: bool,
    /// The numeric contraction factor of `V` per step.
    pub gamma: f64,
}

/// `D A D⁻¹` for `D = diag(exp(d))`.
fn scaled(a: &[Vec<f64>], d: &[f64]) -> Mat {
    a.iter()
        .enumerate()
        .map(|(i, r)| {
            r.iter()
                .enumerate()
                .map(|(j, v)| v * (d[i] - d[j]).exp())
                .collect()
        })
        .collect()
}

fn gamma_of(a: &[Vec<f64>], d: &[f64]) -> f64 {
    dense::top_singular(&scaled(a, d)).0.powi(2)
}

/// For `N = |A|` and `r > ρ(N)`: `x = (rI − N)⁻¹ 1` and `y = (rI − Nᵀ)⁻¹ 1`
/// are positive (`rI − N` is a nonsingular M-matrix) with `N x < r x`,
/// `Nᵀ y < r y`, and then `P = diag(y / x)` satisfies `NᵀPN ⪯ r² P`
/// (Cauchy–Schwarz row by row), hence `AᵀPA ⪯ r² P`. Positivity of the
/// solves is the test for `r > ρ(N)` (no eigenvalue is needed). Over a
/// ladder of `r` below 1, the scaling with the smallest `σmax(D A D⁻¹)` is
/// kept among those whose `P` spans less than `2^600` (a smaller `r` gives
/// more margin but a wider spread, which exact rounding must carry).
fn m_matrix_scaling(a: &[Vec<f64>]) -> Option<Vec<f64>> {
    let n = a.len();
    let abs: Mat = a
        .iter()
        .map(|r| r.iter().map(|v| v.abs()).collect())
        .collect();
    let ones = vec![1.0; n];
    let ok = |v: &[f64]| v.iter().all(|t| t.is_finite() && *t > 0.0);
    let mut best: Option<(Vec<f64>, f64)> = None;
    for r in [0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999] {
        let shifted: Mat = abs
            .iter()
            .enumerate()
            .map(|(i, row)| {
                row.iter()
                    .enumerate()
                    .map(|(j, v)| r * f64::from(u8::from(i == j)) - v)
                    .collect()
            })
            .collect();
        let Some(x) = dense::solve(&shifted, &ones) else {
            continue;
        };
        let Some(y) = dense::solve(&dense::transpose(&shifted), &ones) else {
            continue;
        };
        if ok(&x) && ok(&y) {
            let d: Vec<f64> = x.iter().zip(&y).map(|(x, y)| 0.5 * (y / x).ln()).collect();
            let spread = d.iter().fold(f64::NEG_INFINITY, |m, v| m.max(*v))
                - d.iter().fold(f64::INFINITY, |m, v| m.min(*v));
            if spread.is_finite() && 2.0 * spread < 600.0 * std::f64::consts::LN_2 {
                let g = gamma_of(a, &d);
                if best.as_ref().is_none_or(|(_, bg)| g < *bg) {
                    best = Some((d, g));
                }
            }
        }
    }
    best.map(|(d, _)| d)
}

/// Perron vectors `(x, y)` of `|A| + I` (right, left), if positive.
fn perron(a: &[Vec<f64>]) -> Option<(Vec<f64>, Vec<f64>)> {
    let n = a.len();
    let abs: Mat = a
        .iter()
        .enumerate()
        .map(|(i, r)| {
            r.iter()
                .enumerate()
                .map(|(j, v)| v.abs() + f64::from(u8::from(i == j)))
                .collect()
        })
        .collect();
    let power = |m: &Mat| {
        let mut x = vec![1.0; n];
        for _ in 0..2000 {
            let y = dense::mat_vec(m, &x);
            let s = y.iter().fold(0.0f64, |acc, v| acc.max(*v));
            if s <= 0.0 || !s.is_finite() {
                return None;
            }
            let y: Vec<f64> = y.into_iter().map(|v| v / s).collect();
            let diff = y
                .iter()
                .zip(&x)
                .fold(0.0f64, |acc, (p, q)| acc.max((p - q).abs()));
            x = y;
            if diff < 1e-13 {
                break;
            }
        }
        x.iter().all(|v| *v > 1e-12).then_some(x)
    };
    let x = power(&abs)?;
    let y = power(&dense::transpose(&abs))?;
    Some((x, y))
}

/// The best diagonal `P = diag(exp(2d))` found: start from `P = I`,
/// `P = diag(1/a)` (optimal when `K` is symmetric), the M-matrix scaling
/// `diag(y/x)` with `x = (I − |A|)⁻¹1`, `y = (I − |A|ᵀ)⁻¹1` (a certificate
/// whenever `ρ(|A|) < 1`) and the Perron scaling of `|A| + I`, then descend
/// on `σmax(D A D⁻¹)` along the (sub)gradient `∂ ln σ / ∂ d_k = u_k² − v_k²`
/// with backtracking, within a fixed budget of singular-value evaluations
/// (so the search costs at most a few hundred `O(n²)` power iterations
/// times that budget, whatever the input).
pub(crate) fn diagonal(a: &[Vec<f64>], step: &[f64], descend: bool) -> Candidate {
    let n = a.len();
    let mut starts: Vec<Vec<f64>> =
        vec![vec![0.0; n], step.iter().map(|s| -0.5 * s.ln()).collect()];
    if let Some(d) = m_matrix_scaling(a) {
        starts.push(d);
    }
    if let Some((x, y)) = perron(a) {
        starts.push(x.iter().zip(&y).map(|(x, y)| 0.5 * (y / x).ln()).collect());
    }
    let (mut d, mut g) = starts
        .into_iter()
        .map(|d| {
            let g = gamma_of(a, &d);
            (d, g)
        })
        .min_by(|x, y| x.1.total_cmp(&y.1))
        .unwrap_or((vec![0.0; n], f64::INFINITY));

    let budget = match (descend, g < 0.98) {
        (false, _) => 0,
        (true, true) => 10,
        (true, false) => 300,
    };
    let mut evaluations = 0usize;
    let mut t = 0.5;
    let mut stall = 0;
    for _ in 0..budget {
        if evaluations > 400 {
            break;
        }
        let (sigma, u, v) = dense::top_singular(&scaled(a, &d));
        let grad: Vec<f64> = u.iter().zip(&v).map(|(u, v)| u * u - v * v).collect();
        let gn = dense::norm(&grad);
        if gn < 1e-12 || sigma == 0.0 {
            break;
        }
        let mut improved = false;
        for _ in 0..30 {
            let trial: Vec<f64> = d.iter().zip(&grad).map(|(d, g)| d - t * g).collect();
            evaluations += 1;
            let gt = gamma_of(a, &trial);
            if gt < g * (1.0 - 1e-4 * t * gn * gn) {
                d = trial;
                let rel = (g - gt) / g;
                g = gt;
                improved = true;
                t = (t * 2.0).min(64.0);
                stall = if rel < 1e-9 { stall + 1 } else { 0 };
                break;
            }
            t *= 0.5;
        }
        if !improved || stall > 5 {
            break;
        }
    }
    let top = d.iter().fold(f64::NEG_INFINITY, |m, v| m.max(*v));
    let mut p = dense::zeros(n, n);
    for i in 0..n {
        p[i][i] = (2.0 * (d[i] - top)).exp();
    }
    Candidate {
        p,
        diagonal: true,
        gamma: g,
    }
}

/// The full `P` solving `AᵀPA − P = −I`, for which `AᵀPA = P − I ⪯
/// (1 − 1/λmax(P)) P`; `None` when `ρ(A) >= 1`.
pub(crate) fn full(a: &[Vec<f64>]) -> Option<Candidate> {
    let p = dense::lyapunov(a)?;
    let lmax = dense::sym_max_eig(&p);
    if !(lmax.is_finite() && lmax >= 1.0) {
        return None;
    }
    let p: Mat = p
        .into_iter()
        .map(|r| r.into_iter().map(|v| v / lmax).collect())
        .collect();
    Some(Candidate {
        p,
        diagonal: false,
        gamma: 1.0 - 1.0 / lmax,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_k_gets_diag_one_over_a() {
        // K symmetric, steps differ: P = diag(1/a) symmetrises A.
        let k = [[2.0, 0.5], [0.5, 1.0]];
        let step = [0.3, 0.6];
        let a: Mat = (0..2)
            .map(|i| {
                (0..2)
                    .map(|j| f64::from(u8::from(i == j)) - step[i] * k[i][j])
                    .collect()
            })
            .collect();
        let c = diagonal(&a, &step, true);
        let rho = dense::spectral_radius(&a);
        assert!(
            (c.gamma - rho * rho).abs() < 1e-6,
            "{} vs {}",
            c.gamma,
            rho * rho
        );
    }

    #[test]
    fn descent_improves_a_bad_start() {
        // Strong one-way coupling: P = I fails, a scaled P works.
        let a = vec![vec![0.5, -3.0], vec![0.0, 0.5]];
        assert!(gamma_of(&a, &[0.0, 0.0]) > 1.0);
        let c = diagonal(&a, &[1.0, 1.0], true);
        assert!(c.gamma < 1.0, "{}", c.gamma);
    }
}
