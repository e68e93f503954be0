//! Which calls are sites: allocation, free, blocking I/O, lock acquisition and panic
//! paths, decided from the callee's symbol alone. Pure: no LLVM, no IO.
//!
//! Rust symbols are matched on their demangled path without hashes, C and C++
//! symbols on their raw or demangled names. The tables are the whole policy; a
//! callee that matches none of them is an ordinary call and gets no site.

use crate::names::demangle;

/// What a classified call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallClass {
    Alloc,
    Free,
    Blocking,
    Lock,
    Panic,
}

/// Plain C symbols (and the Rust allocator entry points after demangling).
const ALLOC: &[&str] = &[
    "__rust_alloc",
    "__rust_alloc_zeroed",
    "__rust_realloc",
    "malloc",
    "calloc",
    "realloc",
    "reallocarray",
    "aligned_alloc",
    "posix_memalign",
    "memalign",
    "valloc",
    "pvalloc",
];
const FREE: &[&str] = &["__rust_dealloc", "free", "cfree"];
const BLOCKING: &[&str] = &[
    "read",
    "write",
    "pread",
    "pread64",
    "pwrite",
    "pwrite64",
    "readv",
    "writev",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "send",
    "sendto",
    "sendmsg",
    "sendmmsg",
    "recv",
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "poll",
    "ppoll",
    "select",
    "pselect",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "accept",
    "accept4",
    "connect",
    "fsync",
    "fdatasync",
    "sync_file_range",
    "nanosleep",
    "clock_nanosleep",
    "usleep",
    "sleep",
    "wait",
    "waitpid",
    "waitid",
    "wait4",
    "pause",
    "sigwait",
    "sigwaitinfo",
    "sigtimedwait",
    "sigsuspend",
    "flock",
    "pthread_join",
    "io_uring_enter",
    "msgrcv",
    "msgsnd",
    "splice",
    "sendfile",
];
const LOCK: &[&str] = &[
    "pthread_mutex_lock",
    "pthread_mutex_timedlock",
    "pthread_mutex_clocklock",
    "pthread_rwlock_rdlock",
    "pthread_rwlock_wrlock",
    "pthread_rwlock_timedrdlock",
    "pthread_rwlock_timedwrlock",
    "pthread_rwlock_clockrdlock",
    "pthread_rwlock_clockwrlock",
    "pthread_cond_wait",
    "pthread_cond_timedwait",
    "pthread_cond_clockwait",
    "pthread_spin_lock",
    "pthread_barrier_wait",
    "sem_wait",
    "sem_timedwait",
    "sem_clockwait",
];
const PANIC: &[&str] = &[
    "rust_begin_unwind",
    "__rust_start_panic",
    "abort",
    "__assert_fail",
    "__cxa_throw",
    "__cxa_rethrow",
    "_ZSt9terminatev",
];

/// Rust paths (demangled, hash-free) whose calls are panic paths, by prefix.
const RUST_PANIC_PREFIXES: &[&str] = &[
    "core::panicking::",
    "std::panicking::begin_panic",
    "std::panicking::rust_panic_with_hook",
    "std::panic::resume_unwind",
    "std::panic::panic_any",
    "std::process::abort",
    "std::alloc::handle_alloc_error",
    "alloc::alloc::handle_alloc_error",
    "alloc::raw_vec::capacity_overflow",
    "alloc::raw_vec::handle_error",
    "core::result::unwrap_failed",
    "core::option::unwrap_failed",
    "core::option::expect_failed",
    "core::slice::index::slice_",
    "core::str::slice_error_fail",
    "core::cell::panic_already_",
];

/// Rust paths whose calls do blocking I/O (they make syscalls that can sleep).
const RUST_BLOCKING_PREFIXES: &[&str] = &[
    "std::io::stdio::",
    "std::io::default_read_to_end",
    "std::process::Child::wait",
    "std::process::Child::wait_with_output",
    "std::process::Command::output",
    "std::process::Command::status",
];

/// Last path segments of blocking functions anywhere under `std::thread`
/// (`std::thread::sleep` is `std::thread::functions::sleep` since Rust 1.9x).
const RUST_THREAD_BLOCKING_LEAVES: &[&str] = &[
    "sleep",
    "sleep_ms",
    "sleep_until",
    "park",
    "park_timeout",
    "park_timeout_ms",
    "join",
];

/// Substrings of Rust paths that denote blocking file, socket or process I/O
/// (`<std::fs::File as std::io::Read>::read`, `std::net::TcpListener::accept`,
/// `std::sys::net::...::recv`), wherever they appear in the demangled path.
const RUST_BLOCKING_PARTS: &[&str] = &[
    "std::io::stdio::",
    "std::fs::",
    "std::net::",
    "std::os::unix::net::",
    "std::sys::fs::",
    "std::sys::net::",
    "std::sys::pal::unix::fs::",
    "std::sys::pal::unix::net::",
    "std::sys::thread::",
    "std::sys::pal::unix::thread::",
    "std::sys::process::",
];

/// The last path segments of Rust lock slow paths and waits, when the path lies
/// under one of `RUST_LOCK_SCOPES`.
const RUST_LOCK_LEAVES: &[&str] = &[
    "lock_contended",
    "read_contended",
    "write_contended",
    "lock_slow",
    "lock_shared_slow",
    "lock_exclusive_slow",
    "lock_upgradable_slow",
    "wait",
    "wait_timeout",
    "wait_timeout_ms",
    "wait_while",
    "wait_timeout_while",
    "wait_optional_timeout",
    "recv",
    "recv_timeout",
    "recv_deadline",
    "futex_wait",
    "park",
];
const RUST_LOCK_SCOPES: &[&str] = &[
    "std::sys::sync::",
    "std::sync::",
    "std::sys::pal::unix::futex",
    "parking_lot::",
    "parking_lot_core::",
    "crossbeam_channel::",
];

/// Classifies a call by its callee's symbol.
pub fn classify_callee(symbol: &str) -> Option<CallClass> {
    let name = demangle(symbol);
    let plain = strip_rustc_namespace(&name);
    for (list, class) in [
        (ALLOC, CallClass::Alloc),
        (FREE, CallClass::Free),
        (LOCK, CallClass::Lock),
        (BLOCKING, CallClass::Blocking),
        (PANIC, CallClass::Panic),
    ] {
        if list.contains(&plain) {
            return Some(class);
        }
    }
    if let Some(class) = classify_cxx(symbol) {
        return Some(class);
    }
    let path = rust_path_without_generics(&name);
    if RUST_PANIC_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return Some(CallClass::Panic);
    }
    let leaf = path.rsplit("::").next().unwrap_or(&path);
    if RUST_LOCK_SCOPES.iter().any(|s| name.contains(s)) && RUST_LOCK_LEAVES.contains(&leaf) {
        return Some(CallClass::Lock);
    }
    if path.starts_with("std::thread::") && RUST_THREAD_BLOCKING_LEAVES.contains(&leaf) {
        return Some(CallClass::Blocking);
    }
    // Getting a handle (`std::io::stdin()`) does no I/O.
    if matches!(leaf, "stdin" | "stdout" | "stderr") {
        return None;
    }
    if RUST_BLOCKING_PREFIXES.iter().any(|p| path.starts_with(p))
        || RUST_BLOCKING_PARTS.iter().any(|p| name.contains(p))
    {
        return Some(CallClass::Blocking);
    }
    None
}

/// `futex(2)` reached through `syscall(SYS_futex, ...)` is a lock wait.
pub const SYS_FUTEX: u64 = 202;

/// The allocator entry points live in rustc's own namespace (`__rustc::__rust_alloc`).
fn strip_rustc_namespace(name: &str) -> &str {
    name.strip_prefix("__rustc::").unwrap_or(name)
}

/// `<std::fs::File as std::io::Read>::read` keeps its shape; generic arguments of a
/// plain path (`std::thread::JoinInner<T>::join`) are dropped for prefix matching.
fn rust_path_without_generics(name: &str) -> String {
    if name.starts_with('<') {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len());
    let mut depth = 0usize;
    for c in name.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Itanium-mangled `operator new`/`operator delete` (every variant) and the
/// `std::mutex`/`std::shared_mutex` lock paths.
fn classify_cxx(symbol: &str) -> Option<CallClass> {
    if symbol.starts_with("_Znw") || symbol.starts_with("_Zna") {
        return Some(CallClass::Alloc);
    }
    if symbol.starts_with("_Zdl") || symbol.starts_with("_Zda") {
        return Some(CallClass::Free);
    }
    if !symbol.starts_with("_Z") {
        return None;
    }
    let name = demangle(symbol);
    let lock_paths = [
        "std::mutex::lock",
        "std::timed_mutex::lock",
        "std::recursive_mutex::lock",
        "std::shared_mutex::lock",
        "std::shared_mutex::lock_shared",
        "std::condition_variable::wait",
        "std::__1::mutex::lock",
    ];
    if lock_paths.iter().any(|p| name.starts_with(p)) {
        return Some(CallClass::Lock);
    }
    if name.starts_with("std::this_thread::sleep_for") || name.starts_with("std::thread::join") {
        return Some(CallClass::Blocking);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Option<CallClass> {
        classify_callee(s)
    }

    #[test]
    fn rust_allocator_entry_points() {
        assert_eq!(
            c("_RNvCsfLfy6EI15iL_7___rustc12___rust_alloc"),
            Some(CallClass::Alloc)
        );
        assert_eq!(
            c("_RNvCsfLfy6EI15iL_7___rustc14___rust_dealloc"),
            Some(CallClass::Free)
        );
        assert_eq!(
            c("_RNvCsfLfy6EI15iL_7___rustc14___rust_realloc"),
            Some(CallClass::Alloc)
        );
        assert_eq!(c("__rust_alloc_zeroed"), Some(CallClass::Alloc));
        // The shim's own callee is not an allocation site.
        assert_eq!(c("_RNvCsfLfy6EI15iL_7___rustc11___rdl_alloc"), None);
    }

    #[test]
    fn c_library_calls() {
        assert_eq!(c("malloc"), Some(CallClass::Alloc));
        assert_eq!(c("free"), Some(CallClass::Free));
        assert_eq!(c("epoll_wait"), Some(CallClass::Blocking));
        assert_eq!(c("pthread_mutex_lock"), Some(CallClass::Lock));
        assert_eq!(c("abort"), Some(CallClass::Panic));
        assert_eq!(c("memcpy"), None);
        assert_eq!(c("readdir"), None);
    }

    #[test]
    fn rust_std_paths() {
        // std::thread::sleep
        assert_eq!(
            c("_ZN3std6thread5sleep17h1234567890abcdefE"),
            Some(CallClass::Blocking)
        );
        // std::io::stdio::stdin only returns a handle.
        assert_eq!(c("_ZN3std2io5stdio5stdin17h0123456789abcdefE"), None);
        // std::thread::functions::sleep (v0 mangling, Rust 1.95)
        assert_eq!(
            c("_RNvNtNtCsjrHSEGnQ3l9_3std6thread9functions5sleep"),
            Some(CallClass::Blocking)
        );
        // std::thread::JoinInner<T>::join
        assert_eq!(
            c("_ZN3std6thread18JoinInner$LT$T$GT$4join17h0123456789abcdefE"),
            Some(CallClass::Blocking)
        );
        // std::sys::sync::mutex::futex::Mutex::lock_contended
        assert_eq!(
            c("_ZN3std3sys4sync5mutex5futex5Mutex14lock_contended17h0123456789abcdefE"),
            Some(CallClass::Lock)
        );
        // <std::fs::File as std::io::Read>::read
        assert_eq!(
            c("_ZN47_$LT$std..fs..File$u20$as$u20$std..io..Read$GT$4read17h0123456789abcdefE"),
            Some(CallClass::Blocking)
        );
        // core::panicking::panic_fmt
        assert_eq!(
            c("_ZN4core9panicking9panic_fmt17h0123456789abcdefE"),
            Some(CallClass::Panic)
        );
        // core::result::unwrap_failed
        assert_eq!(
            c("_ZN4core6result13unwrap_failed17h0123456789abcdefE"),
            Some(CallClass::Panic)
        );
        // alloc::vec::Vec<T>::push is an ordinary call.
        assert_eq!(
            c("_ZN5alloc3vec16Vec$LT$T$C$A$GT$4push17h0123456789abcdefE"),
            None
        );
        // A user function called `wait` outside lock scopes is not a lock.
        assert_eq!(c("_ZN5myapp4wait17h0123456789abcdefE"), None);
        // <std::io::stdio::Stdin as std::io::Read>::read_to_end
        assert_eq!(
            c(
                "_ZN55_$LT$std..io..stdio..Stdin$u20$as$u20$std..io..Read$GT$11read_to_end17h0123456789abcdefE"
            ),
            Some(CallClass::Blocking)
        );
    }

    #[test]
    fn cxx_operators_and_locks() {
        assert_eq!(c("_Znwm"), Some(CallClass::Alloc));
        assert_eq!(c("_ZnamRKSt9nothrow_t"), Some(CallClass::Alloc));
        assert_eq!(c("_ZdlPvm"), Some(CallClass::Free));
        assert_eq!(c("_ZdaPv"), Some(CallClass::Free));
        assert_eq!(c("__cxa_throw"), Some(CallClass::Panic));
        assert_eq!(c("_ZNSt5mutex4lockEv"), Some(CallClass::Lock));
    }
}
