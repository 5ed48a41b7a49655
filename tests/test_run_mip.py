"""``dicom-host run`` end to end with the example MIP application: real server, real subprocesses, real
DICOM in and out, results checked by content (the output is the maximum-intensity projection of the input
series, pixel by pixel)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from hosting_service.admin.client import AdminClient
from hosting_service.dicom.samples import write_sample_series
from run_harness import MIP_APP, run_job

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


@pytest.fixture(scope="module")
def two_series(tmp_path_factory) -> Path:
    """One patient, one study, two CT series of 6 slices of 32x32 (the second with a brighter sphere)."""
    folder = tmp_path_factory.mktemp("inputs")
    write_sample_series(folder, slices=6, series=2, size=32)
    return folder


def read_series(folder: Path) -> dict[str, list[pydicom.Dataset]]:
    series: dict[str, list[pydicom.Dataset]] = {}
    for path in sorted(folder.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    return series


def check_mip(output: Path, sources: list[pydicom.Dataset]) -> pydicom.Dataset:
    """The output file is a Secondary Capture whose pixels are the maximum over ``sources`` in HU."""
    mip = pydicom.dcmread(output)
    assert mip.SOPClassUID == SECONDARY_CAPTURE
    assert mip.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    expected = np.max([apply_modality_lut(s.pixel_array, s) for s in sources], axis=0)
    np.testing.assert_array_equal(apply_modality_lut(mip.pixel_array, mip), expected)
    assert (mip.PatientID, mip.StudyInstanceUID) == (sources[0].PatientID, sources[0].StudyInstanceUID)
    assert mip.SeriesInstanceUID != sources[0].SeriesInstanceUID
    referenced = {item.ReferencedSOPInstanceUID for item in mip.SourceImageSequence}
    assert referenced == {s.SOPInstanceUID for s in sources}
    return mip


def check_manifest_entry(run, entry: dict) -> None:
    path = run.output / entry["file"]
    data = path.read_bytes()
    assert entry["size"] == len(data)
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert entry["mimeType"] == "application/dicom"
    assert entry["classUID"] == SECONDARY_CAPTURE
    assert entry["sopInstanceUID"] == pydicom.dcmread(path).SOPInstanceUID
    assert entry["file"] == f"{entry['sopInstanceUID']}.dcm"


@pytest.mark.parametrize("protocol", ["http", "file"])
def test_mip_of_each_series_over_both_protocols(host_server, two_series, tmp_path, protocol):
    run = run_job(tmp_path / "out", "--app", f"{MIP_APP} --output-protocols {protocol}:", "--input",
                  str(two_series), server=host_server.url)
    assert run.returncode == 0, run.describe()
    assert run.states() == ["IDLE", "INPROGRESS", "COMPLETED", "IDLE", "EXIT"]
    manifest = run.manifest
    assert manifest["outcome"]["result"] == "completed"
    assert manifest["inputs"]["count"] == 12
    outputs = manifest["outputs"]
    assert len(outputs) == 2
    assert {o["uri"].split(":", 1)[0] for o in outputs} == {protocol}
    sources = read_series(two_series)
    for entry in outputs:
        check_manifest_entry(run, entry)
        mip = check_mip(run.output / entry["file"], sources[mip_source_series(run.output / entry["file"])])
        assert entry["patient"]["id"] == mip.PatientID
        assert (entry["studyUID"], entry["seriesUID"]) == (mip.StudyInstanceUID, mip.SeriesInstanceUID)
    assert sum(e["count"] for e in run.kinds("locator")) == 12  # every input fetched by the application

    instance = AdminClient(host_server.url).instance(manifest["instance"]["id"])
    assert instance["endedAt"] is not None and "completed" in instance["endReason"]
    history, _ = AdminClient(host_server.url).events(manifest["instance"]["id"], kinds=["log", "outcome"])
    assert any("INPROGRESS -> COMPLETED" in line["line"] for e in history if e["kind"] == "log"
               for line in e["data"]["lines"]), "the application's output is in the instance log"
    assert "INPROGRESS -> COMPLETED" in (run.output / "app.log").read_text()


def mip_source_series(path: Path) -> str:
    return str(pydicom.dcmread(path).ReferencedSeriesSequence[0].SeriesInstanceUID)


def test_one_task_per_series(host_server, two_series, tmp_path):
    run = run_job(tmp_path / "out", "--app", MIP_APP, "--input", str(two_series), "--task-per", "series",
                  server=host_server.url)
    assert run.returncode == 0, run.describe()
    assert run.states() == ["IDLE", "INPROGRESS", "COMPLETED", "IDLE", "INPROGRESS", "COMPLETED", "IDLE", "EXIT"]
    tasks = run.manifest["tasks"]
    assert [(t["number"], t["inputs"], t["outputs"]) for t in tasks] == [(1, 6, 1), (2, 6, 1)]
    sources = read_series(two_series)
    by_task = {o["task"]: o for o in run.manifest["outputs"]}
    for task in tasks:
        series_uid = task["label"].split()[-1]
        check_mip(run.output / by_task[task["number"]]["file"], sources[series_uid])


def test_embedded_server_and_a_data_dir_kept(two_series, tmp_path):
    """Without --server the run starts its own server; --data-dir keeps its store and results."""
    data_dir = tmp_path / "data"
    run = run_job(tmp_path / "out", "--app", MIP_APP, "--input", str(two_series / "patient1" / "series1"),
                  "--data-dir", str(data_dir))
    assert run.returncode == 0, run.describe()
    assert run.manifest["server"]["embedded"] is True
    (entry,) = run.manifest["outputs"]
    check_mip(run.output / entry["file"], read_series(two_series / "patient1" / "series1").popitem()[1])
    assert (data_dir / "store.sqlite3").is_file()
    assert (data_dir / "instances" / run.manifest["instance"]["id"]).is_dir()
