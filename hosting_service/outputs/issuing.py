"""GetOutputLocation (PS3.19 §8.2.3): every call gets a new location.

A fresh, empty, mode 0700 folder under the instance's work area (see :mod:`.area`), offered as
``file:///abs/path/`` (RFC 8089) or as ``<public_url>/outputs/<token>/``, whichever protocol
:mod:`.protocols` picks. The token (:mod:`hosting_service.tokens`) is the only credential of an http:
location (the standard allows authentication in the URI).

**Semantics** (instance option ``output_semantics``, default the ``output_semantics`` setting):

* ``directory`` (default): the URI ends in ``/`` and names the folder. With file: the application creates
  any files (and sub-folders) in it; with http: it PUTs or POSTs each file to ``<URI><name>``, one path
  segment per file, each name written once.
* ``file`` (XIP's RECIST does ``new File(uri)`` and writes XML to it): the URI names one file,
  :data:`~.records.FILE_NAME` inside the fresh folder (``file:///…/<id>/output``,
  ``<public_url>/outputs/<token>/output``). With file: the application creates and writes that file; with
  http: it PUTs or POSTs its body to the URI itself, once. Other names below an http: file location do not
  exist (404).
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Optional
from urllib.parse import urlsplit

from hosting_service.config import FILE_SEMANTICS, OUTPUT_SEMANTICS, Settings, instance_file_uris
from hosting_service.outputs.protocols import choose_protocol
from hosting_service.outputs.records import ACTIVE, FILE_NAME, LocationRecords
from hosting_service.outputs.uris import directory_uri
from hosting_service.states import State, check_precondition
from hosting_service.store import Database, Instance, InstanceEnded, UnknownInstance
from hosting_service.tokens import new_token


def output_semantics(options: dict[str, Any], settings: Settings) -> str:
    """``directory`` or ``file`` for an instance with these options; ``ValueError`` for another value."""
    value = options.get("output_semantics") or settings.output_semantics
    if value not in OUTPUT_SEMANTICS:
        raise ValueError(f"output_semantics must be 'directory' or 'file', not {value!r}")
    return value


def issue(records: LocationRecords, instance: Instance, preferred_protocols: Optional[list[str]]) -> str:
    """A new active location for ``instance`` in the first preferred protocol the deployment offers.

    Raises :class:`ClientError` when none is offered (with the instance's ``file_uris`` option false: only
    http: is, see :mod:`.protocols`); re-checks the §8.2.3 precondition in the
    transaction that records the location (``PreconditionViolation``, or ``InstanceEnded``), so a
    location never outlives the state that allowed it.
    """
    settings = records.settings
    web_scheme = urlsplit(settings.public_url).scheme.lower()
    protocol = choose_protocol(preferred_protocols, settings.output_protocols, web_scheme,
                               file_uris=instance_file_uris(instance.options, settings))
    semantics = output_semantics(instance.options, settings)
    location_id = uuid.uuid4().hex
    folder = records.area(instance.id).create(location_id)
    token = None
    if protocol == "file":
        uri = directory_uri(folder)
    else:
        token = new_token()
        uri = f"{settings.public_url_base}/outputs/{token}/"
    if semantics == FILE_SEMANTICS:
        uri += FILE_NAME
    now = time.time()
    try:
        with records.store.transaction(key=instance.id) as db:
            _check_may_issue(db, instance.id)
            db.execute(
                "INSERT INTO output_locations (id, instance_id, protocol, semantics, uri, token, state, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (location_id, instance.id, protocol, semantics, uri, token, ACTIVE, now),
            )
            records.store.write_event(db, instance.id, "output_location", {
                "location": location_id, "action": "issued", "protocol": protocol, "semantics": semantics,
                "uri": uri,
            }, now)
    except BaseException:
        folder.rmdir()
        raise
    return uri


def _check_may_issue(db: Database, instance_id: str) -> None:
    # The store's own row, read inside this transaction: no notification can slip in between.
    row = db.execute("SELECT reported_state, ended_at, end_reason FROM instances WHERE id = ?",
                     (instance_id,)).fetchone()
    if row is None:
        raise UnknownInstance(f"no instance {instance_id!r}")
    if row["ended_at"] is not None:
        raise InstanceEnded(f"instance {instance_id} has ended ({row['end_reason']})")
    check_precondition("GetOutputLocation", row["reported_state"] and State(row["reported_state"]))
