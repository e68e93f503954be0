//! Times the drift certificate on random stable controllers.
//!
//! `cargo run --release -p panic-verifier --example drift_time [-- n ...]`
//! (default sizes 5 20 100). For each size: a dense random controller
//! (certified without decomposition), and a banded (tridiagonal `K`) one
//! certified twice, over the cliques `{i, i+1, i+2}` and as a whole. Prints
//! one line per run: the verdict, `ε`, the z3 time (formula building
//! included), the slowest check, the whole `certify` time and how the check
//! was split. The controllers are seeded, so runs are comparable.
//!
//! Variants, as extra arguments: `baseline` (an explicit random `u0`, so the
//! exact equilibrium is a real complementarity solve), `near` (steps at
//! about 99% of the range where `‖A‖∞ < 1` is guaranteed), `unstable` (steps
//! 2.5x larger: counterexamples).

use std::time::Instant;

use panic_verifier::drift::{CliqueTree, ControllerSpec, DriftConfig, DriftVerdict, Step, certify};
use panic_verifier::rng::SplitMix64;

/// A number in `[lo, hi)` with three decimals, as a person would write it.
fn dec(rng: &mut SplitMix64, lo: f64, hi: f64) -> f64 {
    ((lo + (hi - lo) * rng.unit()) * 1000.0).round() / 1000.0
}

/// `K` diagonally dominant (off-diagonal row sum at most half the diagonal),
/// steps `0.9 / K_ii`: then `‖A‖_∞ <= 0.55` and a diagonal `P` exists.
#[derive(Clone, Copy)]
struct Variant {
    baseline: bool,
    step_scale: f64,
}

fn controller(n: usize, band: Option<usize>, seed: u64, v: Variant) -> ControllerSpec {
    let mut rng = SplitMix64::new(seed);
    let mut k = vec![vec![0.0; n]; n];
    for (i, row) in k.iter_mut().enumerate() {
        row[i] = dec(&mut rng, 1.0, 2.0);
        let width = band.map_or(n.saturating_sub(1), |b| 2 * b).max(1) as f64;
        for j in 0..n {
            let near = band.is_none_or(|b| i.abs_diff(j) <= b);
            if j != i && near {
                row[j] = ((0.5 * row[i] / width * rng.unit()) * 1000.0).floor() / 1000.0;
            }
        }
    }
    let step = (0..n)
        .map(|i| ((v.step_scale * 0.9 / k[i][i]) * 1000.0).floor() / 1000.0)
        .collect();
    let kinds = ["cpu", "memory", "io", "network", "dwell"];
    ControllerSpec {
        resources: (0..n).map(|i| format!("{}:r{i}", kinds[i % 5])).collect(),
        capacity: (0..n).map(|_| dec(&mut rng, 0.5, 2.0)).collect(),
        step: Step::PerResource(step),
        sensitivity: Some(k),
        baseline_usage: v
            .baseline
            .then(|| (0..n).map(|_| dec(&mut rng, 0.0, 4.0)).collect()),
        epsilon: None,
        max_iterations: None,
    }
}

fn run(label: &str, spec: &ControllerSpec, tree: Option<&CliqueTree>) {
    let ctrl = spec.validate().expect("generated controller is valid");
    let t0 = Instant::now();
    let v = certify(&ctrl, tree, &DriftConfig::default());
    let total = t0.elapsed().as_secs_f64() * 1e3;
    match &v {
        DriftVerdict::Certified(c) => {
            let slowest =
                c.z3.checks
                    .iter()
                    .max_by(|a, b| (a.build_ms + a.check_ms).total_cmp(&(b.build_ms + b.check_ms)))
                    .map(|c| format!("{} {:.0}+{:.0} ms", c.name, c.build_ms, c.check_ms))
                    .unwrap_or_default();
            println!(
                "{label:<22} certified  eps={:<10.4e} z3={:>9.1} ms ({} checks; slowest {slowest})  certify={:>9.1} ms  [{}]",
                c.epsilon_approx,
                c.z3.time_ms,
                c.z3.checks.len(),
                total,
                c.decomposition.summary
            );
        }
        DriftVerdict::Counterexample(cx) => println!(
            "{label:<22} counterexample  {:?} over {} steps (period {:?}, exact cycle {:?}), drift {:.3e}, ρ(A) ≈ {:.3}  certify={total:>9.1} ms",
            cx.trajectory.behaviour,
            cx.trajectory.steps,
            cx.trajectory.period,
            cx.trajectory.exact_cycle,
            cx.drift_approx.unwrap_or(f64::NAN),
            cx.spectral_radius_estimate
        ),
        DriftVerdict::Unknown { reason } => {
            println!("{label:<22} unknown: {reason}  certify={total:.1} ms")
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sizes: Vec<usize> = {
        let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
        if sizes.is_empty() {
            vec![5, 20, 100]
        } else {
            sizes
        }
    };
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let v = Variant {
        baseline: has("baseline"),
        step_scale: if has("unstable") {
            2.5
        } else if has("near") {
            // ‖A‖∞ <= 1 − 0.9s + 0.45s: stable up to s = 2/1.35 ≈ 1.48.
            1.46
        } else {
            1.0
        },
    };
    for &n in &sizes {
        run(
            &format!("dense n={n}"),
            &controller(n, None, 42 + n as u64, v),
            None,
        );
        if n >= 3 {
            let tree = CliqueTree {
                cliques: (0..n - 2).map(|i| vec![i, i + 1, i + 2]).collect(),
                edges: (1..n - 2).map(|i| (i - 1, i)).collect(),
            };
            run(
                &format!("banded n={n} cliques"),
                &controller(n, Some(1), 7 + n as u64, v),
                Some(&tree),
            );
            run(
                &format!("banded n={n} whole"),
                &controller(n, Some(1), 7 + n as u64, v),
                None,
            );
        }
    }
}
