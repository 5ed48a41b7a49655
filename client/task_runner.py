"""One task of a hosted application (PS3.19 §6.3, Fig. 8.3-1), on its own thread.

At INPROGRESS the task waits for the host's NotifyDataAvailable calls up to ``lastData`` TRUE, fetches
every announced object with GetData (transfer syntaxes in the configured order), reads each locator's
bytes and releases them, calls the application's ``process``, writes the outputs to output locations and
announces them with NotifyDataAvailable(lastData=TRUE). SUSPENDED holds it before its next call to the
host; cancellation stops it there. How it ended is reported to the state machine by a callback: the
state changes are not the task's business.
"""
from __future__ import annotations

import argparse
import logging
import threading
from typing import Callable, Optional

from client.data_exchange import read_located
from client.host_client import HostClient
from client.outputs import DeliveredOutputs
from client.task import TaskCanceled, TaskContext, TaskInput, TaskOutput
from hosting_service.model import AvailableData, Status, StatusType, iter_descriptors

log = logging.getLogger("dicom_host.hosted_app")

Process = Callable[[list[TaskInput], TaskContext], Optional[list[TaskOutput]]]


class Task:
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
        self.outputs = DeliveredOutputs()
        self.thread: Optional[threading.Thread] = None

    def receive(self, data: Optional[AvailableData], last_data: bool) -> bool:
        """The host's NotifyDataAvailable of inputs; FALSE once ``lastData`` was TRUE (§8.3.1)."""
        with self.condition:
            if self.last_data:
                log.warning("NotifyDataAvailable refused: lastData was TRUE already in this task (§8.3.1)")
                return False
            self.context.available_data.append(data or AvailableData())
            self.last_data = bool(last_data)
            self.condition.notify_all()
        return True

    def suspend(self) -> None:
        with self.condition:
            self.suspended = True

    def resume(self) -> None:
        with self.condition:
            self.suspended = False
            self.condition.notify_all()

    def cancel(self) -> None:
        with self.condition:
            self.context.canceled_event.set()
            self.condition.notify_all()

    def proceed(self, ready: Callable[[], bool] = lambda: True) -> None:
        """Wait until the task may call the host (not SUSPENDED) and ``ready()``; stop if canceled."""
        with self.condition:
            self.condition.wait_for(lambda: self.context.canceled or (not self.suspended and ready()))
        if self.context.canceled:
            raise TaskCanceled()

    def stopped(self, grace: float) -> bool:
        """Wait up to ``grace`` seconds for the task's thread to end; whether it has."""
        if self.thread is not None:
            self.thread.join(grace)
        return self.thread is None or not self.thread.is_alive()


class TaskRunner:
    """Runs tasks for one application: ``process`` is the application's function, ``completed(task)``
    and ``failed(task, message)`` are called (on the task's thread) when a task ends other than by
    cancellation. With ``fetch_inputs`` false, ``process`` gets no inputs fetched with GetData (it reads
    them through models)."""

    def __init__(self, host: HostClient, options: argparse.Namespace, process: Process, call_timeout: float,
                 completed: Callable[[Task], None], failed: Callable[[Task, str], None], fetch_inputs: bool = True):
        self.host = host
        self.fetch_inputs = fetch_inputs
        self.options = options
        self.process = process
        self.call_timeout = call_timeout
        self.completed = completed
        self.failed = failed

    def new_task(self) -> Task:
        return Task(TaskContext(self.host, self.options))

    def start(self, task: Task) -> None:
        """Run ``task`` on its own thread."""
        task.thread = threading.Thread(target=self._run, args=(task,), name="task", daemon=True)
        task.thread.start()

    def _run(self, task: Task) -> None:
        context = task.context
        step = "waiting for inputs"
        try:
            task.proceed(lambda: task.last_data)
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
                self.failed(task, message)
            return
        self.completed(task)

    def _fetch_inputs(self, task: Task) -> list[TaskInput]:
        entries = [
            entry
            for data in task.context.available_data
            for entry in iter_descriptors(data)
            if entry[0].DescriptorUuid
        ]
        if not entries:
            return []
        task.proceed()
        locators = self.host.get_data(
            [descriptor.DescriptorUuid for descriptor, *_ in entries], self.options.transfer_syntaxes, True
        )
        by_source = {(locator.Source or "").lower(): locator for locator in locators}
        inputs = []
        for descriptor, patient, study, series in entries:
            locator = by_source.get((descriptor.DescriptorUuid or "").lower())
            if locator is None:
                message = f"input {descriptor.DescriptorUuid}: the host's GetData did not supply it; left out"
                log.warning("%s", message)
                self.host.notify_status(Status(StatusType=StatusType.WARNING, CodeValue=0, CodeMeaning=message))
                continue
            data = read_located(locator, session=self.host.session, timeout=self.call_timeout)
            inputs.append(TaskInput(descriptor, locator, data, patient, study, series))
        task.proceed()
        self.host.release_data([locator.Locator for locator in locators if locator.Locator])
        return inputs

    def _deliver(self, task: Task, outputs: list[TaskOutput]) -> None:
        task.outputs.write(self.host, outputs, self.options.output_protocols, task.proceed)
        task.proceed()
        if not self.host.notify_data_available(task.outputs.announcement(), True):
            raise RuntimeError("the host refused the outputs (NotifyDataAvailable answered FALSE)")


def _describe(exc: BaseException) -> str:
    """A one-line reason for a FATALERROR status."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
