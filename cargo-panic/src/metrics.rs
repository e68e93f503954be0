//! `cargo panic run --metrics ADDR`: the program's live state in Prometheus
//! text format (version 0.0.4), for dashboards and autoscalers
//! (deploy/hpa.yaml scales on `dwell_seconds_current_average`). Rendering is
//! pure; `serve` is the IO shell (a loopback-or-wherever HTTP listener).
//!
//! Metrics:
//! - `dwell_seconds_current{region}`: for each timed region some thread is in
//!   now, the mean time those threads have been inside it (a region is a
//!   function, or `function -> callee` for a timed blocking or lock call);
//! - `dwell_seconds_current_average`: the mean, over threads inside any
//!   region, of the time since each entered its outermost open region (one
//!   in-flight unit of work per thread: what an autoscaler keeps low);
//! - `cargo_panic_threads_in_regions`: how many threads that is;
//! - `cargo_panic_price{resource}`: the prices of the run's price map (kernel
//!   side only);
//! - `cargo_panic_calls_total{function}`: entries of each instrumented
//!   function so far.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use panic_runtime::SiteKind;
use panic_runtime::segment::{Live, Snapshot};

use crate::manifest::Manifest;

/// How long the threads inside timed regions have been in them, at
/// `now_ticks`: per region (named with `manifest`, else `#site`), the sum of
/// ages and the count of threads; over threads, the sum and count of the
/// ages of their outermost open regions.
pub struct CurrentDwell {
    pub per_region: BTreeMap<String, (f64, u64)>,
    pub outer_sum: f64,
    pub outer_n: u64,
}

impl CurrentDwell {
    /// `dwell_seconds_current_average`: the mean age of the threads'
    /// outermost open regions, 0 when no thread is inside one.
    pub fn average(&self) -> f64 {
        if self.outer_n == 0 {
            0.0
        } else {
            self.outer_sum / self.outer_n as f64
        }
    }
}

/// The current dwell of a snapshot (pure).
pub fn current_dwell(manifest: Option<&Manifest>, snap: &Snapshot, now_ticks: u64) -> CurrentDwell {
    let end = snap.header.end_or_now();
    let secs = |ticks: u64| snap.header.clock.ticks_to_ns(ticks, end) as f64 / 1e9;
    let mut per_region: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    let (mut outer_sum, mut outer_n) = (0.0, 0u64);
    for t in snap.threads.iter().filter(|t| t.tid != 0) {
        for (depth, f) in t.stack.iter().enumerate() {
            let age = secs(now_ticks.saturating_sub(f.t));
            let name = manifest
                .and_then(|m| m.sites.get(f.site as usize))
                .map_or_else(
                    || format!("#{}", f.site),
                    |s| match &s.callee {
                        // A timed call (blocking, lock): its own region.
                        Some(c) => format!("{} -> {c}", s.function),
                        None => s.function.clone(),
                    },
                );
            let e = per_region.entry(name).or_insert((0.0, 0));
            e.0 += age;
            e.1 += 1;
            if depth == 0 {
                outer_sum += age;
                outer_n += 1;
            }
        }
    }
    CurrentDwell {
        per_region,
        outer_sum,
        outer_n,
    }
}

/// Renders the metrics of one snapshot (and the prices, when the run has a
/// price map). `now_ticks` is the reading of the run's clock to measure
/// current dwell against.
pub fn render(
    manifest: &Manifest,
    snap: &Snapshot,
    now_ticks: u64,
    prices: Option<&[f64]>,
) -> String {
    let dwell = current_dwell(Some(manifest), snap, now_ticks);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP dwell_seconds_current Mean time the threads inside a timed region have been in it."
    );
    let _ = writeln!(out, "# TYPE dwell_seconds_current gauge");
    for (region, (sum, n)) in &dwell.per_region {
        let _ = writeln!(
            out,
            "dwell_seconds_current{{region=\"{}\"}} {}",
            escape(region),
            sum / *n as f64
        );
    }
    let _ = writeln!(
        out,
        "# HELP dwell_seconds_current_average Mean time since each thread inside a region entered its outermost one."
    );
    let _ = writeln!(out, "# TYPE dwell_seconds_current_average gauge");
    let _ = writeln!(out, "dwell_seconds_current_average {}", dwell.average());
    let _ = writeln!(
        out,
        "# HELP cargo_panic_threads_in_regions Threads inside a timed region now."
    );
    let _ = writeln!(out, "# TYPE cargo_panic_threads_in_regions gauge");
    let _ = writeln!(out, "cargo_panic_threads_in_regions {}", dwell.outer_n);
    if let Some(prices) = prices {
        let _ = writeln!(
            out,
            "# HELP cargo_panic_price The price of a resource in the run's price map."
        );
        let _ = writeln!(out, "# TYPE cargo_panic_price gauge");
        for (r, p) in panic_bpf::RESOURCES.iter().zip(prices) {
            let _ = writeln!(out, "cargo_panic_price{{resource=\"{r}\"}} {p}");
        }
    }
    let _ = writeln!(
        out,
        "# HELP cargo_panic_calls_total Entries of an instrumented function."
    );
    let _ = writeln!(out, "# TYPE cargo_panic_calls_total counter");
    let mut calls: BTreeMap<&str, u64> = BTreeMap::new();
    for (i, s) in manifest.sites.iter().enumerate() {
        if s.kind == SiteKind::Entry {
            *calls.entry(&s.function).or_default() += snap.counters.get(i).copied().unwrap_or(0);
        }
    }
    for (f, n) in calls.iter().filter(|(_, n)| **n > 0) {
        let _ = writeln!(
            out,
            "cargo_panic_calls_total{{function=\"{}\"}} {n}",
            escape(f)
        );
    }
    out
}

/// A label value as the text format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The prices to show, shared with the controller (None: no price map).
pub type SharedPrices = Arc<Mutex<Option<Vec<f64>>>>;

/// A running metrics listener; stops (and frees its port) on drop.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub addr: std::net::SocketAddr,
}

impl Server {
    /// Listens on `addr` and answers `GET /metrics` from the live segment at
    /// `segment` (read at each scrape) and `prices`.
    pub fn start(
        addr: &str,
        manifest: Arc<Manifest>,
        segment: PathBuf,
        prices: SharedPrices,
    ) -> anyhow::Result<Server> {
        let server = tiny_http::Server::http(addr).map_err(|e| {
            anyhow::anyhow!(
                "cannot serve metrics on {addr}: {e}; give a free HOST:PORT (port 0 picks one)"
            )
        })?;
        let bound = match server.server_addr() {
            tiny_http::ListenAddr::IP(a) => a,
            _ => anyhow::bail!("cannot serve metrics on {addr}: not an IP address"),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cargo-panic-metrics".into())
            .spawn(move || {
                let mut live: Option<Live> = None;
                while !stop2.load(Ordering::Relaxed) {
                    let Ok(Some(req)) = server.recv_timeout(std::time::Duration::from_millis(50))
                    else {
                        continue;
                    };
                    let response = if req.url() == "/metrics" {
                        let body = scrape(&manifest, &segment, &mut live, &prices);
                        let header = tiny_http::Header::from_bytes(
                            &b"Content-Type"[..],
                            &b"text/plain; version=0.0.4; charset=utf-8"[..],
                        )
                        .expect("a valid header");
                        tiny_http::Response::from_string(body).with_header(header)
                    } else {
                        tiny_http::Response::from_string("cargo-panic serves /metrics only\n")
                            .with_status_code(404)
                    };
                    let _ = req.respond(response);
                }
            })?;
        Ok(Server {
            stop,
            thread: Some(thread),
            addr: bound,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One scrape: the segment as it is now (empty metrics until the program's
/// runtime has created it).
fn scrape(
    manifest: &Manifest,
    segment: &PathBuf,
    live: &mut Option<Live>,
    prices: &SharedPrices,
) -> String {
    if live.is_none() {
        *live = Live::open(segment).ok();
    }
    let prices = prices.lock().ok().and_then(|p| p.clone());
    match live.as_mut().map(Live::snapshot) {
        Some(Ok(snap)) => {
            let now = snap.header.end_ticks();
            render(manifest, &snap, now, prices.as_deref())
        }
        _ => "# the program's runtime has not set up its segment yet\n".into(),
    }
}
