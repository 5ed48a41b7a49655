"""The HostService endpoint of real instances on a real gunicorn server: preconditions of every operation in
every state, notifications, the per-instance addressing, persistence across a restart, several workers."""
from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import ARRAYS_NS, HOST_NS, drive, fault_of, notify_state, parse_body, soap_post
from wire_harness import assert_valid, standard_schema, without_location_hints

ACTION = "http://dicom.nema.org/PS3.19/IHostService/"
U = str(uuid.UUID(int=1))

REQUESTS = {
    "GenerateUID": "<GenerateUID/>",
    "GetAvailableScreen": "<GetAvailableScreen/>",
    "GetOutputLocation": f'<GetOutputLocation><preferredProtocols xmlns:a="{ARRAYS_NS}"><a:string>file:</a:string>'
                         "</preferredProtocols></GetOutputLocation>",
    "NotifyStateChanged": None,  # exercised by driving the state machine itself
    "NotifyStatus": "<NotifyStatus><status><StatusType>INFORMATION</StatusType><CodeValue>1</CodeValue>"
                    "</status></NotifyStatus>",
    "NotifyDataAvailable": "<NotifyDataAvailable><data/><lastData>true</lastData></NotifyDataAvailable>",
    "GetData": "<GetData><objects/><acceptableTransferSyntaxes/><includeBulkData>true</includeBulkData></GetData>",
    "ReleaseData": f"<ReleaseData><objects><UUID><Uuid>{U}</Uuid></UUID></objects></ReleaseData>",
    "GetAsModels": f"<GetAsModels><objects><UUID><Uuid>{U}</Uuid></UUID></objects><classUID><Uid>1.2.840.10008.7.1.1"
                   "</Uid></classUID><supportedInfoSetTypes><MimeType><Type>text/xml</Type></MimeType>"
                   "</supportedInfoSetTypes></GetAsModels>",
    "ReleaseModels": f"<ReleaseModels><models><UUID><Uuid>{U}</Uuid></UUID></models></ReleaseModels>",
    "QueryModel": f'<QueryModel><models/><xPaths xmlns:a="{ARRAYS_NS}"><a:string>/</a:string></xPaths></QueryModel>',
    "QueryInfoSet": f'<QueryInfoSet><models/><xPaths xmlns:a="{ARRAYS_NS}"><a:string>/</a:string></xPaths>'
                    "</QueryInfoSet>",
}

PATHS = {  # how an application legally reaches each state
    None: [],
    "IDLE": ["IDLE"],
    "INPROGRESS": ["IDLE", "INPROGRESS"],
    "SUSPENDED": ["IDLE", "INPROGRESS", "SUSPENDED"],
    "COMPLETED": ["IDLE", "INPROGRESS", "COMPLETED"],
    "CANCELED": ["IDLE", "INPROGRESS", "CANCELED"],
    "EXIT": ["IDLE", "EXIT"],
}

# Written out from PS3.19 §8.2.3, §8.3.1-8.3.5 (SPEC-NOTES §4.3), independently of hosting_service.states.
ALLOWED = {
    "GetOutputLocation": {"INPROGRESS", "COMPLETED"},
    "NotifyDataAvailable": {"INPROGRESS"},
    "GetData": {"INPROGRESS", "COMPLETED"},
    "GetAsModels": {"INPROGRESS", "COMPLETED"},
    "QueryModel": {"INPROGRESS", "COMPLETED"},
    "QueryInfoSet": {"INPROGRESS", "COMPLETED"},
}


def call(host_url: str, operation: str, inner: str | None = None) -> requests.Response:
    body = REQUESTS[operation] if inner is None else inner
    body = body.replace(f"<{operation}", f'<{operation} xmlns="{HOST_NS}"', 1)
    return soap_post(host_url, body, action=ACTION + operation)


HOST_SCHEMA = standard_schema(HOST_NS)


@pytest.fixture(scope="module")
def instances_by_state(host_server):
    made = {}
    for state, path in PATHS.items():
        inst = host_server.create_instance()
        drive(inst["hostURL"], *path)
        made[state] = inst
    return made


@pytest.mark.parametrize("operation", [op for op in REQUESTS if REQUESTS[op]])
@pytest.mark.parametrize("state", list(PATHS))
def test_precondition_matrix(instances_by_state, operation, state):
    inst = instances_by_state[state]
    r = call(inst["hostURL"], operation)
    allowed = ALLOWED.get(operation)
    if allowed is None or state in allowed:
        assert r.status_code == 200, r.text
        assert parse_body(r).tag == f"{{{HOST_NS}}}{operation}Response"
        assert_valid(HOST_SCHEMA, r.content)  # what the real server sends is what Annex B defines
    else:
        assert r.status_code == 500
        code, text = fault_of(r)
        assert code.endswith("Client")
        shown = state or "NOT_STARTED"
        assert f"{operation} is not allowed while the application is {shown}" in text
        assert all(s in text for s in allowed)


def test_lenient_mode_answers_nil_and_records_a_warning(server_factory):
    server = server_factory("--lenient")
    inst = server.create_instance()
    notify_state(inst["hostURL"], "IDLE")
    r = call(inst["hostURL"], "GetOutputLocation")
    assert r.status_code == 200, r.text
    result = parse_body(r)[0] if len(parse_body(r)) else None
    assert result is None or result.get("{http://www.w3.org/2001/XMLSchema-instance}nil") == "true" or not result.text
    warnings = server.admin.instance(inst["id"])["warnings"]
    assert any("GetOutputLocation is not allowed while the application is IDLE" in w["message"] for w in warnings)


def test_illegal_notification_is_accepted_and_recorded(host_server):
    inst = host_server.create_instance()
    drive(inst["hostURL"], "IDLE", "COMPLETED")  # not a Table 7.2-2 transition
    shown = host_server.admin.instance(inst["id"])
    assert shown["state"] == "COMPLETED"
    assert any("IDLE -> COMPLETED is not a transition" in w["message"] for w in shown["warnings"])


def test_generate_uid_and_screen(instance):
    r = call(instance["hostURL"], "GenerateUID")
    uid = parse_body(r).findtext(f"{{{HOST_NS}}}GenerateUIDResult/{{{HOST_NS}}}Uid")
    assert re.fullmatch(r"2\.25\.[1-9][0-9]*", uid) and len(uid) <= 64
    preferred = "<preferredScreen><Height>100</Height><Width>200</Width><RefPointX>10</RefPointX>" \
                "<RefPointY>20</RefPointY></preferredScreen>"
    r = call(instance["hostURL"], "GetAvailableScreen", f"<GetAvailableScreen>{preferred}</GetAvailableScreen>")
    rect = parse_body(r).find(f"{{{HOST_NS}}}GetAvailableScreenResult")
    assert [rect.findtext(f"{{{HOST_NS}}}{n}") for n in ("Height", "Width", "RefPointX", "RefPointY")] == \
           ["100", "200", "10", "20"]


def test_status_is_kept_with_all_its_coded_fields(host_server, instance):
    status = ("<status><StatusType>FATALERROR</StatusType><CodeValue>42</CodeValue>"
              "<CodingSchemeDesignator>99APP</CodingSchemeDesignator><CodeMeaning>disk full</CodeMeaning>"
              "<ContextIdentifier>CID1</ContextIdentifier></status>")
    assert call(instance["hostURL"], "NotifyStatus", f"<NotifyStatus>{status}</NotifyStatus>").status_code == 200
    events, _ = host_server.admin.events(instance["id"], kinds=["status"])
    data = events[-1]["data"]
    assert (data["StatusType"], data["CodeValue"], data["CodingSchemeDesignator"], data["CodeMeaning"],
            data["ContextIdentifier"]) == ("FATALERROR", 42, "99APP", "disk full", "CID1")


def test_unknown_and_ended_instances_are_refused_alike(host_server):
    inst = host_server.create_instance()
    host_server.admin.end(inst["id"], "test")
    for url in (inst["hostURL"], re.sub(r"/[^/]+/HostService", "/" + "A" * 32 + "/HostService", inst["hostURL"]),
                host_server.url + "/not-a-token/HostService-20100825"):
        r = call(url, "GenerateUID")
        code, text = fault_of(r)
        assert code.endswith("Client") and "no hosted-application instance" in text
        assert requests.get(url + "?wsdl", timeout=5).status_code == 404


def test_state_survives_a_restart(server_factory):
    server = server_factory()
    inst = server.create_instance()
    drive(inst["hostURL"], "IDLE", "INPROGRESS")
    server.restart()
    assert server.admin.instance(inst["id"])["state"] == "INPROGRESS"
    assert call(inst["hostURL"], "GetOutputLocation").status_code == 200  # same URL, same token, same state


def test_two_workers_share_one_truth(host_server):
    """The session server runs two gthread workers; concurrent calls land on both and see one state."""
    inst = host_server.create_instance()
    drive(inst["hostURL"], "IDLE", "INPROGRESS")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: call(inst["hostURL"], "GetOutputLocation"), range(40)))
        pids: set[int] = set()
        for _ in range(10):  # the same concurrency reaches both workers (which one accepts is the kernel's call)
            pids |= set(pool.map(lambda _: requests.get(host_server.url + "/healthz", timeout=5).json()["pid"],
                                 range(40)))
            if len(pids) == 2:
                break
    assert len(pids) == 2
    assert all(a.status_code == 200 for a in answers)
    locations = {parse_body(a).findtext(f"{{{HOST_NS}}}GetOutputLocationResult") for a in answers}
    assert len(locations) == 40  # a fresh location per call, whichever worker answered
    assert len(host_server.admin.instance(inst["id"])["outputLocations"]) == 40


def test_wsdl_and_its_schemas_are_served_beside_each_host_url(host_server, instance):
    import wsdl

    r = requests.get(instance["hostURL"] + "?wsdl", timeout=5)
    assert r.status_code == 200 and f'location="{instance["hostURL"]}"'.encode() in r.content
    base = instance["hostURL"].rsplit("/", 1)[0]
    for name in ("HostService-20100825.xsd", "Types.xsd", "ArrayOfString.xsd", "XPathNodeType.xsd"):
        got = requests.get(f"{base}/{name}", timeout=5)
        assert got.status_code == 200 and without_location_hints(got.content) == (wsdl.HOST_SERVICE / name).read_bytes()
    assert requests.get(f"{base}/secrets.xsd", timeout=5).status_code == 404


def test_get_data_hands_out_offered_inputs_and_release_frees_them(host_server, tmp_path):
    import pydicom

    from hosting_service.dicom.samples import write_sample_series

    write_sample_series(tmp_path / "in", slices=3)
    inst = host_server.create_instance()
    offered = host_server.admin.offer_inputs(inst["id"], [str(tmp_path / "in")])
    uuids = [d.DescriptorUuid for p in offered["availableData"].Patients for st in p.Studies for se in st.Series
             for d in se.ObjectDescriptors]
    assert len(uuids) == 3
    drive(inst["hostURL"], "IDLE", "INPROGRESS")
    implicit = "1.2.840.10008.1.2"
    objects = "".join(f"<UUID><Uuid>{u.upper()}</Uuid></UUID>" for u in uuids)
    r = call(inst["hostURL"], "GetData",
             f"<GetData><objects>{objects}</objects><acceptableTransferSyntaxes><UID><Uid>1.2.3.4</Uid></UID>"
             f"<UID><Uid>{implicit}</Uid></UID></acceptableTransferSyntaxes><includeBulkData>true</includeBulkData>"
             "</GetData>")
    assert r.status_code == 200, r.text
    q = f"{{{HOST_NS}}}"
    locs = parse_body(r).findall(f"{q}GetDataResult/{q}ObjectLocator")
    assert [l.findtext(f"{q}Source/{q}Uuid") for l in locs] == [u.upper() for u in uuids]  # one per UUID, in order
    locator_ids = []
    for loc in locs:
        assert loc.findtext(f"{q}TransferSyntax/{q}Uid") == implicit  # first acceptable one the host can make
        uri, offset, length = loc.findtext(f"{q}URI"), int(loc.findtext(f"{q}Offset")), int(loc.findtext(f"{q}Length"))
        assert uri.startswith("file:///")
        with open(uri[len("file://"):], "rb") as f:
            f.seek(offset)
            ds = pydicom.dcmread(__import__("io").BytesIO(f.read(length)))
        assert ds.file_meta.TransferSyntaxUID == implicit and ds.pixel_array.shape == (64, 64)
        locator_ids.append(loc.findtext(f"{q}Locator/{q}Uuid"))
    assert len(set(locator_ids)) == 3
    assert host_server.admin.instance(inst["id"])["activeLocators"] == 3
    call(inst["hostURL"], "ReleaseData", f"<ReleaseData><objects><UUID><Uuid>{locator_ids[0]}</Uuid></UUID></objects>"
                                         "</ReleaseData>")
    assert host_server.admin.instance(inst["id"])["activeLocators"] == 2
    drive(inst["hostURL"], "COMPLETED", "IDLE")  # IDLE releases the rest implicitly (PS3.19 §8.3.2)
    assert host_server.admin.instance(inst["id"])["activeLocators"] == 0

    code, text = fault_of(call(inst["hostURL"], "GetData", REQUESTS["GetData"]))  # IDLE now: out of state
    assert "GetData is not allowed while the application is IDLE" in text
    drive(inst["hostURL"], "INPROGRESS")
    code, text = fault_of(call(inst["hostURL"], "GetData", f"<GetData><objects><UUID><Uuid>{uuid.uuid4()}</Uuid></UUID>"
                                                           "</objects></GetData>"))
    assert code.endswith("Client") and "not offered to this application" in text


def test_suds_built_from_an_instances_wsdl_calls_every_operation(host_server, tmp_path):
    """A client that knows nothing but ``hostURL?wsdl`` (as JAX-WS applications do) works end to end."""
    import suds.client

    from hosting_service.dicom.samples import write_sample_series

    write_sample_series(tmp_path / "in", slices=2, size=16)
    inst = host_server.create_instance()
    offered = host_server.admin.offer_inputs(inst["id"], [str(tmp_path / "in")])["availableData"]
    source = offered.Patients[0].Studies[0].Series[0].ObjectDescriptors[0].DescriptorUuid
    client = suds.client.Client(inst["hostURL"] + "?wsdl", cache=None)
    assert client.wsdl.services[0].ports[0].location == inst["hostURL"]
    s = client.service
    assert s.GenerateUID().Uid.startswith("2.25.")
    assert s.GetAvailableScreen(None).Width == 1920
    s.NotifyStateChanged("IDLE")
    s.NotifyStateChanged("INPROGRESS")
    status = client.factory.create("{%s}Status" % HOST_NS)
    status.StatusType, status.CodeValue, status.CodeMeaning = "WARNING", 3, "slow disk"
    s.NotifyStatus(status)
    protocols = client.factory.create("{%s}ArrayOfstring" % ARRAYS_NS)
    protocols.string = ["http:"]
    assert s.GetOutputLocation(protocols).startswith(host_server.url + "/outputs/")
    locators = s.GetData({"UUID": [{"Uuid": source}]}, {"UID": [{"Uid": "1.2.840.10008.1.2.1"}]}, True)
    locator = locators.ObjectLocator[0]
    assert locator.Source.Uuid == source and locator.URI.startswith("file:///") and locator.Length > 0
    s.ReleaseData({"UUID": [{"Uuid": locator.Locator.Uuid}]})
    models = s.GetAsModels({"UUID": [{"Uuid": source}]}, {"Uid": "1.2.840.10008.7.1.1"},
                           {"MimeType": [{"Type": "text/xml"}]})
    model = models.Models.UUID[0].Uuid
    xpaths = client.factory.create("{%s}ArrayOfstring" % ARRAYS_NS)
    xpaths.string = ["/NativeDicomModel"]
    assert not s.QueryModel({"UUID": []}, xpaths)
    [result] = s.QueryModel({"UUID": [{"Uuid": model}]}, xpaths).QueryResult
    assert result.Result.XPathNode[0].NodeType == "Element"
    [result] = s.QueryInfoSet({"UUID": [{"Uuid": model}]}, xpaths).QueryResultInfoSet
    assert result.Result.XPathNodeInfoSet[0].NodeType == "Element"
    s.ReleaseModels({"UUID": [{"Uuid": model}]})
    descriptor = {"MimeType": {"Type": "text/plain"}, "DescriptorUuid": {"Uuid": str(uuid.uuid4())}}
    assert s.NotifyDataAvailable({"ObjectDescriptors": {"ObjectDescriptor": [descriptor]}}, True) is True
    shown = host_server.admin.instance(inst["id"])
    assert shown["state"] == "INPROGRESS" and shown["activeLocators"] == 0 and len(shown["outputLocations"]) == 1
    assert host_server.admin.announced_outputs(inst["id"])[1] is True


@pytest.mark.parametrize("raw", [b"GARBAGE\r\n\r\n",
                                 b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n",
                                 b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n"])
def test_requests_that_are_not_http_get_a_plain_4xx(host_server, raw):
    import socket

    with socket.create_connection(("127.0.0.1", host_server.port), timeout=5) as s:
        s.sendall(raw)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert re.match(rb"HTTP/1.1 4\d\d ", head) and b"Content-Type: text/plain" in head
    assert b"<html" not in body.lower() and body.strip()


@pytest.mark.parametrize("operation, body", [("NotifyStateChanged", "<NotifyStateChanged/>"),
                                             ("NotifyStateChanged", '<NotifyStateChanged><state xmlns:i='
                                              '"http://www.w3.org/2001/XMLSchema-instance" i:nil="true"/>'
                                              "</NotifyStateChanged>"),
                                             ("NotifyStatus", "<NotifyStatus/>")])
def test_a_missing_state_or_status_is_the_callers_mistake(host_server, instance, operation, body):
    code, text = fault_of(call(instance["hostURL"], operation, body))
    assert code.endswith("Client") and "missing or nil" in text
    events, _ = host_server.admin.events(instance["id"], kinds=["state", "status"])
    assert events == []  # nothing recorded



def test_admin_api_answers_unknown_and_ended_instances_with_4xx(host_server):
    import hosting_service.admin.client as admin_client

    with pytest.raises(admin_client.AdminError) as unknown:
        host_server.admin.instance("0" * 32)
    assert unknown.value.status == 404
    inst = host_server.create_instance()
    host_server.admin.end(inst["id"], "test")
    with pytest.raises(admin_client.AdminError) as ended:
        host_server.admin.offer_inputs(inst["id"], ["/nonexistent"])
    assert ended.value.status == 409


def test_admin_api_refuses_what_a_web_page_could_send_and_nonsense_waits(host_server, instance):
    base = f"{host_server.url}/admin/instances/{instance['id']}"
    r = requests.post(base + "/requested-state", data='{"state": "EXIT"}', headers={"Content-Type": "text/plain"},
                      timeout=5)
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    assert host_server.admin.instance(instance["id"])["requestedState"] is None  # nothing changed
    for wait in ("nan", "inf", "-1", "soon"):
        r = requests.get(base + "/events", params={"wait": wait}, timeout=5)
        assert r.status_code == 400 and "wait" in r.json()["error"]


def test_ending_an_instance_drops_its_delivery_cache_and_keeps_its_results(host_server, tmp_path):
    from hosting_service.dicom.samples import write_sample_series

    write_sample_series(tmp_path / "in", slices=1, size=16)
    inst = host_server.create_instance()
    offered = host_server.admin.offer_inputs(inst["id"], [str(tmp_path / "in")])["availableData"]
    source = offered.Patients[0].Studies[0].Series[0].ObjectDescriptors[0].DescriptorUuid
    drive(inst["hostURL"], "IDLE", "INPROGRESS")
    r = call(inst["hostURL"], "GetData", f"<GetData><objects><UUID><Uuid>{source}</Uuid></UUID></objects>"
                                         "<acceptableTransferSyntaxes><UID><Uid>1.2.840.10008.1.2</Uid></UID>"
                                         "</acceptableTransferSyntaxes></GetData>")  # a transcoded copy
    assert r.status_code == 200
    cache = host_server.data_dir / "instances" / inst["id"] / "delivery-cache"
    assert any(cache.iterdir())
    host_server.admin.end(inst["id"], "test")
    assert not cache.exists()
