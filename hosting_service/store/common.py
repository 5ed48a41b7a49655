"""What both store backends share: every method of the session store, written once on the generic API.

A backend (:mod:`.sqlite`, :mod:`.postgresql`) supplies only connections and transactions
(:meth:`SQLStore.transaction`, :meth:`SQLStore.reading`), its :class:`~.dialect.Dialect`, :meth:`SQLStore.check`
and :meth:`SQLStore.close`. Every transaction that reads and then writes an instance's rows passes
``key=instance_id``: on PostgreSQL that serialises them per instance (an advisory lock), as ``BEGIN IMMEDIATE``
does for every write on SQLite. It also keeps each instance's event numbers in commit order, which the
event feed's ``after=`` polling relies on: write :meth:`write_event` only in a transaction keyed by its instance.
"""
from __future__ import annotations

import json
import time
import uuid
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any, Iterable, Optional

from hosting_service.model import AvailableData, ObjectDescriptor, Status, from_jsonable, iter_descriptors, to_jsonable
from hosting_service.states import (
    RELEASING_STATES,
    State,
    check_precondition,
    describe_notification,
    is_legal_notification,
)
from hosting_service.store.base import (
    Event,
    ExpiryHook,
    InputObject,
    Instance,
    InstanceEnded,
    Locator,
    NotificationResult,
    UnknownInstance,
)
from hosting_service.store.dialect import Database, Dialect, Row

CHUNK = 500
"""Values per ``IN (...)`` list: well below SQLite's and PostgreSQL's parameter limits."""


def _state(value: Optional[str]) -> Optional[State]:
    return None if value is None else State(value)


def placeholders(values: list[Any]) -> str:
    """``?, ?, ...`` for an ``IN (...)`` list of ``values``."""
    return ",".join("?" * len(values))


class SQLStore(ABC):
    """:class:`hosting_service.store.base.Store` on a SQL database; subclasses give the connections."""

    dialect: Dialect

    def __init__(self) -> None:
        self._expiry_hooks: list[ExpiryHook] = []

    # --- what a backend supplies ----------------------------------------------------------------------

    @abstractmethod
    def transaction(self, key: Optional[str] = None) -> AbstractContextManager[Database]:
        """A write transaction, committed when the block ends (rolled back if it raises). ``key``: what the
        transaction reads and modifies (an instance id); transactions with the same key never interleave."""

    @abstractmethod
    def reading(self) -> AbstractContextManager[Database]:
        """A connection for reads; each statement sees what was committed when it started."""

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`~.base.StoreError` unless the database answers."""

    @abstractmethod
    def close(self) -> None:
        """Give the connections of this process back."""

    # --- hooks ------------------------------------------------------------------------------------------

    def add_expiry_hook(self, hook: ExpiryHook) -> None:
        """Run ``hook(db, instance_id, reason, now) -> list[str]`` inside the transaction that takes an
        instance to IDLE or EXIT or ends it; it returns the ids of the output locations it expired.
        The output-location layer registers itself here so that expiry is atomic with the state."""
        self._expiry_hooks.append(hook)

    # --- instances ------------------------------------------------------------------------------------

    @staticmethod
    def _instance(row: Row) -> Instance:
        return Instance(
            id=row["id"],
            token=row["token"],
            host_url=row["host_url"],
            application_url=row["application_url"],
            created_at=row["created_at"],
            reported_state=_state(row["reported_state"]),
            requested_state=_state(row["requested_state"]),
            ended_at=row["ended_at"],
            end_reason=row["end_reason"],
            options=json.loads(row["options"]),
        )

    def create_instance(self, *, token: str, host_url: str, application_url: str,
                        options: dict[str, Any], instance_id: Optional[str] = None) -> Instance:
        instance_id = instance_id or uuid.uuid4().hex
        now = time.time()
        with self.transaction(key=instance_id) as db:
            db.execute(
                "INSERT INTO instances (id, token, host_url, application_url, created_at, options) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (instance_id, token, host_url, application_url, now, json.dumps(options)),
            )
            self.write_event(db, instance_id, "created", {"hostURL": host_url, "applicationURL": application_url}, now)
        return self.get_instance(instance_id)

    def get_instance(self, instance_id: str) -> Instance:
        with self.reading() as db:
            row = db.execute("SELECT * FROM instances WHERE id = ?", (instance_id,)).fetchone()
        if row is None:
            raise UnknownInstance(f"no such instance: {instance_id}")
        return self._instance(row)

    def instance_by_token(self, token: str) -> Instance:
        with self.reading() as db:
            row = db.execute("SELECT * FROM instances WHERE token = ?", (token,)).fetchone()
        if row is None:
            raise UnknownInstance("no instance has that endpoint")
        return self._instance(row)

    def list_instances(self, *, include_ended: bool = False) -> list[Instance]:
        sql = "SELECT * FROM instances" + ("" if include_ended else " WHERE ended_at IS NULL")
        with self.reading() as db:
            rows = db.execute(sql + " ORDER BY created_at, id").fetchall()
        return [self._instance(r) for r in rows]

    def _live(self, db: Database, instance_id: str) -> Row:
        row = db.execute("SELECT * FROM instances WHERE id = ?", (instance_id,)).fetchone()
        if row is None:
            raise UnknownInstance(f"no such instance: {instance_id}")
        if row["ended_at"] is not None:
            raise InstanceEnded(f"instance {instance_id} has ended ({row['end_reason']})")
        return row

    def check_still(self, db: Database, instance_id: str, operation: str) -> None:
        """The operation's precondition, checked again in the transaction that records its effect: the
        request was judged on the state when it arrived, and a notification may have come in since."""
        check_precondition(operation, _state(self._live(db, instance_id)["reported_state"]))

    def _release_and_expire(self, db: Database, instance_id: str, reason: str, now: float) -> tuple[int, list[str]]:
        released = db.execute("DELETE FROM locators WHERE instance_id = ?", (instance_id,)).rowcount
        if released:
            self.write_event(db, instance_id, "released", {"count": released, "reason": reason}, now)
        expired: list[str] = []
        for hook in self._expiry_hooks:
            expired.extend(hook(db, instance_id, reason, now))
        return released, expired

    def end_instance(self, instance_id: str, reason: str) -> NotificationResult:
        now = time.time()
        with self.transaction(key=instance_id) as db:
            row = self._live(db, instance_id)
            released, expired = self._release_and_expire(db, instance_id, f"instance ended: {reason}", now)
            db.execute("UPDATE instances SET ended_at = ?, end_reason = ? WHERE id = ?", (now, reason, instance_id))
            self.write_event(db, instance_id, "ended", {"reason": reason}, now)
        state = _state(row["reported_state"])
        return NotificationResult(state, state, True, released, expired)

    # --- state machine --------------------------------------------------------------------------------

    def record_notification(self, instance_id: str, state: State) -> NotificationResult:
        """Take the application's report as the truth; record a protocol warning if the table has no such
        transition; on IDLE or EXIT release every locator and expire every output location."""
        now = time.time()
        with self.transaction(key=instance_id) as db:
            row = self._live(db, instance_id)
            previous = _state(row["reported_state"])
            legal = is_legal_notification(previous, state)
            db.execute("UPDATE instances SET reported_state = ? WHERE id = ?", (state.value, instance_id))
            self.write_event(
                db,
                instance_id,
                "state",
                {"from": previous and previous.value, "to": state.value, "legal": legal},
                now,
            )
            if not legal:
                self.write_event(
                    db,
                    instance_id,
                    "warning",
                    {"operation": "NotifyStateChanged", "message": describe_notification(previous, state)},
                    now,
                )
            released, expired = 0, []  # type: tuple[int, list[str]]
            if state in RELEASING_STATES and previous != state:
                released, expired = self._release_and_expire(db, instance_id, f"application reported {state}", now)
        return NotificationResult(previous, state, legal, released, expired)

    def record_requested_state(self, instance_id: str, state: State) -> None:
        now = time.time()
        with self.transaction(key=instance_id) as db:
            self._live(db, instance_id)
            db.execute("UPDATE instances SET requested_state = ? WHERE id = ?", (state.value, instance_id))
            self.write_event(db, instance_id, "requested", {"state": state.value}, now)

    def record_status(self, instance_id: str, status: Status) -> None:
        self.add_event(instance_id, "status", to_jsonable(status))

    def add_event(self, instance_id: str, kind: str, data: dict[str, Any]) -> int:
        with self.transaction(key=instance_id) as db:
            self._live(db, instance_id)
            return self.write_event(db, instance_id, kind, data, time.time())

    def write_event(self, db: Database, instance_id: str, kind: str, data: dict[str, Any], at: float) -> int:
        """Append an event within the caller's transaction (keyed by ``instance_id``), so that it is atomic
        with what it reports; returns its number."""
        row = db.execute(
            "INSERT INTO events (instance_id, at, kind, data) VALUES (?, ?, ?, ?) RETURNING seq",
            (instance_id, at, kind, json.dumps(data)),
        ).fetchone()
        return int(row["seq"])

    def events(self, instance_id: str, *, after: int = 0, kinds: Optional[Iterable[str]] = None) -> list[Event]:
        sql = "SELECT * FROM events WHERE instance_id = ? AND seq > ?"
        args: list[Any] = [instance_id, after]
        if kinds:
            kinds = list(kinds)
            sql += f" AND kind IN ({placeholders(kinds)})"
            args.extend(kinds)
        with self.reading() as db:
            rows = db.execute(sql + " ORDER BY seq", args).fetchall()
        return [Event(r["seq"], r["instance_id"], r["at"], r["kind"], json.loads(r["data"])) for r in rows]

    # --- host as data source --------------------------------------------------------------------------

    def add_inputs(self, instance_id: str, objects: list[InputObject]) -> None:
        with self.transaction(key=instance_id) as db:
            self._live(db, instance_id)
            db.executemany(
                'INSERT INTO inputs (instance_id, uuid, descriptor, path, "offset", length) VALUES (?, ?, ?, ?, ?, ?)',
                [
                    (instance_id, (o.descriptor.DescriptorUuid or "").lower(), json.dumps(to_jsonable(o.descriptor)),
                     o.path, o.offset, o.length)
                    for o in objects
                ],
            )
            self.write_event(db, instance_id, "inputs", {"count": len(objects)}, time.time())

    def inputs(self, instance_id: str, uuids: Iterable[str]) -> dict[str, InputObject]:
        """The offered inputs among ``uuids`` (compared case-insensitively), keyed by lower-case UUID."""
        wanted = list({u.lower() for u in uuids})
        found: dict[str, InputObject] = {}
        with self.reading() as db:
            for i in range(0, len(wanted), CHUNK):
                chunk = wanted[i : i + CHUNK]
                rows = db.execute(
                    f"SELECT * FROM inputs WHERE instance_id = ? AND uuid IN ({placeholders(chunk)})",
                    [instance_id, *chunk],
                )
                for r in rows:
                    found[r["uuid"]] = InputObject(
                        from_jsonable(ObjectDescriptor, json.loads(r["descriptor"])), r["path"], r["offset"],
                        r["length"])
        return found

    def add_locators(self, locators: list[Locator]) -> None:
        """Keep the locators of one GetData answer; refused (``PreconditionViolation``) if the application
        has meanwhile left the states GetData is allowed in, e.g. gone IDLE, which released everything."""
        if not locators:
            return
        instance_id = locators[0].instance_id
        with self.transaction(key=instance_id) as db:
            self.check_still(db, instance_id, "GetData")
            db.executemany(
                "INSERT INTO locators (locator, instance_id, source, uri, path, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(l.locator, l.instance_id, l.source, l.uri, l.path, l.created_at) for l in locators],
            )
            self.write_event(db, instance_id, "locator", {"count": len(locators)}, time.time())

    def release_locators(self, instance_id: str, locators: Iterable[str]) -> int:
        """Forget the instance's locators among ``locators``: a released locator is never used again
        (PS3.19 §8.3.6), and only the count of released ones stays, in the ``released`` event."""
        ids = [l.lower() for l in locators]
        if not ids:
            return 0
        now = time.time()
        with self.transaction(key=instance_id) as db:
            self._live(db, instance_id)
            count = 0
            for i in range(0, len(ids), CHUNK):
                chunk = ids[i : i + CHUNK]
                count += db.execute(
                    f"DELETE FROM locators WHERE instance_id = ? AND locator IN ({placeholders(chunk)})",
                    [instance_id, *chunk],
                ).rowcount
            self.write_event(db, instance_id, "released",
                             {"count": count, "requested": len(ids), "reason": "ReleaseData"}, now)
        return count

    def active_locators(self, instance_id: str) -> list[Locator]:
        with self.reading() as db:
            rows = db.execute(
                "SELECT * FROM locators WHERE instance_id = ? ORDER BY created_at, locator", (instance_id,)
            ).fetchall()
        return [Locator(r["locator"], r["instance_id"], r["source"], r["uri"], r["path"], r["created_at"])
                for r in rows]

    # --- host as recipient ----------------------------------------------------------------------------

    def record_outputs(self, instance_id: str, data: AvailableData, last_data: bool) -> int:
        """Keep one NotifyDataAvailable call of the application; returns how many descriptors it carried."""
        count = sum(1 for _ in iter_descriptors(data))
        now = time.time()
        with self.transaction(key=instance_id) as db:
            self.check_still(db, instance_id, "NotifyDataAvailable")
            db.execute(
                "INSERT INTO announcements (instance_id, data, last_data) VALUES (?, ?, ?)",
                (instance_id, json.dumps(to_jsonable(data)), int(last_data)),
            )
            self.write_event(db, instance_id, "outputs", {"descriptors": count, "lastData": last_data}, now)
        return count

    def announced_outputs(self, instance_id: str) -> tuple[list[AvailableData], bool]:
        """Every AvailableData the application announced, in order, and whether the last had lastData."""
        with self.reading() as db:
            rows = db.execute(
                "SELECT data, last_data FROM announcements WHERE instance_id = ? ORDER BY seq", (instance_id,)
            ).fetchall()
        data = [from_jsonable(AvailableData, json.loads(r["data"])) for r in rows]
        return data, bool(rows and rows[-1]["last_data"])
