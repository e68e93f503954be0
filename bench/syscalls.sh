#!/usr/bin/env bash
# The syscall path's cost: a loop of N getppid() calls (examples/c-split
# `syscalls N`, the worst case: calls that do nothing) run three ways,
# interleaved, BENCH_RUNS times each (default 7):
#   unwatched   cargo-panic run
#   watched     cargo-panic run --kernel            (scheduler accounting only)
#   syscalls    cargo-panic run --syscalls          (plus sys_enter/sys_exit)
#   sampled     cargo-panic run --syscall-sample 10% (the same, attached 10%
#               of each 100 ms)
# The program prints its loop's wall time; the table gives medians and the
# ratios to unwatched. Goal: ≤ 1.30x with the syscall path on (both ways of
# running it are reported). Run from the
# repository root, as root:
#
#   sudo bash bench/syscalls.sh [N]          (default 2000000)
#
# Nothing here asserts on time; goals are reported as met or MISSED. Scratch
# space: bench/.work/syscalls (git-ignored, wiped at the start).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

N=${1:-2000000}
[[ $N =~ ^[1-9][0-9]*$ ]] || { echo "usage: sudo bash bench/syscalls.sh [N]" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "bench: the kernel side needs root: sudo bash bench/syscalls.sh" >&2; exit 1; }

BENCH_START=$EPOCHREALTIME
BENCH_NAME="syscalls bench"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
RUNS=${BENCH_RUNS:-7}
kernel_bench_setup syscalls "--time calls"
EXE=$C_SPLIT

declare -A FLAGS=([unwatched]="" [watched]="--kernel" [syscalls]="--syscalls" [sampled]="--syscall-sample 10%")
VARIANTS=(unwatched watched syscalls sampled)
declare -A LOOPS
for ((r = 0; r < RUNS; r++)); do
  for ((k = 0; k < ${#VARIANTS[@]}; k++)); do
    v=${VARIANTS[$(((k + r) % ${#VARIANTS[@]}))]}
    # shellcheck disable=SC2086 # FLAGS holds zero to two words
    "$BIN/cargo-panic" run ${FLAGS[$v]} --out "$OUT/p-$v-$r.json" -- "$EXE" syscalls "$N" \
      >"$OUT/out-$v-$r.txt" 2>"$OUT/err-$v-$r.txt"
    LOOPS[$v]+=" $(sed -n 's/^loop_s //p' "$OUT/out-$v-$r.txt")"
  done
  note "round $((r + 1)) of $RUNS"
done

echo
echo "machine: $MACHINE"
echo "c-split syscalls $N (getppid), median of $RUNS interleaved runs, loop wall time:"
# shellcheck disable=SC2086 # the lists are space-separated numbers
base=$(median ${LOOPS[unwatched]})
printf '%-40s %10s %8s %s\n' "variant" "loop s" "ratio" "goal"
for v in "${VARIANTS[@]}"; do
  # shellcheck disable=SC2086
  m=$(median ${LOOPS[$v]})
  rt=$(ratio "$m" "$base")
  goal=""
  [[ $v == syscalls || $v == sampled ]] && goal="≤ 1.30x: $(verdict "$rt" 1.30)"
  printf '%-40s %10s %8s %s\n' "$v (cargo-panic run ${FLAGS[$v]})" "$m" "$rt" "$goal"
done
echo "per call: $(awk -v s="$(median ${LOOPS[syscalls]})" -v u="$base" -v n="$N" 'BEGIN{printf "%.0f ns unwatched, %.0f ns with the syscall path", u/n*1e9, s/n*1e9}')"
sampled=$(for r in $(seq 0 $((RUNS - 1))); do
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["kernel"].get("syscall_sampling") or {}; print(s.get("attached_ns",0)/max(s.get("elapsed_ns",1),1))' "$OUT/p-sampled-$r.json"
done | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
echo "sampled: the path was attached $(awk -v f="$sampled" 'BEGIN{printf "%.1f%%", f*100}') of the run (median); its profile holds the calls seen then"
