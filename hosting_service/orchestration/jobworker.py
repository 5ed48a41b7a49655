"""``dicom-host worker``: lease jobs from a server's admin API and run each as ``dicom-host run`` would.

(Not to be confused with :mod:`hosting_service.worker`, the gunicorn worker of ``dicom-host serve``.)

:class:`JobWorker` is the lease loop of the main thread: while it has a free slot (``--concurrency``) it
long-polls ``POST /admin/jobs/lease``; each job it gets runs on a thread of its own (:class:`JobRun`) that
lives as long as the job, so the application it launches gets the parent-death signal when the worker dies
(:mod:`.lifeline`: the signal follows the *thread* that forked the child). A job's run is the same
:class:`~hosting_service.orchestration.runner.Runner` as ``dicom-host run``'s, with options built from the
app registry entry the server hands over with the lease (:func:`run_options`), its results folder in a
private temporary folder, uploaded as a tar stream once the run ends; then the job is finished with the
run's result and the folder removed.

Leases: a job's lease is renewed every third of its length. When the server says the lease is no longer
this worker's (409), or the worker cannot renew it before it expires, the application is killed at once
and the job abandoned (the server has queued it again or failed it). A cancel requested through the API
arrives with a heartbeat's answer and cancels the task gracefully (SetState(CANCELED), IDLE, EXIT).

Registry entries with an ``image`` run as containers (:attr:`RunOptions.launcher` is a
:class:`~hosting_service.orchestration.container.ContainerLauncher` on ``DICOM_HOST_DOCKER_NETWORK``); while
the worker runs, a :class:`~hosting_service.orchestration.container.Reaper` removes the app containers of jobs
no longer leased to their worker.

Stopping: the first :meth:`JobWorker.stop` (SIGTERM, SIGHUP, SIGINT) stops leasing and cancels the running
jobs gracefully; they are finished as ``canceled`` and the worker exits. A second one kills their
applications at once. A job leased by the long poll that was in flight when the stop came is finished
unrun, as result ``server`` (retried where the registry allows it).
"""
from __future__ import annotations

import dataclasses
import logging
import shlex
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hosting_service.admin.client import AdminError
from hosting_service.admin.jobs_client import JobsClient
from hosting_service.config import Settings
from hosting_service.logs import bind
from hosting_service.orchestration.container import ContainerLauncher, Reaper
from hosting_service.orchestration.heartbeat import Heartbeat
from hosting_service.orchestration.options import JobLease, RunOptions
from hosting_service.orchestration.outcome import Outcome, Result
from hosting_service.orchestration.process import LaunchError
from hosting_service.orchestration.progress import Reporter
from hosting_service.orchestration.runner import Runner
from hosting_service.orchestration.tempdirs import private_temp, remove_stale

log = logging.getLogger("dicom_host.jobworker")

RETRY_SECONDS = 2.0
"""Pause after the server could not be reached before the next lease call."""


@dataclass
class WorkerOptions:
    server: str
    name: str
    admin_token: Optional[str] = None
    concurrency: int = 1
    apps: Optional[list[str]] = None
    """Lease only jobs of these apps (``None``: any)."""
    lease_wait: float = 5.0
    """Longest long poll of one lease call: also the longest a stop waits for the poll in flight."""
    call_timeout: float = 30.0
    temp_root: Optional[Path] = None
    """Where job folders are made (``None``: the system's temporary folder)."""


def run_options(grant: dict, folder: Path, server: str, token: Optional[str]) -> RunOptions:
    """The :class:`RunOptions` of a leased job: the app registry entry (``grant["app"]``, all defaults
    filled by the server), overridden by the job's own options where the API allows it."""
    spec, job = grant["app"], grant["job"]
    wanted = job.get("options") or {}
    timeouts = spec.get("timeouts") or {}
    defaults = RunOptions(app="", inputs=[], output=Path())
    work = Path(spec["working_dir"]) if spec.get("working_dir") else folder / "work"
    work.mkdir(parents=True, exist_ok=True)
    return RunOptions(
        app=shlex.join(spec["command"]),
        inputs=[],
        output=folder / "results",
        app_args=[str(a) for a in spec.get("args") or []],
        server=server,
        admin_token=token,
        task_per=wanted.get("task_per") or spec.get("task_per") or defaults.task_per,
        startup_timeout=float(timeouts.get("startup", defaults.startup_timeout)),
        state_timeout=float(timeouts.get("state", defaults.state_timeout)),
        task_timeout=float(timeouts.get("task", defaults.task_timeout)),
        call_timeout=float(timeouts.get("call", defaults.call_timeout)),
        exit_grace=float(timeouts.get("exit", defaults.exit_grace)),
        output_semantics=wanted.get("output_semantics") or spec.get("output_semantics"),
        trust_app_uris=bool(wanted.get("trust_app_uris", False)),
        output_models=bool(wanted.get("output_models", False)),
        environment={str(k): str(v) for k, v in (spec.get("environment") or {}).items()},
        working_dir=work,
        file_uris=wanted["file_uris"] if wanted.get("file_uris") is not None else spec.get("file_uris"),
        output_protocols=spec.get("output_protocols"),
        label=str(wanted.get("label") or f"job {job['id']} ({job.get('app')})"),
        job=JobLease(job["id"], grant["lease"]),
    )


class JobRun:
    """One leased job on its own thread: heartbeats, the run, the upload of its results, its finish."""

    def __init__(self, worker: "JobWorker", grant: dict):
        self.worker = worker
        self.client = worker.client
        self.grant = grant
        self.job_id: str = grant["job"]["id"]
        self.lease: str = grant["lease"]
        self.lease_seconds = float(grant.get("leaseSeconds") or 30)
        self.runner: Optional[Runner] = None
        self.lost: Optional[str] = None
        """Why the lease was lost (the job is abandoned), once it was."""
        self._renewed = time.monotonic()
        self._cancel_reason: Optional[str] = None
        self._done = False
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._main, name=f"job-{self.job_id}")

    # --- controls (any thread) ----------------------------------------------------------------------------

    def cancel(self, reason: str) -> None:
        """Cancel the task gracefully (as a first Ctrl-C does to ``dicom-host run``)."""
        with self._lock:
            if self._cancel_reason is None:
                self._cancel_reason = reason
            if self.runner is not None:
                self.runner.cancel_reason = self._cancel_reason
                self.runner.cancel_requested.set()

    def kill(self, why: str, result: Result) -> None:
        with self._lock:
            runner = self.runner
        if runner is not None:
            runner.abort(why, result)

    # --- the job's thread ---------------------------------------------------------------------------------

    def _main(self) -> None:
        with bind(job_id=self.job_id):  # every log line of this job's thread names it
            self._carry_out()

    def _carry_out(self) -> None:
        folder = private_temp("worker", self.worker.options.temp_root)
        heartbeat = Heartbeat(self._beat, self.lease_seconds / 3, name=f"lease-{self.job_id}").start()
        try:
            outcome = self._run(folder)
            if self.lost is None:
                self._hand_in(folder / "results", outcome)
        except Exception:  # a defect of the worker: the job's lease expires and the server deals with it
            log.exception("job %s: the worker failed", self.job_id)
        finally:
            self._done = True
            heartbeat.stop()
            shutil.rmtree(folder, ignore_errors=True)
            self.worker.job_ended(self)

    def _run(self, folder: Path) -> Outcome:
        spec = self.grant["app"]
        try:
            if spec.get("image"):
                options = self._container_options(folder)
            else:
                options = run_options(self.grant, folder, self.worker.options.server, self.worker.options.admin_token)
        except LaunchError as exc:
            return Outcome(Result.USAGE, str(exc))
        except (KeyError, TypeError, ValueError, OSError) as exc:
            return Outcome(Result.USAGE, f"the app entry cannot be run: {type(exc).__name__}: {exc}")
        runner = Runner(options, Reporter())
        with self._lock:
            self.runner = runner
            if self._cancel_reason is not None:
                runner.cancel_reason = self._cancel_reason
                runner.cancel_requested.set()
        if self.lost is not None:
            runner.abort(self.lost, Result.SERVER)
        log.info("job %s: running %s (%s)", self.job_id, self.grant["job"].get("app"), options.app)
        return runner.run()

    def _container_options(self, folder: Path) -> RunOptions:
        """An entry with an ``image`` runs as a container on the stack's network (:mod:`.container`): its
        working folder and environment are the container's, not this worker's."""
        spec, job = self.grant["app"], self.grant["job"]
        settings = Settings.from_env()
        launcher = ContainerLauncher(spec, network=settings.docker_network, worker=self.worker.options.name,
                                     job_id=self.job_id, attempt=int(job.get("attempts") or 0),
                                     host_url_base=settings.container_host_url)
        grant = {**self.grant, "app": {**spec, "working_dir": None, "environment": {}}}
        options = run_options(grant, folder, self.worker.options.server, self.worker.options.admin_token)
        return dataclasses.replace(options, app=shlex.join(spec.get("command") or [str(spec["image"])]),
                                   launcher=launcher)

    def _hand_in(self, results: Path, outcome: Outcome) -> None:
        result, reason = outcome.result.value, outcome.reason
        if results.is_dir() and any(results.iterdir()):
            try:
                self.client.upload_results(self.job_id, self.lease, results)
            except AdminError as exc:
                if exc.status == 409:
                    self.lost = str(exc)
                    log.warning("job %s: lease lost while uploading its results: %s", self.job_id, exc)
                    return
                result, reason = "server", f"the results could not be uploaded: {exc}"
        self._finish(result, reason)

    def finish_unrun(self, reason: str) -> None:
        """Give the job back unrun (result ``server``: queued again where the registry allows retries)."""
        self._finish("server", reason)

    def _finish(self, result: str, reason: str) -> None:
        deadline = self._renewed + self.lease_seconds
        while True:
            try:
                self.client.finish(self.job_id, self.lease, result, reason)
                log.info("job %s: %s: %s", self.job_id, result, reason)
                return
            except AdminError as exc:
                if exc.status is not None or time.monotonic() > deadline:
                    log.warning("job %s: finishing it as %s failed: %s", self.job_id, result, exc)
                    return
            time.sleep(RETRY_SECONDS)

    def _beat(self) -> bool:
        """Renew the lease; False once it is lost (the application has then been killed) or the job is done."""
        if self._done:
            return False
        try:
            answer = self.client.heartbeat(self.job_id, self.lease)
        except AdminError as exc:
            if exc.status is not None and exc.status in (404, 409, 410):
                self._lose(f"lease lost: {exc}")
                return False
            if time.monotonic() - self._renewed > self.lease_seconds:
                self._lose(f"the lease could not be renewed in time: {exc}")
                return False
            return True
        self._renewed = time.monotonic()
        if answer and answer.get("cancelRequested"):
            self.cancel("canceled through the admin API (dicom-host cancel)")
        return True

    def _lose(self, why: str) -> None:
        if self._done:  # finished meanwhile: the lease ended with the job
            return
        self.lost = why
        log.warning("job %s: %s; its application is killed and the job abandoned", self.job_id, why)
        self.kill(why, Result.SERVER)


class JobWorker:
    def __init__(self, options: WorkerOptions):
        self.options = options
        self.client = JobsClient(options.server, token=options.admin_token, timeout=options.call_timeout)
        self.stops = 0
        self._running: dict[str, JobRun] = {}
        self._changed = threading.Condition()

    def stop(self) -> None:
        """From a signal handler: the first call cancels the running jobs gracefully and stops leasing, the
        second kills their applications."""
        self.stops += 1
        with self._changed:
            runs = list(self._running.values())
            self._changed.notify_all()
        for run in runs:
            if self.stops == 1:
                run.cancel("canceled: the worker was stopped (SIGTERM, SIGHUP or Ctrl-C)")
            else:
                run.kill("the worker was stopped twice: the application was killed", Result.CANCELED)

    def run(self) -> Optional[AdminError]:
        """Lease and run jobs until :meth:`stop`; waits for the running jobs to finish. Returns ``None``, or
        the server's refusal of the lease call itself (a 4xx: an unknown app, a bad name, a refused token),
        which asking again cannot change."""
        for folder in remove_stale(self.options.temp_root):
            log.info("removed %s (its process is gone)", folder)
        log.info("worker %s: leasing jobs from %s (concurrency %d%s)", self.options.name, self.options.server,
                 self.options.concurrency, f", apps {','.join(self.options.apps)}" if self.options.apps else "")
        reaper = self._container_reaper()
        failing = False
        refused: Optional[AdminError] = None
        while not self.stops:
            if not self._await_slot():
                break
            try:
                grant = self.client.lease(self.options.name, wait=self.options.lease_wait, apps=self.options.apps)
            except AdminError as exc:
                if exc.status is not None and 400 <= exc.status < 500:
                    refused = exc
                    self.stop()
                    break
                if not failing:
                    log.warning("leasing failed: %s (trying again every %g s)", exc, RETRY_SECONDS)
                failing = True
                with self._changed:
                    self._changed.wait(RETRY_SECONDS)
                continue
            if failing:
                log.info("leasing works again")
                failing = False
            if grant is None:
                continue
            self._start(grant)
        self._await_all()
        if reaper is not None:
            reaper.stop()
        self.client.close()
        return refused

    def _container_reaper(self) -> Optional[Reaper]:
        """Where apps run as containers (``DICOM_HOST_DOCKER_NETWORK`` set): remove the app containers whose
        job is no longer leased to their worker (a worker that died), now and every few seconds."""
        if not Settings.from_env().docker_network:
            return None
        client = JobsClient(self.options.server, token=self.options.admin_token, timeout=self.options.call_timeout)

        def job_state(job_id: str) -> Optional[dict]:
            try:
                return client.job(job_id)
            except AdminError as exc:
                if exc.status == 404:
                    return None
                raise

        return Reaper(job_state, self.options.name, log=log.info).start()

    def _start(self, grant: dict) -> None:
        run = JobRun(self, grant)
        if self.stops:
            run.finish_unrun("the worker was stopping when it got the job; it was not run")
            return
        with self._changed:
            self._running[run.job_id] = run
        log.info("job %s: leased (app %s)", run.job_id, grant["job"].get("app"))
        run.thread.start()

    def _await_slot(self) -> bool:
        """Wait for a free slot; False when the worker is stopping."""
        with self._changed:
            while len(self._running) >= self.options.concurrency and not self.stops:
                self._changed.wait(0.5)
        return not self.stops

    def _await_all(self) -> None:
        while True:
            with self._changed:
                runs = list(self._running.values())
            if not runs:
                return
            for run in runs:
                run.thread.join(0.5)  # short joins: the main thread keeps taking signals

    def job_ended(self, run: JobRun) -> None:
        with self._changed:
            self._running.pop(run.job_id, None)
            self._changed.notify_all()
