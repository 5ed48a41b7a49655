"""HostedApplication: a Python hosted application is a function from inputs to outputs.

A subclass implements :meth:`HostedApplication.process` (``inputs -> outputs``) and runs with
``sys.exit(MyApp.main())``; the base class does the rest of PS3.19, with one part per concern:

* **Launch** (§7.1, :mod:`client.launch`): ``--hostURL U1 --applicationURL U2`` (flags in any case, ``=``
  form too), then the kit's options and the subclass's own (:meth:`add_arguments`).
* **Endpoint** (:mod:`client.endpoint`, :mod:`client.server`): the ApplicationService at the
  applicationURL, with ``?wsdl`` and the imported XSDs beside it, on a threaded server so the application
  answers while it is itself calling the host.
* **State machine** (§7.2, :mod:`client.state_machine`, rules from :mod:`hosting_service.states`):
  ``SetState`` answers at once and the change runs on the state-machine thread; the latest request wins
  (§8.1.2). Every transition is notified with NotifyStateChanged; the first is IDLE, once the endpoint is
  up. The action for each host-requested transition is :data:`hosting_service.states.APPLICATION_ACTIONS`;
  this class carries them out (:meth:`_carry_out`).
* **A task** (§6.3, :mod:`client.task_runner`): at INPROGRESS the application waits for the host's
  inputs, fetches them (an object the host leaves out of its GetData answer is left out of the task, with
  a WARNING status), calls :meth:`process`, writes and announces the outputs and goes COMPLETED; it
  then serves the host's GetData for them (:mod:`client.outputs`) until the host sets IDLE, which forgets
  the task. SUSPENDED holds the task before its next call to the host; CANCELED (requested, or after
  ``process`` raised, which is reported first as a FATALERROR status) stops it, and the application
  returns to IDLE once the task's thread has stopped or ``--cancel-grace`` has passed. EXIT (from IDLE)
  notifies, stops the endpoint and ends the process with status 0.
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
import sys
import threading
import urllib.parse
from typing import Callable, ClassVar, Optional, Sequence

from client.data_exchange import DEFAULT_TRANSFER_SYNTAXES
from client.endpoint import ApplicationEndpoint
from client.host_client import HostCallError, HostClient
from client.outputs import DeliveredOutputs
from client.launch import launch_parser, normalize_launch_flags
from client.server import ThreadedWSGIServer
from client.state_machine import ApplicationStateMachine
from client.task import TaskContext, TaskInput, TaskOutput
from client.task_runner import Task, TaskRunner
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
)
from hosting_service.states import PRECONDITIONS, Action, PreconditionViolation, State

log = logging.getLogger("dicom_host.hosted_app")


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
        parser = launch_parser(cls.name, cls.description, output_protocols=cls.output_protocols,
                               transfer_syntaxes=cls.transfer_syntaxes, cancel_grace=cls.cancel_grace)
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
        self._machine = ApplicationStateMachine(self._carry_out, self._report)
        self._tasks = TaskRunner(self.host, options, self.process, self.call_timeout,
                                 completed=self._later(self._completed), failed=self._later(self._failed),
                                 fetch_inputs=self.fetch_inputs)
        self._task: Optional[Task] = None
        self._exited = threading.Event()
        parts = urllib.parse.urlsplit(options.applicationURL)
        self._server = ThreadedWSGIServer(parts.hostname or "", parts.port or 80, self.endpoint_app())

    def endpoint_app(self):
        """The WSGI application served at applicationURL's host and port."""
        return ApplicationEndpoint(self, self.options.applicationURL)

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
        self._machine.start()
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
        return self._machine.state

    def SetState(self, state: Optional[State] = None) -> bool:
        """§8.1.2, the latest request wins (see :mod:`client.state_machine`)."""
        if state is None:
            raise ClientError("SetState: no state given")
        return self._machine.request(state)

    def BringToFront(self, location: Optional[Rectangle] = None) -> bool:
        return True

    # --- ApplicationService: DataExchange, application as recipient (§8.3.1) --------------------------

    def NotifyDataAvailable(self, data: Optional[AvailableData] = None, lastData: bool = False) -> bool:
        state, task = self._machine.state, self._task
        if state not in PRECONDITIONS["NotifyDataAvailable"].allowed or task is None:
            log.warning("NotifyDataAvailable refused: %s", PreconditionViolation("NotifyDataAvailable", state))
            return False
        return task.receive(data, lastData)

    # --- ApplicationService: DataExchange, application as source (§8.3.2, §8.3.6) --------------------

    def GetData(self, objects: Optional[list[str]] = None, acceptableTransferSyntaxes: Optional[list[str]] = None,
                includeBulkData: bool = True) -> list[ObjectLocator]:
        """Locators for announced outputs, in the order asked (see :meth:`DeliveredOutputs.locators`)."""
        task = self._task
        if task is None or not task.outputs:
            raise ClientError(f"GetData: this application has announced no outputs (it is {self._machine.state})")
        return task.outputs.locators(objects or [])

    def ReleaseData(self, objects: Optional[list[str]] = None) -> None:
        """Nothing to free: the outputs are at the host's output locations, and the host owns them once
        their URIs are handed back (§8.2.3)."""

    # --- ApplicationService: models (§8.3.3-§8.3.5, §8.3.7): the outputs as Native DICOM Models -----

    def _outputs(self, operation: str) -> DeliveredOutputs:
        task = self._task
        if task is None or not task.outputs:
            raise ClientError(f"{operation}: this application has announced no outputs (it is {self._machine.state})")
        return task.outputs

    def GetAsModels(self, objects: Optional[list[str]] = None, classUID: Optional[str] = None,
                    supportedInfoSetTypes: Optional[list[str]] = None) -> ModelSetDescriptor:
        return self._outputs("GetAsModels").get_as_models(objects or [], classUID or "", supportedInfoSetTypes)

    def ReleaseModels(self, models: Optional[list[str]] = None) -> None:
        if self._task is not None:
            self._task.outputs.release_models(models or [])

    def QueryModel(self, models: Optional[list[str]] = None, xPaths: Optional[list[str]] = None) -> list[QueryResult]:
        return self._outputs("QueryModel").query_model(models or [], xPaths or [])

    def QueryInfoSet(self, models: Optional[list[str]] = None,
                     xPaths: Optional[list[str]] = None) -> list[QueryResultInfoSet]:
        return self._outputs("QueryInfoSet").query_info_set(models or [], xPaths or [])

    # --- transitions (on the state-machine thread) ----------------------------------------------------

    def enter(self, state: State) -> None:
        """Take ``state`` and notify the host; EXIT also ends :meth:`run`. The kit calls this for every
        transition; a subclass may call it (from :meth:`entered`) to move by itself."""
        self._machine.enter(state)

    def _report(self, previous: State, state: State) -> None:
        log.info("%s -> %s", previous, state)
        try:
            self.host.notify_state_changed(state)
        except HostCallError as exc:
            log.error("could not notify %s: %s", state, exc)
        if state == State.EXIT:
            self._exited.set()
        self.entered(state)

    def _later(self, method: Callable[..., None]) -> Callable[..., None]:
        """``method`` run on the state-machine thread, in order with the host's requests."""
        return lambda *args: self._machine.run_later(functools.partial(method, *args))

    def _carry_out(self, action: Action) -> None:
        """The application's part of a host-requested transition: the method for each action of
        :data:`hosting_service.states.APPLICATION_ACTIONS`."""
        actions: dict[Action, Callable[[], None]] = {
            Action.START_TASK: self._start_task,
            Action.SUSPEND_TASK: self._suspend_task,
            Action.RESUME_TASK: self._resume_task,
            Action.CANCEL_TASK: self._cancel_task,
            Action.FORGET_TASK: self._forget_task,
            Action.EXIT: functools.partial(self.enter, State.EXIT),
        }
        actions[action]()

    def _start_task(self) -> None:
        task = self._task = self._tasks.new_task()
        self.enter(State.INPROGRESS)
        self._tasks.start(task)

    def _suspend_task(self) -> None:
        self._running_task().suspend()
        self.enter(State.SUSPENDED)

    def _resume_task(self) -> None:
        task = self._running_task()
        self.enter(State.INPROGRESS)  # before the task calls the host again, which checks the state
        task.resume()
        if task.finished:
            self.enter(State.COMPLETED)

    def _cancel_task(self) -> None:
        task = self._running_task()
        task.cancel()
        self.enter(State.CANCELED)
        self._back_to_idle(task)

    def _forget_task(self) -> None:
        """The host has the outputs (§6.3 step 7)."""
        self._task = None
        self.enter(State.IDLE)

    def _running_task(self) -> Task:
        """The task of INPROGRESS, SUSPENDED and COMPLETED (the only states with task actions)."""
        if self._task is None:
            raise RuntimeError(f"no task while {self._machine.state}")
        return self._task

    def _completed(self, task: Task) -> None:
        if task is not self._task or task.context.canceled:
            return
        task.finished = True
        if self._machine.state == State.INPROGRESS:
            self.enter(State.COMPLETED)  # when SUSPENDED, resuming completes it

    def _failed(self, task: Task, message: str) -> None:
        if task is not self._task or task.context.canceled:
            return
        task.cancel()
        try:
            self.host.notify_status(Status(StatusType=StatusType.FATALERROR, CodeValue=0, CodeMeaning=message))
        except HostCallError as exc:
            log.error("could not report the failure: %s", exc)
        self.enter(State.CANCELED)  # §7.2: FATALERROR first, then CANCELED
        self._back_to_idle(task)

    def _back_to_idle(self, task: Task) -> None:
        """CANCELED -> IDLE once the task's thread has stopped, or after the grace period (its results
        are discarded either way: every step of a canceled task stops before calling the host)."""
        if not task.stopped(self.options.cancel_grace):
            log.warning("process() still running %g s after CANCELED; going IDLE without it", self.options.cancel_grace)
        self._task = None
        self.enter(State.IDLE)
