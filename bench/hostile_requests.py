"""Worker CPU and memory of the most expensive SOAP requests a peer can send, against a real server.

One ``dicom-host serve`` worker (gthread); an instance at INPROGRESS with one offered input. Each request
below is sent a few times; for each the script prints the worker's CPU time per request, its peak RSS above
the baseline (the kernel's high-water mark, reset before each request) and its RSS after the answers, and
the answer (HTTP status and faultcode). Targets: at most 1 s of CPU and 100 MB of peak RSS per request, and
the RSS back near the baseline afterwards.

    python bench/hostile_requests.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import gzip
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from hosting_service.config import Settings  # noqa: E402
from hosting_service.wire.faults import SOAP_ENV_NS  # noqa: E402
from hosting_service.wire.types import ARRAYS_NS, HOST_NS  # noqa: E402

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK = os.sysconf("SC_CLK_TCK")


def _envelope(payload: str) -> bytes:
    return f'<s:Envelope xmlns:s="{SOAP_ENV_NS}"><s:Body>{payload}</s:Body></s:Envelope>'.encode()


def _uuids(tag: str, values) -> str:
    return "".join(f"<{tag}><Uuid>{v}</Uuid></{tag}>" for v in values)


def _descriptor(i: int) -> str:
    return ("<ObjectDescriptor><ClassUID><Uid>1.2.840.10008.5.1.4.1.1.7</Uid></ClassUID>"
            f"<DescriptorUuid><Uuid>{uuid.UUID(int=i)}</Uuid></DescriptorUuid><MimeType><Type>application/dicom</Type>"
            "</MimeType><Modality><Modality>OT</Modality></Modality><TransferSyntaxUID><Uid>1.2.840.10008.1.2.1</Uid>"
            "</TransferSyntaxUID></ObjectDescriptor>")


def requests_to_send(source: str, limits: Settings) -> list[tuple[str, bytes, dict]]:
    """``(what, body, extra headers)`` of each hostile request."""
    big = _envelope(f'<ReleaseData xmlns="{HOST_NS}"><objects>' + "<UUID/>" * (16 * 2**20 // 7)
                    + "</objects></ReleaseData>")
    dense = _envelope(f'<ReleaseData xmlns="{HOST_NS}"><objects>' + "<UUID/>" * (limits.soap_max_body_bytes // 7 - 40)
                      + "</objects></ReleaseData>")
    per_descriptor = 11  # elements in one ObjectDescriptor
    descriptors = min(limits.soap_max_items, (limits.soap_max_elements - 10) // per_descriptor)
    announce = _envelope(f'<NotifyDataAvailable xmlns="{HOST_NS}"><data><ObjectDescriptors>'
                         + "".join(_descriptor(i) for i in range(descriptors))
                         + "</ObjectDescriptors></data><lastData>false</lastData></NotifyDataAvailable>")
    at_cap = limits.soap_max_items
    release_cap = _envelope(f'<ReleaseData xmlns="{HOST_NS}"><objects>' + _uuids("UUID", (uuid.uuid4() for _ in range(at_cap)))
                            + "</objects></ReleaseData>")
    duplicates = _envelope(f'<GetData xmlns="{HOST_NS}"><objects>' + _uuids("UUID", [source] * at_cap)
                           + f'</objects><acceptableTransferSyntaxes><UID><Uid>1.2.840.10008.1.2.1</Uid></UID>'
                           "</acceptableTransferSyntaxes><includeBulkData>true</includeBulkData></GetData>")
    refused = _envelope(f'<GetData xmlns="{HOST_NS}"><objects>'
                        + _uuids("UUID", (uuid.uuid4() for _ in range((limits.soap_max_elements - 10) // 2)))
                        + "</objects></GetData>")
    bomb = gzip.compress(_envelope(f'<ReleaseData xmlns="{HOST_NS}"><objects>' + " " * (256 * 2**20) + "</objects></ReleaseData>"),
                         compresslevel=9)
    return [
        (f"ReleaseData, 16 MiB, {16 * 2**20 // 7} empty items", big, {}),
        (f"ReleaseData, 16 MiB, chunked (no Content-Length)", big, {"chunked": "1"}),
        (f"ReleaseData at the body limit, {len(dense) // 7} empty items", dense, {}),
        (f"ReleaseData, {at_cap} UUIDs (the item cap)", release_cap, {}),
        (f"GetData, {at_cap} copies of one UUID", duplicates, {}),
        (f"NotifyDataAvailable, {descriptors} descriptors ({len(announce) // 1024} KiB)", announce, {}),
        (f"gzip bomb, {len(bomb) // 1024} KiB expanding to 256 MiB", bomb, {"Content-Encoding": "gzip"}),
        (f"GetData, {(limits.soap_max_elements - 10) // 2} UUIDs, refused for its state (IDLE)", refused, {"state": "IDLE"}),
    ]


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def _post(url: str, body: bytes, headers: dict) -> str:
    headers = {"Content-Type": "text/xml; charset=utf-8", **headers}
    data = body
    if headers.pop("chunked", None):
        data = (body[i : i + 65536] for i in range(0, len(body), 65536))
    try:
        r = requests.post(url, data=data, headers=headers, timeout=120)
    except requests.ConnectionError as exc:  # the server may answer and close before reading everything
        return f"connection closed ({type(exc).__name__})"
    code = ""
    if b"faultcode" in r.content:
        code = r.content.split(b"<faultcode>")[1].split(b"</faultcode>")[0].decode()
    return f"{r.status_code} {code}".strip()


def _notify(url: str, state: str) -> None:
    r = requests.post(url, data=_envelope(f'<NotifyStateChanged xmlns="{HOST_NS}"><state>{state}</state></NotifyStateChanged>'),
                      headers={"Content-Type": "text/xml"}, timeout=30)
    r.raise_for_status()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from hosting_service.admin.client import AdminClient
    from hosting_service.dicom.samples import write_sample_series

    with tempfile.TemporaryDirectory() as tmp:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "hosting_service.cli.main", "serve", "--bind", f"127.0.0.1:{port}",
             "--data-dir", str(Path(tmp) / "data"), "--workers", "1", "--threads", "4", "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=open(Path(tmp) / "server.log", "wb"), start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    pid = requests.get(base + "/healthz", timeout=1).json()["pid"]
                    break
                except requests.RequestException:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("the server did not come up")
                    time.sleep(0.1)
            admin = AdminClient(base)
            write_sample_series(Path(tmp) / "in", slices=1, size=16)
            instance = admin.create_instance()
            offered = admin.offer_inputs(instance["id"], [str(Path(tmp) / "in")])["availableData"]
            source = offered.Patients[0].Studies[0].Series[0].ObjectDescriptors[0].DescriptorUuid
            url = instance["hostURL"]
            _notify(url, "IDLE")
            _notify(url, "INPROGRESS")
            for _ in range(20):  # warm the worker up: imports, first connections, caches
                _notify(url, "INPROGRESS")
            baseline = _status(pid, "VmRSS")
            print(f"worker baseline RSS {baseline / 2**20:.1f} MB")
            print(f"{'request':58} {'answer':18} {'CPU s':>6} {'peak MB':>8} {'after MB':>8}")
            for what, body, headers in requests_to_send(source, Settings.from_env()):
                state = headers.get("state")
                headers = {k: v for k, v in headers.items() if k != "state"}
                if state:
                    _notify(url, state)
                worst_cpu, worst_peak, answer = 0.0, 0, ""
                for _ in range(args.repeat):
                    _reset_peak(pid)
                    before = _cpu(pid)
                    answer = _post(url, body, headers)
                    worst_cpu = max(worst_cpu, _cpu(pid) - before)
                    worst_peak = max(worst_peak, _status(pid, "VmHWM") - baseline)
                after = _status(pid, "VmRSS") - baseline
                print(f"{what:58} {answer:18} {worst_cpu:6.2f} {worst_peak / 2**20:8.1f} {after / 2**20:8.1f}")
                if state:
                    _notify(url, "INPROGRESS")
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)


if __name__ == "__main__":
    main()
