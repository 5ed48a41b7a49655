"""The gunicorn worker of ``dicom-host serve``: gthread, but no thread waits for a slow client.

gunicorn's ``gthread`` worker hands every connection to a pool thread as soon as a byte arrives, and the
thread then reads the request head and body with blocking reads and no deadline: a few dozen clients
that trickle a request hold every thread, and ``/healthz`` and the SOAP calls of everyone else go
unanswered for as long as they keep their connections open. This worker reads in the poller instead:

* every request (its head, and its body unless it is an upload) is read without blocking, in the worker's
  main loop, and must be complete within ``DICOM_HOST_READ_TIMEOUT`` seconds of its first chance to arrive;
  a client that is slower gets ``408`` and the connection is closed. A pool thread gets the request only
  when all of it is in memory, so it never waits for the peer.
* an upload to an http: output location (``PUT``/``POST`` under ``/outputs/``) is handed over once its head
  is read: its body (up to gigabytes) is streamed to disk by :mod:`hosting_service.outputs.body`, which
  gives up on a body that pauses longer than the same timeout. Every request under ``/outputs/`` (uploads,
  and downloads of what was uploaded), ``/inputs/`` (http: inputs), ``/admin/instances/<id>/files/`` (outputs
  read by the runner) runs on a pool of its own, the bulk pool: slow uploaders or readers
  can only make other bulk transfers wait, never a SOAP call. Job submissions (``POST /admin/jobs``) and job
  results (``PUT``/``GET /admin/jobs/<id>/results``) are bulk transfers too (:mod:`hosting_service.jobs.uploads`),
  and so are the long waits of jobs (a worker's lease, a job's events).
* bodies larger than the SOAP limit, and everything a thread still reads from or writes to the socket,
  are bounded by timeouts on the socket itself (``SO_RCVTIMEO``, ``SO_SNDTIMEO``), whatever code does it.
* a worker holds at most ``DICOM_HOST_MAX_CONNECTIONS`` connections (gunicorn's ``worker_connections``:
  it stops accepting beyond that).

The worker also replaces gthread's quick-stop handler (SIGQUIT, which the arbiter sends on SIGINT): that
handler shuts the thread pool down inside the signal handler, taking the pool's lock, and deadlocks when the
signal interrupts the main loop while it holds that lock (handing a kept-alive connection to the pool); the
arbiter then kills the worker only after the graceful timeout.

TLS is not supported by this worker (the poller reads raw bytes): terminate TLS in front of the server.
"""
from __future__ import annotations

import os
import re
import selectors
import socket
import struct
import sys
import time
from concurrent import futures
from functools import partial
from typing import Optional

from gunicorn import http
from gunicorn.workers.gthread import TConn, ThreadWorker

from hosting_service.config import Settings

HEAD_LIMIT = 64 << 10
"""Largest request head (request line and headers) read in the poller; beyond it: ``431``."""
_RECV = 256 << 10
_BULK_PREFIX = b"/outputs/"
_JOB_RESULTS = re.compile(rb"^/admin/jobs/[A-Za-z0-9_-]{1,128}/results$")
_JOB_BULK = re.compile(rb"^/admin/jobs/(?:lease|[A-Za-z0-9_-]{1,128}/(?:results|events))/?(?:\?.*)?$")
"""A job's results download, and the requests of jobs that wait up to tens of seconds (a worker's lease,
``submit --wait`` following a job's events): read whole like any request, but they must not hold the threads
that answer SOAP calls."""
_BULK = re.compile(rb"^/(?:outputs|inputs)/|^/admin/instances/[^/?]+/files/")
"""Requests served by the bulk pool: output locations, http: inputs, output files read by the runner."""


class PollerReadWorker(ThreadWorker):
    """gthread worker that reads each request completely before a thread takes it (module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        settings = Settings.from_env()
        self.read_timeout = settings.read_timeout
        self.max_buffered_body = settings.soap_max_body_bytes
        self.bulk_pool: Optional[futures.ThreadPoolExecutor] = None
        self.reading: dict[TConn, _Reading] = {}
        """Connections whose next request is being read, oldest first (their deadlines are in order)."""

    @classmethod
    def check_config(cls, cfg, log):
        if cfg.is_ssl:
            raise RuntimeError("dicom-host's worker does not terminate TLS: put a TLS proxy in front of it")
        super().check_config(cfg, log)

    def init_process(self):
        self.bulk_pool = futures.ThreadPoolExecutor(max_workers=self.cfg.threads, thread_name_prefix="bulk")
        super().init_process()

    def run(self):
        try:
            super().run()
        finally:  # gthread shuts its own pool down at the end of run()
            if self.bulk_pool is not None:
                self.bulk_pool.shutdown(wait=False)

    # --- reading in the poller ---------------------------------------------------------------------

    def enqueue_req(self, conn):
        """gthread calls this (on the main thread) for a new connection, a kept-alive one that became
        readable, and one with pipelined bytes buffered: read its request first."""
        reading = self.reading.get(conn)
        if reading is None or not reading.complete:
            self._start_reading(conn)
            return
        del self.reading[conn]
        conn.data_ready = True  # gthread's own wait for a first byte is not needed
        _set_socket_timeouts(conn.sock, self.read_timeout)
        pool = self.bulk_pool if reading.bulk else self.tpool
        assert pool is not None
        fs = pool.submit(self.handle, conn)
        fs.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))

    def _start_reading(self, conn) -> None:
        if conn.parser is None:  # a new connection (TLS and HTTP/2 are not served: see check_config)
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        reading = _Reading(time.monotonic() + self.read_timeout, conn.parser.unreader.take_buffered())
        self.reading[conn] = reading
        conn.sock.setblocking(False)
        if not self._advance(conn, reading, registered=False):
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn, _sock) -> None:
        reading = self.reading[conn]
        try:
            data = conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away before its request was complete
            self._drop(conn)
            return
        reading.data += data
        self._advance(conn, reading, registered=True)

    def _advance(self, conn, reading: "_Reading", *, registered: bool) -> bool:
        """Hand the request to a thread, or answer it here, once that is possible; True if done (the
        connection is then no longer in the poller)."""
        verdict = reading.verdict(self.max_buffered_body)
        if verdict is None:
            if reading.continue_due:
                reading.continued = True
                try:
                    conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                except OSError:
                    pass
            return False
        if registered:
            self.poller.unregister(conn.sock)
        if verdict is _COMPLETE:
            reading.complete = True
            conn.parser.unreader.unread(bytes(reading.data))
            self.enqueue_req(conn)
        else:
            self._drop(conn, verdict)
        return True

    def _drop(self, conn, answer: bytes = b"") -> None:
        """Close a connection whose request is not read (``answer``: a last word to the client)."""
        self.reading.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        if answer:
            try:
                conn.sock.send(answer)
            except OSError:
                pass
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self):
        """gthread's loop calls this about once a second: also close what missed its read deadline (or
        everything still being read, once the worker stops)."""
        super().murder_pending()
        now = time.monotonic()
        while self.reading:
            conn, reading = next(iter(self.reading.items()))
            if self.alive and reading.deadline > now:
                break
            self._drop(conn, _plain(408, "Request Timeout", f"the request was not complete within "
                                    f"{self.read_timeout:g} seconds") if self.alive else b"")

    # --- stopping ----------------------------------------------------------------------------------

    def handle_quit(self, sig, frame):
        """Quick stop: exit at once, taking no lock (see the module docstring). Every write the
        server acknowledged is committed already; what is in flight is lost as with kill -9."""
        self.alive = False
        try:
            sys.stderr.flush()
        finally:
            os._exit(0)


_COMPLETE = b""


class _Reading:
    """The bytes of one request read so far, and what they say about the rest."""

    def __init__(self, deadline: float, data: bytes):
        self.deadline = deadline
        self.data = bytearray(data)
        self.complete = False
        self.bulk = False
        """A request under ``/outputs/``, ``/inputs/`` or an instance's ``files/``: served by the bulk pool."""
        self.continue_due = False
        """The client waits for ``100 Continue`` before it sends the body (RFC 9110 §10.1.1)."""
        self.continued = False

    def verdict(self, max_body: int) -> Optional[bytes]:
        """``None``: read on; :data:`_COMPLETE`: a thread can take it; other bytes: the answer that ends
        the connection. What gunicorn itself would refuse (a malformed request line or header) counts as
        complete: its parser answers it from the bytes at hand."""
        end = self.data.find(b"\r\n\r\n")
        if end < 0:
            if b"\n\n" in self.data:  # a head ended by bare LFs: gunicorn's parser says what it makes of it
                return _COMPLETE
            if len(self.data) > HEAD_LIMIT:
                return _plain(431, "Request Header Fields Too Large", f"the request head exceeds {HEAD_LIMIT} bytes")
            return None
        lines = bytes(self.data[:end]).split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            return _COMPLETE
        method, target = parts[0].upper(), parts[1]
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        upload = _is_upload(method, target)
        self.bulk = upload or _BULK.match(target) is not None or _JOB_BULK.match(target) is not None
        if upload:
            return _COMPLETE  # an upload: its body is streamed to disk by the thread
        body = len(self.data) - (end + 4)
        self.continue_due = (headers.get(b"expect", b"").lower() == b"100-continue" and parts[2] == b"HTTP/1.1"
                             and not body and not self.continued)
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            if body > max_body:
                return _COMPLETE  # the endpoint refuses it while reading; the socket timeout bounds that
            return _COMPLETE if _chunked_end(self.data, end + 4) else None
        length = headers.get(b"content-length", b"0") or b"0"
        if not length.isdigit() or int(length) > max_body:
            return _COMPLETE  # refused from the header, without reading the body
        return _COMPLETE if body >= int(length) else None


def _is_upload(method: bytes, target: bytes) -> bool:
    """A request whose body the thread that serves it streams to disk: a write to an output location, a job
    submission (``POST /admin/jobs``, a tar of inputs) or a job's results (``PUT /admin/jobs/<id>/results``)."""
    if method not in (b"PUT", b"POST"):
        return False
    path = target.split(b"?", 1)[0].rstrip(b"/")
    return (target.startswith(_BULK_PREFIX) or (method == b"POST" and path == b"/admin/jobs")
            or (method == b"PUT" and _JOB_RESULTS.match(path) is not None))


def _chunked_end(data: bytearray, pos: int) -> bool:
    """Whether ``data[pos:]`` holds a whole chunked body (RFC 9112 §7.1), or framing so broken that
    gunicorn's parser will refuse it from what is there."""
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return len(data) - pos > 1024  # a chunk-size line this long is broken framing
        size_text = bytes(data[pos:eol]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return True
        if size == 0:  # the last chunk; the trailer section ends with an empty line
            return data.find(b"\r\n\r\n", eol) >= 0
        pos = eol + 2 + size + 2
        if pos > len(data):
            return False


def _plain(status: int, reason: str, message: str) -> bytes:
    body = f"{status} {reason}: {message}\n".encode()
    return (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body


def _set_socket_timeouts(sock: socket.socket, seconds: float) -> None:
    """Kernel send and receive timeouts: they bound every blocking read and write of this socket, whichever
    code makes it (gunicorn's parser and response, the application's body reads)."""
    whole = int(seconds)
    value = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
