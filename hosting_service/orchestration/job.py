"""The context of one job: what exists from the moment the server created the instance to the end.

A :class:`Job` holds the options, the admin client, the instance, the manifest being filled, the event
feed and the folder the outputs go to, and it is how every part of the run speaks: :meth:`Job.record`
(an event shown now and kept in the instance history), :meth:`Job.notice`, :meth:`Job.warn` (a warning of
the host's own, which also goes into the manifest) and :meth:`Job.server_call`.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from hosting_service.admin.client import AdminClient, AdminError
from hosting_service.orchestration.feed import EventFeed
from hosting_service.orchestration.manifest import Manifest
from hosting_service.orchestration.options import RunOptions
from hosting_service.orchestration.outcome import JobFailure, Result
from hosting_service.orchestration.progress import Reporter

T = TypeVar("T")

OWN_EVENT_KINDS = ("run", "task", "retrieved", "log", "notice", "outcome")
"""Events the runner adds to the instance history itself (the feed does not report them twice)."""


@dataclass
class Job:
    options: RunOptions
    reporter: Reporter
    admin: AdminClient
    instance: dict[str, Any]
    """The server's answer to the instance's creation: ``id``, ``hostURL``, ``applicationURL``..."""
    manifest: Manifest
    feed: EventFeed
    folder: Path
    """Where the outputs, ``app.log`` and ``manifest.json`` are written during the run."""
    cancel_requested: threading.Event
    """Set by the CLI on the first interrupt: the job is canceled gracefully."""
    warnings: list[dict[str, Any]] = field(default_factory=list)
    """The host's own warnings (refused outputs...), for the manifest beside the protocol warnings."""

    @property
    def instance_id(self) -> str:
        return str(self.instance["id"])

    def server_call(self, call: Callable[[], T]) -> T:
        """``call()``, with the server's failure as the job's."""
        try:
            return call()
        except AdminError as exc:
            raise JobFailure(Result.SERVER, str(exc)) from None

    def record(self, kind: str, data: dict[str, Any]) -> None:
        """An event of the orchestration: shown now and kept in the instance history."""
        self.reporter.emit(kind, data)
        self.server_call(lambda: self.admin.add_event(self.instance_id, kind, data))

    def notice(self, message: str) -> None:
        self.reporter.emit("notice", {"message": message})
        with contextlib.suppress(AdminError):
            self.admin.add_event(self.instance_id, "notice", {"message": message})

    def warn(self, message: str, **details: Any) -> None:
        """A warning of the host itself: shown (on stderr even without a terminal), kept in the instance
        history and listed in the manifest's ``warnings``."""
        warning = {"source": "dicom-host run", "message": message, **details}
        self.warnings.append(warning)
        self.reporter.emit("host-warning", warning)
        with contextlib.suppress(AdminError):
            self.admin.add_event(self.instance_id, "notice", warning)
