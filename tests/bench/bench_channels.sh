#!/bin/sh
# Channels against raw C nng: round-trip latency (median) and one-way throughput of pair1
# messages of 64 bytes and 4 KiB,
#   inproc: two Hydra VMs of one process (hydra run A + B)  vs  two threads of one C process;
#   tcp:    two hydra processes on 127.0.0.1                 vs  two C processes.
# Both sides use the same protocol (tests/bench/bench_channels.c, ChannelBench.som) and the
# same socket options. Rounds interleave Hydra and C; the table shows medians over the rounds
# and the ratios Hydra/C (latency: lower is better; throughput: higher is better).
#
# usage: tests/bench/bench_channels.sh [BUILD_DIR [ROUNDS [N]]]    (from the source root)
#   N round trips per latency run (after 100 of warm-up); 10 N messages per throughput run.
set -eu
build=${1:-build}
rounds=${2:-5}
n=${3:-2000}
hydra="$build/host/hydra"
raw="$build/tests/bench_channels"
cp=images/core:channels:tests/bench
[ -x "$hydra" ] && [ -x "$raw" ] || { echo "build first: $hydra and $raw are needed" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Ports below the ephemeral range (32768 and up), where outgoing connections could hold them.
port=$((10000 + $$ % 15000))

# One measurement: prints "LATENCY THROUGHPUT".
measure() {   # side transport size
    port=$((port + 1))
    case "$1/$2" in
    c/inproc)     line=$("$raw" both "inproc://bench-$port" "$3" "$n") ;;
    hydra/inproc) line=$("$hydra" run --no-prefix --cp "$cp" ChannelBench serve "inproc://bench-$port" \
                             + ChannelBench client "inproc://bench-$port" "$3" "$n") ;;
    c/tcp)        "$raw" serve "tcp://127.0.0.1:$port" & server=$!
                  line=$("$raw" client "tcp://127.0.0.1:$port" "$3" "$n"); wait "$server" ;;
    hydra/tcp)    "$hydra" run --cp "$cp" ChannelBench serve "tcp://127.0.0.1:$port" & server=$!
                  line=$("$hydra" run --cp "$cp" ChannelBench client "tcp://127.0.0.1:$port" "$3" "$n"); wait "$server" ;;
    esac
    echo "$line" | awk '/latency_median_us/ { print $2, $4 }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for transport in inproc tcp; do
    for size in 64 4096; do
        for round in $(seq "$rounds"); do
            for side in hydra c; do
                measure "$side" "$transport" "$size" >>"$out/$side-$transport-$size"
            done
        done
    done
done

printf '%-7s %6s | %10s %10s %6s | %12s %12s %6s\n' transport bytes "C µs" "Hydra µs" ratio "C msg/s" "Hydra msg/s" ratio
for transport in inproc tcp; do
    for size in 64 4096; do
        cl=$(cut -d' ' -f1 "$out/c-$transport-$size" | median)
        hl=$(cut -d' ' -f1 "$out/hydra-$transport-$size" | median)
        ct=$(cut -d' ' -f2 "$out/c-$transport-$size" | median)
        ht=$(cut -d' ' -f2 "$out/hydra-$transport-$size" | median)
        printf '%-7s %6s | %10.1f %10.1f %6.2f | %12.0f %12.0f %6.2f\n' "$transport" "$size" \
            "$cl" "$hl" "$(echo "$hl $cl" | awk '{ print $1 / $2 }')" \
            "$ct" "$ht" "$(echo "$ht $ct" | awk '{ print $1 / $2 }')"
    done
done
echo "(latency target: Hydra/C <= 1.2; throughput target: Hydra/C >= 0.8; $rounds rounds, N=$n)"
