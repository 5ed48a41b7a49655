"""From an application's URI to an output location, and to where its bytes are now.

The application names what it wrote by URIs in its own locations (file: or http:, the location itself or
a name below it); after the location closed, the bytes are in the instance's results. :func:`resolve` maps
such a URI to the file now, and refuses anything outside the instance's own locations.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from hosting_service.outputs.records import Location, LocationRecords
from hosting_service.outputs.uris import file_uri_path, web_location_parts
from hosting_service.store.dialect import Row


class NotInOutputLocation(LookupError):
    """A URI that is not inside one of the instance's output locations (or leads out of it)."""


def locate(records: LocationRecords, instance_id: str, uri: str) -> tuple[Location, list[str]]:
    """The location of this instance a URI is in, and the names below the location's folder."""
    found: Optional[Row] = None
    names: list[str] = []
    web = web_location_parts(uri, records.settings.public_url_base)
    if web is not None and len(web[1]) <= 1:  # an http: location has files, no sub-folders
        token, names = web
        with records.store.reading() as db:
            found = db.execute("SELECT * FROM output_locations WHERE token = ? AND instance_id = ?",
                               (token, instance_id)).fetchone()
    else:
        path = file_uri_path(uri)
        outputs = records.area(instance_id).outputs
        if path is not None and path.is_relative_to(outputs) and path != outputs:
            location_id, *names = path.relative_to(outputs).parts
            with records.store.reading() as db:
                found = db.execute("SELECT * FROM output_locations WHERE id = ? AND instance_id = ? AND protocol = ?",
                                   (location_id, instance_id, "file")).fetchone()
    if found is None:
        raise NotInOutputLocation(f"{uri} is not in an output location of instance {instance_id}")
    return Location.from_row(found), names


def resolve(records: LocationRecords, instance_id: str, uri: str) -> Path:
    """Where the bytes named by ``uri`` (a location URI of this instance, file: or http:, or a URI under
    one) are now: in the location's folder while it is active, in the instance's results after.

    Raises :class:`NotInOutputLocation` for a URI outside this instance's locations, or one that
    leads out of its location (``..``, symbolic links).
    """
    location, names = locate(records, instance_id, uri)
    return _within(records, location, names, uri)


def location_file(records: LocationRecords, instance_id: str, location_id: str, names: list[str]) -> Path:
    """Where the file ``names`` below the location ``location_id`` of this instance is now (its folder
    while active, the results after); what the admin API's ``files/`` route reads.

    Raises :class:`NotInOutputLocation` for a location that is not this instance's, or names that lead
    out of it.
    """
    with records.store.reading() as db:
        row = db.execute("SELECT * FROM output_locations WHERE id = ? AND instance_id = ?",
                         (location_id, instance_id)).fetchone()
    if row is None:
        raise NotInOutputLocation(f"instance {instance_id} has no output location {location_id}")
    return _within(records, Location.from_row(row), names, "/".join([location_id, *names]))


def _within(records: LocationRecords, location: Location, names: list[str], label: str) -> Path:
    """The path of ``names`` in the folder that holds ``location``'s files now, symbolic links resolved;
    :class:`NotInOutputLocation` when that leads out of it."""
    folder = records.folder(location)
    real = folder.joinpath(*names).resolve()
    if real != folder.resolve() and not real.is_relative_to(folder.resolve()):
        raise NotInOutputLocation(f"{label} leads out of its output location")
    return real
