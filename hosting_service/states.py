"""The PS3.19 application state machine and the per-state preconditions of the Host's operations.

Everything the host knows about legal states lives in the two tables of this module:

* :data:`TRANSITIONS`, PS3.19 §7.2 Table 7.2-2 (and Figure 7.2-1): which state changes exist, who triggers
  them, and the row of the table that allows them;
* :data:`PRECONDITIONS`, the "shall only be called if the Hosted Application is at ..." sentences of
  PS3.19 §8.2 and §8.3: in which states of the application each HostService operation may be called.

Beside them, and built on them, the rules the host acts by:

* :data:`RELEASING_STATES`, the states on whose notification data references lapse and output locations
  close (§8.2.3, §8.3.2);
* :data:`HOST_ACTIONS`, what the host does to move an application along (ask with SetState, or wait), each
  with the states that settle it, as pynetdicom's ``fsm.py`` keeps its actions beside its transition table;
* :data:`JOB_STEPS` and :data:`WIND_DOWN`, which action the orchestration takes at each step of a job and,
  whatever went wrong, in each state on the way to EXIT;
* :func:`next_on_way`, the next row of the table on the way from one state to another (for an application
  kit walking to the state the host asked for).

The store uses them to judge notifications and close output locations, the wire layer to refuse
out-of-state calls, the orchestration to decide what it asks of an application and what it waits for, and
the error messages quote them. Nothing else in the project spells out a state rule. (The tests write their
expectations out independently: a test that read them from these tables could not fail.)
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional


class State(str, enum.Enum):
    """PS3.19 §7.2 Table 7.2-1 and the XSD ``State`` enumeration (wire spelling)."""

    IDLE = "IDLE"
    INPROGRESS = "INPROGRESS"
    SUSPENDED = "SUSPENDED"
    COMPLETED = "COMPLETED"
    CANCELED = "CANCELED"
    EXIT = "EXIT"

    def __str__(self) -> str:  # so f-strings and logs show IDLE, not State.IDLE
        return self.value


class Trigger(str, enum.Enum):
    HOST = "host"  # the Host calls Application.setState(to); the application then notifies
    APP = "app"  # the application moves by itself and notifies


@dataclass(frozen=True)
class Transition:
    source: Optional[State]
    target: State
    triggers: frozenset[Trigger]
    cite: str


def _t(source: Optional[State], target: State, cite: str, *triggers: Trigger) -> Transition:
    return Transition(source, target, frozenset(triggers), cite)


S = State
H, A = Trigger.HOST, Trigger.APP

TRANSITIONS: dict[tuple[Optional[State], State], Transition] = {
    (t.source, t.target): t
    for t in (
        _t(None, S.IDLE, "PS3.19 §7.1: the launched application notifies IDLE when ready", A),
        _t(S.IDLE, S.INPROGRESS, "PS3.19 Table 7.2-2: IDLE -> INPROGRESS, Host requests a task", H),
        _t(S.IDLE, S.EXIT, "PS3.19 Table 7.2-2: IDLE -> EXIT, Host requests termination", H),
        _t(S.INPROGRESS, S.SUSPENDED, "PS3.19 Table 7.2-2: INPROGRESS -> SUSPENDED, Host requests", H),
        _t(
            S.INPROGRESS,
            S.CANCELED,
            "PS3.19 Table 7.2-2: INPROGRESS -> CANCELED, Host requests or application fails (FATALERROR first)",
            H,
            A,
        ),
        _t(S.INPROGRESS, S.COMPLETED, "PS3.19 Table 7.2-2: INPROGRESS -> COMPLETED, application finished", A),
        _t(S.SUSPENDED, S.INPROGRESS, "PS3.19 Table 7.2-2: SUSPENDED -> INPROGRESS, Host resumes", H),
        _t(
            S.SUSPENDED,
            S.CANCELED,
            "PS3.19 Table 7.2-2: SUSPENDED -> CANCELED, Host requests or application fails (FATALERROR first)",
            H,
            A,
        ),
        _t(S.COMPLETED, S.IDLE, "PS3.19 Table 7.2-2: COMPLETED -> IDLE, Host has captured the outputs", H),
        _t(S.CANCELED, S.IDLE, "PS3.19 Table 7.2-2: CANCELED -> IDLE, application released its resources", A),
    )
}
"""PS3.19 §7.2 Table 7.2-2. Keys are (from, to); ``None`` as *from* means "launched, not yet IDLE"."""


def transition(source: Optional[State], target: State) -> Optional[Transition]:
    """The table row that allows ``source -> target``, or ``None`` when the standard has no such row."""
    return TRANSITIONS.get((source, target))


def is_legal_notification(source: Optional[State], target: State) -> bool:
    """Whether an application may report ``target`` when the host last knew it in ``source``.

    A repeated notification of the current state is a harmless duplicate (§8.2.4), hence legal.
    """
    return source == target or (source, target) in TRANSITIONS


def host_may_request(source: Optional[State]) -> list[State]:
    """States the Host may ask for with ``setState`` from ``source`` (the rows of Table 7.2-2 the Host
    triggers), in table order."""
    return [t.target for t in TRANSITIONS.values() if t.source == source and Trigger.HOST in t.triggers]


def describe_notification(source: Optional[State], target: State) -> str:
    """A sentence for logs and protocol warnings about a reported transition."""
    src = "NOT_STARTED" if source is None else source.value
    row = transition(source, target)
    if source == target:
        return f"{src} -> {target}: duplicate notification of the current state"
    if row is not None:
        return f"{src} -> {target}: {row.cite}"
    legal = [t.target.value for t in TRANSITIONS.values() if t.source == source]
    return (
        f"{src} -> {target} is not a transition of PS3.19 Table 7.2-2 "
        f"(from {src} the table allows: {', '.join(legal) or 'nothing'}); the application's report is taken as the truth"
    )


def next_on_way(source: Optional[State], target: State) -> Optional[Transition]:
    """The first row of the shortest way through :data:`TRANSITIONS` from ``source`` to ``target`` (rows
    tried in table order, so a host-requested CANCELED comes before waiting for COMPLETED); ``None`` when
    ``source`` is ``target`` or the table has no way there."""
    if source == target:
        return None
    first: dict[Optional[State], Transition] = {}
    frontier: list[Optional[State]] = [source]
    seen: set[Optional[State]] = {source}
    while frontier:
        following: list[Optional[State]] = []
        for state in frontier:
            for row in TRANSITIONS.values():
                if row.source != state or row.target in seen:
                    continue
                seen.add(row.target)
                first[row.target] = row if state == source else first[state]
                if row.target == target:
                    return first[row.target]
                following.append(row.target)
        frontier = following
    return None


RELEASING_STATES: frozenset[State] = frozenset({S.IDLE, S.EXIT})
"""On entering these, the application's data references are released and its output locations close
(PS3.19 §8.2.3: an output location is active in any state but IDLE or EXIT; §8.3.2: at IDLE the host may
release data)."""


# --- What the host does to move an application along (orchestration) --------------------------------


@dataclass(frozen=True)
class HostAction:
    """One thing the host does: ask with SetState(``request``), or only wait (``request`` is ``None``),
    until the application reports one of ``settles``."""

    name: str
    request: Optional[State]
    settles: frozenset[State]
    cite: str


def _a(name: str, request: Optional[State], settles, cite: str) -> HostAction:
    return HostAction(name, request, frozenset(settles), cite)


HOST_ACTIONS: dict[str, HostAction] = {
    a.name: a
    for a in (
        _a("await-ready", None, (S.IDLE,), "PS3.19 §7.1: a launched application notifies IDLE when ready"),
        _a("start-task", S.INPROGRESS, (S.INPROGRESS,), "PS3.19 Table 7.2-2: IDLE -> INPROGRESS, Host requests"),
        # the application ends a task by itself; IDLE and EXIT are there for one that skips COMPLETED
        # (XIP applications go COMPLETED -> IDLE by themselves, some leave with EXIT unasked)
        _a("await-task-end", None, (S.COMPLETED, S.CANCELED, S.IDLE, S.EXIT),
           "PS3.19 Table 7.2-2: INPROGRESS -> COMPLETED or CANCELED, application"),
        _a("release-task", S.IDLE, (S.IDLE, S.EXIT),
           "PS3.19 Table 7.2-2: COMPLETED -> IDLE, Host has captured the outputs"),
        _a("cancel", S.CANCELED, (S.CANCELED, S.IDLE),
           "PS3.19 Table 7.2-2: INPROGRESS/SUSPENDED -> CANCELED, Host requests"),
        _a("await-idle", None, (S.IDLE,), "PS3.19 Table 7.2-2: CANCELED -> IDLE, application released its resources"),
        _a("exit", S.EXIT, (S.EXIT,), "PS3.19 Table 7.2-2: IDLE -> EXIT, Host requests termination"),
    )
}
"""The host's actions, each with the notifications that settle it."""

JOB_STEPS: dict[str, HostAction] = {
    "startup": HOST_ACTIONS["await-ready"],
    "task": HOST_ACTIONS["start-task"],
    "task-end": HOST_ACTIONS["await-task-end"],
    "outputs-taken": HOST_ACTIONS["release-task"],
}
"""The actions of one job, in order: wait for the first IDLE; per task, ask for INPROGRESS, wait for the
task's end, and once the outputs are received ask for IDLE (PS3.19 §6.3)."""

WIND_DOWN: dict[State, HostAction] = {
    S.IDLE: HOST_ACTIONS["exit"],
    S.INPROGRESS: HOST_ACTIONS["cancel"],
    S.SUSPENDED: HOST_ACTIONS["cancel"],
    S.COMPLETED: HOST_ACTIONS["release-task"],
    S.CANCELED: HOST_ACTIONS["await-idle"],
}
"""Bringing an application down from any state it can be in, by the legal paths of Table 7.2-2 only
(INPROGRESS -> CANCELED -> IDLE -> EXIT, COMPLETED -> IDLE -> EXIT); EXIT and "not started" have no entry:
there is nothing to ask of it, only its process to end."""


# --- Preconditions of the HostService operations (PS3.19 §8.2, §8.3) ---------------------------------

ANY_STATE: frozenset[Optional[State]] = frozenset([None, *State])


@dataclass(frozen=True)
class Precondition:
    operation: str
    allowed: frozenset[Optional[State]]
    cite: str


def _p(operation: str, allowed, cite: str) -> Precondition:
    return Precondition(operation, frozenset(allowed), cite)


_INPROGRESS_OR_COMPLETED = (S.INPROGRESS, S.COMPLETED)
_DATA_ACCESS = "PS3.19 §8.3.{n}: the Hosted Application shall only call this method at the INPROGRESS or COMPLETED states"

PRECONDITIONS: dict[str, Precondition] = {
    p.operation: p
    for p in (
        _p("GenerateUID", ANY_STATE, "PS3.19 §8.2.1: may be called at any time"),
        _p("GetAvailableScreen", ANY_STATE, "PS3.19 §8.2.2: may be called at any time"),
        _p(
            "GetOutputLocation",
            _INPROGRESS_OR_COMPLETED,
            "PS3.19 §8.2.3: shall only be called at the INPROGRESS or COMPLETED states",
        ),
        _p("NotifyStateChanged", ANY_STATE, "PS3.19 §8.2.4: invoked on every transition"),
        _p("NotifyStatus", ANY_STATE, "PS3.19 §8.2.5: may be called at any time"),
        _p("NotifyDataAvailable", (S.INPROGRESS,), "PS3.19 §8.3.1: shall only be called at the INPROGRESS state"),
        _p("GetData", _INPROGRESS_OR_COMPLETED, _DATA_ACCESS.format(n=2)),
        _p("GetAsModels", _INPROGRESS_OR_COMPLETED, _DATA_ACCESS.format(n=3)),
        _p("QueryModel", _INPROGRESS_OR_COMPLETED, _DATA_ACCESS.format(n=4)),
        _p("QueryInfoSet", _INPROGRESS_OR_COMPLETED, _DATA_ACCESS.format(n=5)),
        # §8.3.6/§8.3.7 state no precondition; releasing is harmless in any state (implicit at IDLE).
        _p("ReleaseData", ANY_STATE, "PS3.19 §8.3.6: no precondition stated"),
        _p("ReleaseModels", ANY_STATE, "PS3.19 §8.3.7: no precondition stated"),
    )
}
"""In which application states each HostService operation may be called."""


def _state_names(states) -> list[str]:
    return ["NOT_STARTED" if s is None else s.value for s in states]


class PreconditionViolation(Exception):
    """An application called a HostService operation in a state the standard does not allow it in."""

    def __init__(self, operation: str, state: Optional[State]):
        self.operation = operation
        self.state = state
        rule = PRECONDITIONS[operation]
        allowed = [s for s in [None, *State] if s in rule.allowed]
        self.allowed = allowed
        super().__init__(
            f"{operation} is not allowed while the application is "
            f"{_state_names([state])[0]}; allowed in: {', '.join(_state_names(allowed))} ({rule.cite})"
        )


def check_precondition(operation: str, state: Optional[State]) -> None:
    """Raise :class:`PreconditionViolation` if ``operation`` may not be called in ``state``."""
    if state not in PRECONDITIONS[operation].allowed:
        raise PreconditionViolation(operation, state)


def parse_state(value: str) -> State:
    """A wire or CLI spelling of a state (case-insensitive) as a :class:`State`; ``ValueError`` otherwise."""
    try:
        return State(value.strip().upper())
    except (ValueError, AttributeError):
        raise ValueError(f"{value!r} is not a PS3.19 State (one of {', '.join(s.value for s in State)})") from None


# --- The application side: a hosted application's answer to the Host's SetState (PS3.19 §8.1.2) -------
#
# Used by the hosted-application kit (client/state_machine.py, client/hosted_app.py); the host side above
# does not depend on it. Every host-requested row of TRANSITIONS has one APPLICATION_ACTIONS entry.


class SetStateAnswer(enum.Enum):
    """How a hosted application answers ``setState(requested)`` in ``current`` (§8.1.2)."""

    IGNORE = "the current state: answer TRUE and change nothing"
    ACCEPT = "a change Table 7.2-2 lets the host request: answer TRUE, then carry it out and notify"
    REFUSE = "no host-requested transition of Table 7.2-2: answer FALSE"

    @property
    def result(self) -> bool:
        """The ``SetStateResult`` on the wire."""
        return self is not SetStateAnswer.REFUSE


def answer_set_state(current: Optional[State], requested: State) -> SetStateAnswer:
    """§8.1.2: a request for the current state is ignored (TRUE), one the table lets the host make is
    accepted (TRUE), any other is refused (FALSE)."""
    if requested == current:
        return SetStateAnswer.IGNORE
    if requested in host_may_request(current):
        return SetStateAnswer.ACCEPT
    return SetStateAnswer.REFUSE


class Action(str, enum.Enum):
    """What a hosted application does to carry out a host-requested transition (§6.3, Fig. 8.3-1)."""

    START_TASK = "begin a task: INPROGRESS, then wait for the host's inputs"
    SUSPEND_TASK = "hold the task before its next call to the host: SUSPENDED"
    RESUME_TASK = "let the held task go on: INPROGRESS (COMPLETED at once if it had finished)"
    CANCEL_TASK = "stop the task: CANCELED, then IDLE once it has released its resources"
    FORGET_TASK = "the host has the outputs: forget the task, IDLE"
    EXIT = "leave: EXIT, then end the process"


APPLICATION_ACTIONS: dict[tuple[State, State], Action] = {
    (S.IDLE, S.INPROGRESS): Action.START_TASK,
    (S.IDLE, S.EXIT): Action.EXIT,
    (S.INPROGRESS, S.SUSPENDED): Action.SUSPEND_TASK,
    (S.INPROGRESS, S.CANCELED): Action.CANCEL_TASK,
    (S.SUSPENDED, S.INPROGRESS): Action.RESUME_TASK,
    (S.SUSPENDED, S.CANCELED): Action.CANCEL_TASK,
    (S.COMPLETED, S.IDLE): Action.FORGET_TASK,
}
"""The application's action for each host-requested ``(from, to)`` of :data:`TRANSITIONS`."""


def application_action(current: State, requested: State) -> Optional[Action]:
    """What the application does for ``setState(requested)`` in ``current``; ``None`` when the table has no
    such host-requested transition (the request is ignored or refused, see :func:`answer_set_state`)."""
    if requested not in host_may_request(current):
        return None
    return APPLICATION_ACTIONS[(current, requested)]
