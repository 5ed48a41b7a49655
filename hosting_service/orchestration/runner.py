"""``dicom-host run``: launch a hosted application and drive it through its tasks (PS3.19 §6, §7, Fig. 8.3-1).

The runner lives in its own process, apart from the SOAP workers. It calls the application with
:class:`client.ApplicationClient` and learns what the application did from the store's event stream
(:mod:`~hosting_service.orchestration.feed`), so it never calls the application from inside the handler of
one of the application's own requests.

It creates an instance, launches the application, has the server scan the inputs while the application
starts, and waits for the application's first IDLE (``startup_timeout``, from the launch). Then per task:

1. SetState(INPROGRESS), wait for INPROGRESS (the answer and the notification may come in either order);
2. NotifyDataAvailable with the task's inputs, in batches, the last with lastData=TRUE;
3. wait for COMPLETED (``task_timeout``), while the application fetches inputs from the server;
4. GetData on every output the application announced, read each at Offset/Length into the output folder,
   hand the URIs back to the server, ReleaseData, SetState(IDLE), wait for IDLE.

Then, and whenever anything goes wrong, :meth:`Runner._wind_down` walks the application to EXIT by the
only legal paths (INPROGRESS -> CANCELED -> IDLE, COMPLETED -> IDLE, IDLE -> EXIT), and hard-aborts it
(SIGTERM, then SIGKILL, to its process group) when it does not follow within the timeouts. Real
applications misbehave (INTEROP-NOTES): XIP ones go COMPLETED -> IDLE by themselves, some leave with
EXIT unasked, some cancel after a FATALERROR status; each is accepted and recorded.
"""
from __future__ import annotations

import contextlib
import importlib
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable, Optional, TypeVar
from urllib.parse import urlsplit

from hosting_service.admin.client import AdminClient, AdminError
from hosting_service.model import ObjectLocator, iter_descriptors
from hosting_service.orchestration.applog import AppLog
from hosting_service.orchestration.feed import EventFeed
from hosting_service.orchestration.manifest import Manifest, output_entry
from hosting_service.orchestration.naming import object_name, read_sop_instance_uid, unique_name
from hosting_service.orchestration.process import AppProcess, LaunchError, application_argv
from hosting_service.orchestration.progress import Reporter
from hosting_service.orchestration.retrieval import RetrievalError, retrieve
from hosting_service.orchestration.server import EmbeddedServer, ServerStartError
from hosting_service.orchestration.tasks import Task, batches, split_tasks
from hosting_service.states import State

T = TypeVar("T")
Since = Callable[[], Optional[int]]
"""The mark in the application's reported states from which a wait counts (``None``: not known yet)."""

WATCH_SECONDS = 0.25
"""Longest wait on the event stream before the process and the Ctrl-C flag are looked at again: a crash
is noticed within this time (plus one request), well inside a second."""
ENDING_SECONDS = 0.25
"""After a failed call, how long to wait for the application's end: a call fails first when it is dying,
and "it ended" is the better reason."""
OWN_EVENT_KINDS = ("run", "task", "retrieved", "log", "notice", "outcome")
"""Events the runner adds to the instance history itself (the feed does not report them twice)."""


class Result(str, Enum):
    """How a run ended; the CLI turns each into an exit code."""

    COMPLETED = "completed"
    CANCELED = "canceled"
    APP_FAILED = "app-failed"
    TIMEOUT = "timeout"
    SERVER = "server"
    USAGE = "usage"
    INTERNAL = "internal-error"


@dataclass
class Outcome:
    result: Result
    reason: str


class JobFailure(Exception):
    def __init__(self, result: Result, reason: str):
        super().__init__(reason)
        self.outcome = Outcome(result, reason)


class AppEnded(JobFailure):
    """The application's process ended while the runner still expected something of it."""

    def __init__(self, reason: str):
        super().__init__(Result.APP_FAILED, reason)


@dataclass
class RunOptions:
    app: str
    """The command that starts the application, split like a shell would (never run by one)."""
    inputs: list[Path]
    output: Path
    app_args: list[str] = field(default_factory=list)
    """Extra arguments for the application, after ``--hostURL U1 --applicationURL U2``."""
    server: Optional[str] = None
    """A running server's URL; ``None`` starts one for this run."""
    admin_token: Optional[str] = None
    data_dir: Optional[Path] = None
    """Data dir of the server this run starts (``None``: a temporary one, removed at the end)."""
    task_per: str = "all"
    batch_size: int = 1000
    """Most descriptors in one NotifyDataAvailable call."""
    startup_timeout: float = 30.0
    state_timeout: float = 15.0
    task_timeout: float = 3600.0
    call_timeout: float = 30.0
    exit_grace: float = 5.0
    output_semantics: Optional[str] = None
    """``directory`` or ``file`` for this application's output locations; ``None``: the server's default."""


class Runner:
    def __init__(self, options: RunOptions, reporter: Reporter):
        self.options = options
        self.reporter = reporter
        self.cancel_requested = threading.Event()
        """Set by the CLI on the first Ctrl-C (or SIGTERM): the job is canceled gracefully."""
        self.manifest: Optional[Manifest] = None
        self._admin: Optional[AdminClient] = None
        self._instance_id = ""
        self._feed: Optional[EventFeed] = None
        self._process: Optional[AppProcess] = None
        self._app = None
        self._http = None  # a requests session for http: outputs, made when the first one is read
        self._embedded_token: Optional[str] = None
        self._winding_down = False
        self._announcements_taken = 0
        self._requests = 0
        """SetState requests recorded so far: the next one's number (see ``InstanceView.request_marks``)."""
        self._started_at = time.time()

    # --- the whole run ------------------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Run the job; never raises for anything the application, the server or the user does."""
        try:
            self._check_usage()
            with contextlib.ExitStack() as stack:
                url = self.options.server or self._start_server(stack)
                self._admin = self._admin_client(url)
                stack.callback(self._close_connections)  # before an embedded server stops
                outcome = self._job(url)
        except JobFailure as failure:
            outcome = failure.outcome
        except KeyboardInterrupt:
            outcome = Outcome(Result.CANCELED, "interrupted before the application was launched")
        self.reporter.emit("outcome", {"result": outcome.result.value, "reason": outcome.reason})
        return outcome

    def _admin_client(self, url: str) -> AdminClient:
        try:
            return AdminClient(url, token=self.options.admin_token or self._embedded_token,
                               timeout=self.options.call_timeout)
        except ValueError as exc:
            raise JobFailure(Result.USAGE, str(exc)) from None

    def _close_connections(self) -> None:
        for closable in (self._admin, self._http, self._app):
            if closable is not None:
                closable.close()

    def _check_usage(self) -> None:
        o = self.options
        try:
            application_argv(o.app, "", "", [])
        except LaunchError as exc:
            raise JobFailure(Result.USAGE, str(exc)) from None
        missing = [str(p) for p in o.inputs if not p.exists()]
        if missing:
            raise JobFailure(Result.USAGE, f"input not found: {', '.join(missing)}")
        if o.output.exists() and (not o.output.is_dir() or any(o.output.iterdir())):
            raise JobFailure(Result.USAGE, f"--output {o.output} exists and is not an empty folder")
        o.output.mkdir(parents=True, exist_ok=True)

    def _start_server(self, stack: contextlib.ExitStack) -> str:
        self.reporter.emit("notice", {"message": "starting the Hosting System server"})
        server = EmbeddedServer(data_dir=self.options.data_dir, startup_timeout=self.options.startup_timeout)
        try:
            stack.enter_context(server)
        except (ServerStartError, OSError) as exc:
            raise JobFailure(Result.SERVER, str(exc)) from None
        self._embedded_token = server.admin_token
        return server.url

    def _job(self, server_url: str) -> Outcome:
        o = self.options
        options = {"label": "dicom-host run", "app_command": o.app}
        if o.output_semantics:
            options["output_semantics"] = o.output_semantics
        instance = self._server_call(lambda: self._admin.create_instance(options=options))
        self._instance_id = instance["id"]
        self.manifest = Manifest(
            started_at=self._started_at,
            app={"command": o.app, "args": o.app_args},
            server={"url": server_url, "embedded": o.server is None},
            instance={k: instance[k] for k in ("id", "hostURL", "applicationURL")},
        )
        self.manifest.milestone("instance")
        self._feed = EventFeed(self._admin, self._instance_id, self.reporter, own_kinds=OWN_EVENT_KINDS)
        self.reporter.emit("instance", self.manifest.instance)
        app_log = None
        try:
            app_log = AppLog(self._admin_client(server_url), self._instance_id, self.reporter, o.output / "app.log")
            self._launch(instance, app_log)
            # zeep, spyne and the WSDL (0.35 s of CPU) load while the application starts; not before the launch,
            # which is every job's critical path and would wait for the GIL
            threading.Thread(target=importlib.import_module, args=("client",), name="load-client", daemon=True).start()
            tasks = self._offer_inputs()  # scanned while the application starts
            self._connect(instance["applicationURL"])
            self._await({State.IDLE}, self._from_now(), o.startup_timeout, "the application's first IDLE (startup)",
                        counting_from=self._process.started_at)
            self.manifest.milestone("idle")
            for task in tasks:
                self._task(task, last=task is tasks[-1], of=len(tasks))
            outcome = Outcome(Result.COMPLETED, self._completion_summary())
        except JobFailure as failure:
            outcome = failure.outcome
        except KeyboardInterrupt:
            outcome = Outcome(Result.CANCELED, "interrupted twice: the application was aborted")
            self._hard_abort_on_interrupt()
        except Exception as exc:  # a defect of dicom-host itself: still bring the application down
            with contextlib.suppress(AdminError):  # the details go to the instance history, not the terminal
                self._admin.add_event(self._instance_id, "internal", {"traceback": traceback.format_exc()})
            outcome = Outcome(Result.INTERNAL, f"internal error in dicom-host ({type(exc).__name__}: {exc})")
        self._finish(outcome, app_log)
        return outcome

    def _completion_summary(self) -> str:
        count = len(self.manifest.outputs)
        return f"{count} object{'s' if count != 1 else ''} in {self.options.output}"

    def _finish(self, outcome: Outcome, app_log: Optional[AppLog]) -> None:
        """Bring the application down, end the instance and write the manifest, whatever happened."""
        try:
            self._wind_down()
        except KeyboardInterrupt:
            self._hard_abort_on_interrupt()
        if self._process is not None:
            self._process.drain_output(1.0)
            self.manifest.app["exit"] = self._process.describe_exit()
        if app_log is not None:
            app_log.close()
            app_log.admin.close()
        self.manifest.milestone("end")
        self.manifest.outcome = {"result": outcome.result.value, "reason": outcome.reason}
        with contextlib.suppress(AdminError):
            self._feed.poll(0)
        self.manifest.statuses = self._feed.view.statuses
        self.manifest.warnings = self._feed.view.warnings
        with contextlib.suppress(AdminError):
            self._admin.add_event(self._instance_id, "outcome", self.manifest.outcome)
        with contextlib.suppress(AdminError):  # its output locations expire, its data stays for inspection
            self._admin.end(self._instance_id, f"dicom-host run: {outcome.result.value}: {outcome.reason}")
        self.manifest.write(self.options.output)

    # --- steps --------------------------------------------------------------------------------------------

    def _offer_inputs(self) -> list[Task]:
        answer = self._server_call(lambda: self._admin.offer_inputs(
            self._instance_id, [str(p.resolve()) for p in self.options.inputs]))
        problems = answer["problems"]
        self.manifest.inputs = {"paths": [str(p) for p in self.options.inputs], "count": answer["count"],
                                "problems": problems}
        self.manifest.milestone("offered")
        self.reporter.emit("offered", {"count": answer["count"], "problems": len(problems)})
        if answer["count"] == 0:
            raise JobFailure(Result.USAGE, f"no readable input among {', '.join(map(str, self.options.inputs))}"
                             + (f" ({problems[0]['path']}: {problems[0]['reason']})" if problems else ""))
        try:
            return split_tasks(answer["availableData"], self.options.task_per)
        except ValueError as exc:
            raise JobFailure(Result.USAGE, str(exc)) from None

    def _launch(self, instance: dict, app_log: AppLog) -> None:
        o = self.options
        argv = application_argv(o.app, instance["hostURL"], instance["applicationURL"], o.app_args)
        try:
            self._process = AppProcess(argv, app_log.write)
        except LaunchError as exc:
            raise JobFailure(Result.USAGE, str(exc)) from None
        self.manifest.milestone("launched")
        self.manifest.app.update(argv=argv, pid=self._process.pid)
        self._record("run", {"argv": argv, "pid": self._process.pid})

    def _connect(self, application_url: str) -> None:
        from client import ApplicationClient  # loading since the run started: zeep, spyne, the WSDL (0.35 s)

        self._app = ApplicationClient(application_url, timeout=self.options.call_timeout)

    def _task(self, task: Task, *, last: bool, of: int) -> None:
        o = self.options
        started = time.monotonic()
        timings: dict[str, float] = {}
        record = {"number": task.number, "label": task.label, "inputs": task.object_count, "outputs": 0,
                  "timings": timings}
        self.manifest.tasks.append(record)

        def milestone(name: str) -> None:
            timings[name] = round(time.monotonic() - started, 4)

        self._record("task", {"number": task.number, "of": of, "label": task.label, "inputs": task.object_count})
        _, since = self._transition(State.INPROGRESS, {State.INPROGRESS})  # what follows INPROGRESS counts
        milestone("inprogress")
        pieces = batches(task.data, o.batch_size)
        for number, piece in enumerate(pieces, 1):
            if not self._app_call(lambda: self._app.notify_data_available(piece, number == len(pieces))):
                self._raise_if_canceled(task, since)
                raise JobFailure(Result.APP_FAILED, "the application refused the inputs (NotifyDataAvailable "
                                 f"answered FALSE for batch {number} of {len(pieces)})")
        milestone("inputsAnnounced")

        reached = self._await({State.COMPLETED, State.CANCELED, State.IDLE, State.EXIT}, since, o.task_timeout,
                              "COMPLETED (the end of the task)")
        if reached is not State.COMPLETED:
            self._raise_if_canceled(task, since)
            raise JobFailure(Result.APP_FAILED, f"the application went from INPROGRESS to {reached} "
                             "without completing the task")
        milestone("completed")
        record["outputs"] = self._collect(task)
        milestone("outputsReceived")
        try:
            reached, _ = self._transition(State.IDLE, {State.IDLE, State.EXIT})
        except AppEnded:
            if not last:
                raise
            reached = State.EXIT
        if reached is State.EXIT:  # left unasked after its last task: accepted (INTEROP-NOTES 7)
            if not last:
                raise JobFailure(Result.APP_FAILED, f"the application left after task {task.number} of {of}")
            self._notice(f"the application left without being asked ({self._process.describe_exit()}); "
                         "its outputs were already received")
        milestone("idle")

    def _raise_if_canceled(self, task: Task, since: Since) -> None:
        """After a FATALERROR status the application cancels the task itself (PS3.19 §7.2): its failure."""
        self._server_call(lambda: self._feed.poll(0))
        if self._feed.view.reached({State.CANCELED}, since()) is None:
            return
        fatal = self._feed.view.last_fatal_error()
        why = (f"FATALERROR {fatal.get('CodeValue')} {fatal.get('CodeMeaning') or ''}".rstrip() if fatal
               else "no FATALERROR status was reported")
        raise JobFailure(Result.APP_FAILED, f"the application canceled task {task.number}: {why}")

    def _collect(self, task: Task) -> int:
        """Receive every output the application announced during this task (PS3.19 §7.3); the count."""
        announcements, last_data = self._server_call(lambda: self._admin.announced_outputs(self._instance_id))
        new, self._announcements_taken = announcements[self._announcements_taken :], len(announcements)
        entries = [e for data in new for e in iter_descriptors(data)]
        if new and not last_data:
            self._notice("the application completed without announcing lastData=TRUE (PS3.19 §8.3.1)")
        if not entries:
            return 0
        from client.data_exchange import DEFAULT_TRANSFER_SYNTAXES

        # each object as it was written first, else what every data source must be able to provide (§8.3.2)
        syntaxes = list(dict.fromkeys([*(d.TransferSyntaxUID for d, *_ in entries if d.TransferSyntaxUID),
                                       *DEFAULT_TRANSFER_SYNTAXES]))
        uuids = [d.DescriptorUuid for d, *_ in entries]
        locators = self._app_call(lambda: self._app.get_data(uuids, syntaxes, include_bulk_data=True))
        by_source = {(l.Source or "").lower(): l for l in locators}
        # Returning the URIs hands them back (PS3.19 §8.2.3): their locations close before anything is read,
        # so what is read is what the host keeps, and the server says where those bytes are now.
        try:
            moved = self._admin.hand_back(self._instance_id, [l.URI for l in locators if l.URI]).get("paths", {})
        except AdminError as exc:
            raise JobFailure(Result.SERVER, f"the server did not take the output locations back: {exc}") from None
        for entry in entries:
            locator = by_source.get(entry[0].DescriptorUuid.lower())
            if locator is None:
                continue
            if not locator.URI:
                raise JobFailure(Result.APP_FAILED, f"GetData gave no URI for {entry[0].DescriptorUuid}")
            path = moved.get(locator.URI)
            if path is None:
                self._notice(f"output read from outside this instance's output locations: {locator.URI}")
            try:
                self._store_output(task, entry, locator, Path(path).as_uri() if path else locator.URI)
            except RetrievalError as exc:
                raise JobFailure(Result.APP_FAILED, f"cannot read the application's output: {exc}") from None
        locator_ids = [l.Locator for l in locators if l.Locator]
        if locator_ids:
            with contextlib.suppress(AppEnded):  # it has left: nothing to release; what follows judges it
                self._app_call(lambda: self._app.release_data(locator_ids))
        missing = [u for u in uuids if u.lower() not in by_source]
        if missing:
            raise JobFailure(Result.APP_FAILED, f"the application's GetData answer has no locator for "
                             f"{len(missing)} of the {len(uuids)} objects it announced")
        return len(entries)

    def _store_output(self, task: Task, entry, locator: ObjectLocator, uri: str) -> None:
        """Read one output from ``uri`` at the locator's Offset/Length into the output folder, named after
        its SOP Instance UID when it is DICOM; raises :class:`RetrievalError`."""
        descriptor, patient, study, series = entry
        download = self.options.output / f".download-{uuid.uuid4().hex}"
        if self._http is None:
            self._http = _loopback_session(uri)
        got = retrieve(uri, locator.Offset, locator.Length, download, session=self._http,
                       timeout=self.options.call_timeout)
        sop_instance_uid = read_sop_instance_uid(download) if descriptor.MimeType == "application/dicom" else None
        name = unique_name(self.options.output, object_name(descriptor.DescriptorUuid, descriptor.MimeType,
                                                             sop_instance_uid))
        download.rename(self.options.output / name)
        self.manifest.outputs.append(output_entry(task.number, descriptor, patient, study, series, locator, name,
                                                  got.size, got.sha256, sop_instance_uid))
        self._record("retrieved", {"file": name, "size": got.size, "sha256": got.sha256})

    # --- winding down -------------------------------------------------------------------------------------

    def _wind_down(self) -> None:
        """Walk the application to EXIT by the legal paths of PS3.19 Table 7.2-2, give it ``exit_grace``
        seconds to end once it was asked to, and hard-abort it when it does not follow."""
        if self._process is None:
            return
        self._winding_down = True
        asked_to_exit = False
        steps = {
            State.IDLE: (State.EXIT, {State.EXIT}),
            State.INPROGRESS: (State.CANCELED, {State.CANCELED, State.IDLE}),
            State.SUSPENDED: (State.CANCELED, {State.CANCELED, State.IDLE}),
            State.COMPLETED: (State.IDLE, {State.IDLE}),
            State.CANCELED: (None, {State.IDLE}),  # the application returns to IDLE by itself
        }
        try:
            for _ in range(len(steps)):
                self._server_call(lambda: self._feed.poll(0))
                state = self._feed.view.state
                if self._process.poll() is not None or state not in steps:  # ended, EXIT, or never IDLE
                    break
                request, targets = steps[state]
                if request is not None and self._app is None:  # failed between the launch and connecting
                    self._connect(self.manifest.instance["applicationURL"])
                if request is None:
                    self._await(targets, self._from_now(), self.options.state_timeout, f"IDLE after {state}")
                else:
                    asked_to_exit = request is State.EXIT
                    self._transition(request, targets)
        except AppEnded:
            pass
        except JobFailure as failure:
            self._notice(f"while stopping the application: {failure.outcome.reason}")
        leaving = asked_to_exit or self._feed.view.state is State.EXIT
        if self._process.wait(self.options.exit_grace if leaving else 0) is None:
            self._hard_abort("it did not end by itself" if leaving else "it did not come to IDLE")
        else:
            self._process.abort()  # ends whatever it left behind in its process group
        self.manifest.milestone("exit")

    def _hard_abort_on_interrupt(self) -> None:
        self._admin.close()  # the interrupt may have left a request half-read on a pooled connection
        self._hard_abort("second interrupt")

    def _hard_abort(self, why: str) -> None:
        if self._process is None:
            return
        how = self._process.abort()
        self._notice(f"hard abort ({why}): the application was {how}")

    # --- talking to the application and the server --------------------------------------------------------

    def _transition(self, state: State, targets: set[State]) -> tuple[State, Since]:
        """SetState(``state``) and wait until the application reports one of ``targets``. Returns the state
        reached and the reports that follow it. The time from the request to the notification seen goes
        into the manifest (``timings.stateRoundTrips``)."""
        started = time.perf_counter()
        request = self._requests
        self._server_call(lambda: self._admin.record_requested_state(self._instance_id, state))
        self._requests += 1
        since = self._after_request(request)
        accepted = self._app_call(lambda: self._app.set_state(state))
        if not accepted:
            self._server_call(lambda: self._feed.poll(0))
            if self._feed.view.reached(targets, since()) is None:
                if self._feed.view.state is State.EXIT:
                    raise AppEnded(f"the application left (EXIT) by itself, before SetState({state})")
                raise JobFailure(Result.APP_FAILED, f"the application refused SetState({state}) "
                                 f"while {self._feed.view.state or 'starting'}")
        reached = self._await(targets, since, self.options.state_timeout, f"{state} after SetState({state})")
        self.manifest.timings.setdefault("stateRoundTrips", []).append(
            {"state": state.value, "ms": round((time.perf_counter() - started) * 1000, 2)})
        return reached, self._fixed(self._feed.view.mark_after(targets, since()))

    def _after_request(self, request: int) -> Since:
        """States reported after the host's ``request``-th SetState was recorded."""
        return lambda: self._feed.view.request_mark(request)

    def _from_now(self) -> Since:
        """States reported from now on (for waits that follow no request)."""
        return self._fixed(self._feed.view.mark())

    @staticmethod
    def _fixed(mark: Optional[int]) -> Since:
        return lambda: mark

    def _await(self, targets: set[State], since: Since, timeout: float, waiting_for: str, *,
               counting_from: Optional[float] = None) -> State:
        """Wait until the application reports one of ``targets`` (after ``since``, or is in one now), for
        ``timeout`` seconds from ``counting_from`` (a ``time.monotonic()`` value; default now)."""
        deadline = (time.monotonic() if counting_from is None else counting_from) + timeout
        feed = self._feed
        while True:
            reached = feed.view.reached(targets, since())
            if reached is not None:
                return reached
            if self._process.poll() is not None:
                self._server_call(lambda: feed.poll(0))  # a last notification may have come just before the end
                reached = feed.view.reached(targets, since())
                if reached is not None:
                    return reached
                raise AppEnded(f"the application ended ({self._process.describe_exit()}) "
                               f"while the host waited for {waiting_for}")
            if feed.view.ended:
                raise JobFailure(Result.SERVER, f"the instance was ended on the server: {feed.view.ended}")
            self._check_cancel()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise JobFailure(Result.TIMEOUT, f"{waiting_for} did not come within {timeout:g} s "
                                 f"(the application is {feed.view.state or 'not yet IDLE'})")
            self._server_call(lambda: feed.poll(min(remaining, WATCH_SECONDS)))

    def _check_cancel(self) -> None:
        if not self.cancel_requested.is_set() or self._winding_down:
            return
        self._notice("canceling: the application is asked to stop (interrupt again to abort it at once)")
        raise JobFailure(Result.CANCELED, "canceled by the user")

    def _app_call(self, call: Callable[[], T]) -> T:
        from client import ApplicationCallError

        try:
            return call()
        except ApplicationCallError as exc:
            if self._process.wait(ENDING_SECONDS) is not None:
                raise AppEnded(f"the application ended ({self._process.describe_exit()}) "
                               f"during {exc.operation}") from None
            import requests  # loaded with zeep by now

            timed_out = isinstance(exc.__cause__, requests.Timeout)
            raise JobFailure(Result.TIMEOUT if timed_out else Result.APP_FAILED, str(exc)) from None

    def _server_call(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except AdminError as exc:
            raise JobFailure(Result.SERVER, str(exc)) from None

    def _record(self, kind: str, data: dict) -> None:
        """An event of the orchestration: shown now and kept in the instance history."""
        self.reporter.emit(kind, data)
        self._server_call(lambda: self._admin.add_event(self._instance_id, kind, data))

    def _notice(self, message: str) -> None:
        self.reporter.emit("notice", {"message": message})
        with contextlib.suppress(AdminError):
            self._admin.add_event(self._instance_id, "notice", {"message": message})


def _loopback_session(url: str):
    """A requests session for reading http: outputs. Loopback peers are never reached through a proxy; not
    consulting the environment for one saves about 0.7 ms per request (requests scans every variable)."""
    import requests

    session = requests.Session()
    if urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1"):
        session.trust_env = False
    return session
