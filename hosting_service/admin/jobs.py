"""The admin API's routes for jobs, and the job and lease parts of its instance routes.

Submitters (``dicom-host submit``):

* ``POST /admin/jobs``: ``application/x-tar`` (``job.json`` then ``inputs/...``, each with its SHA-256 in a
  PAX header; streamed to disk, see :mod:`hosting_service.jobs.uploads`) or ``application/json`` ``{"app",
  "options", "paths"}`` (paths on the server's disk, only under ``DICOM_HOST_INPUT_ROOTS``) -> 201, the job;
* ``GET /admin/jobs[?state=S&limit=N]``, ``GET /admin/jobs/<id>`` (with events and the results manifest),
  ``GET /admin/jobs/<id>/events?after=N&wait=S`` (long poll), ``POST /admin/jobs/<id>/cancel``,
  ``GET /admin/jobs/<id>/results`` (a PAX tar stream).

Workers (``dicom-host worker``): ``POST /admin/jobs/lease``, ``POST /admin/jobs/<id>/heartbeat``,
``PUT /admin/jobs/<id>/results?lease=T`` (a tar), ``POST /admin/jobs/<id>/finish``; they create the job's
instance with ``POST /admin/instances`` ``{"job": {"id", "lease"}}`` and offer its inputs with ``POST
/admin/instances/<iid>/inputs`` ``{"job": ID}``. Runners without a job may lease their instance
(``"leaseSeconds"``) and renew it with ``POST /admin/instances/<iid>/heartbeat``.

A submission that is refused (unknown app, no or empty inputs, malformed JSON or tar, a wrong checksum, an
unsafe name, too large) is a 4xx naming what is wrong, and leaves nothing behind: the upload is staged and
the job is queued only once all of it is in.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import parse_qs

from hosting_service.admin.api import MAX_SEQ, MAX_WAIT_SECONDS, RawBody, _query_int, _query_seconds
from hosting_service.admin.body import MAX_JSON_DEPTH, nesting_depth, read_json_object
from hosting_service.config import OUTPUT_SEMANTICS, Settings
from hosting_service.errors import ClientError
from hosting_service.jobs.reaper import Reaper
from hosting_service.jobs.records import (
    MAX_REASON,
    QUEUED,
    RESULTS,
    RUNNING,
    STATES,
    Job,
    JobConflict,
    JobStore,
)
from hosting_service.jobs.registry import AppRegistry, AppSpec, UnknownApp, load_registry
from hosting_service.jobs.results import JobFolder
from hosting_service.jobs.uploads import MAX_MEMBERS, TAR_CONTENT_TYPE, declared_length, receive_tar, staging
from hosting_service.orchestration.tasks import TASK_SCOPES
from hosting_service.outputs.body import body_source
from hosting_service.store import InstanceEnded

log = logging.getLogger("dicom_host.jobs")

_ROUTE = re.compile(r"^/admin/jobs(?:/(?P<id>[A-Za-z0-9_-]{1,128})(?:/(?P<sub>[a-z]+))?)?/?$")
MAX_LIST = 1000
MAX_LEASE_WAIT = 30.0
MAX_INSTANCE_LEASE = 3600.0
MAX_LABEL = 200
_LEASE_POLL_FIRST, _LEASE_POLL_LATER = 0.02, 0.2
"""A waiting lease looks for a queued job this often (a read; the first second more often)."""
_EVENT_POLL = 0.05
_WORKER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")
OPTION_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "task_per": (lambda v: v in TASK_SCOPES, ", ".join(TASK_SCOPES)),
    "output_semantics": (lambda v: v in OUTPUT_SEMANTICS, " or ".join(OUTPUT_SEMANTICS)),
    "file_uris": (lambda v: isinstance(v, bool), "true or false"),
    "label": (lambda v: isinstance(v, str) and len(v) <= MAX_LABEL, f"a string of at most {MAX_LABEL} characters"),
    "output_models": (lambda v: isinstance(v, bool), "true or false"),
    "trust_app_uris": (lambda v: isinstance(v, bool), "true or false"),
}
"""The job options a submitter may give, and what each must be."""


class JobsApi:
    """Routes under ``/admin/jobs`` (see the module docstring); authorised by :class:`AdminApi` first."""

    def __init__(self, store, settings: Settings, outputs):
        self.store = store
        self.settings = settings
        self.outputs = outputs
        self.registry: AppRegistry = load_registry(settings)
        self.jobs = JobStore(store, settings)
        self.reaper = Reaper(store, self.jobs, outputs, settings.jobs_dir)
        self.roots = [Path(os.path.realpath(r)) for r in settings.input_roots]

    def folder(self, job_id: str) -> JobFolder:
        return JobFolder(self.settings.jobs_dir, job_id)

    def dispatch(self, environ) -> tuple[int, Any]:
        match = _ROUTE.match(environ.get("PATH_INFO", ""))
        if not match:
            raise ClientError(f"no admin route {environ.get('PATH_INFO', '')[:200]!r}", http_status=404)
        method = environ["REQUEST_METHOD"]
        job_id, sub = match["id"], match["sub"]
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if job_id == "lease" and sub is None:
            routes: dict[tuple[Optional[str], str], Callable[[], tuple[int, Any]]] = {
                (None, "POST"): lambda: self.lease(read_json_object(environ))}
        elif job_id is None:
            routes = {(None, "POST"): lambda: self.submit(environ),
                      (None, "GET"): lambda: self.listing(query)}
        else:
            routes = {
                (None, "GET"): lambda: (200, self.show(job_id)),
                ("events", "GET"): lambda: self.events(job_id, query),
                ("cancel", "POST"): lambda: (200, self.jobs.cancel(job_id).to_json()),
                ("results", "GET"): lambda: self.results(job_id),
                ("results", "PUT"): lambda: self.put_results(environ, job_id, query),
                ("heartbeat", "POST"): lambda: self.heartbeat(job_id, read_json_object(environ)),
                ("finish", "POST"): lambda: self.finish(job_id, read_json_object(environ)),
            }
        route = routes.get((sub, method))
        if route is None:
            allowed = sorted(m for (s, m) in routes if s == sub)
            if not allowed:
                raise ClientError(f"no admin route {environ.get('PATH_INFO', '')[:200]!r}", http_status=404)
            raise ClientError(f"{method} not allowed here; use {', '.join(allowed)}", http_status=405)
        return route()

    # --- submitting ---------------------------------------------------------------------------------------

    def submit(self, environ) -> tuple[int, dict]:
        content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if content_type == TAR_CONTENT_TYPE:
            return self._submit_tar(environ)
        if content_type == "application/json":
            return self._submit_paths(read_json_object(environ))
        raise ClientError(f"a job is submitted as {TAR_CONTENT_TYPE} (job.json, then inputs/...) or as "
                          "application/json with server paths", http_status=415)

    def _job_request(self, body: Any, allowed: set[str]) -> tuple[AppSpec, dict[str, Any]]:
        """The app and options of a submission (the JSON body, or the tar's job.json)."""
        if not isinstance(body, dict):
            raise ClientError("the job description must be a JSON object")
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise ClientError(f"unknown field {unknown[0][:80]!r} in the job description (known: "
                              f"{', '.join(sorted(allowed))})")
        name = body.get("app")
        if not isinstance(name, str) or not name:
            raise ClientError("the job description needs 'app': the name of a registered app")
        try:
            app = self.registry.get(name)
        except UnknownApp as exc:
            raise ClientError(str(exc)) from None
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise ClientError("options must be a JSON object")
        for key, value in options.items():
            if key not in OPTION_CHECKS:
                raise ClientError(f"unknown job option {key[:80]!r} (known: {', '.join(OPTION_CHECKS)})")
            check, expected = OPTION_CHECKS[key]
            if not check(value):
                raise ClientError(f"job option {key} must be {expected}, got {json.dumps(value)[:80]}")
        if options.get("file_uris") is True and not app.file_uris:
            raise ClientError(f"app {app.name} is registered with file_uris = false: a job cannot allow them")
        return app, options

    def _submit_tar(self, environ) -> tuple[int, dict]:
        limit = self.settings.job_max_upload_bytes
        length = declared_length(environ, limit)
        request: dict[str, Any] = {}

        def job_json(raw: bytes) -> None:
            if nesting_depth(raw) > MAX_JSON_DEPTH:
                raise ClientError(f"job.json nests deeper than {MAX_JSON_DEPTH} levels")
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise ClientError(f"job.json is not JSON: {exc}") from None
            request["app"], request["options"] = self._job_request(body, {"app", "options"})

        with staging(self.settings.jobs_dir) as folder:
            received = receive_tar(body_source(environ, length, self.settings.read_timeout), limit=limit,
                                   into=folder, under="inputs", first=("job.json", job_json))
            if not received.count:
                raise ClientError("the job has no inputs: add files as tar members inputs/<name>")
            if not received.size:
                raise ClientError(f"the job's inputs are empty ({received.count} files of 0 bytes)")
            job = self._queue(request["app"], request["options"], received.count, received.size, folder)
        log.info("job %s queued: app %s, %d input files, %d bytes uploaded", job.id, job.app, received.count,
                 received.size)
        return 201, job.to_json()

    def _submit_paths(self, body: dict) -> tuple[int, dict]:
        app, options = self._job_request(body, {"app", "options", "paths"})
        paths = body.get("paths")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
            raise ClientError("the job has no inputs: 'paths' must be a non-empty list of files or folders on "
                              "the server's disk (or upload the inputs as a tar)")
        checked = self.allowed_paths(paths)
        count, size = _count_files(checked)
        if not count:
            raise ClientError("the job has no inputs: its paths hold no files")
        if not size:
            raise ClientError(f"the job's inputs are empty ({count} files of 0 bytes)")
        with staging(self.settings.jobs_dir) as folder:
            (folder / "paths.json").write_text(json.dumps(checked))
            job = self._queue(app, options, count, size, folder)
        log.info("job %s queued: app %s, %d input files on the server's disk", job.id, job.app, count)
        return 201, job.to_json()

    def _queue(self, app: AppSpec, options: dict[str, Any], count: int, size: int, folder: Path) -> Job:
        """Queue the job whose files are staged in ``folder`` (moved into place first, so that a queued job
        always has its inputs)."""
        job_id = os.urandom(16).hex()
        target = self.folder(job_id).path
        os.rename(folder, target)
        try:
            return self.jobs.create(app=app.name, options=options, max_attempts=app.max_attempts,
                                    inputs_count=count, inputs_bytes=size, job_id=job_id)
        except BaseException:
            os.rename(target, folder)  # the staging context removes it
            raise

    def allowed_paths(self, paths: list[str], *, must_exist: bool = True) -> list[str]:
        """``paths`` (absolute, under ``DICOM_HOST_INPUT_ROOTS``, existing unless not ``must_exist``: an
        instance's scan reports missing ones as problems) as real paths; else a 4xx."""
        if not self.roots:
            raise ClientError("this server accepts no input paths on its disk (DICOM_HOST_INPUT_ROOTS is empty): "
                              "upload the inputs with the job instead", http_status=403)
        checked = []
        for path in paths:
            if not os.path.isabs(path):
                raise ClientError(f"input path {path[:200]!r} is not absolute")
            real = Path(os.path.realpath(path))
            if not any(real == root or root in real.parents for root in self.roots):
                raise ClientError(f"input path {path[:200]!r} is outside the folders this server offers inputs from "
                                  "(DICOM_HOST_INPUT_ROOTS)", http_status=403)
            if must_exist and not real.exists():
                raise ClientError(f"input path {path[:200]!r} does not exist on the server")
            checked.append(str(real))
        return checked

    # --- reading --------------------------------------------------------------------------------------------

    def show(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        return {**job.to_json(), "events": self.jobs.events(job_id),
                "manifest": self.folder(job_id).manifest()}

    def listing(self, query: dict[str, str]) -> tuple[int, list]:
        state = query.get("state")
        if state is not None and state not in STATES:
            raise ClientError(f"state must be one of {', '.join(STATES)}")
        limit = _query_int(query, "limit", 100, 1, MAX_LIST)
        return 200, [j.to_json() for j in self.jobs.listing(state=state, limit=limit)]

    def events(self, job_id: str, query: dict[str, str]) -> tuple[int, dict]:
        self.jobs.get(job_id)
        after = _query_int(query, "after", 0, 0, MAX_SEQ)
        deadline = time.monotonic() + _query_seconds(query, "wait", MAX_WAIT_SECONDS)
        while not (events := self.jobs.events(job_id, after=after)) and time.monotonic() < deadline:
            time.sleep(_EVENT_POLL)
        return 200, {"events": events, "last": events[-1]["seq"] if events else after}

    def results(self, job_id: str) -> tuple[int, RawBody]:
        job = self.jobs.get(job_id)
        tar = self.folder(job_id).results_tar()
        if tar is None:
            raise JobConflict(f"job {job_id} has no results ({job.state})")
        return 200, RawBody(TAR_CONTENT_TYPE, *tar)

    # --- workers ----------------------------------------------------------------------------------------------

    def lease(self, body: dict) -> tuple[int, Optional[dict]]:
        worker = body.get("worker")
        if not isinstance(worker, str) or not _WORKER_NAME.fullmatch(worker):
            raise ClientError("a lease needs 'worker': a name of letters, digits and _.:@- (at most 128)")
        wait = body.get("wait", 0)
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not math.isfinite(wait) or wait < 0:
            raise ClientError(f"wait must be a number of seconds up to {MAX_LEASE_WAIT:g}")
        names = body.get("apps")
        if names is None:
            names = self.registry.names()
        elif not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ClientError("apps must be a list of app names")
        unknown = [n for n in names if n not in self.registry.apps]
        if unknown:
            raise ClientError(f"unknown app {unknown[0][:80]!r}; registered: {', '.join(self.registry.names())}")
        limits = {n: self.registry.apps[n].max_running for n in names}
        started = time.monotonic()
        deadline = started + min(float(wait), MAX_LEASE_WAIT)
        self.reaper.run_once()  # a job a vanished worker held is leased again now, not after the next round
        while True:
            taken = self.jobs.lease(worker, limits)
            if taken is not None:
                break
            now = time.monotonic()
            if now >= deadline:
                return 204, None
            time.sleep(min(deadline - now, _LEASE_POLL_FIRST if now - started < 1 else _LEASE_POLL_LATER))
        job, token = taken
        log.info("job %s leased to worker %s (attempt %d)", job.id, worker, job.attempts)
        return 200, {"job": job.to_json(), "lease": token, "leaseSeconds": self.jobs.lease_seconds,
                     "app": self.registry.apps[job.app].to_json()}

    def heartbeat(self, job_id: str, body: dict) -> tuple[int, dict]:
        job = self.jobs.heartbeat(job_id, body.get("lease"))
        return 200, {"leaseExpiresAt": job.lease_expires_at, "cancelRequested": job.cancel_requested}

    def put_results(self, environ, job_id: str, query: dict[str, str]) -> tuple[int, None]:
        lease = query.get("lease")
        self.jobs.check_lease(job_id, lease)
        limit = self.settings.job_max_upload_bytes
        length = declared_length(environ, limit)
        folder = self.folder(job_id)
        with staging(folder.path) as staged:
            received = receive_tar(body_source(environ, length, self.settings.read_timeout), limit=limit,
                                   into=staged)
            self.jobs.record_results(job_id, lease, received.count, received.size)
            folder.store_results(staged, received)
        log.info("job %s: results received, %d files, %d bytes", job_id, received.count, received.size)
        return 204, None

    def finish(self, job_id: str, body: dict) -> tuple[int, dict]:
        result, reason = body.get("result"), body.get("reason", "")
        if result not in RESULTS:
            raise ClientError(f"result must be one of {', '.join(RESULTS)}")
        if not isinstance(reason, str) or len(reason) > MAX_REASON:
            raise ClientError(f"reason must be a string of at most {MAX_REASON} characters")
        job, instance_id = self.jobs.finish(job_id, body.get("lease"), result, reason)
        if job.state == QUEUED:
            self.folder(job_id).discard_results()
        if instance_id is not None:
            self.reaper.end_instance(instance_id, f"job {job.state}")
        log.info("job %s: attempt %d finished (%s): job %s", job_id, job.attempts, result, job.state)
        return 200, job.to_json()

    # --- instances (called by AdminApi) -------------------------------------------------------------------------

    def instance_lease(self, body: dict) -> Optional[Callable[[str], None]]:
        """Check the lease parts of an instance creation (``job``, ``leaseSeconds``) before the instance is
        made; what to do with the new instance's id after (``None``: nothing)."""
        job, seconds = body.get("job"), body.get("leaseSeconds")
        if job is not None and seconds is not None:
            raise ClientError("an instance has a job or leaseSeconds, not both (a job's instance lives by the job's lease)")
        if job is not None:
            if not isinstance(job, dict) or not isinstance(job.get("id"), str) or not isinstance(job.get("lease"), str):
                raise ClientError("job must be {\"id\": JOB ID, \"lease\": LEASE TOKEN}")
            job_id, lease = job["id"], job["lease"]
            self.jobs.check_lease(job_id, lease)
            return lambda instance_id: self._attach(job_id, lease, instance_id)
        if seconds is not None:
            if (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds)
                    or not 1 <= seconds <= MAX_INSTANCE_LEASE):
                raise ClientError(f"leaseSeconds must be a number from 1 to {MAX_INSTANCE_LEASE:g}")
            return lambda instance_id: self.jobs.lease_instance(instance_id, float(seconds))
        return None

    def _attach(self, job_id: str, lease: str, instance_id: str) -> None:
        try:
            self.jobs.attach_instance(job_id, lease, instance_id)
        except JobConflict:  # the lease was lost while the instance was made: it must not live on
            self.reaper.end_instance(instance_id, "its job's lease was lost", released=True)
            raise

    def instance_heartbeat(self, instance_id: str) -> tuple[int, None]:
        instance = self.store.get_instance(instance_id)
        if instance.ended:
            raise InstanceEnded(f"instance {instance_id} has ended ({instance.end_reason})")
        if not self.jobs.renew_instance(instance_id):
            raise JobConflict(f"instance {instance_id} holds no lease of its own (created without leaseSeconds, "
                              "or its job's heartbeats keep it)")
        return 204, None

    def input_paths(self, instance_id: str, body: dict) -> list[str]:
        """The paths an instance's ``inputs`` request offers: its job's inputs (``{"job": ID}``), or server
        paths under ``DICOM_HOST_INPUT_ROOTS`` (``{"paths": [...]}``)."""
        if "job" in body:
            job_id = body["job"]
            if not isinstance(job_id, str):
                raise ClientError("job must be a job id")
            job = self.jobs.get(job_id)
            if job.state != RUNNING or job.instance_id != instance_id:
                raise JobConflict(f"job {job_id} is not running in instance {instance_id}")
            folder = self.folder(job_id)
            server_paths = folder.server_paths()
            if server_paths is None:
                return [str(folder.inputs)]
            return self.allowed_paths(server_paths, must_exist=False)  # the roots may have changed since
        paths = body.get("paths")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths) or not paths:
            raise ClientError("inputs need 'paths': a non-empty list of files or folders on the server's filesystem"
                              " (or 'job': the id of the job whose inputs to offer)")
        return self.allowed_paths(paths, must_exist=False)


def _count_files(paths: list[str]) -> tuple[int, int]:
    """Files and bytes under ``paths`` (counting stops after :data:`MAX_MEMBERS` files)."""
    count = size = 0
    for path in paths:
        walk = [(path, [], [""])] if not os.path.isdir(path) else os.walk(path)
        for folder, _dirs, files in walk:
            for name in files:
                try:
                    size += os.stat(os.path.join(folder, name) if name else folder).st_size
                except OSError:
                    continue
                count += 1
                if count >= MAX_MEMBERS:
                    return count, size
    return count, size
