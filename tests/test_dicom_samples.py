"""The generated sample data: valid CT series that pydicom reads back, deterministic, and a working CLI."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_rescale
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from hosting_service.dicom.samples import write_sample_series

CT_IMAGE_TYPE_1_AND_2 = [
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "Modality",
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "AccessionNumber",
    "ReferringPhysicianName", "StudyID", "SeriesNumber", "InstanceNumber", "ImageType", "ImagePositionPatient",
    "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "SamplesPerPixel", "PhotometricInterpretation",
    "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "RescaleIntercept",
    "RescaleSlope", "KVP", "AcquisitionNumber", "PositionReferenceIndicator", "PixelData",
]


def test_default_series_is_a_valid_ct_series_with_a_visible_phantom(tmp_path):
    paths = write_sample_series(tmp_path)

    assert len(paths) == 16
    datasets = [pydicom.dcmread(p) for p in paths]
    for ds in datasets:
        missing = [k for k in CT_IMAGE_TYPE_1_AND_2 if k not in ds]
        assert not missing, missing
        assert ds.SOPClassUID == CTImageStorage == ds.file_meta.MediaStorageSOPClassUID
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert (ds.Rows, ds.Columns) == (64, 64)
        assert ds.pixel_array.dtype == np.int16
    assert len({ds.SOPInstanceUID for ds in datasets}) == 16
    assert len({(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID) for ds in datasets}) == 1
    uids = [ds.SOPInstanceUID for ds in datasets] + [datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID]
    assert all(u.startswith("2.25.") and len(u) <= 64 and u.is_valid for u in uids)

    z = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    assert np.allclose(np.diff(z), -float(datasets[0].SliceThickness))
    assert [ds.InstanceNumber for ds in datasets] == list(range(1, 17))

    hu = np.stack([apply_rescale(ds.pixel_array, ds) for ds in datasets])
    mip = hu.max(axis=0)
    assert mip[0, 0] < -900  # air in the corner
    assert mip.max() > 1000  # the bone sphere
    assert np.count_nonzero(mip > 200) > np.count_nonzero(hu[0] > 200)  # spheres off the first slice show up


def test_same_seed_same_bytes_other_seed_other_uids(tmp_path):
    first = write_sample_series(tmp_path / "a", slices=3)
    again = write_sample_series(tmp_path / "b", slices=3)
    other = write_sample_series(tmp_path / "c", slices=3, seed="another seed")

    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    a, c = pydicom.dcmread(first[0]), pydicom.dcmread(other[0])
    assert a.SOPInstanceUID != c.SOPInstanceUID and a.StudyInstanceUID != c.StudyInstanceUID
    assert np.array_equal(a.pixel_array, c.pixel_array)


def test_several_patients_and_series(tmp_path):
    paths = write_sample_series(tmp_path, slices=3, patients=2, series=2)

    datasets = [pydicom.dcmread(p) for p in paths]
    assert len(datasets) == 12
    assert len({ds.PatientID for ds in datasets}) == 2
    assert len({ds.StudyInstanceUID for ds in datasets}) == 2
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 4
    assert str(datasets[-1].PatientName) == "ØSTERGAARD^BJØRN"
    assert paths[-1].relative_to(tmp_path).parts == ("patient2", "series2", "slice0003.dcm")


@pytest.mark.parametrize(
    "syntax", [ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless]
)
def test_other_transfer_syntaxes_hold_the_same_pixels(tmp_path, syntax):
    plain = write_sample_series(tmp_path / "plain", slices=2)
    encoded = write_sample_series(tmp_path / "encoded", slices=2, transfer_syntax=syntax)

    ds = pydicom.dcmread(encoded[1])
    assert ds.file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(ds.pixel_array, pydicom.dcmread(plain[1]).pixel_array)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="size must be at least 8"):
        write_sample_series(tmp_path, size=4)


def test_command_line(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "hosting_service.dicom.samples", str(tmp_path / "out"), "--slices", "3",
         "--series", "2"],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "wrote 6 DICOM files" in run.stdout
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 6

    bad = subprocess.run(
        [sys.executable, "-m", "hosting_service.dicom.samples", str(tmp_path / "bad"), "--slices", "0"],
        capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 2
    assert "slices must be at least 1" in bad.stderr and "Traceback" not in bad.stderr
