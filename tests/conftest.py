"""Shared fixtures: a real Hosting System server (``dicom-host serve`` under gunicorn) on a free loopback
port with a temporary data dir, an admin client for it, and raw SOAP helpers. The test process binds the
server's socket and passes it on (``serve --bind fd://N``), as ``dicom-host run`` does: no other process can
take the port, also not across a restart.

* ``host_server``: one server for the whole session (2 gthread workers); tests create their own instances.
* ``server_factory``: start more servers with other options; each can ``restart()`` on the same data dir.
* ``postgres_url``, ``store_url``: a throwaway PostgreSQL for the session (``tests/postgres.py``), and a fresh
  store of each backend per test.

``DICOM_HOST_TESTS_STORE=postgresql`` runs the servers of ``host_server`` and ``server_factory`` on a fresh
PostgreSQL database each (default: their SQLite file), so any server-level test can be run on PostgreSQL.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest
import requests
from lxml import etree

from hosting_service.admin.client import AdminClient

REPO = Path(__file__).resolve().parent.parent
SHARED_REFERENCE = REPO.parent / "shared" / "ps319" / "reference"

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
HOST_NS = "http://dicom.nema.org/PS3.19/HostService-20100825"
APP_NS = "http://dicom.nema.org/PS3.19/ApplicationService-20100825"
ARRAYS_NS = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"


INPUT_PATHS_ANYWHERE = {"DICOM_HOST_INPUT_ROOTS": "/"}
"""Test servers offer inputs by path from anywhere, as ``dicom-host run``'s own server does (tests of the
default, none, pass ``env={"DICOM_HOST_INPUT_ROOTS": ""}``)."""


@dataclass
class HostServer:
    """A ``dicom-host serve`` process and what tests need to talk to it."""

    data_dir: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    data_dir_option: bool = True
    """False: no ``--data-dir`` (the server takes ``DICOM_HOST_DATA_DIR`` from ``env``)."""
    store: Optional[str] = None
    """The store URL (``DICOM_HOST_STORE``); ``None``: the default SQLite file in the data dir."""
    listener: Optional[socket.socket] = None
    process: Optional[subprocess.Popen] = None
    log_path: Optional[Path] = None

    @property
    def port(self) -> int:
        assert self.listener is not None
        return self.listener.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> AdminClient:
        return AdminClient(self.url)

    def start(self) -> "HostServer":
        if self.listener is None:
            self.listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        fd = self.listener.fileno()
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-server.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hosting_service.cli.main", "serve", "--bind", f"fd://{fd}",
                 *(["--data-dir", str(self.data_dir)] if self.data_dir_option else []), *self.args],
                stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **INPUT_PATHS_ANYWHERE, **self.env, **self._store_env()},
                start_new_session=True,
                pass_fds=(fd,),
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).ok:
                    return self
            except requests.RequestException:
                time.sleep(0.05)
        raise RuntimeError(f"server did not come up:\n{self.log()}")

    def _store_env(self) -> dict[str, str]:
        return {} if self.store is None else {"DICOM_HOST_STORE": self.store}

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def close(self) -> None:
        """Stop the server and give its port up."""
        self.stop()
        if self.listener is not None:
            self.listener.close()

    def restart(self) -> "HostServer":
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def create_instance(self, **kwargs) -> dict:
        return self.admin.create_instance(**kwargs)


def _default_store(request) -> Optional[str]:
    """The store of the servers tests start when they name none (see the module docstring)."""
    backend = os.environ.get("DICOM_HOST_TESTS_STORE", "sqlite")
    if backend == "sqlite":
        return None
    if backend != "postgresql":
        raise pytest.UsageError(f"DICOM_HOST_TESTS_STORE must be sqlite or postgresql, not {backend!r}")
    return request.getfixturevalue("postgres_server").create_database()


@pytest.fixture(scope="session")
def host_server(tmp_path_factory, request) -> HostServer:
    server = HostServer(tmp_path_factory.mktemp("host") / "data", store=_default_store(request)).start()
    yield server
    server.close()


@pytest.fixture
def server_factory(tmp_path, request):
    servers: list[HostServer] = []
    default_store: list[Optional[str]] = []

    def make(*args: str, env: Optional[dict] = None, name: str = "data", store: Optional[str] = None) -> HostServer:
        if store is None:  # one database for every server of the test, as they share the data dir when they do
            if not default_store:
                default_store.append(_default_store(request))
            store = default_store[0]
        server = HostServer(tmp_path / name, list(args), dict(env or {}), store=store).start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.close()


# --- store backends: a throwaway PostgreSQL for the session, a fresh database per test ---------------------

@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server of this session (tests/postgres.py), stopped at its end, also after failures."""
    from postgres import ThrowawayPostgres, binaries

    if binaries() is None:
        pytest.skip("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; .ci/run installs the "
                    "Debian package postgresql)")
    server = ThrowawayPostgres.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server) -> str:
    """The URL of the session server's maintenance database (superuser, loopback, no password)."""
    return postgres_server.url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """A store URL for a fresh, empty store of each backend: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    return request.getfixturevalue("postgres_server").create_database()


# --- raw SOAP -------------------------------------------------------------------------------------------

def envelope(body_xml: str, header_xml: str = "") -> bytes:
    header = f"<s:Header>{header_xml}</s:Header>" if header_xml else ""
    return (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAP_ENV}">{header}'
            f"<s:Body>{body_xml}</s:Body></s:Envelope>").encode()


def soap_post(url: str, body_xml: str, *, action: Optional[str] = None, raw: Optional[bytes] = None,
              headers: Optional[dict] = None, timeout: float = 10) -> requests.Response:
    h = {"Content-Type": "text/xml; charset=utf-8"}
    if action is not None:
        h["SOAPAction"] = f'"{action}"'
    h.update(headers or {})
    return requests.post(url, data=raw if raw is not None else envelope(body_xml), headers=h, timeout=timeout)


def parse_body(response: requests.Response) -> etree._Element:
    """The first child of the SOAP Body of a response."""
    root = etree.fromstring(response.content)
    return root.find(f"{{{SOAP_ENV}}}Body")[0]


def fault_of(response: requests.Response) -> tuple[str, str]:
    """(faultcode, faultstring) of a SOAP Fault response; fails the test if it is not one."""
    assert response.headers["Content-Type"].startswith("text/xml"), response.text[:300]
    body = parse_body(response)
    assert body.tag == f"{{{SOAP_ENV}}}Fault", response.text[:500]
    return body.findtext("faultcode"), body.findtext("faultstring")


def notify_state(host_url: str, state: str) -> requests.Response:
    r = soap_post(host_url, f'<NotifyStateChanged xmlns="{HOST_NS}"><state>{state}</state></NotifyStateChanged>',
                  action="http://dicom.nema.org/PS3.19/IHostService/NotifyStateChanged")
    assert r.status_code == 200, r.text
    return r


def drive(host_url: str, *states: str) -> None:
    """Notify a sequence of states, as an application walking the state machine would."""
    for s in states:
        notify_state(host_url, s)


# --- the wire layer alone: SoapEndpoint behind a miniature router, with an operations object that records ---

@pytest.fixture(scope="module")
def router(request):
    """Both services' endpoints over real HTTP; a test module may set ``ROUTER_SETTINGS``."""
    from hosting_service.config import Settings
    from wire_harness import RecordingOperations, Router, serve

    router = Router(getattr(request.module, "ROUTER_SETTINGS", Settings()), RecordingOperations())
    with serve(router) as base:
        router.base_url = base
        yield router


@pytest.fixture
def ops(router):
    """A fresh recording operations object behind ``router``."""
    from wire_harness import RecordingOperations

    router.operations = RecordingOperations()
    return router.operations


@pytest.fixture
def instance(host_server) -> dict:
    """A fresh instance on the session server."""
    return host_server.create_instance()
