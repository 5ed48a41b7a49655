"""Nothing shared but the network (issue 8): instances whose application may not use file: URIs get their
inputs as http: URIs (Range, HEAD, ETag, 404 once released or ended, per-instance tokens), only http: output
locations, and the runner reads every output over the admin API. The proof: a run whose runner and
application cannot see the server's data dir (a tmpfs mounted over it in a private mount namespace)."""
from __future__ import annotations

import io
import json
import os
import shlex
import socket
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.uid import ImplicitVRLittleEndian

from client import HostCallError, HostClient, read_located
from conftest import drive
from hosting_service.admin.client import AdminClient, AdminError
from hosting_service.dicom.samples import write_sample_series
from hosting_service.model import iter_descriptors
from hosting_service.models import NATIVE_DICOM_MODEL
from hosting_service.store.sqlite import SQLiteStore
from run_harness import ENV, FAST, MIP_APP, REPO, Run, dicom_host_run, run_job
from test_run_mip import check_manifest_entry, check_mip, read_series

NOT_FOUND = {"error": "no input is served at this address (unknown, released or ended)"}


class Offered:
    """An instance at INPROGRESS with a small CT series offered, and the application's HostClient."""

    def __init__(self, server, folder: Path, *, slices: int = 2, size: int = 16, **options):
        write_sample_series(folder, slices=slices, size=size)
        self.instance = server.create_instance(options=options)
        offered = server.admin.offer_inputs(self.instance["id"], [str(folder)])["availableData"]
        self.uuids = [d.DescriptorUuid for d, *_ in iter_descriptors(offered)]
        self.stored = {p.read_bytes() for p in folder.rglob("*.dcm")}
        drive(self.instance["hostURL"], "IDLE", "INPROGRESS")
        self.host = HostClient(self.instance["hostURL"])

    def release(self, locator) -> None:
        self.host.release_data([locator.Locator])


def assert_not_found(url: str) -> None:
    for method in ("GET", "HEAD"):
        r = requests.request(method, url, timeout=10)
        assert r.status_code == 404, (method, r.status_code)
    assert requests.get(url, timeout=10).json() == NOT_FOUND  # the same answer, whatever the reason


def test_get_data_answers_http_inputs_served_with_range_head_and_etag(host_server, tmp_path):
    session = Offered(host_server, tmp_path / "in", file_uris=False)
    locators = session.host.get_data(session.uuids, [])  # as stored: the stored files themselves
    assert len(locators) == 2
    for locator in locators:
        assert locator.URI == f"{host_server.url}/inputs/{session.instance['hostURL'].split('/')[3]}/{locator.Locator}"
        assert locator.Offset == 0
        data = read_located(locator, session=session.host.session)  # the client kit's reader: a ranged GET
        assert data in session.stored and locator.Length == len(data)

    url, data = locators[0].URI, read_located(locators[0])
    size = len(data)
    whole = requests.get(url, timeout=10)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["Content-Length"] == str(size) and whole.headers["Accept-Ranges"] == "bytes"
    etag = whole.headers["ETag"]
    head = requests.head(url, timeout=10)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(size) and head.headers["ETag"] == etag
    part = requests.get(url, headers={"Range": "bytes=128-131"}, timeout=10)
    assert part.status_code == 206 and part.content == b"DICM"
    assert part.headers["Content-Range"] == f"bytes 128-131/{size}" and part.headers["Content-Length"] == "4"
    tail = requests.get(url, headers={"Range": "bytes=-10"}, timeout=10)
    assert tail.status_code == 206 and tail.content == data[-10:]
    open_ended = requests.get(url, headers={"Range": f"bytes={size - 3}-"}, timeout=10)
    assert open_ended.status_code == 206 and open_ended.content == data[-3:]
    beyond = requests.get(url, headers={"Range": f"bytes={size + 1000}-{size + 2000}"}, timeout=10)
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{size}"
    stale = requests.get(url, headers={"Range": "bytes=0-3", "If-Range": '"another"'}, timeout=10)
    assert stale.status_code == 200 and stale.content == data  # If-Range of another version: the whole
    several = requests.get(url, headers={"Range": "bytes=0-1,5-6"}, timeout=10)
    assert several.status_code == 200 and several.content == data  # ignored, as RFC 9110 allows
    assert requests.put(url, data=b"x", timeout=10).status_code == 405

    # The token is the credential: another instance's token with this locator, or a made-up one, is a 404.
    other = host_server.create_instance()
    other_token = other["hostURL"].split("/")[3]
    assert_not_found(f"{host_server.url}/inputs/{other_token}/{locators[0].Locator}")
    assert_not_found(url.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000")
    assert_not_found(f"{host_server.url}/inputs/{'A' * 32}/{locators[0].Locator}")
    assert_not_found(f"{url}/more")
    assert_not_found(f"{host_server.url}/inputs/")

    session.release(locators[0])  # ReleaseData: that locator is gone, the other still served
    assert_not_found(url)
    assert requests.get(locators[1].URI, timeout=10).content == read_located(locators[1])
    drive(session.instance["hostURL"], "COMPLETED", "IDLE")  # IDLE releases the rest
    assert_not_found(locators[1].URI)


def test_an_ended_instance_serves_no_inputs(host_server, tmp_path):
    session = Offered(host_server, tmp_path / "in", slices=1, file_uris=False)
    [locator] = session.host.get_data(session.uuids, [])
    assert requests.get(locator.URI, timeout=10).status_code == 200
    host_server.admin.end(session.instance["id"], "test")
    assert_not_found(locator.URI)


def test_readers_that_stall_hold_up_no_soap_call(server_factory, tmp_path):
    """http: inputs are served by the bulk pool: 24 readers that never read a 48 MB input leave every
    thread of that pool stuck in sendfile, and SOAP calls are still answered at once."""
    server = server_factory("--threads", "4")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "big.bin").write_bytes(os.urandom(48 << 20))
    inst = server.create_instance(options={"file_uris": False})
    offered = server.admin.offer_inputs(inst["id"], [str(tmp_path / "in")])["availableData"]
    drive(inst["hostURL"], "IDLE", "INPROGRESS")
    host = HostClient(inst["hostURL"])
    [locator] = host.get_data([d.DescriptorUuid for d, *_ in iter_descriptors(offered)], [])
    path = "/" + locator.URI.split("/", 3)[3]
    stalled = []
    try:
        for _ in range(24):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            stalled.append(sock)
        time.sleep(1.5)
        for _ in range(3):
            started = time.monotonic()
            assert host.generate_uid()
            assert time.monotonic() - started < 1.0
    finally:
        for sock in stalled:
            sock.close()


def test_transcoded_copies_and_model_bulk_data_over_http(host_server, tmp_path):
    session = Offered(host_server, tmp_path / "in", slices=1, size=32, file_uris=False)  # pixels > inline size
    [copy] = session.host.get_data(session.uuids, [ImplicitVRLittleEndian])
    assert copy.URI.startswith(f"{host_server.url}/inputs/") and copy.Offset == 0
    data = read_located(copy)
    assert len(data) == copy.Length and data not in session.stored
    ds = pydicom.dcmread(io.BytesIO(data))
    assert ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian and ds.pixel_array.shape == (32, 32)
    [original] = [pydicom.dcmread(io.BytesIO(b)) for b in session.stored]
    assert requests.get(copy.URI, headers={"Range": "bytes=0-127"}, timeout=10).content == data[:128]

    # The pixel data of a Native DICOM Model: a span inside the stored file (offset > 0), served bounded.
    models = session.host.get_as_models(session.uuids, NATIVE_DICOM_MODEL)
    [[bulk]] = [[n.Value for n in r.Result] for r in session.host.query_model(
        models.Models, ['//DicomAttribute[@tag="7FE00010"]/BulkData/@uuid'])]
    [pixels] = session.host.get_data([bulk], [])
    assert pixels.URI.startswith(f"{host_server.url}/inputs/") and pixels.Offset == 0
    served = requests.get(pixels.URI, timeout=10)
    assert served.content == original.PixelData and served.headers["Content-Length"] == str(pixels.Length)
    session.host.release_models(models.Models)  # a bulk-data URL lasts as long as its model
    assert_not_found(pixels.URI)


def test_output_locations_are_http_only_without_file_uris(host_server, server_factory, tmp_path):
    session = Offered(host_server, tmp_path / "in", slices=1, file_uris=False)
    location = session.host.get_output_location(["file:"])  # a preference for file: gets http:
    assert location.startswith(f"{host_server.url}/outputs/")
    with_files = Offered(host_server, tmp_path / "in2", slices=1)
    assert with_files.host.get_output_location(["file:"]).startswith("file:///")  # the default allows file:

    with pytest.raises(AdminError, match="file_uris must be true or false"):
        host_server.admin.create_instance(options={"file_uris": "no"})

    # A deployment without file: URIs and without http: locations cannot serve the application: a Server fault.
    server = server_factory("--no-file-uris", "--output-protocols", "file")
    stuck = Offered(server, tmp_path / "in3", slices=1)
    with pytest.raises(HostCallError) as refused:
        stuck.host.get_output_location(["file:", "http:"])
    assert "Server" in str(refused.value) and "DICOM_HOST_FILE_URIS" in str(refused.value)
    [locator] = stuck.host.get_data(stuck.uuids, [])  # the deployment's default applies to inputs too
    assert locator.URI.startswith(f"{server.url}/inputs/")
    allowed = Offered(server, tmp_path / "in4", slices=1, file_uris=True)  # an instance may allow file:
    assert allowed.host.get_output_location(["http:", "file:"]).startswith("file:///")


def test_handed_back_outputs_are_read_over_the_admin_api(server_factory, tmp_path):
    token = "t" * 40
    server = server_factory(env={"DICOM_HOST_ADMIN_TOKEN": token})
    admin = AdminClient(server.url, token=token)
    inst = admin.create_instance()
    drive(inst["hostURL"], "IDLE", "INPROGRESS")
    host = HostClient(inst["hostURL"])
    folder = Path(host.get_output_location(["file:"])[len("file://"):])
    data = os.urandom(70_000)
    (folder / "sub").mkdir()
    (folder / "sub" / "r é.dcm").write_bytes(data)
    uri = (folder / "sub" / "r é.dcm").as_uri()
    drive(inst["hostURL"], "COMPLETED")
    answer = admin.hand_back(inst["id"], [uri, "file:///etc/passwd"])
    assert set(answer) == {"returned", "urls"} and list(answer["urls"]) == [uri]  # nothing outside locations
    url = answer["urls"][uri]
    assert url.startswith(f"{server.url}/admin/instances/{inst['id']}/files/")
    assert b"".join(admin.read_file(url)) == data  # now from the results folder
    assert b"".join(admin.read_file(url, 1000, 10)) == data[1000:1010]
    auth = {"Authorization": f"Bearer {token}"}
    assert requests.get(url, timeout=10).status_code == 401
    ranged = requests.get(url, headers={**auth, "Range": "bytes=10-19"}, timeout=10)
    assert ranged.status_code == 206 and ranged.content == data[10:20]
    assert requests.head(url, headers=auth, timeout=10).headers["Content-Length"] == str(len(data))
    base = url.split("/files/")[0] + "/files/" + url.split("/files/")[1].split("/")[0]
    for bad in ("/sub/..%2F..%2F..%2Fstore.sqlite3", "/sub/missing.dcm", "/sub", "/"):
        assert requests.get(base + bad, headers=auth, timeout=10).status_code == 404, bad
    other = admin.create_instance()  # the location is not another instance's
    assert requests.get(url.replace(inst["id"], other["id"]), headers=auth, timeout=10).status_code == 404
    assert requests.delete(url, headers=auth, timeout=10).status_code == 405
    with pytest.raises(AdminError, match="404"):
        b"".join(admin.read_file(base + "/sub/missing.dcm"))


def test_run_with_its_embedded_server_and_no_file_uris(tmp_path):
    inputs = tmp_path / "in"
    write_sample_series(inputs, slices=4, size=16)
    data_dir = tmp_path / "data"
    run = run_job(tmp_path / "out", "--app", f"{MIP_APP} --output-protocols file:,http:", "--input", str(inputs),
                  "--no-file-uris", "--data-dir", str(data_dir))
    assert run.returncode == 0, run.describe()
    (entry,) = run.manifest["outputs"]
    check_manifest_entry(run, entry)
    check_mip(run.output / entry["file"], read_series(inputs).popitem()[1])
    instance_id = run.manifest["instance"]["id"]
    store = SQLiteStore(data_dir / "store.sqlite3")
    assert store.get_instance(instance_id).options["file_uris"] is False
    issued = [e.data for e in store.events(instance_id, kinds=["output_location"]) if e.data["action"] == "issued"]
    assert issued and all(e["protocol"] == "http" for e in issued)


def _may_unshare() -> str | None:
    """Why a private mount namespace with a tmpfs cannot be had here, or ``None`` when it can."""
    if os.geteuid() != 0:
        return "mounting a tmpfs in a private mount namespace needs root (or CAP_SYS_ADMIN)"
    try:
        probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                "mount -t tmpfs none /mnt && umount /mnt"], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        return "unshare(1) is not installed"
    if probe.returncode != 0:
        return f"unshare -m / mount -t tmpfs not permitted here: {probe.stderr.strip()[:200]}"
    return None


def test_runner_and_application_that_cannot_see_the_servers_data_dir(server_factory, tmp_path):
    """The issue's proof: the server runs normally; the runner (and so the application it launches) runs in a
    private mount namespace where an empty tmpfs hides the server's data dir, and the application also has
    the inputs hidden under another tmpfs once the runner has offered them. Everything must go over the
    network: inputs as http: URIs, an http: output location, the result read back over the admin API."""
    reason = _may_unshare()
    if reason:
        pytest.skip(reason)
    server = server_factory()
    inputs = tmp_path / "in"
    write_sample_series(inputs, slices=5, size=16)
    out = tmp_path / "out"
    hidden_inputs_app = ("sh -c " + shlex.quote(f"mount -t tmpfs none {shlex.quote(str(inputs))} && exec "
                                                f"{MIP_APP} --output-protocols file:,http: \"$@\"") + " app")
    run = dicom_host_run("--output", str(out), *FAST, "--server", server.url, "--no-file-uris",
                         "--app", hidden_inputs_app, "--input", str(inputs))
    data_dir = shlex.quote(str(server.data_dir))
    script = f'mount -t tmpfs none {data_dir} && test -z "$(ls -A {data_dir})" && exec {shlex.join(run)}'
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], capture_output=True,
                          text=True, timeout=120, env=ENV, cwd=REPO)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-3000:]}"
    manifest = _manifest(out)
    (entry,) = manifest["outputs"]
    check_manifest_entry(Run(0, "", "", out), entry)
    check_mip(out / entry["file"], read_series(inputs).popitem()[1])
    events, _ = server.admin.events(manifest["instance"]["id"], kinds=["output_location"])
    issued = [e["data"] for e in events if e["data"]["action"] == "issued"]
    assert issued and all(e["protocol"] == "http" for e in issued)


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())
