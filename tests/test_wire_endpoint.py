"""SoapEndpoint over real HTTP: zeep and suds clients, XSD-valid responses, the served WSDL/XSDs, faults."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import requests
import suds.client
import zeep
from lxml import etree
from zeep.plugins import HistoryPlugin

import wsdl
from hosting_service import model
from hosting_service.errors import ClientError
from hosting_service.states import PreconditionViolation, State
from hosting_service.wire.convert import from_wire, to_wire_dict
from hosting_service.wire.documents import DOCUMENTS
from hosting_service.wire.types import HOST_NS as _HOST_NS
from hosting_service.wire.faults import CLIENT, fault_document
from hosting_service.wire.types import APP, APP_NS, HOST, HOST_NS
from wire_harness import (
    DEFAULT_RESULTS,
    SAMPLE_DATA,
    RecordingOperations,
    assert_valid,
    envelope,
    fault,
    post,
    standard_schema,
    without_location_hints,
)

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "ps319" / "reference" / "annexB"




def _zeep_service(router, namespace, wsdl_path, binding):
    history = HistoryPlugin()
    client = zeep.Client(str(wsdl_path), plugins=[history])
    service_key = "host" if namespace == HOST_NS else "app"
    return client.create_service(f"{{{namespace}}}{binding}", router.url(service_key)), history


UUIDS = {"UUID": [{"Uuid": "u1"}, {"Uuid": "u2"}]}
XPATHS = {"string": ["/a", "/b"]}

DATA_EXCHANGE_CALLS = [
    ("NotifyDataAvailable", {"data": to_wire_dict(SAMPLE_DATA), "lastData": True}, {"data": SAMPLE_DATA, "lastData": True}),
    (
        "GetData",
        {"objects": UUIDS, "acceptableTransferSyntaxes": {"UID": [{"Uid": "1.2.840.10008.1.2.1"}]}, "includeBulkData": False},
        {"objects": ["u1", "u2"], "acceptableTransferSyntaxes": ["1.2.840.10008.1.2.1"], "includeBulkData": False},
    ),
    ("ReleaseData", {"objects": UUIDS}, {"objects": ["u1", "u2"]}),
    (
        "GetAsModels",
        {"objects": UUIDS, "classUID": {"Uid": "1.2.840.10008.7.1.1"}, "supportedInfoSetTypes": {"MimeType": [{"Type": "text/xml"}]}},
        {"objects": ["u1", "u2"], "classUID": "1.2.840.10008.7.1.1", "supportedInfoSetTypes": ["text/xml"]},
    ),
    ("ReleaseModels", {"models": UUIDS}, {"models": ["u1", "u2"]}),
    ("QueryModel", {"models": UUIDS, "xPaths": XPATHS}, {"models": ["u1", "u2"], "xPaths": ["/a", "/b"]}),
    ("QueryInfoSet", {"models": UUIDS, "xPaths": XPATHS}, {"models": ["u1", "u2"], "xPaths": ["/a", "/b"]}),
]

HOST_CALLS = [
    ("GenerateUID", {}, {}),
    (
        "GetAvailableScreen",
        {"preferredScreen": {"Height": 600, "Width": 800, "RefPointX": 10, "RefPointY": 20}},
        {"preferredScreen": model.Rectangle(600, 800, 10, 20)},
    ),
    ("GetOutputLocation", {"preferredProtocols": {"string": ["http:", "file:"]}}, {"preferredProtocols": ["http:", "file:"]}),
    ("NotifyStateChanged", {"state": "INPROGRESS"}, {"state": State.INPROGRESS}),
    (
        "NotifyStatus",
        {"status": {"StatusType": "FATALERROR", "CodeValue": 42, "CodingSchemeDesignator": "99X", "CodeMeaning": "out of memory"}},
        {"status": model.Status(model.StatusType.FATALERROR, 42, "99X", "out of memory")},
    ),
    *DATA_EXCHANGE_CALLS,
]

APP_CALLS = [
    ("GetState", {}, {}),
    ("SetState", {"state": "SUSPENDED"}, {"state": State.SUSPENDED}),
    ("BringToFront", {"location": {"Height": 1, "Width": 2, "RefPointX": 3, "RefPointY": 4}}, {"location": model.Rectangle(1, 2, 3, 4)}),
    *DATA_EXCHANGE_CALLS,
]


def _check_call(service, history, ops, types, name, arguments, expected):
    """One zeep call: the operations object got the model values, the response is XSD-valid, and the
    answer converts back to what the operations returned (zeep unwraps single-child results, e.g. UID
    to a str and ArrayOfX to a list; from_wire takes both shapes)."""
    result = getattr(service, name)(**arguments)
    assert ops.calls == [(name, expected)]
    assert_valid(standard_schema(types.namespace), history.last_received["envelope"])
    operation = types.operations[name]
    if operation.result is None:
        assert result is None
    else:
        assert from_wire(result, operation.result.type) == DEFAULT_RESULTS[name]


def test_all_host_operations_are_covered():
    assert [c[0] for c in HOST_CALLS] == list(HOST.operations)
    assert [c[0] for c in APP_CALLS] == list(APP.operations)


@pytest.mark.parametrize("name, arguments, expected", HOST_CALLS, ids=[c[0] for c in HOST_CALLS])
def test_zeep_calls_every_host_service_operation(router, ops, name, arguments, expected):
    service, history = _zeep_service(router, HOST_NS, wsdl.HOST_SERVICE_WSDL, "HostService-YYYYNNDDBinding")
    _check_call(service, history, ops, HOST, name, arguments, expected)


@pytest.mark.parametrize("name, arguments, expected", APP_CALLS, ids=[c[0] for c in APP_CALLS])
def test_zeep_calls_every_application_service_operation(router, ops, name, arguments, expected):
    service, history = _zeep_service(
        router, APP_NS, wsdl.APPLICATION_SERVICE_WSDL, "ApplicationService-20100825Binding"
    )
    _check_call(service, history, ops, APP, name, arguments, expected)


def test_suds_built_from_the_served_wsdl_calls_the_host(router, ops):
    client = suds.client.Client(router.url("host") + "?wsdl", cache=None)
    assert client.wsdl.services[0].ports[0].location == router.url("host")
    assert client.service.GenerateUID().Uid == DEFAULT_RESULTS["GenerateUID"]
    protocols = client.factory.create("{http://schemas.microsoft.com/2003/10/Serialization/Arrays}ArrayOfstring")
    protocols.string = ["file:", "http:"]
    assert client.service.GetOutputLocation(protocols) == DEFAULT_RESULTS["GetOutputLocation"]
    client.service.NotifyStateChanged("COMPLETED")
    locators = client.service.GetData({"UUID": [{"Uuid": "x"}]}, None, True)
    assert locators.ObjectLocator[0].Locator.Uuid == "loc-1"
    assert ops.calls == [
        ("GenerateUID", {}),
        ("GetOutputLocation", {"preferredProtocols": ["file:", "http:"]}),
        ("NotifyStateChanged", {"state": State.COMPLETED}),
        ("GetData", {"objects": ["x"], "acceptableTransferSyntaxes": None, "includeBulkData": True}),
    ]


def test_suds_built_from_the_served_wsdl_calls_the_application(router, ops):
    client = suds.client.Client(router.url("app") + "?wsdl", cache=None)
    assert client.service.SetState("EXIT") is True
    assert client.service.GetState() == "INPROGRESS"
    assert ops.calls == [("SetState", {"state": State.EXIT}), ("GetState", {})]


# --- documents -------------------------------------------------------------------------------------------

def _infoset(data: bytes) -> bytes:
    parser = etree.XMLParser(remove_blank_text=True)
    return etree.tostring(etree.fromstring(data, parser), method="c14n")


@pytest.mark.parametrize("service, path", [("host", wsdl.HOST_SERVICE_WSDL), ("app", wsdl.APPLICATION_SERVICE_WSDL)])
@pytest.mark.parametrize("query", ["wsdl", "WSDL"])
def test_wsdl_is_the_standard_one_with_only_the_address_replaced(router, service, path, query):
    response = requests.get(f"{router.url(service)}?{query}", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/xml")
    served = etree.fromstring(response.content)
    (address,) = served.iter("{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert address.get("location") == router.url(service)
    address.set("location", "http://localhost/Service")
    assert _infoset(etree.tostring(served)) == _infoset(path.read_bytes())
    assert response.content == path.read_bytes().replace(b"http://localhost/Service", router.url(service).encode())


@pytest.mark.parametrize("service, folder", [("host", wsdl.HOST_SERVICE), ("app", wsdl.APPLICATION_SERVICE)])
def test_imported_schemas_resolve_next_to_the_endpoint(router, service, folder):
    wsdl_doc = etree.fromstring(requests.get(router.url(service) + "?wsdl", timeout=10).content)
    locations = [i.get("schemaLocation") for i in wsdl_doc.iter("{http://www.w3.org/2001/XMLSchema}import")]
    assert len(locations) == 4
    for location in locations:
        url = requests.compat.urljoin(router.url(service), location)
        response = requests.get(url, timeout=10)
        assert response.status_code == 200, url
        assert without_location_hints(response.content) == (folder / location.removeprefix("./")).read_bytes()


@pytest.mark.parametrize("service, folder", [("host", wsdl.HOST_SERVICE), ("app", wsdl.APPLICATION_SERVICE)])
def test_the_served_service_schema_locates_its_imports(router, service, folder):
    """The one change to the served XSDs: the service XSD's two imports without a schemaLocation get the
    sibling files' (suds needs it); everything else is the shipped bytes."""
    name = f"{folder.name}-20100825.xsd"
    served = requests.get(requests.compat.urljoin(router.url(service), name), timeout=10).content
    imports = etree.fromstring(served).iter("{http://www.w3.org/2001/XMLSchema}import")
    assert {i.get("namespace"): i.get("schemaLocation") for i in imports} == {
        "http://schemas.microsoft.com/2003/10/Serialization/Arrays": "./ArrayOfString.xsd",
        "http://schemas.datacontract.org/2004/07/System.Xml.XPath": "./XPathNodeType.xsd",
    }
    assert served != (folder / name).read_bytes()
    assert without_location_hints(served) == (folder / name).read_bytes()


@pytest.mark.parametrize("service", ["host", "app"])
def test_zeep_built_from_the_served_wsdl_calls_the_service(router, ops, service):
    client = zeep.Client(router.url(service) + "?wsdl")
    if service == "host":
        assert client.service.GenerateUID() == DEFAULT_RESULTS["GenerateUID"]
        assert ops.calls == [("GenerateUID", {})]
    else:
        assert client.service.GetState() == "INPROGRESS"
        assert ops.calls == [("GetState", {})]


def test_host_schemas_by_name():
    host = DOCUMENTS[_HOST_NS]
    assert host.schema("Types.xsd") == (wsdl.HOST_SERVICE / "Types.xsd").read_bytes()
    assert host.schema("HostService-20100825.wsdl") is None


@pytest.mark.skipif(not REFERENCE.exists(), reason="the shared PS3.19 reference files are not here")
@pytest.mark.parametrize("folder", [wsdl.HOST_SERVICE, wsdl.APPLICATION_SERVICE], ids=["host", "app"])
def test_shipped_wsdl_folder_equals_the_reference(folder):
    reference = REFERENCE / folder.name
    names = sorted(p.name for p in reference.iterdir())
    assert sorted(p.name for p in folder.iterdir()) == names
    for name in names:
        assert _infoset((folder / name).read_bytes()) == _infoset((reference / name).read_bytes()), name


def test_fault_documents_carry_any_message_safely():
    document = etree.fromstring(fault_document(CLIENT, "bad \x00 byte " + "x" * 5000))
    assert document.findtext(".//faultcode") == "soap:Client"
    text = document.findtext(".//faultstring")
    assert text.startswith("bad \ufffd byte x") and len(text) <= 2000


def test_other_requests_get_plain_http_answers(router):
    plain = requests.get(router.url("host"), timeout=10)
    assert plain.status_code == 404 and plain.headers["Content-Type"].startswith("text/plain")
    put = requests.put(router.url("host"), data=b"x", timeout=10)
    assert put.status_code == 405 and "POST" in put.headers["Allow"]


# --- faults from the operations --------------------------------------------------------------------------

def _notify(router):
    return post(router.url("host"), envelope(f'<NotifyStateChanged xmlns="{HOST_NS}"><state>IDLE</state></NotifyStateChanged>'))


def test_an_unexpected_exception_is_a_generic_server_fault(router, caplog):
    router.operations = RecordingOperations(raises=RuntimeError("secret detail /etc/shadow"))
    with caplog.at_level(logging.ERROR):
        response = _notify(router)
    code, message = fault(response)
    assert (code, message) == ("soap:Server", "internal error")
    assert "Traceback" not in response.text and "secret" not in response.text
    # in the project's logger tree, the one hosting_service.logs configures (anything else is never shown)
    (record,) = [r for r in caplog.records if r.name.partition(".")[0] == "dicom_host"]
    assert record.exc_info and "secret detail" in str(record.exc_info[1])
    assert "IDLE" not in record.getMessage()  # the request body is not logged


@pytest.mark.parametrize(
    "error, text",
    [
        (ClientError("no such locator: 42"), "no such locator: 42"),
        (PreconditionViolation("GetOutputLocation", State.IDLE), "GetOutputLocation is not allowed while the application is IDLE"),
    ],
)
def test_peer_errors_from_the_operations_are_client_faults(router, error, text):
    router.operations = RecordingOperations(raises=error)
    code, message = fault(_notify(router))
    assert code == "soap:Client" and message.startswith(text)
