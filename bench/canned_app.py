"""The baseline of ``soap_overhead.py``: a WSGI app that answers every request with the same bytes (a real
GetOutputLocationResponse captured from the service), reading the request body as the service does."""
import os

_BODY = open(os.environ["CANNED_BODY"], "rb").read()
_HEADERS = [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(_BODY)))]


def app(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    start_response("200 OK", _HEADERS)
    return [_BODY]
