"""How the orchestration learns what the application did: from the store's event stream, never from inside
a SOAP handler (both CTK and XIP deadlocked calling the application from there).

:class:`EventFeed` long-polls the admin API for the instance's events and keeps an :class:`InstanceView`:
the states the application reported, in order, its statuses and the protocol warnings. A long poll
returns as soon as an event is stored, so a notification is seen within milliseconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

from hosting_service.admin.client import AdminClient
from hosting_service.orchestration.progress import Reporter
from hosting_service.states import State


@dataclass
class InstanceView:
    state: Optional[State] = None
    """The application's last reported state (``None``: not yet IDLE)."""
    reported: list[State] = field(default_factory=list)
    """Every state the application reported, in order; marks index it."""
    request_marks: list[int] = field(default_factory=list)
    """For each SetState the host recorded (``requested`` events, in order): how many states had been
    reported before it. Only states after that mark answer the request, even those seen in the same poll."""
    statuses: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    ended: Optional[str] = None
    """Why the instance ended, if it was ended under the orchestration's feet."""

    def mark(self) -> int:
        """A bookmark in :attr:`reported`, for a wait that follows no request of the host."""
        return len(self.reported)

    def request_mark(self, request: int) -> Optional[int]:
        """The mark of the host's ``request``-th SetState (from 0), once its event has been seen."""
        return self.request_marks[request] if request < len(self.request_marks) else None

    def reached(self, targets: set[State], mark: Optional[int]) -> Optional[State]:
        """The first of ``targets`` reported since ``mark``, or the current state if it is one of them
        (``None`` while ``mark`` is unknown).

        Both matter: a fast application may pass through a state (INPROGRESS then COMPLETED) between two
        polls, and an XIP application may already be where the host is about to ask it to go (its own
        COMPLETED -> IDLE)."""
        found = self._first(targets, mark)
        return None if found is None else self.reported[found]

    def mark_after(self, targets: set[State], mark: Optional[int]) -> Optional[int]:
        """The mark just after the report :meth:`reached` finds: what comes after it answers the next wait."""
        found = self._first(targets, mark)
        return None if found is None else found + 1

    def _first(self, targets: set[State], mark: Optional[int]) -> Optional[int]:
        if mark is None:
            return None
        for index in range(mark, len(self.reported)):
            if self.reported[index] in targets:
                return index
        return len(self.reported) - 1 if self.state in targets else None

    def last_fatal_error(self) -> Optional[dict]:
        return next((s for s in reversed(self.statuses) if s.get("StatusType") == "FATALERROR"), None)


class EventFeed:
    def __init__(self, admin: AdminClient, instance_id: str, reporter: Reporter, *, own_kinds: Iterable[str]):
        self.admin = admin
        self.instance_id = instance_id
        self.reporter = reporter
        self.own_kinds = frozenset(own_kinds)
        """Kinds the orchestration itself adds to the history: already reported when they were added."""
        self.view = InstanceView()
        self.last_seq = 0

    def poll(self, wait: float) -> None:
        """Take in the events stored since the last poll, waiting up to ``wait`` seconds for the first."""
        events, self.last_seq = self.admin.events(self.instance_id, after=self.last_seq, wait=wait)
        for event in events:
            kind, data = event["kind"], event["data"]
            if kind in self.own_kinds:
                continue
            self._apply(kind, data)
            self.reporter.emit(kind, data)

    def _apply(self, kind: str, data: dict) -> None:
        view = self.view
        if kind == "state":
            view.state = State(data["to"])
            view.reported.append(view.state)
        elif kind == "requested":
            view.request_marks.append(len(view.reported))
        elif kind == "status":
            view.statuses.append(data)
        elif kind == "warning":
            view.warnings.append(data)
        elif kind == "ended":
            view.ended = data.get("reason") or "ended"
