"""Reading an upload's body past gunicorn's reader: with gunicorn's own Body/LengthReader/SocketUnreader
over a real socket pair, the body comes out whole and gunicorn keeps exactly what is not the body's."""
from __future__ import annotations

import socket

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.body import Body, ChunkedReader, LengthReader
from gunicorn.http.parser import RequestParser
from gunicorn.http.unreader import SocketUnreader

from hosting_service.outputs import body as body_module
from hosting_service.outputs.body import BodyStalled, body_source

TIMEOUT = 10.0


class Req:  # what ChunkedReader reads its limits from
    limit_request_field_size = 8190
    max_buffer_headers = 8190 * 32
    trailers: list = []

    def parse_headers(self, data, from_trailer=False):
        return []


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def gunicorn_request(sock: socket.socket, buffered: bytes, length: int | None):
    """The wsgi.input gunicorn builds for a request whose headers came with ``buffered`` bytes after them."""
    unreader = SocketUnreader(sock)
    unreader.unread(buffered)
    reader = LengthReader(unreader, length) if length is not None else ChunkedReader(Req(), unreader)
    return {"wsgi.input": Body(reader), "gunicorn.socket": sock}, unreader


def read_all(readinto, size: int = 7) -> bytes:
    out = bytearray()
    buffer = memoryview(bytearray(size))
    while n := readinto(buffer):
        out += buffer[:n]
    return bytes(out)


def test_body_partly_buffered_rest_on_the_socket(pair):
    server, client = pair
    environ, unreader = gunicorn_request(server, b"HEAD", 10)
    client.sendall(b"123456" + b"NEXT REQUEST")
    assert read_all(body_source(environ, 10, TIMEOUT)) == b"HEAD123456"
    assert unreader.read() == b"NEXT REQUEST"  # never read past the body


def test_body_and_a_pipelined_request_both_buffered(pair):
    server, _ = pair
    environ, unreader = gunicorn_request(server, b"0123456789PUT /next", 10)
    assert read_all(body_source(environ, 10, TIMEOUT)) == b"0123456789"
    assert unreader.read() == b"PUT /next"


def test_a_body_left_unread_is_still_gunicorns_to_drain(pair):
    """After an early answer (410, 413) gunicorn must find the unread rest of the body, not parse it as the
    next request."""
    server, client = pair
    environ, _ = gunicorn_request(server, b"ABC", 12)
    client.sendall(b"DEFGHIJKL")
    readinto = body_source(environ, 12, TIMEOUT)
    buffer = memoryview(bytearray(5))
    first = bytes(buffer[: readinto(buffer)])
    second = bytes(buffer[: readinto(buffer)])
    assert first + second + environ["wsgi.input"].read() == b"ABCDEFGHIJKL"


def test_a_short_body_ends_and_a_silent_one_stalls(pair):
    server, client = pair
    environ, _ = gunicorn_request(server, b"", 100)
    client.sendall(b"only this")
    client.shutdown(socket.SHUT_WR)
    assert read_all(body_source(environ, 100, TIMEOUT)) == b"only this"

    other_server, other_client = socket.socketpair()
    environ, _ = gunicorn_request(other_server, b"", 100)
    with pytest.raises(BodyStalled):
        read_all(body_source(environ, 100, 0.2))
    other_server.close()
    other_client.close()


def test_chunked_bodies_are_read_through_gunicorn(pair):
    server, client = pair
    environ, unreader = gunicorn_request(server, b"5\r\nhello\r\n", None)
    client.sendall(b"6\r\n world\r\n0\r\n\r\nNEXT")
    assert read_all(body_source(environ, None, TIMEOUT)) == b"hello world"
    assert unreader.read() == b"NEXT"


def test_other_servers_get_wsgi_input():
    class Stream:
        def __init__(self):
            self.data = b"plain wsgi body"

        def read(self, n):
            piece, self.data = self.data[:n], self.data[n:]
            return piece

    assert read_all(body_source({"wsgi.input": Stream()}, 15, TIMEOUT)) == b"plain wsgi body"


def test_the_fast_path_is_taken_for_the_request_gunicorn_builds(pair, caplog):
    """The takeover relies on gunicorn's internals: with the installed gunicorn's own parser and WSGI environ
    (not a hand-built one), a Content-Length body must be taken over, or uploads silently get 3x slower."""
    server, client = pair
    client.sendall(b"PUT /outputs/t/name HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123")
    cfg = Config()
    request = next(RequestParser(cfg, server, ("127.0.0.1", 1)))
    _, environ = wsgi.create(request, server, ("127.0.0.1", 1), ("127.0.0.1", 2), cfg)
    readinto = body_source(environ, 10, TIMEOUT)
    client.sendall(b"456789")
    assert isinstance(getattr(readinto, "__self__", None), body_module._SocketBody), "gunicorn's reader changed"
    assert read_all(readinto) == b"0123456789"
    assert "wsgi.input" not in caplog.text


def test_a_fallback_under_gunicorn_is_logged(pair, caplog):
    server, _ = pair
    environ = {"wsgi.input": Body(LengthReader(SocketUnreader(server), 0)), "gunicorn.socket": object()}
    body_source(environ, 0, TIMEOUT)
    assert "uploads are slower" in caplog.text
