"""The work one SOAP request may cause is bounded: its elements are counted while it is parsed, every array
has an item cap, the body a size limit sized to real traffic, and a call refused for the instance's state is
refused before its arguments are read. GetData answers each requested object once. (What the worst
requests cost a real worker is measured by ``bench/hostile_requests.py``.)"""
from __future__ import annotations

import io
import uuid

import pytest

from conftest import drive, fault_of, parse_body, soap_post
from hosting_service.config import Settings
from hosting_service.errors import ClientError
from hosting_service.wire.endpoint import SoapEndpoint
from hosting_service.wire.safety import parse
from hosting_service.wire.services import OPERATIONS_KEY, HostService
from hosting_service.wire.types import HOST_NS
from wire_harness import RecordingOperations, envelope, fault, post

ELEMENTS = 200
ITEMS = 20
ROUTER_SETTINGS = Settings(soap_max_elements=ELEMENTS, soap_max_items=ITEMS)
"""Read by the ``router`` fixture (tests/conftest.py)."""


def _release(count: int, item: str = "<UUID/>") -> bytes:
    return envelope(f'<ReleaseData xmlns="{HOST_NS}"><objects>{item * count}</objects></ReleaseData>')


def _refused(router, body: bytes, *words: str) -> None:
    code, message = fault(post(router.url("host"), body))
    assert code == "soap:Client", message
    for word in words:
        assert word in message, message
    assert router.operations.calls == []


# --- elements, counted while parsing ---------------------------------------------------------------------

def test_more_elements_than_the_limit_are_refused(router, ops):
    _refused(router, _release(ELEMENTS), f"more than {ELEMENTS} XML elements")


def test_parsing_stops_at_the_element_limit():
    """The elements beyond the limit are never parsed: what follows them, here not even XML, is not read."""
    body = b"<a>" + b"<b/>" * 300 + b" " * 200_000 + b"<<< not XML"
    with pytest.raises(ClientError, match="more than 200 XML elements"):
        parse(body, max_depth=64, max_elements=200)
    with pytest.raises(ClientError, match="not well-formed"):
        parse(body, max_depth=64, max_elements=400)


# --- item caps ---------------------------------------------------------------------------------------------

def test_an_array_may_hold_as_many_items_as_the_cap(router, ops):
    assert post(router.url("host"), _release(ITEMS, f"<UUID><Uuid>{uuid.uuid4()}</Uuid></UUID>")).status_code == 200
    assert len(ops.calls[0][1]["objects"]) == ITEMS


@pytest.mark.parametrize(
    "payload, words",
    [
        (f'<ReleaseData xmlns="{HOST_NS}"><objects>{"<UUID/>" * (ITEMS + 1)}</objects></ReleaseData>',
         ["ReleaseData/objects:", f"more than {ITEMS} UUID items"]),
        (f'<GetData xmlns="{HOST_NS}"><objects/><acceptableTransferSyntaxes>{"<UID/>" * (ITEMS + 1)}'
         "</acceptableTransferSyntaxes></GetData>", ["GetData/acceptableTransferSyntaxes:", f"more than {ITEMS} UID items"]),
        (f'<GetOutputLocation xmlns="{HOST_NS}"><preferredProtocols><string>{"<Uid>file:</Uid>" * (ITEMS + 1)}'
         "</string></preferredProtocols></GetOutputLocation>", ["GetOutputLocation/preferredProtocols:", f"more than {ITEMS} string items"]),
        (f'<NotifyDataAvailable xmlns="{HOST_NS}"><data><Patients><Patient><Studies><Study><Series>'
         f'<Series><ObjectDescriptors>{"<ObjectDescriptor/>" * (ITEMS + 1)}</ObjectDescriptors></Series>'
         "</Series></Study></Studies></Patient></Patients></data></NotifyDataAvailable>",
         ["Series[0]/ObjectDescriptors:", f"more than {ITEMS} ObjectDescriptor items"]),
    ],
    ids=["uuids", "uids", "ctk-strings", "nested-descriptors"],
)
def test_an_array_beyond_the_cap_is_refused_naming_it(router, ops, payload, words):
    _refused(router, envelope(payload), *words)


# --- the precondition before the arguments ---------------------------------------------------------------

def test_the_arguments_of_an_operation_not_admitted_are_never_read(router, ops):
    ops.refused = {"GetData"}
    unreadable = envelope(f'<GetData xmlns="{HOST_NS}"><objects>BANANA</objects>{"<x/>" * (ITEMS + 1)}</GetData>')
    assert post(router.url("host"), unreadable).status_code == 200
    assert ops.calls == [("GetData", {"objects": None, "acceptableTransferSyntaxes": None, "includeBulkData": None})]


def test_get_data_refused_for_the_state_is_refused_before_its_arguments_are_read(host_server):
    inst = host_server.create_instance()
    drive(inst["hostURL"], "IDLE")
    unreadable = f'<GetData xmlns="{HOST_NS}"><includeBulkData>maybe</includeBulkData></GetData>'
    code, text = fault_of(soap_post(inst["hostURL"], unreadable))
    assert code.endswith("Client") and "GetData is not allowed while the application is IDLE" in text
    warnings = host_server.admin.events(inst["id"], kinds=["warning"])[0]
    assert [w["data"]["operation"] for w in warnings] == ["GetData"]  # the refusal is recorded once


# --- GetData answers each object once ---------------------------------------------------------------------

def test_get_data_answers_each_requested_object_once(host_server, tmp_path):
    from hosting_service.dicom.samples import write_sample_series

    write_sample_series(tmp_path / "in", slices=2, size=16)
    inst = host_server.create_instance()
    offered = host_server.admin.offer_inputs(inst["id"], [str(tmp_path / "in")])["availableData"]
    first, second = (d.DescriptorUuid for d in offered.Patients[0].Studies[0].Series[0].ObjectDescriptors)
    drive(inst["hostURL"], "IDLE", "INPROGRESS")
    asked = [first, first.upper(), second, f" {first} ", second]
    objects = "".join(f"<UUID><Uuid>{u}</Uuid></UUID>" for u in asked)
    r = soap_post(inst["hostURL"], f'<GetData xmlns="{HOST_NS}"><objects>{objects}</objects></GetData>')
    assert r.status_code == 200, r.text
    q = f"{{{HOST_NS}}}"
    sources = [l.findtext(f"{q}Source/{q}Uuid") for l in parse_body(r).iter(f"{q}ObjectLocator")]
    assert sources == [first, second]  # first-seen order, first-seen spelling
    assert host_server.admin.instance(inst["id"])["activeLocators"] == 2


# --- the defaults --------------------------------------------------------------------------------------------

def _call_with_defaults(payload: str) -> str:
    body = envelope(payload)
    environ = {"REQUEST_METHOD": "POST", "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
               OPERATIONS_KEY: RecordingOperations()}
    status = []
    SoapEndpoint(HostService, Settings())(environ, lambda s, h: status.append(s))
    return status[0]


def test_the_default_limits_admit_the_largest_real_requests():
    """GetData of 5,000 UUIDs (about 0.3 MB) and a NotifyDataAvailable of 3,000 descriptors."""
    uuids = "".join(f"<UUID><Uuid>{uuid.uuid4()}</Uuid></UUID>" for _ in range(5000))
    assert _call_with_defaults(f'<GetData xmlns="{HOST_NS}"><objects>{uuids}</objects></GetData>') == "200 OK"
    descriptor = ("<ObjectDescriptor><ClassUID><Uid>1.2.840.10008.5.1.4.1.1.7</Uid></ClassUID><DescriptorUuid><Uuid>{}"
                  "</Uuid></DescriptorUuid><MimeType><Type>application/dicom</Type></MimeType><Modality><Modality>OT"
                  "</Modality></Modality><TransferSyntaxUID><Uid>1.2.840.10008.1.2.1</Uid></TransferSyntaxUID>"
                  "</ObjectDescriptor>")
    descriptors = "".join(descriptor.format(uuid.uuid4()) for _ in range(3000))
    assert _call_with_defaults(f'<NotifyDataAvailable xmlns="{HOST_NS}"><data><ObjectDescriptors>{descriptors}'
                               "</ObjectDescriptors></data></NotifyDataAvailable>") == "200 OK"


def test_the_default_body_limit_refuses_the_16_mib_request_unread():
    settings = Settings()
    assert settings.soap_max_body_bytes <= 4 << 20
    assert settings.soap_max_elements <= 50_000 and settings.soap_max_items <= 10_000
    body = b"<UUID/>" * ((16 << 20) // 7)
    stream = io.BytesIO(body)
    environ = {"REQUEST_METHOD": "POST", "wsgi.input": stream, "CONTENT_LENGTH": str(16 << 20),
               OPERATIONS_KEY: RecordingOperations()}
    answer = b"".join(SoapEndpoint(HostService, settings)(environ, lambda s, h: None))
    assert b"soap:Client" in answer and b"exceeds the limit" in answer and stream.tell() == 0
