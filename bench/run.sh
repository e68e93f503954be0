#!/usr/bin/env bash
# The cargo-panic benchmark. Run from the repository root:
#
#   bash bench/run.sh
#
# It builds cargo-panic (release), copies examples/jsonparse and examples/loops
# to a scratch directory (bench/.work, git-ignored) and measures, against
# baselines measured in the same run:
#   a. run time of `jsonparse 4000 100`: plain, SanitizerCoverage reference,
#      instrumented (default dwell rule, and with adaptive timing off), counting
#      only, every function timed, profile-guided
#   b. instructions per counting probe and per dwell region (callgrind, loops)
#   c. clean build time of jsonparse, plain vs instrumented
#   d. rebuild time after `touch src/main.rs` and after a one-line edit
#   e. peak RSS of the jsonparse run
# and prints one table of figures and ratios. Nothing here asserts on time;
# goals are only reported as met or missed.
#
# Knobs (environment): BENCH_RUNS (runs per variant in a, default 5),
# BENCH_BUILD_REPS (repetitions in c and d, default 3), BENCH_ARGS (jsonparse
# arguments, default "4000 100"), BENCH_SKIP_CLEAN=1 (c: one clean build each
# instead of BENCH_BUILD_REPS).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

bash scripts/install-deps.sh

RUNS=${BENCH_RUNS:-5}
REPS=${BENCH_BUILD_REPS:-3}
read -r -a JARGS <<<"${BENCH_ARGS:-4000 100}"
LOOPS_N1=100000
LOOPS_N2=200000

# Our own flags must not mix with the caller's.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_TARGET_DIR CARGO_BUILD_TARGET CARGO_BUILD_RUSTFLAGS
export CARGO_TERM_COLOR=never LC_ALL=C

W=$ROOT/bench/.work
LOG=$W/logs
BIN=$W/bin          # cargo-panic and cargo-panic-link, side by side
EXE=$W/exe          # the measured executables (instrumented ones with their manifests)
SRC=$W/src          # copies of the example crates
T=$W/target         # target directories
OUT=$W/out          # program outputs, /usr/bin/time files, profiles, callgrind files
rm -rf "$W"
mkdir -p "$LOG" "$BIN" "$EXE" "$SRC" "$T" "$OUT"

BENCH_START=$EPOCHREALTIME
BENCH_NAME="bench"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

# cargo-panic build in directory $1, log $2, further args: cargo panic build args.
# Prints the (last) instrumented executable's path.
panic_build() {
  local dir=$1 log=$2; shift 2
  if (cd "$dir" && "$BIN/cargo-panic" build "$@") >"$log.stdout" 2>"$log"; then
    tail -n 1 "$log.stdout"
    return 0
  fi
  echo "bench: cargo panic build $* in $dir FAILED (log: $log); last lines:" >&2
  grep -v '^ *= note:  "' "$log" | tail -n 15 | sed 's/^/    /' >&2
  return 1
}

# Copies an instrumented executable with its manifest to $EXE/$2.
keep_instrumented() {
  cp "$1" "$EXE/$2"
  cp "$1.panic.json" "$EXE/$2.panic.json"
}

# The newest link-stats JSON of target dir $1, as "hits misses elapsed_ms".
link_stats() {
  local f
  f=$(ls -t "$1"/panic/link-stats/*.json 2>/dev/null | head -n 1) || true
  [[ -n $f ]] || { echo "? ? ?"; return; }
  python3 - "$f" <<'EOF' 2>/dev/null || echo "? ? ?"
import json, sys
s = json.load(open(sys.argv[1]))
print(s["cache_hits"], s["cache_misses"], s["elapsed_ms"])
EOF
}

# ---------------------------------------------------------------------------
# Machine
# ---------------------------------------------------------------------------
HOST=$(rustc -vV | sed -n 's/^host: //p')
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
MACHINE="nproc $(nproc) | cpu ${CPU:-unknown} | kernel $(uname -r) | $(rustc -V) | mem $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "machine: $MACHINE"
echo "load average at start: $LOAD_START"
echo

# ---------------------------------------------------------------------------
# Setup: cargo-panic, crate copies, dependencies, SanCov stub
# ---------------------------------------------------------------------------
note "building cargo-panic (release)"
logged "$LOG/cargo-panic.log" cargo build --release --locked -p cargo-panic
# Private copies: a concurrent rebuild of target/release cannot change them mid-run.
cp target/release/cargo-panic target/release/cargo-panic-link "$BIN/"

cp -r examples/jsonparse "$SRC/jsonparse"
cp -r examples/loops "$SRC/loops"
rm -rf "$SRC/jsonparse/target" "$SRC/loops/target"
JP=$SRC/jsonparse
MAIN_ORIG=$W/jsonparse-main.rs.orig
cp "$JP/src/main.rs" "$MAIN_ORIG"
note "fetching jsonparse's dependencies (warms cargo's download cache)"
(cd "$JP" && logged "$LOG/fetch.log" cargo fetch --locked)

# SanitizerCoverage inline 8-bit counters call __sanitizer_cov_8bit_counters_init
# from a module constructor; without a sanitizer runtime, a no-op stub satisfies it.
mkdir -p "$W/sancov"
printf 'void __sanitizer_cov_8bit_counters_init(char *start, char *end) { (void)start; (void)end; }\n' >"$W/sancov/stub.c"
cc -O2 -fPIC -c "$W/sancov/stub.c" -o "$W/sancov/stub.o"

# ---------------------------------------------------------------------------
# c. Clean builds (first: they also produce the binaries for a and d)
# ---------------------------------------------------------------------------
TP=$T/jp-plain       # plain release
TI=$T/jp-panic       # cargo panic build --release
CLEAN_PLAIN=() CLEAN_INST=()
INST_OK=1
clean_reps=$REPS
[[ ${BENCH_SKIP_CLEAN:-0} == 1 ]] && clean_reps=1
for ((r = 1; r <= clean_reps; r++)); do
  note "c. clean build $r/$clean_reps: plain"
  rm -rf "$TP"
  t0=$EPOCHREALTIME
  (cd "$JP" && logged "$LOG/clean-plain-$r.log" cargo build --release --locked --target-dir "$TP")
  CLEAN_PLAIN+=("$(since "$t0")")
  note "c. clean build $r/$clean_reps: cargo panic build"
  rm -rf "$TI"
  t0=$EPOCHREALTIME
  if exe=$(panic_build "$JP" "$LOG/clean-panic-$r.log" --release --locked --target-dir "$TI"); then
    CLEAN_INST+=("$(since "$t0")")
  else
    INST_OK=0
    break
  fi
done
PLAIN_EXE=$TP/release/jsonparse
cp "$PLAIN_EXE" "$EXE/jsonparse-plain"
if ((INST_OK)); then
  keep_instrumented "$exe" jsonparse-panic
  read -r CLEAN_HITS CLEAN_MISSES CLEAN_LINK_MS < <(link_stats "$TI")
fi

# ---------------------------------------------------------------------------
# a. Extra builds for the run-time comparison
# ---------------------------------------------------------------------------
VARIANTS=(plain)
declare -A LABEL CMD
LABEL[plain]="plain cargo build --release"
LABEL[sancov]="SanCov inline-8bit-counters (reference floor)"
LABEL[panic]="cargo panic build (default dwell rule)"
LABEL[direct]="  same binary run directly (no cargo-panic run)"
LABEL[static]="  same binary, CARGO_PANIC_ADAPTIVE=0 (static rule only)"
LABEL[count]="cargo panic build --no-time '*' (counting only)"
LABEL[timeall]="cargo panic build --time '*' (every function timed)"
LABEL[pgo]="cargo panic build --dwell-from (profile of jsonparse 1000 20)"

note "a. building the SanCov reference"
SANCOV_FLAGS="-C passes=sancov-module -C llvm-args=-sanitizer-coverage-level=3 -C llvm-args=-sanitizer-coverage-inline-8bit-counters -C link-arg=$W/sancov/stub.o"
# --target keeps RUSTFLAGS off build scripts and proc macros, which would need the stub too.
SANCOV_NOTE=""
if (cd "$JP" && RUSTFLAGS="$SANCOV_FLAGS" logged "$LOG/sancov.log" \
  cargo build --release --locked --target "$HOST" --target-dir "$T/jp-sancov"); then
  cp "$T/jp-sancov/$HOST/release/jsonparse" "$EXE/jsonparse-sancov"
  n_ctr=$(objdump -d --no-show-raw-insn "$EXE/jsonparse-sancov" | grep -c '__sancov_cntrs' || true)
  if ((n_ctr > 0)); then
    VARIANTS+=(sancov)
    SANCOV_NOTE="SanCov build has $n_ctr counter increments"
  else
    SANCOV_NOTE="SanCov build linked but contains no counters: reference not measured"
  fi
else
  SANCOV_NOTE="SanCov build FAILED on this toolchain (log: $LOG/sancov.log): reference not measured"
fi

if ((INST_OK)); then
  VARIANTS+=(panic direct static)
  note "a. relinking: --no-time '*'"
  if exe=$(panic_build "$JP" "$LOG/panic-count.log" --release --locked --target-dir "$TI" --no-time '*'); then
    keep_instrumented "$exe" jsonparse-count
    VARIANTS+=(count)
  fi
  note "a. relinking: --time '*'"
  if exe=$(panic_build "$JP" "$LOG/panic-timeall.log" --release --locked --target-dir "$TI" --time '*'); then
    keep_instrumented "$exe" jsonparse-timeall
    VARIANTS+=(timeall)
  fi
  # Profile-guided rule, when this cargo-panic has it: train on a smaller input.
  if "$BIN/cargo-panic" build --help 2>/dev/null | grep -q -- '--dwell-from'; then
    note "a. training run (jsonparse 1000 20) and relinking: --dwell-from"
    if logged "$LOG/pgo-train.log" "$BIN/cargo-panic" run --out "$OUT/train.json" -- "$EXE/jsonparse-panic" 1000 20 &&
      exe=$(panic_build "$JP" "$LOG/panic-pgo.log" --release --locked --target-dir "$TI" --dwell-from "$OUT/train.json"); then
      keep_instrumented "$exe" jsonparse-pgo
      VARIANTS+=(pgo)
    fi
  fi
  # Back to the default rule, so that d starts from an up-to-date build.
  note "a. relinking: default rule again"
  panic_build "$JP" "$LOG/panic-restore.log" --release --locked --target-dir "$TI" >/dev/null
fi
for v in "${VARIANTS[@]}"; do
  case $v in
    plain | sancov) CMD[$v]="$EXE/jsonparse-$v" ;;
    direct) CMD[$v]="$EXE/jsonparse-panic" ;;
    static) CMD[$v]="env CARGO_PANIC_ADAPTIVE=0 $BIN/cargo-panic run --out $OUT/profile-$v.json -- $EXE/jsonparse-panic" ;;
    *) CMD[$v]="$BIN/cargo-panic run --out $OUT/profile-$v.json -- $EXE/jsonparse-$v" ;;
  esac
done

# ---------------------------------------------------------------------------
# a. Run time, interleaved (and e. peak RSS from the same runs)
# ---------------------------------------------------------------------------
declare -A WALL CPU RSS
for v in "${VARIANTS[@]}"; do WALL[$v]="" CPU[$v]="" RSS[$v]=""; done
OUTPUT_MISMATCH=()
nv=${#VARIANTS[@]}
for ((r = 1; r <= RUNS; r++)); do
  for ((k = 0; k < nv; k++)); do
    v=${VARIANTS[$(((k + r - 1) % nv))]}  # rotate the order every round
    note "a. run $r/$RUNS: $v"
    # shellcheck disable=SC2086 # CMD holds a command line
    if ! res=$(measure "$v-$r" ${CMD[$v]} "${JARGS[@]}"); then
      echo "bench: $v run $r FAILED; stderr:" >&2
      tail -n 5 "$OUT/stderr-$v-$r.txt" | sed 's/^/    /' >&2
      continue
    fi
    read -r w c m <<<"$res"
    WALL[$v]+=" $w"
    CPU[$v]+=" $c"
    RSS[$v]+=" $m"
  done
done
# Every run must print what the plain build printed.
for f in "$OUT"/stdout-*.txt; do
  cmp -s "$f" "$OUT/stdout-plain-1.txt" || OUTPUT_MISMATCH+=("$(basename "$f" .txt)")
done


# ---------------------------------------------------------------------------
# b. Instructions per probe and per dwell region (callgrind on loops)
# ---------------------------------------------------------------------------
LP=$SRC/loops
note "b. building loops: plain, default rule, --time 'loops::bump'"
B_OK=1
(cd "$LP" && logged "$LOG/loops-plain.log" cargo build --release --locked --target-dir "$T/loops-plain")
cp "$T/loops-plain/release/loops" "$EXE/loops-plain"
if exe=$(panic_build "$LP" "$LOG/loops-panic.log" --release --locked --target-dir "$T/loops-panic"); then
  keep_instrumented "$exe" loops-panic
else B_OK=0; fi
if exe=$(panic_build "$LP" "$LOG/loops-dwell.log" --release --locked --target-dir "$T/loops-panic" --time 'loops::bump'); then
  keep_instrumented "$exe" loops-dwell
else B_OK=0; fi

# callgrind totals and per-function self costs.
declare -A CG
cg_fn() { # file, function name (exact, or with a .cold suffix): self Ir, summed
  callgrind_annotate --threshold=100 --inclusive=no "$1" 2>/dev/null |
    awk -v f="$2" '{ for (i = 2; i <= NF; i++) if ($i ~ ("^[^ ]*:" f "(\\.cold)?$")) { gsub(",", "", $1); s += $1 } } END { print s + 0 }'
}
if ((B_OK)); then
  for v in plain panic dwell; do
    for n in $LOOPS_N1 $LOOPS_N2; do
      note "b. callgrind: loops-$v calls $n"
      f=$OUT/callgrind-$v-$n.out
      valgrind --tool=callgrind --callgrind-out-file="$f" "$EXE/loops-$v" calls "$n" >"$OUT/loops-$v-$n.txt" 2>"$OUT/callgrind-$v-$n.log"
      cmp -s "$OUT/loops-$v-$n.txt" "$OUT/loops-plain-$n.txt" || OUTPUT_MISMATCH+=("loops-$v calls $n")
      CG[$v,$n,total]=$(sed -n 's/^totals: //p' "$f")
      for fn in 'loops::bump' 'loops::drive_calls' '__panic_dwell_enter' '__panic_dwell_exit'; do
        CG[$v,$n,$fn]=$(cg_fn "$f" "$fn")
      done
    done
  done
  # Per-call differences: the N2 - N1 extra calls cancel start-up and shutdown.
  dn=$((LOOPS_N2 - LOOPS_N1))
  per_call() { # variant, key
    awk -v a="${CG[$1,$LOOPS_N1,$2]}" -v b="${CG[$1,$LOOPS_N2,$2]}" -v d="$dn" 'BEGIN{printf "%.2f", (b-a)/d}'
  }
  P_TOT=$(per_call plain total); I_TOT=$(per_call panic total); D_TOT=$(per_call dwell total)
  P_BUMP=$(per_call plain loops::bump); I_BUMP=$(per_call panic loops::bump); D_BUMP=$(per_call dwell loops::bump)
  P_DRV=$(per_call plain loops::drive_calls); I_DRV=$(per_call panic loops::drive_calls)
  D_ENTER=$(per_call dwell __panic_dwell_enter); D_EXIT=$(per_call dwell __panic_dwell_exit)
  calc() { awk "BEGIN{printf \"%.2f\", $1}"; }
  # (1) The brief's whole-program figure: all extra instructions per call / 2 probes.
  PROBE_WHOLE=$(calc "($I_TOT - $P_TOT) / 2")
  # (2) bump alone: its entry and exit probes.
  PROBE_BUMP=$(calc "($I_BUMP - $P_BUMP) / 2")
  # (3) drive_calls' loop probe, per iteration (back-edge counted from the latch condition).
  PROBE_LOOP=$(calc "$I_DRV - $P_DRV")
  # Dwell pair, caller's view: timing bump replaces its entry counting probe (one
  # `lock add`) by the dwell_enter call, which counts itself; add that probe back.
  PAIR_ALL=$(calc "$D_TOT - $I_TOT + 1")
  PAIR_RT=$(calc "$D_ENTER + $D_EXIT")
  UPD_ALL=$(calc "$PAIR_ALL / 2")
  UPD_RT=$(calc "$PAIR_RT / 2")
fi

# ---------------------------------------------------------------------------
# d. Rebuilds: touch, and a real one-line edit of a string literal
# ---------------------------------------------------------------------------
TOUCH_PLAIN=() TOUCH_INST=() EDIT_PLAIN=() EDIT_INST=()
TOUCH_STATS="" EDIT_STATS=""
if ((INST_OK)); then
  for ((r = 1; r <= REPS; r++)); do
    for kind in touch edit; do
      if [[ $kind == touch ]]; then
        touch "$JP/src/main.rs"
      else
        # A different literal every time: `.expect("records serialise")` -> `... (edit r)`.
        sed "s/expect(\"records serialise\")/expect(\"records serialise (edit $r)\")/" "$MAIN_ORIG" >"$JP/src/main.rs"
        grep -q "records serialise (edit $r)" "$JP/src/main.rs" || { echo "bench: the edit did not apply" >&2; exit 1; }
      fi
      note "d. rebuild after $kind $r/$REPS: plain"
      t0=$EPOCHREALTIME
      (cd "$JP" && logged "$LOG/rebuild-$kind-plain-$r.log" cargo build --release --locked --target-dir "$TP")
      tp=$(since "$t0")
      note "d. rebuild after $kind $r/$REPS: cargo panic build"
      t0=$EPOCHREALTIME
      panic_build "$JP" "$LOG/rebuild-$kind-panic-$r.log" --release --locked --target-dir "$TI" >/dev/null
      ti=$(since "$t0")
      st=$(link_stats "$TI")
      if [[ $kind == touch ]]; then
        TOUCH_PLAIN+=("$tp") TOUCH_INST+=("$ti") TOUCH_STATS+=" [$st]"
      else
        EDIT_PLAIN+=("$tp") EDIT_INST+=("$ti") EDIT_STATS+=" [$st]"
      fi
    done
  done
  cp "$MAIN_ORIG" "$JP/src/main.rs"
fi

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
TOTAL=$(since "$BENCH_START")

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
echo
echo "=================================== cargo-panic benchmark ==================================="
echo "machine: $MACHINE"
echo "load average: start $LOAD_START, end $LOAD_END (other work on the machine inflates times)"
echo "workload: jsonparse ${JARGS[*]}; $RUNS runs per variant (interleaved, order rotated each round); $REPS build reps"
echo "script time: ${TOTAL}s"
echo
hr
row "figure" "value" "baseline" "ratio" "goal" "status"
hr
echo "a. run time of jsonparse ${JARGS[*]}: median wall s (baseline: plain)"
PW=$(median ${WALL[plain]})
PC=$(median ${CPU[plain]})
for v in "${VARIANTS[@]}"; do
  w=$(median ${WALL[$v]}); ra=$(ratio "$w" "$PW")
  goal="" st=""
  [[ $v == panic || $v == direct ]] && goal="<= 1.10x" st=$(verdict "$ra" 1.10)
  row "   ${LABEL[$v]}" "$w" "$PW" "$ra" "$goal" "$st"
done
echo "   the same, median user+sys CPU s"
for v in "${VARIANTS[@]}"; do
  c=$(median ${CPU[$v]})
  row "   ${LABEL[$v]}" "$c" "$PC" "$(ratio "$c" "$PC")" "" ""
done
[[ -n $SANCOV_NOTE ]] && echo "   note: $SANCOV_NOTE"
((INST_OK)) || echo "   note: the instrumented build FAILED, so there are no instrumented figures (see $LOG)"
echo "   note: instrumented variants run through \`cargo-panic run --out\` (profile written) unless said otherwise"
for v in panic count timeall pgo; do
  [[ -e $OUT/profile-$v.json ]] || continue
  python3 - "$OUT/profile-$v.json" "$v" <<'PY' || true
import json, sys
p = json.load(open(sys.argv[1]))
s = p["sites"]
events = sum(x["count"] for x in s)
timed = sum(x["count"] for x in s if x["timed"])
entries = sum(x["count"] for x in s if x["kind"] == "entry")
print(f"   profile, {sys.argv[2]}: {len(s)} sites, {sum(1 for x in s if x['timed'])} timed; "
      f"{events / 1e6:.1f}M probe events, {entries / 1e6:.1f}M function entries, {timed / 1e6:.1f}M timed regions")
PY
done
for v in "${VARIANTS[@]}"; do echo "   raw wall s, $v:${WALL[$v]}"; done
hr
echo "b. instructions (callgrind Ir; loops calls $LOOPS_N1 and $LOOPS_N2; per extra call of bump; rdtsc counts 1)"
if ((B_OK)); then
  row "   per call of bump, whole program: plain build" "$P_TOT" "" "" "" ""
  row "   per call of bump, whole program: default rule (bump counted)" "$I_TOT" "$P_TOT" "" "" ""
  row "   per call of bump, whole program: --time 'loops::bump'" "$D_TOT" "$I_TOT" "" "" ""
  row "   per counting probe, whole program ((default - plain) / 2)" "$PROBE_WHOLE" "" "" "<= 3" "$(verdict "$PROBE_WHOLE" 3)"
  row "     bump's own entry+exit probes, per probe" "$PROBE_BUMP" "" "" "<= 3" "$(verdict "$PROBE_BUMP" 3)"
  row "     drive_calls' loop back-edge probe, per iteration" "$PROBE_LOOP" "" "" "<= 3" "$(verdict "$PROBE_LOOP" 3)"
  row "   dwell enter+exit pair, caller's view ((timed - default) + 1)" "$PAIR_ALL" "" "" "" ""
  row "     per dwell_update (pair / 2)" "$UPD_ALL" "" "" "<= 40" "$(verdict "$UPD_ALL" 40)"
  row "   dwell enter+exit pair, runtime only (enter $D_ENTER + exit $D_EXIT)" "$PAIR_RT" "" "" "" ""
  row "     per dwell_update (pair / 2)" "$UPD_RT" "" "" "<= 40" "$(verdict "$UPD_RT" 40)"
  echo "   self Ir per call: bump plain $P_BUMP, default $I_BUMP, timed $D_BUMP; drive_calls plain $P_DRV, default $I_DRV"
  echo "   raw totals (N1 / N2): plain ${CG[plain,$LOOPS_N1,total]} / ${CG[plain,$LOOPS_N2,total]}; default ${CG[panic,$LOOPS_N1,total]} / ${CG[panic,$LOOPS_N2,total]}; timed ${CG[dwell,$LOOPS_N1,total]} / ${CG[dwell,$LOOPS_N2,total]}"
else
  echo "   not measured: loops did not build instrumented (see $LOG/loops-*.log)"
fi
hr
echo "c. clean build of jsonparse: median s (empty target dir, download cache warm; baseline: plain)"
cp_=$(median "${CLEAN_PLAIN[@]}"); ci=$(median "${CLEAN_INST[@]}")
row "   cargo panic build --release vs cargo build --release" "$ci" "$cp_" "$(ratio "$ci" "$cp_")" "<= 1.3x" "$(verdict "$(ratio "$ci" "$cp_")" 1.3)"
echo "   raw s: plain ${CLEAN_PLAIN[*]}; cargo panic ${CLEAN_INST[*]:-FAILED}"
((INST_OK)) && echo "   link driver, clean build: cache hits ${CLEAN_HITS}, misses ${CLEAN_MISSES}, link ${CLEAN_LINK_MS} ms"
hr
echo "d. rebuild of jsonparse: median s (baseline: plain)"
if ((INST_OK)); then
  tp=$(median "${TOUCH_PLAIN[@]}"); ti=$(median "${TOUCH_INST[@]}")
  ep=$(median "${EDIT_PLAIN[@]}"); ei=$(median "${EDIT_INST[@]}")
  row "   after touch src/main.rs" "$ti" "$tp" "$(ratio "$ti" "$tp")" "<= 3x" "$(verdict "$(ratio "$ti" "$tp")" 3)"
  row "   after a one-line edit of a string literal in main.rs" "$ei" "$ep" "$(ratio "$ei" "$ep")" "<= 3x" "$(verdict "$(ratio "$ei" "$ep")" 3)"
  echo "   raw s, touch: plain ${TOUCH_PLAIN[*]}; cargo panic ${TOUCH_INST[*]}"
  echo "   raw s, edit:  plain ${EDIT_PLAIN[*]}; cargo panic ${EDIT_INST[*]}"
  echo "   link driver [cache hits, misses, link ms] per rebuild: touch${TOUCH_STATS}; edit${EDIT_STATS}"
else
  echo "   not measured: the instrumented build failed"
fi
hr
echo "e. peak RSS of jsonparse ${JARGS[*]}: median KiB, /usr/bin/time %M (baseline: plain)"
PR=$(MEDIAN_FMT=%.0f median ${RSS[plain]})
for v in "${VARIANTS[@]}"; do
  m=$(MEDIAN_FMT=%.0f median ${RSS[$v]})
  label=${LABEL[$v]}
  case $v in plain | sancov | direct) ;; *) label+=" *" ;; esac
  row "   $label" "$m" "$PR" "$(ratio "$m" "$PR")" "" ""
done
echo "   * through cargo-panic run: the larger of cargo-panic itself and the program"
hr
if ((${#OUTPUT_MISMATCH[@]})); then
  echo "OUTPUT MISMATCH: these runs printed something other than the plain build: ${OUTPUT_MISMATCH[*]}"
  echo "  plain printed: $(cat "$OUT/stdout-plain-1.txt")"
else
  echo "outputs: every run of every build printed exactly what the plain build printed:"
  echo "  $(cat "$OUT/stdout-plain-1.txt")"
fi
echo "logs, outputs, profiles and callgrind files: $W"
