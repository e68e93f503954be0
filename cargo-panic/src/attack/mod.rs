//! The attack engine's library side (`cargo panic attack`, issue 7). Pure
//! cores: `units`, `condition`, `timeline` (with `yamlpos` for error
//! positions), `schedule`, `stats`. IO parts the engine drives: `proxy`
//! (network faults), `stress` (stressor processes), `workload` (built-in
//! load), and the run's cgroups (`crate::cgroup`).

pub mod condition;
pub mod engine;
pub mod feasibility;
pub mod html;
pub mod inject;
pub mod mechanism;
pub mod probe;
pub mod proxy;
pub mod report;
pub mod schedule;
pub mod sites;
pub mod stats;
pub mod stress;
pub mod target;
pub mod timeline;
pub mod units;
pub mod verdict;
pub mod workload;
pub mod yamlpos;
