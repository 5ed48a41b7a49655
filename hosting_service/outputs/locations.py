"""Output locations (PS3.19 §8.2.3): what GetOutputLocation hands out, how long it lives, what it received.

**Issue.** Every GetOutputLocation call gets a new location: a fresh, empty, mode 0700 folder under the
instance's work area (see :mod:`.area`), offered as ``file:///abs/path/`` (RFC 8089) or as
``<public_url>/outputs/<token>/``, whichever protocol :mod:`.protocols` picks. The token (192 bits from
``secrets``) is the only credential of an http: location (the standard allows authentication in the URI).

**Semantics** (instance option ``output_semantics``, default the ``output_semantics`` setting):

* ``directory`` (default): the URI ends in ``/`` and names the folder. With file: the application creates
  any files (and sub-folders) in it; with http: it PUTs or POSTs each file to ``<URI><name>``, one path
  segment per file, each name written once.
* ``file`` (XIP's RECIST does ``new File(uri)`` and writes XML to it): the URI names one file,
  :data:`FILE_NAME` inside the fresh folder (``file:///…/<id>/output``, ``<public_url>/outputs/<token>/output``).
  With file: the application creates and writes that file; with http: it PUTs or POSTs its body to the URI
  itself, once. Other names below an http: file location do not exist (404).

**Lifetime.** A location is ``active`` until one of: the application reports IDLE or EXIT, or the instance
ends (``expired``; the store's expiry hook, in the transaction that records the state), or the
application returns the location's URI, or a URI under it, in an ObjectLocator of its GetData
(``returned``; :meth:`OutputLocations.hand_back`). At that moment its folder moves into the instance's
results and the data is the host's. An http: upload still in flight at that moment is refused (410, its
temporary file deleted, an ``upload`` event with outcome ``refused``): a file is stored only by a rename
into the location done in a transaction that finds the location active, so the set of files the host
takes is exactly what was complete at the moment of closing. The application's URIs keep working for
the host: :meth:`OutputLocations.resolve` maps them to where the bytes are now.

**Retention** (``output_retention``): ``keep`` leaves the results in place when the instance ends,
``delete`` removes the instance's outputs, results and partial uploads then (the records stay).

Everything lives in the store's SQLite file, and every rule is checked in a store transaction, so it
holds across gunicorn workers and restarts. Every process that records notifications or ends instances
must have constructed an :class:`OutputLocations` on its store (that registers the expiry hook).
"""
from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Optional
from urllib.parse import quote, urlsplit

from hosting_service.config import Settings
from hosting_service.errors import ClientError
from hosting_service.outputs.area import InstanceArea, writer_alive
from hosting_service.outputs.protocols import choose_protocol
from hosting_service.outputs.uris import directory_uri, file_uri_path, web_location_parts
from hosting_service.states import State, check_precondition
from hosting_service.store import Instance, InstanceEnded, SQLiteStore, UnknownInstance
from hosting_service.tokens import new_token

log = logging.getLogger("dicom_host.outputs")

SCHEMA = """
CREATE TABLE IF NOT EXISTS output_locations (
    id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    protocol TEXT NOT NULL,
    semantics TEXT NOT NULL,
    uri TEXT NOT NULL,
    token TEXT UNIQUE,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    closed_at REAL,
    closed_reason TEXT,
    deleted_at REAL
);
CREATE INDEX IF NOT EXISTS output_locations_by_instance ON output_locations (instance_id, state);
CREATE TABLE IF NOT EXISTS output_files (
    location_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT,
    part TEXT,
    started_at REAL NOT NULL,
    finished_at REAL,
    PRIMARY KEY (location_id, name)
);
CREATE INDEX IF NOT EXISTS output_files_by_instance ON output_files (instance_id, state);
"""

ACTIVE, RETURNED, EXPIRED = "active", "returned", "expired"
WRITING, COMPLETE = "writing", "complete"
"""``output_files.state``: an http: upload in progress (``size`` is the quota it holds), or a stored file."""

SEMANTICS = ("directory", "file")
FILE_NAME = "output"
"""The one file a location with ``file`` semantics names."""

CHECK_STEP = 16 << 20
"""An upload re-checks its location and extends its quota reservation every this many bytes."""

NO_SUCH_LOCATION = "no output location has this address"
"""The one answer for every unknown token, so that a guess learns nothing."""


class NotInOutputLocation(LookupError):
    """A URI that is not inside one of the instance's output locations (or leads out of it)."""


def output_semantics(options: dict[str, Any], settings: Settings) -> str:
    """``directory`` or ``file`` for an instance with these options; ``ValueError`` for another value."""
    value = options.get("output_semantics") or settings.output_semantics
    if value not in SEMANTICS:
        raise ValueError(f"output_semantics must be 'directory' or 'file', not {value!r}")
    return value


@dataclass(frozen=True)
class Location:
    id: str
    instance_id: str
    protocol: str
    semantics: str
    uri: str
    token: Optional[str]
    state: str
    created_at: float
    closed_at: Optional[float]
    closed_reason: Optional[str]
    deleted_at: Optional[float]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Location":
        return cls(**{k: row[k] for k in row.keys()})


@dataclass
class Upload:
    """An http: upload admitted by :meth:`OutputLocations.begin_upload`: write the body to ``file``."""

    location: Location
    name: str
    file: BinaryIO
    part: Path
    expected: Optional[int]
    """Content-Length, or ``None`` for a chunked body."""
    reserved: int
    """Bytes of the instance's quota this upload holds."""
    next_check: int = CHECK_STEP
    stored_at: Optional[Path] = None
    """Where the body was renamed to (set inside the completing transaction)."""


class OutputLocations:
    """The output locations of every instance of one deployment."""

    def __init__(self, store: SQLiteStore, settings: Settings):
        self._store = store
        self._settings = settings
        self._root = settings.instances_dir.resolve()
        self._web_scheme = urlsplit(settings.public_url).scheme.lower()
        store.read().executescript(SCHEMA)
        store.add_expiry_hook(self._expire)

    def area(self, instance_id: str) -> InstanceArea:
        return InstanceArea(self._root / instance_id)

    # --- GetOutputLocation ----------------------------------------------------------------------------

    def issue(self, instance: Instance, preferred_protocols: Optional[list[str]]) -> str:
        """A new active location for ``instance`` in the first preferred protocol the deployment offers.

        Raises :class:`ClientError` when none is offered; re-checks the §8.2.3 precondition in the
        transaction that records the location (``PreconditionViolation``, or ``InstanceEnded``), so a
        location never outlives the state that allowed it.
        """
        protocol = choose_protocol(preferred_protocols, self._settings.output_protocols, self._web_scheme)
        semantics = output_semantics(instance.options, self._settings)
        location_id = uuid.uuid4().hex
        folder = self.area(instance.id).create(location_id)
        token = None
        if protocol == "file":
            uri = directory_uri(folder)
        else:
            token = new_token()
            uri = f"{self._settings.public_url_base}/outputs/{token}/"
        if semantics == "file":
            uri += FILE_NAME
        now = time.time()
        try:
            with self._store.transaction() as db:
                self._check_may_issue(db, instance.id)
                db.execute(
                    "INSERT INTO output_locations (id, instance_id, protocol, semantics, uri, token, state, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (location_id, instance.id, protocol, semantics, uri, token, ACTIVE, now),
                )
                self._store.write_event(db, instance.id, "output_location", {
                    "location": location_id, "action": "issued", "protocol": protocol, "semantics": semantics,
                    "uri": uri,
                }, now)
        except BaseException:
            folder.rmdir()
            raise
        return uri

    @staticmethod
    def _check_may_issue(db: sqlite3.Connection, instance_id: str) -> None:
        # The store's own row, read inside this transaction: no notification can slip in between.
        row = db.execute("SELECT reported_state, ended_at, end_reason FROM instances WHERE id = ?",
                         (instance_id,)).fetchone()
        if row is None:
            raise UnknownInstance(f"no instance {instance_id!r}")
        if row["ended_at"] is not None:
            raise InstanceEnded(f"instance {instance_id} has ended ({row['end_reason']})")
        check_precondition("GetOutputLocation", row["reported_state"] and State(row["reported_state"]))

    # --- closing: expiry (store hook) and hand-back ---------------------------------------------------

    def _expire(self, db: sqlite3.Connection, instance_id: str, reason: str, now: float) -> list[str]:
        """The store's expiry hook: close every active location of the instance (IDLE, EXIT, end). Its file
        work is a rename per location; deleting data at the end waits for :meth:`after_end`."""
        self._reap(db, instance_id, now)
        rows = db.execute("SELECT * FROM output_locations WHERE instance_id = ? AND state = ?",
                          (instance_id, ACTIVE)).fetchall()
        expired = [Location.from_row(r) for r in rows]
        for location in expired:
            self._close(db, location, EXPIRED, reason, now)
        if expired:
            self._store.write_event(db, instance_id, "expired",
                                    {"locations": [l.id for l in expired], "reason": reason}, now)
        return [l.id for l in expired]

    def after_end(self, instance_id: str) -> None:
        """File work once an instance has ended (after the store's transaction, never under its lock): drop
        its delivery cache and, with retention ``delete``, its outputs and results."""
        area = self.area(instance_id)
        area.drop_delivery_cache()
        if self._settings.output_retention == "delete":
            area.delete()
            with self._store.transaction() as db:
                db.execute("UPDATE output_locations SET deleted_at = ? WHERE instance_id = ? AND deleted_at IS NULL",
                           (time.time(), instance_id))

    def hand_back(self, instance_id: str, uris: list[str]) -> list[str]:
        """The application returned ``uris`` (ObjectLocator URIs of its GetData): every active location of
        this instance that is, or contains, one of them is ``returned`` and its data becomes the host's.

        URIs that are not in a location of this instance are ignored. Returns the ids of the locations
        this call closed.
        """
        wanted: list[str] = []
        for uri in uris:
            try:
                location, _names = self._locate(instance_id, uri)
            except NotInOutputLocation:
                continue
            if location.id not in wanted:
                wanted.append(location.id)
        returned: list[str] = []
        now = time.time()
        with self._store.transaction() as db:
            for location_id in wanted:
                location = self._location(db, location_id)
                if location.state == ACTIVE:
                    self._close(db, location, RETURNED, "returned by the application in GetData", now)
                    returned.append(location_id)
            if returned:
                self._store.write_event(db, instance_id, "output_location",
                                        {"locations": returned, "action": "returned"}, now)
        return returned

    def _close(self, db: sqlite3.Connection, location: Location, state: str, reason: str, now: float) -> None:
        """Stop ``location`` taking writes and move its folder into the results, in the caller's transaction.

        A failed move is logged, not raised: closing must never stop an instance from going IDLE or
        ending, and :meth:`folder` finds the data where it stayed.
        """
        db.execute("UPDATE output_locations SET state = ?, closed_at = ?, closed_reason = ? WHERE id = ?",
                   (state, now, reason, location.id))
        area = self.area(location.instance_id)
        try:
            area.retire(location.id)
        except OSError as exc:
            log.error("instance %s: output location %s stays in %s: %s", location.instance_id, location.id,
                      area.live(location.id), exc)
        if location.protocol == "file":  # take inventory: from now on these are the files the host received
            db.executemany(
                "INSERT OR IGNORE INTO output_files (location_id, instance_id, name, state, size, started_at,"
                " finished_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(location.id, location.instance_id, name, COMPLETE, size, now, now)
                 for name, size in area.files(self._folder(location, state))],
            )

    # --- where the bytes are ---------------------------------------------------------------------------

    def _folder(self, location: Location, state: Optional[str] = None) -> Path:
        """The folder that holds the location's files now: its own while active, its results folder after."""
        area = self.area(location.instance_id)
        kept = area.kept(location.id)
        if (state or location.state) != ACTIVE and kept.exists():
            return kept
        return area.live(location.id)

    def resolve(self, instance_id: str, uri: str) -> Path:
        """Where the bytes named by ``uri`` (a location URI of this instance, file: or http:, or a URI under
        one) are now: in the location's folder while it is active, in the instance's results after.

        Raises :class:`NotInOutputLocation` for a URI outside this instance's locations, or one that
        leads out of its location (``..``, symbolic links).
        """
        location, names = self._locate(instance_id, uri)
        folder = self._folder(location)
        path = folder.joinpath(*names)
        real = path.resolve()
        if real != folder.resolve() and not real.is_relative_to(folder.resolve()):
            raise NotInOutputLocation(f"{uri} leads out of its output location")
        return real

    def _locate(self, instance_id: str, uri: str) -> tuple[Location, list[str]]:
        """The location of this instance a URI is in, and the names below the location's folder."""
        db = self._store.read()
        found: Optional[sqlite3.Row] = None
        names: list[str] = []
        web = web_location_parts(uri, self._settings.public_url_base)
        if web is not None and len(web[1]) <= 1:  # an http: location has files, no sub-folders
            token, names = web
            found = db.execute("SELECT * FROM output_locations WHERE token = ? AND instance_id = ?",
                               (token, instance_id)).fetchone()
        else:
            path = file_uri_path(uri)
            outputs = self.area(instance_id).outputs
            if path is not None and path.is_relative_to(outputs) and path != outputs:
                location_id, *names = path.relative_to(outputs).parts
                found = db.execute("SELECT * FROM output_locations WHERE id = ? AND instance_id = ? AND protocol = ?",
                                   (location_id, instance_id, "file")).fetchone()
        if found is None:
            raise NotInOutputLocation(f"{uri} is not in an output location of instance {instance_id}")
        return Location.from_row(found), names

    # --- what each location received ------------------------------------------------------------------

    def describe(self, instance_id: str) -> list[dict[str, Any]]:
        """Each location of the instance, oldest first: protocol, URI, state, where its data is, and the
        files received (``name``, ``size``, ``sha256``, ``state``).

        File states: ``complete`` (stored; for file: locations, found when the location closed),
        ``writing`` (an http: upload in progress; ``size`` so far), ``present`` (in an active file:
        location, still the application's; no checksum yet), ``deleted`` (removed by retention).
        """
        self._reap_abandoned(instance_id)
        self._checksum_taken_files(instance_id)
        db = self._store.read()
        locations = [Location.from_row(r) for r in db.execute(
            "SELECT * FROM output_locations WHERE instance_id = ? ORDER BY created_at, rowid", (instance_id,))]
        files: dict[str, list[dict[str, Any]]] = {}
        for r in db.execute("SELECT * FROM output_files WHERE instance_id = ? ORDER BY name", (instance_id,)):
            size = r["size"]
            if r["state"] == WRITING:
                size = Path(r["part"]).stat().st_size if Path(r["part"]).exists() else 0
            files.setdefault(r["location_id"], []).append(
                {"name": r["name"], "size": size, "sha256": r["sha256"], "state": r["state"]})
        described = []
        for location in locations:
            received = files.get(location.id, [])
            if location.deleted_at is not None:
                received = [{**f, "state": "deleted"} for f in received]
            elif location.protocol == "file" and location.state == ACTIVE:
                received = [{"name": n, "size": s, "sha256": None, "state": "present"}
                            for n, s in InstanceArea.files(self._folder(location))]
            described.append({
                "id": location.id,
                "protocol": location.protocol,
                "semantics": location.semantics,
                "uri": location.uri,
                "state": location.state,
                "createdAt": location.created_at,
                "closedAt": location.closed_at,
                "closedReason": location.closed_reason,
                "path": None if location.deleted_at is not None else str(self._folder(location)),
                "dataDeleted": location.deleted_at is not None,
                "files": received,
            })
        return described

    def _checksum_taken_files(self, instance_id: str) -> None:
        """SHA-256 of the files taken from closed file: locations, computed once (outside any transaction)."""
        rows = self._store.read().execute(
            "SELECT f.location_id, f.name FROM output_files f JOIN output_locations l ON l.id = f.location_id"
            " WHERE f.instance_id = ? AND f.sha256 IS NULL AND f.state = ? AND l.deleted_at IS NULL",
            (instance_id, COMPLETE)).fetchall()
        sums = []
        for r in rows:
            location = self.location(r["location_id"])
            try:
                sums.append((file_sha256(self._folder(location) / r["name"]), r["location_id"], r["name"]))
            except OSError as exc:  # the host moved or removed it meanwhile; leave it unknown
                log.warning("instance %s: cannot checksum %s/%s: %s", instance_id, location.id, r["name"], exc)
        if sums:
            with self._store.transaction() as db:
                db.executemany("UPDATE output_files SET sha256 = ? WHERE location_id = ? AND name = ?"
                               " AND sha256 IS NULL", sums)

    def location(self, location_id: str) -> Location:
        return self._location(self._store.read(), location_id)

    @staticmethod
    def _location(db: sqlite3.Connection, location_id: str) -> Location:
        return Location.from_row(db.execute("SELECT * FROM output_locations WHERE id = ?", (location_id,)).fetchone())

    # --- http: uploads: the store's side (upload.py is the HTTP side) ---------------------------------

    def web_location(self, token: str) -> Location:
        """The http: location with this token; :class:`ClientError` 404 for any other token."""
        row = self._store.read().execute("SELECT * FROM output_locations WHERE token = ?", (token,)).fetchone()
        if row is None:
            raise ClientError(NO_SUCH_LOCATION, http_status=404)
        return Location.from_row(row)

    @staticmethod
    def gone(location: Location) -> ClientError:
        return ClientError(
            f"this output location no longer accepts writes: it was {location.state} "
            f"({location.closed_reason}); PS3.19 §8.2.3 keeps it active only while the application is not "
            "IDLE or EXIT and has not returned it", http_status=410)

    @staticmethod
    def stored_name(location: Location, name: str) -> str:
        """``name`` if a file of that name can exist at ``location`` (a location with ``file`` semantics has
        only :data:`FILE_NAME`), else :class:`ClientError` 404."""
        if location.semantics == "file" and name != FILE_NAME:
            raise ClientError(f"this output location is the single file {location.uri}", http_status=404)
        return name

    def begin_upload(self, location: Location, name: str, length: Optional[int]) -> Upload:
        """Admit an upload of ``length`` bytes (``None``: chunked) to ``name``: the location is active, the
        name was never written (write-once, else 409), the body fits the request limit and the
        instance's quota (else 413). Returns the open, locked temporary file to write to."""
        limit = self._settings.upload_max_request_bytes
        if length is not None and length > limit:
            raise ClientError(f"the body ({length} bytes) is larger than the {limit}-byte limit of one upload",
                              http_status=413)
        try:
            file, part = self.area(location.instance_id).new_part()
        except FileNotFoundError:  # the instance's data is gone, so the location has closed
            raise self.gone(self.location(location.id)) from None
        now = time.time()
        try:
            with self._store.transaction() as db:
                current = self._location(db, location.id)
                if current.state != ACTIVE:
                    raise self.gone(current)
                self._reap(db, location.instance_id, now)
                existing = db.execute("SELECT state FROM output_files WHERE location_id = ? AND name = ?",
                                      (location.id, name)).fetchone()
                if existing is not None:
                    raise ClientError(
                        f"{name!r} {'was already written' if existing['state'] == COMPLETE else 'is being written'}"
                        " at this output location; each file is written once (PS3.19 §8.2.3)", http_status=409)
                reserved = length or 0
                self._check_quota(db, location.instance_id, reserved, held=0)
                db.execute(
                    "INSERT INTO output_files (location_id, instance_id, name, state, size, part, started_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (location.id, location.instance_id, name, WRITING, reserved, str(part), now),
                )
        except BaseException:
            file.close()
            part.unlink(missing_ok=True)
            raise
        return Upload(current, name, file, part, length, reserved)

    def _check_quota(self, db: sqlite3.Connection, instance_id: str, size: int, *, held: int) -> int:
        """Raise 413 unless an upload of ``size`` bytes fits the instance's quota; ``held`` is what this
        upload already reserves. Returns the bytes the instance's other files use or reserve."""
        quota = self._settings.upload_quota_bytes
        others = self._used(db, instance_id) - held
        if others + size > quota:
            raise ClientError(f"this upload would exceed the instance's quota of {quota} bytes "
                              f"({others} used or being written by other uploads)", http_status=413)
        return others

    @staticmethod
    def _used(db: sqlite3.Connection, instance_id: str) -> int:
        return db.execute(
            "SELECT COALESCE(SUM(f.size), 0) FROM output_files f JOIN output_locations l ON l.id = f.location_id"
            " WHERE f.instance_id = ? AND l.protocol != 'file'", (instance_id,)).fetchone()[0]

    def progress(self, upload: Upload, received: int) -> None:
        """Call with the bytes received so far, after each piece. Every :data:`CHECK_STEP` bytes (and
        whenever a chunked body outgrows its reservation) it checks the location is still active (else
        410, so a closed location stops a long upload early) and holds more quota (else 413)."""
        limit = self._settings.upload_max_request_bytes
        if received > limit:
            raise ClientError(f"the body is larger than the {limit}-byte limit of one upload", http_status=413)
        if received < upload.next_check and received <= upload.reserved:
            return
        upload.next_check = received + CHECK_STEP
        if upload.expected is not None:
            current = self.location(upload.location.id)
            if current.state != ACTIVE:
                raise self.gone(current)
            return
        with self._store.transaction() as db:
            current = self._location(db, upload.location.id)
            if current.state != ACTIVE:
                raise self.gone(current)
            others = self._check_quota(db, upload.location.instance_id, received, held=upload.reserved)
            reserve = min(received + CHECK_STEP, limit, self._settings.upload_quota_bytes - others)
            db.execute("UPDATE output_files SET size = ? WHERE location_id = ? AND name = ?",
                       (reserve, upload.location.id, upload.name))
            upload.reserved = reserve

    def complete_upload(self, upload: Upload, size: int, sha256: str) -> str:
        """Store a complete body: fsync it, then, in one transaction that finds the location still active
        (else 410), rename it into the location and record its size and SHA-256. Returns its URI."""
        os.fsync(upload.file.fileno())
        now = time.time()
        folder = self.area(upload.location.instance_id).live(upload.location.id)
        with self._store.transaction() as db:
            current = self._location(db, upload.location.id)
            if current.state != ACTIVE:
                raise self.gone(current)
            upload.stored_at = folder / upload.name
            os.rename(upload.part, upload.stored_at)
            directory = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            db.execute(
                "UPDATE output_files SET state = ?, size = ?, sha256 = ?, part = NULL, finished_at = ?"
                " WHERE location_id = ? AND name = ?", (COMPLETE, size, sha256, now, upload.location.id, upload.name))
            self._store.write_event(db, upload.location.instance_id, "upload", {
                "location": upload.location.id, "name": upload.name, "outcome": "complete", "size": size,
                "sha256": sha256,
            }, now)
        upload.file.close()
        return self.file_uri(upload.location, upload.name)

    def abandon_upload(self, upload: Upload, received: int, outcome: str, reason: str) -> None:
        """Forget an upload that will not complete (``outcome`` ``aborted`` or ``refused``): no file that
        looks complete is left, its quota is freed, and an ``upload`` event says why."""
        now = time.time()
        try:
            with self._store.transaction() as db:
                db.execute("DELETE FROM output_files WHERE location_id = ? AND name = ? AND state = ?",
                           (upload.location.id, upload.name, WRITING))
                self._store.write_event(db, upload.location.instance_id, "upload", {
                    "location": upload.location.id, "name": upload.name, "outcome": outcome, "received": received,
                    "expected": upload.expected, "reason": reason,
                }, now)
        finally:
            upload.part.unlink(missing_ok=True)
            if upload.stored_at is not None:  # renamed, but the transaction recording it failed
                upload.stored_at.unlink(missing_ok=True)
            upload.file.close()

    def _reap(self, db: sqlite3.Connection, instance_id: str, now: float) -> None:
        """Forget uploads whose writing process died (a worker killed, a restart), in the caller's transaction."""
        for r in db.execute("SELECT location_id, name, part FROM output_files WHERE instance_id = ? AND state = ?",
                            (instance_id, WRITING)).fetchall():
            if writer_alive(Path(r["part"])):
                continue
            db.execute("DELETE FROM output_files WHERE location_id = ? AND name = ?", (r["location_id"], r["name"]))
            Path(r["part"]).unlink(missing_ok=True)
            self._store.write_event(db, instance_id, "upload", {
                "location": r["location_id"], "name": r["name"], "outcome": "aborted",
                "reason": "interrupted: the server process receiving it stopped",
            }, now)

    def _reap_abandoned(self, instance_id: str) -> None:
        rows = self._store.read().execute("SELECT part FROM output_files WHERE instance_id = ? AND state = ?",
                                          (instance_id, WRITING)).fetchall()
        if any(not writer_alive(Path(r["part"])) for r in rows):
            with self._store.transaction() as db:
                self._reap(db, instance_id, time.time())

    def stored_files(self, location: Location) -> dict[str, dict[str, Any]]:
        """The complete files of an http: location by name: ``size``, ``sha256``, ``path``."""
        rows = self._store.read().execute(
            "SELECT name, size, sha256 FROM output_files WHERE location_id = ? AND state = ? ORDER BY name",
            (location.id, COMPLETE))
        folder = self._folder(location)
        return {r["name"]: {"size": r["size"], "sha256": r["sha256"], "path": folder / r["name"]} for r in rows}

    def file_uri(self, location: Location, name: str) -> str:
        """The URI of file ``name`` of an http: location (the location's URI itself for file semantics)."""
        if location.semantics == "file":
            return location.uri
        return location.uri + quote(name, safe="")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
