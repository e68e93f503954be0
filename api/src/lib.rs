//! Resource prices from inside a program built with `cargo panic build`.
//!
//! The package is `panic-api`; its library is named `cargo_panic`, so a program
//! that depends on it writes
//!
//! ```
//! use cargo_panic::{Resource, price};
//!
//! let p = price(Resource::Cpu); // 0.0 unless cargo-panic's controller is pricing this run
//! assert!(p >= 0.0);
//! ```
//!
//! ```toml
//! [dependencies]
//! panic-api = { path = "../cargo-panic/api" }
//! ```
//!
//! Under `cargo panic run` with a price controller, the runtime linked into the
//! program holds the current price of each resource; [`price`] reads it and
//! [`prices_seq`] tells when it changed. Everywhere else the calls are harmless:
//! a plain `cargo build`, a run without prices, another OS. Prices are then
//! `0.0` and the sequence number `0`, so a program can use prices
//! unconditionally (a price of 0 means "this resource costs nothing right now").
//!
//! # How the runtime is found
//!
//! The runtime exports `panic_price` and `panic_price_seq` (`runtime/c/panic_abi.h`:
//! `PANIC_SYM_PRICE`, `PANIC_SYM_PRICE_SEQ`) from instrumented executables
//! (cargo-panic's link driver adds `--export-dynamic-symbol` for them). This crate
//! looks them up with `dlsym(RTLD_DEFAULT, ...)` on first use, not by linking to
//! them: stable Rust has no weak linkage, and a plain `cargo build` of the same
//! program has no runtime, so a direct reference would not link. The addresses
//! (or their absence) are cached, so after the first call a read is one relaxed
//! atomic load, a compare and an indirect call into the runtime: a few
//! nanoseconds. The first call takes the dynamic loader's lock; call
//! [`instrumented`] once at start-up if prices are read where that matters (a
//! signal handler).
//!
//! What finds nothing, so reads 0: a binary not built through cargo panic, a
//! statically linked one (no dynamic symbol table), any OS but Linux. If a
//! shared library in the process carries its own copy of the runtime (C built
//! with `cargo panic cc`) and the executable none, that copy is found: it answers
//! like a run without prices (only the executable's runtime takes the run's
//! price map).
//!
//! No dependencies (not even `libc`) and `no_std`: `dlsym` is declared here
//! (glibc >= 2.34 has it in libc itself, as has musl).
#![cfg_attr(not(test), no_std)]

use core::ffi::{CStr, c_void};
use core::sync::atomic::{AtomicPtr, Ordering};

/// A priced resource. The discriminants are the runtime's resource numbers.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    Cpu = 0,
    Memory = 1,
    Io = 2,
    Network = 3,
    Dwell = 4,
}

impl Resource {
    /// Every resource, in the runtime's order.
    pub const ALL: [Resource; 5] = [
        Resource::Cpu,
        Resource::Memory,
        Resource::Io,
        Resource::Network,
        Resource::Dwell,
    ];

    /// The name cargo-panic uses for it (`cpu`, `memory`, `io`, `network`, `dwell`).
    pub const fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::Io => "io",
            Resource::Network => "network",
            Resource::Dwell => "dwell",
        }
    }
}

/// The current price of `r`; `0.0` when the program was not built through
/// cargo panic or the run has no prices.
#[inline]
pub fn price(r: Resource) -> f64 {
    let f = resolved(&PRICE, SYM_PRICE);
    if f == absent() {
        return 0.0;
    }
    // SAFETY: `f` is what dlsym returned for `panic_price`, which the runtime
    // defines as `double panic_price(unsigned resource)`; every `Resource` is a
    // valid resource number.
    unsafe {
        let f: unsafe extern "C" fn(u32) -> f64 = core::mem::transmute(f);
        f(r as u32)
    }
}

/// A number that changes whenever the prices change (`0` without prices):
/// compare it with the last one seen to know whether to read the prices again.
#[inline]
pub fn prices_seq() -> u64 {
    let f = resolved(&PRICE_SEQ, SYM_PRICE_SEQ);
    if f == absent() {
        return 0;
    }
    // SAFETY: `f` is what dlsym returned for `panic_price_seq`, which the
    // runtime defines as `uint64_t panic_price_seq(void)`.
    unsafe {
        let f: unsafe extern "C" fn() -> u64 = core::mem::transmute(f);
        f()
    }
}

/// Whether the runtime's price API (both functions) was found, i.e. the
/// program was built through cargo panic (it may still run without prices:
/// they read 0).
pub fn instrumented() -> bool {
    resolved(&PRICE, SYM_PRICE) != absent() && resolved(&PRICE_SEQ, SYM_PRICE_SEQ) != absent()
}

/// `PANIC_SYM_PRICE` and `PANIC_SYM_PRICE_SEQ` of `runtime/c/panic_abi.h`
/// (checked by cargo-panic's tests against the exported symbols).
const SYM_PRICE: &CStr = c"panic_price";
const SYM_PRICE_SEQ: &CStr = c"panic_price_seq";

/// The cached lookups: null until looked up, then the symbol's address or
/// [`absent`]. Two threads may both look up on first use; they store the same
/// value, so the race is harmless, and `Relaxed` is enough: the value is not a
/// pointer to data another thread wrote, but to code the loader mapped before
/// dlsym could return it.
static PRICE: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
static PRICE_SEQ: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

/// The marker for "looked up, not there": the address of a static of ours,
/// which no lookup of the runtime's functions can return.
static ABSENT: u8 = 0;

#[inline]
fn absent() -> *mut c_void {
    (&raw const ABSENT).cast_mut().cast()
}

#[inline]
fn resolved(cache: &AtomicPtr<c_void>, name: &CStr) -> *mut c_void {
    let p = cache.load(Ordering::Relaxed);
    if p.is_null() { resolve(cache, name) } else { p }
}

#[cold]
#[inline(never)]
fn resolve(cache: &AtomicPtr<c_void>, name: &CStr) -> *mut c_void {
    let p = lookup(name);
    let p = if p.is_null() { absent() } else { p };
    cache.store(p, Ordering::Relaxed);
    p
}

#[cfg(target_os = "linux")]
fn lookup(name: &CStr) -> *mut c_void {
    unsafe extern "C" {
        fn dlsym(handle: *mut c_void, symbol: *const core::ffi::c_char) -> *mut c_void;
    }
    /// glibc and musl both define RTLD_DEFAULT as a null handle: search the
    /// global scope (the executable, then its libraries) in load order.
    const RTLD_DEFAULT: *mut c_void = core::ptr::null_mut();
    // SAFETY: `name` is NUL-terminated; dlsym only reads it.
    unsafe { dlsym(RTLD_DEFAULT, name.as_ptr()) }
}

#[cfg(not(target_os = "linux"))]
fn lookup(_name: &CStr) -> *mut c_void {
    core::ptr::null_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_numbers_are_the_runtimes() {
        let numbers: Vec<u32> = Resource::ALL.iter().map(|&r| r as u32).collect();
        assert_eq!(numbers, [0, 1, 2, 3, 4]);
        let names: Vec<&str> = Resource::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names, ["cpu", "memory", "io", "network", "dwell"]);
    }

    #[test]
    fn a_plain_build_reads_zero() {
        // Twice: the first call looks up, the second reads the cache.
        for _ in 0..2 {
            assert!(!instrumented());
            for r in Resource::ALL {
                assert_eq!(price(r), 0.0, "{r:?}");
            }
            assert_eq!(prices_seq(), 0);
        }
        assert_eq!(PRICE.load(Ordering::Relaxed), absent());
        assert_eq!(PRICE_SEQ.load(Ordering::Relaxed), absent());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_lookup_finds_what_the_process_exports() {
        // Not finding the runtime above means something only if the lookup
        // works: libc's own functions are in the global scope.
        let cache = AtomicPtr::new(core::ptr::null_mut());
        let p = resolved(&cache, c"getpid");
        assert!(!p.is_null() && p != absent());
        // SAFETY: getpid is `pid_t getpid(void)`, pid_t is i32 on Linux.
        let pid = unsafe {
            let f: unsafe extern "C" fn() -> i32 = core::mem::transmute(p);
            f()
        };
        assert_eq!(pid as u32, std::process::id());
        assert_eq!(resolved(&cache, c"getpid"), p, "cached");
    }
}
