//! Probe insertion into one LLVM module.
//!
//! Invariants:
//! - Every probe refers to module-local symbols `__panic_ctr_<H>` / `__panic_hist_<H>`
//!   (H = hash of the module key) and never to a global index, so an instrumented
//!   module does not depend on any other module and can be cached by its own hash.
//! - Site ordinals are assigned in IR order (entry first, then blocks and
//!   instructions in layout order), so the same input gives the same sites.
//! - The runtime's own functions (`__panic_*`) and rustc's allocator shim
//!   (`__rustc::*`) are never instrumented.

use std::ffi::{CStr, CString, c_char, c_uint};

use inkwell::llvm_sys::LLVMAtomicOrdering::LLVMAtomicOrderingMonotonic;
use inkwell::llvm_sys::LLVMIntPredicate::{LLVMIntEQ, LLVMIntNE};
use inkwell::llvm_sys::LLVMLinkage;
use inkwell::llvm_sys::LLVMOpcode;
use inkwell::llvm_sys::LLVMTailCallKind::LLVMTailCallKindMustTail;
use inkwell::llvm_sys::LLVMThreadLocalMode;
use inkwell::llvm_sys::LLVMVisibility::LLVMHiddenVisibility;
use inkwell::llvm_sys::analysis::{LLVMVerifierFailureAction, LLVMVerifyModule};
use inkwell::llvm_sys::core::*;
use inkwell::llvm_sys::debuginfo::*;
use inkwell::llvm_sys::prelude::*;
use inkwell::llvm_sys::{LLVMAttributeFunctionIndex, LLVMInlineAsmDialect};
use inkwell::module::Module;
use serde::{Deserialize, Serialize};

use crate::assail::{Risks, SiteCall, function_risks};
use crate::cfg::{back_edges, loop_body};
use crate::classify::{
    CallClass, FaultPoint, IoResource, SYS_FUTEX, SYS_FUTEX_ADDR_ARG, alloc_size_args,
    classify_callee, fault_point, io_resource, lock_argument,
};
use crate::names::{demangle, stable_id};
use crate::rule::{CompiledRule, FunctionFacts, Reason};
use crate::touches::{LockObject, Touch, Touches, call_site};
use panic_runtime::abi;

pub use panic_runtime::SiteKind;

fn kind_of_call(class: CallClass) -> SiteKind {
    match class {
        CallClass::Alloc => SiteKind::Alloc,
        CallClass::Free => SiteKind::Free,
        CallClass::Blocking => SiteKind::Blocking,
        CallClass::Lock => SiteKind::Lock,
        CallClass::Panic => SiteKind::Panic,
    }
}

/// One probe location, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRecord {
    /// Stable id: hash of (module key, function symbol, ordinal, kind).
    pub id: String,
    pub kind: SiteKind,
    /// Demangled function name (without Rust hashes).
    pub function: String,
    /// The function's symbol as linked.
    pub symbol: String,
    pub file: Option<String>,
    pub line: u32,
    pub column: u32,
    /// Whether this site opens a timed region (its durations are recorded).
    pub timed: bool,
    /// Entry sites: why the function is or is not timed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<Reason>,
    /// Call sites: the demangled callee.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub callee: Option<String>,
    /// Exit sites reached by unwinding (`resume`).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub unwind: bool,
    /// Timed entry sites the rule chose (not forced): the runtime may demote them
    /// when their regions prove too short, and the code then only counts.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub adaptive: bool,
    /// Timed sites: index of the duration histogram within the module.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hist: Option<u32>,
    /// Entry sites (always present there): the demangled functions this
    /// function calls directly, sorted, without duplicates. Calls through a
    /// pointer are not listed; a call to an alias lists the function it names.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub callees: Option<Vec<String>>,
    /// Entry sites (always present there): what the function uses directly, in
    /// the vocabulary of [`crate::touches`], sorted, without duplicates.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub touches: Option<Vec<String>>,
    /// Call sites whose call can be made to fail (fault injection): how.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fault: Option<FaultPoint>,
    /// Entry sites: the function's static risks ([`crate::assail`]), absent
    /// when none was found.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub risks: Option<Risks>,
    /// Exit sites with no probe at the return: the function returns at this
    /// one place and cannot unwind, so the exit count is the entry count, less
    /// the site's own counter when `pending` is set. Without `pending`, the
    /// function always returns ([`crate::returns`]: everything it calls
    /// returns). (A thread still inside the function when the counts are read
    /// is counted as having left, unless it is inside a call that `pending`
    /// brackets; so is a frame a signal handler `longjmp`s out of.)
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub from_entry: bool,
    /// Exit sites with `from_entry` whose function makes calls that may not
    /// come back (through a pointer, to a function that may block forever,
    /// exit, unwind or `longjmp`), none of them on a cycle, with a path from
    /// the entry to the return that makes none (the path a call usually
    /// takes, as in static branch prediction). The site's counter goes up
    /// before the block of such calls and down after them, so it holds the
    /// frames inside one, and those have not left: exits = entries − counter.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub pending: bool,
}

/// The sites of one instrumented module, in counter order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleSites {
    /// The object identity the ids derive from (e.g. `libfoo-hash.rlib(member.o)`).
    pub key: String,
    /// Suffix of the module's `__panic_ctr_` / `__panic_hist_` symbols.
    pub suffix: String,
    pub sites: Vec<SiteRecord>,
    pub n_hists: u32,
}

/// What one instrumented function uses, as its entry site records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionUses<'a> {
    /// Demangled name, as the sites' `function` spells it.
    pub name: &'a str,
    /// Id of its entry site: a profile's count there says whether it ran.
    pub entry: &'a str,
    /// Whether its entry is timed (it is a timed region; `dwell` is in `touches`).
    pub timed: bool,
    /// Demangled names of the functions it calls directly, sorted.
    pub callees: &'a [String],
    /// What it uses directly ([`crate::touches`]), sorted.
    pub touches: &'a [String],
}

impl<'a> FunctionUses<'a> {
    /// The uses an entry site records; `None` for any other site.
    pub fn of_entry(s: &'a SiteRecord) -> Option<FunctionUses<'a>> {
        (s.kind == SiteKind::Entry).then(|| FunctionUses {
            name: &s.function,
            entry: &s.id,
            timed: s.timed,
            callees: s.callees.as_deref().unwrap_or(&[]),
            touches: s.touches.as_deref().unwrap_or(&[]),
        })
    }
}

impl ModuleSites {
    /// Every instrumented function of the module, in site order.
    pub fn functions(&self) -> impl Iterator<Item = FunctionUses<'_>> {
        self.sites.iter().filter_map(FunctionUses::of_entry)
    }

    /// Whether every entry site carries its `callees` and `touches` (a module
    /// instrumented by a pass older than `PASS_VERSION` 3 does not).
    pub fn records_uses(&self) -> bool {
        self.sites
            .iter()
            .all(|s| s.kind != SiteKind::Entry || (s.callees.is_some() && s.touches.is_some()))
    }
}

pub fn counters_symbol(suffix: &str) -> String {
    format!("{}{suffix}", abi::SYM_CTR_PREFIX)
}

pub fn hists_symbol(suffix: &str) -> String {
    format!("{}{suffix}", abi::SYM_HIST_PREFIX)
}

/// The symbol suffix for a module key.
pub fn module_suffix(key: &str) -> String {
    stable_id(&[key.as_bytes()])
}

#[derive(Debug, thiserror::Error)]
pub enum InstrumentError {
    #[error("instrumented module `{key}` does not verify: {message}")]
    Verify { key: String, message: String },
    #[error(
        "module `{key}` is already instrumented (it defines `{symbol}`); instrumenting it twice would count everything twice"
    )]
    AlreadyInstrumented { key: String, symbol: String },
}

pub struct Options<'a> {
    /// Identity of the object this module came from; site ids derive from it.
    pub module_key: &'a str,
    pub rule: &'a CompiledRule,
}

/// Instruments every defined function of `module` in place and returns its sites.
pub fn instrument_module(
    module: &Module<'_>,
    opts: &Options<'_>,
) -> Result<ModuleSites, InstrumentError> {
    let suffix = module_suffix(opts.module_key);
    let ctr = CString::new(counters_symbol(&suffix)).expect("symbol names have no NUL");
    // SAFETY: a lookup in a valid module.
    if unsafe { !LLVMGetNamedGlobal(module.as_mut_ptr(), ctr.as_ptr()).is_null() } {
        return Err(InstrumentError::AlreadyInstrumented {
            key: opts.module_key.to_string(),
            symbol: counters_symbol(&suffix),
        });
    }
    // SAFETY: the module and its context outlive this call; every LLVM handle used
    // below is derived from them and not retained afterwards.
    let sites = unsafe {
        let mut cx = ModuleCx::new(module.as_mut_ptr(), &suffix);
        let mut fns = Vec::new();
        let mut f = LLVMGetFirstFunction(cx.module);
        while !f.is_null() {
            fns.push(f);
            f = LLVMGetNextFunction(f);
        }
        for f in fns {
            if should_instrument(f) {
                cx.function(f, opts);
            }
        }
        let n_hists = cx.n_hists;
        let sites = ModuleSites {
            key: opts.module_key.to_string(),
            suffix,
            sites: std::mem::take(&mut cx.sites),
            n_hists,
        };
        cx.define_storage(&sites);
        cx.finish();
        verify(cx.module, opts.module_key)?;
        sites
    };
    Ok(sites)
}

unsafe fn verify(module: LLVMModuleRef, key: &str) -> Result<(), InstrumentError> {
    let mut msg: *mut c_char = std::ptr::null_mut();
    // SAFETY: `module` is valid; LLVM allocates `msg`, which we dispose of.
    let broken = unsafe {
        LLVMVerifyModule(
            module,
            LLVMVerifierFailureAction::LLVMReturnStatusAction,
            &mut msg,
        )
    };
    let message = if msg.is_null() {
        String::new()
    } else {
        // SAFETY: LLVM returned a NUL-terminated message.
        let s = unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: the message was allocated by LLVM.
        unsafe { LLVMDisposeMessage(msg) };
        s
    };
    if broken != 0 {
        return Err(InstrumentError::Verify {
            key: key.to_string(),
            message,
        });
    }
    Ok(())
}

/// Name of a value (function, global) as an owned string.
pub(crate) unsafe fn value_name(v: LLVMValueRef) -> String {
    let mut len = 0usize;
    // SAFETY: `v` is a valid value; the returned pointer lives as long as the value.
    let p = unsafe { LLVMGetValueName2(v, &mut len) };
    if p.is_null() {
        return String::new();
    }
    // SAFETY: LLVM guarantees `len` bytes at `p`.
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, len) };
    String::from_utf8_lossy(bytes).into_owned()
}

unsafe fn should_instrument(f: LLVMValueRef) -> bool {
    // SAFETY: `f` is a function of a live module.
    unsafe {
        if LLVMIsDeclaration(f) != 0 {
            return false;
        }
        if LLVMGetLinkage(f) == LLVMLinkage::LLVMAvailableExternallyLinkage {
            return false;
        }
        if has_fn_attr(f, "naked") {
            return false;
        }
        let name = value_name(f);
        if name.starts_with("__panic_") || name.starts_with("llvm.") {
            return false;
        }
        !demangle(&name).starts_with("__rustc::")
    }
}

pub(crate) unsafe fn has_fn_attr(f: LLVMValueRef, attr: &str) -> bool {
    // SAFETY: plain LLVM-C queries on a valid function.
    unsafe {
        let kind = LLVMGetEnumAttributeKindForName(attr.as_ptr() as *const c_char, attr.len());
        kind != 0 && !LLVMGetEnumAttributeAtIndex(f, u32::MAX, kind).is_null()
    }
}

/// The most blocks of calls that may not come back on any path through a
/// function whose exit count comes from its entry (`SiteRecord::pending`).
const PENDING_BLOCKS_MOST: usize = 1;

/// A planned probe, collected before any IR changes so iteration stays sound.
enum Plan {
    Entry {
        timed: bool,
        adaptive: bool,
    },
    Exit {
        at: LLVMValueRef,
    },
    Loop {
        latch_term: LLVMValueRef,
        header: LLVMBasicBlockRef,
    },
    Count {
        at: LLVMValueRef,
        /// Allocation calls: the size arguments a fault replaces.
        sizes: Option<&'static [u32]>,
    },
    Region {
        call: LLVMValueRef,
    },
}

struct ModuleCx {
    module: LLVMModuleRef,
    ctx: LLVMContextRef,
    builder: LLVMBuilderRef,
    i1: LLVMTypeRef,
    i32: LLVMTypeRef,
    i64: LLVMTypeRef,
    i8: LLVMTypeRef,
    counters: LLVMValueRef,
    counters_ty: LLVMTypeRef,
    hists: LLVMValueRef,
    /// The runtime's thread-local counter offset (`PANIC_SYM_CTR_DELTA`).
    delta: LLVMValueRef,
    /// `!invariant.load !{}`: the metadata kind and the empty node that mark
    /// loads of `delta` (see `begin_counting`).
    invariant_load: (c_uint, LLVMValueRef),
    /// In the function being instrumented: the first and the last of the
    /// instructions that compute this thread's counters, which the last
    /// yields (`begin_counting`).
    thread_counters: Option<(LLVMValueRef, LLVMValueRef)>,
    enter_fn: LLVMValueRef,
    enter_ty: LLVMTypeRef,
    exit_fn: LLVMValueRef,
    exit_ty: LLVMTypeRef,
    fault_fn: LLVMValueRef,
    fault_ty: LLVMTypeRef,
    sites: Vec<SiteRecord>,
    n_hists: u32,
    known_callees: KnownCallees,
    /// The module's functions that always return ([`crate::returns`]).
    returning: std::collections::HashSet<LLVMValueRef>,
}

impl ModuleCx {
    unsafe fn new(module: LLVMModuleRef, suffix: &str) -> ModuleCx {
        // SAFETY: all calls create types/declarations in the module's own context.
        unsafe {
            let ctx = LLVMGetModuleContext(module);
            let i1 = LLVMInt1TypeInContext(ctx);
            let i8 = LLVMInt8TypeInContext(ctx);
            let i32 = LLVMInt32TypeInContext(ctx);
            let i64 = LLVMInt64TypeInContext(ctx);
            let ptr = LLVMPointerTypeInContext(ctx, 0);
            let counters_ty = LLVMArrayType2(i64, 0);
            // Placeholders until the site count is known; `define_storage`
            // replaces them with the module's own arrays.
            let counters = placeholder_global(module, counters_ty, &counters_symbol(suffix));
            let hists = placeholder_global(module, LLVMArrayType2(i8, 0), &hists_symbol(suffix));
            let delta = runtime_tls(module, abi::SYM_CTR_DELTA, i64);
            let invariant_load = (
                LLVMGetMDKindIDInContext(
                    ctx,
                    c"invariant.load".as_ptr(),
                    "invariant.load".len() as c_uint,
                ),
                LLVMMetadataAsValue(ctx, LLVMMDNodeInContext2(ctx, std::ptr::null_mut(), 0)),
            );
            let mut enter_params = [ptr, ptr];
            let enter_ty = LLVMFunctionType(i32, enter_params.as_mut_ptr(), 2, 0);
            let enter_fn = runtime_fn(module, abi::SYM_DWELL_ENTER, enter_ty);
            let mut exit_params = [i32];
            let exit_ty =
                LLVMFunctionType(LLVMVoidTypeInContext(ctx), exit_params.as_mut_ptr(), 1, 0);
            let exit_fn = runtime_fn(module, abi::SYM_DWELL_EXIT, exit_ty);
            let mut fault_params = [ptr];
            let fault_ty = LLVMFunctionType(i32, fault_params.as_mut_ptr(), 1, 0);
            let fault_fn = runtime_fn(module, abi::SYM_FAULT_ALLOC, fault_ty);
            ModuleCx {
                module,
                ctx,
                builder: LLVMCreateBuilderInContext(ctx),
                i1,
                i32,
                i64,
                i8,
                counters,
                counters_ty,
                hists,
                delta,
                invariant_load,
                thread_counters: None,
                enter_fn,
                enter_ty,
                exit_fn,
                exit_ty,
                fault_fn,
                fault_ty,
                sites: Vec::new(),
                n_hists: 0,
                known_callees: KnownCallees::default(),
                returning: crate::returns::always_returning(module),
            }
        }
    }

    /// Defines the module's counter and histogram arrays in the runtime's data
    /// sections and appends the module's record (its sites as JSON, and where
    /// its arrays are) to the non-allocated sites section; see `panic_abi.h`.
    unsafe fn define_storage(&mut self, sites: &ModuleSites) {
        // SAFETY: the placeholders belong to this module; every value created
        // here lives in the module's context.
        unsafe {
            let n_sites = sites.sites.len() as u64;
            let n_hist_bytes = u64::from(sites.n_hists) * abi::HIST_SIZE;
            let counters =
                self.replace_placeholder(self.counters, self.i64, n_sites, abi::SECTION_COUNTERS);
            let hists =
                self.replace_placeholder(self.hists, self.i8, n_hist_bytes, abi::SECTION_HISTS);
            let (Some(counters), hists) = (counters, hists) else {
                return;
            };
            let mut used = vec![counters];
            used.extend(hists);
            append_compiler_used(self.module, &used);
            let json = serde_json::to_string(sites).expect("sites serialise");
            let asm = record_asm(
                &value_name(counters),
                hists.map(|h| value_name(h)).as_deref(),
                json.as_bytes(),
            );
            LLVMAppendModuleInlineAsm(self.module, asm.as_ptr() as *const c_char, asm.len());
        }
    }

    /// Replaces a placeholder by a zeroed internal array of `n` elements in
    /// `section`, under the placeholder's name; with `n == 0` the placeholder
    /// (then unused) is deleted and `None` returned.
    unsafe fn replace_placeholder(
        &self,
        placeholder: LLVMValueRef,
        elem: LLVMTypeRef,
        n: u64,
        section: &str,
    ) -> Option<LLVMValueRef> {
        // SAFETY: `placeholder` is a global of this module.
        unsafe {
            let name = value_name(placeholder);
            if n == 0 {
                debug_assert!(LLVMGetFirstUse(placeholder).is_null());
                LLVMDeleteGlobal(placeholder);
                return None;
            }
            let ty = LLVMArrayType2(elem, n);
            let g = LLVMAddGlobal(self.module, ty, c"".as_ptr());
            LLVMSetInitializer(g, LLVMConstNull(ty));
            LLVMSetLinkage(g, LLVMLinkage::LLVMInternalLinkage);
            let section = CString::new(section).expect("section names have no NUL");
            LLVMSetSection(g, section.as_ptr());
            LLVMSetAlignment(g, 8);
            LLVMReplaceAllUsesWith(placeholder, g);
            LLVMDeleteGlobal(placeholder);
            LLVMSetValueName2(g, name.as_ptr() as *const c_char, name.len());
            Some(g)
        }
    }

    unsafe fn finish(&mut self) {
        // SAFETY: the builder was created in `new` and is disposed of exactly once.
        unsafe { LLVMDisposeBuilder(self.builder) };
        self.builder = std::ptr::null_mut();
    }

    unsafe fn function(&mut self, f: LLVMValueRef, opts: &Options<'_>) {
        // SAFETY: `f` is a defined function of `self.module`; the plan is collected
        // before any instruction is inserted.
        unsafe {
            self.thread_counters = None;
            let symbol = value_name(f);
            let function = demangle(&symbol);
            let blocks = blocks_of(f);
            let block_index: std::collections::HashMap<LLVMBasicBlockRef, usize> =
                blocks.iter().enumerate().map(|(i, &b)| (b, i)).collect();
            let index_of = |bb: LLVMBasicBlockRef| block_index.get(&bb).copied();
            let mut succs = Vec::with_capacity(blocks.len());
            let mut calls_in_block = Vec::with_capacity(blocks.len());
            let mut insts = 0usize;
            for &bb in &blocks {
                let term = LLVMGetBasicBlockTerminator(bb);
                let mut s = Vec::new();
                if !term.is_null() {
                    for i in 0..LLVMGetNumSuccessors(term) {
                        if let Some(j) = index_of(LLVMGetSuccessor(term, i)) {
                            s.push(j);
                        }
                    }
                }
                succs.push(s);
                let block_insts = instructions_of(bb);
                calls_in_block.push(block_insts.iter().any(|&i| is_real_call(i)));
                insts += block_insts.len();
            }
            let loops = back_edges(&succs);
            let loop_calls = loops.iter().any(|&(latch, header)| {
                loop_body(&succs, latch, header)
                    .iter()
                    .any(|&b| calls_in_block[b])
            });
            let facts = FunctionFacts {
                insts,
                has_loop: !loops.is_empty(),
                loop_calls,
            };
            let (timed, reason) = opts.rule.decide(&function, facts);

            let adaptive = timed && matches!(reason, Reason::Loop | Reason::Size);
            let mut plans = vec![(
                Plan::Entry { timed, adaptive },
                SiteKind::Entry,
                None,
                false,
                None,
            )];
            let mut uses = Uses::default();
            let mut site_calls: Vec<SiteCall> = Vec::new();
            for (bi, &bb) in blocks.iter().enumerate() {
                for inst in instructions_of(bb) {
                    uses.instructions += 1;
                    match LLVMGetInstructionOpcode(inst) {
                        LLVMOpcode::LLVMLoad => uses.pointer(LLVMGetOperand(inst, 0)),
                        LLVMOpcode::LLVMStore => uses.pointer(LLVMGetOperand(inst, 1)),
                        LLVMOpcode::LLVMAtomicRMW | LLVMOpcode::LLVMAtomicCmpXchg => {
                            uses.pointer(LLVMGetOperand(inst, 0))
                        }
                        LLVMOpcode::LLVMCall | LLVMOpcode::LLVMInvoke => {
                            let site = classify_call(inst);
                            let at = site.as_ref().map(|(class, ..)| (*class, plans.len()));
                            uses.call(inst, at, &mut self.known_callees);
                            if let Some((class, callee, symbol)) = site {
                                site_calls.push(SiteCall {
                                    inst,
                                    class,
                                    callee: callee.clone(),
                                    lock: None,
                                });
                                let kind = kind_of_call(class);
                                let plan = match kind {
                                    SiteKind::Blocking | SiteKind::Lock => {
                                        Plan::Region { call: inst }
                                    }
                                    _ => Plan::Count {
                                        at: inst,
                                        sizes: (class == CallClass::Alloc)
                                            .then(|| alloc_size_args(&symbol))
                                            .flatten()
                                            .filter(|args| sizes_replaceable(inst, args)),
                                    },
                                };
                                let fault = match plan {
                                    Plan::Count { sizes: None, .. } => None,
                                    _ => fault_point(class, &symbol),
                                };
                                plans.push((plan, kind, Some(callee), false, fault));
                            }
                        }
                        LLVMOpcode::LLVMRet => {
                            plans.push((Plan::Exit { at: inst }, SiteKind::Exit, None, false, None))
                        }
                        LLVMOpcode::LLVMResume => {
                            plans.push((Plan::Exit { at: inst }, SiteKind::Exit, None, true, None))
                        }
                        _ => {}
                    }
                }
                for &(latch, header) in &loops {
                    if latch == bi {
                        let term = LLVMGetBasicBlockTerminator(bb);
                        if loop_increment_supported(term) {
                            plans.push((
                                Plan::Loop {
                                    latch_term: term,
                                    header: blocks[header],
                                },
                                SiteKind::Loop,
                                None,
                                false,
                                None,
                            ));
                        }
                    }
                }
            }

            // The one exit of an untimed function that always returns gets no
            // probe (see `SiteRecord::from_entry`): for small helpers, which
            // the plain build inlines, this halves what they cost.
            let exits = plans
                .iter()
                .filter(|(p, ..)| matches!(p, Plan::Exit { .. }))
                .count();
            let unwinds = plans.iter().any(|&(_, _, _, unwind, _)| unwind);
            let one_exit = !timed && exits == 1 && !unwinds;
            let always_returns = one_exit && self.returning.contains(&f);
            // Otherwise the exit may still come from the entry, less the
            // frames inside calls that may not come back.
            let pending = match plans.iter().find_map(|(p, ..)| match p {
                Plan::Exit { at } => Some(*at),
                _ => None,
            }) {
                Some(ret) if one_exit && !always_returns => {
                    let ret_block = index_of(LLVMGetInstructionParent(ret));
                    ret_block.and_then(|r| self.pending_brackets(&blocks, &succs, r))
                }
                _ => None,
            };
            let exit_from_entry = always_returns || pending.is_some();

            let entry_loc = function_location(f, &blocks);
            let first = self.sites.len() as u32;
            // Records first, so every probe knows its counter index.
            for (ordinal, (plan, kind, callee, unwind, fault)) in plans.iter().enumerate() {
                let at = match plan {
                    Plan::Entry { .. } => None,
                    Plan::Exit { at } | Plan::Count { at, .. } => Some(*at),
                    Plan::Region { call } => Some(*call),
                    Plan::Loop { latch_term, .. } => Some(*latch_term),
                };
                let (file, line, column) = match at.map(|i| instruction_location(i)) {
                    Some(Some(loc)) => loc,
                    _ => entry_loc.clone().unwrap_or((None, 0, 0)),
                };
                let site_timed = match plan {
                    Plan::Entry { timed, .. } => *timed,
                    Plan::Region { .. } => true,
                    _ => false,
                };
                let hist = if site_timed {
                    self.n_hists += 1;
                    Some(self.n_hists - 1)
                } else {
                    None
                };
                let ordinal_s = ordinal.to_string();
                self.sites.push(SiteRecord {
                    id: stable_id(&[
                        opts.module_key.as_bytes(),
                        symbol.as_bytes(),
                        ordinal_s.as_bytes(),
                        kind.name().as_bytes(),
                    ]),
                    kind: *kind,
                    function: function.clone(),
                    symbol: symbol.clone(),
                    file,
                    line,
                    column,
                    timed: site_timed,
                    reason: matches!(plan, Plan::Entry { .. }).then_some(reason),
                    callee: callee.clone(),
                    unwind: *unwind,
                    adaptive: matches!(plan, Plan::Entry { adaptive: true, .. }),
                    hist,
                    callees: None,
                    touches: None,
                    fault: *fault,
                    risks: None,
                    from_entry: exit_from_entry && matches!(plan, Plan::Exit { .. }),
                    pending: pending.is_some() && matches!(plan, Plan::Exit { .. }),
                });
            }
            let site_id = |plan: usize| self.sites[first as usize + plan].id.clone();
            let call_id = |ordinal: usize| {
                stable_id(&[
                    opts.module_key.as_bytes(),
                    symbol.as_bytes(),
                    ordinal.to_string().as_bytes(),
                    b"call",
                ])
            };
            let touches = uses.touches(
                &function,
                site_id,
                call_id,
                timed,
                plans.iter().any(|(p, ..)| matches!(p, Plan::Loop { .. })),
            );
            // The lock objects of the lock sites, named as the touches name them.
            let locks = uses.lock_objects(&function, site_id, call_id);
            for c in &mut site_calls {
                c.lock = locks.get(&c.inst).cloned();
            }
            let risks = function_risks(self.module, f, &blocks, &succs, &loops, &site_calls);
            let entry = &mut self.sites[first as usize];
            entry.callees = Some(std::mem::take(&mut uses.callees).into_iter().collect());
            entry.touches = Some(touches);
            entry.risks = (!risks.is_empty()).then_some(risks);

            let mut entry_at = first_non_alloca(blocks[0]);
            self.position_before(entry_at);
            self.begin_counting();
            let mut guarded = false;
            let mut token: Option<LLVMValueRef> = None;
            let mut region_slot: Option<LLVMValueRef> = None;
            for (ordinal, (plan, ..)) in plans.iter().enumerate() {
                let site = first + ordinal as u32;
                let rec_hist = self.sites[site as usize].hist;
                match *plan {
                    Plan::Entry {
                        timed: true,
                        adaptive: true,
                    } => {
                        let (tok, at) = self.adaptive_entry(f, blocks[0], site, rec_hist);
                        token = Some(tok);
                        entry_at = at;
                        guarded = true;
                    }
                    Plan::Entry { timed, .. } => {
                        self.position_before(entry_at);
                        if timed {
                            token = Some(self.call_enter(site, rec_hist));
                        } else {
                            self.count(site, LLVMConstInt(self.i64, 1, 0));
                        }
                    }
                    Plan::Exit { .. } if exit_from_entry => {}
                    Plan::Exit { at } => {
                        let before = before_musttail(at);
                        self.position_before(before);
                        self.count(site, LLVMConstInt(self.i64, 1, 0));
                        match token {
                            Some(tok) if guarded && before == at => self.guarded_exit(at, tok),
                            Some(tok) => {
                                self.position_before(before);
                                self.call_exit(tok);
                            }
                            None => {}
                        }
                    }
                    Plan::Count { at, sizes } => {
                        self.position_before(at);
                        self.count(site, LLVMConstInt(self.i64, 1, 0));
                        if let Some(args) = sizes {
                            self.fault_sizes(site, at, args);
                        }
                    }
                    Plan::Loop { latch_term, header } => {
                        self.position_before(latch_term);
                        let inc = self.backedge_increment(latch_term, header);
                        self.count(site, inc);
                    }
                    Plan::Region { call } => {
                        self.position_before(call);
                        let tok = self.call_enter(site, rec_hist);
                        if LLVMGetInstructionOpcode(call) == LLVMOpcode::LLVMCall {
                            let next = LLVMGetNextInstruction(call);
                            self.position_before(next);
                            self.call_exit(tok);
                        } else {
                            // An invoke: the region ends at the start of either
                            // successor. The token travels through a stack slot
                            // reset to a no-op token after use, so a successor
                            // shared with other paths closes nothing it did not open.
                            let slot = *region_slot.get_or_insert_with(|| {
                                self.position_before(entry_at);
                                let s = LLVMBuildAlloca(
                                    self.builder,
                                    self.i32,
                                    c"panic.region".as_ptr(),
                                );
                                LLVMBuildStore(
                                    self.builder,
                                    LLVMConstInt(self.i32, u32::MAX as u64, 0),
                                    s,
                                );
                                s
                            });
                            self.position_before(call);
                            LLVMBuildStore(self.builder, tok, slot);
                            for succ in [LLVMGetNormalDest(call), LLVMGetUnwindDest(call)] {
                                self.position_before(first_insertion_point(succ));
                                let v = LLVMBuildLoad2(self.builder, self.i32, slot, c"".as_ptr());
                                self.call_exit(v);
                                LLVMBuildStore(
                                    self.builder,
                                    LLVMConstInt(self.i32, u32::MAX as u64, 0),
                                    slot,
                                );
                            }
                        }
                    }
                }
            }
            if let Some(brackets) = pending {
                let exit = plans
                    .iter()
                    .position(|(p, ..)| matches!(p, Plan::Exit { .. }))
                    .expect("a pending exit has its site");
                let site = first + exit as u32;
                for (first_call, last_call) in brackets {
                    self.position_before(first_call);
                    self.count(site, LLVMConstInt(self.i64, 1, 0));
                    // A `call` is never a terminator, so something follows it.
                    self.position_before(LLVMGetNextInstruction(last_call));
                    self.count(site, LLVMConstInt(self.i64, u64::MAX, 0));
                }
            }
        }
    }

    /// For a function that returns at one place, cannot unwind and is
    /// untimed but does not always return: the first and last call of each
    /// block whose calls may not come back (`SiteRecord::pending`), when its
    /// exit count can come from its entry that way. That takes no `invoke`,
    /// no `setjmp`-like (`returns_twice`) or `musttail` call, none of those
    /// blocks on a cycle, a path from the entry to the return through none of
    /// them, and at most [`PENDING_BLOCKS_MOST`] of them on any path, so a path
    /// through them costs at most twice that in probes (against one probe at
    /// the return on every path).
    unsafe fn pending_brackets(
        &self,
        blocks: &[LLVMBasicBlockRef],
        succs: &[Vec<usize>],
        ret_block: usize,
    ) -> Option<Vec<(LLVMValueRef, LLVMValueRef)>> {
        // SAFETY: read-only queries on the function's blocks, before any probe.
        unsafe {
            let mut brackets = Vec::new();
            let mut marked = vec![false; blocks.len()];
            for (b, &bb) in blocks.iter().enumerate() {
                let mut risky: Option<(LLVMValueRef, LLVMValueRef)> = None;
                for inst in instructions_of(bb) {
                    match LLVMGetInstructionOpcode(inst) {
                        LLVMOpcode::LLVMInvoke | LLVMOpcode::LLVMCallBr => return None,
                        LLVMOpcode::LLVMCall => {
                            if LLVMGetTailCallKind(inst) == LLVMTailCallKindMustTail {
                                return None;
                            }
                            let returns = match called_function(LLVMGetCalledValue(inst)) {
                                Some(g) if has_fn_attr(g, "returns_twice") => return None,
                                Some(g) => crate::returns::call_returns(g, &self.returning),
                                None => false, // through a pointer, or inline assembly
                            };
                            if !returns {
                                risky = Some((risky.map_or(inst, |(first, _)| first), inst));
                            }
                        }
                        _ => {}
                    }
                }
                if let Some(r) = risky {
                    marked[b] = true;
                    brackets.push(r);
                }
            }
            let (fewest, most) = crate::cfg::marked_on_paths(succs, &marked, 0, ret_block)?;
            (fewest == 0 && most <= PENDING_BLOCKS_MOST).then_some(brackets)
        }
    }

    /// The entry of a function whose region the runtime may demote. A new entry
    /// block takes the static allocas and reads the histogram's demoted flag: when
    /// set, the site is only counted and the token is the no-op token; otherwise
    /// the runtime opens the region (and counts). Returns the token (a phi at the
    /// start of the old entry block) and the new entry's first non-alloca.
    unsafe fn adaptive_entry(
        &mut self,
        f: LLVMValueRef,
        old_entry: LLVMBasicBlockRef,
        site: u32,
        hist: Option<u32>,
    ) -> (LLVMValueRef, LLVMValueRef) {
        // SAFETY: builds blocks and instructions in `f`, whose entry is `old_entry`.
        unsafe {
            let new_entry =
                LLVMInsertBasicBlockInContext(self.ctx, old_entry, c"panic.entry".as_ptr());
            LLVMPositionBuilderAtEnd(self.builder, new_entry);
            let mut i = LLVMGetFirstInstruction(old_entry);
            while LLVMGetInstructionOpcode(i) == LLVMOpcode::LLVMAlloca {
                let next = LLVMGetNextInstruction(i);
                move_to_builder(self.builder, i);
                i = next;
            }
            // The thread's counters too, which follow the allocas: every
            // probe of the function, this entry's included, uses them.
            if let Some((first, last)) = self.thread_counters
                && i == first
            {
                i = LLVMGetNextInstruction(last);
                let mut j = first;
                while j != i {
                    let next = LLVMGetNextInstruction(j);
                    move_to_builder(self.builder, j);
                    j = next;
                }
            }
            LLVMSetCurrentDebugLocation2(self.builder, LLVMInstructionGetDebugLoc(i));
            let off = hist.expect("timed sites have a histogram") as u64 * abi::HIST_SIZE
                + abi::HIST_FLAGS;
            let mut idx = [LLVMConstInt(self.i64, off, 0)];
            let flags_ptr = LLVMConstInBoundsGEP2(self.i8, self.hists, idx.as_mut_ptr(), 1);
            let flags = LLVMBuildLoad2(self.builder, self.i64, flags_ptr, c"panic.flags".as_ptr());
            LLVMSetOrdering(flags, LLVMAtomicOrderingMonotonic);
            LLVMSetAlignment(flags, 8);
            let bit = LLVMBuildAnd(
                self.builder,
                flags,
                LLVMConstInt(self.i64, abi::HIST_FLAG_DEMOTED, 0),
                c"".as_ptr(),
            );
            let demoted = LLVMBuildICmp(
                self.builder,
                LLVMIntNE,
                bit,
                LLVMConstInt(self.i64, 0, 0),
                c"".as_ptr(),
            );
            let counted = LLVMAppendBasicBlockInContext(self.ctx, f, c"panic.counted".as_ptr());
            let timed = LLVMAppendBasicBlockInContext(self.ctx, f, c"panic.timed".as_ptr());
            LLVMBuildCondBr(self.builder, demoted, counted, timed);
            LLVMPositionBuilderAtEnd(self.builder, counted);
            self.count(site, LLVMConstInt(self.i64, 1, 0));
            LLVMBuildBr(self.builder, old_entry);
            LLVMPositionBuilderAtEnd(self.builder, timed);
            let tok = self.call_enter(site, hist);
            LLVMBuildBr(self.builder, old_entry);
            // Before any debug records too: a phi must carry none.
            LLVMPositionBuilderBeforeInstrAndDbgRecords(
                self.builder,
                LLVMGetFirstInstruction(old_entry),
            );
            let phi = LLVMBuildPhi(self.builder, self.i32, c"panic.tok".as_ptr());
            let mut values = [LLVMConstInt(self.i32, abi::NO_TOKEN, 0), tok];
            let mut from = [counted, timed];
            LLVMAddIncoming(phi, values.as_mut_ptr(), from.as_mut_ptr(), 2);
            (phi, first_non_alloca(new_entry))
        }
    }

    /// Closes a possibly demoted region before `term` (a `ret` or `resume`): the
    /// runtime is called only when the entry opened a region.
    unsafe fn guarded_exit(&mut self, term: LLVMValueRef, tok: LLVMValueRef) {
        // SAFETY: moves `term` into a new block and branches to it; `term` has no
        // successors, so no phi anywhere refers to its block as a predecessor.
        unsafe {
            let bb = LLVMGetInstructionParent(term);
            let f = LLVMGetBasicBlockParent(bb);
            let loc = LLVMInstructionGetDebugLoc(term);
            let close = LLVMAppendBasicBlockInContext(self.ctx, f, c"panic.close".as_ptr());
            let done = LLVMAppendBasicBlockInContext(self.ctx, f, c"panic.done".as_ptr());
            LLVMPositionBuilderAtEnd(self.builder, done);
            move_to_builder(self.builder, term);
            LLVMPositionBuilderAtEnd(self.builder, bb);
            LLVMSetCurrentDebugLocation2(self.builder, loc);
            let open = LLVMBuildICmp(
                self.builder,
                LLVMIntNE,
                tok,
                LLVMConstInt(self.i32, abi::NO_TOKEN, 0),
                c"".as_ptr(),
            );
            LLVMBuildCondBr(self.builder, open, close, done);
            LLVMPositionBuilderAtEnd(self.builder, close);
            self.call_exit(tok);
            LLVMBuildBr(self.builder, done);
        }
    }

    /// Positions the builder before `inst`, with `inst`'s debug location.
    unsafe fn position_before(&mut self, inst: LLVMValueRef) {
        // SAFETY: `inst` belongs to the module the builder works on.
        unsafe {
            LLVMPositionBuilderBefore(self.builder, inst);
            LLVMSetCurrentDebugLocation2(self.builder, LLVMInstructionGetDebugLoc(inst));
        }
    }

    /// Adds `inc` to this thread's copy of the module's counter `local`: the
    /// counter's address plus the thread's offset (`PANIC_SYM_CTR_DELTA`, which
    /// the runtime points at the thread's own block). No other thread writes
    /// that block, so the add needs no lock: a monotonic load and store, which
    /// x86 emits as one unlocked `incq`. Atomic rather than plain, so that the
    /// optimiser never keeps a count in a register across a loop: a reader of
    /// the live segment, or a crash, sees every count the thread made.
    unsafe fn count(&mut self, local: u32, inc: LLVMValueRef) {
        // SAFETY: builds instructions at the builder's position, which the
        // function's counter base (`begin_counting`) dominates.
        unsafe {
            let (_, base) = self.thread_counters.expect("begin_counting ran first");
            let mut idx = [LLVMConstInt(self.i64, u64::from(local), 0)];
            let ptr = LLVMBuildInBoundsGEP2(
                self.builder,
                self.i64,
                base,
                idx.as_mut_ptr(),
                1,
                c"panic.ctr".as_ptr(),
            );
            let old = LLVMBuildLoad2(self.builder, self.i64, ptr, c"".as_ptr());
            LLVMSetOrdering(old, LLVMAtomicOrderingMonotonic);
            LLVMSetAlignment(old, 8);
            let new = LLVMBuildAdd(self.builder, old, inc, c"".as_ptr());
            let store = LLVMBuildStore(self.builder, new, ptr);
            LLVMSetOrdering(store, LLVMAtomicOrderingMonotonic);
            LLVMSetAlignment(store, 8);
        }
    }

    /// At the builder's position, at the start of a function's entry block:
    /// the address of this thread's copy of the module's counters (the
    /// counters plus the thread's offset), computed once for all of the
    /// function's probes ([`Self::count`]).
    ///
    /// The sum passes through an empty inline `asm` that returns its operand.
    /// Without it, instruction selection folds the sum back into every
    /// probe's address (counter + offset + index), which keeps two registers
    /// busy for the whole function; through it, a probe is one `incq` at a
    /// constant displacement from one register. The `asm` has no side
    /// effects and touches no memory (`memory(none)`), so the optimiser
    /// still merges the copies that inlining brings together, and hoists or
    /// deletes them like any pure value. (SQLite bench: 1.085x → 1.06x.)
    unsafe fn begin_counting(&mut self) {
        // SAFETY: builds instructions at the builder's position.
        unsafe {
            let delta = LLVMBuildLoad2(self.builder, self.i64, self.delta, c"panic.delta".as_ptr());
            // The offset changes only when the runtime gives the thread its
            // block (before any of the program's code runs in a thread it
            // starts) or takes it back (after the thread's code has returned),
            // so within any function it is invariant: the optimiser may keep it
            // in a register across stores and calls instead of reloading it.
            let (kind, empty) = self.invariant_load;
            LLVMSetMetadata(delta, kind, empty);
            let mut off = [delta];
            let sum = LLVMBuildGEP2(
                self.builder,
                self.i8,
                self.counters,
                off.as_mut_ptr(),
                1,
                c"".as_ptr(),
            );
            let ptr = LLVMTypeOf(self.counters);
            let mut params = [ptr];
            let ty = LLVMFunctionType(ptr, params.as_mut_ptr(), 1, 0);
            let constraints = c"=r,0";
            let asm = LLVMGetInlineAsm(
                ty,
                c"".as_ptr(),
                0,
                constraints.as_ptr(),
                constraints.count_bytes(),
                0,
                0,
                LLVMInlineAsmDialect::LLVMInlineAsmDialectATT,
                0,
            );
            let mut args = [sum];
            let base = LLVMBuildCall2(
                self.builder,
                ty,
                asm,
                args.as_mut_ptr(),
                1,
                c"panic.ctrs".as_ptr(),
            );
            // `memory(none)` is the memory attribute with no effects (0).
            for (attr, value) in [("memory", 0), ("nounwind", 0), ("willreturn", 0)] {
                let kind =
                    LLVMGetEnumAttributeKindForName(attr.as_ptr() as *const c_char, attr.len());
                LLVMAddCallSiteAttribute(
                    base,
                    LLVMAttributeFunctionIndex,
                    LLVMCreateEnumAttribute(self.ctx, kind, value),
                );
            }
            self.thread_counters = Some((delta, base));
        }
    }

    unsafe fn counter_ptr(&self, local: u32) -> LLVMValueRef {
        // SAFETY: constant GEP into the module's counter array declaration.
        unsafe {
            let mut idx = [
                LLVMConstInt(self.i64, 0, 0),
                LLVMConstInt(self.i64, local as u64, 0),
            ];
            LLVMConstInBoundsGEP2(self.counters_ty, self.counters, idx.as_mut_ptr(), 2)
        }
    }

    unsafe fn call_enter(&mut self, local: u32, hist: Option<u32>) -> LLVMValueRef {
        // SAFETY: builds a call to the runtime declaration at the builder's position.
        unsafe {
            let ctr = self.counter_ptr(local);
            let off = hist.expect("timed sites have a histogram") as u64 * abi::HIST_SIZE;
            let mut idx = [LLVMConstInt(self.i64, off, 0)];
            let h = LLVMConstInBoundsGEP2(self.i8, self.hists, idx.as_mut_ptr(), 1);
            let mut args = [ctr, h];
            LLVMBuildCall2(
                self.builder,
                self.enter_ty,
                self.enter_fn,
                args.as_mut_ptr(),
                2,
                c"panic.tok".as_ptr(),
            )
        }
    }

    /// Before the allocation call `call` (at the builder's position): asks the
    /// runtime whether a fault rule fails it, and if so passes
    /// `PANIC_FAULT_HUGE` for each of its size arguments `args`, which the
    /// allocator refuses. No control flow changes: a `select` per argument.
    unsafe fn fault_sizes(&mut self, local: u32, call: LLVMValueRef, args: &[u32]) {
        // SAFETY: builds instructions before `call` (a live call or invoke
        // whose size arguments are i64, `sizes_replaceable`) and rewrites its
        // operands.
        unsafe {
            let mut fargs = [self.counter_ptr(local)];
            let fails = LLVMBuildCall2(
                self.builder,
                self.fault_ty,
                self.fault_fn,
                fargs.as_mut_ptr(),
                1,
                c"panic.fault".as_ptr(),
            );
            let fails = LLVMBuildICmp(
                self.builder,
                LLVMIntNE,
                fails,
                LLVMConstInt(self.i32, 0, 0),
                c"".as_ptr(),
            );
            let huge = LLVMConstInt(self.i64, abi::FAULT_HUGE, 0);
            for &i in args {
                let size = LLVMGetOperand(call, i);
                let v = LLVMBuildSelect(self.builder, fails, huge, size, c"panic.size".as_ptr());
                LLVMSetOperand(call, i, v);
            }
        }
    }

    unsafe fn call_exit(&mut self, token: LLVMValueRef) {
        // SAFETY: builds a call to the runtime declaration at the builder's position.
        unsafe {
            let mut args = [token];
            LLVMBuildCall2(
                self.builder,
                self.exit_ty,
                self.exit_fn,
                args.as_mut_ptr(),
                1,
                c"".as_ptr(),
            );
        }
    }

    /// 1 when the latch's terminator is about to take the edge to `header`, else 0,
    /// as an i64, computed from the terminator's own condition (no CFG change).
    unsafe fn backedge_increment(
        &mut self,
        term: LLVMValueRef,
        header: LLVMBasicBlockRef,
    ) -> LLVMValueRef {
        // SAFETY: reads the terminator's operands and builds i1/i64 arithmetic.
        unsafe {
            let one = LLVMConstInt(self.i64, 1, 0);
            let n = LLVMGetNumSuccessors(term);
            let to_header: Vec<bool> = (0..n)
                .map(|i| LLVMGetSuccessor(term, i) == header)
                .collect();
            if to_header.iter().all(|&t| t) {
                return one;
            }
            let taken = match LLVMGetInstructionOpcode(term) {
                LLVMOpcode::LLVMBr => {
                    let cond = LLVMGetCondition(term);
                    if to_header[0] {
                        cond
                    } else {
                        LLVMBuildNot(self.builder, cond, c"".as_ptr())
                    }
                }
                LLVMOpcode::LLVMSwitch => {
                    // `LLVMGetCondition` is for `br` only; a switch's condition is operand 0.
                    let cond = LLVMGetOperand(term, 0);
                    // Successor 0 is the default; successor i >= 1 is a case.
                    let mut any_case_to_header = LLVMConstInt(self.i1, 0, 0);
                    let mut any_case_elsewhere = LLVMConstInt(self.i1, 0, 0);
                    for i in 1..n {
                        let v = switch_case_value(term, i);
                        let eq = LLVMBuildICmp(self.builder, LLVMIntEQ, cond, v, c"".as_ptr());
                        if to_header[i as usize] {
                            any_case_to_header =
                                LLVMBuildOr(self.builder, any_case_to_header, eq, c"".as_ptr());
                        } else {
                            any_case_elsewhere =
                                LLVMBuildOr(self.builder, any_case_elsewhere, eq, c"".as_ptr());
                        }
                    }
                    if to_header[0] {
                        LLVMBuildNot(self.builder, any_case_elsewhere, c"".as_ptr())
                    } else {
                        any_case_to_header
                    }
                }
                _ => unreachable!("filtered by loop_increment_supported"),
            };
            LLVMBuildZExt(self.builder, taken, self.i64, c"".as_ptr())
        }
    }
}

/// What one function uses directly, gathered while its probes are planned (before
/// any IR changes) and turned into its `callees` and `touches` (`crate::touches`).
#[derive(Default)]
struct Uses {
    callees: std::collections::BTreeSet<String>,
    /// Demangled names of the non-constant globals it uses.
    globals: std::collections::BTreeSet<String>,
    /// Calls the touches name by call site, in IR order.
    calls: Vec<CallUse>,
    /// Instructions seen so far: a call's ordinal, for the id of a call that is
    /// not a site.
    instructions: usize,
}

struct CallUse {
    inst: LLVMValueRef,
    /// The call's plan (its site is the function's first site plus this), if a site.
    plan: Option<usize>,
    ordinal: usize,
    what: CallTouch,
}

enum CallTouch {
    /// An allocation or free site.
    Alloc,
    /// A lock site, with the global its lock is (in), if any.
    Lock(Option<String>),
    /// A call on a file or a socket.
    Io(IoResource),
}

impl Uses {
    /// A pointer the function loads from, stores to or does an atomic operation on.
    unsafe fn pointer(&mut self, ptr: LLVMValueRef) {
        // SAFETY: `ptr` is an operand of a live instruction.
        if let Some(name) = unsafe { pointed_global(ptr) } {
            self.globals.insert(name);
        }
    }

    /// A call or invoke; `site` is its class and plan index when it is a site.
    unsafe fn call(
        &mut self,
        inst: LLVMValueRef,
        site: Option<(CallClass, usize)>,
        known: &mut KnownCallees,
    ) {
        // SAFETY: `inst` is a live call or invoke; its operands are valid values.
        unsafe {
            let n_args = LLVMGetNumArgOperands(inst);
            for i in 0..n_args {
                self.pointer(LLVMGetOperand(inst, i));
            }
            let callee = known.get(LLVMGetCalledValue(inst));
            if let Some(name) = &callee.name {
                self.callees.insert(name.clone());
            }
            let (symbol, io) = (callee.symbol.as_deref(), callee.io);
            let mut push = |plan: Option<usize>, what| {
                self.calls.push(CallUse {
                    inst,
                    plan,
                    ordinal: self.instructions,
                    what,
                })
            };
            let plan = site.map(|(_, p)| p);
            match site {
                Some((CallClass::Alloc | CallClass::Free, _)) => push(plan, CallTouch::Alloc),
                Some((CallClass::Lock, _)) => {
                    let sym = symbol.unwrap_or("");
                    let arg = if sym == "syscall" {
                        SYS_FUTEX_ADDR_ARG
                    } else {
                        lock_argument(sym)
                    };
                    let global = if arg < n_args {
                        pointed_global(LLVMGetOperand(inst, arg))
                    } else {
                        None
                    };
                    push(plan, CallTouch::Lock(global));
                }
                _ => {}
            }
            if let Some(res) = io {
                push(plan, CallTouch::Io(res));
            }
        }
    }

    /// The function's touches. `site_id(plan)` is the id of a plan's site,
    /// `call_id(ordinal)` a stable id for a call that is not a site.
    unsafe fn touches(
        &self,
        function: &str,
        site_id: impl Fn(usize) -> String,
        call_id: impl Fn(usize) -> String,
        timed: bool,
        loops: bool,
    ) -> Vec<String> {
        let mut t = Touches::default();
        for g in &self.globals {
            t.insert(Touch::Global(g.clone()));
        }
        if timed {
            t.insert(Touch::Dwell);
        }
        if loops {
            t.insert(Touch::Cpu);
        }
        for c in &self.calls {
            let at = || c.site_name(function, &site_id, &call_id);
            match &c.what {
                CallTouch::Alloc => {
                    t.insert(Touch::Alloc);
                    t.insert(Touch::Memory);
                }
                CallTouch::Lock(global) => t.insert(c.lock_touch(global, at)),
                CallTouch::Io(IoResource::File) => {
                    t.insert(Touch::Io);
                    t.insert(Touch::File(at()));
                }
                CallTouch::Io(IoResource::Socket) => {
                    t.insert(Touch::Network);
                    t.insert(Touch::Socket(at()));
                }
            }
        }
        t.into_sorted()
    }

    /// The lock object of every lock call, as its `lock:` touch, by instruction.
    fn lock_objects(
        &self,
        function: &str,
        site_id: impl Fn(usize) -> String,
        call_id: impl Fn(usize) -> String,
    ) -> std::collections::HashMap<LLVMValueRef, String> {
        self.calls
            .iter()
            .filter_map(|c| match &c.what {
                CallTouch::Lock(global) => {
                    let at = || c.site_name(function, &site_id, &call_id);
                    Some((c.inst, c.lock_touch(global, at).to_string()))
                }
                _ => None,
            })
            .collect()
    }
}

impl CallUse {
    /// The call's site name (`crate::touches::call_site`): by line, else by the
    /// id of its site (or, when it is not a site, a stable id of the call).
    fn site_name(
        &self,
        function: &str,
        site_id: &impl Fn(usize) -> String,
        call_id: &impl Fn(usize) -> String,
    ) -> String {
        // SAFETY: `self.inst` is a live instruction of the function.
        let line = unsafe { own_line(self.inst) };
        let id = match self.plan {
            Some(p) => site_id(p),
            None => call_id(self.ordinal),
        };
        call_site(function, line, &id)
    }

    /// The `lock:` touch of a lock call whose lock is (in) `global`, if known.
    fn lock_touch(&self, global: &Option<String>, at: impl FnOnce() -> String) -> Touch {
        Touch::Lock(match global {
            Some(g) => LockObject::Global(g.clone()),
            None => LockObject::Site(at()),
        })
    }
}

/// The demangled name of the non-constant global variable `v` points into (the
/// global itself, or a GEP or cast of it, as a constant or an instruction), if
/// any. Constants, unnamed globals, `llvm.*` and the pass's own `__panic_*`
/// symbols are not named.
unsafe fn pointed_global(mut v: LLVMValueRef) -> Option<String> {
    // SAFETY: `v` and every operand followed are valid values of a live module.
    unsafe {
        // GEPs of GEPs are short chains; the bound only guards against a cycle
        // through unreachable code.
        for _ in 0..32 {
            if v.is_null() {
                return None;
            }
            if !LLVMIsAGlobalVariable(v).is_null() {
                if LLVMIsGlobalConstant(v) != 0 {
                    return None;
                }
                let name = value_name(v);
                if name.is_empty() || name.starts_with("llvm.") || name.starts_with("__panic_") {
                    return None;
                }
                return Some(demangle(&name));
            }
            if !LLVMIsAGlobalAlias(v).is_null() {
                v = LLVMAliasGetAliasee(v);
                continue;
            }
            let opcode = if !LLVMIsAConstantExpr(v).is_null() {
                LLVMGetConstOpcode(v)
            } else if !LLVMIsAInstruction(v).is_null() {
                LLVMGetInstructionOpcode(v)
            } else {
                return None;
            };
            match opcode {
                LLVMOpcode::LLVMGetElementPtr
                | LLVMOpcode::LLVMBitCast
                | LLVMOpcode::LLVMAddrSpaceCast => v = LLVMGetOperand(v, 0),
                _ => return None,
            }
        }
        None
    }
}

/// What the uses need to know of a called value, worked out once per module
/// (demangling every call's callee again would be most of the cost).
#[derive(Default)]
struct KnownCallees(std::collections::HashMap<LLVMValueRef, Callee>);

struct Callee {
    /// The symbol of the function called, when the called value is one.
    symbol: Option<String>,
    /// The demangled name `callees` lists: the function called directly (through
    /// an alias, the function it names), unless an intrinsic or the runtime.
    name: Option<String>,
    /// The file or socket the call works on, by the symbol called.
    io: Option<IoResource>,
}

impl KnownCallees {
    unsafe fn get(&mut self, called: LLVMValueRef) -> &Callee {
        self.0.entry(called).or_insert_with(|| {
            // SAFETY: `called` is the called operand of a live call.
            unsafe {
                let symbol = (!called.is_null() && !LLVMIsAFunction(called).is_null())
                    .then(|| value_name(called));
                let name = called_function(called).map(|f| value_name(f)).filter(|n| {
                    !n.is_empty() && !n.starts_with("llvm.") && !n.starts_with("__panic_")
                });
                Callee {
                    io: symbol.as_deref().and_then(io_resource),
                    name: name.map(|n| demangle(&n)),
                    symbol,
                }
            }
        })
    }
}

/// The function a call's called value is (through an alias, the function the
/// alias names), if it is known.
pub(crate) unsafe fn called_function(called: LLVMValueRef) -> Option<LLVMValueRef> {
    // SAFETY: queries on a valid value.
    unsafe {
        let mut v = called;
        for _ in 0..8 {
            if v.is_null() {
                return None;
            }
            if !LLVMIsAFunction(v).is_null() {
                return Some(v);
            }
            if LLVMIsAGlobalAlias(v).is_null() {
                return None;
            }
            v = LLVMAliasGetAliasee(v);
        }
        None
    }
}

/// Moves `inst` to the builder's position, keeping its own debug location
/// (`LLVMInsertIntoBuilder` would stamp the builder's current one on it).
unsafe fn move_to_builder(builder: LLVMBuilderRef, inst: LLVMValueRef) {
    // SAFETY: `inst` and the builder's block belong to the same function.
    unsafe {
        let loc = LLVMInstructionGetDebugLoc(inst);
        LLVMInstructionRemoveFromParent(inst);
        LLVMSetCurrentDebugLocation2(builder, loc);
        LLVMInsertIntoBuilder(builder, inst);
    }
}

unsafe fn loop_increment_supported(term: LLVMValueRef) -> bool {
    // SAFETY: opcode query on a valid instruction.
    !term.is_null()
        && matches!(
            unsafe { LLVMGetInstructionOpcode(term) },
            LLVMOpcode::LLVMBr | LLVMOpcode::LLVMSwitch
        )
}

unsafe fn placeholder_global(module: LLVMModuleRef, ty: LLVMTypeRef, name: &str) -> LLVMValueRef {
    let cname = CString::new(name).expect("symbol names have no NUL");
    // SAFETY: declares a global in a valid module.
    unsafe {
        let g = LLVMAddGlobal(module, ty, cname.as_ptr());
        LLVMSetLinkage(g, LLVMLinkage::LLVMExternalLinkage);
        g
    }
}

/// Adds `values` to `llvm.compiler.used`, so the arrays the module's record
/// refers to are kept (and keep their names) whatever the optimiser removes.
unsafe fn append_compiler_used(module: LLVMModuleRef, values: &[LLVMValueRef]) {
    // SAFETY: `llvm.compiler.used` is an appending array of pointers by LLVM's
    // definition; the new array replaces the old one in the same module.
    unsafe {
        let name = c"llvm.compiler.used";
        let ctx = LLVMGetModuleContext(module);
        let ptr = LLVMPointerTypeInContext(ctx, 0);
        let mut elems: Vec<LLVMValueRef> = Vec::new();
        let old = LLVMGetNamedGlobal(module, name.as_ptr());
        if !old.is_null() {
            let init = LLVMGetInitializer(old);
            if !init.is_null() {
                let n = LLVMGetNumOperands(init);
                for i in 0..n {
                    elems.push(LLVMGetOperand(init, i as c_uint));
                }
            }
            LLVMDeleteGlobal(old);
        }
        elems.extend_from_slice(values);
        let init = LLVMConstArray2(ptr, elems.as_mut_ptr(), elems.len() as u64);
        let g = LLVMAddGlobal(module, LLVMTypeOf(init), name.as_ptr());
        LLVMSetInitializer(g, init);
        LLVMSetLinkage(g, LLVMLinkage::LLVMAppendingLinkage);
        LLVMSetSection(g, c"llvm.metadata".as_ptr());
    }
}

/// The module's record in the sites section, as module-level assembly (the
/// only way to emit a non-allocated section from IR).
fn record_asm(counters: &str, hists: Option<&str>, json: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut asm = String::with_capacity(json.len() + json.len() / 8 + 256);
    let _ = write!(
        asm,
        ".pushsection {},\"\",@progbits\n.p2align 3\n.ascii \"{}\"\n.quad {}\n.quad {counters}\n.quad {}\n.quad {}\n",
        abi::SECTION_SITES,
        abi::RECORD_MAGIC,
        abi::ABI_VERSION,
        hists.unwrap_or("0"),
        json.len()
    );
    for chunk in json.chunks(4096) {
        asm.push_str(".ascii \"");
        for &b in chunk {
            match b {
                b'"' => asm.push_str("\\\""),
                b'\\' => asm.push_str("\\\\"),
                0x20..=0x7e => asm.push(b as char),
                _ => {
                    let _ = write!(asm, "\\{b:03o}");
                }
            }
        }
        asm.push_str("\"\n");
    }
    asm.push_str(".popsection\n");
    asm
}

/// The value of a switch's case whose successor index is `i` (>= 1).
#[cfg(not(feature = "llvm19"))]
unsafe fn switch_case_value(switch: LLVMValueRef, i: c_uint) -> LLVMValueRef {
    // SAFETY: `switch` is a switch instruction with more than `i` successors.
    unsafe { LLVMGetSwitchCaseValue(switch, i) }
}

/// LLVM 19's C API has no accessor; its switch operands are
/// [cond, default, value 1, dest 1, ...] (LLVM 22 no longer stores case values as
/// operands, hence the accessor there).
#[cfg(feature = "llvm19")]
unsafe fn switch_case_value(switch: LLVMValueRef, i: c_uint) -> LLVMValueRef {
    // SAFETY: as above; operand 2i is case i's value in LLVM 19.
    unsafe { LLVMGetOperand(switch, 2 * i) }
}

unsafe fn runtime_fn(module: LLVMModuleRef, name: &str, ty: LLVMTypeRef) -> LLVMValueRef {
    let cname = CString::new(name).expect("symbol names have no NUL");
    // SAFETY: declares (or finds) a function in a valid module.
    unsafe {
        let existing = LLVMGetNamedFunction(module, cname.as_ptr());
        let f = if existing.is_null() {
            LLVMAddFunction(module, cname.as_ptr(), ty)
        } else {
            existing
        };
        LLVMSetVisibility(f, LLVMHiddenVisibility);
        let ctx = LLVMGetModuleContext(module);
        for attr in ["nounwind", "nocallback"] {
            let kind = LLVMGetEnumAttributeKindForName(attr.as_ptr() as *const c_char, attr.len());
            if kind != 0 {
                LLVMAddAttributeAtIndex(f, u32::MAX, LLVMCreateEnumAttribute(ctx, kind, 0));
            }
        }
        f
    }
}

/// Declares (or finds) the runtime's hidden thread-local `name` of type `ty`,
/// initial-exec: the linker turns its accesses into one `%fs`-relative load in
/// an executable.
unsafe fn runtime_tls(module: LLVMModuleRef, name: &str, ty: LLVMTypeRef) -> LLVMValueRef {
    let cname = CString::new(name).expect("symbol names have no NUL");
    // SAFETY: declares (or finds) a global in a valid module.
    unsafe {
        let existing = LLVMGetNamedGlobal(module, cname.as_ptr());
        let g = if existing.is_null() {
            LLVMAddGlobal(module, ty, cname.as_ptr())
        } else {
            existing
        };
        LLVMSetLinkage(g, LLVMLinkage::LLVMExternalLinkage);
        LLVMSetVisibility(g, LLVMHiddenVisibility);
        LLVMSetThreadLocal(g, 1);
        LLVMSetThreadLocalMode(g, LLVMThreadLocalMode::LLVMInitialExecTLSModel);
        g
    }
}

unsafe fn blocks_of(f: LLVMValueRef) -> Vec<LLVMBasicBlockRef> {
    let mut out = Vec::new();
    // SAFETY: iteration over a valid function's blocks.
    unsafe {
        let mut bb = LLVMGetFirstBasicBlock(f);
        while !bb.is_null() {
            out.push(bb);
            bb = LLVMGetNextBasicBlock(bb);
        }
    }
    out
}

pub(crate) unsafe fn instructions_of(bb: LLVMBasicBlockRef) -> Vec<LLVMValueRef> {
    let mut out = Vec::new();
    // SAFETY: iteration over a valid block's instructions.
    unsafe {
        let mut i = LLVMGetFirstInstruction(bb);
        while !i.is_null() {
            out.push(i);
            i = LLVMGetNextInstruction(i);
        }
    }
    out
}

/// The entry block's first instruction that is not an `alloca`: static allocas stay
/// at the top so later passes and codegen still see them as static.
unsafe fn first_non_alloca(bb: LLVMBasicBlockRef) -> LLVMValueRef {
    // SAFETY: iteration over a valid block; a block always ends in a terminator.
    unsafe {
        let mut i = LLVMGetFirstInstruction(bb);
        while LLVMGetInstructionOpcode(i) == LLVMOpcode::LLVMAlloca {
            i = LLVMGetNextInstruction(i);
        }
        i
    }
}

/// The first instruction after a block's phis and landing pad.
unsafe fn first_insertion_point(bb: LLVMBasicBlockRef) -> LLVMValueRef {
    // SAFETY: iteration over a valid block.
    unsafe {
        let mut i = LLVMGetFirstInstruction(bb);
        while matches!(
            LLVMGetInstructionOpcode(i),
            LLVMOpcode::LLVMPHI | LLVMOpcode::LLVMLandingPad
        ) {
            i = LLVMGetNextInstruction(i);
        }
        i
    }
}

/// Nothing may stand between a `musttail` call and its `ret`: probe before the call.
unsafe fn before_musttail(ret: LLVMValueRef) -> LLVMValueRef {
    // SAFETY: queries on valid instructions.
    unsafe {
        let prev = LLVMGetPreviousInstruction(ret);
        if !prev.is_null()
            && LLVMGetInstructionOpcode(prev) == LLVMOpcode::LLVMCall
            && LLVMGetTailCallKind(prev) == LLVMTailCallKindMustTail
        {
            return prev;
        }
        ret
    }
}

/// A call that runs code: not an LLVM intrinsic (`llvm.*`) and not inline asm.
unsafe fn is_real_call(inst: LLVMValueRef) -> bool {
    // SAFETY: opcode and operand queries on a valid instruction.
    unsafe {
        if !matches!(
            LLVMGetInstructionOpcode(inst),
            LLVMOpcode::LLVMCall | LLVMOpcode::LLVMInvoke
        ) {
            return false;
        }
        let callee = LLVMGetCalledValue(inst);
        if callee.is_null() || !LLVMIsAInlineAsm(callee).is_null() {
            return false;
        }
        LLVMIsAFunction(callee).is_null() || !value_name(callee).starts_with("llvm.")
    }
}

/// A direct call to a classified callee: its class, demangled name and symbol.
unsafe fn classify_call(inst: LLVMValueRef) -> Option<(CallClass, String, String)> {
    // SAFETY: `inst` is a call or invoke; operands are valid values.
    unsafe {
        let callee = LLVMGetCalledValue(inst);
        if callee.is_null() || LLVMIsAFunction(callee).is_null() {
            return None;
        }
        let name = value_name(callee);
        // Intrinsics are not calls, except the traps (`__builtin_trap`), which end
        // the program like abort.
        let trap = matches!(name.as_str(), "llvm.trap" | "llvm.ubsantrap");
        if (name.starts_with("llvm.") && !trap) || name.starts_with("__panic_") {
            return None;
        }
        if name == "syscall" {
            let nr = LLVMGetOperand(inst, 0);
            if !LLVMIsAConstantInt(nr).is_null() && LLVMConstIntGetZExtValue(nr) == SYS_FUTEX {
                return Some((CallClass::Lock, "futex".to_string(), name));
            }
            return None;
        }
        classify_callee(&name).map(|c| (c, demangle(&name), name))
    }
}

/// Whether every size argument `args` of the allocation call `inst` exists and
/// is an i64 (size_t here), so a fault can replace it.
unsafe fn sizes_replaceable(inst: LLVMValueRef, args: &[u32]) -> bool {
    // SAFETY: operand and type queries on a live call or invoke.
    unsafe {
        let n = LLVMGetNumArgOperands(inst);
        args.iter().all(|&i| {
            i < n && {
                let ty = LLVMTypeOf(LLVMGetOperand(inst, i));
                LLVMGetTypeKind(ty) == inkwell::llvm_sys::LLVMTypeKind::LLVMIntegerTypeKind
                    && LLVMGetIntTypeWidth(ty) == 64
            }
        })
    }
}

type Loc = (Option<String>, u32, u32);

/// Where Rust's standard library sources are, in its debug info (rustup's
/// toolchains remap them to `/rustc/<commit>/library/...`).
const RUST_STD_SOURCES: &str = "/rustc/";

/// The source location of `inst`. Code of Rust's standard library inlined
/// into a function (`Option::unwrap`, `Mutex::lock`, `Vec::push`) is placed
/// at the call it was inlined from, outward to the first location outside
/// the standard library: a site's line is where the program makes the call,
/// not a line of `option.rs`. Any other inlined code keeps its own location.
unsafe fn instruction_location(inst: LLVMValueRef) -> Option<Loc> {
    // SAFETY: debug metadata queries on a valid instruction.
    unsafe {
        let mut loc = LLVMInstructionGetDebugLoc(inst);
        if loc.is_null() {
            return None;
        }
        loop {
            let file = scope_file(LLVMDILocationGetScope(loc));
            let outer = LLVMDILocationGetInlinedAt(loc);
            let in_std = file
                .as_deref()
                .is_some_and(|f| f.starts_with(RUST_STD_SOURCES));
            if !in_std || outer.is_null() {
                return Some((
                    file,
                    LLVMDILocationGetLine(loc),
                    LLVMDILocationGetColumn(loc),
                ));
            }
            loc = outer;
        }
    }
}

/// The line of `inst` in its function's own source: for code inlined into the
/// function, the line of the call it was inlined from (so two calls inlined from
/// the same library line are still told apart by where the function makes them).
pub(crate) unsafe fn own_line(inst: LLVMValueRef) -> Option<u32> {
    // SAFETY: debug metadata queries on a valid instruction.
    unsafe {
        let mut loc = LLVMInstructionGetDebugLoc(inst);
        if loc.is_null() {
            return None;
        }
        loop {
            let outer = LLVMDILocationGetInlinedAt(loc);
            if outer.is_null() {
                return Some(LLVMDILocationGetLine(loc));
            }
            loc = outer;
        }
    }
}

unsafe fn function_location(f: LLVMValueRef, blocks: &[LLVMBasicBlockRef]) -> Option<Loc> {
    // SAFETY: debug metadata queries on a valid function.
    unsafe {
        let sp = LLVMGetSubprogram(f);
        if !sp.is_null() {
            return Some((scope_file(sp), LLVMDISubprogramGetLine(sp), 0));
        }
        for &bb in blocks {
            for i in instructions_of(bb) {
                if let Some(loc) = instruction_location(i) {
                    return Some(loc);
                }
            }
        }
        None
    }
}

unsafe fn scope_file(scope: LLVMMetadataRef) -> Option<String> {
    if scope.is_null() {
        return None;
    }
    // SAFETY: `scope` is a DIScope; file and strings are owned by the context.
    unsafe {
        let file = LLVMDIScopeGetFile(scope);
        if file.is_null() {
            return None;
        }
        let mut len: c_uint = 0;
        let name = LLVMDIFileGetFilename(file, &mut len);
        let name = lossy(name, len)?;
        if name.starts_with('/') || name.starts_with('<') {
            return Some(name);
        }
        let mut dlen: c_uint = 0;
        let dir = LLVMDIFileGetDirectory(file, &mut dlen);
        match lossy(dir, dlen) {
            Some(d) if !d.is_empty() => Some(format!("{}/{}", d.trim_end_matches('/'), name)),
            _ => Some(name),
        }
    }
}

unsafe fn lossy(p: *const c_char, len: c_uint) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: LLVM guarantees `len` bytes at `p`.
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, len as usize) };
    Some(String::from_utf8_lossy(bytes).into_owned())
}

/// The pass on small IR modules from text. They need an LLVM to link against,
/// and this crate links none; under `llvm19` they link Debian's libLLVM 19 (the
/// clang plugin's), found on the default library path:
/// `cargo test -p panic-passes --features llvm19`.
#[cfg(all(test, feature = "llvm19"))]
pub(crate) mod ir_tests {
    use inkwell::context::Context;
    use inkwell::memory_buffer::MemoryBuffer;
    use inkwell::module::Module;

    use super::*;
    use crate::DwellRule;

    #[link(name = "libLLVM.so.19.1", kind = "dylib", modifiers = "+verbatim")]
    unsafe extern "C" {}

    /// Parses IR text into a module of `ctx`.
    pub(crate) fn parse<'c>(ctx: &'c Context, ir: &str) -> Module<'c> {
        let buf = MemoryBuffer::create_from_memory_range_copy(ir.as_bytes(), "t.ll");
        ctx.create_module_from_ir(buf).expect("test IR parses")
    }

    /// Instruments `ir` (with `timed` patterns forced timed) and returns its sites.
    pub(crate) fn instrument(ir: &str, timed: &[&str]) -> ModuleSites {
        let ctx = Context::create();
        instrument_in(&parse(&ctx, ir), timed)
    }

    /// Instruments `module` in place (with `timed` patterns forced timed) and
    /// returns its sites.
    pub(crate) fn instrument_in(module: &Module<'_>, timed: &[&str]) -> ModuleSites {
        let rule = DwellRule {
            time: timed.iter().map(|s| s.to_string()).collect(),
            ..DwellRule::default()
        }
        .compile()
        .unwrap();
        let opts = Options {
            module_key: "t.ll",
            rule: &rule,
        };
        instrument_module(module, &opts).expect("instruments and verifies")
    }

    fn uses<'a>(m: &'a ModuleSites, name: &str) -> FunctionUses<'a> {
        m.functions()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no function {name}"))
    }

    fn site_id(m: &ModuleSites, function: &str, kind: SiteKind) -> String {
        m.sites
            .iter()
            .find(|s| s.function == function && s.kind == kind)
            .unwrap()
            .id
            .clone()
    }

    const IR: &str = r#"
@counter = global i64 0
@table = global [4 x i64] zeroinitializer
@limit = constant i64 10
@msg = private unnamed_addr constant [3 x i8] c"hi\00"
@mu = global [40 x i8] zeroinitializer
@tls = thread_local global i64 0
@flag = global i32 0
@shadow = global i64 0

declare i32 @pthread_mutex_lock(ptr)
declare i32 @pthread_mutex_unlock(ptr)
declare ptr @malloc(i64)
declare void @free(ptr)
declare i64 @read(i32, ptr, i64)
declare i64 @send(i32, ptr, i64, i32)
declare i32 @socket(i32, i32, i32)
declare i32 @puts(ptr)
declare void @use(ptr)
declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)
declare ptr @llvm.threadlocal.address.p0(ptr)

define i64 @globals(i64 %i) {
  %a = load i64, ptr @counter
  %l = load i64, ptr @limit
  %p = getelementptr inbounds [4 x i64], ptr @table, i64 0, i64 %i
  store i64 %l, ptr %p
  %c = call i32 @puts(ptr @msg)
  %t = call ptr @llvm.threadlocal.address.p0(ptr @tls)
  %tv = load i64, ptr %t
  %old = atomicrmw add ptr @flag, i32 1 seq_cst
  store i64 1, ptr getelementptr inbounds (i8, ptr @shadow, i64 4)
  ret i64 %a
}

define i64 @constants_only() {
  %l = load i64, ptr @limit
  %c = call i32 @puts(ptr @msg)
  ret i64 %l
}

define void @lock_global() {
  %r = call i32 @pthread_mutex_lock(ptr getelementptr inbounds (i8, ptr @mu, i64 0))
  %u = call i32 @pthread_mutex_unlock(ptr @mu)
  ret void
}

define void @lock_local(ptr %m) !dbg !3 {
  %r = call i32 @pthread_mutex_lock(ptr %m), !dbg !5
  %u = call i32 @pthread_mutex_unlock(ptr %m), !dbg !6
  ret void, !dbg !6
}

define void @lock_inlined(ptr %a, ptr %b) !dbg !10 {
  %r = call i32 @pthread_mutex_lock(ptr %a), !dbg !12
  %s = call i32 @pthread_mutex_lock(ptr %b), !dbg !14
  ret void, !dbg !13
}

define void @lock_stack() {
  %m = alloca [40 x i8]
  %r = call i32 @pthread_mutex_lock(ptr %m)
  ret void
}

declare void @_ZNSt10lock_guardISt5mutexEC2ERS0_(ptr, ptr)
declare i64 @syscall(i64, ...)

define void @guard_and_futex() {
  %g = alloca ptr
  call void @_ZNSt10lock_guardISt5mutexEC2ERS0_(ptr %g, ptr @mu)
  %r = call i64 (i64, ...) @syscall(i64 202, ptr @flag, i32 0, i32 1)
  ret void
}

define void @allocates(i64 %n) {
  %p = call ptr @malloc(i64 %n)
  call void @llvm.memset.p0.i64(ptr %p, i8 0, i64 %n, i1 false)
  call void @free(ptr %p)
  ret void
}

define void @loops(i64 %n) {
entry:
  br label %head
head:
  %i = phi i64 [ 0, %entry ], [ %next, %head ]
  %next = add i64 %i, 1
  %done = icmp eq i64 %next, %n
  br i1 %done, label %exit, label %head
exit:
  ret void
}

define void @does_io(i32 %fd, ptr %buf) !dbg !7 {
  %r = call i64 @read(i32 %fd, ptr %buf, i64 8), !dbg !8
  %s = call i32 @socket(i32 2, i32 1, i32 0), !dbg !9
  %w = call i64 @send(i32 %s, ptr %buf, i64 8, i32 0)
  ret void, !dbg !9
}

define void @caller(ptr %f) {
  %a = call i64 @globals(i64 1)
  call void @lock_global()
  %b = call i64 @globals(i64 2)
  call void @allocates(i64 8)
  call void %f()
  call void @llvm.memset.p0.i64(ptr @table, i8 0, i64 32, i1 false)
  ret void
}

define void @timed_fn() {
  ret void
}

!llvm.module.flags = !{!0}
!llvm.dbg.cu = !{!1}
!0 = !{i32 2, !"Debug Info Version", i32 3}
!1 = distinct !DICompileUnit(language: DW_LANG_C11, file: !2, emissionKind: LineTablesOnly)
!2 = !DIFile(filename: "t.c", directory: "/src")
!3 = distinct !DISubprogram(name: "lock_local", scope: !2, file: !2, line: 20, type: !4, spFlags: DISPFlagDefinition, unit: !1)
!4 = !DISubroutineType(types: !{})
!5 = !DILocation(line: 21, column: 3, scope: !3)
!6 = !DILocation(line: 22, column: 3, scope: !3)
!7 = distinct !DISubprogram(name: "does_io", scope: !2, file: !2, line: 30, type: !4, spFlags: DISPFlagDefinition, unit: !1)
!8 = !DILocation(line: 31, column: 3, scope: !7)
!9 = !DILocation(line: 32, column: 3, scope: !7)
!10 = distinct !DISubprogram(name: "lock_inlined", scope: !2, file: !2, line: 40, type: !4, spFlags: DISPFlagDefinition, unit: !1)
!11 = distinct !DISubprogram(name: "lib_lock", scope: !2, file: !2, line: 4, type: !4, spFlags: DISPFlagDefinition, unit: !1)
!12 = !DILocation(line: 5, column: 3, scope: !11, inlinedAt: !13)
!13 = !DILocation(line: 41, column: 3, scope: !10)
!14 = !DILocation(line: 5, column: 3, scope: !11, inlinedAt: !15)
!15 = !DILocation(line: 42, column: 3, scope: !10)
"#;

    #[test]
    fn global_loads_stores_atomics_and_addresses_are_recorded() {
        let m = instrument(IR, &[]);
        let f = uses(&m, "globals");
        // @limit and @msg are constants; @tls is a thread-local, used through
        // llvm.threadlocal.address; @shadow through a constant GEP.
        assert_eq!(
            f.touches,
            [
                "global:counter",
                "global:flag",
                "global:shadow",
                "global:table",
                "global:tls"
            ]
        );
        assert_eq!(f.callees, ["puts"], "intrinsics are not callees");
        assert_eq!(f.entry, site_id(&m, "globals", SiteKind::Entry));
    }

    #[test]
    fn constant_globals_are_not_recorded() {
        let m = instrument(IR, &[]);
        let f = uses(&m, "constants_only");
        assert!(f.touches.is_empty(), "{:?}", f.touches);
        assert_eq!(f.callees, ["puts"]);
    }

    #[test]
    fn a_lock_on_a_global_mutex_names_the_global() {
        let m = instrument(IR, &[]);
        let f = uses(&m, "lock_global");
        assert_eq!(f.touches, ["global:mu", "lock:global:mu"]);
        assert_eq!(f.callees, ["pthread_mutex_lock", "pthread_mutex_unlock"]);
    }

    #[test]
    fn a_lock_on_a_local_mutex_is_named_by_its_call_site() {
        let m = instrument(IR, &[]);
        // By line, from debug info.
        assert_eq!(uses(&m, "lock_local").touches, ["lock:lock:lock_local@21"]);
        // Inlined from one library line, called from two lines of the function.
        assert_eq!(
            uses(&m, "lock_inlined").touches,
            ["lock:lock:lock_inlined@41", "lock:lock:lock_inlined@42"]
        );
        // Without a line, by the lock site's id.
        let id = site_id(&m, "lock_stack", SiteKind::Lock);
        assert_eq!(
            uses(&m, "lock_stack").touches,
            [format!("lock:lock:lock_stack#{id}")]
        );
    }

    /// Standard-library code inlined into a function is placed at the call
    /// it was inlined from; other inlined code keeps its own line.
    #[test]
    fn only_the_one_exit_of_a_function_that_always_returns_comes_from_its_entry() {
        const LEAVES: &str = r#"
declare void @g()
declare i64 @llvm.umax.i64(i64, i64)
declare ptr @malloc(i64)
declare void @abort() noreturn

define i64 @leaf(i64 %n) {
entry:
  br label %head
head:
  %i = phi i64 [ 0, %entry ], [ %j, %head ]
  %j = add i64 %i, 1
  %m = call i64 @llvm.umax.i64(i64 %j, i64 %n)
  %c = icmp ult i64 %j, %n
  br i1 %c, label %head, label %out
out:
  ret i64 %m
}

define i64 @two_returns(i64 %n) {
  %c = icmp eq i64 %n, 0
  br i1 %c, label %a, label %b
a:
  ret i64 1
b:
  ret i64 2
}

define void @caller() {
  call void @g()
  ret void
}

define void @asm() {
  call void asm sideeffect "nop", ""()
  ret void
}

define void @timed_leaf() {
  ret void
}

define i64 @calls_leaf(i64 %n) {
  %r = call i64 @leaf(i64 %n)
  ret i64 %r
}

define ptr @uses_malloc(i64 %n) {
  %p = call ptr @malloc(i64 %n)
  ret ptr %p
}

define void @dies() {
  call void @abort()
  unreachable
}

define void @calls_dies(i1 %c) {
  br i1 %c, label %d, label %out
d:
  call void @dies()
  br label %out
out:
  ret void
}

define i64 @recur(i64 %n) {
  %z = icmp eq i64 %n, 0
  br i1 %z, label %out, label %down
down:
  %m = sub i64 %n, 1
  %r = call i64 @recur(i64 %m)
  br label %out
out:
  %v = phi i64 [ 0, %0 ], [ %r, %down ]
  ret i64 %v
}

define void @indirect(ptr %f) {
  call void %f()
  ret void
}
"#;
        let ctx = Context::create();
        let module = parse(&ctx, LEAVES);
        let m = instrument_in(&module, &["timed_leaf"]);
        let derived: Vec<(&str, bool, bool)> = m
            .sites
            .iter()
            .filter(|s| s.kind == SiteKind::Exit)
            .map(|s| (s.function.as_str(), s.from_entry, s.pending))
            .collect();
        // `calls_dies` does not always return, but one path makes no call
        // that may not come back: its exit is pending (see the next test).
        assert_eq!(
            derived,
            [
                ("leaf", true, false),
                ("two_returns", false, false),
                ("two_returns", false, false),
                ("caller", false, false),
                ("asm", false, false),
                ("timed_leaf", false, false),
                ("calls_leaf", true, false),
                ("uses_malloc", true, false),
                ("calls_dies", true, true),
                ("recur", true, false),
                ("indirect", false, false),
            ]
        );
        // Probes (each addresses one of the thread's counters) left in each
        // function: `leaf` keeps its entry and its loop's; the others one per site.
        let probes = |name: &str| {
            let f = module.get_function(name).unwrap();
            inkwell::values::AnyValue::print_to_string(&f)
                .to_string()
                .lines()
                .map(str::trim_start)
                .filter(|l| l.starts_with("%panic.ctr") && !l.starts_with("%panic.ctrs"))
                .count()
        };
        assert_eq!(probes("leaf"), 2);
        assert_eq!(probes("two_returns"), 3);
        assert_eq!(probes("caller"), 2);
    }

    #[test]
    fn a_pending_exit_brackets_the_calls_that_may_not_come_back() {
        const CALLS: &str = r#"
declare void @g()
declare void @h()
declare void @t(i1)
declare i32 @setjmp(ptr) returns_twice
declare i32 @__gxx_personality_v0(...)

define void @rare(i1 %c, ptr %f) {
  br i1 %c, label %slow, label %out
slow:
  call void @g()
  call void %f()
  br label %out
out:
  ret void
}

define void @always(i1 %c) {
  call void @g()
  ret void
}

define void @in_loop(i1 %c) {
entry:
  br label %head
head:
  br i1 %c, label %body, label %out
body:
  call void @g()
  br label %head
out:
  ret void
}

define void @two_in_a_row(i1 %c, i1 %d) {
  br i1 %c, label %a, label %out
a:
  call void @g()
  br i1 %d, label %b, label %out
b:
  call void @h()
  br label %out
out:
  ret void
}

define void @jumps(i1 %c, ptr %buf) {
  br i1 %c, label %a, label %out
a:
  %r = call i32 @setjmp(ptr %buf)
  br label %out
out:
  ret void
}

define void @tail(i1 %c) {
  br i1 %c, label %a, label %out
a:
  musttail call void @t(i1 %c)
  ret void
out:
  ret void
}

define void @catches(i1 %c) personality ptr @__gxx_personality_v0 {
  br i1 %c, label %a, label %out
a:
  invoke void @g() to label %out unwind label %pad
pad:
  %lp = landingpad { ptr, i32 } catch ptr null
  br label %out
out:
  ret void
}
"#;
        let ctx = Context::create();
        let module = parse(&ctx, CALLS);
        let m = instrument_in(&module, &[]);
        let pending: Vec<(&str, bool)> = m
            .sites
            .iter()
            .filter(|s| s.kind == SiteKind::Exit)
            .map(|s| (s.function.as_str(), s.from_entry && s.pending))
            .collect();
        // Pending only where a path makes no such call, none is on a cycle, a
        // path passes at most one block of them, and nothing returns twice,
        // tail-calls or unwinds.
        assert_eq!(
            pending,
            [
                ("rare", true),
                ("always", false),
                ("in_loop", false),
                ("two_in_a_row", false),
                ("jumps", false),
                ("tail", false),
                ("tail", false),
                ("catches", false),
            ]
        );
        // In `rare`, the exit's counter goes up before the block's first such
        // call and down after its last; the return has no probe.
        let exit = m
            .sites
            .iter()
            .position(|s| s.function == "rare" && s.kind == SiteKind::Exit)
            .unwrap();
        let ir = inkwell::values::AnyValue::print_to_string(&module.get_function("rare").unwrap())
            .to_string();
        let slow: Vec<&str> = ir
            .lines()
            .skip_while(|l| !l.starts_with("slow:"))
            .take_while(|l| !l.is_empty())
            .map(str::trim)
            .filter(|l| {
                l.starts_with("call") || l.starts_with("%panic.ctr") || l.contains("add i64")
            })
            .collect();
        let at = |i: usize| format!("%panic.ctrs, i64 {i}");
        assert_eq!(slow.len(), 6, "{ir}");
        assert!(
            slow[0].starts_with("%panic.ctr") && slow[0].contains(&at(exit)),
            "{ir}"
        );
        assert!(slow[1].ends_with(", 1"), "{ir}");
        assert!(slow[2].starts_with("call void @g()") && slow[3].starts_with("call void %f()"));
        assert!(
            slow[4].starts_with("%panic.ctr") && slow[4].contains(&at(exit)),
            "{ir}"
        );
        assert!(slow[5].ends_with(", -1"), "{ir}");
        // All the function's probes address the thread's counters through one
        // pointer, computed once at the entry.
        assert_eq!(
            ir.matches(r#"%panic.ctrs = call ptr asm "", "=r,0""#)
                .count(),
            1,
            "{ir}"
        );
        let out: Vec<&str> = ir.lines().skip_while(|l| !l.starts_with("out:")).collect();
        assert!(!out.iter().any(|l| l.contains("%panic.ctr")), "{ir}");
    }

    #[test]
    fn sites_inlined_from_the_rust_standard_library_take_the_callers_line() {
        const INLINED: &str = r#"
declare i32 @pthread_mutex_lock(ptr)

define void @user(ptr %a, ptr %b) !dbg !10 {
  %r = call i32 @pthread_mutex_lock(ptr %a), !dbg !12
  %s = call i32 @pthread_mutex_lock(ptr %b), !dbg !22
  ret void, !dbg !13
}

!llvm.module.flags = !{!0}
!llvm.dbg.cu = !{!1}
!0 = !{i32 2, !"Debug Info Version", i32 3}
!1 = distinct !DICompileUnit(language: DW_LANG_Rust, file: !2, emissionKind: LineTablesOnly)
!2 = !DIFile(filename: "src/main.rs", directory: "/src/app")
!3 = !DIFile(filename: "/rustc/0123abcd/library/std/src/sync/mutex.rs", directory: "")
!4 = !DISubroutineType(types: !{})
!5 = !DIFile(filename: "src/util.rs", directory: "/src/app")
!10 = distinct !DISubprogram(name: "user", scope: !2, file: !2, line: 40, type: !4, spFlags: DISPFlagDefinition, unit: !1)
!11 = distinct !DISubprogram(name: "lock", scope: !3, file: !3, line: 300, type: !4, spFlags: DISPFlagDefinition, unit: !1)
!12 = !DILocation(line: 310, column: 9, scope: !11, inlinedAt: !13)
!13 = !DILocation(line: 41, column: 7, scope: !10)
!21 = distinct !DISubprogram(name: "helper", scope: !5, file: !5, line: 4, type: !4, spFlags: DISPFlagDefinition, unit: !1)
!22 = !DILocation(line: 5, column: 3, scope: !21, inlinedAt: !23)
!23 = !DILocation(line: 42, column: 3, scope: !10)
"#;
        let m = instrument(INLINED, &[]);
        let locks: Vec<(Option<&str>, u32)> = m
            .sites
            .iter()
            .filter(|s| s.kind == SiteKind::Lock)
            .map(|s| (s.file.as_deref(), s.line))
            .collect();
        assert_eq!(
            locks,
            [
                (Some("/src/app/src/main.rs"), 41),
                (Some("/src/app/src/util.rs"), 5)
            ]
        );
    }

    #[test]
    fn a_guard_locks_its_second_argument_and_a_futex_its_word() {
        let m = instrument(IR, &[]);
        let f = uses(&m, "guard_and_futex");
        assert_eq!(
            f.touches,
            [
                "global:flag",
                "global:mu",
                "lock:global:flag",
                "lock:global:mu"
            ]
        );
        assert_eq!(
            f.callees,
            [
                "std::lock_guard<std::mutex>::lock_guard(std::mutex&)",
                "syscall"
            ]
        );
    }

    #[test]
    fn allocation_sizes_go_through_the_fault_check_and_blocking_calls_are_fault_points() {
        let ir = r#"
declare ptr @malloc(i64)
declare ptr @calloc(i64, i64)
declare ptr @strdup(ptr)
declare i64 @write(i32, ptr, i64)
declare i32 @accept(i32, ptr, ptr)
declare i32 @nanosleep(ptr, ptr)

define ptr @f(i64 %n, ptr %s, ptr %b) {
  %a = call ptr @malloc(i64 %n)
  %c = call ptr @calloc(i64 %n, i64 8)
  %d = call ptr @strdup(ptr %s)
  %w = call i64 @write(i32 1, ptr %b, i64 %n)
  %x = call i32 @accept(i32 3, ptr null, ptr null)
  %y = call i32 @nanosleep(ptr %b, ptr null)
  ret ptr %a
}
"#;
        let ctx = Context::create();
        let module = parse(&ctx, ir);
        let m = instrument_in(&module, &[]);
        let fault = |callee: &str| {
            m.sites
                .iter()
                .find(|s| s.callee.as_deref() == Some(callee))
                .unwrap()
                .fault
        };
        use crate::classify::FaultPoint;
        assert_eq!(fault("malloc"), Some(FaultPoint::Alloc));
        assert_eq!(fault("calloc"), Some(FaultPoint::Alloc));
        assert_eq!(fault("strdup"), None, "no size to replace");
        assert_eq!(fault("write"), Some(FaultPoint::File));
        assert_eq!(fault("accept"), Some(FaultPoint::Socket));
        assert_eq!(fault("nanosleep"), Some(FaultPoint::Wait));
        let text = module.print_to_string().to_string();
        // One check per sized allocation; each size argument is selected.
        assert_eq!(
            text.matches("call i32 @__panic_fault_alloc(").count(),
            2,
            "{text}"
        );
        assert_eq!(text.matches("select i1").count(), 3, "{text}");
        let huge = abi::FAULT_HUGE as i64;
        assert!(text.contains(&format!("i64 {huge}, i64 %n")), "{text}");
        assert!(text.contains("call ptr @malloc(i64 %panic.size)"), "{text}");
        let calloc = text
            .lines()
            .find(|l| l.contains("call ptr @calloc("))
            .unwrap();
        assert_eq!(calloc.matches("i64 %panic.size").count(), 2, "{calloc}");
        assert!(text.contains("call ptr @strdup(ptr %s)"), "{text}");
    }

    #[test]
    fn allocation_sites_touch_the_allocator_and_memory() {
        let m = instrument(IR, &[]);
        let f = uses(&m, "allocates");
        assert_eq!(f.touches, ["alloc", "memory"]);
        assert_eq!(f.callees, ["free", "malloc"]);
    }

    #[test]
    fn a_loop_touches_cpu_and_a_timed_function_dwell() {
        let m = instrument(IR, &["timed_fn"]);
        assert_eq!(uses(&m, "loops").touches, ["cpu"]);
        assert!(uses(&m, "loops").callees.is_empty());
        assert_eq!(uses(&m, "timed_fn").touches, ["dwell"]);
    }

    #[test]
    fn files_and_sockets_by_call_site() {
        let m = instrument(IR, &[]);
        let f = uses(&m, "does_io");
        // `send` has no line: its blocking site's id names it.
        let send = m
            .sites
            .iter()
            .find(|s| s.callee.as_deref() == Some("send"))
            .unwrap();
        assert_eq!(
            f.touches,
            [
                "file:does_io@31".to_string(),
                "io".into(),
                "network".into(),
                format!("socket:does_io#{}", send.id),
                "socket:does_io@32".into(),
            ]
        );
        assert_eq!(f.callees, ["read", "send", "socket"]);
    }

    #[test]
    fn callees_are_direct_sorted_and_unique() {
        let m = instrument(IR, &[]);
        let f = uses(&m, "caller");
        // The indirect call is not listed; the memset intrinsic is not a callee,
        // but the global it writes is touched.
        assert_eq!(f.callees, ["allocates", "globals", "lock_global"]);
        assert_eq!(f.touches, ["global:table"]);
    }

    #[test]
    fn every_instrumented_function_records_its_uses_in_the_json() {
        let m = instrument(IR, &[]);
        assert!(m.records_uses());
        assert_eq!(m.functions().count(), 12);
        let json = serde_json::to_string(&m).unwrap();
        assert!(!json.contains('\n'), "compact");
        let back: ModuleSites = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        // Only entry sites carry the lists.
        assert!(
            m.sites
                .iter()
                .all(|s| (s.kind == SiteKind::Entry) == s.touches.is_some())
        );
    }
}
