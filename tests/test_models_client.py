"""Models on the application side, through the real server and real subprocess applications: an example
application that reads its inputs only through models, end to end under ``dicom-host run``; and the host
as a model recipient, reading a kit application's DICOM outputs through the Native DICOM Models it offers."""
from __future__ import annotations

import io
import json

import numpy as np
import pydicom
import pytest
from lxml import etree

from client import ApplicationCallError, read_located
from client.models import Models
from hosting_service.dicom.samples import write_sample_series
from hosting_service.models import NATIVE_DICOM_MODEL, NATIVE_NS, schema_path
from hosting_service.models.recipient import save_output_models
from hosting_service.states import State
from run_harness import PYTHON, run_job
from test_client_apps import launch, output_uuids  # noqa: F401 (a fixture)

MODELS_APP = f"{PYTHON} -m client.examples.models_app"


def test_an_application_working_only_through_models_under_dicom_host_run(host_server, tmp_path):
    series = write_sample_series(tmp_path / "in", slices=4, size=24)
    run = run_job(tmp_path / "out", "--app", MODELS_APP, "--input", str(tmp_path / "in"), server=host_server.url)
    assert run.returncode == 0, run.describe()
    [entry] = run.manifest["outputs"]
    report = json.loads((run.output / entry["file"]).read_text())
    assert report["failedSourceObjects"] == []
    by_uid = {image["SOPInstanceUID"]: image for image in report["images"]}
    assert len(by_uid) == len(series)
    for path in series:
        ds = pydicom.dcmread(path)
        image = by_uid[ds.SOPInstanceUID]
        assert (image["Rows"], image["Columns"]) == (str(ds.Rows), str(ds.Columns))
        pixels = ds.pixel_array
        assert image["statistics"] == {"min": int(pixels.min()), "max": int(pixels.max()),
                                       "mean": pytest.approx(float(pixels.mean()))}
    events, _ = host_server.admin.events(run.manifest["instance"]["id"], kinds=["models", "locator"])
    assert [e["data"]["action"] for e in events if e["kind"] == "models"][0] == "built"
    # its only GetData calls were for bulk data: one locator per image's Pixel Data
    assert sum(e["data"]["count"] for e in events if e["kind"] == "locator") == len(series)


def test_the_host_reads_a_kit_applications_outputs_through_its_models(launch, tmp_path):  # noqa: F811
    write_sample_series(tmp_path / "in", slices=3, size=32)  # 2 KiB of pixels: bulk data, not inline
    app = launch("mip_app", "--output-protocols", "file:")
    app.move(State.INPROGRESS)
    assert app.client.notify_data_available(app.offer(tmp_path / "in"), True) is True
    app.wait_reported(State.COMPLETED)
    [output] = output_uuids(app)
    [locator] = app.client.get_data([output])
    written = pydicom.dcmread(io.BytesIO(read_located(locator)))

    with Models.of(app.client, [output], NATIVE_DICOM_MODEL) as models:
        assert models.failed == [] and len(models.uuids) == 1
        [document] = models.documents()
        rng = etree.RelaxNG(etree.parse(str(schema_path(NATIVE_DICOM_MODEL))))
        assert document.tag == f"{{{NATIVE_NS}}}NativeDicomModel" and rng.validate(document), rng.error_log
        assert models.values('/NativeDicomModel/DicomAttribute[@keyword="SOPInstanceUID"]/Value/text()') == [
            [written.SOPInstanceUID]]
        [[bulk]] = models.values('//DicomAttribute[@tag="7FE00010"]/BulkData/@uuid')
        [(bulk_locator, pixels)] = models.located([bulk])
        assert bulk_locator.URI == locator.URI and bulk_locator.Offset > 0  # inside the output as written
        assert pixels == written.PixelData
        info = models.query_info_set('//DicomAttribute[@keyword="Modality"]/Value/text()')
        assert info[0].Result[0].InfoSetValue == written.Modality.encode()
        model = models.uuids[0]
    with pytest.raises(ApplicationCallError, match="no such model of this application"):
        app.client.query_model([model], ["/"])
    with pytest.raises(ApplicationCallError, match="not announced by this application"):
        app.client.get_data([bulk])  # its bulk data went with the model
    with pytest.raises(ApplicationCallError, match="Native DICOM Models .* only"):
        app.client.get_as_models([output], "1.2.840.10008.7.1.2")

    summary = save_output_models(app.client, [output], tmp_path / "results")
    assert summary["failed"] == [] and summary["error"] is None
    saved = etree.parse(str(tmp_path / "results" / summary["models"][output]))
    assert rng.validate(saved)
    assert np.array_equal(np.frombuffer(pixels, np.uint8), np.frombuffer(written.PixelData, np.uint8))

    app.move(State.IDLE)
    with pytest.raises(ApplicationCallError, match="announced no outputs"):
        app.client.query_model([model], ["/"])


def test_dicom_host_run_saves_the_outputs_models_with_output_models(host_server, tmp_path):
    """``--output-models``: the host, as model recipient, reads the MIP app's output through the Native DICOM
    Model the kit offers and keeps it beside the object, listed in the manifest."""
    write_sample_series(tmp_path / "in", slices=3, size=32)
    run = run_job(tmp_path / "out", "--app", f"{PYTHON} -m client.examples.mip_app", "--input",
                  str(tmp_path / "in"), "--output-models", server=host_server.url)
    assert run.returncode == 0, run.describe()
    [entry] = run.manifest["outputs"]
    assert set(run.manifest["models"]) == {entry["descriptorUuid"]}
    model = etree.parse(str(run.output / run.manifest["models"][entry["descriptorUuid"]]))
    etree.RelaxNG(etree.parse(str(schema_path(NATIVE_DICOM_MODEL)))).assertValid(model)
    sop = model.xpath("//n:DicomAttribute[@keyword='SOPInstanceUID']/n:Value/text()", namespaces={"n": NATIVE_NS})
    assert sop == [entry["sopInstanceUID"]]
