"""Hostile requests: each is a SOAP Client fault with a useful faultstring, nothing is fetched or expanded,
and the endpoint answers a normal call afterwards."""
from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import requests

from hosting_service.config import Settings
from hosting_service.states import State
from hosting_service.wire.types import HOST_NS
from wire_harness import body_child, envelope, fault, post

LIMIT = 8192
DEPTH = 64
NORMAL = envelope(f'<NotifyStateChanged xmlns="{HOST_NS}"><state>IDLE</state></NotifyStateChanged>')


ROUTER_SETTINGS = Settings(soap_max_body_bytes=LIMIT, soap_max_depth=DEPTH)
"""Read by the ``router`` fixture (tests/conftest.py)."""


@pytest.fixture
def ops(ops, router):
    yield ops
    # whatever the test sent, the endpoint still answers a normal call
    ops.calls.clear()
    assert post(router.url("host"), NORMAL).status_code == 200
    assert ops.calls == [("NotifyStateChanged", {"state": State.IDLE})]


@pytest.fixture(scope="module")
def bait():
    """A local HTTP server that counts every request: external entities and DTDs must never reach it."""
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            body = b'<!ENTITY leak "LEAKED">'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", hits
    server.shutdown()
    server.server_close()


def fault_text(document: bytes) -> tuple[str, str]:
    child = body_child(document)
    return child.findtext("faultcode"), child.findtext("faultstring")


def _state_with(prolog: str, value: str) -> bytes:
    return prolog.encode() + envelope(f'<NotifyStateChanged xmlns="{HOST_NS}"><state>{value}</state></NotifyStateChanged>')


def _client_fault(router, body: bytes, *words: str, headers: dict | None = None) -> str:
    response = post(router.url("host"), body, headers)
    code, message = fault(response)
    assert code == "soap:Client"
    for word in words:
        assert word in message, message
    return response.text


def test_doctype_is_refused(router, ops):
    _client_fault(router, _state_with('<!DOCTYPE s:Envelope [<!ENTITY idle "IDLE">]>', "&idle;"), "DOCTYPE")
    assert ops.calls == []


def test_external_file_entity_is_not_read(router, ops):
    text = _client_fault(router, _state_with('<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', "&xxe;"), "DOCTYPE")
    assert "root:" not in text
    assert ops.calls == []


@pytest.mark.parametrize(
    "prolog",
    [
        '<!DOCTYPE x [<!ENTITY xxe SYSTEM "{url}/entity">]>',
        '<!DOCTYPE x SYSTEM "{url}/external.dtd">',
        '<!DOCTYPE x [<!ENTITY % remote SYSTEM "{url}/parameter"> %remote;]>',
    ],
    ids=["general-entity", "external-dtd", "parameter-entity"],
)
def test_nothing_is_fetched_over_the_network(router, ops, bait, prolog):
    url, hits = bait
    value = "&xxe;" if "xxe" in prolog else "IDLE"
    text = _client_fault(router, _state_with(prolog.format(url=url), value), "DOCTYPE")
    assert "LEAKED" not in text
    assert hits == []
    assert ops.calls == []


def test_billion_laughs_is_refused_quickly(router, ops):
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol%d;" % (i - 1)) * 10}">' for i in range(1, 10)
    )
    started = time.monotonic()
    _client_fault(router, _state_with(f"<!DOCTYPE lolz [{entities}]>", "&lol9;"), "DOCTYPE")
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("depth, words", [(DEPTH + 1, "deeper than the limit of 64"), (1000, "Excessive depth")])
def test_deep_nesting_is_refused(router, ops, depth, words):
    nested = "<a>" * depth + "</a>" * depth
    body = envelope(f'<NotifyStateChanged xmlns="{HOST_NS}">{nested}</NotifyStateChanged>')
    assert len(body) < LIMIT
    _client_fault(router, body, words)


def test_an_oversized_body_with_content_length_is_refused(router, ops):
    body = envelope(f'<NotifyStateChanged xmlns="{HOST_NS}"><state>IDLE</state>{" " * LIMIT}</NotifyStateChanged>')
    _client_fault(router, body, f"exceeds the limit of {LIMIT} bytes")
    assert ops.calls == []


def test_a_body_without_content_length_is_refused_where_the_server_cannot_delimit_it(router, ops):
    """wsgiref does not decode chunked bodies, so the endpoint must not read to a never-coming EOF."""
    response = requests.post(router.url("host"), data=iter([NORMAL]), headers={"Content-Type": "text/xml"}, timeout=10)
    code, message = fault(response)
    assert code == "soap:Client" and "no Content-Length" in message


@pytest.mark.parametrize(
    "body, words",
    [
        (b"\x00\xff\xfe\x8fgarbage\x13\x37", ["not well-formed XML"]),
        (b"<s:Envelope xmlns:s='http://schemas.xmlsoap.org/soap/envelope/'><s:Body>", ["not well-formed XML"]),
        (b"", ["body is empty"]),
        (b"   \n", ["body is empty"]),
        ('<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'.encode("utf-16"), ["DOCTYPE"]),
        ('<?xml version="1.0" encoding="UTF-32"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'.encode("utf-32"),
         ["UTF-8 or UTF-16"]),
        (b"<?xml version='1.0'?><!-- hi --><?pi x?>\n<!DOCTYPE x><x/>", ["DOCTYPE"]),
    ],
    ids=["garbage", "truncated", "empty", "blank", "utf16-doctype", "utf32-doctype", "doctype-after-comments"],
)
def test_malformed_bodies(router, ops, body, words):
    _client_fault(router, body, *words)


@pytest.fixture(scope="module")
def gunicorn_url(tmp_path_factory):
    """The SOAP endpoint alone under gunicorn, which decodes chunked bodies (``wsgi.input_terminated``)."""
    folder = tmp_path_factory.mktemp("gunicorn")
    (folder / "wire_hostile_app.py").write_text(textwrap.dedent(f"""
        from hosting_service.config import Settings
        from hosting_service.wire.endpoint import SoapEndpoint
        from hosting_service.wire.services import OPERATIONS_KEY, HostService

        class Operations:
            def NotifyStateChanged(self, state):
                return None

        endpoint = SoapEndpoint(HostService, Settings(soap_max_body_bytes={LIMIT}))

        def app(environ, start_response):
            environ[OPERATIONS_KEY] = Operations()
            return endpoint(environ, start_response)
    """))
    listener = socket.create_server(("127.0.0.1", 0))  # bound here and passed on: no port race
    log = folder / "gunicorn.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--chdir", str(folder), "-b", f"fd://{listener.fileno()}", "-w", "1",
         "--no-control-socket", "wire_hostile_app:app"],
        stdout=subprocess.DEVNULL, stderr=open(log, "wb"), pass_fds=(listener.fileno(),),
    )
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/HostService-20100825"
    listener.close()  # the server holds its own copy
    try:
        _wait_until_up(url, server, log)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_oversized_chunked_body_under_gunicorn(gunicorn_url):
    """The limit is enforced while reading a chunked body."""
    oversized = iter([NORMAL[:-40], b" " * 4096, b" " * 4096, NORMAL[-40:]])
    response = requests.post(gunicorn_url, data=oversized, headers={"Content-Type": "text/xml"}, timeout=10)
    code, message = fault(response)
    assert code == "soap:Client" and f"exceeds the limit of {LIMIT} bytes" in message
    chunked_normal = requests.post(gunicorn_url, data=iter([NORMAL[:50], NORMAL[50:]]), headers={"Content-Type": "text/xml"},
                                   timeout=10)
    assert chunked_normal.status_code == 200 and b"NotifyStateChangedResponse" in chunked_normal.content


@pytest.mark.parametrize(
    "chunks, words",
    [
        (b"%x\r\n%s\r\nzz\r\n" % (len(NORMAL), NORMAL), ["InvalidChunkSize"]),
        (b"%x\r\n%sXX0\r\n\r\n" % (len(NORMAL), NORMAL), ["ChunkMissingTerminator"]),
        (b"%x\r\n%s" % (len(NORMAL) + 50, NORMAL), ["NoMoreData"]),
        (b"%x\r\n%s\r\n" % (len(NORMAL), NORMAL), ["NoMoreData"]),
    ],
    ids=["bad-chunk-size", "missing-terminator", "cut-off-in-a-chunk", "no-last-chunk"],
)
def test_a_malformed_or_cut_off_chunked_body_is_a_client_fault(gunicorn_url, chunks, words):
    address = urlsplit(gunicorn_url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(f"POST {address.path} HTTP/1.1\r\nHost: {address.netloc}\r\nContent-Type: text/xml\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n".encode() + chunks)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500"), answer[:300]
    code, message = fault_text(body)
    assert code == "soap:Client" and "the request body could not be read" in message, message
    for word in words:
        assert word in message, message
    assert "Traceback" not in message


def _wait_until_up(url: str, server: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"gunicorn exited: {log.read_text()}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError("gunicorn did not start")


def test_utf32_and_ebcdic_cannot_smuggle_a_doctype_past_the_scan(router, ops, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    doc = (f'<?xml version="1.0" encoding="UTF-32"?><!DOCTYPE e [<!ENTITY % p SYSTEM "file://{secret}"> %p;]>'
           f'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>')
    for body in (doc.encode("utf-32"), doc.encode("utf-32-le"), doc.replace("UTF-32", "cp037").encode("cp037")):
        code, text = fault(post(router.url("host"), body))
        assert code.endswith("Client") and "UTF-8 or UTF-16" in text and "SECRET" not in text


def test_external_references_resolve_to_nothing_even_past_the_scan(tmp_path):
    """The parser itself never reads a file, whatever reaches it (the defence behind the DOCTYPE scan).
    libxml2 with ``no_network`` and ``load_dtd=False`` still reads a ``file:`` parameter entity in a UTF-32
    document: its error would then name the file (``... (secret-name.txt, line 1)``)."""
    from lxml import etree

    from hosting_service.wire.safety import new_parser

    secret = tmp_path / "secret-name.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    doc = f'<?xml version="1.0" encoding="UTF-32"?><!DOCTYPE e [<!ENTITY % p SYSTEM "file://{secret}"> %p;]><e/>'
    try:
        etree.fromstring(doc.encode("utf-32"), new_parser())
    except etree.XMLSyntaxError as exc:
        assert "secret-name" not in str(exc) and "SECRET" not in str(exc)
