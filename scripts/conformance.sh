#!/usr/bin/env bash
# conformance.sh -- run the public SOM TestSuite with Hydra.
#
#   scripts/conformance.sh SOM_DIR [TestHarness arguments...]
#
# SOM_DIR is a checkout of the SOM-st/SOM repository that you provide (its TestSuite/ folder is
# used; nothing is fetched). Extra arguments go to TestHarness, e.g. a single suite name
# (`Integer`) or --fail-on-optionals. Runs build/host/hydra (scripts/setup.sh builds it), or the
# binary named by HYDRA.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ $# -lt 1 ] || [ ! -f "$1/TestSuite/TestHarness.som" ]; then
    echo "usage: scripts/conformance.sh SOM_DIR [TestHarness arguments...]" >&2
    echo "       (SOM_DIR: a SOM-st/SOM checkout with TestSuite/TestHarness.som)" >&2
    exit 2
fi
som=$(cd "$1" && pwd); shift
hydra=${HYDRA:-$root/build/host/hydra}
[[ $hydra == /* ]] || hydra=$PWD/$hydra
if [ ! -x "$hydra" ]; then
    echo "conformance: $hydra not found; run scripts/setup.sh first" >&2
    exit 2
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
cd "$root"
"$hydra" run --cp "images/core:$som/TestSuite" TestHarness "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

total=$(sed -n 's/^Total number of tests: *\([0-9]*\).*/\1/p' "$log" | tail -1)
ok=$(sed -n 's/^Number of successful tests: *\([0-9]*\).*/\1/p' "$log" | tail -1)
echo
if [ "$rc" -eq 0 ]; then
    echo "conformance: PASS (exit status 0${total:+, $ok of $total tests successful})"
else
    echo "conformance: FAIL (exit status $rc${total:+, $ok of $total tests successful})"
fi
exit "$rc"
