//! The network axis of `cargo panic attack`: a userspace TCP fault proxy (the
//! toxiproxy model).
//!
//! This machine has no netem, so network faults come from a proxy placed on
//! loopback between the workload (the clients) and the target program. The
//! engine starts a [`Proxy`] before the run, points the workload at
//! [`Proxy::local_addr`] instead of the target, and changes the [`Faults`]
//! every tick with [`Proxy::set_faults`]. The proxy touches nothing but the
//! connections it accepted and the upstream connections it opened for them.
//!
//! # How it forwards
//!
//! Each accepted client connection gets its own upstream connection. Each
//! direction is a pipeline: a reader reads a *chunk* (whatever one `read`
//! returns, at most 64 KiB, or one token-bucket burst when bandwidth is
//! limited), decides the chunk's fate, and queues `(due time, bytes)`; a writer
//! sleeps until the chunk is due and writes it. So a delay does not collapse
//! throughput: while one chunk waits, the next ones are already being read
//! (up to 64 chunks in flight per direction, which plays the role of a TCP
//! window). Bytes within a direction are never reordered. A half-close
//! (`shutdown(Write)`) is forwarded once everything queued before it has been
//! written. A reset by either peer resets the other side.
//!
//! # Fault semantics
//!
//! | fault | unit | scope | direction |
//! |---|---|---|---|
//! | `latency_ns`, `jitter_ns` | per chunk | delay queue | target -> client only |
//! | `bandwidth_bytes_per_s` | token bucket | per connection, per direction | both |
//! | `loss` | per chunk | resets the whole connection | both |
//! | `timeout_ns` | per connection | stops all flow, then closes | both |
//! | `slice` | per write | splits writes, pauses between them | both |
//! | `down` | per connection | refuses new, resets existing | both |
//!
//! - **Latency** is added only to chunks travelling target -> client, so one
//!   request/response round trip gets `+latency` once (as a one-way delay on
//!   the return path; putting it on both directions would double it). A chunk
//!   read at `t` is written at `t + latency + jitter_offset` (after any
//!   bandwidth wait), where the offset is uniform in `[-jitter, +jitter]` and
//!   the total never goes below zero. Since order is kept, a chunk never
//!   overtakes the one before it: a later chunk with a smaller draw waits for
//!   its predecessor, and its achieved delay is then larger than requested.
//!   A delay is never shorter than requested; tokio's timer has a 1 ms
//!   resolution and rounds up, so a non-zero delay typically overshoots by up
//!   to about 1 ms (measured: 50 ms requested, 51.0 ms achieved on average).
//! - **Bandwidth** is a token bucket per connection and direction, refilled
//!   at the requested rate, with a burst of 20 ms worth of bytes (between 1
//!   byte and 64 KiB). The bucket throttles the reader, so the sender sees
//!   backpressure as it would from a slow link.
//! - **Loss** is the probability that a chunk read is not forwarded and the
//!   connection is reset instead: `SO_LINGER` 0 then close on both sides, so
//!   both peers see `ECONNRESET`. Applied to chunks in both directions, so a
//!   request/response exchange is reset with probability about `1-(1-p)^2`.
//! - **Timeout** (toxiproxy's timeout toxic): while set, no byte flows in
//!   either direction. Unlike toxiproxy, held bytes are *held*, not
//!   discarded: that is what a black-holed path looks like to TCP endpoints,
//!   and if the fault is lifted before the deadline the stream resumes
//!   intact. `Some(0)` holds forever; `Some(t)` closes both sides (a plain
//!   close; the kernel turns it into a reset if it still holds bytes the proxy
//!   has not read) `t` after the connection first saw the fault. Lifting the
//!   fault cancels the deadline; setting it again starts a new one.
//! - **Slice** splits every write into pieces of at most `max_bytes` and
//!   waits `delay_ns` between consecutive pieces (also across chunks), which
//!   exercises the peers' framing code with short reads.
//! - **Down** is a partition: new connections are accepted and reset at once
//!   (the listener stays open, so clients see a reset, not a refusal), and
//!   connections already open are reset as soon as the fault is set.
//!
//! Changes take effect at once: a chunk read after [`Proxy::set_faults`]
//! returns uses the new faults; chunks already queued keep the due time they
//! were given, but `timeout`, `slice` and `down` apply to them too.
//!
//! # Determinism
//!
//! The jitter and loss draws for a chunk are [`chunk_decision`], a pure
//! function of `(seed, connection index, direction, chunk index, faults)`:
//! the RNG (`Pcg64`) is seeded per chunk from those numbers, so the same seed
//! replays the same decisions whatever the faults were for earlier chunks.
//! What the proxy cannot make deterministic is *which bytes* form chunk `k`:
//! that depends on how the kernel coalesced the stream when it was read.
//!
//! # What it cannot emulate compared with netem
//!
//! It sits above TCP, so there is no packet loss, duplication, corruption or
//! reordering: the kernel's TCP would recover those invisibly on loopback
//! anyway, and what the application can observe of a lossy network (stalls,
//! resets) is modelled directly: loss is a reset, a stall is `timeout`. Delay
//! applies per chunk, not per packet, and does not affect the handshake (the
//! client's `connect` completes against the proxy at loopback speed) or ACK
//! timing, so TCP congestion control never sees a long RTT. Bandwidth is an
//! application-level rate, not a link with queueing and drops.
//!
//! # Invariants
//!
//! - Loopback only by default: [`Proxy::start`] refuses a listen or upstream
//!   address that is not loopback unless [`ProxyOptions::allow_non_loopback`].
//! - Everything it opened is closed on [`Proxy::stop`] and on drop: the
//!   listener first (so the port refuses new connections), then every client
//!   and upstream connection with a reset, then the thread is joined. It
//!   keeps no state outside its process (no qdisc, no file, no namespace),
//!   so a killed run leaves nothing to sweep: the kernel closes its sockets.
//! - Measured, never synthesised: [`ProxyStats`] counts what actually happened
//!   and records, per chunk, the delay requested and the delay achieved.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use rand::{RngExt as _, SeedableRng as _};
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Largest chunk one read takes.
const CHUNK_MAX: usize = 64 * 1024;
/// Chunks queued per direction between the reader and the writer.
const QUEUE_CHUNKS: usize = 64;
/// Token-bucket burst: this much time worth of bytes.
const BURST_NS: u64 = 20_000_000;
/// How long [`Proxy::stop`] waits for connections to close before dropping them.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Number of buckets of [`DelayStats::log2_histogram`].
pub const HISTOGRAM_BUCKETS: usize = 48;

/// The faults applied to traffic through a [`Proxy`]. The default is no fault.
/// See the module documentation for the exact semantics of each field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Delay added to each chunk travelling target -> client.
    pub latency_ns: u64,
    /// Uniform `+-jitter` around `latency_ns`, never below zero.
    pub jitter_ns: u64,
    /// Rate limit per connection and direction, in bytes per second.
    pub bandwidth_bytes_per_s: Option<u64>,
    /// Probability in `[0, 1]` that a chunk resets the connection instead of
    /// being forwarded.
    pub loss: f64,
    /// Stop all flow; close the connection after this many ns (`0`: never).
    pub timeout_ns: Option<u64>,
    /// Split writes into slices with a pause between them.
    pub slice: Option<Slice>,
    /// Partition: new connections are reset at once, existing ones reset.
    pub down: bool,
}

/// Slicing of writes (see [`Faults::slice`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slice {
    /// Largest slice written at once; at least 1.
    pub max_bytes: usize,
    /// Pause between consecutive slices.
    pub delay_ns: u64,
}

/// Why a [`Faults`] value was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultsError {
    #[error("network fault `loss` is {0}: it is a probability, give a number in [0, 1]")]
    Loss(f64),
    #[error(
        "network fault `bandwidth` is 0 bytes/s: that stops all traffic; use `timeout` (hold) or `down` (partition) for that, or give a positive rate"
    )]
    ZeroBandwidth,
    #[error("network fault `slice` has max_bytes 0: give the largest slice in bytes (at least 1)")]
    ZeroSlice,
    #[error(
        "network fault `jitter` ({0} ns) is too large: keep it below {max} ns",
        max = MAX_JITTER_NS
    )]
    Jitter(u64),
}

/// Largest accepted jitter (about 146 years; only there to keep arithmetic exact).
pub const MAX_JITTER_NS: u64 = u64::MAX / 4;

impl Faults {
    /// Checks that the values make sense; [`Proxy::set_faults`] calls it.
    pub fn validate(&self) -> Result<(), FaultsError> {
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(FaultsError::Loss(self.loss));
        }
        if self.bandwidth_bytes_per_s == Some(0) {
            return Err(FaultsError::ZeroBandwidth);
        }
        if matches!(self.slice, Some(Slice { max_bytes: 0, .. })) {
            return Err(FaultsError::ZeroSlice);
        }
        if self.jitter_ns > MAX_JITTER_NS {
            return Err(FaultsError::Jitter(self.jitter_ns));
        }
        Ok(())
    }
}

/// The direction a chunk travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the workload's client to the target program (requests).
    ClientToTarget,
    /// From the target program back to the client (responses).
    TargetToClient,
}

/// What happens to one chunk (see [`chunk_decision`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkDecision {
    /// Reset the connection instead of forwarding the chunk.
    pub reset: bool,
    /// Delay to add before the chunk is written (0 for client -> target).
    pub delay_ns: u64,
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The RNG for one chunk: a pure function of its coordinates.
fn chunk_rng(seed: u64, conn: u64, dir: Direction, chunk: u64) -> Pcg64 {
    let d = match dir {
        Direction::ClientToTarget => 1,
        Direction::TargetToClient => 2,
    };
    let k = splitmix64(splitmix64(splitmix64(seed) ^ conn) ^ d);
    Pcg64::seed_from_u64(splitmix64(k ^ chunk))
}

/// The fate of chunk number `chunk` (counted from 0 per connection and
/// direction) of connection number `conn` (counted from 0 in accept order)
/// under `faults`: whether it resets the connection, and the delay it gets.
///
/// Pure: the same arguments always give the same answer. The loss draw comes
/// first and the jitter draw second from an RNG seeded by the coordinates
/// only, so the loss decisions do not depend on the latency settings.
/// The delay is `latency + U[-jitter, +jitter]` (integer ns, saturating at
/// 0) for [`Direction::TargetToClient`] and 0 the other way.
pub fn chunk_decision(
    seed: u64,
    conn: u64,
    dir: Direction,
    chunk: u64,
    faults: &Faults,
) -> ChunkDecision {
    let mut rng = chunk_rng(seed, conn, dir, chunk);
    let u: f64 = rng.random();
    let reset = u < faults.loss;
    let delay_ns = match dir {
        Direction::ClientToTarget => 0,
        Direction::TargetToClient => {
            let j = faults.jitter_ns.min(MAX_JITTER_NS);
            if j == 0 {
                faults.latency_ns
            } else {
                let off = rng.random_range(0..=2 * j);
                // latency + off - j, saturating at 0 and at u64::MAX.
                faults.latency_ns.saturating_add(off).saturating_sub(j)
            }
        }
    };
    ChunkDecision { reset, delay_ns }
}

/// Options of [`Proxy::start_with`].
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// Allow listen and upstream addresses that are not loopback.
    pub allow_non_loopback: bool,
    /// How long to wait for the upstream connect before giving up on a client.
    pub connect_timeout: Duration,
    /// Faults in force from the first connection on.
    pub initial_faults: Faults,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            allow_non_loopback: false,
            connect_timeout: Duration::from_secs(5),
            initial_faults: Faults::default(),
        }
    }
}

/// Delays requested and achieved for the chunks of one direction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelayStats {
    /// Chunks measured.
    pub count: u64,
    /// Sum of the delays [`chunk_decision`] asked for.
    pub requested_sum_ns: u64,
    /// Sum of the achieved delays: from the end of the read that got the chunk
    /// to the end of its last write (so it includes bandwidth waits, slicing,
    /// holds, queueing behind earlier chunks and the proxy's own overhead).
    pub achieved_sum_ns: u64,
    /// Smallest achieved delay (0 when `count` is 0).
    pub achieved_min_ns: u64,
    /// Largest achieved delay.
    pub achieved_max_ns: u64,
    /// Achieved delays by power of two: bucket 0 counts delays of 0 ns,
    /// bucket `i >= 1` those in `[2^(i-1), 2^i)` ns; the last bucket also
    /// takes everything longer.
    pub log2_histogram: Vec<u64>,
}

impl Default for DelayStats {
    fn default() -> Self {
        DelayStats {
            count: 0,
            requested_sum_ns: 0,
            achieved_sum_ns: 0,
            achieved_min_ns: 0,
            achieved_max_ns: 0,
            log2_histogram: vec![0; HISTOGRAM_BUCKETS],
        }
    }
}

impl DelayStats {
    fn record(&mut self, requested_ns: u64, achieved_ns: u64) {
        self.achieved_min_ns = if self.count == 0 {
            achieved_ns
        } else {
            self.achieved_min_ns.min(achieved_ns)
        };
        self.count += 1;
        self.requested_sum_ns = self.requested_sum_ns.saturating_add(requested_ns);
        self.achieved_sum_ns = self.achieved_sum_ns.saturating_add(achieved_ns);
        self.achieved_max_ns = self.achieved_max_ns.max(achieved_ns);
        let bucket = (64 - achieved_ns.leading_zeros() as usize).min(HISTOGRAM_BUCKETS - 1);
        self.log2_histogram[bucket] += 1;
    }

    /// Mean requested delay per chunk (0 without chunks).
    pub fn mean_requested_ns(&self) -> u64 {
        self.requested_sum_ns.checked_div(self.count).unwrap_or(0)
    }

    /// Mean achieved delay per chunk (0 without chunks).
    pub fn mean_achieved_ns(&self) -> u64 {
        self.achieved_sum_ns.checked_div(self.count).unwrap_or(0)
    }

    /// An upper bound of the `q` quantile (`q` in `[0, 1]`) of the achieved
    /// delay, from the histogram: the top of the bucket holding it (capped by
    /// the maximum). 0 without chunks.
    pub fn quantile_upper_bound_ns(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.log2_histogram.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let top = if i == 0 { 0 } else { (1u64 << i) - 1 };
                return top.min(self.achieved_max_ns);
            }
        }
        self.achieved_max_ns
    }
}

/// What went through one direction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectionStats {
    /// Chunks written to the destination.
    pub chunks: u64,
    /// Bytes written to the destination.
    pub bytes: u64,
    /// Per-chunk delays, requested and achieved.
    pub delay: DelayStats,
}

/// Measured counters of a [`Proxy`] over a window (see [`Proxy::stats`] and
/// [`Proxy::take_window`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyStats {
    /// Length of the window the counters cover.
    pub window_ns: u64,
    /// Client connections accepted (proxied or refused).
    pub accepted: u64,
    /// Connections open now (a gauge, not windowed).
    pub active: u64,
    /// Connections accepted and reset at once because the proxy was `down`.
    pub refused_down: u64,
    /// Client connections closed because the upstream connect failed.
    pub upstream_errors: u64,
    /// `accept` calls that failed (for example out of file descriptors).
    pub accept_errors: u64,
    /// Connections reset because of `loss`.
    pub resets_injected: u64,
    /// Open connections reset because `down` was set.
    pub resets_down: u64,
    /// Connections closed by the `timeout` fault.
    pub timeouts_closed: u64,
    /// Connections that ended because a peer reset or an I/O error (the
    /// other side is reset too).
    pub peer_errors: u64,
    /// Connections that ended normally (both directions closed).
    pub closed_clean: u64,
    /// Client to target traffic.
    pub client_to_target: DirectionStats,
    /// Target to client traffic.
    pub target_to_client: DirectionStats,
}

impl ProxyStats {
    /// The traffic of one direction.
    pub fn direction(&self, dir: Direction) -> &DirectionStats {
        match dir {
            Direction::ClientToTarget => &self.client_to_target,
            Direction::TargetToClient => &self.target_to_client,
        }
    }

    /// Achieved throughput of one direction over the window, bytes per
    /// second, summed over all connections (the bandwidth fault is per
    /// connection: compare it with this only when one connection is busy).
    pub fn throughput_bytes_per_s(&self, dir: Direction) -> f64 {
        if self.window_ns == 0 {
            return 0.0;
        }
        self.direction(dir).bytes as f64 * 1e9 / self.window_ns as f64
    }

    fn direction_mut(&mut self, dir: Direction) -> &mut DirectionStats {
        match dir {
            Direction::ClientToTarget => &mut self.client_to_target,
            Direction::TargetToClient => &mut self.target_to_client,
        }
    }
}

/// Counters since start and since the last [`Proxy::take_window`].
struct StatsState {
    started: Instant,
    window_started: Instant,
    total: ProxyStats,
    window: ProxyStats,
}

struct Stats {
    state: Mutex<StatsState>,
    active: AtomicU64,
}

impl Stats {
    fn new() -> Stats {
        let now = Instant::now();
        Stats {
            state: Mutex::new(StatsState {
                started: now,
                window_started: now,
                total: ProxyStats::default(),
                window: ProxyStats::default(),
            }),
            active: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, StatsState> {
        // A panic while holding the lock leaves plain counters: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `f` to both the cumulative and the windowed counters.
    fn update(&self, f: impl Fn(&mut ProxyStats)) {
        let mut s = self.lock();
        f(&mut s.total);
        f(&mut s.window);
    }

    fn record_chunk(&self, dir: Direction, bytes: usize, requested_ns: u64, achieved_ns: u64) {
        self.update(|s| {
            let d = s.direction_mut(dir);
            d.chunks += 1;
            d.bytes += bytes as u64;
            d.delay.record(requested_ns, achieved_ns);
        });
    }

    fn snapshot(&self, take_window: bool) -> ProxyStats {
        let active = self.active.load(Ordering::Relaxed);
        let mut s = self.lock();
        let now = Instant::now();
        let mut out = if take_window {
            let mut w = std::mem::take(&mut s.window);
            w.window_ns = duration_ns(now - s.window_started);
            s.window_started = now;
            w
        } else {
            let mut t = s.total.clone();
            t.window_ns = duration_ns(now - s.started);
            t
        };
        out.active = active;
        out
    }
}

/// Decrements the active-connection gauge when a connection task ends (also
/// when it is dropped by the runtime on shutdown).
struct ActiveGuard(Arc<Stats>);

impl ActiveGuard {
    fn new(stats: &Arc<Stats>) -> ActiveGuard {
        stats.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(stats.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

fn check_addr(what: &str, addr: SocketAddr, allow_non_loopback: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        allow_non_loopback || addr.ip().is_loopback(),
        "fault proxy {what} address {addr} is not loopback: network faults are \
         only injected on loopback (use 127.0.0.1 or ::1)"
    );
    Ok(())
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A running fault proxy. Dropping it stops it (see [`Proxy::stop`]).
pub struct Proxy {
    local_addr: SocketAddr,
    upstream: watch::Sender<SocketAddr>,
    allow_non_loopback: bool,
    seed: u64,
    faults: watch::Sender<Faults>,
    stop: watch::Sender<bool>,
    stats: Arc<Stats>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("local_addr", &self.local_addr)
            .field("upstream", &*self.upstream.borrow())
            .field("seed", &self.seed)
            .field("faults", &*self.faults.borrow())
            .finish_non_exhaustive()
    }
}

/// What the connection task shares.
struct Shared {
    upstream: watch::Receiver<SocketAddr>,
    seed: u64,
    connect_timeout: Duration,
    stats: Arc<Stats>,
}

impl Proxy {
    /// Starts a proxy listening on `listen` (`127.0.0.1:0` picks a free port)
    /// that forwards to `upstream`, with no fault, on its own thread with its
    /// own tokio runtime. `seed` drives every random decision. Both addresses
    /// must be loopback (see [`Proxy::start_with`]).
    pub fn start(listen: SocketAddr, upstream: SocketAddr, seed: u64) -> anyhow::Result<Proxy> {
        Proxy::start_with(listen, upstream, seed, ProxyOptions::default())
    }

    /// [`Proxy::start`] with options.
    pub fn start_with(
        listen: SocketAddr,
        upstream: SocketAddr,
        seed: u64,
        opts: ProxyOptions,
    ) -> anyhow::Result<Proxy> {
        for (what, addr) in [("listen", listen), ("upstream", upstream)] {
            check_addr(what, addr, opts.allow_non_loopback)?;
        }
        opts.initial_faults.validate()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the fault proxy's tokio runtime")?;
        let std_listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("fault proxy cannot listen on {listen}"))?;
        std_listener
            .set_nonblocking(true)
            .context("cannot make the fault proxy's listener non-blocking")?;
        let local_addr = std_listener.local_addr()?;
        let listener = {
            let _enter = rt.enter();
            TcpListener::from_std(std_listener)
                .context("cannot register the fault proxy's listener")?
        };
        let (faults_tx, faults_rx) = watch::channel(opts.initial_faults);
        let (stop_tx, stop_rx) = watch::channel(false);
        let stats = Arc::new(Stats::new());
        let (upstream_tx, upstream_rx) = watch::channel(upstream);
        let shared = Arc::new(Shared {
            upstream: upstream_rx,
            seed,
            connect_timeout: opts.connect_timeout,
            stats: stats.clone(),
        });
        let thread = std::thread::Builder::new()
            .name(format!("panic-proxy-{}", local_addr.port()))
            .spawn(move || {
                rt.block_on(accept_loop(listener, shared, faults_rx, stop_rx));
                // Anything still left (a connection that did not close within
                // the grace period) is dropped here, which closes its sockets.
                rt.shutdown_timeout(STOP_GRACE);
            })
            .context("cannot spawn the fault proxy's thread")?;
        Ok(Proxy {
            local_addr,
            upstream: upstream_tx,
            allow_non_loopback: opts.allow_non_loopback,
            seed,
            faults: faults_tx,
            stop: stop_tx,
            stats,
            thread: Some(thread),
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address connections are forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        *self.upstream.borrow()
    }

    /// Forwards the connections accepted from now on to `upstream` (a
    /// restarted target that listens on another port); open connections
    /// keep theirs.
    pub fn set_upstream(&self, upstream: SocketAddr) -> anyhow::Result<()> {
        check_addr("upstream", upstream, self.allow_non_loopback)?;
        self.upstream.send_replace(upstream);
        Ok(())
    }

    /// The seed of the random decisions.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Replaces the faults. Chunks read from now on use them; `down`,
    /// `timeout` and `slice` also apply at once to open connections.
    pub fn set_faults(&self, faults: Faults) -> Result<(), FaultsError> {
        faults.validate()?;
        self.faults.send_replace(faults);
        Ok(())
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        *self.faults.borrow()
    }

    /// Counters since the proxy started (`window_ns` is the time since start).
    pub fn stats(&self) -> ProxyStats {
        self.stats.snapshot(false)
    }

    /// Counters since the previous call (or since start), and starts a new
    /// window: what the engine reports as "achieved" per tick.
    pub fn take_window(&self) -> ProxyStats {
        self.stats.snapshot(true)
    }

    /// Closes the listener and every connection (with a reset), and joins the
    /// proxy's thread. Dropping the proxy does the same.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.send_replace(true);
            // The thread only panics on a bug; there is nothing to clean up
            // beyond what its unwinding already closed.
            let _ = thread.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    faults: watch::Receiver<Faults>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let mut next_conn: u64 = 0;
    // What each connection task watches (`stop` itself is borrowed by the select).
    let conn_stop = stop.clone();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            r = listener.accept() => match r {
                Ok((client, _peer)) => {
                    let conn = next_conn;
                    next_conn += 1;
                    shared.stats.update(|s| s.accepted += 1);
                    if faults.borrow().down {
                        let _ = client.set_zero_linger();
                        drop(client);
                        shared.stats.update(|s| s.refused_down += 1);
                        continue;
                    }
                    conns.spawn(serve(client, conn, shared.clone(), faults.clone(), conn_stop.clone()));
                }
                Err(_) => {
                    // EMFILE and friends: back off instead of spinning.
                    shared.stats.update(|s| s.accept_errors += 1);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    // The port refuses new connections from here on.
    drop(listener);
    // Every connection task sees the stop signal and resets its sockets.
    let _ = tokio::time::timeout(STOP_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}

/// How a connection ended.
#[derive(Debug)]
enum End {
    /// Both directions finished (EOF forwarded both ways).
    Done,
    /// A chunk was "lost": reset.
    Loss,
    /// The proxy went down: reset.
    Down,
    /// The proxy is stopping: reset.
    Stop,
    /// The timeout fault expired: close.
    Timeout,
    /// A peer reset or an I/O error: reset the other side.
    Io,
}

async fn serve(
    client: TcpStream,
    conn: u64,
    shared: Arc<Shared>,
    faults: watch::Receiver<Faults>,
    mut stop: watch::Receiver<bool>,
) {
    let _active = ActiveGuard::new(&shared.stats);
    let stats = &shared.stats;
    let to = *shared.upstream.borrow();
    let connect = tokio::time::timeout(shared.connect_timeout, TcpStream::connect(to));
    let upstream = tokio::select! {
        r = connect => r.ok().and_then(|r| r.ok()),
        _ = stop.wait_for(|s| *s) => None,
    };
    let Some(mut upstream) = upstream else {
        stats.update(|s| s.upstream_errors += 1);
        let _ = client.set_zero_linger();
        return;
    };
    let mut client = client;
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);

    let end = {
        let (mut cr, mut cw) = client.split();
        let (mut ur, mut uw) = upstream.split();
        let (c2u_tx, c2u_rx) = mpsc::channel(QUEUE_CHUNKS);
        let (u2c_tx, u2c_rx) = mpsc::channel(QUEUE_CHUNKS);
        let ctx = PipeCtx {
            seed: shared.seed,
            conn,
            stats,
        };
        let c2t = Direction::ClientToTarget;
        let t2c = Direction::TargetToClient;
        let pipes = async {
            tokio::try_join!(
                read_side(&mut cr, c2u_tx, faults.clone(), &ctx, c2t),
                write_side(&mut uw, c2u_rx, faults.clone(), &ctx, c2t),
                read_side(&mut ur, u2c_tx, faults.clone(), &ctx, t2c),
                write_side(&mut cw, u2c_rx, faults.clone(), &ctx, t2c),
            )
        };
        tokio::select! {
            r = pipes => match r {
                Ok(_) => End::Done,
                Err(e) => e,
            },
            e = control(faults.clone(), stop.clone()) => e,
        }
    };

    match end {
        End::Done => stats.update(|s| s.closed_clean += 1),
        End::Timeout => stats.update(|s| s.timeouts_closed += 1),
        End::Loss => stats.update(|s| s.resets_injected += 1),
        End::Down => stats.update(|s| s.resets_down += 1),
        End::Io => stats.update(|s| s.peer_errors += 1),
        End::Stop => {}
    }
    if !matches!(end, End::Done | End::Timeout) {
        let _ = client.set_zero_linger();
        let _ = upstream.set_zero_linger();
    }
    // Dropping the streams closes them (with a reset when linger is 0).
}

/// Watches for the connection-wide faults: `down`, the `timeout` deadline, stop.
async fn control(mut faults: watch::Receiver<Faults>, mut stop: watch::Receiver<bool>) -> End {
    let mut held_since: Option<Instant> = None;
    loop {
        let f = *faults.borrow_and_update();
        if f.down {
            return End::Down;
        }
        let deadline = match f.timeout_ns {
            None => {
                held_since = None;
                None
            }
            Some(t) => {
                let since = *held_since.get_or_insert_with(Instant::now);
                (t > 0).then(|| since + Duration::from_nanos(t))
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return End::Stop,
            r = faults.changed() => if r.is_err() { return End::Stop },
            _ = sleep_until_opt(deadline) => return End::Timeout,
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

struct PipeCtx<'a> {
    seed: u64,
    conn: u64,
    stats: &'a Stats,
}

enum Msg {
    Data {
        bytes: Vec<u8>,
        /// When the read that got the chunk returned.
        read_at: Instant,
        /// When it may be written.
        due: Instant,
        requested_ns: u64,
    },
    Eof,
}

/// Waits while the `timeout` fault holds the traffic.
async fn wait_flowing(faults: &mut watch::Receiver<Faults>) -> Result<(), End> {
    faults
        .wait_for(|f| f.timeout_ns.is_none())
        .await
        .map(|_| ())
        .map_err(|_| End::Stop)
}

fn io_end(_e: io::Error) -> End {
    End::Io
}

/// Token bucket of one direction; the rate is read at each use, so it
/// follows live changes.
struct Bucket {
    tokens: f64,
    last: Instant,
}

fn burst_bytes(rate: u64) -> usize {
    let b = (u128::from(rate) * u128::from(BURST_NS) / 1_000_000_000) as u64;
    b.clamp(1, CHUNK_MAX as u64) as usize
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            tokens: f64::INFINITY,
            last: Instant::now(),
        }
    }

    /// Takes `n` bytes worth of tokens at `rate` bytes/s, waiting if the
    /// bucket is in debt. `None` (unlimited) refills the bucket.
    async fn take(&mut self, n: usize, rate: Option<u64>) {
        let now = Instant::now();
        let Some(rate) = rate else {
            self.tokens = f64::INFINITY;
            self.last = now;
            return;
        };
        let burst = burst_bytes(rate) as f64;
        let elapsed = (now - self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate as f64).min(burst) - n as f64;
        self.last = now;
        if self.tokens < 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(-self.tokens / rate as f64)).await;
        }
    }
}

async fn read_side<R: AsyncRead + Unpin>(
    src: &mut R,
    tx: mpsc::Sender<Msg>,
    mut faults: watch::Receiver<Faults>,
    ctx: &PipeCtx<'_>,
    dir: Direction,
) -> Result<(), End> {
    let mut bucket = Bucket::new();
    let mut chunk: u64 = 0;
    let mut buf = vec![0u8; CHUNK_MAX];
    loop {
        wait_flowing(&mut faults).await?;
        let f = *faults.borrow_and_update();
        if f.timeout_ns.is_some() {
            continue;
        }
        let cap = f.bandwidth_bytes_per_s.map_or(CHUNK_MAX, burst_bytes);
        let n = tokio::select! {
            // `read` on a TCP stream is cancel-safe: a lost race loses no byte.
            r = src.read(&mut buf[..cap]) => r.map_err(io_end)?,
            r = faults.changed() => {
                r.map_err(|_| End::Stop)?;
                continue;
            }
        };
        let read_at = Instant::now();
        if n == 0 {
            // The writer forwards the half-close after what is queued.
            let _ = tx.send(Msg::Eof).await;
            return Ok(());
        }
        let f = *faults.borrow();
        let d = chunk_decision(ctx.seed, ctx.conn, dir, chunk, &f);
        chunk += 1;
        if d.reset {
            return Err(End::Loss);
        }
        bucket.take(n, f.bandwidth_bytes_per_s).await;
        let due = Instant::now() + Duration::from_nanos(d.delay_ns);
        let bytes = buf[..n].to_vec();
        let msg = Msg::Data {
            bytes,
            read_at,
            due,
            requested_ns: d.delay_ns,
        };
        if tx.send(msg).await.is_err() {
            // The writer is gone, which only happens when it failed: its
            // error ends the connection.
            return Ok(());
        }
    }
}

async fn write_side<W: AsyncWrite + Unpin>(
    dst: &mut W,
    mut rx: mpsc::Receiver<Msg>,
    mut faults: watch::Receiver<Faults>,
    ctx: &PipeCtx<'_>,
    dir: Direction,
) -> Result<(), End> {
    let mut last_slice: Option<Instant> = None;
    while let Some(msg) = rx.recv().await {
        let (bytes, read_at, due, requested_ns) = match msg {
            Msg::Eof => {
                wait_flowing(&mut faults).await?;
                dst.shutdown().await.map_err(io_end)?;
                return Ok(());
            }
            Msg::Data {
                bytes,
                read_at,
                due,
                requested_ns,
            } => (bytes, read_at, due, requested_ns),
        };
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        let mut off = 0;
        while off < bytes.len() {
            wait_flowing(&mut faults).await?;
            let slice = faults.borrow().slice;
            let end = match slice {
                None => {
                    last_slice = None;
                    bytes.len()
                }
                Some(s) => {
                    if let Some(last) = last_slice {
                        tokio::time::sleep_until(last + Duration::from_nanos(s.delay_ns)).await;
                        // The fault may have changed during the pause.
                        if faults.borrow().timeout_ns.is_some() {
                            continue;
                        }
                    }
                    off + s.max_bytes.min(bytes.len() - off)
                }
            };
            dst.write_all(&bytes[off..end]).await.map_err(io_end)?;
            if slice.is_some() {
                last_slice = Some(Instant::now());
            }
            off = end;
        }
        let achieved = duration_ns(Instant::now() - read_at);
        ctx.stats
            .record_chunk(dir, bytes.len(), requested_ns, achieved);
    }
    // The reader stopped without EOF: it failed, and its error ends the
    // connection.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(latency_ns: u64, jitter_ns: u64, loss: f64) -> Faults {
        Faults {
            latency_ns,
            jitter_ns,
            loss,
            ..Faults::default()
        }
    }

    #[test]
    fn decision_is_a_pure_function_of_its_coordinates() {
        let f = faults(10_000_000, 5_000_000, 0.3);
        for dir in [Direction::ClientToTarget, Direction::TargetToClient] {
            for conn in 0..5 {
                for chunk in 0..200 {
                    let a = chunk_decision(42, conn, dir, chunk, &f);
                    let b = chunk_decision(42, conn, dir, chunk, &f);
                    assert_eq!(a, b);
                }
            }
        }
        // Different seeds give different schedules.
        let a: Vec<_> = (0..100)
            .map(|c| chunk_decision(1, 0, Direction::TargetToClient, c, &f))
            .collect();
        let b: Vec<_> = (0..100)
            .map(|c| chunk_decision(2, 0, Direction::TargetToClient, c, &f))
            .collect();
        assert_ne!(a, b);
        // So do different connections and directions.
        let c: Vec<_> = (0..100)
            .map(|c| chunk_decision(1, 1, Direction::TargetToClient, c, &f))
            .collect();
        assert_ne!(a, c);
        let d: Vec<_> = (0..100)
            .map(|c| chunk_decision(1, 0, Direction::ClientToTarget, c, &f).reset)
            .collect();
        let a_reset: Vec<_> = a.iter().map(|x| x.reset).collect();
        assert_ne!(a_reset, d);
    }

    #[test]
    fn loss_decision_does_not_depend_on_latency_settings() {
        let lossy = faults(0, 0, 0.5);
        let lossy_jitter = faults(3_000_000, 2_000_000, 0.5);
        for chunk in 0..1000 {
            let a = chunk_decision(7, 3, Direction::TargetToClient, chunk, &lossy);
            let b = chunk_decision(7, 3, Direction::TargetToClient, chunk, &lossy_jitter);
            assert_eq!(a.reset, b.reset);
        }
    }

    #[test]
    fn jitter_stays_within_bounds_and_covers_them() {
        let (lat, jit) = (50_000_000u64, 10_000_000u64);
        let f = faults(lat, jit, 0.0);
        let n = 10_000u64;
        let mut sum = 0u128;
        let (mut lo, mut hi) = (u64::MAX, 0);
        for chunk in 0..n {
            let d = chunk_decision(9, 0, Direction::TargetToClient, chunk, &f);
            assert!(!d.reset);
            assert!(
                (lat - jit..=lat + jit).contains(&d.delay_ns),
                "{}",
                d.delay_ns
            );
            sum += u128::from(d.delay_ns);
            lo = lo.min(d.delay_ns);
            hi = hi.max(d.delay_ns);
        }
        // Uniform over [lat-jit, lat+jit]: the extremes are nearly reached
        // and the mean is the latency (sd of the mean = jit/sqrt(3n) ~ 58 us).
        assert!(lo < lat - jit * 99 / 100, "{lo}");
        assert!(hi > lat + jit * 99 / 100, "{hi}");
        let mean = (sum / u128::from(n)) as u64;
        assert!(mean.abs_diff(lat) < 300_000, "{mean}");
        // No delay the other way.
        let d = chunk_decision(9, 0, Direction::ClientToTarget, 0, &f);
        assert_eq!(d.delay_ns, 0);
    }

    #[test]
    fn jitter_never_goes_below_zero() {
        let f = faults(1_000, 1_000_000, 0.0);
        let mut zeros = 0;
        for chunk in 0..10_000 {
            let d = chunk_decision(3, 0, Direction::TargetToClient, chunk, &f);
            assert!(d.delay_ns <= 1_001_000);
            zeros += usize::from(d.delay_ns == 0);
        }
        // About half the draws are clamped to 0.
        assert!((4_000..6_000).contains(&zeros), "{zeros}");
        // No jitter: exactly the latency.
        let f = faults(1_234, 0, 0.0);
        assert_eq!(
            chunk_decision(3, 0, Direction::TargetToClient, 5, &f).delay_ns,
            1_234
        );
    }

    #[test]
    fn loss_fraction_matches_the_probability() {
        let n = 10_000u64;
        for (seed, p) in [(1u64, 0.02f64), (2, 0.02), (3, 0.5), (4, 0.001)] {
            let f = faults(0, 0, p);
            let hits = (0..n)
                .filter(|&c| chunk_decision(seed, 0, Direction::ClientToTarget, c, &f).reset)
                .count() as f64;
            let mean = p * n as f64;
            let sigma = (n as f64 * p * (1.0 - p)).sqrt();
            assert!(
                (hits - mean).abs() <= 5.0 * sigma + 1.0,
                "p={p}: {hits} resets in {n}, expected {mean} +- {sigma}"
            );
        }
        // Over many connections too (one chunk each).
        let f = faults(0, 0, 0.02);
        let hits = (0..10_000u64)
            .filter(|&conn| chunk_decision(5, conn, Direction::TargetToClient, 0, &f).reset)
            .count();
        assert!((130..=270).contains(&hits), "{hits}");
    }

    #[test]
    fn loss_extremes_are_exact() {
        let never = faults(0, 0, 0.0);
        let always = faults(0, 0, 1.0);
        for chunk in 0..1000 {
            assert!(!chunk_decision(0, 0, Direction::ClientToTarget, chunk, &never).reset);
            assert!(chunk_decision(0, 0, Direction::ClientToTarget, chunk, &always).reset);
        }
    }

    #[test]
    fn validation_refuses_nonsense() {
        assert_eq!(Faults::default().validate(), Ok(()));
        assert!(matches!(
            faults(0, 0, 1.5).validate(),
            Err(FaultsError::Loss(_))
        ));
        assert!(faults(0, 0, f64::NAN).validate().is_err());
        assert!(faults(0, 0, -0.1).validate().is_err());
        let f = Faults {
            bandwidth_bytes_per_s: Some(0),
            ..Faults::default()
        };
        assert_eq!(f.validate(), Err(FaultsError::ZeroBandwidth));
        let f = Faults {
            slice: Some(Slice {
                max_bytes: 0,
                delay_ns: 1,
            }),
            ..Faults::default()
        };
        assert_eq!(f.validate(), Err(FaultsError::ZeroSlice));
        let f = faults(0, u64::MAX, 0.0);
        assert!(matches!(f.validate(), Err(FaultsError::Jitter(_))));
        // The messages say what to do.
        assert!(FaultsError::Loss(2.0).to_string().contains("[0, 1]"));
    }

    #[test]
    fn faults_round_trip_through_json() {
        let f = Faults {
            latency_ns: 5,
            jitter_ns: 1,
            bandwidth_bytes_per_s: Some(1024),
            loss: 0.25,
            timeout_ns: Some(0),
            slice: Some(Slice {
                max_bytes: 10,
                delay_ns: 3,
            }),
            down: true,
        };
        let s = serde_json::to_string(&f).unwrap();
        assert_eq!(serde_json::from_str::<Faults>(&s).unwrap(), f);
        // Missing fields mean "no fault".
        assert_eq!(
            serde_json::from_str::<Faults>("{}").unwrap(),
            Faults::default()
        );
    }

    #[test]
    fn delay_stats_summaries() {
        let mut d = DelayStats::default();
        assert_eq!(d.mean_achieved_ns(), 0);
        assert_eq!(d.quantile_upper_bound_ns(0.5), 0);
        for (req, got) in [(0, 0), (100, 150), (100, 1_000), (100, 1_000_000)] {
            d.record(req, got);
        }
        assert_eq!(d.count, 4);
        assert_eq!(d.achieved_min_ns, 0);
        assert_eq!(d.achieved_max_ns, 1_000_000);
        assert_eq!(d.mean_requested_ns(), 75);
        assert_eq!(d.mean_achieved_ns(), 1_001_150 / 4);
        assert_eq!(d.log2_histogram[0], 1);
        assert_eq!(d.log2_histogram.iter().sum::<u64>(), 4);
        // 150 is in [128, 256): the median's bound is 255.
        assert_eq!(d.quantile_upper_bound_ns(0.5), 255);
        assert_eq!(d.quantile_upper_bound_ns(1.0), 1_000_000);
        // Huge delays land in the last bucket.
        d.record(0, u64::MAX);
        assert_eq!(d.log2_histogram[HISTOGRAM_BUCKETS - 1], 1);
    }

    #[test]
    fn burst_is_twenty_ms_worth_within_limits() {
        assert_eq!(burst_bytes(1), 1);
        assert_eq!(burst_bytes(256 * 1024), 5242);
        assert_eq!(burst_bytes(u64::MAX), CHUNK_MAX);
    }

    #[test]
    fn start_refuses_non_loopback_addresses() {
        let lo: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let far: SocketAddr = "192.0.2.1:80".parse().unwrap();
        let e = Proxy::start("0.0.0.0:0".parse().unwrap(), lo, 0).unwrap_err();
        assert!(e.to_string().contains("not loopback"), "{e}");
        let e = Proxy::start("127.0.0.1:0".parse().unwrap(), far, 0).unwrap_err();
        assert!(e.to_string().contains("not loopback"), "{e}");
    }

    #[test]
    fn proxy_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Proxy>();
    }

    #[test]
    fn stats_window_resets_but_totals_do_not() {
        let s = Stats::new();
        s.record_chunk(Direction::ClientToTarget, 10, 0, 5);
        let w = s.snapshot(true);
        assert_eq!(w.client_to_target.bytes, 10);
        s.record_chunk(Direction::ClientToTarget, 7, 0, 5);
        let w = s.snapshot(true);
        assert_eq!(w.client_to_target.bytes, 7);
        assert_eq!(w.client_to_target.chunks, 1);
        let t = s.snapshot(false);
        assert_eq!(t.client_to_target.bytes, 17);
        assert_eq!(t.client_to_target.delay.count, 2);
    }
}
