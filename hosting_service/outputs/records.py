"""The output-location records in the store, and what every part of the output-location layer shares.

Everything lives in the store's SQLite file (tables below), and every rule is checked in a store
transaction, so it holds across gunicorn workers and restarts. :class:`LocationRecords` gives the parts
(:mod:`.issuing`, :mod:`.lifetime`, :mod:`.writes`, :mod:`.resolution`, :mod:`.inventory`) the store, the
settings, an instance's on-disk area, and a location's record and current folder.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hosting_service.config import Settings
from hosting_service.errors import ClientError
from hosting_service.outputs.area import InstanceArea
from hosting_service.store import SQLiteStore

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

FILE_NAME = "output"
"""The one file a location with ``file`` semantics names."""


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


def gone(location: Location) -> ClientError:
    """The 410 for a write to a location that has closed."""
    return ClientError(
        f"this output location no longer accepts writes: it was {location.state} "
        f"({location.closed_reason}); PS3.19 §8.2.3 keeps it active only while the application is not "
        "IDLE or EXIT and has not returned it", http_status=410)


class LocationRecords:
    """The store and settings of one deployment's output locations, and their tables (created here)."""

    def __init__(self, store: SQLiteStore, settings: Settings):
        self.store = store
        self.settings = settings
        self.root = settings.instances_dir.resolve()
        store.read().executescript(SCHEMA)

    def area(self, instance_id: str) -> InstanceArea:
        return InstanceArea(self.root / instance_id)

    def location(self, location_id: str, db: Optional[sqlite3.Connection] = None) -> Location:
        """A location's record, read in ``db`` (a transaction) or on the store's read connection."""
        db = db or self.store.read()
        return Location.from_row(db.execute("SELECT * FROM output_locations WHERE id = ?", (location_id,)).fetchone())

    def folder(self, location: Location, state: Optional[str] = None) -> Path:
        """The folder that holds the location's files now: its own while active, its results folder after
        (``state``: the state it is being given, inside the transaction that closes it)."""
        area = self.area(location.instance_id)
        kept = area.kept(location.id)
        if (state or location.state) != ACTIVE and kept.exists():
            return kept
        return area.live(location.id)
