#!/usr/bin/env python3
"""How many concurrent 4k-token conversations a KV pool holds, with and without
--kv-budget (issue 14). Starts `kestrel serve` with a pool of --pool-gib GiB of
KV (-c in positions, from the model's KV bytes per position) and one slot per
request (--ctx-per-slot 4096), sends --requests conversations at once, each a
distinct prompt of --prompt-tokens real tokens (consecutive slices of a text
file, so no two share a prefix) asking for --max-tokens more, and reads
/metrics every 0.2 s. The scheduler's admission decides who runs: a request is
admitted only when the pool can give it what it may still take (its whole
prompt + max_tokens; under a budget its prompt, then the budget's cap). The
figure is the most requests running at once while others were still queued,
i.e. limited by the pool; the run stops once requests wait and no prompt token
has been evaluated for 3 engine steps (the pool admits no one: every admitted
prompt is in), or once the first request has finished.

Usage: kv_budget_capacity.py KESTREL [--model M] [--budget 1024] [--pool-gib 1]
       [--requests 64] [--prompt-tokens 3584] [--max-tokens 512] [--text FILE]
Prints one markdown row per configuration (no budget, then --budget).
"""
import argparse
import json
import os
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "e2e"))
from loopback import KestrelServer  # noqa: E402

CACHE = os.environ.get("KESTREL_CACHE", os.path.expanduser("~/.cache/kestrel"))


def metrics(server):
    status, _, data = server.request("GET", "/metrics")
    out = {}
    for line in data.decode().splitlines():
        m = re.match(r"^(kestrel_[a-z_]+) ([0-9.eE+-]+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def run(args, budget, prompts, bytes_per_pos):
    pool = int(args.pool_gib * (1 << 30) // bytes_per_pos) // 16 * 16
    extra = ["-c", str(pool), "--parallel", str(args.requests), "--ctx-per-slot", str(args.prompt_tokens + args.max_tokens),
             "-b", str(args.batch), "--queue-size", str(args.requests),
             "--http-threads", str(args.requests + 8)]  # a connection per waiting request, and /metrics
    if budget:
        extra += ["--kv-budget", str(budget)]
    server = KestrelServer(args.kestrel, args.model, *extra, health_timeout=120)
    try:
        return measure(args, server, budget, pool, prompts)
    finally:
        server.stop(sig=signal.SIGKILL)  # the figure is known; running requests need no answer


def measure(args, server, budget, pool, prompts):
    results = []

    def one(p):
        body = {"prompt": p, "max_tokens": args.max_tokens, "temperature": 0, "cache_prompt": False}
        try:
            status, _, data = server.request("POST", "/v1/completions", body, timeout=3600)
            results.append(status)
        except OSError as e:  # the server is stopped once the figure is known
            results.append(str(e))

    threads = [threading.Thread(target=one, args=(p,), daemon=True) for p in prompts]
    t0 = time.time()
    for t in threads:
        t.start()
    most = 0
    peak_blocks = 0
    m = {}
    last_prompt, steps_at = -1, 0
    while time.time() - t0 < args.timeout:
        m = metrics(server)
        running = int(m.get("kestrel_kv_slots_in_use", 0))
        queued = int(m.get("kestrel_queue_depth", 0))
        if queued > 0:
            most = max(most, running)
        peak_blocks = max(peak_blocks, int(m.get("kestrel_kv_blocks_in_use", 0)))
        if m.get("kestrel_requests_finished_total", 0) >= 1:
            break
        # Pool-bound: requests wait, yet no prompt token was evaluated for 3
        # engine steps (admission runs before every step, and a request it
        # admits starts its prompt in the next one).
        prompt, steps = m.get("kestrel_prompt_tokens_total", 0), m.get("kestrel_engine_steps_total", 0)
        if prompt != last_prompt:
            last_prompt, steps_at = prompt, steps
        elif queued > 0 and running > 0 and steps - steps_at >= 3:
            break
        time.sleep(0.2)
    seconds = time.time() - t0
    return {
        "budget": budget,
        "pool_positions": pool,
        "pool_blocks": int(m.get("kestrel_kv_blocks_total", 0)),
        "concurrent": most,
        "peak_blocks_in_use": peak_blocks,
        "head_blocks_freed": int(m.get("kestrel_kvcompress_head_blocks_freed_total", 0)),
        "seconds": seconds,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kestrel")
    ap.add_argument("--model", default=os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--budget", type=int, default=1024)
    ap.add_argument("--pool-gib", type=float, default=1.0)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=3584)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--batch", type=int, default=512, help="prompt tokens per engine step (serve -b)")
    ap.add_argument("--kv-bytes-per-position", type=int, default=0,
                    help="K+V bytes of one position, all layers and heads (default: from the GGUF via kestrel info)")
    ap.add_argument("--text", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                                   "shared", "data", "wikitext-2-raw", "wiki.test.raw"))
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--configs", default="off,budget", help="off, budget or both (comma-separated)")
    args = ap.parse_args()

    bpp = args.kv_bytes_per_position
    if not bpp:
        import subprocess
        info = subprocess.run([args.kestrel, "info", args.model], capture_output=True, text=True).stdout
        def grab(key):
            m = re.search(r"\.%s \(\w+\) = ([0-9]+)" % re.escape(key), info)
            if not m:
                sys.exit(f"cannot read {key} from `kestrel info` (give --kv-bytes-per-position)")
            return int(m.group(1))
        n_layer, n_head, n_kv, n_embd = grab("block_count"), grab("attention.head_count"), grab(
            "attention.head_count_kv"), grab("embedding_length")
        bpp = n_layer * n_kv * (n_embd // n_head) * 2 * 2  # K and V, F16
    # Distinct prompts: consecutive slices of the text's tokens.
    probe = KestrelServer(args.kestrel, args.model, "--parallel", "1", "-c", "512")
    with open(args.text, encoding="utf-8", errors="replace") as f:
        text = f.read()
    need = args.requests * args.prompt_tokens
    tokens = []
    try:
        for at in range(0, len(text), 400000):  # the server takes bodies up to 1 MiB
            if len(tokens) >= need:
                break
            status, _, data = probe.request("POST", "/tokenize", {"content": text[at:at + 400000]})
            if status != 200:
                sys.exit(f"/tokenize: {status} {data[:200]}")
            tokens += json.loads(data)["tokens"]
    finally:
        probe.stop()
    if len(tokens) < need:
        sys.exit(f"{args.text} has {len(tokens)} tokens, {need} needed")
    prompts = [tokens[i * args.prompt_tokens:(i + 1) * args.prompt_tokens] for i in range(args.requests)]

    print(f"model {os.path.basename(args.model)}, {bpp} KV bytes per position (F16), pool {args.pool_gib} GiB, "
          f"{args.requests} conversations of {args.prompt_tokens} prompt + {args.max_tokens} generated tokens",
          flush=True)
    print("| --kv-budget | pool positions | concurrent conversations | peak KV blocks in use / pool | "
          "(layer, head) blocks freed by KV-Compress | run s |")
    print("|---|---:|---:|---:|---:|---:|", flush=True)
    for cfg in args.configs.split(","):
        r = run(args, args.budget if cfg == "budget" else 0, prompts, bpp)
        print(f"| {r['budget'] or 'none'} | {r['pool_positions']} | {r['concurrent']} | "
              f"{r['peak_blocks_in_use']} / {r['pool_blocks']} | {r['head_blocks_freed']} | {r['seconds']:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
