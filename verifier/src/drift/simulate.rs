//! Simulating the projected iteration in `f64`, classifying what it does,
//! and searching for a start point from which it does not converge.

use super::dense::{self, Mat};
use super::verdict::{Behaviour, Trajectory};
/// The crate's seeded generator, under the name the drift code uses.
pub(crate) use crate::rng::SplitMix64 as Rng;

/// `p_0 .. p_steps` of `p⁺ = max(0, A p + b)`.
pub(crate) fn simulate(a: &[Vec<f64>], b: &[f64], p0: &[f64], steps: usize) -> Vec<Vec<f64>> {
    let mut out = Vec::with_capacity(steps + 1);
    out.push(p0.to_vec());
    let mut p = p0.to_vec();
    for _ in 0..steps {
        p = dense::mat_vec(a, &p)
            .into_iter()
            .zip(b)
            .map(|(y, bi)| (y + bi).max(0.0))
            .collect();
        let finite = p.iter().all(|v| v.is_finite());
        out.push(p.clone());
        if !finite {
            break;
        }
    }
    out
}

fn dist(x: &[f64], y: &[f64]) -> f64 {
    x.iter()
        .zip(y)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt()
}

/// What the run did relative to `p_star` (the zero vector when no
/// equilibrium is known).
pub(crate) fn classify(traj: &[Vec<f64>], p_star: &[f64]) -> Trajectory {
    let steps = traj.len() - 1;
    let d: Vec<f64> = traj.iter().map(|p| dist(p, p_star)).collect();
    let scale = 1.0 + dense::norm(p_star);
    let q = (steps / 4).max(1);
    let last_q = &d[d.len().saturating_sub(q + 1)..];
    let first_q = &d[..(q + 1).min(d.len())];
    let max_last = last_q.iter().fold(0.0f64, |m, v| m.max(*v));
    let min_last = last_q.iter().fold(f64::INFINITY, |m, v| m.min(*v));
    let max_first = first_q.iter().fold(0.0f64, |m, v| m.max(*v));
    let step_len = |t: usize| dist(&traj[t], &traj[t - 1]);
    let step_last = (traj.len().saturating_sub(q).max(1)..traj.len())
        .map(step_len)
        .fold(0.0f64, f64::max);
    let step_first = (1..=q.min(steps)).map(step_len).fold(0.0f64, f64::max);
    let last = traj.last().map(Vec::as_slice).unwrap_or(&[]);

    let behaviour =
        if !d.iter().all(|v| v.is_finite()) || max_last > 10.0 * max_first.max(1e-9 * scale) {
            Behaviour::Diverges
        } else if max_last <= 1e-9 * scale {
            Behaviour::Converges
        } else if step_last <= 1e-12 * scale {
            if d[steps] > 1e-6 * scale {
                Behaviour::ConvergesElsewhere
            } else {
                Behaviour::Converges
            }
        } else if max_last < 0.5 * max_first || step_last < 0.5 * step_first {
            // Still settling: not evidence of instability.
            Behaviour::Converges
        } else {
            Behaviour::Oscillates
        };
    let period = (behaviour == Behaviour::Oscillates)
        .then(|| {
            (1..=16.min(steps)).find(|&k| dist(&traj[steps], &traj[steps - k]) <= 1e-9 * scale)
        })
        .flatten();
    Trajectory {
        steps,
        behaviour,
        first_distance: d[0],
        last_distance: d[steps],
        max_distance_last_quarter: max_last,
        min_distance_last_quarter: min_last,
        first_norm: dense::norm(&traj[0]),
        last_norm: dense::norm(last),
        period,
        exact_cycle: None,
    }
}

/// Start points for the counterexample search: the dominant directions of
/// `A` around `p*` (both signs, clipped to `p >= 0`), the origin, `p*`
/// nudged along each axis, and seeded random points.
pub(crate) fn start_points(a: &Mat, p_star: &[f64], seed: u64) -> Vec<Vec<f64>> {
    let n = p_star.len();
    let top = p_star.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let radius = 0.5 * (1.0 + top);
    let mut rng = Rng::new(seed);
    let clip = |v: Vec<f64>| v.into_iter().map(|x| x.max(0.0)).collect::<Vec<f64>>();
    let mut out = Vec::new();
    let seeds: Vec<Vec<f64>> = vec![vec![1.0; n], (0..n).map(|_| rng.unit() - 0.5).collect()];
    for mut x in seeds {
        let mut dirs = Vec::new();
        for it in 0..=51 {
            let nx = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            if nx == 0.0 || !nx.is_finite() {
                break;
            }
            x.iter_mut().for_each(|v| *v /= nx);
            if it >= 50 {
                dirs.push(x.clone());
            }
            x = dense::mat_vec(a, &x);
        }
        for d in dirs {
            for sign in [1.0, -1.0] {
                out.push(clip(
                    p_star
                        .iter()
                        .zip(&d)
                        .map(|(p, v)| p + sign * radius * v)
                        .collect(),
                ));
            }
        }
    }
    out.push(vec![0.0; n]);
    for i in 0..n.min(16) {
        for sign in [1.0, -1.0] {
            let mut p = p_star.to_vec();
            p[i] += sign * radius;
            out.push(clip(p));
        }
    }
    for _ in 0..8 {
        out.push((0..n).map(|_| 2.0 * (1.0 + top) * rng.unit()).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_of_simple_runs() {
        // Scalar: p* = 1, a K = 2.5 > 2: a 2-cycle {0, 2.5}.
        let a = vec![vec![-1.5]];
        let b = vec![2.5];
        let t = classify(&simulate(&a, &b, &[1.2], 100), &[1.0]);
        assert_eq!(t.behaviour, Behaviour::Oscillates);
        assert_eq!(t.period, Some(2));
        // a K = 0.5: converges.
        let t = classify(&simulate(&[vec![0.5]], &[0.5], &[3.0], 100), &[1.0]);
        assert_eq!(t.behaviour, Behaviour::Converges);
        // Unclipped growth: diverges.
        let t = classify(&simulate(&[vec![1.1]], &[-0.1], &[2.0], 100), &[1.0]);
        assert_eq!(t.behaviour, Behaviour::Diverges);
        // Settles elsewhere.
        let t = classify(&simulate(&[vec![0.5]], &[0.0], &[3.0], 200), &[1.0]);
        assert_eq!(t.behaviour, Behaviour::ConvergesElsewhere);
    }

    #[test]
    fn rng_is_seeded() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
        assert!((0.0..1.0).contains(&a.unit()));
    }
}
