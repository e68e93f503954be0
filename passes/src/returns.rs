//! Which functions of a module always return to their caller: the ones whose
//! exit count may be taken from their entry count (`SiteRecord::from_entry`).
//!
//! A function always returns when nothing it can call fails to: it makes no
//! call through a pointer, no inline assembly, no `invoke` (it cannot unwind),
//! is not `noreturn`, and every function it calls directly is an LLVM
//! intrinsic, a C library function known to return (memory and string
//! functions, the allocator; never a blocking call, which a thread
//! cancellation can end), or a function defined in this module (with a
//! definition that cannot be replaced at link time) that always returns. The
//! set is the greatest fixed point: recursion keeps the property (a recursion
//! too deep to return crashes the process, which ends all counting).
//!
//! What is not covered: a signal handler that `longjmp`s out of the function,
//! and a thread still inside it when the counts are read (counted as having
//! left). Both are documented with `from_entry`.

use std::collections::{HashMap, HashSet};

use inkwell::llvm_sys::LLVMLinkage;
use inkwell::llvm_sys::LLVMOpcode;
use inkwell::llvm_sys::core::*;
use inkwell::llvm_sys::prelude::*;

use crate::instrument::{called_function, has_fn_attr, instructions_of, value_name};

/// C library functions that return whenever they are called (they may fail,
/// but they come back): the allocator, memory and string functions. None is
/// a cancellation point.
const RETURNS: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "free",
    "posix_memalign",
    "aligned_alloc",
    "malloc_usable_size",
    "memcpy",
    "memmove",
    "memset",
    "memcmp",
    "memchr",
    "bcmp",
    "strlen",
    "strnlen",
    "strcmp",
    "strncmp",
    "strcasecmp",
    "strncasecmp",
    "strchr",
    "strrchr",
    "strstr",
    "strcpy",
    "strncpy",
    "strcat",
    "strncat",
    "strspn",
    "strcspn",
    "__ctype_b_loc",
    "__ctype_tolower_loc",
    "__ctype_toupper_loc",
    "__errno_location",
    "__rust_alloc",
    "__rust_alloc_zeroed",
    "__rust_realloc",
    "__rust_dealloc",
];

/// How one function relates to the property, before the fixed point.
enum Local {
    /// Makes a call that may not return (or is `noreturn` itself).
    Never,
    /// Always returns if these functions of the module do.
    If(Vec<LLVMValueRef>),
}

/// The defined functions of `module` that always return (see the module
/// documentation). Read before any probe is inserted.
///
/// # Safety
/// `module` must be a valid module that nothing mutates during the call.
pub(crate) unsafe fn always_returning(module: LLVMModuleRef) -> HashSet<LLVMValueRef> {
    // SAFETY: read-only queries on a valid module.
    unsafe {
        let mut local: HashMap<LLVMValueRef, Local> = HashMap::new();
        let mut f = LLVMGetFirstFunction(module);
        while !f.is_null() {
            if LLVMIsDeclaration(f) == 0 {
                local.insert(f, local_facts(f));
            }
            f = LLVMGetNextFunction(f);
        }
        let mut returning: HashSet<LLVMValueRef> = local
            .iter()
            .filter(|(_, l)| matches!(l, Local::If(_)))
            .map(|(&f, _)| f)
            .collect();
        loop {
            let dropped: Vec<LLVMValueRef> = returning
                .iter()
                .copied()
                .filter(|f| match &local[f] {
                    Local::If(needs) => needs.iter().any(|g| !returning.contains(g)),
                    Local::Never => true,
                })
                .collect();
            if dropped.is_empty() {
                return returning;
            }
            for f in dropped {
                returning.remove(&f);
            }
        }
    }
}

/// What `f`'s own body says: never (a call that may not return), or always
/// if the module's functions it calls do.
unsafe fn local_facts(f: LLVMValueRef) -> Local {
    // SAFETY: read-only queries on a defined function.
    unsafe {
        if has_fn_attr(f, "noreturn") || replaceable(f) {
            return Local::Never;
        }
        let mut needs = Vec::new();
        let mut bb = LLVMGetFirstBasicBlock(f);
        while !bb.is_null() {
            for inst in instructions_of(bb) {
                match LLVMGetInstructionOpcode(inst) {
                    LLVMOpcode::LLVMInvoke | LLVMOpcode::LLVMCallBr | LLVMOpcode::LLVMResume => {
                        return Local::Never;
                    }
                    LLVMOpcode::LLVMCall => {
                        let Some(g) = called_function(LLVMGetCalledValue(inst)) else {
                            return Local::Never; // through a pointer, or inline assembly
                        };
                        if has_fn_attr(g, "noreturn") {
                            return Local::Never;
                        }
                        if known_to_return(g) {
                            continue;
                        }
                        if LLVMIsDeclaration(g) != 0 {
                            return Local::Never;
                        }
                        if g != f {
                            needs.push(g);
                        }
                    }
                    _ => {}
                }
            }
            bb = LLVMGetNextBasicBlock(bb);
        }
        Local::If(needs)
    }
}

/// An LLVM intrinsic or a C library function known to return (`RETURNS`).
/// `noreturn` is checked apart.
unsafe fn known_to_return(g: LLVMValueRef) -> bool {
    // SAFETY: a name query on a valid function.
    let name = unsafe { value_name(g) };
    name.starts_with("llvm.") || RETURNS.contains(&name.as_str())
}

/// Whether a direct call to `g` comes back whenever it is made: `g` is not
/// `noreturn`, and it is known to return or is one of the module's functions
/// that always return (`returning`, from [`always_returning`]).
pub(crate) unsafe fn call_returns(g: LLVMValueRef, returning: &HashSet<LLVMValueRef>) -> bool {
    // SAFETY: attribute and name queries on a valid function.
    unsafe { !has_fn_attr(g, "noreturn") && (known_to_return(g) || returning.contains(&g)) }
}

/// A definition the linker may replace with another one (weak, common,
/// `extern_weak`): what this module says of it may not be what runs.
unsafe fn replaceable(f: LLVMValueRef) -> bool {
    // SAFETY: a linkage query on a valid global.
    let linkage = unsafe { LLVMGetLinkage(f) };
    matches!(
        linkage,
        LLVMLinkage::LLVMWeakAnyLinkage
            | LLVMLinkage::LLVMLinkOnceAnyLinkage
            | LLVMLinkage::LLVMExternalWeakLinkage
            | LLVMLinkage::LLVMCommonLinkage
    )
}
