"""The SQLite session store on its own: notifications, warnings, releases, persistence, concurrency
between processes."""
import multiprocessing
import sqlite3
import uuid

import pytest

from hosting_service.model import AvailableData, ObjectDescriptor, Status, StatusType
from hosting_service.states import State
from hosting_service.store import InputObject, InstanceEnded, Locator, SQLiteStore, UnknownInstance


def _instance(store):
    return store.create_instance(token=uuid.uuid4().hex, host_url="h", application_url="a", options={"k": 1})


def test_notifications_take_the_apps_word_and_record_illegal_ones(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    i = _instance(store)
    assert store.record_notification(i.id, State.IDLE).legal
    result = store.record_notification(i.id, State.COMPLETED)  # IDLE -> COMPLETED: not in the table
    assert not result.legal and result.previous is State.IDLE
    assert store.get_instance(i.id).reported_state is State.COMPLETED
    warnings = store.events(i.id, kinds=["warning"])
    assert len(warnings) == 1 and "IDLE -> COMPLETED is not a transition" in warnings[0].data["message"]


def test_idle_releases_every_locator(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
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


def test_released_locators_are_not_kept(tmp_path):
    """A released locator is never used again: its row goes (only the count stays, in the events), whether
    released by ReleaseData, at IDLE or EXIT, or when the instance ends."""
    store = SQLiteStore(tmp_path / "s.db")

    def rows() -> int:
        return sqlite3.connect(tmp_path / "s.db").execute("SELECT COUNT(*) FROM locators").fetchone()[0]

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


def test_inputs_outputs_status_and_persistence(tmp_path):
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    i = _instance(store)
    d = ObjectDescriptor(ClassUID="1.2", MimeType="application/dicom", DescriptorUuid=str(uuid.uuid4()).upper())
    store.add_inputs(i.id, [InputObject(d, "/data/a.dcm", 0, 10)])
    store.record_notification(i.id, State.IDLE)
    store.record_notification(i.id, State.INPROGRESS)
    store.record_outputs(i.id, AvailableData(ObjectDescriptors=[d]), True)
    store.record_status(i.id, Status(StatusType=StatusType.FATALERROR, CodeValue=7, CodeMeaning="boom"))
    store.record_requested_state(i.id, State.INPROGRESS)

    reopened = SQLiteStore(path)  # a restart: nothing lives outside the file
    again = reopened.get_instance(i.id)
    assert again.requested_state is State.INPROGRESS and again.options == {"k": 1}
    found = reopened.inputs(i.id, [d.DescriptorUuid.lower()])
    assert found[d.DescriptorUuid.lower()].path == "/data/a.dcm"
    announced, last = reopened.announced_outputs(i.id)
    assert last and announced[0].ObjectDescriptors[0].ClassUID == "1.2"
    status = reopened.events(i.id, kinds=["status"])[0].data
    assert status["StatusType"] == "FATALERROR" and status["CodeValue"] == 7 and status["CodeMeaning"] == "boom"


def test_ended_instances_accept_nothing(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    i = _instance(store)
    store.end_instance(i.id, "test")
    with pytest.raises(InstanceEnded):
        store.record_notification(i.id, State.IDLE)
    with pytest.raises(UnknownInstance):
        store.get_instance("0" * 32)


def _hammer(path, instance_id, n):
    store = SQLiteStore(path)
    for k in range(n):
        store.add_event(instance_id, "log", {"k": k})


def test_several_processes_write_without_losing_anything(tmp_path):
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    i = _instance(store)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(path, i.id, 200)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(store.events(i.id, kinds=["log"])) == 800


def test_log_lines_never_carry_tokens():
    from hosting_service.logs import redacted_path

    token = "Tk3myRAxkJAubAwlY1EqpZ1QZKC6rUSk"
    assert redacted_path(f"/{token}/HostService-20100825") == "/<token>/HostService-20100825"
    assert redacted_path(f"/outputs/{token}") == "/outputs/<token>"
    assert redacted_path(f"/outputs/{token}/result.dcm") == "/outputs/<token>/result.dcm"
    assert redacted_path("/admin/instances") == "/admin/instances"


def test_effects_are_refused_when_the_state_changed_under_the_request(tmp_path):
    """GetData and NotifyDataAvailable are judged on the state when they arrive; the store checks again
    when it records their effect, so no locator outlives the release at IDLE."""
    from hosting_service.states import PreconditionViolation

    store = SQLiteStore(tmp_path / "s.db")
    i = _instance(store)
    store.record_notification(i.id, State.IDLE)
    with pytest.raises(PreconditionViolation, match="GetData is not allowed while the application is IDLE"):
        store.add_locators([Locator(str(uuid.uuid4()), i.id, "src", "file:///x", "/x", 0.0)])
    with pytest.raises(PreconditionViolation, match="NotifyDataAvailable"):
        store.record_outputs(i.id, AvailableData(), True)
    assert store.active_locators(i.id) == [] and store.announced_outputs(i.id) == ([], False)
