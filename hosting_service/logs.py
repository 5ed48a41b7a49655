"""Operator-readable logs (text or JSON lines), the instance and job they concern, and keeping credentials
out of them.

Instance endpoints and http: output locations carry their only credential, an unguessable token, in the
URL path; a job's lease travels as ``?lease=`` in a URL; the admin token as ``Authorization: Bearer``. This
module is the one place that redacts them: :func:`redacted_path` rewrites any text quoting such a thing,
every formatter of this module applies it to the whole line it writes (message and traceback), and
:class:`RedactingFilter` does the same for gunicorn's own records (an "Invalid request line" warning
quotes the whole line a client sent, path included) whatever formatter writes them.

``DICOM_HOST_LOG_FORMAT=json`` (``serve --log-format json``) writes one JSON object a line: ``time`` (UTC,
ISO 8601), ``level``, ``logger``, ``message``, ``pid``, ``exception`` when there is one, and ``instance_id``
/ ``job_id`` when the code that logs runs for one: the app binds them per request, a runner or worker per
job, with :func:`bind` (context variables, so each thread and each request sees its own).
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, Optional

_TOKEN_SEGMENT = re.compile(r"/[A-Za-z0-9_-]{22,64}(?=[/?#\s'\"\\]|$)")
_TOKEN_PARAMETER = re.compile(r"([?&;](?:lease|token)=)[^&;#\s'\"\\]+", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)[^\s'\"\\,]+", re.IGNORECASE)
GUNICORN_LOGGERS = ("gunicorn.error", "gunicorn.access")
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"

_instance_id: ContextVar[Optional[str]] = ContextVar("dicom_host_instance_id", default=None)
_job_id: ContextVar[Optional[str]] = ContextVar("dicom_host_job_id", default=None)


def redacted_path(path: str) -> str:
    """``path`` (or any text quoting one) with every token-like path segment replaced by ``<token>``, and
    so the value of a ``lease=``/``token=`` URL parameter and of a bearer credential."""
    text = _TOKEN_SEGMENT.sub("/<token>", path)
    if "=" in text:
        text = _TOKEN_PARAMETER.sub(r"\1<token>", text)
    return _BEARER.sub(r"\1<token>", text)


@contextmanager
def bind(*, instance_id: Optional[str] = None, job_id: Optional[str] = None) -> Iterator[None]:
    """Within the block, every log record of this thread (or task) carries these ids (those given).

    A thread started inside the block does not inherit them (before Python 3.14): bind again in the thread,
    or start it with ``contextvars.copy_context().run``."""
    bound = []
    if instance_id is not None:
        bound.append((_instance_id, _instance_id.set(instance_id)))
    if job_id is not None:
        bound.append((_job_id, _job_id.set(job_id)))
    try:
        yield
    finally:
        for variable, token in reversed(bound):
            variable.reset(token)


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


class TextFormatter(logging.Formatter):
    """The classic one-line format, redacted as a whole."""

    def format(self, record: logging.LogRecord) -> str:
        return redacted_path(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line (see the module docstring), each text in it redacted."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redacted_path(record.getMessage()),
            "pid": record.process,
        }
        instance_id, job_id = _instance_id.get(), _job_id.get()
        if instance_id is not None:
            entry["instance_id"] = instance_id
        if job_id is not None:
            entry["job_id"] = job_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = redacted_path(record.exc_text)
        if record.stack_info:
            entry["stack"] = redacted_path(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``log_format`` (one of :data:`LOG_FORMATS`)."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter(TEXT_FORMAT)
    raise ValueError(f"unknown log format {log_format!r} (understood: {', '.join(LOG_FORMATS)})")


def redact_gunicorn_logs() -> None:
    """Attach :class:`RedactingFilter` to gunicorn's error and access loggers (in the arbiter, before it
    forks its workers, so that they inherit it)."""
    for name in GUNICORN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


class _Handler(logging.StreamHandler):
    """The handler :func:`configure_logging` installs (recognised when it is called again)."""


def configure_logging(log_format: str = "text") -> None:
    """Logs on stderr (gunicorn's error log) in ``log_format``: the project's loggers (``dicom_host.*``) at
    the level of ``DICOM_HOST_LOG_LEVEL`` (``serve --log-level``), and, where nothing else has set up
    logging, other libraries' warnings (and Python's) in the same format. Called again, it changes only the format."""
    project = logging.getLogger("dicom_host")
    handler = next((h for h in project.handlers if isinstance(h, _Handler)), None)
    if handler is None:
        handler = _Handler()
        project.addHandler(handler)
        project.setLevel(os.environ.get("DICOM_HOST_LOG_LEVEL", "INFO").upper())
        project.propagate = False
        root = logging.getLogger()
        if not root.handlers:
            root.addHandler(handler)
            logging.captureWarnings(True)  # Python's warnings too, as log lines of this format
    handler.setFormatter(formatter(log_format))
