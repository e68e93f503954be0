#!/usr/bin/env bash
# The whole test suite, as CI runs it: system packages, then every test of the
# workspace (unit tests, the runtime's C tests, end-to-end builds of examples/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo test --workspace --locked -- --test-threads="${TEST_THREADS:-2}"
# The pass's IR-level tests link Debian's libLLVM 19 (the clang plugin's LLVM);
# the workspace build above compiles the pass for rustc's LLVM instead.
cargo test -p panic-passes --features llvm19 --lib --locked
