#!/usr/bin/env python3
"""Aggregate generation throughput of `kestrel serve` with N parallel streams
against one stream: starts the server on a free loopback port, runs each
configuration, prints tokens/s and time to first token. Not a test: nothing is
asserted.

Usage: server_throughput.py PATH/TO/kestrel [--model GGUF] [--streams 8]
                            [--tokens 64] [--rounds 2] [--threads 0]
"""
import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import threading
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "e2e"))
from loopback import free_port  # noqa: E402


def stream_once(port, prompt, max_tokens, seed):
    """One streamed completion; returns (completion tokens, ttft seconds, total seconds)."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.8, "seed": seed, "stream": True,
            "stream_options": {"include_usage": True}, "cache_prompt": False, "ignore_eos": True}
    conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    ttft, tokens = None, 0
    while True:
        line = r.readline()
        if not line:
            break
        line = line.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        d = json.loads(line[6:])
        if ttft is None and d.get("choices") and d["choices"][0].get("text"):
            ttft = time.perf_counter() - t0
        if d.get("usage"):
            tokens = d["usage"]["completion_tokens"]
    conn.close()
    return tokens, ttft or 0.0, time.perf_counter() - t0


def run(port, n_streams, max_tokens, rounds):
    prompts = [f"Write a short story about a {w}." for w in
               ["cat", "ship", "river", "robot", "garden", "train", "mountain", "violin", "lamp", "forest"]]
    results = []
    t0 = time.perf_counter()
    for rnd in range(rounds):
        out = [None] * n_streams

        def go(i):
            out[i] = stream_once(port, prompts[i % len(prompts)], max_tokens, seed=rnd * 100 + i)

        ts = [threading.Thread(target=go, args=(i,)) for i in range(n_streams)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        results += out
    wall = time.perf_counter() - t0
    tokens = sum(r[0] for r in results)
    return tokens / wall, statistics.median(r[1] for r in results), tokens, wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kestrel")
    ap.add_argument("--model", default=os.path.join(os.environ.get("KESTREL_CACHE", os.path.expanduser(
        "~/.cache/kestrel")), "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    port = free_port()
    args = [a.kestrel, "serve", "-m", a.model, "--port", str(port), "--parallel", str(a.streams),
            "--ctx-size", str(a.streams * 512)]
    if a.threads:
        args += ["-t", str(a.threads)]
    proc = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        stream_once(port, "warm up", 8, 0)
        print(f"model {os.path.basename(a.model)}, {a.tokens} tokens per stream, {a.rounds} rounds")
        base = None
        for n in (1, a.streams):
            tps, ttft, tokens, wall = run(port, n, a.tokens, a.rounds)
            base = base or tps
            print(f"{n:2d} stream(s): {tps:8.1f} tokens/s aggregate ({tokens} tokens in {wall:.1f} s), "
                  f"median TTFT {ttft * 1000:.0f} ms, x{tps / base:.2f} vs 1 stream")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
