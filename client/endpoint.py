"""The WSGI application a hosted application serves at its applicationURL's host and port: the
ApplicationService (the wire layer's :class:`SoapEndpoint`, so requests are read as tolerantly and
answered as strictly as the Host's) at the URL's path, with ``?wsdl`` and the XSDs it imports by relative
location at sibling paths."""
from __future__ import annotations

import urllib.parse
from typing import Any

from hosting_service.config import Settings
from hosting_service.wire.endpoint import ENDPOINT_URL_KEY, SoapEndpoint
from hosting_service.wire.faults import CLIENT, fault_response
from hosting_service.wire.services import OPERATIONS_KEY, ApplicationService


class ApplicationEndpoint:
    """WSGI: ``operations`` (an object with the ApplicationService operations) served at ``url``."""

    def __init__(self, operations: Any, url: str):
        self.operations = operations
        self.url = url
        self.path = urllib.parse.urlsplit(url).path or "/"
        self.directory = self.path.rsplit("/", 1)[0] + "/"
        self.endpoint = SoapEndpoint(ApplicationService, Settings())

    def __call__(self, environ: dict, start_response):
        path = environ.get("PATH_INFO") or "/"
        if path == self.path:
            environ[OPERATIONS_KEY] = self.operations
            environ[ENDPOINT_URL_KEY] = self.url
            return self.endpoint(environ, start_response)
        schema = None
        if path.startswith(self.directory) and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            schema = self.endpoint.documents.schema(path[len(self.directory):])
        if schema is not None:
            start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(schema)))])
            return [schema]
        message = f"no ApplicationService at {path}; it is at {self.path}"
        if environ.get("REQUEST_METHOD") == "POST":
            return fault_response(start_response, CLIENT, message)
        body = message.encode()
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]
