"""Helpers shared by the end-to-end scripts that start `kestrel serve` on loopback."""
import socket


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (the server binds it next)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
