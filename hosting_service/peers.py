"""Which code base an application is built on, told from its own requests, and kept in the store.

Two PS3.19 code bases exist, CTK and XIP. CTK's applications need the host to act
differently in one place: every CTK application aborts on ReleaseData (a ``dynamic_cast`` to QtSoapArray
on a struct: ``std::bad_cast``, SIGABRT, the connection closed with no answer), so the host must not send it
(:mod:`hosting_service.orchestration.release`). A CTK application is recognised by two marks its SOAP
client (QtSoap under ``ctkSimpleSoapClient``) puts on every request, and that no other client makes
together:

* ``SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"`` on the Envelope (SOAP encoding,
  where PS3.19 is document/literal);
* the operation element in the namespace ``http://dicom.nema.org/PS3.19`` + the path of the hostURL it
  was given (``…/PS3.19/<token>/HostService-20100825``), not the service's namespace.

The first request that carries both (the application's first NotifyStateChanged(IDLE), before the host
ever calls it) is recorded as a ``peer`` event of the instance, with the evidence; readers take the
history's word for it (:func:`ctk_evidence`).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Iterable, Optional
from urllib.parse import urlsplit

from lxml import etree

from hosting_service.store import Instance, Store
from hosting_service.wire.faults import SOAP_ENV_NS

SOAP_ENCODING = "http://schemas.xmlsoap.org/soap/encoding/"
PS319_NAMESPACE_PREFIX = "http://dicom.nema.org/PS3.19"
PEER_EVENT = "peer"
"""Kind of the event that says what the application was recognised as: ``{"implementation": "CTK",
"evidence": [...]}``."""
CTK = "CTK"

_ENCODING_STYLE = f"{{{SOAP_ENV_NS}}}encodingStyle"
_REMEMBERED = 1024
"""How many instances a worker remembers having recorded (the latest), so that a CTK application's later
requests cost no store read."""


def ctk_marks(envelope: etree._Element, host_url: str) -> list[str]:
    """The marks of CTK's SOAP client on one request envelope sent to ``host_url``: both, or fewer."""
    marks = []
    if envelope.get(_ENCODING_STYLE, "").strip() == SOAP_ENCODING:
        marks.append(f'SOAP-ENV:encodingStyle="{SOAP_ENCODING}" on the Envelope')
    body = envelope.find(f"{{{SOAP_ENV_NS}}}Body")
    operation = None if body is None else next(body.iterchildren(etree.Element), None)
    if operation is not None:
        namespace = etree.QName(operation).namespace or ""
        path = urlsplit(host_url).path
        service = path.rstrip("/").rpartition("/")[2]
        built = PS319_NAMESPACE_PREFIX + path
        if namespace == built and built != f"{PS319_NAMESPACE_PREFIX}/{service}":
            marks.append(f"the operation element in the namespace {PS319_NAMESPACE_PREFIX} + the hostURL's path")
    return marks


def is_ctk_request(marks: list[str]) -> bool:
    return len(marks) == 2


class PeerRecorder:
    """Records, once per instance, that its application is CTK-style; called for every parsed request."""

    def __init__(self, store: Store):
        self.store = store
        self._recorded: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def observe(self, instance: Instance, envelope: etree._Element) -> None:
        marks = ctk_marks(envelope, instance.host_url)
        if not is_ctk_request(marks) or self._remembers(instance.id):
            return
        if not self.store.events(instance.id, kinds=[PEER_EVENT]):
            self.store.add_event(instance.id, PEER_EVENT, {"implementation": CTK, "evidence": marks})
        self._remember(instance.id)

    def _remembers(self, instance_id: str) -> bool:
        with self._lock:
            return instance_id in self._recorded

    def _remember(self, instance_id: str) -> None:
        with self._lock:
            self._recorded[instance_id] = None
            while len(self._recorded) > _REMEMBERED:
                self._recorded.popitem(last=False)


def ctk_evidence(events: Iterable[dict]) -> Optional[list[str]]:
    """The evidence that the application is CTK-style, from its instance's ``peer`` events (admin API
    shape: ``{"kind": ..., "data": ...}``), or ``None``."""
    for event in events:
        data = event.get("data") or {}
        if event.get("kind") == PEER_EVENT and data.get("implementation") == CTK:
            return list(data.get("evidence") or [])
    return None
