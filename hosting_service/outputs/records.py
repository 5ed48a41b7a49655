"""The output-location records in the store, and what every part of the output-location layer shares.

Everything lives in the store (tables ``output_locations`` and ``output_files``, created by
:mod:`hosting_service.store.schema`), and every rule is checked in a store transaction keyed by the
instance, so it holds across gunicorn workers, frontends and restarts. :class:`LocationRecords` gives the parts
(:mod:`.issuing`, :mod:`.lifetime`, :mod:`.writes`, :mod:`.resolution`, :mod:`.inventory`) the store, the
settings, an instance's on-disk area, and a location's record and current folder.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hosting_service.config import Settings
from hosting_service.errors import ClientError
from hosting_service.outputs.area import InstanceArea
from hosting_service.store import Database, Store
from hosting_service.store.dialect import Row

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
    def from_row(cls, row: Row) -> "Location":
        return cls(**{k: row[k] for k in row.keys()})


def gone(location: Location) -> ClientError:
    """The 410 for a write to a location that has closed."""
    return ClientError(
        f"this output location no longer accepts writes: it was {location.state} "
        f"({location.closed_reason}); PS3.19 §8.2.3 keeps it active only while the application is not "
        "IDLE or EXIT and has not returned it", http_status=410)


class LocationRecords:
    """The store and settings of one deployment's output locations."""

    def __init__(self, store: Store, settings: Settings):
        self.store = store
        self.settings = settings
        self.root = settings.instances_dir.resolve()

    def area(self, instance_id: str) -> InstanceArea:
        return InstanceArea(self.root / instance_id)

    def location(self, location_id: str, db: Optional[Database] = None) -> Location:
        """A location's record, read in ``db`` (a transaction) or else with :meth:`Store.reading`."""
        if db is None:
            with self.store.reading() as reader:
                return self.location(location_id, reader)
        return Location.from_row(db.execute("SELECT * FROM output_locations WHERE id = ?", (location_id,)).fetchone())

    def folder(self, location: Location, state: Optional[str] = None) -> Path:
        """The folder that holds the location's files now: its own while active, its results folder after
        (``state``: the state it is being given, inside the transaction that closes it)."""
        area = self.area(location.instance_id)
        kept = area.kept(location.id)
        if (state or location.state) != ACTIVE and kept.exists():
            return kept
        return area.live(location.id)
