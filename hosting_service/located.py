"""Reading the bytes an ObjectLocator points to (PS3.19 §9.5), for both sides of the DataExchange interface:
the host reading an application's outputs, an application reading the host's inputs.

``URI`` is "typically but not limited to a file"; the reader takes ``Length`` bytes from ``Offset``.
``file:`` URIs are read from disk (RFC 8089 forms and CTK's ``file:////abs``; a URI naming another host is
refused, not read locally); ``http:`` and ``https:`` ones with a ``Range`` request, or a whole GET whose
body is sliced when the server ignores ranges; redirects are not followed. A ``Length`` of 0 or less means "to the end of the resource"
(QtSoap-era peers had no ``long`` and sent truncated values). Bytes come as a stream of chunks, never held
whole unless the caller asks for them whole.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO, Iterator, Optional
from urllib.parse import urlsplit

from hosting_service.outputs.uris import file_uri_path

if TYPE_CHECKING:
    import requests

CHUNK = 1 << 20


class UnreadableObject(Exception):
    """The bytes an ObjectLocator points to could not be read; the message says which and why."""


def iter_located(uri: str, offset: int, length: int, *, session: Optional["requests.Session"] = None,
                 timeout: float = 30.0) -> Iterator[bytes]:
    """The bytes at ``offset`` (``length`` of them, or to the end) of ``uri``, in chunks."""
    if offset < 0:
        raise UnreadableObject(f"{uri}: negative Offset {offset}")
    scheme = urlsplit(uri).scheme.lower()
    if scheme == "file":
        path = file_uri_path(uri)
        if path is None:
            raise UnreadableObject(f"{uri}: not a file: URI of this machine (another machine, or not an absolute path)")
        return _file_chunks(path, offset, length)
    if scheme in ("http", "https"):
        return _http_chunks(uri, offset, length, session, timeout)
    raise UnreadableObject(f"{uri}: cannot read {scheme or 'scheme-less'} URIs (file:, http: and https: can be read)")


def read_located(uri: str, offset: int, length: int, *, session: Optional["requests.Session"] = None,
                 timeout: float = 30.0) -> bytes:
    """The bytes :func:`iter_located` yields, whole; with a positive ``length``, exactly that many."""
    data = b"".join(iter_located(uri, offset, length, session=session, timeout=timeout))
    if length > 0 and len(data) != length:
        raise UnreadableObject(f"{uri}: {len(data)} bytes at offset {offset}, but the locator's Length is {length}")
    return data


def _file_chunks(path, offset: int, length: int) -> Iterator[bytes]:
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise UnreadableObject(f"{path}: {exc.strerror or exc}") from None
    with f:
        f.seek(offset)
        yield from _limited(f, length)


def _limited(f: BinaryIO, length: int) -> Iterator[bytes]:
    remaining = length if length > 0 else None
    while remaining is None or remaining > 0:
        chunk = f.read(CHUNK if remaining is None else min(CHUNK, remaining))
        if not chunk:
            return
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


def _http_chunks(uri: str, offset: int, length: int, session, timeout: float) -> Iterator[bytes]:
    import requests  # only readers of http: URIs need it

    headers = {"Accept-Encoding": "identity"}
    ranged = offset > 0 or length > 0
    if ranged:
        headers["Range"] = f"bytes={offset}-{offset + length - 1 if length > 0 else ''}"
    try:
        # never to another address than the one named: a peer's redirect must not lead the reader to what
        # the peer could not name itself (the host's admin API, another service on its loopback)
        response = (session or requests).get(uri, headers=headers, stream=True, timeout=timeout,
                                             allow_redirects=False)
    except requests.RequestException as exc:
        raise UnreadableObject(f"{uri}: {exc}") from None
    with response:
        if response.status_code == 206 and ranged:
            skip = 0  # the server sent exactly the range
        elif response.status_code == 200:
            skip = offset  # the server ignored the range: slice the whole body
        elif response.is_redirect:
            raise UnreadableObject(f"{uri}: HTTP {response.status_code} {response.reason} (redirects are not followed)")
        else:
            raise UnreadableObject(f"{uri}: HTTP {response.status_code} {response.reason}")
        remaining = length if length > 0 else None
        try:
            for chunk in response.iter_content(CHUNK):
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                if remaining is not None:
                    chunk = chunk[:remaining]
                    remaining -= len(chunk)
                if chunk:
                    yield chunk
                if remaining == 0:
                    return
        except requests.RequestException as exc:
            raise UnreadableObject(f"{uri}: {exc}") from None
