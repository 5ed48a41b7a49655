"""ApplicationClient and HostClient on the wire: what they send (standard, XSD-valid requests with the
standard SOAPAction) and what they accept from sloppy peers (CTK's empty Bodies, unqualified or
misnamespaced answers), against a real HTTP server that answers canned envelopes. Every failure is one
clear exception naming the operation."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from lxml import etree

import wsdl
from client import ApplicationCallError, ApplicationClient, HostCallError, HostClient
from hosting_service import model
from hosting_service.states import State
from hosting_service.wire.types import APP_NS, ARRAYS_NS, HOST_NS

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
CTK_NS = "http://dicom.nema.org/PS3.19/HostInterface"
XSI = 'xmlns:xsi="http://www.w3.org/1999/XMLSchema-instance"'


def envelope(body: str) -> bytes:
    return f'<?xml version="1.0"?><s:Envelope xmlns:s="{SOAP_ENV}"><s:Body>{body}</s:Body></s:Envelope>'.encode()


class CannedPeer:
    """A real HTTP server answering every POST with ``answer`` (status, bytes, delay) and recording the
    requests as ``(path, headers, parsed envelope)``."""

    def __init__(self):
        self.answer: tuple[int, bytes, float] = (200, envelope(""), 0.0)
        self.requests: list[tuple[str, dict, etree._Element]] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                peer.requests.append((self.path, dict(self.headers), etree.fromstring(body)))
                status, content, delay = peer.answer
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", "text/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/peer/Service"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def answers(self, body: str, status: int = 200, delay: float = 0.0) -> None:
        self.answer = (status, envelope(body), delay)

    @property
    def last_body(self) -> etree._Element:
        return self.requests[-1][2].find(f"{{{SOAP_ENV}}}Body")[0]


@pytest.fixture
def peer():
    p = CannedPeer()
    yield p
    p.server.shutdown()
    p.server.server_close()


@pytest.fixture(scope="module")
def schemas() -> dict[str, etree.XMLSchema]:
    """The standard XSD of each service, with the imports it leaves without a location resolved."""

    def load(folder: Path, main: str, namespace: str) -> etree.XMLSchema:
        imports = "".join(
            f'<xs:import namespace="{ns}" schemaLocation="{(folder / name).as_uri()}"/>'
            for ns, name in (
                (ARRAYS_NS, "ArrayOfString.xsd"),
                ("http://schemas.datacontract.org/2004/07/System.Xml.XPath", "XPathNodeType.xsd"),
                (namespace, main),
            )
        )
        return etree.XMLSchema(etree.fromstring(f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">{imports}</xs:schema>'))

    return {
        APP_NS: load(wsdl.APPLICATION_SERVICE, "ApplicationService-20100825.xsd", APP_NS),
        HOST_NS: load(wsdl.HOST_SERVICE, "HostService-20100825.xsd", HOST_NS),
    }


SAMPLE = model.AvailableData(
    ObjectDescriptors=[model.ObjectDescriptor(MimeType="text/plain", DescriptorUuid="u-top")],
    Patients=[
        model.Patient(
            AssigningAuthority="HOSP", ID="P1", Name="Ångström^Åse", Sex="F",
            Studies=[model.Study(StudyUID="1.2", Series=[model.Series(SeriesUID="1.2.3", ObjectDescriptors=[
                model.ObjectDescriptor(ClassUID="1.2.840.10008.5.1.4.1.1.2", MimeType="application/dicom",
                                       Modality="CT", TransferSyntaxUID="1.2.840.10008.1.2.1", DescriptorUuid="u-1"),
            ])])],
        )
    ],
)


# --- requests: standard and XSD-valid -------------------------------------------------------------------

@pytest.mark.parametrize(
    "client_class, namespace, action, call, answer",
    [
        (ApplicationClient, APP_NS, "IApplicationService/SetState", lambda c: c.set_state(State.INPROGRESS),
         "<SetStateResponse xmlns='{ns}'><SetStateResult>true</SetStateResult></SetStateResponse>"),
        (ApplicationClient, APP_NS, "IApplicationService/NotifyDataAvailable",
         lambda c: c.notify_data_available(SAMPLE, True),
         "<NotifyDataAvailableResponse xmlns='{ns}'><NotifyDataAvailableResult>true</NotifyDataAvailableResult></NotifyDataAvailableResponse>"),
        (ApplicationClient, APP_NS, "IApplicationService/GetData", lambda c: c.get_data(["u-1", "u-2"]),
         "<GetDataResponse xmlns='{ns}'><GetDataResult/></GetDataResponse>"),
        (ApplicationClient, APP_NS, "IApplicationService/QueryModel", lambda c: c.query_model(["m"], ["/a", "/b"]),
         "<QueryModelResponse xmlns='{ns}'/>"),
        (HostClient, HOST_NS, "IHostService/GetOutputLocation", lambda c: c.get_output_location(["http:", "file:"]),
         "<GetOutputLocationResponse xmlns='{ns}'><GetOutputLocationResult>http://h/o/</GetOutputLocationResult></GetOutputLocationResponse>"),
        (HostClient, HOST_NS, "IHostService/NotifyStatus",
         lambda c: c.notify_status(model.Status(StatusType=model.StatusType.FATALERROR, CodeValue=7, CodeMeaning="boom")),
         "<NotifyStatusResponse xmlns='{ns}'/>"),
    ],
)
def test_requests_are_standard(peer, schemas, client_class, namespace, action, call, answer):
    peer.answers(answer.format(ns=namespace))
    call(client_class(peer.url))
    path, headers, _ = peer.requests[-1]
    assert path == "/peer/Service"
    assert headers["SOAPAction"].strip('"') == f"http://dicom.nema.org/PS3.19/{action}"
    body = peer.last_body
    assert etree.QName(body).namespace == namespace
    schemas[namespace].assertValid(etree.ElementTree(body))


def test_arguments_arrive_as_given(peer):
    peer.answers(f"<GetOutputLocationResponse xmlns='{HOST_NS}'><GetOutputLocationResult>file:///o/</GetOutputLocationResult></GetOutputLocationResponse>")
    assert HostClient(peer.url).get_output_location(["http:", "file:"]) == "file:///o/"
    assert [s.text for s in peer.last_body.iter(f"{{{ARRAYS_NS}}}string")] == ["http:", "file:"]

    peer.answers(f"<NotifyDataAvailableResponse xmlns='{APP_NS}'><NotifyDataAvailableResult>false</NotifyDataAvailableResult></NotifyDataAvailableResponse>")
    assert ApplicationClient(peer.url).notify_data_available(SAMPLE, True) is False
    name = peer.last_body.find(f".//{{{APP_NS}}}Patient/{{{APP_NS}}}Name")
    assert name.text == "Ångström^Åse"
    assert [u.text for u in peer.last_body.iter(f"{{{APP_NS}}}Uuid")] == ["u-top", "u-1"]


# --- answers: standard and sloppy ----------------------------------------------------------------------

LOCATOR_STANDARD = (
    "<GetDataResponse xmlns='{ns}'><GetDataResult><ObjectLocator><Length>12</Length><Offset>3</Offset>"
    "<TransferSyntax><Uid>1.2.840.10008.1.2.1</Uid></TransferSyntax><URI>file:///in/a.dcm</URI>"
    "<Locator><Uuid>loc-1</Uuid></Locator><Source><Uuid>u-1</Uuid></Source></ObjectLocator></GetDataResult></GetDataResponse>"
)
LOCATOR = model.ObjectLocator(Length=12, Offset=3, TransferSyntax="1.2.840.10008.1.2.1", URI="file:///in/a.dcm",
                              Locator="loc-1", Source="u-1")


def test_standard_answers_become_model_values(peer):
    app = ApplicationClient(peer.url)
    peer.answers(LOCATOR_STANDARD.format(ns=APP_NS))
    assert app.get_data(["u-1"]) == [LOCATOR]
    peer.answers(f"<GetStateResponse xmlns='{APP_NS}'><GetStateResult>SUSPENDED</GetStateResult></GetStateResponse>")
    assert app.get_state() is State.SUSPENDED
    peer.answers(
        f"<GetAsModelsResponse xmlns='{APP_NS}'><GetAsModelsResult><FailedSourceObjects><UUID><Uuid>u-1</Uuid></UUID>"
        f"</FailedSourceObjects><InfosetType><Type>text/xml</Type></InfosetType><Models/></GetAsModelsResult></GetAsModelsResponse>"
    )
    assert app.get_as_models(["u-1"], "1.2.840.10008.7.1.1") == model.ModelSetDescriptor(
        FailedSourceObjects=["u-1"], InfosetType="text/xml", Models=[])
    peer.answers(f"<GenerateUIDResponse xmlns='{HOST_NS}'><GenerateUIDResult><Uid>2.25.7</Uid></GenerateUIDResult></GenerateUIDResponse>")
    assert HostClient(peer.url).generate_uid() == "2.25.7"


@pytest.mark.parametrize("call", [
    lambda c: c.release_data(["loc-1"]),
    lambda c: c.release_models(["m-1"]),
])
def test_ctk_empty_body_for_void_operations_is_success(peer, call):
    peer.answers("")
    assert call(ApplicationClient(peer.url)) is None


def test_ctk_empty_body_for_host_void_operations_is_success(peer):
    peer.answers("")
    HostClient(peer.url).notify_state_changed(State.IDLE)


def test_empty_body_where_a_result_is_due_is_an_error(peer):
    peer.answers("")
    with pytest.raises(ApplicationCallError, match="GetState: .* no GetStateResult"):
        ApplicationClient(peer.url).get_state()


def test_unqualified_results_with_xsi_type(peer):
    peer.answers(f"<ns:SetStateResponse xmlns:ns='{APP_NS}' {XSI}><SetStateResult xsi:type='xsd:boolean'>true</SetStateResult></ns:SetStateResponse>")
    assert ApplicationClient(peer.url).set_state(State.IDLE) is True
    unqualified = LOCATOR_STANDARD.format(ns=APP_NS).replace("<GetDataResult>", "<GetDataResult xmlns=''>")
    peer.answers(unqualified)
    assert ApplicationClient(peer.url).get_data(["u-1"]) == [LOCATOR]


def test_answers_in_another_ps319_namespace(peer):
    peer.answers(LOCATOR_STANDARD.format(ns=HOST_NS))  # CTK answers one service in the other's namespace
    assert ApplicationClient(peer.url).get_data(["u-1"]) == [LOCATOR]
    peer.answers(f"<GetStateResponse xmlns='{CTK_NS}'><GetStateResult>IDLE</GetStateResult></GetStateResponse>")
    assert ApplicationClient(peer.url).get_state() is State.IDLE


def test_ctk_wrapper_and_result_names(peer):
    peer.answers(f"<GenerateUID xmlns='{CTK_NS}'><uid {XSI} xsi:type='xsd:string'><Uid>2.25.42</Uid></uid></GenerateUID>")
    assert HostClient(peer.url).generate_uid() == "2.25.42"


def test_unexpected_elements_beside_the_result_are_skipped(peer):
    peer.answers(f"<GetStateResponse xmlns='{APP_NS}'><Note>hello</Note><GetStateResult>COMPLETED</GetStateResult></GetStateResponse>")
    assert ApplicationClient(peer.url).get_state() is State.COMPLETED


def test_unexpected_elements_inside_the_result_are_an_error_not_a_silent_loss(peer):
    peer.answers(LOCATOR_STANDARD.format(ns=APP_NS).replace("<URI>", "<Comment>x</Comment><URI>"))
    with pytest.raises(ApplicationCallError, match="GetData: unreadable answer .*unexpected element <Comment>"):
        ApplicationClient(peer.url).get_data(["u-1"])


# --- failures ------------------------------------------------------------------------------------------

def test_fault_names_operation_and_faultstring(peer):
    peer.answers("<s:Fault><faultcode>s:Client</faultcode><faultstring>no such task</faultstring></s:Fault>", status=500)
    with pytest.raises(ApplicationCallError) as caught:
        ApplicationClient(peer.url).get_data(["u-9"])
    assert caught.value.operation == "GetData"
    assert "no such task" in caught.value.reason and "Client" in caught.value.reason


@pytest.mark.parametrize("status, content, expected", [
    (200, b'{"not": "xml"}', "HTTP 200"),
    (500, b"<html><body>Internal Server Error</body></html>", "not a SOAP 1.1 envelope: <html>"),
    (404, b"", "HTTP 404"),
    (200, b"<?xml version='1.0'?><a/>", "not a SOAP 1.1 envelope"),
])
def test_non_soap_answers(peer, status, content, expected):
    peer.answer = (status, content, 0.0)
    with pytest.raises(HostCallError, match=f"GenerateUID: .*{expected}"):
        HostClient(peer.url).generate_uid()


def test_bad_values_in_answers(peer):
    peer.answers(f"<GetStateResponse xmlns='{APP_NS}'><GetStateResult>BANANA</GetStateResult></GetStateResponse>")
    with pytest.raises(ApplicationCallError, match="GetState: .*BANANA"):
        ApplicationClient(peer.url).get_state()


def test_dtd_and_entities_are_refused(peer):
    peer.answer = (200, b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]>' + envelope("")[21:], 0.0)
    with pytest.raises(ApplicationCallError, match="ReleaseData: .*DTDForbidden"):
        ApplicationClient(peer.url).release_data(["l"])


def test_timeout_is_bounded(peer):
    peer.answers(f"<GetStateResponse xmlns='{APP_NS}'><GetStateResult>IDLE</GetStateResult></GetStateResponse>", delay=3)
    started = time.monotonic()
    with pytest.raises(ApplicationCallError, match=r"GetState: no answer .* within 0.5 s"):
        ApplicationClient(peer.url, timeout=0.5).get_state()
    assert time.monotonic() - started < 2


def test_nobody_listening():
    with pytest.raises(ApplicationCallError, match="SetState: cannot connect to http://127.0.0.1:9/"):
        ApplicationClient("http://127.0.0.1:9/app", timeout=2).set_state(State.EXIT)
