"""A client for the admin API, used by ``dicom-host`` and by the orchestration."""
from __future__ import annotations

from typing import Any, Iterable, Optional

import requests

from hosting_service.model import AvailableData, from_jsonable
from hosting_service.states import State


class AdminError(Exception):
    """The admin API refused a request (its message says why) or could not be reached."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


class AdminClient:
    def __init__(self, server_url: str, *, token: Optional[str] = None, timeout: float = 30.0):
        self.base = server_url.rstrip("/") + "/admin"
        self.timeout = timeout
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, *, json: Any = None, params: Optional[dict] = None,
              timeout: Optional[float] = None) -> Any:
        try:
            r = self.session.request(method, self.base + path, json=json, params=params,
                                     timeout=timeout or self.timeout)
        except requests.RequestException as exc:
            raise AdminError(f"admin API at {self.base} unreachable: {exc}") from None
        if r.status_code >= 400:
            try:
                message = r.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = r.text[:200]
            raise AdminError(f"{method} {path}: {r.status_code} {message}", r.status_code)
        return r.json() if r.content else None

    def create_instance(self, *, application_url: Optional[str] = None,
                        options: Optional[dict] = None) -> dict:
        body: dict[str, Any] = {"options": options or {}}
        if application_url:
            body["applicationURL"] = application_url
        return self._call("POST", "/instances", json=body)

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
        return self._call("POST", f"/instances/{instance_id}/events", json={"kind": kind, "data": data})["seq"]

    def offer_inputs(self, instance_id: str, paths: Iterable[str]) -> dict:
        """Register files/folders as inputs; returns ``availableData`` (an :class:`AvailableData`), ``count``
        and ``problems``."""
        answer = self._call("POST", f"/instances/{instance_id}/inputs", json={"paths": [str(p) for p in paths]},
                            timeout=max(self.timeout, 600))
        answer["availableData"] = from_jsonable(AvailableData, answer["availableData"])
        return answer

    def record_requested_state(self, instance_id: str, state: State) -> None:
        self._call("POST", f"/instances/{instance_id}/requested-state", json={"state": state.value})

    def announced_outputs(self, instance_id: str) -> tuple[list[AvailableData], bool]:
        answer = self._call("GET", f"/instances/{instance_id}/outputs")
        return [from_jsonable(AvailableData, a) for a in answer["announcements"]], answer["lastData"]

    def hand_back(self, instance_id: str, uris: Iterable[str]) -> dict:
        return self._call("POST", f"/instances/{instance_id}/handback", json={"uris": list(uris)})
