"""GetOutputLocation latency as the number of active instances grows, on each store backend.

For each backend (SQLite, and PostgreSQL: a throwaway server from Debian's binaries, see tests/postgres.py,
run without fsync: the figures are about the store's queries, not the disk), three real ``dicom-host serve``
(gunicorn, 2 workers each), each on a store and data dir of its own, with 1, 100 and 1,000 active instances
(created through the admin API, driven to INPROGRESS over SOAP). One client with a keep-alive session per
server then calls GetOutputLocation on the three in turn, round-robin over each one's instances (each call
makes a location: a row and a folder), and takes the latency of each call. Taking turns puts the three
under the same load from whatever else runs on the machine, so the ratio compares like with like.

    python bench/scale.py [--calls 600] [--backends sqlite,postgresql]

Prints p50 and p99 per backend and number of instances, and p50 at 1,000 / p50 at 1 (target: <= 1.2 on both).
A fourth series, on the 1,000-instance server with every call on one instance, tells the cost of the number
of instances (the store) from that of spreading calls over them (caches, directories).
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
ONE_OF_MANY = -1
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


def _call(session: requests.Session, url: str) -> float:
    """Seconds one GetOutputLocation takes."""
    start = time.perf_counter()
    r = session.post(url, data=REQUEST, headers=HEADERS, timeout=30)
    elapsed = time.perf_counter() - start
    if r.status_code != 200:
        raise SystemExit(f"unexpected answer {r.status_code}: {r.text[:300]}")
    return elapsed


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def measure(stores: list[str], tmp: Path, calls: int) -> dict[int, tuple[float, float]]:
    """``{active instances: (p50 ms, p99 ms)}``, one server per step of :data:`STEPS` on the store URL of the
    same rank in ``stores`` ("" = the SQLite default in its data dir), and under :data:`ONE_OF_MANY` the
    largest server with every call on one instance."""
    from hosting_service.admin.client import AdminClient

    listeners, servers = [], []
    try:
        with open(tmp / "servers.log", "ab") as log:
            for step, store in zip(STEPS, stores):
                listeners.append(_listener())
                servers.append(_serve(listeners[-1], tmp / f"data-{step}", store, log))
        urls = [f"http://127.0.0.1:{listener.getsockname()[1]}" for listener in listeners]
        sessions = [requests.Session() for _ in STEPS]
        host_urls: list[list[str]] = []
        for url, server, session, step in zip(urls, servers, sessions, STEPS):
            _wait_up(url + "/healthz", server)
            admin = AdminClient(url)
            mine = []
            for _ in range(step):
                instance = admin.create_instance()
                for state in ("IDLE", "INPROGRESS"):
                    _notify(session, instance["hostURL"], state)
                mine.append(instance["hostURL"])
            host_urls.append(mine)
        # the last series: the largest server, every call on its first instance (how much of a difference
        # comes from the number of instances, how much from spreading the calls over them)
        series = [*zip(sessions, host_urls), (requests.Session(), host_urls[-1][:1])]
        taken: list[list[float]] = [[] for _ in series]
        for k in range(WARM_UP + calls):
            for n, (session, mine) in enumerate(series):
                elapsed = _call(session, mine[k % len(mine)])
                if k >= WARM_UP:
                    taken[n].append(elapsed)
        figures = [(statistics.median(t) * 1000, _percentile(t, 99) * 1000) for t in taken]
        return {**dict(zip(STEPS, figures)), ONE_OF_MANY: figures[-1]}
    finally:
        for server in servers:
            _stop(server)
        for listener in listeners:
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
                table[backend] = measure([""] * len(STEPS), tmp, args.calls)
            elif backend == "postgresql":
                from postgres import ThrowawayPostgres

                with ThrowawayPostgres.start() as pg:
                    table[backend] = measure([pg.create_database(f"scale{step}") for step in STEPS], tmp, args.calls)
            else:
                raise SystemExit(f"unknown backend {backend!r} (sqlite, postgresql)")

    print(f"GetOutputLocation latency: {args.calls} calls per server, taking turns; dicom-host serve, 2 workers")
    for backend, results in table.items():
        for step, (p50, p99) in results.items():
            what = (f"{step:5} active instances" if step != ONE_OF_MANY
                    else f"{STEPS[-1]:5} active, calls on one")
            print(f"{backend:10} {what}: p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
        ratio = results[STEPS[-1]][0] / results[STEPS[0]][0]
        print(f"{backend:10} p50@{STEPS[-1]} / p50@{STEPS[0]}: {ratio:.2f} (target <= 1.2)")


if __name__ == "__main__":
    os.environ.setdefault("DICOM_HOST_LOG_LEVEL", "WARNING")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a stopped run still stops its servers
    main()
