"""Reading the HTTP body of a SOAP request without trusting it.

The body is read with a size limit, also when it arrives chunked (without ``Content-Length``), and only
what it says it is gets through:

* a body shorter than its ``Content-Length`` (the peer closed early) is refused, not executed;
* a chunked body the server cannot decode (malformed or cut off) is the peer's error, not ours;
* ``Content-Encoding: gzip`` is decoded with the limit applied to the decoded size, so a small
  compressed body cannot expand into a large one; other content codings are refused;
* multipart bodies (MTOM/XOP, SOAP with attachments) are refused: PS3.19 messages are plain SOAP 1.1
  envelopes (``text/xml``), and the interface has no attachments.

Every refusal is a :class:`~hosting_service.errors.ClientError` whose message says what was wrong.
"""
from __future__ import annotations

import zlib
from typing import Any, Optional

from hosting_service.errors import ClientError

_CHUNK = 64 * 1024
_GZIP = ("gzip", "x-gzip")
_IDENTITY = ("", "identity")
_REFUSED_MEDIA_TYPES = ("application/xop+xml",)


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The request body, decoded from gzip if so sent; :class:`ClientError` if it is larger than ``limit``
    bytes (before or after decoding), incomplete, or of a kind a PS3.19 endpoint does not take.

    With ``Content-Length`` the declared size is checked before anything is read. Without it the body is
    read to its end only if the server says that is safe (``wsgi.input_terminated``, as gunicorn does for
    chunked requests), counting bytes as they come.
    """
    _check_media_type(environ.get("CONTENT_TYPE") or "")
    coding = (environ.get("HTTP_CONTENT_ENCODING") or "").strip().lower()
    if coding not in _IDENTITY + _GZIP:
        raise ClientError(f"Content-Encoding {coding!r} is not supported; send the body as it is or gzip-compressed",
                          http_status=415)
    stream = environ["wsgi.input"]
    declared = (environ.get("CONTENT_LENGTH") or "").strip()
    if declared:
        try:
            length = int(declared)
        except ValueError:
            raise ClientError(f"Content-Length {declared!r} is not a number") from None
        if length > limit:
            raise ClientError(f"the request body of {length} bytes exceeds the limit of {limit} bytes", http_status=413)
        body = _read(stream, length, limit)
    elif environ.get("wsgi.input_terminated"):
        body = _read(stream, None, limit)
    else:
        raise ClientError("the request has no Content-Length; send one (or use a server that supports chunked bodies)",
                          http_status=411)
    return _gunzip(body, limit) if coding in _GZIP else body


def _check_media_type(content_type: str) -> None:
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type.startswith("multipart/") or media_type in _REFUSED_MEDIA_TYPES:
        raise ClientError(
            f"a {media_type} request (MTOM/XOP or SOAP with attachments) is not supported: PS3.19 operations have "
            "no attachments; send the SOAP envelope alone as text/xml", http_status=415)


def _read(stream, length: Optional[int], limit: int) -> bytes:
    chunks, total = [], 0
    while length is None or total < length:
        want = _CHUNK if length is None else min(_CHUNK, length - total)
        try:
            chunk = stream.read(want)
        except Exception as exc:  # the server's body reader: a malformed or cut-off chunked body, a reset
            detail = str(exc) or "the connection ended"
            raise ClientError(f"the request body could not be read ({type(exc).__name__}: {detail})",
                              http_status=400) from None
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise ClientError(f"the request body exceeds the limit of {limit} bytes", http_status=413)
        chunks.append(chunk)
    if length is not None and total < length:
        raise ClientError(f"the request body ended after {total} of the {length} bytes its Content-Length announced",
                          http_status=400)
    return b"".join(chunks)


def _gunzip(data: bytes, limit: int) -> bytes:
    """``data`` decompressed, never more than ``limit`` bytes of it (one byte more tells it is too large)."""
    decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        body = decoder.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ClientError(f"the request body is not valid gzip ({exc})") from None
    if len(body) > limit:
        raise ClientError(f"the request body exceeds the limit of {limit} bytes once decompressed", http_status=413)
    if not decoder.eof:
        raise ClientError("the gzip-compressed request body is cut off")
    if decoder.unused_data:
        raise ClientError("the request body has data after its gzip stream")
    return body
