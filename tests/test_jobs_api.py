"""Jobs on the admin API, through a real ``dicom-host serve``: submitting (a streamed PAX tar, or server
paths), listing, showing, canceling, and a worker's side (lease, heartbeat, results, finish) driven by plain
HTTP as ``dicom-host worker`` drives it; lease expiry; ``max_running``; and submissions that must be refused
with a clear 4xx, queueing nothing and keeping nothing."""
from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import tarfile
import threading
import time
from typing import Optional

import pytest
import requests

from conftest import HostServer

TOKEN = "jobs-test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TAR = {"Content-Type": "application/x-tar", **AUTH}
MAX_UPLOAD = 1 << 20

APPS = """
[apps.mip]
command = ["python3", "-m", "client.examples.mip_app"]
[apps.trip]
command = ["true"]
output_protocols = ["http"]
[apps.cancel]
command = ["true"]
[apps.capped]
command = ["true"]
max_running = 1
[apps.retry]
command = ["true"]
retries = 1
[apps.once]
command = ["true"]
[apps.strict]
command = ["true"]
file_uris = false
[apps.many]
command = ["true"]
"""


def _server(tmp_path_factory, name: str, env: dict) -> HostServer:
    folder = tmp_path_factory.mktemp(name)
    apps = folder / "apps.toml"
    apps.write_text(APPS)
    return HostServer(folder / "data", ["--apps", str(apps)],
                      {"DICOM_HOST_ADMIN_TOKEN": TOKEN, "DICOM_HOST_JOB_MAX_UPLOAD": str(MAX_UPLOAD),
                       "DICOM_HOST_INPUT_ROOTS": str(folder / "allowed"), **env}).start()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = _server(tmp_path_factory, "jobs", {})
    yield s
    s.close()


@pytest.fixture(scope="module")
def short_leases(tmp_path_factory):
    """A server whose leases last one second (the reaper looks every ~2 s)."""
    s = _server(tmp_path_factory, "leases", {"DICOM_HOST_LEASE_SECONDS": "1"})
    yield s
    s.close()


# --- building tars as a client does ------------------------------------------------------------------------

def _member(tar: tarfile.TarFile, name: str, data: bytes, sha256: Optional[str] = "auto") -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
    if sha256 is not None:
        info.pax_headers = {"DICOMHOST.sha256": hashlib.sha256(data).hexdigest() if sha256 == "auto" else sha256}
    tar.addfile(info, io.BytesIO(data))


def make_tar(job: Optional[object], files: dict[str, bytes] | list[tuple[str, bytes]], *, sha: Optional[dict] = None,
             extra: tuple[tarfile.TarInfo, ...] = ()) -> bytes:
    """A PAX tar: ``job.json`` (``job``: an object, raw bytes, or None for none), then ``files``; ``sha``
    overrides a member's declared SHA-256 (None: no header)."""
    sha = sha or {}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if job is not None:
            _member(tar, "job.json", job if isinstance(job, bytes) else json.dumps(job).encode())
        for name, data in files.items() if isinstance(files, dict) else files:
            _member(tar, name, data, sha.get(name, "auto"))
        for info in extra:
            tar.addfile(info)
    return buffer.getvalue()


def untar(data: bytes) -> dict[str, tuple[bytes, dict]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {m.name: (tar.extractfile(m).read(), m.pax_headers) for m in tar.getmembers() if m.isfile()}


def submit(server: HostServer, app: str, files: dict[str, bytes], **job_fields) -> dict:
    r = requests.post(server.url + "/admin/jobs", data=make_tar({"app": app, **job_fields}, files), headers=TAR,
                      timeout=30)
    assert r.status_code == 201, r.text
    return r.json()


def call(server: HostServer, method: str, path: str, body: Optional[dict] = None, **kwargs) -> requests.Response:
    return requests.request(method, server.url + "/admin" + path, json=body, headers=AUTH, timeout=60, **kwargs)


def lease(server: HostServer, app: str, wait: float = 0, worker: str = "w1") -> Optional[dict]:
    r = call(server, "POST", "/jobs/lease", {"worker": worker, "wait": wait, "apps": [app]})
    assert r.status_code in (200, 204), r.text
    return r.json() if r.status_code == 200 else None


def wait_for(predicate, timeout: float = 15.0, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s")


# --- submitting, listing, showing --------------------------------------------------------------------------

def test_a_streamed_tar_is_queued_with_its_inputs_on_disk(server, tmp_path):
    files = {"inputs/a.txt": b"alpha\n", "inputs/deep/b.bin": bytes(range(256)) * 1000}
    tar_path = tmp_path / "job.tar"
    tar_path.write_bytes(make_tar({"app": "mip", "options": {"label": "first", "task_per": "series"}}, files))
    with open(tar_path, "rb") as body:  # streamed from the file, with its Content-Length
        r = requests.post(server.url + "/admin/jobs", data=body, headers=TAR, timeout=30)
    assert r.status_code == 201, r.text
    job = r.json()
    assert (job["app"], job["state"], job["attempts"], job["maxAttempts"]) == ("mip", "queued", 0, 1)
    assert job["inputs"] == {"count": 2, "bytes": 6 + 256_000}
    assert job["options"] == {"label": "first", "task_per": "series"}
    stored = server.data_dir / "jobs" / job["id"] / "inputs"
    assert (stored / "a.txt").read_bytes() == b"alpha\n"
    assert (stored / "deep" / "b.bin").read_bytes() == files["inputs/deep/b.bin"]

    listed = call(server, "GET", "/jobs").json()
    assert job["id"] in [j["id"] for j in listed]
    assert job["id"] in [j["id"] for j in call(server, "GET", "/jobs", params={"state": "queued"}).json()]
    assert job["id"] not in [j["id"] for j in call(server, "GET", "/jobs", params={"state": "running"}).json()]
    shown = call(server, "GET", f"/jobs/{job['id']}").json()
    assert shown["state"] == "queued" and shown["manifest"] is None
    assert [e["kind"] for e in shown["events"]] == ["queued"]
    events = call(server, "GET", f"/jobs/{job['id']}/events", params={"after": 1, "wait": 0.2}).json()
    assert events == {"events": [], "last": 1}
    assert call(server, "GET", f"/jobs/{job['id']}/results").status_code == 409


def test_list_and_show_refuse_bad_queries(server):
    assert call(server, "GET", "/jobs", params={"state": "sleeping"}).status_code == 400
    assert call(server, "GET", "/jobs", params={"limit": "1001"}).status_code == 400
    r = call(server, "GET", "/jobs/0123456789abcdef")
    assert r.status_code == 404 and "no such job" in r.json()["error"]
    assert call(server, "DELETE", "/jobs").status_code == 405


# --- a worker's side -------------------------------------------------------------------------------------------

def test_lease_heartbeat_results_and_finish_round_trip(server):
    job = submit(server, "trip", {"inputs/one.txt": b"1", "inputs/two.txt": b"22"})
    leased = lease(server, "trip")
    assert leased["job"]["id"] == job["id"] and leased["job"]["state"] == "running"
    assert leased["leaseSeconds"] == 30 and leased["app"]["output_protocols"] == ["http"]
    assert leased["app"]["command"] == ["true"] and leased["app"]["timeouts"]["task"] == 3600
    token = leased["lease"]
    assert lease(server, "trip") is None  # nothing else queued

    r = call(server, "POST", "/instances", {"options": {"label": "job"}, "job": {"id": job["id"], "lease": token}})
    assert r.status_code == 201, r.text
    instance = r.json()
    r = call(server, "POST", f"/instances/{instance['id']}/inputs", {"job": job["id"]})
    assert r.status_code == 200 and r.json()["count"] == 2, r.text
    assert call(server, "GET", f"/jobs/{job['id']}").json()["instanceId"] == instance["id"]

    beat = call(server, "POST", f"/jobs/{job['id']}/heartbeat", {"lease": token}).json()
    assert beat["cancelRequested"] is False and beat["leaseExpiresAt"] > time.time() + 20
    lost = call(server, "POST", f"/jobs/{job['id']}/heartbeat", {"lease": "not-the-lease"})
    assert lost.status_code == 409 and "lease lost" in lost.json()["error"]

    manifest = {"result": "completed", "outputs": ["outputs/mip.dcm"]}
    results = {"manifest.json": json.dumps(manifest).encode(), "app.log": b"log\n", "outputs/mip.dcm": b"D" * 5000}
    put = requests.put(f"{server.url}/admin/jobs/{job['id']}/results", params={"lease": token},
                       data=make_tar(None, results), headers=TAR, timeout=30)
    assert put.status_code == 204, put.text
    done = call(server, "POST", f"/jobs/{job['id']}/finish", {"lease": token, "result": "completed", "reason": "ok"})
    assert done.status_code == 200, done.text
    assert (done.json()["state"], done.json()["result"]) == ("completed", "completed")

    shown = call(server, "GET", f"/jobs/{job['id']}").json()
    assert shown["manifest"] == manifest and shown["finishedAt"] is not None
    assert [e["kind"] for e in shown["events"]] == ["queued", "leased", "instance", "results", "finished"]
    ended = call(server, "GET", f"/instances/{instance['id']}").json()
    assert ended["endedAt"] is not None and ended["endReason"] == "job completed"
    download = call(server, "GET", f"/jobs/{job['id']}/results")
    assert download.headers["Content-Type"] == "application/x-tar"
    assert int(download.headers["Content-Length"]) == len(download.content)
    got = untar(download.content)
    assert {n: d for n, (d, _) in got.items()} == results
    assert all(h["DICOMHOST.sha256"] == hashlib.sha256(d).hexdigest() for d, h in got.values())

    again = call(server, "POST", f"/jobs/{job['id']}/finish", {"lease": token, "result": "completed"})
    assert again.status_code == 409
    assert call(server, "POST", f"/jobs/{job['id']}/cancel").status_code == 409


def test_worker_requests_are_checked(server):
    assert call(server, "POST", "/jobs/lease", {"worker": "w 1"}).status_code == 400
    r = call(server, "POST", "/jobs/lease", {"worker": "w1", "apps": ["nope"]})
    assert r.status_code == 400 and "unknown app 'nope'" in r.json()["error"]
    job = submit(server, "once", {"inputs/x": b"x"})
    token = lease(server, "once")["lease"]
    bad = call(server, "POST", f"/jobs/{job['id']}/finish", {"lease": token, "result": "great"})
    assert bad.status_code == 400
    put = requests.put(f"{server.url}/admin/jobs/{job['id']}/results", params={"lease": "stolen"},
                       data=make_tar(None, {"a": b"a"}), headers=TAR, timeout=30)
    assert put.status_code == 409
    r = call(server, "POST", "/instances", {"job": {"id": job["id"], "lease": "stolen"}})
    assert r.status_code == 409
    r = call(server, "POST", "/instances", {"job": {"id": job["id"], "lease": token}, "leaseSeconds": 5})
    assert r.status_code == 400
    failed = call(server, "POST", f"/jobs/{job['id']}/finish", {"lease": token, "result": "app-failed",
                                                                "reason": "exit status 1"}).json()
    assert (failed["state"], failed["result"], failed["reason"]) == ("failed", "app-failed", "exit status 1")


def test_cancel_queued_at_once_and_running_through_the_heartbeat(server):
    queued = submit(server, "cancel", {"inputs/x": b"x"})
    running = submit(server, "cancel", {"inputs/y": b"y"})
    token = lease(server, "cancel")["lease"]  # the older one
    assert call(server, "GET", f"/jobs/{queued['id']}").json()["state"] == "running"
    queued, running = running, queued
    canceled = call(server, "POST", f"/jobs/{queued['id']}/cancel").json()
    assert (canceled["state"], canceled["result"]) == ("canceled", "canceled")
    assert call(server, "POST", f"/jobs/{running['id']}/cancel").json()["cancelRequested"] is True
    beat = call(server, "POST", f"/jobs/{running['id']}/heartbeat", {"lease": token}).json()
    assert beat["cancelRequested"] is True
    done = call(server, "POST", f"/jobs/{running['id']}/finish", {"lease": token, "result": "canceled"}).json()
    assert done["state"] == "canceled"
    assert lease(server, "cancel") is None


def test_max_running_is_respected(server):
    first = submit(server, "capped", {"inputs/x": b"x"})
    second = submit(server, "capped", {"inputs/y": b"y"})
    taken = lease(server, "capped")
    assert taken["job"]["id"] == first["id"]
    assert lease(server, "capped", wait=0.5) is None  # one is running: the other waits
    call(server, "POST", f"/jobs/{first['id']}/finish", {"lease": taken["lease"], "result": "completed"})
    assert lease(server, "capped", wait=5)["job"]["id"] == second["id"]


def test_concurrent_workers_lease_each_job_once(server):
    submitted = {submit(server, "many", {f"inputs/{n}": b"x"})["id"] for n in range(12)}
    taken: list[str] = []

    def worker(name: str) -> None:
        while (leased := lease(server, "many", worker=name)) is not None:
            taken.append(leased["job"]["id"])

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(taken) == sorted(submitted)


def test_events_are_long_polled(server):
    job = submit(server, "many", {"inputs/x": b"x"})
    started = time.monotonic()
    timer = threading.Timer(0.5, lambda: call(server, "POST", f"/jobs/{job['id']}/cancel"))
    timer.start()
    answer = call(server, "GET", f"/jobs/{job['id']}/events", params={"after": 1, "wait": 20}).json()
    timer.join()
    assert 0.4 < time.monotonic() - started < 10
    assert [e["kind"] for e in answer["events"]] == ["canceled"] and answer["last"] == 2


# --- leases that expire ------------------------------------------------------------------------------------------

def test_an_expired_lease_requeues_then_fails_the_job_and_ends_its_instance(short_leases):
    server = short_leases
    job = submit(server, "retry", {"inputs/x": b"x"})
    first = lease(server, "retry")
    instance = call(server, "POST", "/instances", {"job": {"id": job["id"], "lease": first["lease"]}}).json()
    # no heartbeat: the worker is gone
    again = wait_for(lambda: call(server, "GET", f"/jobs/{job['id']}").json()["state"] == "queued")
    assert again
    ended = call(server, "GET", f"/instances/{instance['id']}").json()
    assert ended["endedAt"] is not None and "lease expired" in ended["endReason"]
    beat = call(server, "POST", f"/jobs/{job['id']}/heartbeat", {"lease": first["lease"]})
    assert beat.status_code == 409

    second = lease(server, "retry", wait=5, worker="w2")
    assert second["job"]["attempts"] == 2 and second["job"]["worker"] == "w2"
    final = wait_for(lambda: (j := call(server, "GET", f"/jobs/{job['id']}").json())["state"] == "failed" and j)
    assert (final["result"], final["reason"]) == ("server", "lease expired (worker gone)")
    kinds = [e["kind"] for e in final["events"]]
    assert kinds.count("lease-expired") == 2 and "requeued" in kinds


def test_heartbeats_keep_a_lease(short_leases):
    server = short_leases
    job = submit(server, "once", {"inputs/x": b"x"})
    token = lease(server, "once")["lease"]
    for _ in range(8):  # 4 s: four lease periods
        assert call(server, "POST", f"/jobs/{job['id']}/heartbeat", {"lease": token}).status_code == 200
        time.sleep(0.5)
    assert call(server, "GET", f"/jobs/{job['id']}").json()["state"] == "running"
    assert call(server, "POST", f"/jobs/{job['id']}/finish", {"lease": token, "result": "completed"}).ok


def test_an_instance_lease_ends_the_instance_when_its_runner_is_gone(short_leases):
    server = short_leases
    instance = call(server, "POST", "/instances", {"leaseSeconds": 1}).json()
    for _ in range(6):
        assert call(server, "POST", f"/instances/{instance['id']}/heartbeat").status_code == 204
        time.sleep(0.5)
    assert call(server, "GET", f"/instances/{instance['id']}").json()["endedAt"] is None
    ended = wait_for(lambda: (i := call(server, "GET", f"/instances/{instance['id']}").json())["endedAt"] and i)
    assert ended["endReason"] == "runner gone (instance lease expired)"
    assert call(server, "POST", f"/instances/{instance['id']}/heartbeat").status_code == 409
    plain = call(server, "POST", "/instances", {}).json()
    assert call(server, "POST", f"/instances/{plain['id']}/heartbeat").status_code == 409
    assert call(server, "POST", "/instances", {"leaseSeconds": 0}).status_code == 400


# --- refused submissions -------------------------------------------------------------------------------------------

def _symlink() -> tarfile.TarInfo:
    info = tarfile.TarInfo("inputs/passwd")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return info


BAD_TARS = {
    "unknown app": (make_tar({"app": "nope"}, {"inputs/x": b"x"}), 400, "unknown app 'nope'"),
    "no app": (make_tar({"options": {}}, {"inputs/x": b"x"}), 400, "needs 'app'"),
    "no inputs": (make_tar({"app": "mip"}, {}), 400, "no inputs"),
    "empty inputs": (make_tar({"app": "mip"}, {"inputs/x": b"", "inputs/y": b""}), 400, "inputs are empty"),
    "malformed job.json": (make_tar(b"{app: mip", {"inputs/x": b"x"}), 400, "job.json is not JSON"),
    "job.json not first": (make_tar(None, {"inputs/x": b"x"}), 400, "first member must be job.json"),
    "unknown option": (make_tar({"app": "mip", "options": {"colour": "red"}}, {"inputs/x": b"x"}), 400,
                       "unknown job option 'colour'"),
    "bad option": (make_tar({"app": "mip", "options": {"task_per": "slice"}}, {"inputs/x": b"x"}), 400,
                   "task_per must be"),
    "file uris the app forbids": (make_tar({"app": "strict", "options": {"file_uris": True}}, {"inputs/x": b"x"}),
                                  400, "file_uris = false"),
    "not a tar": (b"this is not a tar stream at all" * 40, 400, "not a tar stream"),
    "cut short": (make_tar({"app": "mip"}, {"inputs/x": b"x" * 5000})[:3000], 400, "cut short"),
    "wrong checksum": (make_tar({"app": "mip"}, {"inputs/a": b"a", "inputs/x": b"x"}, sha={"inputs/x": "0" * 64}),
                       400, "'inputs/x': SHA-256 mismatch"),
    "no checksum": (make_tar({"app": "mip"}, {"inputs/x": b"x"}, sha={"inputs/x": None}), 400,
                    "no DICOMHOST.sha256"),
    "path traversal": (make_tar({"app": "mip"}, {"inputs/../../escape": b"x"}), 400, "'..' segments"),
    "absolute path": (make_tar({"app": "mip"}, {"/etc/cron.d/x": b"x"}), 400, "relative"),
    "outside inputs": (make_tar({"app": "mip"}, {"other/x": b"x"}), 400, "inside inputs/"),
    "a file named inputs": (make_tar({"app": "mip"}, {"inputs": b"x"}), 400, "inside inputs/"),
    "link member": (make_tar({"app": "mip"}, {"inputs/a": b"a"}, extra=(_symlink(),)), 400,
                    "'inputs/passwd' is a symbolic link"),
    "twice the same name": (make_tar({"app": "mip"}, [("inputs/a", b"a"), ("inputs/a", b"b")]), 400, "appears twice"),
    "file then folder": (make_tar({"app": "mip"}, [("inputs/a", b"a"), ("inputs/a/b", b"b")]), 400, "came before"),
}


def _nothing_queued_or_kept(server: HostServer, before: list) -> None:
    assert [j["id"] for j in call(server, "GET", "/jobs").json()] == before
    jobs_dir = server.data_dir / "jobs"
    assert not any(p.name.startswith(".incoming") for p in jobs_dir.iterdir()) if jobs_dir.exists() else True
    assert not (server.data_dir / "escape").exists()


@pytest.mark.parametrize("case", list(BAD_TARS))
def test_bad_tar_submissions_are_refused_and_queue_nothing(server, case):
    body, status, message = BAD_TARS[case]
    before = [j["id"] for j in call(server, "GET", "/jobs").json()]
    r = requests.post(server.url + "/admin/jobs", data=body, headers=TAR, timeout=30)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == "application/json"
    assert message in r.json()["error"]
    _nothing_queued_or_kept(server, before)


@pytest.mark.parametrize("headers, status", [({}, 401), ({"Authorization": "Bearer wrong"}, 401)])
def test_a_missing_or_wrong_token_is_refused_before_the_body_is_read(server, headers, status):
    before = [j["id"] for j in call(server, "GET", "/jobs").json()]
    r = requests.post(server.url + "/admin/jobs", data=make_tar({"app": "mip"}, {"inputs/x": b"x"}),
                      headers={"Content-Type": "application/x-tar", **headers}, timeout=30)
    assert r.status_code == status and "bearer token" in r.json()["error"]
    assert requests.get(server.url + "/admin/jobs", headers=headers, timeout=10).status_code == status
    _nothing_queued_or_kept(server, before)


def test_a_content_length_over_the_limit_is_refused_at_once(server):
    before = [j["id"] for j in call(server, "GET", "/jobs").json()]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("POST", "/admin/jobs")
    for name, value in {**TAR, "Content-Length": str(MAX_UPLOAD + 1)}.items():
        conn.putheader(name, value)
    conn.endheaders()  # no body sent: the answer comes from the header alone
    r = conn.getresponse()
    assert r.status == 413 and "exceeds this server's limit" in json.loads(r.read())["error"]
    conn.close()
    _nothing_queued_or_kept(server, before)


def test_a_body_that_grows_past_the_limit_is_refused(server):
    before = [j["id"] for j in call(server, "GET", "/jobs").json()]
    body = make_tar({"app": "mip"}, {"inputs/big": b"b" * (MAX_UPLOAD + (256 << 10))})
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    conn.putrequest("POST", "/admin/jobs")
    for name, value in {**TAR, "Transfer-Encoding": "chunked"}.items():
        conn.putheader(name, value)
    conn.endheaders()
    status = None
    try:
        for i in range(0, len(body), 64 << 10):
            piece = body[i:i + (64 << 10)]
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.send(b"0\r\n\r\n")
        r = conn.getresponse()
        status, answer = r.status, json.loads(r.read())
        assert "exceeds this server's limit" in answer["error"]
    except (ConnectionError, http.client.HTTPException):
        pass  # the server answered and closed while the rest was still being sent: allowed
    finally:
        conn.close()
    assert status in (413, None)
    _nothing_queued_or_kept(server, before)


def test_json_submissions(server):
    before = [j["id"] for j in call(server, "GET", "/jobs").json()]
    r = requests.post(server.url + "/admin/jobs", data=b'{"app": "mip", "paths": [', timeout=10,
                      headers={"Content-Type": "application/json", **AUTH})
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    outside = call(server, "POST", "/jobs", {"app": "mip", "paths": ["/etc"]})
    assert outside.status_code == 403 and "DICOM_HOST_INPUT_ROOTS" in outside.json()["error"]
    assert call(server, "POST", "/jobs", {"app": "mip", "paths": []}).status_code == 400
    assert call(server, "POST", "/jobs", {"app": "nope", "paths": ["/etc"]}).status_code == 400
    r = requests.post(server.url + "/admin/jobs", data=b"x", headers={"Content-Type": "text/plain", **AUTH},
                      timeout=10)
    assert r.status_code == 415
    _nothing_queued_or_kept(server, before)

    allowed = server.data_dir.parent / "allowed"
    (allowed / "study").mkdir(parents=True)
    (allowed / "study" / "a.txt").write_bytes(b"abc")
    job = call(server, "POST", "/jobs", {"app": "once", "paths": [str(allowed / "study")]})
    assert job.status_code == 201, job.text
    assert job.json()["inputs"] == {"count": 1, "bytes": 3}
    escape = call(server, "POST", "/jobs", {"app": "mip", "paths": [str(allowed / ".." / "data")]})
    assert escape.status_code == 403

    leased = lease(server, "once")
    assert leased["job"]["id"] == job.json()["id"]
    instance = call(server, "POST", "/instances", {"job": {"id": job.json()["id"], "lease": leased["lease"]}}).json()
    offered = call(server, "POST", f"/instances/{instance['id']}/inputs", {"job": job.json()["id"]})
    assert offered.status_code == 200 and offered.json()["count"] == 1, offered.text
    other = call(server, "POST", "/instances", {}).json()
    assert call(server, "POST", f"/instances/{other['id']}/inputs", {"job": job.json()["id"]}).status_code == 409
    call(server, "POST", f"/jobs/{job.json()['id']}/finish", {"lease": leased["lease"], "result": "completed"})


def test_results_are_checked_and_replaced_whole(server):
    job = submit(server, "trip", {"inputs/x": b"x"})
    token = lease(server, "trip")["lease"]

    def put(files: dict) -> requests.Response:
        return requests.put(f"{server.url}/admin/jobs/{job['id']}/results", params={"lease": token},
                            data=make_tar(None, files), headers=TAR, timeout=30)

    assert put({"manifest.json": b"{}", "outputs/a": b"a"}).status_code == 204
    refused = put({"manifest.json": b"{}", "../../b": b"b"})
    assert refused.status_code == 400 and "'..' segments" in refused.json()["error"]
    assert set(untar(call(server, "GET", f"/jobs/{job['id']}/results").content)) == {"manifest.json", "outputs/a"}
    assert put({"manifest.json": b'{"second": true}'}).status_code == 204
    got = untar(call(server, "GET", f"/jobs/{job['id']}/results").content)
    assert set(got) == {"manifest.json"} and call(server, "GET", f"/jobs/{job['id']}").json()["manifest"] == {
        "second": True}
    assert not [p for p in (server.data_dir / "jobs" / job["id"]).iterdir() if p.name.startswith(".")]
    call(server, "POST", f"/jobs/{job['id']}/finish", {"lease": token, "result": "completed"})


def test_a_served_deployment_offers_no_server_paths_by_default(server_factory, tmp_path):
    server = server_factory(env={"DICOM_HOST_INPUT_ROOTS": ""})
    (tmp_path / "in.txt").write_text("x")
    instance = server.create_instance()
    r = requests.post(f"{server.url}/admin/instances/{instance['id']}/inputs", json={"paths": [str(tmp_path)]},
                      timeout=10)
    assert r.status_code == 403 and "DICOM_HOST_INPUT_ROOTS" in r.json()["error"]


def test_uploads_a_killed_server_left_unfinished_are_swept(server_factory, tmp_path):
    jobs = tmp_path / "data" / "jobs"
    stale, live = jobs / ".incoming-stale" / "inputs", jobs / ".incoming-live" / "inputs"
    for folder in (stale, live):
        folder.mkdir(parents=True)
        (folder / "part").write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    for path in (stale / "part", stale, stale.parent):
        os.utime(path, (two_hours_ago, two_hours_ago))
    server_factory()
    wait_for(lambda: not stale.parent.exists(), timeout=20)
    assert (live / "part").exists()


def test_input_roots_given_to_serve_allow_paths_below_them_only(server_factory, tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "in.txt").write_text("x")
    server = server_factory("--input-roots", f"{tmp_path / 'elsewhere'}:{allowed}", env={"DICOM_HOST_INPUT_ROOTS": ""})
    instance = server.create_instance()
    url = f"{server.url}/admin/instances/{instance['id']}/inputs"
    assert requests.post(url, json={"paths": [str(allowed)]}, timeout=10).json()["count"] == 1
    assert requests.post(url, json={"paths": [str(tmp_path)]}, timeout=10).status_code == 403
    (allowed / "link").symlink_to(tmp_path)
    assert requests.post(url, json={"paths": [str(allowed / "link")]}, timeout=10).status_code == 403
