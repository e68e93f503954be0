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

# Table rows.
row() { printf '%-66s %10s %10s %8s %8s %s\n' "$@"; }
hr() { printf '%s\n' "------------------------------------------------------------------------------------------------------------------"; }
