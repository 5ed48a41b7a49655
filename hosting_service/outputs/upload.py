"""http: output locations over HTTP: ``/outputs/<token>/[name]`` (the router sends every such path here).

PS3.19 §8.2.3 Note 1: with http:, the application "can only write once in sequential order". So:

* ``PUT`` or ``POST`` of a whole body to ``<location><name>`` (``directory`` semantics; one path segment,
  percent-decoded once, no ``..``, ``/``, ``\\``, NUL or control characters) or to the location URI itself
  (``file`` semantics); ``Content-Length`` or chunked. The body is streamed to a temporary file in
  pieces (memory stays bounded whatever its size; see :mod:`.body`), hashed on the way, fsynced and
  renamed into the location only when complete.
* ``201 Created``: JSON ``{"uri", "name", "size", "sha256"}``, the file's URI in ``Location``, its SHA-256
  in ``ETag`` and ``Repr-Digest`` (RFC 9530).
* ``400`` malformed name or ``Content-Length``, ``Content-Range`` (no partial writes or seeks), a body that
  ends short or breaks off; ``404`` unknown token (one answer for every unknown token) or a name not
  stored; ``405`` other methods, or a write to a directory location itself; ``409`` a name written
  before or being written (write-once); ``410`` the location has closed (before or during the upload);
  ``413`` over the per-request limit or the instance's quota; ``507`` the disk is full.
  Errors are JSON ``{"error": "..."}``.
* ``GET``/``HEAD`` of the location: JSON list of the files stored; of ``<location><name>``: the stored
  bytes, so that the application can check what it wrote. Only while the location is active.

An upload that does not complete leaves no file that looks complete and is recorded as an ``upload``
event (outcome ``aborted`` or ``refused``). The service runs under gunicorn's ``gthread`` workers: one
thread per request, so a long upload never holds up SOAP calls (a sync worker would; async worker
classes need packages this project does not otherwise use); the rules live in the store
(:mod:`.writes`), so any number of workers can serve one deployment.
"""
from __future__ import annotations

import base64
import errno
import json
import logging
from http import HTTPStatus
from typing import Any, Iterable
from wsgiref.util import FileWrapper

from hosting_service import metrics
from hosting_service.config import DIRECTORY_SEMANTICS, Settings
from hosting_service.logs import redacted_path
from hosting_service.errors import ClientError
from hosting_service.outputs.body import BodyCopy, BrokenBody, body_source
from hosting_service.outputs.records import ACTIVE, Location, gone
from hosting_service.outputs.writes import NO_SUCH_LOCATION, Upload, Writes
from hosting_service.outputs.uris import check_name

log = logging.getLogger("dicom_host.outputs")

PREFIX = "/outputs/"
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_WRITE, _READ = ("PUT", "POST"), ("GET", "HEAD")


def _answer(start_response, status: int, body: Any, headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(f"{status} {HTTPStatus(status).phrase}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers])
    return [data]


def _digest_headers(sha256_hex: str) -> list[tuple[str, str]]:
    b64 = base64.b64encode(bytes.fromhex(sha256_hex)).decode()
    return [("ETag", f'"{sha256_hex}"'), ("Repr-Digest", f"sha-256=:{b64}:")]


def _content_length(environ) -> int | None:
    """The body's announced length; ``None`` for a chunked body (no Content-Length)."""
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return None
    raw = environ.get("CONTENT_LENGTH", "").strip()
    if not raw:
        return 0
    if not raw.isdigit():
        raise ClientError(f"Content-Length {raw!r} is not a number of bytes")
    return int(raw)


class UploadApp:
    """WSGI application for the paths ``/outputs/...`` (see the module docstring).

    Every rule it applies is the store's, through ``writes`` (:mod:`.writes`).
    """

    def __init__(self, settings: Settings, writes: Writes):
        self.writes = writes
        self.read_timeout = settings.read_timeout

    def __call__(self, environ, start_response):
        try:
            return self._route(environ, start_response)
        except ClientError as exc:
            return _answer(start_response, exc.http_status, {"error": str(exc)})
        except Exception:  # the host's fault: the log gets the details, the peer a plain statement
            log.exception("output location: internal error on %s %s", environ.get("REQUEST_METHOD"),
                          redacted_path(environ.get("PATH_INFO", "")))
            return _answer(start_response, 500, {"error": "internal error of the host; see its log"})

    def _route(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET").upper()
        location, names = self._target(environ.get("PATH_INFO", ""))
        if location.state != ACTIVE:
            raise gone(location)
        if location.semantics == DIRECTORY_SEMANTICS and not names:  # the folder itself
            if method in _READ:
                return self._listing(start_response, method, location)
            return _answer(start_response, 405, {
                "error": f"this output location is a directory: write each file to {location.uri}<name>"},
                [("Allow", "GET, HEAD")])
        name = self.writes.stored_name(location, names[0] if names else "")
        if method in _WRITE:
            return self._write(environ, start_response, location, name)
        if method in _READ:
            return self._read(environ, start_response, method, location, name)
        return _answer(start_response, 405, {
            "error": f"{method} is not supported: a file is written once, with PUT or POST, and never changed"},
            [("Allow", "GET, HEAD, PUT, POST")])

    def _target(self, path: str) -> tuple[Location, list[str]]:
        """The location a path names (404 for anything but a known token) and the names below it."""
        token, _, rest = path[len(PREFIX):].partition("/") if path.startswith(PREFIX) else ("", "", "")
        if not token or not set(token) <= _TOKEN_CHARS:
            raise ClientError(NO_SUCH_LOCATION, http_status=404)
        location = self.writes.web_location(token)
        if not rest:
            return location, []
        try:  # PEP 3333: PATH_INFO is the percent-decoded path, its bytes as latin-1 characters
            name = rest.encode("latin-1").decode("utf-8")
        except UnicodeError:
            raise ClientError("the name is not valid UTF-8 once percent-decoded") from None
        if "/" in name:
            raise ClientError("a name below an output location is a single path segment (no '/', also not as %2F)")
        try:
            return location, [check_name(name)]
        except ValueError as exc:
            raise ClientError(f"bad name {name!r}: {exc}") from None

    # --- writing ----------------------------------------------------------------------------------------

    def _write(self, environ, start_response, location: Location, name: str):
        if "HTTP_CONTENT_RANGE" in environ:
            raise ClientError("Content-Range is not supported: an output file is written once, whole and in "
                              "order (PS3.19 §8.2.3 Note 1)")
        upload = self.writes.begin(location, name, _content_length(environ))
        size, sha256 = self._receive(environ, upload)
        try:
            uri = self.writes.complete(upload, size, sha256)
        except BaseException as exc:
            self._abandon(upload, size, exc)
            raise
        metrics.uploaded(size)
        log.info("instance %s: stored %s (%d bytes) in output location %s", location.instance_id, name, size,
                 location.id)
        return _answer(start_response, 201, {"uri": uri, "name": name, "size": size, "sha256": sha256},
                       [("Location", uri), *_digest_headers(sha256)])

    def _receive(self, environ, upload: Upload) -> tuple[int, str]:
        """Copy the body into the upload's file: its size and SHA-256. Abandons the upload on any failure."""
        copy = BodyCopy(body_source(environ, upload.expected, self.read_timeout), upload.file, upload.expected)
        try:
            sha256 = copy.run(lambda received: self.writes.progress(upload, received))
        except BrokenBody as exc:
            self._abandon(upload, copy.received, exc)
            raise ClientError(str(exc)) from None
        except OSError as exc:
            self._abandon(upload, copy.received, exc)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ClientError("the host's disk is full; the upload was not stored", http_status=507) from None
            raise
        except BaseException as exc:
            self._abandon(upload, copy.received, exc)
            raise
        return copy.received, sha256

    def _abandon(self, upload: Upload, received: int, exc: BaseException) -> None:
        refused = isinstance(exc, ClientError)  # the host said no (410, 413); otherwise the body broke off
        reason = str(exc) if isinstance(exc, (ClientError, BrokenBody, OSError)) else "internal error of the host"
        self.writes.abandon(upload, received, "refused" if refused else "aborted", reason)
        log.warning("instance %s: upload of %s to output location %s %s after %d bytes: %s",
                    upload.location.instance_id, upload.name, upload.location.id,
                    "refused" if refused else "aborted", received, reason)

    # --- reading back -----------------------------------------------------------------------------------

    def _listing(self, start_response, method: str, location: Location):
        files = [{"name": n, "size": f["size"], "sha256": f["sha256"], "uri": self.writes.file_uri(location, n)}
                 for n, f in self.writes.stored_files(location).items()]
        body = _answer(start_response, 200, {"uri": location.uri, "files": files})
        return [] if method == "HEAD" else body

    def _read(self, environ, start_response, method: str, location: Location, name: str):
        stored = self.writes.stored_files(location).get(name)
        if stored is None:
            raise ClientError(f"nothing is stored as {name!r} at this output location", http_status=404)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(stored["size"])), *_digest_headers(stored["sha256"])])
        if method == "HEAD":
            return []
        return environ.get("wsgi.file_wrapper", FileWrapper)(open(stored["path"], "rb"), 1 << 20)
