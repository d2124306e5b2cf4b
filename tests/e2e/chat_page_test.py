#!/usr/bin/env python3
"""The chat page at / in a real browser: headless Chromium driven by Selenium
(Debian's chromium and chromedriver) against `kestrel serve` with the SmolLM2
model. Types an API key, a temperature, a token budget and a message, sends it,
and watches the reply bubble: the text must appear in several growing pieces
before the last one (streamed, not delivered whole), end non-empty, and the
request must show in the server's /metrics.

Usage: chat_page_test.py PATH/TO/kestrel   (0 = passed, 77 = skipped, else failed)
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loopback import free_port  # noqa: E402

SKIP = 77
BIN = sys.argv[1]
CACHE = os.environ.get("KESTREL_CACHE", os.path.expanduser("~/.cache/kestrel"))
MODEL = os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
CHROMIUM = os.environ.get("KESTREL_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("KESTREL_CHROMEDRIVER", "/usr/bin/chromedriver")
KEY = "page-key-7"
BUDGET_S = 50  # the whole test, browser start included; the wrapper kills at 60 s
T0 = time.time()

failures = []


class TimeLimit(BaseException):
    """Raised by SIGALRM (our own budget) or SIGTERM (the wrapper's timeout)."""


def check(cond, name, detail=""):
    print(("ok: " if cond else "FAILED: ") + name + ("" if cond else " " + str(detail)), flush=True)
    if not cond:
        failures.append(name)
    return cond


def left():
    return max(1.0, BUDGET_S - (time.time() - T0))


def get(port, path, key=KEY, timeout=10):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if key:
        req.add_header("Authorization", "Bearer " + key)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def metrics(port):
    out = {}
    for line in get(port, "/metrics")[1].decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def start_server(log):
    port = free_port()
    proc = subprocess.Popen([BIN, "serve", "-m", MODEL, "--host", "127.0.0.1", "--port", str(port), "-t", "2",
                             "--parallel", "2", "--ctx-size", "2048", "--api-key", KEY],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            if get(port, "/health", key=None, timeout=2)[0] == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server not healthy after 30 s")


def stop_server(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    # --headless=new: the real browser without a display. --no-sandbox: the
    # setuid/user-namespace sandbox cannot start as root or in a container.
    # --disable-dev-shm-usage: containers give /dev/shm 64 MiB, too little.
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1000,800"):
        opts.add_argument(flag)
    # A driver path in Service makes Selenium skip Selenium Manager (no driver
    # or browser download); should a version call it anyway, it stays offline.
    os.environ["SE_OFFLINE"] = "true"
    service = Service(executable_path=CHROMEDRIVER, log_output=subprocess.DEVNULL)
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(20)
    return driver


# Records every change of the reply bubble's text with its time, in the page:
# the browser's own view of how the answer arrived.
WATCH_JS = """
window.__seen = [];
const log = document.getElementById('log');
new MutationObserver(() => {
  const bubbles = log.querySelectorAll('.msg.assistant, .msg.error');
  const b = bubbles[bubbles.length - 1];
  if (!b) return;
  const t = b.textContent;
  const seen = window.__seen;
  if (!seen.length || seen[seen.length - 1].text !== t) seen.push({t: performance.now(), text: t});
}).observe(log, {childList: true, subtree: true, characterData: true});
"""

REPLY_JS = """
const bubbles = document.querySelectorAll('#log .msg');
const b = bubbles[bubbles.length - 1];
return b ? [b.className, b.textContent, b.dataset.done || '', bubbles.length] : null;
"""


def page_test(driver, port):
    from selenium.webdriver.common.by import By

    driver.get(f"http://127.0.0.1:{port}/")
    check(driver.title == "kestrel chat", "page loads in Chromium", driver.title)
    driver.execute_script(WATCH_JS)

    def fill(elem_id, text):
        e = driver.find_element(By.ID, elem_id)
        e.clear()
        e.send_keys(text)

    fill("key", KEY)
    fill("temp", "0")
    fill("maxtok", "32")
    before = metrics(port)
    fill("input", "Write a short story about a cat who learns to fly.")
    driver.find_element(By.ID, "send").click()

    # What a user watching the page sees, sampled as fast as WebDriver goes.
    polled = []
    final = None
    deadline = time.time() + min(30.0, left())
    while time.time() < deadline:
        r = driver.execute_script(REPLY_JS)
        if r and r[0] != "msg user":
            cls, text, done, n = r
            if not polled or polled[-1] != text:
                polled.append(text)
            if done == "1" or cls == "msg error":
                final = r
                break
        time.sleep(0.005)
    check(final is not None, "the reply completes (data-done) within the time limit", polled[-1:] if polled else "")
    if final is None:
        return
    cls, text, _, n = final
    check(cls == "msg assistant" and n == 2, "one user and one assistant bubble, no error", f"{cls} {n}: {text!r}")
    check(text.strip() != "", "the final answer is non-empty", repr(text))
    partial = [t for t in polled[:-1] if t and text.startswith(t) and t != text]
    check(len(partial) >= 2, "polling saw the answer grow (partial texts before the final one)",
          f"{len(partial)} partial of {len(polled)}: {polled[:4]}")
    seen = driver.execute_script("return window.__seen;")
    texts = [s["text"] for s in seen]
    growing = [t for t in texts if t and t != text and text.startswith(t)]
    in_order = all(len(a) < len(b) for a, b in zip(texts, texts[1:]))
    span_ms = seen[-1]["t"] - seen[0]["t"] if seen else 0
    check(texts and texts[-1] == text and len(growing) >= 3 and in_order and span_ms > 20,
          "the page shows the answer in growing pieces over time (streamed)",
          f"{len(growing)} partial updates over {span_ms:.0f} ms, in order: {in_order}")
    print(f"reply ({len(texts)} updates over {span_ms:.0f} ms, {len(partial)} partial polls): {text!r}", flush=True)

    route = 'kestrel_requests_total{route="/v1/chat/completions",status="200"}'
    after = metrics(port)
    check(after.get(route, 0) == before.get(route, 0) + 1, "/metrics counts the page's request",
          f"{before.get(route)} -> {after.get(route)}")
    check(after.get("kestrel_tokens_generated_total", 0) > before.get("kestrel_tokens_generated_total", 0),
          "/metrics counts the generated tokens")


def main():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the python 'selenium' package")
    if missing:
        print("SKIPPED: chat page browser test: missing " + ", ".join(missing) + " (run scripts/install_deps.sh)")
        return SKIP
    if not os.path.exists(MODEL):
        print("FAILED: model missing at", MODEL, "(run scripts/fetch_models.sh)")
        return 1
    # Past the budget, or on the wrapper's SIGTERM, unwind so that the server
    # and the browser are stopped too.
    def time_limit(sig, _frame):
        raise TimeLimit(f"time limit ({signal.Signals(sig).name} after {time.time() - T0:.1f} s)")

    signal.signal(signal.SIGALRM, time_limit)
    signal.signal(signal.SIGTERM, time_limit)
    signal.alarm(BUDGET_S)
    log = tempfile.NamedTemporaryFile(prefix="kestrel_page_", suffix=".log", delete=False)
    proc, driver = None, None
    try:
        proc, port = start_server(log)
        print(f"server on port {port} after {time.time() - T0:.1f} s", flush=True)
        driver = browser()
        print(f"{driver.capabilities.get('browserName')} {driver.capabilities.get('browserVersion')} "
              f"after {time.time() - T0:.1f} s", flush=True)
        page_test(driver, port)
    except TimeLimit as e:
        check(False, "finished within the time limit", str(e))
    except Exception as e:
        check(False, "unexpected exception", repr(e))
    finally:
        signal.alarm(0)
        if driver is not None:
            try:
                driver.quit()
            except Exception:
                pass
        if proc is not None:
            code = stop_server(proc)
            check(code == 0, "server stops with exit code 0 on SIGINT", str(code))
        if failures:
            with open(log.name, errors="replace") as f:
                print("--- server log ---\n" + f.read()[-3000:])
        os.unlink(log.name)
    print(f"{'FAILED' if failures else 'passed'} in {time.time() - T0:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
