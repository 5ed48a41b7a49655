"""http: uploads, the store's side (:mod:`.upload` is the HTTP side): write-once, quota, atomic store.

An upload is admitted (:meth:`Writes.begin`) into a locked temporary file, checked as it grows
(:meth:`Writes.progress`), and stored by a rename into its location in a transaction that finds the
location still active (:meth:`Writes.complete`): the set of files the host takes when a location closes is
exactly what was complete at that moment. An upload that will not complete is forgotten
(:meth:`Writes.abandon`), and one whose writing process died is reaped (:func:`reap`).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Optional
from urllib.parse import quote

from hosting_service.config import FILE_SEMANTICS
from hosting_service.errors import ClientError
from hosting_service.outputs.area import writer_alive
from hosting_service.outputs.records import ACTIVE, COMPLETE, FILE_NAME, WRITING, Location, LocationRecords, gone
from hosting_service.store import Database

CHECK_STEP = 16 << 20
"""An upload re-checks its location and extends its quota reservation every this many bytes."""

NO_SUCH_LOCATION = "no output location has this address"
"""The one answer for every unknown token, so that a guess learns nothing."""


@dataclass
class Upload:
    """An http: upload admitted by :meth:`Writes.begin`: write the body to ``file``."""

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


class Writes:
    """The rules of http: writes, applied in the store."""

    def __init__(self, records: LocationRecords):
        self.records = records
        self.store = records.store
        self.settings = records.settings

    def web_location(self, token: str) -> Location:
        """The http: location with this token; :class:`ClientError` 404 for any other token."""
        with self.store.reading() as db:
            row = db.execute("SELECT * FROM output_locations WHERE token = ?", (token,)).fetchone()
        if row is None:
            raise ClientError(NO_SUCH_LOCATION, http_status=404)
        return Location.from_row(row)

    @staticmethod
    def stored_name(location: Location, name: str) -> str:
        """``name`` if a file of that name can exist at ``location`` (a location with ``file`` semantics has
        only :data:`~.records.FILE_NAME`), else :class:`ClientError` 404."""
        if location.semantics == FILE_SEMANTICS and name != FILE_NAME:
            raise ClientError(f"this output location is the single file {location.uri}", http_status=404)
        return name

    def begin(self, location: Location, name: str, length: Optional[int]) -> Upload:
        """Admit an upload of ``length`` bytes (``None``: chunked) to ``name``: the location is active, the
        name was never written (write-once, else 409), the body fits the request limit and the
        instance's quota (else 413). Returns the open, locked temporary file to write to."""
        limit = self.settings.upload_max_request_bytes
        if length is not None and length > limit:
            raise ClientError(f"the body ({length} bytes) is larger than the {limit}-byte limit of one upload",
                              http_status=413)
        try:
            file, part = self.records.area(location.instance_id).new_part()
        except FileNotFoundError:  # the instance's data is gone, so the location has closed
            raise gone(self.records.location(location.id)) from None
        now = time.time()
        try:
            with self.store.transaction(key=location.instance_id) as db:
                current = self.records.location(location.id, db)
                if current.state != ACTIVE:
                    raise gone(current)
                reap(self.records, db, location.instance_id, now)
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

    def _check_quota(self, db: Database, instance_id: str, size: int, *, held: int) -> int:
        """Raise 413 unless an upload of ``size`` bytes fits the instance's quota; ``held`` is what this
        upload already reserves. Returns the bytes the instance's other files use or reserve."""
        quota = self.settings.upload_quota_bytes
        others = _used(db, instance_id) - held
        if others + size > quota:
            raise ClientError(f"this upload would exceed the instance's quota of {quota} bytes "
                              f"({others} used or being written by other uploads)", http_status=413)
        return others

    def progress(self, upload: Upload, received: int) -> None:
        """Call with the bytes received so far, after each piece. Every :data:`CHECK_STEP` bytes (and
        whenever a chunked body outgrows its reservation) it checks the location is still active (else
        410, so a closed location stops a long upload early) and holds more quota (else 413)."""
        limit = self.settings.upload_max_request_bytes
        if received > limit:
            raise ClientError(f"the body is larger than the {limit}-byte limit of one upload", http_status=413)
        if received < upload.next_check and received <= upload.reserved:
            return
        upload.next_check = received + CHECK_STEP
        if upload.expected is not None:
            current = self.records.location(upload.location.id)
            if current.state != ACTIVE:
                raise gone(current)
            return
        with self.store.transaction(key=upload.location.instance_id) as db:
            current = self.records.location(upload.location.id, db)
            if current.state != ACTIVE:
                raise gone(current)
            others = self._check_quota(db, upload.location.instance_id, received, held=upload.reserved)
            reserve = min(received + CHECK_STEP, limit, self.settings.upload_quota_bytes - others)
            db.execute("UPDATE output_files SET size = ? WHERE location_id = ? AND name = ?",
                       (reserve, upload.location.id, upload.name))
            upload.reserved = reserve

    def complete(self, upload: Upload, size: int, sha256: str) -> str:
        """Store a complete body: fsync it, then, in one transaction that finds the location still active
        (else 410), rename it into the location and record its size and SHA-256. Returns its URI."""
        os.fsync(upload.file.fileno())
        now = time.time()
        folder = self.records.area(upload.location.instance_id).live(upload.location.id)
        with self.store.transaction(key=upload.location.instance_id) as db:
            current = self.records.location(upload.location.id, db)
            if current.state != ACTIVE:
                raise gone(current)
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
            self.store.write_event(db, upload.location.instance_id, "upload", {
                "location": upload.location.id, "name": upload.name, "outcome": "complete", "size": size,
                "sha256": sha256,
            }, now)
        upload.file.close()
        return self.file_uri(upload.location, upload.name)

    def abandon(self, upload: Upload, received: int, outcome: str, reason: str) -> None:
        """Forget an upload that will not complete (``outcome`` ``aborted`` or ``refused``): no file that
        looks complete is left, its quota is freed, and an ``upload`` event says why."""
        now = time.time()
        try:
            with self.store.transaction(key=upload.location.instance_id) as db:
                db.execute("DELETE FROM output_files WHERE location_id = ? AND name = ? AND state = ?",
                           (upload.location.id, upload.name, WRITING))
                self.store.write_event(db, upload.location.instance_id, "upload", {
                    "location": upload.location.id, "name": upload.name, "outcome": outcome, "received": received,
                    "expected": upload.expected, "reason": reason,
                }, now)
        finally:
            upload.part.unlink(missing_ok=True)
            if upload.stored_at is not None:  # renamed, but the transaction recording it failed
                upload.stored_at.unlink(missing_ok=True)
            upload.file.close()

    def stored_files(self, location: Location) -> dict[str, dict[str, Any]]:
        """The complete files of an http: location by name: ``size``, ``sha256``, ``path``."""
        with self.store.reading() as db:
            rows = db.execute(
                "SELECT name, size, sha256 FROM output_files WHERE location_id = ? AND state = ? ORDER BY name",
                (location.id, COMPLETE)).fetchall()
        folder = self.records.folder(location)
        return {r["name"]: {"size": r["size"], "sha256": r["sha256"], "path": folder / r["name"]} for r in rows}

    @staticmethod
    def file_uri(location: Location, name: str) -> str:
        """The URI of file ``name`` of an http: location (the location's URI itself for file semantics)."""
        if location.semantics == FILE_SEMANTICS:
            return location.uri
        return location.uri + quote(name, safe="")


def _used(db: Database, instance_id: str) -> int:
    return int(db.execute(
        "SELECT COALESCE(SUM(f.size), 0) AS used FROM output_files f JOIN output_locations l ON l.id = f.location_id"
        " WHERE f.instance_id = ? AND l.protocol != 'file'", (instance_id,)).fetchone()["used"])


def reap(records: LocationRecords, db: Database, instance_id: str, now: float) -> None:
    """Forget uploads whose writing process died (a worker killed, a restart), in the caller's transaction,
    and remove every temporary file no live writer holds (also one killed before its upload was recorded)."""
    for r in db.execute("SELECT location_id, name, part FROM output_files WHERE instance_id = ? AND state = ?",
                        (instance_id, WRITING)).fetchall():
        if writer_alive(Path(r["part"])):
            continue
        db.execute("DELETE FROM output_files WHERE location_id = ? AND name = ?", (r["location_id"], r["name"]))
        Path(r["part"]).unlink(missing_ok=True)
        records.store.write_event(db, instance_id, "upload", {
            "location": r["location_id"], "name": r["name"], "outcome": "aborted",
            "reason": "interrupted: the server process receiving it stopped",
        }, now)
    for part in records.area(instance_id).dead_parts():
        part.unlink(missing_ok=True)


def reap_abandoned(records: LocationRecords, instance_id: str) -> None:
    """:func:`reap` in a transaction of its own, taken only when there is something to reap."""
    with records.store.reading() as db:
        rows = db.execute("SELECT part FROM output_files WHERE instance_id = ? AND state = ?",
                          (instance_id, WRITING)).fetchall()
    if any(not writer_alive(Path(r["part"])) for r in rows) or records.area(instance_id).dead_parts():
        with records.store.transaction(key=instance_id) as db:
            reap(records, db, instance_id, time.time())
