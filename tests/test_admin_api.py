"""The admin API over real HTTP: who may use it (token, loopback, Host names), and 4xx JSON answers,
never a 500, for out-of-range parameters and bodies too large or too deep."""
from __future__ import annotations

import http.client
import json
import os
import stat

import pytest
import requests

from hosting_service.admin.client import AdminClient, AdminError


def raw_request(port: int, method: str, path: str, *, host: str, body: bytes = b"",
                content_type: str = "application/json") -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True)
        conn.putheader("Host", host)
        if body or method == "POST":
            conn.putheader("Content-Type", content_type)
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        assert response.getheader("Content-Type") == "application/json"
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example", "",
                                  "localhost@evil.example", "10.0.0.1:{port}"])
def test_without_a_token_a_foreign_host_name_is_refused(host_server, host):
    """DNS rebinding: a browser on this machine sends a foreign site's requests to a loopback port under
    that site's name. Loopback as the source address is not enough."""
    before = len(host_server.admin.instances(include_ended=True))
    port = host_server.port
    status, answer = raw_request(port, "GET", "/admin/instances", host=host.format(port=port))
    assert status == 403 and "Host" in answer["error"]
    status, answer = raw_request(port, "POST", "/admin/instances", host=host.format(port=port), body=b"{}")
    assert status == 403
    assert len(host_server.admin.instances(include_ended=True)) == before, "nothing created"


@pytest.mark.parametrize("host", ["localhost", "localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "LOCALHOST:1"])
def test_without_a_token_loopback_names_are_accepted(host_server, host):
    status, answer = raw_request(host_server.port, "GET", "/admin/instances", host=host.format(port=host_server.port))
    assert status == 200 and isinstance(answer, list)


def test_the_configured_public_url_names_the_server(server_factory):
    server = server_factory("--public-url", "http://dicom-host.test:9999/")
    assert raw_request(server.port, "GET", "/admin/instances", host="dicom-host.test:8080")[0] == 200
    assert raw_request(server.port, "GET", "/admin/instances", host="other.test:9999")[0] == 403


def test_with_a_token_the_token_decides(server_factory):
    server = server_factory("--admin-token", "s3cret")
    with pytest.raises(AdminError) as refused:
        server.admin.instances()
    assert refused.value.status == 401
    assert AdminClient(server.url, token="s3cret").instances() == []


@pytest.mark.parametrize("query", ["after=" + str(2**70), "after=-1", "after=1.5", "after=x", "wait=1e400",
                                   "after=1_000", "after=%201", "after=%00",
                                   "kinds=" + ",".join(["k"] * 33)])
def test_out_of_range_event_queries_are_the_callers_mistake(host_server, instance, query):
    r = requests.get(f"{host_server.url}/admin/instances/{instance['id']}/events?{query}", timeout=30)
    assert r.status_code == 400, r.text
    assert query.split("=")[0] in r.json()["error"]


@pytest.mark.parametrize("query", ["all=2", "all=" + str(2**70), "all=yes"])
def test_out_of_range_list_queries_are_the_callers_mistake(host_server, query):
    r = requests.get(f"{host_server.url}/admin/instances?{query}", timeout=30)
    assert r.status_code == 400 and "all" in r.json()["error"]


def test_end_reason_is_bounded(host_server, instance):
    r = requests.delete(f"{host_server.url}/admin/instances/{instance['id']}", params={"reason": "x" * 2000},
                        timeout=30)
    assert r.status_code == 400 and "reason" in r.json()["error"]
    assert host_server.admin.instance(instance["id"])["endedAt"] is None


@pytest.mark.parametrize("body, status, says", [
    (b"[" * 100_000 + b"]" * 100_000, 400, "deeper"),
    (b'{"options": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001, 400, "deeper"),
    (b'{"options": {"label": "' + b"[" * 100_000 + b'"}}', 201, None),  # brackets in a string are text
    (b"{" * 50, 400, "deeper"),
    (b'{"options": {"label": NaN}}', 400, "NaN is not a JSON value"),
    (b'{"applicationURL": "http://[::1"}', 400, "applicationURL"),
    (b'{"applicationURL": "http://a:port/"}', 400, "applicationURL"),
    (b'{"a": "' + b"x" * (4 << 20) + b'"}', 413, "limited"),
])
def test_json_bodies_are_bounded_in_size_and_depth(host_server, body, status, says):
    r = requests.post(f"{host_server.url}/admin/instances", data=body,
                      headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == status, r.text[:300]
    if says:
        assert says in r.json()["error"]


@pytest.mark.parametrize("bad_id", ["xyz", "0" * 32, "a" * 128])
def test_an_unknown_instance_is_named(host_server, bad_id):
    for method, path, body in [("GET", "", None), ("GET", "/events", None), ("GET", "/outputs", None),
                               ("DELETE", "", None), ("POST", "/events", {"kind": "note", "data": {}}),
                               ("POST", "/requested-state", {"state": "IDLE"}), ("POST", "/handback", {"uris": []}),
                               ("POST", "/inputs", {"paths": ["/nonexistent"]})]:
        r = requests.request(method, f"{host_server.url}/admin/instances/{bad_id}{path}", json=body, timeout=30)
        assert r.status_code == 404
        assert r.json() == {"error": f"no such instance: {bad_id}"}


def test_the_data_dir_and_the_store_are_private(server_factory):
    """Tokens are in the store in clear: data dir 0700, store and its WAL/SHM 0600, whatever the umask."""
    old = os.umask(0o022)
    try:
        server = server_factory(store="")  # the SQLite store's files, whatever DICOM_HOST_TESTS_STORE says
    finally:
        os.umask(old)
    server.create_instance()
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(server.data_dir) == 0o700
    files = sorted(server.data_dir.glob("store.sqlite3*"))
    assert {p.name for p in files} >= {"store.sqlite3", "store.sqlite3-wal", "store.sqlite3-shm"}
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_an_existing_deployment_is_made_private(tmp_path):
    from hosting_service.config import Settings
    from hosting_service.store import open_store

    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    open_store(Settings(data_dir=data)).create_instance(token="t" * 32, host_url="http://h/", application_url="http://a/",
                                                        options={})
    for p in [data, *data.glob("store.sqlite3*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    open_store(Settings(data_dir=data))
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in data.glob("store.sqlite3*")} == {0o600}
