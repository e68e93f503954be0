//! The answer: a certificate, a counterexample, or "unknown" with the
//! reason. Machine-readable (serde), never a bare boolean. Exact numbers are
//! strings `"n/d"` (or `"n"`); `*_approx` fields are the nearest `f64`, for
//! people and plots only.

use serde::Serialize;

use super::cover::DecompositionKind;

/// The verifier's answer about the price controller.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum DriftVerdict {
    /// A Lyapunov function, checked by z3 in exact arithmetic.
    Certified(Box<Certificate>),
    /// A price vector whose drift is positive and whose iteration does not
    /// converge to the equilibrium.
    Counterexample(Box<Counterexample>),
    /// Neither could be established; never a pass.
    Unknown {
        /// What was tried and why it did not conclude.
        reason: String,
    },
}

impl DriftVerdict {
    /// The certificate, if any.
    pub fn certificate(&self) -> Option<&Certificate> {
        match self {
            DriftVerdict::Certified(c) => Some(c),
            _ => None,
        }
    }

    /// The counterexample, if any.
    pub fn counterexample(&self) -> Option<&Counterexample> {
        match self {
            DriftVerdict::Counterexample(c) => Some(c),
            _ => None,
        }
    }
}

/// Which map the certificate is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The controller as it runs: `p⁺ = max(0, A p + b)`.
    ProjectedController,
    /// Only the unprojected linear map `p⁺ = A p + b` (the clip at 0 is not
    /// covered); a caller that needs the controller certified must not treat
    /// this as a pass.
    LinearModelOnly,
}

/// Shape of `P`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PShape {
    /// Diagonal.
    Diagonal,
    /// Full symmetric.
    Full,
}

/// A checked quadratic Lyapunov certificate `V(p) = (p − p*)ᵀ P (p − p*)`
/// with `V(p⁺) − V(p) <= −ε V(p) + B`.
#[derive(Clone, Debug, Serialize)]
pub struct Certificate {
    /// Which map is certified.
    pub scope: Scope,
    /// The certified statement, in words and symbols.
    pub what_is_certified: String,
    /// Resource names, the order of every vector and matrix here.
    pub resources: Vec<String>,
    /// Shape of `P`.
    pub p_shape: PShape,
    /// `P`, exact.
    pub p_matrix: Vec<Vec<String>>,
    /// `ε`, exact.
    pub epsilon: String,
    /// `ε` as `f64`.
    pub epsilon_approx: f64,
    /// `B`, exact (always `"0"`: the centre is the exact equilibrium).
    pub b: String,
    /// The centre `p*`, exact.
    pub p_star: Vec<String>,
    /// `p*` as `f64`.
    pub p_star_approx: Vec<f64>,
    /// `f64` estimate of `ρ(A)`, `A = I − diag(a)K`, for people.
    pub spectral_radius_estimate: f64,
    /// How the decrease check was split.
    pub decomposition: Decomposition,
    /// The z3 checks that establish the statement.
    pub z3: Z3Report,
    /// The data a caller needs to re-check the decrease condition.
    pub witness: Witness,
}

/// How the decrease check was split, in words and sets.
#[derive(Clone, Debug, Serialize)]
pub struct Decomposition {
    /// None, components or cliques.
    pub kind: DecompositionKind,
    /// The sets checked separately, by resource name.
    pub sets: Vec<Vec<String>>,
    /// `"decomposed over k cliques (sizes ...)"` or why it did not decompose.
    pub summary: String,
}

/// z3's part.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Z3Report {
    /// Every check run, in order.
    pub checks: Vec<Z3Check>,
    /// Wall time of all checks, building the formulas included.
    pub time_ms: f64,
}

/// One z3 query (or, for `projected_drift`, one batch of clip cells).
#[derive(Clone, Debug, Serialize)]
pub struct Z3Check {
    /// `sparsity`, `p_positive_*`, `decrease[_set_k]`, `equilibrium`,
    /// `linear_fixed_point`, `projected_drift`.
    pub name: String,
    /// `unsat` (the claim holds), `sat` or `unknown`.
    pub result: String,
    /// Conjuncts asserted (negated), or cells for `projected_drift`.
    pub claims: usize,
    /// Time to build the formula.
    pub build_ms: f64,
    /// Time z3 took.
    pub check_ms: f64,
}

/// The decomposition `(1−ε)P − AᵀPA = Σ_v l_v l_vᵀ + Σ_k E_k` (each `E_k`
/// diagonally dominant), and for a full `P` the same for `P` itself.
#[derive(Clone, Debug, Serialize)]
pub struct Witness {
    /// The decrease matrix (absent for a certificate checked only directly
    /// on the clipped map).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decrease: Option<PsdWitnessOut>,
    /// `P ≻ 0` for a full `P`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_positive: Option<PsdWitnessOut>,
}

/// One PSD witness.
#[derive(Clone, Debug, Serialize)]
pub struct PsdWitnessOut {
    /// Factor entries are integers times `2^-bits`.
    pub bits: u32,
    /// Columns `l_v`: `(v, [(i, numerator)])`.
    pub columns: Vec<(usize, Vec<(usize, String)>)>,
    /// `E_k` per set: `(i, j, value)` with `i <= j`.
    pub residual: Vec<Vec<(usize, usize, String)>>,
    /// Exponents `e_i`: with `w_i = 2^e_i`, every `E_k` has
    /// `w_i E_ii >= Σ_j w_j |E_ij|`.
    pub weights: Vec<i32>,
    /// Whether each `E_k` is strictly dominant.
    pub strict: bool,
}

/// How an iteration behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// The distance to the equilibrium grows without bound (or overflows).
    Diverges,
    /// Bounded, but neither settling nor approaching the equilibrium.
    Oscillates,
    /// Settles at a fixed point other than `p*`.
    ConvergesElsewhere,
    /// Approaches `p*` (never in a counterexample).
    Converges,
}

/// What the simulated iteration from `p0` did.
#[derive(Clone, Debug, Serialize)]
pub struct Trajectory {
    /// Steps simulated (`f64`).
    pub steps: usize,
    /// Classification.
    pub behaviour: Behaviour,
    /// `‖p_0 − p*‖₂`.
    pub first_distance: f64,
    /// `‖p_N − p*‖₂`.
    pub last_distance: f64,
    /// Largest distance over the last quarter of the run.
    pub max_distance_last_quarter: f64,
    /// Smallest distance over the last quarter of the run.
    pub min_distance_last_quarter: f64,
    /// `‖p_0‖₂` and `‖p_N‖₂`.
    pub first_norm: f64,
    /// See `first_norm`.
    pub last_norm: f64,
    /// Period of the cycle the run ended in, if it looks periodic (`f64`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<usize>,
    /// Period confirmed in exact arithmetic: `p_k = p_0` exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_cycle: Option<usize>,
}

/// A price vector with positive drift, and what the iteration from it does.
#[derive(Clone, Debug, Serialize)]
pub struct Counterexample {
    /// Resource names.
    pub resources: Vec<String>,
    /// The start `p0 >= 0`, exact.
    pub p0: Vec<String>,
    /// `p0` as `f64`.
    pub p0_approx: Vec<f64>,
    /// `p1 = max(0, A p0 + b)`, exact.
    pub p1: Vec<String>,
    /// The equilibrium the drift is measured against, exact, if one was
    /// found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_star: Option<Vec<String>>,
    /// `p*` as `f64` (zeros if none was found).
    pub p_star_approx: Vec<f64>,
    /// The `V` whose drift is reported.
    pub lyapunov: String,
    /// `V(p1) − V(p0)`, exact and positive, if `p*` is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
    /// The drift as `f64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift_approx: Option<f64>,
    /// The simulated iteration from `p0`.
    pub trajectory: Trajectory,
    /// `f64` estimate of `ρ(A)`.
    pub spectral_radius_estimate: f64,
    /// Seed of the start-point search.
    pub seed: u64,
    /// What this shows, in words.
    pub reason: String,
}
