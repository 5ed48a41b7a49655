"""GetOutputLocation calls per second through the real service against a canned WSGI response.

Both servers run under the same gunicorn settings (``gthread``, the same workers and threads), both are
driven by the same client processes with keep-alive sessions, in the same run. The real service does all
it does for an application: XML safety checks, normalisation, Spyne, the precondition check against the
store, a new per-call directory and its row in SQLite. The baseline answers the same bytes without looking.

    python bench/soap_overhead.py [--seconds 5] [--clients 4] [--workers 2] [--threads 16]

Prints both rates and the ratio (target: the service at >= 50% of the baseline).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

HOST_NS = "http://dicom.nema.org/PS3.19/HostService-20100825"
ARRAYS_NS = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"
REQUEST = (
    '<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
    f'<s:Body><GetOutputLocation xmlns="{HOST_NS}"><preferredProtocols xmlns:a="{ARRAYS_NS}">'
    "<a:string>file:</a:string><a:string>http:</a:string></preferredProtocols></GetOutputLocation></s:Body></s:Envelope>"
).encode()
HEADERS = {"Content-Type": "text/xml; charset=utf-8",
           "SOAPAction": '"http://dicom.nema.org/PS3.19/IHostService/GetOutputLocation"'}


def _listener() -> socket.socket:
    """A loopback socket bound here and passed to gunicorn (``fd://N``): no other process can take its port."""
    return socket.create_server(("127.0.0.1", 0), backlog=2048)


def _wait_up(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.05)
    raise SystemExit(f"server at {url} did not come up")


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(20)


def _client(url: str, seconds: float, counter) -> None:
    session = requests.Session()
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        r = session.post(url, data=REQUEST, headers=HEADERS, timeout=10)
        if r.status_code != 200:
            raise SystemExit(f"unexpected answer {r.status_code}: {r.text[:300]}")
        n += 1
    with counter.get_lock():
        counter.value += n


def _rate(url: str, seconds: float, clients: int) -> float:
    _client(url, 0.5, multiprocessing.Value("l", 0))  # warm-up: imports, first connections
    counter = multiprocessing.Value("l", 0)
    procs = [multiprocessing.Process(target=_client, args=(url, seconds, counter)) for _ in range(clients)]
    start = time.monotonic()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return counter.value / (time.monotonic() - start)


def _gunicorn(app: str, listener: socket.socket, workers: int, threads: int, env: dict, log) -> subprocess.Popen:
    """``app`` under the worker class ``dicom-host serve`` uses (requests read in the poller)."""
    fd = listener.fileno()
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"fd://{fd}", "--worker-class",
         "hosting_service.worker.PollerReadWorker", "--no-control-socket",
         "--workers", str(workers), "--threads", str(threads), "--log-level", "warning", app],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=HERE, pass_fds=(fd,),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=16)
    args = ap.parse_args()

    from hosting_service.admin.client import AdminClient

    with tempfile.TemporaryDirectory() as tmp:
        log = open(Path(tmp) / "servers.log", "wb")
        listener = _listener()
        port = listener.getsockname()[1]
        env = {**os.environ, "DICOM_HOST_DATA_DIR": str(Path(tmp) / "data"),
               "DICOM_HOST_PUBLIC_URL": f"http://127.0.0.1:{port}", "DICOM_HOST_LOG_LEVEL": "WARNING"}
        service = _gunicorn("hosting_service.app:create_app()", listener, args.workers, args.threads, env, log)
        try:
            _wait_up(f"http://127.0.0.1:{port}/healthz", service)
            instance = AdminClient(f"http://127.0.0.1:{port}").create_instance()
            for state in ("IDLE", "INPROGRESS"):
                body = (f'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><NotifyStateChanged '
                        f'xmlns="{HOST_NS}"><state>{state}</state></NotifyStateChanged></s:Body></s:Envelope>')
                requests.post(instance["hostURL"], data=body, headers={"Content-Type": "text/xml"}).raise_for_status()
            canned_body = requests.post(instance["hostURL"], data=REQUEST, headers=HEADERS).content
            service_rate = _rate(instance["hostURL"], args.seconds, args.clients)
        finally:
            _stop(service)

        canned_listener = _listener()
        canned_port = canned_listener.getsockname()[1]
        (Path(tmp) / "canned.bin").write_bytes(canned_body)
        canned = _gunicorn("canned_app:app", canned_listener, args.workers, args.threads,
                           {**os.environ, "CANNED_BODY": str(Path(tmp) / "canned.bin")}, log)
        try:
            _wait_up(f"http://127.0.0.1:{canned_port}/", canned)
            baseline_rate = _rate(f"http://127.0.0.1:{canned_port}/", args.seconds, args.clients)
        finally:
            _stop(canned)

    print(f"service  GetOutputLocation: {service_rate:8.1f} calls/s")
    print(f"baseline canned response:   {baseline_rate:8.1f} calls/s")
    print(f"ratio service/baseline: {service_rate / baseline_rate:.2f} (target >= 0.50)")


if __name__ == "__main__":
    main()
