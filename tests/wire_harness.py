"""Shared helpers of the ``test_wire_*`` tests: a real HTTP server around :class:`SoapEndpoint`, an
operations object that records its calls, and validation of responses against the standard XSD."""
from __future__ import annotations

import contextlib
import datetime
import re
import threading
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import requests
from lxml import etree

import wsdl
from hosting_service import model
from hosting_service.config import Settings
from hosting_service.states import State
from hosting_service.wire.endpoint import ENDPOINT_URL_KEY, SoapEndpoint
from hosting_service.wire.services import OPERATIONS_KEY, ApplicationService, HostService
from hosting_service.wire.types import APP_NS, HOST_NS

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
HOST_PATH = "HostService-20100825"
APP_PATH = "ApplicationService-20100825"
TOKEN = "t0ken"

_DESCRIPTOR = model.ObjectDescriptor(
    ClassUID="1.2.840.10008.5.1.4.1.1.2",
    MimeType="application/dicom",
    Modality="CT",
    TransferSyntaxUID="1.2.840.10008.1.2.1",
    DescriptorUuid="6f1c0a52-0000-4000-8000-000000000001",
)

DEFAULT_RESULTS = {
    "GenerateUID": "2.25.1234",
    "GetAvailableScreen": model.Rectangle(Height=1080, Width=1920, RefPointX=0, RefPointY=0),
    "GetOutputLocation": "file:///var/out/",
    "NotifyDataAvailable": True,
    "GetData": [
        model.ObjectLocator(
            Length=2**40, Offset=0, TransferSyntax="1.2.840.10008.1.2.1", URI="file:///var/in/a.dcm",
            Locator="loc-1", Source=_DESCRIPTOR.DescriptorUuid,
        )
    ],
    "GetAsModels": model.ModelSetDescriptor(FailedSourceObjects=["bad-1"], InfosetType="text/xml", Models=["model-1"]),
    "QueryModel": [model.QueryResult(Model="model-1", Result=[model.XPathNode(NodeType="Element", Value="<a/>")], XPath="/a")],
    "QueryInfoSet": [
        model.QueryResultInfoSet(
            Model="model-1", Result=[model.XPathNodeInfoSet(InfoSetValue=b"\x00\xffbytes", NodeType="Text")], XPath="/a"
        )
    ],
    "GetState": State.INPROGRESS,
    "SetState": True,
    "BringToFront": True,
}
"""What the recording operations answer, per operation (absent: ``None``, a void operation)."""

SAMPLE_DATA = model.AvailableData(
    ObjectDescriptors=[_DESCRIPTOR],
    Patients=[
        model.Patient(
            AssigningAuthority="HOSP", DateOfBirth=datetime.datetime(1970, 1, 2), ID="P1", Name="Doe^Jane",
            ObjectDescriptors=[], Sex="F",
            Studies=[model.Study(ObjectDescriptors=[], Series=[model.Series(ObjectDescriptors=[_DESCRIPTOR], SeriesUID="1.3")], StudyUID="1.2")],
        )
    ],
)


class RecordingOperations:
    """Any operation: records ``(name, kwargs)`` and answers :data:`DEFAULT_RESULTS` (or ``raises``).
    The operations named in ``refused`` are not admitted (see ``wire.services.admits``)."""

    def __init__(self, raises: BaseException | None = None):
        self.calls: list[tuple[str, dict]] = []
        self.raises = raises
        self.refused: set[str] = set()

    def admits(self, operation: str) -> bool:
        return operation not in self.refused

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)

        def operation(**kwargs):
            self.calls.append((name, kwargs))
            if self.raises is not None:
                raise self.raises
            return DEFAULT_RESULTS.get(name)

        return operation

    @property
    def last(self) -> tuple[str, dict]:
        return self.calls[-1]


class Router:
    """A miniature of the server's routing: ``/<token>/HostService-20100825``,
    ``/<token>/ApplicationService-20100825`` (each with its own folder of XSDs), the XSDs beside them."""

    def __init__(self, settings: Settings, operations: RecordingOperations):
        self.operations = operations
        self.base_url = ""
        self.endpoints = {
            "host": SoapEndpoint(HostService, settings),
            "app": SoapEndpoint(ApplicationService, settings),
        }

    def __call__(self, environ, start_response):
        parts = environ.get("PATH_INFO", "").strip("/").split("/")
        if len(parts) == 3 and parts[0] in self.endpoints and parts[1] == TOKEN:
            endpoint = self.endpoints[parts[0]]
            if parts[2] in (HOST_PATH, APP_PATH):
                environ[OPERATIONS_KEY] = self.operations
                environ[ENDPOINT_URL_KEY] = f"{self.base_url}{environ['PATH_INFO']}"
                return endpoint(environ, start_response)
            schema = endpoint.documents.schema(parts[2])
            if schema is not None:
                start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8")])
                return [schema]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    def url(self, service: str) -> str:
        return f"{self.base_url}/{service}/{TOKEN}/{HOST_PATH if service == 'host' else APP_PATH}"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


@contextlib.contextmanager
def serve(app):
    """Serve a WSGI app on a free loopback port in a thread; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    """A port for an application to bind (see hosting_service.ports: outside the ephemeral range)."""
    from hosting_service.ports import free_loopback_port

    return free_loopback_port()


# --- validation against the standard XSD ---------------------------------------------------------------

_XS = "http://www.w3.org/2001/XMLSchema"


def standard_schema(namespace: str) -> etree.XMLSchema:
    """The service's four XSDs (from ``wsdl/``) as one lxml schema."""
    folder, main = {
        HOST_NS: (wsdl.HOST_SERVICE, "HostService-20100825.xsd"),
        APP_NS: (wsdl.APPLICATION_SERVICE, "ApplicationService-20100825.xsd"),
    }[namespace]
    root = etree.Element(f"{{{_XS}}}schema", nsmap={"xs": _XS})
    for name in ("ArrayOfString.xsd", "XPathNodeType.xsd", "Types.xsd", main):
        path: Path = folder / name
        etree.SubElement(root, f"{{{_XS}}}import", namespace=etree.parse(str(path)).getroot().get("targetNamespace"),
                         schemaLocation=path.as_uri())
    return etree.XMLSchema(root)


def body_child(envelope: etree._Element | bytes) -> etree._Element:
    if isinstance(envelope, bytes):
        envelope = etree.fromstring(envelope)
    assert envelope.tag == f"{{{SOAP_ENV}}}Envelope", envelope.tag
    (body,) = envelope.findall(f"{{{SOAP_ENV}}}Body")
    return body[0]


def assert_valid(schema: etree.XMLSchema, envelope: etree._Element | bytes) -> None:
    """The Body's child validates against the standard schema."""
    child = body_child(envelope)
    assert schema.validate(child), f"{schema.error_log}\n{etree.tostring(child).decode()}"


# --- raw SOAP --------------------------------------------------------------------------------------------

def envelope(payload: str, header: str = "", prefix: str = "s", extra_ns: str = "") -> bytes:
    head = f"<{prefix}:Header>{header}</{prefix}:Header>" if header else ""
    return (
        f'<{prefix}:Envelope xmlns:{prefix}="{SOAP_ENV}" {extra_ns}>{head}<{prefix}:Body>{payload}</{prefix}:Body></{prefix}:Envelope>'
    ).encode()


def post(url: str, body: bytes, headers: dict | None = None) -> requests.Response:
    return requests.post(url, data=body, headers={"Content-Type": "text/xml; charset=utf-8", **(headers or {})}, timeout=10)


def fault(response: requests.Response) -> tuple[str, str]:
    """``(faultcode, faultstring)`` of a SOAP 1.1 Fault answer (asserting it is one, with HTTP 500)."""
    assert response.status_code == 500, (response.status_code, response.text)
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    child = body_child(response.content)
    assert child.tag == f"{{{SOAP_ENV}}}Fault", response.text
    return child.findtext("faultcode"), child.findtext("faultstring")


# --- served schemas -------------------------------------------------------------------------------------

_LOCATION_HINT = re.compile(rb'(<xs:import namespace="[^"]*") schemaLocation="\./(ArrayOfString|XPathNodeType)\.xsd"')


def without_location_hints(schema: bytes) -> bytes:
    """A served XSD without the two ``schemaLocation`` hints the server adds (for suds): the shipped file."""
    return _LOCATION_HINT.sub(rb"\1", schema)
