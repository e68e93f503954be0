#!/usr/bin/env bash
# Verifier benchmark. Run from the repository root:
#
#   bash bench/verifier.sh
#
# Chordality: random chordal graphs (verifier/examples/chordal_gen.rs: each new
# vertex joins part of an earlier vertex's clique, average degree about 5) of
# 2,000 to 1,000,000 vertices, and non-chordal variants (3 extra edges, each
# closing a long chordless cycle). On each, side by side:
#   ours       `cargo-panic verify --graph FILE`: the whole certified verdict
#              (read the file, PEO or chordless cycle, cliques and clique tree or
#              a minimal fill-in, every certificate re-checked), wall time of the
#              process and its peak RSS
#   igraph     python-igraph 1.0.0 (C core): `is_chordal()` alone on a loaded
#              graph, and end to end (Python start, Read_Edgelist, is_chordal)
#   networkx   networkx 3.6.1: read + `is_chordal` (+ `chordal_graph_cliques` on
#              chordal graphs), only up to 10,000 vertices (it cannot finish larger)
# The Python packages go into a virtual environment under the scratch dir, from
# the package registry. Times are medians of BENCH_RUNS (default 3; networkx
# runs once at 10,000 vertices). Drift: z3 certificate times for 5, 20 and 100
# resources (verifier/examples/drift_time.rs). Nothing asserts on time; goals
# are reported as met or MISSED. Scratch: bench/.work/verifier (git-ignored,
# wiped at the start).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

bash scripts/install-deps.sh

RUNS=${BENCH_RUNS:-3}
export CARGO_TERM_COLOR=never LC_ALL=C
W=$ROOT/bench/.work/verifier
LOG=$W/logs
G=$W/graphs
OUT=$W/out
rm -rf "$W"
mkdir -p "$LOG" "$G" "$OUT"

BENCH_START=$EPOCHREALTIME
BENCH_NAME="verifier bench"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo "machine: nproc $(nproc) | cpu ${CPU:-unknown} | kernel $(uname -r) | $(python3 --version) | mem $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

note "building cargo-panic and the verifier's examples (release)"
logged "$LOG/build.log" cargo build --release --locked -p cargo-panic
logged "$LOG/examples.log" cargo build --release --locked -p panic-verifier --example chordal_gen --example drift_time
BIN=$ROOT/target/release
note "making a Python virtual environment with igraph and networkx"
logged "$LOG/venv.log" python3 -m venv "$W/venv"
logged "$LOG/pip.log" "$W/venv/bin/pip" install --quiet "igraph==1.0.0" "networkx==3.6.1"
PY=$W/venv/bin/python

cat >"$W/igraph_time.py" <<'PY'
import sys, time
import igraph
path = sys.argv[1]
g = igraph.Graph.Read_Edgelist(path, directed=False)
t0 = time.perf_counter()
chordal = g.is_chordal()
print(f"{time.perf_counter() - t0:.4f} {int(chordal)}")
PY
cat >"$W/networkx_time.py" <<'PY'
import sys, time
import networkx as nx
t0 = time.perf_counter()
g = nx.read_edgelist(sys.argv[1], nodetype=int)
chordal = nx.is_chordal(g)
if chordal:
    cliques = sum(1 for _ in nx.chordal_graph_cliques(g))
print(f"{time.perf_counter() - t0:.4f} {int(chordal)}")
PY

SIZES=(2000 10000 100000 1000000)
declare -A OURS OURS_RSS IG IG_E2E IG_RSS NX VERDICT IG_SAYS
for n in "${SIZES[@]}"; do
  for kind in chordal nonchordal; do
    f=$G/$kind-$n.txt
    extra=()
    [[ $kind == nonchordal ]] && extra=(--extra 3)
    "$BIN/examples/chordal_gen" "$n" "${extra[@]}" --seed 7 >"$f"
    key=$kind-$n
    note "$key: $(wc -l <"$f") edges"
    for ((r = 1; r <= RUNS; r++)); do
      # verify exits 1 on a non-chordal graph: a verdict, not a failure.
      res=$(measure "ours-$key-$r" "$BIN/cargo-panic" verify --graph "$f") || true
      read -r s _ kib <<<"$res"
      OURS[$key]+=" $s"
      OURS_RSS[$key]+=" $kib"
      VERDICT[$key]=$(head -n 1 "$OUT/stdout-ours-$key-$r.txt" | sed 's/.*: //')
      res=$(measure "igraph-$key-$r" "$PY" "$W/igraph_time.py" "$f") ||
        { echo "bench: igraph failed on $f" >&2; tail -n 5 "$OUT/stderr-igraph-$key-$r.txt" >&2; }
      read -r s _ kib <<<"$res"
      IG_E2E[$key]+=" $s"
      IG_RSS[$key]+=" $kib"
      read -r t c <"$OUT/stdout-igraph-$key-$r.txt"
      IG[$key]+=" $t"
      IG_SAYS[$key]=$c
    done
    if ((n <= 10000)); then
      nx_runs=$RUNS
      ((n > 2000)) && nx_runs=1
      for ((r = 1; r <= nx_runs; r++)); do
        note "$key: networkx run $r/$nx_runs"
        "$PY" "$W/networkx_time.py" "$f" >"$OUT/nx.out"
        read -r t _ <"$OUT/nx.out"
        NX[$key]+=" $t"
      done
    fi
  done
done

note "z3 drift certificates"
"$BIN/examples/drift_time" 5 20 100 >"$OUT/drift.txt" 2>"$LOG/drift.log" || echo "bench: drift_time failed (log: $LOG/drift.log)" >&2

echo
hr
row "figure" "value" "baseline" "ratio" "goal" "status"
hr
for n in "${SIZES[@]}"; do
  for kind in chordal nonchordal; do
    key=$kind-$n
    # shellcheck disable=SC2086
    ours=$(median ${OURS[$key]})
    # shellcheck disable=SC2086
    ig=$(median ${IG[$key]})
    # shellcheck disable=SC2086
    ige=$(median ${IG_E2E[$key]})
    echo "$kind, $n vertices: ours says \"${VERDICT[$key]}\", igraph is_chordal says ${IG_SAYS[$key]}"
    goal="<= 1x"
    status=$(verdict "$(ratio "$ours" "$ig")" 1.0)
    ((n < 100000)) && goal="" && status=""
    row "   ours, whole certified verdict, wall s (vs igraph is_chordal alone)" "$ours" "$ig" "$(ratio "$ours" "$ig")" "$goal" "$status"
    row "   ours vs igraph end to end (python, read, is_chordal), wall s" "$ours" "$ige" "$(ratio "$ours" "$ige")" "" ""
    if [[ -n ${NX[$key]:-} ]]; then
      # shellcheck disable=SC2086
      nx=$(median ${NX[$key]})
      row "   ours vs networkx (read, is_chordal, cliques), s" "$ours" "$nx" "$(ratio "$ours" "$nx")" "" ""
    fi
    MEDIAN_FMT=%.0f
    # shellcheck disable=SC2086
    row "   peak RSS KiB: ours vs igraph end to end" "$(median ${OURS_RSS[$key]})" "$(median ${IG_RSS[$key]})" "$(ratio "$(median ${OURS_RSS[$key]})" "$(median ${IG_RSS[$key]})")" "" ""
    MEDIAN_FMT=%.3f
  done
done
hr
echo "z3 drift certificates (verifier/examples/drift_time.rs):"
sed 's/^/   /' "$OUT/drift.txt"
hr
echo "raw times and logs: $W"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); total $(since "$BENCH_START") s"
