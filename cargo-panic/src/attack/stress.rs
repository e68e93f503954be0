//! The stressor processes of `cargo panic attack`: load generators the engine
//! runs as child processes, never as threads of itself, so that a hog cannot
//! take the engine down and each stressor can be put in the run's `stress`
//! cgroup.
//!
//! A stressor is the cargo-panic binary re-executed as
//! `cargo-panic __stress <kind> [options]`: the hidden subcommand parses its
//! arguments with [`parse_args`] and calls [`serve`] with its stdin. The engine
//! drives it through a [`Stressor`] ([`Stressor::spawn`]).
//!
//! # Kinds
//!
//! | kind | level | what it does | achieved (measured by the parent) |
//! |---|---|---|---|
//! | `spin` | cores | busy threads with a duty cycle | CPU time rate of the process |
//! | `hog` | bytes | holds resident anonymous memory | resident set size of the process |
//! | `io` | bytes/s | writes and `fdatasync`s blocks to a file | bytes/s it made the kernel write |
//!
//! - **spin** runs `ceil(level)` threads (at most [`SPIN_THREADS_PER_CPU`] ×
//!   the online CPUs; a higher level is refused), each with a duty cycle of
//!   `level / threads` over every [`SPIN_PERIOD`] (10 ms), so `level 1.5` is
//!   two threads at 75 %. In each period a thread busy-loops until it has
//!   used its duty in CPU time (its thread CPU clock) or the period ends (the
//!   monotonic clock), then sleeps for the rest: on a busy machine, time spent
//!   waiting for a CPU does not count as load given, and the thread keeps
//!   trying for its share, never more. Threads are started and retired as
//!   the level changes; `level 0` has none.
//! - **hog** holds `level` bytes (rounded up to whole pages) of private
//!   anonymous memory, in mappings of at most 16 MiB, and writes one byte per
//!   page so that every page is resident. Raising the level maps and touches
//!   more, 16 MiB at a time; lowering it unmaps from the end, 16 MiB at a time,
//!   so memory goes back to the system at once. A mapping that fails is
//!   reported on stderr and the hog keeps what it holds until the next level.
//! - **io** (`--dir DIR`, `--block BYTES`, default 1 MiB) creates
//!   `DIR/.cargo-panic-io-<pid>`, writes blocks of `--block` bytes to it with
//!   `pwrite`, calls `fdatasync` after each block, and paces the blocks with a
//!   token bucket ([`TokenBucket`]) at `level` bytes/s. A level above what the
//!   disk can do runs flat out; the bucket's burst is capped
//!   ([`IO_BURST_SECONDS`] worth of bytes, at least one block), so a disk that
//!   was slow for a while is not hammered with a backlog afterwards. Blocks
//!   are pseudo-random bytes, stamped with a sequence number on every 4 KiB,
//!   so compressing or deduplicating filesystems still write them. A write
//!   error is reported on stderr once per kind of error and is not fatal: the
//!   stressor keeps trying at the rate. After `ENOSPC` (or `EDQUOT`) it
//!   wraps around at the block that failed, so until the next level it
//!   rewrites the part of its file it has, which needs no new space.
//!
//! # Control protocol
//!
//! Lines on the stressor's stdin, replies on its stdout:
//!
//! 1. At start, once set up (io file created, oom_score_adj written), the
//!    stressor writes
//!    `cargo-panic-stress ready pid=<pid> pdeathsig=<signal> thread=<main|other>`.
//!    `pdeathsig` is what `prctl(PR_GET_PDEATHSIG)` says on the thread that
//!    runs [`serve`], and `thread` says whether that is the process's main
//!    thread. The parent-death signal is an attribute of each thread: the
//!    one set between fork and exec belongs to the main thread, and threads
//!    created later start with none (the kernel signals a process if any of
//!    its threads has one), so the value tells something only on the main
//!    thread, where `cargo-panic __stress` runs it. [`Stressor::spawn_with`]
//!    waits for this line (lines before it are ignored) and refuses a
//!    stressor whose pid is not the child it started, or that runs on its
//!    main thread with a parent-death signal other than `SIGKILL`.
//! 2. `level <number>` sets the level, in the kind's base unit (cores, bytes,
//!    bytes per second), as often as wanted; `level 0` is idle, which is also
//!    the level at start. The number is a plain decimal, finite and not
//!    negative ([`parse_control`]). The stressor answers `ok` once it took the
//!    level (for `spin`, once its threads are started or retired; `hog` and
//!    `io` move towards the level in a worker thread), or `err <message>` for
//!    a line it refuses, and then it keeps its previous level.
//! 3. At end of stdin, the stressor stops its work, releases what it holds
//!    and exits with status 0.
//!
//! Stderr is for messages to people: the parent forwards each line to its own
//! stderr, prefixed with the kind and pid, and keeps the last ones
//! ([`Stressor::messages`]) for its error messages.
//!
//! # Safety rules
//!
//! - **Lifetime.** A stressor exits at end of stdin, so it ends when the
//!   engine closes the pipe ([`Stressor::stop`], drop) or dies. In case the
//!   engine is killed, the child also has `PR_SET_PDEATHSIG = SIGKILL`, set
//!   between fork and exec by [`Stressor::spawn_with`] (which fails the spawn
//!   if the engine already died by then). Linux sends that signal when the
//!   *thread* that forked the child exits, not the process: **the engine
//!   spawns stressors from its main thread** (or from a thread that lives as
//!   long as the stressors); one spawned from a short-lived thread is killed
//!   when that thread ends. Each stressor is in its own process group, so a
//!   Ctrl-C at the terminal reaches only the engine, which then stops its
//!   stressors in order. The stressor's executable must exec in place (no
//!   wrapper process in between): the ready line's pid is checked.
//! - **hog.** At start the hog writes 1000 to `/proc/self/oom_score_adj`
//!   (and refuses to run if it cannot), so that when memory runs out the
//!   kernel's OOM killer ends the hog first, never a bystander. The parent
//!   refuses ([`Stressor::set`] errors, naming the amounts) a level above
//!   what the hog holds now plus `MemAvailable` (from `/proc/meminfo`) minus
//!   [`HOG_RESERVE_BYTES`], at the moment of the set; it never clamps in
//!   silence. (A memory limit on the stress cgroup is not looked at: hitting
//!   it OOM-kills the hog, which [`Stressor::set`] and [`Stressor::stop`]
//!   then report.)
//! - **io.** The file is created with `O_CREAT | O_EXCL` and unlinked at
//!   once, before the stressor reports ready: the stressor writes through its
//!   open descriptor, and the kernel frees the space when the descriptor is
//!   closed, however the stressor ends (end of input, `SIGTERM`, `SIGKILL`,
//!   the OOM killer), so no file is left behind even if the engine and the
//!   stressor are both killed. The parent also removes
//!   `DIR/.cargo-panic-io-<pid>` after the child has exited, in case the
//!   child was killed between creating and unlinking it. The file wraps
//!   around: the write offset goes back to 0 before it would pass
//!   [`IO_WRAP_BYTES`], so a stressor never holds more than 256 MiB of disk.
//! - **stop.** [`Stressor::stop`] (and drop, best-effort) closes stdin, waits
//!   up to [`STOP_GRACE`] for the stressor to exit, then sends `SIGKILL`;
//!   either way the child is reaped (no zombie) and the io file is removed.
//!
//! # Achieved
//!
//! [`Stressor::achieved`] measures the child from `/proc`, never from what it
//! was asked:
//!
//! - `spin`: cores, the rate of `utime + stime` of the whole process
//!   (`/proc/<pid>/stat`, clock ticks, usually 10 ms each) between two calls.
//!   Over one second that is within about ±0.02 cores of the truth.
//! - `hog`: bytes, the process's resident set (`/proc/<pid>/statm` resident ×
//!   page size) at the call. It includes the stressor's own few MiB of code,
//!   stack and heap, and drops if the kernel swaps hog pages out.
//! - `io`: bytes per second, the rate of `write_bytes` in `/proc/<pid>/io`
//!   (bytes the process caused to be written to storage) between two calls.
//!   On tmpfs and ramfs nothing goes to storage and `write_bytes` stays 0, so
//!   there `wchar` (bytes passed to write calls) is used instead; which one is
//!   chosen once, from `statfs` of the directory at spawn.
//!
//! Rates are `None` at the first call (there is no previous sample), and any
//! kind is `None` if the child has exited or `/proc` does not answer.

use std::collections::VecDeque;
use std::ffi::{CString, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};

use super::units::{self, Dim};

/// Block size of `io` when `--block` is not given.
pub const DEFAULT_IO_BLOCK: usize = 1 << 20;
/// Smallest `--block`.
pub const MIN_IO_BLOCK: usize = 4096;
/// Largest `--block`.
pub const MAX_IO_BLOCK: usize = 64 << 20;
/// The io file never grows past this: the write offset wraps to 0 first.
pub const IO_WRAP_BYTES: u64 = 256 << 20;
/// The io token bucket holds at most this many seconds worth of bytes (and at
/// least one block).
pub const IO_BURST_SECONDS: f64 = 0.25;
/// Memory a hog level must leave available to everything else.
pub const HOG_RESERVE_BYTES: u64 = 256 << 20;
/// A hog maps, touches and unmaps memory in steps of at most this much.
const HOG_CHUNK: usize = 16 << 20;
/// The duty-cycle period of a spin thread.
pub const SPIN_PERIOD: Duration = Duration::from_millis(10);
/// A spin stressor runs at most this many threads per online CPU.
pub const SPIN_THREADS_PER_CPU: usize = 4;
/// How long stop waits for a stressor to exit after closing its stdin.
pub const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long spawn waits for the ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long set waits for the stressor's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How many stderr lines a [`Stressor`] keeps.
const MESSAGES_KEPT: usize = 20;
/// The ready line's first words.
const READY: &str = "cargo-panic-stress ready";
/// What a usage error tells the user to write.
const USAGE: &str = "write `spin`, `hog` or `io --dir DIR [--block BYTES]`";
/// `statfs` magic numbers of filesystems without storage.
const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// What a stressor loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// CPU: level in cores.
    Spin,
    /// Memory: level in bytes.
    Hog,
    /// Disk: level in bytes per second, written to a file in `dir` in blocks
    /// of `block` bytes.
    Io { dir: PathBuf, block: usize },
}

impl Kind {
    /// An io stressor writing to `dir` with the default block size.
    pub fn io(dir: impl Into<PathBuf>) -> Kind {
        Kind::Io {
            dir: dir.into(),
            block: DEFAULT_IO_BLOCK,
        }
    }

    /// `spin`, `hog` or `io`.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Spin => "spin",
            Kind::Hog => "hog",
            Kind::Io { .. } => "io",
        }
    }

    /// The dimension of the level.
    pub fn dim(&self) -> Dim {
        match self {
            Kind::Spin => Dim::Cores,
            Kind::Hog => Dim::Bytes,
            Kind::Io { .. } => Dim::ByteRate,
        }
    }

    /// The arguments of `cargo-panic __stress` for this kind (what
    /// [`parse_args`] reads back).
    pub fn args(&self) -> Vec<OsString> {
        match self {
            Kind::Spin | Kind::Hog => vec![self.name().into()],
            Kind::Io { dir, block } => vec![
                "io".into(),
                "--dir".into(),
                dir.clone().into_os_string(),
                "--block".into(),
                block.to_string().into(),
            ],
        }
    }
}

/// The name of an io stressor's file in its directory.
pub fn io_file_name(pid: u32) -> String {
    format!(".cargo-panic-io-{pid}")
}

/// Parses the hidden subcommand's arguments (after `__stress`):
/// `spin`, `hog`, or `io --dir DIR [--block BYTES]` (`--opt=value` works too).
pub fn parse_args(args: &[String]) -> Result<Kind> {
    let Some((kind, rest)) = args.split_first() else {
        bail!("missing stressor kind: {USAGE}");
    };
    match kind.as_str() {
        "spin" | "hog" => {
            if let Some(extra) = rest.first() {
                bail!("the `{kind}` stressor takes no options, got `{extra}`: {USAGE}");
            }
            Ok(if kind == "spin" {
                Kind::Spin
            } else {
                Kind::Hog
            })
        }
        "io" => {
            let mut dir: Option<PathBuf> = None;
            let mut block: Option<usize> = None;
            let mut it = rest.iter();
            while let Some(arg) = it.next() {
                let (name, inline) = match arg.split_once('=') {
                    Some((n, v)) if n.starts_with("--") => (n, Some(v)),
                    _ => (arg.as_str(), None),
                };
                if name != "--dir" && name != "--block" {
                    bail!("unknown option `{arg}` for the `io` stressor: {USAGE}");
                }
                let value = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .map(String::as_str)
                        .ok_or_else(|| anyhow!("`{name}` needs a value: {USAGE}"))?,
                };
                if name == "--dir" {
                    if dir.is_some() {
                        bail!("`--dir` is given twice: {USAGE}");
                    }
                    if value.is_empty() {
                        bail!(
                            "`--dir` is empty: write the directory the io stressor writes its file in"
                        );
                    }
                    dir = Some(PathBuf::from(value));
                } else {
                    if block.is_some() {
                        bail!("`--block` is given twice: {USAGE}");
                    }
                    block = Some(parse_block(value).map_err(|e| anyhow!("`--block`: {e}"))?);
                }
            }
            let dir = dir.ok_or_else(|| {
                anyhow!(
                    "the `io` stressor needs `--dir DIR`, the directory to write its file in: \
                     {USAGE}"
                )
            })?;
            Ok(Kind::Io {
                dir,
                block: block.unwrap_or(DEFAULT_IO_BLOCK),
            })
        }
        other => bail!("unknown stressor kind `{other}`: {USAGE}"),
    }
}

/// An io block size: a plain number of bytes (`65536`) or a size with a unit
/// (`64KiB`, `1MiB`), between [`MIN_IO_BLOCK`] and [`MAX_IO_BLOCK`].
pub fn parse_block(text: &str) -> Result<usize, String> {
    let want = || {
        format!(
            "write a size between {} and {}, such as 1MiB or 65536",
            units::fmt_bytes(MIN_IO_BLOCK as f64),
            units::fmt_bytes(MAX_IO_BLOCK as f64)
        )
    };
    let bytes = match text.trim().parse::<u64>() {
        Ok(n) => n as f64,
        Err(_) => units::parse_as(text, Dim::Bytes).map_err(|e| format!("{e}; {}", want()))?,
    };
    if bytes.fract() != 0.0 || !(MIN_IO_BLOCK as f64..=MAX_IO_BLOCK as f64).contains(&bytes) {
        return Err(format!(
            "'{}' is not a usable block size: {}",
            text.trim(),
            want()
        ));
    }
    Ok(bytes as usize)
}

/// Parses one control line: `level <number>`, the number plain, finite and
/// not negative. The error says what to write.
pub fn parse_control(line: &str) -> Result<f64, String> {
    const WANT: &str = "write `level <number>`, e.g. `level 1.5`";
    let mut words = line.split_ascii_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("level"), Some(v), None) => {
            let x: f64 = v
                .parse()
                .map_err(|_| format!("`{v}` is not a number: {WANT}"))?;
            if !x.is_finite() || x < 0.0 {
                return Err(format!(
                    "level `{v}` is not a finite number of zero or more: {WANT}"
                ));
            }
            Ok(if x == 0.0 { 0.0 } else { x })
        }
        _ => Err(format!("bad control line `{}`: {WANT}", line.trim())),
    }
}

/// How a spin stressor runs a level: `threads` threads, each busy for the
/// fraction `duty` of every [`SPIN_PERIOD`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpinPlan {
    pub threads: usize,
    pub duty: f64,
}

/// The plan for `level` cores: `ceil(level)` threads at `level / threads`
/// each (none at 0). Refuses a level that needs more than `max_threads`.
pub fn spin_plan(level: f64, max_threads: usize) -> Result<SpinPlan, String> {
    if !level.is_finite() || level < 0.0 {
        return Err(format!(
            "spin level {level} is not a number of cores of zero or more"
        ));
    }
    if level == 0.0 {
        return Ok(SpinPlan {
            threads: 0,
            duty: 0.0,
        });
    }
    if level > max_threads as f64 {
        return Err(format!(
            "spin level {} is more than this stressor runs ({max_threads} threads, {} per \
             online CPU): use a level of at most {max_threads} cores",
            units::fmt(level, Dim::Cores),
            SPIN_THREADS_PER_CPU
        ));
    }
    let threads = level.ceil() as usize;
    Ok(SpinPlan {
        threads,
        duty: (level / threads as f64).min(1.0),
    })
}

/// The busy part of one [`SPIN_PERIOD`] at `duty`.
pub fn spin_busy(duty: f64) -> Duration {
    SPIN_PERIOD.mul_f64(duty.clamp(0.0, 1.0))
}

/// The io stressor's pacing: a token bucket filled at `rate` bytes/s, holding
/// at most `burst` bytes (the larger of one block and [`IO_BURST_SECONDS`]
/// of the rate). Time is a [`Duration`] since any fixed start, so the
/// arithmetic is pure.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Duration,
}

impl TokenBucket {
    /// A bucket for `rate` bytes/s with blocks of `block` bytes, holding one
    /// block at `now` (so the first block goes at once, and no burst).
    pub fn new(rate: f64, block: usize, now: Duration) -> TokenBucket {
        let burst = Self::burst_for(rate, block);
        TokenBucket {
            rate: rate.max(0.0),
            burst,
            tokens: block as f64,
            at: now,
        }
    }

    fn burst_for(rate: f64, block: usize) -> f64 {
        (rate.max(0.0) * IO_BURST_SECONDS).max(block as f64)
    }

    fn refill(&mut self, now: Duration) {
        if now > self.at {
            let dt = (now - self.at).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
            self.at = now;
        }
    }

    /// Changes the rate at `now`: tokens earned so far at the old rate are
    /// kept, up to the new burst.
    pub fn set_rate(&mut self, rate: f64, block: usize, now: Duration) {
        self.refill(now);
        self.rate = rate.max(0.0);
        self.burst = Self::burst_for(rate, block);
        self.tokens = self.tokens.min(self.burst);
    }

    /// How long from `now` until `n` bytes may be written: zero if they may
    /// now, None if never (rate 0 and not enough tokens).
    pub fn wait(&mut self, now: Duration, n: usize) -> Option<Duration> {
        self.refill(now);
        // Half a byte of slack: float rounding must not turn "due now" into a
        // wait of a few nanoseconds, over and over.
        let missing = n as f64 - self.tokens;
        if missing <= 0.5 {
            Some(Duration::ZERO)
        } else if self.rate > 0.0 {
            Some(Duration::from_secs_f64(missing / self.rate))
        } else {
            None
        }
    }

    /// Takes `n` bytes worth of tokens at `now` (call when [`wait`] is zero).
    ///
    /// [`wait`]: TokenBucket::wait
    pub fn take(&mut self, now: Duration, n: usize) {
        self.refill(now);
        self.tokens = (self.tokens - n as f64).max(0.0);
    }

    /// The tokens (bytes) in the bucket as of the last call.
    pub fn tokens(&self) -> f64 {
        self.tokens
    }
}

// ---------------------------------------------------------------------------
// Child side
// ---------------------------------------------------------------------------

/// The stressor itself: called by the hidden `__stress` subcommand with the
/// kind from [`parse_args`] and the process's stdin. Sets the kind up, writes
/// the ready line on stdout, then applies `level` lines until end of input
/// (see the module documentation). Returns Ok at end of input, with
/// everything released; the caller then exits with status 0 (on an error:
/// prints it and exits with status 1).
pub fn serve(kind: Kind, control: impl BufRead) -> Result<()> {
    serve_to(kind, control, io::stdout())
}

/// [`serve`] with the replies going to `reply`.
fn serve_to(kind: Kind, control: impl BufRead, mut reply: impl Write) -> Result<()> {
    let pdeathsig = current_pdeathsig();
    // SAFETY: gettid and getpid have no preconditions.
    let main = unsafe { libc::gettid() == libc::getpid() };
    let mut worker = Worker::start(&kind)?;
    writeln!(
        reply,
        "{READY} pid={} pdeathsig={pdeathsig} thread={}",
        std::process::id(),
        if main { "main" } else { "other" }
    )
    .and_then(|()| reply.flush())
    .context("writing the ready line")?;
    for line in control.lines() {
        let line = line.context("reading a control line")?;
        let answer = parse_control(&line).and_then(|level| worker.set(level));
        match answer {
            Ok(()) => writeln!(reply, "ok"),
            Err(e) => writeln!(reply, "err {}", e.replace('\n', " ")),
        }
        .and_then(|()| reply.flush())
        .context("answering a control line")?;
    }
    worker.stop();
    Ok(())
}

/// The parent-death signal of the calling thread (0: none, -1: unknown).
fn current_pdeathsig() -> i32 {
    let mut sig: libc::c_int = 0;
    // SAFETY: PR_GET_PDEATHSIG stores one c_int through the pointer, which
    // points to a live local.
    let r = unsafe { libc::prctl(libc::PR_GET_PDEATHSIG, &mut sig as *mut libc::c_int) };
    if r == 0 { sig } else { -1 }
}

/// A level shared with a worker thread (hog, io), with a generation number
/// so the worker sees every set, and the shutdown flag.
struct Target {
    state: Mutex<TargetState>,
    cv: Condvar,
}

#[derive(Default)]
struct TargetState {
    level: f64,
    generation: u64,
    shutdown: bool,
}

impl Target {
    fn new() -> Arc<Target> {
        Arc::new(Target {
            state: Mutex::new(TargetState::default()),
            cv: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, TargetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, level: f64) {
        let mut s = self.lock();
        s.level = level;
        s.generation += 1;
        self.cv.notify_all();
    }

    fn shutdown(&self) {
        self.lock().shutdown = true;
        self.cv.notify_all();
    }
}

/// What does the work of a kind in the child.
enum Worker {
    Spin(Spinner),
    /// hog and io: one thread moving towards the shared target.
    Threaded {
        target: Arc<Target>,
        thread: Option<JoinHandle<()>>,
    },
}

impl Worker {
    fn start(kind: &Kind) -> Result<Worker> {
        let target = Target::new();
        let t = target.clone();
        let thread = match kind {
            Kind::Spin => {
                return Ok(Worker::Spin(Spinner::new(
                    online_cpus() * SPIN_THREADS_PER_CPU,
                )));
            }
            Kind::Hog => {
                fs::write("/proc/self/oom_score_adj", "1000").context(
                    "making the hog the OOM killer's first choice (writing 1000 to \
                     /proc/self/oom_score_adj); a hog does not run without it",
                )?;
                thread::Builder::new()
                    .name("hog".into())
                    .spawn(move || hog_worker(&t))
            }
            Kind::Io { dir, block } => {
                if !(MIN_IO_BLOCK..=MAX_IO_BLOCK).contains(block) {
                    bail!(
                        "io block size {block} is out of range: use between {MIN_IO_BLOCK} and \
                         {MAX_IO_BLOCK} bytes"
                    );
                }
                let file = open_io_file(dir)?;
                let (dir, block) = (dir.clone(), *block);
                thread::Builder::new()
                    .name("io".into())
                    .spawn(move || io_worker(&file, &dir, block, &t))
            }
        }
        .context("starting the stressor's worker thread")?;
        Ok(Worker::Threaded {
            target,
            thread: Some(thread),
        })
    }

    fn set(&mut self, level: f64) -> Result<(), String> {
        match self {
            Worker::Spin(s) => s.set(level),
            Worker::Threaded { target, .. } => {
                target.set(level);
                Ok(())
            }
        }
    }

    fn stop(&mut self) {
        match self {
            Worker::Spin(s) => s.stop_all(),
            Worker::Threaded { target, thread } => {
                target.shutdown();
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(1)
}

/// The spin threads: each has its own stop flag; all share the duty.
struct Spinner {
    duty: Arc<AtomicU64>,
    threads: Vec<(Arc<AtomicBool>, JoinHandle<()>)>,
    max_threads: usize,
}

impl Spinner {
    fn new(max_threads: usize) -> Spinner {
        Spinner {
            duty: Arc::new(AtomicU64::new(0f64.to_bits())),
            threads: Vec::new(),
            max_threads,
        }
    }

    /// Applies a level: returns once threads are started or retired.
    fn set(&mut self, level: f64) -> Result<(), String> {
        let plan = spin_plan(level, self.max_threads)?;
        self.duty.store(plan.duty.to_bits(), Ordering::Relaxed);
        if self.threads.len() > plan.threads {
            let retired = self.threads.split_off(plan.threads);
            for (stop, _) in &retired {
                stop.store(true, Ordering::Relaxed);
            }
            for (_, t) in retired {
                let _ = t.join();
            }
        }
        while self.threads.len() < plan.threads {
            let stop = Arc::new(AtomicBool::new(false));
            let (s, d) = (stop.clone(), self.duty.clone());
            let t = thread::Builder::new()
                .name("spin".into())
                .spawn(move || spin_loop(&d, &s))
                .map_err(|e| {
                    format!(
                        "cannot start spin thread {} of {}: {e}",
                        self.threads.len() + 1,
                        plan.threads
                    )
                })?;
            self.threads.push((stop, t));
        }
        Ok(())
    }

    fn stop_all(&mut self) {
        let _ = self.set(0.0);
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// One spin thread. In each period it spins until it has used `duty` of
/// the period in CPU time (its thread CPU clock) or the period is over (the
/// monotonic clock), then sleeps for the rest of the period. Counting CPU
/// time rather than wall time means that time spent waiting for a CPU does
/// not count as load given: on a busy machine the thread keeps trying for
/// its share until the period ends. It never uses more than `duty` of a
/// period, and a period that starts late (the thread was preempted) starts
/// now: there is no catching up across periods.
fn spin_loop(duty: &AtomicU64, stop: &AtomicBool) {
    let mut start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let busy = spin_busy(f64::from_bits(duty.load(Ordering::Relaxed)));
        let end = start + SPIN_PERIOD;
        if let Some(cpu0) = thread_cpu_time() {
            loop {
                std::hint::spin_loop();
                let used = thread_cpu_time().map_or(busy, |t| t.saturating_sub(cpu0));
                if used >= busy || Instant::now() >= end {
                    break;
                }
            }
        } else {
            // No thread CPU clock: busy for `duty` of the period in wall time.
            while Instant::now() < start + busy {
                std::hint::spin_loop();
            }
        }
        let now = Instant::now();
        start = if end > now {
            thread::sleep(end - now);
            end
        } else {
            now
        };
    }
}

/// The CPU time the calling thread has used.
fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a pointer to a live
    // local.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (r == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// The hog's memory: mappings of at most [`HOG_CHUNK`] bytes, all touched.
struct Hog {
    chunks: Vec<(*mut u8, usize)>,
    held: usize,
    page: usize,
}

impl Hog {
    /// Maps and touches `len` more bytes (a multiple of the page size).
    fn grow(&mut self, len: usize) -> io::Result<()> {
        // SAFETY: a new private anonymous mapping at an address the kernel
        // chooses: no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let p = p.cast::<u8>();
        for off in (0..len).step_by(self.page) {
            // SAFETY: off < len: the byte is inside the writable mapping just
            // created, which nothing else uses.
            unsafe { p.add(off).write_volatile(1) };
        }
        self.chunks.push((p, len));
        self.held += len;
        Ok(())
    }

    /// Unmaps `len` bytes (a multiple of the page size, at most one chunk)
    /// from the end.
    fn shrink(&mut self, len: usize) {
        let Some(&(p, chunk)) = self.chunks.last() else {
            return;
        };
        let len = len.min(chunk);
        // SAFETY: [p + chunk - len, p + chunk) is the page-aligned end of a
        // mapping this hog made and no longer uses.
        unsafe { libc::munmap(p.add(chunk - len).cast(), len) };
        if len == chunk {
            self.chunks.pop();
        } else if let Some(last) = self.chunks.last_mut() {
            last.1 -= len;
        }
        self.held -= len;
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        for &(p, len) in &self.chunks {
            // SAFETY: a mapping this hog made; nothing refers to it any more.
            unsafe { libc::munmap(p.cast(), len) };
        }
    }
}

/// Bytes of a hog level: rounded up to whole pages, saturating.
fn hog_bytes(level: f64, page: usize) -> usize {
    let max = usize::MAX / 2 / page * page;
    if level >= max as f64 {
        return max;
    }
    (level.ceil() as usize).div_ceil(page) * page
}

fn hog_worker(target: &Target) {
    let mut hog = Hog {
        chunks: Vec::new(),
        held: 0,
        page: crate::procfs::page_size() as usize,
    };
    // The generation whose level could not be reached: wait for the next.
    let mut failed: Option<u64> = None;
    loop {
        let (want, generation) = {
            let mut s = target.lock();
            loop {
                if s.shutdown {
                    return;
                }
                let want = hog_bytes(s.level, hog.page);
                if want != hog.held && failed != Some(s.generation) {
                    break (want, s.generation);
                }
                s = target.cv.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        };
        if want > hog.held {
            let step = (want - hog.held).min(HOG_CHUNK);
            if let Err(e) = hog.grow(step) {
                eprintln!(
                    "hog: cannot map {} more (holding {} of the {} asked): {e}; holding what \
                     it has until the level changes",
                    units::fmt_bytes(step as f64),
                    units::fmt_bytes(hog.held as f64),
                    units::fmt_bytes(want as f64)
                );
                failed = Some(generation);
            }
        } else {
            hog.shrink((hog.held - want).min(HOG_CHUNK));
        }
    }
}

/// Creates the io file (`O_CREAT | O_EXCL`) and unlinks it at once: the
/// returned descriptor is all that is left of it.
fn open_io_file(dir: &Path) -> Result<File> {
    let path = dir.join(io_file_name(std::process::id()));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| {
            format!(
                "creating the io stressor's file {} (the directory must exist and be \
                 writable; a file of that name is a leftover: remove it)",
                path.display()
            )
        })?;
    fs::remove_file(&path)
        .with_context(|| format!("unlinking the io stressor's file {}", path.display()))?;
    Ok(file)
}

/// A block of pseudo-random bytes (splitmix64: fixed content, incompressible).
fn io_block(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = Vec::with_capacity(len + 8);
    while buf.len() < len {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        buf.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    buf.truncate(len);
    buf
}

fn io_worker(file: &File, dir: &Path, block: usize, target: &Target) {
    let start = Instant::now();
    let mut buf = io_block(block);
    let mut bucket = TokenBucket::new(0.0, block, Duration::ZERO);
    let mut seen: u64 = 0;
    let mut pos: u64 = 0;
    // Where the offset wraps: IO_WRAP_BYTES, or less after ENOSPC.
    let mut wrap: u64 = IO_WRAP_BYTES;
    let mut seq: u64 = 0;
    let mut reported: Vec<Option<i32>> = Vec::new();
    loop {
        {
            let mut s = target.lock();
            loop {
                if s.shutdown {
                    return;
                }
                let now = start.elapsed();
                if s.generation != seen {
                    bucket.set_rate(s.level, block, now);
                    seen = s.generation;
                    wrap = IO_WRAP_BYTES;
                }
                match bucket.wait(now, block) {
                    Some(d) if d.is_zero() => {
                        bucket.take(now, block);
                        break;
                    }
                    Some(d) => {
                        s = target
                            .cv
                            .wait_timeout(s, d)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                    None => s = target.cv.wait(s).unwrap_or_else(|e| e.into_inner()),
                }
            }
        }
        seq += 1;
        for page in buf.chunks_mut(4096) {
            let n = page.len().min(8);
            page[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
        }
        match file.write_all_at(&buf, pos).and_then(|()| file.sync_data()) {
            Ok(()) => {
                pos += block as u64;
                if pos + block as u64 > wrap {
                    pos = 0;
                }
            }
            Err(e) => {
                let code = e.raw_os_error();
                if !reported.contains(&code) {
                    reported.push(code);
                    eprintln!(
                        "io: writing to its file in {}: {e}; still trying at the requested rate \
                         (this error is reported once)",
                        dir.display()
                    );
                }
                if matches!(code, Some(libc::ENOSPC | libc::EDQUOT)) {
                    // Rewrite what the file already has, which needs no
                    // new space.
                    if pos > 0 {
                        wrap = pos;
                    }
                    pos = 0;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Parent side
// ---------------------------------------------------------------------------

/// The stderr lines a stressor wrote, the last [`MESSAGES_KEPT`] of them, and
/// whether its stderr is closed.
#[derive(Default)]
struct Messages {
    state: Mutex<(VecDeque<String>, bool)>,
    cv: Condvar,
}

impl Messages {
    fn lock(&self) -> MutexGuard<'_, (VecDeque<String>, bool)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits up to `timeout` for the end of stderr.
    fn wait_closed(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        while !s.1 {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            s = self
                .cv
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// `"; its last messages: a | b"`, or nothing.
    fn suffix(&self) -> String {
        let s = self.lock();
        if s.0.is_empty() {
            String::new()
        } else {
            let v: Vec<&str> = s.0.iter().map(String::as_str).collect();
            format!("; its last messages: {}", v.join(" | "))
        }
    }
}

/// Which `/proc/<pid>/io` counter measures an io stressor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IoCounter {
    WriteBytes,
    Wchar,
}

impl IoCounter {
    fn key(self) -> &'static str {
        match self {
            IoCounter::WriteBytes => "write_bytes",
            IoCounter::Wchar => "wchar",
        }
    }

    /// `wchar` on filesystems without storage, else `write_bytes`.
    fn for_dir(dir: &Path) -> IoCounter {
        let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
            return IoCounter::WriteBytes;
        };
        // SAFETY: an all-zero statfs is a valid value of this plain C struct.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: a NUL-terminated path and a pointer to a live statfs.
        let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
        #[allow(clippy::unnecessary_cast)]
        let magic = st.f_type as i64;
        if r == 0 && (magic == TMPFS_MAGIC || magic == RAMFS_MAGIC) {
            IoCounter::Wchar
        } else {
            IoCounter::WriteBytes
        }
    }
}

/// A running stressor, seen from the engine. Stop it with [`Stressor::stop`];
/// dropping it does the same, best-effort and silently.
pub struct Stressor {
    kind: Kind,
    child: Child,
    stdin: Option<ChildStdin>,
    replies: mpsc::Receiver<String>,
    messages: Arc<Messages>,
    pdeathsig: Option<i32>,
    requested: f64,
    io_counter: IoCounter,
    last_sample: Option<(Instant, f64)>,
    status: Option<ExitStatus>,
    /// Whether this side sent SIGKILL.
    killed: bool,
    stopped: bool,
}

impl Stressor {
    /// Starts `exe __stress <kind args>`. `configure` may change the command
    /// before the spawn, e.g. add a `pre_exec` hook that joins the run's
    /// stress cgroup. See [`Stressor::spawn_with`].
    pub fn spawn(
        exe: &Path,
        kind: Kind,
        configure: impl FnOnce(&mut Command) -> Result<()>,
    ) -> Result<Stressor> {
        let mut cmd = Command::new(exe);
        cmd.arg("__stress").args(kind.args());
        configure(&mut cmd).context("preparing the stressor's command")?;
        Stressor::spawn_with(cmd, kind)
    }

    /// Starts `cmd`, which must run [`serve`] for `kind` in the process it
    /// starts (no wrapper process). Sets stdin, stdout and stderr to pipes
    /// (whatever `cmd` had), puts the child in its own process group, sets
    /// its parent-death signal to `SIGKILL` (see the module documentation:
    /// call this from the thread that outlives the stressor, normally the
    /// main thread), then waits up to 10 s for the ready line. On any failure the child is killed and
    /// reaped before the error is returned.
    pub fn spawn_with(mut cmd: Command, kind: Kind) -> Result<Stressor> {
        let io_counter = match &kind {
            Kind::Io { dir, .. } => IoCounter::for_dir(dir),
            _ => IoCounter::WriteBytes,
        };
        let parent = std::process::id() as libc::pid_t;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: the hook only makes two system calls (prctl, getppid) and
        // builds an io::Error from an errno, which does not allocate: it is
        // async-signal-safe, as the code between fork and exec must be.
        unsafe { cmd.pre_exec(move || set_pdeathsig(parent)) };
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting the {} stressor ({cmd:?})", kind.name()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let (tx, replies) = mpsc::channel();
        let messages = Arc::new(Messages::default());
        let mut s = Stressor {
            kind,
            child,
            stdin,
            replies,
            messages: messages.clone(),
            pdeathsig: None,
            requested: 0.0,
            io_counter,
            last_sample: None,
            status: None,
            killed: false,
            stopped: false,
        };
        // From here on, an early return drops `s`, which kills and reaps.
        let prefix = format!("stressor {}[{}]", s.kind.name(), s.pid());
        if let Some(out) = stdout {
            thread::Builder::new()
                .name("stress-stdout".into())
                .spawn(move || {
                    for line in lossy_lines(out) {
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                })
                .context("starting the thread that reads the stressor's answers")?;
        }
        if let Some(err) = stderr {
            thread::Builder::new()
                .name("stress-stderr".into())
                .spawn(move || {
                    for line in lossy_lines(err) {
                        eprintln!("{prefix}: {line}");
                        let mut m = messages.lock();
                        if m.0.len() == MESSAGES_KEPT {
                            m.0.pop_front();
                        }
                        m.0.push_back(line);
                    }
                    messages.lock().1 = true;
                    messages.cv.notify_all();
                })
                .context("starting the thread that reads the stressor's messages")?;
        }
        s.handshake()?;
        Ok(s)
    }

    /// Waits for the ready line and checks it.
    fn handshake(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let ready = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(line) => {
                    if let Some(i) = line.find(READY) {
                        break line[i + READY.len()..].to_string();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!(
                        "the {} stressor (pid {}) did not report ready within {} s{}",
                        self.kind.name(),
                        self.pid(),
                        READY_TIMEOUT.as_secs(),
                        self.messages.suffix()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.death("before it was ready"));
                }
            }
        };
        let field = |key: &str| -> Option<i64> {
            ready
                .split_ascii_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        };
        let (pid, sig) = (field("pid"), field("pdeathsig"));
        if pid != Some(i64::from(self.pid())) {
            bail!(
                "the {} stressor reported pid {pid:?} but the process started is {}: the \
                 stressor command must exec the stressor itself, not a wrapper",
                self.kind.name(),
                self.pid()
            );
        }
        let on_main = ready.split_ascii_whitespace().any(|w| w == "thread=main");
        if on_main {
            if sig != Some(i64::from(libc::SIGKILL)) {
                bail!(
                    "the {} stressor (pid {}) runs with parent-death signal {}, not SIGKILL, so \
                     it could outlive the engine; refusing it",
                    self.kind.name(),
                    self.pid(),
                    sig.map_or("unknown".to_string(), |s| s.to_string())
                );
            }
            self.pdeathsig = Some(libc::SIGKILL);
        }
        Ok(())
    }

    /// The stressor's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stressor's kind.
    pub fn kind(&self) -> &Kind {
        &self.kind
    }

    /// The parent-death signal of the stressor's main thread, as
    /// `prctl(PR_GET_PDEATHSIG)` read it in the stressor: `SIGKILL` (spawn
    /// refuses anything else), or None if [`serve`] does not run on the
    /// stressor's main thread, which alone can read it (e.g. a test harness
    /// that runs it in a thread).
    pub fn pdeathsig(&self) -> Option<i32> {
        self.pdeathsig
    }

    /// The last lines the stressor wrote on stderr (at most 20).
    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().0.iter().cloned().collect()
    }

    /// The last level the stressor accepted (0 before any).
    pub fn requested(&self) -> f64 {
        self.requested
    }

    /// The exit status, if the stressor has exited (it is then reaped).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Sets the level (cores, bytes or bytes/s by kind) and waits for the
    /// stressor to take it. Errors, leaving the level as it was: a level that
    /// is not a finite number of zero or more, a hog level above what memory
    /// allows (module documentation), a level the stressor refuses (e.g. a
    /// spin level above its thread limit), and a stressor that died (saying
    /// how) or does not answer within 5 s.
    pub fn set(&mut self, level: f64) -> Result<()> {
        let name = self.kind.name();
        let shown = units::fmt(level, self.kind.dim());
        if !level.is_finite() || level < 0.0 {
            bail!("{name} stressor level {level} is not a finite number of zero or more");
        }
        if self.try_wait().is_some() {
            return Err(self.death(&format!("before level {shown} could be set")));
        }
        if self.kind == Kind::Hog {
            self.check_memory(level)?;
        }
        let Some(stdin) = self.stdin.as_mut() else {
            bail!("the {name} stressor is stopped");
        };
        if let Err(e) = stdin
            .write_all(format!("level {level}\n").as_bytes())
            .and_then(|()| stdin.flush())
        {
            return Err(self
                .death(&format!("before level {shown} could be set"))
                .context(format!("writing to its stdin: {e}")));
        }
        match self.replies.recv_timeout(REPLY_TIMEOUT) {
            Ok(r) if r == "ok" => {
                self.requested = level;
                Ok(())
            }
            Ok(r) => match r.strip_prefix("err ") {
                Some(msg) => bail!(
                    "the {name} stressor (pid {}) refused level {shown}: {msg}",
                    self.pid()
                ),
                None => bail!(
                    "the {name} stressor (pid {}) answered {r:?} to level {shown}, not `ok` or \
                     `err ...`",
                    self.pid()
                ),
            },
            Err(RecvTimeoutError::Timeout) => bail!(
                "the {name} stressor (pid {}) did not answer level {shown} within {} s",
                self.pid(),
                REPLY_TIMEOUT.as_secs()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                Err(self.death(&format!("while level {shown} was being set")))
            }
        }
    }

    /// Refuses a hog level above what it holds + MemAvailable − the reserve.
    fn check_memory(&mut self, level: f64) -> Result<()> {
        let meminfo = fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
        let avail = parse_kv(&meminfo, "MemAvailable")
            .context("/proc/meminfo has no MemAvailable line")?
            .saturating_mul(1024);
        let held = resident_bytes(self.pid()).unwrap_or(0);
        let limit = (avail + held).saturating_sub(HOG_RESERVE_BYTES);
        if level > limit as f64 {
            bail!(
                "hog level {} refused: only {} is available to it now (MemAvailable {} + {} the \
                 hog holds − {} kept free for everything else); use a lower level",
                units::fmt_bytes(level),
                units::fmt_bytes(limit as f64),
                units::fmt_bytes(avail as f64),
                units::fmt_bytes(held as f64),
                units::fmt_bytes(HOG_RESERVE_BYTES as f64)
            );
        }
        Ok(())
    }

    /// What the stressor achieves, measured from `/proc` (module
    /// documentation, "Achieved"): cores or bytes/s since the previous call
    /// (None at the first call), or resident bytes now. None if the stressor
    /// exited or `/proc` does not answer.
    pub fn achieved(&mut self) -> Option<f64> {
        if self.try_wait().is_some() {
            return None;
        }
        let pid = self.pid();
        let value = match &self.kind {
            Kind::Hog => return resident_bytes(pid).map(|b| b as f64),
            Kind::Spin => {
                let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                crate::procfs::stat_cpu_ticks(&stat)? as f64 / crate::procfs::ticks_per_s()
            }
            Kind::Io { .. } => {
                let text = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
                parse_kv(&text, self.io_counter.key())? as f64
            }
        };
        let now = Instant::now();
        let (t0, v0) = self.last_sample.replace((now, value))?;
        let dt = now.duration_since(t0).as_secs_f64();
        (dt > 0.0).then(|| ((value - v0) / dt).max(0.0))
    }

    /// Stops the stressor: closes its stdin, waits up to 2 s for it to exit,
    /// then kills it with SIGKILL; reaps it and removes the io file. Errors
    /// (after all of that) if it had to be killed, or had died or exited with
    /// a failure before, saying how.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        self.stopped = true;
        drop(self.stdin.take());
        let mut status = self.wait_exit(STOP_GRACE);
        let forced = status.is_none();
        if forced {
            self.killed = true;
            let _ = self.child.kill();
            status = self.child.wait().ok();
            self.status = status;
        }
        let removed = self.remove_io_file();
        self.messages.wait_closed(Duration::from_millis(500));
        if forced {
            bail!(
                "the {} stressor (pid {}) did not exit within {} s of the end of its input and \
                 was killed{}",
                self.kind.name(),
                self.pid(),
                STOP_GRACE.as_secs(),
                self.messages.suffix()
            );
        }
        match status {
            Some(s) if s.success() => removed,
            Some(_) => Err(self.death("before it was stopped")),
            None => bail!(
                "could not wait for the {} stressor (pid {})",
                self.kind.name(),
                self.pid()
            ),
        }
    }

    /// Polls for the exit status for up to `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Removes `DIR/.cargo-panic-io-<pid>` if it is there (the child unlinks
    /// it itself right after creating it; this covers a kill in between).
    /// Only once the child has exited, so a live child's name is never
    /// touched.
    fn remove_io_file(&mut self) -> Result<()> {
        let Kind::Io { dir, .. } = &self.kind else {
            return Ok(());
        };
        if self.status.is_none() {
            return Ok(());
        }
        let path = dir.join(io_file_name(self.child.id()));
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(anyhow!(e).context(format!(
                "removing the io stressor's file {}",
                path.display()
            ))),
        }
    }

    /// An error saying how the stressor ended (waiting up to 2 s for it).
    fn death(&mut self, when: &str) -> anyhow::Error {
        let status = self.wait_exit(Duration::from_secs(2));
        let _ = self.remove_io_file();
        self.messages.wait_closed(Duration::from_millis(500));
        let how = match status {
            Some(s) => describe_status(s),
            None => "closed its output but has not exited".to_string(),
        };
        let oom = self.kind == Kind::Hog
            && !self.killed
            && status.and_then(|s| s.signal()) == Some(libc::SIGKILL);
        let hint = if oom {
            " (a hog has oom_score_adj 1000, so this is most likely the kernel's OOM killer, \
             or the memory limit of its cgroup: see `dmesg`)"
        } else {
            ""
        };
        anyhow!(
            "the {} stressor (pid {}) {how} {when}{hint}{}",
            self.kind.name(),
            self.pid(),
            self.messages.suffix()
        )
    }
}

impl Drop for Stressor {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.shutdown();
        }
    }
}

impl std::fmt::Debug for Stressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stressor")
            .field("kind", &self.kind)
            .field("pid", &self.child.id())
            .field("requested", &self.requested)
            .finish_non_exhaustive()
    }
}

/// The `pre_exec` hook: parent-death signal SIGKILL, and failure if the
/// parent already died (the child was then reparented). Async-signal-safe.
fn set_pdeathsig(parent: libc::pid_t) -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG, signal) takes plain integers.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != parent {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

/// Lines of a pipe, invalid UTF-8 replaced, until end of file or an error.
fn lossy_lines(r: impl Read) -> impl Iterator<Item = String> {
    BufReader::new(r)
        .split(b'\n')
        .map_while(Result::ok)
        .map(|l| {
            let l = String::from_utf8_lossy(&l);
            l.strip_suffix('\r').unwrap_or(&l).to_string()
        })
}

/// "exited with status 1", "was killed by signal 9 (SIGKILL)".
pub fn describe_status(s: ExitStatus) -> String {
    if let Some(code) = s.code() {
        return format!("exited with status {code}");
    }
    match s.signal() {
        Some(sig) => {
            let name = match sig {
                libc::SIGKILL => " (SIGKILL)",
                libc::SIGTERM => " (SIGTERM)",
                libc::SIGINT => " (SIGINT)",
                libc::SIGHUP => " (SIGHUP)",
                libc::SIGQUIT => " (SIGQUIT)",
                libc::SIGSEGV => " (SIGSEGV)",
                libc::SIGBUS => " (SIGBUS)",
                libc::SIGABRT => " (SIGABRT)",
                libc::SIGILL => " (SIGILL)",
                libc::SIGFPE => " (SIGFPE)",
                libc::SIGPIPE => " (SIGPIPE)",
                libc::SIGXFSZ => " (SIGXFSZ)",
                _ => "",
            };
            format!("was killed by signal {sig}{name}")
        }
        None => format!("ended ({s})"),
    }
}

/// The resident set of a process in bytes, from `/proc/<pid>/statm`.
fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    Some(crate::procfs::statm_resident_pages(&statm)? * crate::procfs::page_size())
}

/// The number after `key:` in a `key: value [unit]` file (`/proc/meminfo`
/// in kB, `/proc/<pid>/io` in bytes).
fn parse_kv(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim() != key {
            return None;
        }
        v.split_ascii_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn control_lines() {
        assert_eq!(parse_control("level 1.5"), Ok(1.5));
        assert_eq!(parse_control("  level   0  "), Ok(0.0));
        assert_eq!(parse_control("level 67108864"), Ok(67108864.0));
        assert_eq!(parse_control("level 1e3"), Ok(1000.0));
        assert_eq!(
            parse_control("level -0").map(f64::to_bits),
            Ok(0f64.to_bits())
        );
        for bad in [
            "",
            "level",
            "level 1 2",
            "levl 1",
            "LEVEL 1",
            "1.5",
            "level 1.5x",
        ] {
            let e = parse_control(bad).unwrap_err();
            assert!(e.contains("write `level <number>`"), "{bad:?}: {e}");
        }
        for bad in ["level -1", "level -0.5", "level inf", "level NaN"] {
            let e = parse_control(bad).unwrap_err();
            assert!(e.contains("zero or more"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_control_line_a_parent_writes_parses_back() {
        for level in [0.0, 0.5, 1.5, 3.0, 67108864.0, 8.0 * 1048576.0, 1e-9, 1e21] {
            assert_eq!(parse_control(&format!("level {level}")), Ok(level));
        }
    }

    #[test]
    fn spin_plans() {
        let plan = |l| spin_plan(l, 8).unwrap();
        for (level, threads, duty) in [
            (0.0, 0, 0.0),
            (0.5, 1, 0.5),
            (1.0, 1, 1.0),
            (1.5, 2, 0.75),
            (2.0, 2, 1.0),
            (2.4, 3, 0.8),
            (8.0, 8, 1.0),
        ] {
            let p = plan(level);
            assert_eq!(p.threads, threads, "{level}: {p:?}");
            assert!((p.duty - duty).abs() < 1e-12, "{level}: {p:?}");
        }
        let p = plan(0.001);
        assert_eq!(p.threads, 1);
        assert!((p.duty - 0.001).abs() < 1e-12);
        // threads × duty is the level.
        for l in [0.3, 1.7, 4.2, 7.99] {
            let p = plan(l);
            assert!((p.threads as f64 * p.duty - l).abs() < 1e-9, "{l}: {p:?}");
        }
        let e = spin_plan(8.5, 8).unwrap_err();
        assert!(e.contains("at most 8 cores"), "{e}");
        assert!(spin_plan(-1.0, 8).is_err());
        assert!(spin_plan(f64::NAN, 8).is_err());
        assert_eq!(spin_busy(0.5), Duration::from_millis(5));
        assert_eq!(spin_busy(1.0), SPIN_PERIOD);
        assert_eq!(spin_busy(2.0), SPIN_PERIOD);
        assert_eq!(spin_busy(0.0), Duration::ZERO);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn token_bucket_paces_blocks_at_the_rate() {
        // 8 MiB/s in 1 MiB blocks: the first block at once, then one per 125 ms.
        let mut b = TokenBucket::new(8.0 * MIB as f64, MIB, ms(0));
        assert_eq!(b.wait(ms(0), MIB), Some(Duration::ZERO));
        b.take(ms(0), MIB);
        assert_eq!(b.wait(ms(0), MIB), Some(ms(125)));
        assert_eq!(b.wait(ms(100), MIB), Some(ms(25)));
        assert_eq!(b.wait(ms(125), MIB), Some(Duration::ZERO));
        // An instant disk over 10 s: 1 + 80 blocks.
        let mut b = TokenBucket::new(8.0 * MIB as f64, MIB, ms(0));
        let (mut t, mut blocks) = (Duration::ZERO, 0);
        loop {
            t += b.wait(t, MIB).unwrap();
            if t > Duration::from_secs(10) {
                break;
            }
            b.take(t, MIB);
            blocks += 1;
        }
        assert_eq!(blocks, 81);
    }

    #[test]
    fn token_bucket_runs_flat_out_on_a_slow_disk_without_a_backlog() {
        // The disk takes 250 ms per 1 MiB block (4 MiB/s); 8 MiB/s is asked:
        // it never waits, and tokens stay capped at the burst (2 MiB).
        let mut b = TokenBucket::new(8.0 * MIB as f64, MIB, ms(0));
        let mut t = Duration::ZERO;
        for _ in 0..40 {
            assert_eq!(b.wait(t, MIB), Some(Duration::ZERO));
            b.take(t, MIB);
            t += ms(250);
        }
        assert!(b.wait(t, 0).is_some());
        assert!(b.tokens() <= 2.0 * MIB as f64);
        // Then the disk becomes instant and the rate 1 MiB/s: at most the
        // burst (one block: 1 MiB/s × 0.25 s < 1 block) plus the rate.
        b.set_rate(MIB as f64, MIB, t);
        let end = t + Duration::from_secs(1);
        let mut blocks = 0;
        loop {
            t += b.wait(t, MIB).unwrap();
            if t > end {
                break;
            }
            b.take(t, MIB);
            blocks += 1;
        }
        assert!(
            blocks <= 2,
            "{blocks} blocks in the first second after slowing down"
        );
    }

    #[test]
    fn token_bucket_at_rate_zero_waits_for_ever_and_resumes() {
        let mut b = TokenBucket::new(0.0, MIB, ms(0));
        b.take(ms(0), MIB);
        assert_eq!(b.wait(ms(5000), MIB), None);
        b.set_rate(4.0 * MIB as f64, MIB, ms(5000));
        // No tokens were earned while idle.
        assert_eq!(b.wait(ms(5000), MIB), Some(ms(250)));
        assert_eq!(b.wait(ms(5250), MIB), Some(Duration::ZERO));
        // A bigger rate gets a bigger burst: 64 MiB/s × 0.25 s = 16 MiB.
        let mut b = TokenBucket::new(64.0 * MIB as f64, MIB, ms(0));
        b.wait(Duration::from_secs(10), MIB);
        assert_eq!(b.tokens(), 16.0 * MIB as f64);
    }

    #[test]
    fn args_round_trip_and_errors() {
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_args(&s(&["spin"])).unwrap(), Kind::Spin);
        assert_eq!(parse_args(&s(&["hog"])).unwrap(), Kind::Hog);
        assert_eq!(
            parse_args(&s(&["io", "--dir", "/d"])).unwrap(),
            Kind::io("/d")
        );
        assert_eq!(
            parse_args(&s(&["io", "--block=64KiB", "--dir=/d"])).unwrap(),
            Kind::Io {
                dir: "/d".into(),
                block: 65536
            }
        );
        for kind in [
            Kind::Spin,
            Kind::Hog,
            Kind::Io {
                dir: "/tmp/x y".into(),
                block: 8192,
            },
        ] {
            let args: Vec<String> = kind
                .args()
                .iter()
                .map(|a| a.to_str().unwrap().to_string())
                .collect();
            assert_eq!(parse_args(&args).unwrap(), kind);
        }
        let err = |v: &[&str]| format!("{:#}", parse_args(&s(v)).unwrap_err());
        assert!(err(&[]).contains("write `spin`"), "{}", err(&[]));
        assert!(err(&["spin", "-x"]).contains("takes no options"));
        assert!(err(&["io", "--dir", "/d", "--dir", "/e"]).contains("twice"));
        assert!(err(&["io", "--dir"]).contains("needs a value"));
        assert!(err(&["io", "--dir", ""]).contains("empty"));
        assert!(err(&["io", "--dir", "/d", "--block", "1"]).contains("between 4KiB and 64MiB"));
        assert!(err(&["io", "--dir", "/d", "--block", "1GiB"]).contains("between"));
        assert!(err(&["io", "--dir", "/d", "--block", "1s"]).contains("between"));
        assert!(err(&["io", "--dir", "/d", "--speed", "1"]).contains("unknown option"));
    }

    #[test]
    fn block_sizes() {
        assert_eq!(parse_block("65536"), Ok(65536));
        assert_eq!(parse_block("1MiB"), Ok(MIB));
        assert_eq!(parse_block("4KiB"), Ok(4096));
        assert_eq!(parse_block("64MiB"), Ok(64 * MIB));
        assert!(parse_block("4095").is_err());
        assert!(parse_block("65MiB").is_err());
        assert!(parse_block("1.5KB").is_err());
        assert!(parse_block("x").is_err());
    }

    #[test]
    fn proc_parsers() {
        let stat = "1234 (a b) c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 3 0 \
                    12345 1000000 200 18446744073709551615";
        assert_eq!(crate::procfs::stat_cpu_ticks(stat), Some(281));
        assert_eq!(crate::procfs::stat_cpu_ticks("garbage"), None);
        assert_eq!(
            crate::procfs::statm_resident_pages("4000 1024 300 10 0 500 0\n"),
            Some(1024)
        );
        let meminfo = "MemTotal:       24684096 kB\nMemFree:        22256968 kB\n\
                       MemAvailable:   24142660 kB\n";
        assert_eq!(parse_kv(meminfo, "MemAvailable"), Some(24142660));
        assert_eq!(parse_kv(meminfo, "Mem"), None);
        let io = "rchar: 6976\nwchar: 10\nwrite_bytes: 8192\ncancelled_write_bytes: 4096\n";
        assert_eq!(parse_kv(io, "write_bytes"), Some(8192));
        assert_eq!(parse_kv(io, "wchar"), Some(10));
        // The live process's files parse.
        let me = std::process::id();
        assert!(
            crate::procfs::stat_cpu_ticks(&fs::read_to_string(format!("/proc/{me}/stat")).unwrap())
                .is_some()
        );
        assert!(resident_bytes(me).unwrap() > 0);
    }

    #[test]
    fn hog_levels_round_up_to_pages() {
        assert_eq!(hog_bytes(0.0, 4096), 0);
        assert_eq!(hog_bytes(1.0, 4096), 4096);
        assert_eq!(hog_bytes(4096.0, 4096), 4096);
        assert_eq!(hog_bytes(4096.5, 4096), 8192);
        assert_eq!(hog_bytes(1e300, 4096) % 4096, 0);
    }

    #[test]
    fn hog_grows_and_shrinks_in_place() {
        let mut hog = Hog {
            chunks: Vec::new(),
            held: 0,
            page: crate::procfs::page_size() as usize,
        };
        hog.grow(3 * hog.page).unwrap();
        hog.grow(2 * hog.page).unwrap();
        hog.shrink(hog.page);
        assert_eq!((hog.held, hog.chunks.len()), (4 * hog.page, 2));
        hog.shrink(5 * hog.page);
        assert_eq!((hog.held, hog.chunks.len()), (3 * hog.page, 1));
        hog.shrink(3 * hog.page);
        assert_eq!((hog.held, hog.chunks.len()), (0, 0));
        hog.shrink(hog.page);
        assert_eq!(hog.held, 0);
    }

    #[test]
    fn io_blocks_are_fixed_and_not_constant() {
        let a = io_block(4096 + 3);
        assert_eq!(a.len(), 4099);
        assert_eq!(a, io_block(4099));
        assert!(a.windows(8).any(|w| w != &a[..8]));
    }

    #[test]
    fn exit_status_descriptions() {
        assert_eq!(
            describe_status(ExitStatus::from_raw(1 << 8)),
            "exited with status 1"
        );
        assert_eq!(
            describe_status(ExitStatus::from_raw(libc::SIGKILL)),
            "was killed by signal 9 (SIGKILL)"
        );
    }

    /// The protocol in this process, with a spin stressor (the kind that
    /// changes nothing process-wide).
    #[test]
    fn serve_answers_each_line_and_returns_at_end_of_input() {
        let input = b"level 1\nlevel x\nlevel 0.25\nlevel -1\nlevel 100000\nlevel 0\n";
        let mut out = Vec::new();
        serve_to(Kind::Spin, &input[..], &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 7, "{out}");
        assert!(
            lines[0].starts_with(&format!("{READY} pid={} pdeathsig=", std::process::id())),
            "{out}"
        );
        assert_eq!(lines[1], "ok");
        assert!(lines[2].starts_with("err `x` is not a number"), "{out}");
        assert_eq!(lines[3], "ok");
        assert!(lines[4].starts_with("err level `-1`"), "{out}");
        assert!(
            lines[5].starts_with("err spin level 100000 cores is more"),
            "{out}"
        );
        assert_eq!(lines[6], "ok");
    }
}
