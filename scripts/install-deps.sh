#!/usr/bin/env bash
# Installs the system packages cargo-panic needs, idempotently: nothing is
# downloaded when they are all present. Debian 12, run as root (or with sudo).
#   gcc, make       the runtime (C) and the `cc` crate
#   valgrind        instruction counts in bench/ (callgrind)
#   time            peak memory figures in bench/
#   clang-19, llvm-19-dev   C/C++: the pass plugin is built against and loaded
#                   into Debian's clang 19 (`cargo panic cc`, the `cc` crate)
#   libclang-rt-19-dev      clang 19's sanitizer runtimes: `cargo panic cc --sanitize`
#   cmake, ninja-build      the CMake example and its tests
#   libz3-dev, libclang-dev the verifier: the z3 crate links Debian's libz3 and
#                   needs libclang for its bindings
#   coq             proofs/: the verifier's lemmas are checked by coqc on every run
#   libelf-dev, zlib1g-dev, pkg-config   bpf/: libbpf-sys builds its vendored
#                   libbpf against them (clang-19 compiles the eBPF programs)
#   procps          ps, used by the attack tests to look for leftover processes
#   stress-ng       bench/attack.sh: the reference the stressors are compared with
set -euo pipefail
packages=(gcc make valgrind time clang-19 llvm-19-dev libclang-rt-19-dev cmake ninja-build libz3-dev libclang-dev coq libelf-dev zlib1g-dev pkg-config procps stress-ng)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-deps: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
fi
