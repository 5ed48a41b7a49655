"""HostClient against the real Hosting System server (``host_server``), playing the application's part:
every HostService operation, the host's refusals arriving as HostCallError with the host's reason, and
writing outputs to file: and http: output locations."""
from __future__ import annotations

import hashlib
import re
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from client import HostCallError, HostClient, OutputWriteError, read_located
from hosting_service.dicom.samples import write_sample_series
from hosting_service.model import AvailableData, ObjectDescriptor, Rectangle, Status, StatusType, iter_descriptors
from hosting_service.states import State


@pytest.fixture
def host(instance) -> HostClient:
    return HostClient(instance["hostURL"], timeout=10)


@pytest.fixture
def working(host, instance) -> HostClient:
    """A host client whose instance the application has taken to INPROGRESS."""
    host.notify_state_changed(State.IDLE)
    host.notify_state_changed(State.INPROGRESS)
    return host


def test_host_interface(host, host_server, instance):
    first, second = host.generate_uid(), host.generate_uid()
    assert re.fullmatch(r"2\.25\.[0-9]+", first) and len(first) <= 64 and first != second
    assert host.get_available_screen() == Rectangle(Height=1080, Width=1920, RefPointX=0, RefPointY=0)
    assert host.get_available_screen(Rectangle(Height=100, Width=200, RefPointX=10, RefPointY=20)) == Rectangle(
        Height=100, Width=200, RefPointX=10, RefPointY=20)

    host.notify_state_changed(State.IDLE)
    assert host_server.admin.instance(instance["id"])["state"] == "IDLE"
    host.notify_status(Status(StatusType=StatusType.WARNING, CodeValue=42, CodingSchemeDesignator="99X", CodeMeaning="hot"))
    events, _ = host_server.admin.events(instance["id"], kinds=["status"])
    assert {k: events[-1]["data"][k] for k in ("StatusType", "CodeValue", "CodingSchemeDesignator", "CodeMeaning")} == {
        "StatusType": "WARNING", "CodeValue": 42, "CodingSchemeDesignator": "99X", "CodeMeaning": "hot"}


def test_refusals_carry_the_hosts_reason(host):
    host.notify_state_changed(State.IDLE)
    with pytest.raises(HostCallError) as caught:
        host.get_output_location(["file:"])
    assert caught.value.operation == "GetOutputLocation"
    assert "not allowed while the application is IDLE" in caught.value.reason


def test_outputs_over_http(working, host_server, instance, tmp_path):
    location = working.get_output_location(["http:", "file:"])
    assert location.startswith("http://") and location.endswith("/")
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 12_000)  # about 3 MB, streamed from the file
    assert working.write_output(location, "small result.txt", b"hello") == location + "small%20result.txt"
    assert working.write_output(location, "big.bin", big) == location + "big.bin"
    with pytest.raises(OutputWriteError, match="409"):
        working.write_output(location, "big.bin", b"again")  # http: locations are written once (§8.2.3)

    (area,) = host_server.admin.instance(instance["id"])["outputLocations"]
    files = {f["name"]: f for f in area["files"]}
    assert files["small result.txt"]["size"] == 5
    assert files["big.bin"]["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()


def test_outputs_over_file(working):
    location = working.get_output_location(["file:"])
    assert location.startswith("file:///") and location.endswith("/")
    uri = working.write_output(location, "result.dcm", b"DICM")
    assert Path(urllib.request.url2pathname(urllib.parse.urlsplit(uri).path)).read_bytes() == b"DICM"


def test_unsupported_output_location():
    with pytest.raises(OutputWriteError, match="unsupported protocol 'ftp'"):
        HostClient("http://127.0.0.1:9/h").write_output("ftp://x/out/", "a", b"")


def test_data_exchange_with_the_host(working, host_server, instance, tmp_path):
    paths = write_sample_series(tmp_path / "in", slices=2, size=16)
    offered = host_server.admin.offer_inputs(instance["id"], [tmp_path / "in"])["availableData"]
    uuids = [d.DescriptorUuid for d, *_ in iter_descriptors(offered)]
    locators = working.get_data(uuids, ["1.2.840.10008.1.2.1"], True)
    assert [loc.Source for loc in locators] == uuids
    assert {hashlib.sha256(read_located(loc)).hexdigest() for loc in locators} == {
        hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    working.release_data([loc.Locator for loc in locators])
    assert host_server.admin.instance(instance["id"])["activeLocators"] == 0
    with pytest.raises(HostCallError, match="GetData: .*not offered to this application"):
        working.get_data(["00000000-0000-4000-8000-000000000000"])

    models = working.get_as_models(uuids, "1.2.840.10008.7.1.1")
    assert models.FailedSourceObjects == [] and len(models.Models) == 2
    [first, second] = working.query_model(models.Models, ["/NativeDicomModel"])
    assert (first.Model, first.Result[0].NodeType) == (models.Models[0], "Element")
    [info] = working.query_info_set(models.Models[:1], ["/NativeDicomModel"])
    assert info.Result[0].InfoSetValue == first.Result[0].Value.encode()
    assert working.release_models(models.Models) is None
    with pytest.raises(HostCallError, match="QueryModel: no such model"):
        working.query_model(models.Models, ["/NativeDicomModel"])

    announced = AvailableData(ObjectDescriptors=[ObjectDescriptor(MimeType="text/plain", DescriptorUuid="6f1c0a52-1111-4000-8000-000000000001")])
    assert working.notify_data_available(announced, True) is True
    announcements, last_data = host_server.admin.announced_outputs(instance["id"])
    assert announcements == [announced] and last_data is True


def test_long_uuid_lists_go_in_calls_the_host_accepts(working):
    """The host caps the items of one request (DICOM_HOST_SOAP_MAX_ITEMS, 5,000): the client splits longer
    lists into several calls instead of having the whole list refused."""
    import uuid

    working.release_data([str(uuid.uuid4()) for _ in range(6_500)])  # one call of 6,500 would be a Client fault
