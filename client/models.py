"""PS3.19 Annex A models on the Python side: reading a data source's models, and offering a hosted
application's outputs as models.

* :class:`Models`: models a data source built with GetAsModels (the host's inputs for an application,
  through :class:`~client.HostClient`; an application's outputs for the host, through
  :class:`~client.ApplicationClient`): query them with XPath, fetch their bulk data with GetData, release
  them (also as a context manager);
* :func:`input_models`: in a :class:`~client.HostedApplication`'s ``process``, models of every input of
  the task in one call;
* :class:`OutputModels`: what the kit answers to the host's GetAsModels, QueryModel, QueryInfoSet,
  ReleaseModels and GetData on bulk-data UUIDs: Native DICOM Models of the task's DICOM outputs, built
  when first asked for, with the same builder and query rules as the host's (:mod:`hosting_service.models`).
  Bulk data points into the output as written to its output location (``Offset``/``Length`` of its
  URI), so the host reads it where it already is.
"""
from __future__ import annotations

import os
import tempfile
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Optional, Sequence

from lxml import etree

from client.data_exchange import TEXT_XML, DataExchangeClient, read_located
from hosting_service.config import Settings
from hosting_service.errors import ClientError
from hosting_service.model import (
    DICOM_MIME_TYPE,
    ModelSetDescriptor,
    ObjectDescriptor,
    ObjectLocator,
    QueryResult,
    QueryResultInfoSet,
    iter_descriptors,
)
from hosting_service.models import NATIVE_DICOM_MODEL, NATIVE_NS, negotiate
from hosting_service.models.query import info_set_results, query_results, run_queries

if TYPE_CHECKING:
    from client.task import TaskContext, TaskOutput


class Models:
    """Models a data source built with GetAsModels (see the module docstring)."""

    def __init__(self, source: DataExchangeClient, descriptor: ModelSetDescriptor):
        self.source = source
        self.uuids: list[str] = list(descriptor.Models or [])
        self.failed: list[str] = list(descriptor.FailedSourceObjects or [])
        """Objects the source could not represent."""
        self.infoset_type = descriptor.InfosetType or TEXT_XML

    @classmethod
    def of(cls, source: DataExchangeClient, objects: Iterable[str], class_uid: str = NATIVE_DICOM_MODEL,
           infoset_types: Sequence[str] = (TEXT_XML,)) -> "Models":
        """GetAsModels of ``objects`` (descriptor UUIDs) as models of ``class_uid``."""
        return cls(source, source.get_as_models(list(objects), class_uid, list(infoset_types)))

    def query(self, *xpaths: str) -> list[QueryResult]:
        """QueryModel: every XPath on every model, model-major."""
        return self.source.query_model(self.uuids, xpaths) if self.uuids else []

    def query_info_set(self, *xpaths: str) -> list[QueryResultInfoSet]:
        return self.source.query_info_set(self.uuids, xpaths) if self.uuids else []

    def values(self, xpath: str) -> list[list[str]]:
        """The node values ``xpath`` selects, one list per model (in :attr:`uuids` order)."""
        return [[node.Value or "" for node in result.Result] for result in self.query(xpath)]

    def documents(self) -> list[etree._Element]:
        """Each model whole, parsed (in its Annex A namespace)."""
        return [etree.fromstring((result.Result[0].Value or "").encode()) for result in self.query("/")]

    def bulk_data(self, uuids: Sequence[str]) -> list[bytes]:
        """The bytes of bulk-data UUIDs the models point to (GetData, read, ReleaseData)."""
        return [data for _, data in self.located(uuids)]

    def located(self, uuids: Sequence[str]) -> list[tuple[ObjectLocator, bytes]]:
        """Each bulk-data UUID's locator (its ``TransferSyntax`` says how the bytes are encoded) and bytes."""
        if not uuids:
            return []
        locators = self.source.get_data(uuids, (), True)
        by_source = {(locator.Source or "").lower(): locator for locator in locators}
        try:
            return [(by_source[u.lower()], read_located(by_source[u.lower()], session=self.source.session))
                    for u in uuids]
        finally:
            self.source.release_data([locator.Locator for locator in locators if locator.Locator])

    def release(self) -> None:
        if self.uuids:
            self.source.release_models(self.uuids)
            self.uuids = []

    def __enter__(self) -> "Models":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def input_models(context: "TaskContext", class_uid: str = NATIVE_DICOM_MODEL) -> Models:
    """Models of every input the host announced for this task, in one call (release them, or leave that
    to the host at IDLE)."""
    uuids = [d.DescriptorUuid for data in context.available_data for d, *_ in iter_descriptors(data)
             if d.DescriptorUuid]
    return Models.of(context.host, uuids, class_uid)


@dataclass
class _Model:
    view: etree._Element
    bulk: list[str]


class OutputModels:
    """The kit's side of the model interface for one task's outputs (see the module docstring)."""

    def __init__(self, settings: Optional[Settings] = None):
        self._settings = settings or Settings()
        self._lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        self._bulk: dict[str, ObjectLocator] = {}

    def get_as_models(self, outputs: dict, objects: list[str], class_uid: str,
                      supported: Optional[list[str]]) -> ModelSetDescriptor:
        """``outputs``: descriptor UUID (lower case) -> the kit's delivered output (``output``, ``uri``)."""
        from hosting_service.models.source import UnreadableSource  # pydicom: only once models are asked for

        if class_uid != NATIVE_DICOM_MODEL:
            raise ClientError(f"GetAsModels: this application offers its outputs as Native DICOM Models "
                              f"({NATIVE_DICOM_MODEL}) only, not {class_uid or '(none)'!r}")
        unknown = [u for u in objects if u.lower() not in outputs]
        if unknown:
            raise ClientError(f"GetAsModels: not announced by this application: {', '.join(unknown[:5])}")
        models, failed = [], []
        for requested in objects:
            delivered = outputs[requested.lower()]
            try:
                model_uuid = self._build(requested, delivered.output, delivered.uri)
            except (UnreadableSource, etree.XMLSyntaxError):
                failed.append(requested)
                continue
            models.append(model_uuid)
        return ModelSetDescriptor(FailedSourceObjects=failed, InfosetType=negotiate(supported), Models=models)

    def _build(self, descriptor_uuid: str, output: "TaskOutput", uri: str) -> str:
        from hosting_service.models.native import native_model
        from hosting_service.models.source import Source, Span, UnreadableSource
        from hosting_service.store.base import InputObject

        if output.mime_type.lower() != DICOM_MIME_TYPE:
            raise UnreadableSource(f"its MIME type is {output.mime_type}")
        temporary = None
        if output.path is not None:
            path = str(output.path)
        else:
            fd, temporary = tempfile.mkstemp(prefix="output-model-", suffix=".dcm")
            with os.fdopen(fd, "wb") as f:
                f.write(output.data or b"")
            path = temporary
        try:
            inline_max = self._settings.models_inline_max_bytes
            with Source(InputObject(ObjectDescriptor(DescriptorUuid=descriptor_uuid), path), inline_max,
                        elements_only=True) as source:
                _, view, values = native_model(source, inline_max)
                syntax = str(source.transfer_syntax)
        finally:
            if temporary:
                os.unlink(temporary)
        locators = {}
        for value in values:
            if not isinstance(value.where, Span):
                raise UnreadableSource("its bulk data does not lie in the object as written (Deflated)")
            locators[value.uuid] = ObjectLocator(Length=value.where.length, Offset=value.where.offset,
                                                 TransferSyntax=syntax, URI=uri, Source=value.uuid)
        model_uuid = str(uuid.uuid4())
        with self._lock:
            self._models[model_uuid] = _Model(view, list(locators))
            self._bulk.update(locators)
        return model_uuid

    def _answers(self, operation: str, models: list[str], xpaths: list[str]):
        with self._lock:
            unknown = [m for m in models if m.lower() not in self._models]
            views = [(m, self._models[m.lower()].view, NATIVE_NS) for m in models if m.lower() in self._models]
        if unknown:
            raise ClientError(f"{operation}: no such model of this application (unknown or released): "
                              f"{', '.join(unknown[:5])}")
        return run_queries(operation, views, xpaths, self._settings.models_max_answer_bytes)

    def query_model(self, models: list[str], xpaths: list[str]) -> list[QueryResult]:
        return query_results(self._answers("QueryModel", models, xpaths))

    def query_info_set(self, models: list[str], xpaths: list[str]) -> list[QueryResultInfoSet]:
        return info_set_results(self._answers("QueryInfoSet", models, xpaths))

    def bulk_locators(self, uuids: Iterable[str]) -> dict[str, ObjectLocator]:
        """Fresh locators for the bulk-data UUIDs among ``uuids`` (keyed by lower-case UUID)."""
        with self._lock:
            found = {u.lower(): self._bulk[u.lower()] for u in uuids if u.lower() in self._bulk}
        return {key: ObjectLocator(Length=l.Length, Offset=l.Offset, TransferSyntax=l.TransferSyntax, URI=l.URI,
                                   Locator=str(uuid.uuid4()), Source=l.Source) for key, l in found.items()}

    def release(self, models: Iterable[str]) -> None:
        """ReleaseModels; the bulk data goes with its model (locators already handed out stay valid:
        they point at the outputs themselves)."""
        with self._lock:
            for model in models:
                released = self._models.pop(model.lower(), None)
                for bulk in released.bulk if released else ():
                    self._bulk.pop(bulk, None)

