"""How long an output location lives (PS3.19 §8.2.3), and what happens to its data when it closes.

A location is ``active`` until one of: the application reports IDLE or EXIT, or the instance ends
(``expired``; the store's expiry hook :meth:`Lifetime.expire`, in the transaction that records the state),
or the application returns the location's URI, or a URI under it, in an ObjectLocator of its GetData
(``returned``; :meth:`Lifetime.hand_back`). At that moment its folder moves into the instance's results and
the data is the host's. An http: upload still in flight at that moment is refused (410; see :mod:`.writes`).

**Retention** (``output_retention``): ``keep`` leaves the results in place when the instance ends,
``delete`` removes the instance's outputs, results and partial uploads then (the records stay).
"""
from __future__ import annotations

import logging
import time

from hosting_service.outputs.area import InstanceArea
from hosting_service.outputs.records import ACTIVE, COMPLETE, EXPIRED, RETURNED, Location, LocationRecords
from hosting_service.outputs.resolution import NotInOutputLocation, locate
from hosting_service.outputs.writes import reap
from hosting_service.store import Database

log = logging.getLogger("dicom_host.outputs")


class Lifetime:
    """Closing locations: expiry (registered as the store's expiry hook here), hand-back, end of instance."""

    def __init__(self, records: LocationRecords):
        self.records = records
        records.store.add_expiry_hook(self.expire)

    def expire(self, db: Database, instance_id: str, reason: str, now: float) -> list[str]:
        """The store's expiry hook: close every active location of the instance (IDLE, EXIT, end). Its file
        work is a rename per location; deleting data at the end waits for :meth:`after_end`."""
        reap(self.records, db, instance_id, now)
        rows = db.execute("SELECT * FROM output_locations WHERE instance_id = ? AND state = ?",
                          (instance_id, ACTIVE)).fetchall()
        expired = [Location.from_row(r) for r in rows]
        for location in expired:
            self._close(db, location, EXPIRED, reason, now)
        if expired:
            self.records.store.write_event(db, instance_id, "expired",
                                           {"locations": [l.id for l in expired], "reason": reason}, now)
        return [l.id for l in expired]

    def after_end(self, instance_id: str) -> None:
        """File work once an instance has ended (after the store's transaction, never under its lock): drop
        its delivery cache and, with retention ``delete``, its outputs and results."""
        area = self.records.area(instance_id)
        area.drop_delivery_cache()
        if self.records.settings.output_retention == "delete":
            area.delete()
            with self.records.store.transaction(key=instance_id) as db:
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
                location, _names = locate(self.records, instance_id, uri)
            except NotInOutputLocation:
                continue
            if location.id not in wanted:
                wanted.append(location.id)
        returned: list[str] = []
        now = time.time()
        with self.records.store.transaction(key=instance_id) as db:
            for location_id in wanted:
                location = self.records.location(location_id, db)
                if location.state == ACTIVE:
                    self._close(db, location, RETURNED, "returned by the application in GetData", now)
                    returned.append(location_id)
            if returned:
                self.records.store.write_event(db, instance_id, "output_location",
                                               {"locations": returned, "action": "returned"}, now)
        return returned

    def _close(self, db: Database, location: Location, state: str, reason: str, now: float) -> None:
        """Stop ``location`` taking writes and move its folder into the results, in the caller's transaction.

        A failed move is logged, not raised: closing must never stop an instance from going IDLE or
        ending, and :meth:`LocationRecords.folder` finds the data where it stayed.
        """
        db.execute("UPDATE output_locations SET state = ?, closed_at = ?, closed_reason = ? WHERE id = ?",
                   (state, now, reason, location.id))
        area = self.records.area(location.instance_id)
        try:
            area.retire(location.id)
        except OSError as exc:
            log.error("instance %s: output location %s stays in %s: %s", location.instance_id, location.id,
                      area.live(location.id), exc)
        if location.protocol == "file":  # take inventory: from now on these are the files the host received
            db.executemany(
                "INSERT INTO output_files (location_id, instance_id, name, state, size, started_at,"
                " finished_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(location.id, location.instance_id, name, COMPLETE, size, now, now)
                 for name, size in InstanceArea.files(self.records.folder(location, state))],
            )
