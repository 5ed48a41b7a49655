"""Reading an application's output at Offset/Length from the URI it gave: file: (RFC 8089 and CTK's
``file:////`` spelling) and http: from servers that honour ``Range`` and servers that ignore it."""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from hosting_service.orchestration.retrieval import RetrievalError, retrieve

BLOB = bytes(range(256)) * 40  # 10240 bytes, every offset distinguishable


class _Handler(BaseHTTPRequestHandler):
    honour_range = True

    def do_GET(self):  # noqa: N802 - the http.server naming
        if self.path == "/elsewhere":  # a peer pointing the reader at an address it could not name itself
            self.send_response(302)
            self.send_header("Location", "/blob")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path != "/blob":
            self.send_error(404)
            return
        ranged = self.headers.get("Range")
        if ranged and self.honour_range:
            first, _, last = ranged.removeprefix("bytes=").partition("-")
            body = BLOB[int(first): int(last) + 1 if last else None]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{int(first) + len(body) - 1}/{len(BLOB)}")
        else:
            body = BLOB
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(params=[True, False], ids=["range", "no-range"])
def blob_url(request):
    handler = type("Handler", (_Handler,), {"honour_range": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/blob"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("offset, length", [(0, len(BLOB)), (1000, 333), (5000, 0), (10239, 1)])
def test_http_range(blob_url, tmp_path, offset, length):
    with requests.Session() as session:
        got = retrieve(blob_url, offset, length, tmp_path / "obj", session=session, timeout=5)
    expected = BLOB[offset: offset + length] if length else BLOB[offset:]
    assert (tmp_path / "obj").read_bytes() == expected
    assert (got.size, got.sha256) == (len(expected), hashlib.sha256(expected).hexdigest())


@pytest.mark.parametrize("spelling", ["file://{path}", "file:////{bare}", "file://localhost{path}"])
def test_file_uri_spellings_and_offset(tmp_path, spelling):
    source = tmp_path / "dir with space" / "obj.bin"
    source.parent.mkdir()
    source.write_bytes(BLOB)
    uri = spelling.format(path=source.as_uri()[len("file://"):], bare=str(source).lstrip("/"))
    got = retrieve(uri, 100, 50, tmp_path / "out", session=requests.Session(), timeout=5)
    assert (tmp_path / "out").read_bytes() == BLOB[100:150] and got.size == 50


def test_short_object_is_an_error_and_leaves_nothing(tmp_path):
    source = tmp_path / "obj.bin"
    source.write_bytes(BLOB)
    with pytest.raises(RetrievalError, match="Length is 100"):
        retrieve(source.as_uri(), len(BLOB) - 10, 100, tmp_path / "out", session=requests.Session(), timeout=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obj.bin"]


@pytest.mark.parametrize("uri, message", [
    ("file://otherhost/x", "another machine"),
    ("ftp://h/x", "cannot read ftp URIs"),
    ("file:///no/such/file", "No such file"),
])
def test_unreadable_uris(tmp_path, uri, message):
    with pytest.raises(RetrievalError, match=message):
        retrieve(uri, 0, 10, tmp_path / "out", session=requests.Session(), timeout=5)


def test_http_error_status(blob_url, tmp_path):
    with pytest.raises(RetrievalError, match="HTTP 404"):
        retrieve(blob_url.replace("/blob", "/gone"), 0, 10, tmp_path / "out", session=requests.Session(), timeout=5)


def test_redirects_are_not_followed(blob_url, tmp_path):
    with pytest.raises(RetrievalError, match="HTTP 302 .*redirects are not followed"):
        retrieve(blob_url.replace("/blob", "/elsewhere"), 0, 0, tmp_path / "out", session=requests.Session(),
                 timeout=5)
    assert list(tmp_path.iterdir()) == []
