//! Assail: a static vulnerability profile of each instrumented function, read
//! from the IR the pass already walks, before any probe is inserted (so the
//! pass's own code never counts). The entry site records it as `risks`
//! ([`Risks`], absent when every field is empty); `cargo panic assail` ranks it.
//!
//! What is counted, exactly (the IR is rustc's optimised bitcode for Rust, and
//! clang's front-end IR at the pipeline start for C/C++, before mem2reg: there,
//! every local variable is an `alloca`):
//!
//! - `frame_bytes`: the sum of the static `alloca`s, those in the entry block
//!   with a constant element count, each `count × ABI size of its type` (the
//!   module's data layout). Dynamic allocas (VLAs, `alloca` in a loop) are left
//!   out. For C this counts every local (before mem2reg), so it overestimates
//!   what the optimised frame keeps in registers; for Rust it is what survived
//!   optimisation.
//! - `raw_pointer_ops`: `getelementptr` instructions with none of the no-wrap
//!   flags `inbounds`, `nusw`, `nuw` (pointer arithmetic LLVM may not assume
//!   stays inside an object: Rust's `wrapping_add`/`wrapping_offset`, byte
//!   offsets computed through integers), plus `inttoptr` instructions (pointers
//!   made from integers). Constant-expression GEPs are not counted.
//! - `unchecked_alloc`: lines of calls to a C allocator that returns NULL on
//!   failure ([`NULLABLE_ALLOC`]: `malloc`, `calloc`, `realloc`, `strdup`,
//!   nothrow `operator new`...) whose result is dereferenced (a load or store
//!   through it, a GEP on it) or passed on (a call argument other than to
//!   `free`, a store of it into memory other than a local slot) while no
//!   `icmp` against null on the result exists anywhere in the function. The
//!   result is followed through casts, `phi`, `select` and local slots (a store
//!   into an `alloca` makes every load of that slot the result: at -O0 this is
//!   how a local variable holds it), not through memory in general. Returning
//!   the result unchecked is not counted: the caller is where the check goes.
//!   The check is not tied to the path: one comparison anywhere counts.
//! - `buffer_ops`: lines of `memcpy`, `memmove`, `memset`, `mempcpy`,
//!   `strncpy`, `stpncpy`, `strncat` and the `llvm.memcpy.*`/`llvm.memmove.*`/
//!   `llvm.memset.*` intrinsics whose size argument is not a constant, and of
//!   every call to `strcpy`, `stpcpy`, `strcat`, `sprintf`, `vsprintf`, `gets`
//!   (unbounded by construction); glibc's fortified `__<name>_chk` variants
//!   count as `<name>`.
//! - `alloc_in_loop`: lines of allocation sites (the `alloc` sites the pass
//!   counts: `malloc`, `__rust_alloc`, `operator new`...) in the body of a
//!   natural loop (`crate::cfg`).
//! - `lock_order`: pairs `[first, second]` of lock objects, named as the
//!   `touches` vocabulary names them (`lock:global:<name>`,
//!   `lock:lock:<function>@<line>`), such that a call acquiring `second` is
//!   reachable in the function's CFG from a call acquiring `first`. An
//!   over-approximation: unlocks are not tracked (a lock released before the
//!   second is taken still orders them), nor are paths made impossible by
//!   conditions. Only acquisitions count (mutex, rwlock, spinlock, semaphore
//!   and C++ lock calls, Rust's contended lock paths); waits on a condition
//!   variable, a barrier, a channel, a futex word or a parked thread do not
//!   ([`is_lock_wait`]). A pair of an object with itself is not recorded. In
//!   Rust only the contended slow path of a lock is a call, so only those are
//!   seen. `lock_lines` gives, for every object in a pair, the lines of its
//!   acquisitions in the function.
//! - `blocking_in_async`: lines of blocking sites (file, socket and wait calls:
//!   the pass's `blocking` sites; lock waits are not included) inside a Rust
//!   async body. rustc 1.95's legacy symbols name an async body's poll
//!   function `<path>::{{closure}}` like any closure, so the body is
//!   recognised by its debug info instead: its `DISubprogram` is named
//!   `{async_fn#N}`, `{async_block#N}` or `{async_closure#N}` (any name
//!   starting with `{async_`, which also covers the `async gen` forms). A
//!   blocking call counts when the function itself is such a body, or when
//!   its call was inlined from one (a scope on its inlining chain belongs to
//!   one); the line is then the line in the async body.
//!
//! Lines are the call's line in the function's own source (for a call inlined
//! into it, the line it was inlined from), or 0 when it has none; each list is
//! sorted and without duplicates. The analysis is linear in the function's
//! instructions (a use walk per nullable allocation, an SCC pass for the lock
//! order, a loop-body walk per back-edge as the rest of the pass does) and
//! never does IO.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::classify::strip_generics;
use serde::{Deserialize, Serialize};

/// One function's static risks, as its entry site records them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Risks {
    /// Sum of static `alloca` sizes in bytes: the stack frame estimate.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub frame_bytes: u64,
    /// Pointer arithmetic not known to stay in bounds (GEPs without no-wrap
    /// flags) and pointers made from integers (`inttoptr`).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub raw_pointer_ops: u32,
    /// Lines of nullable allocations used without a null check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unchecked_alloc: Vec<u32>,
    /// Lines of memory/string copies with a size that is not a constant, or
    /// none at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buffer_ops: Vec<u32>,
    /// Lines of allocation sites inside a natural loop.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alloc_in_loop: Vec<u32>,
    /// `[first, second]`: a lock on `second` is reachable from a lock on `first`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lock_order: Vec<[String; 2]>,
    /// For every lock object in `lock_order`: the lines acquiring it here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lock_lines: BTreeMap<String, Vec<u32>>,
    /// Lines of blocking calls inside a Rust async body.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocking_in_async: Vec<u32>,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

impl Risks {
    /// Whether nothing was found (the entry site then records no `risks`).
    pub fn is_empty(&self) -> bool {
        *self == Risks::default()
    }
}

/// C allocators that report failure by returning NULL, by raw symbol (the
/// nothrow forms of `operator new` and `new[]`, plain and aligned, included).
/// `posix_memalign` is not here: it returns an error code, not the pointer.
pub const NULLABLE_ALLOC: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "reallocarray",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "strdup",
    "strndup",
    "__strdup",
    "__strndup",
    "_ZnwmRKSt9nothrow_t",
    "_ZnamRKSt9nothrow_t",
    "_ZnwmSt11align_val_tRKSt9nothrow_t",
    "_ZnamSt11align_val_tRKSt9nothrow_t",
];

/// Callees that take a possibly-null pointer without dereferencing it.
const NULL_TOLERANT: &[&str] = &["free", "cfree", "realloc"];

/// Buffer operations bounded by a size argument (its index).
const SIZED_BUFFER_OPS: &[(&str, u32)] = &[
    ("memcpy", 2),
    ("memmove", 2),
    ("memset", 2),
    ("mempcpy", 2),
    ("strncpy", 2),
    ("stpncpy", 2),
    ("strncat", 2),
];

/// Buffer operations with no size at all.
const UNBOUNDED_BUFFER_OPS: &[&str] =
    &["strcpy", "stpcpy", "strcat", "sprintf", "vsprintf", "gets"];

/// How a call by raw symbol `name` copies into a buffer: `Some(Some(i))` with
/// its size at argument `i`, `Some(None)` without any size; `None` when it is no
/// buffer operation.
pub fn buffer_op(name: &str) -> Option<Option<u32>> {
    for intrinsic in ["llvm.memcpy.", "llvm.memmove.", "llvm.memset."] {
        if name.starts_with(intrinsic) {
            return Some(Some(2));
        }
    }
    // `llvm.memcpy.inline.*` always has a constant size; it matched above with
    // size argument 2 as well, which is then a constant.
    let plain = name
        .strip_prefix("__")
        .and_then(|n| n.strip_suffix("_chk"))
        .unwrap_or(name);
    if let Some(&(_, i)) = SIZED_BUFFER_OPS.iter().find(|(n, _)| *n == plain) {
        return Some(Some(i));
    }
    if UNBOUNDED_BUFFER_OPS.contains(&plain) {
        return Some(None);
    }
    None
}

/// Leaves of lock-class callees that wait rather than acquire.
const WAIT_LEAVES: &[&str] = &[
    "wait",
    "wait_for",
    "wait_until",
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
    "futex",
];
/// Parts of lock-class callees that wait rather than acquire.
const WAIT_PARTS: &[&str] = &[
    "cond_wait",
    "cond_timedwait",
    "cond_clockwait",
    "barrier_wait",
    "condition_variable",
    "__condvar",
];

/// Whether a lock-class call (by its demangled callee, as the site's `callee`
/// spells it) waits for a signal (condition variable, barrier, channel,
/// futex word, park) instead of acquiring a lock.
pub fn is_lock_wait(callee: &str) -> bool {
    let path = callee.split('(').next().unwrap_or(callee);
    let path = strip_generics(path);
    let leaf = path.rsplit("::").next().unwrap_or(&path);
    WAIT_LEAVES.contains(&leaf) || WAIT_PARTS.iter().any(|p| path.contains(p))
}

/// Whether a `DISubprogram` name is a Rust async body's (`{async_fn#0}`,
/// `{async_block#0}`, `{async_closure#0}`, `{async_gen_block#0}`...).
pub fn is_async_body(subprogram_name: &str) -> bool {
    subprogram_name.starts_with("{async_")
}

/// The lock order of one function, on block indices: `succs` is the CFG
/// (block 0 the entry), `locks` the acquisitions in IR order as `(block,
/// object)` with objects numbered from 0. Returns the pairs `(first, second)`,
/// `first != second`, such that an acquisition of `second` is reachable from
/// one of `first`, sorted and unique. Linear in blocks and edges times the
/// number of objects / 64 (reachability over the SCC condensation, bitsets).
pub fn lock_order_pairs(succs: &[Vec<usize>], locks: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let n_objects = locks.iter().map(|&(_, o)| o + 1).max().unwrap_or(0);
    if n_objects < 2 || succs.is_empty() {
        return Vec::new();
    }
    let words = n_objects.div_ceil(64);
    let set = |bits: &mut [u64], o: usize| bits[o / 64] |= 1 << (o % 64);
    let mut g = petgraph::graph::DiGraph::<(), ()>::with_capacity(succs.len(), succs.len() * 2);
    let nodes: Vec<_> = (0..succs.len()).map(|_| g.add_node(())).collect();
    for (from, s) in succs.iter().enumerate() {
        for &to in s {
            g.add_edge(nodes[from], nodes[to], ());
        }
    }
    // Postorder: every SCC comes after those it reaches.
    let sccs = petgraph::algo::tarjan_scc(&g);
    let mut scc_of = vec![0usize; succs.len()];
    for (i, scc) in sccs.iter().enumerate() {
        for n in scc {
            scc_of[n.index()] = i;
        }
    }
    let mut inside = vec![vec![0u64; words]; sccs.len()];
    for &(b, o) in locks {
        set(&mut inside[scc_of[b]], o);
    }
    // What is acquired anywhere strictly after leaving each SCC.
    let mut after = vec![vec![0u64; words]; sccs.len()];
    let mut cyclic = vec![false; sccs.len()];
    for (i, scc) in sccs.iter().enumerate() {
        cyclic[i] = scc.len() > 1 || succs[scc[0].index()].contains(&scc[0].index());
        let mut acc = vec![0u64; words];
        for n in scc {
            for &to in &succs[n.index()] {
                let j = scc_of[to];
                if j != i {
                    for w in 0..words {
                        acc[w] |= inside[j][w] | after[j][w];
                    }
                }
            }
        }
        after[i] = acc;
    }
    let mut pairs = BTreeSet::new();
    for (k, &(b, first)) in locks.iter().enumerate() {
        let c = scc_of[b];
        let mut reach = after[c].clone();
        if cyclic[c] {
            for w in 0..words {
                reach[w] |= inside[c][w];
            }
        }
        // Later in the same block.
        for &(b2, o) in &locks[k + 1..] {
            if b2 == b {
                set(&mut reach, o);
            }
        }
        for (w, &bits) in reach.iter().enumerate() {
            let mut bits = bits;
            while bits != 0 {
                let o = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if o != first {
                    pairs.insert((first, o));
                }
            }
        }
    }
    pairs.into_iter().collect()
}

/// Sorted, unique lines.
fn lines(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v.dedup();
    v
}

/// A classified call of the function, as the pass planned its site.
pub(crate) struct SiteCall {
    pub inst: inkwell::llvm_sys::prelude::LLVMValueRef,
    pub class: crate::classify::CallClass,
    /// The demangled callee (the site's `callee`).
    pub callee: String,
    /// Lock sites: the lock object, as the `touches` name it.
    pub lock: Option<String>,
}

pub(crate) use ir::function_risks;

mod ir {
    use std::ffi::c_uint;

    use inkwell::llvm_sys::LLVMOpcode;
    use inkwell::llvm_sys::core::*;
    use inkwell::llvm_sys::debuginfo::*;
    use inkwell::llvm_sys::prelude::*;
    use inkwell::llvm_sys::target::{LLVMABISizeOfType, LLVMGetModuleDataLayout};

    use super::*;
    use crate::cfg::loop_body;
    use crate::classify::CallClass;
    use crate::instrument::{instructions_of, own_line, value_name};

    /// GEP no-wrap flags (`LLVMGEPNoWrapFlags`): inbounds, nusw, nuw.
    const GEP_NO_WRAP: c_uint = 0b111;

    /// The risks of the defined function `f` of `module`, before any probe is
    /// inserted. `blocks` and `succs` are its CFG (block 0 the entry),
    /// `loops` its back-edges, `calls` its classified calls.
    ///
    /// # Safety
    /// `f` is a live function of `module` and every handle passed in belongs to it.
    pub(crate) unsafe fn function_risks(
        module: LLVMModuleRef,
        f: LLVMValueRef,
        blocks: &[LLVMBasicBlockRef],
        succs: &[Vec<usize>],
        loops: &[(usize, usize)],
        calls: &[SiteCall],
    ) -> Risks {
        // SAFETY: read-only queries on live IR of `module`.
        unsafe {
            let mut r = Risks::default();
            let site_of: HashMap<LLVMValueRef, &SiteCall> =
                calls.iter().map(|c| (c.inst, c)).collect();
            let layout = LLVMGetModuleDataLayout(module);
            let mut in_loop = vec![false; blocks.len()];
            for &(latch, header) in loops {
                if in_loop[latch] && in_loop[header] {
                    continue;
                }
                for b in loop_body(succs, latch, header) {
                    in_loop[b] = true;
                }
            }
            let ctx = LLVMGetModuleContext(module);
            let mut asyncs = AsyncScopes::default();
            let fn_async = {
                let sp = LLVMGetSubprogram(f);
                !sp.is_null() && asyncs.is_async(ctx, sp)
            };
            let mut unchecked = Vec::new();
            let mut buffers = Vec::new();
            let mut alloc_loop = Vec::new();
            let mut blocking_async = Vec::new();
            let mut locks: Vec<(usize, usize)> = Vec::new();
            let mut lock_names: Vec<String> = Vec::new();
            let mut lock_index: HashMap<String, usize> = HashMap::new();
            let mut lock_at: Vec<(usize, u32)> = Vec::new();
            for (bi, &bb) in blocks.iter().enumerate() {
                for inst in instructions_of(bb) {
                    match LLVMGetInstructionOpcode(inst) {
                        LLVMOpcode::LLVMAlloca if bi == 0 => {
                            let count = LLVMGetOperand(inst, 0);
                            if !LLVMIsAConstantInt(count).is_null() && !layout.is_null() {
                                let size = LLVMABISizeOfType(layout, LLVMGetAllocatedType(inst));
                                r.frame_bytes = r.frame_bytes.saturating_add(
                                    size.saturating_mul(LLVMConstIntGetZExtValue(count)),
                                );
                            }
                        }
                        LLVMOpcode::LLVMGetElementPtr
                            if LLVMGEPGetNoWrapFlags(inst) & GEP_NO_WRAP == 0 =>
                        {
                            r.raw_pointer_ops += 1;
                        }
                        LLVMOpcode::LLVMIntToPtr => r.raw_pointer_ops += 1,
                        LLVMOpcode::LLVMCall | LLVMOpcode::LLVMInvoke => {
                            let line = || own_line(inst).unwrap_or(0);
                            let called = LLVMGetCalledValue(inst);
                            if !called.is_null() && !LLVMIsAFunction(called).is_null() {
                                let name = value_name(called);
                                if let Some(size) = buffer_op(&name) {
                                    let unbounded = match size {
                                        None => true,
                                        Some(i) => {
                                            i < LLVMGetNumArgOperands(inst)
                                                && LLVMIsAConstantInt(LLVMGetOperand(inst, i))
                                                    .is_null()
                                        }
                                    };
                                    if unbounded {
                                        buffers.push(line());
                                    }
                                }
                                if NULLABLE_ALLOC.contains(&name.as_str()) && used_unchecked(inst) {
                                    unchecked.push(line());
                                }
                            }
                            let Some(site) = site_of.get(&inst) else {
                                continue;
                            };
                            match site.class {
                                CallClass::Alloc if in_loop[bi] => alloc_loop.push(line()),
                                CallClass::Blocking => {
                                    if fn_async {
                                        blocking_async.push(line());
                                    } else if let Some(l) = asyncs.inlined_from(ctx, inst) {
                                        blocking_async.push(l);
                                    }
                                }
                                CallClass::Lock if !is_lock_wait(&site.callee) => {
                                    if let Some(name) = &site.lock {
                                        let next = lock_names.len();
                                        let o = *lock_index.entry(name.clone()).or_insert(next);
                                        if o == next {
                                            lock_names.push(name.clone());
                                        }
                                        locks.push((bi, o));
                                        lock_at.push((o, line()));
                                    }
                                }
                                _ => {}
                            }
                        }
                        _ => {}
                    }
                }
            }
            r.unchecked_alloc = lines(unchecked);
            r.buffer_ops = lines(buffers);
            r.alloc_in_loop = lines(alloc_loop);
            r.blocking_in_async = lines(blocking_async);
            let mut pairs: Vec<[String; 2]> = lock_order_pairs(succs, &locks)
                .into_iter()
                .map(|(a, b)| [lock_names[a].clone(), lock_names[b].clone()])
                .collect();
            pairs.sort();
            pairs.dedup();
            let in_pairs: HashSet<&str> = pairs.iter().flatten().map(String::as_str).collect();
            for (o, line) in lock_at {
                let name = &lock_names[o];
                if in_pairs.contains(name.as_str()) {
                    r.lock_lines.entry(name.clone()).or_default().push(line);
                }
            }
            for v in r.lock_lines.values_mut() {
                *v = lines(std::mem::take(v));
            }
            r.lock_order = pairs;
            r
        }
    }

    /// The users of `v`.
    unsafe fn users(v: LLVMValueRef) -> Vec<LLVMValueRef> {
        let mut out = Vec::new();
        // SAFETY: use-list iteration on a live value.
        unsafe {
            let mut u = LLVMGetFirstUse(v);
            while !u.is_null() {
                out.push(LLVMGetUser(u));
                u = LLVMGetNextUse(u);
            }
        }
        out
    }

    /// Whether the result of the allocation call `alloc` is dereferenced or
    /// passed on while never compared with null (see the module docs).
    unsafe fn used_unchecked(alloc: LLVMValueRef) -> bool {
        // SAFETY: operand and use queries on live instructions.
        unsafe {
            let mut seen: HashSet<LLVMValueRef> = HashSet::new();
            let mut slots: HashSet<LLVMValueRef> = HashSet::new();
            let mut stack = vec![alloc];
            let (mut used, mut checked) = (false, false);
            while let Some(v) = stack.pop() {
                if !seen.insert(v) {
                    continue;
                }
                for user in users(v) {
                    if LLVMIsAInstruction(user).is_null() {
                        continue;
                    }
                    let op = |i: u32| LLVMGetOperand(user, i);
                    match LLVMGetInstructionOpcode(user) {
                        LLVMOpcode::LLVMICmp => {
                            let other = if op(0) == v { op(1) } else { op(0) };
                            if !LLVMIsAConstantPointerNull(other).is_null() {
                                checked = true;
                            }
                        }
                        LLVMOpcode::LLVMLoad
                        | LLVMOpcode::LLVMGetElementPtr
                        | LLVMOpcode::LLVMAtomicRMW
                        | LLVMOpcode::LLVMAtomicCmpXchg
                            if op(0) == v =>
                        {
                            used = true;
                        }
                        LLVMOpcode::LLVMStore => {
                            if op(1) == v {
                                used = true;
                            }
                            if op(0) == v {
                                let slot = op(1);
                                if LLVMIsAAllocaInst(slot).is_null() {
                                    used = true;
                                } else if slots.insert(slot) {
                                    for u in users(slot) {
                                        if LLVMGetInstructionOpcode(u) == LLVMOpcode::LLVMLoad
                                            && LLVMGetOperand(u, 0) == slot
                                        {
                                            stack.push(u);
                                        }
                                    }
                                }
                            }
                        }
                        LLVMOpcode::LLVMBitCast
                        | LLVMOpcode::LLVMAddrSpaceCast
                        | LLVMOpcode::LLVMPHI
                        | LLVMOpcode::LLVMSelect
                        | LLVMOpcode::LLVMFreeze => stack.push(user),
                        LLVMOpcode::LLVMCall | LLVMOpcode::LLVMInvoke => {
                            let called = LLVMGetCalledValue(user);
                            let tolerant = !called.is_null()
                                && !LLVMIsAFunction(called).is_null()
                                && NULL_TOLERANT.contains(&value_name(called).as_str());
                            let n = LLVMGetNumArgOperands(user);
                            if !tolerant && (0..n).any(|i| op(i) == v) {
                                used = true;
                            }
                        }
                        _ => {}
                    }
                }
            }
            used && !checked
        }
    }

    /// Which debug scopes belong to an async body, cached per subprogram.
    #[derive(Default)]
    struct AsyncScopes(HashMap<LLVMMetadataRef, bool>);

    impl AsyncScopes {
        /// Whether `subprogram` (a `DISubprogram`) is an async body's.
        unsafe fn is_async(&mut self, ctx: LLVMContextRef, subprogram: LLVMMetadataRef) -> bool {
            *self.0.entry(subprogram).or_insert_with(|| {
                // SAFETY: `subprogram` is a live DISubprogram of the context.
                unsafe { md_string_operand(ctx, subprogram, SUBPROGRAM_NAME) }
                    .is_some_and(|n| is_async_body(&n))
            })
        }

        /// The line in an async body that a call inlined from one was made
        /// at: the innermost location on its inlining chain whose scope is in
        /// an async body's subprogram.
        unsafe fn inlined_from(&mut self, ctx: LLVMContextRef, inst: LLVMValueRef) -> Option<u32> {
            // SAFETY: debug-location queries on a live instruction.
            unsafe {
                let mut loc = LLVMInstructionGetDebugLoc(inst);
                // Inlining chains are short; the bound guards against a cycle.
                for _ in 0..64 {
                    if loc.is_null() {
                        return None;
                    }
                    if let Some(sp) = subprogram_of(ctx, LLVMDILocationGetScope(loc))
                        && self.is_async(ctx, sp)
                    {
                        return Some(LLVMDILocationGetLine(loc));
                    }
                    loc = LLVMDILocationGetInlinedAt(loc);
                }
                None
            }
        }
    }

    /// Operand indexes of debug-info nodes (`llvm/IR/DebugInfoMetadata.h`):
    /// a lexical block's parent scope, a subprogram's name.
    const LEXICAL_BLOCK_SCOPE: usize = 1;
    const SUBPROGRAM_NAME: usize = 2;

    /// The subprogram a scope is in (through lexical blocks).
    unsafe fn subprogram_of(
        ctx: LLVMContextRef,
        mut scope: LLVMMetadataRef,
    ) -> Option<LLVMMetadataRef> {
        // SAFETY: metadata queries on live debug-info nodes.
        unsafe {
            for _ in 0..256 {
                if scope.is_null() {
                    return None;
                }
                match LLVMGetMetadataKind(scope) {
                    LLVMMetadataKind::LLVMDISubprogramMetadataKind => return Some(scope),
                    LLVMMetadataKind::LLVMDILexicalBlockMetadataKind
                    | LLVMMetadataKind::LLVMDILexicalBlockFileMetadataKind => {
                        scope = md_operand(ctx, scope, LEXICAL_BLOCK_SCOPE)?;
                    }
                    _ => return None,
                }
            }
            None
        }
    }

    /// Operand `i` of the metadata node `md`, as a value (None when out of
    /// range or null).
    unsafe fn md_operand_value(
        ctx: LLVMContextRef,
        md: LLVMMetadataRef,
        i: usize,
    ) -> Option<LLVMValueRef> {
        // SAFETY: `md` is an MDNode of `ctx`; the buffer holds all its operands.
        unsafe {
            let v = LLVMMetadataAsValue(ctx, md);
            let n = LLVMGetMDNodeNumOperands(v) as usize;
            if i >= n {
                return None;
            }
            let mut ops = vec![std::ptr::null_mut(); n];
            LLVMGetMDNodeOperands(v, ops.as_mut_ptr());
            let op = ops[i];
            (!op.is_null()).then_some(op)
        }
    }

    /// Operand `i` of the metadata node `md`, as metadata.
    unsafe fn md_operand(
        ctx: LLVMContextRef,
        md: LLVMMetadataRef,
        i: usize,
    ) -> Option<LLVMMetadataRef> {
        // SAFETY: as `md_operand_value`; the operand is a valid value.
        unsafe { md_operand_value(ctx, md, i).map(|op| LLVMValueAsMetadata(op)) }
    }

    /// Operand `i` of the metadata node `md`, when it is a string.
    unsafe fn md_string_operand(
        ctx: LLVMContextRef,
        md: LLVMMetadataRef,
        i: usize,
    ) -> Option<String> {
        // SAFETY: as `md_operand_value`; LLVM guarantees `len` bytes at the string.
        unsafe {
            let op = md_operand_value(ctx, md, i)?;
            let mut len: c_uint = 0;
            let p = LLVMGetMDString(op, &mut len);
            if p.is_null() {
                return None;
            }
            let bytes = std::slice::from_raw_parts(p as *const u8, len as usize);
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_ops_by_name() {
        assert_eq!(buffer_op("memcpy"), Some(Some(2)));
        assert_eq!(buffer_op("__memcpy_chk"), Some(Some(2)));
        assert_eq!(buffer_op("llvm.memset.p0.i64"), Some(Some(2)));
        assert_eq!(buffer_op("llvm.memmove.p0.p0.i64"), Some(Some(2)));
        assert_eq!(buffer_op("strcpy"), Some(None));
        assert_eq!(buffer_op("__sprintf_chk"), Some(None));
        assert_eq!(buffer_op("snprintf"), None);
        assert_eq!(buffer_op("strlen"), None);
        assert_eq!(buffer_op("llvm.memcpyx"), None);
    }

    #[test]
    fn waits_are_not_acquisitions() {
        for wait in [
            "pthread_cond_wait",
            "pthread_cond_timedwait",
            "pthread_barrier_wait",
            "futex",
            "std::condition_variable::wait(std::unique_lock<std::mutex>&)",
            "std::sys::sync::condvar::futex::Condvar::wait",
            "std::sync::mpmc::list::Channel<T>::recv",
            "std::sys::pal::unix::futex::futex_wait",
        ] {
            assert!(is_lock_wait(wait), "{wait}");
        }
        for lock in [
            "pthread_mutex_lock",
            "pthread_rwlock_wrlock",
            "sem_wait",
            "std::mutex::lock()",
            "std::lock_guard<std::mutex>::lock_guard(std::mutex&)",
            "std::timed_mutex::try_lock_until",
            "std::sys::sync::mutex::futex::Mutex::lock_contended",
            "parking_lot::raw_mutex::RawMutex::lock_slow",
        ] {
            assert!(!is_lock_wait(lock), "{lock}");
        }
    }

    #[test]
    fn async_bodies_by_subprogram_name() {
        // As rustc 1.95 names them in DWARF (checked on a real async fn).
        for yes in [
            "{async_fn#0}",
            "{async_block#1}",
            "{async_closure#0}",
            "{async_gen_block#0}",
        ] {
            assert!(is_async_body(yes), "{yes}");
        }
        for no in [
            "{closure#0}",
            "{closure#1}",
            "fetch",
            "block_on<a::fetch::{async_fn_env#0}>",
            "",
        ] {
            assert!(!is_async_body(no), "{no}");
        }
    }

    #[test]
    fn lock_order_in_sequence_and_branches() {
        // 0: lock a; 1: lock b -> 0 -> 1 -> 2(lock c) | 3(lock a)
        let succs = vec![vec![1], vec![2, 3], vec![], vec![]];
        let locks = [(0, 0), (1, 1), (2, 2), (3, 0)];
        // a before b, c, and (through block 3) a again, which is no pair;
        // b before c and a; c before nothing.
        assert_eq!(
            lock_order_pairs(&succs, &locks),
            vec![(0, 1), (0, 2), (1, 0), (1, 2)]
        );
    }

    #[test]
    fn lock_order_within_a_block_and_around_a_loop() {
        // One block: a then b, nothing else.
        assert_eq!(lock_order_pairs(&[vec![]], &[(0, 0), (0, 1)]), vec![(0, 1)]);
        // A loop 1 <-> 2 with a in 1 and b in 2: each reaches the other.
        let succs = vec![vec![1], vec![2], vec![1, 3], vec![]];
        assert_eq!(
            lock_order_pairs(&succs, &[(1, 0), (2, 1)]),
            vec![(0, 1), (1, 0)]
        );
        // A self loop reaches back to the start of its own block.
        let succs = vec![vec![0, 1], vec![]];
        assert_eq!(
            lock_order_pairs(&succs, &[(0, 1), (0, 0)]),
            vec![(0, 1), (1, 0)]
        );
        // One object, or none: no pairs.
        assert!(lock_order_pairs(&[vec![]], &[(0, 0), (0, 0)]).is_empty());
        assert!(lock_order_pairs(&[], &[]).is_empty());
    }

    #[test]
    fn empty_risks_serialise_to_nothing() {
        assert!(Risks::default().is_empty());
        assert_eq!(serde_json::to_string(&Risks::default()).unwrap(), "{}");
        let r = Risks {
            frame_bytes: 256,
            lock_order: vec![["lock:global:a".into(), "lock:global:b".into()]],
            ..Risks::default()
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"frame_bytes":256,"lock_order":[["lock:global:a","lock:global:b"]]}"#
        );
        assert_eq!(serde_json::from_str::<Risks>(&json).unwrap(), r);
    }
}

/// The analysis through the whole pass, on IR text (`cargo test -p
/// panic-passes --features llvm19 assail`; see `instrument`'s IR tests).
#[cfg(all(test, feature = "llvm19"))]
mod ir_tests {
    use super::*;
    use crate::{ModuleSites, SiteKind};

    fn instrument(ir: &str) -> ModuleSites {
        crate::instrument::ir_tests::instrument(ir, &[])
    }

    fn risks(m: &ModuleSites, function: &str) -> Risks {
        m.sites
            .iter()
            .find(|s| s.kind == SiteKind::Entry && s.function == function)
            .unwrap_or_else(|| panic!("no function {function}"))
            .risks
            .clone()
            .unwrap_or_default()
    }

    const IR: &str = r#"
target datalayout = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-i128:128-f80:128-n8:16:32:64-S128"

@a = global [40 x i8] zeroinitializer
@b = global [40 x i8] zeroinitializer
@cv = global [48 x i8] zeroinitializer

declare ptr @malloc(i64)
declare ptr @strdup(ptr)
declare void @free(ptr)
declare ptr @strcpy(ptr, ptr)
declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)
declare i32 @pthread_mutex_lock(ptr)
declare i32 @pthread_mutex_unlock(ptr)
declare i32 @pthread_cond_wait(ptr, ptr)
declare i64 @read(i32, ptr, i64)
declare void @use(ptr)

; -O0 style: the result lives in a slot and is used through a load, unchecked.
define void @unchecked_slot(i64 %n) !dbg !10 {
  %p = alloca ptr
  %call = call ptr @malloc(i64 %n), !dbg !11
  store ptr %call, ptr %p
  %v = load ptr, ptr %p
  store i8 1, ptr %v
  %s = call ptr @strdup(ptr %v), !dbg !12
  call void @use(ptr %s)
  ret void
}

; Checked through another load of the same slot.
define void @checked_slot(i64 %n) {
entry:
  %p = alloca ptr
  %call = call ptr @malloc(i64 %n)
  store ptr %call, ptr %p
  %v = load ptr, ptr %p
  %c = icmp eq ptr %v, null
  br i1 %c, label %out, label %go
go:
  %w = load ptr, ptr %p
  call void @use(ptr %w)
  br label %out
out:
  ret void
}

define ptr @returned(i64 %n) {
  %call = call ptr @malloc(i64 %n)
  ret ptr %call
}

define void @freed_only(i64 %n) {
  %call = call ptr @malloc(i64 %n)
  call void @free(ptr %call)
  ret void
}

define void @frame() {
entry:
  %a = alloca [256 x i8]
  %b = alloca i64
  %c = alloca i32, i32 4
  br label %next
next:
  %d = alloca [1000 x i8]
  ret void
}

define ptr @raw(ptr %p, i64 %i, i64 %addr) {
  %q = getelementptr i8, ptr %p, i64 %i
  %r = getelementptr inbounds i8, ptr %q, i64 1
  %s = getelementptr nuw i8, ptr %r, i64 1
  %u = getelementptr nusw i8, ptr %s, i64 1
  %t = inttoptr i64 %addr to ptr
  call void @use(ptr %u)
  ret ptr %t
}

define void @buffers(ptr %d, ptr %s, i64 %n) !dbg !20 {
  call void @llvm.memcpy.p0.p0.i64(ptr %d, ptr %s, i64 %n, i1 false), !dbg !21
  call void @llvm.memcpy.p0.p0.i64(ptr %d, ptr %s, i64 16, i1 false), !dbg !22
  %x = call ptr @strcpy(ptr %d, ptr %s), !dbg !23
  ret void
}

define void @alloc_loop(i64 %n) !dbg !30 {
entry:
  %first = call ptr @malloc(i64 8), !dbg !31
  br label %head
head:
  %i = phi i64 [ 0, %entry ], [ %next, %head ]
  %p = call ptr @malloc(i64 %n), !dbg !32
  %c = icmp eq ptr %p, null
  %next = add i64 %i, 1
  %done = icmp eq i64 %next, %n
  br i1 %done, label %exit, label %head
exit:
  ret void
}

define void @ab() !dbg !40 {
  %1 = call i32 @pthread_mutex_lock(ptr @a), !dbg !41
  %2 = call i32 @pthread_mutex_lock(ptr @b), !dbg !42
  %3 = call i32 @pthread_cond_wait(ptr @cv, ptr @b), !dbg !43
  %4 = call i32 @pthread_mutex_unlock(ptr @b)
  %5 = call i32 @pthread_mutex_unlock(ptr @a)
  ret void
}

define void @branches(i1 %c) {
entry:
  br i1 %c, label %left, label %right
left:
  %l = call i32 @pthread_mutex_lock(ptr @a)
  br label %done
right:
  %r = call i32 @pthread_mutex_lock(ptr @b)
  br label %done
done:
  ret void
}

define void @local_then_global(ptr %m) !dbg !50 {
  %1 = call i32 @pthread_mutex_lock(ptr %m), !dbg !51
  %2 = call i32 @pthread_mutex_lock(ptr @a), !dbg !52
  ret void
}

; rustc's poll function of `async fn fetch` (legacy mangling says only `{{closure}}`).
define void @"_ZN1a5fetch28_$u7b$$u7b$closure$u7d$$u7d$17h0d9b5b7a48ebac09E"(ptr %buf) !dbg !60 {
  %r = call i64 @read(i32 0, ptr %buf, i64 8), !dbg !61
  ret void
}

; A plain closure doing the same: not async.
define void @"_ZN1a4main28_$u7b$$u7b$closure$u7d$$u7d$17hf28f8e07dab5993aE"(ptr %buf) !dbg !65 {
  %r = call i64 @read(i32 0, ptr %buf, i64 8), !dbg !66
  ret void
}

; An executor into which an async body (and `read` inside it) was inlined.
define void @executor(ptr %buf) !dbg !70 {
  %r = call i64 @read(i32 0, ptr %buf, i64 8), !dbg !71
  %s = call i64 @read(i32 0, ptr %buf, i64 8), !dbg !74
  ret void
}

!llvm.module.flags = !{!0}
!llvm.dbg.cu = !{!1}
!0 = !{i32 2, !"Debug Info Version", i32 3}
!1 = distinct !DICompileUnit(language: DW_LANG_C11, file: !2, emissionKind: LineTablesOnly)
!2 = !DIFile(filename: "t.c", directory: "/src")
!3 = !DISubroutineType(types: !{})
!10 = distinct !DISubprogram(name: "unchecked_slot", scope: !2, file: !2, line: 10, type: !3, spFlags: DISPFlagDefinition, unit: !1)
!11 = !DILocation(line: 11, column: 3, scope: !10)
!12 = !DILocation(line: 12, column: 3, scope: !10)
!20 = distinct !DISubprogram(name: "buffers", scope: !2, file: !2, line: 40, type: !3, spFlags: DISPFlagDefinition, unit: !1)
!21 = !DILocation(line: 41, column: 3, scope: !20)
!22 = !DILocation(line: 42, column: 3, scope: !20)
!23 = !DILocation(line: 43, column: 3, scope: !20)
!30 = distinct !DISubprogram(name: "alloc_loop", scope: !2, file: !2, line: 50, type: !3, spFlags: DISPFlagDefinition, unit: !1)
!31 = !DILocation(line: 51, column: 3, scope: !30)
!32 = !DILocation(line: 53, column: 3, scope: !30)
!40 = distinct !DISubprogram(name: "ab", scope: !2, file: !2, line: 60, type: !3, spFlags: DISPFlagDefinition, unit: !1)
!41 = !DILocation(line: 61, column: 3, scope: !40)
!42 = !DILocation(line: 62, column: 3, scope: !40)
!43 = !DILocation(line: 63, column: 3, scope: !40)
!50 = distinct !DISubprogram(name: "local_then_global", scope: !2, file: !2, line: 70, type: !3, spFlags: DISPFlagDefinition, unit: !1)
!51 = !DILocation(line: 71, column: 3, scope: !50)
!52 = !DILocation(line: 72, column: 3, scope: !50)
!60 = distinct !DISubprogram(name: "{async_fn#0}", linkageName: "_ZN1a5fetch28_$u7b$$u7b$closure$u7d$$u7d$17h0d9b5b7a48ebac09E", scope: !2, file: !2, line: 80, type: !3, spFlags: DISPFlagDefinition, unit: !1)
!61 = !DILocation(line: 81, column: 3, scope: !62)
!62 = distinct !DILexicalBlock(scope: !60, file: !2, line: 80, column: 1)
!65 = distinct !DISubprogram(name: "{closure#1}", linkageName: "_ZN1a4main28_$u7b$$u7b$closure$u7d$$u7d$17hf28f8e07dab5993aE", scope: !2, file: !2, line: 85, type: !3, spFlags: DISPFlagDefinition, unit: !1)
!66 = !DILocation(line: 86, column: 3, scope: !65)
!70 = distinct !DISubprogram(name: "executor", scope: !2, file: !2, line: 200, type: !3, spFlags: DISPFlagDefinition, unit: !1)
!71 = !DILocation(line: 5, column: 3, scope: !75, inlinedAt: !72)
!72 = distinct !DILocation(line: 91, column: 7, scope: !77, inlinedAt: !73)
!73 = distinct !DILocation(line: 201, column: 3, scope: !70)
!74 = !DILocation(line: 202, column: 3, scope: !70)
!75 = distinct !DISubprogram(name: "read_exact", scope: !2, file: !2, line: 4, type: !3, spFlags: DISPFlagDefinition, unit: !1)
!76 = distinct !DISubprogram(name: "{async_block#0}", scope: !2, file: !2, line: 90, type: !3, spFlags: DISPFlagDefinition, unit: !1)
!77 = distinct !DILexicalBlock(scope: !76, file: !2, line: 90, column: 1)
"#;

    #[test]
    fn unchecked_allocations_follow_slots_and_ignore_returns_and_frees() {
        let m = instrument(IR);
        // The malloc at 11 is stored, reloaded and written through; the
        // strdup at 12 is passed on. Neither is compared with null.
        assert_eq!(risks(&m, "unchecked_slot").unchecked_alloc, [11, 12]);
        for f in ["checked_slot", "returned", "freed_only", "alloc_loop"] {
            assert!(risks(&m, f).unchecked_alloc.is_empty(), "{f}");
        }
    }

    #[test]
    fn frame_bytes_sum_the_static_allocas() {
        let m = instrument(IR);
        // 256 + 8 + 4 × 4; the alloca outside the entry block is dynamic.
        assert_eq!(risks(&m, "frame").frame_bytes, 280);
        assert_eq!(risks(&m, "unchecked_slot").frame_bytes, 8);
    }

    #[test]
    fn raw_pointer_ops_are_gep_without_no_wrap_flags_and_inttoptr() {
        let m = instrument(IR);
        assert_eq!(risks(&m, "raw").raw_pointer_ops, 2);
        // The probes' own GEPs (inserted later) never count.
        assert_eq!(risks(&m, "buffers").raw_pointer_ops, 0);
    }

    #[test]
    fn buffer_ops_with_a_variable_size_or_none() {
        let m = instrument(IR);
        assert_eq!(risks(&m, "buffers").buffer_ops, [41, 43]);
    }

    #[test]
    fn allocations_inside_a_natural_loop() {
        let m = instrument(IR);
        assert_eq!(risks(&m, "alloc_loop").alloc_in_loop, [53]);
    }

    #[test]
    fn lock_order_names_objects_as_the_touches_do() {
        let m = instrument(IR);
        let r = risks(&m, "ab");
        // The condition wait on `b` is no acquisition.
        assert_eq!(r.lock_order, [["lock:global:a", "lock:global:b"]]);
        assert_eq!(
            r.lock_lines,
            BTreeMap::from([
                ("lock:global:a".to_string(), vec![61]),
                ("lock:global:b".to_string(), vec![62])
            ])
        );
        // Exclusive branches order nothing.
        assert!(risks(&m, "branches").lock_order.is_empty());
        let r = risks(&m, "local_then_global");
        assert_eq!(
            r.lock_order,
            [["lock:lock:local_then_global@71", "lock:global:a"]]
        );
        // The same names as in the touches.
        let entry = m
            .sites
            .iter()
            .find(|s| s.kind == SiteKind::Entry && s.function == "local_then_global")
            .unwrap();
        for name in r.lock_order.iter().flatten() {
            assert!(entry.touches.as_ref().unwrap().contains(name), "{name}");
        }
    }

    #[test]
    fn blocking_calls_in_async_bodies_by_debug_info() {
        let m = instrument(IR);
        assert_eq!(risks(&m, "a::fetch::{{closure}}").blocking_in_async, [81]);
        assert!(
            risks(&m, "a::main::{{closure}}")
                .blocking_in_async
                .is_empty()
        );
        // Inlined from an async block at its line 91; the call at 202 is the
        // executor's own.
        assert_eq!(risks(&m, "executor").blocking_in_async, [91]);
    }

    #[test]
    fn functions_without_risks_record_none() {
        let m = instrument(IR);
        let e = m
            .sites
            .iter()
            .find(|s| s.kind == SiteKind::Entry && s.function == "returned")
            .unwrap();
        assert_eq!(e.risks, None);
        assert!(
            m.sites
                .iter()
                .all(|s| s.kind == SiteKind::Entry || s.risks.is_none())
        );
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<ModuleSites>(&json).unwrap(), m);
    }
}
