// The C++ side of the plugin: registers one module pass at the pipeline-start
// extension point (so counts do not depend on -O level) and hands the module to
// Rust. Errors come back as text and are reported through clang's diagnostics.
#include "llvm-c/Core.h"
#include "llvm/IR/DiagnosticInfo.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/PassManager.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Passes/PassPlugin.h"

#include <cstdlib>

// Implemented in Rust (src/lib.rs). Returns 0 on success, 1 on error with a
// malloc'd message in *error, 2 when the user asked to compile uninstrumented on
// error (the message is then a warning).
extern "C" int cargo_panic_instrument(LLVMModuleRef module, char **error);

namespace {
struct PanicPass : llvm::PassInfoMixin<PanicPass> {
    llvm::PreservedAnalyses run(llvm::Module &m, llvm::ModuleAnalysisManager &) {
        char *error = nullptr;
        int rc = cargo_panic_instrument(llvm::wrap(&m), &error);
        if (rc != 0) {
            llvm::DiagnosticSeverity sev = rc == 2 ? llvm::DS_Warning : llvm::DS_Error;
            // LLVM 19 has no generic diagnostic with a severity; clang prints this one
            // as a plain error or warning with our text.
            m.getContext().diagnose(llvm::DiagnosticInfoInlineAsm(
                llvm::Twine("cargo-panic: ") + (error ? error : "unknown error"), sev));
            std::free(error);
        }
        return rc == 0 ? llvm::PreservedAnalyses::none() : llvm::PreservedAnalyses::all();
    }
    // Runs at -O0 and on optnone functions too.
    static bool isRequired() { return true; }
};
} // namespace

extern "C" ::llvm::PassPluginLibraryInfo cargo_panic_plugin_info() {
    return {LLVM_PLUGIN_API_VERSION, "cargo-panic", "1",
            [](llvm::PassBuilder &pb) {
                pb.registerPipelineStartEPCallback(
                    [](llvm::ModulePassManager &mpm, llvm::OptimizationLevel) { mpm.addPass(PanicPass()); });
            }};
}
