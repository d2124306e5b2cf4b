#!/usr/bin/env python3
"""Generate target-model responses for the EAGLE-3 training corpus.

Starts (or talks to) a `kestrel serve` with the target model and, for every
prompt of make_prompts.py's JSONL, asks /v1/chat/completions with the system
prompt "You are a helpful assistant." It keeps one request in flight per
server slot so continuous batching decodes them together, and appends to
texts.jsonl one line per finished prompt:

  {"id", "text", "category", "temperature", "finish_reason",
   "prompt_tokens", "completion_tokens"}

"text" is the whole conversation as the model saw and produced it, in the
ChatML that kestrel renders for this model (its GGUF template is detected as
"chatml"; see src/tokenizer/chat_template.cpp):

  <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n
  <|im_start|>user\\n{user}<|im_end|>\\n
  <|im_start|>assistant\\n{response}<|im_end|>\\n

The closing "<|im_end|>\\n" is written only when the model ended its turn
(finish_reason "stop"); a reply cut at max_tokens ("length") ends with the
last generated text. The system message is sent explicitly: kestrel's chatml
rendering does not insert the GGUF template's default system prompt.

Temperature: 0 for most prompts, 0.7 (top_p 1, seeded per prompt) for about
--hot-fraction of them, chosen from a hash of the id so a re-run makes the
same choice. Resumable: ids already in the output are skipped. Progress on
stderr. Stops submitting at --max-tokens-total generated tokens or after
--minutes, then lets the requests in flight finish. Standard library only.

Examples:
  generate.py --slots 4 --minutes 35 --max-tokens-total 60000
  generate.py --server http://127.0.0.1:8080 --limit 20 --out /tmp/t.jsonl
"""

import argparse
import hashlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
CACHE = os.path.expanduser("~/.cache/kestrel")
SYSTEM = "You are a helpful assistant."


def chatml(system, user, response, ended):
    text = (f"<|im_start|>system\n{system}<|im_end|>\n"
            f"<|im_start|>user\n{user}<|im_end|>\n"
            f"<|im_start|>assistant\n{response}")
    return text + "<|im_end|>\n" if ended else text


def id_hash(pid):
    return int.from_bytes(hashlib.sha256(pid.encode("utf-8")).digest()[:8], "big")


def post(url, body, timeout):
    req = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read().decode("utf-8"))


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode("utf-8"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, log_path):
    port = args.port or free_port()
    cmd = [args.kestrel, "serve", "-m", args.model, "-t", str(args.threads), "--parallel", str(args.slots),
           "-c", str(args.ctx), "--port", str(port), "--host", "127.0.0.1"] + args.server_arg
    log = open(log_path, "ab")
    log.write(("\n# " + " ".join(cmd) + "\n").encode())
    log.flush()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"kestrel serve exited with {proc.returncode}; see {log_path}")
        try:
            if get(url + "/health").get("status") == "ok":
                return proc, url
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"kestrel serve did not become healthy in 120 s; see {log_path}")


def stop_server(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def proc_cpu_seconds(pid):
    """utime + stime of a process, from /proc (None when unavailable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def fmt_time(s):
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--prompts", default=os.path.join(CACHE, "eagle3", "prompts.jsonl"))
    ap.add_argument("--out", default=os.path.join(CACHE, "eagle3", "qwen0.5b", "texts.jsonl"))
    ap.add_argument("--server", help="URL of a running kestrel serve (default: start one)")
    ap.add_argument("--kestrel", default=os.path.join(REPO, "build", "kestrel"))
    ap.add_argument("--model", default=os.path.join(CACHE, "models", "qwen2.5-coder-0.5b-instruct.gguf"))
    ap.add_argument("--slots", type=int, default=4, help="server slots (--parallel) = requests in flight")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=0, help="server -c (default: 2048 per slot)")
    ap.add_argument("--port", type=int, default=0, help="port for the started server (default: a free one)")
    ap.add_argument("--server-arg", action="append", default=[], help="extra argument for kestrel serve")
    ap.add_argument("--system", default=SYSTEM)
    ap.add_argument("--max-tokens", type=int, default=384, help="max_tokens per request")
    ap.add_argument("--hot-fraction", type=float, default=0.3, help="share of prompts sampled at --hot-temp")
    ap.add_argument("--hot-temp", type=float, default=0.7)
    ap.add_argument("--max-tokens-total", type=int, default=0, help="stop after this many generated tokens (0 = no limit)")
    ap.add_argument("--minutes", type=float, default=0, help="stop submitting after this many minutes (0 = no limit)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N prompts of the file")
    ap.add_argument("--verify", type=int, default=20,
                    help="re-tokenize the first N texts with /tokenize and compare with the usage counts")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per request")
    ap.add_argument("--stats", help="append a JSON summary line to this file at the end")
    args = ap.parse_args()
    if args.ctx == 0:
        args.ctx = 2048 * args.slots

    prompts = []
    with open(args.prompts, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                prompts.append(json.loads(line))
    if args.limit:
        prompts = prompts[:args.limit]
    done_ids = set()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    if os.path.exists(args.out):
        with open(args.out, encoding="utf-8") as f:
            for line in f:
                try:
                    done_ids.add(json.loads(line)["id"])
                except (ValueError, KeyError):
                    pass  # a torn last line from a killed run; that prompt is redone
    todo = [p for p in prompts if p["id"] not in done_ids]
    total = len(prompts)
    print(f"[gen] {len(done_ids & {p['id'] for p in prompts})}/{total} already done, {len(todo)} to go -> {args.out}",
          file=sys.stderr, flush=True)
    if not todo:
        return

    proc = None
    if args.server:
        url = args.server.rstrip("/")
    else:
        log_path = os.path.join(os.path.dirname(os.path.abspath(args.out)), "server.log")
        proc, url = start_server(args, log_path)
        print(f"[gen] started kestrel serve pid {proc.pid} at {url} (-t {args.threads} --parallel {args.slots} "
              f"-c {args.ctx}); log {log_path}", file=sys.stderr, flush=True)
    try:
        props = get(url + "/props")
        slots = int(props.get("total_slots", args.slots))
    except (OSError, ValueError):
        slots = args.slots
    n_workers = slots

    work = queue.Queue()
    for p in todo:
        work.put(p)
    lock = threading.Lock()
    state = {"done": 0, "gen_tokens": 0, "prompt_tokens": 0, "errors": 0, "stop": False, "verified": 0,
             "verify_mismatch": 0, "finish": {}}
    t0 = time.time()
    load0 = os.getloadavg()
    cpu0 = proc_cpu_seconds(proc.pid) if proc else None
    out_f = open(args.out, "a", encoding="utf-8")

    def should_stop():
        if args.max_tokens_total and state["gen_tokens"] >= args.max_tokens_total:
            return True
        if args.minutes and time.time() - t0 >= args.minutes * 60:
            return True
        return False

    def verify(pid, text, usage, ended):
        try:
            toks = post(url + "/tokenize", {"content": text, "add_special": True}, 60)["tokens"]
        except (OSError, ValueError, KeyError) as e:
            print(f"[gen] verify {pid}: /tokenize failed: {e}", file=sys.stderr, flush=True)
            return
        expect = usage["prompt_tokens"] + usage["completion_tokens"] + (2 if ended else 0)
        with lock:
            state["verified"] += 1
            if len(toks) != expect:
                state["verify_mismatch"] += 1
                print(f"[gen] verify {pid}: text re-tokenizes to {len(toks)} tokens, usage says {expect} "
                      f"(prompt {usage['prompt_tokens']} + completion {usage['completion_tokens']}"
                      f"{' + <|im_end|> + newline' if ended else ''})", file=sys.stderr, flush=True)

    def worker():
        while True:
            with lock:
                if state["stop"] or should_stop():
                    state["stop"] = True
                    return
            try:
                p = work.get_nowait()
            except queue.Empty:
                return
            h = id_hash(p["id"])
            hot = (h % 10000) < args.hot_fraction * 10000
            body = {
                "messages": [{"role": "system", "content": args.system}, {"role": "user", "content": p["user"]}],
                "max_tokens": args.max_tokens,
                "temperature": args.hot_temp if hot else 0.0,
            }
            if hot:
                body["top_p"] = 1.0
                body["seed"] = (h >> 16) & 0x7FFFFFFF
            t_req = time.time()
            try:
                r = post(url + "/v1/chat/completions", body, args.timeout)
            except urllib.error.HTTPError as e:
                detail = e.read().decode("utf-8", "replace")[:500]
                with lock:
                    state["errors"] += 1
                print(f"[gen] ERROR {p['id']}: HTTP {e.code}: {detail}", file=sys.stderr, flush=True)
                continue
            except (OSError, ValueError) as e:
                with lock:
                    state["errors"] += 1
                print(f"[gen] ERROR {p['id']}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                if proc is not None and proc.poll() is not None:
                    print(f"[gen] kestrel serve exited with {proc.returncode}", file=sys.stderr, flush=True)
                    with lock:
                        state["stop"] = True
                continue
            choice = r["choices"][0]
            usage = r.get("usage", {})
            resp = choice["message"]["content"]
            fin = choice.get("finish_reason")
            ended = fin == "stop"
            text = chatml(args.system, p["user"], resp, ended)
            rec = {"id": p["id"], "text": text, "category": p.get("category"), "temperature": body["temperature"],
                   "finish_reason": fin, "prompt_tokens": usage.get("prompt_tokens"),
                   "completion_tokens": usage.get("completion_tokens")}
            do_verify = False
            with lock:
                out_f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                out_f.flush()
                state["done"] += 1
                state["gen_tokens"] += usage.get("completion_tokens", 0)
                state["prompt_tokens"] += usage.get("prompt_tokens", 0)
                state["finish"][fin] = state["finish"].get(fin, 0) + 1
                el = time.time() - t0
                tps = state["gen_tokens"] / el if el > 0 else 0.0
                n_done = len(done_ids) + state["done"]
                # ETA: the nearest of the prompt count, the token budget and the time budget
                etas = []
                if state["done"]:
                    etas.append(el / state["done"] * (len(todo) - state["done"]))
                if args.max_tokens_total and tps > 0:
                    etas.append(max(0.0, args.max_tokens_total - state["gen_tokens"]) / tps)
                if args.minutes:
                    etas.append(args.minutes * 60 - el)
                eta = min(etas) if etas else 0
                do_verify = state["done"] <= args.verify
                print(f"[gen] {n_done}/{total} {p['id']} t={body['temperature']} {fin} "
                      f"{usage.get('completion_tokens')} tok in {time.time() - t_req:.1f}s | "
                      f"{state['gen_tokens']} tok, {tps:.1f} tok/s, elapsed {fmt_time(el)}, ETA {fmt_time(eta)}",
                      file=sys.stderr, flush=True)
            if do_verify and usage:
                verify(p["id"], text, usage, ended)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(n_workers)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(1.0)
    except KeyboardInterrupt:
        print("[gen] interrupted; finished lines are kept", file=sys.stderr, flush=True)
    finally:
        out_f.close()
        el = time.time() - t0
        summary = {"slots": slots, "threads": args.threads, "done": state["done"], "errors": state["errors"],
                   "gen_tokens": state["gen_tokens"], "prompt_tokens": state["prompt_tokens"],
                   "seconds": round(el, 1), "gen_tok_per_s": round(state["gen_tokens"] / el, 2) if el else 0,
                   "finish": state["finish"], "verified": state["verified"],
                   "verify_mismatch": state["verify_mismatch"], "out": args.out,
                   "loadavg_start": [round(x, 2) for x in load0], "loadavg_end": [round(x, 2) for x in os.getloadavg()]}
        cpu1 = proc_cpu_seconds(proc.pid) if proc else None
        if cpu0 is not None and cpu1 is not None:
            summary["server_cpu_s"] = round(cpu1 - cpu0, 1)
            if cpu1 > cpu0:
                summary["gen_tok_per_server_cpu_s"] = round(state["gen_tokens"] / (cpu1 - cpu0), 2)
        print("[gen] summary " + json.dumps(summary), file=sys.stderr, flush=True)
        if args.stats:
            with open(args.stats, "a", encoding="utf-8") as f:
                f.write(json.dumps(summary) + "\n")
        stop_server(proc)


if __name__ == "__main__":
    main()
