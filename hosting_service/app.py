"""The Hosting System's WSGI application: one per gunicorn worker, all sharing one store.

Routes:

* ``/<token>/HostService-20100825``: the HostService endpoint of the instance that owns ``token``
  (POST: SOAP; GET ``?wsdl``: the standard WSDL with this URL as its address);
* ``/<token>/<schema>.xsd``: the four schemas the WSDL imports by relative location;
* ``/outputs/<token>/[name]``: http: output locations;
* ``/inputs/<token>/<locator>``: http: inputs (GetData's locators when file: URIs may not be used);
* ``/admin/...``: the admin API;
* ``/healthz``: 200 when the store answers and the data dir takes a file, 503 naming the failing check
  otherwise (polled by containers, load balancers and tests: a few stat/open calls, no fsync);
* ``/metrics``: Prometheus metrics of the whole server (:mod:`hosting_service.metrics`); no token needed,
  none in it.

Log records made while a request for an instance (its endpoint, its admin routes) or a job is handled
carry its id (:func:`hosting_service.logs.bind`).

An unknown, ended or malformed instance path gets a SOAP Client fault (POST) or a 404 (GET) and changes
nothing; the answer is the same for every such path, so it tells a guesser nothing.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import threading
from typing import Optional

from hosting_service import metrics
from hosting_service.admin.api import HOST_SERVICE_PATH, AdminApi
from hosting_service.config import Settings
from hosting_service.inputs_http import PREFIX as INPUTS_PREFIX, InputsApp
from hosting_service.logs import bind, configure_logging, redacted_path
from hosting_service.models.registry import ModelRegistry
from hosting_service.operations import HostOperations
from hosting_service.outputs.locations import OutputLocations
from hosting_service.outputs.upload import UploadApp
from hosting_service.peers import PeerRecorder
from hosting_service.store import StoreError, UnknownInstance, open_store
from hosting_service.wire import faults
from hosting_service.wire.documents import XML_CONTENT_TYPE
from hosting_service.wire.endpoint import REQUEST_OBSERVER_KEY, SoapEndpoint
from hosting_service.wire.services import HostService

log = logging.getLogger("dicom_host.app")

_INSTANCE_PATH = re.compile(r"^/(?P<token>[A-Za-z0-9_-]{22,64})/(?P<name>[A-Za-z0-9.-]+)$")
_ADMIN_SUBJECT = re.compile(r"^/admin/(?:(?P<instance>instances)|jobs)/(?P<id>[A-Za-z0-9_.-]{8,128})(?:/|$)")
_UNKNOWN = "no hosted-application instance is served at this address (unknown or ended)"


def _plain(start_response, status: str, body: bytes, content_type: str = "text/plain; charset=utf-8"):
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def _admin_subject(path: str) -> dict[str, str]:
    """The instance or job an admin route concerns, as :func:`~hosting_service.logs.bind` arguments."""
    match = _ADMIN_SUBJECT.match(path)
    if match is None:
        return {}
    return {"instance_id" if match["instance"] else "job_id": match["id"]}


class HostingApp:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = open_store(settings)
        self.outputs = OutputLocations(self.store, settings)
        ModelRegistry.attach(self.store, settings, self.outputs)  # its expiry hook, before any request
        self.endpoint = SoapEndpoint(HostService, settings)
        self.schema_names = frozenset(self.endpoint.documents.schema_names)
        self.uploads = UploadApp(settings, self.outputs.writes)
        self.inputs = InputsApp(self.store, settings, self.outputs)
        self.admin = AdminApi(self.store, settings, self.outputs)
        self.peers = PeerRecorder(self.store)
        metrics.enable(self.store)

    def __call__(self, environ, start_response):
        try:
            return self._route(environ, start_response)
        except Exception:  # every layer answers its own errors; this is the last line for the host's bugs
            log.exception("internal error on %s %s", environ.get("REQUEST_METHOD"),
                          redacted_path(environ.get("PATH_INFO", "")))
            exc_info = sys.exc_info()

            def restart(status, headers):
                return start_response(status, headers, exc_info)

            if environ.get("REQUEST_METHOD") == "POST" and _INSTANCE_PATH.match(environ.get("PATH_INFO", "")):
                return faults.fault_response(restart, "Server", faults.INTERNAL_ERROR)
            return _plain(restart, "500 Internal Server Error", b"internal error; see the server log")

    def _route(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/admin/") or path == "/admin":
            with bind(**_admin_subject(path)):
                return self.admin(environ, start_response)
        if path.startswith("/outputs/"):
            return self.uploads(environ, start_response)
        if path.startswith(INPUTS_PREFIX):
            return self.inputs(environ, start_response)
        if path == "/healthz":
            return self._health(start_response)
        if path == "/metrics":
            body, content_type = metrics.exposition()
            return _plain(start_response, "200 OK", body, content_type)
        return self._instance_endpoint(environ, start_response, path)

    def _health(self, start_response):
        """``/healthz``: each check ``ok`` or why not; 503 when one fails. The answer names no path or
        address (anyone may ask); the log has the details."""
        checks = {"store": "ok", "dataDir": "ok"}
        try:
            self.store.check()
        except StoreError as exc:
            log.warning("health check: the store fails: %s", exc)
            checks["store"] = "unreachable"
        try:
            self._probe_data_dir()
        except OSError as exc:
            log.warning("health check: the data dir is not writable: %s", exc)
            checks["dataDir"] = f"not writable: {exc.strerror or type(exc).__name__}"
        failing = [name for name, outcome in checks.items() if outcome != "ok"]
        answer = {"status": "failing" if failing else "ok", **checks, "pid": os.getpid()}
        if failing:
            answer["failing"] = failing
        return _plain(start_response, "503 Service Unavailable" if failing else "200 OK",
                      json.dumps(answer).encode(), "application/json")

    def _probe_data_dir(self) -> None:
        """Create, write one byte to (a full disk refuses it) and remove a file in the data dir; no fsync."""
        probe = self.settings.data_dir / f".healthz-{os.getpid()}-{threading.get_ident()}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"?")
        finally:
            os.close(fd)
            os.unlink(probe)

    def _instance_endpoint(self, environ, start_response, path: str):
        method = environ.get("REQUEST_METHOD", "GET")
        match = _INSTANCE_PATH.match(path)
        instance = None
        if match and (match["name"] == HOST_SERVICE_PATH or match["name"] in self.schema_names):
            try:
                instance = self.store.instance_by_token(match["token"])
            except UnknownInstance:
                instance = None
            if instance is not None and instance.ended:
                instance = None
        if instance is None or match is None:
            if method == "POST":
                return faults.fault_response(start_response, "Client", _UNKNOWN)
            return _plain(start_response, "404 Not Found", _UNKNOWN.encode())
        schema = self.endpoint.documents.schema(match["name"])
        if schema is not None:
            if method not in ("GET", "HEAD"):
                return _plain(start_response, "405 Method Not Allowed", b"schemas are read with GET")
            return _plain(start_response, "200 OK", schema, XML_CONTENT_TYPE)
        environ["dicom_host.endpoint_url"] = instance.host_url
        environ["dicom_host.operations"] = HostOperations(self.store, self.settings, self.outputs, instance)
        environ["dicom_host.instance_id"] = instance.id
        environ[REQUEST_OBSERVER_KEY] = functools.partial(self.peers.observe, instance)
        with bind(instance_id=instance.id):
            return self.endpoint(environ, start_response)


def create_app(settings: Optional[Settings] = None) -> HostingApp:
    """The gunicorn entry point: ``gunicorn 'hosting_service.app:create_app()'``."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_format)
    app = HostingApp(settings)
    app.admin.jobs.reaper.ensure_started()  # gunicorn calls this in each worker, after the fork
    return app
