#!/usr/bin/env bash
# test.sh -- build Hydra and run its whole test suite (cmocka tests and the Smalltalk suite, all
# registered with ctest).
#
#   scripts/test.sh        build build/ (Release) and run the suite there
#   scripts/test.sh --all  also run the suite again in separate build folders:
#                            build-asan      ASan + UBSan  (-DHYDRA_SANITIZER=address)
#                            build-gcstress  a collection at every allocation (-DHYDRA_GC_STRESS=ON)
#                            build-tsan      ThreadSanitizer (-DHYDRA_SANITIZER=thread)
#                          and the suite again under takeover stress (a takeover at every
#                          foreign call), alone and with GC stress
#
# Exits non-zero if any build or any test fails, after a summary of every configuration.
# HYDRA_TEST_JOBS sets the parallelism (default: the number of cores).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

all=0
for arg in "$@"; do
    case $arg in
    --all) all=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

jobs=${HYDRA_TEST_JOBS:-$(nproc 2>/dev/null || echo 2)}
summary=()
total_passed=0
total_failed=0
status=0

# can_use CC FLAGS...: CC builds and runs a trivial program with FLAGS (a sanitizer runtime that
# is missing or that refuses this kernel's memory layout shows up here, not in the middle of ctest).
can_use() {
    local cc=$1; shift
    command -v "$cc" >/dev/null || return 1
    local tmp; tmp=$(mktemp -d)
    printf '#include <pthread.h>\nstatic void *f(void *a) { return a; }\nint main(void) { pthread_t t; pthread_create(&t, 0, f, 0); return pthread_join(t, 0); }\n' >"$tmp/p.c"
    "$cc" "$@" -pthread "$tmp/p.c" -o "$tmp/p" >/dev/null 2>&1 && ${RUN_PREFIX:-} "$tmp/p" >/dev/null 2>&1
    local rc=$?
    rm -rf "$tmp"
    return $rc
}

# run_config LABEL DIR CC PREFIX [CMAKE_ARGS...]: configure and build DIR, then run ctest there.
# PREFIX is a command put before ctest (e.g. setarch for TSan), or "".
run_config() {
    local label=$1 dir=$2 cc=$3 prefix=$4; shift 4
    local start=$SECONDS
    echo
    echo "==== $label: $dir ($cc $*) ===="
    local cc_arg=()
    # The compiler can only be chosen when a build folder is first configured.
    [ -f "$dir/CMakeCache.txt" ] || cc_arg=(-DCMAKE_C_COMPILER="$cc")
    mkdir -p "$dir"
    if ! cmake -S . -B "$dir" "${cc_arg[@]}" "$@" >"$dir/configure.log" 2>&1; then
        cat "$dir/configure.log"
        summary+=("$(printf '%-12s FAILED to configure (%ds)' "$label" $((SECONDS - start)))")
        status=1
        return
    fi
    if ! cmake --build "$dir" -j"$jobs"; then
        summary+=("$(printf '%-12s FAILED to build (%ds)' "$label" $((SECONDS - start)))")
        status=1
        return
    fi
    local log="$dir/ctest-summary.log"
    $prefix ctest --test-dir "$dir" --output-on-failure --no-tests=error -j"$jobs" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    # ctest ends with "NN% tests passed, F tests failed out of T".
    local line failed=0 count=0
    line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1)
    if [ -n "$line" ]; then
        failed=$(sed -E 's/.* ([0-9]+) tests? failed out of.*/\1/' <<<"$line")
        count=$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line")
    fi
    total_passed=$((total_passed + count - failed))
    total_failed=$((total_failed + failed))
    if [ "$rc" -eq 0 ]; then
        summary+=("$(printf '%-12s ok      %d tests (%ds)' "$label" "$count" $((SECONDS - start)))")
    else
        summary+=("$(printf '%-12s FAILED  %d of %d tests failed (%ds)' "$label" "$failed" "$count" $((SECONDS - start)))")
        status=1
        [ "$count" -eq 0 ] && total_failed=$((total_failed + 1))
    fi
}

run_config release build cc "" -DCMAKE_BUILD_TYPE=Release

if [ "$all" -eq 1 ]; then
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

    # ASan+UBSan with clang (the default build uses gcc, so both compilers are exercised).
    asan_cc=""
    for cc in clang gcc; do
        if can_use "$cc" -fsanitize=address,undefined; then asan_cc=$cc; break; fi
    done
    if [ -n "$asan_cc" ]; then
        run_config asan+ubsan build-asan "$asan_cc" "" -DCMAKE_BUILD_TYPE=Release -DHYDRA_SANITIZER=address
    else
        summary+=("asan+ubsan   FAILED: no compiler with a working ASan runtime")
        status=1
    fi

    run_config gc-stress build-gcstress cc "" -DCMAKE_BUILD_TYPE=Release -DHYDRA_GC_STRESS=ON

    # Takeover stress: every foreign call hands the VM to a worker (hy_config_init reads
    # HYDRA_TAKEOVER_STRESS); once on its own, once with GC stress.
    run_config takeover build cc "env HYDRA_TAKEOVER_STRESS=1" -DCMAKE_BUILD_TYPE=Release
    run_config gc+takeover build-gcstress cc "env HYDRA_TAKEOVER_STRESS=1" -DCMAKE_BUILD_TYPE=Release -DHYDRA_GC_STRESS=ON

    # TSan refuses some kernels' address-space randomisation; without randomisation it works.
    tsan_cc="" tsan_prefix=""
    for prefix in "" "setarch $(uname -m) -R"; do
        for cc in gcc clang; do
            if RUN_PREFIX=$prefix can_use "$cc" -fsanitize=thread; then
                tsan_cc=$cc tsan_prefix=$prefix; break 2
            fi
        done
    done
    if [ -n "$tsan_cc" ]; then
        run_config tsan build-tsan "$tsan_cc" "$tsan_prefix" -DCMAKE_BUILD_TYPE=Release -DHYDRA_SANITIZER=thread
    else
        summary+=("tsan         FAILED: no compiler with a working TSan runtime")
        status=1
    fi
fi

echo
echo "==== summary ===="
for line in "${summary[@]}"; do echo "  $line"; done
echo "tests: $total_passed passed, $total_failed failed"
exit $status
