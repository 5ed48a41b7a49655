"""The session store on its own, on both backends (SQLite, and a throwaway PostgreSQL: ``store_url`` in
conftest.py): notifications, warnings, releases, persistence, concurrency between processes, schema
migrations, backend choice."""
import multiprocessing
import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from hosting_service.config import Settings
from hosting_service.model import AvailableData, ObjectDescriptor, Status, StatusType
from hosting_service.states import State
from hosting_service.store import InputObject, InstanceEnded, Locator, StoreError, UnknownInstance, open_store
from hosting_service.store.schema import MIGRATIONS, applied_versions, migrate


def open_url(url: str, data_dir: Path):
    return open_store(Settings(data_dir=data_dir, store_url=url))


@pytest.fixture
def store(store_url, tmp_path):
    opened = open_url(store_url, tmp_path / "data")
    yield opened
    opened.close()


def _instance(store):
    return store.create_instance(token=uuid.uuid4().hex, host_url="h", application_url="a", options={"k": 1})


def test_notifications_take_the_apps_word_and_record_illegal_ones(store):
    i = _instance(store)
    assert store.record_notification(i.id, State.IDLE).legal
    result = store.record_notification(i.id, State.COMPLETED)  # IDLE -> COMPLETED: not in the table
    assert not result.legal and result.previous is State.IDLE
    assert store.get_instance(i.id).reported_state is State.COMPLETED
    warnings = store.events(i.id, kinds=["warning"])
    assert len(warnings) == 1 and "IDLE -> COMPLETED is not a transition" in warnings[0].data["message"]


def test_idle_releases_every_locator(store):
    i = _instance(store)
    store.record_notification(i.id, State.IDLE)
    store.record_notification(i.id, State.INPROGRESS)
    store.add_locators([Locator(str(uuid.uuid4()), i.id, "src", "file:///x", "/x", 0.0) for _ in range(3)])
    assert len(store.active_locators(i.id)) == 3
    first = store.active_locators(i.id)[0].locator
    assert store.release_locators(i.id, [first.upper()]) == 1  # UUIDs compare case-insensitively
    store.record_notification(i.id, State.COMPLETED)
    assert store.record_notification(i.id, State.IDLE).released_locators == 2
    assert store.active_locators(i.id) == []


def test_released_locators_are_not_kept(store):
    """A released locator is never used again: its row goes (only the count stays, in the events), whether
    released by ReleaseData, at IDLE or EXIT, or when the instance ends."""

    def rows() -> int:
        with store.reading() as db:
            return db.execute("SELECT COUNT(*) AS n FROM locators").fetchone()["n"]

    def running() -> str:
        i = _instance(store)
        store.record_notification(i.id, State.IDLE)
        store.record_notification(i.id, State.INPROGRESS)
        store.add_locators([Locator(str(uuid.uuid4()), i.id, "src", "file:///x", "/x", 0.0) for _ in range(2)])
        return i.id

    first = running()
    store.release_locators(first, [store.active_locators(first)[0].locator])
    assert rows() == 1
    store.record_notification(first, State.CANCELED)
    store.record_notification(first, State.IDLE)
    assert rows() == 0
    ended = running()
    store.end_instance(ended, "test")
    assert rows() == 0
    assert [e.data["count"] for e in store.events(ended, kinds=["released"])] == [2]


def test_inputs_outputs_status_and_persistence(store, store_url, tmp_path):
    i = _instance(store)
    d = ObjectDescriptor(ClassUID="1.2", MimeType="application/dicom", DescriptorUuid=str(uuid.uuid4()).upper())
    store.add_inputs(i.id, [InputObject(d, "/data/a.dcm", 0, 10)])
    store.record_notification(i.id, State.IDLE)
    store.record_notification(i.id, State.INPROGRESS)
    store.record_outputs(i.id, AvailableData(ObjectDescriptors=[d]), True)
    store.record_status(i.id, Status(StatusType=StatusType.FATALERROR, CodeValue=7, CodeMeaning="boom"))
    store.record_requested_state(i.id, State.INPROGRESS)

    reopened = open_url(store_url, tmp_path / "data")  # a restart: nothing lives outside the database
    again = reopened.get_instance(i.id)
    assert again.requested_state is State.INPROGRESS and again.options == {"k": 1}
    found = reopened.inputs(i.id, [d.DescriptorUuid.lower()])
    assert found[d.DescriptorUuid.lower()].path == "/data/a.dcm"
    announced, last = reopened.announced_outputs(i.id)
    assert last and announced[0].ObjectDescriptors[0].ClassUID == "1.2"
    status = reopened.events(i.id, kinds=["status"])[0].data
    assert status["StatusType"] == "FATALERROR" and status["CodeValue"] == 7 and status["CodeMeaning"] == "boom"
    reopened.close()


def test_ended_instances_accept_nothing(store):
    i = _instance(store)
    store.end_instance(i.id, "test")
    with pytest.raises(InstanceEnded):
        store.record_notification(i.id, State.IDLE)
    with pytest.raises(UnknownInstance):
        store.get_instance("0" * 32)


def _hammer(url, data_dir, instance_id, n, barrier):
    store = open_url(url, data_dir)
    barrier.wait(30)
    for k in range(n):
        store.add_event(instance_id, "log", {"k": k})
    store.close()


def _run_processes(target, args, count: int, timeout: float = 90) -> None:
    """``target(*args, barrier)`` in ``count`` fresh processes; each calls ``barrier.wait()`` when ready, so
    that their contended part starts at once."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(count)
    procs = [ctx.Process(target=target, args=(*args, barrier)) for _ in range(count)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
    for p in procs:
        if p.exitcode is None:
            p.kill()
    assert [p.exitcode for p in procs] == [0] * count


def test_several_processes_write_without_losing_anything(store, store_url, tmp_path):
    i = _instance(store)
    _run_processes(_hammer, (store_url, tmp_path / "data", i.id, 200), 4)
    events = store.events(i.id, kinds=["log"])
    assert len(events) == 800
    assert [e.seq for e in events] == sorted({e.seq for e in events})  # unique, in order


def _increment(url, data_dir, instance_id, n, barrier):
    """Read-modify-write of one instance's row, as the outputs layer does, in keyed transactions."""
    store = open_url(url, data_dir)
    barrier.wait(30)
    for _ in range(n):
        with store.transaction(key=instance_id) as db:
            row = db.execute("SELECT end_reason FROM instances WHERE id = ?", (instance_id,)).fetchone()
            time.sleep(0.0005)  # widen the window between the read and the write
            db.execute("UPDATE instances SET end_reason = ? WHERE id = ?", (str(int(row["end_reason"]) + 1), instance_id))
    store.close()


def test_keyed_transactions_of_two_processes_lose_no_update(store, store_url, tmp_path):
    """Two processes hammering one instance: on PostgreSQL (READ COMMITTED) only the advisory lock of
    ``transaction(key=instance_id)`` keeps the two read-modify-writes from interleaving."""
    i = _instance(store)
    with store.transaction(key=i.id) as db:
        db.execute("UPDATE instances SET end_reason = ? WHERE id = ?", ("0", i.id))
    _run_processes(_increment, (store_url, tmp_path / "data", i.id, 150), 2)
    assert store.get_instance(i.id).end_reason == "300"


def test_log_lines_never_carry_tokens():
    from hosting_service.logs import redacted_path

    token = "Tk3myRAxkJAubAwlY1EqpZ1QZKC6rUSk"
    assert redacted_path(f"/{token}/HostService-20100825") == "/<token>/HostService-20100825"
    assert redacted_path(f"/outputs/{token}") == "/outputs/<token>"
    assert redacted_path(f"/outputs/{token}/result.dcm") == "/outputs/<token>/result.dcm"
    assert redacted_path("/admin/instances") == "/admin/instances"


def test_effects_are_refused_when_the_state_changed_under_the_request(store):
    """GetData and NotifyDataAvailable are judged on the state when they arrive; the store checks again
    when it records their effect, so no locator outlives the release at IDLE."""
    from hosting_service.states import PreconditionViolation

    i = _instance(store)
    store.record_notification(i.id, State.IDLE)
    with pytest.raises(PreconditionViolation, match="GetData is not allowed while the application is IDLE"):
        store.add_locators([Locator(str(uuid.uuid4()), i.id, "src", "file:///x", "/x", 0.0)])
    with pytest.raises(PreconditionViolation, match="NotifyDataAvailable"):
        store.record_outputs(i.id, AvailableData(), True)
    assert store.active_locators(i.id) == [] and store.announced_outputs(i.id) == ([], False)


# --- schema and migrations ---------------------------------------------------------------------------------

BEFORE_VERSIONS = """
CREATE TABLE instances (id TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE, host_url TEXT NOT NULL,
    application_url TEXT NOT NULL, created_at REAL NOT NULL, reported_state TEXT, requested_state TEXT,
    ended_at REAL, end_reason TEXT, options TEXT NOT NULL DEFAULT '{}');
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL, at REAL NOT NULL,
    kind TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX events_by_instance ON events (instance_id, seq);
CREATE TABLE inputs (instance_id TEXT NOT NULL, uuid TEXT NOT NULL, descriptor TEXT NOT NULL, path TEXT NOT NULL,
    offset INTEGER NOT NULL, length INTEGER NOT NULL, PRIMARY KEY (instance_id, uuid));
CREATE TABLE locators (locator TEXT PRIMARY KEY, instance_id TEXT NOT NULL, source TEXT NOT NULL, uri TEXT NOT NULL,
    path TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE announcements (seq INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL, data TEXT NOT NULL,
    last_data INTEGER NOT NULL);
CREATE TABLE output_locations (id TEXT PRIMARY KEY, instance_id TEXT NOT NULL, protocol TEXT NOT NULL,
    semantics TEXT NOT NULL, uri TEXT NOT NULL, token TEXT UNIQUE, state TEXT NOT NULL, created_at REAL NOT NULL,
    closed_at REAL, closed_reason TEXT, deleted_at REAL);
INSERT INTO instances (id, token, host_url, application_url, created_at, reported_state, options)
    VALUES ('old', 'tok', 'http://h/', 'http://a/', 1.5, 'INPROGRESS', '{"label": "before"}');
INSERT INTO events (instance_id, at, kind, data) VALUES ('old', 1.5, 'created', '{}');
"""
"""A store as the code before schema versions made it (the tables it had then; the models tables appeared
with the first GetAsModels, so a deployment may lack them)."""


def test_a_store_made_before_schema_versions_is_adopted_and_upgraded(tmp_path):
    path = tmp_path / "data" / "store.sqlite3"
    path.parent.mkdir()
    old = sqlite3.connect(path)
    old.executescript(BEFORE_VERSIONS)
    old.close()
    store = open_url("", tmp_path / "data")
    assert applied_versions(store) == [version for version, _, _ in MIGRATIONS]
    instance = store.get_instance("old")  # the data is kept
    assert instance.options == {"label": "before"} and instance.reported_state is State.INPROGRESS
    assert store.add_event("old", "log", {}) > 1  # numbering continues after the old events
    with store.reading() as db:  # the tables the old store lacked now exist
        assert db.execute("SELECT COUNT(*) AS n FROM models").fetchone()["n"] == 0
    assert migrate(store) == []  # applied once
    store.close()


def test_each_migration_is_applied_once_even_by_processes_starting_together(store, store_url, tmp_path):
    assert applied_versions(store) == [version for version, _, _ in MIGRATIONS]
    assert migrate(store) == []
    _run_processes(_migrate_with_extra, (store_url, tmp_path / "data"), 3)
    assert applied_versions(store) == [*(version for version, _, _ in MIGRATIONS), len(MIGRATIONS) + 1]
    with store.reading() as db:
        assert db.execute("SELECT COUNT(*) AS n FROM extra").fetchone()["n"] == 1  # not applied twice


def _migrate_with_extra(url, data_dir, barrier):
    """A new migration without IF NOT EXISTS: applying it twice would fail."""
    store = open_url(url, data_dir)
    barrier.wait(30)
    extra = (len(MIGRATIONS) + 1, "test", "CREATE TABLE extra (id TEXT PRIMARY KEY); INSERT INTO extra VALUES ('x')")
    migrate(store, [*MIGRATIONS, extra])
    store.close()


def test_migrations_must_be_numbered_in_order(store):
    with pytest.raises(ValueError, match="numbered"):
        migrate(store, [MIGRATIONS[0], (3, "gap", "")])


def test_a_failed_migration_leaves_nothing_behind(store):
    bad = (len(MIGRATIONS) + 1, "bad", "CREATE TABLE half (id TEXT); CREATE TABLE broken (")
    with pytest.raises(Exception):
        migrate(store, [*MIGRATIONS, bad])
    assert applied_versions(store) == [version for version, _, _ in MIGRATIONS]
    with store.reading() as db:  # the first statement was rolled back with the second
        with pytest.raises(Exception):
            db.execute("SELECT * FROM half").fetchall()


# --- backends --------------------------------------------------------------------------------------------

def test_both_backends_write_sql_once(store):
    assert store.dialect.name in ("sqlite", "postgresql")
    i = _instance(store)
    with store.transaction(key=i.id) as db:
        db.execute("UPDATE instances SET end_reason = ? WHERE id = ?", ("50% done?", i.id))  # % and ? as data
        row = db.execute("SELECT id, end_reason FROM instances WHERE id = ? AND end_reason LIKE '%?%'", (i.id,)).fetchone()
    assert dict(row) == {"id": i.id, "end_reason": "50% done?"} and list(row.keys()) == ["id", "end_reason"]
    store.check()


def test_unknown_store_urls_are_refused_naming_the_variable(tmp_path):
    for url in ("mysql://db/x", "sqlite://relative", "redis://localhost"):
        with pytest.raises(ValueError, match="DICOM_HOST_STORE"):
            open_url(url, tmp_path / "data")


def test_an_unreachable_postgresql_is_a_store_error_at_once(tmp_path, postgres_url):
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot be used") as caught:
        open_url("postgresql://someone:secret@127.0.0.1:1/nothing", tmp_path / "data")
    assert "secret" not in str(caught.value)  # passwords are never repeated
    assert time.monotonic() - started < 10


# --- real servers on each backend --------------------------------------------------------------------------

def _on(server, url: str) -> str:
    """``url`` (made by one frontend) addressed to ``server`` instead: same path, that server's address."""
    path = url.split("/", 3)[3]
    return f"{server.url}/{path}"


def test_two_frontends_on_one_store_serve_one_instance(server_factory, store_url):
    """The main flow of an instance, each step through either of two ``dicom-host serve`` processes on the
    same store and data dir: what one records, the other answers from (PostgreSQL is what makes this span
    machines)."""
    import hashlib

    import requests

    from conftest import ARRAYS_NS, HOST_NS, drive, parse_body, soap_post

    a = server_factory(store=store_url)
    b = server_factory(store=store_url)
    inst = a.create_instance()
    drive(_on(b, inst["hostURL"]), "IDLE", "INPROGRESS")
    assert a.admin.instance(inst["id"])["state"] == "INPROGRESS"
    r = soap_post(_on(b, inst["hostURL"]), f'<GetOutputLocation xmlns="{HOST_NS}"><preferredProtocols '
                  f'xmlns:a="{ARRAYS_NS}"><a:string>http:</a:string></preferredProtocols></GetOutputLocation>',
                  action="http://dicom.nema.org/PS3.19/IHostService/GetOutputLocation")
    assert r.status_code == 200, r.text
    uri = parse_body(r).findtext(f"{{{HOST_NS}}}GetOutputLocationResult")
    assert uri.startswith(b.url + "/outputs/")
    body = b"result" * 1000
    put = requests.put(_on(a, uri) + "r.dcm", data=body, timeout=30)
    assert put.status_code == 201, put.text
    assert requests.get(uri + "r.dcm", timeout=30).content == body
    [location] = b.admin.instance(inst["id"])["outputLocations"]
    assert [(f["name"], f["sha256"]) for f in location["files"]] == [("r.dcm", hashlib.sha256(body).hexdigest())]
    drive(_on(a, inst["hostURL"]), "COMPLETED")
    assert b.admin.hand_back(inst["id"], [uri + "r.dcm"])["returned"] == [location["id"]]
    assert requests.put(_on(a, uri) + "late.dcm", data=b"x", timeout=30).status_code == 410
    a.admin.end(inst["id"], "done")
    events, _last = b.admin.events(inst["id"])
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "created" and kinds[-1] == "ended" and "upload" in kinds and "output_location" in kinds
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with the pool's threads running: on purpose
def test_a_forked_process_never_uses_its_parents_connections(store):
    """gunicorn forks its workers; a store used before a fork must not hand the child the parent's
    connections (their protocol streams would interleave). Parent and child write at once; both succeed."""
    i = _instance(store)
    store.add_event(i.id, "log", {"who": "parent"})  # the parent's connection (pool) exists now
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_write_events, args=(store, i.id, "child", 100))
    child.start()
    _write_events(store, i.id, "parent", 100)
    child.join(60)
    assert child.exitcode == 0
    whom = [e.data["who"] for e in store.events(i.id, kinds=["log"])]
    assert whom.count("child") == 100 and whom.count("parent") == 101


def _write_events(store, instance_id, who, n):
    for _ in range(n):
        store.add_event(instance_id, "log", {"who": who})


@pytest.mark.parametrize("url, says", [("mysql://db/x", "DICOM_HOST_STORE: unsupported store URL"),
                                       ("postgresql://someone@127.0.0.1:1/x", "cannot be used")])
def test_serve_refuses_a_store_it_cannot_use_before_starting(tmp_path, url, says):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "hosting_service.cli.main", "serve", "--bind", "127.0.0.1:0",
                           "--data-dir", str(tmp_path / "data"), "--store", url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_a_bad_pool_size_is_refused_by_name(value):
    with pytest.raises(ValueError, match="DICOM_HOST_STORE_POOL_SIZE"):
        Settings.from_env({"DICOM_HOST_STORE_POOL_SIZE": value})


def test_check_names_a_database_that_stopped_answering(tmp_path, postgres_server):
    """``store.check()`` (for /healthz) fails quickly with a StoreError once the server is gone."""
    from postgres import ThrowawayPostgres

    with ThrowawayPostgres.start() as doomed:
        store = open_url(doomed.create_database(), tmp_path / "data")
        store.check()
    started = time.monotonic()
    with pytest.raises(StoreError, match="does not answer"):
        store.check()
    assert time.monotonic() - started < 10
    store.close()
