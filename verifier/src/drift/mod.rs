//! Drift certificates for the price controller.
//!
//! # The model
//!
//! The kernel side updates one price per resource every period by projected
//! dual ascent (DESIGN §4 "Prices"): `p⁺ = max(0, p + a ∘ (u(p) − c))`, with
//! step sizes `a > 0`, capacities `c >= 0`, and usage linear in the prices,
//! `u(p) = u0 − K p`: `K >= 0` entrywise (a price rise never raises any
//! usage) with a positive diagonal, `u0 >= 0` the usage at zero prices. So
//! `p⁺ = max(0, A p + b)` with `A = I − diag(a) K` and `b = a ∘ (u0 − c)`.
//! A [`ControllerSpec`] is the file; [`ControllerSpec::validate`] turns it
//! into a [`Controller`] or a [`SpecError`] that says what to fix.
//! [`estimate_sensitivity`] fits `K` and `u0` to a profile's price/usage
//! series by least squares.
//!
//! **Numbers.** Every number of the file is read as the shortest decimal that
//! round-trips its `f64` (`0.1` is exactly `1/10`); the certificate is about
//! those exact rationals and exact arithmetic. The controller's own `f64`
//! rounding at run time is not covered (the margin in `ε` is far larger than
//! it, but that is an argument, not a check).
//!
//! **Default baseline.** Without `baseline_usage`, `u0 = c + K·1`, which puts
//! the equilibrium at the all-ones price vector, inside the positive orthant.
//! That is the conservative choice: at an interior equilibrium the clip at 0
//! is inactive near `p*`, so the controller is stable exactly when its linear
//! part is; an equilibrium on the boundary (say `u0 <= c`, `p* = 0`) can hide
//! a too-large step size behind the clip. A certificate with a diagonal `P`
//! does not depend on `u0` at all (see below), only `p*` does.
//!
//! **Equilibrium.** `p*` is the fixed point of the projected map, which is
//! the solution of the linear complementarity problem `p >= 0`,
//! `w = K p + (c − u0) >= 0`, `pᵀw = 0` (`a > 0` cancels). It is computed
//! exactly (Murty's least-index pivoting in rationals, warm-started from the
//! same pivoting in `f64`; when that fails, `K` not being a P-matrix, the
//! point the iteration settles at is made exact on its support and checked)
//! and z3 checks `p* = max(0, A p* + b)`. Because the centre is exact,
//! `B = 0` in every certificate: no offset is folded into `B`. (`B > 0` would
//! only certify ultimate boundedness, which a sustained oscillation also
//! satisfies; `B = 0` certifies convergence.)
//!
//! # What a certificate says
//!
//! `V(p) = (p − p*)ᵀ P (p − p*)` with `P ≻ 0` rational, and a rational
//! `ε ∈ (0, 1)`, such that `V(p⁺) − V(p) <= −ε V(p) + B` with `B = 0`, so
//! `‖p_t − p*‖_P <= (1 − ε)^{t/2} ‖p_0 − p*‖_P` from every start. The
//! [`Certificate::what_is_certified`] string states it for the instance, and
//! [`Certificate::scope`] says which map:
//!
//! - **Diagonal `P`** (tried first): z3 checks `P_ii > 0` and
//!   `M = (1 − ε)P − AᵀPA ⪰ 0`, which is `V(A x + b) <= (1 − ε) V(x)`-type
//!   decrease for the *unclipped* map. The clip carries it over: for every
//!   coordinate `|max(0, y_i) − max(0, y*_i)| <= |y_i − y*_i|`, and with
//!   `y = A p + b`, `y* = A p* + b`, `p* = max(0, y*)` and `P` diagonal,
//!   `V(p⁺) = Σ P_ii (max(0, y_i) − p*_i)² <= Σ P_ii (y_i − y*_i)² =
//!   ‖A (p − p*)‖²_P <= (1 − ε) V(p)`, for *every* `p` and for *any* fixed
//!   point `p*` (whatever `u0`). Scope: the projected controller.
//! - **Full `P`** (when no diagonal one is found): the solution of
//!   `AᵀPA − P = −I` (doubling iteration), for which the lemma above fails in
//!   general. For `n <=` [`DriftConfig::nra_max_resources`] z3 checks the
//!   clipped map directly (below) and the scope is the projected controller;
//!   otherwise the certificate covers only the unclipped linear map centred at
//!   the solution of `K p = u0 − c`, with scope
//!   [`Scope::LinearModelOnly`], which a caller must not read as a pass for
//!   the controller. A counterexample search runs first in that case.
//! - **Direct** (when no `P` makes the linear part contract, no
//!   counterexample is found and `n <=` [`DriftConfig::nra_max_resources`]):
//!   typically `ρ(A) >= 1` with the equilibrium on the boundary, where the
//!   clip does the stabilising. `P = I` (then the best diagonal `P` found)
//!   with `ε = 1/4`, then `1/64`, is checked by z3 on the clipped map alone
//!   (check 5 below). Scope: the projected controller; no decrease witness.
//!
//! The search proposes `P` (diagonal: `P = I`, `P = diag(1/a)`, the
//! M-matrix scaling `diag(y/x)` with `x = (rI − |A|)⁻¹1`, `y = (rI −
//! |A|ᵀ)⁻¹1`, the Perron scaling, then a descent on `σmax(D A D⁻¹)`); the
//! contraction `γ` of the rounded `P` is then measured by bisection on the
//! Cholesky factorability of `γP − AᵀPA`, and `ε` is taken at 3/4, 1/2, 1/4
//! or 1/20 of `1 − γ` (a requested `ε` is used as given or refused).
//!
//! # The z3 encoding
//!
//! No floating point reaches the final word. The numeric search (`f64`)
//! proposes `P` and `ε`; they are rounded to dyadic rationals (`P` to 30+
//! bits, `ε` to 8 significant bits, below `1 − γ` with a margin). The
//! witness that `M ⪰ 0` is `M = Σ_v l_v l_vᵀ + Σ_k E_k`: the `l_v` are a
//! Cholesky factor of `W M W − δI` (`W = diag(2^e_i)` balancing the
//! diagonal, so badly scaled `P` still work) rounded to multiples of `2^-r`
//! and scaled back by `W⁻¹` (exact), and each residual `E_k` satisfies
//! `w_i E_ii >= Σ_j w_j |E_ij|`: `W E_k W` is diagonally dominant, hence PSD
//! (Gershgorin), hence so is `E_k`. So `M` is a Gram matrix plus PSD
//! matrices. This is checked
//! in exact integer arithmetic first, then z3 gets, as ground formulas over
//! exact numerals asserted negated (`unsat` = holds):
//!
//! 1. `sparsity`: the entries of `A = I − diag(a)K` taken as zero are zero;
//! 2. `p_positive_*`: `P_ii > 0`, or for a full `P` the same kind of witness
//!    with strict dominance, so `P ≻ 0`;
//! 3. `decrease` (one per set of the decomposition): at every pair `(i, j)`
//!    the set owns, `(1 − ε)P_ij − Σ_k A_ki (PA)_kj = Σ_v l_vi l_vj + E_ij`
//!    with `A` built as a term from the raw `a` and `K` numerals, and each
//!    row of `E_k` dominant after the scaling `w`;
//! 4. `equilibrium`: `p*_i = ite(y_i >= 0, y_i, 0)` for `y = A p* + b`
//!    (or `linear_fixed_point`: `A p* + b = p*`);
//! 5. `projected_drift`, for `n <=` [`DriftConfig::nra_max_resources`]
//!    (default 3): the certified statement itself, refuted directly in
//!    nonlinear real arithmetic without the lemma: for each of the `2^n`
//!    clip patterns, `∃ p >= 0` in that cell with `V(p⁺) > (1 − ε) V(p)`
//!    must be unsat. Measured: nlsat takes ~0.1 s at `n = 3`, about a second
//!    at `n = 4` and times out (20 s) on some cells at `n = 5`, so the
//!    default is 3.
//!
//! The ground checks are `O(n³)` term nodes for a dense `A` (100 resources:
//! seconds). A `sat` on a ground check, or `unknown` (timeout, interrupt) on
//! any check, is never a pass: the verdict is [`DriftVerdict::Unknown`] with
//! z3's reason. Every check has a z3 timeout and, should z3 miss it, a
//! watchdog that interrupts the context.
//!
//! # Decomposition
//!
//! [`certify`] takes an optional [`CliqueTree`] (cliques over resource
//! indices and tree edges). For a diagonal `P`, `M` can be non-zero only at
//! pairs coupled through a row of `A` ([`Controller::coupling_pairs`]); when
//! the cliques cover those pairs and satisfy the running intersection
//! property, the Cholesky factor is taken in the clique tree's perfect
//! elimination order, has no fill outside the cliques, and the decrease check
//! splits into one z3 problem per clique (the pairs whose first-eliminated
//! vertex that clique owns, plus dominance of that clique's `E_k`). Without a
//! tree, independent components of the coupling graph are split the same
//! way. Soundness never rests on chordality: whatever the split, the checks
//! establish `M = Σ l lᵀ + Σ E_k` entry by entry and every `E_k` dominant.
//! Chordality is what makes such a split exist (Agler; Grone, Johnson, Sá and
//! Wolkowicz: a PSD matrix with chordal sparsity is a sum of PSD matrices
//! supported on the maximal cliques). The verdict says "decomposed over k
//! cliques (sizes ...)" or why it did not decompose.
//!
//! # Counterexamples
//!
//! When no certificate is found, start points (the dominant directions of
//! `A` around `p*`, the origin, `p*` nudged along each axis, seeded random
//! points) are simulated for `max_iterations` steps in `f64` (more, up to
//! 20 000, when `ρ(A)` is barely above 1 and divergence is slow). A run that
//! diverges, oscillates or settles at another fixed point yields `p0`: the
//! point on it where `V(p) = ‖p − p*‖²` rises most, with the rise
//! `V(p1) − V(p0) > 0` computed exactly, the summary of the run from `p0`,
//! and, when the run looks periodic, the period confirmed in exact
//! arithmetic (`p_k = p_0`). Non-convergence is shown by the `f64`
//! simulation; the verdict says so.
//!
//! Invariants: nothing here does IO; nothing prints; every verdict carries
//! its evidence.

#![expect(
    clippy::needless_range_loop,
    reason = "matrix code reads best with explicit row and column indices"
)]

mod cert;
mod cover;
mod dense;
mod estimate;
mod exact;
mod search;
mod simulate;
mod smt;
mod spec;
mod verdict;

use std::time::Instant;

use num_traits::Signed;
use serde::{Deserialize, Serialize};

pub use cover::{CliqueTree, DecompositionKind};
pub use estimate::{EstimateError, SensitivityEstimate, estimate_sensitivity};
pub use spec::{
    Controller, ControllerSpec, DEFAULT_MAX_ITERATIONS, Resource, ResourceKind, SpecError, Step,
};
pub use verdict::{
    Behaviour, Certificate, Counterexample, Decomposition, DriftVerdict, PShape, PsdWitnessOut,
    Scope, Trajectory, Witness, Z3Check, Z3Report,
};

use cert::{CertFailure, ExactCert, PsdWitness};
use cover::CoverPlan;
use exact::Q;
use search::Candidate;
use smt::Outcome;

/// Which Lyapunov matrices the search may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LyapunovSearch {
    /// Diagonal first, then full.
    #[default]
    Auto,
    /// Diagonal only.
    DiagonalOnly,
    /// Full only (skips the diagonal search; mostly for tests).
    FullOnly,
}

/// Knobs of the check that are not part of the controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DriftConfig {
    /// Which `P` to search for.
    pub search: LyapunovSearch,
    /// Up to this many resources, z3 also checks the clipped map directly
    /// in nonlinear arithmetic (`2^n` cells).
    pub nra_max_resources: usize,
    /// Time budget of that direct check, all cells together.
    pub nra_timeout_ms: u64,
    /// Timeout of each ground (exact arithmetic) z3 check.
    pub z3_timeout_ms: u64,
    /// Seed of the counterexample start-point search.
    pub seed: u64,
}

impl Default for DriftConfig {
    fn default() -> DriftConfig {
        DriftConfig {
            search: LyapunovSearch::Auto,
            nra_max_resources: 3,
            nra_timeout_ms: 10_000,
            z3_timeout_ms: 120_000,
            seed: 0x5eed_d21f,
        }
    }
}

/// Certifies the controller, or finds a counterexample, or says why neither.
///
/// `tree`: a clique tree over resource indices for the coupling graph
/// ([`Controller::coupling_pairs`]), used to split the exact check when it
/// covers the pattern the check needs.
pub fn certify(ctrl: &Controller, tree: Option<&CliqueTree>, cfg: &DriftConfig) -> DriftVerdict {
    let a_f = ctrl.iteration_matrix();
    let rho = dense::spectral_radius(&a_f);
    let p_star = equilibrium(ctrl).or_else(|| equilibrium_by_simulation(ctrl, cfg.seed));
    let mut notes: Vec<String> = Vec::new();

    let mut cands: Vec<Candidate> = Vec::new();
    let mut best_diagonal = None;
    if cfg.search != LyapunovSearch::FullOnly {
        // Any P has γ >= ρ(A)²: with ρ(A) estimated above 1, only the cheap
        // starting points are tried, not the descent.
        let c = search::diagonal(&a_f, &ctrl.step, rho < 1.0 + 1e-6);
        if c.gamma < 1.0 {
            cands.push(c);
        } else {
            best_diagonal = Some(c.clone());
            notes.push(format!(
                "no diagonal Lyapunov function found (the best diagonal P found lets V grow by a factor {:.6} per step)",
                c.gamma
            ));
        }
    }
    if cfg.search != LyapunovSearch::DiagonalOnly {
        match search::full(&a_f) {
            Some(c) => cands.push(c),
            None => notes.push(format!(
                "no full Lyapunov function: ρ(A) ≈ {rho:.6}, and AᵀPA − P = −I has no positive definite solution"
            )),
        }
    }

    let mut linear_only = None;
    for cand in &cands {
        match attempt(ctrl, cand, p_star.as_deref(), tree, cfg, rho, &mut notes) {
            Attempt::Done(v) => return v,
            Attempt::LinearOnly(v) => {
                linear_only.get_or_insert(v);
            }
            Attempt::Failed => {}
        }
    }

    if let Some(cx) = counterexample(ctrl, p_star.as_deref(), cfg, rho, &notes) {
        return DriftVerdict::Counterexample(Box::new(cx));
    }
    if let Some(v) = linear_only {
        return v;
    }
    if cands.is_empty()
        && let Some(v) = direct_attempt(
            ctrl,
            p_star.as_deref(),
            best_diagonal.as_ref(),
            cfg,
            rho,
            &mut notes,
        )
    {
        return v;
    }
    if p_star.is_none() {
        notes.push("no equilibrium was found exactly (neither by complementarity pivoting nor by settling the iteration; K may not be a P-matrix)".into());
    }
    notes.push(format!(
        "no start point tried (seed {:#x}) gave an iteration that fails to converge within {} steps, so there is no counterexample either",
        cfg.seed,
        simulation_steps(ctrl, rho)
    ));
    DriftVerdict::Unknown {
        reason: notes.join("; "),
    }
}

enum Attempt {
    Done(DriftVerdict),
    LinearOnly(DriftVerdict),
    Failed,
}

fn attempt(
    ctrl: &Controller,
    cand: &Candidate,
    p_star: Option<&[Q]>,
    tree: Option<&CliqueTree>,
    cfg: &DriftConfig,
    rho: f64,
    notes: &mut Vec<String>,
) -> Attempt {
    let n = ctrl.len();
    let ex = &ctrl.exact;
    let names = ctrl.names();
    let shape = if cand.diagonal { "diagonal" } else { "full" };
    let plan = if cand.diagonal {
        let pattern = cert::diagonal_pattern(&ex.a);
        match tree {
            Some(t) => CoverPlan::from_tree(n, t, &pattern, &names).unwrap_or_else(|why| {
                let mut p = CoverPlan::components(n, &pattern, "the clique tree could not be used");
                p.summary = format!("{}; clique tree not used: {why}", p.summary);
                p
            }),
            None => CoverPlan::components(n, &pattern, "no clique tree was given"),
        }
    } else {
        CoverPlan::single(
            n,
            "not decomposed: P is full, so (1 − ε)P − AᵀPA is dense".into(),
        )
    };
    let built = match cert::build(&ex.a, cand, ex.epsilon.as_ref(), &plan) {
        Ok(c) => c,
        Err(CertFailure::Cover(why)) => {
            let single = CoverPlan::single(n, format!("not decomposed: {why}"));
            match cert::build(&ex.a, cand, ex.epsilon.as_ref(), &single) {
                Ok(c) => c,
                Err(CertFailure::Cover(s) | CertFailure::Margin(s)) => {
                    notes.push(format!("{shape} Lyapunov function: {s}"));
                    return Attempt::Failed;
                }
            }
        }
        Err(CertFailure::Margin(s)) => {
            notes.push(format!("{shape} Lyapunov function: {s}"));
            return Attempt::Failed;
        }
    };

    let nra_ok = n <= cfg.nra_max_resources;
    let limits = smt::Limits {
        ground_timeout_ms: cfg.z3_timeout_ms,
        nra_timeout_ms: cfg.nra_timeout_ms,
    };
    if cand.diagonal || (nra_ok && p_star.is_some()) {
        let Some(ps) = p_star else {
            return Attempt::Done(DriftVerdict::Unknown {
                reason: "a diagonal Lyapunov function was found, but the equilibrium could not be computed exactly (the complementarity pivoting did not finish), so there is no centre to certify".into(),
            });
        };
        let t0 = Instant::now();
        let mut log = Vec::new();
        let out = smt::check_certificate(ex, &built, ps, true, nra_ok, limits, &mut log);
        let report = Z3Report {
            checks: log,
            time_ms: t0.elapsed().as_secs_f64() * 1e3,
        };
        match out {
            Outcome::Holds => {
                let text = statement(ctrl, &built, Scope::ProjectedController, nra_ok, cfg, None);
                return Attempt::Done(certified(
                    ctrl,
                    &built,
                    ps,
                    Scope::ProjectedController,
                    text,
                    report,
                    rho,
                ));
            }
            Outcome::Unknown(reason) => {
                return Attempt::Done(DriftVerdict::Unknown {
                    reason: format!(
                        "{reason}; the {shape} Lyapunov certificate is therefore not claimed"
                    ),
                });
            }
            Outcome::Refuted(Some(point)) => {
                // The direct check of the clipped map found a point where V
                // rises. For a diagonal P the lemma rules this out.
                if cand.diagonal {
                    return Attempt::Done(DriftVerdict::Unknown {
                        reason: format!(
                            "internal inconsistency: z3 found p = {:?} where the diagonal certificate's V rises on the clipped map, which the projection lemma excludes; refusing to certify",
                            point.iter().map(exact::to_f64).collect::<Vec<_>>()
                        ),
                    });
                }
                if let Some(cx) = counterexample_from(
                    ctrl,
                    Some(ps),
                    &[point.iter().map(exact::to_f64).collect()],
                    cfg,
                    rho,
                    notes,
                ) {
                    return Attempt::Done(DriftVerdict::Counterexample(Box::new(cx)));
                }
                let why = format!(
                    "z3 found a price vector p ≈ {:?} where this V rises on the clipped map (the iteration from it still converges in simulation)",
                    point.iter().map(exact::to_f64).collect::<Vec<_>>()
                );
                notes.push(format!("full Lyapunov function: {why}"));
                return linear_attempt(ctrl, &built, limits, cfg, rho, Some(why));
            }
            Outcome::Refuted(None) => {
                let name = report
                    .checks
                    .last()
                    .map(|c| c.name.clone())
                    .unwrap_or_default();
                return Attempt::Done(DriftVerdict::Unknown {
                    reason: format!(
                        "z3 refuted check `{name}` which exact arithmetic had accepted; refusing to certify (internal error, please report)"
                    ),
                });
            }
        }
    }
    let why = if nra_ok {
        None
    } else {
        Some(format!(
            "n = {n} is above the limit ({}) for checking the clipped map directly in nonlinear arithmetic",
            cfg.nra_max_resources
        ))
    };
    linear_attempt(ctrl, &built, limits, cfg, rho, why)
}

/// Certifies the unclipped linear map with a full `P`, centred at the
/// solution of `K p = u0 − c`.
fn linear_attempt(
    ctrl: &Controller,
    built: &ExactCert,
    limits: smt::Limits,
    cfg: &DriftConfig,
    rho: f64,
    why: Option<String>,
) -> Attempt {
    let ex = &ctrl.exact;
    let rhs: Vec<Q> = ex
        .baseline
        .iter()
        .zip(&ex.capacity)
        .map(|(u, c)| u - c)
        .collect();
    let Some(center) = exact::solve(&ex.k, &rhs) else {
        return Attempt::Failed;
    };
    let t0 = Instant::now();
    let mut log = Vec::new();
    let out = smt::check_certificate(ex, built, &center, false, false, limits, &mut log);
    let report = Z3Report {
        checks: log,
        time_ms: t0.elapsed().as_secs_f64() * 1e3,
    };
    match out {
        Outcome::Holds => {
            let text = statement(ctrl, built, Scope::LinearModelOnly, false, cfg, why.as_deref());
            Attempt::LinearOnly(certified(ctrl, built, &center, Scope::LinearModelOnly, text, report, rho))
        }
        Outcome::Unknown(reason) => Attempt::Done(DriftVerdict::Unknown {
            reason: format!("{reason}; the linear-model certificate is therefore not claimed"),
        }),
        Outcome::Refuted(_) => Attempt::Done(DriftVerdict::Unknown {
            reason: "z3 refuted a linear-model check which exact arithmetic had accepted; refusing to certify (internal error, please report)".into(),
        }),
    }
}

/// For small `n`, when no `P` makes the linear part contract (typically
/// `ρ(A) >= 1` with the equilibrium on the boundary, where the clip does the
/// stabilising): try `V = ‖p − p*‖²_P` for `P = I` and the best diagonal `P`
/// found, with `ε = 1/4` and `1/64`, directly on the clipped map in z3.
fn direct_attempt(
    ctrl: &Controller,
    p_star: Option<&[Q]>,
    diagonal: Option<&Candidate>,
    cfg: &DriftConfig,
    rho: f64,
    notes: &mut Vec<String>,
) -> Option<DriftVerdict> {
    let n = ctrl.len();
    let ps = p_star?;
    if n > cfg.nra_max_resources {
        return None;
    }
    let identity: Vec<Vec<Q>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| Q::from_integer(u8::from(i == j).into()))
                .collect()
        })
        .collect();
    let mut ps_list = vec![identity];
    if let Some(c) = diagonal {
        let (p, _, _) = cert::rationalise_p(c);
        if p != ps_list[0] {
            ps_list.push(p);
        }
    }
    let limits = smt::Limits {
        ground_timeout_ms: cfg.z3_timeout_ms,
        nra_timeout_ms: cfg.nra_timeout_ms,
    };
    let eps_list: Vec<Q> = match &ctrl.exact.epsilon {
        Some(e) => vec![e.clone()],
        None => vec![Q::new(1.into(), 4.into()), Q::new(1.into(), 64.into())],
    };
    for p in &ps_list {
        for eps in &eps_list {
            let t0 = Instant::now();
            let mut log = Vec::new();
            match smt::check_direct(&ctrl.exact, p, eps, ps, limits, &mut log) {
                Outcome::Holds => {
                    let report = Z3Report {
                        checks: log,
                        time_ms: t0.elapsed().as_secs_f64() * 1e3,
                    };
                    let names = ctrl.names();
                    let what = format!(
                        "For the controller p⁺ = max(0, p + a∘(u0 − K p − c)) over [{}], a, K, c, u0 being the exact rationals of the controller file (each number read as the shortest decimal that round-trips its f64): for every price vector p >= 0, V(p) = (p − p*)ᵀP(p − p*) with the diagonal P > 0 below satisfies V(p⁺) − V(p) <= −ε·V(p) + B with ε = {} and B = 0, where p* is the exact equilibrium (p* = max(0, A p* + b)). The linear part alone does not contract V (ρ(A) ≈ {rho:.6}); the clip at 0 is what makes this controller converge, so the certificate rests entirely on z3's direct refutation, in nonlinear real arithmetic and cell by clip cell, of ∃ p >= 0 with V(p⁺) > (1 − ε)V(p) (done for n <= {}); z3 also checked P's diagonal positive and the fixed point, in exact rational arithmetic. Not covered: the controller's own floating-point rounding.",
                        names.join(", "),
                        exact::q_string(eps),
                        cfg.nra_max_resources
                    );
                    return Some(DriftVerdict::Certified(Box::new(Certificate {
                        scope: Scope::ProjectedController,
                        what_is_certified: what,
                        resources: names,
                        p_shape: PShape::Diagonal,
                        p_matrix: p.iter().map(|r| strings(r)).collect(),
                        epsilon: exact::q_string(eps),
                        epsilon_approx: exact::to_f64(eps),
                        b: "0".into(),
                        p_star: strings(ps),
                        p_star_approx: ps.iter().map(exact::to_f64).collect(),
                        spectral_radius_estimate: rho,
                        decomposition: Decomposition {
                            kind: DecompositionKind::None,
                            sets: vec![ctrl.names()],
                            summary: "not decomposed: checked directly on the clipped map".into(),
                        },
                        z3: report,
                        witness: Witness {
                            decrease: None,
                            p_positive: None,
                        },
                    })));
                }
                Outcome::Unknown(reason) => {
                    notes.push(format!("direct check of the clipped map: {reason}"));
                    return None;
                }
                Outcome::Refuted(_) => {}
            }
        }
    }
    notes.push(
        "z3 refuted V = (p − p*)ᵀP(p − p*) directly on the clipped map for P = I and the best diagonal P, with the decay rates tried".into(),
    );
    None
}

/// Simulation length: the file's `max_iterations`, longer when `ρ(A)` is
/// barely above 1 (so that a slow divergence has time to show), at most
/// 20 000 steps.
fn simulation_steps(ctrl: &Controller, rho: f64) -> usize {
    if rho > 1.0 && rho.is_finite() {
        let slow = (8.0 / rho.ln()).ceil().min(20_000.0) as usize;
        ctrl.max_iterations.max(slow)
    } else {
        ctrl.max_iterations
    }
}

/// When pivoting fails (`K` not a P-matrix, so there may be several
/// equilibria or none): let the iteration settle from a few starts and make
/// the point it settles at exact (solve on its support, check
/// complementarity exactly).
fn equilibrium_by_simulation(ctrl: &Controller, seed: u64) -> Option<Vec<Q>> {
    let n = ctrl.len();
    let ex = &ctrl.exact;
    let (a_f, b_f) = (ctrl.iteration_matrix(), ctrl.offset());
    let q: Vec<Q> = ex
        .capacity
        .iter()
        .zip(&ex.baseline)
        .map(|(c, u)| c - u)
        .collect();
    let mut rng = simulate::Rng::new(seed ^ 0x0e9a_11b1);
    let mut starts = vec![vec![0.0; n], vec![1.0; n]];
    for _ in 0..4 {
        starts.push((0..n).map(|_| 3.0 * rng.unit()).collect());
    }
    for s in starts {
        let traj = simulate::simulate(&a_f, &b_f, &s, 10 * ctrl.max_iterations);
        let [.., prev, last] = traj.as_slice() else {
            continue;
        };
        let scale = 1.0 + dense::norm(last);
        let settled = last
            .iter()
            .zip(prev)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f64, f64::max);
        if settled.is_nan() || settled > 1e-12 * scale {
            continue;
        }
        let basis: Vec<bool> = last.iter().map(|v| *v > 1e-9 * scale).collect();
        if let Some(p) = exact::lcp(&ex.k, &q, &basis, n) {
            return Some(p);
        }
    }
    None
}

/// The exact equilibrium of the projected map (the LCP solution).
fn equilibrium(ctrl: &Controller) -> Option<Vec<Q>> {
    let n = ctrl.len();
    let ex = &ctrl.exact;
    let q_f: Vec<f64> = (0..n)
        .map(|i| ctrl.capacity[i] - ctrl.baseline_usage[i])
        .collect();
    let start =
        exact::lcp_f64(&ctrl.sensitivity, &q_f, 10 * n + 50).unwrap_or_else(|| vec![true; n]);
    let q: Vec<Q> = ex
        .capacity
        .iter()
        .zip(&ex.baseline)
        .map(|(c, u)| c - u)
        .collect();
    exact::lcp(&ex.k, &q, &start, 2 * n + 20)
}

fn strings(v: &[Q]) -> Vec<String> {
    v.iter().map(exact::q_string).collect()
}

fn witness_out(w: &PsdWitness) -> PsdWitnessOut {
    PsdWitnessOut {
        bits: w.bits,
        columns: w
            .columns
            .iter()
            .map(|(v, e)| (*v, e.iter().map(|(i, x)| (*i, x.to_string())).collect()))
            .collect(),
        residual: w
            .residual
            .iter()
            .map(|r| {
                r.iter()
                    .map(|(&(i, j), x)| (i, j, exact::q_string(x)))
                    .collect()
            })
            .collect(),
        weights: w.weights.clone(),
        strict: w.strict,
    }
}

fn certified(
    ctrl: &Controller,
    c: &ExactCert,
    center: &[Q],
    scope: Scope,
    what_is_certified: String,
    z3: Z3Report,
    rho: f64,
) -> DriftVerdict {
    let names = ctrl.names();
    DriftVerdict::Certified(Box::new(Certificate {
        scope,
        what_is_certified,
        resources: names.clone(),
        p_shape: if c.diagonal {
            PShape::Diagonal
        } else {
            PShape::Full
        },
        p_matrix: c.p.iter().map(|r| strings(r)).collect(),
        epsilon: exact::q_string(&c.eps),
        epsilon_approx: exact::to_f64(&c.eps),
        b: "0".into(),
        p_star: strings(center),
        p_star_approx: center.iter().map(exact::to_f64).collect(),
        spectral_radius_estimate: rho,
        decomposition: Decomposition {
            kind: c.plan.kind,
            sets: c
                .plan
                .sets
                .iter()
                .map(|s| s.iter().map(|&i| names[i].clone()).collect())
                .collect(),
            summary: c.plan.summary.clone(),
        },
        z3,
        witness: Witness {
            decrease: Some(witness_out(&c.decrease)),
            p_positive: c.positivity.as_ref().map(witness_out),
        },
    }))
}

fn statement(
    ctrl: &Controller,
    c: &ExactCert,
    scope: Scope,
    nra: bool,
    cfg: &DriftConfig,
    why_linear: Option<&str>,
) -> String {
    let names = ctrl.names().join(", ");
    let eps = exact::q_string(&c.eps);
    let data = format!(
        "a, K, c, u0 being the exact rationals of the controller file (each number read as the shortest decimal that round-trips its f64{})",
        if ctrl.baseline_defaulted {
            "; u0 defaulted to c + K·1, so p* = 1"
        } else {
            ""
        }
    );
    let nra_note = if nra {
        format!(
            " z3 also refuted the statement directly on the clipped map in nonlinear real arithmetic (∃ p >= 0 with V(p⁺) > (1 − ε)V(p), per clip cell: unsat), which it does for n <= {}.",
            cfg.nra_max_resources
        )
    } else {
        format!(
            " The direct nonlinear-arithmetic check of the clipped map runs only for n <= {} (nlsat does not finish in time beyond that).",
            cfg.nra_max_resources
        )
    };
    match (scope, c.diagonal) {
        (Scope::ProjectedController, true) => format!(
            "For the controller p⁺ = max(0, p + a∘(u0 − K p − c)) over [{names}], {data}: for every price vector p >= 0 (indeed every p in ℝⁿ), V(p) = (p − p*)ᵀP(p − p*) with the diagonal P > 0 below satisfies V(p⁺) − V(p) <= −ε·V(p) + B with ε = {eps} and B = 0, where p* is the exact equilibrium (p* = max(0, A p* + b), A = I − diag(a)K, b = a∘(u0 − c)). Hence ‖p_t − p*‖_P <= (1 − ε)^(t/2)·‖p_0 − p*‖_P: the iteration converges geometrically to p* from every start. Checked by z3 in exact rational arithmetic: P's diagonal is positive; (1 − ε)P − AᵀPA = Σ l lᵀ + Σ E_k with every E_k diagonally dominant after a power-of-two diagonal scaling, hence PSD; p* is a fixed point. The clip is handled by the lemma that max(0, ·) is 1-Lipschitz in each coordinate, so with P diagonal V(p⁺) <= ‖A(p − p*)‖²_P.{nra_note} Not covered: the controller's own floating-point rounding."
        ),
        (Scope::ProjectedController, false) => format!(
            "For the controller p⁺ = max(0, p + a∘(u0 − K p − c)) over [{names}], {data}: for every price vector p >= 0, V(p) = (p − p*)ᵀP(p − p*) with the full P > 0 below satisfies V(p⁺) − V(p) <= −ε·V(p) + B with ε = {eps} and B = 0, where p* is the exact equilibrium (p* = max(0, A p* + b)). Hence the iteration converges geometrically to p* from every start p >= 0. No diagonal Lyapunov function was found, so the clip is not handled by a lemma: z3 refuted ∃ p >= 0 with V(p⁺) > (1 − ε)V(p) directly on the clipped map, in nonlinear real arithmetic, cell by clip cell; it also checked P > 0 (Σ l lᵀ + strictly dominant E), (1 − ε)P − AᵀPA ⪰ 0 and the fixed point, all in exact rational arithmetic. Not covered: the controller's own floating-point rounding."
        ),
        (Scope::LinearModelOnly, _) => format!(
            "NOT a certificate for the controller as it runs. Only the unclipped linear map p⁺ = A p + b = p + a∘(u0 − K p − c) over [{names}], {data}, is certified: for every p in ℝⁿ, V(p) = (p − p*)ᵀP(p − p*) with the full P > 0 below satisfies V(p⁺) − V(p) <= −ε·V(p) + B with ε = {eps} and B = 0, where p* solves K p* = u0 − c (z3 checked A p* + b = p*; p* may have negative entries). The controller clips prices at 0; no diagonal Lyapunov function was found, and a full P does not survive the clip in general{}. z3 checked P > 0 and (1 − ε)P − AᵀPA ⪰ 0 in exact rational arithmetic.",
            why_linear.map(|w| format!(" ({w})")).unwrap_or_default()
        ),
    }
}

/// Searches start points for an iteration that does not converge to `p*`.
fn counterexample(
    ctrl: &Controller,
    p_star: Option<&[Q]>,
    cfg: &DriftConfig,
    rho: f64,
    notes: &[String],
) -> Option<Counterexample> {
    let ps_f: Vec<f64> = match p_star {
        Some(p) => p.iter().map(exact::to_f64).collect(),
        None => vec![0.0; ctrl.len()],
    };
    let starts = simulate::start_points(&ctrl.iteration_matrix(), &ps_f, cfg.seed);
    counterexample_from(ctrl, p_star, &starts, cfg, rho, notes)
}

fn counterexample_from(
    ctrl: &Controller,
    p_star: Option<&[Q]>,
    starts: &[Vec<f64>],
    cfg: &DriftConfig,
    rho: f64,
    notes: &[String],
) -> Option<Counterexample> {
    let a_f = ctrl.iteration_matrix();
    let b_f = ctrl.offset();
    let steps = simulation_steps(ctrl, rho);
    let ps_f: Vec<f64> = match p_star {
        Some(p) => p.iter().map(exact::to_f64).collect(),
        None => vec![0.0; ctrl.len()],
    };
    let rank = |b: Behaviour| match b {
        Behaviour::Diverges => 3,
        Behaviour::Oscillates => 2,
        // Without a known equilibrium, settling somewhere proves nothing.
        Behaviour::ConvergesElsewhere if p_star.is_some() => 1,
        _ => 0,
    };
    let mut best: Option<(u8, Vec<Vec<f64>>)> = None;
    for s in starts {
        let traj = simulate::simulate(&a_f, &b_f, s, steps);
        let r = rank(simulate::classify(&traj, &ps_f).behaviour);
        if r > best.as_ref().map_or(0, |b| b.0) {
            best = Some((r, traj));
            if r == 3 {
                break;
            }
        }
    }
    let (_, traj) = best?;

    // p0: the point of the run where ‖p − p*‖² rises most, if that rise is
    // positive in exact arithmetic and the run from it still fails.
    let ex = &ctrl.exact;
    let identity: Vec<Vec<Q>> = (0..ctrl.len())
        .map(|i| {
            (0..ctrl.len())
                .map(|j| Q::from_integer(u8::from(i == j).into()))
                .collect()
        })
        .collect();
    let dist2 = |p: &[f64]| {
        p.iter()
            .zip(&ps_f)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
    };
    let finite_len = traj
        .iter()
        .take_while(|p| p.iter().all(|v| v.is_finite() && v.abs() < 1e150))
        .count();
    let mut order: Vec<usize> = (0..finite_len.saturating_sub(1)).collect();
    order.sort_by(|&s, &t| {
        let ds = dist2(&traj[s + 1]) - dist2(&traj[s]);
        let dt = dist2(&traj[t + 1]) - dist2(&traj[t]);
        dt.total_cmp(&ds)
    });
    order.truncate(12);
    order.push(0);
    for t in order {
        let p0_f = &traj[t];
        let run = simulate::simulate(&a_f, &b_f, p0_f, steps);
        let mut summary = simulate::classify(&run, &ps_f);
        if rank(summary.behaviour) == 0 {
            continue;
        }
        let p0: Vec<Q> = p0_f.iter().map(|&x| exact::exact_binary(x)).collect();
        let p1 = exact::step(&ex.a, &ex.b, &p0);
        let drift =
            p_star.map(|ps| exact::quad(&identity, &p1, ps) - exact::quad(&identity, &p0, ps));
        if let Some(d) = &drift
            && !d.is_positive()
        {
            continue;
        }
        if let Some(k) = summary.period {
            let mut p = p0.clone();
            for _ in 0..k {
                p = exact::step(&ex.a, &ex.b, &p);
            }
            if p == p0 {
                summary.exact_cycle = Some(k);
            }
        }
        let target = if p_star.is_some() {
            "approaching p*"
        } else {
            "settling at any equilibrium"
        };
        let what = match summary.behaviour {
            Behaviour::Diverges if p_star.is_some() => {
                "diverges: its distance to p* grows without bound".to_owned()
            }
            Behaviour::Diverges => "diverges: the prices grow without bound".to_owned(),
            Behaviour::Oscillates => match (summary.exact_cycle, summary.period) {
                (Some(k), _) => format!(
                    "oscillates in a cycle of period {k} (p_{k} = p_0 exactly), never {target}"
                ),
                (None, Some(k)) => {
                    format!("oscillates in an (f64) cycle of period {k}, never {target}")
                }
                _ => format!("oscillates without {target}"),
            },
            _ => format!(
                "settles at another fixed point (≈ {:?}), not at p*: the equilibrium is not unique",
                run.last().cloned().unwrap_or_default()
            ),
        };
        let consequence = match (summary.behaviour, p_star.is_some()) {
            (Behaviour::Diverges, _) => {
                "so no certificate ΔV <= −εV + B exists for any radially unbounded V and any B"
            }
            (_, true) => {
                "so no certificate ΔV <= −εV with B = 0 exists for any positive definite V centred at p*"
            }
            (_, false) => "so the controller converges to no equilibrium from p0",
        };
        let cause = if rho >= 1.0 {
            format!("ρ(A) ≈ {rho:.6} >= 1 (A = I − diag(a)K; in the scalar case a·K > 2)")
        } else if notes.is_empty() {
            "no Lyapunov function was found".to_owned()
        } else {
            notes.join("; ")
        };
        let drift_note = match &drift {
            Some(d) => format!(
                "V(p) = ‖p − p*‖² rises by {} in the first step (exact); ",
                exact::to_f64(d)
            ),
            None => "no equilibrium was found exactly, so no drift is reported; ".to_owned(),
        };
        return Some(Counterexample {
            resources: ctrl.names(),
            p0: strings(&p0),
            p0_approx: p0_f.clone(),
            p1: strings(&p1),
            p_star: p_star.map(strings),
            p_star_approx: ps_f.clone(),
            lyapunov: "V(p) = (p − p*)ᵀ(p − p*)".into(),
            drift_approx: drift.as_ref().map(exact::to_f64),
            drift: drift.as_ref().map(exact::q_string),
            trajectory: summary,
            spectral_radius_estimate: rho,
            seed: cfg.seed,
            reason: format!(
                "{cause}. {drift_note}the iteration from p0, simulated in f64 for {steps} steps, {what}, {consequence}"
            ),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(k: Vec<Vec<f64>>, step: Step) -> ControllerSpec {
        let n = k.len();
        let kinds = ["cpu", "memory", "io", "network", "dwell"];
        ControllerSpec {
            resources: (0..n).map(|i| format!("{}:r{i}", kinds[i % 5])).collect(),
            capacity: vec![1.0; n],
            step,
            sensitivity: Some(k),
            baseline_usage: None,
            epsilon: None,
            max_iterations: None,
        }
    }

    #[test]
    fn scalar_stable_and_unstable() {
        let ok = spec(vec![vec![2.0]], Step::Uniform(0.5))
            .validate()
            .unwrap();
        let v = certify(&ok, None, &DriftConfig::default());
        let c = v.certificate().unwrap_or_else(|| panic!("{v:?}"));
        assert_eq!(c.scope, Scope::ProjectedController);
        assert_eq!(c.p_star, vec!["1"]);
        let bad = spec(vec![vec![2.0]], Step::Uniform(1.2))
            .validate()
            .unwrap();
        let v = certify(&bad, None, &DriftConfig::default());
        let cx = v.counterexample().unwrap_or_else(|| panic!("{v:?}"));
        assert_eq!(cx.trajectory.behaviour, Behaviour::Oscillates);
        assert_eq!(cx.trajectory.exact_cycle, Some(2));
    }

    #[test]
    fn equilibrium_on_the_boundary() {
        // u0 below capacity for resource 1: its price settles at 0.
        let mut s = spec(vec![vec![1.0, 0.5], vec![0.5, 1.0]], Step::Uniform(0.5));
        s.baseline_usage = Some(vec![3.0, 0.5]);
        let c = s.validate().unwrap();
        let p = equilibrium(&c).unwrap();
        assert_eq!(strings(&p), vec!["2", "0"]);
    }
}
