#!/usr/bin/env python3
"""kestrel serve driven as a user would: the official openai client against the
real server on loopback with the SmolLM2 model, raw HTTP for the error paths,
a client hanging up on a non-streamed request, a bounded load-and-fault run,
a queue-full run, and SIGTERM draining.

Usage: server_test.py PATH/TO/kestrel   (exit status 0 = all passed)
"""
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loopback import SANITIZER, KestrelServer, free_port, sse_events  # noqa: E402

BIN = sys.argv[1]
CACHE = os.environ.get("KESTREL_CACHE", os.path.expanduser("~/.cache/kestrel"))
MODEL = os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
MODEL_NAME = os.path.basename(MODEL)
KEY = "test-key-123"
HERE = os.path.dirname(os.path.abspath(__file__))

passed = 0
failed = 0


def ok(name):
    global passed
    passed += 1
    print("ok:", name, flush=True)


def bad(name, detail=""):
    global failed
    failed += 1
    print("FAILED:", name, detail, flush=True)


def check(cond, name, detail=""):
    if cond:
        ok(name)
    else:
        bad(name, detail)
    return cond


class ServerProc(KestrelServer):
    """The server on SmolLM2, 2 threads, with this test's API key as the default."""

    def __init__(self, *extra):
        super().__init__(BIN, MODEL, *extra, key=KEY)


def error_of(data):
    try:
        return json.loads(data)["error"]
    except Exception:
        return {}


def functional(srv):
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{srv.port}/v1", api_key=KEY, max_retries=0, timeout=120)

    # Completions: greedy knows a fact; usage matches /tokenize.
    prompt = "The capital of France is"
    r = client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=8, temperature=0)
    text = r.choices[0].text
    check("Paris" in text, "completion greedy knows Paris", repr(text))
    _, _, tk = srv.request("POST", "/tokenize", {"content": prompt, "add_special": True})
    n_prompt = len(json.loads(tk)["tokens"])
    check(r.usage.prompt_tokens == n_prompt, "completion usage.prompt_tokens == /tokenize",
          f"{r.usage.prompt_tokens} vs {n_prompt}")
    check(1 <= r.usage.completion_tokens <= 8 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens,
          "completion usage sums", str(r.usage))
    check(r.choices[0].finish_reason in ("stop", "length") and r.model == MODEL_NAME, "completion finish/model")

    # Streaming completion gives the same greedy text, with usage at the end.
    parts, usage, finish = [], None, None
    for ch in client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=8, temperature=0, stream=True,
                                        stream_options={"include_usage": True}):
        if ch.choices:
            parts.append(ch.choices[0].text or "")
            finish = ch.choices[0].finish_reason or finish
        if ch.usage:
            usage = ch.usage
    check("".join(parts) == text, "streamed completion == non-streamed (greedy)", repr("".join(parts)) + " vs " + repr(text))
    check(usage is not None and usage.completion_tokens == r.usage.completion_tokens, "stream include_usage", str(usage))

    # Chat, streaming and not.
    msgs = [{"role": "user", "content": "What is 2+2? Answer with one number."}]
    # Logits differ in the last bits with how a prompt is split into batches,
    # so comparisons of exact text evaluate the whole prompt (cache_prompt off).
    fresh = {"cache_prompt": False}
    c = client.chat.completions.create(model=MODEL_NAME, messages=msgs, max_tokens=12, temperature=0, extra_body=fresh)
    content = c.choices[0].message.content
    check("4" in content and c.choices[0].message.role == "assistant", "chat answers 4", repr(content))
    check(c.object == "chat.completion" and c.usage.prompt_tokens > 5, "chat object and usage", str(c.usage))
    chunks = list(client.chat.completions.create(model=MODEL_NAME, messages=msgs, max_tokens=12, temperature=0,
                                                 stream=True, extra_body=fresh))
    streamed = "".join((ch.choices[0].delta.content or "") for ch in chunks if ch.choices)
    check(streamed == content, "streamed chat == non-streamed (greedy)", repr(streamed) + " vs " + repr(content))
    check(chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason in ("stop", "length"),
          "chat stream opens with role and ends with finish_reason")

    # Stop strings: the text ends before the stop string.
    base = client.completions.create(model=MODEL_NAME, prompt="1, 2, 3, 4, 5,", max_tokens=16, temperature=0)
    full = base.choices[0].text
    cut = full.find(" 8")
    if check(cut >= 0, "counting continues to 8", repr(full)):
        s = client.completions.create(model=MODEL_NAME, prompt="1, 2, 3, 4, 5,", max_tokens=16, temperature=0,
                                      stop=[" 8", "never-seen"])
        check(s.choices[0].text == full[:cut] and s.choices[0].finish_reason == "stop", "stop string cuts the text",
              repr(s.choices[0].text))
        s1 = client.completions.create(model=MODEL_NAME, prompt="1, 2, 3, 4, 5,", max_tokens=16, temperature=0,
                                       stop=" 8", stream=True)
        check("".join(ch.choices[0].text for ch in s1 if ch.choices) == full[:cut], "stop string (single, streamed)")

    # The same seed reproduces the text (temperature 1).
    outs = [client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "Tell me a story."}],
                                           max_tokens=24, temperature=1.0, seed=seed,
                                           extra_body=fresh).choices[0].message.content
            for seed in (42, 42, 7)]
    check(outs[0] == outs[1] and outs[0], "same seed, same text", repr(outs))

    # Logprobs.
    lp = client.chat.completions.create(model=MODEL_NAME, messages=msgs, max_tokens=6, temperature=0, logprobs=True,
                                        top_logprobs=3)
    content_lp = lp.choices[0].logprobs.content
    good = len(content_lp) == lp.usage.completion_tokens and all(
        len(t.top_logprobs) == 3 and t.logprob <= 0 and t.top_logprobs[0].token == t.token
        and abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6 for t in content_lp)
    check(good, "chat logprobs: one per token, top 3, greedy token on top", str(content_lp)[:300])
    clp = client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=4, temperature=0, logprobs=2)
    check(len(clp.choices[0].logprobs.tokens) == clp.usage.completion_tokens
          and all(len(t) <= 2 for t in clp.choices[0].logprobs.top_logprobs), "completion logprobs")

    # Models, tokenize/detokenize, health, metrics, page.
    models = client.models.list()
    check([m.id for m in models.data] == [MODEL_NAME], "/v1/models lists the model", str(models))
    _, _, tk = srv.request("POST", "/tokenize", {"content": "Hello world"})
    ids = json.loads(tk)["tokens"]
    _, _, dt = srv.request("POST", "/detokenize", {"tokens": ids})
    check(json.loads(dt)["content"] == "Hello world" and len(ids) >= 2, "tokenize/detokenize round trip", str(ids))
    st, _, body = srv.request("GET", "/health", key=None)
    check(st == 200 and json.loads(body)["status"] == "ok", "/health without a key")
    st, _, body = srv.request("GET", "/", key=None)
    check(st == 200 and b"/v1/chat/completions" in body and b"getReader" in body, "chat page at /")
    # The page's own script, run in node against this server (no browser here).
    node = shutil.which("node") or shutil.which("nodejs")
    if node:
        pr = subprocess.run([node, os.path.join(HERE, "server_page_test.js"), str(srv.port), KEY],
                            capture_output=True, text=True, timeout=120)
        check(pr.returncode == 0, "chat page script streams replies (node)", (pr.stdout + pr.stderr)[-400:])
    else:
        print("SKIPPED: chat page script test (node is not installed)", flush=True)
    m = srv.metrics()
    check(m.get("kestrel_tokens_generated_total", 0) > 0 and "kestrel_kv_slots_in_use" in m
          and "kestrel_queue_depth" in m and m.get("kestrel_time_to_first_token_seconds_count", 0) > 0
          and "kestrel_tokens_per_second" in m, "metrics text", str(m)[:300])

    # Auth.
    st, _, body = srv.request("GET", "/v1/models", key=None)
    check(st == 401 and error_of(body).get("type") == "authentication_error", "no key -> 401", body[:200])
    st, _, body = srv.request("POST", "/v1/chat/completions", {"messages": msgs}, key="wrong")
    check(st == 401, "wrong key -> 401")
    try:
        openai.OpenAI(base_url=f"http://127.0.0.1:{srv.port}/v1", api_key="wrong", max_retries=0).models.list()
        bad("openai client with a wrong key raises AuthenticationError")
    except openai.AuthenticationError:
        ok("openai client with a wrong key raises AuthenticationError")

    # Malformed bodies and wrong types -> 400 invalid_request_error.
    cases = [
        ("malformed JSON", "/v1/chat/completions", b'{"messages": [}'),
        ("not an object", "/v1/chat/completions", b'[1, 2]'),
        ("temperature string", "/v1/chat/completions", {"messages": msgs, "temperature": "hot"}),
        ("max_tokens negative", "/v1/chat/completions", {"messages": msgs, "max_tokens": -1}),
        ("max_tokens float", "/v1/completions", {"prompt": "hi", "max_tokens": 2.5}),
        ("messages missing", "/v1/chat/completions", {"max_tokens": 3}),
        ("messages not a list", "/v1/chat/completions", {"messages": "hi"}),
        ("message without role", "/v1/chat/completions", {"messages": [{"content": "hi"}]}),
        ("stop wrong type", "/v1/completions", {"prompt": "hi", "stop": 5}),
        ("stream wrong type", "/v1/completions", {"prompt": "hi", "stream": "yes"}),
        ("prompt wrong type", "/v1/completions", {"prompt": {"a": 1}}),
        ("top_p out of range", "/v1/completions", {"prompt": "hi", "top_p": 3}),
        ("tokenize without content", "/tokenize", {"text": "hi"}),
        ("detokenize bad id", "/detokenize", {"tokens": [1, -5]}),
    ]
    for name, path, body in cases:
        st, _, data = srv.request("POST", path, body)
        e = error_of(data)
        check(st == 400 and e.get("type") == "invalid_request_error" and e.get("message"), "400: " + name,
              f"{st} {data[:200]}")
    try:
        client.chat.completions.create(model=MODEL_NAME, messages=msgs, temperature="hot")
        bad("openai client: wrong type raises BadRequestError")
    except openai.BadRequestError:
        ok("openai client: wrong type raises BadRequestError")

    # Context overflow: 4 slots of 1024 tokens.
    st, _, data = srv.request("POST", "/v1/completions", {"prompt": "hello " * 1500, "max_tokens": 4})
    msg = error_of(data).get("message", "")
    check(st == 400 and "context overflow" in msg and "1024" in msg, "long prompt -> 400 context overflow", msg)
    st, _, data = srv.request("POST", "/v1/completions", {"prompt": prompt, "max_tokens": 2000})
    msg = error_of(data).get("message", "")
    check(st == 400 and "2000" in msg and "1024" in msg, "max_tokens beyond the slot -> 400 naming both", msg)
    st, _, data = srv.request("POST", "/v1/completions", {"prompt": prompt, "max_tokens": 100000})
    check(st == 400, "max_tokens above the limit -> 400", data[:200])
    st, _, data = srv.request("POST", "/v1/completions", b'{"prompt": "' + b"x" * (2 << 20) + b'"}',
                              headers={"Content-Type": "application/json"})
    check(st == 413, "2 MiB body -> 413", f"{st}")


def raw_post(port, path, body, key=None):
    """Sends a POST on a raw socket (returned, for the caller to hang up)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    data = json.dumps(body).encode()
    auth = b"Authorization: Bearer " + key.encode() + b"\r\n" if key else b""
    sock.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth
                 + b"Content-Type: application/json\r\nContent-Length: " + str(len(data)).encode()
                 + b"\r\n\r\n" + data)
    return sock


def wait_metrics(srv, cond, seconds):
    """Polls /metrics until cond(m) holds; returns (m, seconds waited)."""
    t0 = time.time()
    m = srv.metrics()
    while not cond(m) and time.time() - t0 < seconds:
        time.sleep(0.02)
        m = srv.metrics()
    return m, time.time() - t0


def whole_disconnect(srv, max_tokens=1000):
    """A client that hangs up on a non-streamed request cancels its generation:
    the slot is free again long before max_tokens could have been generated."""
    m0 = srv.metrics()
    sock = raw_post(srv.port, "/v1/completions", {"prompt": "Once upon a time", "max_tokens": max_tokens,
                                                  "temperature": 0, "ignore_eos": True}, key=KEY)
    # Hang up once the request has generated a few tokens.
    t_start = time.time()
    m1 = m0
    while time.time() - t_start < 20:
        m1 = srv.metrics()
        if m1.get("kestrel_tokens_generated_total", 0) >= m0.get("kestrel_tokens_generated_total", 0) + 5:
            break
        time.sleep(0.02)
    sock.close()
    t_close = time.time()
    m = {}
    while time.time() - t_close < 10:
        m = srv.metrics()
        if m.get("kestrel_kv_slots_in_use") == 0 and m.get("kestrel_http_in_flight") == 0:
            break
        time.sleep(0.02)
    freed_after = time.time() - t_close
    made = m.get("kestrel_tokens_generated_total", 0) - m0.get("kestrel_tokens_generated_total", 0)
    before_close = m1.get("kestrel_tokens_generated_total", 0) - m0.get("kestrel_tokens_generated_total", 0)
    rate = before_close / max(1e-3, t_close - t_start)
    print(f"hang-up: {before_close:.0f} tokens before the close, {made:.0f} in all, slot free "
          f"{freed_after:.2f} s after it (at ~{rate:.0f} tokens/s, {max_tokens} tokens take "
          f"~{max_tokens / max(rate, 1):.0f} s)", flush=True)
    check(m1.get("kestrel_kv_slots_in_use", 0) >= 1 and before_close > 0, "hang-up: the request was generating",
          str(m1.get("kestrel_kv_slots_in_use")))
    check(m.get("kestrel_kv_slots_in_use") == 0 and m.get("kestrel_http_in_flight") == 0 and freed_after < 2.0,
          "hang-up on a non-streamed request frees its slot within 2 s", f"{freed_after:.2f} s, {m}")
    check(made < max_tokens / 2, "hang-up: generation stopped early", f"{made:.0f} of {max_tokens} tokens")
    check(m.get("kestrel_requests_disconnected_total", 0) == m0.get("kestrel_requests_disconnected_total", 0) + 1
          and m.get('kestrel_requests_total{route="/v1/completions",status="499"}', 0)
          == m0.get('kestrel_requests_total{route="/v1/completions",status="499"}', 0) + 1,
          "hang-up: counted as disconnected (499) in /metrics", str(m.get("kestrel_requests_disconnected_total")))


def load_and_faults(srv, seconds=60, clients=16, total=240):
    """Mixed traffic; every valid request must be answered completely."""
    rss0 = srv.rss_kib()
    lock = threading.Lock()
    stats = {"ok": 0, "bad_status": [], "incomplete": [], "s400": 0, "s503": 0, "disconnects": 0, "done": 0}
    deadline = time.time() + seconds
    counter = iter(range(total))
    user = ["Say hi.", "Name a color.", "What is 3+3?", "Write one word.", "Count to three."]

    def one(kind, rng):
        if kind == "chat":
            body = {"messages": [{"role": "user", "content": rng.choice(user)}], "max_tokens": rng.randint(1, 8),
                    "temperature": 0.7, "seed": rng.randint(0, 1000)}
            st, _, data = srv.request("POST", "/v1/chat/completions", body)
            if st == 200:
                d = json.loads(data)
                return st, d["choices"][0]["finish_reason"] in ("stop", "length") and d["usage"]["completion_tokens"] <= 8
            return st, False
        if kind == "completion":
            body = {"prompt": "Once upon a time", "max_tokens": rng.randint(1, 8), "temperature": 0.9}
            st, _, data = srv.request("POST", "/v1/completions", body)
            return st, st == 200 and "text" in json.loads(data)["choices"][0]
        if kind in ("stream", "disconnect"):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
            body = json.dumps({"messages": [{"role": "user", "content": rng.choice(user)}], "stream": True,
                               "max_tokens": 8 if kind == "stream" else 200})
            conn.request("POST", "/v1/chat/completions", body=body,
                         headers={"Authorization": "Bearer " + KEY, "Content-Type": "application/json"})
            r = conn.getresponse()
            if r.status != 200:
                r.read()
                conn.close()
                return r.status, False
            if kind == "disconnect":
                next(sse_events(r), None)  # the first event, then hang up mid-stream
                conn.sock.shutdown(socket.SHUT_RDWR)
                conn.close()
                return "disconnect", True
            events = list(sse_events(r))
            conn.close()
            complete = bool(events) and events[-1] == "[DONE]" and json.loads(events[-2])["choices"][0]["finish_reason"]
            return 200, bool(complete)
        if kind == "malformed":
            st, _, _ = srv.request("POST", "/v1/chat/completions", rng.choice([b"{", b'{"messages": 5}', b"\xff\xfe"]))
            return st, st == 400
        if kind == "oversize":
            st, _, _ = srv.request("POST", "/v1/completions", {"prompt": "word " * 1300, "max_tokens": 8})
            return st, st == 400
        raise AssertionError(kind)

    kinds = ["chat"] * 4 + ["completion"] * 2 + ["stream"] * 4 + ["malformed", "oversize", "disconnect"]

    def worker(seed):
        rng = random.Random(seed)
        while time.time() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            kind = rng.choice(kinds)
            try:
                st, good = one(kind, rng)
            except Exception as e:  # a reset or a timeout on a valid request is a failure
                with lock:
                    stats["incomplete"].append(f"{kind}: {e!r}")
                continue
            with lock:
                stats["done"] += 1
                if st == "disconnect":
                    stats["disconnects"] += 1
                elif st == 503:
                    stats["s503"] += 1
                elif st >= 500 or (kind in ("chat", "completion", "stream") and st != 200):
                    stats["bad_status"].append(f"{kind}: {st}")
                elif not good:
                    stats["incomplete"].append(f"{kind}: status {st} but incomplete")
                elif st == 400:
                    stats["s400"] += 1
                else:
                    stats["ok"] += 1

    t0 = time.time()
    threads = [threading.Thread(target=worker, args=(s,)) for s in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - t0
    print(f"load: {stats['done']} requests in {elapsed:.1f} s with {clients} clients: {stats['ok']} ok, "
          f"{stats['s400']} expected 400s, {stats['disconnects']} disconnects, {stats['s503']} 503s", flush=True)
    check(srv.proc.poll() is None, "load: server still running")
    check(not stats["bad_status"], "load: no 5xx but 503, valid requests 200", str(stats["bad_status"][:5]))
    check(not stats["incomplete"], "load: every valid request answered completely", str(stats["incomplete"][:5]))
    # Enough traffic for the faults to meet running requests; sanitized kernels
    # run several times slower, so fewer requests fit in the same minute there.
    enough = min(total, 40 if SANITIZER else 100)
    check(stats["done"] >= enough, f"load: at least {enough} requests ran", str(stats["done"]))
    # Disconnected streams must give their slots back.
    m = {}
    for _ in range(100):
        m = srv.metrics()
        if m.get("kestrel_kv_slots_in_use") == 0 and m.get("kestrel_queue_depth") == 0:
            break
        time.sleep(0.1)
    check(m.get("kestrel_kv_slots_in_use") == 0 and m.get("kestrel_queue_depth") == 0,
          "load: metrics show 0 slots in use and an empty queue at the end", str(m.get("kestrel_kv_slots_in_use")))
    # The paged cache: no block held by a request; idle slots may keep theirs
    # for prefix reuse, within the pool.
    check(m.get("kestrel_kv_blocks_in_use") == 0 and
          0 <= m.get("kestrel_kv_blocks_cached", -1) <= m.get("kestrel_kv_blocks_total", 0),
          "load: KV cache blocks in use back to 0 at the end",
          f'in use {m.get("kestrel_kv_blocks_in_use")}, cached {m.get("kestrel_kv_blocks_cached")}, '
          f'total {m.get("kestrel_kv_blocks_total")}')
    rss1 = srv.rss_kib()
    print(f"load: RSS {rss0 // 1024} MiB before, {rss1 // 1024} MiB after", flush=True)
    check(rss1 < rss0 + 256 * 1024 and rss1 < 2 * 1024 * 1024, "load: server RSS bounded", f"{rss0} -> {rss1} KiB")


def queue_full():
    srv = ServerProc("--parallel", "1", "--queue-size", "1", "--ctx-size", "512")
    try:
        results = []
        lock = threading.Lock()

        def go():
            st, h, data = srv.request("POST", "/v1/completions",
                                      {"prompt": "Once upon a time", "max_tokens": 48, "temperature": 0}, key=None)
            with lock:
                results.append((st, h.get("Retry-After"), data))

        ts = [threading.Thread(target=go) for _ in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        codes = sorted(r[0] for r in results)
        busy = [r for r in results if r[0] == 503]
        check(busy and all(r[1] for r in busy) and all(c in (200, 503) for c in codes) and codes.count(200) >= 2,
              "queue full -> 503 with Retry-After, others answered", str(codes))
        check(all(error_of(r[2]).get("message") for r in busy), "503 carries an OpenAI-style error")
        queued_disconnect(srv)
    finally:
        code = srv.stop(signal.SIGINT)
        check(code == 0, "second server: SIGINT -> exit 0", str(code))


def queued_disconnect(srv):
    """With the only slot busy, a streamed request that waits in the queue and
    whose client hangs up leaves the queue (nothing was written to notice it by);
    then the running non-streamed one is hung up on and frees the slot."""
    gone = "kestrel_requests_disconnected_total"
    m0 = srv.metrics()
    running = raw_post(srv.port, "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 400,
                                                     "temperature": 0, "ignore_eos": True})
    m, _ = wait_metrics(srv, lambda m: m.get("kestrel_kv_slots_in_use") == 1, 20)
    queued = raw_post(srv.port, "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                                                         "stream": True, "max_tokens": 8})
    m, _ = wait_metrics(srv, lambda m: m.get("kestrel_queue_depth") == 1, 10)
    check(m.get("kestrel_kv_slots_in_use") == 1 and m.get("kestrel_queue_depth") == 1,
          "hang-up while queued: one running, one queued", str(m))
    queued.close()
    m, waited = wait_metrics(srv, lambda m: m.get("kestrel_queue_depth") == 0 and m.get(gone, 0) == m0.get(gone, 0) + 1, 5)
    check(m.get("kestrel_queue_depth") == 0 and m.get(gone, 0) == m0.get(gone, 0) + 1 and waited < 2
          and m.get("kestrel_kv_slots_in_use") == 1,
          "hang-up on a queued stream takes it out of the queue within 2 s", f"{waited:.2f} s, {m}")
    running.close()
    m, waited = wait_metrics(srv, lambda m: m.get("kestrel_kv_slots_in_use") == 0 and m.get(gone, 0) == m0.get(gone, 0) + 2,
                             5)
    check(m.get("kestrel_kv_slots_in_use") == 0 and m.get(gone, 0) == m0.get(gone, 0) + 2 and waited < 2,
          "hang-up on the running non-streamed request frees the slot within 2 s", f"{waited:.2f} s, {m}")


def drain_on_sigterm(srv):
    """A stream running when SIGTERM arrives is finished; the server exits 0."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    conn.request("POST", "/v1/completions", body=json.dumps(
        {"prompt": "Once upon a time", "max_tokens": 40, "temperature": 0, "stream": True, "ignore_eos": True}),
        headers={"Authorization": "Bearer " + KEY, "Content-Type": "application/json"})
    r = conn.getresponse()
    events = sse_events(r)
    first = next(events, None)
    srv.proc.send_signal(signal.SIGTERM)
    rest = list(events)
    conn.close()
    check(first is not None and rest and rest[-1] == "[DONE]", "SIGTERM: the running stream is finished",
          str(rest[-2:]))
    try:
        code = srv.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        code = None
    check(code == 0, "SIGTERM -> exit code 0", str(code))


def main():
    if not os.path.exists(MODEL):
        print("model missing at", MODEL, "(run scripts/fetch_models.sh)")
        return 1
    t0 = time.time()
    srv = ServerProc("--parallel", "4", "--ctx-size", "4096", "--api-key", KEY)
    try:
        functional(srv)
        whole_disconnect(srv)
        load_and_faults(srv)
        drain_on_sigterm(srv)
    except Exception as e:
        bad("unexpected exception", repr(e))
    finally:
        if srv.proc.poll() is None:
            srv.stop()
        if failed:
            print("--- server log ---\n" + srv.log_text())
    try:
        queue_full()
    except Exception as e:
        bad("queue-full run raised", repr(e))
    print(f"{passed} passed, {failed} failed in {time.time() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
