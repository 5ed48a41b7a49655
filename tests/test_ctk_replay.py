"""CTK applications on the wire, replayed from a real CTK build's messages (``tests/data/ctk/``).

* the recorded messages are rebuilt byte for byte, and the writer of the scripted CTK application
  reproduces them;
* the host's clients read CTK's real answers (its GetData ``<item>`` array, its empty Body) over a raw
  socket answering exactly those bytes, bare ``\\n`` line ends included;
* the host recognises a CTK application from its requests and records it once;
* ReleaseData is not sent to a CTK application, and a failed ReleaseData does not fail anything;
* an empty TransferSyntaxUID from a CTK application is stored as absent;
* at most one connection at a time goes to an application;
* a whole ``dicom-host run`` task against a scripted CTK application (``tests/ctk_app.py``) completes, with
  no ReleaseData sent, one connection, and the manifest saying why.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from lxml import etree

import ctk_wire as w
from client import ApplicationClient, HostClient
from hosting_service import model
from hosting_service.orchestration.release import FAILED, NOTHING, RELEASED, SKIPPED, release_outputs
from hosting_service.peers import PEER_EVENT, ctk_evidence, ctk_marks, is_ctk_request
from hosting_service.states import State
from run_harness import PYTHON, REPO, run_job

RUN = "ctk-app-under-dicom-host-run.txt"
HOST_TO_APP = "host-client-to-ctk-app.txt"
CLIENT_TO_HOST = "ctk-client-to-host.txt"
ZERO = "00000000-0000-0000-0000-000000000000"
CTK_APP = f"{PYTHON} {REPO / 'tests' / 'ctk_app.py'}"


def recorded(name: str, operation: str, *, answer: bool) -> w.Message:
    """The first CTK message of ``operation`` in a transcript: CTK's answer to it, or CTK's request."""
    return next(m for m in w.transcript(name)
                if m.from_ctk and m.operation == operation and m.start_line.startswith("HTTP") == answer)


# --- the recordings, and the writer of the scripted application ---------------------------------------

def test_recorded_ctk_messages_are_rebuilt_byte_for_byte():
    checked = 0
    for name in (RUN, HOST_TO_APP, CLIENT_TO_HOST):
        for message in w.transcript(name):
            if message.from_ctk:
                assert len(w.ctk_bytes(message.body).decode()) == int(message.headers["content-length"]), (
                    name, message.start_line, message.operation)
                checked += 1
    assert checked == 26


def test_the_writer_writes_what_ctk_wrote():
    get_data = recorded(HOST_TO_APP, "GetData", answer=True)
    zero = {"Length": 0, "Offset": 0, "TransferSyntax": "", "URI": "", "Locator": ZERO, "Source": ZERO}
    assert w.get_data_answer([zero]) == w.ctk_bytes(get_data.body)
    assert w.http_answer(w.get_data_answer([zero])) == get_data.wire_bytes()
    set_state = recorded(HOST_TO_APP, "SetState", answer=True)
    assert w.answer("SetState", w.value("SetStateResult", "true", "boolean")) == w.ctk_bytes(set_state.body)
    get_state = recorded(HOST_TO_APP, "GetState", answer=True)
    assert w.answer("GetState", w.value("GetStateResult", "IDLE")) == w.ctk_bytes(get_state.body)

    idle = recorded(CLIENT_TO_HOST, "NotifyStateChanged", answer=False)
    path = idle.start_line.split()[1]
    namespace = "http://dicom.nema.org/PS3.19" + path
    assert w.request("NotifyStateChanged", namespace, w.value("state", "IDLE")) == w.ctk_bytes(idle.body)
    assert w.http_request(idle.headers["host"], path, "NotifyStateChanged",
                          w.ctk_bytes(idle.body)) == idle.wire_bytes()
    status = recorded(CLIENT_TO_HOST, "NotifyStatus", answer=False)
    assert w.request("NotifyStatus", namespace, w.struct(
        "status", w.value("StatusType", "0", "int"), w.value("CodingSchemeDesignator", "CTK"),
        w.value("CodeValue", "42"), w.value("CodeMeaning", "harness status"))) == w.ctk_bytes(status.body)
    location = recorded(CLIENT_TO_HOST, "GetOutputLocation", answer=False)
    assert w.request("GetOutputLocation", namespace, w.struct(
        "preferredProtocols", w.struct("string", w.value("Uid", "file:")))) == w.ctk_bytes(location.body)


# --- a raw peer that answers exact bytes -----------------------------------------------------------------

class RawPeer:
    """A socket server answering each request with canned bytes (or closing the connection without an
    answer: ``None``), recording the requests' operations and the most connections open at once."""

    def __init__(self, answers: dict[str, bytes | None], delay: float = 0.0):
        self.answers = answers
        self.delay = delay
        self.operations: list[str] = []
        self.open = self.most_open = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/ApplicationService-20100825"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.open += 1
                self.most_open = max(self.most_open, self.open)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        stream = connection.makefile("rb")
        try:
            while True:
                line, length = stream.readline(), 0
                if not line:
                    return
                while line.strip():
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                    line = stream.readline()
                body = etree.fromstring(stream.read(length))
                operation = etree.QName(body.find(f"{{{w.SOAP_ENV}}}Body")[0]).localname
                with self.lock:
                    self.operations.append(operation)
                time.sleep(self.delay)
                answer = self.answers[operation]
                if answer is None:
                    return
                connection.sendall(answer)
        finally:
            connection.close()
            with self.lock:
                self.open -= 1

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def raw_peers():
    peers: list[RawPeer] = []

    def make(answers: dict[str, bytes | None], delay: float = 0.0) -> RawPeer:
        peers.append(RawPeer(answers, delay))
        return peers[-1]

    yield make
    for peer in peers:
        peer.close()


# --- the host's clients read CTK's answers -------------------------------------------------------------

def test_ctks_real_get_data_answer_is_read(raw_peers):
    peer = raw_peers({"GetData": recorded(HOST_TO_APP, "GetData", answer=True).wire_bytes()})
    locators = ApplicationClient(peer.url, timeout=5).get_data(["0b7f4e39-1a7a-4c55-9a43-5d8b7e3c2f10"])
    assert locators == [model.ObjectLocator(Length=0, Offset=0, TransferSyntax=None, URI="", Locator=ZERO, Source=ZERO)]


def test_ctk_item_arrays_of_several_locators(raw_peers):
    locators = [{"Length": 12 + n, "Offset": n, "TransferSyntax": "1.2.840.10008.1.2.1",
                 "URI": f"file:////tmp/out/{n}.dcm", "Locator": f"{{loc-{n}}}", "Source": f"{{src-{n}}}"}
                for n in range(3)]
    peer = raw_peers({"GetData": w.http_answer(w.get_data_answer(locators))})
    assert ApplicationClient(peer.url, timeout=5).get_data(["a", "b", "c"]) == [
        model.ObjectLocator(**locator) for locator in locators]


def canonical(xml: bytes) -> bytes:
    return etree.tostring(etree.fromstring(xml), method="c14n")


REAL_GET_DATA_ANSWER = (w.DATA / "app-get-data-answer.http").read_bytes()
REAL_NOTIFY_DATA_AVAILABLE = (w.DATA / "app-notify-data-available.xml").read_bytes()


def test_ctks_real_get_data_answer_of_an_output_is_read(raw_peers):
    head, _, body = REAL_GET_DATA_ANSWER.partition(b"\n\n")
    assert head.endswith(b"Content-Length: " + str(len(body)).encode()) and b"\r" not in head
    peer = raw_peers({"GetData": REAL_GET_DATA_ANSWER})
    [locator] = ApplicationClient(peer.url, timeout=5).get_data(["ca2ec2e2-eef1-4815-aae2-a40841885743"])
    assert (locator.Length, locator.Offset, locator.TransferSyntax) == (528, 0, None)
    assert locator.URI.startswith("file:////tmp/") and locator.URI.endswith("/pixel-stats.csv")
    assert locator.Locator == locator.Source == "ca2ec2e2-eef1-4815-aae2-a40841885743"


def test_the_writer_writes_what_a_later_ctk_process_wrote_attribute_order_aside():
    body = REAL_GET_DATA_ANSWER.partition(b"\n\n")[2]
    root = etree.fromstring(body)
    locator = {name: root.findtext(f".//{{*}}{name}") or "" for name in ("Length", "Offset", "URI")}
    uuid = root.findtext(".//{*}Locator/{*}Uuid")
    written = w.get_data_answer([{**locator, "TransferSyntax": "", "Locator": uuid, "Source": uuid}])
    assert canonical(written) == canonical(body) and written.count(b"\n") == body.count(b"\n")
    namespace = etree.QName(etree.fromstring(REAL_NOTIFY_DATA_AVAILABLE).find(".//{*}NotifyDataAvailable")).namespace
    written = w.request("NotifyDataAvailable", namespace, w.struct(
        "data",
        w.array("ObjectDescriptors", [[
            w.struct("DescriptorUuid", w.value("Uuid", uuid)), w.struct("MimeType", w.value("Type", "text/plain")),
            w.struct("ClassUID", w.value("Uid", "")), w.struct("TransferSyntaxUID", w.value("Uid", "")),
            w.struct("Modality", w.value("Modality", "")),
        ]]),
        w.array("Patients", []),
    ), w.value("lastData", "true", "boolean"))
    assert canonical(written) == canonical(REAL_NOTIFY_DATA_AVAILABLE)
    assert written.count(b"\n") == REAL_NOTIFY_DATA_AVAILABLE.count(b"\n")


@pytest.mark.parametrize("operation, call, expected", [
    ("GetState", lambda app: app.get_state(), State.IDLE),
    ("SetState", lambda app: app.set_state(State.INPROGRESS), True),
    ("BringToFront", lambda app: app.bring_to_front(), True),
    ("NotifyDataAvailable", lambda app: app.notify_data_available(model.AvailableData(), True), True),
])
def test_ctks_recorded_answers_are_read(raw_peers, operation, call, expected):
    peer = raw_peers({operation: recorded(HOST_TO_APP, operation, answer=True).wire_bytes()})
    assert call(ApplicationClient(peer.url, timeout=5)) == expected


@pytest.mark.parametrize("operation, result, call, expected", [
    ("GetAsModels",
     w.struct("GetAsModelsResult", w.array("FailedSourceObjects", [[w.value("Uuid", "u-1")]]),
              w.struct("InfosetType", w.value("Type", "text/xml")),
              w.array("Models", [[w.value("Uuid", "m-1")], [w.value("Uuid", "m-2")]])),
     lambda app: app.get_as_models(["u-1", "u-2"], "1.2.840.10008.7.1.1"),
     model.ModelSetDescriptor(FailedSourceObjects=["u-1"], InfosetType="text/xml", Models=["m-1", "m-2"])),
    ("QueryModel",
     w.array("QueryModelResult", [[w.struct("Model", w.value("Uuid", "m-1")),
                                   w.array("Result", [[w.value("NodeType", "Element"), w.value("Value", "<a/>")]]),
                                   w.value("XPath", "/a")]]),
     lambda app: app.query_model(["m-1"], ["/a"]),
     [model.QueryResult(Model="m-1", Result=[model.XPathNode(NodeType="Element", Value="<a/>")], XPath="/a")]),
    ("QueryInfoSet",
     w.array("QueryInfoSetResult", [[w.struct("Model", w.value("Uuid", "m-1")),
                                     w.array("Result", [[w.value("InfoSetValue", "aGk=", "base64Binary"),
                                                         w.value("NodeType", "Text")]]),
                                     w.value("XPath", "/a/text()")]]),
     lambda app: app.query_info_set(["m-1"], ["/a/text()"]),
     [model.QueryResultInfoSet(Model="m-1", Result=[model.XPathNodeInfoSet(InfoSetValue=b"hi", NodeType="Text")],
                               XPath="/a/text()")]),
])
def test_soap_encoded_arrays_in_every_array_valued_answer(raw_peers, operation, result, call, expected):
    """CTK never implemented the model calls; these answers are what QtSoap writes for such arrays."""
    peer = raw_peers({operation: w.http_answer(w.answer(operation, result))})
    assert call(ApplicationClient(peer.url, timeout=5)) == expected


def test_ctks_empty_body_answers_void_calls(raw_peers):
    """What CTK answers when its processor sets no reply (its host, for NotifyStateChanged): an Envelope
    with an empty Body, bare ``\\n`` line ends."""
    empty = w.http_answer(w.envelope(None))
    peer = raw_peers({"NotifyStateChanged": empty, "ReleaseModels": empty})
    HostClient(peer.url, timeout=5).notify_state_changed(State.IDLE)
    assert ApplicationClient(peer.url, timeout=5).release_models(["m"]) is None


# --- one connection at a time ----------------------------------------------------------------------------

@pytest.mark.parametrize("client_class, operation, call", [
    (ApplicationClient, "SetState", lambda c: c.set_state(State.INPROGRESS)),
    (HostClient, "GenerateUID", lambda c: c.generate_uid()),
])
def test_at_most_one_connection_at_a_time(raw_peers, client_class, operation, call):
    answers = {"SetState": recorded(HOST_TO_APP, "SetState", answer=True).wire_bytes(),
               "GenerateUID": w.http_answer(w.answer("GenerateUID", w.struct("uid", w.value("Uid", "2.25.1"))))}
    peer = raw_peers({operation: answers[operation]}, delay=0.2)
    client = client_class(peer.url, timeout=10)
    results, threads = [], [threading.Thread(target=lambda: results.append(call(client))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 4 and len(peer.operations) == 4
    assert peer.most_open == 1


# --- recognising a CTK application ---------------------------------------------------------------------

def _host_url(message: w.Message) -> str:
    return f"http://{message.headers['host']}{message.start_line.split()[1]}"


def test_ctk_marks_of_a_recorded_ctk_request():
    idle = recorded(RUN, "NotifyStateChanged", answer=False)
    marks = ctk_marks(etree.fromstring(w.ctk_bytes(idle.body)), _host_url(idle))
    assert is_ctk_request(marks) and "encodingStyle" in marks[0] and "hostURL's path" in marks[1]


def test_standard_and_almost_ctk_requests_are_not_ctk():
    idle = recorded(RUN, "NotifyStateChanged", answer=False)
    host_url = _host_url(idle)
    standard = etree.fromstring(
        f'<s:Envelope xmlns:s="{w.SOAP_ENV}"><s:Body><NotifyStateChanged xmlns="http://dicom.nema.org/PS3.19/'
        'HostService-20100825"><state>IDLE</state></NotifyStateChanged></s:Body></s:Envelope>')
    assert ctk_marks(standard, host_url) == []
    # CTK's default /HostInterface namespace, as the misbehaving example application sends it: one mark only
    other_path = etree.fromstring(w.request("NotifyStateChanged", "http://dicom.nema.org/PS3.19/HostInterface",
                                            w.value("state", "IDLE")))
    assert len(ctk_marks(other_path, host_url)) == 1 and not is_ctk_request(ctk_marks(other_path, host_url))
    # an application served at the standard's own path cannot be told by its namespace
    at_standard_path = "http://127.0.0.1:9/HostService-20100825"
    ctk_like = etree.fromstring(w.request("NotifyStateChanged", "http://dicom.nema.org/PS3.19/HostService-20100825",
                                          w.value("state", "IDLE")))
    assert not is_ctk_request(ctk_marks(ctk_like, at_standard_path))


def send_as_ctk(host_url: str, operation: str, *arguments: w.Lines) -> bytes:
    """One request exactly as CTK's client sends it (namespace from ``host_url``'s path); the raw answer."""
    parts = urlsplit(host_url)
    body = w.request(operation, "http://dicom.nema.org/PS3.19" + parts.path, *arguments)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as connection:
        connection.sendall(w.http_request(parts.netloc, parts.path, operation, body))
        stream, length = connection.makefile("rb"), 0
        status = stream.readline()
        for line in iter(stream.readline, b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        answer = stream.read(length)
    assert b" 200 " in status, answer
    return answer


def peer_events(host_server, instance: dict) -> list[dict]:
    return host_server.admin.events(instance["id"], kinds=[PEER_EVENT])[0]


def test_the_host_records_a_ctk_application_once(host_server):
    ctk, standard = host_server.create_instance(), host_server.create_instance()
    for state in ("IDLE", "INPROGRESS"):
        send_as_ctk(ctk["hostURL"], "NotifyStateChanged", w.value("state", state))
    HostClient(standard["hostURL"], timeout=5).notify_state_changed(State.IDLE)
    events = peer_events(host_server, ctk)
    assert len(events) == 1 and ctk_evidence(events) is not None
    assert ctk["hostURL"].rpartition("/")[0].rpartition("/")[2] not in json.dumps(events)  # no token in it
    assert peer_events(host_server, standard) == []


def test_empty_uids_of_a_ctk_output_announcement_are_stored_as_absent(host_server):
    """CTK's exact NotifyDataAvailable for a non-DICOM output, replayed to a new instance."""
    instance = host_server.create_instance()
    for state in ("IDLE", "INPROGRESS"):
        send_as_ctk(instance["hostURL"], "NotifyStateChanged", w.value("state", state))
    recorded_namespace = etree.QName(etree.fromstring(REAL_NOTIFY_DATA_AVAILABLE).find(".//{*}NotifyDataAvailable")).namespace
    new = urlsplit(instance["hostURL"])
    body = REAL_NOTIFY_DATA_AVAILABLE.replace(recorded_namespace.encode(), f"http://dicom.nema.org/PS3.19{new.path}".encode())
    with socket.create_connection((new.hostname, new.port), timeout=10) as connection:
        connection.sendall(w.http_request(new.netloc, new.path, "NotifyDataAvailable", body))
        assert b" 200 " in connection.makefile("rb").readline()
    [announcement], _ = host_server.admin.announced_outputs(instance["id"])
    [descriptor] = announcement.ObjectDescriptors
    assert (descriptor.ClassUID, descriptor.TransferSyntaxUID, descriptor.Modality) == (None, None, None)
    assert descriptor.MimeType == "text/plain"


def test_an_empty_transfer_syntax_uid_from_ctk_is_stored_as_absent(host_server):
    """The recorded NotifyDataAvailable of CTK's client (``<TransferSyntaxUID><Uid/></TransferSyntaxUID>``),
    replayed byte for byte to a new instance."""
    instance = host_server.create_instance()
    for state in ("IDLE", "INPROGRESS"):
        send_as_ctk(instance["hostURL"], "NotifyStateChanged", w.value("state", state))
    message = recorded(CLIENT_TO_HOST, "NotifyDataAvailable", answer=False)
    old_path, new = message.start_line.split()[1], urlsplit(instance["hostURL"])
    body = w.ctk_bytes(message.body).replace(old_path.encode(), new.path.encode())
    assert b'<TransferSyntaxUID>\n<Uid xmlns:xsi="http://www.w3.org/1999/XMLSchema-instance" xsi:type="xsd:string"></Uid>' in body
    with socket.create_connection((new.hostname, new.port), timeout=10) as connection:
        connection.sendall(w.http_request(new.netloc, new.path, "NotifyDataAvailable", body))
        assert b" 200 " in connection.makefile("rb").readline()
    announcements, last_data = host_server.admin.announced_outputs(instance["id"])
    descriptor = announcements[0].Patients[0].Studies[0].Series[0].ObjectDescriptors[0]
    assert last_data and descriptor.TransferSyntaxUID is None and descriptor.ClassUID == "1.2.840.10008.5.1.4.1.1.2"


# --- ReleaseData ---------------------------------------------------------------------------------------------

def warnings_of(host_server, instance: dict) -> list[str]:
    return [e["data"]["message"] for e in host_server.admin.events(instance["id"], kinds=["warning"])[0]]


def test_release_data_is_not_sent_to_a_ctk_application(host_server, raw_peers):
    instance = host_server.create_instance()
    send_as_ctk(instance["hostURL"], "NotifyStateChanged", w.value("state", "IDLE"))
    peer = raw_peers({"ReleaseData": None})
    outcome = release_outputs(ApplicationClient(peer.url, timeout=5), host_server.admin, instance["id"], ["{loc-1}"])
    assert outcome == SKIPPED and peer.operations == []
    [warning] = warnings_of(host_server, instance)
    assert "ReleaseData not sent" in warning and "CTK" in warning and "encodingStyle" in warning


def test_a_release_data_that_kills_the_application_fails_nothing(host_server, raw_peers):
    instance = host_server.create_instance()
    HostClient(instance["hostURL"], timeout=5).notify_state_changed(State.IDLE)
    peer = raw_peers({"ReleaseData": None})  # the connection closes without an answer, as CTK's does
    outcome = release_outputs(ApplicationClient(peer.url, timeout=5), host_server.admin, instance["id"], ["l-1"])
    assert outcome == FAILED and peer.operations == ["ReleaseData"]
    [warning] = warnings_of(host_server, instance)
    assert warning.startswith("ReleaseData failed after the outputs had been read")


def test_release_data_to_a_standard_application(host_server, raw_peers):
    instance = host_server.create_instance()
    released = w.http_answer(w.envelope(w.struct("ReleaseDataResponse", attributes=f'xmlns="{w.APP_SERVICE_NS}"')))
    peer = raw_peers({"ReleaseData": released})
    app = ApplicationClient(peer.url, timeout=5)
    assert release_outputs(app, host_server.admin, instance["id"], ["l-1"]) == RELEASED
    assert release_outputs(app, host_server.admin, instance["id"], []) == NOTHING
    assert peer.operations == ["ReleaseData"] and warnings_of(host_server, instance) == []


# --- a whole task --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ct_series(tmp_path_factory) -> Path:
    from hosting_service.dicom.samples import write_sample_series

    folder = tmp_path_factory.mktemp("ctk-inputs")
    write_sample_series(folder, slices=4)
    return folder


def test_a_whole_task_with_a_ctk_application(tmp_path, ct_series):
    """Needs the task driver to release outputs through :func:`release_outputs` (the hook)."""
    record = tmp_path / "record.jsonl"
    run = run_job(tmp_path / "out", "--app", CTK_APP, "--input", str(ct_series), "--", "--record", str(record))
    assert run.returncode == 0, run.describe()
    events = [json.loads(line) for line in record.read_text().splitlines()]
    operations = [e["operation"] for e in events if e["event"] == "request"]
    assert "ReleaseData" not in operations and operations.count("GetData") == 1
    assert max(e["open"] for e in events if e["event"] == "connect") == 1
    assert run.states() == ["IDLE", "INPROGRESS", "COMPLETED", "IDLE", "EXIT"]
    manifest = run.manifest
    assert manifest["outcome"]["result"] == "completed" and manifest["app"]["exit"] == "exit status 0"
    [output] = manifest["outputs"]
    assert output["transferSyntax"] is None and output["uri"].startswith("file:////")
    digests = (run.output / output["file"]).read_text().splitlines()
    inputs = sorted(p for p in ct_series.rglob("*") if p.is_file())
    assert len(digests) == 1 + len(inputs)
    assert any(w["operation"] == "ReleaseData" and "CTK" in w["message"] for w in manifest["warnings"])


def test_outputs_on_the_applications_own_server_are_read_over_its_one_connection(tmp_path, ct_series):
    """An output served by the application itself is read through the connection its SOAP calls use: a
    second one would wait for a thread of a small server's pool that the first holds (CTK's pool)."""
    record = tmp_path / "record.jsonl"
    run = run_job(tmp_path / "out", "--app", CTK_APP, "--input", str(ct_series), "--", "--record", str(record),
                  "--serve-output")
    assert run.returncode == 0, run.describe()
    events = [json.loads(line) for line in record.read_text().splitlines()]
    assert [e["operation"] for e in events if e["event"] == "request"].count("GET") == 1
    assert max(e["open"] for e in events if e["event"] == "connect") == 1
    [output] = run.manifest["outputs"]
    assert output["status"] == "received" and output["uri"].startswith("http://")
    assert len((run.output / output["file"]).read_text().splitlines()) == 1 + len(
        [p for p in ct_series.rglob("*") if p.is_file()])


DIES_ON_RELEASE_DATA = """
import os, sys
from client.examples.misbehaving_app import MisbehavingApp

class DiesOnReleaseData(MisbehavingApp):
    def ReleaseData(self, objects=None):
        os.abort()  # as CTK's applications do, without looking like CTK on the wire

sys.exit(DiesOnReleaseData.main())
"""


def test_an_application_that_dies_after_its_outputs_were_read_completes_its_task(tmp_path, ct_series):
    """Needs the task driver to release outputs through :func:`release_outputs` (the hook)."""
    app = tmp_path / "dies.py"
    app.write_text(DIES_ON_RELEASE_DATA)
    run = run_job(tmp_path / "out", "--app", f"{PYTHON} {app}", "--input", str(ct_series))
    assert run.returncode == 0, run.describe()
    manifest = run.manifest
    assert manifest["outcome"]["result"] == "completed" and manifest["outputs"]
    assert manifest["app"]["exit"] == "killed by SIGABRT"
    assert any(w["operation"] == "ReleaseData" and w["message"].startswith("ReleaseData failed after the outputs")
               for w in manifest["warnings"])
