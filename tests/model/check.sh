#!/usr/bin/env bash
# check.sh -- verify the VM-ownership model (tests/model/ownership.pml) with spin.
#
# For the protocol as specified: the safety search (never two owners, no invalid end state), the
# non-progress search under weak fairness (no deadlock while the heartbeat ticks) and the LTL
# properties under weak fairness (no lost wake-up, every returning callout eventually owns).
# Then each deliberately broken variant must be refuted by spin: that shows the model can fail.
# Exits non-zero, with a message, if any check fails or if spin or a C compiler is missing.
#
# Usage: bash tests/model/check.sh [-k] [-r ROUNDS]
#   -k         keep the work directory (verifiers, outputs, trails) and print its path
#   -r ROUNDS  callouts made by each callout thread (default 2)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
model=$here/ownership.pml
keep=0
rounds=2
while (($#)); do
    case $1 in
        -k) keep=1 ;;
        -r) rounds=${2:-}; shift ;;
        *) echo "usage: check.sh [-k] [-r ROUNDS]" >&2; exit 2 ;;
    esac
    shift
done
[[ $rounds =~ ^[1-9]$ ]] || { echo "check.sh: ROUNDS must be 1..9" >&2; exit 2; }

fail() {
    echo "model check FAILED: $*" >&2
    ((keep)) || echo "(run 'bash tests/model/check.sh -k' to keep the verifiers and the trail;" \
        "replay it with 'spin -t -p [-DVARIANT] ownership.pml' in the verifier's directory)" >&2
    exit 1
}

command -v spin >/dev/null 2>&1 || fail "spin is not installed (Debian package 'spin'; scripts/setup.sh installs it)"
cc=${CC:-gcc}
command -v "$cc" >/dev/null 2>&1 || fail "C compiler '$cc' not found (gcc is needed to build spin's verifier)"

work=$(mktemp -d "${TMPDIR:-/tmp}/hydra-model.XXXXXX")
if ((keep)); then echo "work directory: $work"; else trap 'rm -rf "$work"' EXIT; fi

# gen DIR [SPIN-DEFINES...]: generate pan.c for the model into DIR.
gen() {
    local dir=$1; shift
    mkdir -p "$dir"
    cp "$model" "$dir/ownership.pml"
    (cd "$dir" && spin -a -DROUNDS="$rounds" "$@" ownership.pml >spin.log 2>&1) || { cat "$dir/spin.log" >&2; fail "spin -a $* failed"; }
}

# build DIR NAME [CC-OPTIONS...]: compile DIR/pan.c into DIR/NAME.
build() {
    local dir=$1 name=$2; shift 2
    "$cc" -w "$@" -o "$dir/$name" "$dir/pan.c" 2>"$dir/$name.cc.log" \
        || { cat "$dir/$name.cc.log" >&2; fail "compiling the verifier $name failed"; }
}

# outfile DIR NAME LABEL: where the run LABEL of verifier DIR/NAME writes its output.
outfile() { echo "$1/$2.${3//[^a-z_]/_}.out"; }

# search DIR NAME LABEL [PAN-OPTIONS...]: run a verifier, its output into its outfile.
search() {
    local dir=$1 name=$2 label=$3; shift 3
    local o
    o=$(outfile "$dir" "$name" "$label")
    (cd "$dir" && "./$name" "$@" >"$o" 2>&1) || true
}

# result DIR NAME LABEL: print a line for a finished search; sets $errors, $states and $out.
result() {
    local dir=$1 name=$2 label=$3
    out=$(outfile "$dir" "$name" "$label")
    errors=$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' "$out" | tail -1)
    states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$out" | tail -1)
    [[ -n $errors ]] || { cat "$out" >&2; fail "$label: the verifier did not finish"; }
    if grep -q 'search not completed\|max search depth too small' "$out"; then
        cat "$out" >&2; fail "$label: the search was incomplete"
    fi
    printf '  %-28s %10s states explored, errors: %s\n' "$label" "$states" "$errors"
}

# pool CMD...: run CMD in the background, at most two at a time (CI has two cores).
pool() {
    "$@" &
    if (($(jobs -rp | wc -l) >= 2)); then wait -n || true; fi
}

# Generate and compile every verifier first, two compilers at a time (CI has two cores). The
# protocol's verifiers are optimised (their searches are the long ones); a broken variant's
# search stops at its first error, so its verifier is built without optimisation.
# Each broken variant, with the verifier that must refute it and the error it must report:
# the lost wake-ups are a thread asleep in the queue for good (an acceptance cycle of
# returning_owns); the unowned release and the two faulty claims are two owners at once (an
# assertion).
variants=(
    "BROKEN_FASTPATH ltl acceptance cycle"
    "LATE_PUBLISH ltl acceptance cycle"
    "UNOWNED_RELEASE safety assertion violated"
    "UNCHECKED_CLAIM safety assertion violated"
    "PLAIN_FINISH safety assertion violated"
)
good=$work/good
gen "$good"
gen "$good/np" -DNO_LTL
jobs_=(
    "$good safety -O1 -DSAFETY -DNOCLAIM"
    "$good ltl -O1 -DNFAIR=3"
    "$good/np np -O1 -DNP -DNFAIR=3"
)
for v in "${variants[@]}"; do
    read -r variant kind _ <<<"$v"
    gen "$work/$variant" "-D$variant"
    if [[ $kind == ltl ]]; then
        jobs_+=("$work/$variant ltl -O0 -DNFAIR=3")
    else
        jobs_+=("$work/$variant safety -O0 -DSAFETY -DNOCLAIM")
    fi
done
for j in "${jobs_[@]}"; do
    # shellcheck disable=SC2086
    pool build $j
done
wait || true
for j in "${jobs_[@]}"; do
    read -r dir name _ <<<"$j"
    [[ -x $dir/$name ]] || fail "the verifier $dir/$name was not built"
done

# Run every search, two at a time, then read the results.
pool search "$good" safety safety -m100000
pool search "$good/np" np "no deadlock (non-progress)" -l -f -m100000
pool search "$good" ltl "ltl no_lost_wakeup" -a -f -m100000 -N no_lost_wakeup
pool search "$good" ltl "ltl returning_owns" -a -f -m100000 -N returning_owns
for v in "${variants[@]}"; do
    read -r variant kind _ <<<"$v"
    if [[ $kind == ltl ]]; then
        pool search "$work/$variant" ltl "ltl returning_owns" -a -f -m100000 -N returning_owns
    else
        pool search "$work/$variant" safety safety -m100000
    fi
done
wait || true

# ---- the protocol as specified: every check must pass ----
echo "ownership model: the protocol (DESIGN.md section 4), $rounds callouts per thread"
result "$good" safety safety
((errors == 0)) || { grep -m1 'pan:1:' "$out" >&2; fail "safety: two owners at once, or a deadlock (invalid end state)"; }
result "$good/np" np "no deadlock (non-progress)"
((errors == 0)) || { grep -m1 'pan:1:' "$out" >&2; fail "a non-progress cycle: the callout threads and the worker stay stuck while the heartbeat ticks"; }
result "$good" ltl "ltl no_lost_wakeup"
((errors == 0)) || { grep -m1 'pan:1:' "$out" >&2; fail "no_lost_wakeup violated: the queue stays non-empty with the VM unowned, or a queued thread is never handed the VM"; }
result "$good" ltl "ltl returning_owns"
((errors == 0)) || { grep -m1 'pan:1:' "$out" >&2; fail "returning_owns violated: a callout thread that returned never owns the VM"; }

# ---- broken variants: spin must find the error ----
for v in "${variants[@]}"; do
    read -r variant kind expect <<<"$v"
    echo "broken variant $variant (spin must find: $expect)"
    if [[ $kind == ltl ]]; then
        result "$work/$variant" ltl "ltl returning_owns"
    else
        result "$work/$variant" safety safety
    fi
    ((errors > 0)) || fail "spin found no error in the broken variant $variant: the model cannot fail"
    grep -q "$expect" "$out" || { grep -m1 'pan:1:' "$out" >&2; fail "$variant: spin found another error than $expect"; }
    grep -m1 'pan:1:' "$out" | sed 's/^/    found: /'
done

echo "model check passed"
