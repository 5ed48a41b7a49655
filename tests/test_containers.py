"""Hosted applications as containers (hosting_service/orchestration/container.py), on a real Docker engine: the
engine that runs, or a dockerd the tests start (tests/docker_engine.py); skipped, with the reason, only where
no engine can run. The images come from the project's own scripts (scripts/base-images.sh, build-images.sh).
"""
from __future__ import annotations

import os
import secrets
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import HostServer
from docker_engine import APPS_IMAGE, PYTHON_IMAGE, SERVER_IMAGE, Engine
from hosting_service.orchestration.container import (
    APP_PORT, LABEL_ATTEMPT, LABEL_JOB, LABEL_WORKER, AppContainer, ContainerLauncher, Reaper, container_name,
    memory_bytes, reap,
)
from hosting_service.orchestration.process import LaunchError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))  # check_mip.py: results by content

pytestmark = pytest.mark.timeout(900)  # the first test may build the images (minutes on a cold cache)


@pytest.fixture(scope="module")
def engine():
    engine = Engine().start()
    if engine.client is None:
        pytest.skip(engine.reason)
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def python_image(engine) -> str:
    problem = engine.image(PYTHON_IMAGE)
    assert problem is None, problem
    return PYTHON_IMAGE


@pytest.fixture(scope="module")
def network(engine):
    """A user-defined network of its own, where container names resolve."""
    net = engine.client.networks.create(f"dicom-host-test-{secrets.token_hex(4)}", driver="bridge")
    yield net
    for container in engine.client.containers.list(all=True, filters={"network": net.name}):
        container.remove(force=True)
    net.remove()


class Lines:
    """An output sink that keeps what it gets."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, stream: str, line: str) -> None:
        with self._lock:
            self.lines.append((stream, line))


def python_spec(image: str, code: str, **extra) -> dict:
    return {"name": "probe", "image": image, "command": ["python3", "-c", code], **extra}


def gone(engine, container: AppContainer) -> bool:
    return not engine.client.containers.list(all=True, filters={"id": container.id})


def test_output_goes_to_the_sink_line_by_line_and_the_container_is_removed_at_its_end(engine, python_image, network):
    code = ("import sys; print('one'); print('two', file=sys.stderr); sys.stdout.write('no newline'); "
            "sys.stdout.flush(); print(' '.join(sys.argv[1:]), file=sys.stderr); sys.exit(3)")
    sink = Lines()
    launcher = ContainerLauncher(python_spec(python_image, code), network=network.name, worker="w1", job_id="job-a",
                                 attempt=1, client=engine.client)
    app = launcher.launch("http://server:8080/tok/HostService-20100825", launcher.application_url, ["--x"], sink)
    assert app.pid > 0
    assert app.wait(60) == 3
    assert app.describe_exit() == "exit status 3"
    assert ("stdout", "one") in sink.lines and ("stderr", "two") in sink.lines and ("stdout", "no newline") in sink.lines
    assert ("stderr", f"--hostURL http://server:8080/tok/HostService-20100825 --applicationURL "
                      f"http://{launcher.name}:{APP_PORT}/ApplicationService-20100825 --x") in sink.lines
    assert gone(engine, app)


def test_limits_labels_and_confinement_come_from_the_registry_entry(engine, python_image, network):
    spec = python_spec(python_image, "import time; time.sleep(60)", cpus=0.5, memory="64m",
                       environment={"MIP_AXIS": "2"}, working_dir="/tmp")
    launcher = ContainerLauncher(spec, network=network.name, worker="w1", job_id="job-b", attempt=2,
                                 client=engine.client)
    app = launcher.launch("http://s/t/HostService-20100825", launcher.application_url, [], Lines())
    try:
        attrs = engine.client.api.inspect_container(app.id)
        host = attrs["HostConfig"]
        assert host["NanoCpus"] == 500_000_000
        assert host["Memory"] == host["MemorySwap"] == 64 << 20
        assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"] and host["Init"] is True
        assert attrs["Config"]["Labels"][LABEL_JOB] == "job-b"
        assert attrs["Config"]["Labels"][LABEL_WORKER] == "w1"
        assert attrs["Config"]["Labels"][LABEL_ATTEMPT] == "2"
        assert "MIP_AXIS=2" in attrs["Config"]["Env"] and attrs["Config"]["WorkingDir"] == "/tmp"
        assert attrs["Config"]["Hostname"] == launcher.name
        assert network.name in attrs["NetworkSettings"]["Networks"]
    finally:
        assert app.abort(0.5) in ("terminated", "killed")
    assert gone(engine, app)


def test_a_hanging_app_is_killed_and_removed_by_abort(engine, python_image, network):
    # ignores SIGTERM: only the SIGKILL after the grace ends it
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"
    sink = Lines()
    launcher = ContainerLauncher(python_spec(python_image, code), network=network.name, worker="w1", job_id="job-c",
                                 client=engine.client)
    app = launcher.launch("http://s/t/HostService-20100825", launcher.application_url, [], sink)
    deadline = time.monotonic() + 30
    while ("stdout", "up") not in sink.lines and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.poll() is None and app.describe_exit() == "still running"
    started = time.monotonic()
    assert app.abort(1.0) == "killed"
    assert time.monotonic() - started < 15
    assert app.describe_exit() == "killed by SIGKILL"
    assert gone(engine, app)


def test_kill_from_another_thread_ends_it(engine, python_image, network):
    launcher = ContainerLauncher(python_spec(python_image, "import time; time.sleep(600)"), network=network.name,
                                 worker="w1", job_id="job-d", client=engine.client)
    app = launcher.launch("http://s/t/HostService-20100825", launcher.application_url, [], Lines())
    threading.Thread(target=app.kill).start()
    assert app.wait(30) is not None
    assert gone(engine, app)


def test_memory_limit_overrun_is_told_apart(engine, python_image, network):
    code = "x = bytearray(256 << 20); print(len(x))"
    launcher = ContainerLauncher(python_spec(python_image, code, memory="32m"), network=network.name, worker="w1",
                                 job_id="job-e", client=engine.client)
    app = launcher.launch("http://s/t/HostService-20100825", launcher.application_url, [], Lines())
    assert app.wait(60) is not None
    assert app.describe_exit() == "killed: out of memory (limit 32m)"


def test_launch_errors_are_clear(engine, network):
    with pytest.raises(LaunchError, match="not on this worker's Docker engine"):
        ContainerLauncher({"image": "dicom-host-no-such-image:0"}, network=network.name, worker="w", job_id="j",
                          client=engine.client).launch("http://s/t/H", "http://a:1/A", [], Lines())
    with pytest.raises(LaunchError, match="DICOM_HOST_DOCKER_NETWORK"):
        ContainerLauncher({"image": "x"}, network="", worker="w", job_id="j")
    with pytest.raises(LaunchError, match="memory"):
        memory_bytes("lots")
    assert memory_bytes("1g") == 1 << 30 and memory_bytes("512m") == 512 << 20 and memory_bytes("4096") == 4096


def test_names_are_safe_and_fresh_and_the_host_url_is_rewritten():
    a, b = container_name("01J/../x y"), container_name("01J/../x y")
    assert a != b and a.startswith("dicom-host-app-01J-..-x-y-")
    launcher = ContainerLauncher({"image": "x"}, network="n", worker="w", job_id="j",
                                 host_url_base="http://dicom-host:8080/")
    assert launcher.host_url("http://127.0.0.1:8080/TOKEN/HostService-20100825") == \
        "http://dicom-host:8080/TOKEN/HostService-20100825"
    assert ContainerLauncher({"image": "x"}, network="n", worker="w", job_id="j").host_url("http://a/b") == "http://a/b"


def test_the_reaper_removes_containers_of_jobs_no_longer_leased_to_them(engine, python_image, network):
    def labelled(job: str, worker: str, attempt: str):
        return engine.client.containers.run(
            python_image, ["sleep", "600"], detach=True, network=network.name, init=True,
            labels={LABEL_JOB: job, LABEL_WORKER: worker, LABEL_ATTEMPT: attempt})

    jobs = {
        "held": {"state": "running", "worker": "w1", "attempts": 1},
        "requeued": {"state": "queued", "worker": None, "attempts": 1},
        "retried-elsewhere": {"state": "running", "worker": "w2", "attempts": 2},
        "finished": {"state": "failed", "worker": "w1", "attempts": 1},
    }
    containers = {job: labelled(job, "w1", "1") for job in [*jobs, "unknown", "unanswered"]}
    mine_before = labelled("held", "w9", "1")  # a worker named w9 starting again: its old containers go

    def job_state(job_id: str):
        if job_id == "unanswered":
            raise requests.ConnectionError("server down")
        return jobs.get(job_id)

    try:
        removed = set(reap(job_state, client=engine.client))
        assert removed == {containers[j].name for j in ("requeued", "retried-elsewhere", "finished", "unknown")} | \
            {mine_before.name}
        removed = reap(job_state, own_worker="w1", client=engine.client)
        assert sorted(removed) == sorted([containers["held"].name, containers["unanswered"].name])
    finally:
        for c in [*containers.values(), mine_before]:
            try:
                c.remove(force=True)
            except Exception:  # noqa: BLE001 - removed by the reaper
                pass


class NetworkServer(HostServer):
    """A real server that app containers reach: bound on the test network's gateway, its public URL there,
    with an admin token (the test process is no loopback client of it)."""

    @property
    def url(self) -> str:
        assert self.listener is not None
        return "http://%s:%d" % self.listener.getsockname()[:2]


def test_the_reaper_thread_removes_orphans_at_once_and_then_periodically(engine, python_image, network):
    def orphan(worker: str):
        return engine.client.containers.run(python_image, ["sleep", "600"], detach=True, network=network.name,
                                            init=True, labels={LABEL_JOB: "gone", LABEL_WORKER: worker,
                                                               LABEL_ATTEMPT: "1"})

    said: list[str] = []
    first = orphan("w7")
    reaper = Reaper(lambda job_id: None, "w7", period=0.2, log=said.append).start()
    try:
        deadline = time.monotonic() + 30
        while engine.client.containers.list(all=True, filters={"id": first.id}):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        later = orphan("other-worker")
        while engine.client.containers.list(all=True, filters={"id": later.id}):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        reaper.stop()
    assert any(first.name in line and "previous run" in line for line in said), said
    assert any(later.name in line and "no longer leased" in line for line in said), said


@pytest.fixture
def network_server(network, tmp_path):
    network.reload()
    gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
    token = secrets.token_hex(16)
    server = NetworkServer(tmp_path / "data", ["--output-protocols", "http"], {"DICOM_HOST_ADMIN_TOKEN": token})
    server.listener = socket.create_server((gateway, 0), backlog=128)
    server.args += ["--public-url", server.url]
    yield server.start(), token
    server.close()


def test_the_mip_app_in_its_image_reaches_the_server_by_url_and_answers_at_its_name(engine, network, network_server):
    from client import ApplicationClient
    from hosting_service.admin.client import AdminClient
    from hosting_service.states import State

    problem = engine.image(APPS_IMAGE)
    assert problem is None, problem
    server, token = network_server
    admin = AdminClient(server.url, token=token)
    launcher = ContainerLauncher({"name": "mip", "image": APPS_IMAGE, "command": []}, network=network.name,
                                 worker="w1", job_id="job-mip", client=engine.client)
    instance = admin.create_instance(application_url=launcher.application_url)
    sink = Lines()
    app = launcher.launch(instance["hostURL"], instance["applicationURL"], [], sink)
    try:
        # the app, named on the network, binds its name and notifies IDLE to the server over the network
        deadline = time.monotonic() + 60
        while admin.instance(instance["id"])["state"] != "IDLE":
            assert time.monotonic() < deadline, sink.lines
            assert app.poll() is None, sink.lines
            time.sleep(0.2)
        ip = engine.client.api.inspect_container(app.id)["NetworkSettings"]["Networks"][network.name]["IPAddress"]
        client = ApplicationClient(f"http://{ip}:{APP_PORT}/ApplicationService-20100825", timeout=10)
        assert client.get_state() is State.IDLE
        assert client.set_state(State.EXIT) is True
        assert app.wait(30) == 0, sink.lines
    finally:
        app.abort(1.0)
    assert gone(engine, app)


def test_a_worker_runs_a_job_of_an_image_entry_as_a_container_over_http_only(engine, network, tmp_path):
    """A registry entry with an ``image``: a worker (itself a container of the server image on the network, with
    the Docker socket, as in docker-compose.yml) starts the MIP app as a container; the app reaches the server by
    URL only (http: inputs and outputs), the results are the MIP, and the app's container is gone."""
    from check_mip import check
    from hosting_service.admin.jobs_client import JobsClient
    from hosting_service.dicom.samples import main as write_samples

    problem = engine.image(APPS_IMAGE)
    assert problem is None, problem
    registry = tmp_path / "apps.toml"
    registry.write_text(f'[apps.mip]\nimage = "{APPS_IMAGE}"\noutput_protocols = ["http"]\nfile_uris = false\n'
                        'memory = "1g"\ncpus = 1.0\n')
    network.reload()
    gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
    token = secrets.token_hex(16)
    server = NetworkServer(tmp_path / "data", ["--apps", str(registry)],
                           {"DICOM_HOST_ADMIN_TOKEN": token, "DICOM_HOST_FILE_URIS": "false",
                            "DICOM_HOST_OUTPUT_PROTOCOLS": "http"})
    server.listener = socket.create_server((gateway, 0), backlog=128)
    server.args += ["--public-url", server.url]
    server.start()
    socket_path = "/var/run/docker.sock"
    worker = engine.client.containers.run(
        SERVER_IMAGE, ["worker", "--server", server.url, "--name", "w-test"], detach=True, network=network.name,
        environment={"DICOM_HOST_ADMIN_TOKEN": token, "DICOM_HOST_DOCKER_NETWORK": network.name},
        volumes={socket_path: {"bind": socket_path, "mode": "rw"}}, group_add=[str(os.stat(socket_path).st_gid)],
        healthcheck={"test": ["NONE"]})
    try:
        write_samples([str(tmp_path / "in"), "--series", "2"])
        jobs = JobsClient(server.url, token=token)
        job = jobs.submit("mip", [tmp_path / "in"])
        deadline = time.monotonic() + 120
        while (job := jobs.job(job["id"]))["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, (job, worker.logs()[-3000:])
            time.sleep(0.5)
        assert job["state"] == "completed", (job, worker.logs()[-3000:])
        jobs.download_results(job["id"], tmp_path / "out")
        assert check(tmp_path / "in", tmp_path / "out") == []
        assert job["manifest"]["instance"]["applicationURL"].startswith("http://dicom-host-app-")
        assert (tmp_path / "out" / "app.log").read_text().strip(), "the app's output reaches app.log"
        assert not engine.client.containers.list(all=True, filters={"label": f"{LABEL_JOB}={job['id']}"})
    finally:
        worker.remove(force=True, v=True)  # and the anonymous volume of the image's data folder
        server.close()
