"""Helpers shared by the end-to-end scripts that start `kestrel serve` on loopback."""
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import time


# Set by scripts/test_sanitized.sh: instrumented builds run 5-50x slower, so a
# server may take minutes to start (the accuracy guard measures at start).
SANITIZER = os.environ.get("KESTREL_SANITIZER", "")


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (the server binds it next)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sse_events(resp):
    """The data payloads of a server-sent-event response (http.client), as they arrive."""
    while True:
        line = resp.readline()
        if not line:
            return
        line = line.decode().rstrip("\n")
        if line.startswith("data: "):
            yield line[6:]


_OWN_KEY = object()  # request(): use the server's own API key


class KestrelServer:
    """`kestrel serve -m MODEL` on 127.0.0.1 (2 threads) with EXTRA flags, started
    and waited for until /health answers; its log goes to a temporary file."""

    def __init__(self, bin_, model, *extra, key=None, health_timeout=None):
        if health_timeout is None:
            health_timeout = 300 if SANITIZER else 60
        self.port = free_port()
        self.key = key
        self.log = tempfile.NamedTemporaryFile(prefix="kestrel_serve_", suffix=".log", delete=False)
        args = [bin_, "serve", "-m", model, "--host", "127.0.0.1", "--port", str(self.port), "-t", "2"] + list(extra)
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + health_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited early: " + self.log_text())
            try:
                status, _, _ = self.request("GET", "/health")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not healthy after {health_timeout} s: " + self.log_text())

    def log_text(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()[-3000:]

    def request(self, method, path, body=None, key=_OWN_KEY, headers=None, timeout=60):
        """(status, headers, body bytes). A dict body is sent as JSON; key=None sends no key."""
        if key is _OWN_KEY:
            key = self.key
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = dict(headers or {})
        if key:
            h["Authorization"] = "Bearer " + key
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            return r.status, dict(r.getheaders()), data
        finally:
            conn.close()

    def metrics(self):
        """/metrics as {sample name with labels: value}."""
        _, _, data = self.request("GET", "/metrics")
        out = {}
        for line in data.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Signals the server and returns its exit code (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
