"""Serving a span of a file over HTTP (``GET``/``HEAD``): the server side of reading an ObjectLocator.

Used for http: inputs (``/inputs/...``, :mod:`hosting_service.inputs_http`) and for output files read by
the runner through the admin API (``/admin/instances/<id>/files/...``, :mod:`hosting_service.admin.files`).
What is served is exactly ``length`` bytes at ``offset`` of one file, never a byte more (a locator into a
larger file, the pixel data of a source object, names only its span):

* one ``Range: bytes=...`` (RFC 9110 §14): ``206`` with ``Content-Range``; a range that starts past the end
  is ``416`` with ``Content-Range: bytes */<size>``; several ranges, or a malformed one, are ignored (the
  whole span, ``200``), as RFC 9110 allows; ``If-Range`` with another ETag also gets the whole span;
* ``Content-Length``, ``Accept-Ranges: bytes`` and a strong ``ETag`` made from the file's identity (device,
  inode, modification time, size) and the span, so a client can tell a changed source from the one it read;
* the body through ``wsgi.file_wrapper``: gunicorn sends it with ``sendfile(2)`` from the span's start, for
  ``Content-Length`` bytes; elsewhere it is read in chunks of :data:`CHUNK`, bounded by the span.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Iterable, Optional
from wsgiref.util import FileWrapper

CHUNK = 1 << 20
_RANGE = re.compile(r"^\s*bytes\s*=\s*(?:(?P<first>\d{1,19})\s*-\s*(?P<last>\d{0,19})|-\s*(?P<suffix>\d{1,19}))\s*$",
                    re.IGNORECASE)


class SpanGone(Exception):
    """The file is missing, not a regular file, or shorter than the span: there is nothing to serve."""


@dataclass(frozen=True)
class Span:
    """``length`` bytes at ``offset`` of ``path``."""

    path: Path
    offset: int
    length: int


class _OpenSpan:
    """A file positioned at the span's start whose ``read`` never passes the span's end. ``fileno`` lets
    gunicorn use ``sendfile`` (from the current position, for ``Content-Length`` bytes)."""

    def __init__(self, f, remaining: int):
        self._f = f
        self._remaining = remaining

    def fileno(self) -> int:
        return self._f.fileno()

    def read(self, size: int = -1) -> bytes:
        want = self._remaining if size < 0 else min(size, self._remaining)
        data = self._f.read(want) if want > 0 else b""
        self._remaining -= len(data)
        return data

    def close(self) -> None:
        self._f.close()


def serve_span(environ, start_response, span: Span) -> Iterable[bytes]:
    """Answer a ``GET`` or ``HEAD`` with the bytes of ``span`` (module docstring). Raises :class:`SpanGone`
    before anything is sent when the file cannot serve the span."""
    try:
        f = open(span.path, "rb")
    except OSError:
        raise SpanGone(str(span.path)) from None
    try:
        info = os.fstat(f.fileno())
        length = info.st_size - span.offset if span.length < 0 else span.length
        if not stat.S_ISREG(info.st_mode) or span.offset < 0 or length < 0 \
                or span.offset + length > info.st_size:
            raise SpanGone(str(span.path))
        etag = '"' + hashlib.sha256(repr((info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size, span.offset,
                                          length)).encode()).hexdigest()[:32] + '"'
        headers = [("Content-Type", "application/octet-stream"), ("Accept-Ranges", "bytes"), ("ETag", etag),
                   ("Cache-Control", "no-store")]
        wanted = requested_range(environ, length, etag)
        if wanted is None:
            f.close()
            start_response("416 Range Not Satisfiable",
                           [*headers, ("Content-Range", f"bytes */{length}"), ("Content-Length", "0")])
            return []
        first, last = wanted
        count = last - first + 1 if length else 0
        if (first, last) == (0, length - 1) or not length:
            start_response("200 OK", [*headers, ("Content-Length", str(count))])
        else:
            start_response(f"206 {HTTPStatus.PARTIAL_CONTENT.phrase}",
                           [*headers, ("Content-Range", f"bytes {first}-{last}/{length}"),
                            ("Content-Length", str(count))])
        if environ.get("REQUEST_METHOD", "GET").upper() == "HEAD" or not count:
            f.close()
            return []
        f.seek(span.offset + first)
    except BaseException:
        f.close()
        raise
    return environ.get("wsgi.file_wrapper", FileWrapper)(_OpenSpan(f, count), CHUNK)


def requested_range(environ, length: int, etag: str) -> Optional[tuple[int, int]]:
    """The inclusive ``(first, last)`` byte positions to send of a representation of ``length`` bytes:
    the whole of it unless one satisfiable ``Range`` applies; ``None`` when the range cannot be satisfied
    (``416``)."""
    whole = (0, length - 1)
    header = environ.get("HTTP_RANGE")
    if not header:
        return whole
    if_range = environ.get("HTTP_IF_RANGE")
    if if_range is not None and if_range.strip() != etag:
        return whole
    match = _RANGE.match(header)
    if match is None:  # several ranges, another unit, or malformed: ignored (RFC 9110 §14.2)
        return whole
    if match["suffix"] is not None:
        suffix = int(match["suffix"])
        if suffix == 0:
            return None
        return (max(0, length - suffix), length - 1) if length else None
    first = int(match["first"])
    last = int(match["last"]) if match["last"] else length - 1
    if last < first:
        return whole  # an invalid range-spec: the header is ignored
    if first >= length:
        return None
    return first, min(last, length - 1)
