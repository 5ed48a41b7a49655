"""Health, metrics and logs of a real ``dicom-host serve`` (gunicorn, two workers): ``/healthz`` and what makes
it fail, ``/metrics`` after real SOAP calls (zeep) and real http: uploads, counted across workers, JSON log
lines carrying instance ids, no token in any log line, and gunicorn's control socket not shared."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
import zeep
from prometheus_client.parser import text_string_to_metric_families

from conftest import HostServer, soap_post
from hosting_service.admin.client import AdminClient


def wait_for(predicate: Callable[[], object], seconds: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def scrape(server: HostServer) -> tuple[dict[tuple[str, frozenset], float], str]:
    """Every sample of ``/metrics`` by (name, labels), and the text (a fresh connection each time, so any
    worker may answer)."""
    r = requests.get(server.url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, r.text


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def host_service(instance: dict) -> zeep.proxy.ServiceProxy:
    """A zeep client of the instance's HostService, built from the WSDL the instance serves."""
    return zeep.Client(instance["hostURL"] + "?wsdl").service


def token_of(url: str) -> str:
    """The token segment of a hostURL, applicationURL or output location URI."""
    return next(part for part in url.split("/") if re.fullmatch(r"[A-Za-z0-9_-]{22,64}", part))


def health(server: HostServer) -> tuple[int, dict]:
    r = requests.get(server.url + "/healthz", timeout=10)
    assert r.headers["Content-Type"] == "application/json"
    return r.status_code, r.json()


# --- /healthz ------------------------------------------------------------------------------------------

def test_healthz_names_each_check_and_stays_fast(server_factory):
    server = server_factory()
    status, answer = health(server)
    assert status == 200
    assert answer["status"] == "ok" and answer["store"] == "ok" and answer["dataDir"] == "ok"
    session = requests.Session()  # keep-alive: the time measured is the server's, plus one loopback round trip
    for _ in range(10):
        session.get(server.url + "/healthz", timeout=5)
    times = []
    for _ in range(100):
        start = time.perf_counter()
        assert session.get(server.url + "/healthz", timeout=5).status_code == 200
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.005, f"median {statistics.median(times) * 1000:.2f} ms"
    assert not [p for p in (server.data_dir).iterdir() if p.name.startswith(".healthz")]  # no probe left behind


def _server_with_store_elsewhere(server_factory, tmp_path: Path) -> tuple[HostServer, Path]:
    store_dir = tmp_path / "db"
    store_dir.mkdir()
    server = server_factory(env={"DICOM_HOST_STORE": f"sqlite:///{store_dir / 'store.sqlite3'}"})
    return server, store_dir


def test_healthz_is_503_naming_the_data_dir_when_nothing_can_be_written_there(server_factory, tmp_path):
    """The data dir replaced by a file: nobody, root included, can create a file in it (chmod would not stop
    root). The store lives elsewhere, so only the data dir check fails; putting the dir back heals it."""
    server, _ = _server_with_store_elsewhere(server_factory, tmp_path)
    assert health(server)[0] == 200
    moved = tmp_path / "moved-away"
    server.data_dir.rename(moved)
    server.data_dir.write_text("not a folder")
    try:
        status, answer = health(server)
        assert status == 503, answer
        assert answer["status"] == "failing" and answer["failing"] == ["dataDir"]
        assert answer["store"] == "ok" and answer["dataDir"].startswith("not writable")
        assert str(tmp_path) not in json.dumps(answer)  # anyone may ask: no path in the answer
    finally:
        server.data_dir.unlink()
        moved.rename(server.data_dir)
    assert health(server)[0] == 200


def test_healthz_is_503_naming_the_store_when_its_database_is_gone(server_factory, tmp_path):
    """The SQLite store's folder removed while the server runs: connections already open would still
    answer, but the store is gone for every new one, and for the next restart."""
    server, store_dir = _server_with_store_elsewhere(server_factory, tmp_path)
    assert health(server)[0] == 200
    shutil.rmtree(store_dir)
    for _ in range(6):  # whichever worker and thread answers
        status, answer = health(server)
        assert status == 503, answer
        assert answer["failing"] == ["store"] and answer["store"] == "unreachable" and answer["dataDir"] == "ok"


def test_healthz_is_503_naming_the_store_when_postgresql_loses_its_database(request, tmp_path):
    """PostgreSQL: the server's database dropped under it (every connection of its pool terminated)."""
    try:
        postgres_url = request.getfixturevalue("postgres_url")
        import psycopg
    except pytest.FixtureLookupError:
        pytest.skip("no postgres_url fixture in this tree (tests/postgres.py of the PostgreSQL store)")
    except ImportError as exc:
        pytest.skip(f"psycopg is not installed: {exc}")
    name = "obs_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    store_url = urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}"))
    server = HostServer(tmp_path / "data", env={"DICOM_HOST_STORE": store_url}).start()
    try:
        assert health(server)[0] == 200
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        status, answer = health(server)
        assert status == 503 and answer["failing"] == ["store"], answer
        assert name not in json.dumps(answer)
    finally:
        server.close()


# --- /metrics ------------------------------------------------------------------------------------------

def test_metrics_count_soap_calls_faults_latency_uploads_and_instances_across_workers(server_factory):
    server = server_factory()
    idle = server.create_instance()
    started = server.create_instance()
    service = host_service(started)
    service.NotifyStateChanged(state="IDLE")
    service.NotifyStateChanged(state="INPROGRESS")
    location = service.GetOutputLocation(preferredProtocols={"string": ["http:"]})
    with pytest.raises(zeep.exceptions.Fault):  # no output location before the instance is started
        host_service(idle).GetOutputLocation(preferredProtocols={"string": ["http:"]})
    assert soap_post(started["hostURL"], "", raw=b"<not xml").status_code == 500  # operation unknown

    def screen(_):  # a fresh connection each: the calls spread over both workers
        r = soap_post(started["hostURL"], '<GetAvailableScreen xmlns="http://dicom.nema.org/PS3.19/'
                      'HostService-20100825"><preferredScreen><Height>10</Height><Width>10</Width><RefPointX>0'
                      '</RefPointX><RefPointY>0</RefPointY></preferredScreen></GetAvailableScreen>')
        assert r.status_code == 200, r.text
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(screen, range(60)))
    payload = os.urandom(300_000)
    assert requests.put(location + "result.bin", data=payload, timeout=30).status_code == 201
    assert requests.put(location + "result.bin", data=b"again", timeout=30).status_code == 409  # not stored

    def expected(samples) -> None:
        calls = "dicomhost_soap_calls_total"
        assert value(samples, calls, operation="NotifyStateChanged") == 2
        assert value(samples, calls, operation="GetOutputLocation") == 2
        assert value(samples, calls, operation="GetAvailableScreen") == 60
        assert value(samples, calls, operation="request") == 1
        faults = "dicomhost_soap_faults_total"
        assert value(samples, faults, operation="GetOutputLocation", code="Client") == 1
        assert value(samples, faults, operation="request", code="Client") == 1
        assert value(samples, faults, operation="GetAvailableScreen", code="Client") == 0
        hist = "dicomhost_soap_call_seconds"
        assert value(samples, hist + "_count", operation="GetAvailableScreen") == 60
        assert value(samples, hist + "_bucket", operation="GetAvailableScreen", le="+Inf") == 60
        assert 0 < value(samples, hist + "_sum", operation="GetAvailableScreen") < 60
        buckets = [value(samples, hist + "_bucket", operation="GetAvailableScreen", le=le)
                   for le in ("0.001", "0.01", "0.1", "1.0", "30.0")]
        assert buckets == sorted(buckets) and buckets[-1] == 60
        assert value(samples, "dicomhost_upload_bytes_total") == len(payload)
        assert value(samples, "dicomhost_lease_expiries_total") == 0
        assert value(samples, "dicomhost_instances", state="none") == 1
        assert value(samples, "dicomhost_instances", state="INPROGRESS") == 1
        assert value(samples, "dicomhost_instances", state="IDLE") == 0

    pids = set()
    for _ in range(12):  # each scrape may be answered by either worker: each answers for the whole server
        samples, text = scrape(server)
        expected(samples)
        pids.add(requests.get(server.url + "/healthz", timeout=5).json()["pid"])
    for secret in (started["id"], idle["id"], token_of(started["hostURL"]), token_of(location), str(server.data_dir)):
        assert secret not in text

    # a worker killed: gunicorn replaces it, and the calls it counted stay counted
    victim = pids.pop()
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in {requests.get(server.url + "/healthz", timeout=5).json()["pid"]
                                    for _ in range(20)}, what="the killed worker to be replaced")
    expected(scrape(server)[0])

    server.admin.end(started["id"], "done")
    samples, _ = scrape(server)
    assert value(samples, "dicomhost_instances", state="INPROGRESS") == 0


def test_jobs_gauge_follows_the_jobs_table(server_factory):
    """``dicomhost_jobs{state}`` is read from the store's jobs table; a store without one answers none."""
    server = server_factory()
    with sqlite3.connect(server.data_dir / "store.sqlite3") as db:
        has_jobs = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'").fetchone()
    samples, text = scrape(server)
    if has_jobs:
        assert {value(samples, "dicomhost_jobs", state=s) for s in ("queued", "running", "completed")} == {0}
    else:
        assert "dicomhost_jobs" not in text


def test_metric_files_are_private_to_the_server_and_removed_when_it_stops(server_factory, tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = temp / f"dicom-host-metrics-{dead.pid}-left"  # of a server killed by SIGKILL: no exit hook ran
    stale.mkdir()
    server = server_factory(env={"TMPDIR": str(temp)})
    [own] = temp.glob(f"dicom-host-metrics-{server.process.pid}-*")
    assert own.stat().st_mode & 0o777 == 0o700
    assert not stale.exists()
    server.stop()
    assert not own.exists()


# --- logs ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_token_in_any_log_line(server_factory, log_format):
    """Every kind of secret, in every place a log line could quote it: the project's lines, gunicorn's error
    lines (an invalid request line) and its access lines (the request line, a bearer header)."""
    admin_token = "admin-" + uuid.uuid4().hex
    lease = uuid.uuid4().hex
    server = server_factory("--log-format", log_format, "--log-level", "debug", env={
        "DICOM_HOST_ADMIN_TOKEN": admin_token,
        "GUNICORN_CMD_ARGS": "--access-logfile - --access-logformat '%(r)s %(s)s %({authorization}i)s'"})
    admin = AdminClient(server.url, token=admin_token)
    inst = admin.create_instance()
    service = host_service(inst)
    service.NotifyStateChanged(state="IDLE")
    service.NotifyStateChanged(state="INPROGRESS")
    location = service.GetOutputLocation(preferredProtocols={"string": ["http:"]})
    assert requests.put(location + "out.bin", data=b"x" * 1000, timeout=30).status_code == 201
    assert requests.put(location + "bad%00name", data=b"x", timeout=30).status_code == 400
    requests.get(f"{server.url}/admin/jobs/{uuid.uuid4().hex}/results?lease={lease}",
                 headers={"Authorization": f"Bearer {admin_token}"}, timeout=10)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"GET /{token_of(inst['hostURL'])}/HostService-20100825\x01 HTTP/1.1\r\n\r\n".encode())
        assert sock.recv(1000).startswith(b"HTTP/1.1 400 ")
    admin.end(inst["id"], "done")
    wait_for(lambda: "Invalid request" in server.log() and "?lease=<token>" in server.log(),
             what="the log lines")
    log = server.log()
    assert "Bearer <token>" in log and "/outputs/<token>/out.bin" in log
    for secret in (admin_token, lease, token_of(inst["hostURL"]), token_of(inst["applicationURL"]),
                   token_of(location)):
        assert secret not in log


def test_json_log_lines_parse_and_carry_the_instance_id(server_factory):
    server = server_factory("--log-format", "json",
                            env={"GUNICORN_CMD_ARGS": "--access-logfile -"})  # gunicorn's access lines too
    inst = server.create_instance()
    service = host_service(inst)
    service.NotifyStateChanged(state="IDLE")
    with pytest.raises(zeep.exceptions.Fault):  # logged by the wire layer, within the request
        service.GetOutputLocation(preferredProtocols={"string": ["http:"]})
    server.admin.end(inst["id"], "done")  # logged by the admin API, for /admin/instances/<id>/...
    wait_for(lambda: "ended: done" in server.log(), what="the end of the instance in the log")
    server.stop()  # gunicorn's own shutdown lines too
    lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message", "pid"} <= set(line) for line in lines)
    loggers = {line["logger"] for line in lines}
    assert {"gunicorn.error", "gunicorn.access", "dicom_host.wire", "dicom_host.admin"} <= loggers
    mine = [line for line in lines if line.get("instance_id") == inst["id"]]
    assert {"dicom_host.wire", "dicom_host.operations", "dicom_host.admin"} <= {line["logger"] for line in mine}
    assert any("Client fault" in line["message"] for line in mine)
    assert all("instance_id" not in line for line in lines if line["logger"].startswith("gunicorn"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", lines[0]["time"])


def test_bound_ids_are_per_thread_and_undone_after_the_block():
    import logging
    import threading

    from hosting_service.logs import JsonFormatter, bind

    record = logging.LogRecord("dicom_host.t", logging.INFO, __file__, 1, "at %s", ("/x/" + "a" * 30,), None)
    seen: dict[str, dict] = {}
    with bind(instance_id="i1", job_id="j1"):
        seen["bound"] = json.loads(JsonFormatter().format(record))
        worker = threading.Thread(target=lambda: seen.setdefault("thread", json.loads(JsonFormatter().format(record))))
        worker.start()
        worker.join()
    seen["after"] = json.loads(JsonFormatter().format(record))
    assert seen["bound"]["instance_id"] == "i1" and seen["bound"]["job_id"] == "j1"
    assert seen["bound"]["message"] == "at /x/<token>"
    assert "instance_id" not in seen["thread"] and "instance_id" not in seen["after"]
    token = "b" * 32
    try:
        raise OSError(f"cannot open /outputs/{token}/x")
    except OSError:
        failed = logging.LogRecord("dicom_host.t", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter().format(failed)
    assert token not in line and "/outputs/<token>/x" in json.loads(line)["exception"]


# --- gunicorn's control socket -------------------------------------------------------------------------

def test_two_servers_on_one_machine_share_no_control_socket(tmp_path):
    """gunicorn would put its control socket at ``$HOME/.gunicorn/gunicorn.ctl`` (no ``XDG_RUNTIME_DIR``):
    one per user, taken by whichever server started last. Neither server creates it."""
    home = tmp_path / "home"
    home.mkdir()
    servers = []
    try:
        for name in ("one", "two"):
            servers.append(HostServer(tmp_path / name, env={"HOME": str(home), "XDG_RUNTIME_DIR": ""}).start())
        assert all(requests.get(s.url + "/healthz", timeout=5).ok for s in servers)
        assert list(home.iterdir()) == []
    finally:
        for s in servers:
            s.close()
