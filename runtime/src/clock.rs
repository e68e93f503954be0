//! Ticks to nanoseconds.
//!
//! The runtime times regions in ticks of one clock per run: invariant TSC
//! cycles where cpuid promises an invariant TSC, else CLOCK_MONOTONIC
//! nanoseconds. It records a calibration point `(tsc0, ns0)` at start and
//! `(tsc_end, ns_end)` at exit or on a fatal signal, each taken back to back;
//! the rate between them converts ticks. For a program still running, or one
//! killed by SIGKILL (no end point), a reader on the same machine takes its own
//! end point with [`Clock::now`]: the TSC is shared by every core and process.

use crate::abi;

/// Which clock the ticks of a run count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClockKind {
    /// CLOCK_MONOTONIC nanoseconds (`PANIC_CLOCK_NS`).
    Ns,
    /// Invariant TSC cycles (`PANIC_CLOCK_TSC`).
    Tsc,
}

impl ClockKind {
    /// The kind a header's `clock_kind` field names, if any.
    pub fn from_abi(raw: u32) -> Option<Self> {
        match u64::from(raw) {
            abi::CLOCK_NS => Some(ClockKind::Ns),
            abi::CLOCK_TSC => Some(ClockKind::Tsc),
            _ => None,
        }
    }
}

/// A run's clock and its calibration point at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// What a tick is.
    pub kind: ClockKind,
    /// Ticks at start.
    pub tsc0: u64,
    /// CLOCK_MONOTONIC nanoseconds at start, read right after `tsc0`.
    pub ns0: u64,
}

impl Clock {
    /// Converts a duration of `ticks` to nanoseconds, calibrating the TSC
    /// between the start point and `end = (ticks, ns)` (the header's
    /// `(tsc_end, ns_end)`, or [`Clock::now`]). For [`ClockKind::Ns`] ticks are
    /// nanoseconds already and `end` is not used. When `end` is not after the
    /// start point no rate can be measured and the ticks are returned
    /// unchanged.
    pub fn ticks_to_ns(&self, ticks: u64, end: (u64, u64)) -> u64 {
        match self.kind {
            ClockKind::Ns => ticks,
            ClockKind::Tsc => {
                let span_ticks = end.0.saturating_sub(self.tsc0);
                let span_ns = end.1.saturating_sub(self.ns0);
                if span_ticks == 0 || span_ns == 0 {
                    return ticks;
                }
                let ns = u128::from(ticks) * u128::from(span_ns) / u128::from(span_ticks);
                u64::try_from(ns).unwrap_or(u64::MAX)
            }
        }
    }

    /// Whether ticks are TSC cycles (which need calibrating).
    pub fn is_tsc(&self) -> bool {
        self.kind == ClockKind::Tsc
    }

    /// Ticks per nanosecond between the start point and `end`, if measurable.
    pub fn ticks_per_ns(&self, end: (u64, u64)) -> Option<f64> {
        match self.kind {
            ClockKind::Ns => Some(1.0),
            ClockKind::Tsc => {
                let span_ticks = end.0.saturating_sub(self.tsc0);
                let span_ns = end.1.saturating_sub(self.ns0);
                (span_ticks > 0 && span_ns > 0).then(|| span_ticks as f64 / span_ns as f64)
            }
        }
    }

    /// `(TSC, CLOCK_MONOTONIC ns)` now, read back to back in the runtime's
    /// order. Where there is no TSC both are the nanoseconds.
    pub fn now() -> (u64, u64) {
        let tsc = read_tsc();
        let ns = monotonic_ns();
        (tsc.unwrap_or(ns), ns)
    }
}

#[cfg(target_arch = "x86_64")]
fn read_tsc() -> Option<u64> {
    // SAFETY: rdtsc has no preconditions on x86_64; it only reads the counter.
    Some(unsafe { core::arch::x86_64::_rdtsc() })
}

#[cfg(not(target_arch = "x86_64"))]
fn read_tsc() -> Option<u64> {
    None
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_MONOTONIC exists on
    // every Linux; clock_gettime writes only through the pointer it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_clock_is_identity() {
        let c = Clock {
            kind: ClockKind::Ns,
            tsc0: 5,
            ns0: 5,
        };
        assert_eq!(c.ticks_to_ns(12_345, (0, 0)), 12_345);
        assert_eq!(c.ticks_per_ns((0, 0)), Some(1.0));
    }

    #[test]
    fn tsc_clock_scales_by_the_measured_rate() {
        // 3 GHz: 3e9 ticks took 1e9 ns.
        let c = Clock {
            kind: ClockKind::Tsc,
            tsc0: 1_000,
            ns0: 50,
        };
        let end = (1_000 + 3_000_000_000, 50 + 1_000_000_000);
        assert_eq!(c.ticks_to_ns(3_000, end), 1_000);
        assert_eq!(c.ticks_to_ns(u64::MAX, end), u64::MAX / 3);
        assert_eq!(c.ticks_per_ns(end), Some(3.0));
        // No measurable span: unchanged, and no rate.
        assert_eq!(c.ticks_to_ns(77, (1_000, 50)), 77);
        assert_eq!(c.ticks_per_ns((10, 10)), None);
    }

    #[test]
    fn now_moves_forward_and_agrees_with_itself() {
        let (t0, n0) = Clock::now();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let (t1, n1) = Clock::now();
        assert!(t1 > t0 && n1 > n0);
        assert!(n1 - n0 >= 5_000_000);
        let c = Clock {
            kind: if cfg!(target_arch = "x86_64") {
                ClockKind::Tsc
            } else {
                ClockKind::Ns
            },
            tsc0: t0,
            ns0: n0,
        };
        assert_eq!(c.ticks_to_ns(t1 - t0, (t1, n1)), n1 - n0);
    }

    #[test]
    fn kinds_come_from_the_abi() {
        assert_eq!(
            ClockKind::from_abi(abi::CLOCK_NS as u32),
            Some(ClockKind::Ns)
        );
        assert_eq!(
            ClockKind::from_abi(abi::CLOCK_TSC as u32),
            Some(ClockKind::Tsc)
        );
        assert_eq!(ClockKind::from_abi(9), None);
    }
}
