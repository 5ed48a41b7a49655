"""A hosted application run as a container, through the Docker Engine API (the ``docker`` package, extra
``containers``), for app registry entries that name an ``image``.

:class:`ContainerLauncher` is what a worker holds for one job: it names the container first, so that the
instance can be created with the application's URL on the stack's network (``--applicationURL`` =
``http://<container name>:8080/ApplicationService-20100825``; every container has an address of its own, so
the port is always the same), then :meth:`ContainerLauncher.launch` starts it with ``--hostURL`` = the
server's URL on that network (``DICOM_HOST_CONTAINER_HOST_URL``, else the hostURL the server gave).

:class:`AppContainer` (its image pulled first when the engine does not have it) has the surface of :class:`~hosting_service.orchestration.process.AppProcess`, so the
orchestration drives either alike: ``pid``, ``started_at``, ``poll()``, ``wait(t)``, ``abort(grace)``,
``kill()``, ``drain_output(t)``, ``describe_exit()``. The container gets the registry's CPU and memory limits
(no swap beyond the memory limit), no capabilities, no new privileges and an init process that passes
signals on; its output goes line by line to the sink (``app.log``); it is removed once it has ended and its
output is read, and killed and removed by :meth:`AppContainer.abort` (a hang, a cancel that failed, a
second interrupt).

A container does not die with its worker. It is labelled with its job, the job's attempt and its worker;
:func:`reap` removes the containers whose job is no longer leased to that worker for that attempt (the
lease expired, the job was retried or ended), and, at a worker's start, every container of that worker's
name (its previous life's). Workers call it at start and periodically.
"""
from __future__ import annotations

import re
import secrets
import signal
import threading
import time
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence
from urllib.parse import urlsplit

from hosting_service.orchestration.process import LaunchError, OutputSink
from hosting_service.processes import describe_exit

LABEL_JOB = "dicom-host.job"
LABEL_WORKER = "dicom-host.worker"
LABEL_ATTEMPT = "dicom-host.attempt"
LABEL_APP = "dicom-host.app"
APP_PORT = 8080
"""The port the application listens on inside its container."""
APPLICATION_SERVICE_PATH = "ApplicationService-20100825"
_REMOVE_WAIT = 30.0
"""Longest wait for the engine to confirm the end of a killed container."""
_SIGNAL_EXIT_BASE = 128
"""An engine reports a main process killed by signal N as exit status 128 + N."""


def _docker() -> Any:
    try:
        import docker
    except ImportError:
        raise LaunchError("this app runs as a container, and the docker package is missing: "
                          "pip install 'dicom-host[containers]'") from None
    return docker


def engine(timeout: float = 60.0) -> Any:
    """A client of the Docker engine named by the environment (``DOCKER_HOST``, else the local socket)."""
    docker = _docker()
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except docker.errors.DockerException as exc:
        raise LaunchError(f"cannot reach the Docker engine: {exc}") from None
    return client


def container_name(job_id: str) -> str:
    """A fresh container name for a job: resolvable on a user-defined network, unique per launch."""
    stem = re.sub(r"[^a-zA-Z0-9_.-]", "-", job_id)[:40].strip("-.") or "job"
    return f"dicom-host-app-{stem}-{secrets.token_hex(3)}"


def memory_bytes(text: str) -> int:
    """``"512m"``, ``"1g"``, ``"1048576"`` (the registry's ``memory``) in bytes."""
    match = re.fullmatch(r"\s*([0-9]+)\s*([kmg]?)b?\s*", str(text), re.I)
    if not match:
        raise LaunchError(f"memory must be a number of bytes with an optional k, m or g, got {text!r}")
    return int(match.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[match.group(2).lower()]


class ContainerLauncher:
    """Launches one job's application as a container on ``network``, from its registry entry
    (``AppSpec.to_json()``: ``image``, ``command``, ``environment``, ``working_dir``, ``cpus``, ``memory``)."""

    def __init__(self, spec: Mapping[str, Any], *, network: str, worker: str, job_id: str, attempt: int = 0,
                 host_url_base: str = "", client: Any = None):
        if not spec.get("image"):
            raise LaunchError("the app entry names no image")
        if not network:
            raise LaunchError("this app runs as a container: set DICOM_HOST_DOCKER_NETWORK to the Docker network "
                              "the server is reachable on")
        self.spec = spec
        self.network = network
        self.host_url_base = host_url_base.rstrip("/")
        self.name = container_name(job_id)
        self.labels = {LABEL_JOB: job_id, LABEL_WORKER: worker, LABEL_ATTEMPT: str(attempt),
                       LABEL_APP: str(spec.get("name") or "")}
        self._client = client

    @property
    def application_url(self) -> str:
        """The ``--applicationURL`` of the container: its name on the network, which the engine resolves."""
        return f"http://{self.name}:{APP_PORT}/{APPLICATION_SERVICE_PATH}"

    def host_url(self, host_url: str) -> str:
        """``host_url`` with its scheme, host and port replaced by ``DICOM_HOST_CONTAINER_HOST_URL``'s."""
        if not self.host_url_base:
            return host_url
        parts = urlsplit(host_url)
        return self.host_url_base + parts.path + (f"?{parts.query}" if parts.query else "")

    def launch(self, host_url: str, application_url: str, app_args: Sequence[str], sink: OutputSink) -> "AppContainer":
        """Start the container: the entry's ``command`` (or the image's entry point when it has none) with
        ``--hostURL`` (rewritten by :meth:`host_url`) ``--applicationURL`` and the entry's ``args``."""
        tail = ["--hostURL", self.host_url(host_url), "--applicationURL", application_url, *app_args]
        if self._client is None:
            self._client = engine()
        return AppContainer(self.spec, tail, sink, network=self.network, name=self.name, labels=self.labels,
                            client=self._client)


class AppContainer:
    """One running application container; its output is read into ``sink`` on a daemon thread, and a second
    one waits for its end, records how it ended and removes it."""

    def __init__(self, spec: Mapping[str, Any], argv_tail: Sequence[str], sink: OutputSink, *, network: str,
                 name: str, labels: Mapping[str, str], client: Any = None):
        docker = _docker()
        self._client = client if client is not None else engine()
        self._api = self._client.api
        self.name = name
        command = [str(word) for word in spec.get("command") or []]
        self.argv = [*command, *argv_tail]
        limits: dict[str, Any] = {}
        if spec.get("cpus"):
            limits["nano_cpus"] = int(float(spec["cpus"]) * 1e9)
        if spec.get("memory"):
            limits["mem_limit"] = limits["memswap_limit"] = memory_bytes(spec["memory"])
        self._memory = spec.get("memory")
        image = str(spec["image"])

        def create() -> Any:
            return self._client.containers.create(
                image, entrypoint=command or None, command=list(argv_tail), name=name, hostname=name,
                network=network, labels=dict(labels), environment=dict(spec.get("environment") or {}),
                working_dir=spec.get("working_dir") or None, init=True, detach=True, stdin_open=False, tty=False,
                cap_drop=["ALL"], security_opt=["no-new-privileges"], **limits,
            )

        try:
            try:
                container = create()
            except docker.errors.ImageNotFound:
                try:
                    self._client.images.pull(image)
                except docker.errors.DockerException as exc:
                    raise LaunchError(f"image {image!r} is not on this worker's Docker engine, and pulling it "
                                      f"failed: {exc}") from None
                container = create()
        except docker.errors.DockerException as exc:
            raise LaunchError(f"cannot create the container of {image!r}: {exc}") from None
        self.id: str = container.id
        self._code: Optional[int] = None
        self._oom = False
        self._ended = threading.Event()
        self._reader: Optional[threading.Thread] = None
        try:
            stream = self._api.attach(self.id, stdout=True, stderr=True, stream=True, logs=True, demux=True)
            self._reader = threading.Thread(target=_pump, args=(stream, sink), name=f"app-{name}", daemon=True)
            self._reader.start()
            self._api.start(self.id)
            self._pid = int(self._api.inspect_container(self.id)["State"].get("Pid") or 0)
        except docker.errors.DockerException as exc:
            self._remove()
            raise LaunchError(f"cannot start the container of {spec['image']!r}: {exc}") from None
        self.started_at = time.monotonic()
        """When it was launched (``time.monotonic()``): the startup timeout counts from here."""
        threading.Thread(target=self._await_end, name=f"wait-{name}", daemon=True).start()

    @property
    def pid(self) -> int:
        """The host's process id of the container's init process (0 once it has ended)."""
        return self._pid

    def poll(self) -> Optional[int]:
        """The exit status once the container has ended and been removed (negative: killed by that signal),
        else ``None``."""
        return self._code if self._ended.is_set() else None

    def wait(self, timeout: float) -> Optional[int]:
        self._ended.wait(max(timeout, 0.0))
        return self.poll()

    def kill(self) -> None:
        """SIGKILL to the container, from any thread; it is removed once the engine reports its end."""
        self._signal("SIGKILL")

    def abort(self, term_grace: float = 1.0) -> str:
        """Hard abort: SIGTERM, SIGKILL after ``term_grace`` seconds, then the container is removed.
        Returns ``exited``, ``terminated`` or ``killed``, as :meth:`AppProcess.abort` does."""
        how = "exited" if self.poll() is not None else "terminated"
        self._signal("SIGTERM")
        if self.wait(term_grace) is None:
            how = "killed"
            self._signal("SIGKILL")
            if self.wait(_REMOVE_WAIT) is None:  # the engine does not answer: remove it without its verdict
                self._remove()
        self.drain_output(1.0)
        return how

    def drain_output(self, timeout: float) -> None:
        """Wait until the container's last output lines have reached the sink."""
        if self._reader is not None:
            self._reader.join(max(timeout, 0.0))

    def describe_exit(self) -> str:
        code = self.poll()
        if code is not None and self._oom:
            return f"killed: out of memory (limit {self._memory})"
        return describe_exit(code)

    # --- the waiting thread -------------------------------------------------------------------------------

    def _await_end(self) -> None:
        docker = _docker()
        status: Optional[int] = None
        while status is None:
            try:
                status = int(self._api.wait(self.id, timeout=None).get("StatusCode", -1))
            except docker.errors.NotFound:
                break  # removed by someone else (an abort that gave up waiting, a reaper)
            except Exception:  # the engine's connection dropped: ask again
                time.sleep(1.0)
        try:
            self._oom = bool(self._api.inspect_container(self.id)["State"].get("OOMKilled"))
        except docker.errors.DockerException:
            pass
        self.drain_output(5.0)
        self._remove()
        self._pid = 0
        if status is None:
            status = -signal.SIGKILL
        elif _SIGNAL_EXIT_BASE < status <= _SIGNAL_EXIT_BASE + 64:
            status = _SIGNAL_EXIT_BASE - status
        self._code = status
        self._ended.set()

    def _signal(self, name: str) -> None:
        try:
            self._api.kill(self.id, name)
        except _docker().errors.DockerException:
            pass  # it has ended (or is gone) already

    def _remove(self) -> None:
        try:
            self._api.remove_container(self.id, force=True)
        except _docker().errors.DockerException:
            pass  # removed already


def _pump(stream: Iterator[tuple[Optional[bytes], Optional[bytes]]], sink: OutputSink) -> None:
    """Split the demultiplexed output of a container into lines for ``sink``."""
    pending = {"stdout": b"", "stderr": b""}
    try:
        for chunks in stream:
            for name, chunk in zip(("stdout", "stderr"), chunks):
                if not chunk:
                    continue
                *lines, pending[name] = (pending[name] + chunk).split(b"\n")
                for line in lines:
                    sink(name, line.decode("utf-8", errors="replace").rstrip("\r"))
    except Exception:  # noqa: BLE001 - the engine's connection dropped: what was read is in the sink
        pass
    for name, rest in pending.items():
        if rest:
            sink(name, rest.decode("utf-8", errors="replace").rstrip("\r"))


def reap(job_state: Callable[[str], Optional[Mapping[str, Any]]], *, own_worker: Optional[str] = None,
         client: Any = None) -> list[str]:
    """Remove the app containers whose job is no longer leased to their worker for their attempt; returns
    their names.

    ``job_state(job_id)``: the job as ``GET /admin/jobs/<id>`` answers it, ``None`` when the server does not
    know it; it raises when the server cannot be asked (nothing is removed then). ``own_worker``: a worker
    starting under that name; its previous life's containers are removed whatever their job's state."""
    docker = _docker()
    client = client if client is not None else engine()
    removed = []
    for container in client.containers.list(all=True, filters={"label": LABEL_JOB}):
        labels = container.labels or {}
        worker = labels.get(LABEL_WORKER, "")
        if own_worker is None or worker != own_worker:
            try:
                job = job_state(labels[LABEL_JOB])
            except Exception:  # noqa: BLE001 - the server cannot say: keep the container for now
                continue
            if job is not None and job.get("state") == "running" and str(job.get("worker")) == worker \
                    and str(job.get("attempts")) == labels.get(LABEL_ATTEMPT):
                continue
        try:
            container.remove(force=True)
            removed.append(container.name)
        except docker.errors.DockerException:
            pass  # removed meanwhile
    return removed


class Reaper:
    """:func:`reap` on a daemon thread: at a worker's start (with its own name: its previous life's containers
    go) and then every ``period`` seconds, for as long as the worker runs."""

    def __init__(self, job_state: Callable[[str], Optional[Mapping[str, Any]]], worker: str, *,
                 period: float = 5.0, log: Optional[Callable[[str], None]] = None):
        self._job_state = job_state
        self._worker = worker
        self._period = period
        self._log = log or (lambda message: None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="container-reaper", daemon=True)

    def start(self) -> "Reaper":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        own: Optional[str] = self._worker
        client = None
        failure = ""
        while True:
            try:
                client = client or engine(timeout=30)
                for name in reap(self._job_state, own_worker=own, client=client):
                    self._log(f"removed app container {name} (left by this worker's previous run)" if own
                              else f"removed app container {name} (its job is no longer leased to its worker)")
                own, failure = None, ""
            except Exception as exc:  # noqa: BLE001 - no engine (yet), or its connection dropped: next period
                client = None
                if str(exc) != failure:  # said once, not every period
                    failure = str(exc)
                    self._log(f"reaping app containers failed: {exc}")
            if self._stop.wait(self._period):
                return
