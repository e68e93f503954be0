//! The z3 side: every claim of a certificate as a ground formula over exact
//! rational numerals, asserted negated so that `unsat` means "the claim
//! holds". `sat` on a ground check means the certificate is wrong, `unknown`
//! (a timeout, an interrupt) means nothing was shown; neither is ever read as
//! a pass.
//!
//! The numerals z3 sees are the controller's own data (`a`, `K`, `c`, `u0`,
//! read as in [`super::exact::exact_decimal`]) and the certificate (`P`, `ε`,
//! `p*`, the factor columns `l_v` and the residuals `E_k`); `A = I − diag(a)K`
//! and `b = a ∘ (u0 − c)` are built as z3 terms from the data, not handed in.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use num_traits::{One, Zero};
use z3::ast::{Bool, Real};
use z3::{Params, SatResult, Solver};

use super::cert::{ExactCert, PsdWitness, pow2_q};
use super::exact::{self, Q};
use super::spec::ExactData;
use super::verdict::Z3Check;

/// What one z3 check said.
pub(crate) enum Outcome {
    /// The negated claim is unsatisfiable: the claim holds.
    Holds,
    /// z3 found a model of the negated claim; for the projected-drift check,
    /// the price vector it found.
    Refuted(Option<Vec<Q>>),
    /// No answer: the reason z3 gave.
    Unknown(String),
}

/// z3 limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub ground_timeout_ms: u64,
    pub nra_timeout_ms: u64,
}

fn num(q: &Q) -> Real {
    Real::from_big_rational(q)
}

/// `A` and `b` as z3 terms over the data's numerals; `None` where `A` is
/// exactly zero (the sparsity check confirms those zeros in z3).
struct Model {
    a: Vec<Vec<Option<Real>>>,
    a_zero: Vec<(usize, usize, Real)>,
    b: Vec<Real>,
}

impl Model {
    fn new(ex: &ExactData) -> Model {
        let n = ex.a.len();
        let step: Vec<Real> = ex.step.iter().map(num).collect();
        let mut a = vec![vec![None; n]; n];
        let mut a_zero = Vec::new();
        for i in 0..n {
            for j in 0..n {
                let id = Real::from_rational(i64::from(u8::from(i == j)), 1);
                let term = Real::sub(&[id, Real::mul(&[&step[i], &num(&ex.k[i][j])])]);
                if ex.a[i][j].is_zero() {
                    a_zero.push((i, j, term));
                } else {
                    a[i][j] = Some(term);
                }
            }
        }
        let b = (0..n)
            .map(|i| {
                Real::mul(&[
                    &step[i],
                    &Real::sub(&[num(&ex.baseline[i]), num(&ex.capacity[i])]),
                ])
            })
            .collect();
        Model { a, a_zero, b }
    }

    /// `A x + b` for numerals or variables `x`.
    fn affine(&self, x: &[Real]) -> Vec<Real> {
        self.a
            .iter()
            .zip(&self.b)
            .map(|(row, bi)| {
                let mut terms: Vec<Real> = row
                    .iter()
                    .zip(x)
                    .filter_map(|(aij, xj)| aij.as_ref().map(|a| Real::mul(&[a, xj])))
                    .collect();
                terms.push(bi.clone());
                Real::add(&terms)
            })
            .collect()
    }
}

/// Runs `solver.check()` with z3's own timeout and, should z3 not honour it,
/// an interrupt from a watchdog thread two seconds later.
fn check_with_deadline(solver: &Solver, timeout_ms: u64) -> SatResult {
    let mut params = Params::new();
    params.set_u32("timeout", u32::try_from(timeout_ms).unwrap_or(u32::MAX));
    solver.set_params(&params);
    let ctx = solver.get_context();
    let handle = ctx.handle();
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            if let Err(RecvTimeoutError::Timeout) =
                rx.recv_timeout(Duration::from_millis(timeout_ms.saturating_add(2000)))
            {
                handle.interrupt();
            }
        });
        let r = solver.check();
        drop(tx);
        r
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The ground check that `P`'s diagonal is positive (the certificate's `P`
/// when no positivity witness comes with it).
fn positive_diagonal(p: &[Vec<Real>], timeout_ms: u64, log: &mut Vec<Z3Check>) -> Outcome {
    ground(
        "p_positive_diagonal",
        || {
            (0..p.len())
                .map(|i| p[i][i].gt(Real::from_rational(0, 1)))
                .collect()
        },
        timeout_ms,
        log,
    )
}

/// Asserts `¬(c_1 ∧ … ∧ c_m)` and checks it.
fn ground(
    name: &str,
    build: impl FnOnce() -> Vec<Bool>,
    timeout_ms: u64,
    log: &mut Vec<Z3Check>,
) -> Outcome {
    let t0 = Instant::now();
    let claims = build();
    // Ground formulas over numerals: products of numerals fold to numerals,
    // so the linear-arithmetic solver suffices and starts ~40x faster than
    // the default one. Anything it could not handle would come back
    // `unknown`, never `unsat`.
    let solver = Solver::new_for_logic("QF_LRA").unwrap_or_default();
    solver.assert(Bool::and(&claims).not());
    let built = t0.elapsed();
    let t1 = Instant::now();
    let r = check_with_deadline(&solver, timeout_ms);
    let checked = t1.elapsed();
    let (result, outcome) = match r {
        SatResult::Unsat => ("unsat", Outcome::Holds),
        SatResult::Sat => ("sat", Outcome::Refuted(None)),
        SatResult::Unknown => {
            let why = solver
                .get_reason_unknown()
                .unwrap_or_else(|| "no reason given".into());
            (
                "unknown",
                Outcome::Unknown(format!("z3 check `{name}` returned unknown ({why})")),
            )
        }
    };
    log.push(Z3Check {
        name: name.to_owned(),
        result: result.to_owned(),
        claims: claims.len(),
        build_ms: ms(built),
        check_ms: ms(checked),
    });
    outcome
}

/// For a diagonal `P` whose decrease the linear part cannot show: `P_ii > 0`,
/// the equilibrium, and the statement itself on the clipped map in
/// nonlinear arithmetic.
pub(crate) fn check_direct(
    ex: &ExactData,
    pq: &[Vec<Q>],
    eps: &Q,
    center: &[Q],
    limits: Limits,
    log: &mut Vec<Z3Check>,
) -> Outcome {
    let model = Model::new(ex);
    let t = limits.ground_timeout_ms;
    let p: Vec<Vec<Real>> = pq.iter().map(|r| r.iter().map(num).collect()).collect();
    let out = positive_diagonal(&p, t, log);
    if !matches!(out, Outcome::Holds) {
        return out;
    }
    let cz: Vec<Real> = center.iter().map(num).collect();
    let out = check_equilibrium(&model, &cz, t, log);
    if !matches!(out, Outcome::Holds) {
        return out;
    }
    projected_drift(&model, &p, pq, eps, &cz, limits.nra_timeout_ms, log)
}

/// All ground checks of a certificate, then (for `n <= nra_max`) the direct
/// check of the projected map. Stops at the first check that does not hold.
pub(crate) fn check_certificate(
    ex: &ExactData,
    cert: &ExactCert,
    center: &[Q],
    projected_center: bool,
    nra: bool,
    limits: Limits,
    log: &mut Vec<Z3Check>,
) -> Outcome {
    let n = ex.a.len();
    let model = Model::new(ex);
    let t = limits.ground_timeout_ms;

    // A's zeros are zeros: the decrease identities below skip those terms.
    let out = ground(
        "sparsity",
        || {
            model
                .a_zero
                .iter()
                .map(|(_, _, e)| e.eq(Real::from_rational(0, 1)))
                .collect()
        },
        t,
        log,
    );
    if !matches!(out, Outcome::Holds) {
        return out;
    }

    let p: Vec<Vec<Real>> = cert.p.iter().map(|r| r.iter().map(num).collect()).collect();
    let out = match &cert.positivity {
        None => positive_diagonal(&p, t, log),
        Some(w) => ground(
            "p_positive_definite",
            || {
                let lhs = |i: usize, j: usize| p[i][j].clone();
                WitnessIndex::new(w).claims(0, &lhs)
            },
            t,
            log,
        ),
    };
    if !matches!(out, Outcome::Holds) {
        return out;
    }

    // M_ij = (1−ε) P_ij − (Aᵀ P A)_ij as terms.
    let one_minus_eps = Real::sub(&[Real::from_rational(1, 1), num(&cert.eps)]);
    let w_full: Option<Vec<Vec<Real>>> = (!cert.diagonal).then(|| {
        (0..n)
            .map(|k| {
                (0..n)
                    .map(|j| {
                        let terms: Vec<Real> = (0..n)
                            .filter(|&l| !cert.p[k][l].is_zero())
                            .filter_map(|l| {
                                model.a[l][j]
                                    .as_ref()
                                    .map(|alj| Real::mul(&[&p[k][l], alj]))
                            })
                            .collect();
                        sum(terms)
                    })
                    .collect()
            })
            .collect()
    });
    let m_term = |i: usize, j: usize| -> Real {
        let lead = Real::mul(&[&one_minus_eps, &p[i][j]]);
        let terms: Vec<Real> = match &w_full {
            None => (0..n)
                .filter_map(|k| match (&model.a[k][i], &model.a[k][j]) {
                    (Some(aki), Some(akj)) => Some(Real::mul(&[aki, &p[k][k], akj])),
                    _ => None,
                })
                .collect(),
            Some(w) => (0..n)
                .filter_map(|k| {
                    model.a[k][i]
                        .as_ref()
                        .map(|aki| Real::mul(&[aki, &w[k][j]]))
                })
                .collect(),
        };
        Real::sub(&[lead, sum(terms)])
    };
    let index = WitnessIndex::new(&cert.decrease);
    for k in 0..cert.plan.sets.len() {
        let name = if cert.plan.sets.len() == 1 {
            "decrease".to_owned()
        } else {
            format!("decrease_set_{k}")
        };
        let out = ground(&name, || index.claims(k, &m_term), t, log);
        if !matches!(out, Outcome::Holds) {
            return out;
        }
    }

    // The centre of V is the equilibrium of the map that is certified.
    let cz: Vec<Real> = center.iter().map(num).collect();
    let out = if projected_center {
        check_equilibrium(&model, &cz, t, log)
    } else {
        ground(
            "linear_fixed_point",
            || {
                let y = model.affine(&cz);
                (0..n).map(|i| cz[i].eq(&y[i])).collect()
            },
            t,
            log,
        )
    };
    if !matches!(out, Outcome::Holds) {
        return out;
    }

    if nra {
        return projected_drift(
            &model,
            &p,
            &cert.p,
            &cert.eps,
            &cz,
            limits.nra_timeout_ms,
            log,
        );
    }
    Outcome::Holds
}

/// z3 check `equilibrium`: `cz = max(0, A cz + b)`, coordinate by coordinate.
fn check_equilibrium(model: &Model, cz: &[Real], t: u64, log: &mut Vec<Z3Check>) -> Outcome {
    ground(
        "equilibrium",
        || {
            let y = model.affine(cz);
            let zero = Real::from_rational(0, 1);
            (0..cz.len())
                .map(|i| cz[i].eq(y[i].ge(&zero).ite(&y[i], &zero)))
                .collect()
        },
        t,
        log,
    )
}

fn sum(terms: Vec<Real>) -> Real {
    if terms.is_empty() {
        Real::from_rational(0, 1)
    } else {
        Real::add(&terms)
    }
}

/// Two factor entries whose product enters a Gram entry.
type Product<'a> = (&'a num_bigint::BigInt, &'a num_bigint::BigInt);

/// A witness sorted by the set that checks each pair, so that building one
/// set's claims touches only that set's entries.
struct WitnessIndex<'a> {
    w: &'a PsdWitness,
    /// Per set: pair -> products `l_vi · l_vj` of the factor entries.
    gram: Vec<BTreeMap<(usize, usize), Vec<Product<'a>>>>,
    /// Per set: the pairs it checks.
    pairs: Vec<Vec<(usize, usize)>>,
    /// Per vertex: every set's share of `E_ii`.
    diag: BTreeMap<usize, Vec<&'a Q>>,
}

impl<'a> WitnessIndex<'a> {
    fn new(w: &'a PsdWitness) -> WitnessIndex<'a> {
        let sets = w.residual.len();
        let mut gram = vec![BTreeMap::new(); sets];
        for (_, entries) in &w.columns {
            for (x, (i, li)) in entries.iter().enumerate() {
                for (j, lj) in &entries[x..] {
                    let key = if i <= j { (*i, *j) } else { (*j, *i) };
                    if let Some(&k) = w.pair_set.get(&key) {
                        gram[k].entry(key).or_insert_with(Vec::new).push((li, lj));
                    }
                }
            }
        }
        let mut pairs = vec![Vec::new(); sets];
        for (&key, &k) in &w.pair_set {
            pairs[k].push(key);
        }
        let mut diag: BTreeMap<usize, Vec<&Q>> = BTreeMap::new();
        for r in &w.residual {
            for (&(i, j), e) in r {
                if i == j {
                    diag.entry(i).or_default().push(e);
                }
            }
        }
        WitnessIndex {
            w,
            gram,
            pairs,
            diag,
        }
    }

    /// For set `k`: at every pair the set checks,
    /// `lhs(i, j) = Σ_v l_vi l_vj + E(i, j)`, and `E_k` diagonally dominant
    /// (strictly, for a definiteness witness).
    fn claims(&self, k: usize, lhs: &dyn Fn(usize, usize) -> Real) -> Vec<Bool> {
        let w = self.w;
        let scale = exact::pow2(w.bits);
        let mut claims = Vec::new();
        for &(i, j) in &self.pairs[k] {
            let mut rhs: Vec<Real> = self.gram[k]
                .get(&(i, j))
                .map(|v| {
                    v.iter()
                        .map(|(li, lj)| {
                            let a = num(&Q::new((*li).clone(), scale.clone()));
                            let b = num(&Q::new((*lj).clone(), scale.clone()));
                            Real::mul(&[a, b])
                        })
                        .collect()
                })
                .unwrap_or_default();
            if i == j {
                // The diagonal of E is shared among every set that holds i.
                rhs.extend(self.diag.get(&i).into_iter().flatten().map(|e| num(e)));
            } else if let Some(e) = w.residual[k].get(&(i, j)) {
                rhs.push(num(e));
            }
            claims.push(lhs(i, j).eq(sum(rhs)));
        }
        // Dominance of E_k, row by row.
        let mut rows: BTreeMap<usize, (Option<Real>, Vec<Real>)> = BTreeMap::new();
        let zero = Real::from_rational(0, 1);
        for (&(i, j), e) in &w.residual[k] {
            if i == j {
                rows.entry(i).or_default().0 = Some(num(e));
            } else {
                let x = num(e);
                let ab = x.ge(&zero).ite(&x, &x.unary_minus());
                let wj = num(&pow2_q(w.weights[j]));
                let wi = num(&pow2_q(w.weights[i]));
                rows.entry(i).or_default().1.push(Real::mul(&[&wj, &ab]));
                rows.entry(j).or_default().1.push(Real::mul(&[&wi, &ab]));
            }
        }
        // Scaled dominance: w_i E_ii >= Σ_j w_j |E_ij|.
        for (i, (diag, offs)) in rows {
            let d = Real::mul(&[
                num(&pow2_q(w.weights[i])),
                diag.unwrap_or_else(|| zero.clone()),
            ]);
            let s = sum(offs);
            claims.push(if w.strict { d.gt(&s) } else { d.ge(&s) });
        }
        claims
    }
}

/// `∃ p >= 0: V(max(0, A p + b)) > (1 − ε) V(p)`, one z3 query per cell of
/// the clip pattern (which coordinates are clipped), within one time budget.
/// Expect every cell unsat.
fn projected_drift(
    model: &Model,
    p: &[Vec<Real>],
    pq: &[Vec<Q>],
    eps: &Q,
    center: &[Real],
    budget_ms: u64,
    log: &mut Vec<Z3Check>,
) -> Outcome {
    let n = center.len();
    let t0 = Instant::now();
    let mut build = Duration::ZERO;
    let mut check = Duration::ZERO;
    let zero = Real::from_rational(0, 1);
    let one_minus_eps = num(&(Q::one() - eps));
    let v = |x: &[Real]| -> Real {
        let d: Vec<Real> = x
            .iter()
            .zip(center)
            .map(|(a, c)| Real::sub(&[a, c]))
            .collect();
        let mut terms = Vec::new();
        for i in 0..n {
            for j in 0..n {
                if !pq[i][j].is_zero() {
                    terms.push(Real::mul(&[&p[i][j], &d[i], &d[j]]));
                }
            }
        }
        sum(terms)
    };
    let cells = 1u32 << n;
    let mut outcome = Outcome::Holds;
    let mut done = 0;
    for mask in 0..cells {
        let tb = Instant::now();
        let solver = Solver::new();
        let x: Vec<Real> = (0..n).map(|i| Real::new_const(format!("p{i}"))).collect();
        for xi in &x {
            solver.assert(xi.ge(&zero));
        }
        let y = model.affine(&x);
        let q: Vec<Real> = (0..n)
            .map(|i| {
                if mask >> i & 1 == 1 {
                    solver.assert(y[i].ge(&zero));
                    y[i].clone()
                } else {
                    solver.assert(y[i].le(&zero));
                    zero.clone()
                }
            })
            .collect();
        solver.assert(v(&q).gt(Real::mul(&[&one_minus_eps, &v(&x)])));
        build += tb.elapsed();
        let left = budget_ms.saturating_sub(t0.elapsed().as_millis() as u64);
        if left == 0 {
            outcome = Outcome::Unknown(format!(
                "z3 check `projected_drift` ran out of its {budget_ms} ms budget after {done} of {cells} clip cells"
            ));
            break;
        }
        let tc = Instant::now();
        let r = check_with_deadline(&solver, left);
        check += tc.elapsed();
        match r {
            SatResult::Unsat => done += 1,
            SatResult::Sat => {
                let point = solver.get_model().map(|m| {
                    x.iter()
                        .map(|xi| {
                            m.eval(xi, true)
                                .map(|v| real_value(&v))
                                .unwrap_or_else(Q::zero)
                        })
                        .collect()
                });
                outcome = Outcome::Refuted(point);
                break;
            }
            SatResult::Unknown => {
                let why = solver
                    .get_reason_unknown()
                    .unwrap_or_else(|| "no reason given".into());
                outcome = Outcome::Unknown(format!(
                    "z3 check `projected_drift` returned unknown ({why}) on clip cell {mask} of {cells}"
                ));
                break;
            }
        }
    }
    log.push(Z3Check {
        name: "projected_drift".into(),
        result: match &outcome {
            Outcome::Holds => "unsat",
            Outcome::Refuted(_) => "sat",
            Outcome::Unknown(_) => "unknown",
        }
        .into(),
        claims: cells as usize,
        build_ms: ms(build),
        check_ms: ms(check),
    });
    outcome
}

/// A model value as a rational: exact when z3 gives a small rational, else
/// its decimal expansion to 40 places (algebraic numbers).
fn real_value(v: &Real) -> Q {
    if let Some((n, d)) = v.as_rational()
        && d != 0
    {
        return Q::new(n.into(), d.into());
    }
    parse_decimal(&v.approx(40)).unwrap_or_else(Q::zero)
}

fn parse_decimal(s: &str) -> Option<Q> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits: num_bigint::BigInt = format!("{int}{frac}").parse().ok()?;
    let q = Q::new(
        digits,
        num_traits::pow(num_bigint::BigInt::from(10u8), frac.len()),
    );
    Some(if neg { -q } else { q })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_from_z3_parse_exactly() {
        assert_eq!(parse_decimal("-1.25"), Some(Q::new((-5).into(), 4.into())));
        assert_eq!(parse_decimal("3"), Some(Q::from_integer(3.into())));
    }

    #[test]
    fn a_false_ground_claim_is_refuted_and_a_true_one_holds() {
        let mut log = Vec::new();
        let half = Real::from_rational(1, 2);
        let out = ground(
            "t",
            || vec![half.gt(Real::from_rational(1, 1))],
            1000,
            &mut log,
        );
        assert!(matches!(out, Outcome::Refuted(_)));
        let out = ground(
            "t",
            || vec![half.lt(Real::from_rational(1, 1))],
            1000,
            &mut log,
        );
        assert!(matches!(out, Outcome::Holds));
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].result, "sat");
    }
}
