"""What the SOAP 1.1 envelope and the HTTP body must be: another SOAP version is a VersionMismatch fault,
a header we must understand a MustUnderstand fault, a second Body or operation, a body shorter than its
Content-Length, a multipart body or an encoding the DOCTYPE scan cannot read a Client fault; gzip bodies
are read, within the body limit. In each refused case nothing is executed."""
from __future__ import annotations

import gzip
import socket
from urllib.parse import urlsplit

import pytest

from hosting_service.config import Settings
from hosting_service.states import State
from hosting_service.wire.types import HOST_NS
from wire_harness import SOAP_ENV, envelope, fault, post

LIMIT = 8192
ROUTER_SETTINGS = Settings(soap_max_body_bytes=LIMIT)
"""Read by the ``router`` fixture (tests/conftest.py)."""

IDLE = f'<NotifyStateChanged xmlns="{HOST_NS}"><state>IDLE</state></NotifyStateChanged>'
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"


def _refused(router, body: bytes, code: str, *words: str, headers: dict | None = None) -> str:
    faultcode, message = fault(post(router.url("host"), body, headers))
    assert faultcode == f"soap:{code}", message
    for word in words:
        assert word in message, message
    assert router.operations.calls == []
    return message


def _executed(router, body: bytes, headers: dict | None = None) -> None:
    response = post(router.url("host"), body, headers)
    assert response.status_code == 200, response.text
    assert router.operations.calls == [("NotifyStateChanged", {"state": State.IDLE})]


# --- SOAP version (SOAP 1.1 §4.4.1) ---------------------------------------------------------------------

@pytest.mark.parametrize(
    "namespace, words",
    [(SOAP12_ENV, [SOAP12_ENV, "SOAP 1.1 only"]), ("urn:foreign", ["urn:foreign"]), (None, ["no namespace"])],
    ids=["soap12", "foreign", "none"],
)
def test_an_envelope_of_another_soap_version_is_a_version_mismatch(router, ops, namespace, words):
    declaration = f' xmlns:e="{namespace}"' if namespace else ""
    tag = "e:" if namespace else ""
    body = f"<{tag}Envelope{declaration}><{tag}Body>{IDLE}</{tag}Body></{tag}Envelope>".encode()
    _refused(router, body, "VersionMismatch", *words)


# --- one Body, one operation ----------------------------------------------------------------------------

def test_a_second_body_is_refused(router, ops):
    body = (f'<s:Envelope xmlns:s="{SOAP_ENV}"><s:Body>{IDLE}</s:Body>'
            f'<s:Body><NotifyStateChanged xmlns="{HOST_NS}"><state>EXIT</state></NotifyStateChanged></s:Body></s:Envelope>')
    _refused(router, body.encode(), "Client", "2 Body elements")


def test_a_second_operation_element_is_refused(router, ops):
    body = envelope(IDLE + f'<NotifyStateChanged xmlns="{HOST_NS}"><state>EXIT</state></NotifyStateChanged>')
    _refused(router, body, "Client", "holds 2 elements", "<NotifyStateChanged>")


def test_a_second_header_is_refused(router, ops):
    body = f'<s:Envelope xmlns:s="{SOAP_ENV}"><s:Header/><s:Header/><s:Body>{IDLE}</s:Body></s:Envelope>'
    _refused(router, body.encode(), "Client", "2 Header elements")


# --- mustUnderstand (SOAP 1.1 §4.2.3) -------------------------------------------------------------------

@pytest.mark.parametrize("value", ["1", "true"])
def test_a_header_marked_must_understand_is_refused_before_anything_happens(router, ops, value):
    header = (f'<To xmlns="{WSA}">http://127.0.0.1/HostService-20100825</To>'
              f'<Action xmlns="{WSA}" s:mustUnderstand="{value}">http://dicom.nema.org/PS3.19/IHostService/NotifyStateChanged</Action>')
    _refused(router, envelope(IDLE, header=header), "MustUnderstand", f"{{{WSA}}}Action", "nothing was executed")


def test_headers_that_do_not_insist_or_are_for_another_actor_are_ignored(router, ops):
    header = (f'<Action xmlns="{WSA}" s:mustUnderstand="0">x</Action>'
              f'<Security xmlns="urn:sec" s:actor="http://example.org/gateway" s:mustUnderstand="1"/>'
              f'<Trace xmlns="urn:trace">1</Trace>')
    _executed(router, envelope(IDLE, header=header))


def test_a_header_for_the_next_actor_is_ours(router, ops):
    header = f'<Security xmlns="urn:sec" s:actor="http://schemas.xmlsoap.org/soap/actor/next" s:mustUnderstand="1"/>'
    _refused(router, envelope(IDLE, header=header), "MustUnderstand", "{urn:sec}Security")


# --- the HTTP body ---------------------------------------------------------------------------------------

def test_a_gzip_body_is_read(router, ops):
    _executed(router, gzip.compress(envelope(IDLE)), {"Content-Encoding": "gzip"})


def test_a_gzip_body_counts_against_the_limit_once_decompressed(router, ops):
    bomb = gzip.compress(envelope(IDLE + " " * (100 * LIMIT)))
    assert len(bomb) < LIMIT
    _refused(router, bomb, "Client", f"exceeds the limit of {LIMIT} bytes once decompressed",
             headers={"Content-Encoding": "gzip"})


@pytest.mark.parametrize(
    "body, words",
    [(gzip.compress(envelope(IDLE))[:-12], ["cut off"]), (b"not gzip at all", ["not valid gzip"]),
     (gzip.compress(envelope(IDLE)) + b"trailing", ["data after its gzip stream"])],
    ids=["cut-off", "not-gzip", "trailing"],
)
def test_a_broken_gzip_body_is_refused(router, ops, body, words):
    _refused(router, body, "Client", *words, headers={"Content-Encoding": "gzip"})


def test_another_content_encoding_is_refused(router, ops):
    _refused(router, envelope(IDLE), "Client", "Content-Encoding 'br'", headers={"Content-Encoding": "br"})


@pytest.mark.parametrize("content_type", [
    'multipart/related; type="application/xop+xml"; boundary="uuid:1"; start="<root.message@cxf.apache.org>"',
    "multipart/related; boundary=MIME_boundary; type=text/xml",
])
def test_multipart_requests_are_refused_clearly(router, ops, content_type):
    body = (b"--uuid:1\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"text/xml\"\r\n\r\n"
            + envelope(IDLE) + b"\r\n--uuid:1--\r\n")
    _refused(router, body, "Client", "multipart/related", "MTOM", "text/xml", headers={"Content-Type": content_type})


def test_a_body_shorter_than_its_content_length_is_not_executed(router, ops):
    body = envelope(IDLE)
    address = urlsplit(router.url("host"))
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(
            f"POST {address.path} HTTP/1.1\r\nHost: {address.netloc}\r\nContent-Type: text/xml; charset=utf-8\r\n"
            f"Content-Length: {len(body) + 100}\r\nConnection: close\r\n\r\n".encode() + body
        )
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 500") or answer.startswith(b"HTTP/1.1 500"), answer[:200]
    assert b"<faultcode>soap:Client</faultcode>" in answer
    assert f"ended after {len(body)} of the {len(body) + 100} bytes".encode() in answer
    assert ops.calls == []


# --- encodings the DOCTYPE scan cannot read --------------------------------------------------------------

def test_utf7_cannot_hide_a_doctype(router, ops):
    body = (b'<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE s:Envelope +AFs-+ADw-!ENTITY x +ACI-IDLE+ACI-+AD4-+AF0-+AD4-'
            + envelope(f'<NotifyStateChanged xmlns="{HOST_NS}"><state>&x;</state></NotifyStateChanged>'))
    _refused(router, body, "Client", "encoding 'UTF-7'", "UTF-8 or UTF-16")


@pytest.mark.parametrize("encoding", ["KOI8-R", "Shift_JIS", "utf 8"])
def test_other_declared_encodings_are_refused(router, ops, encoding):
    _refused(router, f'<?xml version="1.0" encoding="{encoding}"?>'.encode() + envelope(IDLE), "Client", "UTF-8 or UTF-16")


@pytest.mark.parametrize("encoding, codec", [("ISO-8859-1", "latin-1"), ("windows-1252", "cp1252"), ("us-ascii", "ascii"),
                                             ("UTF-16", "utf-16"), ("utf-8", "utf-8")])
def test_encodings_the_scan_reads_are_accepted(router, ops, encoding, codec):
    _executed(router, f'<?xml version="1.0" encoding="{encoding}"?>{envelope(IDLE).decode()}'.encode(codec))
