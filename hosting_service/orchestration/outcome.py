"""How a ``dicom-host run`` ends: a :class:`Result` for the exit status and a reason for people.

Every part of the job raises :class:`JobFailure` (or :class:`AppEnded`) with the result and a one-line
reason; the runner turns it into the :class:`Outcome` it reports and records.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Optional


class Result(str, Enum):
    """How a run ended; the CLI turns each into an exit status (:mod:`hosting_service.cli.exits`)."""

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
    app_log: Optional[Path] = None
    """The application's ``app.log`` where the run left it, once the application was launched."""


class JobFailure(Exception):
    def __init__(self, result: Result, reason: str):
        super().__init__(reason)
        self.outcome = Outcome(result, reason)


class AppEnded(JobFailure):
    """The application's process ended while the runner still expected something of it."""

    def __init__(self, reason: str):
        super().__init__(Result.APP_FAILED, reason)
