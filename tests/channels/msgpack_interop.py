#!/usr/bin/env python3
"""Hydra's MessagePack against Python's msgpack (Debian's python3-msgpack).

    msgpack_interop.py HYDRA CLASSPATH

Hydra writes MessagePackSamples sample (tests/channels/MessagePackSamples.som); msgpack must
decode it to EXPECTED below, value by value. Then msgpack encodes EXPECTED and Hydra must decode
it to its sample. Exits 0 when both directions agree, 1 otherwise.
"""
import os
import subprocess
import sys
import tempfile

import msgpack
from msgpack import ExtType


def big(n):
    """Hydra's extension type 1: a sign byte, then the magnitude big-endian."""
    m = abs(n)
    return ExtType(1, bytes([1 if n < 0 else 0]) + m.to_bytes((m.bit_length() + 7) // 8, "big"))


EXPECTED = [
    None, True, False,
    0, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296,
    18446744073709551615, -1, -32, -33, -128, -129, -32768, -32769,
    -2147483648, -2147483649, -9223372036854775808,
    big(2 ** 64), big(2 ** 100), big(-(2 ** 100)), big(-(2 ** 64)),
    1.5, -0.25, 0.0, 1.0e100,
    "", "hello", "a string of more than thirty-one bytes", "abcdefghij" * 30,
    ExtType(2, b"sym"), ExtType(2, b"with:with:"),
    b"", bytes([0, 1, 255]),
    [], [1, [2, [3]]],
    {"a": 1, 2: [3, 4], "nested": {"x": 1.5}},
]


def same(a, b):
    """Equal and of the same type (so that 1 and 1.0, or True and 1, differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a.keys()) == list(b.keys()) and all(same(a[k], b[k]) for k in a)
    return a == b


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    hydra, classpath = sys.argv[1], sys.argv[2]
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        written = os.path.join(tmp, "hydra.msgpack")
        subprocess.run([hydra, "run", "--cp", classpath, "MsgpackInterop", "write", written], check=True)
        with open(written, "rb") as f:
            decoded = msgpack.unpackb(f.read(), raw=False, strict_map_key=False)
        if len(decoded) != len(EXPECTED):
            print(f"msgpack decoded {len(decoded)} values, expected {len(EXPECTED)}")
            failures += 1
        for i, (want, got) in enumerate(zip(EXPECTED, decoded), 1):
            if not same(want, got):
                print(f"value {i}: msgpack decoded {got!r}, expected {want!r}")
                failures += 1
        if failures == 0:
            print(f"msgpack decoded the {len(decoded)} values Hydra wrote")

        packed = os.path.join(tmp, "python.msgpack")
        with open(packed, "wb") as f:
            f.write(msgpack.packb(EXPECTED, use_bin_type=True))
        r = subprocess.run([hydra, "run", "--cp", classpath, "MsgpackInterop", "read", packed])
        if r.returncode != 0:
            print("Hydra did not decode what msgpack wrote to its sample")
            failures += 1
    print("msgpack interop: " + ("PASS" if failures == 0 else "FAIL"))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
