# Helpers shared by the bench scripts (sourced, not run). The caller sets
# BENCH_NAME (the tag in progress lines) and BENCH_START=$EPOCHREALTIME.

# A progress line on stderr: "[<name> <seconds since start>s] message".
note() { printf '[%s %5.0fs] %s\n' "${BENCH_NAME:-bench}" "$(awk -v a="$BENCH_START" -v b="$EPOCHREALTIME" 'BEGIN{print b-a}')" "$*" >&2; }

# Seconds elapsed since $1 (an $EPOCHREALTIME value).
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.3f", b-a}'; }

# Median of the arguments (numbers); "n/a" when there are none. MEDIAN_FMT
# is the printf format (default three decimals).
median() {
  (($#)) || { echo n/a; return; }
  printf '%s\n' "$@" | sort -g | awk -v fmt="${MEDIAN_FMT:-%.3f}" \
    '{v[NR]=$1} END{ if (NR%2) printf fmt, v[(NR+1)/2]; else printf fmt, (v[NR/2]+v[NR/2+1])/2 }'
}

# "a/b" as "1.23x", or n/a when either is not a number (or b is 0).
ratio() {
  [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]] || { echo n/a; return; }
  awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0==0) print "n/a"; else printf "%.2fx", a/b }'
}

# "met" when the ratio $1 ("1.23x") is at most the goal $2, else "MISSED".
verdict() {
  local v=${1%x}
  [[ $v =~ ^[0-9.]+$ ]] || { echo n/a; return; }
  awk -v v="$v" -v g="$2" 'BEGIN{ print (v <= g) ? "met" : "MISSED" }'
}

# Runs "$@" with its output in the log $1; on failure says so with the log's
# last lines and returns 1.
logged() {
  local log=$1; shift
  if "$@" >"$log" 2>&1; then return 0; fi
  echo "bench: command failed: $* (log: $log); last lines:" >&2
  tail -n 25 "$log" | sed 's/^/    /' >&2
  return 1
}

# One measured run of "$@", tagged $1 (the command follows the tag): stdout
# and stderr go to $OUT/stdout-<tag>.txt and $OUT/stderr-<tag>.txt, and it
# prints "wall_s cpu_s peak_kib": the wall time from the shell's clock
# (microseconds; /usr/bin/time only resolves 10 ms), user+sys CPU time and
# peak RSS from /usr/bin/time. The status is the command's (the figures are
# printed either way).
measure() {
  local tag=$1 tf=$OUT/time-$1.txt t0 wall rc=0 u s m
  shift
  t0=$EPOCHREALTIME
  /usr/bin/time -f '%U %S %M' -o "$tf" "$@" >"$OUT/stdout-$tag.txt" 2>"$OUT/stderr-$tag.txt" || rc=$?
  wall=$(since "$t0")
  # After a failure, time's file starts with a "Command exited ..." line.
  read -r u s m < <(tail -n 1 "$tf")
  echo "$wall $(awk -v u="$u" -v s="$s" 'BEGIN{print u+s}') $m"
  return $rc
}

# Table rows.
row() { printf '%-66s %10s %10s %8s %8s %s\n' "$@"; }
hr() { printf '%s\n' "------------------------------------------------------------------------------------------------------------------"; }

# Sets MACHINE ("nproc | cpu | kernel | <tool> | mem") and LOAD_START, and
# prints both. $1: the tool version that matters to the script.
machine_line() {
  local cpu
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
  MACHINE="nproc $(nproc) | cpu ${cpu:-unknown} | kernel $(uname -r) | $1 | mem $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "machine: $MACHINE"
  echo "load average at start: $LOAD_START"
}

# Builds cargo-panic in release, copies both binaries into $1, and builds the
# clang plugin into $CARGO_PANIC_HOME. Logs go to $LOG. Sets PLUGIN_S (seconds
# the plugin took).
build_cargo_panic() {
  note "building cargo-panic (release)"
  logged "$LOG/cargo-panic.log" cargo build --release --locked -p cargo-panic
  cp target/release/cargo-panic target/release/cargo-panic-link "$1/"
  note "building the clang plugin into a fresh home"
  local t0=$EPOCHREALTIME
  logged "$LOG/plugin.log" "$1/cargo-panic" plugin-path
  PLUGIN_S=$(since "$t0")
}

# The start the benches of a C example share, after sourcing this file from
# the repository root: system packages, a clean environment, a fresh scratch
# directory bench/.work/$1 (W, with LOG, BIN and OUT in it, and cargo-panic's
# home), the machine line naming `$2 --version`, cargo-panic and its plugin,
# and a copy of examples/$3 built with `cargo panic cc $4` (EXAMPLE_EXE: its
# executable, named as the example).
bench_setup() {
  bash scripts/install-deps.sh
  unset CC CXX CFLAGS CXXFLAGS LDFLAGS CARGO_TARGET_DIR
  export CARGO_TERM_COLOR=never LC_ALL=C
  W=$ROOT/bench/.work/$1
  LOG=$W/logs
  BIN=$W/bin
  OUT=$W/out
  rm -rf "$W"
  mkdir -p "$LOG" "$BIN" "$OUT"
  export CARGO_PANIC_HOME=$W/home
  machine_line "$("$2" --version | head -n 1)"
  build_cargo_panic "$BIN"
  note "building examples/$3 ($4)"
  cp -r "examples/$3" "$W/$3"
  # shellcheck disable=SC2086 # $4 is a list of cargo panic cc flags
  (cd "$W/$3" && logged "$LOG/$3.log" "$BIN/cargo-panic" cc $4 -- make)
  EXAMPLE_EXE=$W/$3/$3
}

# The start every kernel-side bench shares: bench_setup with examples/c-split
# built with `cargo panic cc $2` (C_SPLIT: the executable).
kernel_bench_setup() {
  bench_setup "$1" clang-19 c-split "$2"
  C_SPLIT=$EXAMPLE_EXE
}
