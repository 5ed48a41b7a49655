"""http: inputs: ``GET|HEAD <public_url>/inputs/<instance token>/<locator>`` (the router sends every such path
here).

With the instance option ``file_uris`` false (an application that does not share the host's filesystem),
GetData answers each object with such a URL, ``Offset`` 0 and ``Length`` the bytes handed out
(:meth:`hosting_service.operations.HostOperations.GetData`). The URL serves exactly those bytes: the stored
object (a span of its file), its transcoded copy (the instance's link into the delivery cache), or the bulk
data of a model, with ``Range``, ``ETag`` and ``Content-Length`` (:mod:`hosting_service.spans`).

The instance's 192-bit token is the credential, as for its HostService endpoint; the locator must be one
GetData handed to that instance and not yet released (ReleaseData, IDLE or EXIT, the instance's end). Every
other path, an ended instance included, gets one and the same ``404``: it tells a guesser nothing. What a
locator names is worked out again from what is offered now (the input's span, the model's live bulk data,
or a file of the instance's own delivery cache), so a URL never serves bytes the instance was not given:
a bulk-data locator lasts as long as its model (ReleaseModels ends it).
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Optional

from hosting_service.config import Settings
from hosting_service.logs import redacted_path
from hosting_service.models.registry import ModelRegistry
from hosting_service.spans import Span, SpanGone, serve_span
from hosting_service.outputs.locations import OutputLocations
from hosting_service.store import Instance, SQLiteStore, UnknownInstance

log = logging.getLogger("dicom_host.inputs")

PREFIX = "/inputs/"
_PATH = re.compile(r"^/inputs/(?P<token>[A-Za-z0-9_-]{22,64})/(?P<locator>[0-9a-fA-F-]{36})$")
_NOT_FOUND = json.dumps({"error": "no input is served at this address (unknown, released or ended)"}).encode()


def input_url(settings: Settings, token: str, locator: str) -> str:
    """The http: URI of one GetData locator of the instance whose token is ``token``."""
    return f"{settings.public_url_base}{PREFIX}{token}/{locator}"


def _answer(start_response, status: str, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> list[bytes]:
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers])
    return [body]


class InputsApp:
    """WSGI application for the paths ``/inputs/...`` (module docstring)."""

    def __init__(self, store: SQLiteStore, settings: Settings, outputs: OutputLocations):
        self.store = store
        self.settings = settings
        self.outputs = outputs
        self.models = ModelRegistry.attach(store, settings, outputs)

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if method not in ("GET", "HEAD"):
            body = json.dumps({"error": "inputs are read with GET or HEAD"}).encode()
            return _answer(start_response, "405 Method Not Allowed", body, (("Allow", "GET, HEAD"),))
        match = _PATH.match(environ.get("PATH_INFO", ""))
        span = self._span(match["token"], match["locator"].lower()) if match else None
        if span is not None:
            try:
                return serve_span(environ, start_response, span)
            except SpanGone:  # changed or removed since GetData: as good as unknown to the reader
                log.warning("http: input %s: its file no longer holds the bytes handed out",
                            redacted_path(environ.get("PATH_INFO", "")))
        return _answer(start_response, "404 Not Found", _NOT_FOUND)

    def _span(self, token: str, locator: str) -> Optional[Span]:
        """The bytes ``locator`` names for the live instance of ``token``, or ``None``."""
        try:
            instance = self.store.instance_by_token(token)
        except UnknownInstance:
            return None
        if instance.ended:
            return None
        with self.store.reading() as db:
            row = db.execute("SELECT source, path FROM locators WHERE locator = ? AND instance_id = ?",
                             (locator, instance.id)).fetchone()
        return None if row is None else self._located(instance, row["source"], Path(row["path"]))

    def _located(self, instance: Instance, source: str, path: Path) -> Optional[Span]:
        """What GetData handed out as ``path`` for the object ``source`` (see the module docstring)."""
        if path.is_relative_to(self.outputs.area(instance.id).delivery_cache.absolute()):
            return Span(path, 0, -1)  # a copy (or a decoded frame) of the instance's own: the whole file
        offered = self.store.inputs(instance.id, [source]).get(source)
        if offered is not None and _absolute(offered.path) == path:
            return Span(path, offered.offset, offered.length)
        bulk = self.models.bulk_data(instance.id, [source]).get(source)
        if bulk is not None and bulk.frame is None and _absolute(bulk.path) == path:
            return Span(path, bulk.offset, bulk.length)
        return None


def _absolute(path: str) -> Path:
    """A path as GetData records it: absolute paths as they are, relative ones resolved."""
    p = Path(path)
    return p if p.is_absolute() else p.resolve()
