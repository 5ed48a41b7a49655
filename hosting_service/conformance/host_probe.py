"""``dicom-host conformance host``: a hosted application that tests the Hosting System which launched it.

Any host launches it with ``--hostURL``/``--applicationURL`` (ours: ``dicom-host run --app "dicom-host
conformance host" --input ... --output ...``). It is a :class:`client.HostedApplication`, so it follows the
protocol the conformant way, and probes the host's HostService at each state it passes through:

* before its first IDLE (NOT_STARTED), at IDLE, at INPROGRESS (inside its task) and at COMPLETED: each
  operation that §8 allows in that state must answer (without a fault, the answer valid against the
  Annex B schema), and each operation it does not allow is expected to be refused with a SOAP fault
  (optional scenarios: the standard leaves the host's reaction open; this project's host faults, and
  ``--lenient`` answers nil instead); NotifyStateChanged is only ever called for real transitions;
* the WSDL at ``?wsdl``, its address and its imported XSDs (optional: an interoperability convention);
* GetOutputLocation for file: and http:, an http: location being write-once, and (after IDLE) closed;
* GetData for the task's inputs: one locator per object, the bytes at Offset/Length, and transfer syntax
  negotiation (Implicit VR Little Endian asked alone);
* the inputs as Native and Abstract Multi-Dimensional Image models, if offered (:mod:`.model_checks`), and
  what a model UUID the host never issued gets (optional: the standard defines no fault for it);
* an illegal notification (IDLE -> CANCELED, then back to IDLE) at the very end, just before the host's
  EXIT: optional, since the standard leaves the host's reaction open; the host must answer and go on;
* every answer validated against the Annex B schemas as it arrives.

The task's outputs are the three reports (text, JUnit XML, JSON), which the host collects. The scenarios
that can only run after the outputs were handed over (the COMPLETED state, the locations' end at IDLE)
are "not applicable" in that copy; the final report, with them, is printed on stderr at EXIT.
Wire quirks of other hosts (CTK, XIP) end up as failed scenarios with the answer quoted, never as a crash.
"""
from __future__ import annotations

import argparse
import functools
import io
import re
import sys
import threading
import urllib.parse
import uuid
from typing import Any, Callable, Optional

import requests
from lxml import etree

import wsdl
from client import (HostCallError, HostClient, HostedApplication, TaskContext, TaskInput, TaskOutput,
                    UnreadableObject, read_located)
from hosting_service.conformance import model_checks, reports
from hosting_service.conformance.schemas import problems, service_schema
from hosting_service.conformance.verdicts import NotApplicable, Result, Scenario, Violation, execute
from hosting_service.models import ABSTRACT_IMAGE_MODEL, NATIVE_DICOM_MODEL
from hosting_service.model import AvailableData, ObjectLocator, Status, StatusType, iter_descriptors
from hosting_service.states import PRECONDITIONS, State

SUITE = "Hosting System (probed by dicom-host conformance host)"
HOST_NAMESPACE = "http://dicom.nema.org/PS3.19/HostService-20100825"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
XS = "http://www.w3.org/2001/XMLSchema"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
NATIVE_MODEL = "1.2.840.10008.7.1.1"
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
LATER = ("checked after this report was handed over to the host (at COMPLETED and IDLE); "
         "the final report, printed on stderr at EXIT, has the verdict")
PROBED_STATES = ("NOT_STARTED", "IDLE", "INPROGRESS", "COMPLETED")
MIME_TYPES = {"text": "text/plain", "junit": "text/xml", "json": "application/json"}
"""The reports' MIME types as outputs (text/xml rather than application/xml, which hosts name ``.xsl``)."""


class WireWatch:
    """Checks every SOAP answer of the host as it arrives (a ``requests`` response hook): a Fault must be
    a SOAP 1.1 Fault, anything else an ``<Op>Response`` valid against the Annex B schema."""

    def __init__(self, host_url: str, note: Callable[[str], None]):
        self.host_url = host_url
        self.note = note
        self.schema = service_schema(wsdl.HOST_SERVICE_WSDL)
        self.answers = 0
        self.invalid: list[str] = []

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if response.request.method != "POST" or response.request.url != self.host_url:
            return
        operation = _operation_of(response.request.body)
        self.answers += 1
        try:
            body = etree.fromstring(response.content, _PARSER).find(f"{{{SOAP_ENV}}}Body")
        except etree.LxmlError as exc:
            self._invalid(f"{operation}: the answer is not XML ({exc}; HTTP {response.status_code})")
            return
        first = body[0] if body is not None and len(body) else None
        if first is None:
            self._invalid(f"{operation}: an empty SOAP Body (HTTP {response.status_code})")
        elif first.tag == f"{{{SOAP_ENV}}}Fault":
            if first.find("faultcode") is None or first.find("faultstring") is None:
                self._invalid(f"{operation}: a SOAP Fault without faultcode and faultstring")
        elif first.tag != f"{{{HOST_NAMESPACE}}}{operation}Response":
            self._invalid(f"{operation}: the answer is {first.tag}, not {{{HOST_NAMESPACE}}}{operation}Response")
        else:
            for problem in problems(self.schema, first):
                self._invalid(f"{operation}Response: {problem}")

    def _invalid(self, message: str) -> None:
        self.note(f"INVALID ANSWER {message}")
        self.invalid.append(message)


def _operation_of(body: Any) -> str:
    try:
        envelope = etree.fromstring(body if isinstance(body, bytes) else str(body).encode(), _PARSER)
        return etree.QName(envelope.find(f"{{{SOAP_ENV}}}Body")[0]).localname
    except (etree.LxmlError, TypeError, IndexError, AttributeError):
        return "?"


class ProbeHostClient(HostClient):
    """A HostClient whose every answer goes through a :class:`WireWatch`."""

    def __init__(self, host_url: str, *, timeout: float, note: Callable[[str], None]):
        super().__init__(host_url, timeout=timeout)
        self.watch = WireWatch(host_url, note)
        self.session.hooks["response"].append(self.watch)


class ConformanceProbe(HostedApplication):
    name = "dicom-host conformance host"
    description = "A PS3.19 hosted application that tests the Hosting System launching it; see the README."
    output_protocols = ("file:", "http:")

    def __init__(self, options: argparse.Namespace):
        self.messages: list[str] = []
        self.results: dict[str, Result] = {}
        self.input_data: list[AvailableData] = []
        self.unused_http_location: Optional[str] = None
        self._idle_probed = threading.Event()
        self._completed_once = False
        super().__init__(options)

    def note(self, line: str) -> None:
        self.messages.append(line)

    def connect_host(self) -> HostClient:
        client = ProbeHostClient(self.options.hostURL, timeout=self.call_timeout, note=self.note)
        self.watch = client.watch
        return client

    # --- the states it passes through ----------------------------------------------------------------

    def run(self) -> int:
        self._probe("wsdl")
        self._probe_state("NOT_STARTED")
        return super().run()

    def entered(self, state: State) -> None:
        if state == State.IDLE and not self._idle_probed.is_set():
            try:
                self._probe_state("IDLE")
            finally:
                self._idle_probed.set()
        elif state == State.COMPLETED:
            self._completed_once = True
            self._probe_state("COMPLETED")
        elif state == State.IDLE and self._completed_once:
            self._probe("location-lifetime")
            self._probe("illegal-notification")  # last, just before the host asks for EXIT
        elif state == State.EXIT:
            self._probe("answers-schema")
            final = self._ordered(final=True)
            for name, text in reports.render(SUITE, final).items():
                sys.stderr.write(f"----- conformance report ({name}) -----\n{text}")
            sys.stderr.flush()

    def SetState(self, state: Optional[State] = None) -> bool:
        if state == State.INPROGRESS:  # the IDLE probes run first, while the host knows the application IDLE
            self._idle_probed.wait(30)
        return super().SetState(state)

    def process(self, inputs: list[TaskInput], context: TaskContext) -> list[TaskOutput]:
        self.input_data = list(context.available_data)
        self._probe_state("INPROGRESS")
        for scenario_id in ("output-location-file", "output-location-http", "getdata-locators", "transfer-syntax",
                            "models-native", "models-abstract", "models-unknown", "answers-schema"):
            self._probe(scenario_id)
        rendered = reports.render(SUITE, self._ordered(final=False))
        return [TaskOutput(name=reports.FILE_NAMES[f], data=text.encode("utf-8"), mime_type=MIME_TYPES[f])
                for f, text in rendered.items()]

    # --- running scenarios ---------------------------------------------------------------------------

    def _probe(self, scenario_id: str) -> None:
        scenario = SCENARIOS[scenario_id]
        self.note(f"== {scenario_id}")
        self.results[scenario_id] = execute(scenario, self.messages, self)

    def _probe_state(self, state: str) -> None:
        for kind in ("allowed", "refused"):
            scenario_id = f"{kind}-{state.lower().replace('_', '-')}"
            if scenario_id in SCENARIOS:
                self._probe(scenario_id)

    def _ordered(self, final: bool) -> list[Result]:
        results = []
        for scenario_id, scenario in SCENARIOS.items():
            result = self.results.get(scenario_id)
            if result is None:
                result = execute(Scenario(scenario.id, scenario.title, scenario.clause, _not_run(final), scenario.required), [])
            results.append(result)
        return results

    # --- helpers the scenarios use --------------------------------------------------------------------

    def input_uuids(self) -> list[str]:
        return [d.DescriptorUuid for data in self.input_data for d, *_ in iter_descriptors(data) if d.DescriptorUuid]

    def dicom_uuids(self) -> list[str]:
        return [d.DescriptorUuid for data in self.input_data for d, *_ in iter_descriptors(data)
                if d.DescriptorUuid and (d.MimeType or "").lower() == "application/dicom"]

    def attempt(self, what: str, call: Callable[[], Any]) -> tuple[bool, Any]:
        """``(True, answer)`` or ``(False, the error)``; both written to the messages."""
        try:
            answer = call()
        except HostCallError as exc:
            self.note(f"{what} -> {exc}")
            return False, exc
        self.note(f"{what} -> {_short(answer)}")
        return True, answer


def _not_run(final: bool) -> Callable[..., None]:
    def run(*_: Any) -> None:
        raise NotApplicable("the host never took the application to the state this scenario needs" if final else LATER)
    return run


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


# --- the operations, called with harmless arguments ---------------------------------------------------------

def _random_uuid() -> str:
    return str(uuid.uuid4())


def _calls(probe: ConformanceProbe, state: str) -> dict[str, Callable[[], Any]]:
    """One harmless call per HostService operation (NotifyStateChanged only reports real transitions,
    so it is not probed). Data operations name the task's inputs where the state has them."""
    host = probe.host
    inputs = probe.input_uuids() if state in ("INPROGRESS", "COMPLETED") else [_random_uuid()]
    return {
        "GenerateUID": host.generate_uid,
        "GetAvailableScreen": host.get_available_screen,
        "GetOutputLocation": lambda: host.get_output_location(["file:", "http:"]),
        "NotifyStatus": lambda: host.notify_status(Status(StatusType=StatusType.INFORMATION, CodeValue=0,
                                                          CodeMeaning=f"dicom-host conformance probe at {state}")),
        "NotifyDataAvailable": lambda: host.notify_data_available(AvailableData(), False),
        "GetData": lambda: host.get_data(inputs or [_random_uuid()]),
        "GetAsModels": lambda: host.get_as_models(inputs or [_random_uuid()], NATIVE_MODEL),
        "QueryModel": lambda: host.query_model([], ["/NativeDicomModel"]),
        "QueryInfoSet": lambda: host.query_info_set([], ["/NativeDicomModel"]),
        "ReleaseData": lambda: host.release_data([]),
        "ReleaseModels": lambda: host.release_models([]),
    }


def _state_of(label: str) -> Optional[State]:
    return None if label == "NOT_STARTED" else State(label)


def allowed_operations(label: str) -> list[str]:
    return [op for op, rule in PRECONDITIONS.items() if op != "NotifyStateChanged" and _state_of(label) in rule.allowed]


def refused_operations(label: str) -> list[str]:
    return [op for op, rule in PRECONDITIONS.items() if _state_of(label) not in rule.allowed]


def _allowed(label: str) -> Callable[[ConformanceProbe], None]:
    def run(probe: ConformanceProbe) -> None:
        calls = _calls(probe, label)
        for operation in allowed_operations(label):
            ok, answer = probe.attempt(f"{operation} at {label}", calls[operation])
            if not ok:
                raise Violation(PRECONDITIONS[operation].cite, f"{operation} answered at {label}", str(answer))
            if operation == "GenerateUID" and (not _UID.match(answer or "") or len(answer) > 64):
                raise Violation("PS3.19 §8.2.1, PS3.5 §9.1", "a valid UID of at most 64 characters", repr(answer))
            if operation == "NotifyDataAvailable" and answer is not True:
                raise Violation(PRECONDITIONS[operation].cite, "TRUE for an empty announcement at INPROGRESS", repr(answer))
    return run


def _refused(label: str) -> Callable[[ConformanceProbe], None]:
    def run(probe: ConformanceProbe) -> None:
        calls = _calls(probe, label)
        for operation in refused_operations(label):
            ok, answer = probe.attempt(f"{operation} at {label}", calls[operation])
            if ok and not (operation == "NotifyDataAvailable" and answer is False):
                raise Violation(PRECONDITIONS[operation].cite,
                                f"{operation} at {label} refused (a SOAP fault; FALSE for NotifyDataAvailable)",
                                f"answered {_short(answer)}")
            if not ok and "SOAP fault" not in str(answer):
                raise Violation(PRECONDITIONS[operation].cite, f"{operation} at {label} refused with a SOAP fault",
                                f"answered without a fault: {answer}")
    return run


# --- the other scenarios --------------------------------------------------------------------------------

def probe_wsdl(probe: ConformanceProbe) -> None:
    url = probe.options.hostURL
    rule = "PS3.19 §8 (endpoint in the WSDL), interoperability with JAX-WS applications"
    session = probe.host.session
    try:
        response = session.get(url + "?wsdl", timeout=probe.call_timeout)
        document = etree.fromstring(response.content, _PARSER)
    except (requests.RequestException, etree.LxmlError) as exc:
        raise Violation(rule, f"the HostService WSDL at {url}?wsdl", str(exc)) from None
    probe.note(f"GET {url}?wsdl -> {response.status_code}, {len(response.content)} bytes")
    if document.tag != f"{{{WSDL_NS}}}definitions" or document.get("targetNamespace") != HOST_NAMESPACE:
        raise Violation(rule, f"wsdl:definitions with targetNamespace {HOST_NAMESPACE}",
                        f"{document.tag} targetNamespace={document.get('targetNamespace')}")
    addresses = [a.get("location") for a in document.iter(f"{{{WSDL_SOAP_NS}}}address")]
    if addresses != [url]:
        raise Violation(rule, f"soap:address location {url}", f"{addresses}")
    for imported in document.iter(f"{{{XS}}}import"):
        where = urllib.parse.urljoin(url + "?wsdl", imported.get("schemaLocation") or "")
        try:
            schema = etree.fromstring(session.get(where, timeout=probe.call_timeout).content, _PARSER)
        except (requests.RequestException, etree.LxmlError) as exc:
            raise Violation(rule, f"the imported schema at {where}", str(exc)) from None
        probe.note(f"GET {where} -> {etree.QName(schema).localname} {schema.get('targetNamespace')}")
        if schema.tag != f"{{{XS}}}schema" or schema.get("targetNamespace") != imported.get("namespace"):
            raise Violation(rule, f"an XML Schema for {imported.get('namespace')} at {where}",
                            f"{schema.tag} targetNamespace={schema.get('targetNamespace')}")


def _location(probe: ConformanceProbe, protocol: str) -> str:
    ok, answer = probe.attempt(f"GetOutputLocation([{protocol}:])", lambda: probe.host.get_output_location([f"{protocol}:"]))
    if not ok:
        raise NotApplicable(f"the host does not hand out {protocol}: locations ({answer})")
    if urllib.parse.urlsplit(answer).scheme.lower() != protocol:
        raise NotApplicable(f"asked for {protocol}: only, the host handed out {answer}")
    return answer


def output_location_file(probe: ConformanceProbe) -> None:
    uri = _location(probe, "file")
    parts = urllib.parse.urlsplit(uri)
    if not uri.lower().startswith("file:///") or not parts.path.startswith("/"):
        raise Violation("PS3.19 §8.2.3, RFC 8089", "an absolute file: URI (file:///path)", uri)


def output_location_http(probe: ConformanceProbe) -> None:
    uri = _location(probe, "http")
    target = uri + "probe.bin" if uri.endswith("/") else uri
    session = probe.host.session
    first = session.put(target, data=b"probe", timeout=probe.call_timeout)
    probe.note(f"PUT {target} -> {first.status_code}")
    if first.status_code not in (200, 201, 204):
        raise Violation("PS3.19 §8.2.3", f"a PUT to the http: location {target} stored", f"HTTP {first.status_code}")
    second = session.put(target, data=b"again", timeout=probe.call_timeout)
    probe.note(f"PUT {target} again -> {second.status_code}")
    if second.status_code < 400:
        raise Violation("PS3.19 §8.2.3 Note 1", "a second write to the same http: URI refused (write-once)",
                        f"HTTP {second.status_code}")
    probe.unused_http_location = _location(probe, "http")


def location_lifetime(probe: ConformanceProbe) -> None:
    uri = probe.unused_http_location
    if uri is None:
        raise NotApplicable("no http: location was handed out")
    target = uri + "late.bin" if uri.endswith("/") else uri
    response = probe.host.session.put(target, data=b"late", timeout=probe.call_timeout)
    probe.note(f"PUT {target} after IDLE -> {response.status_code}")
    if response.status_code < 400:
        raise Violation("PS3.19 §8.2.3", "writes to an output location refused once the application is IDLE",
                        f"HTTP {response.status_code}")


def _fetch(probe: ConformanceProbe, uuids: list[str], syntaxes: list[str]) -> list[tuple[ObjectLocator, bytes]]:
    ok, locators = probe.attempt(f"GetData({len(uuids)} objects, {syntaxes})", lambda: probe.host.get_data(uuids, syntaxes))
    if not ok:
        raise Violation("PS3.19 §8.3.2", "GetData answers for the objects the host offered", str(locators))
    if sorted((loc.Source or "").lower() for loc in locators) != sorted(u.lower() for u in uuids):
        raise Violation("PS3.19 §8.3.2", "one ObjectLocator per requested UUID, its Source that UUID",
                        f"{len(locators)} locators for {len(uuids)} objects")
    fetched = []
    for locator in locators:
        try:
            data = read_located(locator, session=probe.host.session, timeout=probe.call_timeout)  # all, or raises
        except UnreadableObject as exc:
            raise Violation("PS3.19 §8.3.2, §9.5", "the bytes at the locator's URI, Offset and Length", str(exc)) from None
        fetched.append((locator, data))
    ok, error = probe.attempt("ReleaseData", lambda: probe.host.release_data([loc.Locator for loc in locators if loc.Locator]))
    if not ok:
        raise Violation("PS3.19 §8.3.6", "ReleaseData of the locators answered", str(error))
    return fetched


def _dataset(locator: ObjectLocator, data: bytes):
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        return dcmread(io.BytesIO(data), force=True)
    except (InvalidDicomError, ValueError, EOFError, OSError) as exc:
        raise Violation("PS3.19 §8.3.2", f"a DICOM object at {locator.URI}", f"unreadable: {exc}") from None


def getdata_locators(probe: ConformanceProbe) -> None:
    uuids = probe.input_uuids()
    if not uuids:
        raise NotApplicable("the host offered no inputs")
    dicom = set(u.lower() for u in probe.dicom_uuids())
    for locator, data in _fetch(probe, uuids, [EXPLICIT_VR_LE, IMPLICIT_VR_LE]):
        if (locator.Source or "").lower() in dicom:
            if locator.TransferSyntax not in (EXPLICIT_VR_LE, IMPLICIT_VR_LE):
                raise Violation("PS3.19 §8.3.2", "a TransferSyntax from the acceptable list", f"{locator.TransferSyntax}")
            if "SOPInstanceUID" not in _dataset(locator, data):
                raise Violation("PS3.19 §8.3.2", f"a DICOM object at {locator.URI}", "no SOP Instance UID in it")


def transfer_syntax(probe: ConformanceProbe) -> None:
    uuids = probe.dicom_uuids()[:1]
    if not uuids:
        raise NotApplicable("the host offered no DICOM objects")
    for locator, data in _fetch(probe, uuids, [IMPLICIT_VR_LE]):
        if locator.TransferSyntax != IMPLICIT_VR_LE:
            raise Violation("PS3.19 §8.3.2", f"TransferSyntax {IMPLICIT_VR_LE}, the only one acceptable",
                            f"{locator.TransferSyntax}")
        dataset = _dataset(locator, data)
        meta = getattr(dataset, "file_meta", None)
        found = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
        if found and found != IMPLICIT_VR_LE:
            raise Violation("PS3.19 §8.3.2", f"the object encoded in {IMPLICIT_VR_LE}", f"its file meta says {found}")


def _models(class_uid: str) -> Callable[[ConformanceProbe], None]:
    def run(probe: ConformanceProbe) -> None:
        uuids = probe.dicom_uuids()
        if not uuids:
            raise NotApplicable("the host offered no DICOM objects")
        model_checks.check_models(probe.host, uuids, class_uid, probe.note, probe.call_timeout)
    return run


def models_unknown(probe: ConformanceProbe) -> None:
    """A model UUID the host never issued: the standard defines no fault for it, so this only asks that
    none of a model's nodes come back (a fault, or an empty answer)."""
    uuids = probe.dicom_uuids()
    if not uuids:
        raise NotApplicable("the host offered no DICOM objects")
    issued = model_checks.get_models(probe.host, uuids[:1], NATIVE_DICOM_MODEL, probe.note)  # NotApplicable if none
    model_checks.check_released(probe.host, [_random_uuid()], probe.note, "a model UUID the host never issued")
    probe.attempt("ReleaseModels", lambda: probe.host.release_models(issued))


ILLEGAL_NOTIFICATION = State.CANCELED
"""What the probe notifies at IDLE after its task: IDLE -> CANCELED is not in Table 7.2-2 for anyone."""


def illegal_notification(probe: ConformanceProbe) -> None:
    """At IDLE after the task, NotifyStateChanged(CANCELED), which Table 7.2-2 does not allow from IDLE,
    then CANCELED -> IDLE, which it does. The standard leaves the host's reaction open (a fault, or taking
    the report as the truth with a warning); it asks only that the host goes on serving the application:
    both calls answered, GenerateUID (allowed in every state) still answered, and the host's EXIT request
    still to come."""
    host = probe.host
    rule = "PS3.19 §8.2.4, Table 7.2-2"
    for state, what in ((ILLEGAL_NOTIFICATION, f"NotifyStateChanged({ILLEGAL_NOTIFICATION}) at IDLE (illegal)"),
                        (State.IDLE, f"NotifyStateChanged({State.IDLE}) (back: {ILLEGAL_NOTIFICATION} -> IDLE)")):
        ok, answer = probe.attempt(what, functools.partial(host.notify_state_changed, state))
        if not ok and "SOAP fault" not in str(answer):
            raise Violation(rule, f"NotifyStateChanged({state}) answered (a SOAP fault, or accepted)", str(answer))
        probe.note(f"the host {'accepted' if ok else 'refused'} NotifyStateChanged({state})")
    ok, answer = probe.attempt("GenerateUID after the illegal notification", host.generate_uid)
    if not ok:
        raise Violation(rule, "the host still serves the application after an illegal notification", str(answer))


def answers_schema(probe: ConformanceProbe) -> None:
    watch = probe.watch
    probe.note(f"{watch.answers} answers checked against the Annex B schema")
    if watch.invalid:
        raise Violation("PS3.19 Annex B", "every answer a SOAP 1.1 Fault or an <Op>Response valid against the schema",
                        f"{len(watch.invalid)} not: {watch.invalid[0]}")


_SCENARIOS: list[Scenario] = [
    Scenario("wsdl", "the HostService WSDL at ?wsdl, with the real address and resolvable XSDs",
             "PS3.19 §8, Annex B", probe_wsdl, required=False),
    *[
        scenario
        for label in PROBED_STATES
        for scenario in (
            Scenario(f"allowed-{label.lower().replace('_', '-')}", f"operations §8 allows at {label} answer",
                     "PS3.19 §8.2, §8.3", _allowed(label)),
            Scenario(f"refused-{label.lower().replace('_', '-')}",
                     f"operations §8 does not allow at {label} are refused with a fault", "PS3.19 §8.2.3, §8.3",
                     _refused(label), required=False),
        )
        if scenario.id.startswith("allowed") or refused_operations(label)
    ],
    Scenario("output-location-file", "GetOutputLocation for file:", "PS3.19 §8.2.3", output_location_file),
    Scenario("output-location-http", "GetOutputLocation for http:, write-once", "PS3.19 §8.2.3 Note 1",
             output_location_http),
    Scenario("location-lifetime", "an http: location refuses writes once the application is IDLE", "PS3.19 §8.2.3",
             location_lifetime),
    Scenario("getdata-locators", "GetData: a locator per input, the bytes at Offset/Length, ReleaseData",
             "PS3.19 §8.3.2, §8.3.6, §9.5", getdata_locators),
    Scenario("transfer-syntax", "GetData honours the acceptable transfer syntax (Implicit VR LE alone)",
             "PS3.19 §8.3.2", transfer_syntax),
    Scenario("models-native", "inputs as Native DICOM Models: schema-valid, QueryModel/QueryInfoSet order and node "
             "types, bulk data as long as claimed, ReleaseModels", "PS3.19 §8.3.3-§8.3.5, §8.3.7, Annex A.1",
             _models(NATIVE_DICOM_MODEL)),
    Scenario("models-abstract", "inputs as Abstract Multi-Dimensional Image Models, where the host offers them "
             "(the same checks)", "PS3.19 §8.3.3-§8.3.5, §8.3.7, Annex A.2", _models(ABSTRACT_IMAGE_MODEL)),
    Scenario("models-unknown", "QueryModel on a model UUID the host never issued answers none of a model's nodes",
             "PS3.19 §8.3.4", models_unknown, required=False),
    Scenario("illegal-notification", "an illegal NotifyStateChanged (IDLE -> CANCELED) answered, and the host "
             "still serves the application", "PS3.19 §8.2.4, Table 7.2-2", illegal_notification, required=False),
    Scenario("answers-schema", "every answer valid against the Annex B schemas", "PS3.19 Annex B", answers_schema),
]
SCENARIOS: dict[str, Scenario] = {s.id: s for s in _SCENARIOS}
"""Every host scenario, in report order."""
