"""What real peers send: CTK (QtSoap) and JAX-WS (XIP) request shapes are understood; what cannot be
understood is a Client fault naming the element and the value, never a silent None."""
from __future__ import annotations

import datetime

import pytest

from hosting_service import model
from hosting_service.states import State
from hosting_service.wire.types import APP_NS, HOST_NS
from wire_harness import assert_valid, envelope, fault, post, standard_schema

CTK_NS = "http://dicom.nema.org/PS3.19/HostInterface"
QTSOAP = (
    'xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:xsd="http://www.w3.org/2001/XMLSchema" SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"'
)
"""The namespace declarations and SOAP-ENC encodingStyle QtSoap puts on its envelope."""


def ctk(payload: str) -> bytes:
    return envelope(payload, prefix="SOAP-ENV", extra_ns=QTSOAP)




def call(router, body: bytes, service: str = "host", headers: dict | None = None):
    """POST ``body``; assert an XSD-valid success; the (operation, kwargs) the operations object got."""
    response = post(router.url(service), body, headers)
    assert response.status_code == 200, response.text
    assert_valid(standard_schema(HOST_NS if service == "host" else APP_NS), response.content)
    (recorded,) = router.operations.calls
    return recorded


# --- CTK shapes ------------------------------------------------------------------------------------------

def test_ctk_notify_state_changed_in_its_own_namespace_with_xsi_types_and_no_soapaction(router, ops):
    body = ctk(f'<NotifyStateChanged xmlns="{CTK_NS}"><state xmlns="" xsi:type="xsd:string">INPROGRESS</state></NotifyStateChanged>')
    assert call(router, body) == ("NotifyStateChanged", {"state": State.INPROGRESS})


def test_ctk_array_of_string_nesting(router, ops):
    body = ctk(
        f'<ns:GetOutputLocation xmlns:ns="{CTK_NS}"><preferredProtocols>'
        '<string><Uid xsi:type="xsd:string">file:</Uid><Uid xsi:type="xsd:string">http:</Uid></string>'
        "</preferredProtocols></ns:GetOutputLocation>"
    )
    assert call(router, body) == ("GetOutputLocation", {"preferredProtocols": ["file:", "http:"]})


def test_ctk_status_with_integer_status_type_string_code_value_and_its_own_order(router, ops):
    body = ctk(
        f'<NotifyStatus xmlns="{CTK_NS}"><status xmlns="">'
        '<StatusType xsi:type="xsd:int">3</StatusType><CodingSchemeDesignator xsi:type="xsd:string">DCM</CodingSchemeDesignator>'
        '<CodeValue xsi:type="xsd:string">113</CodeValue><CodeMeaning xsi:type="xsd:string">disk full</CodeMeaning>'
        "</status></NotifyStatus>"
    )
    expected = model.Status(StatusType=model.StatusType.FATALERROR, CodeValue=113, CodingSchemeDesignator="DCM", CodeMeaning="disk full")
    assert call(router, body) == ("NotifyStatus", {"status": expected})


def _ctk_descriptor(uuid: str) -> str:
    """An ObjectDescriptor in CTK's order (DescriptorUuid, MimeType, ClassUID, TransferSyntaxUID, Modality)."""
    return (
        f"<ObjectDescriptor><DescriptorUuid><Uuid>{uuid}</Uuid></DescriptorUuid><MimeType><Type>application/dicom</Type></MimeType>"
        "<ClassUID><Uid>1.2.840.10008.5.1.4.1.1.2</Uid></ClassUID><TransferSyntaxUID><Uid>1.2.840.10008.1.2.1</Uid></TransferSyntaxUID>"
        "<Modality><Modality>CT</Modality></Modality></ObjectDescriptor>"
    )


def _descriptor(uuid: str) -> model.ObjectDescriptor:
    return model.ObjectDescriptor("1.2.840.10008.5.1.4.1.1.2", "application/dicom", "CT", "1.2.840.10008.1.2.1", uuid)


def test_ctk_notify_data_available_with_soap_enc_arrays_da_birth_date_and_ctk_order(router, ops):
    body = ctk(
        f'<NotifyDataAvailable xmlns="{CTK_NS}"><data xmlns="">'
        f'<ObjectDescriptors xsi:type="SOAP-ENC:Array" SOAP-ENC:arrayType="xsd:anyType[1]">{_ctk_descriptor("u1")}</ObjectDescriptors>'
        '<Patients xsi:type="SOAP-ENC:Array" SOAP-ENC:arrayType="xsd:anyType[1]"><Patient>'
        '<Name xsi:type="xsd:string">Doe^John</Name><ID xsi:type="xsd:string">P7</ID>'
        '<AssigningAuthority xsi:type="xsd:string"></AssigningAuthority><Sex xsi:type="xsd:string">M</Sex>'
        '<DateOfBirth xsi:type="xsd:string">19700101</DateOfBirth><ObjectDescriptors SOAP-ENC:arrayType="xsd:anyType[0]"/>'
        "<Studies><Study><StudyUID><Uid>1.2.3</Uid></StudyUID><ObjectDescriptors/><Series><Series>"
        f'<SeriesUID><Uid>1.2.3.4</Uid></SeriesUID><ObjectDescriptors>{_ctk_descriptor("u2")}</ObjectDescriptors>'
        "</Series></Series></Study></Studies></Patient></Patients></data>"
        '<lastData xsi:type="xsd:boolean">true</lastData></NotifyDataAvailable>'
    )
    expected = model.AvailableData(
        ObjectDescriptors=[_descriptor("u1")],
        Patients=[
            model.Patient(
                AssigningAuthority="", DateOfBirth=datetime.datetime(1970, 1, 1), ID="P7", Name="Doe^John", Sex="M",
                Studies=[model.Study(Series=[model.Series(ObjectDescriptors=[_descriptor("u2")], SeriesUID="1.2.3.4")], StudyUID="1.2.3")],
            )
        ],
    )
    assert call(router, body) == ("NotifyDataAvailable", {"data": expected, "lastData": True})


def test_ctk_get_data_with_nested_uid_items_and_a_wrong_soapaction(router, ops):
    body = ctk(
        f'<GetData xmlns="{CTK_NS}"><objects xmlns=""><UUID><Uuid>u1</Uuid></UUID><UUID><Uuid>u2</Uuid></UUID></objects>'
        '<acceptableTransferSyntaxes xmlns=""><Uid><Uid>1.2.840.10008.1.2.1</Uid></Uid></acceptableTransferSyntaxes>'
        '<includeBulkData xmlns="" xsi:type="xsd:boolean">TRUE</includeBulkData></GetData>'
    )
    wrong_action = {"SOAPAction": '"http://dicom.nema.org/PS3.19/IHostService/GenerateUID"'}
    assert call(router, body, headers=wrong_action) == (
        "GetData",
        {"objects": ["u1", "u2"], "acceptableTransferSyntaxes": ["1.2.840.10008.1.2.1"], "includeBulkData": True},
    )


def test_ctk_bring_to_front_requested_screen_area(router, ops):
    body = ctk(
        f'<BringToFront xmlns="{CTK_NS}"><RequestedScreenArea xmlns="">'
        "<Height>600</Height><Width>800</Width><RefPointX>-5</RefPointX><RefPointY>+7</RefPointY>"
        "</RequestedScreenArea></BringToFront>"
    )
    assert call(router, body, service="app") == ("BringToFront", {"location": model.Rectangle(600, 800, -5, 7)})


# --- other quirks ----------------------------------------------------------------------------------------

def test_new_state_is_an_alias_of_state(router, ops):
    body = envelope(f'<SetState xmlns="{APP_NS}"><newState>EXIT</newState></SetState>')
    assert call(router, body, service="app") == ("SetState", {"state": State.EXIT})


def test_names_and_enumerations_match_in_any_case(router, ops):
    body = envelope(
        f'<getavailablescreen xmlns="{HOST_NS}"><PreferredScreen><WIDTH>640</WIDTH><height>480</height></PreferredScreen></getavailablescreen>'
    )
    assert call(router, body) == ("GetAvailableScreen", {"preferredScreen": model.Rectangle(Height=480, Width=640)})
    ops.calls.clear()
    body = envelope(f'<NotifyStateChanged xmlns="{HOST_NS}"><State>completed</State></NotifyStateChanged>')
    assert call(router, body) == ("NotifyStateChanged", {"state": State.COMPLETED})


def test_xs_date_and_datetime_birth_dates(router, ops):
    for given, expected in [
        ("1999-12-31", datetime.datetime(1999, 12, 31)),
        ("0001-01-01T00:00:00", datetime.datetime(1, 1, 1)),
    ]:
        ops.calls.clear()
        body = envelope(
            f'<NotifyDataAvailable xmlns="{HOST_NS}"><data><Patients><Patient><DateOfBirth>{given}</DateOfBirth>'
            "</Patient></Patients></data><lastData>0</lastData></NotifyDataAvailable>"
        )
        name, kwargs = call(router, body)
        assert kwargs["data"].Patients[0].DateOfBirth == expected
        assert kwargs["lastData"] is False


def test_backslash_mime_types_and_bare_text_wrappers(router, ops):
    body = envelope(
        f'<GetAsModels xmlns="{HOST_NS}"><objects><UUID>u1</UUID></objects><classUID>1.2.840.10008.7.1.1</classUID>'
        "<supportedInfoSetTypes><MimeType><Type>text\\xml</Type></MimeType></supportedInfoSetTypes></GetAsModels>"
    )
    assert call(router, body) == (
        "GetAsModels", {"objects": ["u1"], "classUID": "1.2.840.10008.7.1.1", "supportedInfoSetTypes": ["text/xml"]}
    )


def test_nil_and_empty_values_are_absent(router, ops):
    body = envelope(
        f'<NotifyDataAvailable xmlns="{HOST_NS}" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
        '<data i:nil="true"/><lastData i:nil="true"/></NotifyDataAvailable>'
    )
    assert call(router, body) == ("NotifyDataAvailable", {"data": None, "lastData": None})
    ops.calls.clear()
    body = envelope(f'<NotifyStatus xmlns="{HOST_NS}"><status><StatusType>WARNING</StatusType><CodeValue></CodeValue></status></NotifyStatus>')
    assert call(router, body) == ("NotifyStatus", {"status": model.Status(StatusType=model.StatusType.WARNING)})


# --- JAX-WS (XIP) shapes ---------------------------------------------------------------------------------

WSA = "http://www.w3.org/2005/08/addressing"


def jaxws(payload: str, action: str) -> bytes:
    """WS-Addressing headers as JAX-WS sends them when addressing is enabled but not required (required, it
    marks them mustUnderstand: see test_wire_envelope)."""
    header = (
        f'<To xmlns="{WSA}">http://127.0.0.1/HostService-20100825</To>'
        f'<Action xmlns="{WSA}" S:mustUnderstand="0">{action}</Action>'
        f'<ReplyTo xmlns="{WSA}"><Address>{WSA}/anonymous</Address></ReplyTo>'
        f'<MessageID xmlns="{WSA}">uuid:1f3e0c2a-0000-4000-8000-000000000000</MessageID>'
    )
    return envelope(payload, header=header, prefix="S")


def test_jaxws_prefixes_and_ws_addressing_headers(router, ops):
    body = jaxws(
        f'<ns2:GetOutputLocation xmlns:ns2="{HOST_NS}" xmlns:ns3="http://schemas.microsoft.com/2003/10/Serialization/Arrays">'
        "<ns2:preferredProtocols><ns3:string>http:</ns3:string></ns2:preferredProtocols></ns2:GetOutputLocation>",
        "http://dicom.nema.org/PS3.19/IHostService/GetOutputLocation",
    )
    assert call(router, body) == ("GetOutputLocation", {"preferredProtocols": ["http:"]})
    ops.calls.clear()
    body = jaxws(f'<ns2:NotifyStateChanged xmlns:ns2="{HOST_NS}"><ns2:state>IDLE</ns2:state></ns2:NotifyStateChanged>', "")
    assert call(router, body) == ("NotifyStateChanged", {"state": State.IDLE})


# --- what cannot be understood ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "payload, service, words",
    [
        (f'<NotifyStateChanged xmlns="{HOST_NS}"><state>BANANA</state></NotifyStateChanged>', "host", ["state", "'BANANA'", "IDLE"]),
        (f'<NotifyDataAvailable xmlns="{HOST_NS}"><lastData>maybe</lastData></NotifyDataAvailable>', "host", ["lastData", "'maybe'", "boolean"]),
        (f'<BringToFront xmlns="{APP_NS}"><location><Height>tall</Height></location></BringToFront>', "app", ["location/Height", "'tall'", "xs:int"]),
        (f'<GetAvailableScreen xmlns="{HOST_NS}"><preferredScreen><Width>4294967296</Width></preferredScreen></GetAvailableScreen>', "host", ["Width", "4294967296"]),
        (f'<GetAvailableScreen xmlns="{HOST_NS}"><preferredScreen>big</preferredScreen></GetAvailableScreen>', "host", ["preferredScreen", "'big'"]),
        (f'<NotifyStatus xmlns="{HOST_NS}"><status><StatusType>7</StatusType></status></NotifyStatus>', "host", ["StatusType", "'7'", "FATALERROR"]),
        (f'<NotifyDataAvailable xmlns="{HOST_NS}"><data><Patients><Patient><DateOfBirth>19701345</DateOfBirth></Patient></Patients></data></NotifyDataAvailable>', "host", ["DateOfBirth", "'19701345'"]),
        (f'<NotifyStateChanged xmlns="{HOST_NS}"><stat>IDLE</stat></NotifyStateChanged>', "host", ["<stat>", "expected: state"]),
        (f'<NotifyStateChanged xmlns="{HOST_NS}"><state>IDLE</state><state>EXIT</state></NotifyStateChanged>', "host", ["state", "2 times"]),
        (f'<ReleaseData xmlns="{HOST_NS}"><objects><UUID><Uuid><x/><y/></Uuid></UUID></objects></ReleaseData>', "host", ["Uuid", "<x>, <y>"]),
        (f'<SetState xmlns="{APP_NS}"><state>IDLE</state></SetState>', "host", ["unknown operation 'SetState'", "GenerateUID", "QueryInfoSet"]),
        (f'<GenerateUID xmlns="{HOST_NS}"/>', "app", ["unknown operation 'GenerateUID'", "GetState, SetState, BringToFront"]),
        ("", "host", ["Body is empty"]),
    ],
    ids=["state", "lastData", "rectangle", "int-range", "text-for-struct", "status-type", "date", "unknown-element",
         "repeated", "nested", "host-op-on-app", "app-op-on-host", "empty-body"],
)
def test_what_cannot_be_understood_is_a_client_fault_naming_it(router, ops, payload, service, words):
    code, message = fault(post(router.url(service), envelope(payload)))
    assert code == "soap:Client"
    for word in words:
        assert word in message, message
    assert ops.calls == []


@pytest.mark.parametrize(
    "body, words",
    [
        (b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"/>', ["no Body"]),
        (b"<html><body>hi</body></html>", ["not a SOAP envelope", "<html>"]),
    ],
)
def test_documents_that_are_not_envelopes(router, ops, body, words):
    code, message = fault(post(router.url("host"), body))
    assert code == "soap:Client" and all(w in message for w in words), message
