"""A loopback port for a hosted application's own ApplicationService (its ``--applicationURL``).

The host cannot bind the port for the application, which listens in its own process: the port is free
when chosen and the application binds it moments later. The host's own servers never use this: they
bind their socket first and pass it on (``serve --bind fd://N``).
"""
from __future__ import annotations

import socket


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (released before the caller returns)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
