"""The embedded session store: one SQLite file shared by every gunicorn worker of a deployment.

WAL journaling lets readers run beside the one writer; every write is a ``BEGIN IMMEDIATE`` transaction
(so two workers never interleave a read-modify-write of the same instance) with a busy timeout; each
thread of each process has its own connection. State survives a restart because there is no other state.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

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
    InputObject,
    Instance,
    InstanceEnded,
    Locator,
    NotificationResult,
    StoreError,
    UnknownInstance,
)
from hosting_service.store.permissions import PRIVATE_DIR, private_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    host_url TEXT NOT NULL,
    application_url TEXT NOT NULL,
    created_at REAL NOT NULL,
    reported_state TEXT,
    requested_state TEXT,
    ended_at REAL,
    end_reason TEXT,
    options TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_instance ON events (instance_id, seq);
CREATE TABLE IF NOT EXISTS inputs (
    instance_id TEXT NOT NULL,
    uuid TEXT NOT NULL,
    descriptor TEXT NOT NULL,
    path TEXT NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    PRIMARY KEY (instance_id, uuid)
);
CREATE TABLE IF NOT EXISTS locators (
    locator TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    source TEXT NOT NULL,
    uri TEXT NOT NULL,
    path TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS locators_of_instance ON locators (instance_id);
CREATE TABLE IF NOT EXISTS announcements (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    data TEXT NOT NULL,
    last_data INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS announcements_by_instance ON announcements (instance_id, seq);
"""

class SQLiteDialect:
    """Replaced by the store branch: what jobs SQL needs spelled per backend. ``BEGIN IMMEDIATE`` already
    serialises writers, so no row locks are spelled here."""

    name = "sqlite"
    skip_locked = ""
    for_update = ""


def _state(value: Optional[str]) -> Optional[State]:
    return None if value is None else State(value)


class SQLiteStore:
    """:class:`hosting_service.store.base.Store` on one SQLite file."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = 30_000):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        private_database(self.path)  # it holds tokens in clear
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._expiry_hooks: list = []
        self._connection().executescript(SCHEMA)  # idempotent; executescript manages its own transaction

    # --- connections and transactions -----------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: the write lock is taken before anything is read."""
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")

    def _read(self) -> sqlite3.Connection:
        return self._connection()

    def add_expiry_hook(self, hook) -> None:
        """Run ``hook(db, instance_id, reason, now) -> list[str]`` inside the transaction that takes an
        instance to IDLE or EXIT or ends it; it returns the ids of the output locations it expired.
        The output-location layer registers itself here so that expiry is atomic with the state."""
        self._expiry_hooks.append(hook)

    @contextmanager
    def transaction(self, key: Optional[str] = None) -> Iterator[sqlite3.Connection]:
        """A write transaction for the layers that keep their own tables in this store (``key``: replaced
        by the store branch; ``BEGIN IMMEDIATE`` serialises every writer anyway)."""
        with self._write() as db:
            yield db

    def read(self) -> sqlite3.Connection:
        return self._read()

    # --- minimal forms of CONTRACT section 1's check() and reading(), for /healthz and /metrics; the store
    # branch replaces them (take its versions when merging) ---

    def check(self) -> None:
        """Raise :class:`StoreError` when the database cannot be used: its file is gone (a connection
        already open would still answer) or it does not answer a query."""
        if not self.path.exists():
            raise StoreError("the database file is gone")
        try:
            self._connection().execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"the database does not answer: {exc}") from None

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        yield self._read()

    dialect = SQLiteDialect()
    """SQL spelled per backend (replaced by the store branch)."""

    # --- instances ------------------------------------------------------------------------------------

    @staticmethod
    def _instance(row: sqlite3.Row) -> Instance:
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
        with self._write() as db:
            db.execute(
                "INSERT INTO instances (id, token, host_url, application_url, created_at, options) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (instance_id, token, host_url, application_url, now, json.dumps(options)),
            )
            self.write_event(db, instance_id, "created", {"hostURL": host_url, "applicationURL": application_url}, now)
        return self.get_instance(instance_id)

    def get_instance(self, instance_id: str) -> Instance:
        row = self._read().execute("SELECT * FROM instances WHERE id = ?", (instance_id,)).fetchone()
        if row is None:
            raise UnknownInstance(f"no such instance: {instance_id}")
        return self._instance(row)

    def instance_by_token(self, token: str) -> Instance:
        row = self._read().execute("SELECT * FROM instances WHERE token = ?", (token,)).fetchone()
        if row is None:
            raise UnknownInstance("no instance has that endpoint")
        return self._instance(row)

    def list_instances(self, *, include_ended: bool = False) -> list[Instance]:
        sql = "SELECT * FROM instances" + ("" if include_ended else " WHERE ended_at IS NULL")
        return [self._instance(r) for r in self._read().execute(sql + " ORDER BY created_at")]

    def _live(self, db: sqlite3.Connection, instance_id: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM instances WHERE id = ?", (instance_id,)).fetchone()
        if row is None:
            raise UnknownInstance(f"no such instance: {instance_id}")
        if row["ended_at"] is not None:
            raise InstanceEnded(f"instance {instance_id} has ended ({row['end_reason']})")
        return row

    def _check_still(self, db: sqlite3.Connection, instance_id: str, operation: str) -> None:
        """The operation's precondition, checked again in the transaction that records its effect: the
        request was judged on the state when it arrived, and a notification may have come in since."""
        check_precondition(operation, _state(self._live(db, instance_id)["reported_state"]))

    def _release_and_expire(self, db, instance_id: str, reason: str, now: float) -> tuple[int, list[str]]:
        released = db.execute("DELETE FROM locators WHERE instance_id = ?", (instance_id,)).rowcount
        if released:
            self.write_event(db, instance_id, "released", {"count": released, "reason": reason}, now)
        expired: list[str] = []
        for hook in self._expiry_hooks:
            expired.extend(hook(db, instance_id, reason, now))
        return released, expired

    def end_instance(self, instance_id: str, reason: str) -> NotificationResult:
        now = time.time()
        with self._write() as db:
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
        with self._write() as db:
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
            released, expired = 0, []
            if state in RELEASING_STATES and previous != state:
                released, expired = self._release_and_expire(db, instance_id, f"application reported {state}", now)
        return NotificationResult(previous, state, legal, released, expired)

    def record_requested_state(self, instance_id: str, state: State) -> None:
        now = time.time()
        with self._write() as db:
            self._live(db, instance_id)
            db.execute("UPDATE instances SET requested_state = ? WHERE id = ?", (state.value, instance_id))
            self.write_event(db, instance_id, "requested", {"state": state.value}, now)

    def record_status(self, instance_id: str, status: Status) -> None:
        self.add_event(instance_id, "status", to_jsonable(status))

    def add_event(self, instance_id: str, kind: str, data: dict[str, Any]) -> int:
        with self._write() as db:
            self._live(db, instance_id)
            return self.write_event(db, instance_id, kind, data, time.time())

    @staticmethod
    def write_event(db, instance_id: str, kind: str, data: dict[str, Any], at: float) -> int:
        """Append an event within the caller's transaction, so that it is atomic with what it reports."""
        cur = db.execute(
            "INSERT INTO events (instance_id, at, kind, data) VALUES (?, ?, ?, ?)",
            (instance_id, at, kind, json.dumps(data)),
        )
        return cur.lastrowid

    def events(self, instance_id: str, *, after: int = 0, kinds: Optional[Iterable[str]] = None) -> list[Event]:
        sql = "SELECT * FROM events WHERE instance_id = ? AND seq > ?"
        args: list[Any] = [instance_id, after]
        if kinds:
            kinds = list(kinds)
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            args.extend(kinds)
        rows = self._read().execute(sql + " ORDER BY seq", args).fetchall()
        return [Event(r["seq"], r["instance_id"], r["at"], r["kind"], json.loads(r["data"])) for r in rows]

    # --- host as data source --------------------------------------------------------------------------

    def add_inputs(self, instance_id: str, objects: list[InputObject]) -> None:
        with self._write() as db:
            self._live(db, instance_id)
            db.executemany(
                "INSERT INTO inputs (instance_id, uuid, descriptor, path, offset, length) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (instance_id, o.descriptor.DescriptorUuid.lower(), json.dumps(to_jsonable(o.descriptor)),
                     o.path, o.offset, o.length)
                    for o in objects
                ],
            )
            self.write_event(db, instance_id, "inputs", {"count": len(objects)}, time.time())

    def inputs(self, instance_id: str, uuids: Iterable[str]) -> dict[str, InputObject]:
        """The offered inputs among ``uuids`` (compared case-insensitively), keyed by lower-case UUID."""
        wanted = list({u.lower() for u in uuids})
        found: dict[str, InputObject] = {}
        db = self._read()
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            rows = db.execute(
                f"SELECT * FROM inputs WHERE instance_id = ? AND uuid IN ({','.join('?' * len(chunk))})",
                [instance_id, *chunk],
            )
            for r in rows:
                found[r["uuid"]] = InputObject(
                    from_jsonable(ObjectDescriptor, json.loads(r["descriptor"])), r["path"], r["offset"], r["length"]
                )
        return found

    def add_locators(self, locators: list[Locator]) -> None:
        """Keep the locators of one GetData answer; refused (``PreconditionViolation``) if the application
        has meanwhile left the states GetData is allowed in, e.g. gone IDLE, which released everything."""
        if not locators:
            return
        with self._write() as db:
            self._check_still(db, locators[0].instance_id, "GetData")
            db.executemany(
                "INSERT INTO locators (locator, instance_id, source, uri, path, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(l.locator, l.instance_id, l.source, l.uri, l.path, l.created_at) for l in locators],
            )
            self.write_event(db, locators[0].instance_id, "locator", {"count": len(locators)}, time.time())

    def release_locators(self, instance_id: str, locators: Iterable[str]) -> int:
        """Forget the instance's locators among ``locators``: a released locator is never used again
        (PS3.19 §8.3.6), and only the count of released ones stays, in the ``released`` event."""
        ids = [l.lower() for l in locators]
        if not ids:
            return 0
        now = time.time()
        with self._write() as db:
            self._live(db, instance_id)
            count = 0
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                count += db.execute(
                    f"DELETE FROM locators WHERE instance_id = ? AND locator IN ({','.join('?' * len(chunk))})",
                    [instance_id, *chunk],
                ).rowcount
            self.write_event(db, instance_id, "released", {"count": count, "requested": len(ids), "reason": "ReleaseData"}, now)
        return count

    def active_locators(self, instance_id: str) -> list[Locator]:
        rows = self._read().execute(
            "SELECT * FROM locators WHERE instance_id = ? ORDER BY created_at", (instance_id,)
        )
        return [Locator(r["locator"], r["instance_id"], r["source"], r["uri"], r["path"], r["created_at"]) for r in rows]

    # --- host as recipient ----------------------------------------------------------------------------

    def record_outputs(self, instance_id: str, data: AvailableData, last_data: bool) -> int:
        """Keep one NotifyDataAvailable call of the application; returns how many descriptors it carried."""
        count = sum(1 for _ in iter_descriptors(data))
        now = time.time()
        with self._write() as db:
            self._check_still(db, instance_id, "NotifyDataAvailable")
            db.execute(
                "INSERT INTO announcements (instance_id, data, last_data) VALUES (?, ?, ?)",
                (instance_id, json.dumps(to_jsonable(data)), int(last_data)),
            )
            self.write_event(db, instance_id, "outputs", {"descriptors": count, "lastData": last_data}, now)
        return count

    def announced_outputs(self, instance_id: str) -> tuple[list[AvailableData], bool]:
        """Every AvailableData the application announced, in order, and whether the last had lastData."""
        rows = self._read().execute(
            "SELECT data, last_data FROM announcements WHERE instance_id = ? ORDER BY seq", (instance_id,)
        ).fetchall()
        data = [from_jsonable(AvailableData, json.loads(r["data"])) for r in rows]
        return data, bool(rows and rows[-1]["last_data"])
