//! The price controller (DESIGN §4 "Prices"): the run config that sets it up
//! and the projected dual ascent it runs, `p <- max(0, p + a·(usage − capacity))`.
//! Pure: the IO shell (`run_cmd`) measures usage and writes the prices.
//!
//! The run config (`cargo panic run --config run.yaml`), YAML or JSON (its
//! `fuses` section: crate::fuse):
//!
//! ```yaml
//! period: 250ms              # how often usage is measured and prices move
//! controller:                # the same fields as a `verify --controller` file
//!   resources: [cpu, memory] # cpu (cores), memory (bytes), io, network (bytes/s), dwell (s)
//!   capacity: [1.5, 314572800]
//!   step: [0.5, 1.0e-8]      # one number, or one per resource
//!   sensitivity: [[1, 0], [0, 1]]  # optional here (the verifier needs it, or fits it to this run's profile)
//! ```
//!
//! `cpu:pressure`, `memory:pressure` or `io:pressure` in place of `cpu`,
//! `memory` or `io` prices that resource by how much the target stalls on
//! it instead of how much it uses: the share of each period in which some of
//! its tasks waited for it (the kernel's pressure stall information of the
//! target's cgroup, 0 to 1). The price is the resource's (the program reads
//! it as `cpu`, `memory` or `io`); a fuse names it either way.

use std::path::Path;

use anyhow::{Context, Result};
use panic_verifier::drift::Step;
use serde::{Deserialize, Serialize};

use crate::budget::parse_duration;

/// The resources a run can price, in the price map's order.
pub const RESOURCES: [&str; 5] = panic_bpf::RESOURCES;

/// The resources whose usage can be their pressure (`<resource>:pressure`).
pub const PRESSURED: [&str; 3] = ["cpu", "memory", "io"];

/// The price-map resource a configured name prices: `memory` for `memory`
/// and for `memory:pressure`.
pub fn kind(name: &str) -> &str {
    name.split_once(':').map_or(name, |(k, _)| k)
}

/// Whether a configured name measures its resource's pressure.
pub fn is_pressure(name: &str) -> bool {
    name.split_once(':').is_some_and(|(_, q)| q == "pressure")
}

/// What the run config file holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunConfigFile {
    #[serde(default)]
    period: Option<String>,
    #[serde(default)]
    controller: Option<ControllerFile>,
    #[serde(default)]
    fuses: Vec<crate::fuse::FuseFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ControllerFile {
    resources: Vec<String>,
    capacity: Vec<f64>,
    /// The verifier's own type: the run config's controller is a controller file.
    step: Step,
    #[serde(default)]
    #[allow(dead_code)] // read by `cargo panic verify --controller`, not by the run
    sensitivity: Option<Vec<Vec<f64>>>,
    #[serde(default)]
    #[allow(dead_code)]
    baseline_usage: Option<Vec<f64>>,
}

/// A validated run config.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    pub period_ns: u64,
    pub controller: Option<ControllerConfig>,
    /// Fuses and their trip rules (crate::fuse).
    pub fuses: Vec<crate::fuse::FuseRule>,
}

impl RunConfig {
    /// Whether the controller prices some resource by its pressure, which
    /// needs the target in a cgroup of its own.
    pub fn needs_pressure(&self) -> bool {
        self.controller
            .as_ref()
            .is_some_and(|c| c.resources.iter().any(|r| is_pressure(r)))
    }
}

/// A validated controller: resource indexes into [`RESOURCES`], capacities
/// and step sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControllerConfig {
    pub resources: Vec<String>,
    pub capacity: Vec<f64>,
    pub step: Vec<f64>,
}

/// The default period.
pub const DEFAULT_PERIOD_NS: u64 = 250_000_000;

impl RunConfig {
    /// Reads and validates a run config; errors name the file, and the line
    /// and column where the parser knows them.
    pub fn read(path: &Path) -> Result<RunConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the run config {}", path.display()))?;
        RunConfig::parse(&text).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))
    }

    /// Parses and validates run-config text (errors start with `line:column: `
    /// when they have a place).
    pub fn parse(text: &str) -> Result<RunConfig, String> {
        let file: RunConfigFile = serde_norway::from_str(text).map_err(|e| match e.location() {
            Some(l) => format!("{}:{}: {e}", l.line(), l.column()),
            None => format!(" {e}"),
        })?;
        let period_ns = match &file.period {
            None => DEFAULT_PERIOD_NS,
            Some(p) => parse_duration(p)
                .filter(|&ns| ns >= 1_000_000)
                .ok_or_else(|| {
                    format!(" period '{p}' is not a duration of at least 1ms (e.g. 250ms)")
                })?,
        };
        let controller = file.controller.map(validate).transpose()?;
        let priced = controller.as_ref().map_or(&[][..], |c| &c.resources[..]);
        let fuses = crate::fuse::validate(file.fuses, priced)?;
        Ok(RunConfig {
            period_ns,
            controller,
            fuses,
        })
    }
}

fn validate(c: ControllerFile) -> Result<ControllerConfig, String> {
    let n = c.resources.len();
    if n == 0 {
        return Err(
            " controller.resources is empty: name at least one of cpu, memory, io, network, dwell"
                .into(),
        );
    }
    for (i, r) in c.resources.iter().enumerate() {
        let k = kind(r);
        if !RESOURCES.contains(&k) || (k != r && !(is_pressure(r) && PRESSURED.contains(&k))) {
            return Err(format!(
                " controller.resources[{i}] '{r}' is not a resource (cpu, memory, io, network, \
                 dwell, or cpu:pressure, memory:pressure, io:pressure)"
            ));
        }
        if c.resources[..i].iter().any(|o| kind(o) == k) {
            return Err(format!(
                " controller.resources prices '{k}' twice: one price per resource"
            ));
        }
    }
    if c.capacity.len() != n {
        return Err(format!(
            " controller.capacity has {} values for {n} resources",
            c.capacity.len()
        ));
    }
    if let Some((i, v)) = c
        .capacity
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite() || **v < 0.0)
    {
        return Err(format!(
            " controller.capacity[{i}] = {v}: capacities are finite and >= 0"
        ));
    }
    let step = match c.step {
        Step::Uniform(a) => vec![a; n],
        Step::PerResource(v) => v,
    };
    if step.len() != n {
        return Err(format!(
            " controller.step has {} values for {n} resources",
            step.len()
        ));
    }
    if let Some((i, v)) = step
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite() || **v <= 0.0)
    {
        return Err(format!(
            " controller.step[{i}] = {v}: steps are finite and > 0"
        ));
    }
    Ok(ControllerConfig {
        resources: c.resources,
        capacity: c.capacity,
        step,
    })
}

/// The dual ascent's state: one price per configured resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Controller {
    pub config: ControllerConfig,
    pub prices: Vec<f64>,
}

impl Controller {
    pub fn new(config: ControllerConfig) -> Controller {
        let n = config.resources.len();
        Controller {
            config,
            prices: vec![0.0; n],
        }
    }

    /// One period: `p_i <- max(0, p_i + a_i·(usage_i − c_i))`. A resource
    /// whose usage could not be measured this period keeps its price.
    pub fn step(&mut self, usage: &[Option<f64>]) -> &[f64] {
        for (i, p) in self.prices.iter_mut().enumerate() {
            if let Some(u) = usage.get(i).copied().flatten() {
                *p = (*p + self.config.step[i] * (u - self.config.capacity[i])).max(0.0);
            }
        }
        &self.prices
    }

    /// The prices laid out as the price map has them (zeros for resources
    /// not configured).
    pub fn map_prices(&self) -> [f64; 5] {
        let mut out = [0.0; 5];
        for (r, p) in self.config.resources.iter().zip(&self.prices) {
            if let Some(i) = RESOURCES.iter().position(|x| *x == kind(r)) {
                out[i] = *p;
            }
        }
        out
    }
}

/// One period of the profile's controller series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Nanoseconds since the program started.
    pub t_ns: u64,
    /// Per configured resource; null when it could not be measured.
    pub usage: Vec<Option<f64>>,
    pub price: Vec<f64>,
}

/// The profile's `controller` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControllerSeries {
    pub period_ns: u64,
    pub resources: Vec<String>,
    pub capacity: Vec<f64>,
    pub step: Vec<f64>,
    /// Units of usage and capacity, per resource.
    pub units: Vec<String>,
    /// Where usage was read: the target's cgroup (every process of the
    /// program) or /proc of its main process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_from: Option<String>,
    pub samples: Vec<Sample>,
}

impl ControllerSeries {
    pub fn new(period_ns: u64, c: &ControllerConfig) -> ControllerSeries {
        ControllerSeries {
            period_ns,
            resources: c.resources.clone(),
            capacity: c.capacity.clone(),
            step: c.step.clone(),
            units: c.resources.iter().map(|r| unit(r).to_string()).collect(),
            measured_from: None,
            samples: Vec::new(),
        }
    }
}

/// What usage of a resource is measured in.
pub fn unit(resource: &str) -> &'static str {
    if is_pressure(resource) {
        return "share of time stalled";
    }
    match resource {
        "cpu" => "cores",
        "memory" => "bytes",
        "io" => "bytes/s",
        "network" => "bytes/s",
        "dwell" => "seconds",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_price_map_and_the_verifier_name_the_same_resources() {
        let verifier: Vec<&str> = panic_verifier::drift::ResourceKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(RESOURCES.to_vec(), verifier);
    }

    #[test]
    fn a_run_config_parses() {
        let c = RunConfig::parse(
            "period: 100ms\ncontroller:\n  resources: [cpu, memory]\n  capacity: [1.5, 1000]\n  step: 0.5\n",
        )
        .unwrap();
        assert_eq!(c.period_ns, 100_000_000);
        let k = c.controller.unwrap();
        assert_eq!(k.step, vec![0.5, 0.5]);
        assert_eq!(RunConfig::parse("{}").unwrap().period_ns, DEFAULT_PERIOD_NS);
    }

    #[test]
    fn bad_run_configs_are_located() {
        for (text, needle) in [
            ("perod: 1s\n", "1:1: unknown field `perod`"),
            ("period: soon\n", "period 'soon' is not a duration"),
            ("period: 10us\n", "at least 1ms"),
            (
                "controller:\n  resources: [gpu]\n  capacity: [1]\n  step: 1\n",
                "'gpu' is not a resource",
            ),
            (
                "controller:\n  resources: [cpu]\n  capacity: [1, 2]\n  step: 1\n",
                "2 values for 1 resources",
            ),
            (
                "controller:\n  resources: [cpu]\n  capacity: [1]\n  step: 0\n",
                "steps are finite and > 0",
            ),
            (
                "controller:\n  resources: [cpu, cpu]\n  capacity: [1, 1]\n  step: 1\n",
                "twice",
            ),
            (
                "controller:\n  resources: [cpu, 'cpu:pressure']\n  capacity: [1, 1]\n  step: 1\n",
                "prices 'cpu' twice",
            ),
            (
                "controller:\n  resources: ['network:pressure']\n  capacity: [1]\n  step: 1\n",
                "'network:pressure' is not a resource",
            ),
            (
                "controller:\n  resources: ['memory:peak']\n  capacity: [1]\n  step: 1\n",
                "'memory:peak' is not a resource",
            ),
        ] {
            let e = RunConfig::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    /// `memory:pressure` sets the memory price, is measured as a share of
    /// time, and is what fuses and the series call it (or `memory`).
    #[test]
    fn a_pressure_resource_prices_its_resource() {
        let c = RunConfig::parse(
            "controller:\n  resources: [cpu, 'memory:pressure']\n  capacity: [1, 0.1]\n  step: 1\n\
             fuses:\n  - name: shed\n    trip: {price: memory, above: 0.5}\n",
        )
        .unwrap();
        assert!(c.needs_pressure());
        let mut k = Controller::new(c.controller.clone().unwrap());
        k.step(&[Some(1.5), Some(0.6)]);
        assert_eq!(k.map_prices(), [0.5, 0.5, 0.0, 0.0, 0.0]);
        let series = ControllerSeries::new(c.period_ns, &k.config);
        assert_eq!(series.units, ["cores", "share of time stalled"]);
        assert!(
            !RunConfig::parse("controller:\n  resources: [memory]\n  capacity: [1]\n  step: 1\n")
                .unwrap()
                .needs_pressure()
        );
    }

    #[test]
    fn prices_rise_over_capacity_and_never_go_below_zero() {
        let mut c = Controller::new(ControllerConfig {
            resources: vec!["memory".into(), "cpu".into()],
            capacity: vec![100.0, 1.0],
            step: vec![0.01, 0.5],
        });
        c.step(&[Some(150.0), Some(0.5)]);
        assert_eq!(c.prices, vec![0.5, 0.0]);
        c.step(&[Some(150.0), None]);
        assert_eq!(
            c.prices,
            vec![1.0, 0.0],
            "an unmeasured resource keeps its price"
        );
        c.step(&[Some(0.0), Some(3.0)]);
        assert_eq!(c.prices, vec![0.0, 1.0]);
        assert_eq!(c.map_prices(), [1.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
