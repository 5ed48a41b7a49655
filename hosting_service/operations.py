"""What each HostService-20100825 operation does, for one hosted-application instance.

:class:`HostOperations` is the object the wire layer calls (method names are the wire operation names,
keyword arguments the wire element names, values those of :mod:`hosting_service.model`). It checks the
standard's preconditions from :mod:`hosting_service.states`, keeps everything in the store and never calls
the application: answers are computed from the store alone, so a worker can serve any instance.

The model-based half of the DataExchange interface (GetAsModels, QueryModel, QueryInfoSet, ReleaseModels,
and GetData on the bulk-data UUIDs of models) is :mod:`hosting_service.models`; the methods here check
the preconditions and delegate to its registry.
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import Optional

from hosting_service.config import Settings, instance_file_uris
from hosting_service.errors import ClientError
from hosting_service.inputs_http import input_url
from hosting_service.model import (
    AvailableData,
    ModelSetDescriptor,
    ObjectLocator,
    QueryResult,
    QueryResultInfoSet,
    Rectangle,
    Status,
    iter_descriptors,
)
from hosting_service.models.registry import ModelRegistry
from hosting_service.states import PreconditionViolation, State, check_precondition
from hosting_service.store import Instance, Locator, Store

log = logging.getLogger("dicom_host.operations")

_MAX_UID_LENGTH = 64  # PS3.5 §9.1: a UID is at most 64 characters


def generate_uid(root: Optional[str]) -> str:
    """A new DICOM UID: ``2.25.<UUID as integer>`` (PS3.5 §B.2) or ``<root>.<random integer>``."""
    value = uuid.uuid4().int
    if not root:
        return f"2.25.{value}"
    room = _MAX_UID_LENGTH - len(root) - 1
    return f"{root}.{value % (10 ** room) or 1}"


def fit_screen(screen: Rectangle, preferred: Optional[Rectangle]) -> Rectangle:
    """The host's screen area, narrowed to the application's preferred rectangle where that lies on it.

    PS3.19 §8.2.2 lets the host treat the preference as a hint; a preference that falls outside the screen
    or has no area gets the whole screen.
    """
    if preferred is None or preferred.Width <= 0 or preferred.Height <= 0:
        return screen
    left = max(screen.RefPointX, preferred.RefPointX)
    top = max(screen.RefPointY, preferred.RefPointY)
    right = min(screen.RefPointX + screen.Width, preferred.RefPointX + preferred.Width)
    bottom = min(screen.RefPointY + screen.Height, preferred.RefPointY + preferred.Height)
    if right <= left or bottom <= top:
        return screen
    return Rectangle(Height=bottom - top, Width=right - left, RefPointX=left, RefPointY=top)


def _unique_uuids(values: Optional[list[str]]) -> list[str]:
    """The non-empty UUIDs of ``values``, stripped, each once (compared case-insensitively), in the order
    first seen: a request naming one object many times gets one answer for it."""
    unique: dict[str, str] = {}
    for value in values or ():
        text = value.strip() if value else ""
        if text:
            unique.setdefault(text.lower(), text)
    return list(unique.values())


class HostOperations:
    """The 12 HostService operations as seen by one instance."""

    def __init__(self, store: Store, settings: Settings, outputs, instance: Instance):
        self.store = store
        self.settings = settings
        self.outputs = outputs
        self.instance = instance
        self.models = ModelRegistry.attach(store, settings, outputs)

    # --- helpers ----------------------------------------------------------------------------------------

    def admits(self, operation: str) -> bool:
        """Whether ``operation``'s precondition holds in the instance's state, asked by the wire before it
        reads the request's arguments (:func:`hosting_service.wire.services.admits`). Records nothing: an
        operation that is not admitted is called without arguments and refuses by itself."""
        try:
            check_precondition(operation, self.instance.reported_state)
        except PreconditionViolation:
            return False
        return True

    def _allowed(self, operation: str) -> bool:
        """Check the operation's precondition. Strict mode raises (a Client fault); lenient mode records a
        warning and returns False so that the caller answers nil/empty."""
        try:
            check_precondition(operation, self.instance.reported_state)
            return True
        except PreconditionViolation as exc:
            return self._refused(exc)

    def _refused(self, exc: PreconditionViolation) -> bool:
        self.store.add_event(self.instance.id, "warning", {"operation": exc.operation, "message": str(exc)})
        log.warning("instance %s: %s", self.instance.id, exc)
        if self.settings.lenient_preconditions:
            return False
        raise exc

    def _not_delivered(self, source: str, exc: Exception) -> None:
        """An object GetData leaves out of its answer (README, "Transfer syntaxes"): a warning naming it."""
        self.store.add_event(self.instance.id, "warning", {"operation": "GetData", "object": source,
                                                           "message": f"GetData: left out: {exc}"})
        log.warning("instance %s: GetData left out %s: %s", self.instance.id, source, exc)

    # --- Host interface (PS3.19 §8.2) -----------------------------------------------------------------

    def GenerateUID(self) -> str:
        return generate_uid(self.settings.uid_root)

    def GetAvailableScreen(self, preferredScreen: Optional[Rectangle] = None) -> Rectangle:
        return fit_screen(self.settings.screen, preferredScreen)

    def GetOutputLocation(self, preferredProtocols: Optional[list[str]] = None) -> Optional[str]:
        if not self._allowed("GetOutputLocation"):
            return None
        try:  # issue() checks the state again in the transaction that records the location
            return self.outputs.issue(self.instance, preferredProtocols or [])
        except PreconditionViolation as exc:  # the application changed state since this request began
            self._refused(exc)
            return None

    def NotifyStateChanged(self, state: Optional[State] = None) -> None:
        if state is None:
            raise ClientError("NotifyStateChanged: the state element is missing or nil; it must be one of "
                              + ", ".join(s.value for s in State))
        result = self.store.record_notification(self.instance.id, state)
        level = logging.INFO if result.legal else logging.WARNING
        log.log(level, "instance %s: application reported %s (was %s)%s", self.instance.id, state,
                result.previous or "NOT_STARTED", "" if result.legal else " - not a Table 7.2-2 transition")

    def NotifyStatus(self, status: Optional[Status] = None) -> None:
        if status is None:
            raise ClientError("NotifyStatus: the status element is missing or nil")
        self.store.record_status(self.instance.id, status)
        log.info("instance %s: status %s %s %s", self.instance.id, status.StatusType, status.CodeValue,
                 status.CodeMeaning or "")

    # --- DataExchange, host as recipient (PS3.19 §8.3.1) ---------------------------------------------

    def NotifyDataAvailable(self, data: Optional[AvailableData] = None, lastData: bool = False) -> bool:
        if not self._allowed("NotifyDataAvailable"):
            return False
        data = data or AvailableData()
        missing = [d for d, *_ in iter_descriptors(data) if not d.DescriptorUuid]
        if missing:
            raise ClientError(
                f"NotifyDataAvailable: {len(missing)} ObjectDescriptor(s) have no DescriptorUuid; "
                "the host could not ask for them with GetData"
            )
        try:
            self.store.record_outputs(self.instance.id, data, bool(lastData))
        except PreconditionViolation as exc:  # the application changed state since this request began
            return self._refused(exc)
        return True

    # --- DataExchange, host as source (PS3.19 §8.3.2, §8.3.6) ----------------------------------------

    def GetData(self, objects: Optional[list[str]] = None, acceptableTransferSyntaxes: Optional[list[str]] = None,
                includeBulkData: bool = True) -> list[ObjectLocator]:
        from hosting_service.dicom.cache import DeliveryCache  # pydicom and numpy: only where needed
        from hosting_service.dicom.delivery import NotDeliverable, deliver

        if not self._allowed("GetData"):
            return []
        requested = _unique_uuids(objects)  # the wire caps how many
        offered = self.store.inputs(self.instance.id, requested)
        bulk = self.models.bulk_data(self.instance.id, [u for u in requested if u.lower() not in offered])
        unknown = [u for u in requested if u.lower() not in offered and u.lower() not in bulk]
        if unknown:
            shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise ClientError(f"GetData: not offered to this application: {shown}")
        acceptable = [ts.strip() for ts in (acceptableTransferSyntaxes or []) if ts and ts.strip()]
        locators, records = [], []
        now = time.time()
        instance_cache = self.outputs.area(self.instance.id).delivery_cache.absolute()
        cache = DeliveryCache(self.settings.delivery_cache_dir.absolute(), self.settings.delivery_cache_bytes,
                              instance_cache)
        file_uris = instance_file_uris(self.instance.options, self.settings)
        for requested_uuid in requested:
            key = requested_uuid.lower()
            try:
                if key in bulk:  # a BulkData/@uuid of a model (PS3.19 §8.3.2): "the binary bulk data described"
                    delivery = bulk[key].deliver(instance_cache)
                else:
                    delivery = deliver(offered[key], acceptable, bool(includeBulkData), cache)
            except NotDeliverable as exc:
                self._not_delivered(requested_uuid, exc)
                continue
            path = delivery.path if delivery.path.is_absolute() else delivery.path.resolve()
            locator_id = str(uuid.uuid4())
            if file_uris:
                uri, offset = path.as_uri(), delivery.offset
            else:  # the application may not share this filesystem: the same bytes over http: (inputs_http)
                uri, offset = input_url(self.settings, self.instance.token, locator_id), 0
            locators.append(ObjectLocator(
                Length=delivery.length,
                Offset=offset,
                TransferSyntax=delivery.transfer_syntax,
                URI=uri,
                Locator=locator_id,
                Source=requested_uuid,
            ))
            records.append(Locator(locator_id, self.instance.id, requested_uuid.lower(), uri, str(path), now))
        cache.close()
        try:
            self.store.add_locators(records)
        except PreconditionViolation as exc:  # gone IDLE meanwhile: these locators would outlive the release
            self._refused(exc)
            return []
        return locators

    def ReleaseData(self, objects: Optional[list[str]] = None) -> None:
        self.store.release_locators(self.instance.id, _unique_uuids(objects))

    # --- DataExchange, models (PS3.19 §8.3.3-8.3.5, §8.3.7; hosting_service.models) ---------------

    def GetAsModels(self, objects: Optional[list[str]] = None, classUID: Optional[str] = None,
                    supportedInfoSetTypes: Optional[list[str]] = None) -> ModelSetDescriptor:
        if not self._allowed("GetAsModels"):
            return ModelSetDescriptor()
        try:
            return self.models.get_as_models(self.instance.id, _uuids(objects), (classUID or "").strip(),
                                             supportedInfoSetTypes)
        except PreconditionViolation as exc:  # the application changed state since this request began
            self._refused(exc)
            return ModelSetDescriptor()

    def ReleaseModels(self, models: Optional[list[str]] = None) -> None:
        self.models.release(self.instance.id, _uuids(models))

    def QueryModel(self, models: Optional[list[str]] = None, xPaths: Optional[list[str]] = None) -> list[QueryResult]:
        if not self._allowed("QueryModel"):
            return []
        return self.models.query_model(self.instance.id, _uuids(models), list(xPaths or []))

    def QueryInfoSet(self, models: Optional[list[str]] = None,
                     xPaths: Optional[list[str]] = None) -> list[QueryResultInfoSet]:
        if not self._allowed("QueryInfoSet"):
            return []
        return self.models.query_info_set(self.instance.id, _uuids(models), list(xPaths or []))


def _uuids(values: Optional[list[str]]) -> list[str]:
    return [u.strip() for u in values or [] if u and u.strip()]
