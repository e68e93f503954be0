//! The site table object: the one counter array and the one histogram array of the
//! executable (page aligned, padded to whole pages, so the runtime can map its
//! shared segment over them), their sizes, and for every module the aliases
//! `__panic_ctr_<H>` / `__panic_hist_<H>` pointing at that module's slice. It is
//! regenerated on every link; the cached module objects never change.

use std::path::Path;

use anyhow::{Result, anyhow};
use inkwell::context::Context;
use std::ffi::CString;

use inkwell::llvm_sys::LLVMVisibility::LLVMHiddenVisibility;
use inkwell::llvm_sys::core::{LLVMAddAlias2, LLVMSetVisibility};
use inkwell::llvm_sys::prelude::{LLVMTypeRef, LLVMValueRef};
use inkwell::module::Module;
use inkwell::targets::FileType;
use inkwell::types::AsTypeRef;
use inkwell::values::{AsValueRef, GlobalValue};
use panic_runtime::abi;

use crate::codegen::{Settings, target_machine};

pub struct ModuleBase {
    pub suffix: String,
    pub first_site: u64,
    pub first_hist: u64,
}

fn pad(bytes: u64) -> u64 {
    bytes.div_ceil(abi::PAGE).max(1) * abi::PAGE
}

pub fn write(
    path: &Path,
    modules: &[ModuleBase],
    n_sites: u64,
    n_hists: u64,
    s: &Settings,
) -> Result<()> {
    let ctx = Context::create();
    let module = ctx.create_module("cargo_panic_site_table");
    let tm = target_machine(s)?;
    module.set_triple(&tm.get_triple());
    module.set_data_layout(&tm.get_target_data().get_data_layout());
    let i8t = ctx.i8_type();
    let i64t = ctx.i64_type();

    let array = |name: &str, bytes: u64| -> GlobalValue<'_> {
        let ty = i8t.array_type(pad(bytes) as u32);
        let g = module.add_global(ty, None, name);
        g.set_initializer(&ty.const_zero());
        g.set_alignment(abi::PAGE as u32);
        g
    };
    let counters = array(abi::SYM_COUNTERS, n_sites * 8);
    let hists = array(abi::SYM_HISTS, n_hists * abi::HIST_SIZE);
    for (name, value) in [(abi::SYM_N_SITES, n_sites), (abi::SYM_N_HISTS, n_hists)] {
        let g = module.add_global(i64t, None, name);
        g.set_initializer(&i64t.const_int(value, false));
        g.set_constant(true);
    }
    for m in modules {
        for (base, offset, name) in [
            (
                counters,
                m.first_site * 8,
                panic_passes::counters_symbol(&m.suffix),
            ),
            (
                hists,
                m.first_hist * abi::HIST_SIZE,
                panic_passes::hists_symbol(&m.suffix),
            ),
        ] {
            // SAFETY: a constant in-bounds byte offset into an array of at least that size.
            let target = unsafe {
                base.as_pointer_value()
                    .const_in_bounds_gep(i8t, &[i64t.const_int(offset, false)])
            };
            add_hidden_alias(&module, i8t.as_type_ref(), target.as_value_ref(), &name);
        }
    }
    module
        .verify()
        .map_err(|e| anyhow!("internal error: the site table does not verify: {e}"))?;
    tm.write_to_file(&module, FileType::Object, path)
        .map_err(|e| {
            anyhow!(
                "failed to write the site table object {}: {e}",
                path.display()
            )
        })
}

/// inkwell has no alias API; this is LLVM-C's `LLVMAddAlias2`.
fn add_hidden_alias(module: &Module<'_>, value_ty: LLVMTypeRef, aliasee: LLVMValueRef, name: &str) {
    let cname = CString::new(name).expect("symbol names have no NUL");
    // SAFETY: the module, type and aliasee belong to the same live context.
    unsafe {
        let a = LLVMAddAlias2(module.as_mut_ptr(), value_ty, 0, aliasee, cname.as_ptr());
        LLVMSetVisibility(a, LLVMHiddenVisibility);
    }
}
