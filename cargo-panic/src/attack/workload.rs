//! The built-in workload of `cargo panic attack`: an open-loop TCP/HTTP load
//! generator on loopback.
//!
//! During an attack the target gets load either from a user command or from
//! a [`LoadGen`]. The generator only knows an address (the target's, or the
//! fault proxy's in front of it), runs on its own thread with its own
//! current-thread tokio runtime, and the engine reads one [`LoadStats`] per
//! tick with [`LoadGen::take_window`].
//!
//! # The model: open loop
//!
//! Requests are due on a fixed schedule that does not depend on how fast the
//! target answers: at rate `r`, request `i` of the current schedule is due at
//! `start + i / r`, computed from `start` every time (so sleeping late does not
//! accumulate drift). With [`LoadOptions::jitter`] `j > 0` (0 by default) request
//! `i` is due at `start + (i + j * u_i) / r` instead, where `u_i` in `[0, 1)` is
//! a pure function of `(seed, schedule number, i)`: the same seed and the same
//! sequence of [`LoadGen::set_rate`] calls give the same due times, and due
//! times never go backwards. [`LoadGen::set_rate`] starts a new schedule:
//! its first request is due one new interval after the last due request, or
//! now if that is already past (so a rate change neither bunches two requests
//! nor leaves a gap longer than the new interval). Setting the same rate again
//! changes nothing; rate 0 pauses. Once `set_rate` returns, no request of the
//! old schedule is sent any more.
//!
//! Every request opens its own connection (connect, send, read the reply,
//! close). At most [`LoadSpec::concurrency`] requests are in flight; a request
//! that becomes due while that many are in flight is **dropped**: counted, never
//! sent, never queued. Dropped requests are what overload looks like from the
//! client side: a closed-loop client would just not have sent them. When the
//! generator is behind its schedule and finds no free slot, every request
//! already due is dropped in one step, so `due` keeps up with the clock even
//! when the generator itself is saturated.
//!
//! The scheduler sleeps on a `timerfd` (the kernel's high-resolution timer,
//! polled by the runtime) rather than tokio's timer, whose 1 ms resolution
//! would start every request up to 1-2 ms late.
//!
//! # What is counted
//!
//! Per window ([`LoadGen::take_window`]) and in total ([`LoadGen::totals`]):
//!
//! - `due`: requests whose due time came in the window; `due = sent + dropped`.
//! - `sent`: requests started (a connection attempted) in the window.
//! - `dropped`: due while `concurrency` requests were in flight.
//! - `ok` and `failed`: requests that *completed* in the window, by outcome.
//!   A request started in one window and finished in the next counts as sent
//!   in the first and ok/failed in the second, so over any run
//!   `sent = ok + sum(failed) + in_flight`, and the windows add up exactly to
//!   the totals.
//! - `failed` by kind ([`FailureKind`]): `refused` (`ECONNREFUSED`), `reset`
//!   (`ECONNRESET`, `EPIPE`, `ECONNABORTED`), `timeout` (the per-request
//!   [`LoadSpec::timeout`] ran out, connect included, or the kernel said
//!   `ETIMEDOUT`), `eof` (the peer closed cleanly before the reply was
//!   complete), `status` (HTTP status outside 2xx/3xx), `other` (anything else:
//!   a malformed HTTP response, `EADDRNOTAVAIL`, `EMFILE`, ...). Only kinds
//!   that occurred appear in the map.
//! - A TCP request ([`Request::Tcp`]) is ok once the bytes read contain
//!   `expect` (or, without `expect`, once the first read returns data). An
//!   HTTP request ([`Request::Http`]) is ok once the whole response was read
//!   (by `Content-Length`, by chunked framing, or until EOF) and its status is
//!   2xx or 3xx.
//!
//! # What the latencies mean
//!
//! Three distributions, all over the `ok` requests of the window:
//!
//! - `latency`: from the request's **due time** to the end of its reply. This
//!   is what a user arriving on schedule would see, and it is the figure to
//!   report: it includes any delay in sending, so a stalled generator cannot
//!   hide a stalled target (the "coordinated omission" of closed-loop
//!   generators, which time requests from when they managed to send them and
//!   so leave out the wait of the requests they never sent on time).
//! - `service`: from the actual start of the request (the connect) to the end
//!   of its reply: the time the target (and the network path) took.
//! - `send_lag`: `latency - service` per request, the generator's own delay in
//!   starting a due request (timer wake-up, then the runtime getting to the
//!   new task). Measured here on a quiet machine below saturation: p99 0.1 to
//!   0.15 ms up to 5,000 requests/s, 0.12 to 0.27 ms at 10,000/s (release
//!   build); while other builds ran on the same two cores it reached 2 ms. If
//!   it grows to tens of milliseconds, the generator, not the target, is the
//!   bottleneck.
//!
//! Since a due request that finds no free slot is dropped, not queued, no
//! client-side queueing time can build up in `latency`: the only gap between
//! `latency` and `service` is `send_lag`, and overload shows up as `dropped`.
//! What keeps coordinated omission out is the open loop itself: requests keep
//! being sent on schedule while earlier ones are stuck, so when the target
//! stalls, every request due during the stall records the wait it really had
//! (`tests/workload.rs` `a_stall_shows_in_the_high_quantiles`). Once the
//! generator is saturated, `service` also contains its own delay in handling
//! the replies.
//!
//! Each distribution is kept in a log-linear histogram written here
//! ([`Histogram`]): values below 256 ns exactly, above that 128 linear
//! buckets per power of two, so a bucket is at most 1/128 of its lower bound
//! wide. A quantile is reported as the middle of its bucket (clamped to the
//! exact maximum), so its relative error is below 0.4% (the design bound is
//! 1%); `max_ns` and `mean_ns` are exact. Memory grows with the largest value
//! seen (24 KiB per histogram for values up to one second).
//!
//! # Bursts
//!
//! [`LoadGen::burst`] adds a "thundering herd" alongside the schedule: it
//! opens many connections as close to simultaneously as one thread can (the
//! sockets are created first, then every connect is issued in one pass of
//! the runtime), sends one request on each, keeps each open until `hold` after
//! the burst started, and closes them. Bursts are outside the concurrency
//! limit and outside [`LoadStats`]; their outcome is a [`BurstResult`].
//!
//! # Limits
//!
//! - One thread: the generator, its request tasks and bursts share one core,
//!   and at high rates the generator itself is the bottleneck. Measured on the
//!   development machine (2 cores, loopback, a trivial one-thread tokio echo
//!   server, one connection per request, concurrency 512, `tests/workload.rs`
//!   `max_rate`, release build, three runs): 10,000 requests/s are kept
//!   (generator thread at 79-85% of a core, `send_lag` p99 0.12-0.27 ms);
//!   asked for 20,000 to 80,000/s it completes 13,500-13,800/s with its
//!   thread at 99% of a core (the server at about 50%), `send_lag` p99 grows
//!   to 20-36 ms and the rest is `dropped`. A debug build (the tests) tops out
//!   at about the same rate but already falls behind at 10,000/s when the
//!   machine is busy. A target that needs more load than that needs a command
//!   workload.
//! - Every request is a new connection, so the client side of each closes
//!   first and leaves a `TIME_WAIT` socket. On loopback Linux reuses those
//!   (`net.ipv4.tcp_tw_reuse` 2, the default); otherwise the default local
//!   port range (28,232 ports, 60 s in `TIME_WAIT`) runs out above about 470
//!   requests/s sustained (`other` failures, `EADDRNOTAVAIL`).
//! - Loopback only: [`LoadGen::start`] refuses any other address, so a typo
//!   cannot turn a stress run against a remote host.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, Interest};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// What one request does on its own connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Connect, write `send` (nothing if empty), then read until the bytes
    /// read contain `expect` (or, with `None`, until the first read returns
    /// data), then close. `expect` must not be empty.
    Tcp {
        send: Vec<u8>,
        expect: Option<Vec<u8>>,
    },
    /// `GET path HTTP/1.1` with `Host` and `Connection: close`; reads the
    /// status line and the whole response (`Content-Length`, chunked, or until
    /// EOF). 2xx and 3xx are ok, any other status is a `status` failure.
    /// `path` must start with `/` and contain no whitespace or control byte.
    Http { path: String },
}

/// What to send where, and how fast.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// The target (or the fault proxy in front of it). Must be loopback.
    pub addr: SocketAddr,
    pub request: Request,
    /// Requests per second, open loop: 0 (starts paused) or in
    /// [`MIN_RATE`, `MAX_RATE`].
    pub rate: f64,
    /// Most requests in flight (>= 1); a request due when this many are in
    /// flight is dropped, not queued.
    pub concurrency: u32,
    /// Bound of one request, connect included (> 0).
    pub timeout: Duration,
    /// Seed of the jitter draws (no effect without [`LoadOptions::jitter`]).
    pub seed: u64,
}

/// Less common settings of [`LoadGen::start_with`].
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Fraction of an interval, in `[0, 1]`, by which each due time is pushed
    /// later at random, seeded by [`LoadSpec::seed`] (see the module doc).
    /// 0, the default, is the exact schedule.
    pub jitter: f64,
}

/// Why a request failed. The names ([`FailureKind::as_str`]) are the keys of
/// [`LoadStats::failed`] and [`BurstResult::failed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureKind {
    /// `ECONNREFUSED`: nothing listens.
    Refused,
    /// `ECONNRESET`, `EPIPE`, `ECONNABORTED`.
    Reset,
    /// The per-request timeout ran out, or the kernel gave up (`ETIMEDOUT`).
    Timeout,
    /// The peer closed the connection cleanly before the reply was complete.
    Eof,
    /// HTTP status outside 2xx/3xx.
    Status,
    /// Anything else (malformed HTTP, `EADDRNOTAVAIL`, `EMFILE`, ...).
    Other,
}

impl FailureKind {
    pub const ALL: [FailureKind; 6] = [
        FailureKind::Refused,
        FailureKind::Reset,
        FailureKind::Timeout,
        FailureKind::Eof,
        FailureKind::Status,
        FailureKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Refused => "refused",
            FailureKind::Reset => "reset",
            FailureKind::Timeout => "timeout",
            FailureKind::Eof => "eof",
            FailureKind::Status => "status",
            FailureKind::Other => "other",
        }
    }

    /// The kind of an IO error.
    pub fn of_io(err: &io::Error) -> FailureKind {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => FailureKind::Refused,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => FailureKind::Reset,
            io::ErrorKind::TimedOut => FailureKind::Timeout,
            io::ErrorKind::UnexpectedEof => FailureKind::Eof,
            _ => FailureKind::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A latency distribution, in nanoseconds. Every figure is absent (`None`)
/// when `count` is 0: nothing was measured. Quantiles come from a
/// [`Histogram`] (relative error below 0.4%); `mean_ns` and `max_ns` are
/// exact.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencySummary {
    pub count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p999_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ns: Option<u64>,
}

/// What the generator did in a window (see the module doc for the exact
/// meaning of every field).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct LoadStats {
    /// Length of the window (for totals: since start), ns.
    pub window_ns: u64,
    /// Requests whose due time came in the window (`sent + dropped`).
    pub due: u64,
    /// Requests started in the window.
    pub sent: u64,
    /// Requests that completed ok in the window.
    pub ok: u64,
    /// Requests due while `concurrency` were in flight: never sent.
    pub dropped: u64,
    /// Requests that failed in the window, by [`FailureKind`] name; only kinds
    /// that occurred.
    pub failed: BTreeMap<String, u64>,
    /// Requests in flight at the end of the window.
    pub in_flight: u32,
    /// Most requests in flight at once during the window.
    pub max_in_flight: u32,
    /// Of the ok requests: due time to end of reply (the figure to report).
    pub latency: LatencySummary,
    /// Of the ok requests: actual start (connect) to end of reply.
    pub service: LatencySummary,
    /// Of the ok requests: due time to actual start (the generator's delay).
    pub send_lag: LatencySummary,
    /// `ok` per second of the window.
    pub achieved_rate: f64,
}

impl LoadStats {
    /// Sum of `failed`.
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    /// Failures of one kind.
    pub fn failed_of(&self, kind: FailureKind) -> u64 {
        self.failed.get(kind.as_str()).copied().unwrap_or(0)
    }
}

/// The outcome of one [`LoadGen::burst`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct BurstResult {
    /// Connections asked for.
    pub connections: u32,
    /// Connections whose connect succeeded.
    pub connected: u32,
    /// Connections whose request completed ok
    /// (`ok + sum(failed) = connections`).
    pub ok: u32,
    /// Failures by [`FailureKind`] name, connect failures included.
    pub failed: BTreeMap<String, u64>,
    /// From the burst start to the first / last successful connect, ns (0
    /// when none connected).
    pub first_connect_ns: u64,
    pub last_connect_ns: u64,
    /// `last_connect_ns - first_connect_ns`: how simultaneous the herd was.
    pub connect_spread_ns: u64,
    /// Of the ok connections: burst start to end of reply.
    pub latency: LatencySummary,
    /// From the burst start until every connection was closed, ns.
    pub duration_ns: u64,
}

/// Where a burst's result arrives; see [`LoadGen::burst`].
#[derive(Debug)]
pub struct BurstHandle {
    slot: Arc<BurstSlot>,
}

/// The burst's outcome, shared between its task and its handle.
#[derive(Debug, Default)]
struct BurstSlot {
    state: Mutex<BurstState>,
    done: Condvar,
}

#[derive(Debug, Default)]
enum BurstState {
    #[default]
    Running,
    Done(BurstResult),
    /// The generator stopped (or the task died) before the burst finished.
    Cancelled,
}

impl BurstSlot {
    fn lock(&self) -> MutexGuard<'_, BurstState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, state: BurstState) {
        let mut st = self.lock();
        if matches!(*st, BurstState::Running) {
            *st = state;
            self.done.notify_all();
        }
    }
}

/// Held by the burst's task: marks the burst cancelled if the task is
/// dropped before it delivered its result.
struct BurstGuard(Arc<BurstSlot>);

impl Drop for BurstGuard {
    fn drop(&mut self) {
        self.0.set(BurstState::Cancelled);
    }
}

fn cancelled() -> anyhow::Error {
    anyhow::anyhow!("the load generator stopped before the burst finished")
}

impl BurstHandle {
    /// Whether the burst is over (finished or cancelled): [`BurstHandle::result`]
    /// then returns at once.
    pub fn is_finished(&self) -> bool {
        !matches!(*self.slot.lock(), BurstState::Running)
    }

    /// The result if the burst is over, without waiting.
    pub fn try_result(&self) -> Option<anyhow::Result<BurstResult>> {
        match &*self.slot.lock() {
            BurstState::Running => None,
            BurstState::Done(r) => Some(Ok(r.clone())),
            BurstState::Cancelled => Some(Err(cancelled())),
        }
    }

    /// Waits for the burst to finish (at most about `max(hold, timeout)` after
    /// it started). Fails if the generator stopped before the burst finished
    /// (stopping cancels bursts).
    pub fn result(self) -> anyhow::Result<BurstResult> {
        let mut st = self.slot.lock();
        while matches!(*st, BurstState::Running) {
            st = self
                .slot
                .done
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        match std::mem::replace(&mut *st, BurstState::Cancelled) {
            BurstState::Done(r) => Ok(r),
            BurstState::Running | BurstState::Cancelled => Err(cancelled()),
        }
    }
}

// ---------------------------------------------------------------------------
// Histogram

/// Values below `2 * SUB` get one bucket each.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;

/// A log-linear histogram of `u64` values (ns here): exact below 256, then
/// 128 equal buckets per power of two, so every bucket is at most 1/128 of
/// its lower bound wide. Grows with the largest value recorded (at most 7424
/// buckets for the whole `u64` range).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    max: u64,
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram::default()
    }

    fn index(v: u64) -> usize {
        if v < 2 * SUB {
            v as usize
        } else {
            let e = v.ilog2();
            let shift = e - SUB_BITS;
            (u64::from(shift) * SUB + (v >> shift)) as usize
        }
    }

    /// The values of bucket `i`: `[low, low + width)`.
    fn bounds(i: usize) -> (u64, u64) {
        let i = i as u64;
        if i < 2 * SUB {
            (i, 1)
        } else {
            let shift = i / SUB - 1;
            let m = i % SUB + SUB;
            (m << shift, 1 << shift)
        }
    }

    pub fn record(&mut self, v: u64) {
        let i = Histogram::index(v);
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
        self.count += 1;
        self.sum += u128::from(v);
        self.max = self.max.max(v);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The exact mean (rounded down), 0 when empty.
    pub fn mean(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            u64::try_from(self.sum / u128::from(self.count)).unwrap_or(u64::MAX)
        }
    }

    /// The `q`-quantile (`q` in `[0, 1]`): the value of rank
    /// `max(1, ceil(q * count))`, reported as the middle of its bucket and
    /// clamped to the exact maximum. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, width) = Histogram::bounds(i);
                return (low + (width - 1) / 2).min(self.max);
            }
        }
        self.max
    }

    /// The summary; every figure `None` when empty.
    pub fn summary(&self) -> LatencySummary {
        let some = |v: u64| (self.count > 0).then_some(v);
        LatencySummary {
            count: self.count,
            mean_ns: some(self.mean()),
            p50_ns: some(self.quantile(0.50)),
            p95_ns: some(self.quantile(0.95)),
            p99_ns: some(self.quantile(0.99)),
            p999_ns: some(self.quantile(0.999)),
            max_ns: some(self.max),
        }
    }
}

// ---------------------------------------------------------------------------
// Schedule

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// When request `i` of schedule `schedule` is due, as an offset from the
/// schedule's start: `(i + jitter * u) / rate` with `u` in `[0, 1)` a pure
/// function of `(seed, schedule, i)`. `rate` must be > 0.
pub fn due_offset(seed: u64, schedule: u64, i: u64, rate: f64, jitter: f64) -> Duration {
    let u = if jitter > 0.0 {
        let bits = splitmix64(splitmix64(splitmix64(seed) ^ schedule) ^ i);
        (bits >> 11) as f64 / (1u64 << 53) as f64
    } else {
        0.0
    };
    Duration::from_secs_f64((i as f64 + jitter * u) / rate)
}

// ---------------------------------------------------------------------------
// Shared state

/// Counters of one window (or of the whole run).
#[derive(Clone, Debug, Default)]
struct Acc {
    due: u64,
    sent: u64,
    ok: u64,
    dropped: u64,
    failed: [u64; FailureKind::ALL.len()],
    max_in_flight: u32,
    latency: Histogram,
    service: Histogram,
    send_lag: Histogram,
}

impl Acc {
    fn stats(&self, window: Duration, in_flight: u32) -> LoadStats {
        let window_ns = duration_ns(window);
        let failed = FailureKind::ALL
            .iter()
            .filter(|k| self.failed[k.index()] > 0)
            .map(|k| (k.as_str().to_owned(), self.failed[k.index()]))
            .collect();
        let secs = window.as_secs_f64();
        LoadStats {
            window_ns,
            due: self.due,
            sent: self.sent,
            ok: self.ok,
            dropped: self.dropped,
            failed,
            in_flight,
            max_in_flight: self.max_in_flight,
            latency: self.latency.summary(),
            service: self.service.summary(),
            send_lag: self.send_lag.summary(),
            achieved_rate: if secs > 0.0 {
                self.ok as f64 / secs
            } else {
                0.0
            },
        }
    }
}

struct State {
    /// Requests per second of the current schedule.
    rate: f64,
    /// Number of the current schedule (bumped by every rate change).
    schedule: u64,
    stopping: bool,
    in_flight: u32,
    window_start: Instant,
    window: Acc,
    total: Acc,
}

impl State {
    fn both(&mut self) -> [&mut Acc; 2] {
        [&mut self.window, &mut self.total]
    }
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the scheduler on a rate change or stop.
    wake: Notify,
    start: Instant,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent counters (every
        // update is a few additions), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What every request needs, fixed at start but for the address.
struct Config {
    /// Where requests go ([`LoadGen::set_addr`] moves it).
    addr: Mutex<SocketAddr>,
    wire: Wire,
    concurrency: u32,
    timeout: Duration,
    seed: u64,
    jitter: f64,
}

/// A request, ready to go on the wire.
enum Wire {
    Tcp {
        send: Vec<u8>,
        expect: Option<Vec<u8>>,
    },
    Http {
        request: Vec<u8>,
    },
}

impl Config {
    fn addr(&self) -> SocketAddr {
        // A poisoned lock still holds a whole address.
        *self
            .addr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Highest rate accepted, requests per second: far above what one thread
/// can send (see the module doc), low enough for exact schedule arithmetic.
pub const MAX_RATE: f64 = 1e7;
/// Lowest rate above 0 accepted (one request every 11.6 days).
pub const MIN_RATE: f64 = 1e-6;

fn check_addr(addr: SocketAddr) -> anyhow::Result<()> {
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "workload address {addr} is not loopback: the built-in workload only sends to \
         127.0.0.0/8 or ::1"
    );
    Ok(())
}

fn check_rate(rate: f64) -> anyhow::Result<()> {
    anyhow::ensure!(
        rate == 0.0 || (MIN_RATE..=MAX_RATE).contains(&rate),
        "workload rate {rate} is not 0 or between {MIN_RATE} and {MAX_RATE} requests per second"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// LoadGen

/// A running load generator. Dropping it stops it (see [`LoadGen::stop`]).
pub struct LoadGen {
    shared: Arc<Shared>,
    config: Arc<Config>,
    handle: tokio::runtime::Handle,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LoadGen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadGen")
            .field("addr", &self.config.addr())
            .field("rate", &self.shared.lock().rate)
            .finish_non_exhaustive()
    }
}

impl LoadGen {
    /// Validates `spec` and starts sending on a new thread with its own
    /// current-thread tokio runtime. The first request (if the rate is > 0)
    /// is due at once.
    pub fn start(spec: LoadSpec) -> anyhow::Result<LoadGen> {
        LoadGen::start_with(spec, LoadOptions::default())
    }

    /// [`LoadGen::start`] with options.
    pub fn start_with(spec: LoadSpec, opts: LoadOptions) -> anyhow::Result<LoadGen> {
        check_addr(spec.addr)?;
        check_rate(spec.rate)?;
        anyhow::ensure!(
            spec.concurrency >= 1,
            "workload concurrency must be at least 1"
        );
        anyhow::ensure!(
            !spec.timeout.is_zero(),
            "workload timeout must be more than 0"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&opts.jitter),
            "workload jitter {} is not a fraction of an interval in [0, 1]",
            opts.jitter
        );
        let wire = match spec.request {
            Request::Tcp { send, expect } => {
                anyhow::ensure!(
                    expect.as_ref().is_none_or(|e| !e.is_empty()),
                    "workload TCP `expect` is empty: leave it out to accept any reply"
                );
                Wire::Tcp { send, expect }
            }
            Request::Http { path } => {
                anyhow::ensure!(
                    path.starts_with('/')
                        && !path
                            .bytes()
                            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control()),
                    "workload HTTP path {path:?} must start with `/` and contain no whitespace \
                     or control character"
                );
                let request = format!(
                    "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: cargo-panic\r\n\
                     Accept: */*\r\nConnection: close\r\n\r\n",
                    spec.addr
                );
                Wire::Http {
                    request: request.into_bytes(),
                }
            }
        };
        let config = Arc::new(Config {
            addr: Mutex::new(spec.addr),
            wire,
            concurrency: spec.concurrency,
            timeout: spec.timeout,
            seed: spec.seed,
            jitter: opts.jitter,
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the workload's tokio runtime")?;
        let start = Instant::now();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                rate: spec.rate,
                schedule: 0,
                stopping: false,
                in_flight: 0,
                window_start: start,
                window: Acc::default(),
                total: Acc::default(),
            }),
            wake: Notify::new(),
            start,
        });
        let handle = rt.handle().clone();
        let thread = {
            let shared = shared.clone();
            let config = config.clone();
            std::thread::Builder::new()
                .name(format!("panic-load-{}", spec.addr.port()))
                .spawn(move || {
                    rt.block_on(schedule(shared, config));
                    // Dropping the runtime cancels what is left (bursts),
                    // which closes their sockets.
                    drop(rt);
                })
                .context("cannot spawn the workload's thread")?
        };
        Ok(LoadGen {
            shared,
            config,
            handle,
            thread: Some(thread),
        })
    }

    /// Changes the rate at once (0 pauses). A different rate starts a new
    /// schedule (see the module doc); the same rate changes nothing.
    ///
    /// # Panics
    ///
    /// If `rate` is neither 0 nor in [`MIN_RATE`, `MAX_RATE`] (validate it
    /// beforehand).
    pub fn set_rate(&self, rate: f64) {
        if let Err(e) = check_rate(rate) {
            panic!("{e}");
        }
        let mut st = self.shared.lock();
        if st.rate.to_bits() != rate.to_bits() {
            st.rate = rate;
            st.schedule += 1;
            drop(st);
            self.shared.wake.notify_one();
        }
    }

    /// Sends the requests that start from now on to `addr` (a restarted
    /// target that listens on another port); requests under way finish
    /// where they started. The HTTP `Host` header keeps the first address.
    pub fn set_addr(&self, addr: SocketAddr) -> anyhow::Result<()> {
        check_addr(addr)?;
        *self
            .config
            .addr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = addr;
        Ok(())
    }

    /// Where requests go.
    pub fn addr(&self) -> SocketAddr {
        self.config.addr()
    }

    /// The rate in force.
    pub fn rate(&self) -> f64 {
        self.shared.lock().rate
    }

    /// Counters since the previous call (or since start), and starts a new
    /// window.
    pub fn take_window(&self) -> LoadStats {
        let now = Instant::now();
        let (acc, window, in_flight) = {
            let mut st = self.shared.lock();
            let fresh = Acc {
                max_in_flight: st.in_flight,
                ..Acc::default()
            };
            let acc = std::mem::replace(&mut st.window, fresh);
            let window = now.duration_since(st.window_start);
            st.window_start = now;
            (acc, window, st.in_flight)
        };
        acc.stats(window, in_flight)
    }

    /// Counters since start (does not start a new window).
    pub fn totals(&self) -> LoadStats {
        let (acc, in_flight) = {
            let st = self.shared.lock();
            (st.total.clone(), st.in_flight)
        };
        acc.stats(self.shared.start.elapsed(), in_flight)
    }

    /// A thundering herd alongside the schedule: opens `connections`
    /// connections as close to simultaneously as possible, sends the request
    /// once on each, keeps each open until `hold` after the burst started (or
    /// until its reply, if that comes later), then closes them. Each
    /// connection is bounded by the timeout (connect and reply; the hold is
    /// not counted). Not limited by `concurrency`, not counted in
    /// [`LoadStats`].
    pub fn burst(&self, connections: u32, hold: Duration) -> BurstHandle {
        let slot = Arc::new(BurstSlot::default());
        let guard = BurstGuard(slot.clone());
        let config = self.config.clone();
        // If the runtime is already gone the task is dropped, and so is the
        // guard: the burst is then cancelled.
        drop(self.handle.spawn(async move {
            let result = run_burst(config, connections, hold).await;
            guard.0.set(BurstState::Done(result));
        }));
        BurstHandle { slot }
    }

    /// Stops sending, waits for the requests in flight (each is bounded by the
    /// timeout), cancels unfinished bursts, joins the thread and returns the
    /// totals. Dropping the generator does the same.
    pub fn stop(self) -> LoadStats {
        self.finish().1
    }

    /// [`LoadGen::stop`], also returning the last window (everything since
    /// the previous [`LoadGen::take_window`], up to the stop), so that the
    /// windows add up to the totals: `(last window, totals)`.
    pub fn finish(mut self) -> (LoadStats, LoadStats) {
        self.shutdown();
        let last = self.take_window();
        let totals = self.totals();
        (last, totals)
    }

    fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shared.lock().stopping = true;
            self.shared.wake.notify_one();
            // The thread only panics on a bug; its counters are still valid.
            let _ = thread.join();
        }
    }
}

impl Drop for LoadGen {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Most requests issued in a row without yielding when behind schedule.
const BATCH: u32 = 64;

/// One schedule: request `i` is due at `start + due_offset(.., i, ..)`.
struct Plan {
    number: u64,
    rate: f64,
    start: Instant,
    seed: u64,
    jitter: f64,
}

impl Plan {
    fn due(&self, i: u64) -> Instant {
        self.start + due_offset(self.seed, self.number, i, self.rate, self.jitter)
    }

    /// How many requests (from request 0) are due at or before `now`.
    /// Request `i` is due in `[i / rate, (i + 1) / rate)` after the start, so
    /// the estimate from the elapsed time is off by at most one either way.
    fn due_by(&self, now: Instant) -> u64 {
        if self.start > now {
            return 0;
        }
        let mut k = (now.duration_since(self.start).as_secs_f64() * self.rate) as u64;
        while k > 0 && self.due(k) > now {
            k -= 1;
        }
        if self.due(k) > now {
            return 0;
        }
        while self.due(k + 1) <= now {
            k += 1;
        }
        k + 1
    }
}

/// The open-loop scheduler: issues (or drops) each request at its due time,
/// until stopped; then waits for the requests in flight.
async fn schedule(shared: Arc<Shared>, config: Arc<Config>) {
    let timer = PreciseTimer::new();
    let mut tasks = JoinSet::new();
    let mut plan = None::<Plan>;
    let mut i: u64 = 0;
    let mut last_due = None::<Instant>;
    let mut batch = 0;
    loop {
        while tasks.try_join_next().is_some() {}
        let (rate, number, stopping) = {
            let st = shared.lock();
            (st.rate, st.schedule, st.stopping)
        };
        if stopping {
            break;
        }
        if plan.as_ref().is_none_or(|p| p.number != number) {
            let now = Instant::now();
            let start = match last_due {
                Some(d) if rate > 0.0 => now.max(d + Duration::from_secs_f64(1.0 / rate)),
                _ => now,
            };
            plan = Some(Plan {
                number,
                rate,
                start,
                seed: config.seed,
                jitter: config.jitter,
            });
            i = 0;
        }
        let plan = plan.as_ref().expect("set above");
        if plan.rate <= 0.0 {
            shared.wake.notified().await;
            continue;
        }
        let due = plan.due(i);
        if due > Instant::now() {
            batch = 0;
            tokio::select! {
                () = timer.sleep_until(due) => {}
                () = shared.wake.notified() => continue,
            }
        }
        let issued = {
            let mut guard = shared.lock();
            let st = &mut *guard;
            if st.stopping || st.schedule != plan.number {
                continue;
            }
            if st.in_flight < config.concurrency {
                st.in_flight += 1;
                let in_flight = st.in_flight;
                for acc in st.both() {
                    acc.due += 1;
                    acc.sent += 1;
                    acc.max_in_flight = acc.max_in_flight.max(in_flight);
                }
                i += 1;
                true
            } else {
                // No free slot: this request and every other one already due
                // are dropped, in one step, so that a saturated generator
                // still counts the schedule as it is.
                let n = plan.due_by(Instant::now()).max(i + 1) - i;
                for acc in st.both() {
                    acc.due += n;
                    acc.dropped += n;
                }
                i += n;
                false
            }
        };
        last_due = Some(plan.due(i - 1));
        if issued {
            tasks.spawn(run_request(shared.clone(), config.clone(), due));
        }
        batch += 1;
        if batch >= BATCH {
            batch = 0;
            tokio::task::yield_now().await;
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Sleeps until an [`Instant`] with the kernel's high-resolution timers (a
/// `timerfd` polled by the runtime), not tokio's timer, which has a 1 ms
/// resolution and would delay every request by up to a millisecond or two.
/// Falls back to tokio's timer if no `timerfd` can be had.
struct PreciseTimer {
    fd: Option<AsyncFd<OwnedFd>>,
}

impl PreciseTimer {
    fn new() -> PreciseTimer {
        // SAFETY: a plain syscall with integer arguments.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        let fd = (raw >= 0)
            .then(|| {
                // SAFETY: `raw` is a new descriptor that nothing else owns.
                let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                // SAFETY: an `OwnedFd` keeps its descriptor open, and the
                // same, for as long as the `AsyncFd` owns it.
                unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok()
            })
            .flatten();
        PreciseTimer { fd }
    }

    async fn sleep_until(&self, due: Instant) {
        if let Some(fd) = &self.fd
            && timerfd_sleep(fd, due).await.is_ok()
        {
            return;
        }
        tokio::time::sleep_until(due.into()).await;
    }
}

async fn timerfd_sleep(fd: &AsyncFd<OwnedFd>, due: Instant) -> io::Result<()> {
    // `Instant` is CLOCK_MONOTONIC on Linux, the timer's clock; a relative
    // expiry armed after reading `now` cannot fire before `due`.
    let Some(left) = due
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
    else {
        return Ok(());
    };
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
            // Below 10^9: fits any `c_long`.
            tv_nsec: left.subsec_nanos() as libc::c_long,
        },
    };
    let raw = fd.get_ref().as_raw_fd();
    // SAFETY: `raw` is our open timerfd; `spec` is a valid itimerspec that
    // outlives the call; the old value is not asked for (null).
    if unsafe { libc::timerfd_settime(raw, 0, &raw const spec, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    loop {
        let mut ready = fd.readable().await?;
        let mut ticks = [0u8; 8];
        // SAFETY: reads at most 8 bytes into the 8-byte buffer `ticks`.
        let n = unsafe { libc::read(raw, ticks.as_mut_ptr().cast(), ticks.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::WouldBlock {
                return Err(err);
            }
            ready.clear_ready();
        }
        // An expiry left over from an earlier, cancelled sleep is not ours.
        if Instant::now() >= due {
            return Ok(());
        }
    }
}

/// One scheduled request, from its start to its record.
async fn run_request(shared: Arc<Shared>, config: Arc<Config>, due: Instant) {
    let started = Instant::now();
    let result = tokio::time::timeout(config.timeout, async {
        let mut stream = connect(config.addr(), None).await?;
        talk(&mut stream, &config.wire).await
    })
    .await;
    let done = Instant::now();
    let outcome = match result {
        Ok(Ok(())) => None,
        Ok(Err(fail)) => Some(fail.kind()),
        Err(_elapsed) => Some(FailureKind::Timeout),
    };
    let mut guard = shared.lock();
    let st = &mut *guard;
    st.in_flight -= 1;
    for acc in st.both() {
        match outcome {
            None => {
                acc.ok += 1;
                acc.latency
                    .record(duration_ns(done.saturating_duration_since(due)));
                acc.service
                    .record(duration_ns(done.duration_since(started)));
                acc.send_lag
                    .record(duration_ns(started.saturating_duration_since(due)));
            }
            Some(kind) => acc.failed[kind.index()] += 1,
        }
    }
}

// ---------------------------------------------------------------------------
// Bursts

/// What one burst connection did.
struct BurstConn {
    connected_after: Option<Duration>,
    outcome: Result<Duration, FailureKind>,
}

async fn run_burst(config: Arc<Config>, connections: u32, hold: Duration) -> BurstResult {
    // Create every socket first, so that the connects themselves follow each
    // other as closely as one thread can issue them.
    let addr = config.addr();
    let sockets: Vec<io::Result<TcpSocket>> = (0..connections)
        .map(|_| match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        })
        .collect();
    let start = Instant::now();
    let close_at = start + hold;
    let mut set = JoinSet::new();
    for socket in sockets {
        let config = config.clone();
        set.spawn(async move {
            let mut connected_after = None;
            let result = tokio::time::timeout(config.timeout, async {
                let socket = socket.map_err(Fail::Io)?;
                let mut stream = connect(addr, Some(socket)).await?;
                connected_after = Some(start.elapsed());
                talk(&mut stream, &config.wire).await?;
                Ok::<_, Fail>(stream)
            })
            .await;
            let outcome = match result {
                Ok(Ok(stream)) => {
                    let latency = start.elapsed();
                    tokio::time::sleep_until(close_at.into()).await;
                    drop(stream);
                    Ok(latency)
                }
                Ok(Err(fail)) => Err(fail.kind()),
                Err(_elapsed) => Err(FailureKind::Timeout),
            };
            BurstConn {
                connected_after,
                outcome,
            }
        });
    }
    let mut result = BurstResult {
        connections,
        ..BurstResult::default()
    };
    let mut latency = Histogram::new();
    let mut first = None::<Duration>;
    let mut last = None::<Duration>;
    let mut failed = [0u64; FailureKind::ALL.len()];
    while let Some(joined) = set.join_next().await {
        let Ok(conn) = joined else {
            // A connection task only fails to join if it panicked (a bug).
            failed[FailureKind::Other.index()] += 1;
            continue;
        };
        if let Some(t) = conn.connected_after {
            result.connected += 1;
            first = Some(first.map_or(t, |f| f.min(t)));
            last = Some(last.map_or(t, |l| l.max(t)));
        }
        match conn.outcome {
            Ok(t) => {
                result.ok += 1;
                latency.record(duration_ns(t));
            }
            Err(kind) => failed[kind.index()] += 1,
        }
    }
    result.duration_ns = duration_ns(start.elapsed());
    result.first_connect_ns = first.map_or(0, duration_ns);
    result.last_connect_ns = last.map_or(0, duration_ns);
    result.connect_spread_ns = result.last_connect_ns - result.first_connect_ns;
    result.latency = latency.summary();
    result.failed = FailureKind::ALL
        .iter()
        .filter(|k| failed[k.index()] > 0)
        .map(|k| (k.as_str().to_owned(), failed[k.index()]))
        .collect();
    result
}

// ---------------------------------------------------------------------------
// One exchange

/// Why an exchange failed.
#[derive(Debug)]
enum Fail {
    Io(io::Error),
    /// Clean EOF before the reply was complete.
    Eof,
    /// HTTP status outside 2xx/3xx.
    Status,
    /// Not a valid HTTP response (the call sites say why).
    Malformed,
}

impl Fail {
    fn kind(&self) -> FailureKind {
        match self {
            Fail::Io(e) => FailureKind::of_io(e),
            Fail::Eof => FailureKind::Eof,
            Fail::Status => FailureKind::Status,
            Fail::Malformed => FailureKind::Other,
        }
    }
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Fail {
        Fail::Io(e)
    }
}

async fn connect(addr: SocketAddr, socket: Option<TcpSocket>) -> Result<TcpStream, Fail> {
    let stream = match socket {
        Some(socket) => socket.connect(addr).await?,
        None => TcpStream::connect(addr).await?,
    };
    // Requests are one write each; without Nagle nothing waits for an ACK.
    // Failing to set it only costs latency, which is then measured.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Size of the read buffer of one exchange.
const READ_BUF: usize = 4096;

async fn talk(stream: &mut TcpStream, wire: &Wire) -> Result<(), Fail> {
    match wire {
        Wire::Tcp { send, expect } => tcp_talk(stream, send, expect.as_deref()).await,
        Wire::Http { request } => http_talk(stream, request).await,
    }
}

async fn tcp_talk(stream: &mut TcpStream, send: &[u8], expect: Option<&[u8]>) -> Result<(), Fail> {
    if !send.is_empty() {
        stream.write_all(send).await?;
    }
    let mut buf = vec![0u8; READ_BUF];
    let mut matcher = expect.map(Matcher::new);
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(Fail::Eof);
        }
        match &mut matcher {
            None => return Ok(()),
            Some(m) => {
                if m.feed(&buf[..n]) {
                    return Ok(());
                }
            }
        }
    }
}

/// Finds a needle in a stream read in pieces, keeping only the last
/// `needle.len() - 1` bytes between pieces.
struct Matcher<'a> {
    needle: &'a [u8],
    tail: Vec<u8>,
}

impl<'a> Matcher<'a> {
    fn new(needle: &'a [u8]) -> Matcher<'a> {
        Matcher {
            needle,
            tail: Vec::new(),
        }
    }

    /// Whether the needle has now been seen.
    fn feed(&mut self, data: &[u8]) -> bool {
        self.tail.extend_from_slice(data);
        if find(&self.tail, self.needle).is_some() {
            return true;
        }
        let keep = self.needle.len() - 1;
        if self.tail.len() > keep {
            self.tail.drain(..self.tail.len() - keep);
        }
        false
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Largest response head (status line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;

async fn http_talk(stream: &mut TcpStream, request: &[u8]) -> Result<(), Fail> {
    stream.write_all(request).await?;
    let mut buf = vec![0u8; READ_BUF];
    let mut head = Vec::new();
    let (status, mut body, rest_from) = loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(Fail::Eof);
        }
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&buf[..n]);
        if let Some(pos) = find(&head[from..], b"\r\n\r\n") {
            let end = from + pos + 4;
            let (status, body) = parse_head(&head[..end])?;
            break (status, body, end);
        }
        if head.len() > MAX_HEAD {
            // Response head over 64 KiB.
            return Err(Fail::Malformed);
        }
    };
    let mut done = body.feed(&head[rest_from..])?;
    while !done {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            if matches!(body, Body::UntilEof) {
                break;
            }
            return Err(Fail::Eof);
        }
        done = body.feed(&buf[..n])?;
    }
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(Fail::Status)
    }
}

/// Parses a response head (up to and including the blank line): the status
/// and how the body is framed.
fn parse_head(head: &[u8]) -> Result<(u16, Body), Fail> {
    let text = std::str::from_utf8(head).map_err(|_| Fail::Malformed)?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.")
        || code.len() != 3
        || !code.bytes().all(|b| b.is_ascii_digit())
    {
        // Bad status line.
        return Err(Fail::Malformed);
    }
    let status: u16 = code.parse().map_err(|_| Fail::Malformed)?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<u64>().map_err(|_| Fail::Malformed)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        Body::Length(0)
    } else if chunked {
        Body::Chunked(Chunked::Size(Vec::new()))
    } else if let Some(n) = length {
        Body::Length(n)
    } else {
        Body::UntilEof
    };
    Ok((status, body))
}

/// How much of the body is still to come.
#[derive(Debug)]
enum Body {
    Length(u64),
    Chunked(Chunked),
    UntilEof,
}

/// Where a chunked body is.
#[derive(Debug)]
enum Chunked {
    /// Reading a chunk-size line (bytes so far).
    Size(Vec<u8>),
    /// Inside a chunk's data: bytes left, then its CRLF.
    Data(u64),
    /// The CRLF after a chunk's data: bytes of it left.
    DataEnd(u8),
    /// Reading trailer lines after the last chunk (bytes of the current line).
    Trailer(Vec<u8>),
    Done,
}

/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 8 * 1024;

impl Body {
    /// Consumes `data`; whether the body is complete.
    fn feed(&mut self, mut data: &[u8]) -> Result<bool, Fail> {
        match self {
            Body::Length(left) => {
                *left = left.saturating_sub(data.len() as u64);
                Ok(*left == 0)
            }
            Body::UntilEof => Ok(false),
            Body::Chunked(state) => {
                while !data.is_empty() && !matches!(state, Chunked::Done) {
                    let in_trailer = matches!(state, Chunked::Trailer(_));
                    match state {
                        Chunked::Size(line) | Chunked::Trailer(line) => {
                            let (piece, end) = match data.iter().position(|&b| b == b'\n') {
                                Some(p) => (&data[..p], true),
                                None => (data, false),
                            };
                            line.extend_from_slice(piece);
                            data = &data[(piece.len() + usize::from(end)).min(data.len())..];
                            if line.len() > MAX_LINE {
                                // Chunk line too long.
                                return Err(Fail::Malformed);
                            }
                            if !end {
                                continue;
                            }
                            let text = std::str::from_utf8(line)
                                .map_err(|_| Fail::Malformed)?
                                .trim_end_matches('\r');
                            *state = if in_trailer {
                                if text.is_empty() {
                                    Chunked::Done
                                } else {
                                    Chunked::Trailer(Vec::new())
                                }
                            } else {
                                let size = text.split(';').next().unwrap_or("").trim();
                                let size =
                                    u64::from_str_radix(size, 16).map_err(|_| Fail::Malformed)?;
                                if size == 0 {
                                    Chunked::Trailer(Vec::new())
                                } else {
                                    Chunked::Data(size)
                                }
                            };
                        }
                        Chunked::Data(left) => {
                            let n = (*left).min(data.len() as u64);
                            data = &data[n as usize..];
                            *left -= n;
                            if *left == 0 {
                                *state = Chunked::DataEnd(2);
                            }
                        }
                        Chunked::DataEnd(left) => {
                            let expected = if *left == 2 { b'\r' } else { b'\n' };
                            if data[0] != expected {
                                // Chunk data not followed by CRLF.
                                return Err(Fail::Malformed);
                            }
                            data = &data[1..];
                            *left -= 1;
                            if *left == 0 {
                                *state = Chunked::Size(Vec::new());
                            }
                        }
                        Chunked::Done => {}
                    }
                }
                Ok(matches!(state, Chunked::Done))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_contiguous_and_narrow() {
        let mut prev_end = 0u64;
        for i in 0..7424usize {
            let (low, width) = Histogram::bounds(i);
            assert_eq!(low, prev_end, "bucket {i}");
            assert!(
                width == 1 || width * 128 <= low,
                "bucket {i}: {low} + {width}"
            );
            assert_eq!(Histogram::index(low), i);
            assert_eq!(Histogram::index(low + (width - 1)), i);
            prev_end = low.wrapping_add(width);
        }
        assert_eq!(prev_end, 0, "the last bucket ends at u64::MAX");
        assert_eq!(Histogram::index(u64::MAX), 7423);
    }

    #[test]
    fn histogram_quantiles_within_half_a_percent() {
        // Log-uniform values from 100 ns to 10 s, seeded.
        let mut values = Vec::new();
        let mut h = Histogram::new();
        for i in 0..100_000u64 {
            let u = (splitmix64(i) >> 11) as f64 / (1u64 << 53) as f64;
            let v = (100.0 * 1e8f64.powf(u)) as u64;
            values.push(v);
            h.record(v);
        }
        values.sort_unstable();
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
            let exact = values[rank - 1] as f64;
            let got = h.quantile(q) as f64;
            let err = (got - exact).abs() / exact;
            assert!(
                err <= 0.004,
                "q {q}: exact {exact}, histogram {got}, error {err}"
            );
        }
        assert_eq!(h.max(), *values.last().unwrap());
        let mean = values.iter().map(|&v| u128::from(v)).sum::<u128>() / values.len() as u128;
        assert_eq!(u128::from(h.mean()), mean);
        assert_eq!(h.summary().count, 100_000);
    }

    #[test]
    fn histogram_small_values_exact_and_empty_is_zero() {
        let mut h = Histogram::new();
        assert_eq!(h.summary(), LatencySummary::default());
        assert_eq!(h.summary().p99_ns, None);
        for v in [3, 7, 200] {
            h.record(v);
        }
        assert_eq!(h.quantile(0.0), 3);
        assert_eq!(h.quantile(0.5), 7);
        assert_eq!(h.quantile(1.0), 200);
    }

    #[test]
    fn schedule_is_exact_without_jitter_and_seeded_with_it() {
        assert_eq!(due_offset(1, 0, 0, 50.0, 0.0), Duration::ZERO);
        assert_eq!(due_offset(1, 0, 50, 50.0, 0.0), Duration::from_secs(1));
        assert_eq!(due_offset(9, 3, 7, 4.0, 0.0), Duration::from_millis(1750));
        let a: Vec<_> = (0..1000).map(|i| due_offset(7, 2, i, 100.0, 1.0)).collect();
        let b: Vec<_> = (0..1000).map(|i| due_offset(7, 2, i, 100.0, 1.0)).collect();
        let c: Vec<_> = (0..1000).map(|i| due_offset(8, 2, i, 100.0, 1.0)).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        for (i, w) in a.windows(2).enumerate() {
            assert!(w[0] <= w[1], "due times go backwards at {i}");
        }
        for (i, d) in a.iter().enumerate() {
            let nominal = Duration::from_millis(10 * i as u64);
            assert!(*d >= nominal && *d < nominal + Duration::from_millis(10));
        }
    }

    #[test]
    fn io_errors_are_classified() {
        use io::ErrorKind as K;
        let kind = |k: K| FailureKind::of_io(&io::Error::from(k));
        assert_eq!(kind(K::ConnectionRefused), FailureKind::Refused);
        assert_eq!(kind(K::ConnectionReset), FailureKind::Reset);
        assert_eq!(kind(K::BrokenPipe), FailureKind::Reset);
        assert_eq!(kind(K::ConnectionAborted), FailureKind::Reset);
        assert_eq!(kind(K::TimedOut), FailureKind::Timeout);
        assert_eq!(kind(K::UnexpectedEof), FailureKind::Eof);
        assert_eq!(kind(K::AddrNotAvailable), FailureKind::Other);
        let names: Vec<_> = FailureKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            ["refused", "reset", "timeout", "eof", "status", "other"]
        );
    }

    #[test]
    fn matcher_finds_a_needle_split_across_reads() {
        let mut m = Matcher::new(b"pong\n");
        assert!(!m.feed(b"xxpo"));
        assert!(!m.feed(b"n"));
        assert!(m.feed(b"g\nyy"));
        let mut m = Matcher::new(b"ab");
        assert!(!m.feed(b"a"));
        assert!(!m.feed(b"c"));
        assert!(!m.feed(b"a"));
        assert!(m.feed(b"b"));
    }

    fn head(s: &str) -> Result<(u16, Body), Fail> {
        parse_head(s.as_bytes())
    }

    #[test]
    fn http_heads_are_parsed() {
        let (s, b) = head("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n").unwrap();
        assert_eq!(s, 200);
        assert!(matches!(b, Body::Length(12)));
        let (s, b) = head("HTTP/1.0 500\r\n\r\n").unwrap();
        assert_eq!(s, 500);
        assert!(matches!(b, Body::UntilEof));
        let (_, b) = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        )
        .unwrap();
        assert!(
            matches!(b, Body::Chunked(_)),
            "chunked wins over Content-Length"
        );
        let (s, b) = head("HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n").unwrap();
        assert_eq!(s, 304);
        assert!(matches!(b, Body::Length(0)));
        assert!(matches!(head("SSH-2.0-x\r\n\r\n"), Err(Fail::Malformed)));
        assert!(matches!(
            head("HTTP/1.1 2000 OK\r\n\r\n"),
            Err(Fail::Malformed)
        ));
        assert!(matches!(
            head("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            Err(Fail::Malformed)
        ));
    }

    #[test]
    fn bodies_are_framed() {
        let mut b = Body::Length(5);
        assert!(!b.feed(b"abc").unwrap());
        assert!(b.feed(b"de").unwrap());
        let body = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Trailer: y\r\n\r\n";
        // Whole, and one byte at a time.
        let mut b = Body::Chunked(Chunked::Size(Vec::new()));
        assert!(b.feed(body).unwrap());
        let mut b = Body::Chunked(Chunked::Size(Vec::new()));
        for (i, byte) in body.iter().enumerate() {
            let done = b.feed(std::slice::from_ref(byte)).unwrap();
            assert_eq!(done, i == body.len() - 1, "byte {i}");
        }
        let mut b = Body::Chunked(Chunked::Size(Vec::new()));
        assert!(matches!(b.feed(b"zz\r\n"), Err(Fail::Malformed)));
        let mut b = Body::Chunked(Chunked::Size(Vec::new()));
        assert!(matches!(b.feed(b"2\r\nabXY"), Err(Fail::Malformed)));
        let mut b = Body::UntilEof;
        assert!(!b.feed(b"anything").unwrap());
    }
}
