"""Operator-readable logs, and keeping credentials out of them.

Instance endpoints and http: output locations carry their only credential, an unguessable token, in the
URL path; a log line names such a path only through :func:`redacted_path`.
"""
from __future__ import annotations

import logging
import os
import re

_TOKEN_SEGMENT = re.compile(r"/[A-Za-z0-9_-]{22,64}(?=/|$)")


def redacted_path(path: str) -> str:
    """``path`` with every token-like segment replaced by ``<token>``."""
    return _TOKEN_SEGMENT.sub("/<token>", path)


def configure_logging() -> None:
    """Logs on stderr (gunicorn's error log) with time, process and logger, once per process; the level
    comes from ``DICOM_HOST_LOG_LEVEL`` (``serve --log-level``)."""
    root = logging.getLogger("dicom_host")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(os.environ.get("DICOM_HOST_LOG_LEVEL", "INFO").upper())
        root.propagate = False
