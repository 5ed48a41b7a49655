"""gunicorn settings of ``dicom-host serve`` that are not command-line options (``-c python:...``).

gunicorn answers a request it cannot even parse (bad request line, oversized header, malformed chunking)
before the application sees it, with a small HTML page. Peers of this server are SOAP stacks, zeep and
scripts, not browsers: the same answer goes out as plain text, so that no error of this server is HTML.
"""
from gunicorn import util


def _write_plain_error(sock, status_int: int, reason: str, mesg: str) -> None:
    body = f"{status_int} {reason}{': ' + mesg if mesg else ''}\n".encode("utf-8", "replace")
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


def post_worker_init(worker) -> None:
    util.write_error = _write_plain_error
