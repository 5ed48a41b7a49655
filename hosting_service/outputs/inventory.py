"""What each output location of an instance received: the admin API's view (``instance show``)."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from hosting_service.outputs.area import InstanceArea
from hosting_service.outputs.records import ACTIVE, COMPLETE, WRITING, Location, LocationRecords
from hosting_service.outputs.writes import reap_abandoned

log = logging.getLogger("dicom_host.outputs")


def describe(records: LocationRecords, instance_id: str) -> list[dict[str, Any]]:
    """Each location of the instance, oldest first: protocol, URI, state, where its data is, and the
    files received (``name``, ``size``, ``sha256``, ``state``).

    File states: ``complete`` (stored; for file: locations, found when the location closed),
    ``writing`` (an http: upload in progress; ``size`` so far), ``present`` (in an active file:
    location, still the application's; no checksum yet), ``deleted`` (removed by retention).
    """
    reap_abandoned(records, instance_id)
    _checksum_taken_files(records, instance_id)
    with records.store.reading() as db:
        locations = [Location.from_row(r) for r in db.execute(
            "SELECT * FROM output_locations WHERE instance_id = ? ORDER BY created_at, id", (instance_id,))]
        file_rows = db.execute("SELECT * FROM output_files WHERE instance_id = ? ORDER BY name",
                               (instance_id,)).fetchall()
    files: dict[str, list[dict[str, Any]]] = {}
    for r in file_rows:
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
                        for n, s in InstanceArea.files(records.folder(location))]
        described.append({
            "id": location.id,
            "protocol": location.protocol,
            "semantics": location.semantics,
            "uri": location.uri,
            "state": location.state,
            "createdAt": location.created_at,
            "closedAt": location.closed_at,
            "closedReason": location.closed_reason,
            "path": None if location.deleted_at is not None else str(records.folder(location)),
            "dataDeleted": location.deleted_at is not None,
            "files": received,
        })
    return described


def _checksum_taken_files(records: LocationRecords, instance_id: str) -> None:
    """SHA-256 of the files taken from closed file: locations, computed once (outside any transaction)."""
    with records.store.reading() as db:
        rows = db.execute(
            "SELECT f.location_id, f.name FROM output_files f JOIN output_locations l ON l.id = f.location_id"
            " WHERE f.instance_id = ? AND f.sha256 IS NULL AND f.state = ? AND l.deleted_at IS NULL",
            (instance_id, COMPLETE)).fetchall()
    sums = []
    for r in rows:
        location = records.location(r["location_id"])
        try:
            sums.append((_file_sha256(records.folder(location) / r["name"]), r["location_id"], r["name"]))
        except OSError as exc:  # the host moved or removed it meanwhile; leave it unknown
            log.warning("instance %s: cannot checksum %s/%s: %s", instance_id, location.id, r["name"], exc)
    if sums:
        with records.store.transaction(key=instance_id) as db:
            db.executemany("UPDATE output_files SET sha256 = ? WHERE location_id = ? AND name = ?"
                           " AND sha256 IS NULL", sums)


def _file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
