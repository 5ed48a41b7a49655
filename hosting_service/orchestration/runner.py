"""``dicom-host run``: launch a hosted application and drive it through its tasks (PS3.19 §6, §7, Fig. 8.3-1).

The runner lives in its own process, apart from the SOAP workers. It calls the application with
:class:`client.ApplicationClient` and learns what the application did from the store's event stream
(:mod:`~hosting_service.orchestration.feed`), so it never calls the application from inside the handler of
one of the application's own requests.

:class:`Runner` is the job's lifecycle: it checks the usage, starts a server when none is given, creates
an instance, launches the application, has the server scan the inputs while the application starts, runs
the tasks (:mod:`.driver`), and then, whatever happened, brings the application down (:mod:`.winddown`),
ends the instance and writes the manifest. Its parts:

* :mod:`.job`: the context of one job (options, admin client, instance, manifest, event feed, folder);
* :mod:`.conversation`: calls to the application, SetState and the waits for its notifications;
* :mod:`.driver`: the steps of the task protocol;
* :mod:`.retrieval`: receiving the outputs, one method per step;
* :mod:`.winddown`: the way to EXIT, and the hard abort;
* :mod:`.destination`: the ``--output`` folder (new, empty, or an earlier run's, replaced on success).

``dicom-host worker`` runs the same :class:`Runner` for each job it leases (:mod:`.jobworker`), with
:attr:`RunOptions.job` set: the instance is created for the job (the job's lease covers it) and offered the
job's uploaded inputs. ``dicom-host run --server URL`` creates its instance with a lease and renews it
(:mod:`.heartbeat`), so a killed run's instance is ended by the server.
"""
from __future__ import annotations

import contextlib
import importlib
import threading
import time
import traceback
from typing import Optional

from hosting_service.admin.client import AdminClient, AdminError
from hosting_service.orchestration.applog import APP_LOG_NAME, AppLog
from hosting_service.orchestration.conversation import Application
from hosting_service.orchestration.destination import Destination, DestinationError
from hosting_service.orchestration.driver import TaskRun, await_ready
from hosting_service.orchestration.feed import EventFeed
from hosting_service.orchestration.heartbeat import Heartbeat, instance_heartbeat
from hosting_service.orchestration.job import OWN_EVENT_KINDS, Job
from hosting_service.orchestration.manifest import MANIFEST_NAME, Manifest
from hosting_service.orchestration.options import RunOptions
from hosting_service.orchestration.outcome import JobFailure, Outcome, Result
from hosting_service.orchestration.process import (
    AppHandle,
    Launcher,
    LaunchError,
    ProcessLauncher,
    application_argv,
)
from hosting_service.orchestration.progress import Reporter
from hosting_service.orchestration.retrieval import Received, Retrieval
from hosting_service.orchestration.server import EmbeddedServer, ServerStartError
from hosting_service.orchestration.tasks import Task, split_tasks
from hosting_service.orchestration.winddown import wind_down

SHOWN_INPUT_PROBLEMS = 20
"""Input problems shown one by one while the run goes; all of them are in the manifest."""

__all__ = ["Outcome", "Result", "RunOptions", "Runner"]


class Runner:
    def __init__(self, options: RunOptions, reporter: Reporter):
        self.options = options
        self.reporter = reporter
        self.cancel_requested = threading.Event()
        """Set by the CLI on the first Ctrl-C (or SIGTERM, SIGHUP): the job is canceled gracefully."""
        self.cancel_reason: Optional[str] = None
        """Why, when someone else than the user at the terminal asked (set before :attr:`cancel_requested`)."""
        self._started_at = time.time()
        self._lock = threading.Lock()
        self._process: Optional[AppHandle] = None
        self.launcher: Launcher = options.launcher or ProcessLauncher(
            options.app, options.environment, str(options.working_dir) if options.working_dir is not None else None)
        self._aborted: Optional[Outcome] = None

    def abort(self, why: str, result: Result = Result.SERVER) -> None:
        """From another thread: kill the application now (or never launch it) and end the job with
        ``result`` and ``why`` (a worker that lost the job's lease: the job is no longer its to run; a
        worker stopped twice)."""
        with self._lock:
            self._aborted = Outcome(result, why)
            process = self._process
        if process is not None:
            process.kill()

    def run(self) -> Outcome:
        """Run the job; never raises for anything the application, the server or the user does."""
        destination: Optional[Destination] = None
        try:
            destination = self._check_usage()
            with contextlib.ExitStack() as stack:
                url, token = self.options.server, self.options.admin_token
                if url is None:
                    url, token = self._start_server(stack)
                admin = self._admin_client(url, token)
                stack.callback(admin.close)  # before an embedded server stops
                outcome = self._job(url, token, admin, destination)
        except JobFailure as failure:
            outcome = failure.outcome
        except KeyboardInterrupt:
            outcome = Outcome(Result.CANCELED, "interrupted before the application was launched")
        if destination is not None and outcome.result is not Result.COMPLETED:
            destination.abandon()
        self.reporter.emit("outcome", {"result": outcome.result.value, "reason": outcome.reason})
        return outcome

    def _admin_client(self, url: str, token: Optional[str]) -> AdminClient:
        cls = AdminClient
        if self.options.job is not None:
            from hosting_service.admin.jobs_client import JobsClient

            cls = JobsClient
        try:
            return cls(url, token=token, timeout=self.options.call_timeout)
        except ValueError as exc:
            raise JobFailure(Result.USAGE, str(exc)) from None

    def _check_usage(self) -> Destination:
        o = self.options
        if o.launcher is None:
            try:
                application_argv(o.app, "", "", [])
            except LaunchError as exc:
                raise JobFailure(Result.USAGE, str(exc)) from None
        missing = [str(p) for p in o.inputs if not p.exists()] if o.job is None else []
        if missing:
            raise JobFailure(Result.USAGE, f"input not found: {', '.join(missing)}")
        try:
            return Destination.prepare(o.output)
        except DestinationError as exc:
            raise JobFailure(Result.USAGE, str(exc)) from None

    def _start_server(self, stack: contextlib.ExitStack) -> tuple[str, str]:
        self.reporter.emit("notice", {"message": "starting the Hosting System server"})
        server = EmbeddedServer(data_dir=self.options.data_dir, startup_timeout=self.options.startup_timeout)
        try:
            stack.enter_context(server)
        except (ServerStartError, OSError) as exc:
            raise JobFailure(Result.SERVER, str(exc)) from None
        return server.url, server.admin_token

    # --- the job ------------------------------------------------------------------------------------------

    def _job(self, server_url: str, token: Optional[str], admin: AdminClient, destination: Destination) -> Outcome:
        o = self.options
        instance = self._create_instance(admin)
        lease: Optional[Heartbeat] = None
        if o.server is not None and o.job is None and o.instance_lease:
            lease = instance_heartbeat(admin, instance["id"], o.instance_lease)
        try:
            return self._run_instance(server_url, token, admin, destination, instance)
        finally:
            if lease is not None:
                lease.stop()

    def _create_instance(self, admin: AdminClient) -> dict:
        o = self.options
        options: dict[str, object] = {"label": o.label, "app_command": o.app}
        for key, value in (("output_semantics", o.output_semantics), ("file_uris", o.file_uris),
                           ("output_protocols", o.output_protocols)):
            if value is not None:
                options[key] = value
        try:
            if o.job is not None:
                from hosting_service.admin.jobs_client import JobsClient

                assert isinstance(admin, JobsClient)
                return admin.create_job_instance(o.job.id, o.job.lease, options,
                                                 application_url=self.launcher.application_url)
            lease = round(o.instance_lease) if o.server is not None and o.instance_lease else None
            return admin.create_instance(application_url=self.launcher.application_url, options=options,
                                         lease_seconds=lease)
        except AdminError as exc:
            raise JobFailure(Result.SERVER, str(exc)) from None

    def _run_instance(self, server_url: str, token: Optional[str], admin: AdminClient, destination: Destination,
                      instance: dict) -> Outcome:
        o = self.options
        manifest = Manifest(
            started_at=self._started_at,
            app={"command": o.app, "args": o.app_args},
            server={"url": server_url, "embedded": o.server is None},
            instance={k: instance[k] for k in ("id", "hostURL", "applicationURL")},
        )
        if o.job is not None:
            manifest.job = {"id": o.job.id}
        manifest.milestone("instance")
        feed = EventFeed(admin, instance["id"], self.reporter, own_kinds=OWN_EVENT_KINDS)
        job = Job(o, self.reporter, admin, instance, manifest, feed, destination.folder, self.cancel_requested)
        self.reporter.emit("instance", manifest.instance)
        app_log = AppLog(self._admin_client(server_url, token), job.instance_id, self.reporter,
                         destination.folder / APP_LOG_NAME)
        app: Optional[Application] = None
        retrieval: Optional[Retrieval] = None
        try:
            app = self._launch(job, app_log)
            # zeep, spyne and the WSDL (0.35 s of CPU) load while the application starts; not before the launch,
            # which is every job's critical path and would wait for the GIL
            threading.Thread(target=importlib.import_module, args=("client",), name="load-client", daemon=True).start()
            tasks = self._offer_inputs(job)  # scanned while the application starts
            await_ready(app)
            retrieval = Retrieval(app)
            total = Received()
            for task in tasks:
                got = TaskRun(app, retrieval, task, last=task is tasks[-1], of=len(tasks)).run()
                total.received += got.received
                total.refused += got.refused
            outcome = Outcome(Result.COMPLETED, self._summary(total, destination))
        except JobFailure as failure:
            outcome = failure.outcome
        except KeyboardInterrupt:
            outcome = Outcome(Result.CANCELED, "interrupted twice: the application was aborted")
            admin.close()  # the interrupt may have left a request half-read on a pooled connection
            if app is not None:
                app.hard_abort("second interrupt")
        except Exception as exc:  # a defect of dicom-host itself: still bring the application down
            with contextlib.suppress(AdminError):  # the details go to the instance history, not the terminal
                admin.add_event(job.instance_id, "internal", {"traceback": traceback.format_exc()})
            outcome = Outcome(Result.INTERNAL, f"internal error in dicom-host ({type(exc).__name__}: {exc})")
        if outcome.result is Result.CANCELED and self.cancel_reason:
            outcome = Outcome(Result.CANCELED, self.cancel_reason)
        self._finish(job, app, app_log, outcome)
        for closable in (retrieval, app):
            if closable is not None:
                closable.close()
        if outcome.result is Result.COMPLETED:
            try:
                destination.complete()
            except DestinationError as exc:
                outcome.reason += f"; but {exc}"
                self.reporter.emit("host-warning", {"message": str(exc)})
        if app is not None:
            outcome.app_log = destination.folder / APP_LOG_NAME
        return outcome

    def _summary(self, total: Received, destination: Destination) -> str:
        in_job = self.options.job is not None  # a worker's folder is its own; the job's results are on the server
        text = f"{total.received} object{'s' if total.received != 1 else ''}" + ("" if in_job else
                                                                                 f" in {destination.final}")
        if total.refused:
            manifest = MANIFEST_NAME if in_job else destination.final / MANIFEST_NAME
            text += (f"; {total.refused} refused (outside the instance's output locations: see the warnings in "
                     f"{manifest})")
        return text

    def _launch(self, job: Job, app_log: AppLog) -> Application:
        try:
            with self._lock:
                if self._aborted is not None:
                    raise JobFailure(self._aborted.result, self._aborted.reason)
                process = self._process = self.launcher.launch(
                    job.instance["hostURL"], job.instance["applicationURL"], job.options.app_args, app_log.write)
        except LaunchError as exc:
            raise JobFailure(Result.USAGE, str(exc)) from None
        job.manifest.milestone("launched")
        job.manifest.app.update(argv=process.argv, pid=process.pid)
        job.record("run", {"argv": process.argv, "pid": process.pid})
        return Application(job, process)

    def _offer_inputs(self, job: Job) -> list[Task]:
        paths = self.options.inputs
        lease = self.options.job
        if lease is None:
            answer = job.server_call(lambda: job.admin.offer_inputs(job.instance_id,
                                                                    [str(p.resolve()) for p in paths]))
            given: dict[str, object] = {"paths": [str(p) for p in paths]}
        else:
            from hosting_service.admin.jobs_client import JobsClient

            admin = job.admin
            assert isinstance(admin, JobsClient)
            answer = job.server_call(lambda: admin.offer_job_inputs(job.instance_id, lease.id))
            given = {"job": lease.id}
        problems = answer["problems"]
        job.manifest.inputs = {**given, "count": answer["count"], "problems": problems}
        job.manifest.milestone("offered")
        self.reporter.emit("offered", {"count": answer["count"], "problems": len(problems)})
        for problem in problems[:SHOWN_INPUT_PROBLEMS]:
            self.reporter.emit("input-problem", problem)
        if len(problems) > SHOWN_INPUT_PROBLEMS:
            self.reporter.emit("input-problem", {"path": f"{len(problems) - SHOWN_INPUT_PROBLEMS} more inputs",
                                                 "reason": "listed in manifest.json"})
        if answer["count"] == 0:
            among = ", ".join(map(str, paths)) if lease is None else f"the inputs of job {lease.id}"
            raise JobFailure(Result.USAGE, f"no readable input among {among}"
                             + (f" ({problems[0]['path']}: {problems[0]['reason']})" if problems else ""))
        try:
            return split_tasks(answer["availableData"], self.options.task_per)
        except ValueError as exc:
            raise JobFailure(Result.USAGE, str(exc)) from None

    def _finish(self, job: Job, app: Optional[Application], app_log: AppLog, outcome: Outcome) -> None:
        """Bring the application down, end the instance and write the manifest, whatever happened."""
        if app is not None:
            try:
                wind_down(app)
            except KeyboardInterrupt:
                job.admin.close()
                app.hard_abort("second interrupt")
            app.process.drain_output(1.0)
            job.manifest.app["exit"] = app.process.describe_exit()
        if self._aborted is not None:  # killed from another thread, before or while it was brought down
            outcome.result, outcome.reason = self._aborted.result, self._aborted.reason
        app_log.close()
        app_log.admin.close()
        job.manifest.milestone("end")
        job.manifest.outcome = {"result": outcome.result.value, "reason": outcome.reason}
        with contextlib.suppress(AdminError):
            job.feed.poll(0)
        job.manifest.statuses = job.feed.view.statuses
        job.manifest.warnings = [*job.feed.view.warnings, *job.warnings]
        with contextlib.suppress(AdminError):
            job.admin.add_event(job.instance_id, "outcome", job.manifest.outcome)
        with contextlib.suppress(AdminError):  # its output locations expire, its data stays for inspection
            job.admin.end(job.instance_id, f"dicom-host run: {outcome.result.value}: {outcome.reason}")
        job.manifest.write(job.folder)
