#!/usr/bin/env python3
"""`kestrel serve --switch ...` takes effect: the server reports the switches it
runs with (/props and /metrics) and behaves as `kestrel run` does with the same
switches, and differently from the defaults.

  - sampling=sort: a seeded completion from the server equals `kestrel run
    --switch sampling=sort` with the same seed, and differs from the default
    sampler's (sortfree) run.
  - matmul=vecdot: the server's log-probs differ from a default server's (other
    weight kernels, same tokens), and its seeded text equals `kestrel run
    --switch matmul=vecdot`'s.

Usage: serve_switches_test.py PATH/TO/kestrel   (exit status 0 = all passed)
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loopback import KestrelServer  # noqa: E402

BIN = sys.argv[1]
CACHE = os.environ.get("KESTREL_CACHE", os.path.expanduser("~/.cache/kestrel"))
MODEL = os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
PROMPT = "Once upon a time, in a small village by the sea,"
SEED = 7
N = 24

passed = 0
failed = 0


def check(cond, name, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok:", name, flush=True)
    else:
        failed += 1
        print("FAILED:", name, detail, flush=True)
    return cond


class Server(KestrelServer):
    """One slot, 512 positions, with the given --switch settings."""

    def __init__(self, *switches):
        extra = ["--parallel", "1", "-c", "512"]
        for s in switches:
            extra += ["--switch", s]
        super().__init__(BIN, MODEL, *extra)

    def get(self, path):
        status, _, data = self.request("GET", path)
        return status, data.decode()

    def complete(self, temperature, logprobs=0):
        body = {"prompt": PROMPT, "max_tokens": N, "temperature": temperature, "seed": SEED}
        if logprobs:
            body["logprobs"] = logprobs
        status, _, data = self.request("POST", "/v1/completions", body, timeout=120)
        if status != 200:
            raise RuntimeError(f"completion failed: {status} {data!r}")
        return json.loads(data)["choices"][0]


def run_text(*switches):
    args = [BIN, "run", "-m", MODEL, "-p", PROMPT, "-n", str(N), "--temp", "1", "--seed", str(SEED), "-t", "2",
            "--no-display-prompt"]
    for s in switches:
        args += ["--switch", s]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError("kestrel run failed: " + out.stderr[-2000:])
    # run ends its output with one newline of its own.
    return out.stdout[:-1] if out.stdout.endswith("\n") else out.stdout


def reported(srv):
    status, text = srv.get("/props")
    props = json.loads(text) if status == 200 else {}
    _, metrics = srv.get("/metrics")
    return props.get("switches", {}), metrics


def top_logprobs(choice):
    return [v for d in choice["logprobs"]["top_logprobs"] for v in sorted(d.values())]


def main():
    if not os.path.exists(MODEL):
        print("model missing at", MODEL, "(run scripts/fetch_models.sh)")
        return 1
    t0 = time.time()
    servers = []
    try:
        default = Server()
        servers.append(default)
        sort = Server("sampling=sort")
        servers.append(sort)
        vecdot = Server("matmul=vecdot")
        servers.append(vecdot)

        sw, metrics = reported(default)
        check(sw.get("sampling") == "sortfree" and sw.get("matmul") == "panels",
              "default server reports sampling=sortfree matmul=panels", str(sw))
        sw, metrics = reported(sort)
        check(sw.get("sampling") == "sort", "--switch sampling=sort reported by /props", str(sw))
        check('kestrel_switch{name="sampling",value="sort"} 1' in metrics, "and by /metrics")
        sw, metrics = reported(vecdot)
        check(sw.get("matmul") == "vecdot", "--switch matmul=vecdot reported by /props", str(sw))
        check('kestrel_switch{name="matmul",value="vecdot"} 1' in metrics, "and by /metrics")

        text_sort = sort.complete(1.0)["text"]
        text_default = default.complete(1.0)["text"]
        check(text_sort == run_text("sampling=sort"), "sampling=sort: server text == kestrel run's with the switch",
              repr(text_sort))
        check(text_default == run_text(), "default: server text == kestrel run's", repr(text_default))
        check(text_sort != text_default, "sampling=sort draws other tokens than the default sampler for one seed")

        greedy_vecdot = vecdot.complete(0.0, logprobs=5)
        greedy_default = default.complete(0.0, logprobs=5)
        check(top_logprobs(greedy_vecdot) != top_logprobs(greedy_default),
              "matmul=vecdot: other log-probs than the panel kernels (the kernels changed)")
        text_vecdot = vecdot.complete(1.0)["text"]
        check(text_vecdot == run_text("matmul=vecdot"), "matmul=vecdot: server text == kestrel run's with the switch",
              repr(text_vecdot))

        # The accuracy guard in serve: every decode step recomputed on the
        # exact path, its running figures in /metrics.
        guarded = KestrelServer(BIN, MODEL, "--parallel", "1", "-c", "512", "--switch", "kv=q8_0", "--max-kld",
                                "0.05", "--guard-check-every", "1", "--guard-min-checks", "4", "--guard-follow-every", "1",
                                "--guard-prompt", "192", "--guard-positions", "16")
        guarded.__class__ = Server
        servers.append(guarded)
        guarded.complete(0.0)
        _, metrics = guarded.get("/metrics")
        checks = [float(l.split()[1]) for l in metrics.splitlines() if l.startswith("kestrel_guard_checks ")]
        kld = [float(l.split()[1]) for l in metrics.splitlines() if l.startswith("kestrel_guard_kld ")]
        check(checks and checks[0] >= N - 1, "serve's running check recomputed every decode step", metrics[-600:])
        check(kld and 0 < kld[0] < 0.05, "its running KLD for kv=q8_0 is small and not zero", str(kld))
        check("accuracy guard: running check of 1 decode step in 1" in guarded.log_text(), "and says it runs")
        gauge = {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1]) for l in metrics.splitlines()
                 if l.startswith("kestrel_guard")}
        timed, speedup = gauge.get("kestrel_guard_timed_checks", 0), gauge.get("kestrel_guard_speedup", 0)
        # One client: every checked step was its request's decode alone.
        check(checks and timed == checks[0] and speedup > 0, "running speed-up timed on every check",
              f"{timed} of {checks} timed, speed-up {speedup}")
        # q8_0 K and V: 34 of f16's 64 bytes per 32 values; the weights do not change.
        mem = gauge.get("kestrel_guard_memory_ratio", 1)
        check(0.5 < mem < 1, "running memory ratio below the exact path's", str(mem))
        sw = 'name="kv",value="q8_0"}'
        check(0 < gauge.get("kestrel_guard_switch_kld{" + sw, -1) < 0.05
              and gauge.get("kestrel_guard_switch_on{" + sw) == 1
              and gauge.get("kestrel_guard_switch_memory_ratio{" + sw) == mem,
              "kv=q8_0's start-up figures alone, and on", str({k: v for k, v in gauge.items() if "switch_" in k}))
    except Exception as e:  # noqa: BLE001
        check(False, "unexpected exception", repr(e))
    finally:
        for s in servers:
            code = s.stop(signal.SIGINT)
            check(code == 0, f"server on port {s.port} stops cleanly", str(code))
            if failed:
                print("--- server log ---\n" + s.log_text())
    print(f"{passed} passed, {failed} failed in {time.time() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
