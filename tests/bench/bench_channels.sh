#!/bin/sh
# Channels against raw C nng: round-trip latency (median) and one-way throughput of pair1
# messages of 64 bytes and 4 KiB,
#   inproc: two Hydra VMs of one process (hydra run A + B)  vs  two threads of one C process;
#   tcp:    two hydra processes on 127.0.0.1                 vs  two C processes.
# Both sides use the same protocol (tests/bench/bench_channels.c, ChannelBench.som) and the
# same socket options. For each transport and size, bench_channels duel runs the C client and
# has the Hydra client run, block by block in turn (see bench_channels.c); the table shows the
# medians over the blocks of each side and the medians of the per-block ratios Hydra/C
# (latency: lower is better; throughput: higher is better).
#
# usage: tests/bench/bench_channels.sh [BUILD_DIR [BLOCKS [N [M]]]]    (from the source root)
#   a block: 100 + N round trips, then M one-way messages (see bench_channels.c for why M is
#   tens of thousands).
set -eu
build=${1:-build}
blocks=${2:-101}
n=${3:-300}
m=${4:-30000}
hydra="$build/host/hydra"
raw="$build/tests/bench_channels"
cp=images/core:channels:tests/bench
[ -x "$hydra" ] && [ -x "$raw" ] || { echo "build first: $hydra and $raw are needed" >&2; exit 2; }
out=$(mktemp -d)
pids=
trap 'if [ -n "$pids" ]; then kill $pids 2>/dev/null || :; fi; rm -rf "$out"' EXIT
# Ports below the ephemeral range (32768 and up), where outgoing connections could hold them.
port=$((10000 + $$ % 15000))

# One duel: bench_channels' line into $out/line; fails when the duel or a Hydra side fails.
measure() {   # transport size
    port=$((port + 2))
    control="ipc://$out/control-$port"
    case "$1" in
    inproc) "$hydra" run --no-prefix --cp "$cp" ChannelBench serve "inproc://bench-$port" \
                + ChannelBench client "inproc://bench-$port" "$2" "$n" "$m" "$control" & pids="$!"
            url="inproc://c-bench-$port" ;;
    tcp)    "$raw" serve "tcp://127.0.0.1:$port" & pids="$!"
            "$hydra" run --cp "$cp" ChannelBench serve "tcp://127.0.0.1:$((port + 1))" & pids="$pids $!"
            "$hydra" run --cp "$cp" ChannelBench client "tcp://127.0.0.1:$((port + 1))" "$2" "$n" "$m" "$control" &
            pids="$pids $!"
            url="tcp://127.0.0.1:$port" ;;
    esac
    "$raw" duel "$url" "$control" "$2" "$n" "$m" "$blocks" >"$out/line"
    for pid in $pids; do wait "$pid"; done
    pids=
}

printf '%-7s %6s | %10s %10s %6s | %12s %12s %6s\n' transport bytes "C µs" "Hydra µs" ratio "C msg/s" "Hydra msg/s" ratio
for transport in inproc tcp; do
    for size in 64 4096; do
        measure "$transport" "$size"
        awk -v t="$transport" -v s="$size" '/latency_ratio/ {
            printf "%-7s %6s | %10.1f %10.1f %6.2f | %12.0f %12.0f %6.2f\n", t, s, $2, $4, $6, $8, $10, $12 }' "$out/line"
    done
done
echo "(latency target: Hydra/C <= 1.2; throughput target: Hydra/C >= 0.8; $blocks blocks of N=$n, M=$m)"
