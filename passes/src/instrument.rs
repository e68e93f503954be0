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
use inkwell::llvm_sys::LLVMThreadLocalMode;
use inkwell::llvm_sys::LLVMTailCallKind::LLVMTailCallKindMustTail;
use inkwell::llvm_sys::LLVMVisibility::LLVMHiddenVisibility;
use inkwell::llvm_sys::analysis::{LLVMVerifierFailureAction, LLVMVerifyModule};
use inkwell::llvm_sys::core::*;
use inkwell::llvm_sys::debuginfo::*;
use inkwell::llvm_sys::prelude::*;
use inkwell::module::Module;
use serde::{Deserialize, Serialize};

use crate::cfg::{back_edges, loop_body};
use crate::classify::{CallClass, SYS_FUTEX, classify_callee};
use crate::names::{demangle, stable_id};
use crate::rule::{CompiledRule, FunctionFacts, Reason};
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
unsafe fn value_name(v: LLVMValueRef) -> String {
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

unsafe fn has_fn_attr(f: LLVMValueRef, attr: &str) -> bool {
    // SAFETY: plain LLVM-C queries on a valid function.
    unsafe {
        let kind = LLVMGetEnumAttributeKindForName(attr.as_ptr() as *const c_char, attr.len());
        kind != 0 && !LLVMGetEnumAttributeAtIndex(f, u32::MAX, kind).is_null()
    }
}

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
    enter_fn: LLVMValueRef,
    enter_ty: LLVMTypeRef,
    exit_fn: LLVMValueRef,
    exit_ty: LLVMTypeRef,
    sites: Vec<SiteRecord>,
    n_hists: u32,
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
            let mut enter_params = [ptr, ptr];
            let enter_ty = LLVMFunctionType(i32, enter_params.as_mut_ptr(), 2, 0);
            let enter_fn = runtime_fn(module, abi::SYM_DWELL_ENTER, enter_ty);
            let mut exit_params = [i32];
            let exit_ty =
                LLVMFunctionType(LLVMVoidTypeInContext(ctx), exit_params.as_mut_ptr(), 1, 0);
            let exit_fn = runtime_fn(module, abi::SYM_DWELL_EXIT, exit_ty);
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
                enter_fn,
                enter_ty,
                exit_fn,
                exit_ty,
                sites: Vec::new(),
                n_hists: 0,
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
            )];
            for (bi, &bb) in blocks.iter().enumerate() {
                for inst in instructions_of(bb) {
                    match LLVMGetInstructionOpcode(inst) {
                        LLVMOpcode::LLVMCall | LLVMOpcode::LLVMInvoke => {
                            if let Some((class, callee)) = classify_call(inst) {
                                let kind = kind_of_call(class);
                                let plan = match kind {
                                    SiteKind::Blocking | SiteKind::Lock => {
                                        Plan::Region { call: inst }
                                    }
                                    _ => Plan::Count { at: inst },
                                };
                                plans.push((plan, kind, Some(callee), false));
                            }
                        }
                        LLVMOpcode::LLVMRet => {
                            plans.push((Plan::Exit { at: inst }, SiteKind::Exit, None, false))
                        }
                        LLVMOpcode::LLVMResume => {
                            plans.push((Plan::Exit { at: inst }, SiteKind::Exit, None, true))
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
                            ));
                        }
                    }
                }
            }

            let entry_loc = function_location(f, &blocks);
            let first = self.sites.len() as u32;
            // Records first, so every probe knows its counter index.
            for (ordinal, (plan, kind, callee, unwind)) in plans.iter().enumerate() {
                let at = match plan {
                    Plan::Entry { .. } => None,
                    Plan::Exit { at } | Plan::Count { at } => Some(*at),
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
                });
            }

            let mut entry_at = first_non_alloca(blocks[0]);
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
                    Plan::Count { at } => {
                        self.position_before(at);
                        self.count(site, LLVMConstInt(self.i64, 1, 0));
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
        // SAFETY: builds instructions at the builder's position.
        unsafe {
            let delta = LLVMBuildLoad2(self.builder, self.i64, self.delta, c"panic.delta".as_ptr());
            let mut off = [delta];
            let ptr = LLVMBuildGEP2(
                self.builder,
                self.i8,
                self.counter_ptr(local),
                off.as_mut_ptr(),
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

unsafe fn instructions_of(bb: LLVMBasicBlockRef) -> Vec<LLVMValueRef> {
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

/// A direct call to a classified callee: its class and demangled name.
unsafe fn classify_call(inst: LLVMValueRef) -> Option<(CallClass, String)> {
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
                return Some((CallClass::Lock, "futex".to_string()));
            }
            return None;
        }
        classify_callee(&name).map(|c| (c, demangle(&name)))
    }
}

type Loc = (Option<String>, u32, u32);

unsafe fn instruction_location(inst: LLVMValueRef) -> Option<Loc> {
    // SAFETY: debug metadata queries on a valid instruction.
    unsafe {
        let loc = LLVMInstructionGetDebugLoc(inst);
        if loc.is_null() {
            return None;
        }
        let line = LLVMDILocationGetLine(loc);
        let column = LLVMDILocationGetColumn(loc);
        let scope = LLVMDILocationGetScope(loc);
        Some((scope_file(scope), line, column))
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
