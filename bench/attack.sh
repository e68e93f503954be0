#!/usr/bin/env bash
# The attack engine's figures (issue 7), run from the repository root as root:
#
#   sudo bash bench/attack.sh
#
#   jitter     how late fixed-time events start, from the reports'
#              start_late_ns (60 events, 300 ms apart). Goal: p99 <= 5 ms.
#   fidelity   how fast the cpu and memory stressors reach +-5% of the level
#              asked for (every later 500 ms mean within 5%; the time printed
#              is the end of the first such window, so 0.5 s is the floor), and their steady level, side by side with stress-ng
#              given the same request (sampled every 100 ms from /proc the
#              same way for both). Goal: within 2 s.
#   overhead   cargo-panic's own CPU time over an attack with no events
#              (the engine ticking: signals, /proc, PSI, the segment), as a
#              share of one core. Goal: <= 2%.
#
# Nothing asserts on time; goals are reported as met or MISSED. Scratch
# space: bench/.work/attack (git-ignored, wiped at the start).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
[[ $(id -u) -eq 0 ]] || { echo "bench: attacks drive cgroups, hence root: sudo bash bench/attack.sh" >&2; exit 1; }

BENCH_START=$EPOCHREALTIME
BENCH_NAME="attack bench"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_setup attack stress-ng c-server "--time handle_request"
SERVER=$EXAMPLE_EXE

# --- jitter ---------------------------------------------------------------
note "jitter: 60 fixed-time events"
{
  echo "duration: 19s"
  echo "target: {ready: port, hang: never}"
  echo "tracks:"
  echo "  - axis: concurrency"
  echo "    events:"
  for i in $(seq 0 59); do
    echo "      - {id: e$i, at: $((i * 300 + 50))ms, for: 100ms, intensity: 4096, args: {via: pids}}"
  done
} >"$W/jitter.yaml"
logged "$LOG/jitter.log" "$BIN/cargo-panic" attack --quiet --timeline "$W/jitter.yaml" --out "$OUT/jitter.json" -- "$SERVER"

# --- fidelity ---------------------------------------------------------------
# Samples a process tree's CPU rate (cores) or resident memory (bytes) every
# 100 ms for $3 seconds; prints "t value" lines.
sample_tree() {
  python3 - "$1" "$2" "$3" <<'EOF'
import os, sys, time
root, what, secs = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
hz, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
def tree():
    kids = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                f = open(f"/proc/{p}/stat").read()
                kids.setdefault(int(f[f.rfind(")") + 2:].split()[1]), []).append(int(p))
            except OSError:
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop(); out.append(p); todo += kids.get(p, [])
    return out
def read():
    cpu = rss = 0
    for p in tree():
        try:
            f = open(f"/proc/{p}/stat").read().split(")")[-1].split()
            cpu += int(f[11]) + int(f[12]); rss += int(f[21]) * page
        except OSError:
            pass
    return cpu / hz, rss
t0 = time.monotonic(); last = (t0, read()[0])
while time.monotonic() - t0 < secs:
    time.sleep(0.1)
    now = time.monotonic(); cpu, rss = read()
    v = (cpu - last[1]) / (now - last[0]) if what == "cpu" else rss
    last = (now, cpu)
    print(f"{now - t0:.2f} {v}")
EOF
}

# A spin attack at $1 cores: the stressor is found as the cargo-panic
# process with `__stress spin` and sampled like stress-ng.
cpu_attack() {
  printf 'duration: 7s\ncadence: 100ms\ntarget: {hang: never}\ntracks:\n  - axis: cpu\n    events: [{id: s, at: 0s, for: 7s, intensity: %s cores}]\n' "$1" >"$W/cpu-$1.yaml"
  "$BIN/cargo-panic" attack --quiet --timeline "$W/cpu-$1.yaml" --out "$OUT/cpu-$1.json" -- sleep 30 >"$LOG/cpu-$1.log" 2>&1 &
  local pid=$! s=""
  for _ in $(seq 100); do s=$(pgrep -f "__stress spin" | head -n 1) && break; sleep 0.02; done
  sample_tree "$s" cpu 6 >"$OUT/cpu-$1-ours.txt"
  wait "$pid" || true
}
mem_attack() {
  printf 'duration: 7s\ncadence: 100ms\ntarget: {hang: never}\ntracks:\n  - axis: memory\n    events: [{id: h, at: 0s, for: 7s, intensity: %s}]\n' "$1" >"$W/mem.yaml"
  "$BIN/cargo-panic" attack --quiet --timeline "$W/mem.yaml" --out "$OUT/mem.json" -- sleep 30 >"$LOG/mem.log" 2>&1 &
  local pid=$! s=""
  for _ in $(seq 100); do s=$(pgrep -f "__stress hog" | head -n 1) && break; sleep 0.02; done
  sample_tree "$s" rss 6 >"$OUT/mem-ours.txt"
  wait "$pid" || true
}
stress_ng() {
  local tag=$1; shift
  stress-ng "$@" --timeout 7s >"$LOG/stress-ng-$tag.log" 2>&1 &
  local pid=$!
  sleep 0.05
  sample_tree "$pid" "${tag%%-*}" 6 >"$OUT/$tag-ref.txt"
  wait "$pid" || true
}
for level in 1 0.5; do
  note "fidelity: cpu $level cores, ours then stress-ng"
  cpu_attack "$level"
  stress_ng "cpu-$level" --cpu 1 --cpu-load "$(awk -v l="$level" 'BEGIN{print l*100}')"
done
note "fidelity: memory 256MiB, ours then stress-ng"
mem_attack 256MiB
stress_ng mem --vm 1 --vm-bytes 256M --vm-hang 0 --vm-keep

# --- overhead ---------------------------------------------------------------
note "overhead: a 10 s attack with no events, cadence 250ms and 100ms"
for c in 250ms 100ms; do
  printf 'duration: 10s\ncadence: %s\ntarget: {ready: port, hang: never}\n' "$c" >"$W/idle-$c.yaml"
  measure "idle-$c" "$BIN/cargo-panic" attack --quiet --timeline "$W/idle-$c.yaml" --out "$OUT/idle-$c.json" -- "$SERVER" >"$OUT/idle-$c.txt" || true
done

# --- report ---------------------------------------------------------------
python3 - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
r = json.load(open(f"{out}/jitter.json"))
late = sorted(e["start_late_ns"] / 1e6 for e in r["events"] if e.get("start_late_ns") is not None)
q = lambda v, p: v[min(len(v) - 1, int(p * len(v)))]
print(f"jitter: {len(late)} events, start late p50 {q(late, .5):.3f} ms, p99 {q(late, .99):.3f} ms, max {late[-1]:.3f} ms"
      f" (goal p99 <= 5 ms: {'met' if q(late, .99) <= 5 else 'MISSED'})")
def curve(path):
    return [tuple(map(float, l.split())) for l in open(path) if l.strip()]
def settle(c, want):
    # The first time from which every 500 ms mean (5 samples: /proc counts
    # CPU time in 10 ms ticks, so a single 100 ms sample is +-10% by itself)
    # is within +-5% of want; the time is the window's end.
    w = 5
    means = [(c[i + w - 1][0], sum(v for _, v in c[i:i + w]) / w) for i in range(len(c) - w + 1)]
    for i, (t, _) in enumerate(means):
        if all(abs(m - want) <= 0.05 * want for _, m in means[i:]):
            return t
    return None
def steady(c):
    tail = [v for t, v in c if t >= 2.0]
    return sum(tail) / len(tail) if tail else float("nan")
rows = [("cpu 1 core", "cpu-1", 1.0, "cores"), ("cpu 0.5 cores", "cpu-0.5", 0.5, "cores"), ("memory 256MiB", "mem", 256 * 2**20, "bytes")]
print(f"{'fidelity':<16} {'who':<10} {'settled within 5% at':>22} {'steady mean':>14} {'steady/asked':>13}")
for name, tag, want, unit in rows:
    for who, f in (("ours", f"{out}/{tag}-ours.txt"), ("stress-ng", f"{out}/{tag}-ref.txt")):
        c = curve(f); s = settle(c, want); m = steady(c)
        scale = 2**20 if unit == "bytes" else 1
        print(f"{name:<16} {who:<10} {('%.1f s' % s) if s is not None else 'never':>22} {m/scale:>12.3f}{'Mi' if unit=='bytes' else '  '} {m/want:>12.3f}"
              + (f"  (goal <= 2 s: {'met' if s is not None and s <= 2 else 'MISSED'})" if who == "ours" else ""))
for c in ("250ms", "100ms"):
    wall, cpu, _ = open(f"{out}/idle-{c}.txt").read().split()
    share = float(cpu) / float(wall) * 100
    print(f"overhead: cadence {c}: {float(cpu):.2f} s CPU over {float(wall):.1f} s = {share:.2f}% of a core (goal <= 2%: {'met' if share <= 2 else 'MISSED'})")
EOF
note "done"
