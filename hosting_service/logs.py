"""Operator-readable logs, and keeping credentials out of them.

Instance endpoints and http: output locations carry their only credential, an unguessable token, in the
URL path. This module is the one place that redacts them: the project's own log lines name such a path
only through :func:`redacted_path`, and :class:`RedactingFilter` rewrites gunicorn's own lines (an
"Invalid request line" warning quotes the whole line a client sent, path included) before they are written.
"""
from __future__ import annotations

import logging
import os
import re

_TOKEN_SEGMENT = re.compile(r"/[A-Za-z0-9_-]{22,64}(?=[/?#\s'\"\\]|$)")
GUNICORN_LOGGERS = ("gunicorn.error", "gunicorn.access")


def redacted_path(path: str) -> str:
    """``path`` (or any text quoting one) with every token-like path segment replaced by ``<token>``."""
    return _TOKEN_SEGMENT.sub("/<token>", path)


class RedactingFilter(logging.Filter):
    """Redacts tokens from every record of the loggers it is attached to: the message is formatted here,
    once, so that tokens in its arguments go too, and so is a traceback (its exception may quote a path)."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redacted_path(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redacted_path(self._formatter.formatException(record.exc_info))
        return True


def redact_gunicorn_logs() -> None:
    """Attach :class:`RedactingFilter` to gunicorn's error and access loggers (in the arbiter, before it
    forks its workers, so that they inherit it)."""
    for name in GUNICORN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


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
