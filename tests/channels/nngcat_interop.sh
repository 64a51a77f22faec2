#!/bin/sh
# Hydra channels and nngcat (Debian's nng-utils) exchange raw text:
#   nngcat --sub --dial receives what a Hydra pub channel sends, and
#   nngcat --push --dial --data reaches a Hydra pull channel.
# usage: nngcat_interop.sh HYDRA CLASSPATH
set -u
hydra=$1
classpath=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
pub="ipc://$dir/pub"
pull="ipc://$dir/pull"

"$hydra" run --cp "$classpath" NngcatPeer "$pub" "$pull" >"$dir/hydra.out" 2>&1 &
hydra_pid=$!

# The Hydra side may not listen yet: retry the dial a few times.
got=""
for attempt in 1 2 3 4 5 6 7 8 9 10; do
    got=$(nngcat --sub --dial "$pub" --subscribe "" --ascii --count 1 --recv-timeout 10 2>/dev/null) && break
    sleep 0.2
done
case "$got" in
    "hello from hydra "*) echo "nngcat --sub received: $got" ;;
    *) echo "nngcat --sub did not receive Hydra's text (got '$got')"; kill "$hydra_pid" 2>/dev/null; exit 1 ;;
esac

nngcat --push --dial "$pull" --data "hi from nngcat" || { echo "nngcat --push failed"; kill "$hydra_pid"; exit 1; }

wait "$hydra_pid"
status=$?
cat "$dir/hydra.out"
if [ "$status" -ne 0 ] || ! grep -qx "pull received: hi from nngcat" "$dir/hydra.out"; then
    echo "nngcat interop: FAIL"
    exit 1
fi
echo "nngcat interop: PASS"
