"""The host as a model source (PS3.19 §8.3.3-§8.3.7, Annex A), through the real server: models of many
kinds of objects validated against the Annex A schemas, XPath queries in the standard's style, bulk data
through GetData equal to what pydicom reads, release (explicit and at IDLE), faults, caps and isolation."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from lxml import etree
from pydicom.data import get_charset_files, get_testdata_file

from client import HostClient, HostCallError, read_located
from conftest import drive
from hosting_service.dicom.samples import write_sample_series
from hosting_service.model import iter_descriptors
from hosting_service.models import ABSTRACT_IMAGE_MODEL, ABSTRACT_NS, NATIVE_DICOM_MODEL, NATIVE_NS, schema_path

NATIVE_FILES = {
    "CT_small.dcm": get_testdata_file,  # CT, private GEMS tags
    "MR_small.dcm": get_testdata_file,  # MR
    "rtplan.dcm": get_testdata_file,  # RT plan, nested sequences, Implicit VR
    "test-SR.dcm": get_testdata_file,  # structured report
    "rtdose.dcm": get_testdata_file,  # multi-frame
    "priv_SQ.dcm": get_testdata_file,  # private sequence
    "MR_small_RLE.dcm": get_testdata_file,  # compressed (RLE)
    "JPEG2000.dcm": get_testdata_file,  # compressed (JPEG 2000)
    "MR_small_bigendian.dcm": get_testdata_file,
    "image_dfl.dcm": get_testdata_file,  # Deflated: bulk data is copied
    "chrH31.dcm": get_charset_files,  # Japanese person names (ISO 2022 IR 87)
    "chrX1.dcm": get_charset_files,  # UTF-8 person names
}


def schema(class_uid: str) -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(schema_path(class_uid))))


def _path(name: str) -> str:
    getter = NATIVE_FILES.get(name, get_testdata_file)
    found = getter(name)
    return found[0] if isinstance(found, list) else found


class Session:
    """One instance at INPROGRESS with some files offered, and the application's HostClient."""

    def __init__(self, server, folder: Path, files: dict[str, str]):
        self.server = server
        self.instance = server.create_instance()
        self.uuids: dict[str, str] = {}
        self.paths: dict[str, str] = {}
        for name, source in files.items():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
            offered = server.admin.offer_inputs(self.instance["id"], [str(target)])["availableData"]
            [descriptor] = [entry[0] for entry in iter_descriptors(offered)]
            self.uuids[name], self.paths[name] = descriptor.DescriptorUuid, str(target)
        drive(self.instance["hostURL"], "IDLE", "INPROGRESS")
        self.host = HostClient(self.instance["hostURL"])

    def models(self, names, class_uid=NATIVE_DICOM_MODEL):
        return self.host.get_as_models([self.uuids[n] for n in names], class_uid)

    def values(self, models, xpath):
        return [[node.Value for node in result.Result] for result in self.host.query_model(models, [xpath])]


@pytest.fixture(scope="module")
def native(host_server, tmp_path_factory):
    session = Session(host_server, tmp_path_factory.mktemp("native"), {n: _path(n) for n in NATIVE_FILES})
    descriptor = session.models(list(NATIVE_FILES))
    assert descriptor.FailedSourceObjects == [] and descriptor.InfosetType == "text/xml"
    session.by_name = dict(zip(NATIVE_FILES, descriptor.Models))
    return session


def test_every_native_model_validates_against_the_annex_a_schema(native):
    rng = schema(NATIVE_DICOM_MODEL)
    results = native.host.query_model(list(native.by_name.values()), ["/"])
    assert [r.Model for r in results] == list(native.by_name.values())
    for name, result in zip(native.by_name, results):
        [node] = result.Result
        assert node.NodeType == "Root"
        document = etree.fromstring(node.Value.encode())
        assert document.tag == f"{{{NATIVE_NS}}}NativeDicomModel"
        assert rng.validate(document), (name, rng.error_log.last_error)
        ds = pydicom.dcmread(native.paths[name], force=True)
        top = [e for e in ds if e.tag.element != 0]
        assert len(document) == len(top), name  # one DicomAttribute per top-level attribute


def test_the_standards_example_xpath_style(native):
    sr = pydicom.dcmread(native.paths["test-SR.dcm"])
    xpath = ('/NativeDicomModel/DicomAttribute[@keyword="ConceptNameCodeSequence"]/Item[@number=1]'
             '/DicomAttribute[@keyword="CodeMeaning"]/Value[@number=1]')
    [[value]] = native.values([native.by_name["test-SR.dcm"]], xpath + "/text()")
    assert value == sr.ConceptNameCodeSequence[0].CodeMeaning
    [[element]] = native.values([native.by_name["test-SR.dcm"]], xpath)
    parsed = etree.fromstring(element.encode())
    assert parsed.tag == f"{{{NATIVE_NS}}}Value" and parsed.get("number") == "1"

    plan = pydicom.dcmread(native.paths["rtplan.dcm"])
    names = native.values([native.by_name["rtplan.dcm"]],
                          '/NativeDicomModel/DicomAttribute[@keyword="BeamSequence"]/Item/'
                          'DicomAttribute[@keyword="BeamName"]/Value[@number=1]/text()')
    assert names == [[beam.BeamName for beam in plan.BeamSequence]]
    [[rows]] = native.values([native.by_name["MR_small.dcm"]], 'string(//DicomAttribute[@tag="00280010"]/Value)')
    assert rows == "64"


def test_results_come_model_major_then_xpath_with_node_types(native):
    models = [native.by_name["CT_small.dcm"], native.by_name["MR_small.dcm"]]
    xpaths = ['//DicomAttribute[@keyword="Modality"]/Value/text()', 'count(//DicomAttribute)',
              '//DicomAttribute[@keyword="Modality"]/@vr', '//DicomAttribute[@keyword="Modality"]']
    results = native.host.query_model(models, xpaths)
    assert [(r.Model, r.XPath) for r in results] == [(m, x) for m in models for x in xpaths]
    assert [[n.NodeType for n in r.Result] for r in results[:4]] == [["Text"], ["Text"], ["Attribute"], ["Element"]]
    assert [r.Result[0].Value for r in results[::4]] == ["CT", "MR"]
    info = native.host.query_info_set(models, xpaths)
    assert [[(n.NodeType, n.InfoSetValue) for n in r.Result] for r in info] == [
        [(n.NodeType, n.Value.encode()) for n in r.Result] for r in results]


def test_private_tags_and_non_ascii_person_names(native):
    ct = pydicom.dcmread(native.paths["CT_small.dcm"])
    private = next(e for e in ct if e.tag.is_private and e.tag.element >= 0x1000)
    creator = ct[(private.tag.group, private.tag.element >> 8)].value
    [[found]] = native.values([native.by_name["CT_small.dcm"]], f'//DicomAttribute[@tag="{private.tag:08X}"]/@privateCreator')
    assert found == creator
    assert native.values([native.by_name["CT_small.dcm"]], f'//DicomAttribute[@tag="{private.tag:08X}"]/@keyword') == [[]]

    for name in ("chrH31.dcm", "chrX1.dcm"):
        pn = pydicom.dcmread(native.paths[name]).PatientName
        [[family]] = native.values([native.by_name[name]], '//DicomAttribute[@keyword="PatientName"]/PersonName[@number=1]'
                                                          '/Alphabetic/FamilyName/text()')
        assert family == pn.components[0].split("^")[0]
        if len(pn.components) > 1:
            [[ideographic]] = native.values([native.by_name[name]], '//DicomAttribute[@keyword="PatientName"]'
                                                                   '/PersonName/Ideographic/FamilyName/text()')
            assert ideographic == pn.components[1].split("^")[0] and not ideographic.isascii()


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "MR_small_bigendian.dcm",
                                  "image_dfl.dcm", "rtdose.dcm"])
def test_pixel_data_through_getdata_equals_what_pydicom_reads(native, name):
    model = native.by_name[name]
    [[value]] = native.values([model], '//DicomAttribute[@tag="7FE00010"]/BulkData/@uuid | '
                                       '//DicomAttribute[@tag="7FE00010"]/InlineBinary/text()')
    expected = pydicom.dcmread(native.paths[name]).PixelData
    if len(expected) <= 1024:
        import base64
        assert base64.b64decode(value) == expected
        return
    [locator] = native.host.get_data([value])
    assert locator.Source == value and locator.Locator
    assert read_located(locator) == expected
    if name != "image_dfl.dcm":  # where the bytes lie in the file: no copy
        assert locator.URI == Path(native.paths[name]).resolve().as_uri() and locator.Offset > 0


@pytest.fixture(scope="module")
def abstract(host_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("abstract")
    series = write_sample_series(folder / "series", slices=6, size=32)
    files = {f"series/{p.name}": str(p) for p in reversed(series)}  # offered out of order
    files.update({n: get_testdata_file(n) for n in ("rtdose.dcm", "SC_rgb_rle_2frame.dcm", "rtplan.dcm",
                                                    "MR_small.dcm")})
    return Session(host_server, folder, files)


def test_abstract_image_models_of_a_series_and_multi_frame_objects(abstract):
    names = list(abstract.uuids)
    descriptor = abstract.models(names, ABSTRACT_IMAGE_MODEL)
    assert descriptor.FailedSourceObjects == [abstract.uuids["rtplan.dcm"]]  # no pixel data
    assert len(descriptor.Models) == 4  # the series, rtdose, the RGB object, MR_small
    rng = schema(ABSTRACT_IMAGE_MODEL)
    documents = [etree.fromstring(r.Result[0].Value.encode()) for r in abstract.host.query_model(descriptor.Models, ["/"])]
    for document in documents:
        assert document.tag == f"{{{ABSTRACT_NS}}}AbstractImageDataSet"
        assert rng.validate(document), rng.error_log.last_error

    series_model = descriptor.Models[0]
    sizes = abstract.values([series_model], "/AbstractImageDataSet/Dimension/@numberOfSamples")
    assert sizes == [["32", "32", "6"]]
    slices = sorted((n for n in names if n.startswith("series/")),
                    key=lambda n: float(pydicom.dcmread(abstract.paths[n]).ImagePositionPatient[2]))
    order = abstract.values([series_model], "//DataAt/@descriptorUUID")
    assert order == [[abstract.uuids[n] for n in slices]]
    [bulk] = abstract.values([series_model], "//DataAt/@bulkDataUUID")
    for name, locator in zip(slices, abstract.host.get_data(bulk)):
        assert read_located(locator) == pydicom.dcmread(abstract.paths[name]).pixel_array.astype("<i2").tobytes()
    assert abstract.values([series_model], "//Dimension[@idNumber=3]/Regular/@spacing") != [[]]

    rgb_model = descriptor.Models[2]
    assert abstract.values([rgb_model], "count(/AbstractImageDataSet/Component)") == [["3"]]
    [bulk] = abstract.values([rgb_model], "//DataAt/@bulkDataUUID")
    pixels = pydicom.dcmread(get_testdata_file("SC_rgb_rle_2frame.dcm")).pixel_array
    assert [read_located(l) for l in abstract.host.get_data(bulk)] == [pixels[0].tobytes(), pixels[1].tobytes()]

    [bulk] = abstract.values([descriptor.Models[1]], "//DataAt/@bulkDataUUID")
    dose = pydicom.dcmread(get_testdata_file("rtdose.dcm")).pixel_array
    assert len(bulk) == dose.shape[0]
    assert read_located(abstract.host.get_data([bulk[3]])[0]) == np.ascontiguousarray(dose[3]).astype(
        dose.dtype.newbyteorder("<")).tobytes()


def fault(call) -> str:
    with pytest.raises(HostCallError) as caught:
        call()
    assert "soap:Client" in str(caught.value) or "Client" in str(caught.value)
    return str(caught.value)


def test_malformed_queries_get_client_faults(native, host_server):
    model = native.by_name["MR_small.dcm"]
    assert "is not an XPath 1.0 expression" in fault(lambda: native.host.query_model([model], ["//DicomAttribute["]))
    assert "cannot be evaluated" in fault(lambda: native.host.query_model([model], ["nosuchfunction(1)"]))
    unknown = "1e0d3c52-0000-4000-8000-000000000000"
    assert "no such model" in fault(lambda: native.host.query_info_set([model, unknown], ["/"]))
    assert "is not a model class" in fault(lambda: native.host.get_as_models([native.uuids["MR_small.dcm"]], "1.2.3"))
    # objects never offered cannot be represented: the standard's FailedSourceObjects, and a warning
    assert native.host.get_as_models([unknown], NATIVE_DICOM_MODEL).FailedSourceObjects == [unknown]
    warnings, _ = host_server.admin.events(native.instance["id"], kinds=["warning"])
    assert f"{unknown}: not offered to this application" in warnings[-1]["data"]["message"]

    other = Session(host_server, Path(native.paths["MR_small.dcm"]).parent / "other", {})
    assert "no such model" in fault(lambda: other.host.query_model([model], ["/"]))  # another instance's model
    [[bulk]] = native.values([native.by_name["CT_small.dcm"]], '//DicomAttribute[@tag="7FE00010"]/BulkData/@uuid')
    assert "not offered" in fault(lambda: other.host.get_data([bulk]))


def test_caps_bound_models_per_call_and_answer_size(server_factory, tmp_path):
    server = server_factory(env={"DICOM_HOST_MODELS_MAX_PER_CALL": "2", "DICOM_HOST_MODELS_MAX_ANSWER": "5000"})
    session = Session(server, tmp_path / "in", {n: get_testdata_file(n) for n in ("MR_small.dcm", "CT_small.dcm",
                                                                                 "rtplan.dcm")})
    assert "at most 2 per call" in fault(lambda: session.models(["MR_small.dcm", "CT_small.dcm", "rtplan.dcm"]))
    models = session.models(["MR_small.dcm", "CT_small.dcm"]).Models
    assert session.values(models, "count(//Value)")  # small answers pass
    assert "at most 2 per call" in fault(lambda: session.host.query_model([*models, models[0]], ["/"]))
    assert "would exceed 5000 bytes" in fault(lambda: session.host.query_model(models, ["/"]))


def test_release_and_idle_release_models_but_not_locators(host_server, tmp_path):
    session = Session(host_server, tmp_path / "in", {"CT_small.dcm": get_testdata_file("CT_small.dcm"),
                                                     "MR_small.dcm": get_testdata_file("MR_small.dcm")})
    first, second = session.models(["CT_small.dcm", "MR_small.dcm"]).Models
    [[bulk]] = session.values([first], '//DicomAttribute[@tag="7FE00010"]/BulkData/@uuid')
    [locator] = session.host.get_data([bulk])
    again = session.models(["CT_small.dcm"]).Models
    assert again[0] not in (first, second)  # each successful call returns a different model UUID

    session.host.release_models([first])
    assert "no such model" in fault(lambda: session.host.query_model([first], ["/"]))
    assert "not offered" in fault(lambda: session.host.get_data([bulk]))  # its bulk data goes with it
    assert read_located(locator) == pydicom.dcmread(session.paths["CT_small.dcm"]).PixelData  # locators stay
    assert session.values([second], "count(/NativeDicomModel)") == [["1"]]

    drive(session.instance["hostURL"], "COMPLETED", "IDLE", "INPROGRESS")
    assert "no such model" in fault(lambda: session.host.query_model([second], ["/"]))
    assert "no such model" in fault(lambda: session.host.query_model(again, ["/"]))
    kinds = [e["data"] for e in host_server.admin.events(session.instance["id"], kinds=["models"])[0]]
    assert kinds[-1]["action"] == "released" and kinds[-1]["models"] == 2
