"""The job routes of the admin API, for ``dicom-host submit/jobs/job/cancel`` and ``dicom-host worker``.

:class:`JobsClient` is an :class:`~hosting_service.admin.client.AdminClient` with the job calls. Uploads
(a job's inputs, a worker's results) are PAX tar streams sent from a generator with their exact
``Content-Length`` (:mod:`.tarstream`): never the whole body in memory. Downloads are read by the tar
reader as they arrive, on a connection of their own.
"""
from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional
from urllib.parse import quote, urlencode

from hosting_service.admin.client import AdminClient, AdminError
from hosting_service.admin.tarstream import (
    TarPlan,
    TarSourceChanged,
    UnsafeMember,
    extract,
    folder_files,
    input_names,
)

TAR = "application/x-tar"
LEASE_WAIT_MAX = 30.0
"""Longest long poll of a lease call the API takes."""


def _id(job_id: str) -> str:
    return quote(job_id, safe="")


class JobsClient(AdminClient):
    """The admin API with its job routes; safe to share between threads, like its base."""

    # --- users ---------------------------------------------------------------------------------------------

    def submit(self, app: str, inputs: Iterable[Path], options: Optional[dict] = None) -> dict:
        """Upload ``inputs`` (files and folders) as a new job of ``app``; the queued job.

        Each file is hashed first, then the stream is sent (see :mod:`.tarstream`)."""
        plan = TarPlan()
        plan.add_bytes("job.json", json.dumps({"app": app, "options": options or {}}).encode())
        for name, path in input_names(inputs):
            plan.add_file(name, path)
        if plan.files == 0:
            raise ValueError("no file to upload among the inputs")
        return self._upload("POST", "/jobs", plan, timeout=max(self.timeout, 600))

    def submit_paths(self, app: str, paths: Iterable[str], options: Optional[dict] = None) -> dict:
        """A job whose inputs are already on the server's disk (under its ``DICOM_HOST_INPUT_ROOTS``)."""
        return self._call("POST", "/jobs", json_body={"app": app, "options": options or {}, "paths": list(paths)})

    def jobs(self, *, state: Optional[str] = None, limit: Optional[int] = None) -> list[dict]:
        params = {k: v for k, v in (("state", state), ("limit", limit)) if v is not None}
        return self._call("GET", "/jobs", params=params or None)

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/jobs/{_id(job_id)}")

    def job_events(self, job_id: str, *, after: int = 0, wait: float = 0.0) -> tuple[list[dict], int]:
        answer = self._call("GET", f"/jobs/{_id(job_id)}/events", params={"after": after, "wait": wait},
                            timeout=wait + self.timeout)
        return answer["events"], answer["last"]

    def cancel(self, job_id: str) -> dict:
        return self._call("POST", f"/jobs/{_id(job_id)}/cancel", json_body={})

    def download_results(self, job_id: str, folder: Path) -> list[str]:
        """Extract the job's results (manifest.json, app.log, the outputs) into ``folder``, as they arrive;
        the names written. :class:`AdminError` when the server has none or the stream is broken."""
        conn = self._fresh_connection(max(self.timeout, 600))
        try:
            response = self._send(conn, "GET", f"/jobs/{_id(job_id)}/results", None, {"Accept": TAR})
            if response.status >= 400:
                self._raise_for(response, "GET", f"/jobs/{job_id}/results")
            try:
                return extract(response, folder)  # type: ignore[arg-type]
            except UnsafeMember as exc:
                raise AdminError(f"the results of job {job_id} cannot be extracted: {exc}") from None
            except (OSError, http.client.HTTPException) as exc:
                raise AdminError(f"the results of job {job_id} broke off: {exc}") from None
        finally:
            conn.close()

    # --- workers -------------------------------------------------------------------------------------------

    def lease(self, worker: str, *, wait: float, apps: Optional[list[str]] = None) -> Optional[dict]:
        """A job to run (``{"job", "lease", "leaseSeconds", "app"}``), or ``None`` when none came within
        ``wait`` seconds."""
        body: dict[str, Any] = {"worker": worker, "wait": min(wait, LEASE_WAIT_MAX)}
        if apps:
            body["apps"] = apps
        return self._call("POST", "/jobs/lease", json_body=body, timeout=min(wait, LEASE_WAIT_MAX) + self.timeout)

    def heartbeat(self, job_id: str, lease: str) -> dict:
        """Renew the lease: ``{"leaseExpiresAt", "cancelRequested"}``; a 409 :class:`AdminError` when the lease
        is no longer this worker's."""
        return self._call("POST", f"/jobs/{_id(job_id)}/heartbeat", json_body={"lease": lease}, idempotent=True)

    def upload_results(self, job_id: str, lease: str, folder: Path) -> None:
        """Send the results folder as a tar stream (every regular file under it)."""
        plan = TarPlan()
        for name, path in folder_files(folder):
            plan.add_file(name, path)
        self._upload("PUT", f"/jobs/{_id(job_id)}/results", plan, params={"lease": lease},
                     timeout=max(self.timeout, 600))

    def finish(self, job_id: str, lease: str, result: str, reason: str) -> dict:
        return self._call("POST", f"/jobs/{_id(job_id)}/finish",
                          json_body={"lease": lease, "result": result, "reason": reason})

    def create_job_instance(self, job_id: str, lease: str, options: dict, *,
                            application_url: Optional[str] = None) -> dict:
        """The job's instance: the server ties it to the job, and ends it when the lease expires."""
        body: dict[str, Any] = {"options": options, "job": {"id": job_id, "lease": lease}}
        if application_url:
            body["applicationURL"] = application_url
        return self._call("POST", "/instances", json_body=body)

    def offer_job_inputs(self, instance_id: str, job_id: str) -> dict:
        """Offer the job's uploaded inputs to its instance; the answer of
        :meth:`~hosting_service.admin.client.AdminClient.offer_inputs`."""
        from hosting_service.model import AvailableData, from_jsonable

        answer = self._call("POST", f"/instances/{instance_id}/inputs", json_body={"job": job_id},
                            timeout=max(self.timeout, 600))
        answer["availableData"] = from_jsonable(AvailableData, answer["availableData"])
        return answer

    # --- transport of streams ------------------------------------------------------------------------------

    def _fresh_connection(self, timeout: float) -> http.client.HTTPConnection:
        """A connection of its own for one streamed request (the pooled ones stay for JSON calls)."""
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        return cls(self._netloc, timeout=timeout)

    def _send(self, conn: http.client.HTTPConnection, method: str, path: str, body: Optional[Iterator[bytes]],
              headers: dict[str, str], params: Optional[dict] = None) -> http.client.HTTPResponse:
        target = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        all_headers = {**self._headers, **headers}
        if body is None:
            all_headers.pop("Content-Type", None)
        try:
            conn.request(method, target, body=body, headers=all_headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before the body was all sent (a refusal): read its answer
        except (OSError, http.client.HTTPException) as exc:
            raise AdminError(f"admin API at {self.base} unreachable: {exc or type(exc).__name__}",
                             timed_out=isinstance(exc, TimeoutError)) from None
        try:
            return conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise AdminError(f"admin API at {self.base}: no answer to {method} {path}: "
                             f"{exc or type(exc).__name__}", timed_out=isinstance(exc, TimeoutError)) from None

    def _raise_for(self, response: http.client.HTTPResponse, method: str, path: str) -> None:
        payload = response.read(64 * 1024)
        try:
            message = json.loads(payload)["error"]
        except (ValueError, KeyError, TypeError):
            message = payload[:200].decode(errors="replace")
        raise AdminError(f"{method} {path}: {response.status} {message}", response.status)

    def _upload(self, method: str, path: str, plan: TarPlan, *, params: Optional[dict] = None,
                timeout: float) -> Any:
        conn = self._fresh_connection(timeout)
        try:
            headers = {"Content-Type": TAR, "Content-Length": str(plan.length)}
            try:
                response = self._send(conn, method, path, plan.chunks(), headers, params)
            except TarSourceChanged as exc:
                raise AdminError(f"upload abandoned: {exc}") from None
            if response.status >= 400:
                self._raise_for(response, method, path)
            payload = response.read()
            return json.loads(payload) if payload else None
        finally:
            conn.close()
