//! Drift certificates end to end: every certificate is re-checked here by an
//! independent numeric test of the *projected* map, every counterexample by
//! re-simulating from its start point, and every validation error path is
//! provoked.

use panic_verifier::drift::{
    Behaviour, Certificate, CliqueTree, ControllerSpec, Counterexample, DecompositionKind,
    DriftConfig, DriftVerdict, LyapunovSearch, PShape, Scope, SpecError, Step, certify,
    estimate_sensitivity,
};
use panic_verifier::rng::SplitMix64 as Rng;

fn spec(k: Vec<Vec<f64>>, step: Step) -> ControllerSpec {
    let n = k.len();
    let kinds = ["cpu", "memory", "io", "network", "dwell"];
    ControllerSpec {
        resources: (0..n)
            .map(|i| {
                if i < 5 {
                    kinds[i].to_owned()
                } else {
                    format!("{}:q{i}", kinds[i % 5])
                }
            })
            .collect(),
        capacity: (0..n).map(|i| 1.0 + 0.25 * i as f64).collect(),
        step,
        sensitivity: Some(k),
        baseline_usage: None,
        epsilon: None,
        max_iterations: None,
    }
}

/// `"n/d"` or `"n"` to `f64`, parsing the parts independently of the crate.
fn rat(s: &str) -> f64 {
    match s.split_once('/') {
        Some((n, d)) => big(n) / big(d),
        None => big(s),
    }
}

/// A decimal integer of any length to `f64` (digits beyond f64 precision
/// only scale).
fn big(s: &str) -> f64 {
    let (neg, digits) = s.strip_prefix('-').map_or((false, s), |d| (true, d));
    let lead = &digits[..digits.len().min(17)];
    let v: f64 = lead.parse::<f64>().unwrap() * 10f64.powi((digits.len() - lead.len()) as i32);
    if neg { -v } else { v }
}

struct Data {
    a: Vec<f64>,
    k: Vec<Vec<f64>>,
    c: Vec<f64>,
    u0: Vec<f64>,
}

fn data(s: &ControllerSpec) -> Data {
    let n = s.resources.len();
    let a = match &s.step {
        Step::Uniform(a) => vec![*a; n],
        Step::PerResource(v) => v.clone(),
    };
    let k = s.sensitivity.clone().expect("specs in these tests give K");
    let u0 = s.baseline_usage.clone().unwrap_or_else(|| {
        (0..n)
            .map(|i| s.capacity[i] + k[i].iter().sum::<f64>())
            .collect()
    });
    Data {
        a,
        k,
        c: s.capacity.clone(),
        u0,
    }
}

/// The controller's own step, written out from the spec, not from the crate.
fn step(d: &Data, p: &[f64], clip: bool) -> Vec<f64> {
    (0..p.len())
        .map(|i| {
            let usage = d.u0[i] - (0..p.len()).map(|j| d.k[i][j] * p[j]).sum::<f64>();
            let y = p[i] + d.a[i] * (usage - d.c[i]);
            if clip { y.max(0.0) } else { y }
        })
        .collect()
}

fn quad(p: &[Vec<f64>], x: &[f64], c: &[f64]) -> f64 {
    let d: Vec<f64> = x.iter().zip(c).map(|(a, b)| a - b).collect();
    (0..d.len())
        .map(|i| (0..d.len()).map(|j| p[i][j] * d[i] * d[j]).sum::<f64>())
        .sum()
}

/// The independent check: `P` positive definite (Cholesky), and for many
/// seeded random `p >= 0` (some on the boundary) the drift of `V` under the
/// projected map (or the linear one, for a linear-only certificate) is at
/// most `−εV + B` up to rounding.
fn check_numerically(s: &ControllerSpec, c: &Certificate, samples: usize) {
    let d = data(s);
    let n = d.a.len();
    let p: Vec<Vec<f64>> = c
        .p_matrix
        .iter()
        .map(|r| r.iter().map(|x| rat(x)).collect())
        .collect();
    let eps = rat(&c.epsilon);
    let b = rat(&c.b);
    let ps: Vec<f64> = c.p_star.iter().map(|x| rat(x)).collect();
    assert!(eps > 0.0 && eps < 1.0, "ε = {eps}");
    for (i, row) in p.iter().enumerate() {
        for (j, pij) in row.iter().enumerate() {
            assert_eq!(*pij, p[j][i], "P symmetric");
        }
    }
    // Cholesky: P ≻ 0.
    let mut l = vec![vec![0.0; n]; n];
    for j in 0..n {
        let dj = p[j][j] - (0..j).map(|k| l[j][k] * l[j][k]).sum::<f64>();
        assert!(dj > 0.0, "P is not positive definite");
        l[j][j] = dj.sqrt();
        for i in j + 1..n {
            l[i][j] = (p[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>()) / l[j][j];
        }
    }
    let clip = c.scope == Scope::ProjectedController;
    if clip {
        // p* is the controller's fixed point.
        let next = step(&d, &ps, true);
        for i in 0..n {
            assert!(
                (next[i] - ps[i]).abs() <= 1e-9 * (1.0 + ps[i].abs()),
                "p* is not a fixed point"
            );
        }
    }
    let mut rng = Rng::new(0xc0ffee);
    let top = ps.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let mut worst = f64::NEG_INFINITY;
    for t in 0..samples {
        let x: Vec<f64> = (0..n)
            .map(|_| {
                let u = rng.unit();
                // A third of the coordinates sit at 0, where the clip acts.
                if clip && t % 2 == 0 && u < 0.33 {
                    0.0
                } else {
                    3.0 * top * rng.unit()
                }
            })
            .collect();
        let v0 = quad(&p, &x, &ps);
        let v1 = quad(&p, &step(&d, &x, clip), &ps);
        let slack = (v1 - v0) - (-eps * v0 + b);
        worst = worst.max(slack / (1.0 + v0));
        assert!(
            slack <= 1e-9 * (1.0 + v0),
            "drift too large at {x:?}: ΔV = {}, bound {}",
            v1 - v0,
            -eps * v0 + b
        );
    }
    assert!(
        worst < 0.0 || worst.abs() < 1e-9,
        "worst relative slack {worst}"
    );
}

/// Re-simulates from the counterexample's start: the drift is positive,
/// `p1` is the controller's step, and the iteration does not approach `p*`.
fn check_counterexample(s: &ControllerSpec, cx: &Counterexample) {
    let d = data(s);
    let p0: Vec<f64> = cx.p0.iter().map(|x| rat(x)).collect();
    assert!(p0.iter().all(|v| *v >= 0.0), "p0 must be a price vector");
    let p1 = step(&d, &p0, true);
    for (a, b) in p1.iter().zip(&cx.p1) {
        assert!((a - rat(b)).abs() <= 1e-9 * (1.0 + a.abs()));
    }
    let ps: Vec<f64> = cx
        .p_star
        .as_ref()
        .expect("equilibrium")
        .iter()
        .map(|x| rat(x))
        .collect();
    let dist = |p: &[f64]| {
        p.iter()
            .zip(&ps)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt()
    };
    let drift = rat(cx.drift.as_ref().expect("drift"));
    assert!(drift > 0.0);
    assert!((dist(&p1).powi(2) - dist(&p0).powi(2) - drift).abs() <= 1e-9 * (1.0 + drift));
    // Simulate: the distance to p* never falls below a fixed fraction of its
    // start value over the last half, and never reaches 0.
    let mut p = p0.clone();
    let mut late_min = f64::INFINITY;
    let steps = cx.trajectory.steps;
    for t in 0..steps {
        p = step(&d, &p, true);
        if !p.iter().all(|v| v.is_finite()) {
            assert_eq!(cx.trajectory.behaviour, Behaviour::Diverges);
            return;
        }
        if t >= steps / 2 {
            late_min = late_min.min(dist(&p));
        }
    }
    match cx.trajectory.behaviour {
        Behaviour::Diverges => assert!(dist(&p) > 10.0 * dist(&p0), "claimed divergence"),
        Behaviour::Oscillates | Behaviour::ConvergesElsewhere => {
            assert!(
                late_min > 1e-3 * (1.0 + dist(&p0)),
                "the run approaches p*: {late_min}"
            )
        }
        Behaviour::Converges => panic!("a counterexample that converges"),
    }
}

fn certified(s: &ControllerSpec, cfg: &DriftConfig, tree: Option<&CliqueTree>) -> Certificate {
    let ctrl = s.validate().unwrap();
    match certify(&ctrl, tree, cfg) {
        DriftVerdict::Certified(c) => *c,
        other => panic!("expected a certificate, got {other:#?}"),
    }
}

fn counterexample(s: &ControllerSpec) -> Counterexample {
    let ctrl = s.validate().unwrap();
    match certify(&ctrl, None, &DriftConfig::default()) {
        DriftVerdict::Counterexample(c) => *c,
        other => panic!("expected a counterexample, got {other:#?}"),
    }
}

#[test]
fn scalar_below_two_over_l_is_certified() {
    // L = 2, so 2/L = 1.
    for a in [0.1, 0.5, 0.9, 0.99] {
        let s = spec(vec![vec![2.0]], Step::Uniform(a));
        let c = certified(&s, &DriftConfig::default(), None);
        assert_eq!(c.scope, Scope::ProjectedController);
        assert_eq!(c.p_shape, PShape::Diagonal);
        assert_eq!(c.p_star, vec!["1"]);
        assert_eq!(c.b, "0");
        // |1 − aL| bounds the contraction: ε <= 1 − (1 − aL)².
        let bound = 1.0 - (1.0 - 2.0 * a).powi(2);
        assert!(
            c.epsilon_approx <= bound && c.epsilon_approx > 0.0,
            "a = {a}: ε = {}",
            c.epsilon_approx
        );
        assert!(c.what_is_certified.contains("max(0, p + a∘(u0 − K p − c))"));
        let names: Vec<&str> = c.z3.checks.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "sparsity",
                "p_positive_diagonal",
                "decrease",
                "equilibrium",
                "projected_drift"
            ]
        );
        assert!(c.z3.checks.iter().all(|k| k.result == "unsat"));
        check_numerically(&s, &c, 2000);
    }
}

#[test]
fn the_independent_checks_can_fail() {
    let s = spec(vec![vec![1.0, 0.3], vec![0.2, 1.0]], Step::Uniform(0.9));
    let c = certified(&s, &DriftConfig::default(), None);
    check_numerically(&s, &c, 500);
    let fails =
        |c: Certificate| std::panic::catch_unwind(|| check_numerically(&s, &c, 500)).is_err();
    // A decay rate beyond what the map does.
    let mut bad = c.clone();
    bad.epsilon = "999/1000".into();
    assert!(fails(bad));
    // A wrong centre.
    let mut bad = c.clone();
    bad.p_star = vec!["1".into(), "11/10".into()];
    assert!(fails(bad));
    // A P that is not positive definite.
    let mut bad = c;
    bad.p_matrix[0][1] = "10".into();
    bad.p_matrix[1][0] = "10".into();
    assert!(fails(bad));
    // A counterexample checked against a controller it does not belong to
    // (a stable one) is refused.
    let unstable = spec(vec![vec![2.0]], Step::Uniform(1.5));
    let cx = counterexample(&unstable);
    check_counterexample(&unstable, &cx);
    let stable = spec(vec![vec![2.0]], Step::Uniform(0.5));
    assert!(std::panic::catch_unwind(|| check_counterexample(&stable, &cx)).is_err());
}

#[test]
fn scalar_above_two_over_l_gets_a_counterexample() {
    for a in [1.05, 1.5, 3.0] {
        let s = spec(vec![vec![2.0]], Step::Uniform(a));
        let cx = counterexample(&s);
        assert!(cx.spectral_radius_estimate > 1.0);
        assert_eq!(cx.trajectory.behaviour, Behaviour::Oscillates, "a = {a}");
        // The clip turns the divergence into the 2-cycle {0, a·L·p*}, exactly.
        assert_eq!(cx.trajectory.exact_cycle, Some(2), "a = {a}");
        assert!(cx.reason.contains("ρ(A)"), "{}", cx.reason);
        check_counterexample(&s, &cx);
    }
}

#[test]
fn diagonal_k_with_per_resource_steps() {
    let k = vec![
        vec![2.0, 0.0, 0.0],
        vec![0.0, 0.5, 0.0],
        vec![0.0, 0.0, 4.0],
    ];
    let s = spec(k.clone(), Step::PerResource(vec![0.9, 3.5, 0.1]));
    let c = certified(&s, &DriftConfig::default(), None);
    // Fully decoupled: one check per resource.
    assert_eq!(c.decomposition.kind, DecompositionKind::Components);
    assert_eq!(c.decomposition.sets.len(), 3);
    check_numerically(&s, &c, 2000);
    // One step too large (a·K = 2.2 for the second resource).
    let s = spec(k, Step::PerResource(vec![0.9, 4.4, 0.1]));
    let cx = counterexample(&s);
    check_counterexample(&s, &cx);
}

#[test]
fn symmetric_positive_definite_k() {
    let k = vec![
        vec![2.0, 0.5, 0.3, 0.0],
        vec![0.5, 1.5, 0.2, 0.4],
        vec![0.3, 0.2, 1.0, 0.1],
        vec![0.0, 0.4, 0.1, 2.5],
    ];
    // λmax(K) < 3.1, so a uniform a = 0.6 < 2/λmax.
    let s = spec(k.clone(), Step::Uniform(0.6));
    let c = certified(&s, &DriftConfig::default(), None);
    assert_eq!(c.p_shape, PShape::Diagonal);
    assert!(
        c.decomposition.summary.starts_with("not decomposed"),
        "{}",
        c.decomposition.summary
    );
    check_numerically(&s, &c, 3000);
    // Per-resource steps: P = diag(1/a) symmetrises A.
    let s = spec(k.clone(), Step::PerResource(vec![0.3, 0.9, 1.2, 0.5]));
    let c = certified(&s, &DriftConfig::default(), None);
    check_numerically(&s, &c, 3000);
    // a = 0.9 > 2/λmax(K): unstable.
    let s = spec(k, Step::Uniform(0.9));
    let cx = counterexample(&s);
    assert!(cx.spectral_radius_estimate > 1.0);
    check_counterexample(&s, &cx);
}

#[test]
fn non_symmetric_k() {
    // Strong one-way coupling: P = I does not work, a scaled diagonal does.
    let k = vec![
        vec![1.0, 2.5, 0.0],
        vec![0.0, 1.0, 1.5],
        vec![0.1, 0.0, 1.2],
    ];
    let s = spec(k, Step::Uniform(0.7));
    let c = certified(&s, &DriftConfig::default(), None);
    assert_eq!(c.p_shape, PShape::Diagonal);
    let p: Vec<f64> = (0..3).map(|i| rat(&c.p_matrix[i][i])).collect();
    assert!(
        p.iter().any(|x| (x - p[0]).abs() > 1e-3 * p[0]),
        "expected a non-trivial scaling, got {p:?}"
    );
    check_numerically(&s, &c, 3000);
}

#[test]
fn explicit_baseline_with_an_equilibrium_on_the_boundary() {
    // Resource 1 is under capacity at zero prices: its price settles at 0.
    let mut s = spec(vec![vec![1.0, 0.5], vec![0.5, 1.0]], Step::Uniform(0.5));
    s.baseline_usage = Some(vec![3.0, 0.5]);
    s.capacity = vec![1.0, 1.0];
    let c = certified(&s, &DriftConfig::default(), None);
    assert_eq!(c.p_star, vec!["2", "0"]);
    assert!(!c.what_is_certified.contains("defaulted"));
    check_numerically(&s, &c, 3000);
}

#[test]
fn a_boundary_equilibrium_that_the_clip_stabilises() {
    // u0 <= c: p* = 0 and the clip makes the iteration converge in one step
    // even though a·K = 3 > 2. No P makes the linear part contract; for small
    // n z3 proves the statement directly on the clipped map.
    let mut s = spec(vec![vec![2.0]], Step::Uniform(1.5));
    s.baseline_usage = Some(vec![0.5]);
    let c = certified(&s, &DriftConfig::default(), None);
    assert_eq!(c.scope, Scope::ProjectedController);
    assert_eq!(c.p_star, vec!["0"]);
    let names: Vec<&str> = c.z3.checks.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(
        names,
        ["p_positive_diagonal", "equilibrium", "projected_drift"]
    );
    assert!(
        c.what_is_certified.contains("the clip at 0 is what makes"),
        "{}",
        c.what_is_certified
    );
    assert!(c.witness.decrease.is_none());
    check_numerically(&s, &c, 2000);

    // Four such resources: above the direct-check limit, so neither a
    // certificate nor a counterexample; the verdict must say so.
    let n = 4;
    let mut s = spec(
        (0..n)
            .map(|i| (0..n).map(|j| if i == j { 2.0 } else { 0.0 }).collect())
            .collect(),
        Step::Uniform(1.5),
    );
    s.baseline_usage = Some(vec![0.5; n]);
    s.capacity = vec![1.0; n];
    let ctrl = s.validate().unwrap();
    match certify(&ctrl, None, &DriftConfig::default()) {
        DriftVerdict::Unknown { reason } => {
            assert!(
                reason.contains("no diagonal Lyapunov function found"),
                "{reason}"
            );
            assert!(
                reason.contains("no full Lyapunov function: ρ(A)"),
                "{reason}"
            );
            assert!(reason.contains("no start point"), "{reason}");
        }
        other => panic!("expected unknown, got {other:#?}"),
    }
}

#[test]
fn a_requested_epsilon_is_certified_exactly_or_refused() {
    let mut s = spec(vec![vec![2.0]], Step::Uniform(0.4));
    // |1 − aL| = 0.2, so V contracts by 0.04: ε up to 0.96.
    s.epsilon = Some(0.9);
    let c = certified(&s, &DriftConfig::default(), None);
    assert_eq!(c.epsilon, "9/10");
    check_numerically(&s, &c, 1000);
    s.epsilon = Some(0.97);
    let ctrl = s.validate().unwrap();
    match certify(&ctrl, None, &DriftConfig::default()) {
        DriftVerdict::Unknown { reason } => assert!(reason.contains("not provable"), "{reason}"),
        other => panic!("expected unknown, got {other:#?}"),
    }
}

#[test]
fn full_p_small_n_is_checked_on_the_clipped_map() {
    let s = spec(vec![vec![1.0, 0.6], vec![0.3, 1.0]], Step::Uniform(0.8));
    let cfg = DriftConfig {
        search: LyapunovSearch::FullOnly,
        ..DriftConfig::default()
    };
    let c = certified(&s, &cfg, None);
    assert_eq!(c.p_shape, PShape::Full);
    assert_eq!(c.scope, Scope::ProjectedController);
    assert!(
        c.z3.checks
            .iter()
            .any(|k| k.name == "projected_drift" && k.result == "unsat")
    );
    assert!(c.z3.checks.iter().any(|k| k.name == "p_positive_definite"));
    assert!(c.witness.p_positive.is_some());
    check_numerically(&s, &c, 3000);
}

/// Four resources, each coupled to two or three others, stable at step 0.8.
fn coupled_4() -> Vec<Vec<f64>> {
    vec![
        vec![1.0, 0.2, 0.0, 0.1],
        vec![0.1, 1.0, 0.3, 0.0],
        vec![0.0, 0.2, 1.0, 0.2],
        vec![0.3, 0.0, 0.1, 1.0],
    ]
}

#[test]
fn full_p_above_the_nra_limit_certifies_the_linear_model_only_and_says_so() {
    let k = coupled_4();
    let s = spec(k, Step::Uniform(0.8));
    let cfg = DriftConfig {
        search: LyapunovSearch::FullOnly,
        ..DriftConfig::default()
    };
    let c = certified(&s, &cfg, None);
    assert_eq!(c.scope, Scope::LinearModelOnly);
    assert!(
        c.what_is_certified
            .starts_with("NOT a certificate for the controller")
    );
    assert!(
        c.what_is_certified.contains("n = 4 is above the limit"),
        "{}",
        c.what_is_certified
    );
    assert!(c.z3.checks.iter().any(|k| k.name == "linear_fixed_point"));
    check_numerically(&s, &c, 2000);
}

#[test]
fn z3_unknown_is_reported_as_unknown() {
    let k = coupled_4();
    let s = spec(k, Step::Uniform(0.8));
    let cfg = DriftConfig {
        nra_max_resources: 4,
        nra_timeout_ms: 1,
        ..DriftConfig::default()
    };
    let ctrl = s.validate().unwrap();
    match certify(&ctrl, None, &cfg) {
        DriftVerdict::Unknown { reason } => {
            assert!(reason.contains("projected_drift"), "{reason}");
            assert!(
                reason.contains("budget")
                    || reason.contains("timeout")
                    || reason.contains("canceled"),
                "{reason}"
            );
            assert!(reason.contains("not claimed"), "{reason}");
        }
        other => panic!("expected unknown, got {other:#?}"),
    }
}

fn banded(n: usize) -> ControllerSpec {
    let k: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| match i.abs_diff(j) {
                    0 => 1.0 + 0.1 * (i % 3) as f64,
                    1 => 0.2,
                    _ => 0.0,
                })
                .collect()
        })
        .collect();
    spec(k, Step::Uniform(0.7))
}

#[test]
fn decomposed_over_a_clique_tree() {
    let n = 7;
    let s = banded(n);
    let tree = CliqueTree {
        cliques: (0..n - 2).map(|i| vec![i, i + 1, i + 2]).collect(),
        edges: (1..n - 2).map(|i| (i - 1, i)).collect(),
    };
    let c = certified(&s, &DriftConfig::default(), Some(&tree));
    assert_eq!(c.decomposition.kind, DecompositionKind::Cliques);
    assert_eq!(
        c.decomposition.summary,
        "decomposed over 5 cliques (sizes 3 ×5): one decrease check per clique"
    );
    let per_clique =
        c.z3.checks
            .iter()
            .filter(|k| k.name.starts_with("decrease_set_"))
            .count();
    assert_eq!(per_clique, 5);
    check_numerically(&s, &c, 2000);
    // The whole check gives a certificate too, with the same ε.
    let whole = certified(&s, &DriftConfig::default(), None);
    assert_eq!(whole.epsilon, c.epsilon);
    assert_eq!(whole.decomposition.kind, DecompositionKind::None);
}

#[test]
fn a_tree_that_does_not_cover_the_coupling_is_not_used_and_the_verdict_says_why() {
    let n = 5;
    let s = banded(n);
    // The cliques of K's own (path) pattern miss the pairs (i, i+2) that the
    // decrease condition couples through row i+1.
    let tree = CliqueTree {
        cliques: (0..n - 1).map(|i| vec![i, i + 1]).collect(),
        edges: (1..n - 1).map(|i| (i - 1, i)).collect(),
    };
    let c = certified(&s, &DriftConfig::default(), Some(&tree));
    assert_eq!(c.decomposition.kind, DecompositionKind::None);
    assert!(
        c.decomposition.summary.contains("clique tree not used"),
        "{}",
        c.decomposition.summary
    );
    assert!(
        c.decomposition.summary.contains("share no clique"),
        "{}",
        c.decomposition.summary
    );
    // The coupling pairs are what to triangulate.
    let ctrl = s.validate().unwrap();
    assert!(ctrl.coupling_pairs().contains(&(0, 2)));
    check_numerically(&s, &c, 1000);
}

#[test]
fn random_stable_controllers_are_certified_and_pass_the_numeric_check() {
    let mut rng = Rng::new(11);
    for n in [2, 3, 5, 8] {
        for _ in 0..3 {
            let mut k = vec![vec![0.0; n]; n];
            for (i, row) in k.iter_mut().enumerate() {
                row[i] = 1.0 + rng.unit();
                for j in 0..n {
                    if i != j && rng.unit() < 0.6 {
                        row[j] = (0.5 * row[i] / n as f64 * rng.unit() * 1000.0).round() / 1000.0;
                    }
                }
            }
            let steps = (0..n)
                .map(|i| 1.6 / k[i][i] * (0.3 + 0.6 * rng.unit()))
                .collect();
            let mut s = spec(k, Step::PerResource(steps));
            s.baseline_usage = Some(
                (0..n)
                    .map(|i| 3.0 * rng.unit() + if i == 0 { 0.0 } else { 1.0 })
                    .collect(),
            );
            let c = certified(&s, &DriftConfig::default(), None);
            check_numerically(&s, &c, 800);
        }
    }
}

#[test]
fn estimated_sensitivity_feeds_a_certificate() {
    let k = vec![vec![1.2, 0.3], vec![0.2, 0.8]];
    let u0 = [4.0, 3.0];
    let mut rng = Rng::new(5);
    let prices: Vec<Vec<f64>> = (0..50)
        .map(|_| vec![3.0 * rng.unit(), 3.0 * rng.unit()])
        .collect();
    let usage: Vec<Vec<f64>> = prices
        .iter()
        .map(|p| {
            (0..2)
                .map(|i| u0[i] - k[i][0] * p[0] - k[i][1] * p[1])
                .collect()
        })
        .collect();
    let est = estimate_sensitivity(&prices, &usage).unwrap();
    let round = |x: f64| (x * 1e6).round() / 1e6;
    let mut s = spec(
        est.sensitivity
            .iter()
            .map(|r| r.iter().map(|&x| round(x)).collect())
            .collect(),
        Step::Uniform(0.9),
    );
    s.baseline_usage = Some(est.baseline_usage.iter().map(|&x| round(x)).collect());
    assert_eq!(s.sensitivity, Some(k));
    let c = certified(&s, &DriftConfig::default(), None);
    check_numerically(&s, &c, 1000);
}

#[test]
fn verdicts_and_specs_serialise() {
    let json = r#"{"resources": ["cpu", "io:sda"], "capacity": [1, 2], "step": 0.5,
                   "sensitivity": [[1, 0.1], [0.2, 1]]}"#;
    let s: ControllerSpec = serde_json::from_str(json).unwrap();
    assert_eq!(s.step, Step::Uniform(0.5));
    let c = certified(&s, &DriftConfig::default(), None);
    let v = serde_json::to_value(DriftVerdict::Certified(Box::new(c))).unwrap();
    assert_eq!(v["verdict"], "certified");
    assert_eq!(v["scope"], "projected_controller");
    assert_eq!(v["p_star"], serde_json::json!(["1", "1"]));
    assert!(v["z3"]["checks"].as_array().unwrap().len() >= 4);
    let per: ControllerSpec = serde_json::from_str(&json.replace("0.5", "[0.5, 0.25]")).unwrap();
    assert_eq!(per.step, Step::PerResource(vec![0.5, 0.25]));
    let typo = json.replace("\"step\"", "\"steps\"");
    assert!(
        serde_json::from_str::<ControllerSpec>(&typo).is_err(),
        "unknown fields are refused"
    );
    let cx = counterexample(&spec(vec![vec![2.0]], Step::Uniform(1.5)));
    let v = serde_json::to_value(DriftVerdict::Counterexample(Box::new(cx))).unwrap();
    assert_eq!(v["verdict"], "counterexample");
    assert_eq!(v["trajectory"]["behaviour"], "oscillates");
    let v = serde_json::to_value(DriftVerdict::Unknown { reason: "x".into() }).unwrap();
    assert_eq!(v, serde_json::json!({"verdict": "unknown", "reason": "x"}));
}

/// The spec's K, to edit.
fn k(s: &mut ControllerSpec) -> &mut Vec<Vec<f64>> {
    s.sensitivity.as_mut().expect("the spec gives K")
}

#[test]
fn every_validation_error() {
    let good = spec(vec![vec![1.0, 0.1], vec![0.2, 1.0]], Step::Uniform(0.5));
    assert!(good.validate().is_ok());
    let err = |f: &dyn Fn(&mut ControllerSpec)| {
        let mut s = good.clone();
        f(&mut s);
        s.validate().unwrap_err()
    };

    let e = err(&|s| {
        s.resources.clear();
    });
    assert_eq!(e, SpecError::NoResources);
    let e = err(&|s| s.resources[1] = "gpu".into());
    assert!(matches!(&e, SpecError::UnknownKind { index: 1, kind, .. } if kind == "gpu"));
    assert!(
        e.to_string().contains("cpu, memory, io, network, dwell"),
        "{e}"
    );
    assert!(matches!(
        err(&|s| s.resources[0] = "io:".into()),
        SpecError::BadQualifier { index: 0, .. }
    ));
    assert!(matches!(
        err(&|s| s.resources[0] = "io:a b".into()),
        SpecError::BadQualifier { .. }
    ));
    // Qualified names: many resources of one kind, `::` inside a qualifier.
    let mut ok = good.clone();
    ok.resources = vec!["io:sda".into(), "dwell:my_crate::handle".into()];
    assert!(ok.validate().is_ok());
    let e = err(&|s| s.resources = vec!["io:sda".into(), "io:sda".into()]);
    assert_eq!(
        e,
        SpecError::DuplicateResource {
            name: "io:sda".into(),
            first: 0,
            second: 1
        }
    );
    assert_eq!(
        err(&|s| s.capacity.push(1.0)),
        SpecError::LengthMismatch {
            field: "capacity",
            found: 3,
            expected: 2
        }
    );
    assert_eq!(
        err(&|s| s.step = Step::PerResource(vec![0.5])),
        SpecError::LengthMismatch {
            field: "step",
            found: 1,
            expected: 2
        }
    );
    assert_eq!(
        err(&|s| s.baseline_usage = Some(vec![1.0])),
        SpecError::LengthMismatch {
            field: "baseline_usage",
            found: 1,
            expected: 2
        }
    );
    assert_eq!(
        err(&|s| {
            k(s).pop();
        }),
        SpecError::SensitivityRows {
            found: 1,
            expected: 2
        }
    );
    let e = err(&|s| k(s)[1].push(0.0));
    assert!(
        matches!(&e, SpecError::SensitivityRowLength { row: 1, found: 3, expected: 2, resource } if resource == "memory")
    );
    let e = err(&|s| k(s)[0][1] = -0.1);
    assert!(matches!(
        &e,
        SpecError::NegativeSensitivity { row: 0, col: 1, .. }
    ));
    assert!(e.to_string().contains("raises the usage of `cpu`"), "{e}");
    assert!(matches!(
        err(&|s| k(s)[1][1] = 0.0),
        SpecError::ZeroDiagonal { index: 1, .. }
    ));
    let e = err(&|s| k(s)[1][0] = f64::NAN);
    assert!(
        matches!(&e, SpecError::NonFinite { field: "sensitivity", location, .. } if location == "[1][0]")
    );
    assert_eq!(err(&|s| s.sensitivity = None), SpecError::NoSensitivity);
    assert!(matches!(
        err(&|s| s.capacity[0] = f64::INFINITY),
        SpecError::NonFinite {
            field: "capacity",
            ..
        }
    ));
    assert!(matches!(
        err(&|s| s.step = Step::Uniform(f64::NAN)),
        SpecError::NonFinite { field: "step", .. }
    ));
    assert!(matches!(
        err(&|s| s.step = Step::Uniform(0.0)),
        SpecError::NonPositiveStep { .. }
    ));
    assert!(matches!(
        err(&|s| s.step = Step::PerResource(vec![0.5, -1.0])),
        SpecError::NonPositiveStep { location, .. } if location == "[1]"
    ));
    assert!(matches!(
        err(&|s| s.capacity[1] = -1.0),
        SpecError::NegativeCapacity { index: 1, .. }
    ));
    assert!(matches!(
        err(&|s| s.baseline_usage = Some(vec![1.0, -2.0])),
        SpecError::NegativeBaseline { index: 1, .. }
    ));
    assert!(matches!(
        err(&|s| s.epsilon = Some(1.0)),
        SpecError::BadEpsilon { .. }
    ));
    assert!(matches!(
        err(&|s| s.epsilon = Some(0.0)),
        SpecError::BadEpsilon { .. }
    ));
    assert_eq!(
        err(&|s| s.max_iterations = Some(0)),
        SpecError::ZeroIterations
    );
    // Every message starts lowercase and has no trailing period.
    for e in [
        SpecError::NoResources,
        err(&|s| k(s)[1][1] = 0.0),
        err(&|s| s.capacity[1] = -1.0),
    ] {
        let m = e.to_string();
        let first = m.chars().find(|c| c.is_alphabetic()).unwrap();
        assert!(!m.ends_with('.') && first.is_lowercase(), "{m}");
    }
}
