//! The controller file: what the user writes ([`ControllerSpec`]), what
//! validation makes of it ([`Controller`]), and every way it can be wrong
//! ([`SpecError`]).
//!
//! Invariants of a [`Controller`]: at least one resource; names are
//! `kind` or `kind:qualifier` with a price-map kind and are pairwise distinct;
//! `K` is `n x n`, finite, entrywise `>= 0` with a positive diagonal; steps are
//! finite and `> 0`; capacities and baseline usages are finite and `>= 0`.
//! Every number is kept twice: as the `f64` the file gave and as the exact
//! rational the certificate speaks about (see [`exact_decimal`]).

use std::collections::HashMap;
use std::fmt;

use num_rational::BigRational;
use serde::{Deserialize, Serialize};

use super::exact::exact_decimal;

/// The price-map resource kinds (DESIGN §4 "Prices").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// CPU time.
    Cpu,
    /// Memory.
    Memory,
    /// Block I/O.
    Io,
    /// Network.
    Network,
    /// Dwell time in an instrumented region.
    Dwell,
}

impl ResourceKind {
    /// Every kind, in the order error messages list them.
    pub const ALL: [ResourceKind; 5] = [
        ResourceKind::Cpu,
        ResourceKind::Memory,
        ResourceKind::Io,
        ResourceKind::Network,
        ResourceKind::Dwell,
    ];

    /// The kind as written in a controller file.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Cpu => "cpu",
            ResourceKind::Memory => "memory",
            ResourceKind::Io => "io",
            ResourceKind::Network => "network",
            ResourceKind::Dwell => "dwell",
        }
    }

    fn parse(s: &str) -> Option<ResourceKind> {
        ResourceKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One priced resource: a kind and an optional qualifier (`io:sda`,
/// `dwell:my_crate::handle`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Resource {
    /// The price-map kind.
    pub kind: ResourceKind,
    /// What follows the first `:`, if anything.
    pub qualifier: Option<String>,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.qualifier {
            Some(q) => write!(f, "{}:{q}", self.kind.as_str()),
            None => f.write_str(self.kind.as_str()),
        }
    }
}

/// Step sizes: one number for every resource, or one per resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Step {
    /// The same step size `a` for every resource.
    Uniform(f64),
    /// `a_i` for resource `i`, in the order of `resources`.
    PerResource(Vec<f64>),
}

/// The controller file as written (YAML or JSON through serde).
///
/// ```yaml
/// resources: [cpu, "io:sda"]
/// capacity: [1.0, 0.8]
/// step: 0.5                     # or one per resource: [0.5, 0.25]
/// sensitivity:                  # K: d usage_i / d price_j, all >= 0
///   - [1.0, 0.2]
///   - [0.1, 1.5]
/// baseline_usage: [1.6, 1.2]    # optional: usage at zero prices
/// epsilon: 0.01                 # optional: the decay rate to certify
/// max_iterations: 200           # optional: counterexample simulation length
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerSpec {
    /// Resource names: `cpu`, `memory`, `io`, `network` or `dwell`, optionally
    /// `kind:qualifier`.
    pub resources: Vec<String>,
    /// Capacity `c_i >= 0` per resource.
    pub capacity: Vec<f64>,
    /// Step sizes `a_i > 0` of the dual ascent.
    pub step: Step,
    /// `K`, `n x n`: usage falls by `K[i][j]` per unit rise of price `j`.
    /// Absent when it is to be estimated from a profile's price/usage
    /// series ([`ControllerSpec::with_estimate`]); validation needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitivity: Option<Vec<Vec<f64>>>,
    /// `u0`: usage at zero prices. Default: `c + K·1`, which puts the
    /// equilibrium at the all-ones price vector (see the module docs of
    /// [`crate::drift`] for why this is the conservative choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_usage: Option<Vec<f64>>,
    /// The decay rate `ε` to certify, in `(0, 1)`. Default: the verifier picks
    /// the largest it can prove with a margin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// How many steps a counterexample's iteration is simulated for. Default
    /// [`DEFAULT_MAX_ITERATIONS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iterations: Option<usize>,
}

/// Simulation length for counterexamples when the file does not say.
pub const DEFAULT_MAX_ITERATIONS: usize = 200;

/// What is wrong with a controller file, and what to write instead.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// `resources` is empty.
    #[error("the controller has no resources: list at least one under `resources`")]
    NoResources,
    /// No `sensitivity`, and none estimated.
    #[error(
        "the controller gives no `sensitivity` (K): write it, n rows of n entries, or estimate it from a profile of a run with this controller (`--profile P`, with its price/usage series)"
    )]
    NoSensitivity,
    /// A name whose kind is not a price-map kind.
    #[error(
        "resource {index} `{name}`: unknown kind `{kind}`; use one of cpu, memory, io, network, dwell, optionally qualified as kind:qualifier (e.g. io:sda)"
    )]
    UnknownKind {
        /// Position in `resources`.
        index: usize,
        /// The name as written.
        name: String,
        /// The part before the first `:`.
        kind: String,
    },
    /// `kind:` with nothing, or whitespace, after the colon.
    #[error(
        "resource {index} `{name}`: the qualifier after `:` must be non-empty and contain no whitespace; write `{kind}` alone or e.g. `{kind}:sda`"
    )]
    BadQualifier {
        /// Position in `resources`.
        index: usize,
        /// The name as written.
        name: String,
        /// The kind before the colon.
        kind: String,
    },
    /// The same resource twice.
    #[error(
        "resource `{name}` is listed twice (positions {first} and {second}); each resource has one price, so list it once"
    )]
    DuplicateResource {
        /// The name.
        name: String,
        /// First position.
        first: usize,
        /// Second position.
        second: usize,
    },
    /// A per-resource list of the wrong length.
    #[error(
        "`{field}` has {found} entries but there are {expected} resources; give one per resource, in the order of `resources`"
    )]
    LengthMismatch {
        /// `capacity`, `step` or `baseline_usage`.
        field: &'static str,
        /// Entries found.
        found: usize,
        /// Number of resources.
        expected: usize,
    },
    /// `K` has the wrong number of rows.
    #[error(
        "`sensitivity` has {found} rows but there are {expected} resources; K must be {expected}x{expected}, one row per resource"
    )]
    SensitivityRows {
        /// Rows found.
        found: usize,
        /// Number of resources.
        expected: usize,
    },
    /// A row of `K` has the wrong length (K not square).
    #[error(
        "`sensitivity` row {row} (`{resource}`) has {found} entries, expected {expected}: K must be square, one column per resource"
    )]
    SensitivityRowLength {
        /// Row index.
        row: usize,
        /// The row's resource.
        resource: String,
        /// Entries found.
        found: usize,
        /// Number of resources.
        expected: usize,
    },
    /// NaN or an infinity somewhere.
    #[error("`{field}`{location} is {value}, not a finite number; write a finite number")]
    NonFinite {
        /// The field.
        field: &'static str,
        /// `[i]` or `[i][j]`, empty for a scalar.
        location: String,
        /// The value.
        value: f64,
    },
    /// A negative sensitivity.
    #[error(
        "`sensitivity`[{row}][{col}] = {value} is negative: it says raising the price of `{col_name}` raises the usage of `{row_name}`; the model is monotone, so every entry must be >= 0"
    )]
    NegativeSensitivity {
        /// Row (usage of this resource).
        row: usize,
        /// Column (price of this resource).
        col: usize,
        /// Row resource.
        row_name: String,
        /// Column resource.
        col_name: String,
        /// The entry.
        value: f64,
    },
    /// `K[i][i] == 0`.
    #[error(
        "`sensitivity`[{index}][{index}] is 0: the price of `{name}` has no effect on its own usage, so the controller cannot steer it; give it a positive self-sensitivity"
    )]
    ZeroDiagonal {
        /// The resource index.
        index: usize,
        /// Its name.
        name: String,
    },
    /// A step size `<= 0`.
    #[error("`step`{location} = {value}: step sizes must be > 0")]
    NonPositiveStep {
        /// `[i]`, or empty for a single step.
        location: String,
        /// The value.
        value: f64,
    },
    /// A capacity `< 0`.
    #[error("`capacity`[{index}] (`{name}`) = {value}: capacities must be >= 0")]
    NegativeCapacity {
        /// The resource index.
        index: usize,
        /// Its name.
        name: String,
        /// The value.
        value: f64,
    },
    /// A baseline usage `< 0`.
    #[error(
        "`baseline_usage`[{index}] (`{name}`) = {value}: the usage at zero prices must be >= 0"
    )]
    NegativeBaseline {
        /// The resource index.
        index: usize,
        /// Its name.
        name: String,
        /// The value.
        value: f64,
    },
    /// `epsilon` outside `(0, 1)`.
    #[error("`epsilon` = {value}: the decay rate must be strictly between 0 and 1")]
    BadEpsilon {
        /// The value.
        value: f64,
    },
    /// `max_iterations: 0`.
    #[error("`max_iterations` is 0: the counterexample simulation needs at least one step")]
    ZeroIterations,
}

/// A validated controller: `p <- max(0, p + a ∘ (u0 − K p − c))`.
#[derive(Clone, Debug, PartialEq)]
pub struct Controller {
    /// The resources, in file order.
    pub resources: Vec<Resource>,
    /// `c`, as given.
    pub capacity: Vec<f64>,
    /// `a`, one per resource.
    pub step: Vec<f64>,
    /// `K`.
    pub sensitivity: Vec<Vec<f64>>,
    /// `u0`, given or defaulted.
    pub baseline_usage: Vec<f64>,
    /// Whether `u0` was defaulted to `c + K·1`.
    pub baseline_defaulted: bool,
    /// The decay rate to certify, if the file asked for one.
    pub epsilon: Option<f64>,
    /// Counterexample simulation length.
    pub max_iterations: usize,
    pub(crate) exact: ExactData,
}

/// The same numbers as exact rationals.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ExactData {
    pub step: Vec<BigRational>,
    pub k: Vec<Vec<BigRational>>,
    pub capacity: Vec<BigRational>,
    pub baseline: Vec<BigRational>,
    pub epsilon: Option<BigRational>,
    /// `A = I − diag(a) K`.
    pub a: Vec<Vec<BigRational>>,
    /// `b = a ∘ (u0 − c)`.
    pub b: Vec<BigRational>,
}

impl Controller {
    /// Number of resources.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// Never true: validation rejects an empty controller.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// Resource names as written.
    pub fn names(&self) -> Vec<String> {
        self.resources.iter().map(ToString::to_string).collect()
    }

    /// `A = I − diag(a) K` in `f64`.
    pub fn iteration_matrix(&self) -> Vec<Vec<f64>> {
        let n = self.len();
        (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| f64::from(u8::from(i == j)) - self.step[i] * self.sensitivity[i][j])
                    .collect()
            })
            .collect()
    }

    /// `b = a ∘ (u0 − c)` in `f64`, so that `p⁺ = max(0, A p + b)`.
    pub fn offset(&self) -> Vec<f64> {
        (0..self.len())
            .map(|i| self.step[i] * (self.baseline_usage[i] - self.capacity[i]))
            .collect()
    }

    /// The pairs `(i, j)`, `i < j`, that the decrease condition of a
    /// diagonal Lyapunov function couples: `(1−ε)P − AᵀPA` can be non-zero at
    /// `(i, j)` exactly when some row `k` of `A = I − diag(a)K` is non-zero in
    /// both columns. A clique tree handed to [`crate::drift::certify`] can
    /// only decompose the check if every such pair lies in one clique, so
    /// this is the graph to triangulate.
    pub fn coupling_pairs(&self) -> Vec<(usize, usize)> {
        let mut pairs = std::collections::BTreeSet::new();
        let n = self.len();
        for k in 0..n {
            let support: Vec<usize> = (0..n)
                .filter(|&j| j == k || self.sensitivity[k][j] != 0.0)
                .collect();
            for (x, &i) in support.iter().enumerate() {
                for &j in &support[x + 1..] {
                    pairs.insert((i, j));
                }
            }
        }
        pairs.into_iter().collect()
    }
}

impl ControllerSpec {
    /// The spec with `K` (and, when the file gives none, `u0`) taken from a
    /// fit of a profile's price/usage series. The fit is used as fitted:
    /// validation then refuses a noisy negative entry, naming it.
    pub fn with_estimate(mut self, est: &super::SensitivityEstimate) -> ControllerSpec {
        self.sensitivity = Some(est.sensitivity.clone());
        if self.baseline_usage.is_none() {
            self.baseline_usage = Some(est.baseline_usage.clone());
        }
        self
    }

    /// Checks the file and builds the [`Controller`], or says what to fix.
    pub fn validate(&self) -> Result<Controller, SpecError> {
        let n = self.resources.len();
        if n == 0 {
            return Err(SpecError::NoResources);
        }
        let resources = parse_resources(&self.resources)?;
        let name = |i: usize| resources[i].to_string();

        check_len("capacity", self.capacity.len(), n)?;
        for (i, &c) in self.capacity.iter().enumerate() {
            finite("capacity", format!("[{i}]"), c)?;
            if c < 0.0 {
                return Err(SpecError::NegativeCapacity {
                    index: i,
                    name: name(i),
                    value: c,
                });
            }
        }

        let step = match &self.step {
            Step::Uniform(a) => {
                finite("step", String::new(), *a)?;
                if *a <= 0.0 {
                    return Err(SpecError::NonPositiveStep {
                        location: String::new(),
                        value: *a,
                    });
                }
                vec![*a; n]
            }
            Step::PerResource(v) => {
                check_len("step", v.len(), n)?;
                for (i, &a) in v.iter().enumerate() {
                    finite("step", format!("[{i}]"), a)?;
                    if a <= 0.0 {
                        return Err(SpecError::NonPositiveStep {
                            location: format!("[{i}]"),
                            value: a,
                        });
                    }
                }
                v.clone()
            }
        };

        let sensitivity = self.sensitivity.as_ref().ok_or(SpecError::NoSensitivity)?;
        if sensitivity.len() != n {
            return Err(SpecError::SensitivityRows {
                found: sensitivity.len(),
                expected: n,
            });
        }
        for (i, row) in sensitivity.iter().enumerate() {
            if row.len() != n {
                return Err(SpecError::SensitivityRowLength {
                    row: i,
                    resource: name(i),
                    found: row.len(),
                    expected: n,
                });
            }
        }
        for (i, row) in sensitivity.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                finite("sensitivity", format!("[{i}][{j}]"), v)?;
                if v < 0.0 {
                    return Err(SpecError::NegativeSensitivity {
                        row: i,
                        col: j,
                        row_name: name(i),
                        col_name: name(j),
                        value: v,
                    });
                }
            }
            if row[i] == 0.0 {
                return Err(SpecError::ZeroDiagonal {
                    index: i,
                    name: name(i),
                });
            }
        }

        if let Some(u0) = &self.baseline_usage {
            check_len("baseline_usage", u0.len(), n)?;
            for (i, &u) in u0.iter().enumerate() {
                finite("baseline_usage", format!("[{i}]"), u)?;
                if u < 0.0 {
                    return Err(SpecError::NegativeBaseline {
                        index: i,
                        name: name(i),
                        value: u,
                    });
                }
            }
        }
        if let Some(e) = self.epsilon {
            finite("epsilon", String::new(), e)?;
            if !(e > 0.0 && e < 1.0) {
                return Err(SpecError::BadEpsilon { value: e });
            }
        }
        let max_iterations = self.max_iterations.unwrap_or(DEFAULT_MAX_ITERATIONS);
        if max_iterations == 0 {
            return Err(SpecError::ZeroIterations);
        }

        // Exact data. The default baseline is computed exactly, so that the
        // equilibrium is exactly the all-ones vector.
        let q_step: Vec<BigRational> = step.iter().map(|&x| exact_decimal(x)).collect();
        let q_k: Vec<Vec<BigRational>> = sensitivity
            .iter()
            .map(|r| r.iter().map(|&x| exact_decimal(x)).collect())
            .collect();
        let q_cap: Vec<BigRational> = self.capacity.iter().map(|&x| exact_decimal(x)).collect();
        let (q_base, baseline_usage, baseline_defaulted) = match &self.baseline_usage {
            Some(u0) => (
                u0.iter().map(|&x| exact_decimal(x)).collect(),
                u0.clone(),
                false,
            ),
            None => {
                let q: Vec<BigRational> = (0..n)
                    .map(|i| q_k[i].iter().fold(q_cap[i].clone(), |acc, x| acc + x))
                    .collect();
                let f: Vec<f64> = q.iter().map(super::exact::to_f64).collect();
                (q, f, true)
            }
        };
        let q_a: Vec<Vec<BigRational>> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        let id = BigRational::from_integer(u8::from(i == j).into());
                        id - &q_step[i] * &q_k[i][j]
                    })
                    .collect()
            })
            .collect();
        let q_b: Vec<BigRational> = (0..n)
            .map(|i| &q_step[i] * (&q_base[i] - &q_cap[i]))
            .collect();

        Ok(Controller {
            resources,
            capacity: self.capacity.clone(),
            step,
            sensitivity: sensitivity.clone(),
            baseline_usage,
            baseline_defaulted,
            epsilon: self.epsilon,
            max_iterations,
            exact: ExactData {
                step: q_step,
                k: q_k,
                capacity: q_cap,
                baseline: q_base,
                epsilon: self.epsilon.map(exact_decimal),
                a: q_a,
                b: q_b,
            },
        })
    }
}

fn parse_resources(names: &[String]) -> Result<Vec<Resource>, SpecError> {
    let mut seen: HashMap<Resource, usize> = HashMap::new();
    let mut out = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        let (kind_str, qualifier) = match name.split_once(':') {
            Some((k, q)) => (k, Some(q)),
            None => (name.as_str(), None),
        };
        let kind = ResourceKind::parse(kind_str).ok_or_else(|| SpecError::UnknownKind {
            index,
            name: name.clone(),
            kind: kind_str.to_owned(),
        })?;
        if let Some(q) = qualifier
            && (q.is_empty() || q.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(SpecError::BadQualifier {
                index,
                name: name.clone(),
                kind: kind_str.to_owned(),
            });
        }
        let r = Resource {
            kind,
            qualifier: qualifier.map(str::to_owned),
        };
        if let Some(&first) = seen.get(&r) {
            return Err(SpecError::DuplicateResource {
                name: name.clone(),
                first,
                second: index,
            });
        }
        seen.insert(r.clone(), index);
        out.push(r);
    }
    Ok(out)
}

fn check_len(field: &'static str, found: usize, expected: usize) -> Result<(), SpecError> {
    if found == expected {
        Ok(())
    } else {
        Err(SpecError::LengthMismatch {
            field,
            found,
            expected,
        })
    }
}

fn finite(field: &'static str, location: String, value: f64) -> Result<(), SpecError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(SpecError::NonFinite {
            field,
            location,
            value,
        })
    }
}
