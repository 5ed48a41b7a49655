"""A scripted Hosting System for testing one hosted application: :class:`ScriptedHost`.

It serves the HostService (through the project's own wire layer, so requests are read as tolerantly and
answered as strictly as by the real host) and http: output locations, on an ephemeral loopback port it binds
itself, and records everything the application does: every call with its arguments and answer, every
notification judged against Table 7.2-2, every write to an output location with its time. A scenario
scripts it (which protocol and semantics GetOutputLocation hands out, which faults or delays to inject) and
reads the record afterwards. It keeps no state beyond one launch of one application.
"""
from __future__ import annotations

import secrets
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from client.server import ThreadedWSGIServer
from hosting_service.config import Settings
from hosting_service.errors import ClientError
from hosting_service.model import (
    AvailableData,
    ModelSetDescriptor,
    ObjectLocator,
    QueryResult,
    QueryResultInfoSet,
    Rectangle,
    Status,
    iter_descriptors,
)
from hosting_service.operations import generate_uid
from hosting_service.states import PRECONDITIONS, PreconditionViolation, State, Trigger, transition
from hosting_service.store.base import InputObject
from hosting_service.wire.endpoint import ENDPOINT_URL_KEY, SoapEndpoint
from hosting_service.wire.services import OPERATIONS_KEY, HostService

HOST_FOLDER = "/host/"
HOST_PATH = HOST_FOLDER + "HostService-20100825"
OUTPUTS_PATH = "/outputs/"
MAX_UPLOAD = 256 * 1024 * 1024
"""The largest single output the scripted host accepts (bytes)."""


@dataclass
class Faults:
    """What the scripted host does wrong on purpose (robustness scenarios)."""

    get_data_fault: bool = False
    """GetData answers a SOAP Client fault."""
    nil_output_location: bool = False
    """GetOutputLocation answers nil."""
    slow_seconds: float = 0.0
    """GetData and GetOutputLocation answer this many seconds late."""


@dataclass
class Write:
    at: float
    uri: str
    method: str
    size: int
    status: int


@dataclass
class OutputLocation:
    uri: str
    folder: Path
    protocol: str
    closed_at: Optional[float] = None
    closed_contents: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Each file's ``(size, mtime_ns)`` when the location closed: what may no longer change."""

    def contents(self) -> dict[str, tuple[int, int]]:
        files = (p for p in self.folder.rglob("*") if p.is_file())
        return {str(p.relative_to(self.folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in files}

    def close(self, now: float) -> None:
        if self.closed_at is None:
            self.closed_at = now
            self.closed_contents = self.contents()


@dataclass
class Notification:
    at: float
    state: State
    previous: Optional[State]


@dataclass
class Record:
    """What one application did to the scripted host."""

    notifications: list[Notification] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    announcements: list[tuple[AvailableData, bool]] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    locations: list[OutputLocation] = field(default_factory=list)
    violations: list[tuple[str, str, str]] = field(default_factory=list)
    """``(rule, expected, observed)`` for each rule the application broke on the wire."""

    def announced_uuids(self) -> list[str]:
        return [d.DescriptorUuid for data, _ in self.announcements for d, *_ in iter_descriptors(data) if d.DescriptorUuid]


class ScriptedHost:
    """HostService + http: output locations for one application launch; see the module docstring."""

    def __init__(self, workdir: Path, inputs: AvailableData, objects: list[InputObject], *, protocol: str = "file",
                 file_semantics: bool = False, faults: Optional[Faults] = None, log: Callable[[str], None] = print):
        self.workdir = workdir
        self.inputs = inputs
        self.objects = {o.descriptor.DescriptorUuid.lower(): o for o in objects if o.descriptor.DescriptorUuid}
        self.protocol = protocol
        self.file_semantics = file_semantics
        self.faults = faults or Faults()
        self.log = log
        self.record = Record()
        self.state: Optional[State] = None
        self._requested: set[State] = set()
        self._changed = threading.Condition()
        self._lock = threading.Lock()
        self._endpoint = SoapEndpoint(HostService, Settings())
        self._server = ThreadedWSGIServer("127.0.0.1", 0, self._route)  # an ephemeral port, bound here
        self.base_url = f"http://127.0.0.1:{self._server.server_port}"
        self.url = self.base_url + HOST_PATH

    # --- life --------------------------------------------------------------------------------------

    def __enter__(self) -> "ScriptedHost":
        self._server.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.stop()

    # --- what the scenario tells the host -------------------------------------------------------------

    def expect_request(self, state: State) -> None:
        """The host is about to call SetState(state): a notification of it is then host-triggered."""
        with self._lock:
            self._requested.add(state)

    def refused(self, state: State) -> None:
        """SetState(state) was answered FALSE: the application must not make that change now."""
        with self._lock:
            self._requested.discard(state)

    def wait_for(self, predicate: Callable[[Record], bool], timeout: float) -> bool:
        """Wait until ``predicate(record)`` holds (re-checked at every notification and write)."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.record), timeout)

    def _violation(self, rule: str, expected: str, observed: str) -> None:
        self.log(f"VIOLATION {rule}: expected {expected}; observed {observed}")
        self.record.violations.append((rule, expected, observed))

    def _changed_now(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _check(self, operation: str) -> None:
        if self.state not in PRECONDITIONS[operation].allowed:
            exc = PreconditionViolation(operation, self.state)
            self._violation(PRECONDITIONS[operation].cite, f"{operation} only in {', '.join(map(str, exc.allowed))}",
                            f"called while {self.state or 'NOT_STARTED'}")
            raise exc

    # --- HostService (PS3.19 §8.2, §8.3), as the wire layer calls it ------------------------------------

    def GenerateUID(self) -> str:
        uid = generate_uid(None)
        self.log(f"app -> host GenerateUID() -> {uid}")
        return uid

    def GetAvailableScreen(self, preferredScreen: Optional[Rectangle] = None) -> Rectangle:
        self.log("app -> host GetAvailableScreen()")
        return Rectangle(Height=1080, Width=1920)

    def GetOutputLocation(self, preferredProtocols: Optional[list[str]] = None) -> Optional[str]:
        self.log(f"app -> host GetOutputLocation({preferredProtocols})")
        self._check("GetOutputLocation")
        time.sleep(self.faults.slow_seconds)
        if self.faults.nil_output_location:
            self.log("host -> app GetOutputLocation answered nil (injected)")
            return None
        token = secrets.token_hex(8)
        folder = self.workdir / "outputs" / token
        folder.mkdir(parents=True)
        uri = folder.as_uri() + "/" if self.protocol == "file" else f"{self.base_url}{OUTPUTS_PATH}{token}/"
        if self.file_semantics:
            uri += "output"
        with self._lock:
            self.record.locations.append(OutputLocation(uri, folder, self.protocol))
        self.log(f"host -> app GetOutputLocation -> {uri}")
        return uri

    def NotifyStateChanged(self, state: Optional[State] = None) -> None:
        if state is None:
            raise ClientError("NotifyStateChanged: no state")
        self.log(f"app -> host NotifyStateChanged({state})")
        with self._lock:
            previous, self.state = self.state, state
            requested = state in self._requested
            self._requested.discard(state)
            now = time.time()
            if state in (State.IDLE, State.EXIT):  # §8.2.3: locations are active until IDLE or EXIT
                for location in self.record.locations:
                    location.close(now)
            self.record.notifications.append(Notification(now, state, previous))
        self._judge(previous, state, requested)
        self._changed_now()

    def _judge(self, previous: Optional[State], state: State, requested: bool) -> None:
        row = transition(previous, state)
        src = previous or "NOT_STARTED"
        if previous == state:
            return
        if row is None:
            self._violation("PS3.19 Table 7.2-2", f"a transition of the table from {src}",
                            f"NotifyStateChanged({state}) from {src}")
        elif Trigger.APP not in row.triggers and not requested:
            self._violation(row.cite, f"{src} -> {state} only after the Host's SetState({state})",
                            f"the application moved to {state} by itself")

    def NotifyStatus(self, status: Optional[Status] = None) -> None:
        if status is None:
            raise ClientError("NotifyStatus: no status")
        self.log(f"app -> host NotifyStatus({status.StatusType} {status.CodeMeaning or ''})")
        self.record.statuses.append(status)

    def NotifyDataAvailable(self, data: Optional[AvailableData] = None, lastData: bool = False) -> bool:
        count = len(list(iter_descriptors(data or AvailableData())))
        self.log(f"app -> host NotifyDataAvailable({count} objects, lastData={lastData})")
        self._check("NotifyDataAvailable")
        self.record.announcements.append((data or AvailableData(), bool(lastData)))
        self._changed_now()
        return True

    def GetData(self, objects: Optional[list[str]] = None, acceptableTransferSyntaxes: Optional[list[str]] = None,
                includeBulkData: bool = True) -> list[ObjectLocator]:
        self.log(f"app -> host GetData({len(objects or [])} objects, {acceptableTransferSyntaxes})")
        self._check("GetData")
        time.sleep(self.faults.slow_seconds)
        if self.faults.get_data_fault:
            self.log("host -> app GetData: Client fault (injected)")
            raise ClientError("GetData refused (a fault injected by dicom-host conformance)")
        locators = []
        for requested in objects or []:
            found = self.objects.get((requested or "").strip().lower())
            if found is None:
                raise ClientError(f"GetData: not offered to this application: {requested}")
            size = Path(found.path).stat().st_size
            locators.append(ObjectLocator(Length=size, Offset=0, TransferSyntax=found.descriptor.TransferSyntaxUID,
                                          URI=Path(found.path).absolute().as_uri(), Locator=str(uuid.uuid4()),
                                          Source=requested))
        return locators

    def ReleaseData(self, objects: Optional[list[str]] = None) -> None:
        self.log(f"app -> host ReleaseData({len(objects or [])} locators)")

    def GetAsModels(self, objects: Optional[list[str]] = None, classUID: Optional[str] = None,
                    supportedInfoSetTypes: Optional[list[str]] = None) -> ModelSetDescriptor:
        self._check("GetAsModels")
        return ModelSetDescriptor(FailedSourceObjects=list(objects or []), InfosetType="text/xml")

    def ReleaseModels(self, models: Optional[list[str]] = None) -> None:
        return None

    def QueryModel(self, models: Optional[list[str]] = None, xPaths: Optional[list[str]] = None) -> list[QueryResult]:
        self._check("QueryModel")
        return []

    def QueryInfoSet(self, models: Optional[list[str]] = None,
                     xPaths: Optional[list[str]] = None) -> list[QueryResultInfoSet]:
        self._check("QueryInfoSet")
        return []

    # --- WSGI ------------------------------------------------------------------------------------------

    def _route(self, environ: dict, start_response):
        path = environ.get("PATH_INFO") or "/"
        if path == HOST_PATH:
            environ[OPERATIONS_KEY] = self
            environ[ENDPOINT_URL_KEY] = self.url
            return self._endpoint(environ, start_response)
        schema = None
        if path.startswith(HOST_FOLDER) and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            schema = self._endpoint.documents.schema(path[len(HOST_FOLDER):])
        if schema is not None:  # the XSDs the WSDL imports, for applications that build a proxy from ?wsdl (XIP)
            start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(schema)))])
            return [schema]
        if path.startswith(OUTPUTS_PATH) and environ.get("REQUEST_METHOD") in ("PUT", "POST"):
            status, message = self._upload(environ, path)
            return _plain(start_response, status, message)
        return _plain(start_response, "404 Not Found", f"nothing at {path}")

    def _upload(self, environ: dict, path: str) -> tuple[str, str]:
        """One write-once upload (PS3.19 §8.2.3 Note 1: a single sequential write per object)."""
        method = environ["REQUEST_METHOD"]
        uri = self.base_url + path
        token, _, name = path[len(OUTPUTS_PATH):].partition("/")
        location = next((loc for loc in self.record.locations
                         if loc.protocol == "http" and loc.uri.startswith(f"{self.base_url}{OUTPUTS_PATH}{token}/")), None)
        name = urllib.parse.unquote(name)
        size = int(environ.get("CONTENT_LENGTH") or 0)

        def answer(code: int, text: str) -> tuple[str, str]:
            with self._lock:
                self.record.writes.append(Write(time.time(), uri, method, size, code))
            self.log(f"app -> host {method} {uri} ({size} bytes) -> {code}")
            self._changed_now()
            return {201: "201 Created", 404: "404 Not Found", 409: "409 Conflict", 410: "410 Gone",
                    400: "400 Bad Request", 413: "413 Content Too Large"}[code], text

        if location is None or not name or "/" in name or name in (".", ".."):
            return answer(404, "not an output location of this host")
        if not location.uri.endswith("/") and name != "output":
            return answer(404, "this location names a single file")
        if location.closed_at is not None:
            self._violation("PS3.19 §8.2.3", "no writes to an output location after the application reported IDLE or EXIT",
                            f"{method} {uri} after the location closed")
            return answer(410, "the output location is closed")
        target = location.folder / name
        if target.exists():
            self._violation("PS3.19 §8.2.3 Note 1", "one single sequential write per object at an http: location",
                            f"a second {method} of {uri}")
            return answer(409, "already written: http: output locations are write-once")
        if size > MAX_UPLOAD:
            return answer(413, "too large")
        stream = environ["wsgi.input"]
        with open(target, "wb") as f:
            remaining = size
            while remaining > 0:
                chunk = stream.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                f.write(chunk)
                remaining -= len(chunk)
        if remaining:
            target.unlink()
            return answer(400, "the body ended before its Content-Length")
        return answer(201, f"{size} bytes stored")


def _plain(start_response, status: str, message: str) -> list[bytes]:
    body = (message + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]
