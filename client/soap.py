"""zeep plumbing shared by :class:`client.ApplicationClient` and :class:`client.HostClient`.

Both clients are built from the project's copy of the normative Annex B WSDL (package :mod:`wsdl`), never
from a WSDL fetched from the peer, with the endpoint address given at construction (the WSDL's own
address is the standard's placeholder). Parsing a WSDL with its four XSDs is slow compared with a call,
so each WSDL is parsed once per process and shared by every client object.

Arguments and results are :mod:`hosting_service.model` values; :mod:`hosting_service.wire.convert` turns
them into what zeep wants and back, driven by the operation descriptions of
:mod:`hosting_service.wire.types` (the same XSD the servers use).

Real peers answer sloppily (CTK above all): an empty SOAP Body for void operations, SOAP-encoded
arrays of ``<item>`` elements, response elements unqualified, in the other service's namespace or under a
non-standard name. The :class:`TolerantResponses` plugin rewrites such answers into the standard shape
before zeep reads them (strictly: see :data:`ZEEP_SETTINGS`), with the rules the host applies to requests
(:mod:`hosting_service.wire.normalize`): one tolerant reader for both directions.
Every failure (connection, timeout, HTTP error, SOAP fault, unreadable answer) becomes one exception type
per client, naming the operation and the reason.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, ClassVar, Optional

import requests
import zeep
import zeep.exceptions
from lxml import etree
from requests.adapters import HTTPAdapter
from zeep.plugins import Plugin
from zeep.transports import Transport
from zeep.wsdl import Document

from hosting_service.config import Settings
from hosting_service.errors import ClientError
from hosting_service.wire.convert import args_to_wire, from_wire
from hosting_service.wire.faults import SOAP_ENV_NS as SOAP_ENV
from hosting_service.wire.normalize import RequestNormalizer
from hosting_service.wire.types import WireTypes, array_item

ANSWER_MAX_ITEMS = Settings().soap_max_items
"""Most items read in any one array of an answer: the bound the host's configuration puts on requests."""

ZEEP_SETTINGS = zeep.Settings(
    strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=True, xml_huge_tree=False
)
"""No DTDs, no entity expansion, no external references in anything a peer sends. ``strict=True``
because zeep's lenient mode loses data silently: lxml's ``recover`` mode turns a non-XML answer into
``None``, and an unexpected element in a sequence makes zeep drop the members after it as if absent.
The deviations real peers make are repaired beforehand by :class:`TolerantResponses`; anything else is
an error that says what was wrong."""


class SoapCallError(Exception):
    """A call to a PS3.19 peer failed: it could not be reached, did not answer in time, answered with a
    SOAP fault or with something that is not the operation's response."""

    def __init__(self, operation: str, reason: str):
        super().__init__(f"{operation}: {reason}")
        self.operation = operation
        self.reason = reason


def one_connection_session() -> requests.Session:
    """A session that holds at most one connection at a time to any peer: a second call made while one
    is in flight waits for it (each is bounded by the client's timeout) instead of opening another.

    Small PS3.19 servers cannot take more. CTK's (ctkSoapConnectionRunnable) gives every kept-alive
    connection a thread of a pool as large as the machine has cores, so a client holding more connections
    than that stalls it. Not retried: a repeated SetState or NotifyDataAvailable is not harmless.
    """
    session = requests.Session()
    # PS3.19 peers talk directly (the standard's endpoints are local); not consulting proxy variables and
    # .netrc also saves about a millisecond per call that requests spends scanning os.environ.
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, pool_block=True, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@functools.lru_cache(maxsize=None)
def _document(wsdl_path: str) -> Document:
    return Document(wsdl_path, Transport(), settings=ZEEP_SETTINGS)  # type: ignore[arg-type]  # zeep's hint is wrong


class NotSoapEnvelope(zeep.exceptions.Error):
    """The peer answered XML that is not a SOAP 1.1 envelope (an error page, say)."""


class UnreadableAnswer(zeep.exceptions.Error):
    """The answer's result is not a value of the operation's result type, in any shape peers use."""


class TolerantResponses(Plugin):
    """Rewrite a peer's response into the standard's shape before zeep reads it.

    * a void operation's answer becomes the empty ``<Op>Response`` whatever the Body held (CTK sends an
      empty Body);
    * the result element is the Body's first element's child named like the result (in any case and
      namespace), or its only child (CTK answers ``GenerateUID`` with ``<GenerateUID><uid>``); other
      children are skipped;
    * the result is rebuilt in the standard's shape by the host's own request normaliser
      (:meth:`hosting_service.wire.normalize.RequestNormalizer.normalize_result`): SOAP-encoded arrays
      (CTK's ``<GetDataResult xsi:type="xsd:Array" SOAP-ENC:arrayType="..."><item>...``), unqualified or
      misnamespaced names, ``xsi:type`` attributes, CTK's integer StatusType and empty values. What it
      cannot read is :class:`UnreadableAnswer`, naming the element.

    Faults are left alone; anything that is not a SOAP envelope is refused with :class:`NotSoapEnvelope`.
    """

    def __init__(self, types: WireTypes):
        self.types = types
        self.normalizer = RequestNormalizer(types, ANSWER_MAX_ITEMS)

    def ingress(self, envelope, http_headers, operation):
        body = envelope.find(f"{{{SOAP_ENV}}}Body")
        if envelope.tag != f"{{{SOAP_ENV}}}Envelope" or body is None:
            text = etree.tostring(envelope, encoding="unicode")
            raise NotSoapEnvelope(f"the answer is not a SOAP 1.1 envelope: {_excerpt(text.encode())}")
        if body.find(f"{{{SOAP_ENV}}}Fault") is not None or operation.output is None:
            return envelope, http_headers
        description = self.types.operations[operation.name]
        response = next(body.iterchildren(etree.Element), None)
        result = None if response is None or description.result is None else _result_element(
            response, description.result.name)
        try:
            canonical = (etree.Element(f"{{{self.types.namespace}}}{description.name}Response") if result is None
                         else self.normalizer.normalize_result(description, result))
        except ClientError as exc:
            raise UnreadableAnswer(str(exc)) from None
        for child in list(body):
            body.remove(child)
        body.append(canonical)
        return envelope, http_headers


def _result_element(response: etree._Element, name: str) -> Optional[etree._Element]:
    children = list(response.iterchildren(etree.Element))
    key = name.lower()
    named = next((c for c in children if etree.QName(c).localname.lower() == key), None)
    return named if named is not None or len(children) != 1 else children[0]


@functools.lru_cache(maxsize=None)
def _tolerant(types: WireTypes) -> TolerantResponses:
    return TolerantResponses(types)


class SoapClient:
    """One PS3.19 service at one address. Subclasses name the WSDL, binding, wire types and error class."""

    wsdl_path: ClassVar[Path]
    binding: ClassVar[str]
    wire_types: ClassVar[WireTypes]
    error: ClassVar[type[SoapCallError]] = SoapCallError

    def __init__(self, url: str, *, timeout: float = 10.0):
        """``timeout`` (seconds) bounds both connecting and waiting for each answer: a CTK peer that hits a
        fault never answers at all."""
        self.url = url
        self.timeout = timeout
        self.session = one_connection_session()
        transport = Transport(operation_timeout=(timeout, timeout), session=self.session)
        self._client = zeep.Client(
            _document(str(self.wsdl_path)), settings=ZEEP_SETTINGS, transport=transport, plugins=[_tolerant(self.wire_types)]
        )
        self._service = self._client.create_service(self.binding, url)

    def close(self) -> None:
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def call(self, operation: str, **arguments: Any) -> Any:
        """Call ``operation`` with model values as keyword arguments (wire element names); return the
        result as a model value (``None`` for void operations). Raises :attr:`error` on any failure."""
        description = self.wire_types.operations[operation]
        wire_arguments = args_to_wire(description, **arguments)
        try:
            answer = getattr(self._service, operation)(**wire_arguments)
            if description.result is None:
                return None
            result = from_wire(answer, description.result.type)
        except zeep.exceptions.Fault as exc:
            code = f" ({exc.code})" if exc.code else ""
            raise self.error(operation, f"SOAP fault{code}: {exc.message}") from exc
        except requests.Timeout as exc:
            raise self.error(operation, f"no answer from {self.url} within {self.timeout:g} s") from exc
        except requests.ConnectionError as exc:
            raise self.error(operation, f"cannot connect to {self.url}: {_root_cause(exc)}") from exc
        except requests.RequestException as exc:
            raise self.error(operation, f"HTTP request to {self.url} failed: {exc}") from exc
        except zeep.exceptions.TransportError as exc:
            raise self.error(operation, f"HTTP {exc.status_code} from {self.url}: {_excerpt(exc.content)}") from exc
        except (zeep.exceptions.Error, etree.LxmlError, ValueError) as exc:
            raise self.error(operation, f"unreadable answer from {self.url}: {exc}") from exc
        if result is None:
            if array_item(description.result.type) is not None:
                return []  # an array result left out altogether: nothing to report
            raise self.error(operation, f"the answer from {self.url} has no {description.result.name}")
        return result


def _root_cause(exc: BaseException) -> str:
    while (cause := exc.__cause__ or exc.__context__) is not None:
        exc = cause
    return str(exc) or type(exc).__name__


def _excerpt(content: Optional[bytes], limit: int = 200) -> str:
    text = (content or b"").decode("utf-8", "replace").strip()
    return (text[:limit] + "...") if len(text) > limit else (text or "(empty body)")
