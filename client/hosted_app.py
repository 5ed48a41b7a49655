"""HostedApplication: a Python hosted application is a function from inputs to outputs.

A subclass implements :meth:`HostedApplication.process` (``inputs -> outputs``) and runs with
``sys.exit(MyApp.main())``; the base class does the rest of PS3.19:

* **Launch** (§7.1): ``--hostURL U1 --applicationURL U2`` (flags in any case, ``=`` form too), then the
  kit's options and the subclass's own (:meth:`add_arguments`).
* **Endpoint**: ApplicationService (the wire layer's :class:`SoapEndpoint`, so requests are read as
  tolerantly and answered as strictly as the Host's) at the applicationURL's host, port and path, with
  ``?wsdl`` and the imported XSDs beside it, on a threaded server so the application answers while it
  is itself calling the host.
* **State machine** (§7.2, Table 7.2-2 from :mod:`hosting_service.states`): changes run on one
  state-machine thread, so ``SetState`` returns at once and leaves its change *pending* for that thread.
  The latest request wins (§8.1.2): a request is judged from the current state, abandoning any pending
  change; it answers TRUE for the current state (ignored; a pending change is dropped), FALSE for a
  change the table does not let the host request (a pending change stays), and TRUE otherwise (it
  becomes the pending change). Once the thread has begun a change it can no longer be abandoned, and
  requests are judged from that change's target. A pending change that the application's own move
  (COMPLETED, a failure) made illegal by the time it runs is dropped.
  Every transition is notified with NotifyStateChanged; the first is IDLE, once the endpoint is up.
* **A task** (§6.3, Fig. 8.3-1): at INPROGRESS the application waits for the host's NotifyDataAvailable
  calls up to ``lastData`` TRUE, fetches every announced object with GetData (transfer syntaxes in the
  configured order), reads each locator's bytes and releases them, calls :meth:`process`, writes the
  outputs to an output location from GetOutputLocation (protocols in the configured order), announces
  them with NotifyDataAvailable(lastData=TRUE) and goes COMPLETED; it then serves the host's GetData for
  them (locators pointing at the URIs they were written to, Offset 0) until the host sets IDLE, which
  forgets the task. SUSPENDED holds the task before its next call to the host; CANCELED (requested, or
  after ``process`` raised, which is reported first as a FATALERROR status) stops it, and the
  application returns to IDLE once the task's thread has stopped or ``--cancel-grace`` has passed.
  EXIT (from IDLE) notifies, stops the endpoint and ends the process with status 0.
* **Models** (:mod:`client.models`): the application offers its DICOM outputs as Native DICOM Models
  (GetAsModels, QueryModel, QueryInfoSet, ReleaseModels, GetData on their bulk-data UUIDs); other
  outputs go to ``FailedSourceObjects``. An application that reads its inputs only through models sets
  ``fetch_inputs = False`` and calls :func:`client.models.input_models` in ``process``.
* **Headless**: BringToFront always answers TRUE, as §8.1.3 requires of applications without a GUI.

The operation methods (``GetState``, ``SetState``...) follow the Operations contract of
docs/ARCHITECTURE.md: wire names, wire argument names, model values; a
:class:`~hosting_service.errors.ClientError` becomes a SOAP Client fault.
"""
from __future__ import annotations

import argparse
import functools
import logging
import queue
import sys
import threading
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Callable, ClassVar, Optional, Sequence

from client.data_exchange import DEFAULT_TRANSFER_SYNTAXES, read_located
from client.host_client import HostCallError, HostClient
from client.models import OutputModels
from client.server import ThreadedWSGIServer
from client.task import TaskCanceled, TaskContext, TaskInput, TaskOutput, announcement
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
    StatusType,
    iter_descriptors,
)
from hosting_service.states import State, host_may_request
from hosting_service.wire.endpoint import ENDPOINT_URL_KEY, SoapEndpoint
from hosting_service.wire.faults import CLIENT, fault_response
from hosting_service.wire.services import OPERATIONS_KEY, ApplicationService

log = logging.getLogger("dicom_host.hosted_app")

LAUNCH_FLAGS = ("--hostURL", "--applicationURL")
"""PS3.19 §7.1; XIP applications compare them ignoring case, so does this kit."""


def normalize_launch_flags(argv: Sequence[str]) -> list[str]:
    """``argv`` with the launch flags spelled canonically (``--HOSTURL x``, ``--hosturl=x`` ...)."""
    canonical = {flag.lower(): flag for flag in LAUNCH_FLAGS}
    result = []
    for arg in argv:
        flag, sep, value = arg.partition("=")
        result.append(canonical.get(flag.lower(), flag) + sep + value)
    return result


def _comma_list(text: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if not items:
        raise argparse.ArgumentTypeError("give at least one value")
    return items


def _http_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an absolute http: URL")
    return text


@dataclass
class _Delivered:
    """An output written to an output location and announced to the host."""

    output: TaskOutput
    uri: str
    length: int


class _Task:
    """One task, from INPROGRESS back to IDLE: the host's announcements, the thread running the task and
    the outputs it delivered."""

    def __init__(self, context: TaskContext):
        self.context = context
        self.condition = threading.Condition()
        """Guards ``last_data`` and ``suspended`` and wakes the task thread when they or cancellation change."""
        self.last_data = False
        self.suspended = False
        self.finished = False
        """Outputs announced; the task goes COMPLETED as soon as it is INPROGRESS."""
        self.outputs: dict[str, _Delivered] = {}
        self.models = OutputModels()
        """The outputs as models, for the host (released with the task, at IDLE)."""
        self.thread: Optional[threading.Thread] = None

    def cancel(self) -> None:
        with self.condition:
            self.context.canceled_event.set()
            self.condition.notify_all()


class _ApplicationEndpoint:
    """WSGI: the ApplicationService at the applicationURL's path (POST SOAP, GET ``?wsdl``) and the XSDs
    the WSDL imports by relative location at sibling paths."""

    def __init__(self, operations: "HostedApplication", url: str):
        self.operations = operations
        self.url = url
        self.path = urllib.parse.urlsplit(url).path or "/"
        self.directory = self.path.rsplit("/", 1)[0] + "/"
        self.endpoint = SoapEndpoint(ApplicationService, Settings())

    def __call__(self, environ: dict, start_response):
        path = environ.get("PATH_INFO") or "/"
        if path == self.path:
            environ[OPERATIONS_KEY] = self.operations
            environ[ENDPOINT_URL_KEY] = self.url
            return self.endpoint(environ, start_response)
        schema = None
        if path.startswith(self.directory) and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            schema = self.endpoint.documents.schema(path[len(self.directory):])
        if schema is not None:
            start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(schema)))])
            return [schema]
        message = f"no ApplicationService at {path}; it is at {self.path}"
        if environ.get("REQUEST_METHOD") == "POST":
            return fault_response(start_response, CLIENT, message)
        body = message.encode()
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]


class HostedApplication:
    """Base class of Python hosted applications; see the module docstring. Subclasses override
    :meth:`process` and may set the class attributes and override :meth:`add_arguments`."""

    name: ClassVar[str] = "hosted-app"
    """Program name in usage messages and logs."""
    description: ClassVar[str] = "A PS3.19 hosted application."
    output_protocols: ClassVar[tuple[str, ...]] = ("file:", "http:")
    """Default preference for GetOutputLocation (``--output-protocols``)."""
    transfer_syntaxes: ClassVar[tuple[str, ...]] = DEFAULT_TRANSFER_SYNTAXES
    """Default acceptable transfer syntaxes for GetData, in order of preference (``--transfer-syntaxes``)."""
    cancel_grace: ClassVar[float] = 5.0
    """Default seconds to wait for a canceled ``process`` to return before going IDLE (``--cancel-grace``)."""
    call_timeout: ClassVar[float] = 30.0
    """Seconds each call to the host may take."""
    fetch_inputs: ClassVar[bool] = True
    """False: ``process`` gets no inputs fetched with GetData; it reads them through models
    (:func:`client.models.input_models`) or ``context.available_data`` itself."""

    # --- what a subclass provides ---------------------------------------------------------------------

    def process(self, inputs: list[TaskInput], context: TaskContext) -> list[TaskOutput]:
        """Turn the task's inputs into its outputs. Raising fails the task: the host gets a FATALERROR
        status with the exception's message, then CANCELED and IDLE. A long computation should call
        ``context.raise_if_canceled()`` now and then."""
        raise NotImplementedError(f"{type(self).__name__} must implement process(inputs, context)")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add the application's own command-line options (they follow the launch flags)."""

    def entered(self, state: State) -> None:
        """Called after each transition has been notified to the host (on the state-machine thread, or
        on the main thread for the first IDLE)."""

    def connect_host(self) -> HostClient:
        """The client for the host's calls, made once at start."""
        return HostClient(self.options.hostURL, timeout=self.call_timeout)

    # --- launch ---------------------------------------------------------------------------------------

    @classmethod
    def argument_parser(cls) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=cls.name, description=cls.description)
        parser.add_argument("--hostURL", required=True, type=_http_url, help="the Host's HostService endpoint")
        parser.add_argument(
            "--applicationURL", required=True, type=_http_url, help="where to serve ApplicationService"
        )
        parser.add_argument(
            "--output-protocols", type=_comma_list, default=cls.output_protocols, metavar="P1,P2",
            help=f"GetOutputLocation preference (default {','.join(cls.output_protocols)})",
        )
        parser.add_argument(
            "--transfer-syntaxes", type=_comma_list, default=cls.transfer_syntaxes, metavar="UID1,UID2",
            help="acceptable transfer syntaxes for inputs, preferred first (default Explicit then Implicit VR LE)",
        )
        parser.add_argument(
            "--cancel-grace", type=float, default=cls.cancel_grace, metavar="SECONDS",
            help=f"wait this long for a canceled task to stop before going IDLE (default {cls.cancel_grace:g})",
        )
        cls.add_arguments(parser)
        return parser

    @classmethod
    def main(cls, argv: Optional[Sequence[str]] = None) -> int:
        """Parse the command line, serve, and return the exit status (0 after EXIT)."""
        parser = cls.argument_parser()
        options = parser.parse_args(normalize_launch_flags(sys.argv[1:] if argv is None else argv))
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=f"%(asctime)s {cls.name} %(levelname)s %(message)s")
        logging.getLogger("spyne").setLevel(logging.WARNING)
        try:
            app = cls(options)
        except OSError as exc:
            print(f"{cls.name}: cannot serve {options.applicationURL}: {exc}", file=sys.stderr)
            return 1
        return app.run()

    def __init__(self, options: argparse.Namespace):
        """Bind the endpoint (``OSError`` if the address is unusable); :meth:`run` starts serving."""
        self.options = options
        self.host = self.connect_host()
        self._lock = threading.Lock()
        self._state = State.IDLE
        self._pending: Optional[State] = None
        """The latest SetState target the state-machine thread has not begun (a later request may abandon it)."""
        self._changing: Optional[State] = None
        """The target of the requested change the state-machine thread has begun but not entered yet."""
        self._task: Optional[_Task] = None
        self._commands: "queue.Queue[Callable[[], None]]" = queue.Queue()
        self._exited = threading.Event()
        parts = urllib.parse.urlsplit(options.applicationURL)
        self._server = ThreadedWSGIServer(parts.hostname, parts.port or 80, self.endpoint_app())

    def endpoint_app(self):
        """The WSGI application served at applicationURL's host and port."""
        return _ApplicationEndpoint(self, self.options.applicationURL)

    def run(self) -> int:
        """Serve, announce IDLE, carry out state changes until EXIT. Returns the exit status."""
        self._server.start()
        try:
            self.host.notify_state_changed(State.IDLE)
        except HostCallError as exc:
            log.error("cannot tell the host that the application is ready: %s", exc)
            self._server.stop()
            return 1
        log.info("ready at %s (IDLE notified)", self.options.applicationURL)
        threading.Thread(target=self._work, name="state-machine", daemon=True).start()
        self.entered(State.IDLE)
        try:
            self._exited.wait()
        except KeyboardInterrupt:
            log.warning("interrupted")
            return 130
        finally:
            self._server.stop()
        return 0

    # --- ApplicationService: Application interface (PS3.19 §8.1) -------------------------------------

    def GetState(self) -> State:
        return self._state

    def SetState(self, state: Optional[State] = None) -> bool:
        """§8.1.2, the latest request wins: judged from the current state (or the change begun), as if the
        pending change were abandoned, which it is unless the answer is FALSE. See the module docstring."""
        if state is None:
            raise ClientError("SetState: no state given")
        with self._lock:
            current = self._state if self._changing is None else self._changing
            if state != current and state not in host_may_request(current):
                log.info("SetState(%s) refused: Table 7.2-2 has no host-requested %s -> %s", state, current, state)
                return False
            abandoned, self._pending = self._pending, (None if state == current else state)
        if abandoned not in (None, state):
            log.info("SetState(%s): the pending %s is abandoned (§8.1.2: the latest request wins)", state, abandoned)
        if state != current:  # else ignored (§8.1.2: a request for the current state is answered TRUE)
            self._commands.put(self._carry_out)
        return True

    def BringToFront(self, location: Optional[Rectangle] = None) -> bool:
        return True

    # --- ApplicationService: DataExchange, application as recipient (§8.3.1) --------------------------

    def NotifyDataAvailable(self, data: Optional[AvailableData] = None, lastData: bool = False) -> bool:
        with self._lock:
            state, task = self._state, self._task
        if state != State.INPROGRESS or task is None:
            log.warning("NotifyDataAvailable refused: the application is %s (§8.3.1: only at INPROGRESS)", state)
            return False
        with task.condition:
            if task.last_data:
                log.warning("NotifyDataAvailable refused: lastData was TRUE already in this task (§8.3.1)")
                return False
            task.context.available_data.append(data or AvailableData())
            task.last_data = bool(lastData)
            task.condition.notify_all()
        return True

    # --- ApplicationService: DataExchange, application as source (§8.3.2, §8.3.6) --------------------

    def GetData(self, objects: Optional[list[str]] = None, acceptableTransferSyntaxes: Optional[list[str]] = None,
                includeBulkData: bool = True) -> list[ObjectLocator]:
        """Locators for announced outputs, in the order asked. The outputs are offered in the transfer
        syntax they were written in (the application does not transcode), which the locator states."""
        task = self._task
        if task is None or not task.outputs:
            raise ClientError(f"GetData: this application has announced no outputs (it is {self._state})")
        requested = [u.strip() for u in objects or [] if u and u.strip()]
        bulk = task.models.bulk_locators(requested)  # BulkData/@uuid of the outputs' models (§8.3.2)
        unknown = [u for u in requested if u.lower() not in task.outputs and u.lower() not in bulk]
        if unknown:
            raise ClientError(f"GetData: not announced by this application: {', '.join(unknown[:5])}")
        locators = []
        for requested_uuid in requested:
            delivered = task.outputs.get(requested_uuid.lower())
            locators.append(bulk[requested_uuid.lower()] if delivered is None else ObjectLocator(
                Length=delivered.length,
                Offset=0,
                TransferSyntax=delivered.output.transfer_syntax_uid,
                URI=delivered.uri,
                Locator=str(uuid.uuid4()),
                Source=requested_uuid,
            ))
        return locators

    def ReleaseData(self, objects: Optional[list[str]] = None) -> None:
        """Nothing to free: the outputs are at the host's output locations, and the host owns them once
        their URIs are handed back (§8.2.3)."""

    # --- ApplicationService: models (§8.3.3-§8.3.5, §8.3.7): the outputs as Native DICOM Models -----

    def _outputs_task(self, operation: str) -> _Task:
        task = self._task
        if task is None or not task.outputs:
            raise ClientError(f"{operation}: this application has announced no outputs (it is {self._state})")
        return task

    def GetAsModels(self, objects: Optional[list[str]] = None, classUID: Optional[str] = None,
                    supportedInfoSetTypes: Optional[list[str]] = None) -> ModelSetDescriptor:
        task = self._outputs_task("GetAsModels")
        return task.models.get_as_models(task.outputs, [u.strip() for u in objects or [] if u and u.strip()],
                                         (classUID or "").strip(), supportedInfoSetTypes)

    def ReleaseModels(self, models: Optional[list[str]] = None) -> None:
        task = self._task
        if task is not None:
            task.models.release(models or [])

    def QueryModel(self, models: Optional[list[str]] = None, xPaths: Optional[list[str]] = None) -> list[QueryResult]:
        return self._outputs_task("QueryModel").models.query_model(list(models or []), list(xPaths or []))

    def QueryInfoSet(self, models: Optional[list[str]] = None,
                     xPaths: Optional[list[str]] = None) -> list[QueryResultInfoSet]:
        return self._outputs_task("QueryInfoSet").models.query_info_set(list(models or []), list(xPaths or []))

    # --- the state machine (the state-machine thread) -----------------------------------------------

    def _work(self) -> None:
        while True:
            command = self._commands.get()
            try:
                command()
            except Exception:
                log.exception("state machine: %s failed", getattr(command, "func", command).__name__)

    def enter(self, state: State) -> None:
        """Take ``state`` and notify the host; EXIT also ends :meth:`run`. The kit calls this for every
        transition; a subclass may call it (from :meth:`entered`) to move by itself."""
        with self._lock:
            previous, self._state, self._changing = self._state, state, None
        log.info("%s -> %s", previous, state)
        try:
            self.host.notify_state_changed(state)
        except HostCallError as exc:
            log.error("could not notify %s: %s", state, exc)
        if state == State.EXIT:
            self._exited.set()
        self.entered(state)

    def _carry_out(self) -> None:
        """Begin the pending change, if any: SetState queues this once per accepted change, and a later
        request may have replaced the change (then the first call carries out the latest) or abandoned it."""
        with self._lock:
            target, self._pending = self._pending, None
            current = self._state
            if target is None:
                return
            if target not in host_may_request(current):
                log.info("SetState(%s) dropped: the application has moved to %s by itself since", target, current)
                return
            self._changing = target  # no longer abandonable; enter() clears it
        try:
            self._change(current, target)
        finally:
            with self._lock:
                self._changing = None  # in case the change failed before entering its state

    def _change(self, current: State, target: State) -> None:
        if target == State.INPROGRESS:
            self._start() if current == State.IDLE else self._resume()
        elif target == State.SUSPENDED:
            with self._task.condition:
                self._task.suspended = True
            self.enter(State.SUSPENDED)
        elif target == State.CANCELED:
            task = self._task
            task.cancel()
            self.enter(State.CANCELED)
            self._back_to_idle(task)
        elif target == State.IDLE:  # from COMPLETED: the host has the outputs; forget the task (§6.3 step 7)
            self._task = None
            self.enter(State.IDLE)
        elif target == State.EXIT:
            self.enter(State.EXIT)

    def _start(self) -> None:
        task = _Task(TaskContext(self.host, self.options))
        self._task = task
        self.enter(State.INPROGRESS)
        task.thread = threading.Thread(target=self._run_task, args=(task,), name="task", daemon=True)
        task.thread.start()

    def _resume(self) -> None:
        task = self._task
        self.enter(State.INPROGRESS)  # before the task calls the host again, which checks the state
        with task.condition:
            task.suspended = False
            task.condition.notify_all()
        if task.finished:
            self.enter(State.COMPLETED)

    def _completed(self, task: _Task) -> None:
        if task is not self._task or task.context.canceled:
            return
        task.finished = True
        if self._state == State.INPROGRESS:
            self.enter(State.COMPLETED)  # when SUSPENDED, _resume completes it

    def _failed(self, task: _Task, message: str) -> None:
        if task is not self._task or task.context.canceled:
            return
        task.cancel()
        try:
            self.host.notify_status(Status(StatusType=StatusType.FATALERROR, CodeValue=0, CodeMeaning=message))
        except HostCallError as exc:
            log.error("could not report the failure: %s", exc)
        self.enter(State.CANCELED)  # §7.2: FATALERROR first, then CANCELED
        self._back_to_idle(task)

    def _back_to_idle(self, task: _Task) -> None:
        """CANCELED -> IDLE once the task's thread has stopped, or after the grace period (its results
        are discarded either way: every step of a canceled task stops before calling the host)."""
        if task.thread is not None:
            task.thread.join(self.options.cancel_grace)
            if task.thread.is_alive():
                log.warning("process() still running %g s after CANCELED; going IDLE without it", self.options.cancel_grace)
        self._task = None
        self.enter(State.IDLE)

    # --- a task (its own thread) ---------------------------------------------------------------------

    def _run_task(self, task: _Task) -> None:
        context = task.context
        step = "waiting for inputs"
        try:
            self._proceed(task, lambda: task.last_data)
            step = "fetching inputs"
            inputs = self._fetch_inputs(task) if self.fetch_inputs else []
            step = "process()"
            outputs = list(self.process(inputs, context) or [])
            step = "delivering outputs"
            self._deliver(task, outputs)
        except TaskCanceled:
            return
        except Exception as exc:
            if not context.canceled:
                message = f"{step}: {_describe(exc)}"
                log.error("task failed: %s", message, exc_info=step == "process()")  # user code: show where
                self._commands.put(functools.partial(self._failed, task, message))
            return
        self._commands.put(functools.partial(self._completed, task))

    def _proceed(self, task: _Task, ready: Callable[[], bool] = lambda: True) -> None:
        """Wait until the task may call the host (not SUSPENDED) and ``ready()``; stop if canceled."""
        with task.condition:
            task.condition.wait_for(lambda: task.context.canceled or (not task.suspended and ready()))
        if task.context.canceled:
            raise TaskCanceled()

    def _fetch_inputs(self, task: _Task) -> list[TaskInput]:
        entries = [
            entry
            for data in task.context.available_data
            for entry in iter_descriptors(data)
            if entry[0].DescriptorUuid
        ]
        if not entries:
            return []
        self._proceed(task)
        locators = self.host.get_data(
            [descriptor.DescriptorUuid for descriptor, *_ in entries], self.options.transfer_syntaxes, True
        )
        by_source = {(locator.Source or "").lower(): locator for locator in locators}
        inputs = []
        for descriptor, patient, study, series in entries:
            locator = by_source.get(descriptor.DescriptorUuid.lower())
            if locator is None:
                raise RuntimeError(f"the host's GetData returned no ObjectLocator for {descriptor.DescriptorUuid}")
            data = read_located(locator, session=self.host.session, timeout=self.call_timeout)
            inputs.append(TaskInput(descriptor, locator, data, patient, study, series))
        self._proceed(task)
        self.host.release_data([locator.Locator for locator in locators if locator.Locator])
        return inputs

    def _deliver(self, task: _Task, outputs: list[TaskOutput]) -> None:
        names = [output.name for output in outputs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"process() returned several outputs named {', '.join(duplicates)}")
        location: Optional[str] = None
        for output in outputs:
            self._proceed(task)
            if location is None or not location.endswith("/"):  # a file-like location holds one object
                location = self.host.get_output_location(self.options.output_protocols)
            uri = self.host.write_output(location, output.name, output.source)
            task.outputs[str(uuid.uuid4())] = _Delivered(output, uri, output.size)
        self._proceed(task)
        data = announcement((descriptor_uuid, d.output) for descriptor_uuid, d in task.outputs.items())
        if not self.host.notify_data_available(data, True):
            raise RuntimeError("the host refused the outputs (NotifyDataAvailable answered FALSE)")


def _describe(exc: BaseException) -> str:
    """A one-line reason for a FATALERROR status."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
