"""The DataExchange operations (PS3.19 §8.3), which both services offer with the same names and arguments.

The source of data announces it (``notify_data_available``) and the recipient pulls it (``get_data`` and
the model calls) and releases it. The host uses these methods on the application's outputs, the
application on the host's inputs.
"""
from __future__ import annotations

from typing import Iterable, Optional

import requests

from client.soap import SoapClient
from hosting_service import located
from hosting_service.model import AvailableData, ModelSetDescriptor, ObjectLocator, QueryResult, QueryResultInfoSet

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
DEFAULT_TRANSFER_SYNTAXES = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
"""Explicit VR Little Endian first: every PS3.19 data source must be able to provide it (§8.3.2)."""

CALL_BATCH = 100
"""Most UUIDs this client names in one GetData or ReleaseData call. A peer bounds the items of a request
(the host at ``DICOM_HOST_SOAP_MAX_ITEMS``, 5,000 by default), and a GetData that transcodes costs the
peer up to about 0.1 s per object (JPEG 2000 slices), so each call stays well inside the call timeout."""

TEXT_XML = "text/xml"
"""The infoset type every model recipient supports and always lists (§8.3.3)."""


class DataExchangeClient(SoapClient):
    """PS3.19 §8.3 over SOAP. UUID arguments are plain strings, results model values."""

    def notify_data_available(self, data: AvailableData, last_data: bool) -> bool:
        """Announce data (§8.3.1). ``last_data`` TRUE ends the announcements of this task. The answer is
        whether the recipient accepted the list."""
        return self.call("NotifyDataAvailable", data=data, lastData=last_data)

    def get_data(
        self,
        uuids: Iterable[str],
        acceptable_transfer_syntaxes: Iterable[str] = DEFAULT_TRANSFER_SYNTAXES,
        include_bulk_data: bool = True,
    ) -> list[ObjectLocator]:
        """Where to read the announced objects ``uuids`` (§8.3.2): one ObjectLocator each (in calls of at
        most :data:`CALL_BATCH` UUIDs)."""
        syntaxes = list(acceptable_transfer_syntaxes)
        locators: list[ObjectLocator] = []
        for batch in _batches(list(uuids)):
            locators += self.call("GetData", objects=batch, acceptableTransferSyntaxes=syntaxes,
                                  includeBulkData=include_bulk_data) or []
        return locators

    def release_data(self, locator_uuids: Iterable[str]) -> None:
        """Free what ``get_data`` handed out (§8.3.6); the UUIDs are ObjectLocator ``Locator`` values."""
        for batch in _batches(list(locator_uuids)):
            self.call("ReleaseData", objects=batch)

    def get_as_models(
        self, uuids: Iterable[str], class_uid: str, supported_info_set_types: Iterable[str] = (TEXT_XML,)
    ) -> ModelSetDescriptor:
        """The objects ``uuids`` as models of ``class_uid`` (§8.3.3), e.g. 1.2.840.10008.7.1.1 (Native DICOM)."""
        return self.call(
            "GetAsModels",
            objects=list(uuids),
            classUID=class_uid,
            supportedInfoSetTypes=list(supported_info_set_types),
        )

    def release_models(self, model_uuids: Iterable[str]) -> None:
        """Free models obtained with ``get_as_models`` (§8.3.7)."""
        self.call("ReleaseModels", models=list(model_uuids))

    def query_model(self, model_uuids: Iterable[str], xpaths: Iterable[str]) -> list[QueryResult]:
        """Every XPath applied to every model, results as XML text (§8.3.4)."""
        return self.call("QueryModel", models=list(model_uuids), xPaths=list(xpaths))

    def query_info_set(self, model_uuids: Iterable[str], xpaths: Iterable[str]) -> list[QueryResultInfoSet]:
        """Like :meth:`query_model`, results as bytes in the negotiated infoset type (§8.3.5)."""
        return self.call("QueryInfoSet", models=list(model_uuids), xPaths=list(xpaths))


def _batches(uuids: list[str]) -> list[list[str]]:
    """``uuids`` in lists of at most :data:`CALL_BATCH` (one empty list for none: the call still happens)."""
    return [uuids[i:i + CALL_BATCH] for i in range(0, len(uuids), CALL_BATCH)] or [[]]


def read_located(locator: ObjectLocator, *, session: Optional[requests.Session] = None, timeout: float = 30.0) -> bytes:
    """The ``Length`` bytes at ``Offset`` of ``locator.URI`` (§9.5): a ``file:`` URI is read from disk, an
    ``http:``/``https:`` one with a ranged GET. ``Length`` 0 or less means "to the end". Raises
    :class:`~hosting_service.located.UnreadableObject`."""
    return located.read_located(locator.URI or "", locator.Offset or 0, locator.Length or 0, session=session,
                                timeout=timeout)
