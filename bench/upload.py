"""Streaming upload to an http: output location against plain file I/O, same run, same filesystem.

Starts ``dicom-host serve`` (one gthread worker, so its memory is the serving worker's), drives an
instance to INPROGRESS over SOAP, gets an http: location with GetOutputLocation and PUTs a body of each
size to it (Content-Length; a 16 MiB random block sent again and again with ``sendfile`` from the page
cache, so that the client, on the same cores, costs the server little). The baseline writes the same
bytes to a file on the same filesystem (1 MiB writes, then fsync, as the upload fsyncs). Each
measurement is repeated, alternating the two; medians are compared.

    python bench/upload.py [--sizes-mib 100,1024] [--repeat 3] [--dir DIR]

Prints per size: both rates, their ratio (target >= 80%), and the serving worker's peak RSS after the
uploads of that size (VmHWM; target < 64 MiB whatever the size), next to its RSS before any upload.
Also prints how fast this CPU computes SHA-256 on one core: the 201 carries the body's SHA-256, so no
upload can be faster than that, however fast the disk.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

HOST_NS = "http://dicom.nema.org/PS3.19/HostService-20100825"
ARRAYS_NS = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"
ACTION = "http://dicom.nema.org/PS3.19/IHostService/"
BLOCK = 16 << 20
MIB = 1 << 20


def soap(host_url: str, operation: str, inner: str) -> str:
    body = (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
            f'<s:Body><{operation} xmlns="{HOST_NS}">{inner}</{operation}></s:Body></s:Envelope>')
    r = requests.post(host_url, data=body.encode(), timeout=30,
                      headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{ACTION}{operation}"'})
    r.raise_for_status()
    return r.text


class Server:
    def __init__(self, data_dir: Path):
        with socket.create_server(("127.0.0.1", 0)) as listener:  # bound here, passed on: no port race
            self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
            self.log = open(data_dir.parent / "server.log", "wb")
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hosting_service.cli.main", "serve", "--bind", f"fd://{listener.fileno()}",
                 "--data-dir", str(data_dir), "--workers", "1", "--output-retention", "delete"],
                env={**os.environ, "DICOM_HOST_UPLOAD_QUOTA": str(64 << 30),
                     "DICOM_HOST_UPLOAD_MAX_REQUEST": str(64 << 30)},
                stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(listener.fileno(),))
        deadline = time.monotonic() + 30
        while True:
            try:
                self.worker_pid = requests.get(self.url + "/healthz", timeout=1).json()["pid"]
                return
            except requests.RequestException:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("server did not start; see server.log")
                time.sleep(0.1)

    def rss_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.worker_pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"no {field} for worker {self.worker_pid}")

    def new_location(self) -> tuple[str, str]:
        inst = requests.post(self.url + "/admin/instances", json={}, timeout=30).json()
        for state in ("IDLE", "INPROGRESS"):
            soap(inst["hostURL"], "NotifyStateChanged", f"<state>{state}</state>")
        answer = soap(inst["hostURL"], "GetOutputLocation",
                      f'<preferredProtocols xmlns:a="{ARRAYS_NS}"><a:string>http:</a:string></preferredProtocols>')
        uri = answer.split("GetOutputLocationResult>")[1].split("<")[0]
        return inst["id"], uri

    def end(self, instance_id: str) -> None:
        requests.delete(f"{self.url}/admin/instances/{instance_id}", params={"reason": "bench"}, timeout=60)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(30)


def upload(url: str, block_file: Path, size: int) -> float:
    """Seconds from the first byte sent to the 201."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port)) as sock, open(block_file, "rb") as block:
        sock.sendall(f"PUT {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/octet-stream\r\n"
                     f"Content-Length: {size}\r\n\r\n".encode())
        start = time.perf_counter()
        sent = 0
        while sent < size:
            n = min(BLOCK, size - sent)
            block.seek(0)
            sock.sendfile(block, 0, n)
            sent += n
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        elapsed = time.perf_counter() - start
    if response.status != 201:
        raise RuntimeError(f"upload answered {response.status}: {body[:300]!r}")
    return elapsed


def plain_write(path: Path, block: bytes, size: int) -> float:
    start = time.perf_counter()
    view, written = memoryview(block), 0
    with open(path, "wb") as f:
        while written < size:
            n = min(MIB, size - written)
            f.write(view[written % len(block): written % len(block) + n])
            written += n
        f.flush()
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - start
    path.unlink()
    return elapsed


def sha256_rate(block: bytes, size: int) -> float:
    """MiB/s of SHA-256 over ``size`` bytes of ``block`` on one core."""
    digest, view, start = hashlib.sha256(), memoryview(block), time.perf_counter()
    for offset in range(0, size, MIB):
        digest.update(view[offset % len(block): offset % len(block) + MIB])
    return size / MIB / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mib", default="100,1024")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", help="where to put the data dir and the baseline file (default: a temp dir)")
    args = parser.parse_args()
    sizes = [int(s) * MIB for s in args.sizes_mib.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-upload-", dir=args.dir))
    block = os.urandom(BLOCK)
    block_file = work / "block.bin"
    block_file.write_bytes(block)
    server = Server(work / "data")
    try:
        print(f"serving worker pid {server.worker_pid}, RSS before any upload {server.rss_kib('VmRSS') / 1024:.1f} MiB")
        for size in sizes:
            up, plain = [], []
            for _ in range(args.repeat):
                plain.append(plain_write(work / "baseline.bin", block, size))
                instance_id, uri = server.new_location()
                up.append(upload(uri + "body.bin", block_file, size))
                server.end(instance_id)
            up_rate, plain_rate = size / MIB / statistics.median(up), size / MIB / statistics.median(plain)
            print(f"{size // MIB:>5} MiB: upload {up_rate:5.0f} MiB/s, plain write {plain_rate:5.0f} MiB/s, "
                  f"ratio {up_rate / plain_rate:6.1%} (target >= 80%); worker peak RSS "
                  f"{server.rss_kib('VmHWM') / 1024:.1f} MiB (target < 64 MiB); SHA-256 alone "
                  f"{max(sha256_rate(block, size) for _ in range(3)):5.0f} MiB/s")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
