"""gunicorn settings of ``dicom-host serve`` that are not command-line options (``-c python:...``).

* gunicorn answers a request it cannot even parse (bad request line, oversized header, malformed chunking)
  before the application sees it, with a small HTML page. Peers of this server are SOAP stacks, zeep and
  scripts, not browsers: the same answer goes out as plain text, so that no error of this server is HTML.
* gunicorn's own log lines quote what clients sent (an invalid request line, the URI of a failed request):
  tokens in them are redacted like the project's own (:mod:`hosting_service.logs`); with
  ``--log-format json``, ``serve`` names :class:`JsonLogger` as gunicorn's logger class.
* The workers' metric files (:mod:`hosting_service.metrics`): a dead worker's are marked, and the folder
  goes when the server exits.
"""
from gunicorn import glogging, util

from hosting_service import metrics
from hosting_service.logs import JsonFormatter, redact_gunicorn_logs


def _write_plain_error(sock, status_int: int, reason: str, mesg: str) -> None:
    body = f"{status_int} {reason}{': ' + mesg if mesg else ''}\n".encode("utf-8", "replace")
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


class JsonLogger(glogging.Logger):
    """gunicorn's logger with its error and access lines written as the project's JSON lines."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())


def on_starting(server) -> None:
    redact_gunicorn_logs()


def post_worker_init(worker) -> None:
    redact_gunicorn_logs()  # also where a worker's loggers were set up again after the fork
    util.write_error = _write_plain_error


def child_exit(server, worker) -> None:
    metrics.worker_exited(worker.pid)


def on_exit(server) -> None:
    metrics.remove_multiprocess_dir()
