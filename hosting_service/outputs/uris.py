"""How output-location URIs are written and read back.

The host writes RFC 8089 ``file:///abs/path/`` URIs and ``<public_url>/outputs/<token>/`` URLs. It reads
back whatever the application returns in the ObjectLocators of its GetData, which may be spelled
differently (``file:/abs``, ``file://localhost/abs``, CTK's ``file:////abs``, percent-encoding or not),
so reading is tolerant about spelling and strict about meaning: one decoding, no ``..`` games, no NUL.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlsplit

MAX_NAME_BYTES = 255
"""Longest file name (in UTF-8 bytes) most filesystems store."""


def check_name(name: str) -> str:
    """``name`` if it can name one file directly below a location, else ``ValueError`` saying why.

    A name is one path segment: not empty, not ``.`` or ``..``, no ``/`` or ``\\``, no NUL or other
    control characters, at most :data:`MAX_NAME_BYTES` bytes of UTF-8.
    """
    if name in ("", ".", ".."):
        raise ValueError(f"{name!r} cannot name a file")
    if "/" in name or "\\" in name:
        raise ValueError("a name is a single path segment: no '/' or '\\'")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise ValueError("a name must not contain NUL or other control characters")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ValueError(f"a name is at most {MAX_NAME_BYTES} bytes of UTF-8")
    return name


def directory_uri(path: Path) -> str:
    """``file:///abs/path/``: the RFC 8089 URI of a directory, with its trailing slash."""
    return path.as_uri().rstrip("/") + "/"


def file_uri_path(uri: str) -> Optional[Path]:
    """The local absolute path a ``file:`` URI names (``..`` collapsed), or ``None`` if it names none.

    Accepts ``file:///p``, ``file:/p``, ``file://localhost/p`` and ``file:////p``; a URI naming another
    host, or one that does not decode to UTF-8, names no local path.
    """
    try:
        parts = urlsplit(uri)
        if parts.scheme.lower() != "file" or parts.netloc.lower() not in ("", "localhost"):
            return None
        path = unquote(parts.path, errors="strict")
    except (ValueError, UnicodeDecodeError):
        return None
    if not path.startswith("/") or "\x00" in path:
        return None
    return Path(os.path.normpath("/" + path.lstrip("/")))


def web_location_parts(uri: str, public_base: str) -> Optional[tuple[str, list[str]]]:
    """``(token, names)`` of a URL ``<public_base>/outputs/<token>/<name>...``, or ``None``.

    Scheme and host compare case-insensitively; each name is percent-decoded once and must pass
    :func:`check_name`. ``names`` is empty for the location itself (with or without its trailing slash).
    """
    try:
        parts, base = urlsplit(uri), urlsplit(public_base)
    except ValueError:
        return None
    if (parts.scheme.lower(), parts.netloc.lower()) != (base.scheme.lower(), base.netloc.lower()):
        return None
    prefix = base.path.rstrip("/") + "/outputs/"
    if not parts.path.startswith(prefix):
        return None
    token, *rest = parts.path[len(prefix):].split("/")
    if rest and rest[-1] == "":
        rest.pop()
    try:
        names = [check_name(unquote(segment, errors="strict")) for segment in rest]
    except (ValueError, UnicodeDecodeError):
        return None
    return (token, names) if token else None
