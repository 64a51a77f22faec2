#!/usr/bin/env bash
# setup.sh -- install what Hydra needs, build it, and run the demo.
#
#   scripts/setup.sh            install missing Debian packages, build build/ (Release), run the
#                               chat demo (interactive on a terminal, bots only otherwise)
#   scripts/setup.sh --no-demo  install and build only (what CI uses)
#
# Packages already installed are left alone; apt-get runs only when something is missing, through
# sudo when not root.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

demo=1
for arg in "$@"; do
    case $arg in
    --no-demo) demo=0 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

# Build: compiler, CMake, cmocka. Later parts: libffi (FFI), nng (channels, nngcat), spin (the
# ownership model), python3-msgpack (checks our MessagePack against a standard implementation).
packages=(libffi-dev libnng-dev nng-utils libcmocka-dev cmake gcc clang pkg-config spin python3-msgpack)

installed() { dpkg -s "$1" >/dev/null 2>&1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    echo "setup: installing $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi

# clang's sanitizer and libFuzzer runtimes come in a versioned package (libclang-rt-N-dev), which
# the clang package does not always pull in.
if command -v clang >/dev/null; then
    major=$(clang -dumpversion | cut -d. -f1)
    rt="libclang-rt-$major-dev"
    if ! installed "$rt" && apt-cache show "$rt" >/dev/null 2>&1; then apt_install "$rt"; fi
fi

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$jobs"

if [ "$demo" -eq 1 ]; then
    # The chat between VMs: a room, two bots and a console for you, each a VM of this one
    # process, talking through nng channels. Without a terminal on standard input the bots
    # talk among themselves for a few rounds instead.
    echo
    if [ -t 0 ]; then
        echo "setup: running the demo: build/host/hydra run --no-prefix build/images/chat.image"
        exec build/host/hydra run --no-prefix build/images/chat.image
    else
        echo "setup: running the demo: build/host/hydra run --no-prefix build/images/chat.image --bots 3 --rounds 3 --port 0"
        exec build/host/hydra run --no-prefix build/images/chat.image --bots 3 --rounds 3 --port 0
    fi
fi
