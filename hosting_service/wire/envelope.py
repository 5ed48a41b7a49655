"""The SOAP 1.1 envelope of a request: its version, its one operation element, the headers it insists on.

* An envelope in any namespace but SOAP 1.1's (SOAP 1.2, another, none) gets a ``VersionMismatch`` fault
  (SOAP 1.1 §4.4.1), and nothing in it is executed.
* A header entry addressed to this endpoint (no ``actor``, or the ``.../actor/next`` actor) with
  ``mustUnderstand="1"`` gets a ``MustUnderstand`` fault (SOAP 1.1 §4.2.3) before anything is executed:
  the endpoint processes no header, so a peer that requires one (WS-Addressing, WS-Security) learns it
  before the call has any effect, not after. Other headers are ignored.
* The envelope must hold one Body (and at most one Header), the Body exactly one element: the operation.
"""
from __future__ import annotations

from lxml import etree

from hosting_service.errors import ClientError
from hosting_service.wire.faults import MUST_UNDERSTAND, SOAP_ENV_NS, VERSION_MISMATCH

_HEADER = f"{{{SOAP_ENV_NS}}}Header"
_BODY = f"{{{SOAP_ENV_NS}}}Body"
_ACTOR = f"{{{SOAP_ENV_NS}}}actor"
_MUST_UNDERSTAND = f"{{{SOAP_ENV_NS}}}mustUnderstand"
_ACTOR_NEXT = "http://schemas.xmlsoap.org/soap/actor/next"
_OURS = (None, "", _ACTOR_NEXT)
"""The ``actor`` values that address a header entry to the endpoint (SOAP 1.1 §4.2.2)."""


class EnvelopeFault(ClientError):
    """A request refused at the envelope level, with its SOAP 1.1 faultcode."""

    def __init__(self, faultcode: str, message: str):
        super().__init__(message)
        self.faultcode = faultcode


def operation_element(root: etree._Element) -> etree._Element:
    """The operation element of the SOAP 1.1 request envelope ``root``; :class:`EnvelopeFault` or
    :class:`ClientError` if ``root`` is not one this endpoint may execute."""
    namespace, _, local = root.tag[1:].rpartition("}") if root.tag[0] == "{" else ("", "", root.tag)
    if local != "Envelope":
        raise ClientError(f"the request is not a SOAP envelope: its document element is <{local}>")
    if namespace != SOAP_ENV_NS:
        where = f"the namespace {namespace!r}" if namespace else "no namespace"
        raise EnvelopeFault(VERSION_MISMATCH, f"the Envelope is in {where}; this endpoint speaks SOAP 1.1 only "
                                              f"(the Envelope in {SOAP_ENV_NS})")
    parts: dict[str, list[etree._Element]] = {_HEADER: [], _BODY: []}
    for child in root.iterchildren(_HEADER, _BODY):
        parts[child.tag].append(child)
    for tag, found in parts.items():
        if len(found) > 1:
            raise ClientError(f"the SOAP envelope has {len(found)} {tag.rpartition('}')[2]} elements; "
                              "SOAP 1.1 §4 allows one")
    for header in parts[_HEADER]:
        _check_must_understand(header)
    if not parts[_BODY]:
        raise ClientError("the SOAP envelope has no Body")
    payload = list(parts[_BODY][0].iterchildren(etree.Element))
    if not payload:
        raise ClientError("the SOAP Body is empty; it must hold one operation element")
    if len(payload) > 1:
        names = ", ".join(f"<{etree.QName(e).localname}>" for e in payload[:5])
        raise ClientError(f"the SOAP Body holds {len(payload)} elements ({names}); a request holds one operation")
    return payload[0]


def _check_must_understand(header: etree._Element) -> None:
    insisted = [
        entry for entry in header.iterchildren(etree.Element)
        if entry.get(_ACTOR) in _OURS and (entry.get(_MUST_UNDERSTAND) or "").strip() in ("1", "true")
    ]
    if insisted:
        names = ", ".join(f"{{{etree.QName(e).namespace or ''}}}{etree.QName(e).localname}" for e in insisted[:5])
        raise EnvelopeFault(MUST_UNDERSTAND, f"this endpoint processes no SOAP headers and cannot honour "
                                             f"mustUnderstand on: {names} (SOAP 1.1 §4.2.3); nothing was executed")
