//! The runtime's segment: header, thread slots, counters and histograms, laid
//! out as `panic_abi.h` says.
//!
//! [`Snapshot::parse`] reads a copy (a dump file, or bytes copied out of a live
//! segment); it checks magic, ABI version, sizes and every region's bounds, and
//! never panics, whatever the bytes. [`Live`] maps a running program's
//! `CARGO_PANIC_SHM` file read-only and copies it out with atomic loads, so a
//! reader never tears a word the runtime is writing (it can still see one
//! field updated before another: snapshots of a live program are approximate
//! across fields, exact within each).
//!
//! Histogram minima are stored complemented (`~min`, so zero-filled tables are
//! empty); parsing decodes them, and [`Hist::min`] is the real minimum.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use crate::abi;
pub use crate::clock::{Clock, ClockKind};
use crate::hist::Hist;

/// Why a segment could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// A live segment file exists but the runtime has not finished setting it
    /// up (it is empty, shorter than the header, or its header is not written
    /// yet): try again shortly.
    #[error("segment {path} is not ready yet: {reason}")]
    NotReady {
        /// The segment file.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// Fewer bytes than the layout needs.
    #[error("segment truncated: {what} needs {needed} bytes, only {len} present")]
    Truncated {
        /// The part that does not fit.
        what: &'static str,
        /// Bytes it needs.
        needed: u64,
        /// Bytes present.
        len: u64,
    },
    /// The first 8 bytes are not "PANICSEG".
    #[error(
        "not a cargo-panic segment: magic {found:#018x}, expected {:#018x}",
        abi::SEGMENT_MAGIC
    )]
    BadMagic {
        /// What the first 8 bytes hold.
        found: u64,
    },
    /// Written by a runtime of another ABI version.
    #[error(
        "segment has ABI version {found}, this reader understands version {}",
        abi::ABI_VERSION
    )]
    AbiVersion {
        /// The segment's version.
        found: u32,
    },
    /// A size the header records differs from this ABI's.
    #[error("segment layout mismatch: {field} is {found}, expected {expected}")]
    Layout {
        /// Header field.
        field: &'static str,
        /// Its value.
        found: u64,
        /// This ABI's value.
        expected: u64,
    },
    /// A region the header describes overlaps another or leaves the segment.
    #[error("segment region out of bounds: {0}")]
    Bounds(String),
    /// The header's process state is none of the known ones.
    #[error("segment has unknown process state {0}")]
    BadState(u32),
    /// The header's clock kind is none of the known ones.
    #[error("segment has unknown clock kind {0}")]
    BadClock(u32),
    /// Reading or mapping the file failed.
    #[error("cannot read segment {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// What the program was doing when the segment was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Still running (or killed by a signal the runtime cannot catch, such as
    /// SIGKILL).
    Running,
    /// Returned from main or called exit(): `exit_code` is valid.
    Exited,
    /// Took a fatal signal: `signal`, `fault_addr` and `signal_tid` are valid.
    Signaled,
}

/// The header fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Process id of the program (of the parent, for a segment shared before a fork).
    pub pid: i32,
    /// Running, exited or signaled.
    pub state: State,
    /// The status given to exit() (valid when [`State::Exited`]).
    pub exit_code: i32,
    /// The fatal signal (valid when [`State::Signaled`]).
    pub signal: i32,
    /// `si_addr` of the fatal signal: the faulting address for SIGSEGV/SIGBUS.
    pub fault_addr: u64,
    /// Kernel thread id that took the fatal signal.
    pub signal_tid: u32,
    /// The faulting thread's stack pointer at the fatal signal (0: unknown).
    pub fault_sp: u64,
    /// High-water mark of claimed thread slots.
    pub threads_used: u32,
    /// Threads that found no free slot (counted, never timed).
    pub threads_over: u64,
    /// Regions not timed because they nested deeper than `MAX_DEPTH`.
    pub depth_over: u64,
    /// Regions closed by an outer exit (unwinding, longjmp) and not timed.
    pub abandoned: u64,
    /// The run's clock and its start calibration point.
    pub clock: Clock,
    /// Ticks at exit or fatal signal, 0 while running.
    pub tsc_end: u64,
    /// CLOCK_MONOTONIC ns at exit or fatal signal, read right after `tsc_end`.
    pub ns_end: u64,
    /// Number of sites (counters).
    pub n_sites: u64,
    /// Number of timed sites (histograms).
    pub n_hists: u64,
    /// Size of the segment in bytes, counter blocks included.
    pub total_size: u64,
    /// Per-thread counter blocks in the segment (0 in a dump, whose counters
    /// are already summed).
    pub n_blocks: u64,
    /// Threads that found no free counter block and counted into the shared
    /// counters without a lock (they may have lost counts to each other).
    pub blocks_over: u64,
    /// Kernel mode: the runtime mapped cargo-panic's BPF thread table
    /// (`CARGO_PANIC_KTHREADS`), so it kept self times ([`Hist::self_total`],
    /// [`Frame::child`]).
    pub kthreads: bool,
}

impl Header {
    /// The end calibration point `(tsc_end, ns_end)` if the program recorded
    /// one (it exited or took a fatal signal).
    pub fn end(&self) -> Option<(u64, u64)> {
        (self.state != State::Running && self.tsc_end != 0).then_some((self.tsc_end, self.ns_end))
    }

    /// The recorded end point, or the reader's [`Clock::now`] when there is
    /// none (a program still running, or killed by SIGKILL; same machine).
    pub fn end_or_now(&self) -> (u64, u64) {
        self.end().unwrap_or_else(Clock::now)
    }

    /// [`end_or_now`](Self::end_or_now) in the run's ticks (the nanoseconds
    /// for a [`ClockKind::Ns`] run, whose end point's first half would be TSC
    /// cycles when it comes from [`Clock::now`]).
    pub fn end_ticks(&self) -> u64 {
        let (ticks, ns) = self.end_or_now();
        match self.clock.kind {
            ClockKind::Tsc => ticks,
            ClockKind::Ns => ns,
        }
    }
}

/// One open timed region of a thread: a frame of its slot's stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Site index of the region.
    pub site: u32,
    /// Histogram index of the region.
    pub hist: u32,
    /// Ticks when the region was entered.
    pub t: u64,
    /// Ticks of the timed regions closed inside this one so far (its direct
    /// children). Kept only in kernel mode ([`Header::kthreads`]); otherwise
    /// it means nothing.
    pub child: u64,
}

/// One thread slot in use (or used earlier in the run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadSlot {
    /// Index of the slot.
    pub index: usize,
    /// Kernel thread id of its owner; 0 when the thread has exited and given
    /// the slot back (the other fields then describe that thread at its end).
    pub tid: u32,
    /// Regions open, possibly more than `MAX_DEPTH`.
    pub depth: u32,
    /// Site of the innermost open timed region.
    pub cur_site: Option<u32>,
    /// Site of the region this thread closed last.
    pub last_exit: Option<u32>,
    /// Regions this thread entered.
    pub entered: u64,
    /// Sites of the open timed regions, outermost first (at most `MAX_DEPTH`).
    pub frames: Vec<u32>,
    /// The open timed regions themselves, outermost first: `stack[i].site`
    /// is `frames[i]`.
    pub stack: Vec<Frame>,
}

/// A parsed copy of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The header.
    pub header: Header,
    /// Slots that are claimed now or were claimed earlier in the run.
    pub threads: Vec<ThreadSlot>,
    /// One count per site, indexed by site id.
    pub counters: Vec<u64>,
    /// One histogram per timed site, indexed by hist id, in ticks.
    pub hists: Vec<Hist>,
}

/// Bounds-checked little-endian reads.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u32(&self, off: u64) -> Result<u32, SegmentError> {
        Ok(u32::from_le_bytes(self.array(off)?))
    }

    fn u64(&self, off: u64) -> Result<u64, SegmentError> {
        Ok(u64::from_le_bytes(self.array(off)?))
    }

    fn array<const N: usize>(&self, off: u64) -> Result<[u8; N], SegmentError> {
        let start = usize::try_from(off).ok();
        start
            .and_then(|s| self.0.get(s..s.checked_add(N)?))
            .and_then(|b| b.try_into().ok())
            .ok_or(SegmentError::Truncated {
                what: "field",
                needed: off.saturating_add(N as u64),
                len: self.len(),
            })
    }

    fn len(&self) -> u64 {
        self.0.len() as u64
    }
}

fn site(raw: u32) -> Option<u32> {
    (u64::from(raw) != abi::NO_SITE).then_some(raw)
}

/// `start + count * size`, or a bounds error naming `what`.
fn region_end(what: &str, start: u64, count: u64, size: u64) -> Result<u64, SegmentError> {
    count
        .checked_mul(size)
        .and_then(|n| start.checked_add(n))
        .ok_or_else(|| {
            SegmentError::Bounds(format!(
                "{what}: {count} x {size} bytes at {start} overflows"
            ))
        })
}

impl Snapshot {
    /// Parses a segment (a dump file's bytes, or a copy of a live segment).
    pub fn parse(bytes: &[u8]) -> Result<Snapshot, SegmentError> {
        let b = Bytes(bytes);
        if b.len() < abi::HEADER_SIZE {
            return Err(SegmentError::Truncated {
                what: "header",
                needed: abi::HEADER_SIZE,
                len: b.len(),
            });
        }
        let magic = b.u64(abi::HDR_MAGIC)?;
        if magic != abi::SEGMENT_MAGIC {
            return Err(SegmentError::BadMagic { found: magic });
        }
        let version = b.u32(abi::HDR_ABI_VERSION)?;
        if u64::from(version) != abi::ABI_VERSION {
            return Err(SegmentError::AbiVersion { found: version });
        }
        for (field, off, expected) in [
            ("max_threads", abi::HDR_MAX_THREADS, abi::MAX_THREADS),
            ("max_depth", abi::HDR_MAX_DEPTH, abi::MAX_DEPTH),
            ("slot_size", abi::HDR_SLOT_SIZE, abi::SLOT_SIZE),
            ("hist_size", abi::HDR_HIST_SIZE, abi::HIST_SIZE),
            ("hist_buckets", abi::HDR_HIST_BUCKETS, abi::HIST_BUCKETS),
            ("hist_sub_bits", abi::HDR_HIST_SUB_BITS, abi::HIST_SUB_BITS),
        ] {
            let found = u64::from(b.u32(off)?);
            if found != expected {
                return Err(SegmentError::Layout {
                    field,
                    found,
                    expected,
                });
            }
        }

        let n_sites = b.u64(abi::HDR_N_SITES)?;
        let n_hists = b.u64(abi::HDR_N_HISTS)?;
        let off_threads = b.u64(abi::HDR_OFF_THREADS)?;
        let off_counters = b.u64(abi::HDR_OFF_COUNTERS)?;
        let off_hists = b.u64(abi::HDR_OFF_HISTS)?;
        let total_size = b.u64(abi::HDR_TOTAL_SIZE)?;
        if off_threads != abi::HEADER_SIZE {
            return Err(SegmentError::Layout {
                field: "off_threads",
                found: off_threads,
                expected: abi::HEADER_SIZE,
            });
        }
        let threads_end = region_end(
            "thread slots",
            off_threads,
            abi::MAX_THREADS,
            abi::SLOT_SIZE,
        )?;
        let counters_end = region_end("counters", off_counters, n_sites, 8)?;
        let hists_end = region_end("hists", off_hists, n_hists, abi::HIST_SIZE)?;
        let off_blocks = b.u64(abi::HDR_OFF_BLOCKS)?;
        let block_size = b.u64(abi::HDR_BLOCK_SIZE)?;
        let n_blocks = b.u64(abi::HDR_N_BLOCKS)?;
        let blocks_end = region_end("counter blocks", off_blocks, n_blocks, block_size)?;
        if off_counters < threads_end
            || off_hists < counters_end
            || off_blocks < hists_end
            || (n_blocks > 0 && block_size < n_sites * 8)
            || total_size < blocks_end
        {
            return Err(SegmentError::Bounds(format!(
                "threads end at {threads_end}, counters span {off_counters}..{counters_end}, \
                 hists span {off_hists}..{hists_end}, {n_blocks} counter blocks of \
                 {block_size} bytes span {off_blocks}..{blocks_end}, segment is {total_size} bytes"
            )));
        }
        if b.len() < total_size {
            return Err(SegmentError::Truncated {
                what: "segment",
                needed: total_size,
                len: b.len(),
            });
        }

        let raw_state = b.u32(abi::HDR_STATE)?;
        let state = match u64::from(raw_state) {
            abi::STATE_RUNNING => State::Running,
            abi::STATE_EXITED => State::Exited,
            abi::STATE_SIGNALED => State::Signaled,
            _ => return Err(SegmentError::BadState(raw_state)),
        };
        let raw_clock = b.u32(abi::HDR_CLOCK_KIND)?;
        let kind = ClockKind::from_abi(raw_clock).ok_or(SegmentError::BadClock(raw_clock))?;
        let threads_used = b.u32(abi::HDR_THREADS_USED)?;
        if u64::from(threads_used) > abi::MAX_THREADS {
            return Err(SegmentError::Bounds(format!(
                "threads_used is {threads_used}, more than the {} slots",
                abi::MAX_THREADS
            )));
        }
        let header = Header {
            pid: b.u32(abi::HDR_PID)? as i32,
            state,
            exit_code: b.u32(abi::HDR_EXIT_CODE)? as i32,
            signal: b.u32(abi::HDR_SIGNAL)? as i32,
            fault_addr: b.u64(abi::HDR_FAULT_ADDR)?,
            signal_tid: b.u32(abi::HDR_SIGNAL_TID)?,
            fault_sp: b.u64(abi::HDR_FAULT_SP)?,
            threads_used,
            threads_over: b.u64(abi::HDR_THREADS_OVER)?,
            depth_over: b.u64(abi::HDR_DEPTH_OVER)?,
            abandoned: b.u64(abi::HDR_ABANDONED)?,
            clock: Clock {
                kind,
                tsc0: b.u64(abi::HDR_TSC0)?,
                ns0: b.u64(abi::HDR_NS0)?,
            },
            tsc_end: b.u64(abi::HDR_TSC_END)?,
            ns_end: b.u64(abi::HDR_NS_END)?,
            n_sites,
            n_hists,
            total_size,
            n_blocks,
            blocks_over: b.u64(abi::HDR_BLOCKS_OVER)?,
            kthreads: b.u32(abi::HDR_KTHREADS)? != 0,
        };

        let mut threads = Vec::new();
        for index in 0..abi::MAX_THREADS {
            let base = off_threads + index * abi::SLOT_SIZE;
            let tid = b.u32(base + abi::SLOT_TID)?;
            if tid == 0 && index >= u64::from(threads_used) {
                continue;
            }
            let depth = b.u32(base + abi::SLOT_DEPTH)?;
            let open = u64::from(depth).min(abi::MAX_DEPTH);
            let stack = (0..open)
                .map(|f| {
                    let at = base + abi::SLOT_STACK + f * abi::FRAME_SIZE;
                    Ok(Frame {
                        site: b.u32(at + abi::FRAME_SITE)?,
                        hist: b.u32(at + abi::FRAME_HIST)?,
                        t: b.u64(at + abi::FRAME_T)?,
                        child: b.u64(at + abi::FRAME_CHILD)?,
                    })
                })
                .collect::<Result<Vec<_>, SegmentError>>()?;
            let frames = stack.iter().map(|f| f.site).collect();
            threads.push(ThreadSlot {
                index: index as usize,
                tid,
                depth,
                cur_site: site(b.u32(base + abi::SLOT_CUR_SITE)?),
                last_exit: site(b.u32(base + abi::SLOT_LAST_EXIT)?),
                entered: b.u64(base + abi::SLOT_ENTERED)?,
                frames,
                stack,
            });
        }

        // A site's count: the shared counter plus the site's counter in every
        // thread's block (panic_abi.h, "per-thread counters").
        let mut counters = (0..n_sites)
            .map(|i| b.u64(off_counters + i * 8))
            .collect::<Result<Vec<u64>, _>>()?;
        for k in 0..n_blocks {
            let base = off_blocks + k * block_size;
            for (i, c) in counters.iter_mut().enumerate() {
                *c = c.wrapping_add(b.u64(base + i as u64 * 8)?);
            }
        }
        let hists = (0..n_hists)
            .map(|i| {
                let base = off_hists + i * abi::HIST_SIZE;
                let flags = b.u64(base + abi::HIST_FLAGS)?;
                Ok(Hist {
                    count: b.u64(base + abi::HIST_COUNT)?,
                    total: b.u64(base + abi::HIST_TOTAL)?,
                    max: b.u64(base + abi::HIST_MAX)?,
                    min: !b.u64(base + abi::HIST_MIN)?,
                    self_total: b.u64(base + abi::HIST_SELF)?,
                    buckets: (0..abi::HIST_BUCKETS)
                        .map(|k| b.u64(base + abi::HIST_BUCKETS_OFF + k * 8))
                        .collect::<Result<_, _>>()?,
                    demoted: flags & abi::HIST_FLAG_DEMOTED != 0,
                    pinned: flags & abi::HIST_FLAG_PINNED != 0,
                })
            })
            .collect::<Result<_, SegmentError>>()?;

        Ok(Snapshot {
            header,
            threads,
            counters,
            hists,
        })
    }

    /// Reads and parses a dump file.
    pub fn read(path: impl AsRef<Path>) -> Result<Snapshot, SegmentError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| SegmentError::Io {
            path: path.to_owned(),
            source,
        })?;
        Snapshot::parse(&bytes)
    }

    /// Converts a duration in ticks to nanoseconds with the run's clock, using
    /// the recorded end point or, for a run without one, the reader's clock now.
    pub fn ticks_to_ns(&self, ticks: u64) -> u64 {
        self.header
            .clock
            .ticks_to_ns(ticks, self.header.end_or_now())
    }

    /// Self time per histogram (indexed like [`Snapshot::hists`]), in ticks:
    /// [`Hist::self_total`] plus, for regions still open at the end
    /// ([`Header::end_ticks`]), their self time so far. A thread's open frames
    /// are nested, so frame k's is `(end - t_k) - child_k - (end - t_{k+1})`,
    /// the last term being the next inner open frame's duration (none for the
    /// innermost), clamped at 0. All zeros unless the run was in kernel mode
    /// ([`Header::kthreads`]): no self time is kept otherwise.
    pub fn self_ticks(&self) -> Vec<u64> {
        let mut out: Vec<u64> = self.hists.iter().map(|h| h.self_total).collect();
        if !self.header.kthreads {
            return out;
        }
        let end = self.header.end_ticks();
        for thread in &self.threads {
            let mut inner = 0u64;
            for f in thread.stack.iter().rev() {
                let dur = end.saturating_sub(f.t);
                let own = dur.saturating_sub(f.child).saturating_sub(inner);
                if let Some(total) = out.get_mut(f.hist as usize) {
                    *total = total.wrapping_add(own);
                }
                inner = dur;
            }
        }
        out
    }

    /// The slot of a live thread, by kernel thread id.
    pub fn thread(&self, tid: u32) -> Option<&ThreadSlot> {
        self.threads.iter().find(|t| t.tid == tid && tid != 0)
    }
}

/// A live segment file (`CARGO_PANIC_SHM`), mapped read-only.
///
/// The file may be opened before the program has set it up; [`Live::snapshot`]
/// says [`SegmentError::NotReady`] until it has. The runtime never shrinks the
/// file once it is set up; reusing the path for another run while a reader
/// holds it mapped is the caller's mistake (the kernel would raise SIGBUS).
pub struct Live {
    path: PathBuf,
    file: File,
    map: Option<MmapRaw>,
}

impl Live {
    /// Opens the segment file at `path` (it must exist; it may still be empty).
    pub fn open(path: impl AsRef<Path>) -> Result<Live, SegmentError> {
        let path = path.as_ref().to_owned();
        let file = File::open(&path).map_err(|source| SegmentError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Live {
            path,
            file,
            map: None,
        })
    }

    /// The segment file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copies the segment out and parses it.
    pub fn snapshot(&mut self) -> Result<Snapshot, SegmentError> {
        // The runtime grows the segment (counter blocks) while it runs: it
        // extends the file before it publishes the new size, so a copy that
        // came out short only needs another look at the file.
        let mut tries = 0;
        loop {
            match self.snapshot_once() {
                Err(SegmentError::Truncated { .. }) if tries < 3 => tries += 1,
                other => return other,
            }
        }
    }

    fn snapshot_once(&mut self) -> Result<Snapshot, SegmentError> {
        let io_err = |source| SegmentError::Io {
            path: self.path.clone(),
            source,
        };
        let len = self.file.metadata().map_err(io_err)?.len();
        let not_ready = |reason: String| SegmentError::NotReady {
            path: self.path.clone(),
            reason,
        };
        if len < abi::HEADER_SIZE {
            return Err(not_ready(format!(
                "the file is {len} bytes, shorter than the {}-byte header",
                abi::HEADER_SIZE
            )));
        }
        if self.map.as_ref().is_none_or(|m| m.len() as u64 != len) {
            // A raw mapping hands out no references to its bytes: this type
            // reads it only through atomic loads (`copy_words`), so the runtime
            // writing the file concurrently races with nothing Rust assumes
            // immutable.
            let map = MmapOptions::new()
                .map_raw_read_only(&self.file)
                .map_err(|source| SegmentError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            self.map = Some(map);
        }
        let map = self.map.as_ref().expect("mapped just above");
        let magic = copy_words(map, 0, 8);
        if magic.iter().all(|&b| b == 0) {
            return Err(not_ready("the header is not written yet".into()));
        }
        let total = u64::from_le_bytes(
            copy_words(map, abi::HDR_TOTAL_SIZE as usize, 8)
                .try_into()
                .expect("8 bytes"),
        );
        if u64::from_le_bytes(magic.try_into().expect("8 bytes")) == abi::SEGMENT_MAGIC
            && total > len
        {
            return Err(not_ready(format!(
                "the file is {len} bytes, the header describes {total}"
            )));
        }
        let bytes = copy_words(map, 0, len as usize);
        Snapshot::parse(&bytes)
    }
}

/// Copies `len` bytes (rounded down to whole words) from `off` in the mapping
/// with relaxed atomic 8-byte loads: each word is read whole, never torn.
fn copy_words(map: &MmapRaw, off: usize, len: usize) -> Vec<u8> {
    let end = off.saturating_add(len).min(map.len());
    let mut out = Vec::with_capacity(end.saturating_sub(off));
    let base = map.as_ptr();
    let mut at = off & !7;
    while at + 8 <= end {
        // SAFETY: `at + 8 <= map.len()`, so the 8 bytes lie inside the mapping,
        // which stays mapped while `map` is borrowed; `at` is a multiple of 8
        // and the mapping is page aligned, so the pointer is aligned for
        // AtomicU64. The pointer is only loaded from (`cast_mut` is what
        // `from_ptr` asks for, nothing writes): relaxed atomic loads of a
        // native word are allowed on read-only memory, and another process
        // writing the same memory with atomics is not a data race.
        let word = unsafe { AtomicU64::from_ptr(base.add(at).cast::<u64>().cast_mut()) }
            .load(Ordering::Relaxed);
        out.extend_from_slice(&word.to_le_bytes());
        at += 8;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal well-formed segment with `n_sites` counters and `n_hists` hists.
    fn segment(n_sites: u64, n_hists: u64) -> Vec<u8> {
        let pad = |n: u64| n.div_ceil(abi::PAGE) * abi::PAGE;
        let off_counters = abi::HEADER_SIZE + pad(abi::MAX_THREADS * abi::SLOT_SIZE);
        let off_hists = off_counters + pad(n_sites * 8);
        // Two counter blocks, as a run with two threads leaves them.
        let off_blocks = off_hists + pad(n_hists * abi::HIST_SIZE);
        let block_size = pad(n_sites * 8);
        let total = off_blocks + 2 * block_size;
        let mut s = vec![0u8; total as usize];
        let put32 = |s: &mut Vec<u8>, off: u64, v: u32| {
            s[off as usize..off as usize + 4].copy_from_slice(&v.to_le_bytes())
        };
        let put64 = |s: &mut Vec<u8>, off: u64, v: u64| {
            s[off as usize..off as usize + 8].copy_from_slice(&v.to_le_bytes())
        };
        put64(&mut s, abi::HDR_MAGIC, abi::SEGMENT_MAGIC);
        put32(&mut s, abi::HDR_ABI_VERSION, abi::ABI_VERSION as u32);
        put32(&mut s, abi::HDR_STATE, abi::STATE_EXITED as u32);
        put64(&mut s, abi::HDR_N_SITES, n_sites);
        put64(&mut s, abi::HDR_N_HISTS, n_hists);
        put64(&mut s, abi::HDR_OFF_THREADS, abi::HEADER_SIZE);
        put64(&mut s, abi::HDR_OFF_COUNTERS, off_counters);
        put64(&mut s, abi::HDR_OFF_HISTS, off_hists);
        put64(&mut s, abi::HDR_TOTAL_SIZE, total);
        put64(&mut s, abi::HDR_OFF_BLOCKS, off_blocks);
        put64(&mut s, abi::HDR_BLOCK_SIZE, block_size);
        put64(&mut s, abi::HDR_N_BLOCKS, 2);
        put32(&mut s, abi::HDR_CLOCK_KIND, abi::CLOCK_TSC as u32);
        put32(&mut s, abi::HDR_PID, 4242);
        put64(&mut s, abi::HDR_TSC0, 1000);
        put64(&mut s, abi::HDR_NS0, 10);
        put64(&mut s, abi::HDR_TSC_END, 1000 + 2_000_000);
        put64(&mut s, abi::HDR_NS_END, 10 + 1_000_000);
        put32(&mut s, abi::HDR_EXIT_CODE, 3);
        put32(&mut s, abi::HDR_THREADS_USED, 2);
        put32(&mut s, abi::HDR_MAX_THREADS, abi::MAX_THREADS as u32);
        put32(&mut s, abi::HDR_MAX_DEPTH, abi::MAX_DEPTH as u32);
        put32(&mut s, abi::HDR_SLOT_SIZE, abi::SLOT_SIZE as u32);
        put32(&mut s, abi::HDR_HIST_SIZE, abi::HIST_SIZE as u32);
        put32(&mut s, abi::HDR_HIST_BUCKETS, abi::HIST_BUCKETS as u32);
        put32(&mut s, abi::HDR_HIST_SUB_BITS, abi::HIST_SUB_BITS as u32);
        put32(&mut s, abi::HDR_KTHREADS, 1);
        // Slot 0: a live thread two regions deep; slot 1: released; slot 5: claimed past threads_used.
        let slot = |i: u64| abi::HEADER_SIZE + i * abi::SLOT_SIZE;
        put32(&mut s, slot(0) + abi::SLOT_TID, 77);
        put32(&mut s, slot(0) + abi::SLOT_DEPTH, 2);
        put32(&mut s, slot(0) + abi::SLOT_CUR_SITE, 1);
        put32(&mut s, slot(0) + abi::SLOT_LAST_EXIT, abi::NO_SITE as u32);
        put64(&mut s, slot(0) + abi::SLOT_ENTERED, 9);
        // Frame k: site k, hist k, entered 1_000_000 / 500_000 ticks before
        // the end (2_001_000), with 100_000 / 50_000 ticks of closed children.
        for (k, t, child) in [(0u64, 1_001_000u64, 100_000u64), (1, 1_501_000, 50_000)] {
            let frame = slot(0) + abi::SLOT_STACK + k * abi::FRAME_SIZE;
            put32(&mut s, frame + abi::FRAME_SITE, k as u32);
            put32(&mut s, frame + abi::FRAME_HIST, k as u32);
            put64(&mut s, frame + abi::FRAME_T, t);
            put64(&mut s, frame + abi::FRAME_CHILD, child);
        }
        put32(&mut s, slot(1) + abi::SLOT_CUR_SITE, abi::NO_SITE as u32);
        put32(&mut s, slot(1) + abi::SLOT_LAST_EXIT, 0);
        put32(&mut s, slot(5) + abi::SLOT_TID, 99);
        // Site i counts 100 + i: 50 + i shared, 30 in block 0, 20 in block 1.
        for i in 0..n_sites {
            put64(&mut s, off_counters + i * 8, 50 + i);
            put64(&mut s, off_blocks + i * 8, 30);
            put64(&mut s, off_blocks + block_size + i * 8, 20);
        }
        if n_hists > 0 {
            put64(&mut s, off_hists + abi::HIST_COUNT, 2);
            put64(&mut s, off_hists + abi::HIST_TOTAL, 300);
            put64(&mut s, off_hists + abi::HIST_MAX, 200);
            put64(&mut s, off_hists + abi::HIST_MIN, !100);
            put64(&mut s, off_hists + abi::HIST_SELF, 250);
            put64(&mut s, off_hists + abi::HIST_BUCKETS_OFF + 100 * 8, 1);
            put64(
                &mut s,
                off_hists + abi::HIST_BUCKETS_OFF + crate::hist::bucket_index(200) as u64 * 8,
                1,
            );
        }
        s
    }

    #[test]
    fn parses_a_well_formed_segment() {
        let snap = Snapshot::parse(&segment(3, 2)).expect("parses");
        let h = &snap.header;
        assert_eq!((h.pid, h.state, h.exit_code), (4242, State::Exited, 3));
        assert_eq!(
            h.clock,
            Clock {
                kind: ClockKind::Tsc,
                tsc0: 1000,
                ns0: 10
            }
        );
        assert_eq!(h.end(), Some((2_001_000, 1_000_010)));
        assert_eq!(snap.ticks_to_ns(2_000), 1_000);
        assert_eq!(snap.counters, vec![100, 101, 102]);
        assert_eq!(snap.hists.len(), 2);
        let hist = &snap.hists[0];
        assert_eq!(
            (hist.count, hist.total, hist.max, hist.min, hist.self_total),
            (2, 300, 200, 100, 250)
        );
        assert!(h.kthreads);
        assert_eq!(hist.quantile(0.5), Some(100));
        // A zero-filled hist decodes as empty.
        assert!(snap.hists[1].is_empty());
        assert_eq!(snap.hists[1].min, u64::MAX);
        let idx: Vec<_> = snap.threads.iter().map(|t| (t.index, t.tid)).collect();
        assert_eq!(idx, vec![(0, 77), (1, 0), (5, 99)]);
        let t = snap.thread(77).expect("thread 77");
        assert_eq!(
            (t.depth, t.cur_site, t.last_exit, t.entered),
            (2, Some(1), None, 9)
        );
        assert_eq!(t.frames, vec![0, 1]);
        assert_eq!(
            t.stack,
            vec![
                Frame {
                    site: 0,
                    hist: 0,
                    t: 1_001_000,
                    child: 100_000
                },
                Frame {
                    site: 1,
                    hist: 1,
                    t: 1_501_000,
                    child: 50_000
                }
            ]
        );
        assert_eq!(snap.threads[1].last_exit, Some(0));
        assert_eq!(snap.threads[1].cur_site, None);
    }

    #[test]
    fn self_ticks_add_the_open_regions_self_time_so_far() {
        let snap = Snapshot::parse(&segment(3, 3)).expect("parses");
        // Inner frame: 500_000 open - 50_000 children = 450_000. Outer:
        // 1_000_000 open - 100_000 closed children - 500_000 of the open inner one.
        assert_eq!(snap.self_ticks(), vec![250 + 400_000, 450_000, 0]);

        // Children longer than the region (a clock step): clamped, never wrapped.
        let mut s = segment(3, 3);
        let child = abi::HEADER_SIZE + abi::SLOT_STACK + abi::FRAME_CHILD;
        s[child as usize..child as usize + 8].copy_from_slice(&2_000_000u64.to_le_bytes());
        let snap = Snapshot::parse(&s).expect("parses");
        assert_eq!(snap.self_ticks(), vec![250, 450_000, 0]);

        // A frame naming a hist past the table is skipped.
        let mut s = segment(3, 1);
        let hist1 = abi::HEADER_SIZE + abi::SLOT_STACK + abi::FRAME_SIZE + abi::FRAME_HIST;
        s[hist1 as usize..hist1 as usize + 4].copy_from_slice(&7u32.to_le_bytes());
        let snap = Snapshot::parse(&s).expect("parses");
        assert_eq!(snap.self_ticks(), vec![250 + 400_000]);

        // Without kernel mode no self time is kept: the frames' `child` means
        // nothing and only the (zero) totals are reported.
        let mut s = segment(3, 3);
        s[abi::HDR_KTHREADS as usize..abi::HDR_KTHREADS as usize + 4].fill(0);
        let snap = Snapshot::parse(&s).expect("parses");
        assert!(!snap.header.kthreads);
        assert_eq!(snap.self_ticks(), vec![250, 0, 0]);
    }

    #[test]
    fn end_ticks_are_the_runs_ticks() {
        let snap = Snapshot::parse(&segment(1, 1)).expect("parses");
        assert_eq!(snap.header.end_ticks(), 2_001_000);
        let mut ns = snap.header.clone();
        ns.clock.kind = ClockKind::Ns;
        assert_eq!(ns.end_ticks(), 1_000_010);
        // A running Ns-clock program: the reader's nanoseconds, never its TSC.
        ns.state = State::Running;
        let before = Clock::now().1;
        let got = ns.end_ticks();
        assert!((before..=Clock::now().1).contains(&got), "{got}");
    }

    #[test]
    fn parses_a_segment_without_sites() {
        let snap = Snapshot::parse(&segment(0, 0)).expect("parses");
        assert!(snap.counters.is_empty() && snap.hists.is_empty());
    }

    #[test]
    fn rejects_bad_headers_with_the_right_error() {
        let good = segment(3, 1);
        let with = |off: u64, bytes: &[u8]| {
            let mut s = good.clone();
            s[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
            Snapshot::parse(&s).expect_err("must fail")
        };
        assert!(matches!(
            with(0, b"PANICSEH"),
            SegmentError::BadMagic { .. }
        ));
        let other = abi::ABI_VERSION as u32 + 1;
        assert!(matches!(
            with(abi::HDR_ABI_VERSION, &other.to_le_bytes()),
            SegmentError::AbiVersion { found } if found == other
        ));
        assert!(matches!(
            with(abi::HDR_HIST_SIZE, &8u32.to_le_bytes()),
            SegmentError::Layout {
                field: "hist_size",
                found: 8,
                ..
            }
        ));
        assert!(matches!(
            with(abi::HDR_STATE, &9u32.to_le_bytes()),
            SegmentError::BadState(9)
        ));
        assert!(matches!(
            with(abi::HDR_CLOCK_KIND, &9u32.to_le_bytes()),
            SegmentError::BadClock(9)
        ));
        assert!(matches!(
            with(abi::HDR_THREADS_USED, &300u32.to_le_bytes()),
            SegmentError::Bounds(_)
        ));
        assert!(matches!(
            with(abi::HDR_N_SITES, &u64::MAX.to_le_bytes()),
            SegmentError::Bounds(_)
        ));
        assert!(matches!(
            with(abi::HDR_N_HISTS, &1000u64.to_le_bytes()),
            SegmentError::Bounds(_)
        ));
        assert!(matches!(
            with(abi::HDR_OFF_COUNTERS, &100u64.to_le_bytes()),
            SegmentError::Bounds(_)
        ));
        assert!(matches!(
            with(
                abi::HDR_TOTAL_SIZE,
                &(good.len() as u64 + 4096).to_le_bytes()
            ),
            SegmentError::Truncated {
                what: "segment",
                ..
            }
        ));
        let e = Snapshot::parse(&good[..100]).expect_err("short");
        assert!(matches!(
            e,
            SegmentError::Truncated {
                what: "header",
                needed: 4096,
                len: 100
            }
        ));
        assert_eq!(
            e.to_string(),
            "segment truncated: header needs 4096 bytes, only 100 present"
        );
    }

    #[test]
    fn never_panics_on_garbage() {
        let good = segment(5, 2);
        // Every prefix length at a coarse stride, and the edges of each region.
        for len in (0..good.len())
            .step_by(509)
            .chain([0, 1, 8, 4095, 4096, 4097, good.len() - 1])
        {
            assert!(
                Snapshot::parse(&good[..len]).is_err(),
                "prefix {len} parsed"
            );
        }
        // Random corruption of the header and the first slot, seeded.
        let mut x = 0x1234_5678_9abc_def0_u64;
        for _ in 0..3000 {
            let mut s = good.clone();
            for _ in 0..4 {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let off = (x >> 33) as usize % (abi::HEADER_SIZE as usize + 64).min(s.len());
                s[off] = (x >> 17) as u8;
            }
            let _ = Snapshot::parse(&s);
        }
        // Pure noise.
        let noise: Vec<u8> = (0..20_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert!(Snapshot::parse(&noise).is_err());
    }

    #[test]
    fn live_reports_not_ready_then_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("seg");
        assert!(matches!(Live::open(&path), Err(SegmentError::Io { .. })));
        std::fs::write(&path, b"").expect("write");
        let mut live = Live::open(&path).expect("open");
        let e = live.snapshot().expect_err("empty");
        assert!(matches!(e, SegmentError::NotReady { .. }), "{e}");
        assert!(e.to_string().contains("0 bytes"), "{e}");
        let good = segment(2, 1);
        std::fs::write(&path, vec![0u8; good.len()]).expect("write");
        let e = live.snapshot().expect_err("zero header");
        assert!(e.to_string().contains("not written yet"), "{e}");
        std::fs::write(&path, &good).expect("write");
        let snap = live.snapshot().expect("ready");
        assert_eq!(snap, Snapshot::parse(&good).expect("parses"));
        assert_eq!(live.path(), path);
    }
}
