"""The request body of an upload: read without needless copies, and copied to disk with its SHA-256.

**Reading.** ``wsgi.input`` gives the body as new ``bytes`` objects; under gunicorn each MiB of them
costs several copies between its internal buffers, about a second of CPU per GiB, which is most of the
budget of an upload on a small machine. So for a ``Content-Length`` body under gunicorn, :func:`body_source` takes
the body over from gunicorn (the bytes it has buffered, then the connection's socket, via
``recv_into``), keeping gunicorn's count of the body bytes still unread up to date: gunicorn then
drains (or closes) a body left unread after an early answer exactly as it would have, and anything
behind the body (a pipelined request) stays buffered for it. The takeover relies on attributes of gunicorn's ``Body``,
``LengthReader`` and ``SocketUnreader`` (checked on every request; tests/test_outputs_body.py runs it
against the installed gunicorn, whose major version pyproject.toml pins); if they are not what it expects
(another server, a chunked body, HTTP/2), it reads ``wsgi.input`` instead, and says so in the log when the
server is gunicorn (a slower path: a changed gunicorn must not go unnoticed). Either way the caller sees one
interface: ``readinto(buffer) -> bytes stored`` (0 at the end of the body). A body that pauses longer than
the read timeout (``DICOM_HOST_READ_TIMEOUT``) is given up as stalled.

**Copying** (:class:`BodyCopy`). Hashing costs about as much CPU as receiving and writing together, so it
runs on a thread of its own (hashlib releases the GIL) while the request thread receives and writes the
next piece; :data:`DEPTH` buffers of :data:`PIECE` bytes are all the memory an upload uses, whatever its
size. Every :data:`WRITEBACK_STEP` bytes, ``posix_fadvise(DONTNEED)`` on what was written starts its
writeback without waiting for it (and lets the page cache drop it once on disk), so the fsync before the
file is stored has little left to do, and a large upload does not fill the page cache.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import queue
import socket
import threading
from typing import Any, BinaryIO, Callable, Optional

log = logging.getLogger("dicom_host.outputs")

PIECE = 4 << 20
"""Bytes received, written and hashed at a time (4 MiB: fewer hand-offs between the receiving and the
hashing thread; bench/upload.py measured 1 MiB pieces at about 70% of the plain write rate, 4 MiB at 80-98%)."""
DEPTH = 3
"""Buffers of :data:`PIECE` bytes per upload (one filling, one hashing, one spare)."""
WRITEBACK_STEP = 8 << 20
"""Bytes written between two hints to the kernel to start writing them to disk."""

ReadInto = Callable[[memoryview], int]


class BodyStalled(Exception):
    """No byte of the body arrived within the read timeout."""


class BrokenBody(Exception):
    """The body ended before its announced length or could not be read."""


def body_source(environ, length: Optional[int], idle_timeout: float) -> ReadInto:
    """``readinto`` for this request's body (``length``: its Content-Length, ``None`` if chunked); a pause
    of ``idle_timeout`` seconds in the body raises :class:`BodyStalled` (on the fast path; on the other,
    the worker's socket timeout bounds the reads of ``wsgi.input``)."""
    if length is not None:
        taken = _take_over_from_gunicorn(environ, idle_timeout)
        if taken is not None:
            return taken
        if "gunicorn.socket" in environ:
            log.warning("upload body read through wsgi.input: this gunicorn's reader is not what "
                        "hosting_service.outputs.body expects (uploads are slower); check the pinned version")
    return _StreamBody(environ["wsgi.input"]).readinto


def _take_over_from_gunicorn(environ, idle_timeout: float) -> Optional[ReadInto]:
    body: Any = environ.get("wsgi.input")
    sock = environ.get("gunicorn.socket")
    reader: Any = getattr(body, "reader", None)
    unreader: Any = getattr(reader, "unreader", None)
    if not isinstance(sock, socket.socket):
        return None
    connection: socket.socket = sock
    if not (isinstance(getattr(body, "buf", None), io.BytesIO)
            and isinstance(getattr(reader, "length", None), int)
            and isinstance(getattr(unreader, "buf", None), io.BytesIO) and getattr(unreader, "sock", None) is sock):
        return None
    buffered = unreader.buf.getvalue()
    ours = min(len(buffered), reader.length)
    head = body.buf.getvalue() + buffered[:ours]
    body.buf = io.BytesIO()
    unreader.buf = io.BytesIO()
    unreader.unread(buffered[ours:])
    reader.length -= ours
    return _SocketBody(head, connection, reader, idle_timeout).readinto


class _SocketBody:
    def __init__(self, head: bytes, sock: socket.socket, reader, idle_timeout: float):
        self.head = memoryview(head)
        self.idle_timeout = idle_timeout
        self.sock = sock
        self.reader = reader
        """gunicorn's LengthReader: its ``length`` is what is left of the body on the socket."""
        self.ended = False

    def readinto(self, buffer: memoryview) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        if self.ended or not self.reader.length:
            return 0
        previous = self.sock.gettimeout()
        self.sock.settimeout(self.idle_timeout)
        try:
            n = self.sock.recv_into(buffer[: min(len(buffer), self.reader.length)])
        except socket.timeout:
            raise BodyStalled(f"no data for {self.idle_timeout:g} seconds") from None
        finally:
            self.sock.settimeout(previous)
        self.reader.length -= n
        self.ended = n == 0  # the client went away: the body is short
        return n


class _StreamBody:
    def __init__(self, stream):
        self.stream = stream

    def readinto(self, buffer: memoryview) -> int:
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class BodyCopy:
    """Copies one request body into a file; ``received`` counts the bytes so far (also after a failure)."""

    def __init__(self, readinto: ReadInto, file: BinaryIO, expected: Optional[int]):
        self.readinto = readinto
        self.file = file
        self.expected = expected
        self.received = 0
        self._writeback_from = 0

    def run(self, progress: Callable[[int], None]) -> str:
        """Copy the whole body and return its SHA-256 (hex). ``progress(received)`` runs before each piece
        is written and may raise to stop the copy. Raises :class:`BrokenBody` for a body that cannot be
        read or ends short of its Content-Length."""
        with _Digest() as digest:
            while True:
                buffer = digest.buffer()
                n = self._fill(buffer)
                if not n:
                    digest.recycle(buffer)
                    break
                self.received += n
                progress(self.received)
                self._write(memoryview(buffer)[:n])
                digest.add(buffer, n)
            sha256 = digest.hexdigest()
        if self.expected is not None and self.received < self.expected:
            raise BrokenBody(f"the body ended after {self.received} of {self.expected} bytes")
        return sha256

    def _fill(self, buffer: bytearray) -> int:
        """Read into ``buffer`` until it is full or the body ends; the bytes stored."""
        view, n = memoryview(buffer), 0
        while n < len(view):
            try:
                got = self.readinto(view[n:])
            except Exception as exc:  # a broken chunked body, a reset connection, a stalled client
                raise BrokenBody(f"the body could not be read after {self.received + n} bytes: {exc}") from None
            if not got:
                break
            n += got
        return n

    def _write(self, data: memoryview) -> None:
        while data:
            data = data[self.file.write(data):]
        end = self.received
        if end - self._writeback_from >= WRITEBACK_STEP and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self.file.fileno(), self._writeback_from, end - self._writeback_from,
                             os.POSIX_FADV_DONTNEED)
            self._writeback_from = end


class _Digest:
    """SHA-256 on a thread of its own, fed with full buffers and handing them back empty."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        self._full: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(DEPTH):
            self._free.put(bytearray(PIECE))
        self._thread = threading.Thread(target=self._run, name="upload-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._full.get()) is not None:
            buffer, n = item
            self._sha.update(memoryview(buffer)[:n])
            self._free.put(buffer)

    def buffer(self) -> bytearray:
        return self._free.get()

    def recycle(self, buffer: bytearray) -> None:
        self._free.put(buffer)

    def add(self, buffer: bytearray, n: int) -> None:
        self._full.put((buffer, n))

    def hexdigest(self) -> str:
        self._stop()
        return self._sha.hexdigest()

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._full.put(None)
            self._thread.join()

    def __enter__(self) -> "_Digest":
        return self

    def __exit__(self, *exc) -> None:
        self._stop()
