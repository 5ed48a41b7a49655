"""GetData of a real server delivers every compressed transfer syntax decoded, leaves out (and names) what it
cannot supply, keeps its cache within the configured bound, and serves stored objects as they are when the
application asks for no bulk data."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pydicom
import pytest
import pydicom.data
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000, ExplicitVRLittleEndian, ImplicitVRLittleEndian, UID

from client import HostClient
from hosting_service.dicom.samples import write_sample_series
from hosting_service.model import ObjectLocator, iter_descriptors
from hosting_service.states import State
from run_harness import MIP_APP, run_job

OWN_FILES = Path(__file__).parent / "data" / "transfer-syntaxes"


def get_testdata_file(name: str) -> Path:
    """A test file pydicom ships (never one it would download)."""
    path = pydicom.data.get_testdata_file(name, download=False)
    assert isinstance(path, str), name
    return Path(path)


COMPRESSED = {  # one stored file per compressed transfer syntax pydicom decodes with the project's decoders
    "1.2.840.10008.1.2.4.50": get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"),  # JPEG Baseline, YBR_FULL_422
    "1.2.840.10008.1.2.4.51": get_testdata_file("JPGExtended.dcm"),  # JPEG Extended, 12 bits
    "1.2.840.10008.1.2.4.57": OWN_FILES / "ct_jpeg_lossless_p14.dcm",  # JPEG Lossless, Process 14
    "1.2.840.10008.1.2.4.70": get_testdata_file("SC_rgb_jpeg_gdcm.dcm"),  # JPEG Lossless, SV1
    "1.2.840.10008.1.2.4.80": get_testdata_file("MR_small_jpeg_ls_lossless.dcm"),  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": get_testdata_file("JPEGLSNearLossless_16.dcm"),  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90": get_testdata_file("MR_small_jp2klossless.dcm"),  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": get_testdata_file("JPEG2000.dcm"),  # JPEG 2000
    "1.2.840.10008.1.2.4.201": OWN_FILES / "ct_htj2k_lossless.dcm",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.203": OWN_FILES / "ct_htj2k.dcm",  # HTJ2K
    "1.2.840.10008.1.2.5": get_testdata_file("SC_rgb_rle_2frame.dcm"),  # RLE Lossless, two frames
    "1.2.840.10008.1.2.1.99": get_testdata_file("image_dfl.dcm"),  # Deflated Explicit VR Little Endian
}


def path_of(locator: ObjectLocator) -> Path:
    uri = urlparse(locator.URI)
    assert uri.scheme == "file", locator.URI
    return Path(unquote(uri.path))


def read(locator: ObjectLocator) -> bytes:
    with open(path_of(locator), "rb") as f:
        f.seek(locator.Offset)
        return f.read(locator.Length)


def offer_one_by_one(server, instance: dict, paths: list[Path]) -> list[str]:
    """Offer each file in turn; the descriptor UUIDs in the order of ``paths``."""
    uuids = []
    for path in paths:
        offered = server.admin.offer_inputs(instance["id"], [str(path)])
        assert not offered["problems"], offered["problems"]
        [(descriptor, *_)] = list(iter_descriptors(offered["availableData"]))
        uuids.append(descriptor.DescriptorUuid)
    return uuids


def in_progress(instance: dict) -> HostClient:
    host = HostClient(instance["hostURL"], timeout=120)
    host.notify_state_changed(State.IDLE)
    host.notify_state_changed(State.INPROGRESS)
    return host


@pytest.fixture(scope="module")
def delivered(host_server, tmp_path_factory) -> dict[str, ObjectLocator]:
    """One GetData call for every file of :data:`COMPRESSED`, accepting Explicit VR Little Endian only."""
    folder = tmp_path_factory.mktemp("compressed")
    paths = []
    for syntax, source in COMPRESSED.items():
        paths.append(folder / f"{syntax}.dcm")
        shutil.copyfile(source, paths[-1])
    instance = host_server.create_instance()
    uuids = offer_one_by_one(host_server, instance, paths)
    locators = in_progress(instance).get_data(uuids, [ExplicitVRLittleEndian], True)
    assert [str(l.Source).lower() for l in locators] == [u.lower() for u in uuids]
    return dict(zip(COMPRESSED, locators))


@pytest.mark.parametrize("syntax", list(COMPRESSED), ids=lambda uid: UID(uid).name)
def test_compressed_syntax_is_delivered_as_explicit_vr_little_endian(delivered, syntax):
    locator = delivered[syntax]
    stored = pydicom.dcmread(COMPRESSED[syntax])
    assert stored.file_meta.TransferSyntaxUID == syntax

    assert (locator.Offset, locator.Length) == (0, path_of(locator).stat().st_size)  # a whole Part 10 file
    got = pydicom.dcmread(path_of(locator))
    assert locator.TransferSyntax == ExplicitVRLittleEndian == got.file_meta.TransferSyntaxUID
    assert "PixelData" in got and not got["PixelData"].is_undefined_length
    assert np.array_equal(got.pixel_array, stored.pixel_array)  # the pixels of pydicom's own decode
    assert got.SOPInstanceUID == stored.SOPInstanceUID  # the same instance, in another transfer syntax


def write_undecodable(source: Path, target: Path) -> None:
    """``source`` with its pixel data replaced by a JPEG 2000 frame that no decoder can read, as a new instance."""
    broken = pydicom.dcmread(source)
    broken.PixelData = encapsulate([b"\xff\x4f\xff\x51 not a codestream"])
    broken["PixelData"].VR = "OB"
    broken.file_meta.TransferSyntaxUID = JPEG2000
    broken.SOPInstanceUID = broken.file_meta.MediaStorageSOPInstanceUID = UID("2.25.1")
    broken.save_as(target, enforce_file_format=True)


def test_an_object_that_cannot_be_decoded_is_left_out_and_named(host_server, tmp_path):
    good = get_testdata_file("MR_small_jp2klossless.dcm")
    write_undecodable(good, tmp_path / "broken.dcm")
    instance = host_server.create_instance()
    first, bad, last = offer_one_by_one(host_server, instance, [good, tmp_path / "broken.dcm", good])

    locators = in_progress(instance).get_data([first, bad, last], [ExplicitVRLittleEndian], True)

    assert [str(l.Source).lower() for l in locators] == [first.lower(), last.lower()]
    for locator in locators:
        assert pydicom.dcmread(path_of(locator)).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    [warning] = [w for w in host_server.admin.instance(instance["id"])["warnings"] if w.get("operation") == "GetData"]
    assert warning["object"] == bad and bad in warning["message"]
    assert "cannot be supplied" in warning["message"] and "re-encoding failed" in warning["message"]


def test_a_task_goes_on_without_the_object_the_host_cannot_supply(host_server, tmp_path):
    """Under ``dicom-host run``, the MIP of a series with one undecodable slice is the MIP of the others, and the
    manifest names the slice left out."""
    slices = write_sample_series(tmp_path / "in", slices=4, size=16)
    write_undecodable(slices[0], slices[0])

    run = run_job(tmp_path / "out", "--app", MIP_APP, "--input", str(tmp_path / "in"), server=host_server.url)

    assert run.returncode == 0, run.describe()
    [entry] = run.manifest["outputs"]
    mip = pydicom.dcmread(run.output / entry["file"])
    assert {i.ReferencedSOPInstanceUID for i in mip.SourceImageSequence} == {
        pydicom.dcmread(p).SOPInstanceUID for p in slices[1:]}
    [left_out] = [w for w in run.manifest["warnings"] if w.get("operation") == "GetData"]
    assert "re-encoding failed" in left_out["message"]


@pytest.mark.parametrize("acceptable", [[], [ImplicitVRLittleEndian, ExplicitVRLittleEndian]], ids=["as-stored", "listed"])
def test_without_bulk_data_the_stored_file_is_served_as_it_is(host_server, tmp_path, acceptable):
    """includeBulkData=FALSE is a permission: no copy is made to leave the pixels out (CTK's example application
    asks for no bulk data, then renders the pixels)."""
    [stored] = write_sample_series(tmp_path / "in", slices=1, transfer_syntax=ImplicitVRLittleEndian)
    instance = host_server.create_instance()
    [source] = offer_one_by_one(host_server, instance, [stored])

    [locator] = in_progress(instance).get_data([source], acceptable, False)

    assert path_of(locator) == stored and (locator.Offset, locator.Length) == (0, stored.stat().st_size)
    assert locator.TransferSyntax == ImplicitVRLittleEndian and read(locator) == stored.read_bytes()
    handout = host_server.data_dir / "instances" / instance["id"] / "delivery-cache"
    assert not handout.exists() or not any(handout.iterdir())


def test_the_cache_keeps_to_its_configured_bound(server_factory, tmp_path):
    paths = write_sample_series(tmp_path / "in", slices=12)
    one_copy = 64 * 64 * 2 + 2000
    bound = 4 * one_copy
    server = server_factory(env={"DICOM_HOST_DELIVERY_CACHE_BYTES": str(bound)})
    instance = server.create_instance()
    uuids = offer_one_by_one(server, instance, paths)
    host = in_progress(instance)

    locators = host.get_data(uuids, [ImplicitVRLittleEndian], True)
    again = host.get_data(uuids[-2:], [ImplicitVRLittleEndian], True)  # the most recent copies, still cached

    entries = list((server.data_dir / "delivery-cache").glob("*.dcm"))
    assert len(locators) == 12 and 2 <= len(entries) and sum(os.path.getsize(e) for e in entries) <= bound
    assert {path_of(l).name for l in again} <= {e.name for e in entries}
    for locator, path in zip(locators, paths):  # evicted or not, what was handed out is still there
        got = pydicom.dcmread(path_of(locator))
        assert got.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
        assert np.array_equal(got.pixel_array, pydicom.dcmread(path).pixel_array)
