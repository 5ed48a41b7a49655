"""A ``dicom-host run`` that is killed leaves nothing running: neither its application nor the server it
started (principle: nothing left behind). A hang-up (closed terminal) cancels like Ctrl-C."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from hosting_service.dicom.samples import write_sample_series
from run_harness import EXIT_CANCELED, MISBEHAVING_APP, process_gone, read_events_until, start_job


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    write_sample_series(folder, slices=3, size=16)
    return folder


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``, from /proc (the embedded server, its workers, the application)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its (possibly dead) parent."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process tree from /proc")
def test_killed_run_leaves_no_process_behind(series, tmp_path):
    job = start_job(tmp_path / "out", "--app", f"{MISBEHAVING_APP} --process-seconds 60", "--input", str(series),
                    "--data-dir", str(tmp_path / "server"))  # a killed run cannot remove a temporary one
    try:
        events = read_events_until(job, "state", to="INPROGRESS")
        app_pid = next(e["data"]["pid"] for e in events if e["kind"] == "run")
        started = descendants(job.pid)
        assert app_pid in started and len(started) >= 3  # the application, gunicorn's master and worker
        job.send_signal(signal.SIGKILL)
        job.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in started):
            time.sleep(0.1)
        assert not [p for p in started if alive(p)], "left running after the run was killed"
    finally:
        job.kill()
        job.communicate()


def test_hangup_cancels_the_task(series, tmp_path):
    job = start_job(tmp_path / "out", "--app", MISBEHAVING_APP + " --process-seconds 30", "--input", str(series))
    events = read_events_until(job, "state", to="INPROGRESS")
    app_pid = next(e["data"]["pid"] for e in events if e["kind"] == "run")
    job.send_signal(signal.SIGHUP)
    job.communicate(timeout=60)
    assert job.returncode == EXIT_CANCELED
    assert process_gone(app_pid)


def test_killed_run_on_a_server_has_its_instance_ended_by_the_server(series, tmp_path, host_server):
    """``run --server``: the instance is leased and heartbeated; once the run is killed, its application dies
    with it and the server ends the instance when the lease runs out, instead of leaving it INPROGRESS."""
    job = start_job(tmp_path / "out", "--app", f"{MISBEHAVING_APP} --process-seconds 60", "--input", str(series),
                    "--lease", "2", server=host_server.url)
    try:
        events = read_events_until(job, "state", to="INPROGRESS")
        app_pid = next(e["data"]["pid"] for e in events if e["kind"] == "run")
        instance_id = next(e["data"]["id"] for e in events if e["kind"] == "instance")
        time.sleep(3)  # longer than the lease: the heartbeats keep the instance
        admin = host_server.admin
        assert admin.instance(instance_id)["endedAt"] is None
        job.send_signal(signal.SIGKILL)
        job.wait(10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and alive(app_pid):
            time.sleep(0.05)
        assert not alive(app_pid)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and admin.instance(instance_id)["endedAt"] is None:
            time.sleep(0.2)
        ended = admin.instance(instance_id)
        assert ended["endedAt"] is not None, ended
    finally:
        job.kill()
        job.communicate()
