//! Which calls are sites: allocation, free, blocking I/O, lock acquisition and panic
//! paths, decided from the callee's symbol alone. Pure: no LLVM, no IO.
//!
//! Rust symbols are matched on their demangled path without hashes, C symbols on
//! their raw names, and C++ symbols on their demangled path without return type,
//! template arguments or parameters (`std::mutex::lock`). The tables are the whole
//! policy; a callee that matches none of them is an ordinary call and gets no site.
//!
//! For the `touches` lists (`crate::touches`) it also says which argument of a
//! lock call is the lock ([`lock_argument`]) and whether a call works on a file
//! or a socket ([`io_resource`]).

use crate::names::{demangle, demangle_cxx_parts};

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
    "strdup",
    "strndup",
    "__strdup",
    "__strndup",
];
const FREE: &[&str] = &["__rust_dealloc", "free", "cfree"];
/// Blocking calls on files and stdio streams (`read` and `write` included,
/// whatever the descriptor is: the callee does not say). C stdio reads or writes
/// the stream's file once its buffer is empty or full, and can sleep on it.
/// Formatted output (`printf`, `puts`, `fprintf`) is left out: it is called far
/// too often, and mostly only fills the buffer.
const BLOCKING_FILE: &[&str] = &[
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
    "fsync",
    "fdatasync",
    "sync_file_range",
    "flock",
    "splice",
    "sendfile",
    "io_uring_enter",
    "fread",
    "fwrite",
    "fgets",
    "getline",
    "getdelim",
    "fflush",
];
/// Blocking calls on sockets. The waits on sets of descriptors (`poll`,
/// `select`, `epoll_wait`) count as sockets: what a program waits for that way
/// is nearly always the network.
const BLOCKING_SOCKET: &[&str] = &[
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
];
/// Blocking calls that wait for time, processes, threads, signals or message
/// queues: no I/O object.
const BLOCKING_WAIT: &[&str] = &[
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
    "pthread_join",
    "msgrcv",
    "msgsnd",
];
/// Acquisitions and waits on a lock or on another thread's signal: mutexes, rwlocks,
/// spinlocks, semaphores, condition variables and barriers. `pthread_join` waits
/// for a thread to end, not for a lock, and is `BLOCKING_WAIT`.
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
    "__assert_perror_fail",
    "__stack_chk_fail",
    "exit",
    "_exit",
    "_Exit",
    "quick_exit",
    // C++ throws and the runtime's own terminate paths. `_Unwind_Resume` is not
    // here: it only carries an unwind already under way on to the next frame.
    "__cxa_throw",
    "__cxa_rethrow",
    "__cxa_pure_virtual",
    "__cxa_deleted_virtual",
    "__cxa_bad_cast",
    "__cxa_bad_typeid",
    "__cxa_throw_bad_array_new_length",
    "__clang_call_terminate",
    // `__builtin_trap()` and UBSan's trap mode. The instrumenter drops `llvm.*`
    // callees before it asks (`classify_call` in instrument.rs), so these count
    // only once it lets the trap intrinsics through.
    "llvm.trap",
    "llvm.ubsantrap",
];

/// C++ paths as `cxx_path` gives them (no return type, template arguments or
/// parameters; no inline namespace), matched exactly. At -O0 clang calls the
/// inline wrappers too (`std::unique_lock::lock` -> `std::mutex::lock` ->
/// `__gthread_mutex_lock` -> `pthread_mutex_lock`), so each layer is listed.
const CXX_ALLOC: &[&str] = &["operator new", "operator new[]"];
const CXX_FREE: &[&str] = &["operator delete", "operator delete[]"];
const CXX_LOCK: &[&str] = &[
    "std::mutex::lock",
    "std::recursive_mutex::lock",
    "std::timed_mutex::lock",
    "std::timed_mutex::try_lock_for",
    "std::timed_mutex::try_lock_until",
    "std::recursive_timed_mutex::lock",
    "std::recursive_timed_mutex::try_lock_for",
    "std::recursive_timed_mutex::try_lock_until",
    "std::shared_mutex::lock",
    "std::shared_mutex::lock_shared",
    "std::shared_timed_mutex::lock",
    "std::shared_timed_mutex::lock_shared",
    "std::shared_timed_mutex::try_lock_for",
    "std::shared_timed_mutex::try_lock_until",
    "std::shared_timed_mutex::try_lock_shared_for",
    "std::shared_timed_mutex::try_lock_shared_until",
    "std::unique_lock::lock",
    "std::unique_lock::try_lock_for",
    "std::unique_lock::try_lock_until",
    "std::shared_lock::lock",
    "std::shared_lock::try_lock_for",
    "std::shared_lock::try_lock_until",
    "std::lock",
    "std::condition_variable::wait",
    "std::condition_variable::wait_for",
    "std::condition_variable::wait_until",
    "std::condition_variable_any::wait",
    "std::condition_variable_any::wait_for",
    "std::condition_variable_any::wait_until",
    // libstdc++'s inline layers over pthreads.
    "std::__condvar::wait",
    "std::__condvar::wait_until",
    "std::__shared_mutex_pthread::lock",
    "std::__shared_mutex_pthread::lock_shared",
    "std::__shared_mutex_cv::lock",
    "std::__shared_mutex_cv::lock_shared",
    "std::__glibcxx_rwlock_rdlock",
    "std::__glibcxx_rwlock_wrlock",
    "std::__glibcxx_rwlock_timedrdlock",
    "std::__glibcxx_rwlock_timedwrlock",
    "__gthread_mutex_lock",
    "__gthread_mutex_timedlock",
    "__gthread_recursive_mutex_lock",
    "__gthread_recursive_mutex_timedlock",
    "__gthread_cond_wait",
    "__gthread_cond_timedwait",
];
/// RAII guards whose constructor acquires, unless given a tag that says the lock is
/// already held, deferred or only tried (or moved from another guard).
const CXX_LOCK_GUARDS: &[&str] = &[
    "std::lock_guard",
    "std::scoped_lock",
    "std::unique_lock",
    "std::shared_lock",
];
const CXX_LOCK_TAGS: &[&str] = &[
    "std::adopt_lock_t",
    "std::defer_lock_t",
    "std::try_to_lock_t",
];
const CXX_BLOCKING: &[&str] = &[
    "std::thread::join",
    "std::this_thread::sleep_for",
    "std::this_thread::sleep_until",
];
const CXX_PANIC: &[&str] = &[
    "std::terminate",
    "std::rethrow_exception",
    "std::__glibcxx_assert_fail",
];
/// libstdc++'s `std::__throw_length_error` and kin, libc++'s `std::__throw_bad_alloc`.
const CXX_PANIC_PREFIXES: &[&str] = &["std::__throw_"];
/// Inline namespaces of libc++ (`__1`), libstdc++'s new ABI (`__cxx11`,
/// `_V2`) and its versioned build (`__8`), dropped from paths.
const CXX_INLINE_NAMESPACES: &[&str] = &["__1::", "__cxx11::", "_V2::", "__8::"];

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
/// The acquiring methods of std's lock types (`std::sync::Mutex::lock`,
/// `RwLock::read`/`write`), by type: a call to one that was not inlined is
/// a lock site in the caller, so a wait names the program's own line (the
/// slow path inside, `lock_contended`, is a lock site of std's).
const RUST_STD_LOCK_METHODS: &[(&str, &[&str])] = &[
    ("::Mutex::", &["lock"]),
    ("::RwLock::", &["read", "write"]),
    ("::ReentrantLock::", &["lock"]),
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
        (BLOCKING_FILE, CallClass::Blocking),
        (BLOCKING_SOCKET, CallClass::Blocking),
        (BLOCKING_WAIT, CallClass::Blocking),
        (PANIC, CallClass::Panic),
    ] {
        if list.contains(&plain) {
            return Some(class);
        }
    }
    if let Some((name, params)) = demangle_cxx_parts(symbol) {
        return classify_cxx(&cxx_path(&name), &params);
    }
    let path = rust_path_without_generics(&name);
    if RUST_PANIC_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return Some(CallClass::Panic);
    }
    let leaf = path.rsplit("::").next().unwrap_or(&path);
    if RUST_LOCK_SCOPES.iter().any(|s| name.contains(s)) && RUST_LOCK_LEAVES.contains(&leaf) {
        return Some(CallClass::Lock);
    }
    if path.starts_with("std::sync::")
        && RUST_STD_LOCK_METHODS
            .iter()
            .any(|(ty, methods)| path.contains(ty) && methods.contains(&leaf))
    {
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

/// Where a site's call can be made to fail (fault injection; the manifest's
/// `fault`): how the runtime fails it, and so which faults make sense there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultPoint {
    /// An allocation whose size arguments the code can replace
    /// ([`alloc_size_args`]): the allocator itself refuses it.
    Alloc,
    /// A blocking call on a file or stdio stream: ENOSPC, EIO, EINTR.
    File,
    /// A blocking call on a socket or a wait on descriptors: EINTR.
    Socket,
    /// A wait for time, a process, a thread or a signal: EINTR.
    Wait,
}

/// The size arguments of an allocation call, by its callee's symbol: the
/// arguments a failed allocation gets `PANIC_FAULT_HUGE` in, so that the real
/// allocator refuses it. None for callees without one (`strdup` sizes from
/// its string) and for anything that is not an allocation.
pub fn alloc_size_args(symbol: &str) -> Option<&'static [u32]> {
    let name = demangle(symbol);
    let by_name: &'static [u32] = match strip_rustc_namespace(&name) {
        "__rust_alloc" | "__rust_alloc_zeroed" | "malloc" | "valloc" | "pvalloc" => &[0],
        // __rust_realloc(ptr, old_size, align, new_size)
        "__rust_realloc" => &[3],
        "calloc" => &[0, 1],
        "realloc" => &[1],
        "reallocarray" => &[1, 2],
        "aligned_alloc" | "memalign" => &[1],
        "posix_memalign" => &[2],
        _ => {
            // Every non-placement operator new and new[] takes the size first.
            return (classify_callee(symbol) == Some(CallClass::Alloc)
                && demangle_cxx_parts(symbol).is_some())
            .then_some(&[0]);
        }
    };
    Some(by_name)
}

/// Where a site of class `class` calling `symbol` can be failed, if anywhere.
pub fn fault_point(class: CallClass, symbol: &str) -> Option<FaultPoint> {
    match class {
        CallClass::Alloc => alloc_size_args(symbol).map(|_| FaultPoint::Alloc),
        CallClass::Blocking => Some(match io_resource(symbol) {
            Some(IoResource::File) => FaultPoint::File,
            Some(IoResource::Socket) => FaultPoint::Socket,
            None => FaultPoint::Wait,
        }),
        _ => None,
    }
}

/// `futex(2)` reached through `syscall(SYS_futex, ...)` is a lock wait.
pub const SYS_FUTEX: u64 = 202;

/// `syscall(SYS_futex, addr, ...)`: the futex word, the lock, is argument 1.
pub const SYS_FUTEX_ADDR_ARG: u32 = 1;

/// Which argument of a lock call names the lock: the first, except for a C++
/// guard's constructor, whose first argument is `this` (the guard) and whose
/// second is the lockable (`std::lock_guard<std::mutex>::lock_guard(std::mutex&)`).
pub fn lock_argument(symbol: &str) -> u32 {
    match demangle_cxx_parts(symbol) {
        Some((name, params)) if is_acquiring_guard(&cxx_path(&name), &params) => 1,
        _ => 0,
    }
}

/// The kind of I/O object a call works on, for the `file:`/`socket:` touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoResource {
    /// A file or a stdio stream (`io`).
    File,
    /// A socket (`network`).
    Socket,
}

/// C calls that make, name or close a socket: not sites, but socket use.
const SOCKET_SETUP: &[&str] = &["socket", "socketpair", "bind", "listen", "shutdown"];
/// C calls that open a file or stream: not sites, but file use.
const FILE_OPEN: &[&str] = &[
    "open", "open64", "openat", "openat64", "creat", "creat64", "fopen", "fopen64", "freopen",
    "fdopen",
];
/// Parts of Rust paths (of blocking calls) that work on sockets.
const RUST_SOCKET_PARTS: &[&str] = &[
    "std::net::",
    "std::os::unix::net::",
    "std::sys::net::",
    "std::sys::pal::unix::net::",
];
/// Parts of Rust paths (of blocking calls) that work on files or stdio.
const RUST_FILE_PARTS: &[&str] = &[
    "std::io::stdio::",
    "std::io::default_read_to_end",
    "std::fs::",
    "std::sys::fs::",
    "std::sys::pal::unix::fs::",
];

/// The I/O object a call works on, by its callee's symbol. Blocking calls that
/// wait for time, processes, threads, signals or message queues (`nanosleep`,
/// `waitpid`, `pthread_join`, `sigwait`, `msgrcv`, `std::thread::sleep`,
/// `std::process::Child::wait`) work on neither.
pub fn io_resource(symbol: &str) -> Option<IoResource> {
    if BLOCKING_SOCKET.contains(&symbol) || SOCKET_SETUP.contains(&symbol) {
        return Some(IoResource::Socket);
    }
    if BLOCKING_FILE.contains(&symbol) || FILE_OPEN.contains(&symbol) {
        return Some(IoResource::File);
    }
    // C++: none of `CXX_BLOCKING` is I/O. Rust: only what does I/O (getting a
    // handle such as `std::io::stdout()` does not).
    let Ok(rust) = rustc_demangle::try_demangle(symbol) else {
        return None;
    };
    if classify_callee(symbol) != Some(CallClass::Blocking) {
        return None;
    }
    let name = format!("{rust:#}");
    if RUST_SOCKET_PARTS.iter().any(|p| name.contains(p)) {
        Some(IoResource::Socket)
    } else if RUST_FILE_PARTS.iter().any(|p| name.contains(p)) {
        Some(IoResource::File)
    } else {
        None
    }
}

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
    strip_generics(name)
}

/// `name` without anything between (nested) angle brackets.
pub(crate) fn strip_generics(name: &str) -> String {
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

/// A C++ callee by its path and parameter list (`demangle_cxx_parts`).
fn classify_cxx(path: &str, params: &str) -> Option<CallClass> {
    // Placement new and delete (`operator new(unsigned long, void*)`) only hand
    // back the pointer they are given.
    let placement = params.ends_with(", void*)");
    if CXX_ALLOC.contains(&path) {
        return (!placement).then_some(CallClass::Alloc);
    }
    if CXX_FREE.contains(&path) {
        return (!placement).then_some(CallClass::Free);
    }
    if CXX_LOCK.contains(&path) || is_acquiring_guard(path, params) {
        return Some(CallClass::Lock);
    }
    if CXX_BLOCKING.contains(&path) {
        return Some(CallClass::Blocking);
    }
    if CXX_PANIC.contains(&path) || CXX_PANIC_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return Some(CallClass::Panic);
    }
    None
}

/// `std::lock_guard<M>::lock_guard(M&)` and the like: a guard's constructor whose
/// first parameter is the lockable (`&`, not a moved-from guard's `&&`) and that
/// has no tag parameter.
fn is_acquiring_guard(path: &str, params: &str) -> bool {
    let Some((class, ctor)) = path.rsplit_once("::") else {
        return false;
    };
    let first = first_param(params);
    CXX_LOCK_GUARDS.contains(&class)
        && class.rsplit("::").next() == Some(ctor)
        && first.ends_with('&')
        && !first.ends_with("&&")
        && !CXX_LOCK_TAGS.iter().any(|t| params.contains(t))
}

/// The first parameter of `(A<B, C>&, D)`: `A<B, C>&`.
fn first_param(params: &str) -> &str {
    let inner = params.strip_prefix('(').unwrap_or(params);
    let mut depth = 0usize;
    for (i, c) in inner.char_indices() {
        match c {
            '<' | '(' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            ')' if depth == 0 => return &inner[..i],
            ')' => depth -= 1,
            ',' if depth == 0 => return &inner[..i],
            _ => {}
        }
    }
    inner
}

/// A demangled C++ name without template arguments or inline namespaces:
/// `std::__1::unique_lock<std::__1::mutex>::lock` -> `std::unique_lock::lock`. A
/// name with a `<` or `>` operator in it is kept whole; no table lists one.
fn cxx_path(name: &str) -> String {
    let mut path = String::with_capacity(name.len());
    if name.contains("operator<") || name.contains("operator>") || name.contains("operator-") {
        path.push_str(name);
    } else {
        let mut depth = 0usize;
        for c in name.chars() {
            match c {
                '<' => depth += 1,
                '>' => depth = depth.saturating_sub(1),
                _ if depth == 0 => path.push(c),
                _ => {}
            }
        }
    }
    for ns in CXX_INLINE_NAMESPACES {
        path = path.replace(&format!("std::{ns}"), "std::");
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Option<CallClass> {
        classify_callee(s)
    }

    #[test]
    fn allocation_sizes_and_fault_points() {
        let a = alloc_size_args;
        assert_eq!(
            a("_RNvCsfLfy6EI15iL_7___rustc12___rust_alloc"),
            Some(&[0][..])
        );
        assert_eq!(
            a("_RNvCsfLfy6EI15iL_7___rustc14___rust_realloc"),
            Some(&[3][..])
        );
        assert_eq!(a("calloc"), Some(&[0, 1][..]));
        assert_eq!(a("realloc"), Some(&[1][..]));
        assert_eq!(a("reallocarray"), Some(&[1, 2][..]));
        assert_eq!(a("posix_memalign"), Some(&[2][..]));
        assert_eq!(a("aligned_alloc"), Some(&[1][..]));
        for new in [
            "_Znwm",
            "_Znam",
            "_ZnwmRKSt9nothrow_t",
            "_ZnamSt11align_val_tRKSt9nothrow_t",
        ] {
            assert_eq!(a(new), Some(&[0][..]), "{new}");
        }
        // Sized by their string; placement new allocates nothing; not allocations.
        for none in ["strdup", "strndup", "_ZnwmPv", "free", "write", "_ZdlPv"] {
            assert_eq!(a(none), None, "{none}");
        }
        let f = |class, s| fault_point(class, s);
        assert_eq!(f(CallClass::Alloc, "malloc"), Some(FaultPoint::Alloc));
        assert_eq!(f(CallClass::Alloc, "strdup"), None);
        assert_eq!(f(CallClass::Blocking, "fwrite"), Some(FaultPoint::File));
        assert_eq!(f(CallClass::Blocking, "accept"), Some(FaultPoint::Socket));
        assert_eq!(f(CallClass::Blocking, "nanosleep"), Some(FaultPoint::Wait));
        assert_eq!(f(CallClass::Lock, "pthread_mutex_lock"), None);
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
        // std::sync::poison::mutex::Mutex<T>::lock and RwLock<T>::write, not
        // inlined: lock calls of the caller; a channel's slot read is not.
        assert_eq!(
            c("_ZN3std4sync6poison5mutex14Mutex$LT$T$GT$4lock17h0123456789abcdefE"),
            Some(CallClass::Lock)
        );
        assert_eq!(
            c("_ZN3std4sync6poison6rwlock15RwLock$LT$T$GT$5write17h0123456789abcdefE"),
            Some(CallClass::Lock)
        );
        assert_eq!(
            c("_ZN3std4sync4mpmc5array16Channel$LT$T$GT$4read17h0123456789abcdefE"),
            None
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

    /// Every `operator new`/`delete` variant clang-19 emits (from `-O0 -emit-llvm`
    /// of `new`, `new[]`, `new (std::nothrow)` and over-aligned types), and the ones
    /// it emits without sized deallocation.
    #[test]
    fn cxx_global_operators_every_variant() {
        for sym in [
            "_Znwm",
            "_ZnwmRKSt9nothrow_t",
            "_ZnwmSt11align_val_t",
            "_ZnwmSt11align_val_tRKSt9nothrow_t",
            "_Znam",
            "_ZnamRKSt9nothrow_t",
            "_ZnamSt11align_val_t",
            "_ZnamSt11align_val_tRKSt9nothrow_t",
            // 32-bit targets: `unsigned int`.
            "_Znwj",
        ] {
            assert_eq!(c(sym), Some(CallClass::Alloc), "{sym}");
        }
        for sym in [
            "_ZdlPv",
            "_ZdlPvm",
            "_ZdlPvSt11align_val_t",
            "_ZdlPvmSt11align_val_t",
            "_ZdlPvRKSt9nothrow_t",
            "_ZdlPvSt11align_val_tRKSt9nothrow_t",
            "_ZdaPv",
            "_ZdaPvm",
            "_ZdaPvSt11align_val_t",
            "_ZdaPvmSt11align_val_t",
            "_ZdaPvRKSt9nothrow_t",
            "_ZdaPvSt11align_val_tRKSt9nothrow_t",
        ] {
            assert_eq!(c(sym), Some(CallClass::Free), "{sym}");
        }
        // Placement forms only pass the pointer through.
        assert_eq!(c("_ZnwmPv"), None);
        assert_eq!(c("_ZnamPv"), None);
        assert_eq!(c("_ZdlPvS_"), None);
        assert_eq!(c("_ZdaPvS_"), None);
        // A class's own `Foo::operator new` is an ordinary call.
        assert_eq!(c("_ZN3FoonwEm"), None);
    }

    #[test]
    fn c_allocation_and_stdio() {
        assert_eq!(c("strdup"), Some(CallClass::Alloc));
        assert_eq!(c("strndup"), Some(CallClass::Alloc));
        for sym in [
            "fread", "fwrite", "fgets", "getline", "getdelim", "fflush", "fsync",
        ] {
            assert_eq!(c(sym), Some(CallClass::Blocking), "{sym}");
        }
        // Buffered formatted output is too hot to be a site.
        for sym in [
            "printf", "puts", "fprintf", "fputs", "putchar", "fopen", "fclose",
        ] {
            assert_eq!(c(sym), None, "{sym}");
        }
    }

    #[test]
    fn pthread_and_semaphore_waits() {
        for sym in [
            "pthread_mutex_lock",
            "pthread_mutex_timedlock",
            "pthread_mutex_clocklock",
            "pthread_rwlock_rdlock",
            "pthread_rwlock_wrlock",
            "pthread_rwlock_timedrdlock",
            "pthread_rwlock_timedwrlock",
            "pthread_rwlock_clockrdlock",
            "pthread_rwlock_clockwrlock",
            "pthread_spin_lock",
            "sem_wait",
            "sem_timedwait",
            "sem_clockwait",
            "pthread_cond_wait",
            "pthread_cond_timedwait",
            "pthread_cond_clockwait",
            "pthread_barrier_wait",
        ] {
            assert_eq!(c(sym), Some(CallClass::Lock), "{sym}");
        }
        assert_eq!(c("pthread_join"), Some(CallClass::Blocking));
        for sym in [
            "pthread_mutex_trylock",
            "pthread_mutex_unlock",
            "pthread_rwlock_unlock",
            "pthread_cond_signal",
            "sem_post",
            "sem_trywait",
        ] {
            assert_eq!(c(sym), None, "{sym}");
        }
    }

    /// Mangled names as clang-19 -O0 emits them against libstdc++ 12 (C++20).
    #[test]
    fn cxx_lock_paths() {
        for sym in [
            // std::mutex::lock(), std::recursive_mutex::lock(), std::timed_mutex::lock()
            "_ZNSt5mutex4lockEv",
            "_ZNSt15recursive_mutex4lockEv",
            "_ZNSt11timed_mutex4lockEv",
            // bool std::timed_mutex::try_lock_for<long, std::ratio<1, 1>>(duration const&)
            "_ZNSt11timed_mutex12try_lock_forIlSt5ratioILl1ELl1EEEEbRKNSt6chrono8durationIT_T0_EE",
            "_ZNSt21recursive_timed_mutex4lockEv",
            "_ZNSt12shared_mutex4lockEv",
            "_ZNSt12shared_mutex11lock_sharedEv",
            "_ZNSt18shared_timed_mutex4lockEv",
            "_ZNSt18shared_timed_mutex11lock_sharedEv",
            // std::condition_variable::wait(std::unique_lock<std::mutex>&), its
            // predicate template, wait_for, and condition_variable_any in `_V2`.
            "_ZNSt18condition_variable4waitERSt11unique_lockISt5mutexE",
            "_ZNSt18condition_variable4waitIZ1fiE3$_0EEvRSt11unique_lockISt5mutexET_",
            "_ZNSt18condition_variable8wait_forIlSt5ratioILl1ELl1EEEESt9cv_statusRSt11unique_lockISt5mutexERKNSt6chrono8durationIT_T0_EE",
            "_ZNSt3_V222condition_variable_any4waitISt11unique_lockISt5mutexEEEvRT_",
            // std::unique_lock<std::mutex>::lock()
            "_ZNSt11unique_lockISt5mutexE4lockEv",
            "_ZNSt11unique_lockISt15recursive_mutexE4lockEv",
            // Guard constructors that acquire.
            "_ZNSt10lock_guardISt5mutexEC2ERS0_",
            "_ZNSt10lock_guardISt5mutexEC1ERS0_",
            "_ZNSt11scoped_lockIJSt5mutexEEC2ERS0_",
            "_ZNSt11scoped_lockIJSt5mutexSt15recursive_mutexEEC2ERS0_RS1_",
            "_ZNSt11unique_lockISt5mutexEC2ERS0_",
            "_ZNSt11shared_lockISt12shared_mutexEC2ERS0_",
            // unique_lock<timed_mutex>(m, 1s): a template constructor.
            "_ZNSt11unique_lockISt11timed_mutexEC2IlSt5ratioILl1ELl1EEEERS0_RKNSt6chrono8durationIT_T0_EE",
            // void std::lock<std::mutex, std::recursive_mutex>(...)
            "_ZSt4lockISt5mutexSt15recursive_mutexJEEvRT_RT0_DpRT1_",
            // libstdc++'s inline layers: gthr-posix.h, <shared_mutex>, std::__condvar.
            "_ZL20__gthread_mutex_lockP15pthread_mutex_t",
            "_ZL30__gthread_recursive_mutex_lockP15pthread_mutex_t",
            "_ZStL23__glibcxx_rwlock_rdlockP16pthread_rwlock_t",
            "_ZStL23__glibcxx_rwlock_wrlockP16pthread_rwlock_t",
            "_ZNSt22__shared_mutex_pthread4lockEv",
            "_ZNSt22__shared_mutex_pthread11lock_sharedEv",
            "_ZNSt9__condvar10wait_untilERSt5mutexiR8timespec",
            // libc++: std::__1::mutex::lock()
            "_ZNSt3__15mutex4lockEv",
        ] {
            assert_eq!(c(sym), Some(CallClass::Lock), "{sym}");
        }
        for sym in [
            "_ZNSt5mutex6unlockEv",
            "_ZNSt5mutex8try_lockEv",
            "_ZNSt15recursive_mutex8try_lockEv",
            "_ZL23__gthread_mutex_trylockP15pthread_mutex_t",
            "_ZNSt12shared_mutex13unlock_sharedEv",
            "_ZNSt10lock_guardISt5mutexED2Ev",
            "_ZNSt11unique_lockISt5mutexED2Ev",
            "_ZNSt11unique_lockISt5mutexE6unlockEv",
            "_ZNKSt11unique_lockISt5mutexE9owns_lockEv",
            "_ZNSt18condition_variableC1Ev",
            // Tagged guards: already held, deferred, only tried.
            "_ZNSt10lock_guardISt5mutexEC2ERS0_St12adopt_lock_t",
            "_ZNSt11scoped_lockIJSt5mutexEEC2ESt12adopt_lock_tRS0_",
            "_ZNSt11unique_lockISt5mutexEC2ERS0_St12defer_lock_t",
            "_ZNSt11unique_lockISt5mutexEC2ERS0_St13try_to_lock_t",
            // Moved from another guard.
            "_ZNSt11unique_lockISt5mutexEC2EOS1_",
        ] {
            assert_eq!(c(sym), None, "{sym}");
        }
    }

    #[test]
    fn cxx_blocking_paths() {
        for sym in [
            // std::thread::join()
            "_ZNSt6thread4joinEv",
            // void std::this_thread::sleep_for<long, std::ratio<1, 1000>>(...)
            "_ZNSt11this_thread9sleep_forIlSt5ratioILl1ELl1000EEEEvRKNSt6chrono8durationIT_T0_EE",
        ] {
            assert_eq!(c(sym), Some(CallClass::Blocking), "{sym}");
        }
        assert_eq!(c("_ZNKSt6thread8joinableEv"), None);
    }

    #[test]
    fn c_and_cxx_panic_paths() {
        for sym in [
            "abort",
            "__assert_fail",
            "__stack_chk_fail",
            "exit",
            "_exit",
            "_Exit",
            "quick_exit",
            "__cxa_throw",
            "__cxa_rethrow",
            "__cxa_pure_virtual",
            "__clang_call_terminate",
            "llvm.trap",
            "llvm.ubsantrap",
            // std::terminate()
            "_ZSt9terminatev",
            // libstdc++'s std::__throw_* helpers
            "_ZSt20__throw_length_errorPKc",
            "_ZSt17__throw_bad_allocv",
            "_ZSt24__throw_out_of_range_fmtPKcz",
            "_ZSt19__throw_logic_errorPKc",
            "_ZSt20__throw_system_errori",
            "_ZSt28__throw_bad_array_new_lengthv",
            "_ZSt25__throw_bad_function_callv",
        ] {
            assert_eq!(c(sym), Some(CallClass::Panic), "{sym}");
        }
        // Unwinding plumbing and exception bookkeeping are not panics.
        for sym in [
            "_Unwind_Resume",
            "__cxa_allocate_exception",
            "__cxa_begin_catch",
            "__cxa_end_catch",
            "__gxx_personality_v0",
            "llvm.memcpy.p0.p0.i64",
        ] {
            assert_eq!(c(sym), None, "{sym}");
        }
    }

    #[test]
    fn io_resources_by_callee() {
        let io = io_resource;
        for sym in [
            "send",
            "recvfrom",
            "accept4",
            "connect",
            "poll",
            "epoll_wait",
            "socket",
        ] {
            assert_eq!(io(sym), Some(IoResource::Socket), "{sym}");
        }
        for sym in [
            "read", "pwrite64", "fsync", "fread", "fflush", "fopen", "openat",
        ] {
            assert_eq!(io(sym), Some(IoResource::File), "{sym}");
        }
        for sym in [
            "nanosleep",
            "waitpid",
            "pthread_join",
            "msgrcv",
            "malloc",
            "printf",
        ] {
            assert_eq!(io(sym), None, "{sym}");
        }
        // <std::fs::File as std::io::Read>::read
        assert_eq!(
            io("_ZN47_$LT$std..fs..File$u20$as$u20$std..io..Read$GT$4read17h0123456789abcdefE"),
            Some(IoResource::File)
        );
        // std::io::stdio::_print
        assert_eq!(
            io("_ZN3std2io5stdio6_print17h0123456789abcdefE"),
            Some(IoResource::File)
        );
        // std::net::tcp::TcpStream::connect
        assert_eq!(
            io("_ZN3std3net3tcp9TcpStream7connect17h0123456789abcdefE"),
            Some(IoResource::Socket)
        );
        // std::io::stdio::stdout only returns a handle; std::thread::sleep waits.
        assert_eq!(io("_ZN3std2io5stdio6stdout17h0123456789abcdefE"), None);
        assert_eq!(io("_ZN3std6thread5sleep17h1234567890abcdefE"), None);
        // std::thread::join() (C++)
        assert_eq!(io("_ZNSt6thread4joinEv"), None);
    }

    #[test]
    fn the_lock_argument() {
        assert_eq!(lock_argument("pthread_mutex_lock"), 0);
        assert_eq!(lock_argument("_ZNSt5mutex4lockEv"), 0);
        // std::lock_guard<std::mutex>::lock_guard(std::mutex&): `this`, then the mutex.
        assert_eq!(lock_argument("_ZNSt10lock_guardISt5mutexEC2ERS0_"), 1);
        assert_eq!(lock_argument("_ZNSt11unique_lockISt5mutexEC2ERS0_"), 1);
        // std::unique_lock<std::mutex>::lock(): the guard itself.
        assert_eq!(lock_argument("_ZNSt11unique_lockISt5mutexE4lockEv"), 0);
        // std::sys::sync::mutex::futex::Mutex::lock_contended(&self)
        assert_eq!(
            lock_argument("_ZN3std3sys4sync5mutex5futex5Mutex14lock_contended17h0123456789abcdefE"),
            0
        );
    }

    #[test]
    fn guard_first_parameter() {
        assert_eq!(first_param("(std::mutex&)"), "std::mutex&");
        assert_eq!(first_param("(A<B, C>&, D)"), "A<B, C>&");
        assert_eq!(first_param("(void (*)(int), int)"), "void (*)(int)");
        assert_eq!(first_param("()"), "");
    }

    #[test]
    fn common_non_sites() {
        for sym in [
            "memcpy",
            "memset",
            "printf",
            "strlen",
            "strcmp",
            // std::vector<int>::push_back(int const&)
            "_ZNSt6vectorIiSaIiEE9push_backERKi",
            // std::string::at(unsigned long)
            "_ZNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEE2atEm",
            // A user's `read(int)` and `ns::lock()` are not the C or std ones.
            "_Z4readi",
            "_ZN2ns4lockEv",
            // clang's C++20 mangling that cpp_demangle cannot read: no site.
            "_Z5twiceITkSt8integraliET_S0_",
        ] {
            assert_eq!(c(sym), None, "{sym}");
        }
    }
}
