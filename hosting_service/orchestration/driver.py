"""The task protocol of one job (PS3.19 §6.3, Fig. 8.3-1), step by step, with the actions of
:data:`hosting_service.states.JOB_STEPS`:

1. wait for the application's first IDLE (``startup_timeout``, from the launch);

then per task:

2. SetState(INPROGRESS), wait for INPROGRESS (the answer and the notification may come in either order);
3. NotifyDataAvailable with the task's inputs, in batches, the last with lastData=TRUE;
4. wait for the task's end (``task_timeout``), while the application fetches inputs from the server;
5. receive its outputs (:class:`~hosting_service.orchestration.retrieval.Retrieval`);
6. SetState(IDLE), wait for IDLE.

Real applications misbehave: XIP ones go COMPLETED -> IDLE by themselves, some leave with
EXIT unasked after their last task, some cancel after a FATALERROR status; each is accepted or judged here.
"""
from __future__ import annotations

import time

from hosting_service.orchestration.conversation import Application, Since
from hosting_service.orchestration.outcome import AppEnded, JobFailure, Result
from hosting_service.orchestration.retrieval import Received, Retrieval
from hosting_service.orchestration.tasks import Task, batches
from hosting_service.states import JOB_STEPS, State


def await_ready(app: Application) -> None:
    """Step 1: the application's first IDLE, counted from its launch."""
    app.act(JOB_STEPS["startup"], app.job.options.startup_timeout, "the application's first IDLE (startup)",
            counting_from=app.process.started_at)
    app.job.manifest.milestone("idle")


class TaskRun:
    """Steps 2 to 6 for one task."""

    def __init__(self, app: Application, retrieval: Retrieval, task: Task, *, last: bool, of: int):
        self.app = app
        self.job = app.job
        self.retrieval = retrieval
        self.task = task
        self.last = last
        self.of = of
        self._started = time.monotonic()
        self.timings: dict[str, float] = {}
        self.record = {"number": task.number, "label": task.label, "inputs": task.object_count, "outputs": 0,
                       "timings": self.timings}

    def milestone(self, name: str) -> None:
        self.timings[name] = round(time.monotonic() - self._started, 4)

    def run(self) -> Received:
        task = self.task
        self.job.manifest.tasks.append(self.record)
        self.job.record("task", {"number": task.number, "of": self.of, "label": task.label,
                                 "inputs": task.object_count})
        since = self.start()
        self.announce_inputs(since)
        self.await_end(since)
        received = self.retrieval.collect(task)
        self.record["outputs"] = received.received
        self.milestone("outputsReceived")
        self.release()
        return received

    def start(self) -> Since:
        """SetState(INPROGRESS); what the application reports after it belongs to the task."""
        _, since = self.app.act(JOB_STEPS["task"], self.job.options.state_timeout, "INPROGRESS")
        self.milestone("inprogress")
        return since

    def announce_inputs(self, since: Since) -> None:
        pieces = batches(self.task.data, self.job.options.batch_size)
        for number, piece in enumerate(pieces, 1):
            last = number == len(pieces)
            if not self.app.call(lambda client: client.notify_data_available(piece, last)):
                self.raise_if_canceled(since)
                raise JobFailure(Result.APP_FAILED, "the application refused the inputs (NotifyDataAvailable "
                                 f"answered FALSE for batch {number} of {len(pieces)})")
        self.milestone("inputsAnnounced")

    def await_end(self, since: Since) -> None:
        reached, _ = self.app.act(JOB_STEPS["task-end"], self.job.options.task_timeout,
                                  "COMPLETED (the end of the task)", since=since)
        if reached is not State.COMPLETED:
            self.raise_if_canceled(since)
            raise JobFailure(Result.APP_FAILED, f"the application went from INPROGRESS to {reached} "
                             "without completing the task")
        self.milestone("completed")

    def release(self) -> None:
        """SetState(IDLE) once the outputs are received; leaving (EXIT) unasked is accepted after the last
        task only (XIP applications do so)."""
        try:
            reached, _ = self.app.act(JOB_STEPS["outputs-taken"], self.job.options.state_timeout, "IDLE")
        except AppEnded:
            if not self.last:
                raise
            reached = State.EXIT
        if reached is State.EXIT:
            if not self.last:
                raise JobFailure(Result.APP_FAILED, f"the application left after task {self.task.number} of {self.of}")
            self.job.notice(f"the application left without being asked ({self.app.process.describe_exit()}); "
                            "its outputs were already received")
        self.milestone("idle")

    def raise_if_canceled(self, since: Since) -> None:
        """After a FATALERROR status the application cancels the task itself (PS3.19 §7.2): its failure."""
        self.app.poll()
        view = self.job.feed.view
        if view.reached({State.CANCELED}, since()) is None:
            return
        fatal = view.last_fatal_error()
        why = (f"FATALERROR {fatal.get('CodeValue')} {fatal.get('CodeMeaning') or ''}".rstrip() if fatal
               else "no FATALERROR status was reported")
        raise JobFailure(Result.APP_FAILED, f"the application canceled task {self.task.number}: {why}")
