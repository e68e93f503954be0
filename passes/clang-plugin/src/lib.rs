//! `panic-clang-plugin`: cargo-panic's instrumentation inside clang-19.
//!
//! Loaded with `clang-19 -fpass-plugin=libpanic_clang_plugin.so`. The C++ shim
//! (`cpp/shim.cpp`) registers a module pass at the pipeline start and calls
//! [`cargo_panic_instrument`] with clang's module, which runs the same
//! `panic_passes::instrument_module` the Rust link driver runs. The instrumented
//! module carries its own sites (the sites section), so nothing is written here:
//! the link step reads them from the linked file.
//!
//! Invariants: no panic crosses into C++ (every entry catches unwinding); clang's
//! module is never freed by Rust (`ManuallyDrop`); a failure is reported through
//! clang's diagnostics and fails the compile, unless `CARGO_PANIC_ON_ERROR=
//! uninstrumented` asked for a warning and an uninstrumented object, which is then
//! exactly what clang would have compiled without the plugin.

use std::ffi::{CString, c_char, c_int, c_void};
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};

use inkwell::llvm_sys::core::{LLVMCloneModule, LLVMDisposeModule};
use inkwell::llvm_sys::prelude::LLVMModuleRef;
use inkwell::module::Module;
use panic_passes::{DwellRule, Options, instrument_module, plugin_env};

/// LLVM's `PassPluginLibraryInfo`, returned by value to clang.
#[repr(C)]
pub struct PassPluginLibraryInfo {
    api_version: u32,
    plugin_name: *const c_char,
    plugin_version: *const c_char,
    register_callbacks: *const c_void,
}

unsafe extern "C" {
    fn cargo_panic_plugin_info() -> PassPluginLibraryInfo;
}

/// The entry point clang looks up. Exported from Rust: a cdylib hides symbols
/// defined in the C++ shim.
#[unsafe(no_mangle)]
pub extern "C" fn llvmGetPassPluginInfo() -> PassPluginLibraryInfo {
    // SAFETY: the shim's function only builds a struct of constants.
    unsafe { cargo_panic_plugin_info() }
}

/// The LLVM version the plugin was built against (`llvm-config-19 --version`).
#[unsafe(no_mangle)]
pub static CARGO_PANIC_PLUGIN_LLVM_VERSION: [u8; 16] = version_bytes();

const fn version_bytes() -> [u8; 16] {
    let v = env!("PANIC_PLUGIN_LLVM_VERSION").as_bytes();
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < v.len() && i < 15 {
        out[i] = v[i];
        i += 1;
    }
    out
}

const OK: c_int = 0;
const FAILED: c_int = 1;
const FAILED_UNINSTRUMENTED: c_int = 2;

/// Instruments `module` in place. Called by the shim once per module.
///
/// # Safety
/// `module` is a live module owned by clang; `error` is a valid pointer the
/// caller frees with `free` when set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cargo_panic_instrument(
    module: LLVMModuleRef,
    error: *mut *mut c_char,
) -> c_int {
    let lenient =
        std::env::var(plugin_env::ON_ERROR).as_deref() == Ok(plugin_env::ON_ERROR_UNINSTRUMENTED);
    let result = if lenient {
        // A dry run on a copy first: the real module is touched only when the
        // instrumentation is known to succeed, so a failure leaves it as it was.
        // SAFETY: cloning a live module; the clone is ours and disposed of here.
        let copy = unsafe { LLVMCloneModule(module) };
        let dry = guarded(copy);
        // SAFETY: `copy` was created above and is not used after this.
        unsafe { LLVMDisposeModule(copy) };
        dry.and_then(|()| guarded(module))
    } else {
        guarded(module)
    };
    match result {
        Ok(()) => OK,
        Err(message) => {
            let text = if lenient {
                format!(
                    "{message}; compiling this file without instrumentation ({}={})",
                    plugin_env::ON_ERROR,
                    plugin_env::ON_ERROR_UNINSTRUMENTED
                )
            } else {
                format!(
                    "{message} (set {}={} to compile such files without instrumentation)",
                    plugin_env::ON_ERROR,
                    plugin_env::ON_ERROR_UNINSTRUMENTED
                )
            };
            let c = CString::new(text.replace('\0', " ")).expect("no NUL left");
            // SAFETY: strdup'd memory is freed by the shim with free().
            unsafe { *error = libc_strdup(c.as_ptr()) };
            if lenient {
                FAILED_UNINSTRUMENTED
            } else {
                FAILED
            }
        }
    }
}

unsafe extern "C" {
    #[link_name = "strdup"]
    fn libc_strdup(s: *const c_char) -> *mut c_char;
}

/// Runs the pass, turning errors and panics into a message.
fn guarded(module: LLVMModuleRef) -> Result<(), String> {
    quiet_panics();
    match catch_unwind(AssertUnwindSafe(|| instrument(module))) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!(
                "internal error in the instrumentation pass: {what}; please report it"
            ))
        }
    }
}

fn instrument(raw: LLVMModuleRef) -> Result<(), String> {
    // SAFETY: clang owns the module; ManuallyDrop keeps inkwell from freeing it.
    let module = ManuallyDrop::new(unsafe { Module::new(raw) });
    let rule: DwellRule = match std::env::var(plugin_env::RULE) {
        Ok(json) => {
            serde_json::from_str(&json).map_err(|e| format!("invalid {}: {e}", plugin_env::RULE))?
        }
        Err(_) => DwellRule::default(),
    };
    let rule = rule.compile().map_err(|e| e.to_string())?;
    let key = module_key(&module.get_source_file_name().to_string_lossy());
    instrument_module(
        &module,
        &Options {
            module_key: &key,
            rule: &rule,
        },
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// The module's identity: its source file as an absolute path, and the object
/// it is compiled into when the wrapper says so.
fn module_key(source: &str) -> String {
    let path = std::path::Path::new(source);
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    match std::env::var(plugin_env::OBJECT) {
        Ok(obj) if !obj.is_empty() => format!("{} -> {obj}", abs.display()),
        _ => abs.display().to_string(),
    }
}

/// Panics become diagnostics; the default hook's stderr report would only add noise
/// to the compiler's output.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}
