"""GetOutputLocation latency as the number of active instances grows, on each store backend.

For each backend (SQLite, and PostgreSQL: a throwaway server from Debian's binaries, see tests/postgres.py,
run without fsync: the figures are about the store's queries, not the disk), a real ``dicom-host serve``
(gunicorn, 2 workers) on a fresh data dir. Instances are created through the admin API and driven to
INPROGRESS over SOAP until 1, 100 and 1,000 are active; at each step one client with a keep-alive session
calls GetOutputLocation round-robin on every active instance (each call makes a location: a row and a
folder) and the latency of each call is taken.

    python bench/scale.py [--calls 600] [--backends sqlite,postgresql]

Prints p50 and p99 per backend and step, and p50 at 1,000 / p50 at 1 (target: <= 1.2 on both).
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))  # tests/postgres.py: the throwaway PostgreSQL

from soap_overhead import HEADERS, REQUEST, _listener, _stop, _wait_up  # noqa: E402

HOST_NS = "http://dicom.nema.org/PS3.19/HostService-20100825"
STEPS = (1, 100, 1000)
WARM_UP = 200


def _serve(listener: socket.socket, data_dir: Path, store: str, log) -> subprocess.Popen:
    fd = listener.fileno()
    return subprocess.Popen(
        [sys.executable, "-m", "hosting_service.cli.main", "serve", "--bind", f"fd://{fd}", "--data-dir",
         str(data_dir), "--workers", "2", "--log-level", "warning", *(["--store", store] if store else [])],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(fd,))


def _notify(session: requests.Session, host_url: str, state: str) -> None:
    body = (f'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><NotifyStateChanged '
            f'xmlns="{HOST_NS}"><state>{state}</state></NotifyStateChanged></s:Body></s:Envelope>')
    session.post(host_url, data=body, headers={"Content-Type": "text/xml"}, timeout=30).raise_for_status()


def _latencies(session: requests.Session, host_urls: list[str], calls: int) -> list[float]:
    """Seconds per GetOutputLocation, ``calls`` of them round-robin over ``host_urls`` (after a warm-up)."""
    taken = []
    for k in range(WARM_UP + calls):
        url = host_urls[k % len(host_urls)]
        start = time.perf_counter()
        r = session.post(url, data=REQUEST, headers=HEADERS, timeout=30)
        elapsed = time.perf_counter() - start
        if r.status_code != 200:
            raise SystemExit(f"unexpected answer {r.status_code}: {r.text[:300]}")
        if k >= WARM_UP:
            taken.append(elapsed)
    return taken


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def measure(store: str, tmp: Path, calls: int) -> dict[int, tuple[float, float]]:
    """``{active instances: (p50 ms, p99 ms)}`` on a server with this store URL ("" = SQLite default)."""
    from hosting_service.admin.client import AdminClient

    listener = _listener()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    with open(tmp / "server.log", "ab") as log:
        server = _serve(listener, tmp / "data", store, log)
    try:
        _wait_up(url + "/healthz", server)
        admin = AdminClient(url)
        session = requests.Session()
        host_urls: list[str] = []
        results = {}
        for step in STEPS:
            while len(host_urls) < step:
                instance = admin.create_instance()
                for state in ("IDLE", "INPROGRESS"):
                    _notify(session, instance["hostURL"], state)
                host_urls.append(instance["hostURL"])
            taken = _latencies(session, host_urls, calls)
            results[step] = (statistics.median(taken) * 1000, _percentile(taken, 99) * 1000)
        return results
    finally:
        _stop(server)
        listener.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=600, help="GetOutputLocation calls measured per step")
    ap.add_argument("--backends", default="sqlite,postgresql")
    args = ap.parse_args()

    table = {}
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            if backend == "sqlite":
                table[backend] = measure("", tmp, args.calls)
            elif backend == "postgresql":
                from postgres import ThrowawayPostgres

                with ThrowawayPostgres.start() as pg:
                    table[backend] = measure(pg.create_database("dicomhost"), tmp, args.calls)
            else:
                raise SystemExit(f"unknown backend {backend!r} (sqlite, postgresql)")

    print(f"GetOutputLocation latency, one client, {args.calls} calls per step, dicom-host serve with 2 workers")
    for backend, results in table.items():
        for step, (p50, p99) in results.items():
            print(f"{backend:10} {step:5} active instances: p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
        ratio = results[STEPS[-1]][0] / results[STEPS[0]][0]
        print(f"{backend:10} p50@{STEPS[-1]} / p50@{STEPS[0]}: {ratio:.2f} (target <= 1.2)")


if __name__ == "__main__":
    os.environ.setdefault("DICOM_HOST_LOG_LEVEL", "WARNING")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a stopped run still stops its servers
    main()
