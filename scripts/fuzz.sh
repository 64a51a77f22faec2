#!/usr/bin/env bash
# fuzz.sh -- fuzz the SOM lexer, parser and compiler, or the image loader, with libFuzzer.
#
#   scripts/fuzz.sh [SECONDS] [compiler|image]   (default 600 compiler)
#
# Builds build-fuzz with clang (-DHYDRA_FUZZ=ON: coverage, ASan, UBSan) and runs one target for
# SECONDS, then prints the number of executions:
#   compiler  tests/fuzz/fuzz_compiler, seeded with the class files of images/core and tests/st
#   image     tests/fuzz/fuzz_image, seeded with build-fuzz/images/core.image (built first)
# The corpus grows in build-fuzz/corpus (compiler) or build-fuzz/corpus-image across runs; inputs
# that crash are saved in build-fuzz/artifacts/. Exits non-zero if the fuzzer found a problem.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

seconds=${1:-600}
target=${2:-compiler}
case $seconds in
''|*[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [compiler|image]" >&2; exit 2 ;;
esac
case $target in
compiler|image) ;;
*) echo "usage: scripts/fuzz.sh [SECONDS] [compiler|image]" >&2; exit 2 ;;
esac

dir=build-fuzz
cc_arg=()
[ -f "$dir/CMakeCache.txt" ] || cc_arg=(-DCMAKE_C_COMPILER=clang)
cmake -S . -B "$dir" "${cc_arg[@]}" -DCMAKE_BUILD_TYPE=Release -DHYDRA_FUZZ=ON >/dev/null
jobs=$(nproc 2>/dev/null || echo 2)
[ "$jobs" -gt 2 ] && jobs=2

# Run a fuzzer (the command after LOG and REPRO), show the end of its log and the number of
# executions, and exit with its status; REPRO says how to replay a crashing input.
run_fuzzer() {   # LOG REPRO COMMAND...
    local log=$1 repro=$2 rc execs
    shift 2
    set +e
    "$@" >"$log" 2>&1
    rc=$?
    set -e
    tail -n 25 "$log"
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    echo
    echo "fuzz: ${execs:-unknown} executions in $seconds s, exit status $rc (full log: $log)"
    [ "$rc" -eq 0 ] || echo "fuzz: FAILED; reproduce with: $repro" >&2
    exit $rc
}

if [ "$target" = image ]; then
    cmake --build "$dir" -j"$jobs" --target fuzz_image images
    seeds=$dir/seeds-image
    rm -rf "$seeds"
    mkdir -p "$seeds" "$dir/corpus-image" "$dir/artifacts"
    cp "$dir/images/core.image" "$seeds/core.image"
    echo "fuzz: image seed $(wc -c <"$seeds/core.image") bytes; running for $seconds s"
    run_fuzzer "$dir/fuzz-image.log" "$dir/tests/fuzz/fuzz_image $dir/artifacts/<file>" \
        "$dir/tests/fuzz/fuzz_image" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
        -max_len=1048576 -print_final_stats=1 -artifact_prefix="$dir/artifacts/" \
        "$dir/corpus-image" "$seeds"
fi
cmake --build "$dir" -j"$jobs" --target fuzz_compiler

# Seeds are copied at run time so the repository holds each class file once.
seeds=$dir/seeds
rm -rf "$seeds"
mkdir -p "$seeds" "$dir/corpus" "$dir/artifacts"
n=0
while IFS= read -r -d '' f; do
    cp "$f" "$seeds/$(printf '%04d' $n)-$(basename "$f")"
    n=$((n + 1))
done < <(find images/core tests/st -name '*.som' -print0 2>/dev/null)
echo "fuzz: $n seed files; running for $seconds s"

run_fuzzer "$dir/fuzz.log" \
    "HYDRA_CORE=images/core HYDRA_FUZZ_RECREATE=1 $dir/tests/fuzz/fuzz_compiler $dir/artifacts/<file>" \
    env HYDRA_CORE="$root/images/core" "$dir/tests/fuzz/fuzz_compiler" \
    -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
    -dict=tests/fuzz/som.dict -artifact_prefix="$dir/artifacts/" \
    "$dir/corpus" "$seeds"
