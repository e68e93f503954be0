//! `cargo panic verify`: the verifier's checks on files, with evidence.
//!
//! The IO shell around `panic-verifier`: reads the inputs, runs each check,
//! re-checks every certificate with the verifier's independent checkers, and
//! prints a summary (or, with `--json`, the whole verdict with vertex names).
//! Exit status: 0 when every check is certified, 1 when one has a
//! counterexample, 2 when an input is bad (the caller's error path), 3 when a
//! check could not decide (a certificate failed its re-check): never a pass.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use panic_verifier::chordal::{self, Chordality, Triangulation};
use panic_verifier::depgraph::{self, DependenceGraph, FunctionUse};
use panic_verifier::drift::{self, Controller, ControllerSpec, DriftVerdict, Scope};
use panic_verifier::graph::{self, Graph};
use serde::Serialize;
use serde_json::{Value, json};

/// What to verify.
pub struct VerifyOptions {
    pub graph: Option<PathBuf>,
    pub binary: Option<PathBuf>,
    pub controller: Option<PathBuf>,
    pub profile: Option<PathBuf>,
    pub timeline: Option<PathBuf>,
    pub json: bool,
}

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Certified,
    Counterexample,
    Unknown,
}

impl Outcome {
    fn exit_code(self) -> i32 {
        match self {
            Outcome::Certified => 0,
            Outcome::Counterexample => 1,
            Outcome::Unknown => 3,
        }
    }
}

/// One check's verdict: a summary for people, and for `--json` its fields plus
/// the evidence, already rendered (a million-vertex certificate is written
/// straight from the verdict's arrays, never built as a `Value` tree).
struct Check {
    outcome: Outcome,
    summary: String,
    json: Value,
    evidence: Option<String>,
}

/// A list of vertex ids that serialises as their names.
struct Names<'a> {
    g: &'a Graph,
    ids: &'a [u32],
}

impl Serialize for Names<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_seq(self.ids.iter().map(|&v| self.g.name(v)))
    }
}

#[derive(Serialize)]
struct ChordalEvidence<'a> {
    chordal: bool,
    peo: Names<'a>,
    cliques: Vec<Names<'a>>,
    clique_tree: Vec<TreeEdge<'a>>,
    treewidth: usize,
    rechecked: bool,
}

#[derive(Serialize)]
struct TreeEdge<'a> {
    a: u32,
    b: u32,
    separator: Names<'a>,
}

/// The whole `--json` document.
fn render_json(worst: Outcome, checks: &[Check]) -> Result<String> {
    let mut out = format!(
        "{{\"verdict\":{},\"checks\":[",
        serde_json::to_string(&worst)?
    );
    for (i, c) in checks.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let mut fields = serde_json::to_string(&c.json)?;
        if let Some(ev) = &c.evidence {
            // `fields` is an object: reopen it for the evidence.
            fields.pop();
            fields.push_str(",\"evidence\":");
            fields.push_str(ev);
            fields.push('}');
        }
        out.push_str(&fields);
    }
    out.push_str("]}");
    Ok(out)
}

pub fn verify(opts: &VerifyOptions) -> Result<i32> {
    if opts.profile.is_some() && opts.binary.is_none() && opts.controller.is_none() {
        bail!(
            "--profile restricts --binary to what ran, or gives --controller the price/usage series \
             to estimate its sensitivity from: give --binary or --controller too"
        );
    }
    if opts.graph.is_none()
        && opts.binary.is_none()
        && opts.controller.is_none()
        && opts.timeline.is_none()
    {
        bail!(
            "nothing to verify: give --graph EDGES, --binary BIN, --controller FILE or --timeline FILE"
        );
    }
    let timeline_input = opts
        .timeline
        .as_deref()
        .map(|p| crate::attack_cmd::read_timeline(p).map(|t| (p.to_path_buf(), t)))
        .transpose()?;
    // Read and validate every input before running anything, so bad input
    // always exits 2 without a partial verdict.
    let graph_input = opts.graph.as_deref().map(read_edge_list).transpose()?;
    let binary_input = opts
        .binary
        .as_deref()
        .map(|b| read_binary(b, opts.profile.as_deref()))
        .transpose()?;
    let controller_input = opts
        .controller
        .as_deref()
        .map(|c| read_controller(c, opts.profile.as_deref(), opts.binary.is_some()))
        .transpose()?;

    let mut checks = Vec::new();
    if let Some((path, parsed)) = &graph_input {
        checks.push(chordality_check(
            &path.display().to_string(),
            &parsed.graph,
            None,
            Some(parsed),
            opts.json,
        ));
    }
    if let Some((path, dep)) = &binary_input {
        checks.push(binary_check(path, dep, opts.json));
    }
    if let Some((path, ctrl, estimate)) = &controller_input {
        checks.push(drift_check(path, ctrl, estimate.as_ref()));
    }
    if let Some((path, t)) = &timeline_input {
        checks.push(timeline_check(path, t));
    }

    let worst = checks
        .iter()
        .map(|c| c.outcome)
        .max_by_key(|o| match o {
            Outcome::Certified => 0,
            Outcome::Unknown => 1,
            Outcome::Counterexample => 2,
        })
        .unwrap_or(Outcome::Certified);
    if opts.json {
        println!("{}", render_json(worst, &checks)?);
    } else {
        for c in &checks {
            print!("{}", c.summary);
        }
    }
    Ok(worst.exit_code())
}

/// Whether a timeline can happen as written on this machine.
fn timeline_check(path: &Path, t: &cargo_panic_core::attack::timeline::Timeline) -> Check {
    use cargo_panic_core::attack::{feasibility, probe};
    let v = panic_verifier::feasible::check(&feasibility::plan(t, &probe::machine()));
    let undecided = v
        .findings
        .iter()
        .all(|f| matches!(f, panic_verifier::feasible::Finding::Unknown { .. }));
    Check {
        outcome: match (v.feasible, undecided) {
            (true, _) => Outcome::Certified,
            (false, true) => Outcome::Unknown,
            (false, false) => Outcome::Counterexample,
        },
        summary: format!("{}: {}", path.display(), feasibility::describe(&v)),
        json: serde_json::json!({
            "check": "timeline",
            "input": path.display().to_string(),
            "feasibility": v,
        }),
        evidence: None,
    }
}

fn read_edge_list(path: &Path) -> Result<(PathBuf, graph::ParsedGraph)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        anyhow::anyhow!("{}:{line}: not UTF-8 text", path.display())
    })?;
    let parsed = graph::parse_edge_list(text).map_err(|e| match e.line() {
        Some(line) => {
            let msg = e.to_string();
            let msg = msg
                .strip_prefix(&format!("line {line}: "))
                .unwrap_or(&msg)
                .to_string();
            anyhow::anyhow!("{}:{line}: {msg}", path.display())
        }
        None => anyhow::anyhow!("{}: {e}", path.display()),
    })?;
    Ok((path.to_owned(), parsed))
}

fn read_binary(binary: &Path, profile: Option<&Path>) -> Result<(PathBuf, DependenceGraph)> {
    let m = cargo_panic_core::manifest::Manifest::for_binary(binary)?;
    let all = m.functions();
    if all.is_empty() {
        bail!(
            "{}: its manifest records no instrumented functions: build it with `cargo panic build` \
             or `cargo panic cc`",
            binary.display()
        );
    }
    let functions = match profile {
        None => all,
        Some(p) => {
            let prof: cargo_panic_core::profile::Profile = cargo_panic_core::fsutil::read_json(p)?;
            let ran = m.functions_that_ran(&prof);
            if ran.is_empty() {
                bail!(
                    "{}: no function of {} entered in it: is it a profile of this binary?",
                    p.display(),
                    binary.display()
                );
            }
            ran
        }
    };
    let uses: Vec<FunctionUse> = functions
        .into_iter()
        .map(|f| FunctionUse {
            name: f.name,
            timed: f.timed,
            callees: f.callees,
            touches: f.touches,
        })
        .collect();
    Ok((binary.to_owned(), depgraph::build(&uses, None)))
}

/// Chordality of `g` with its evidence re-checked; `dep` adds which regions
/// made the edges of a counterexample, `parsed` (for a graph read from an edge
/// list) what the reader accepted but reports.
fn chordality_check(
    input: &str,
    g: &Graph,
    dep: Option<&DependenceGraph>,
    parsed: Option<&graph::ParsedGraph>,
    want_json: bool,
) -> Check {
    let started = Instant::now();
    let verdict = chordal::check(g);
    let decided_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut summary = String::new();
    let name = |v: u32| g.name(v);
    let mut notes = Vec::new();
    let self_loops = parsed.map_or(0, |p| p.self_loop_count);
    let duplicate_edges = parsed.map_or(0, |p| p.duplicate_edge_count);
    if let Some(first) = parsed.and_then(|p| p.self_loops.first()) {
        notes.push(format!(
            "{} self-loop(s) ignored (first: line {}, `{}`)",
            self_loops, first.0, first.1
        ));
    }
    if let Some(first) = parsed.and_then(|p| p.duplicate_edges.first()) {
        notes.push(format!(
            "{} duplicate edge(s) counted once (first: line {}, `{} {}`)",
            duplicate_edges, first.0, first.1, first.2
        ));
    }
    let head = format!(
        "chordality of {input} ({} vertices, {} edges)",
        g.n(),
        g.m()
    );
    let (outcome, evidence) = match &verdict {
        Chordality::Chordal(cert) => {
            let peo_ok = chordal::is_peo(g, &cert.peo).is_ok();
            let rip_ok = chordal::has_running_intersection(&cert.cliques, cert.clique_tree.pairs());
            let _ = writeln!(summary, "{head}: certified chordal");
            let _ = writeln!(
                summary,
                "  perfect elimination ordering of {} vertices ({})",
                cert.peo.len(),
                if peo_ok {
                    "re-checked"
                } else {
                    "RE-CHECK FAILED"
                }
            );
            let largest = cert.cliques.iter().map(<[u32]>::len).max().unwrap_or(0);
            let _ = writeln!(
                summary,
                "  {} maximal cliques, the largest of {} (treewidth {}); clique tree of {} edges \
                 (running intersection {})",
                cert.cliques.len(),
                largest,
                cert.treewidth,
                cert.clique_tree.len(),
                if rip_ok {
                    "re-checked"
                } else {
                    "RE-CHECK FAILED"
                }
            );
            let outcome = if peo_ok && rip_ok {
                Outcome::Certified
            } else {
                Outcome::Unknown
            };
            let evidence = want_json.then(|| {
                let names = |ids| Names { g, ids };
                serde_json::to_string(&ChordalEvidence {
                    chordal: true,
                    peo: names(&cert.peo),
                    cliques: cert.cliques.iter().map(names).collect(),
                    clique_tree: cert
                        .clique_tree
                        .iter()
                        .map(|e| TreeEdge {
                            a: e.a,
                            b: e.b,
                            separator: names(e.separator),
                        })
                        .collect(),
                    treewidth: cert.treewidth,
                    rechecked: peo_ok && rip_ok,
                })
                .expect("names and numbers serialise")
            });
            (outcome, evidence)
        }
        Chordality::NotChordal(w) => {
            let cycle_ok = chordal::is_chordless_cycle(g, &w.cycle);
            let _ = writeln!(summary, "{head}: NOT chordal");
            let cycle: Vec<&str> = w.cycle.iter().map(|&v| name(v)).collect();
            let _ = writeln!(
                summary,
                "  chordless cycle of length {} ({}): {} - {}",
                cycle.len(),
                if cycle_ok {
                    "re-checked"
                } else {
                    "RE-CHECK FAILED"
                },
                cycle.join(" - "),
                cycle[0]
            );
            let fill_json = match &w.triangulation {
                Triangulation::Minimal { algorithm, fill_in } => {
                    let shown: Vec<String> = fill_in
                        .iter()
                        .take(20)
                        .map(|&(u, v)| format!("{} -- {}", name(u), name(v)))
                        .collect();
                    let _ = writeln!(
                        summary,
                        "  a minimal triangulation ({}) adds {} edge(s){}{}",
                        algorithm.name(),
                        fill_in.len(),
                        if shown.is_empty() { "" } else { ": " },
                        shown.join(", ")
                    );
                    if fill_in.len() > shown.len() {
                        let _ = writeln!(
                            summary,
                            "  ... and {} more (--json lists all)",
                            fill_in.len() - shown.len()
                        );
                    }
                    json!({
                        "algorithm": algorithm.name(),
                        "size": fill_in.len(),
                        "edges": fill_in.iter().map(|&(u, v)| [name(u), name(v)]).collect::<Vec<_>>(),
                    })
                }
                Triangulation::NotComputed { reason } => {
                    let _ = writeln!(summary, "  no minimal triangulation: {reason}");
                    json!({ "not_computed": reason.to_string() })
                }
            };
            let mut regions_json = Value::Null;
            if let Some(dep) = dep {
                let _ = writeln!(summary, "  the cycle's couplings come from these regions:");
                let mut per_edge = Vec::new();
                for i in 0..w.cycle.len() {
                    let (u, v) = (w.cycle[i], w.cycle[(i + 1) % w.cycle.len()]);
                    let who = dep.regions_using(u, v);
                    let _ = writeln!(
                        summary,
                        "    {} -- {}: {}",
                        name(u),
                        name(v),
                        who.join(", ")
                    );
                    per_edge.push(json!({ "edge": [name(u), name(v)], "regions": who }));
                }
                regions_json = Value::Array(per_edge);
            }
            let outcome = if cycle_ok {
                Outcome::Counterexample
            } else {
                Outcome::Unknown
            };
            let evidence = want_json.then(|| {
                json!({
                    "chordal": false,
                    "chordless_cycle": cycle,
                    "triangulation": fill_json,
                    "cycle_regions": regions_json,
                    "rechecked": cycle_ok,
                })
                .to_string()
            });
            (outcome, evidence)
        }
    };
    for n in &notes {
        let _ = writeln!(summary, "  note: {n}");
    }
    Check {
        outcome,
        summary,
        json: json!({
            "check": "chordality",
            "input": input,
            "verdict": outcome,
            "vertices": g.n(),
            "edges": g.m(),
            "self_loops": self_loops,
            "duplicate_edges": duplicate_edges,
            "notes": notes,
            "decided_ms": decided_ms,
        }),
        evidence,
    }
}

fn binary_check(binary: &Path, dep: &DependenceGraph, want_json: bool) -> Check {
    let input = format!("the dependence graph of {}", binary.display());
    let mut check = chordality_check(&input, &dep.graph, Some(dep), None, want_json);
    let g = &dep.graph;
    let mut regions = String::new();
    for r in &dep.regions {
        if r.touches.is_empty() {
            continue;
        }
        let used: Vec<&str> = r.touches.iter().map(|&v| g.name(v)).collect();
        let _ = writeln!(
            regions,
            "    {} ({}, {} function(s)): {}",
            r.root,
            r.kind,
            r.functions,
            used.join(", ")
        );
    }
    let _ = write!(
        check.summary,
        "  {} functions, {} regions touching something:\n{regions}",
        dep.functions,
        dep.regions.iter().filter(|r| !r.touches.is_empty()).count()
    );
    check.json["functions"] = json!(dep.functions);
    check.json["regions"] = json!(
        dep.regions
            .iter()
            .map(|r| json!({
                "root": r.root,
                "kind": r.kind,
                "functions": r.functions,
                "touches": r.touches.iter().map(|&v| g.name(v)).collect::<Vec<_>>(),
            }))
            .collect::<Vec<_>>()
    );
    check
}

/// Reads and validates a controller file (YAML; JSON is YAML too).
/// Where a controller's sensitivity came from, when a profile gave it.
struct Estimated {
    profile: PathBuf,
    fit: drift::SensitivityEstimate,
}

/// Reads and validates a controller file. Without `sensitivity` in it, `K`
/// (and `u0`, unless given) is fitted to `profile`'s price/usage series.
fn read_controller(
    path: &Path,
    profile: Option<&Path>,
    profile_for_binary: bool,
) -> Result<(PathBuf, Controller, Option<Estimated>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let spec: ControllerSpec = serde_norway::from_str(&text).map_err(|e| match e.location() {
        Some(l) => anyhow::anyhow!("{}:{}:{}: {e}", path.display(), l.line(), l.column()),
        None => anyhow::anyhow!("{}: {e}", path.display()),
    })?;
    let (spec, estimated) = match (spec.sensitivity.is_some(), profile) {
        (false, Some(p)) => {
            let fit = estimate_from_profile(&spec, p)?;
            (
                spec.with_estimate(&fit),
                Some(Estimated {
                    profile: p.to_owned(),
                    fit,
                }),
            )
        }
        (true, Some(p)) if !profile_for_binary => bail!(
            "{} gives `sensitivity`, so --profile {} has nothing to estimate: leave out one of them",
            path.display(),
            p.display()
        ),
        _ => (spec, None),
    };
    let ctrl = spec.validate().map_err(|e| match &estimated {
        Some(est) => anyhow::anyhow!(
            "{}: with K estimated from {} ({} samples, rms residual {:.3e}): {e}",
            path.display(),
            est.profile.display(),
            est.fit.samples,
            est.fit.residual
        ),
        None => anyhow::anyhow!("{}: {e}", path.display()),
    })?;
    Ok((path.to_owned(), ctrl, estimated))
}

/// Fits `K` and `u0` to the price/usage series a profile recorded
/// (`controller.samples` of `cargo panic run --config`), for the
/// controller's resources, by name; samples where a usage could not be
/// measured are left out.
fn estimate_from_profile(spec: &ControllerSpec, path: &Path) -> Result<drift::SensitivityEstimate> {
    let prof: cargo_panic_core::profile::Profile = cargo_panic_core::fsutil::read_json(path)?;
    let Some(series) = prof.controller else {
        bail!(
            "{}: this profile has no price/usage series to estimate the sensitivity from (they are \
             recorded by `cargo panic run --config` with a controller)",
            path.display()
        );
    };
    let columns: Vec<usize> =
        spec.resources
            .iter()
            .map(|r| {
                series.resources.iter().position(|s| s == r).with_context(|| {
                format!(
                    "{}: the profile's controller priced {}, not `{r}`: estimate from a run of \
                     this controller",
                    path.display(),
                    series.resources.join(", ")
                )
            })
            })
            .collect::<Result<_>>()?;
    let (mut prices, mut usage) = (Vec::new(), Vec::new());
    for sample in &series.samples {
        let used: Option<Vec<f64>> = columns
            .iter()
            .map(|&c| sample.usage.get(c).copied().flatten())
            .collect();
        let priced: Option<Vec<f64>> = columns
            .iter()
            .map(|&c| sample.price.get(c).copied())
            .collect();
        if let (Some(u), Some(p)) = (used, priced) {
            usage.push(u);
            prices.push(p);
        }
    }
    drift::estimate_sensitivity(&prices, &usage).map_err(|e| {
        anyhow::anyhow!(
            "{}: cannot estimate the sensitivity from its {} usable samples: {e}",
            path.display(),
            prices.len()
        )
    })
}

/// The drift certificate of a controller. The check decomposes over the clique
/// tree of the resources' coupling graph when that graph is chordal.
fn drift_check(path: &Path, ctrl: &Controller, estimated: Option<&Estimated>) -> Check {
    let names = ctrl.names();
    let pairs: Vec<(u32, u32)> = ctrl
        .coupling_pairs()
        .into_iter()
        .map(|(i, j)| (i as u32, j as u32))
        .collect();
    let coupling = Graph::from_edges(names.clone(), &pairs);
    let (tree, coupling_note) = match chordal::check(&coupling) {
        Chordality::Chordal(cert) => (
            Some(drift::CliqueTree {
                cliques: cert
                    .cliques
                    .iter()
                    .map(|c| c.iter().map(|&v| v as usize).collect())
                    .collect(),
                edges: cert
                    .clique_tree
                    .pairs()
                    .iter()
                    .map(|&(a, b)| (a as usize, b as usize))
                    .collect(),
            }),
            format!(
                "coupling graph chordal ({} cliques, largest {})",
                cert.cliques.len(),
                cert.cliques.iter().map(<[u32]>::len).max().unwrap_or(0)
            ),
        ),
        Chordality::NotChordal(w) => (
            None,
            format!(
                "coupling graph not chordal (chordless cycle {}): checked without a clique split",
                w.cycle
                    .iter()
                    .map(|&v| coupling.name(v))
                    .collect::<Vec<_>>()
                    .join(" - ")
            ),
        ),
    };
    let started = Instant::now();
    let verdict = drift::certify(ctrl, tree.as_ref(), &drift::DriftConfig::default());
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    let head = format!(
        "drift of the price controller in {} ({} resources: {})",
        path.display(),
        names.len(),
        names.join(", ")
    );
    let mut summary = String::new();
    let outcome = match &verdict {
        DriftVerdict::Certified(c) if c.scope == Scope::ProjectedController => {
            let _ = writeln!(summary, "{head}: certified");
            let _ = writeln!(summary, "  {}", c.what_is_certified);
            let _ = writeln!(
                summary,
                "  P {:?} ({}), epsilon = {} ({:.4}), B = {}, p* = [{}]",
                c.p_shape,
                if c.p_matrix.len() <= 6 {
                    c.p_matrix
                        .iter()
                        .map(|r| r.join(" "))
                        .collect::<Vec<_>>()
                        .join("; ")
                } else {
                    "--json prints it".to_string()
                },
                c.epsilon,
                c.epsilon_approx,
                c.b,
                c.p_star.join(", ")
            );
            let _ = writeln!(
                summary,
                "  {}; z3: {} checks, all unsat, {:.0} ms",
                c.decomposition.summary,
                c.z3.checks.len(),
                c.z3.time_ms
            );
            Outcome::Certified
        }
        DriftVerdict::Certified(c) => {
            let _ = writeln!(summary, "{head}: UNKNOWN");
            let _ = writeln!(
                summary,
                "  only the unprojected linear model is certified, not the controller: {}",
                c.what_is_certified
            );
            Outcome::Unknown
        }
        DriftVerdict::Counterexample(c) => {
            let _ = writeln!(summary, "{head}: COUNTEREXAMPLE");
            let _ = writeln!(summary, "  {}", c.reason);
            let _ = writeln!(
                summary,
                "  from p0 = [{}]: drift {} ({}); the iteration {} over {} steps (distance to p* {:.3e} -> {:.3e})",
                c.p0.join(", "),
                c.drift.as_deref().unwrap_or("?"),
                c.lyapunov,
                format!("{:?}", c.trajectory.behaviour).to_lowercase(),
                c.trajectory.steps,
                c.trajectory.first_distance,
                c.trajectory.last_distance
            );
            Outcome::Counterexample
        }
        DriftVerdict::Unknown { reason } => {
            let _ = writeln!(summary, "{head}: UNKNOWN (never a pass)");
            let _ = writeln!(summary, "  {reason}");
            Outcome::Unknown
        }
    };
    let _ = writeln!(summary, "  {coupling_note}");
    if let Some(est) = estimated {
        let _ = writeln!(
            summary,
            "  K and u0 estimated from {}: {} samples, rms residual {:.3e}; K = [{}]",
            est.profile.display(),
            est.fit.samples,
            est.fit.residual,
            est.fit
                .sensitivity
                .iter()
                .map(|r| r
                    .iter()
                    .map(|x| format!("{x:.4}"))
                    .collect::<Vec<_>>()
                    .join(" "))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Check {
        outcome,
        summary,
        json: json!({
            "check": "drift",
            "input": path.display().to_string(),
            "verdict": outcome,
            "coupling": coupling_note,
            "decided_ms": elapsed_ms,
            "sensitivity_estimate": estimated.map(|e| json!({
                "profile": e.profile.display().to_string(),
                "fit": e.fit,
            })),
        }),
        evidence: Some(serde_json::to_string(&verdict).expect("a verdict serialises")),
    }
}
