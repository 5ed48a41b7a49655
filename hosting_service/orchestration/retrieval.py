"""Reading the objects an application returns: the bytes at ``Offset``/``Length`` of an ObjectLocator URI.

PS3.19 §9.5: ``URI`` is "typically but not limited to a file"; the Host reads ``Length`` bytes from
``Offset``. ``file:`` URIs are read from disk (RFC 8089, plus CTK's ``file:////abs`` form); ``http:`` and
``https:`` ones with a ``Range`` request, or a whole GET whose body is sliced when the server ignores
ranges. Bytes are streamed into the destination while hashed, never held whole, and land under their
final name only once complete.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    import requests

_CHUNK = 1 << 20


class RetrievalError(Exception):
    """An object could not be read from the URI the application gave."""


@dataclass
class Retrieved:
    path: Path
    size: int
    sha256: str


def local_path(uri: str) -> Path:
    """The file a ``file:`` URI names: ``file:///abs``, ``file://localhost/abs`` or CTK's ``file:////abs``."""
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise RetrievalError(f"{uri}: a file: URI on another machine ({parts.netloc}) cannot be read")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise RetrievalError(f"{uri}: not an absolute file: URI")
    return Path("/" + path.lstrip("/"))


def retrieve(uri: str, offset: int, length: int, destination: Path, *, session: requests.Session,
             timeout: float) -> Retrieved:
    """Copy ``length`` bytes from ``offset`` of ``uri`` to ``destination``.

    A ``length`` of 0 or less is read as "to the end of the resource" (QtSoap-era peers had no ``long`` and
    sent truncated values; an object of zero bytes is meaningless anyway)."""
    if offset < 0:
        raise RetrievalError(f"{uri}: negative Offset {offset}")
    scheme = urlsplit(uri).scheme.lower()
    if scheme == "file":
        chunks = _file_chunks(local_path(uri), offset, length)
    elif scheme in ("http", "https"):
        chunks = _http_chunks(uri, offset, length, session, timeout)
    else:
        raise RetrievalError(f"{uri}: cannot read {scheme or 'scheme-less'} URIs (file:, http: and https: can be read)")
    partial = destination.with_name(destination.name + ".part")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(partial, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        if length > 0 and size != length:
            raise RetrievalError(f"{uri}: {size} bytes at offset {offset}, but the locator's Length is {length}")
        os.replace(partial, destination)
    except OSError as exc:
        raise RetrievalError(f"{uri}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return Retrieved(destination, size, digest.hexdigest())


def _file_chunks(path: Path, offset: int, length: int) -> Iterator[bytes]:
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise RetrievalError(f"{path}: {exc.strerror or exc}") from None
    with f:
        f.seek(offset)
        yield from _limited(f, length)


def _limited(f: BinaryIO, length: int) -> Iterator[bytes]:
    remaining = length if length > 0 else None
    while remaining is None or remaining > 0:
        chunk = f.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
        if not chunk:
            return
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


def _http_chunks(uri: str, offset: int, length: int, session: requests.Session, timeout: float) -> Iterator[bytes]:
    import requests  # only runs that read http: outputs need it

    headers = {"Accept-Encoding": "identity"}
    ranged = offset > 0 or length > 0
    if ranged:
        headers["Range"] = f"bytes={offset}-{offset + length - 1 if length > 0 else ''}"
    try:
        response = session.get(uri, headers=headers, stream=True, timeout=timeout)
    except requests.RequestException as exc:
        raise RetrievalError(f"{uri}: {exc}") from None
    with response:
        if response.status_code == 206 and ranged:
            skip = 0  # the server sent exactly the range
        elif response.status_code == 200:
            skip = offset  # the server ignored the range: slice the whole body
        else:
            raise RetrievalError(f"{uri}: HTTP {response.status_code} {response.reason}")
        remaining = length if length > 0 else None
        try:
            for chunk in response.iter_content(_CHUNK):
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
            raise RetrievalError(f"{uri}: {exc}") from None
