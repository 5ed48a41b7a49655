"""Scanning files and folders into AvailableData: the tree, the descriptors, the problems, the split."""
from __future__ import annotations

import datetime
import os
import re
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from hosting_service.dicom.inputs import scan
from hosting_service.dicom.samples import write_sample_series
from hosting_service.model import iter_descriptors, to_jsonable

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@pytest.fixture
def inputs(tmp_path) -> tuple[Path, list[Path]]:
    """A folder holding a series two levels down, a text file, a hidden file and two broken DICOM files."""
    root = tmp_path / "inputs"
    series = write_sample_series(root / "nested", slices=4)
    good = series[0].read_bytes()
    (root / "report.txt").write_text("not an image")
    (root / "broken.dcm").write_bytes(good[:132] + b"\xff" * 64)  # DICM prefix, then nothing DICOM
    (root / "truncated.dcm").write_bytes(good[:700])  # cut inside the patient module
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return root, series


def write_dicom(path: Path, **attributes) -> Path:
    """A Part 10 file with just ``attributes`` (and what every object has after the series UID); values
    are written as given, valid or not."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    with pydicom.config.disable_value_validation():
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
    ds.InstanceNumber = 1
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def test_series_becomes_the_patient_study_series_tree(inputs):
    root, series = inputs

    result = scan([root])

    first = pydicom.dcmread(series[0])
    [patient] = result.available.Patients
    assert (patient.ID, patient.AssigningAuthority, patient.Name, patient.Sex) == (
        first.PatientID, first.IssuerOfPatientID, str(first.PatientName), first.PatientSex)
    assert patient.DateOfBirth == datetime.datetime.strptime(first.PatientBirthDate, "%Y%m%d")
    [study] = patient.Studies
    assert study.StudyUID == first.StudyInstanceUID
    [series_node] = study.Series
    assert series_node.SeriesUID == first.SeriesInstanceUID
    assert not patient.ObjectDescriptors and not study.ObjectDescriptors

    descriptors = series_node.ObjectDescriptors
    assert len(descriptors) == 4
    for d in descriptors:
        assert (d.ClassUID, d.MimeType, d.Modality, d.TransferSyntaxUID) == (
            CTImageStorage, "application/dicom", "CT", ExplicitVRLittleEndian)
        assert UUID4.fullmatch(d.DescriptorUuid)
    assert len({d.DescriptorUuid for d in descriptors}) == 4


def test_other_files_are_top_level_and_broken_ones_reported(inputs):
    root, series = inputs

    result = scan([root])

    [text] = result.available.ObjectDescriptors
    assert text.MimeType == "text/plain" and text.ClassUID is None and text.TransferSyntaxUID is None
    problems = dict(result.problems)
    assert set(problems) == {str(root / "broken.dcm"), str(root / "truncated.dcm")}
    assert "SOP Class UID" in problems[str(root / "broken.dcm")]
    assert "truncated" in problems[str(root / "truncated.dcm")]
    # in name order: broken.dcm (skipped), nested/..., report.txt, truncated.dcm (skipped); .DS_Store hidden
    assert [o.path for o in result.objects] == [str(p) for p in series] + [str(root / "report.txt")]
    for obj in result.objects:
        assert obj.offset == 0 and obj.length == os.path.getsize(obj.path)
    in_tree = [d for d, *_ in iter_descriptors(result.available)]
    assert sorted(id(o.descriptor) for o in result.objects) == sorted(id(d) for d in in_tree)


def test_paths_given_twice_missing_paths_and_broken_links(inputs, tmp_path):
    root, series = inputs
    (root / "dangling.dcm").symlink_to(tmp_path / "nowhere.dcm")
    (root / "nested" / "loop").symlink_to(root)

    result = scan([series[1], root, tmp_path / "missing"])

    assert len(result.objects) == 5  # series[1] offered once, the loop not followed twice
    assert result.objects[0].path == str(series[1])
    problems = dict(result.problems)
    assert problems[str(tmp_path / "missing")] == "no such file or folder"
    assert problems[str(root / "dangling.dcm")] == "broken symbolic link"


def test_data_sets_without_part10_header(tmp_path):
    source = pydicom.dcmread(write_sample_series(tmp_path / "series", slices=1)[0])
    source.file_meta, source.preamble = FileMetaDataset(), None
    pydicom.dcmwrite(tmp_path / "raw", source, implicit_vr=True, little_endian=True)
    (tmp_path / "looks-like-a-data-set").write_bytes(b"\x08\x00\x16\x00" + bytes(range(256)) * 4)
    (tmp_path / "empty.dcm").write_bytes(b"")

    result = scan([tmp_path / "raw", tmp_path / "looks-like-a-data-set", tmp_path / "empty.dcm"])

    raw = result.objects[0].descriptor
    assert (raw.MimeType, raw.ClassUID, raw.TransferSyntaxUID) == ("application/dicom", CTImageStorage,
                                                                 ImplicitVRLittleEndian)
    assert result.available.Patients[0].Studies[0].Series[0].ObjectDescriptors == [raw]
    assert result.objects[1].descriptor.MimeType == "application/octet-stream"
    assert result.problems == [(str(tmp_path / "empty.dcm"), "named as DICOM but holds no DICOM data set")]


def test_objects_hang_at_the_lowest_level_they_have(tmp_path):
    study_uid = generate_uid()
    write_dicom(tmp_path / "a-series.dcm", PatientID="P1", IssuerOfPatientID="A", StudyInstanceUID=study_uid,
                SeriesInstanceUID=generate_uid(), PatientBirthDate="19801345")
    write_dicom(tmp_path / "b-study.dcm", PatientID="P1", IssuerOfPatientID="A", StudyInstanceUID=study_uid)
    write_dicom(tmp_path / "c-patient.dcm", PatientID="P1", IssuerOfPatientID="A")
    write_dicom(tmp_path / "d-other-issuer.dcm", PatientID="P1", IssuerOfPatientID="B", StudyInstanceUID=study_uid)
    write_dicom(tmp_path / "e-nobody.dcm")

    result = scan([tmp_path])

    assert not result.problems
    first, second = result.available.Patients
    assert (first.ID, first.AssigningAuthority, first.DateOfBirth) == ("P1", "A", None)  # invalid date omitted
    assert (second.ID, second.AssigningAuthority) == ("P1", "B")
    assert len(first.ObjectDescriptors) == 1 and len(first.Studies) == 1
    assert len(first.Studies[0].ObjectDescriptors) == 1 and len(first.Studies[0].Series) == 1
    assert len(second.Studies[0].ObjectDescriptors) == 1 and not second.Studies[0].Series
    [nobody] = result.available.ObjectDescriptors
    assert nobody.MimeType == "application/dicom" and nobody.Modality is None


def test_scans_are_deterministic_but_uuids_fresh(tmp_path):
    write_sample_series(tmp_path, slices=2, patients=2, series=2)

    first, second = scan([tmp_path]), scan([tmp_path])

    def without_uuids(result):
        for d, *_ in iter_descriptors(result.available):
            d.DescriptorUuid = None
        return to_jsonable(result.available), [o.path for o in result.objects]

    uuids = {d.DescriptorUuid for r in (first, second) for d, *_ in iter_descriptors(r.available)}
    assert len(uuids) == 16
    assert without_uuids(first) == without_uuids(second)
    assert first.available.Patients[1].Name == "ØSTERGAARD^BJØRN"
