#!/usr/bin/env python3
"""Compares the tensors of two GGUF files: name, type, shape and bytes.

    bench/e2e/gguf_tensor_diff.py A.gguf B.gguf

Prints one line per tensor that differs and a summary; exits 1 if any does
(metadata is not compared: two tools write different keys). Standard library
only: reads the GGUF v2/v3 header and tensor table itself.
"""
import struct
import sys

# Value types of GGUF metadata: byte sizes of the fixed ones.
FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
STRING, ARRAY = 8, 9


def read_gguf(path):
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("Q")
        s = data[pos:pos + n].decode("utf-8", "replace")
        pos += n
        return s

    def skip_value(t):
        nonlocal pos
        if t in FIXED:
            pos += FIXED[t]
        elif t == STRING:
            string()
        elif t == ARRAY:
            et, n = take("I"), take("Q")
            for _ in range(n):
                skip_value(et)
        else:
            raise ValueError(f"{path}: unknown metadata type {t}")

    if data[:4] != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    pos = 4
    version = take("I")
    if version < 2:
        raise ValueError(f"{path}: GGUF v{version} is not supported")
    n_tensors, n_kv = take("Q"), take("Q")
    alignment = 32
    for _ in range(n_kv):
        key = string()
        t = take("I")
        if key == "general.alignment" and t == 4:
            alignment = take("I")
        else:
            skip_value(t)
    table = []
    for _ in range(n_tensors):
        name = string()
        dims = [take("Q") for _ in range(take("I"))]
        table.append((name, take("I"), dims, take("Q")))
    start = (pos + alignment - 1) // alignment * alignment
    offsets = sorted({o for _, _, _, o in table} | {len(data) - start})
    end_of = {o: offsets[i + 1] for i, o in enumerate(offsets[:-1])}
    # A tensor's bytes run to the next tensor's offset (padding included), so
    # compare the shorter of the two spans of equal-shaped tensors below.
    return {name: (t, dims, data[start + o:start + end_of[o]]) for name, t, dims, o in table}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = read_gguf(sys.argv[1]), read_gguf(sys.argv[2])
    differ = 0
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            print(f"{name}: only in {'the first' if name in a else 'the second'} file")
            differ += 1
            continue
        (ta, da, ba), (tb, db, bb) = a[name], b[name]
        n = min(len(ba), len(bb))
        if ta != tb or da != db:
            print(f"{name}: type {ta} shape {da} against type {tb} shape {db}")
            differ += 1
        elif ba[:n] != bb[:n]:
            diff = sum(x != y for x, y in zip(ba[:n], bb[:n]))
            print(f"{name}: {diff} of {n} bytes differ")
            differ += 1
    print(f"{len(set(a) | set(b)) - differ} tensors identical, {differ} differ")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
