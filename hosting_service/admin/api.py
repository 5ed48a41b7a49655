"""The admin API: a small JSON HTTP interface through which people, scripts and the orchestration manage
instances (create, offer inputs, read state and events, end).

Who may use it is decided in :mod:`hosting_service.admin.access`; bodies are read within bounds by
:mod:`hosting_service.admin.body`, query parameters are checked against ranges here: every refusal is a
4xx with a JSON ``{"error": ...}``. Routes are listed in docs/ARCHITECTURE.md.
"""
from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Callable, Iterable, Optional
from urllib.parse import parse_qs, urlsplit

from hosting_service.admin.access import AdminAccess
from hosting_service.admin.body import read_json_object
from hosting_service.admin.files import FILES_ROUTE, file_url, serve_output_file
from hosting_service.config import OUTPUT_SEMANTICS, Settings
from hosting_service.errors import ClientError
from hosting_service.model import to_jsonable
from hosting_service.ports import free_loopback_port
from hosting_service.tokens import new_token
from hosting_service.outputs.locations import NotInOutputLocation
from hosting_service.states import parse_state
from hosting_service.store import Instance, InstanceEnded, Store

log = logging.getLogger("dicom_host.admin")

HOST_SERVICE_PATH = "HostService-20100825"
APPLICATION_SERVICE_PATH = "ApplicationService-20100825"
MAX_WAIT_SECONDS = 60.0
_POLL_SECONDS = 0.002
"""How often a long poll looks at the store at first: a state change the orchestration just asked for is
usually notified within milliseconds, and that round trip is on every job's critical path."""
_POLL_BACKOFF_AFTER = 1.0
_POLL_SECONDS_LATER = 0.02
"""After the first second, a waiting poll looks ten times less often: a task that runs for
minutes costs the store 50 reads a second, not 500."""

_ROUTE = re.compile(r"^/admin/instances(?:/(?P<id>[^/]{1,128})(?:/(?P<sub>[a-z-]+))?)?/?$")
"""Any instance id is routed: an id that names no instance gets the store's 404 "no such instance"."""
MAX_SEQ = (1 << 63) - 1
"""Event sequence numbers are SQLite integers."""
MAX_REASON = 1000
MAX_KINDS = 32




class _Reply(Exception):
    """Raised by a route to answer at once with a status and a JSON body."""

    def __init__(self, status: int, body: Any):
        self.status = status
        self.body = body


@dataclass
class RawBody:
    """A route's answer that is not JSON (a job's results tar): ``length`` bytes of ``content_type``."""

    content_type: str
    length: int
    pieces: Iterable[bytes]


class AdminApi:
    """WSGI application for every path under ``/admin/``."""

    def __init__(self, store: Store, settings: Settings, outputs):
        self.store = store
        self.settings = settings
        self.outputs = outputs
        self.access = AdminAccess(settings)
        from hosting_service.admin.jobs import JobsApi  # it builds on this module's helpers

        self.jobs = JobsApi(store, settings, outputs)

    # --- WSGI -----------------------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        try:
            self._authorize(environ)
            files = FILES_ROUTE.match(environ.get("PATH_INFO", ""))
            if files:  # bytes, not JSON
                return serve_output_file(self.outputs, environ, start_response, files)
            status, body = self._dispatch(environ)
        except _Reply as reply:
            status, body = reply.status, reply.body
        except ClientError as exc:  # UnknownInstance (404) and InstanceEnded (409) among them
            status, body = exc.http_status, {"error": str(exc)}
        except Exception:  # the host's fault: log it, tell the client nothing internal
            log.exception("admin API: internal error on %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            status, body = 500, {"error": "internal error; see the server log"}
        if isinstance(body, RawBody):  # a job's results tar
            start_response(f"{status} {HTTPStatus(status).phrase}", [
                ("Content-Type", body.content_type), ("Content-Length", str(body.length)), ("Cache-Control", "no-store")])
            return body.pieces
        payload = b"" if status == 204 else json.dumps(body, indent=1).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
                   ("Cache-Control", "no-store")]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [payload]

    def _authorize(self, environ) -> None:
        refusal = self.access.refusal(environ)
        if refusal is not None:
            raise _Reply(refusal[0], {"error": refusal[1]})

    def _dispatch(self, environ) -> tuple[int, Any]:
        if environ.get("PATH_INFO", "").startswith("/admin/jobs"):
            return self.jobs.dispatch(environ)
        match = _ROUTE.match(environ.get("PATH_INFO", ""))
        if not match:
            raise _Reply(404, {"error": f"no admin route {environ.get('PATH_INFO')!r}"})
        method = environ["REQUEST_METHOD"]
        instance_id, sub = match["id"], match["sub"]
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        routes: dict[tuple[bool, Optional[str], str], Callable] = {
            (False, None, "POST"): lambda: self.create(read_json_object(environ)),
            (False, None, "GET"): lambda: (200, [self._describe(i) for i in
                                                 self.store.list_instances(
                                                     include_ended=_query_int(query, "all", 0, 0, 1) == 1)]),
            (True, None, "GET"): lambda: (200, self._describe(self.store.get_instance(instance_id), full=True)),
            (True, None, "DELETE"): lambda: self.end(instance_id, _reason(query)),
            (True, "events", "GET"): lambda: self.events(instance_id, query),
            (True, "events", "POST"): lambda: self.add_event(instance_id, read_json_object(environ)),
            (True, "inputs", "POST"): lambda: self.offer_inputs(instance_id, read_json_object(environ)),
            (True, "requested-state", "POST"): lambda: self.requested_state(instance_id, read_json_object(environ)),
            (True, "outputs", "GET"): lambda: self.announced_outputs(instance_id),
            (True, "handback", "POST"): lambda: self.hand_back(instance_id, read_json_object(environ)),
            (True, "heartbeat", "POST"): lambda: self.jobs.instance_heartbeat(instance_id),
        }
        route = routes.get((instance_id is not None, sub, method))
        if route is None:
            allowed = sorted(m for (has_id, s, m) in routes if has_id == (instance_id is not None) and s == sub)
            if not allowed:
                raise _Reply(404, {"error": f"no admin route {environ.get('PATH_INFO')!r}"})
            raise _Reply(405, {"error": f"{method} not allowed here; use {', '.join(allowed)}"})
        return route()

    # --- routes ---------------------------------------------------------------------------------------

    def _describe(self, instance: Instance, *, full: bool = False) -> dict:
        d: dict[str, Any] = {
            "id": instance.id,
            "hostURL": instance.host_url,
            "applicationURL": instance.application_url,
            "state": instance.reported_state and instance.reported_state.value,
            "requestedState": instance.requested_state and instance.requested_state.value,
            "createdAt": instance.created_at,
            "endedAt": instance.ended_at,
            "endReason": instance.end_reason,
            "options": instance.options,
        }
        if full:
            d["outputLocations"] = self.outputs.describe(instance.id)
            d["activeLocators"] = len(self.store.active_locators(instance.id))
            d["warnings"] = [e.data for e in self.store.events(instance.id, kinds=["warning"])]
        return d

    def create(self, body: dict) -> tuple[int, dict]:
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise ClientError("options must be a JSON object")
        semantics = options.get("output_semantics")
        if semantics is not None and semantics not in OUTPUT_SEMANTICS:
            raise ClientError(f"options.output_semantics must be one of {', '.join(OUTPUT_SEMANTICS)}")
        if options.get("file_uris") is not None and not isinstance(options["file_uris"], bool):
            raise ClientError("options.file_uris must be true or false (may file: URIs be used with this "
                              "instance), or absent for the server's default")
        app_url = body.get("applicationURL") or (
            f"http://127.0.0.1:{free_loopback_port()}/{APPLICATION_SERVICE_PATH}"
        )
        if not isinstance(app_url, str) or not _is_http_url(app_url):
            raise ClientError("applicationURL must be an http(s) URL")
        leased = self.jobs.instance_lease(body)  # checked before the instance exists
        token = new_token()
        host_url = f"{self.settings.public_url_base}/{token}/{HOST_SERVICE_PATH}"
        instance = self.store.create_instance(token=token, host_url=host_url, application_url=app_url,
                                              options=options)
        if leased is not None:
            leased(instance.id)
        (self.settings.instances_dir / instance.id).mkdir(parents=True, exist_ok=True, mode=0o700)
        log.info("instance %s created: hostURL %s/<token>/%s, applicationURL %s", instance.id,
                 self.settings.public_url_base, HOST_SERVICE_PATH, app_url)
        return 201, self._describe(instance)

    def end(self, instance_id: str, reason: str) -> tuple[int, dict]:
        self.store.end_instance(instance_id, reason)
        self.outputs.after_end(instance_id)
        log.info("instance %s ended: %s", instance_id, reason)
        return 200, self._describe(self.store.get_instance(instance_id), full=True)

    def events(self, instance_id: str, query: dict) -> tuple[int, dict]:
        self.store.get_instance(instance_id)
        after = _query_int(query, "after", 0, 0, MAX_SEQ)
        wait = _query_seconds(query, "wait", MAX_WAIT_SECONDS)
        kinds = [k for k in query.get("kinds", "").split(",") if k] or None
        if kinds and len(kinds) > MAX_KINDS:
            raise ClientError(f"kinds lists at most {MAX_KINDS} event kinds")
        started = time.monotonic()
        deadline = started + wait
        while True:
            events = self.store.events(instance_id, after=after, kinds=kinds)
            now = time.monotonic()
            if events or now >= deadline:
                break
            time.sleep(_POLL_SECONDS if now - started < _POLL_BACKOFF_AFTER else _POLL_SECONDS_LATER)
        return 200, {
            "events": [{"seq": e.seq, "at": e.at, "kind": e.kind, "data": e.data} for e in events],
            "last": events[-1].seq if events else after,
        }

    def add_event(self, instance_id: str, body: dict) -> tuple[int, dict]:
        kind, data = body.get("kind"), body.get("data", {})
        if not isinstance(kind, str) or not re.fullmatch(r"[a-z][a-z_-]{0,31}", kind) or not isinstance(data, dict):
            raise ClientError("an event needs a 'kind' (lower-case word) and a 'data' object")
        return 201, {"seq": self.store.add_event(instance_id, kind, data)}

    def offer_inputs(self, instance_id: str, body: dict) -> tuple[int, dict]:
        from hosting_service.dicom.inputs import scan

        instance = self.store.get_instance(instance_id)
        if instance.ended:
            raise InstanceEnded(f"instance {instance_id} has ended")
        paths = self.jobs.input_paths(instance_id, body)
        result = scan(paths)
        self.store.add_inputs(instance_id, result.objects)
        for path, reason in result.problems:
            self.store.add_event(instance_id, "warning", {"operation": "inputs", "message": f"{path}: {reason}"})
        return 200, {
            "availableData": to_jsonable(result.available),
            "count": len(result.objects),
            "problems": [{"path": p, "reason": r} for p, r in result.problems],
        }

    def requested_state(self, instance_id: str, body: dict) -> tuple[int, None]:
        try:
            state = parse_state(str(body.get("state", "")))
        except ValueError as exc:
            raise ClientError(str(exc)) from None
        self.store.record_requested_state(instance_id, state)
        return 204, None

    def announced_outputs(self, instance_id: str) -> tuple[int, dict]:
        self.store.get_instance(instance_id)
        announcements, last = self.store.announced_outputs(instance_id)
        return 200, {"announcements": [to_jsonable(a) for a in announcements], "lastData": last}

    def hand_back(self, instance_id: str, body: dict) -> tuple[int, dict]:
        uris = body.get("uris")
        if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
            raise ClientError("handback needs 'uris': a list of URIs the application returned")
        self.store.get_instance(instance_id)
        returned = self.outputs.hand_back(instance_id, uris)
        urls = {}  # where the runner reads the bytes, wherever it runs (admin/files.py)
        for uri in uris:
            try:
                location, names = self.outputs.locate(instance_id, uri)
            except NotInOutputLocation:
                continue
            urls[uri] = file_url(self.settings.public_url_base, instance_id, location.id, names)
        return 200, {"returned": returned, "urls": urls}


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _query_int(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within ``[low, high]``; a 400 naming the range otherwise."""
    if name not in query:
        return default
    text = query[name]
    value = int(text) if re.fullmatch(r"[0-9]{1,30}", text) else low - 1  # int() would take "1_0", " 1"
    if not low <= value <= high:
        raise ClientError(f"{name} must be an integer from {low} to {high}, got {query[name][:40]!r}")
    return value


def _query_seconds(query: dict[str, str], name: str, high: float) -> float:
    """A number of seconds from 0 (also the default); more than ``high`` is taken as ``high``."""
    try:
        value = float(query.get(name, 0))
        if not math.isfinite(value) or value < 0:
            raise ValueError
    except ValueError:
        raise ClientError(f"{name} must be a number of seconds (up to {high:g}), got {query[name][:40]!r}") from None
    return min(value, high)


def _reason(query: dict[str, str]) -> str:
    reason = query.get("reason") or "ended by the admin API"
    if len(reason) > MAX_REASON:
        raise ClientError(f"reason is limited to {MAX_REASON} characters")
    return reason
