//! What a function uses directly: the vocabulary of the `touches` lists the pass
//! records on every entry site (and the manifest carries over). Pure: no LLVM.
//!
//! A dependence graph is built from these lists: its vertices are the resources
//! prices exist for and the shared objects the pass can see, and a function joins
//! everything it (and its callees, through `callees`) touches. This module is the
//! one place that spells the strings; [`Touch`] renders and parses them.
//!
//! | string                        | kind     | recorded for                                     |
//! |-------------------------------|----------|--------------------------------------------------|
//! | `memory`                      | resource | an allocation or free site                       |
//! | `io`                          | resource | a blocking call on a file or stdio               |
//! | `network`                     | resource | a socket call                                    |
//! | `cpu`                         | resource | a loop back-edge site                            |
//! | `dwell`                       | resource | a timed entry (the function is a timed region)   |
//! | `alloc`                       | object   | an allocation or free site (the allocator)       |
//! | `global:<name>`               | object   | a non-constant global variable used directly     |
//! | `lock:global:<name>`          | object   | a lock site whose lock is the global `<name>`    |
//! | `lock:lock:<function>@<line>` | object   | a lock site on any other lock, by call site      |
//! | `file:<function>@<line>`      | object   | a file or stdio call, by call site               |
//! | `socket:<function>@<line>`    | object   | a socket call, by call site                      |
//!
//! Names are demangled as the sites' `function` field spells them. A call site is
//! `<function>@<line>` with the caller's name and the call's line in the caller's
//! own source (for a call inlined into it, the line it was inlined from, which
//! can differ from the site's `line`, the innermost one); a call without a line
//! is `<function>#<id>`, with its site id (or, for a file or socket call that is
//! not a site, a stable id derived the same way).
//!
//! Globals: a global is used when the function loads from it, stores to it, does
//! an atomic operation on it or passes its address to a call (intrinsics such as
//! `llvm.memcpy` and `llvm.threadlocal.address` included), looking through
//! constant and instruction GEPs and casts. Constants (`constant` in IR),
//! unnamed globals, `llvm.*` and the pass's own `__panic_*` symbols are left out.
//! Thread-locals are included: a thread-local is shared by every function that
//! runs on the thread, and the graph should see it like any other global.

use std::fmt;

/// What a function touches: one entry of a `touches` list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Touch {
    /// `memory`: the memory resource (allocation and free sites).
    Memory,
    /// `io`: file and stdio I/O (blocking calls on files).
    Io,
    /// `network`: socket I/O.
    Network,
    /// `cpu`: the function loops (it has a back-edge site).
    Cpu,
    /// `dwell`: the function is timed (its entry site is timed).
    Dwell,
    /// `alloc`: the allocator, a shared object.
    Alloc,
    /// `global:<name>`: a non-constant global variable, by demangled name.
    Global(String),
    /// `lock:<object>`: a lock, by the object it locks ([`LockObject`]).
    Lock(LockObject),
    /// `file:<call site>`: a file (or stdio stream), by the call site using it.
    File(String),
    /// `socket:<call site>`: a socket, by the call site using it.
    Socket(String),
}

/// The object a lock site locks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockObject {
    /// `global:<name>`: the lock is (inside) a global variable.
    Global(String),
    /// `lock:<call site>`: any other lock (on the stack, in the heap, behind a
    /// pointer), named by the call site that locks it.
    Site(String),
}

const MEMORY: &str = "memory";
const IO: &str = "io";
const NETWORK: &str = "network";
const CPU: &str = "cpu";
const DWELL: &str = "dwell";
const ALLOC: &str = "alloc";
const GLOBAL: &str = "global";
const LOCK: &str = "lock";
const FILE: &str = "file";
const SOCKET: &str = "socket";

impl Touch {
    /// Whether this is a resource (prices exist for it) rather than a shared object.
    pub fn is_resource(&self) -> bool {
        matches!(
            self,
            Touch::Memory | Touch::Io | Touch::Network | Touch::Cpu | Touch::Dwell
        )
    }

    /// Parses a `touches` entry; `None` for a string outside the vocabulary.
    pub fn parse(s: &str) -> Option<Touch> {
        Some(match s {
            MEMORY => Touch::Memory,
            IO => Touch::Io,
            NETWORK => Touch::Network,
            CPU => Touch::Cpu,
            DWELL => Touch::Dwell,
            ALLOC => Touch::Alloc,
            _ => {
                let (kind, rest) = s.split_once(':')?;
                if rest.is_empty() {
                    return None;
                }
                let rest = rest.to_string();
                match kind {
                    GLOBAL => Touch::Global(rest),
                    FILE => Touch::File(rest),
                    SOCKET => Touch::Socket(rest),
                    LOCK => {
                        let (object, name) = rest.split_once(':')?;
                        if name.is_empty() {
                            return None;
                        }
                        let name = name.to_string();
                        Touch::Lock(match object {
                            GLOBAL => LockObject::Global(name),
                            LOCK => LockObject::Site(name),
                            _ => return None,
                        })
                    }
                    _ => return None,
                }
            }
        })
    }
}

impl fmt::Display for Touch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Touch::Memory => f.write_str(MEMORY),
            Touch::Io => f.write_str(IO),
            Touch::Network => f.write_str(NETWORK),
            Touch::Cpu => f.write_str(CPU),
            Touch::Dwell => f.write_str(DWELL),
            Touch::Alloc => f.write_str(ALLOC),
            Touch::Global(name) => write!(f, "{GLOBAL}:{name}"),
            Touch::Lock(object) => write!(f, "{LOCK}:{object}"),
            Touch::File(site) => write!(f, "{FILE}:{site}"),
            Touch::Socket(site) => write!(f, "{SOCKET}:{site}"),
        }
    }
}

impl fmt::Display for LockObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockObject::Global(name) => write!(f, "{GLOBAL}:{name}"),
            LockObject::Site(site) => write!(f, "{LOCK}:{site}"),
        }
    }
}

/// A call site's name: `<function>@<line>`, or `<function>#<id>` without a line.
pub fn call_site(function: &str, line: Option<u32>, id: &str) -> String {
    match line.filter(|&l| l != 0) {
        Some(line) => format!("{function}@{line}"),
        None => format!("{function}#{id}"),
    }
}

/// Collects one function's touches: sorted, without duplicates, as strings.
#[derive(Debug, Default, Clone)]
pub struct Touches(std::collections::BTreeSet<String>);

impl Touches {
    pub fn insert(&mut self, t: Touch) {
        self.0.insert(t.to_string());
    }

    pub fn into_sorted(self) -> Vec<String> {
        self.0.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip() {
        let all = [
            (Touch::Memory, "memory"),
            (Touch::Io, "io"),
            (Touch::Network, "network"),
            (Touch::Cpu, "cpu"),
            (Touch::Dwell, "dwell"),
            (Touch::Alloc, "alloc"),
            (
                Touch::Global("lockpool::POOL".into()),
                "global:lockpool::POOL",
            ),
            (
                Touch::Lock(LockObject::Global("counter_mu".into())),
                "lock:global:counter_mu",
            ),
            (
                Touch::Lock(LockObject::Site("worker@12".into())),
                "lock:lock:worker@12",
            ),
            (Touch::File("main@3".into()), "file:main@3"),
            (
                Touch::Socket("serve#0123abcd".into()),
                "socket:serve#0123abcd",
            ),
        ];
        for (t, s) in all {
            assert_eq!(t.to_string(), s);
            assert_eq!(Touch::parse(s), Some(t), "{s}");
        }
        for bad in [
            "",
            "global:",
            "lock:global:",
            "lock:heap:x",
            "lock:x",
            "heap:x",
            "Memory",
        ] {
            assert_eq!(Touch::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn resources_and_objects() {
        for s in ["memory", "io", "network", "cpu", "dwell"] {
            assert!(Touch::parse(s).unwrap().is_resource(), "{s}");
        }
        for s in [
            "alloc",
            "global:g",
            "lock:global:g",
            "file:f@1",
            "socket:f@1",
        ] {
            assert!(!Touch::parse(s).unwrap().is_resource(), "{s}");
        }
    }

    #[test]
    fn call_sites_by_line_or_id() {
        assert_eq!(call_site("worker", Some(37), "abc"), "worker@37");
        assert_eq!(call_site("worker", Some(0), "abc"), "worker#abc");
        assert_eq!(call_site("worker", None, "abc"), "worker#abc");
    }

    #[test]
    fn touches_are_sorted_and_unique() {
        let mut t = Touches::default();
        for x in [
            Touch::Memory,
            Touch::Global("b".into()),
            Touch::Alloc,
            Touch::Memory,
            Touch::Global("a".into()),
        ] {
            t.insert(x);
        }
        assert_eq!(t.into_sorted(), ["alloc", "global:a", "global:b", "memory"]);
    }
}
