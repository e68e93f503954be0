//! Resource prices and fuses from inside a program built with `cargo panic build`.
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
//! # Fuses
//!
//! A fuse is a named check the program makes to learn whether to shed that
//! work now: [`fuse!`] (or [`fuse()`]) answers `true` while the fuse of that name
//! is tripped, and the program then skips, defers or degrades the work.
//!
//! ```
//! # fn ingest() {}
//! # fn shed() {}
//! if cargo_panic::fuse!("ingest") {
//!     shed(); // drop or postpone this batch
//! } else {
//!     ingest();
//! }
//! ```
//!
//! The program only names its fuses; the rules that trip them (which fuse,
//! on what pressure) live in the run config of `cargo panic run --config`, so
//! the same binary sheds differently under different configs without a
//! rebuild. A fuse never trips outside cargo-panic: in a plain `cargo build`,
//! a run without a config or whose config has no fuses, or for a name the
//! config does not know, the answer is `false` ("go on").
//!
//! # How the runtime is found
//!
//! The runtime exports `panic_price`, `panic_price_seq` and `panic_fuse`
//! (`runtime/c/panic_abi.h`: `PANIC_SYM_PRICE`, `PANIC_SYM_PRICE_SEQ`,
//! `PANIC_SYM_FUSE`) from instrumented executables (cargo-panic's link driver
//! adds `--export-dynamic-symbol` for them). This crate
//! looks them up with `dlsym(RTLD_DEFAULT, ...)` on first use, not by linking to
//! them: stable Rust has no weak linkage, and a plain `cargo build` of the same
//! program has no runtime, so a direct reference would not link. The addresses
//! (or their absence) are cached, so after the first call a read is one relaxed
//! atomic load, a compare and an indirect call into the runtime: a few
//! nanoseconds. The first call takes the dynamic loader's lock; call
//! [`instrumented`] once at start-up if prices are read where that matters (a
//! signal handler); each function is looked up on its own first use, so call
//! [`fuse()`] once too if fuses are checked there.
//!
//! What finds nothing, so reads 0 (and no fuse trips): a binary not built through cargo panic, a
//! statically linked one (no dynamic symbol table), any OS but Linux. If a
//! shared library in the process carries its own copy of the runtime (C built
//! with `cargo panic cc`) and the executable none, that copy is found: it answers
//! like a run without prices or fuses (only the executable's runtime takes the
//! run's price and fuse maps).
//!
//! No dependencies (not even `libc`) and `no_std`: `dlsym` is declared here
//! (glibc >= 2.34 has it in libc itself, as has musl).
#![cfg_attr(not(test), no_std)]

use core::ffi::{CStr, c_char, c_int, c_void};
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

/// Whether to shed the work guarded by the fuse `name` now: `true` while the
/// run config of `cargo panic run --config` has that fuse tripped.
///
/// `false` ("go on") everywhere else: a program not built through cargo
/// panic, a run without fuses, a name the run does not know. A fuse never
/// trips outside cargo-panic, so the check can stay in the program
/// unconditionally. `name` is the fuse's name in the run config.
///
/// [`fuse!`] builds the name from a string literal at compile time:
/// `cargo_panic::fuse!("ingest")` is `fuse(c"ingest")`. Like the price
/// functions, the runtime's `panic_fuse` is looked up on first use (the
/// dynamic loader's lock) and cached; a later call is an indirect call into
/// the runtime, which looks the name up among the run's fuses.
#[inline]
pub fn fuse(name: &CStr) -> bool {
    let f = fuse_fn();
    if f == absent() {
        return false;
    }
    // SAFETY: `f` is what dlsym returned for `panic_fuse`, which the runtime
    // defines as `int panic_fuse(const char *name)`; `name` is NUL-terminated
    // and outlives the call, which only reads it.
    unsafe {
        let f: unsafe extern "C" fn(*const c_char) -> c_int = core::mem::transmute(f);
        f(name.as_ptr()) != 0
    }
}

/// `true` when the fuse named by the string literal is tripped: shed that work
/// now (see [`fuse()`](fn@fuse) and [the crate docs](crate#fuses)).
///
/// ```
/// # fn shed() {}
/// if cargo_panic::fuse!("ingest") {
///     shed();
/// }
/// ```
///
/// The name is turned into a NUL-terminated constant at compile time. What
/// no run config can name does not compile: anything but a string literal, an
/// empty name, one longer than [`FUSE_NAME_MAX`] bytes, one with a NUL byte.
///
/// ```compile_fail
/// cargo_panic::fuse!(7);
/// ```
///
/// ```compile_fail
/// cargo_panic::fuse!("");
/// ```
///
/// ```compile_fail
/// cargo_panic::fuse!("a-name-of-forty-eight-bytes-is-one-byte-too-long");
/// ```
///
/// ```compile_fail
/// cargo_panic::fuse!("in\0gest");
/// ```
#[macro_export]
macro_rules! fuse {
    ($name:literal $(,)?) => {
        $crate::fuse({
            const NAME: &::core::ffi::CStr = {
                const TEXT: &::core::primitive::str = $name;
                ::core::assert!(
                    !TEXT.is_empty() && TEXT.len() <= $crate::FUSE_NAME_MAX,
                    "a fuse name has 1 to FUSE_NAME_MAX (47) bytes"
                );
                match ::core::ffi::CStr::from_bytes_with_nul(
                    ::core::concat!($name, "\0").as_bytes(),
                ) {
                    ::core::result::Result::Ok(name) => name,
                    ::core::result::Result::Err(_) => {
                        ::core::panic!("a fuse name cannot contain a NUL byte")
                    }
                }
            };
            NAME
        })
    };
}

/// The longest name a fuse can have, in bytes, without the NUL
/// (`PANIC_FUSE_NAME_MAX` of the runtime's `panic.h`). A run config with a
/// longer name is refused, [`fuse!`] does not compile with one, and [`fuse()`]
/// asked for one answers `false`.
pub const FUSE_NAME_MAX: usize = 47;

#[cfg(not(test))]
#[inline]
fn fuse_fn() -> *mut c_void {
    resolved(&FUSE, SYM_FUSE)
}

/// The unit tests stand in for the runtime's `panic_fuse` on one thread.
#[cfg(test)]
fn fuse_fn() -> *mut c_void {
    tests::FAKE_PANIC_FUSE
        .with(core::cell::Cell::get)
        .map_or_else(|| resolved(&FUSE, SYM_FUSE), |f| f as *mut c_void)
}

/// `PANIC_SYM_PRICE`, `PANIC_SYM_PRICE_SEQ` and `PANIC_SYM_FUSE` of
/// `runtime/c/panic_abi.h` (checked by cargo-panic's tests, `tests/api.rs`,
/// against that header and the exported symbols).
const SYM_PRICE: &CStr = c"panic_price";
const SYM_PRICE_SEQ: &CStr = c"panic_price_seq";
const SYM_FUSE: &CStr = c"panic_fuse";

/// The cached lookups: null until looked up, then the symbol's address or
/// [`absent`]. Two threads may both look up on first use; they store the same
/// value, so the race is harmless, and `Relaxed` is enough: the value is not a
/// pointer to data another thread wrote, but to code the loader mapped before
/// dlsym could return it.
static PRICE: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
static PRICE_SEQ: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
static FUSE: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

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

    #[test]
    fn no_fuse_trips_in_a_plain_build() {
        // Twice: the first call looks up, the second reads the cache.
        for _ in 0..2 {
            assert!(!fuse(c"ingest"));
            assert!(!fuse(c""));
            assert!(!crate::fuse!("ingest"));
            assert!(!crate::fuse!("a name no run config has",));
        }
        assert_eq!(FUSE.load(Ordering::Relaxed), absent());
    }

    type PanicFuse = unsafe extern "C" fn(*const c_char) -> c_int;

    std::thread_local! {
        /// Set: `fuse` calls this instead of the runtime's `panic_fuse`.
        pub(super) static FAKE_PANIC_FUSE: core::cell::Cell<Option<PanicFuse>> =
            const { core::cell::Cell::new(None) };
        /// The names the fake was asked about, as it received them.
        static ASKED: core::cell::RefCell<Vec<Vec<u8>>> = const { core::cell::RefCell::new(Vec::new()) };
    }

    /// A runtime whose only tripped fuse is "ingest"; it answers 1 for it,
    /// as `panic_fuse` does (any nonzero value means "shed").
    unsafe extern "C" fn fake_panic_fuse(name: *const c_char) -> c_int {
        // SAFETY: `fuse` passes a NUL-terminated name that outlives the call.
        let name = unsafe { CStr::from_ptr(name) };
        ASKED.with_borrow_mut(|a| a.push(name.to_bytes_with_nul().to_vec()));
        c_int::from(name == c"ingest")
    }

    #[test]
    fn the_macro_asks_the_runtime_with_a_nul_terminated_name() {
        FAKE_PANIC_FUSE.set(Some(fake_panic_fuse));
        let answers = [
            crate::fuse!("ingest"),
            crate::fuse!("ingest-"),
            crate::fuse!("inges"),
            crate::fuse!("débit/é",),
            crate::fuse!("a-name-of-forty-seven-bytes-is-the-longest-name"),
            fuse(c"ingest"),
        ];
        FAKE_PANIC_FUSE.set(None);
        let asked = ASKED.take();
        assert_eq!(answers, [true, false, false, false, false, true]);
        let want: [&[u8]; 6] = [
            b"ingest\0",
            b"ingest-\0",
            b"inges\0",
            "débit/é\0".as_bytes(),
            b"a-name-of-forty-seven-bytes-is-the-longest-name\0",
            b"ingest\0",
        ];
        assert_eq!(asked, want);
    }

    #[test]
    fn the_macro_is_a_bool_expression() {
        // In a plain build: false, wherever a bool goes.
        let shed: bool = crate::fuse!("ingest");
        assert!(!shed);
        let n = if crate::fuse!("ingest") { 1 } else { 0 };
        assert_eq!(n, 0);
        // A raw string and escapes are string literals too.
        assert!(!crate::fuse!(r"a\b"));
        assert!(!crate::fuse!("tab\there"));
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
