//! Small dense `f64` linear algebra for the certificate *search* (never for
//! the final word, which is exact). Matrices are `Vec<Vec<f64>>`, row-major;
//! sizes are a few hundred at most.

pub(crate) type Mat = Vec<Vec<f64>>;

pub(crate) fn zeros(n: usize, m: usize) -> Mat {
    vec![vec![0.0; m]; n]
}

pub(crate) fn mat_vec(a: &[Vec<f64>], x: &[f64]) -> Vec<f64> {
    a.iter()
        .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
        .collect()
}

pub(crate) fn mat_t_vec(a: &[Vec<f64>], x: &[f64]) -> Vec<f64> {
    let m = a.first().map_or(0, Vec::len);
    let mut out = vec![0.0; m];
    for (row, &xi) in a.iter().zip(x) {
        if xi != 0.0 {
            for (o, &aij) in out.iter_mut().zip(row) {
                *o += aij * xi;
            }
        }
    }
    out
}

pub(crate) fn mat_mul(a: &[Vec<f64>], b: &[Vec<f64>]) -> Mat {
    let m = b.first().map_or(0, Vec::len);
    a.iter()
        .map(|row| {
            let mut out = vec![0.0; m];
            for (k, &aik) in row.iter().enumerate() {
                if aik != 0.0 {
                    for (o, &bkj) in out.iter_mut().zip(&b[k]) {
                        *o += aik * bkj;
                    }
                }
            }
            out
        })
        .collect()
}

pub(crate) fn transpose(a: &[Vec<f64>]) -> Mat {
    let n = a.len();
    let m = a.first().map_or(0, Vec::len);
    (0..m).map(|j| (0..n).map(|i| a[i][j]).collect()).collect()
}

pub(crate) fn norm(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum::<f64>().sqrt()
}

pub(crate) fn frobenius(a: &[Vec<f64>]) -> f64 {
    a.iter().flatten().map(|v| v * v).sum::<f64>().sqrt()
}

/// `ρ(A)`, estimated as `‖A^k‖_F^{1/k}` for `k = 2^30` by repeated squaring
/// with renormalisation (no eigen-decomposition needed, complex pairs are no
/// problem). The error factor is `C^{1/k}` for the condition `C` of `A`'s
/// eigenbasis (or a polynomial of `k` for Jordan blocks): negligible here.
pub(crate) fn spectral_radius(a: &[Vec<f64>]) -> f64 {
    let f = frobenius(a);
    if f == 0.0 || !f.is_finite() {
        return if f == 0.0 { 0.0 } else { f64::INFINITY };
    }
    let mut b: Mat = a
        .iter()
        .map(|r| r.iter().map(|v| v / f).collect())
        .collect();
    // log ‖A^(2^j)‖ = 2^j · rate, tracked as `rate`.
    let mut rate = f.ln();
    let mut k = 1.0f64;
    for _ in 0..30 {
        let sq = mat_mul(&b, &b);
        let s = frobenius(&sq);
        if s == 0.0 && k < 2.0 * b.len() as f64 {
            // B^(2k) = 0 this early: nilpotent (up to rounding).
            return 0.0;
        }
        if s < 1e-280 {
            // Underflow: ‖A^(2k)‖ is far below ‖A^k‖², and stopping here
            // overestimates ρ by a factor below exp(700 / k).
            break;
        }
        // ‖A^(2k)‖ = ‖A^k‖² · s, i.e. rate_2k = rate_k + ln(s) / (2k).
        k *= 2.0;
        rate += s.ln() / k;
        b = sq
            .into_iter()
            .map(|r| r.into_iter().map(|v| v / s).collect())
            .collect();
    }
    rate.exp()
}

/// Largest eigenvalue of a symmetric positive semidefinite matrix, by power
/// iteration.
pub(crate) fn sym_max_eig(p: &[Vec<f64>]) -> f64 {
    let n = p.len();
    let mut x = vec![1.0 / (n as f64).sqrt(); n];
    // A deterministic, non-symmetric perturbation so x is not orthogonal to
    // the top eigenvector by accident.
    for (i, xi) in x.iter_mut().enumerate() {
        *xi *= 1.0 + 0.01 * ((i * 7919 % 13) as f64);
    }
    let mut lam = 0.0;
    for _ in 0..500 {
        let y = mat_vec(p, &x);
        let ny = norm(&y);
        if ny == 0.0 {
            return 0.0;
        }
        let new = x.iter().zip(&y).map(|(a, b)| a * b).sum::<f64>() / norm(&x).powi(2);
        x = y.into_iter().map(|v| v / ny).collect();
        if (new - lam).abs() <= 1e-13 * new.abs() {
            return new.max(ny);
        }
        lam = new;
    }
    lam
}

/// Lower-triangular `L` with `L Lᵀ = m`, or `None` if a pivot is not
/// positive.
pub(crate) fn cholesky(m: &[Vec<f64>]) -> Option<Mat> {
    let n = m.len();
    let mut l = zeros(n, n);
    for j in 0..n {
        let mut d = m[j][j];
        for k in 0..j {
            d -= l[j][k] * l[j][k];
        }
        if !d.is_finite() || d <= 0.0 {
            return None;
        }
        let djj = d.sqrt();
        l[j][j] = djj;
        for i in j + 1..n {
            let mut s = m[i][j];
            for k in 0..j {
                if l[i][k] != 0.0 && l[j][k] != 0.0 {
                    s -= l[i][k] * l[j][k];
                }
            }
            l[i][j] = s / djj;
        }
    }
    Some(l)
}

/// Gaussian elimination with partial pivoting; `None` on an exactly zero
/// pivot or a non-finite result (ill-conditioned systems are solved as well
/// as `f64` can: every caller checks what it gets).
pub(crate) fn solve(a: &[Vec<f64>], b: &[f64]) -> Option<Vec<f64>> {
    let n = a.len();
    let mut m: Mat = a
        .iter()
        .zip(b)
        .map(|(r, &bi)| {
            let mut r = r.clone();
            r.push(bi);
            r
        })
        .collect();
    for k in 0..n {
        let piv = (k..n).max_by(|&i, &j| m[i][k].abs().total_cmp(&m[j][k].abs()))?;
        if m[piv][k] == 0.0 {
            return None;
        }
        m.swap(k, piv);
        for i in k + 1..n {
            let f = m[i][k] / m[k][k];
            if f != 0.0 {
                for j in k..=n {
                    m[i][j] -= f * m[k][j];
                }
            }
        }
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut s = m[i][n];
        for j in i + 1..n {
            s -= m[i][j] * x[j];
        }
        x[i] = s / m[i][i];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// The top singular triple `(σ, u, v)` of `b` (`b v = σ u`), by power
/// iteration on `bᵀ b`.
pub(crate) fn top_singular(b: &[Vec<f64>]) -> (f64, Vec<f64>, Vec<f64>) {
    let n = b.first().map_or(0, Vec::len);
    let mut v: Vec<f64> = (0..n)
        .map(|i| 1.0 + 0.01 * ((i * 7919 % 17) as f64))
        .collect();
    let nv = norm(&v);
    v.iter_mut().for_each(|x| *x /= nv);
    let mut sigma = 0.0;
    for _ in 0..300 {
        let u = mat_vec(b, &v);
        let w = mat_t_vec(b, &u);
        let nw = norm(&w);
        if nw == 0.0 {
            return (0.0, vec![0.0; b.len()], v);
        }
        let new = norm(&u);
        v = w.into_iter().map(|x| x / nw).collect();
        if (new - sigma).abs() <= 1e-14 * new {
            sigma = new;
            break;
        }
        sigma = new;
    }
    let u = mat_vec(b, &v);
    let nu = norm(&u);
    let u = if nu > 0.0 {
        u.into_iter().map(|x| x / nu).collect()
    } else {
        u
    };
    let _ = sigma;
    (nu, u, v)
}

/// `P = Σ_k (Aᵀ)^k A^k`, the solution of `AᵀPA − P = −I`, by the doubling
/// (squared Smith) iteration. `None` when it does not converge, i.e. when
/// `ρ(A) >= 1` (or is too close to 1 for `f64`).
pub(crate) fn lyapunov(a: &[Vec<f64>]) -> Option<Mat> {
    let n = a.len();
    let mut p = zeros(n, n);
    for (i, r) in p.iter_mut().enumerate() {
        r[i] = 1.0;
    }
    let mut ak = a.to_vec();
    for _ in 0..64 {
        let akt = transpose(&ak);
        let term = mat_mul(&mat_mul(&akt, &p), &ak);
        let tn = frobenius(&term);
        if !tn.is_finite() || tn > 1e100 {
            return None;
        }
        for (pr, tr) in p.iter_mut().zip(&term) {
            for (x, t) in pr.iter_mut().zip(tr) {
                *x += t;
            }
        }
        if tn <= 1e-17 * frobenius(&p) {
            // Symmetrise away the rounding.
            for i in 0..n {
                for j in 0..i {
                    let s = 0.5 * (p[i][j] + p[j][i]);
                    p[i][j] = s;
                    p[j][i] = s;
                }
            }
            return Some(p);
        }
        ak = mat_mul(&ak, &ak);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spectral_radius_of_a_rotation_and_a_jordan_block() {
        let r = vec![vec![0.0, -0.9], vec![0.9, 0.0]];
        assert!((spectral_radius(&r) - 0.9).abs() < 1e-9);
        let j = vec![vec![0.5, 10.0], vec![0.0, 0.5]];
        assert!((spectral_radius(&j) - 0.5).abs() < 1e-6);
        assert_eq!(spectral_radius(&[vec![0.0, 1.0], vec![0.0, 0.0]]), 0.0);
    }

    #[test]
    fn lyapunov_solves_the_equation() {
        let a = vec![vec![0.5, -0.3], vec![0.1, 0.2]];
        let p = lyapunov(&a).unwrap();
        let lhs = mat_mul(&mat_mul(&transpose(&a), &p), &a);
        for i in 0..2 {
            for j in 0..2 {
                let want = p[i][j] - f64::from(u8::from(i == j));
                assert!((lhs[i][j] - want).abs() < 1e-12);
            }
        }
        assert!(lyapunov(&[vec![1.5]]).is_none());
    }

    #[test]
    fn singular_values_and_eigenvalues() {
        let b = vec![vec![3.0, 0.0], vec![0.0, -4.0]];
        let (s, _, v) = top_singular(&b);
        assert!((s - 4.0).abs() < 1e-9);
        assert!(v[1].abs() > 0.999);
        let p = vec![vec![2.0, 1.0], vec![1.0, 2.0]];
        assert!((sym_max_eig(&p) - 3.0).abs() < 1e-9);
        let l = cholesky(&p).unwrap();
        assert!((l[1][0] * l[1][0] + l[1][1] * l[1][1] - 2.0).abs() < 1e-12);
        assert!(cholesky(&[vec![1.0, 2.0], vec![2.0, 1.0]]).is_none());
    }
}
