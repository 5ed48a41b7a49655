"""What the session store keeps per hosted-application instance, and the interface every backend offers.

The store is the one place where the state of an instance lives: gunicorn workers answer the
application's calls from it, the orchestration learns of the application's notifications from it, and it
survives a restart. Rules about states come from :mod:`hosting_service.states`; the store applies them
atomically (a notification, its protocol warning and the releases and expiries it causes are one
transaction).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterable, Optional, Protocol

from hosting_service.errors import ClientError
from hosting_service.model import AvailableData, ObjectDescriptor, Status
from hosting_service.states import State
from hosting_service.store.dialect import Database, Dialect


class StoreError(Exception):
    """Base class of the store's errors."""


class UnknownInstance(StoreError, ClientError):
    """No live instance has that id or token (the caller's mistake: a SOAP Client fault, HTTP 404)."""

    http_status = 404


class InstanceEnded(StoreError, ClientError):
    """The instance exists but has ended; it accepts nothing any more (a Client fault, HTTP 409)."""

    http_status = 409


@dataclass
class Instance:
    id: str
    token: str
    host_url: str
    application_url: str
    created_at: float
    reported_state: Optional[State] = None
    """What the application last reported with NotifyStateChanged (``None``: not yet IDLE)."""
    requested_state: Optional[State] = None
    """What the host last asked for with SetState."""
    ended_at: Optional[float] = None
    end_reason: Optional[str] = None
    options: dict[str, Any] = field(default_factory=dict)
    """Per-instance settings, e.g. ``output_semantics``, ``label``, ``app_command``."""

    @property
    def ended(self) -> bool:
        return self.ended_at is not None


@dataclass
class Event:
    seq: int
    instance_id: str
    at: float
    kind: str
    """``state`` (application reported), ``requested`` (host asked), ``status``, ``warning``,
    ``inputs``, ``outputs``, ``locator``, ``released``, ``output_location``, ``upload``, ``expired``,
    ``ended``, ``log``."""
    data: dict[str, Any]


@dataclass
class InputObject:
    """An object the host offers to an instance: its descriptor and where its bytes are."""

    descriptor: ObjectDescriptor
    path: str
    offset: int = 0
    length: int = -1
    """-1: to the end of the file."""


@dataclass
class Locator:
    """An ObjectLocator the host issued in a GetData answer and the application has not released yet
    (released ones are forgotten: by ReleaseData, at IDLE or EXIT, when the instance ends)."""

    locator: str
    instance_id: str
    source: str
    uri: str
    path: str
    created_at: float


@dataclass
class NotificationResult:
    previous: Optional[State]
    current: Optional[State]
    """``None`` only when an instance that never reported a state is ended."""
    legal: bool
    released_locators: int
    expired_locations: list[str]
    """Ids of output locations this notification expired (IDLE or EXIT)."""


ExpiryHook = Callable[[Database, str, str, float], list[str]]
"""``hook(db, instance_id, reason, now)``, run in the transaction that takes an instance to IDLE or EXIT or
ends it; returns the ids of the output locations it expired."""


class Store(Protocol):
    """The session store. Every method is safe to call from several threads and processes."""

    dialect: Dialect

    # instances
    def create_instance(self, *, token: str, host_url: str, application_url: str,
                        options: dict[str, Any], instance_id: Optional[str] = None) -> Instance: ...
    def get_instance(self, instance_id: str) -> Instance: ...
    def instance_by_token(self, token: str) -> Instance: ...
    def list_instances(self, *, include_ended: bool = False) -> list[Instance]: ...
    def end_instance(self, instance_id: str, reason: str) -> NotificationResult: ...

    # state machine
    def record_notification(self, instance_id: str, state: State) -> NotificationResult: ...
    def record_requested_state(self, instance_id: str, state: State) -> None: ...
    def record_status(self, instance_id: str, status: Status) -> None: ...
    def add_event(self, instance_id: str, kind: str, data: dict[str, Any]) -> int: ...
    def events(self, instance_id: str, *, after: int = 0, kinds: Optional[Iterable[str]] = None) -> list[Event]: ...

    # host as data source
    def add_inputs(self, instance_id: str, objects: list[InputObject]) -> None: ...
    def inputs(self, instance_id: str, uuids: Iterable[str]) -> dict[str, InputObject]: ...
    def add_locators(self, locators: list[Locator]) -> None: ...
    def release_locators(self, instance_id: str, locators: Iterable[str]) -> int: ...
    def active_locators(self, instance_id: str) -> list[Locator]: ...

    # host as recipient
    def record_outputs(self, instance_id: str, data: AvailableData, last_data: bool) -> int: ...
    def announced_outputs(self, instance_id: str) -> tuple[list[AvailableData], bool]: ...

    # the generic database API of the layers that keep their own tables in the store (outputs, models,
    # jobs; their tables are created by hosting_service.store.schema), written in the same transactions
    # as the state: see hosting_service.store.dialect
    def transaction(self, key: Optional[str] = None) -> ContextManager[Database]: ...
    def reading(self) -> ContextManager[Database]: ...
    def write_event(self, db: Database, instance_id: str, kind: str, data: dict[str, Any], at: float) -> int: ...
    def check_still(self, db: Database, instance_id: str, operation: str) -> None: ...
    def add_expiry_hook(self, hook: ExpiryHook) -> None: ...

    # operations
    def check(self) -> None: ...
    def close(self) -> None: ...
