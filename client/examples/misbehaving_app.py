"""A hosted application that misbehaves on request, to test how a Hosting System copes with real peers.

Without options it is a conformant application whose task writes one ``text/plain`` output,
``summary.txt``: a line ``<descriptor UUID> <MIME type> <bytes> <SHA-256>`` per input it fetched, so a
test can check that the inputs arrived intact. Each option adds one misbehaviour seen in CTK or XIP
applications or a failure a host must survive::

    python -m client.examples.misbehaving_app --hostURL U1 --applicationURL U2 [options]

The options are listed by ``--help`` (and in :meth:`MisbehavingApp.add_arguments`); STATE is a PS3.19
state name (IDLE, INPROGRESS, SUSPENDED, COMPLETED, CANCELED, EXIT).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import threading
import time
import urllib.parse
from typing import Any, Optional
from xml.sax.saxutils import escape

import requests
from lxml import etree

from client import HostCallError, HostClient, HostedApplication, TaskContext, TaskInput, TaskOutput
from hosting_service.model import ObjectLocator, QueryResult, StatusType
from hosting_service.states import State, host_may_request, parse_state
from hosting_service.wire.faults import SOAP_ENV_NS as SOAP_ENV

CTK_HOST_NAMESPACE = "http://dicom.nema.org/PS3.19/HostInterface"
"""QtSoap puts the method element in ``"http://dicom.nema.org/PS3.19" + <URL path>``; with CTK's usual
``/HostInterface`` path this is it (CTK's QtSoap-based DAH library)."""
QTSOAP_XSI = "http://www.w3.org/1999/XMLSchema-instance"
QTSOAP_XSD = "http://www.w3.org/1999/XMLSchema"
CRASH_STATUS = 3
STANDARD_FLAGS = ("--hostURL", "--applicationURL")
"""The launch flags as PS3.19 §7.1 spells them (``--strict-flags`` accepts no other spelling)."""
_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


def _state(text: str) -> State:
    try:
        return parse_state(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class CtkHostClient(HostClient):
    """Sends four HostService calls as CTK's QtSoap client does: the method element in
    :data:`CTK_HOST_NAMESPACE`, unqualified arguments with ``xsi:type``, a SOAP-ENC ``encodingStyle``,
    ``StatusType`` as an integer (0..3) with ``CodeValue`` as a string in CTK's member order, and arrays of
    strings as ``<string><Uid>...</Uid></string>``. Answers are read the way CTK reads them: the first
    child of the Body's first element. The other operations go through zeep."""

    RAW_OPERATIONS = ("NotifyStateChanged", "NotifyStatus", "GetOutputLocation", "GenerateUID")

    def call(self, operation: str, **arguments: Any) -> Any:
        if operation not in self.RAW_OPERATIONS:
            return super().call(operation, **arguments)
        envelope = (
            f'<?xml version="1.0" encoding="UTF-8"?>'
            f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}" xmlns:xsi="{QTSOAP_XSI}" xmlns:xsd="{QTSOAP_XSD}" '
            f'SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><SOAP-ENV:Body>'
            f'<ns:{operation} xmlns:ns="{CTK_HOST_NAMESPACE}">{self._ctk_arguments(**arguments)}</ns:{operation}>'
            f"</SOAP-ENV:Body></SOAP-ENV:Envelope>"
        ).encode("utf-8")
        headers = {
            "Content-Type": "text/xml; charset=utf-8",
            "SoapAction": f"http://dicom.nema.org/PS3.19/IHostService/{operation}",
        }
        try:
            response = self.session.post(self.url, data=envelope, headers=headers, timeout=self.timeout)
            body = etree.fromstring(response.content, _SAFE_PARSER).find(f"{{{SOAP_ENV}}}Body")
        except (requests.RequestException, etree.LxmlError) as exc:
            raise HostCallError(operation, f"CTK-style call failed: {exc}") from exc
        fault = body.find(f"{{{SOAP_ENV}}}Fault") if body is not None else None
        if fault is not None:
            raise HostCallError(operation, f"SOAP fault: {fault.findtext('faultstring')}")
        if response.status_code != 200 or body is None:
            raise HostCallError(operation, f"HTTP {response.status_code}")
        wrapper = next(iter(body), None)
        result = wrapper[0] if wrapper is not None and len(wrapper) else None
        return "".join(result.itertext()).strip() if result is not None else None

    @staticmethod
    def _ctk_arguments(state: Optional[State] = None, status=None, preferredProtocols=None) -> str:
        if state is not None:
            return f'<state xsi:type="xsd:string">{state.value}</state>'
        if status is not None:
            code = list(StatusType).index(status.StatusType)
            return (
                f'<status><StatusType xsi:type="xsd:int">{code}</StatusType>'
                f'<CodingSchemeDesignator xsi:type="xsd:string">{escape(status.CodingSchemeDesignator or "")}</CodingSchemeDesignator>'
                f'<CodeValue xsi:type="xsd:string">{status.CodeValue}</CodeValue>'
                f'<CodeMeaning xsi:type="xsd:string">{escape(status.CodeMeaning or "")}</CodeMeaning></status>'
            )
        if preferredProtocols is not None:
            items = "".join(f'<string><Uid xsi:type="xsd:string">{escape(p)}</Uid></string>' for p in preferredProtocols)
            return f"<preferredProtocols>{items}</preferredProtocols>"
        return ""


class CtkAnswers:
    """WSGI middleware answering as CTK's application does: void operations (ReleaseData, ReleaseModels)
    with an empty SOAP Body, the others with the response element in the CTK namespace derived from the
    URL path and its children unqualified with ``xsi:type``."""

    def __init__(self, app, application_url: str):
        self.app = app
        self.namespace = "http://dicom.nema.org/PS3.19" + urllib.parse.urlsplit(application_url).path

    def __call__(self, environ, start_response):
        captured: dict[str, Any] = {}

        def capture(status, headers, exc_info=None):
            captured.update(status=status, headers=headers)

        body = b"".join(self.app(environ, capture))
        if environ.get("REQUEST_METHOD") == "POST" and captured["status"].startswith("200"):
            body = self._ctk_style(body)
            headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
            captured["headers"] = [*headers, ("Content-Length", str(len(body)))]
        start_response(captured["status"], captured["headers"])
        return [body]

    def _ctk_style(self, body: bytes) -> bytes:
        root = etree.fromstring(body)
        soap_body = root.find(f"{{{SOAP_ENV}}}Body")
        wrapper = soap_body[0]
        if len(wrapper) == 0:
            soap_body.remove(wrapper)
        else:
            wrapper.tag = f"{{{self.namespace}}}{etree.QName(wrapper).localname}"
            for element in wrapper.iterdescendants():
                element.tag = etree.QName(element).localname
                element.set(f"{{{QTSOAP_XSI}}}type", "xsd:string")
        return etree.tostring(root, xml_declaration=True, encoding="utf-8")


class WsdlHostClient(HostClient):
    """Builds its proxy as JAX-WS applications (XIP's ``ClientToHost``) do: from ``hostURL?wsdl`` alone,
    with the service QName and port of the standard, calling whatever address that WSDL holds. It works
    only if the host serves the standard WSDL, resolves its imported schemas and rewrites its address."""

    def __init__(self, host_url: str, *, timeout: float = 10.0):
        super().__init__(host_url, timeout=timeout)
        import zeep
        from zeep.transports import Transport

        # as strict as the project's clients, but the schemas the WSDL imports must be fetched from the host
        settings = zeep.Settings(strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=False)
        proxy = zeep.Client(host_url + "?wsdl", settings=settings,
                            transport=Transport(operation_timeout=(timeout, timeout), session=self.session))
        self._service = proxy.bind("HostService-20100825", "HostServiceBinding")


class CarelessHostClient(HostClient):
    """A HostService client with the output and error handling misbehaviours of :class:`MisbehavingApp`:
    it remembers the last output location, writes every http: output twice (``--write-twice``), and
    blocks forever when the host answers GetData or GetOutputLocation with a fault or nil
    (``--hang-on-host-error``)."""

    def __init__(self, host_url: str, *, timeout: float, options: argparse.Namespace):
        super().__init__(host_url, timeout=timeout)
        self.options = options
        self.last_location: Optional[str] = None

    def call(self, operation: str, **arguments: Any) -> Any:
        try:
            answer = super().call(operation, **arguments)
        except HostCallError:
            if self.options.hang_on_host_error and operation in ("GetData", "GetOutputLocation"):
                print(f"misbehaving-app: {operation} failed; hanging (--hang-on-host-error)", file=sys.stderr, flush=True)
                threading.Event().wait()
            raise
        if operation == "GetOutputLocation":
            self.last_location = answer
        return answer

    def write_output(self, location: str, name: str, source) -> str:
        uri = super().write_output(location, name, source)
        if self.options.write_twice and urllib.parse.urlsplit(uri).scheme.lower() in ("http", "https"):
            try:
                super().write_output(location, name, source)
            except Exception as exc:  # the host refused the second write, as it should
                print(f"misbehaving-app: second write refused: {exc}", file=sys.stderr, flush=True)
        return uri


class MisbehavingApp(HostedApplication):
    name = "misbehaving-app"
    description = "A PS3.19 hosted application that misbehaves on request (for testing Hosting Systems)."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--startup-delay", type=float, default=0.0, metavar="S",
                            help="sleep S seconds before announcing IDLE (slow startup)")
        parser.add_argument("--crash-at", type=_state, metavar="STATE",
                            help=f"exit with status {CRASH_STATUS} right after notifying STATE")
        parser.add_argument("--exit-unrequested-at", type=_state, metavar="STATE",
                            help="notify EXIT by itself on reaching STATE, and end (status 0)")
        parser.add_argument("--illegal-notify", type=_state, metavar="STATE",
                            help="after the first IDLE also notify STATE (e.g. COMPLETED: not a transition)")
        parser.add_argument("--ignore-request", type=_state, metavar="STATE",
                            help="answer SetState(STATE) TRUE but never carry it out (no notification)")
        parser.add_argument("--freeze-on-request", type=_state, metavar="STATE",
                            help="on SetState(STATE) stop answering: that call and every later one hang")
        parser.add_argument("--self-idle", action="store_true",
                            help="go IDLE by itself after COMPLETED (XIP), still serving the outputs")
        parser.add_argument("--fail", action="store_true",
                            help="process() raises: FATALERROR status, then CANCELED, then IDLE")
        parser.add_argument("--process-seconds", type=float, default=0.0, metavar="S",
                            help="process() takes S seconds and ignores cancellation meanwhile")
        parser.add_argument("--accept-any-request", action="store_true",
                            help="answer TRUE to every SetState, also to changes Table 7.2-2 does not allow (and ignore those)")
        parser.add_argument("--write-twice", action="store_true",
                            help="write every http: output twice (a second PUT to a write-once URI)")
        parser.add_argument("--write-after-idle", action="store_true",
                            help="after a task, once IDLE, write one more object to its last output location")
        parser.add_argument("--hang-on-host-error", action="store_true",
                            help="block forever when GetData or GetOutputLocation fails, instead of ending the task")
        parser.add_argument("--bad-locator", action="store_true",
                            help="GetData answers each output's locator with a Length one byte too long")
        parser.add_argument("--invalid-models", action="store_true",
                            help="also output a copy of the first DICOM input, and offer it as a Native DICOM Model "
                                 "that does not validate (its DicomAttribute elements without their vr)")
        parser.add_argument("--strict-flags", action="store_true",
                            help="refuse launch flags spelled otherwise than --hostURL/--applicationURL (XIP hosts vary the case)")
        parser.add_argument("--ctk", action="store_true",
                            help="talk like a CTK application (CtkHostClient requests, CtkAnswers answers)")
        parser.add_argument("--jaxws", action="store_true",
                            help="call the host through a proxy built from hostURL?wsdl alone, as XIP does")

    def __init__(self, options: argparse.Namespace):
        self._frozen = threading.Event()
        self._illegal_pending = options.illegal_notify
        self._completed_once = False
        super().__init__(options)

    def connect_host(self) -> HostClient:
        if self.options.ctk or self.options.jaxws:
            client_class = CtkHostClient if self.options.ctk else WsdlHostClient
            return client_class(self.options.hostURL, timeout=self.call_timeout)
        return CarelessHostClient(self.options.hostURL, timeout=self.call_timeout, options=self.options)

    def endpoint_app(self):
        app = super().endpoint_app()
        if self.options.ctk:
            app = CtkAnswers(app, self.options.applicationURL)

        def maybe_frozen(environ, start_response):
            if self._frozen.is_set():
                threading.Event().wait()  # never answers
            return app(environ, start_response)

        return maybe_frozen

    def run(self) -> int:
        time.sleep(self.options.startup_delay)
        return super().run()

    def SetState(self, state: Optional[State] = None) -> bool:
        if state is not None and state == self.options.freeze_on_request:
            self._frozen.set()
            threading.Event().wait()
        if state is not None and state == self.options.ignore_request:
            return True
        if state is not None and self.options.accept_any_request and state != self.GetState() \
                and state not in host_may_request(self.GetState()):
            return True
        return super().SetState(state)

    def GetData(self, objects: Optional[list[str]] = None, acceptableTransferSyntaxes: Optional[list[str]] = None,
                includeBulkData: bool = True) -> list[ObjectLocator]:
        locators = super().GetData(objects, acceptableTransferSyntaxes, includeBulkData)
        if self.options.bad_locator:
            for locator in locators:
                locator.Length += 1
        return locators

    def QueryModel(self, models: Optional[list[str]] = None, xPaths: Optional[list[str]] = None) -> list[QueryResult]:
        results = super().QueryModel(models, xPaths)
        if self.options.invalid_models:
            for result in results:
                for node in result.Result or []:
                    node.Value = re.sub(r' vr="[A-Z]{2}"', "", node.Value or "")
        return results

    def entered(self, state: State) -> None:
        options = self.options
        if state == State.IDLE and options.write_after_idle and self._completed_once:
            location = getattr(self.host, "last_location", None)
            if location:
                try:
                    self.host.write_output(location, "late.txt", b"written after IDLE\n")
                except Exception as exc:  # a conformant host refuses it
                    print(f"misbehaving-app: late write refused: {exc}", file=sys.stderr, flush=True)
        self._completed_once = self._completed_once or state == State.COMPLETED
        if state == options.crash_at:
            print(f"{self.name}: crashing at {state} (--crash-at)", file=sys.stderr, flush=True)
            os._exit(CRASH_STATUS)
        if state == State.IDLE and self._illegal_pending is not None:
            self.host.notify_state_changed(self._illegal_pending)
            self._illegal_pending = None
        if state == options.exit_unrequested_at and state != State.EXIT:
            self.enter(State.EXIT)
        elif state == State.COMPLETED and options.self_idle:
            self.enter(State.IDLE)

    def process(self, inputs: list[TaskInput], context: TaskContext) -> list[TaskOutput]:
        time.sleep(self.options.process_seconds)
        if self.options.fail:
            raise RuntimeError("failing on purpose (--fail)")
        lines = [
            f"{i.descriptor.DescriptorUuid} {i.descriptor.MimeType} {len(i.data)} {hashlib.sha256(i.data).hexdigest()}"
            for i in inputs
        ]
        outputs = [TaskOutput(name="summary.txt", data="".join(line + "\n" for line in lines).encode(), mime_type="text/plain")]
        dicom = [i for i in inputs if (i.descriptor.MimeType or "").lower() == "application/dicom"]
        if self.options.invalid_models and dicom:
            outputs.append(TaskOutput(name="copy.dcm", data=dicom[0].data, mime_type="application/dicom"))
        return outputs


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--strict-flags" in argv:
        variants = [a for a in argv if a.startswith("--") and a.partition("=")[0].lower() in
                    {f.lower() for f in STANDARD_FLAGS} and a.partition("=")[0] not in STANDARD_FLAGS]
        if variants or any(a.partition("=")[0] in STANDARD_FLAGS and "=" in a for a in argv):
            print(f"misbehaving-app: launch flags must be spelled --hostURL U --applicationURL U (--strict-flags), "
                  f"got {' '.join(variants) or 'the --flag=value form'}", file=sys.stderr)
            return 2
    return MisbehavingApp.main(argv)


if __name__ == "__main__":
    sys.exit(main())
