"""Storing the objects an application returns: the bytes its ObjectLocators point to (read with
:mod:`hosting_service.located`), streamed into the output folder while hashed, never held whole, and
landing under their final name only once complete."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hosting_service.located import UnreadableObject, iter_located

if TYPE_CHECKING:
    import requests

RetrievalError = UnreadableObject


@dataclass
class Retrieved:
    path: Path
    size: int
    sha256: str


def retrieve(uri: str, offset: int, length: int, destination: Path, *, session: requests.Session,
             timeout: float) -> Retrieved:
    """Copy ``length`` bytes from ``offset`` of ``uri`` to ``destination`` (0 or less: to the end)."""
    chunks = iter_located(uri, offset, length, session=session, timeout=timeout)
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
