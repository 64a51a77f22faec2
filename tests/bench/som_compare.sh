#!/usr/bin/env bash
# som_compare.sh -- time Hydra against SOM++ on the SOM benchmarks, in one script run.
#
#   tests/bench/som_compare.sh SOM_DIR SOMPP_BINARY [ITER]
#
# SOM_DIR is a SOM-st/SOM checkout and SOMPP_BINARY a SOM++ executable, both provided by you:
# this script fetches and builds nothing. Every benchmark that Examples/Benchmarks/All.som runs
# is run through BenchmarkHarness with ITER iterations (default 5) and the same inner iteration
# counts for both VMs, alternating VMs benchmark by benchmark. SOM++ is called the usual way
#   SOMPP_BINARY -cp Smalltalk:... Examples/Benchmarks/BenchmarkHarness.som NAME ITER INNER
# with SOM_DIR/Smalltalk as its core library (SOMPP_CORE overrides it), and Hydra as
#   build/host/hydra run --cp images/core:Examples/Benchmarks:... BenchmarkHarness NAME ITER INNER
# (HYDRA overrides the binary). The benchmarks check their own results; a run that fails or
# reports fewer than ITER runtimes counts as a failure. Prints the median runtime per benchmark
# for each VM, the ratio SOM++/Hydra (above 1: Hydra is faster) and the geometric mean.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [ $# -lt 2 ] || [ ! -f "$1/Examples/Benchmarks/All.som" ] || [ ! -x "$2" ]; then
    echo "usage: tests/bench/som_compare.sh SOM_DIR SOMPP_BINARY [ITER]" >&2
    exit 2
fi
som=$(cd "$1" && pwd)
sompp=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
iter=${3:-5}
hydra=${HYDRA:-$root/build/host/hydra}
[[ $hydra == /* ]] || hydra=$PWD/$hydra
core=$root/images/core
sompp_core=${SOMPP_CORE:-Smalltalk}
if [ ! -x "$hydra" ]; then
    echo "som_compare: $hydra not found; run scripts/setup.sh first" >&2
    exit 2
fi

B=Examples/Benchmarks
macro="$B/Richards:$B/DeltaBlue:$B/NBody:$B/Json:$B/GraphSearch"
micro="$B/LanguageFeatures:$B/TestSuite"

# NAME INNER GROUP: the benchmarks of All.som with the inner iteration counts used for SOM++
# (All.som's Json is timed as JsonSmall, its harness entry point).
table="Richards 1 macro
DeltaBlue 500 macro
NBody 5000 macro
JsonSmall 10 macro
GraphSearch 7 macro
PageRank 150 macro
Fannkuch 7 micro
Fibonacci 3 micro
Dispatch 20 micro
Bounce 10 micro
Loop 50 micro
Permute 3 micro
Queens 10 micro
List 2 micro
Recurse 3 micro
Storage 8 micro
Sieve 4 micro
BubbleSort 30 micro
QuickSort 12 micro
Sum 20 micro
Towers 2 micro
TreeSort 10 micro
IntegerLoop 10 micro
FieldLoop 5 micro
WhileLoop 100 micro
Mandelbrot 100 micro"

# Benchmarks All.som names that the table does not time.
for name in $(grep -o '#(#[A-Za-z]*' "$som/$B/All.som" | sed 's/#(#//'); do
    [ "$name" = Json ] && name=JsonSmall
    [ "$name" = Test ] && continue   # the TestSuite, not a benchmark: scripts/conformance.sh
    grep -q "^$name " <<<"$table" || echo "som_compare: note: All.som runs $name, not timed here" >&2
done

# median_us OUTPUT: the median of the "runtime: NNNus" lines, or nothing when fewer than ITER.
median_us() {
    grep -o 'runtime: [0-9]*us' <<<"$1" | grep -o '[0-9]*' | sort -n |
        awk -v want="$iter" '{a[NR]=$1} END{if (NR >= want && NR) print a[int((NR+1)/2)]}'
}

cd "$som"
printf '%-12s %6s %14s %14s %12s\n' benchmark inner 'SOM++ (us)' 'Hydra (us)' 'SOM++/Hydra'
ratios=()
failures=0
slower=0
while read -r name inner group; do
    cp=${!group}
    out=$(timeout 300 "$sompp" -cp "$sompp_core:$cp" "$B/BenchmarkHarness.som" "$name" "$iter" "$inner" </dev/null 2>&1)
    s_us=$(median_us "$out")

    out=$(timeout 300 "$hydra" run --cp "$core:$B:$cp" BenchmarkHarness "$name" "$iter" "$inner" </dev/null 2>&1)
    rc=$?
    h_us=$(median_us "$out")
    if [ "$rc" -ne 0 ] || [ -z "$h_us" ]; then
        h_us=""
        failures=$((failures + 1))
        echo "som_compare: Hydra failed on $name (exit status $rc):" >&2
        tail -n 15 <<<"$out" | sed 's/^/    /' >&2
    fi

    ratio=""
    if [ -n "$s_us" ] && [ -n "$h_us" ] && [ "$h_us" -gt 0 ]; then
        ratio=$(awk -v s="$s_us" -v h="$h_us" 'BEGIN{printf "%.2f", s / h}')
        ratios+=("$ratio")
        awk -v r="$ratio" 'BEGIN{exit !(r < 1)}' && slower=$((slower + 1))
    fi
    printf '%-12s %6s %14s %14s %12s\n' "$name" "$inner" "${s_us:-FAIL}" "${h_us:-FAIL}" "${ratio:--}"
done <<<"$table"

echo
if [ ${#ratios[@]} -gt 0 ]; then
    geo=$(printf '%s\n' "${ratios[@]}" | awk '{s += log($1)} END{printf "%.2f", exp(s / NR)}')
    echo "geometric mean SOM++/Hydra over ${#ratios[@]} benchmarks: $geo"
    echo "benchmarks where Hydra is slower than SOM++: $slower"
fi
echo "benchmarks where Hydra failed: $failures"
[ "$failures" -eq 0 ]
