#!/usr/bin/env bash
# check.sh -- verify the VM-ownership model (tests/model/ownership.pml) with spin.
#
# For the protocol as specified: the safety search (never two owners, no invalid end state), the
# non-progress search under weak fairness (no deadlock while the heartbeat ticks) and the LTL
# properties under weak fairness (no lost wake-up, every returning callout eventually owns).
# Then each deliberately broken variant must be refuted by spin: that shows the model can fail.
# Exits non-zero, with a message, if any check fails or if spin or a C compiler is missing.
#
# Usage: bash tests/model/check.sh [-k]   (-k keeps the work directory and prints its path)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
model=$here/ownership.pml
keep=0
[[ ${1:-} == -k ]] && keep=1

fail() { echo "model check FAILED: $*" >&2; exit 1; }

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
    (cd "$dir" && spin -a "$@" ownership.pml >spin.log 2>&1) || { cat "$dir/spin.log" >&2; fail "spin -a $* failed"; }
}

# build DIR NAME [CC-DEFINES...]: compile DIR/pan.c into DIR/NAME.
build() {
    local dir=$1 name=$2; shift 2
    "$cc" -O1 -w "$@" -o "$dir/$name" "$dir/pan.c" 2>"$dir/$name.cc.log" \
        || { cat "$dir/$name.cc.log" >&2; fail "compiling the verifier $name failed"; }
}

# run LABEL DIR NAME [PAN-OPTIONS...]: run a verifier; sets $errors and $states and prints a line.
run() {
    local label=$1 dir=$2 name=$3; shift 3
    local out=$dir/$name.$label.out
    (cd "$dir" && "./$name" "$@" >"$out" 2>&1) || true
    errors=$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' "$out" | tail -1)
    states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$out" | tail -1)
    [[ -n $errors ]] || { cat "$out" >&2; fail "$label: the verifier did not finish"; }
    if grep -q 'search not completed\|max search depth too small' "$out"; then
        cat "$out" >&2; fail "$label: the search was incomplete"
    fi
    printf '  %-34s %12s states  errors: %s\n' "$label" "$states" "$errors"
}

# ---- the protocol as specified: every check must pass ----
good=$work/good
gen "$good"
gen "$good/np" -DNO_LTL
build "$good" safety -DSAFETY -DNOCLAIM &
build "$good" ltl -DNFAIR=3 &
build "$good/np" np -DNP -DNFAIR=3 &
wait

echo "ownership model: the protocol (DESIGN.md section 4)"
run "safety (owners, end states)" "$good" safety -m100000
((errors == 0)) || { sed -n '1,5p' "$good/safety.safety (owners, end states).out" >&2; fail "safety: never-two-owners or deadlock (invalid end state) violated"; }
run "no deadlock (non-progress, fair)" "$good/np" np -l -f -m100000
((errors == 0)) || fail "a non-progress cycle: threads stay stuck while the heartbeat ticks"
run "ltl no_lost_wakeup (fair)" "$good" ltl -a -f -m100000 -N no_lost_wakeup
((errors == 0)) || fail "no_lost_wakeup violated: a queued thread is never handed the VM"
run "ltl returning_owns (fair)" "$good" ltl -a -f -m100000 -N returning_owns
((errors == 0)) || fail "returning_owns violated: a returning callout thread never owns the VM"

# ---- broken variants: spin must find the error ----
for variant in BROKEN_FASTPATH LATE_PUBLISH; do
    dir=$work/$variant
    gen "$dir" "-D$variant"
    build "$dir" safety -DSAFETY -DNOCLAIM -D"$variant" &
    build "$dir" ltl -DNFAIR=3 -D"$variant" &
    wait
    echo "ownership model, broken variant $variant (spin must refute it)"
    found=0
    run "safety (owners, end states)" "$dir" safety -m100000
    ((errors == 0)) || found=1
    run "ltl returning_owns (fair)" "$dir" ltl -a -f -m100000 -N returning_owns
    ((errors == 0)) || found=1
    ((found)) || fail "spin found no error in the broken variant $variant: the model cannot fail"
done

echo "model check passed"
