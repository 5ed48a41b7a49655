"""The WSGI SOAP endpoint of one service: :class:`SoapEndpoint`.

A POST goes through the whole wire layer: the body is read with a size limit (:mod:`.body`), parsed
safely with limits on its elements (:mod:`.safety`), its SOAP 1.1 envelope checked (:mod:`.envelope`),
its operation element rebuilt in the standard's shape (:mod:`.normalize`), deserialised by Spyne, handed
to the operations object in ``environ["dicom_host.operations"]`` (:mod:`.services`), and the result
serialised by Spyne. As soon as the operation is known, and before its arguments are read, the operations
object is asked whether it admits the operation now (:func:`.services.admits`, the precondition of the
instance's state): if not, the operation is called without its arguments and refuses by itself, so a
refused call costs no normalising and no deserialising. Spyne's protocol is driven directly rather than through ``WsgiApplication.__call__``,
which would read and parse the body a second time, and the ``<Op>Response`` Spyne serialises goes into a
plain envelope of ours (``Soap11.serialize`` declares the interface's dozen namespaces and then cleans them
up, a third of the response time). The exceptions are mapped here, not by Spyne (which logs each one with
its traceback at CRITICAL and words the faults itself):

* :class:`~hosting_service.errors.ClientError`, :class:`~hosting_service.states.PreconditionViolation`,
  unreadable or unsafe requests: a ``soap:Client`` fault whose faultstring is the message (an envelope of
  another SOAP version: ``soap:VersionMismatch``; a header it must understand: ``soap:MustUnderstand``);
* anything else: a ``soap:Server`` fault saying only "internal error"; the traceback goes to the log,
  the request body never does.

``GET ...?wsdl`` answers the standard WSDL with the address ``environ["dicom_host.endpoint_url"]`` (put
there by the router from the configured public URL; the Host header is never used). The imported XSDs,
which live at sibling paths, are in :attr:`SoapEndpoint.documents` for the router to serve.
"""
from __future__ import annotations

import ctypes
import logging
import time
from typing import Any, Callable, Optional

from lxml import etree
from spyne import Application
from spyne.model.fault import Fault
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication, WsgiMethodContext

from hosting_service import metrics
from hosting_service.config import Settings
from hosting_service.errors import ClientError, ServerConfigurationError
from hosting_service.states import PreconditionViolation
from hosting_service.wire.body import read_body
from hosting_service.wire.documents import DOCUMENTS, XML_CONTENT_TYPE, ServiceDocuments
from hosting_service.wire.envelope import EnvelopeFault, operation_element
from hosting_service.wire.faults import CLIENT, CONTENT_TYPE, INTERNAL_ERROR, SERVER, SOAP_ENV_NS, fault_response
from hosting_service.wire.normalize import RequestNormalizer
from hosting_service.wire.safety import parse
from hosting_service.wire.services import OPERATIONS_KEY, admits
from hosting_service.wire.types import Operation

logger = logging.getLogger("dicom_host.wire")

_ENVELOPE = f"{{{SOAP_ENV_NS}}}Envelope"
_BODY = f"{{{SOAP_ENV_NS}}}Body"

ENDPOINT_URL_KEY = "dicom_host.endpoint_url"
"""WSGI environ key of the endpoint's public URL, the ``soap:address`` of the served WSDL."""
REQUEST_OBSERVER_KEY = "dicom_host.request_observer"
"""WSGI environ key of an optional callable that sees each understood request envelope as the peer sent it
(the host uses it to recognise CTK applications: :mod:`hosting_service.peers`)."""


class SoapEndpoint:
    """WSGI application answering one PS3.19 service (``wire.services.HostService`` or ``ApplicationService``)."""

    def __init__(self, service_class: Any, settings: Settings):
        self.settings = settings
        self.types = service_class.wire_types
        self.documents: ServiceDocuments = DOCUMENTS[self.types.namespace]
        self._normalizer = RequestNormalizer(self.types, settings.soap_max_items)
        self._spyne = WsgiApplication(
            Application(
                [service_class],
                tns=self.types.namespace,
                name=self._normalizer.service_name,
                in_protocol=Soap11(validator=None),  # the normaliser has checked every value already
                out_protocol=Soap11(),
            )
        )
        self._in = self._spyne.app.in_protocol
        self._out = self._spyne.app.out_protocol
        self._descriptors = {
            name: self._spyne.app.interface.service_method_map[f"{{{self.types.namespace}}}{name}"][0]
            for name in self.types.operations
        }

    def __call__(self, environ: dict, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "POST":
            return self._post(environ, start_response)
        if method == "GET":
            return self._get(environ, start_response)
        return _text(start_response, "405 Method Not Allowed", f"{method} is not supported here; POST SOAP requests, GET ?wsdl",
                     [("Allow", "GET, POST")])

    def _get(self, environ: dict, start_response):
        if not _asks_for_wsdl(environ.get("QUERY_STRING", "")):
            return _text(start_response, "404 Not Found", "not found: POST SOAP 1.1 requests to this URL, or GET it with ?wsdl")
        location = environ.get(ENDPOINT_URL_KEY)
        if not location:
            logger.error("no %s in the WSGI environ: cannot tell the WSDL's soap:address", ENDPOINT_URL_KEY)
            return _text(start_response, "500 Internal Server Error", "this endpoint does not know its public URL")
        body = self.documents.wsdl(location)
        start_response("200 OK", [("Content-Type", XML_CONTENT_TYPE), ("Content-Length", str(len(body)))])
        return [body]

    def _post(self, environ: dict, start_response):
        name = "request"
        settings = self.settings
        size: Optional[int] = None
        fault: Optional[str] = None
        started = time.perf_counter()
        try:
            body = read_body(environ, settings.soap_max_body_bytes)
            size = len(body)
            root = parse(body, max_depth=settings.soap_max_depth, max_elements=settings.soap_max_elements)
            payload = operation_element(root)
            operation = self._normalizer.operation(payload)
            name = operation.name
            observe = environ.get(REQUEST_OBSERVER_KEY)
            if observe is not None:
                observe(root)
            admitted = admits(environ[OPERATIONS_KEY], name)
            request = self._normalizer.normalize(operation, payload if admitted else None)
            del body, root, payload  # free the request before Spyne builds its objects
            answer = self._invoke(environ, operation, request)
        except EnvelopeFault as exc:
            logger.info("%s %s: %s fault: %s", self._normalizer.service_name, name, exc.faultcode, exc)
            fault = exc.faultcode
            return fault_response(start_response, exc.faultcode, str(exc))
        except (ClientError, PreconditionViolation) as exc:
            logger.info("%s %s: Client fault: %s", self._normalizer.service_name, name, exc)
            fault = CLIENT
            return fault_response(start_response, CLIENT, str(exc))
        except ServerConfigurationError as exc:
            logger.error("%s %s: Server fault: %s", self._normalizer.service_name, name, exc)
            return fault_response(start_response, SERVER, str(exc))
        except Exception:
            logger.exception("%s %s: internal error", self._normalizer.service_name, name)
            fault = SERVER
            return fault_response(start_response, SERVER, INTERNAL_ERROR)
        finally:
            metrics.soap_call(name, time.perf_counter() - started, fault)
            if size is None or size >= _LARGE_REQUEST:  # large, or refused while reading (a gzip bomb?)
                _return_freed_memory()
        start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(answer)))])
        return [answer]

    def _invoke(self, environ: dict, operation: Operation, request: etree._Element) -> bytes:
        """Let Spyne deserialise the normalised ``<Op>`` element, call the method, and serialise its
        ``<Op>Response`` into a SOAP 1.1 envelope; the response bytes."""
        ctx = WsgiMethodContext(self._spyne, environ, CONTENT_TYPE)
        ctx.descriptor = self._descriptors[operation.name]
        try:
            ctx.in_object = self._in.from_element(ctx, ctx.descriptor.in_message, request)
        except Fault as fault:
            raise ClientError(f"the request could not be read: {fault.faultstring}") from None
        result = ctx.descriptor.service_class.call_wrapper(ctx)
        message = ctx.descriptor.out_message
        response = message()
        if operation.result is not None:
            setattr(response, operation.result.name, result)
        envelope = etree.Element(_ENVELOPE, nsmap={"soap": SOAP_ENV_NS, "tns": self.types.namespace})
        self._out.to_parent(ctx, message, response, etree.SubElement(envelope, _BODY), message.get_namespace())
        return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


_LARGE_REQUEST = 256 * 1024
"""Bytes of request body from which the memory its handling freed is handed back to the system."""


def _find_malloc_trim() -> Optional[Callable[[int], int]]:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc
    except (OSError, AttributeError):
        return None


_malloc_trim = _find_malloc_trim()


def _return_freed_memory() -> None:
    """Give the memory freed after a large request back to the system. glibc keeps freed memory in its
    per-thread arenas, so without this a worker's RSS stays at its largest request's peak, per thread."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def _asks_for_wsdl(query: str) -> bool:
    return any(part.partition("=")[0].lower() == "wsdl" for part in query.split("&"))


def _text(start_response, status: str, message: str, headers: list | None = None) -> list[bytes]:
    body = (message + "\n").encode("utf-8")
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), *(headers or [])])
    return [body]
