"""SOAP 1.1 Fault responses: the only way the wire layer reports an error to a peer.

A fault is an envelope with ``faultcode`` ``soap:Client`` (the request was wrong; ``faultstring`` says how)
or ``soap:Server`` (our failure; the faultstring stays generic and the details go to the log), or one of the
two envelope-level codes of SOAP 1.1 §4.4.1, ``soap:VersionMismatch`` and ``soap:MustUnderstand``, sent with
HTTP 500 and ``text/xml; charset=utf-8`` as SOAP 1.1 §6.2 requires. Never an HTML page, never a traceback.
"""
from __future__ import annotations

import re

from lxml import etree

SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
"""The SOAP 1.1 envelope namespace, the only one PS3.19 uses (its WSDL binds SOAP 1.1)."""
CONTENT_TYPE = "text/xml; charset=utf-8"
CLIENT = "Client"
SERVER = "Server"
VERSION_MISMATCH = "VersionMismatch"
MUST_UNDERSTAND = "MustUnderstand"
INTERNAL_ERROR = "internal error"
"""The faultstring of every Server fault."""

_MAX_FAULTSTRING = 2000
_NOT_XML_CHARS = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def fault_document(code: str, message: str) -> bytes:
    """A serialised SOAP 1.1 Fault envelope. ``code`` is one of the four codes above."""
    text = _NOT_XML_CHARS.sub("\ufffd", message)
    if len(text) > _MAX_FAULTSTRING:
        text = text[: _MAX_FAULTSTRING - 1] + "\u2026"
    envelope = etree.Element(f"{{{SOAP_ENV_NS}}}Envelope", nsmap={"soap": SOAP_ENV_NS})
    fault = etree.SubElement(etree.SubElement(envelope, f"{{{SOAP_ENV_NS}}}Body"), f"{{{SOAP_ENV_NS}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"soap:{code}"
    etree.SubElement(fault, "faultstring").text = text
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


def fault_response(start_response, code: str, message: str) -> list[bytes]:
    """Answer the WSGI request with a Fault (HTTP 500)."""
    body = fault_document(code, message)
    start_response(
        "500 Internal Server Error", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))]
    )
    return [body]
