#!/usr/bin/env bash
# What collecting crash evidence costs while a program runs: cargo-panic's
# own CPU time (the stderr tee and the watcher that samples the segment,
# /proc and the memory every 100 ms) over a run of a program that does
# nothing (examples/c-bugs `deadlock`: two threads asleep on each other's
# mutex, stopped by --timeout). Run from the repository root:
#
#   bash bench/watch.sh [SECONDS] [TRIALS]      (defaults 10 and 5)
#
# The program itself uses no CPU, so cargo-panic's user+sys time over the
# run is the cost; it is reported per second of run (a share of one core)
# next to the same run's startup-only cost (mode `ok`, which exits at once).
# Goal: under 1% of a core. Nothing asserts on time. Scratch space:
# bench/.work/watch (git-ignored, wiped at the start).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-10}
TRIALS=${2:-5}
[[ $SECS =~ ^[1-9][0-9]*$ && $TRIALS =~ ^[1-9][0-9]*$ ]] || { echo "usage: bash bench/watch.sh [SECONDS] [TRIALS]" >&2; exit 2; }

BENCH_START=$EPOCHREALTIME
BENCH_NAME="watch bench"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_setup watch clang-19 c-bugs ""

idle=() start=()
for i in $(seq "$TRIALS"); do
  note "trial $i/$TRIALS: ${SECS}s asleep"
  read -r wall cpu _ < <(measure "idle-$i" "$BIN/cargo-panic" run --timeout "${SECS}s" \
    --out "$OUT/idle-$i.json" -- "$EXAMPLE_EXE" deadlock || true)
  idle+=("$(awk -v c="$cpu" -v w="$wall" 'BEGIN{printf "%.4f", c/w}')")
  read -r _ cpu _ < <(measure "start-$i" "$BIN/cargo-panic" run --out "$OUT/start-$i.json" \
    -- "$EXAMPLE_EXE" ok || true)
  start+=("$cpu")
done
share=$(MEDIAN_FMT=%.4f median "${idle[@]}")
echo
row "figure (median of $TRIALS)" "value" "" "" "" ""
hr
row "cargo-panic CPU per second of a ${SECS}s run (share of a core)" "$share" "" "" "" \
  "$(awk -v s="$share" 'BEGIN{print (s < 0.01) ? "goal < 0.01: met" : "goal < 0.01: MISSED"}')"
row "cargo-panic CPU of a run that ends at once (startup), s" "$(median "${start[@]}")" "" "" "" ""
