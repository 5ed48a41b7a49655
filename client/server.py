"""A small threaded WSGI server for a hosted application's ApplicationService endpoint.

A hosted application must answer the host while it is itself calling the host (PS3.19 §4.4: the host may
call ``GetData`` on the application while the application is inside a host call, and vice versa), so each
request runs on its own thread. The standard library's ``wsgiref`` server is enough for one host peer on
loopback; it is made threaded, quiet (requests go to the ``logging`` module at DEBUG, not to stderr) and
it skips the reverse DNS lookup ``HTTPServer.server_bind`` does, which can take seconds on some hosts.
"""
from __future__ import annotations

import logging
import socketserver
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

log = logging.getLogger("dicom_host.client.server")

_POLL_SECONDS = 0.01
"""How often the serving loop checks for :meth:`ThreadedWSGIServer.stop`: it bounds how long an EXIT
takes to end the process (``socketserver``'s default is half a second)."""


class _QuietHandler(WSGIRequestHandler):
    timeout = 30
    """Seconds a connection may stay silent; bounds how long :meth:`ThreadedWSGIServer.stop` can wait."""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature of the base class
        log.debug("%s %s", self.address_string(), format % args)


class ThreadedWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """``wsgiref``'s server with one thread per request. :meth:`stop` waits for the requests in flight,
    so that the answer to the host's ``SetState(EXIT)`` is out before the process ends."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, app):
        super().__init__((host, port), _QuietHandler)
        self.set_app(app)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = port
        self.setup_environ()

    def start(self) -> threading.Thread:
        """Serve on a background thread; the socket is already bound and listening, so callers can
        announce the endpoint as soon as this returns."""
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": _POLL_SECONDS}, name="application-endpoint", daemon=True
        )
        thread.start()
        return thread

    def stop(self) -> None:
        """Stop serving, finish the requests in flight and close the socket (from any thread but the
        serving one)."""
        self.shutdown()
        self.server_close()
