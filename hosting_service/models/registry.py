"""The models of every instance: built by GetAsModels, queried, released; their bulk data served by GetData.

**Where things are.** A model's record and its bulk-data records live in the store (tables ``models``
and ``model_bulk_data``, created by :mod:`hosting_service.store.schema`), so any gunicorn worker can answer
for any model; its XML is written, in its namespace, to
``<instance work area>/delivery-cache/models/<call uuid>.xml`` (the models of one call one after the other;
the store keeps each one's offset and length) and each worker keeps the query views of recently used
models in a bounded cache (:data:`CACHE_BUDGET` bytes of XML). A worker that has not built a model parses
the file on first use. Every lookup is by instance and UUID together:
one application can never name another's model or bulk data.

**Lifetime.** ReleaseModels marks models released and deletes their XML (a file once all its models
are released); every model of an instance is
released in the store transaction that takes it to IDLE or EXIT or ends it (an expiry hook, like the
output locations'), and the XML of those is deleted at the instance's next GetAsModels or with its
delivery cache when it ends. Releasing a model does not release data locators (PS3.19 Fig. 8.3-2 Note
2): a locator GetData issued for a bulk-data UUID keeps pointing at bytes that stay (the object's file,
or a copy or decoded frame in the delivery cache, which model release never deletes). A bulk-data UUID
of a released model is unknown to later GetData calls.

**Bulk data.** A record is a span of a file (the object's own file where the bytes lie there; a copy
otherwise) or a frame to decode (Abstract model, see :mod:`.abstract_image`), decoded on the first
GetData that asks for it.
"""
from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

from lxml import etree

from hosting_service.config import Settings
from hosting_service.files import write_atomically
from hosting_service.errors import ClientError
from hosting_service.model import DICOM_MIME_TYPE, ModelSetDescriptor, QueryResult, QueryResultInfoSet
from hosting_service.models import (
    ABSTRACT_IMAGE_MODEL,
    MODEL_NAMESPACES,
    MODEL_ROOTS,
    NATIVE_DICOM_MODEL,
    negotiate,
)
from hosting_service.models.query import (
    Node,
    compile_xpaths,
    info_set_results,
    namespace_free,
    query_results,
    run_queries,
    with_namespace,
)
from hosting_service.store.base import InputObject, Store
from hosting_service.store.dialect import Database, Row

if TYPE_CHECKING:
    from hosting_service.dicom.delivery import Delivery

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
"""What bulk data copied out of its object, or decoded, is in. The model builders (pydicom, numpy) are
imported only when a model is built: a server process that never builds one does not carry them."""

log = logging.getLogger("dicom_host.models")

CACHE_BUDGET = 64 << 20
"""Bytes of model XML whose query views one worker keeps parsed."""
MODELS_FOLDER = "models"


class ModelsError(ClientError):
    """A model call the host cannot carry out as asked (a SOAP Client fault)."""


@dataclass
class BulkRecord:
    """One ``BulkData/@uuid`` or ``bulkDataUUID``: where its bytes are, or which frame to decode."""

    uuid: str
    path: str
    offset: int
    length: int
    transfer_syntax: str
    frame: Optional[int] = None
    """Not ``None``: decode this frame of the object at ``path``/``offset``/``length`` (length -1: to the end)."""

    def deliver(self, cache_dir: Path) -> Delivery:
        """Where GetData's locator points: the span itself, or the decoded frame in the cache."""
        from hosting_service.dicom.delivery import Delivery
        if self.frame is None:
            try:
                size = os.stat(self.path).st_size
            except OSError as exc:
                raise ModelsError(f"bulk data {self.uuid}: its file can no longer be read ({exc.strerror})") from None
            if self.offset + self.length > size:
                raise ModelsError(f"bulk data {self.uuid}: its file changed since the model was built")
            return Delivery(Path(self.path), self.offset, self.length, self.transfer_syntax)
        target = cache_dir / MODELS_FOLDER / f"{self.uuid}.raw"
        if not target.exists():
            write_atomically(target, self._decode())
        return Delivery(target, 0, target.stat().st_size, self.transfer_syntax)

    def _decode(self) -> bytes:
        import pydicom
        from pydicom.pixels import pixel_array

        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read() if self.length < 0 else f.read(self.length)
            frame = pixel_array(pydicom.dcmread(io.BytesIO(data), force=True), index=self.frame)
        except OSError as exc:
            raise ModelsError(f"bulk data {self.uuid}: its file can no longer be read ({exc.strerror})") from None
        except Exception as exc:  # pydicom's decoders raise many types
            raise ModelsError(f"bulk data {self.uuid}: its frame cannot be decoded ({exc})") from None
        return frame.astype(frame.dtype.newbyteorder("<"), copy=False).tobytes()


@dataclass
class _Built:
    uuid: str
    plain: bytes
    """The model's XML without its namespace declaration."""
    root: etree._Element
    """Its query view (see :mod:`.query`)."""
    sources: list[str]
    bulk: list[BulkRecord]


class _ViewCache:
    """Query views of models, least recently used first out, within :data:`CACHE_BUDGET` bytes of XML."""

    def __init__(self, budget: int):
        self.budget = budget
        self._lock = threading.Lock()
        self._views: "OrderedDict[str, tuple[etree._Element, int]]" = OrderedDict()
        self._size = 0

    def get(self, key: str) -> Optional[etree._Element]:
        with self._lock:
            entry = self._views.get(key)
            if entry is None:
                return None
            self._views.move_to_end(key)
            return entry[0]

    def put(self, key: str, view: etree._Element, size: int) -> None:
        with self._lock:
            if key in self._views:
                return
            self._views[key] = (view, size)
            self._size += size
            while self._size > self.budget and len(self._views) > 1:
                _, (_, dropped) = self._views.popitem(last=False)
                self._size -= dropped

    def drop(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                entry = self._views.pop(key, None)
                if entry is not None:
                    self._size -= entry[1]


def _shown(uuids: list[str]) -> str:
    return ", ".join(uuids[:5]) + (f" and {len(uuids) - 5} more" if len(uuids) > 5 else "")


_REGISTRIES: "weakref.WeakKeyDictionary[Store, ModelRegistry]" = weakref.WeakKeyDictionary()
"""The registry of each store of this process (see :meth:`ModelRegistry.attach`)."""


class ModelRegistry:
    """Models of one deployment; :meth:`attach` gives the one registry of a store (registering its expiry
    hook once per process)."""

    def __init__(self, store: Store, settings: Settings, outputs):
        self._store = store
        self._settings = settings
        self._outputs = outputs
        self._views = _ViewCache(CACHE_BUDGET)
        store.add_expiry_hook(self._expire)

    @classmethod
    def attach(cls, store: Store, settings: Settings, outputs) -> "ModelRegistry":
        registry = _REGISTRIES.get(store)
        if registry is None:
            registry = _REGISTRIES[store] = cls(store, settings, outputs)
        return registry

    def _folder(self, instance_id: str) -> Path:
        return self._outputs.area(instance_id).delivery_cache.absolute() / MODELS_FOLDER

    # --- GetAsModels ----------------------------------------------------------------------------------

    def get_as_models(self, instance_id: str, objects: list[str], class_uid: str,
                      supported: Optional[list[str]]) -> ModelSetDescriptor:
        if class_uid not in MODEL_ROOTS:
            raise ModelsError(
                f"GetAsModels: classUID {class_uid or '(none)'!r} is not a model class this host provides; "
                f"it provides {NATIVE_DICOM_MODEL} (Native DICOM Model) and {ABSTRACT_IMAGE_MODEL} "
                "(Abstract Multi-Dimensional Image Model)")
        if len(objects) > self._settings.models_max_per_call:
            raise ModelsError(f"GetAsModels: {len(objects)} objects asked for; at most "
                              f"{self._settings.models_max_per_call} per call")
        offered = self._store.inputs(instance_id, objects)
        infoset = negotiate(supported)
        self._sweep(instance_id)
        folder = self._folder(instance_id)
        folder.mkdir(parents=True, exist_ok=True)
        failures: dict[str, str] = {}
        inline_max = self._settings.models_inline_max_bytes
        dicom = {}
        for u in objects:
            obj = offered.get(u.lower())
            if obj is None:
                failures[u] = "not offered to this application"
            elif (obj.descriptor.MimeType or "").lower() != DICOM_MIME_TYPE:
                failures[u] = f"its MIME type is {obj.descriptor.MimeType!r}, not {DICOM_MIME_TYPE}"
            else:
                dicom[u] = obj
        if class_uid == NATIVE_DICOM_MODEL:
            built = self._native(dicom, folder, inline_max, failures)
        else:
            built = self._abstract(dicom, inline_max, failures)
        # one file per call, the models one after the other: creating files costs more than writing them
        path = folder / f"{uuid.uuid4()}.xml"
        spans, offset = [], 0
        with open(path, "wb") as f:
            for model in built:
                document = with_namespace(model.plain, MODEL_ROOTS[class_uid], MODEL_NAMESPACES[class_uid])
                f.write(document)
                spans.append((offset, len(document)))
                offset += len(document)
        try:
            self._record(instance_id, class_uid, infoset, built, path, spans, failures)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        for model in built:
            self._views.put(model.uuid, model.root, len(model.plain))
        if failures:
            log.info("instance %s: GetAsModels: %d of %d objects cannot be represented", instance_id, len(failures),
                     len(objects))
        return ModelSetDescriptor(FailedSourceObjects=[u for u in objects if u in failures], InfosetType=infoset,
                                  Models=[model.uuid for model in built])

    def _native(self, objects: dict[str, InputObject], folder: Path, inline_max: int,
                failures: dict[str, str]) -> list[_Built]:
        from hosting_service.models.native import native_model
        from hosting_service.models.source import Source, Span, UnreadableSource

        built = []
        for descriptor_uuid, obj in objects.items():
            try:
                with Source(obj, inline_max, elements_only=True) as source:
                    plain, root, values = native_model(source, inline_max)
                    syntax = str(source.transfer_syntax)
            except (UnreadableSource, etree.XMLSyntaxError) as exc:  # text XML cannot carry
                failures[descriptor_uuid] = str(exc)
                continue
            records = []
            for value in values:
                if isinstance(value.where, Span):
                    span = value.where
                    records.append(BulkRecord(value.uuid, span.path, span.offset, span.length, syntax))
                else:  # not in the file as it is (inflated): the host keeps a copy
                    copy = folder / f"{value.uuid}.bin"
                    write_atomically(copy, value.where)
                    records.append(BulkRecord(value.uuid, str(copy), 0, len(value.where), EXPLICIT_VR_LITTLE_ENDIAN))
            built.append(_Built(str(uuid.uuid4()), plain, root, [descriptor_uuid], records))
        return built

    def _abstract(self, objects: dict[str, InputObject], inline_max: int, failures: dict[str, str]) -> list[_Built]:
        from hosting_service.models.abstract_image import NotAnImage, abstract_model, group_images, read_image
        from hosting_service.models.source import Source, UnreadableSource

        images = []
        for descriptor_uuid, obj in objects.items():
            try:
                with Source(obj, inline_max) as source:
                    images.append(read_image(source, descriptor_uuid))
            except (UnreadableSource, NotAnImage) as exc:
                failures[descriptor_uuid] = str(exc)
        built = []
        for group in group_images(images):
            root, slices = abstract_model(group)
            records = []
            for image, frame in slices:
                if frame.span is not None:
                    records.append(BulkRecord(frame.uuid, frame.span.path, frame.span.offset, frame.span.length,
                                              EXPLICIT_VR_LITTLE_ENDIAN))
                else:
                    records.append(BulkRecord(frame.uuid, image.obj.path, image.obj.offset, image.obj.length,
                                              EXPLICIT_VR_LITTLE_ENDIAN, frame.frame))
            built.append(_Built(str(uuid.uuid4()), etree.tostring(root), root,
                                [image.descriptor_uuid for image in group], records))
        return built

    def _record(self, instance_id: str, class_uid: str, infoset: str, built: list[_Built], path: Path,
                spans: list[tuple[int, int]], failures: dict[str, str]) -> None:
        """Keep the models, in a transaction that checks the application is still in a state that allows
        GetAsModels (an IDLE that came in meanwhile released everything)."""
        now = time.time()
        with self._store.transaction(key=instance_id) as db:
            self._store.check_still(db, instance_id, "GetAsModels")  # the store's own re-check, in this transaction
            db.executemany(
                'INSERT INTO models (uuid, instance_id, class_uid, infoset_type, path, "offset", length, sources, '
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(m.uuid, instance_id, class_uid, infoset, str(path), offset, length, json.dumps(m.sources), now)
                 for m, (offset, length) in zip(built, spans)])
            db.executemany(
                'INSERT INTO model_bulk_data (uuid, instance_id, model, path, "offset", length, transfer_syntax, frame)'
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(b.uuid, instance_id, m.uuid, b.path, b.offset, b.length, b.transfer_syntax, b.frame)
                 for m in built for b in m.bulk])
            self._store.write_event(db, instance_id, "models", {
                "action": "built", "classUID": class_uid, "models": len(built), "failed": len(failures)}, now)
            if failures:
                self._store.write_event(db, instance_id, "warning", {
                    "operation": "GetAsModels",
                    "message": "objects that cannot be represented as " + MODEL_ROOTS[class_uid] + ": " + "; ".join(
                        f"{u}: {why}" for u, why in list(failures.items())[:10]),
                }, now)

    # --- QueryModel / QueryInfoSet --------------------------------------------------------------------

    def query(self, operation: str, instance_id: str, models: list[str], xpaths: list[str]
              ) -> list[tuple[str, str, list[Node]]]:
        """``(model, xpath, nodes)`` for every model, then every XPath, in the order asked."""
        if len(models) > self._settings.models_max_per_call:
            raise ModelsError(f"{operation}: {len(models)} models asked for; at most "
                              f"{self._settings.models_max_per_call} per call")
        compile_xpaths(operation, xpaths)  # a malformed XPath is reported before unknown models
        rows = self._live(instance_id, models)
        unknown = [m for m in models if m.lower() not in rows]
        if unknown:
            raise ModelsError(f"{operation}: no such model for this application (unknown or released): "
                              f"{_shown(unknown)}")
        views = ((m, self._view(rows[m.lower()]), MODEL_NAMESPACES[rows[m.lower()]["class_uid"]]) for m in models)
        return run_queries(operation, views, xpaths, self._settings.models_max_answer_bytes)

    def query_model(self, instance_id: str, models: list[str], xpaths: list[str]) -> list[QueryResult]:
        return query_results(self.query("QueryModel", instance_id, models, xpaths))

    def query_info_set(self, instance_id: str, models: list[str], xpaths: list[str]) -> list[QueryResultInfoSet]:
        return info_set_results(self.query("QueryInfoSet", instance_id, models, xpaths))

    def _live(self, instance_id: str, models: Iterable[str]) -> dict[str, Row]:
        wanted = list({m.lower() for m in models})
        found: dict[str, Row] = {}
        with self._store.reading() as db:
            for i in range(0, len(wanted), 500):
                chunk = wanted[i:i + 500]
                for row in db.execute(
                        f"SELECT * FROM models WHERE instance_id = ? AND released_at IS NULL "
                        f"AND uuid IN ({','.join('?' * len(chunk))})", [instance_id, *chunk]):
                    found[row["uuid"]] = row
        return found

    def _view(self, row: Row) -> etree._Element:
        view = self._views.get(row["uuid"])
        if view is None:
            with open(row["path"], "rb") as f:
                f.seek(row["offset"])
                document = f.read(row["length"])
            view = namespace_free(document, MODEL_ROOTS[row["class_uid"]], MODEL_NAMESPACES[row["class_uid"]])
            self._views.put(row["uuid"], view, len(document))
        return view

    # --- GetData on bulk-data UUIDs -------------------------------------------------------------------

    def bulk_data(self, instance_id: str, uuids: Iterable[str]) -> dict[str, BulkRecord]:
        """The bulk data of this instance's live models among ``uuids``, keyed by lower-case UUID."""
        wanted = list({u.lower() for u in uuids})
        found: dict[str, BulkRecord] = {}
        with self._store.reading() as db:
            for i in range(0, len(wanted), 500):
                chunk = wanted[i:i + 500]
                for row in db.execute(
                        "SELECT b.* FROM model_bulk_data b JOIN models m ON m.uuid = b.model "
                        f"WHERE b.instance_id = ? AND m.released_at IS NULL AND b.uuid IN ({','.join('?' * len(chunk))})",
                        [instance_id, *chunk]):
                    found[row["uuid"]] = BulkRecord(row["uuid"], row["path"], row["offset"], row["length"],
                                                    row["transfer_syntax"], row["frame"])
        return found

    # --- ReleaseModels and expiry ---------------------------------------------------------------------

    def release(self, instance_id: str, models: list[str]) -> int:
        ids = [m.lower() for m in models]
        if not ids:
            return 0
        now = time.time()
        with self._store.transaction(key=instance_id) as db:
            count = 0
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                count += db.execute(
                    f"UPDATE models SET released_at = ? WHERE instance_id = ? AND released_at IS NULL "
                    f"AND uuid IN ({','.join('?' * len(chunk))})", [now, instance_id, *chunk]).rowcount
            self._store.write_event(db, instance_id, "models", {
                "action": "released", "models": count, "requested": len(ids), "reason": "ReleaseModels"}, now)
        self._views.drop(ids)
        self._sweep(instance_id)
        return count

    def _expire(self, db: Database, instance_id: str, reason: str, now: float) -> list[str]:
        """The store's expiry hook: every model of the instance is released (IDLE, EXIT, end)."""
        count = db.execute("UPDATE models SET released_at = ? WHERE instance_id = ? AND released_at IS NULL",
                           (now, instance_id)).rowcount
        if count:
            self._store.write_event(db, instance_id, "models",
                                    {"action": "released", "models": count, "reason": reason}, now)
        return []

    def _sweep(self, instance_id: str) -> None:
        """Delete the XML files whose models are all released (bulk-data copies stay for the locators
        handed out)."""
        with self._store.reading() as db:
            rows = db.execute(
                "SELECT uuid, path FROM models WHERE instance_id = ? AND released_at IS NOT NULL AND swept = 0 "
                "AND path NOT IN (SELECT path FROM models WHERE instance_id = ? AND released_at IS NULL)",
                (instance_id, instance_id)).fetchall()
        if not rows:
            return
        for path in {row["path"] for row in rows}:
            Path(path).unlink(missing_ok=True)
        self._views.drop(row["uuid"] for row in rows)
        with self._store.transaction(key=instance_id) as db:
            db.executemany("UPDATE models SET swept = 1 WHERE uuid = ?", [(row["uuid"],) for row in rows])

    def live_models(self, instance_id: str) -> int:
        with self._store.reading() as db:
            return int(db.execute("SELECT COUNT(*) AS n FROM models WHERE instance_id = ? AND released_at IS NULL",
                                  (instance_id,)).fetchone()["n"])
