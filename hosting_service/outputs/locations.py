"""Output locations (PS3.19 §8.2.3): the one object the rest of the host uses, made of parts by concern.

* :mod:`.issuing`: what GetOutputLocation hands out (protocol, semantics, folder, URI);
* :mod:`.lifetime`: when a location closes (IDLE, EXIT, end, hand-back), retention of its data;
* :mod:`.writes`: the store's side of http: uploads (write-once, quota, atomic store);
* :mod:`.resolution`: from an application's URI to where its bytes are now;
* :mod:`.inventory`: what each location received;
* :mod:`.records`: the tables and what the parts share.

Every process that records notifications or ends instances must have constructed an
:class:`OutputLocations` on its store: that registers the expiry hook (:class:`.lifetime.Lifetime`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from hosting_service.config import Settings
from hosting_service.outputs import inventory, issuing, resolution
from hosting_service.outputs.area import InstanceArea
from hosting_service.outputs.lifetime import Lifetime
from hosting_service.outputs.records import Location, LocationRecords
from hosting_service.outputs.resolution import NotInOutputLocation
from hosting_service.outputs.writes import Writes
from hosting_service.store import Instance, Store

__all__ = ["NotInOutputLocation", "OutputLocations"]


class OutputLocations:
    """The output locations of every instance of one deployment: what operations and the admin API call.
    The HTTP side of uploads uses :attr:`writes`."""

    def __init__(self, store: Store, settings: Settings):
        self.records = LocationRecords(store, settings)
        self.lifetime = Lifetime(self.records)
        self.writes = Writes(self.records)

    def area(self, instance_id: str) -> InstanceArea:
        """The instance's folders on disk (work area, outputs, results, delivery cache)."""
        return self.records.area(instance_id)

    def issue(self, instance: Instance, preferred_protocols: Optional[list[str]]) -> str:
        """GetOutputLocation: see :func:`.issuing.issue`."""
        return issuing.issue(self.records, instance, preferred_protocols)

    def hand_back(self, instance_id: str, uris: list[str]) -> list[str]:
        """URIs the application returned in GetData: see :meth:`.lifetime.Lifetime.hand_back`."""
        return self.lifetime.hand_back(instance_id, uris)

    def after_end(self, instance_id: str) -> None:
        """File work once an instance has ended: see :meth:`.lifetime.Lifetime.after_end`."""
        self.lifetime.after_end(instance_id)

    def resolve(self, instance_id: str, uri: str) -> Path:
        """Where the bytes of an application's URI are now: see :func:`.resolution.resolve`."""
        return resolution.resolve(self.records, instance_id, uri)

    def locate(self, instance_id: str, uri: str) -> tuple[Location, list[str]]:
        """The location of this instance ``uri`` is in, and the names below it: see :func:`.resolution.locate`."""
        return resolution.locate(self.records, instance_id, uri)

    def location_file(self, instance_id: str, location_id: str, names: list[str]) -> Path:
        """Where a file of one of the instance's locations is now: see :func:`.resolution.location_file`."""
        return resolution.location_file(self.records, instance_id, location_id, names)

    def describe(self, instance_id: str) -> list[dict[str, Any]]:
        """What each location of the instance received: see :func:`.inventory.describe`."""
        return inventory.describe(self.records, instance_id)
