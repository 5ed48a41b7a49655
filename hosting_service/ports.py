"""A loopback port for a hosted application's own ApplicationService (its ``--applicationURL``).

The host cannot bind the port for the application, which listens in its own process: the port is free
when chosen and the application binds it moments later. The host's own servers never use this: they
bind their socket first and pass it on (``serve --bind fd://N``).

The port is drawn at random from *below* the kernel's ephemeral range (``ip_local_port_range``). The
kernel hands out ephemeral ports to every outgoing connection and to every ``bind(0)``, so a port taken
from that range can be given to someone else's connection before the application binds it (seen when
many clients run at once). Below the range only another caller drawing the same number can collide.
"""
from __future__ import annotations

import random
import socket
from pathlib import Path

_LOWEST = 10_000
"""Below this are the registered ports of well-known services; the draw stays above them."""
_ATTEMPTS = 64


def ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (Linux default where it cannot be read)."""
    try:
        low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (released before the caller returns),
    outside the ephemeral range where possible."""
    low, _ = ephemeral_range()
    candidates = range(_LOWEST, low) if low > _LOWEST + _ATTEMPTS else range(0)
    for port in random.sample(candidates, min(_ATTEMPTS, len(candidates))):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # a machine whose range starts low
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
