"""A client for the admin API, used by ``dicom-host`` and by the orchestration.

It speaks HTTP/1.1 with the standard library (one keep-alive connection per thread) rather than with
``requests``: ``dicom-host run`` creates the instance and launches the application before anything else,
and importing ``requests`` first would put a tenth of a second on every job's critical path.
"""
from __future__ import annotations

import http.client
import json
import select
import threading
from typing import Any, Iterable, Iterator, Optional
from urllib.parse import urlencode, urlsplit

from hosting_service.model import AvailableData, from_jsonable
from hosting_service.states import State


class AdminError(Exception):
    """The admin API refused a request (its message says why) or could not be reached."""

    def __init__(self, message: str, status: Optional[int] = None, *, timed_out: bool = False):
        super().__init__(message)
        self.status = status
        self.timed_out = timed_out


class AdminClient:
    """The admin API of the server at ``server_url``; safe to share between threads."""

    def __init__(self, server_url: str, *, token: Optional[str] = None, timeout: float = 30.0):
        parts = urlsplit(server_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"server URL must be http(s)://HOST[:PORT], got {server_url!r}")
        self.base = server_url.rstrip("/") + "/admin"
        self._scheme, self._netloc, self._prefix = parts.scheme, parts.netloc, parts.path + "/admin"
        self.timeout = timeout
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    # --- transport ----------------------------------------------------------------------------------------

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None and select.select([conn.sock], [], [], 0)[0]:
            conn.close()  # the server closed this idle keep-alive connection (or left bytes): start afresh
        if conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = self._local.conn = cls(self._netloc, timeout=timeout)
            with self._lock:
                self._connections.append(conn)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _call(self, method: str, path: str, *, json_body: Any = None, params: Optional[dict] = None,
              timeout: Optional[float] = None, idempotent: bool = False) -> Any:
        """One request; an idempotent one (a GET, or ``idempotent``) is sent once more on a new connection
        when the connection fails without an answer: with several frontends behind one address, the one
        that held this keep-alive connection may have gone while the others still answer."""
        target = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        body = None if json_body is None else json.dumps(json_body).encode()
        attempts = 2 if method == "GET" or idempotent else 1
        for attempt in range(attempts):
            conn = self._connection(timeout or self.timeout)
            try:
                conn.request(method, target, body=body, headers=self._headers)
                response = conn.getresponse()
                payload = response.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                timed_out = isinstance(exc, TimeoutError)
                if attempt + 1 < attempts and not timed_out:
                    continue
                reason = "no answer in time" if timed_out else (str(exc) or type(exc).__name__)
                raise AdminError(f"admin API at {self.base} unreachable: {reason}", timed_out=timed_out) from None
        if response.status >= 400:
            try:
                message = json.loads(payload)["error"]
            except (ValueError, KeyError, TypeError):
                message = payload[:200].decode(errors="replace")
            raise AdminError(f"{method} {path}: {response.status} {message}", response.status)
        return json.loads(payload) if payload else None

    def close(self) -> None:
        """Close every connection this client opened (from any thread)."""
        with self._lock:
            for conn in self._connections:
                conn.close()

    # --- the API ------------------------------------------------------------------------------------------

    def create_instance(self, *, application_url: Optional[str] = None,
                        options: Optional[dict] = None, lease_seconds: Optional[float] = None) -> dict:
        """``lease_seconds``: the server ends the instance when no :meth:`heartbeat_instance` came for that
        long (its runner is gone)."""
        body: dict[str, Any] = {"options": options or {}}
        if application_url:
            body["applicationURL"] = application_url
        if lease_seconds:
            body["leaseSeconds"] = lease_seconds
        return self._call("POST", "/instances", json_body=body)

    def heartbeat_instance(self, instance_id: str) -> None:
        """Renew the lease of an instance created with ``lease_seconds``."""
        self._call("POST", f"/instances/{instance_id}/heartbeat", json_body={}, idempotent=True)

    def instances(self, *, include_ended: bool = False) -> list[dict]:
        return self._call("GET", "/instances", params={"all": "1"} if include_ended else None)

    def instance(self, instance_id: str) -> dict:
        return self._call("GET", f"/instances/{instance_id}")

    def end(self, instance_id: str, reason: str) -> dict:
        return self._call("DELETE", f"/instances/{instance_id}", params={"reason": reason})

    def events(self, instance_id: str, *, after: int = 0, wait: float = 0.0,
               kinds: Optional[Iterable[str]] = None) -> tuple[list[dict], int]:
        """Events after ``after``; with ``wait``, a long poll that returns as soon as there is one."""
        params: dict[str, Any] = {"after": after, "wait": wait}
        if kinds:
            params["kinds"] = ",".join(kinds)
        answer = self._call("GET", f"/instances/{instance_id}/events", params=params, timeout=wait + self.timeout)
        return answer["events"], answer["last"]

    def add_event(self, instance_id: str, kind: str, data: dict) -> int:
        return self._call("POST", f"/instances/{instance_id}/events", json_body={"kind": kind, "data": data})["seq"]

    def offer_inputs(self, instance_id: str, paths: Iterable[str]) -> dict:
        """Register files/folders as inputs; returns ``availableData`` (an :class:`AvailableData`), ``count``
        and ``problems``."""
        answer = self._call("POST", f"/instances/{instance_id}/inputs", json_body={"paths": [str(p) for p in paths]},
                            timeout=max(self.timeout, 600))
        answer["availableData"] = from_jsonable(AvailableData, answer["availableData"])
        return answer

    def record_requested_state(self, instance_id: str, state: State) -> None:
        self._call("POST", f"/instances/{instance_id}/requested-state", json_body={"state": state.value})

    def announced_outputs(self, instance_id: str) -> tuple[list[AvailableData], bool]:
        answer = self._call("GET", f"/instances/{instance_id}/outputs")
        return [from_jsonable(AvailableData, a) for a in answer["announcements"]], answer["lastData"]

    def hand_back(self, instance_id: str, uris: Iterable[str]) -> dict:
        """Tell the host the application returned these URIs; the answer's ``urls`` say where to read the
        bytes of those in the instance's output locations (:meth:`read_file`)."""
        return self._call("POST", f"/instances/{instance_id}/handback", json_body={"uris": list(uris)})

    def read_file(self, url: str, offset: int = 0, length: int = 0, *, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The bytes of an output file named by a handback ``urls`` entry: ``length`` of them from
        ``offset`` (0 or less: to the end), in chunks, on a connection of their own.

        Only the URL's path below ``/admin/`` is used, and it is read from this client's server: the admin
        token goes nowhere else, whatever host the server's public URL names.
        """
        _, marker, below = urlsplit(url).path.partition("/admin/")
        if not marker or not below.startswith("instances/"):
            raise AdminError(f"not an admin file URL: {url}")
        headers = {k: v for k, v in self._headers.items() if k == "Authorization"}
        ranged = offset > 0 or length > 0
        if ranged:
            headers["Range"] = f"bytes={offset}-{offset + length - 1 if length > 0 else ''}"
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        conn = cls(self._netloc, timeout=self.timeout)
        try:
            conn.request("GET", f"{self._prefix}/{below}", headers=headers)
            response = conn.getresponse()
            if not (response.status == 200 and offset == 0 or response.status == 206 and ranged):
                payload = response.read(4096)
                try:
                    message = json.loads(payload)["error"]
                except (ValueError, KeyError, TypeError):
                    message = payload[:200].decode(errors="replace")
                raise AdminError(f"GET {url}: {response.status} {message}", response.status)
            remaining = length if length > 0 else -1  # a whole answer (200) to a range is cut to the range
            while remaining and (data := response.read(chunk if remaining < 0 else min(chunk, remaining))):
                remaining -= len(data) if remaining > 0 else 0
                yield data
        except (OSError, http.client.HTTPException) as exc:
            raise AdminError(f"GET {url}: {exc or type(exc).__name__}") from None
        finally:
            conn.close()
