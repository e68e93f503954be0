#!/usr/bin/env bash
# Kernel-side benchmark: what watching a program from the kernel costs it
# (`cargo panic run --kernel`: eBPF programs on the scheduler tracepoints that
# keep per-thread and per-site on-CPU, run-queue and blocked time). Run from the
# repository root, as root (loading the eBPF programs needs it):
#
#   sudo bash bench/kernel.sh [N]
#
# The workload is examples/c-pingpong: two threads bounce one byte over a pair
# of pipes N times (default 200000), one bounce() call per round trip, about
# two context switches per round trip. The program prints the wall time of its
# own loop (CLOCK_MONOTONIC), so the main figure leaves out the tool's start-up
# and the loading of the eBPF programs; the whole command's wall time is a
# second row. The example is built twice with `cargo panic cc -- make`:
#   default   the default dwell rule (its read and write calls are timed, as
#             blocking sites)
#   all       `--time '*'`: every function timed, so the kernel splits the
#             time over more sites
# and each build runs N round trips four ways, interleaved (order rotated each
# round), BENCH_RUNS times each (default 7), after one untimed warm-up of N/10:
#   any CPU   `c-pingpong N`: the threads may run on both CPUs
#   CPU 0     `c-pingpong N one-cpu`: both pinned to CPU 0, so they hand the
#             CPU to each other directly (switch-bound, no idle wake-ups)
# each under `cargo-panic run --out …` (unwatched) and `cargo-panic run
# --kernel --out …` (watched). Goal: watched/unwatched ≤ 1.10x on the loop's
# median wall time. One more watched run (not in the table) reads the cost of
# one call of each eBPF program from the kernel's BPF statistics
# (kernel.bpf_stats_enabled, put back afterwards; needs bpftool). Nothing here
# asserts on time: goals are reported as met or MISSED; the script exits
# non-zero only when something cannot be built or run at all. Scratch space:
# bench/.work/kernel (git-ignored, wiped at the start).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

N=${1:-200000}
[[ $N =~ ^[1-9][0-9]*$ ]] || { echo "usage: sudo bash bench/kernel.sh [N]   (round trips, default 200000)" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "bench: the kernel side needs root: sudo bash bench/kernel.sh" >&2; exit 1; }

bash scripts/install-deps.sh

RUNS=${BENCH_RUNS:-7}
unset CC CXX CFLAGS CXXFLAGS LDFLAGS CARGO_TARGET_DIR
export CARGO_TERM_COLOR=never LC_ALL=C

W=$ROOT/bench/.work/kernel
LOG=$W/logs
BIN=$W/bin # a private copy of cargo-panic
EXE=$W/exe # one copy of the example per build
OUT=$W/out # outputs, /usr/bin/time files, profiles
rm -rf "$W"
mkdir -p "$LOG" "$BIN" "$EXE" "$OUT"
export CARGO_PANIC_HOME=$W/home # the plugin, built fresh from this checkout

BENCH_START=$EPOCHREALTIME
BENCH_NAME="kernel bench"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

machine_line "$(clang-19 --version | head -n 1)"

# ---------------------------------------------------------------------------
# Setup: cargo-panic, its plugin, the two builds of the example
# ---------------------------------------------------------------------------
build_cargo_panic "$BIN"

BUILDS=()
for b in default all; do
  note "cargo panic cc build: $b"
  d=$EXE/$b
  cp -r examples/c-pingpong "$d"
  rm -rf "$d/build" "$d/c-pingpong" "$d"/*.panic.json
  time_args=()
  [[ $b == all ]] && time_args=(--time '*')
  if (cd "$d" && logged "$LOG/build-$b.log" "$BIN/cargo-panic" cc "${time_args[@]}" -- make); then
    BUILDS+=("$b")
  else
    echo "bench: the $b build FAILED: no figures for it" >&2
  fi
done
[[ ${BUILDS[0]:-} == default ]] || { echo "bench: the default build failed: nothing to measure" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Runs. A variant is build-placement-kernel, e.g. default-cpu0-on.
# ---------------------------------------------------------------------------
PLACES=(any cpu0)
VARIANTS=()
for b in "${BUILDS[@]}"; do
  for p in "${PLACES[@]}"; do
    for k in off on; do VARIANTS+=("$b-$p-$k"); done
  done
done
ctxt() { awk '$1 == "ctxt" { print $2 }' /proc/stat; }

# One run of variant $1 with $2 round trips, tagged $3; prints
# "loop_s command_wall_s cpu_s switches_per_s" (switches: the whole system's,
# from /proc/stat, over the command).
run_variant() {
  local v=$1 n=$2 tag=$3 b p k args=() res w c c0 c1 rounds loop
  IFS=- read -r b p k <<<"$v"
  [[ $k == on ]] && args+=(--kernel)
  args+=(--out "$OUT/profile-$tag.json" -- "$EXE/$b/c-pingpong" "$n")
  [[ $p == cpu0 ]] && args+=(one-cpu)
  c0=$(ctxt)
  res=$(measure "$tag" "$BIN/cargo-panic" run "${args[@]}") || return 1
  c1=$(ctxt)
  read -r w c _ <<<"$res"
  read -r _ rounds _ loop <"$OUT/stdout-$tag.txt"
  [[ $rounds == "$n" ]] || return 1
  echo "$loop $w $c $(awk -v d=$((c1 - c0)) -v w="$w" 'BEGIN{printf "%.0f", d/w}')"
}

declare -A LOOP CMD CPUS OUTSIDE SYSW
for v in "${VARIANTS[@]}"; do
  note "warm-up run: $v"
  if ! run_variant "$v" $(((N + 9) / 10)) "$v-0" >/dev/null; then
    echo "bench: $v failed on the warm-up run:" >&2
    tail -n 5 "$OUT/stderr-$v-0.txt" >&2
    exit 1
  fi
  LOOP[$v]="" CMD[$v]="" CPUS[$v]="" OUTSIDE[$v]="" SYSW[$v]=""
done
FAILED=()
nv=${#VARIANTS[@]}
for ((r = 1; r <= RUNS; r++)); do
  for ((i = 0; i < nv; i++)); do
    v=${VARIANTS[$(((i + r - 1) % nv))]}
    note "run $r/$RUNS: $v"
    if ! res=$(run_variant "$v" "$N" "$v-$r"); then
      echo "bench: $v run $r FAILED (see $OUT/stderr-$v-$r.txt)" >&2
      FAILED+=("$v-$r")
      continue
    fi
    read -r loop w c s <<<"$res"
    LOOP[$v]+=" $loop" CMD[$v]+=" $w" CPUS[$v]+=" $c" SYSW[$v]+=" $s"
    OUTSIDE[$v]+=" $(awk -v w="$w" -v l="$loop" 'BEGIN{printf "%.3f", w-l}')"
  done
done

# What the kernel saw in the watched runs of variant $1, from their profiles:
# the watched threads' context switches (median per round trip and per second
# of loop), the extra loop time per switch (median loop with --kernel, $2,
# minus without, $3, over the median switches), the timed sites, and any run
# whose kernel side was not fully on.
kernel_stats() {
  python3 - "$OUT" "$1" "$N" "$RUNS" "$2" "$3" <<'PY'
import json, statistics, sys
out, v, n, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
per_rt, per_s, missed, partial = [], [], 0, []
for r in range(1, runs + 1):
    try:
        p = json.load(open(f"{out}/profile-{v}-{r}.json"))
        loop = float(open(f"{out}/stdout-{v}-{r}.txt").read().split()[3])
    except (OSError, IndexError, ValueError):
        continue
    k = p["kernel"]
    missed += k["missed_events"]
    if k["status"] != "on" or not k["per_site"] or k["lost_threads"]:
        partial.append(f"run {r}: status {k['status']}, per_site {k['per_site']}, lost threads {k['lost_threads']}")
    sw = sum(t["voluntary_switches"] + t["involuntary_switches"] for t in k["threads"])
    per_rt.append(sw / n)
    per_s.append(sw / loop)
if not per_rt:
    sys.exit("no profile of a watched run")
rt = statistics.median(per_rt)
timed = [s for s in p["sites"] if s["timed"]]
extra = (float(sys.argv[5]) - float(sys.argv[6])) * 1e9 / (rt * n)
print(f"      watched threads: {rt:.2f} switches per round trip, {statistics.median(per_s):,.0f} per s of loop;"
      f" extra loop time per switch {extra:,.0f} ns")
print(f"      {len(timed)} of {len(p['sites'])} sites timed, {sum(s['count'] for s in timed) / n:.1f} timed-region"
      f" entries per round trip; scheduler events missed, all runs: {missed}")
for x in partial:
    print(f"      NOT FULLY WATCHED: {x}")
PY
}

# One more watched run (default build, CPU 0), not in the table, with the
# kernel's BPF run-time statistics on (kernel.bpf_stats_enabled, put back
# afterwards): what one call of each eBPF program costs. bpftool samples them
# while the programs are loaded; the last sample before the run ends counts.
BPF_COST="(no bpftool: not measured)"
if command -v bpftool >/dev/null; then
  note "one run with the BPF run-time statistics on"
  STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled)
  trap 'sysctl -qw kernel.bpf_stats_enabled=$STATS_WAS' EXIT
  sysctl -qw kernel.bpf_stats_enabled=1
  "$BIN/cargo-panic" run --kernel --out "$OUT/profile-bpfstats.json" -- "$EXE/default/c-pingpong" "$N" one-cpu \
    >"$OUT/stdout-bpfstats.txt" 2>"$OUT/stderr-bpfstats.txt" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    bpftool prog show -j >"$OUT/bpfstats.tmp" 2>/dev/null &&
      grep -q panic_switch "$OUT/bpfstats.tmp" && mv "$OUT/bpfstats.tmp" "$OUT/bpfstats.json"
    sleep 0.05
  done
  wait "$pid" || echo "bench: the run with BPF statistics FAILED (see $OUT/stderr-bpfstats.txt)" >&2
  sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS"
  BPF_COST="(the run was too short to sample the statistics)"
  if [[ -f $OUT/bpfstats.json ]]; then
    BPF_COST=$(python3 - "$OUT/bpfstats.json" <<'PY'
import json, sys
progs = [p for p in json.load(open(sys.argv[1])) if p.get("name", "").startswith("panic_") and p.get("run_cnt")]
print("; ".join(f"{p['name']} {p['run_time_ns'] / p['run_cnt']:.0f} ns x {p['run_cnt']:,}" for p in progs)
      or "(no panic_ program seen)")
PY
    )
  fi
fi

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
TOTAL=$(since "$BENCH_START")

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
declare -A BUILD_LABEL PLACE_LABEL
BUILD_LABEL[default]="default dwell rule (read/write calls timed as blocking sites)"
BUILD_LABEL[all]="every function timed (cargo panic cc --time '*')"
PLACE_LABEL[any]="threads on any CPU (c-pingpong $N)"
PLACE_LABEL[cpu0]="both threads on CPU 0 (c-pingpong $N one-cpu)"

# A row of medians of two lists of figures: label, watched, unwatched, goal
# (a ratio such as 1.10; empty for none).
pair_row() {
  local a b q
  # shellcheck disable=SC2086
  a=$(median $2)
  # shellcheck disable=SC2086
  b=$(median $3)
  q=$(ratio "$a" "$b")
  row "$1" "$a" "$b" "$q" "${4:+<= ${4}x}" "$([[ -n $4 ]] && verdict "$q" "$4")"
}

echo
echo "================================ cargo-panic kernel-side benchmark ================================"
echo "machine: $MACHINE"
echo "load average: start $LOAD_START, end $LOAD_END"
echo "workload: examples/c-pingpong, $N round trips; $RUNS runs per variant (interleaved, order rotated each round); script time ${TOTAL}s"
hr
row "figure (value: with --kernel; baseline: without)" "value" "baseline" "ratio" "goal" "status"
hr
for b in "${BUILDS[@]}"; do
  echo "${BUILD_LABEL[$b]}: medians of $RUNS"
  for p in "${PLACES[@]}"; do
    on=$b-$p-on off=$b-$p-off
    echo "   ${PLACE_LABEL[$p]}"
    pair_row "      the loop, wall s (the program's own clock)" "${LOOP[$on]}" "${LOOP[$off]}" 1.10
    pair_row "      whole command, wall s" "${CMD[$on]}" "${CMD[$off]}" ""
    pair_row "      whole command, user+sys CPU s" "${CPUS[$on]}" "${CPUS[$off]}" ""
    pair_row "      outside the loop (command - loop: start, eBPF, profile), s" "${OUTSIDE[$on]}" "${OUTSIDE[$off]}" ""
    MEDIAN_FMT=%.0f pair_row "      whole system's context switches per s (/proc/stat)" "${SYSW[$on]}" "${SYSW[$off]}" ""
    # shellcheck disable=SC2086
    kernel_stats "$on" "$(median ${LOOP[$on]})" "$(median ${LOOP[$off]})" || true
  done
done
if [[ " ${BUILDS[*]} " == *" all "* ]]; then
  echo "timing every function vs the default rule, both without --kernel (the user-space side)"
  for p in "${PLACES[@]}"; do
    pair_row "   the loop, wall s, ${PLACE_LABEL[$p]% (*}" "${LOOP[all-$p-off]}" "${LOOP[default-$p-off]}" ""
  done
fi
hr
echo "cost per call of each eBPF program (kernel.bpf_stats_enabled, one extra run: default build, CPU 0;"
echo "the statistics leave out the trampoline around each call, and add two clock reads):"
echo "   $BPF_COST"
hr
for v in "${VARIANTS[@]}"; do echo "raw loop s, $v:${LOOP[$v]}"; done
for b in "${BUILDS[@]}"; do
  echo "$b build: $(grep -h '^cargo-panic: executable' "$LOG/build-$b.log" | sed 's/^cargo-panic: //')"
done
((${#FAILED[@]})) && echo "FAILED runs (left out of the medians): ${FAILED[*]}"
echo "logs, outputs and profiles: $W"
