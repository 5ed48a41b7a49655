"""The server ``dicom-host run`` starts for itself is stopped quickly, whatever its kept-alive connections
are doing at that moment."""
from __future__ import annotations

import threading
import time

import requests

from hosting_service.orchestration.server import EmbeddedServer

STOP_BOUND = 3.0
"""Seconds a stop may take; gunicorn's quick-stop deadlock made some take 10 (its graceful timeout)."""


def _busy(url: str, stop: threading.Event) -> None:
    """Requests on one kept-alive connection until the server goes away, then close it."""
    with requests.Session() as session:
        while not stop.is_set():
            try:
                session.get(url + "/healthz", timeout=5)
            except requests.RequestException:
                return


def test_stops_quickly_while_kept_alive_connections_are_busy(tmp_path):
    slow = []
    for cycle in range(20):
        server = EmbeddedServer(data_dir=tmp_path / f"d{cycle}")
        server.start()
        stop = threading.Event()
        clients = [threading.Thread(target=_busy, args=(server.url, stop)) for _ in range(4)]
        for client in clients:
            client.start()
        time.sleep(0.2)  # requests flow on every connection: the server stops in the middle of them
        start = time.monotonic()
        server.stop()
        took = time.monotonic() - start
        stop.set()
        for client in clients:
            client.join()
        if took > STOP_BOUND:
            slow.append((cycle, round(took, 1)))
    assert not slow, f"stops over {STOP_BOUND} s (cycle, seconds): {slow}"
