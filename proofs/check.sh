#!/usr/bin/env bash
# Checks the Coq proofs: every .v file in proofs/ (or in the directory given as
# the first argument) must
#   1. contain none of the commands that assume instead of prove (Admitted,
#      admit, Axiom, Parameter, Conjecture, section hypotheses...), comments
#      included;
#   2. compile with coqc, in a temporary directory (nothing is written next to
#      the sources);
#   3. depend, for every Theorem/Lemma/Corollary/Proposition/Fact/Remark/Example
#      it states, on no axiom but the two the standard library's real numbers
#      are built on (`Print Assumptions`).
# Exit status 0 when all hold, 1 otherwise. Needs coqc (Coq 8.16: `apt-get
# install coq`, or `bash scripts/install-deps.sh`, which installs it).
set -euo pipefail

# The axioms the standard library's construction of R (Coq.Reals) rests on:
# every lemma about R there, down to Rplus_comm, depends on exactly these two.
# Nothing else is allowed, in particular no classical logic beyond them.
allowed_axioms=(
  ClassicalDedekindReals.sig_forall_dec
  FunctionalExtensionality.functional_extensionality_dep
)

# Words that end or bypass a proof, or add an assumption, as whole words
# (case-sensitive, so prose such as "hypothesis" is fine).
forbidden_words='Admitted|Admit|admit|give_up|Axiom|Axioms|Parameter|Parameters|Conjecture|Hypothesis|Hypotheses|Variable|Variables|Context|bypass_check'
forbidden_phrases='Unset[[:space:]]+(Guard|Positivity|Universe)[[:space:]]+Checking|Declare[[:space:]]+ML[[:space:]]+Module'

die() {
  echo "proofs/check.sh: $*" >&2
  exit 1
}

dir="${1:-$(dirname "${BASH_SOURCE[0]}")}"
[ -d "$dir" ] || die "no such directory: $dir"
dir="$(cd "$dir" && pwd)"

shopt -s nullglob
files=("$dir"/*.v)
((${#files[@]})) || die "no .v files in $dir"

# 1. Nothing assumed.
bad=0
for f in "${files[@]}"; do
  if grep -HnwE "$forbidden_words" "$f" >&2 || grep -HnE "$forbidden_phrases" "$f" >&2; then
    echo "proofs/check.sh: $(basename "$f") uses a forbidden command (above): prove it instead" >&2
    bad=1
  fi
done
((bad == 0)) || exit 1

# 2. Everything compiles.
if ! command -v coqc >/dev/null 2>&1; then
  die "coqc not found: install Coq 8.16 with \`apt-get install coq\` (or \`bash scripts/install-deps.sh\`, which installs it)"
fi
command -v coqdep >/dev/null 2>&1 || die "coqdep not found (it ships with coqc): reinstall Coq with \`apt-get install coq\`"
echo "proofs/check.sh: $(coqc --version | head -n 1)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp "${files[@]}" "$tmp"/
cd "$tmp"

mapfile -t sorted < <(coqdep -sort -Q . Proofs ./*.v | tr ' ' '\n' | sed -e '/^$/d' -e 's|^\./||')
((${#sorted[@]} == ${#files[@]})) || die "coqdep -sort listed ${#sorted[@]} of ${#files[@]} files: ${sorted[*]}"
for f in "${sorted[@]}"; do
  start=$(date +%s%N)
  coqc -Q . Proofs "$f" || die "$f does not compile (coqc output above)"
  ms=$((($(date +%s%N) - start) / 1000000))
  printf 'proofs/check.sh: %s compiles (%d.%03ds)\n' "$f" $((ms / 1000)) $((ms % 1000))
done

# 3. No assumption beyond the allowed axioms, for every stated result.
modules=()
theorems=()
for f in "${sorted[@]}"; do
  m="${f%.v}"
  modules+=("Proofs.$m")
  while read -r name; do
    theorems+=("Proofs.$m.$name")
  done < <(sed -nE "s/^[[:space:]]*((Local|Global)[[:space:]]+)?(Theorem|Lemma|Corollary|Proposition|Fact|Remark|Example)[[:space:]]+([A-Za-z_][A-Za-z0-9_']*).*/\4/p" "$f")
done
((${#theorems[@]})) || die "no Theorem/Lemma/... found in ${sorted[*]}"

# Print Assumptions on one term that mentions every result reports the union
# of their assumptions in a second (one Print Assumptions per result takes
# about a second each); on failure each result is reported on its own.
{
  echo "Require ${modules[*]}."
  printf 'Definition zz_all_results := (tt'
  printf ', @%s' "${theorems[@]}"
  echo ")."
  echo "Print Assumptions zz_all_results."
} >zz_assumptions.v
out="$(coqc -Q . Proofs zz_assumptions.v 2>&1)" || {
  echo "$out" >&2
  die "Print Assumptions failed (output above)"
}

# The report is "Closed under the global context", or "Axioms:" then one
# axiom per line, its type following on indented lines.
check_report() {
  awk -v allowed="${allowed_axioms[*]}" '
    BEGIN { n = split(allowed, a, " "); for (i = 1; i <= n; i++) ok[a[i]] = 1; head = 0; bad = 0 }
    /^Closed under the global context$/ || /^Axioms:$/ { head++; next }
    /^[[:space:]]/ || /^$/ { next }
    head == 1 && ($1 in ok) { used[$1] = 1; next }
    { print "not allowed: " $0; bad = 1 }
    END {
      if (head != 1) { print "expected one report, got " head; bad = 1 }
      for (u in used) print "used " u
      exit bad
    }'
}

if ! report="$(check_report <<<"$out")"; then
  echo "$out" >&2
  echo "$report" | grep -v '^used ' >&2
  echo "proofs/check.sh: assumptions of each result:" >&2
  for t in "${theorems[@]}"; do
    printf 'Require %s.\nPrint Assumptions %s.\n' "${modules[*]}" "$t" >zz_one.v
    one="$(coqc -Q . Proofs zz_one.v 2>&1 || true)"
    check_report <<<"$one" >/dev/null || echo "  $t: $(grep -v '^[[:space:]]' <<<"$one" | grep -v '^Axioms:$' | tr '\n' ' ')" >&2
  done
  die "a result depends on an axiom outside the allowed list (${allowed_axioms[*]})"
fi
used="$(sed -n 's/^used //p' <<<"$report" | sort | paste -sd ' ' -)"
echo "proofs/check.sh: ${#theorems[@]} results checked; axioms used: ${used:-none}"
