//! Estimating the sensitivity `K` and baseline `u0` from a profile's price
//! and usage series by least squares: `u_t ≈ u0 − K p_t`.
//!
//! Pure: the caller reads the series. The fit is one Householder QR of the
//! design matrix `[1, p_t]` shared by every resource (no normal equations,
//! so no squared condition number). The estimate is returned as fitted:
//! noise can make a true zero coupling slightly negative, and the controller
//! validation will then refuse it, naming the entry, so a person decides.

use serde::Serialize;

/// The fit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SensitivityEstimate {
    /// `K`, `n x n`: row `i` is how usage `i` falls per unit of each price.
    pub sensitivity: Vec<Vec<f64>>,
    /// `u0`: the fitted usage at zero prices.
    pub baseline_usage: Vec<f64>,
    /// Root-mean-square residual per resource.
    pub residual_rms: Vec<f64>,
    /// Root-mean-square residual over all resources.
    pub residual: f64,
    /// Samples used.
    pub samples: usize,
}

/// Why the series cannot be fitted.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EstimateError {
    /// No samples.
    #[error(
        "the price and usage series are empty: record at least one sample per resource plus one"
    )]
    Empty,
    /// Different numbers of samples.
    #[error(
        "the price series has {prices} samples but the usage series has {usage}; they must be sampled together"
    )]
    LengthMismatch {
        /// Price samples.
        prices: usize,
        /// Usage samples.
        usage: usize,
    },
    /// A sample of the wrong width.
    #[error("{series} sample {sample} has {found} values, expected {expected} (one per resource)")]
    Ragged {
        /// `price` or `usage`.
        series: &'static str,
        /// Sample index.
        sample: usize,
        /// Values found.
        found: usize,
        /// Resources.
        expected: usize,
    },
    /// NaN or infinity.
    #[error("{series} sample {sample}, resource {resource} is {value}, not a finite number")]
    NonFinite {
        /// `price` or `usage`.
        series: &'static str,
        /// Sample index.
        sample: usize,
        /// Resource index.
        resource: usize,
        /// The value.
        value: f64,
    },
    /// Fewer samples than unknowns.
    #[error(
        "{samples} samples cannot determine {needed} coefficients per resource; record at least {needed} samples (more for a meaningful residual)"
    )]
    TooFewSamples {
        /// Samples given.
        samples: usize,
        /// `n + 1`.
        needed: usize,
    },
    /// The prices do not vary independently.
    #[error(
        "{what} is (nearly) a linear combination of the other prices and a constant over this series, so its effect cannot be told apart; vary the prices independently (e.g. perturb one at a time) while profiling"
    )]
    RankDeficient {
        /// `the price of resource j` or `the constant term`.
        what: String,
    },
}

/// Least-squares fit of `usage[t][i] ≈ u0[i] − Σ_j K[i][j] · prices[t][j]`.
pub fn estimate_sensitivity(
    prices: &[Vec<f64>],
    usage: &[Vec<f64>],
) -> Result<SensitivityEstimate, EstimateError> {
    let t = prices.len();
    if t == 0 || usage.is_empty() {
        return Err(EstimateError::Empty);
    }
    if usage.len() != t {
        return Err(EstimateError::LengthMismatch {
            prices: t,
            usage: usage.len(),
        });
    }
    let n = prices[0].len();
    if n == 0 {
        return Err(EstimateError::Ragged {
            series: "price",
            sample: 0,
            found: 0,
            expected: usage[0].len().max(1),
        });
    }
    for (series, data) in [("price", prices), ("usage", usage)] {
        for (s, row) in data.iter().enumerate() {
            if row.len() != n {
                return Err(EstimateError::Ragged {
                    series,
                    sample: s,
                    found: row.len(),
                    expected: n,
                });
            }
            if let Some((r, &v)) = row.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(EstimateError::NonFinite {
                    series,
                    sample: s,
                    resource: r,
                    value: v,
                });
            }
        }
    }
    let cols = n + 1;
    if t < cols {
        return Err(EstimateError::TooFewSamples {
            samples: t,
            needed: cols,
        });
    }
    // X = [1, p] (t x cols), Y = usage (t x n). Householder QR, applied to Y.
    let mut x: Vec<Vec<f64>> = prices
        .iter()
        .map(|p| std::iter::once(1.0).chain(p.iter().copied()).collect())
        .collect();
    let mut y: Vec<Vec<f64>> = usage.to_vec();
    let col_norms: Vec<f64> = (0..cols)
        .map(|j| x.iter().map(|r| r[j] * r[j]).sum::<f64>().sqrt())
        .collect();
    let what = |j: usize| {
        if j == 0 {
            "the constant term".to_owned()
        } else {
            format!("the price of resource {}", j - 1)
        }
    };
    for k in 0..cols {
        let norm: f64 = (k..t).map(|i| x[i][k] * x[i][k]).sum::<f64>().sqrt();
        if norm <= 1e-10 * col_norms[k].max(f64::MIN_POSITIVE) || col_norms[k] == 0.0 {
            return Err(EstimateError::RankDeficient { what: what(k) });
        }
        let alpha = if x[k][k] > 0.0 { -norm } else { norm };
        let mut v: Vec<f64> = (k..t).map(|i| x[i][k]).collect();
        v[0] -= alpha;
        let vnorm2: f64 = v.iter().map(|a| a * a).sum();
        if vnorm2 > 0.0 {
            let reflect = |m: &mut Vec<Vec<f64>>, width: usize, from: usize| {
                for j in from..width {
                    let s: f64 = (k..t).map(|i| v[i - k] * m[i][j]).sum::<f64>() * 2.0 / vnorm2;
                    for i in k..t {
                        m[i][j] -= s * v[i - k];
                    }
                }
            };
            reflect(&mut x, cols, k);
            reflect(&mut y, n, 0);
        }
    }
    // Back substitution: R β = Qᵀ Y (first `cols` rows); β is cols x n.
    let mut beta = vec![vec![0.0; n]; cols];
    for r in 0..n {
        for i in (0..cols).rev() {
            let mut s = y[i][r];
            for j in i + 1..cols {
                s -= x[i][j] * beta[j][r];
            }
            beta[i][r] = s / x[i][i];
        }
    }
    // Residuals from the original data (rows cols.. of QᵀY hold them too, but
    // recomputing is clearer and as cheap).
    let mut rms = vec![0.0; n];
    for (p, u) in prices.iter().zip(usage) {
        for i in 0..n {
            let fit = beta[0][i] + (0..n).map(|j| beta[j + 1][i] * p[j]).sum::<f64>();
            rms[i] += (u[i] - fit) * (u[i] - fit);
        }
    }
    let total = (rms.iter().sum::<f64>() / (t * n) as f64).sqrt();
    let residual_rms = rms.into_iter().map(|s| (s / t as f64).sqrt()).collect();
    Ok(SensitivityEstimate {
        sensitivity: (0..n)
            .map(|i| (0..n).map(|j| -beta[j + 1][i]).collect())
            .collect(),
        baseline_usage: (0..n).map(|i| beta[0][i]).collect(),
        residual_rms,
        residual: total,
        samples: t,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::simulate::Rng;

    fn synthetic(
        k: &[Vec<f64>],
        u0: &[f64],
        t: usize,
        noise: f64,
        seed: u64,
    ) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let n = u0.len();
        let mut rng = Rng::new(seed);
        let prices: Vec<Vec<f64>> = (0..t)
            .map(|_| (0..n).map(|_| 3.0 * rng.unit()).collect())
            .collect();
        let usage = prices
            .iter()
            .map(|p| {
                (0..n)
                    .map(|i| {
                        u0[i] - (0..n).map(|j| k[i][j] * p[j]).sum::<f64>()
                            + noise * (rng.unit() - 0.5)
                    })
                    .collect()
            })
            .collect();
        (prices, usage)
    }

    #[test]
    fn recovers_k_and_u0_exactly_without_noise() {
        let k = vec![
            vec![1.0, 0.2, 0.0],
            vec![0.3, 2.0, 0.1],
            vec![0.0, 0.5, 0.7],
        ];
        let u0 = vec![5.0, 6.0, 4.0];
        let (p, u) = synthetic(&k, &u0, 40, 0.0, 1);
        let est = estimate_sensitivity(&p, &u).unwrap();
        for i in 0..3 {
            assert!((est.baseline_usage[i] - u0[i]).abs() < 1e-9);
            for j in 0..3 {
                assert!((est.sensitivity[i][j] - k[i][j]).abs() < 1e-9, "{i},{j}");
            }
        }
        assert!(est.residual < 1e-9);
        assert_eq!(est.samples, 40);
    }

    #[test]
    fn noise_shows_in_the_residual_and_the_fit_stays_close() {
        let k = vec![vec![1.5, 0.4], vec![0.2, 0.9]];
        let u0 = vec![4.0, 3.0];
        let (p, u) = synthetic(&k, &u0, 2000, 0.2, 2);
        let est = estimate_sensitivity(&p, &u).unwrap();
        for i in 0..2 {
            for j in 0..2 {
                assert!(
                    (est.sensitivity[i][j] - k[i][j]).abs() < 0.02,
                    "{i},{j}: {}",
                    est.sensitivity[i][j]
                );
            }
        }
        // Uniform noise of width 0.2 has standard deviation 0.2/√12 ≈ 0.058.
        assert!((est.residual - 0.0577).abs() < 0.01, "{}", est.residual);
    }

    #[test]
    fn bad_series_are_refused() {
        assert_eq!(estimate_sensitivity(&[], &[]), Err(EstimateError::Empty));
        let p = vec![vec![1.0, 2.0]; 3];
        assert!(matches!(
            estimate_sensitivity(&p, &p[..2]),
            Err(EstimateError::LengthMismatch { .. })
        ));
        let ragged = vec![vec![1.0, 2.0], vec![1.0]];
        assert!(matches!(
            estimate_sensitivity(&ragged, &ragged),
            Err(EstimateError::Ragged {
                series: "price",
                sample: 1,
                ..
            })
        ));
        let nan = vec![vec![1.0, f64::NAN]; 4];
        assert!(matches!(
            estimate_sensitivity(&nan, &nan),
            Err(EstimateError::NonFinite { .. })
        ));
        assert!(matches!(
            estimate_sensitivity(&p[..2], &p[..2]),
            Err(EstimateError::TooFewSamples { .. })
        ));
        // Price 1 always twice price 0: collinear.
        let coll: Vec<Vec<f64>> = (0..10).map(|t| vec![t as f64, 2.0 * t as f64]).collect();
        let err = estimate_sensitivity(&coll, &coll).unwrap_err();
        assert_eq!(
            err,
            EstimateError::RankDeficient {
                what: "the price of resource 1".into()
            }
        );
        // A constant price is indistinguishable from u0.
        let flat: Vec<Vec<f64>> = (0..10).map(|t| vec![t as f64, 1.0]).collect();
        assert!(matches!(
            estimate_sensitivity(&flat, &flat),
            Err(EstimateError::RankDeficient { .. })
        ));
    }
}
