"""Output locations through their Python interface, on a real store (SQLite and PostgreSQL: the ``host``
fixture runs on both) and a real filesystem:
protocol choice, file:/http: location shape, lifetime (IDLE, EXIT, end, hand-back), where the data
goes, what is described, and how returned URIs resolve. HTTP behaviour is in test_outputs_http.py."""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
from pathlib import Path

import pytest

from hosting_service.config import Settings
from hosting_service.errors import ClientError
from hosting_service.outputs.locations import NotInOutputLocation, OutputLocations
from hosting_service.config import normalize_protocol
from hosting_service.outputs.protocols import choose_protocol
from hosting_service.outputs.uris import file_uri_path
from hosting_service.states import PreconditionViolation, State
from hosting_service.store import InstanceEnded, open_store


class Host:
    """A store, its output locations and instances driven through the store, as the SOAP layer would."""

    def __init__(self, tmp_path: Path, store_url: str = "", **settings):
        self.settings = Settings(data_dir=tmp_path / "data", public_url="http://127.0.0.1:8123/base",
                                 store_url=store_url, **settings)
        self.store = open_store(self.settings)
        self.outputs = OutputLocations(self.store, self.settings)

    def instance(self, *states: State, **options):
        inst = self.store.create_instance(token=secrets.token_urlsafe(24), host_url="http://h",
                                          application_url="http://a", options=options)
        for state in states or (State.IDLE, State.INPROGRESS):
            self.store.record_notification(inst.id, state)
        return self.store.get_instance(inst.id)

    def location(self, uri: str) -> dict:
        [found] = [loc for inst in self.store.list_instances(include_ended=True)
                   for loc in self.outputs.describe(inst.id) if loc["uri"] == uri]
        return found


@pytest.fixture
def host(tmp_path, store_url):
    host = Host(tmp_path, store_url)
    yield host
    host.store.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- protocol choice ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [("file:", "file"), ("file", "file"), ("FILE:", "file"), (" http: ", "http"),
                                            ("HTTP", "http"), ("https:", "https"), ("https://", "https")])
def test_protocol_spellings_are_normalised(text, expected):
    assert normalize_protocol(text) == expected


@pytest.mark.parametrize("text", ["ftp:", "", "file:/", "dicomweb", "htt:"])
def test_unknown_protocols_are_refused_by_name(text):
    with pytest.raises(ValueError, match="unknown output protocol"):
        normalize_protocol(text)


def test_first_preferred_protocol_the_deployment_offers_wins():
    both = ("file", "http")
    assert choose_protocol(["http:", "file:"], both, "http") == "http"
    assert choose_protocol(["FILE", "http"], both, "http") == "file"
    assert choose_protocol(["ftp:", "gopher", "file:"], both, "http") == "file"  # unknown ones are passed over
    assert choose_protocol([], ("http", "file"), "http") == "http"  # no preference: the deployment's first
    assert choose_protocol(["", "  "], both, "http") == "file"
    # One web service behind public_url: http: is served under its scheme; https: only if that is https.
    assert choose_protocol(["http:"], ("http",), "https") == "https"
    assert choose_protocol(["https:"], ("http",), "https") == "https"
    with pytest.raises(ClientError, match=r"offers: http:$"):
        choose_protocol(["https:"], ("http",), "http")


def test_no_acceptable_protocol_is_a_client_error_listing_what_the_host_offers(host):
    only_http = Host(host.settings.data_dir.parent / "other", host.settings.store_url, output_protocols=("http",))
    inst = only_http.instance()
    with pytest.raises(ClientError) as caught:
        only_http.outputs.issue(inst, ["file:", "ftp:"])
    assert "none of the preferred protocols (file:, ftp:)" in str(caught.value)
    assert str(caught.value).endswith("it offers: http:")
    assert only_http.outputs.describe(inst.id) == []


# --- issuing ---------------------------------------------------------------------------------------------

def test_file_location_is_a_fresh_private_empty_directory_per_call(host):
    inst = host.instance()
    uris = [host.outputs.issue(inst, ["file:"]) for _ in range(3)]
    assert len(set(uris)) == 3
    area = (host.settings.instances_dir / inst.id).resolve()
    for uri in uris:
        assert uri.startswith("file:///") and uri.endswith("/") and not uri.startswith("file:////")
        path = file_uri_path(uri)
        assert path.is_dir() and list(path.iterdir()) == []
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
        assert path.parent.parent == area
    events = host.store.events(inst.id, kinds=["output_location"])
    assert [e.data["uri"] for e in events] == uris


def test_file_uri_is_percent_encoded_rfc8089(tmp_path):
    spaced = Host(tmp_path / "dir with space é")
    inst = spaced.instance()
    uri = spaced.outputs.issue(inst, ["file:"])
    assert "dir%20with%20space%20%C3%A9" in uri
    assert file_uri_path(uri).is_dir()


def test_http_location_carries_an_unguessable_token(host):
    inst = host.instance()
    uris = {host.outputs.issue(inst, ["http:"]) for _ in range(50)}
    assert len(uris) == 50
    for uri in uris:
        assert uri.startswith("http://127.0.0.1:8123/base/outputs/") and uri.endswith("/")
        token = uri.rsplit("/", 2)[1]
        assert len(token) >= 22 and re.fullmatch(r"[A-Za-z0-9_-]+", token)  # >= 128 bits of URL-safe base64


def test_issue_rechecks_the_state_in_its_transaction(host):
    """operations.py checks the precondition first; a notification or an end racing with the call must not
    leave a location active in a state the standard does not allow (nor a stray folder)."""
    inst = host.instance()
    host.store.record_notification(inst.id, State.IDLE)
    with pytest.raises(PreconditionViolation, match="GetOutputLocation is not allowed while the application is IDLE"):
        host.outputs.issue(inst, ["file:"])
    other = host.instance()
    host.store.end_instance(other.id, "test")
    with pytest.raises(InstanceEnded):
        host.outputs.issue(other, ["http:"])
    for i in (inst, other):
        assert host.outputs.describe(i.id) == []
        assert list((host.settings.instances_dir / i.id / "outputs").iterdir()) == []


def test_file_semantics_names_one_file_in_a_fresh_folder(host):
    inst = host.instance(output_semantics="file")
    uri = host.outputs.issue(inst, ["file:"])
    assert uri.endswith("/output")
    path = file_uri_path(uri)
    assert not path.exists() and path.parent.is_dir() and list(path.parent.iterdir()) == []
    path.write_bytes(b"<recist/>")  # what XIP's RECIST does with new File(uri)
    web = host.outputs.issue(inst, ["http:"])
    assert web.endswith("/output") and "/outputs/" in web
    host.store.record_notification(inst.id, State.IDLE)
    assert host.outputs.resolve(inst.id, uri).read_bytes() == b"<recist/>"
    assert host.location(uri)["files"] == [{"name": "output", "size": 9, "sha256": sha(b"<recist/>"),
                                            "state": "complete"}]


# --- lifetime ----------------------------------------------------------------------------------------------

def write_outputs(uri: str) -> dict[str, bytes]:
    folder = file_uri_path(uri)
    files = {"a.dcm": os.urandom(1000), "sub/b.dcm": os.urandom(3000)}
    for name, data in files.items():
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(data)
    os.symlink("/etc/hostname", folder / "link")  # not taken: the host only takes what was written here
    return files


def test_idle_expires_file_locations_and_moves_what_was_written_into_the_results(host):
    inst = host.instance()
    uri = host.outputs.issue(inst, ["file:"])
    files = write_outputs(uri)
    folder = file_uri_path(uri)
    described = host.location(uri)
    assert described["state"] == "active"
    assert sorted(f["name"] for f in described["files"]) == ["a.dcm", "sub/b.dcm"]
    assert all(f["state"] == "present" and f["sha256"] is None for f in described["files"])

    result = host.store.record_notification(inst.id, State.COMPLETED)
    assert result.expired_locations == []
    result = host.store.record_notification(inst.id, State.IDLE)
    assert result.expired_locations == [described["id"]]

    assert not folder.exists()
    with pytest.raises(FileNotFoundError):  # the application can no longer add files there
        (folder / "late.dcm").write_bytes(b"late")
    results = host.settings.instances_dir.resolve() / inst.id / "results" / described["id"]
    described = host.location(uri)
    assert described["state"] == "expired" and described["closedReason"] == "application reported IDLE"
    assert described["path"] == str(results)
    assert described["files"] == [{"name": n, "size": len(d), "sha256": sha(d), "state": "complete"}
                                  for n, d in sorted(files.items())]
    for name, data in files.items():  # the application's URIs still lead to the bytes
        assert host.outputs.resolve(inst.id, uri + name).read_bytes() == data
    assert [e.data["locations"] for e in host.store.events(inst.id, kinds=["expired"])] == [[described["id"]]]


@pytest.mark.parametrize("close", ["EXIT", "end"])
def test_exit_and_instance_end_expire_every_active_location(host, close):
    inst = host.instance()
    uris = [host.outputs.issue(inst, ["file:"]), host.outputs.issue(inst, ["http:"])]
    (file_uri_path(uris[0]) / "x").write_bytes(b"x")
    if close == "EXIT":
        result = host.store.record_notification(inst.id, State.EXIT)
        reason = "application reported EXIT"
    else:
        result = host.store.end_instance(inst.id, "crashed")
        reason = "instance ended: crashed"
    assert sorted(result.expired_locations) == sorted(host.location(u)["id"] for u in uris)
    for uri in uris:
        assert host.location(uri)["state"] == "expired" and host.location(uri)["closedReason"] == reason
    assert host.outputs.resolve(inst.id, uris[0] + "x").read_bytes() == b"x"


def test_retention_delete_removes_the_data_when_the_instance_ends(tmp_path):
    host = Host(tmp_path, output_retention="delete")
    inst = host.instance()
    uri = host.outputs.issue(inst, ["file:"])
    (file_uri_path(uri) / "x").write_bytes(b"x")
    host.store.record_notification(inst.id, State.IDLE)
    assert host.location(uri)["files"][0]["state"] == "complete"  # IDLE: the host owns it, still kept
    area = host.settings.instances_dir / inst.id
    (area / "delivery-cache").mkdir()
    host.store.end_instance(inst.id, "done")  # what the admin API's end does: the store, then the files
    host.outputs.after_end(inst.id)
    described = host.location(uri)
    assert described["dataDeleted"] and described["path"] is None
    assert described["files"] == [{"name": "x", "size": 1, "sha256": sha(b"x"), "state": "deleted"}]
    assert not any((area / d).exists() for d in ("outputs", "results", "uploads", "delivery-cache"))


def test_a_new_task_gets_new_locations_and_old_ones_stay_expired(host):
    inst = host.instance()
    first = host.outputs.issue(inst, ["http:"])
    host.store.record_notification(inst.id, State.COMPLETED)
    host.store.record_notification(inst.id, State.IDLE)
    host.store.record_notification(inst.id, State.INPROGRESS)
    second = host.outputs.issue(inst, ["http:"])
    assert (host.location(first)["state"], host.location(second)["state"]) == ("expired", "active")


# --- hand-back and resolve ---------------------------------------------------------------------------------

def test_returning_a_uri_in_getdata_returns_exactly_the_location_that_holds_it(host):
    inst, other = host.instance(), host.instance()
    a, b = host.outputs.issue(inst, ["file:"]), host.outputs.issue(inst, ["file:"])
    foreign = host.outputs.issue(other, ["file:"])
    (file_uri_path(a) / "r.dcm").write_bytes(b"result")
    ctk_style = "file:///" + str(file_uri_path(a) / "r.dcm")  # CTK writes file:////abs
    assert ctk_style.startswith("file:////")
    ignored = ["file:///etc/hostname", "http://elsewhere/x", "not a uri", foreign + "x", foreign]
    returned = host.outputs.hand_back(inst.id, [ctk_style, *ignored])
    assert returned == [host.location(a)["id"]]
    assert host.location(a)["state"] == "returned"
    assert host.location(a)["closedReason"] == "returned by the application in GetData"
    assert host.location(b)["state"] == "active" and host.location(foreign)["state"] == "active"
    assert host.outputs.resolve(inst.id, a + "r.dcm").read_bytes() == b"result"
    assert host.outputs.hand_back(inst.id, [a]) == []  # once returned, stays returned
    # IDLE later expires what is still active, and leaves the returned one as it is
    assert host.store.record_notification(inst.id, State.IDLE).expired_locations == [host.location(b)["id"]]
    assert host.location(a)["state"] == "returned"


@pytest.mark.parametrize("spelling", ["{uri}", "{uri}name.dcm", "{bare}", "{uri}%6Eame.dcm"])
def test_http_uris_are_handed_back_in_any_equivalent_spelling(host, spelling):
    inst = host.instance()
    uri = host.outputs.issue(inst, ["http:"])
    text = spelling.format(uri=uri.replace("http://", "HTTP://"), bare=uri.rstrip("/"))
    assert host.outputs.hand_back(inst.id, [text]) == [host.location(uri)["id"]]


def test_resolve_refuses_uris_that_lead_out_of_the_location(host):
    inst, other = host.instance(), host.instance()
    uri = host.outputs.issue(inst, ["file:"])
    folder = file_uri_path(uri)
    os.symlink("/etc", folder / "escape")
    (folder / "ok").write_bytes(b"ok")
    assert host.outputs.resolve(inst.id, uri + "ok").read_bytes() == b"ok"
    for bad in (uri + "escape/hostname", uri + "../../../store.sqlite3", uri + "%2e%2e/x",
                "file:///etc/hostname", host.outputs.issue(other, ["file:"]) + "ok"):
        with pytest.raises(NotInOutputLocation):
            host.outputs.resolve(inst.id, bad)
    web = host.outputs.issue(inst, ["http:"])
    for bad in (web + "..", web + "a/b", web + "%2e%2e", web + "a%2Fb", web + "a%00b"):
        with pytest.raises(NotInOutputLocation):
            host.outputs.resolve(inst.id, bad)
