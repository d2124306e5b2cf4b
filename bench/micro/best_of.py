#!/usr/bin/env python3
"""Best-of-N GFLOP/s (and weight GB/s) of Google Benchmark cases, for several microbenchmark binaries
run in turn (interleaved), so that two builds are compared on this noisy VM by
their best run rather than by one run each. Interference only slows a run down,
so the best of several is the steadiest estimate of what the kernel can do.

Usage: bench/micro/best_of.py FILTER REPS BINARY [BINARY ...]
  e.g. bench/micro/best_of.py 'gemm/(q4_0|q8_0)/vnni/2048x2048/t1$' 5 \\
           /tmp/old/kestrel_microbench build/kestrel_microbench
A binary may be a wrapper script that sets an environment variable first.
"""
import collections
import csv
import io
import subprocess
import sys


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    pattern, reps, binaries = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    best = collections.defaultdict(float)
    best_gbs = collections.defaultdict(float)
    for _ in range(reps):
        for b in binaries:
            out = subprocess.run([b, f"--benchmark_filter={pattern}", "--benchmark_min_time=0.1",
                                  "--benchmark_format=csv"], capture_output=True, text=True, check=True).stdout
            rows = list(csv.reader(io.StringIO(out[out.index("name,"):])))
            col = rows[0].index("GFLOP/s")
            gcol = rows[0].index("weight_GB/s")
            for r in rows[1:]:
                best[(r[0], b)] = max(best[(r[0], b)], float(r[col]))
                best_gbs[(r[0], b)] = max(best_gbs[(r[0], b)], float(r[gcol]))
    names = sorted({name for name, _ in best})
    width = max(len(n) for n in names) + 2
    print("GFLOP/s (weight GB/s)".ljust(width), *[b.split("/")[-1][-20:].rjust(20) for b in binaries])
    for n in names:
        print(n.ljust(width), *[f"{best[(n, b)]:10.1f} ({best_gbs[(n, b)]:5.1f})".rjust(20) for b in binaries])


if __name__ == "__main__":
    main()
