"""``dicom-host instance ...`` and the CLI as a whole, run as real subprocesses against the session server,
with real hosted applications (``client.examples.misbehaving_app``) where an application is needed."""
from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from client import ApplicationClient
from conftest import REPO, drive
from hosting_service.dicom.samples import write_sample_series
from hosting_service.ports import free_loopback_port
from hosting_service.states import State

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}


def dicom_host(*args: str, cwd: Path = REPO, timeout: float = 60, **streams) -> subprocess.CompletedProcess:
    streams = streams or {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    return subprocess.run([sys.executable, "-m", "hosting_service.cli.main", *args], cwd=cwd, env=ENV, text=True,
                          timeout=timeout, **streams)


def instance_cmd(server, action: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return dicom_host("instance", action, "--server", server.url, *args, **kwargs)


@pytest.fixture
def app(host_server, tmp_path):
    """``app(*options)``: a misbehaving_app launched for a new instance and at IDLE; ``(instance, process)``."""
    processes: list[subprocess.Popen] = []

    def launch(*options: str) -> tuple[dict, subprocess.Popen]:
        url = f"http://127.0.0.1:{free_loopback_port()}/app/ApplicationService-20100825"
        instance = host_server.admin.create_instance(application_url=url)
        with open(tmp_path / f"app{len(processes)}.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "client.examples.misbehaving_app", "--hostURL", instance["hostURL"],
                 "--applicationURL", url, *options], stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                start_new_session=True)
        processes.append(process)
        wait_state(host_server, instance["id"], State.IDLE)
        return instance, process

    yield launch
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def read_event(stream, timeout: float = 30) -> dict:
    """The next JSON line of a following process (its stdout unbuffered here, so select sees every line)."""
    assert select.select([stream], [], [], timeout)[0], f"nothing printed within {timeout} s"
    return json.loads(stream.readline())


def wait_state(server, instance_id: str, state: State, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while server.admin.instance(instance_id)["state"] != state.value:
        assert time.monotonic() < deadline, f"no {state}"
        time.sleep(0.05)


# --- instance end ---------------------------------------------------------------------------------------

def test_end_asks_an_idle_application_to_exit(host_server, app):
    instance, process = app()
    result = instance_cmd(host_server, "end", instance["id"])
    assert result.returncode == 0, result.stderr
    assert process.wait(10) == 0, "the application left at EXIT"
    ended = json.loads(result.stdout)
    assert ended["endedAt"] is not None and ended["state"] == "EXIT"
    assert result.stderr == ""


def test_end_says_when_the_table_does_not_allow_exit(host_server, app):
    instance, process = app()
    with ApplicationClient(instance["applicationURL"]) as client:
        assert client.set_state(State.INPROGRESS)
    wait_state(host_server, instance["id"], State.INPROGRESS)
    result = instance_cmd(host_server, "end", instance["id"])
    assert result.returncode == 4
    assert "the application is INPROGRESS" in result.stderr and "only from IDLE" in result.stderr
    assert "cannot stop a process it did not start" in result.stderr
    assert instance["applicationURL"] in result.stderr
    assert json.loads(result.stdout)["endedAt"] is not None, "the instance is ended all the same"
    assert process.poll() is None


def test_end_says_when_the_application_does_not_follow(host_server, app):
    instance, process = app("--ignore-request", "EXIT")
    started = time.monotonic()
    result = instance_cmd(host_server, "end", instance["id"], "--exit-timeout", "1")
    assert result.returncode == 4
    assert time.monotonic() - started < 30
    assert "accepted SetState(EXIT) but did not notify EXIT within 1 s" in result.stderr
    assert instance["applicationURL"] in result.stderr
    assert process.poll() is None
    assert host_server.admin.instance(instance["id"])["endedAt"] is not None


def test_end_without_an_application(host_server, instance):
    result = instance_cmd(host_server, "end", instance["id"])
    assert result.returncode == 4
    assert "never reported IDLE" in result.stderr and instance["applicationURL"] in result.stderr
    assert host_server.admin.instance(instance["id"])["endedAt"] is not None


def test_end_when_the_application_is_gone(host_server, instance):
    drive(instance["hostURL"], "IDLE")  # it said IDLE, and nobody answers at its URL
    result = instance_cmd(host_server, "end", instance["id"], "--exit-timeout", "5")
    assert result.returncode == 4
    assert "asking the application to EXIT failed" in result.stderr and "cannot connect" in result.stderr


# --- instance events, offer, show -----------------------------------------------------------------------

def follow_events(server, instance: dict, flag: str) -> subprocess.Popen:
    """``instance events --follow`` running, its stdout unbuffered for :func:`read_event`."""
    return subprocess.Popen(
        [sys.executable, "-m", "hosting_service.cli.main", "instance", "events", flag, "--server", server.url,
         instance["id"]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, env=ENV)


def test_events_follow_until_the_instance_ends(host_server, instance):
    follow = follow_events(host_server, instance, "--follow")
    try:
        assert read_event(follow.stdout)["kind"] == "created"
        drive(instance["hostURL"], "IDLE", "INPROGRESS")
        printed = [read_event(follow.stdout), read_event(follow.stdout)]  # as they happen
        host_server.admin.end(instance["id"], "test")
        out, err = follow.communicate(timeout=60)
    finally:
        follow.kill()
    assert follow.returncode == 0, err
    events = printed + [json.loads(line) for line in out.decode().splitlines()]
    assert events[-1]["kind"] == "ended"
    assert [e["data"]["to"] for e in events if e["kind"] == "state"] == ["IDLE", "INPROGRESS"]


def test_events_follow_stops_on_ctrl_c(host_server, instance):
    follow = follow_events(host_server, instance, "-f")
    try:
        assert read_event(follow.stdout)["kind"] == "created"
        follow.send_signal(signal.SIGINT)
        _, err = follow.communicate(timeout=30)
    finally:
        follow.kill()
    assert follow.returncode == 0 and b"Traceback" not in err


def test_offer_takes_relative_paths_from_the_callers_folder(host_server, instance, tmp_path):
    write_sample_series(tmp_path / "series", slices=2, size=16)
    result = instance_cmd(host_server, "offer", instance["id"], "series", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["count"] == 2


def test_offer_of_nothing_usable_fails(host_server, instance, tmp_path):
    (tmp_path / "empty").mkdir()
    result = instance_cmd(host_server, "offer", instance["id"], "empty", "missing.dcm", cwd=tmp_path)
    assert result.returncode == 2
    assert "nothing was offered" in result.stderr
    assert json.loads(result.stdout)["count"] == 0


@pytest.mark.parametrize("bad_id", ["nonsense", "0" * 32])
def test_show_of_an_unknown_instance_names_it(host_server, bad_id):
    result = instance_cmd(host_server, "show", bad_id)
    assert result.returncode == 3
    assert f"no such instance: {bad_id}" in result.stderr and "route" not in result.stderr


# --- the CLI as a whole ---------------------------------------------------------------------------------

def test_a_closed_pipe_ends_quietly(host_server):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (head, say) has gone before anything was written
    try:
        result = dicom_host("instance", "list", "--server", host_server.url, stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
    assert result.returncode == 128 + signal.SIGPIPE


@pytest.mark.parametrize("args", [[], ["serve"], ["run"], ["instance"], ["instance", "end"], ["instance", "offer"]])
def test_help_is_plain_text(args):
    result = dicom_host(*args, "--help")
    assert result.returncode == 0
    assert not re.search(r"``|:[a-z]+:`", result.stdout), result.stdout


def test_version():
    result = dicom_host("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"dicom-host {metadata.version('dicom-host')}"
