#!/usr/bin/env python3
"""Concurrent requests against `kestrel serve` (SmolLM2, loopback) where a third
of the clients hang up at random points: while queued, during prefill, mid-stream.

Streamed and non-streamed chat and text completions, REQUESTS in all from
CLIENTS threads, with --parallel 2 so that most requests wait in the queue for a
while. The requests that stay must be answered completely; those that hang up
ask for many tokens (ignore_eos) so that they are still queued or running when
their client leaves, and each must be counted as disconnected. Afterwards the
server must be healthy and still answer correctly, hold no KV block, have no
request in flight, and exit 0 on SIGINT. Built with sanitizers, the server's
reports go to a folder of this test's own (log_path), which must stay empty.

This is the test that found the use-after-free of a request's channel in the
server (the engine thread touched it after delivering the last event, which
the HTTP thread waiting for it may already have freed).

Usage: server_stress_test.py PATH/TO/kestrel   (exit status 0 = all passed)
Environment: KESTREL_STRESS_SEED (default: from the clock, printed),
             KESTREL_STRESS_REQUESTS (default 36), KESTREL_STRESS_CLIENTS (default 12)
"""
import http.client
import json
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loopback import KestrelServer, sse_events  # noqa: E402

BIN = sys.argv[1]
CACHE = os.environ.get("KESTREL_CACHE", os.path.expanduser("~/.cache/kestrel"))
MODEL = os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
SEED = int(os.environ.get("KESTREL_STRESS_SEED", str(int(time.time() * 1000) % 1000000)))
REQUESTS = int(os.environ.get("KESTREL_STRESS_REQUESTS", "36"))
CLIENTS = int(os.environ.get("KESTREL_STRESS_CLIENTS", "12"))
PARALLEL = 2
LOAD_BUDGET_S = 300  # the load phase; the wrapper kills the whole test at 600 s
# A hang-up request asks for this many tokens and never stops early, so it is
# still queued or generating when its client leaves (at most 8 events or 0.3 s
# after sending; 600 decode steps take seconds even in a Release build).
HANGUP_TOKENS = 600
SANITIZER_OPTIONS = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS", "LSAN_OPTIONS")

failures = []


def check(cond, name, detail=""):
    print(("ok: " if cond else "FAILED: ") + name + ("" if cond else " " + str(detail)), flush=True)
    if not cond:
        failures.append(name)
    return cond


def start_server(san_dir):
    """The server, its sanitizer reports (if built with sanitizers) sent to
    san_dir whatever the caller's options say (the last log_path wins)."""
    for var in SANITIZER_OPTIONS:
        os.environ[var] = os.environ.get(var, "") + ":log_path=" + os.path.join(san_dir, "report")
    return KestrelServer(BIN, MODEL, "--parallel", str(PARALLEL), "--ctx-size", "2048", health_timeout=120)


USER = ["Say hi.", "Name a color.", "What is 3+3?", "Write one word.", "Tell me about the sea."]


def make_jobs(rng):
    """REQUESTS jobs, a third of them hang-ups, in random order."""
    jobs = []
    for i in range(REQUESTS):
        job = {"chat": rng.random() < 0.5, "stream": rng.random() < 0.5, "hangup": i % 3 == 0,
               "seed": rng.randint(0, 10**6)}
        if job["hangup"]:
            # Streams hang up after k events (0: right after the headers, maybe
            # still queued) or, like non-streamed requests, after a delay.
            job["after_events"] = rng.randint(0, 8) if job["stream"] and rng.random() < 0.5 else None
            job["after_s"] = rng.uniform(0.0, 0.3)
            job["max_tokens"] = HANGUP_TOKENS
        else:
            job["max_tokens"] = rng.randint(1, 24)
        jobs.append(job)
    rng.shuffle(jobs)
    return jobs


def body_of(job):
    b = {"max_tokens": job["max_tokens"], "temperature": 0.8, "seed": job["seed"], "stream": job["stream"]}
    if job["hangup"]:
        b["ignore_eos"] = True
    if job["chat"]:
        b["messages"] = [{"role": "user", "content": USER[job["seed"] % len(USER)]}]
    else:
        b["prompt"] = "Once upon a time, " + USER[job["seed"] % len(USER)]
    return b


def path_of(job):
    return "/v1/chat/completions" if job["chat"] else "/v1/completions"


def run_hangup(srv, job):
    body = json.dumps(body_of(job)).encode()
    if job["after_events"] is not None:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
        conn.request("POST", path_of(job), body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        if r.status != 200:
            return f"status {r.status}"
        events = sse_events(r)
        for _ in range(job["after_events"]):
            if next(events, None) is None:
                return "the stream ended before the hang-up"
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
        return None
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=120)
    sock.sendall(b"POST " + path_of(job).encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    time.sleep(job["after_s"])
    sock.close()
    return None


def run_complete(srv, job):
    """None if the answer is whole and well formed, else what is wrong."""
    if not job["stream"]:
        st, _, data = srv.request("POST", path_of(job), body_of(job), timeout=120)
        if st != 200:
            return f"status {st}: {data[:200]!r}"
        d = json.loads(data)
        c = d["choices"][0]
        text = c["message"]["content"] if job["chat"] else c["text"]
        if c["finish_reason"] not in ("stop", "length") or not isinstance(text, str):
            return f"finish_reason {c['finish_reason']!r}"
        if not 0 <= d["usage"]["completion_tokens"] <= job["max_tokens"]:
            return f"usage {d['usage']}"
        return None
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
    try:
        conn.request("POST", path_of(job), body=json.dumps(body_of(job)), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        if r.status != 200:
            return f"status {r.status}"
        events = list(sse_events(r))
    finally:
        conn.close()
    if len(events) < 2 or events[-1] != "[DONE]":
        return f"stream not ended by [DONE]: {events[-2:]}"
    last = json.loads(events[-2])
    if "error" in last or last["choices"][0]["finish_reason"] not in ("stop", "length"):
        return f"last event {events[-2][:200]}"
    if job["chat"] and json.loads(events[0])["choices"][0]["delta"].get("role") != "assistant":
        return f"first event {events[0][:200]}"
    return None


def load(srv, jobs):
    lock = threading.Lock()
    todo = iter(jobs)
    problems, done = [], {"hangup": 0, "complete": 0}
    deadline = time.time() + LOAD_BUDGET_S
    max_queue = [0]
    stop_watch = threading.Event()

    def watch():  # the queue depth the server reports while the load runs
        while not stop_watch.is_set():
            try:
                max_queue[0] = max(max_queue[0], int(srv.metrics().get("kestrel_queue_depth", 0)))
            except Exception:  # the server died: the checks after the load say so
                pass
            stop_watch.wait(0.05)

    def worker():
        while time.time() < deadline:
            with lock:
                job = next(todo, None)
            if job is None:
                return
            kind = "hangup" if job["hangup"] else "complete"
            try:
                err = run_hangup(srv, job) if job["hangup"] else run_complete(srv, job)
            except Exception as e:  # a reset or a timeout is a failure
                err = repr(e)
            with lock:
                if err:
                    problems.append(f"{kind} {'chat' if job['chat'] else 'completion'} "
                                    f"{'stream' if job['stream'] else 'whole'}: {err}")
                else:
                    done[kind] += 1

    watcher = threading.Thread(target=watch)
    watcher.start()
    t0 = time.time()
    threads = [threading.Thread(target=worker) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop_watch.set()
    watcher.join()
    return problems, done, max_queue[0], time.time() - t0


def wait_idle(srv, seconds=60):
    t0 = time.time()
    m = srv.metrics()
    while time.time() - t0 < seconds:
        if all(m.get(k) == 0 for k in ("kestrel_kv_slots_in_use", "kestrel_queue_depth", "kestrel_kv_blocks_in_use",
                                       "kestrel_http_in_flight")):
            break
        time.sleep(0.1)
        m = srv.metrics()
    return m


def sanitizer_reports(san_dir, log_text):
    out = []
    for name in sorted(os.listdir(san_dir)):
        with open(os.path.join(san_dir, name), errors="replace") as f:
            out.append(f"--- {name} ---\n" + f.read(8000))
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer", "runtime error:"):
        if marker in log_text:
            out.append(f"--- server log contains {marker!r} ---")
    return out


def main():
    if not os.path.exists(MODEL):
        print("FAILED: model missing at", MODEL, "(run scripts/fetch_models.sh)")
        return 1
    rng = random.Random(SEED)
    jobs = make_jobs(rng)
    n_hang = sum(j["hangup"] for j in jobs)
    n_hang_whole = sum(j["hangup"] and not j["stream"] for j in jobs)
    print(f"seed {SEED} (KESTREL_STRESS_SEED): {len(jobs)} requests from {CLIENTS} clients, {n_hang} hang up "
          f"({n_hang_whole} non-streamed), --parallel {PARALLEL}", flush=True)
    t0 = time.time()
    san_dir = tempfile.mkdtemp(prefix="kestrel_stress_san_")
    srv = None
    try:
        srv = start_server(san_dir)
        print(f"server up after {time.time() - t0:.1f} s", flush=True)
        m0 = srv.metrics()
        problems, done, max_queue, elapsed = load(srv, jobs)
        print(f"load: {done['complete']} answered, {done['hangup']} hung up, in {elapsed:.1f} s; "
              f"queue depth up to {max_queue}", flush=True)
        check(srv.proc.poll() is None, "the server survived the load", f"exit {srv.proc.returncode}")
        check(not problems, "every request ran as planned (the others answered whole)", "; ".join(problems[:5]))
        check(done["complete"] + done["hangup"] == len(jobs), "every request ran within the time budget",
              f"{done} of {len(jobs)}")
        check(max_queue >= 1, "requests waited in the queue (--parallel below the clients)", str(max_queue))

        m = wait_idle(srv)
        check(m.get("kestrel_kv_slots_in_use") == 0 and m.get("kestrel_queue_depth") == 0
              and m.get("kestrel_http_in_flight") == 0, "afterwards: no slot in use, empty queue, nothing in flight",
              {k: m.get(k) for k in ("kestrel_kv_slots_in_use", "kestrel_queue_depth", "kestrel_http_in_flight")})
        check(m.get("kestrel_kv_blocks_in_use") == 0, "afterwards: kestrel_kv_blocks_in_use 0",
              str(m.get("kestrel_kv_blocks_in_use")))
        gone = m.get("kestrel_requests_disconnected_total", 0) - m0.get("kestrel_requests_disconnected_total", 0)
        check(gone == n_hang, "every hang-up counted in kestrel_requests_disconnected_total",
              f"{gone:.0f} counted, {n_hang} hung up")
        s499 = sum(v - m0.get(k, 0) for k, v in m.items() if k.startswith("kestrel_requests_total") and 'status="499"' in k)
        check(s499 == n_hang_whole, "every non-streamed hang-up answered 499 in /metrics",
              f"{s499:.0f} vs {n_hang_whole}")

        st, _, body = srv.request("GET", "/health")
        check(st == 200 and json.loads(body).get("status") == "ok", "afterwards: /health ok", f"{st} {body[:100]!r}")
        st, _, body = srv.request("POST", "/v1/completions",
                               {"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0})
        text = json.loads(body)["choices"][0]["text"] if st == 200 else ""
        check(st == 200 and "Paris" in text, "afterwards: a greedy completion still knows Paris", f"{st} {text!r}")

        code = srv.stop(signal.SIGINT, timeout=120)
        check(code == 0, "SIGINT -> exit 0", "killed after 120 s" if code is None else f"exit {code}")
    except Exception as e:
        check(False, "unexpected exception", repr(e))
    finally:
        if srv is not None:
            if srv.proc.poll() is None:
                srv.proc.kill()
                srv.proc.wait()
            with open(srv.log.name, errors="replace") as f:
                log_text = f.read()
            reports = sanitizer_reports(san_dir, log_text)
            check(not reports, "no sanitizer report from the server", f"{len(reports)} report(s)")
            for r in reports:
                print(r)
            if failures:
                print(f"--- server log (seed {SEED}) ---\n" + log_text[-3000:])
            os.unlink(srv.log.name)
        shutil.rmtree(san_dir, ignore_errors=True)
    print(f"{'FAILED' if failures else 'passed'} (seed {SEED}) in {time.time() - t0:.1f} s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
