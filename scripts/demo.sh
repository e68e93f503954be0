#!/usr/bin/env bash
# The main job end to end on a bundled example: install what is needed, build
# cargo-panic, build examples/jsonparse instrumented, run it under
# `cargo panic run`, and show the report and a few of its sites; then the same
# for a C project (examples/make-project) through `cargo panic cc`; crash
# signatures on examples/c-bugs; an attack on examples/c-server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --locked -p cargo-panic
ROOT="$PWD"
PANIC="$ROOT/target/release/cargo-panic"
TARGET="$PWD/target/demo"
cd examples/jsonparse
echo "== cargo panic build --release" >&2
exe=$("$PANIC" build --release --locked --target-dir "$TARGET")
echo "== cargo panic run -- $exe 2000 20" >&2
"$PANIC" run --out "$TARGET/profile.json" -- "$exe" 2000 20
echo "== cargo panic report (by count)" >&2
"$PANIC" report "$TARGET/profile.json" --top 15
echo "== cargo panic report (by dwell)" >&2
"$PANIC" report "$TARGET/profile.json" --top 10 --by dwell
echo "== cargo panic sites --kind blocking" >&2
"$PANIC" sites "$exe" --kind blocking | head -8

# The same for C: the Make example through `cargo panic cc` (the clang-19 plugin
# is built on first use).
C_DIR="$TARGET/make-project"
rm -rf "$C_DIR" && mkdir -p "$C_DIR" && cp -r "$ROOT/examples/make-project/." "$C_DIR"
cd "$C_DIR"
echo "== cargo panic cc -- make -j2" >&2
"$PANIC" cc -- make -j2
echo "== cargo panic run -- ./app" >&2
"$PANIC" run --out "$TARGET/c-profile.json" -- ./app
"$PANIC" report "$TARGET/c-profile.json" --top 10

# Crash signatures: the bug examples fail in known ways, and cargo-panic
# says how, where and why (deadlock found by the hang timeout; a double free
# from glibc's message).
B_DIR="$TARGET/c-bugs"
rm -rf "$B_DIR" && mkdir -p "$B_DIR" && cp -r "$ROOT/examples/c-bugs/." "$B_DIR"
cd "$B_DIR"
echo "== cargo panic cc -- make (examples/c-bugs)" >&2
"$PANIC" cc -- make >/dev/null
for mode in deadlock double-free; do
  echo "== cargo panic run --hang-timeout 1s -- ./c-bugs $mode" >&2
  "$PANIC" run --hang-timeout 1s --out "$TARGET/bug-$mode.json" -- ./c-bugs "$mode" || true
  echo "== cargo panic explain bug-$mode.json" >&2
  "$PANIC" explain "$TARGET/bug-$mode.json"
done

# An attack (root: cgroups, mounts): the C server under a timeline of CPU,
# network and memory stress. Its leak meets the memory limit, so the report
# shows a real OOM kill, the event chain it fires, and exit status 1.
if [ "$(id -u)" -eq 0 ]; then
  S_DIR="$TARGET/c-server"
  rm -rf "$S_DIR" && mkdir -p "$S_DIR" && cp -r "$ROOT/examples/c-server/." "$S_DIR"
  cd "$S_DIR"
  echo "== cargo panic cc --time handle_request -- make" >&2
  "$PANIC" cc --time handle_request -- make
  echo "== cargo panic timeline --check demo.yaml" >&2
  "$PANIC" timeline --check demo.yaml
  echo "== cargo panic attack --timeline demo.yaml -- ./c-server --port 47321 --leak 131072" >&2
  status=0
  "$PANIC" attack --timeline demo.yaml --out "$TARGET/attack.json" -- ./c-server --port 47321 --leak 131072 >/dev/null || status=$?
  echo "== the attack exited with status $status (0 survived, 1 failed); report: $TARGET/attack.json" >&2
else
  echo "== skipping the attack: it drives cgroups and needs root (sudo bash scripts/demo.sh)" >&2
fi
