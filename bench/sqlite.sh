#!/usr/bin/env bash
# SQLite benchmark: a real C code base through `cargo panic cc`. Run from the
# repository root:
#
#   bash bench/sqlite.sh
#
# It builds cargo-panic (release) and compiles the SQLite amalgamation (from the
# libsqlite3-sys crate's sources, pinned by Cargo.lock) with the small shell of
# cargo-panic/tests/sqlite/shell.c, as
#   plain    clang-19 -O2
#   lines    clang-19 -O2 -gline-tables-only (compile time only: the debug info
#            the wrapper adds besides the plugin)
#   panic    the same -O2 build through `cargo panic cc` (plugin + runtime)
#   sancov   clang-19 -O2 -fsanitize-coverage=inline-8bit-counters (reference floor)
# timing each compile BENCH_BUILD_REPS times (interleaved), then runs
# bench/sqlite/workload.sql BENCH_RUNS times on plain, panic and sancov
# (interleaved, order rotated every round) and prints medians and ratios. The
# instrumented binary runs directly, without `cargo-panic run` (the runtime
# counts without a segment; `run` adds its own start-up and profile writing).
# One extra, untimed-for-the-table run under `cargo-panic run` gives the probe
# counts. Nothing here asserts on time: goals are reported as met or MISSED.
# Scratch space: bench/.work/sqlite (git-ignored, wiped at the start).
#
# Knobs (environment): BENCH_RUNS (default 5), BENCH_BUILD_REPS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

bash scripts/install-deps.sh

RUNS=${BENCH_RUNS:-5}
REPS=${BENCH_BUILD_REPS:-3}
unset CC CXX CFLAGS CXXFLAGS LDFLAGS CARGO_TARGET_DIR
export CARGO_TERM_COLOR=never LC_ALL=C

W=$ROOT/bench/.work/sqlite
LOG=$W/logs
BIN=$W/bin    # a private copy of cargo-panic
EXE=$W/exe    # one directory per variant, each with its sqlite-shell
OUT=$W/out    # outputs, /usr/bin/time files, the profile
rm -rf "$W"
mkdir -p "$LOG" "$BIN" "$EXE" "$OUT"
export CARGO_PANIC_HOME=$W/home # the plugin, built fresh from this checkout
WORKLOAD=$ROOT/bench/sqlite/workload.sql
SHELL_C=$ROOT/cargo-panic/tests/sqlite/shell.c
FLAGS=(-O2 -DSQLITE_THREADSAFE=0 -DSQLITE_OMIT_LOAD_EXTENSION)

BENCH_START=$EPOCHREALTIME
BENCH_NAME="sqlite bench"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

HOST=$(rustc -vV | sed -n 's/^host: //p')
machine_line "$(clang-19 --version | head -n 1)"

# ---------------------------------------------------------------------------
# Setup: cargo-panic, its plugin, the amalgamation
# ---------------------------------------------------------------------------
build_cargo_panic "$BIN"

note "locating the SQLite amalgamation (libsqlite3-sys sources)"
logged "$LOG/fetch.log" cargo fetch --locked
AMALG=$(cargo metadata --format-version 1 --locked --offline --filter-platform "$HOST" 2>"$LOG/metadata.log" |
  python3 -c 'import json, os, sys
m = json.load(sys.stdin)
p = [p for p in m["packages"] if p["name"] == "libsqlite3-sys"]
print(os.path.join(os.path.dirname(p[0]["manifest_path"]), "sqlite3") if p else "")')
[[ -n $AMALG && -f $AMALG/sqlite3.c ]] || {
  echo "bench: no libsqlite3-sys sources (a dev-dependency of cargo-panic): run \`cargo fetch --locked\`" >&2
  exit 1
}
SQLITE_VERSION=$(sed -n 's/^#define SQLITE_VERSION  *"\(.*\)"/\1/p' "$AMALG/sqlite3.h")
SRC_ARGS=(-I"$AMALG" "$AMALG/sqlite3.c" "$SHELL_C")
note "SQLite $SQLITE_VERSION: $AMALG/sqlite3.c ($(wc -l <"$AMALG/sqlite3.c") lines)"

# ---------------------------------------------------------------------------
# Compile times (every build compiles sqlite3.c + shell.c and links, in one command)
# ---------------------------------------------------------------------------
build() { # variant, log
  local v=$1 log=$2 d=$EXE/$1
  mkdir -p "$d"
  case $v in
    plain) (cd "$d" && clang-19 "${FLAGS[@]}" "${SRC_ARGS[@]}" -o sqlite-shell -lm) >"$log" 2>&1 ;;
    lines) (cd "$d" && clang-19 "${FLAGS[@]}" -gline-tables-only "${SRC_ARGS[@]}" -o sqlite-shell -lm) >"$log" 2>&1 ;;
    sancov) (cd "$d" && clang-19 "${FLAGS[@]}" -fsanitize-coverage=inline-8bit-counters "${SRC_ARGS[@]}" -o sqlite-shell -lm) >"$log" 2>&1 ;;
    panic) (cd "$d" && "$BIN/cargo-panic" cc -- sh -c 'exec "$CC" "$@"' sh "${FLAGS[@]}" "${SRC_ARGS[@]}" -o sqlite-shell -lm) >"$log" 2>&1 ;;
  esac
}
BUILDS=(plain lines panic sancov)
declare -A LABEL CT
LABEL[plain]="plain clang-19 -O2"
LABEL[lines]="  plain -O2 -gline-tables-only"
LABEL[panic]="cargo panic cc (plugin, -gline-tables-only, runtime, manifest)"
LABEL[sancov]="-O2 -fsanitize-coverage=inline-8bit-counters (floor)"
declare -A OK
for v in "${BUILDS[@]}"; do CT[$v]="" OK[$v]=1; done
nb=${#BUILDS[@]}
for ((r = 1; r <= REPS; r++)); do
  for ((k = 0; k < nb; k++)); do
    v=${BUILDS[$(((k + r - 1) % nb))]}
    ((OK[$v])) || continue
    note "compile $r/$REPS: $v"
    rm -f "$EXE/$v/sqlite-shell"
    t0=$EPOCHREALTIME
    if build "$v" "$LOG/build-$v-$r.log"; then
      CT[$v]+=" $(since "$t0")"
    else
      OK[$v]=0
      echo "bench: the $v build FAILED (log: $LOG/build-$v-$r.log); last lines:" >&2
      tail -n 25 "$LOG/build-$v-$r.log" | sed 's/^/    /' >&2
    fi
  done
done
((OK[plain])) || { echo "bench: the plain build failed: nothing to compare with" >&2; exit 1; }
PANIC_LINK=$(grep -h '^cargo-panic: executable' "$LOG"/build-panic-*.log 2>/dev/null | tail -n 1 || true)
SANCOV_NOTE=""
if ((OK[sancov])); then
  # Size of the counter section = number of 8-bit counters (one per edge).
  n_ctr=$(objdump -h "$EXE/sancov/sqlite-shell" | awk '$2 == "__sancov_cntrs" { print $3 }')
  [[ -n $n_ctr ]] && n_ctr=$((16#$n_ctr))
  SANCOV_NOTE="SanCov build has ${n_ctr:-no} inline 8-bit counters (section __sancov_cntrs)"
  [[ -n $n_ctr ]] || OK[sancov]=0
fi

# ---------------------------------------------------------------------------
# Run times, interleaved
# ---------------------------------------------------------------------------
VARIANTS=()
for v in plain panic sancov; do ((OK[$v])) && VARIANTS+=("$v"); done
declare -A WALL CPUS RSS
for v in "${VARIANTS[@]}"; do
  WALL[$v]="" CPUS[$v]="" RSS[$v]=""
  note "warm-up run: $v"
  "$EXE/$v/sqlite-shell" "$WORKLOAD" >"$OUT/stdout-$v-0.txt" 2>"$OUT/stderr-$v-0.txt" ||
    { echo "bench: $v failed on the workload:" >&2; tail -n 5 "$OUT/stderr-$v-0.txt" >&2; exit 1; }
done
OUTPUT_MISMATCH=()
nv=${#VARIANTS[@]}
for ((r = 1; r <= RUNS; r++)); do
  for ((k = 0; k < nv; k++)); do
    v=${VARIANTS[$(((k + r - 1) % nv))]}
    note "run $r/$RUNS: $v"
    if ! res=$(measure "$v-$r" "$EXE/$v/sqlite-shell" "$WORKLOAD"); then
      echo "bench: $v run $r FAILED" >&2
      continue
    fi
    read -r w c m <<<"$res"
    WALL[$v]+=" $w"
    CPUS[$v]+=" $c"
    RSS[$v]+=" $m"
  done
done
for f in "$OUT"/stdout-*.txt; do
  cmp -s "$f" "$OUT/stdout-plain-0.txt" || OUTPUT_MISMATCH+=("$(basename "$f" .txt)")
done

# One run under `cargo-panic run`, for the probe counts (and what `run` costs).
PROFILE_SUMMARY=""
RUN_WALL=n/a
if ((OK[panic])); then
  note "one run under cargo-panic run (profile)"
  t0=$EPOCHREALTIME
  if "$BIN/cargo-panic" run --out "$OUT/profile.json" -- "$EXE/panic/sqlite-shell" "$WORKLOAD" \
    >"$OUT/stdout-profiled.txt" 2>"$OUT/stderr-profiled.txt"; then
    RUN_WALL=$(since "$t0")
    cmp -s "$OUT/stdout-profiled.txt" "$OUT/stdout-plain-0.txt" || OUTPUT_MISMATCH+=(stdout-profiled)
    PROFILE_SUMMARY=$(python3 - "$OUT/profile.json" <<'PY'
import collections, json, sys
p = json.load(open(sys.argv[1]))
s = p["sites"]
kinds = collections.Counter()
funcs = collections.Counter()
for x in s:
    kinds[x["kind"]] += x["count"]
    funcs[x["function"]] += x["count"]
total = sum(kinds.values())
print(f"   {len(s)} sites, {sum(1 for x in s if x['timed'])} timed, "
      f"{sum(1 for x in s if x.get('demoted'))} demoted during the run")
print(f"   {total / 1e6:.1f}M probe events: " +
      ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in kinds.most_common() if v))
print(f"   timed-site entries {sum(x['count'] for x in s if x['timed']) / 1e6:.1f}M; "
      f"sqlite3VdbeExec entered {sum(x['count'] for x in s if x['function'] == 'sqlite3VdbeExec' and x['kind'] == 'entry')} times")
print("   busiest functions (probe events): " +
      ", ".join(f"{f} {c / 1e6:.1f}M" for f, c in funcs.most_common(6)))
PY
)
  else
    echo "bench: the profiled run FAILED:" >&2
    tail -n 5 "$OUT/stderr-profiled.txt" >&2
  fi
fi

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
TOTAL=$(since "$BENCH_START")

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
echo
echo "================================ cargo-panic SQLite benchmark ================================"
echo "machine: $MACHINE"
echo "load average: start $LOAD_START, end $LOAD_END"
echo "SQLite $SQLITE_VERSION (libsqlite3-sys sources); flags ${FLAGS[*]}; workload bench/sqlite/workload.sql"
echo "$RUNS runs per variant (interleaved, order rotated each round); $REPS compiles per variant; script time ${TOTAL}s"
hr
row "figure" "value" "baseline" "ratio" "goal" "status"
hr
echo "run time of the workload: median wall s"
PW=$(median ${WALL[plain]})
SW=$(median ${WALL[sancov]:-})
for v in "${VARIANTS[@]}"; do
  w=$(median ${WALL[$v]}); ra=$(ratio "$w" "$PW")
  goal="" st=""
  [[ $v == panic ]] && goal="<= 1.10x" st=$(verdict "$ra" 1.10)
  row "   ${LABEL[$v]}" "$w" "$PW" "$ra" "$goal" "$st"
done
if ((OK[panic] && OK[sancov])); then
  w=$(median ${WALL[panic]}); ra=$(ratio "$w" "$SW")
  row "   cargo panic cc vs the SanCov floor" "$w" "$SW" "$ra" "<= 1.10x" "$(verdict "$ra" 1.10)"
fi
echo "   the same, median user+sys CPU s"
PC=$(median ${CPUS[plain]})
for v in "${VARIANTS[@]}"; do
  c=$(median ${CPUS[$v]})
  row "   ${LABEL[$v]}" "$c" "$PC" "$(ratio "$c" "$PC")" "" ""
done
echo "   peak RSS, median KiB"
PR=$(MEDIAN_FMT=%.0f median ${RSS[plain]})
for v in "${VARIANTS[@]}"; do
  m=$(MEDIAN_FMT=%.0f median ${RSS[$v]})
  row "   ${LABEL[$v]}" "$m" "$PR" "$(ratio "$m" "$PR")" "" ""
done
for v in "${VARIANTS[@]}"; do echo "   raw wall s, $v:${WALL[$v]}"; done
echo "   note: the instrumented binary runs directly (no cargo-panic run, no profile written)"
[[ -n $SANCOV_NOTE ]] && echo "   note: $SANCOV_NOTE"
((OK[panic])) || echo "   note: the cargo panic cc build FAILED: no instrumented figures (see $LOG)"
hr
echo "compile + link of sqlite3.c and shell.c: median wall s (baseline: plain)"
CP=$(median ${CT[plain]})
for v in "${BUILDS[@]}"; do
  ((OK[$v])) || { row "   ${LABEL[$v]}" FAILED "" "" "" ""; continue; }
  c=$(median ${CT[$v]}); ra=$(ratio "$c" "$CP")
  goal="" st=""
  [[ $v == panic ]] && goal="<= 1.3x" st=$(verdict "$ra" 1.3)
  row "   ${LABEL[$v]}" "$c" "$CP" "$ra" "$goal" "$st"
done
for v in "${BUILDS[@]}"; do echo "   raw s, $v:${CT[$v]:- FAILED}"; done
echo "   building the plugin once into a fresh home (not included above): ${PLUGIN_S}s"
[[ -n $PANIC_LINK ]] && echo "   $PANIC_LINK"
hr
echo "one run under cargo-panic run (profile written): ${RUN_WALL}s wall"
[[ -n $PROFILE_SUMMARY ]] && echo "$PROFILE_SUMMARY"
hr
if ((${#OUTPUT_MISMATCH[@]})); then
  echo "OUTPUT MISMATCH: these runs printed something other than the plain build: ${OUTPUT_MISMATCH[*]}"
else
  echo "outputs: every run of every build printed exactly what the plain build printed ($(wc -l <"$OUT/stdout-plain-0.txt") lines, sha256 $(sha256sum <"$OUT/stdout-plain-0.txt" | cut -c1-16))"
fi
echo "logs, outputs and the profile: $W"
