"""Names of received objects: from the object's SOP Instance UID or descriptor UUID, but never a path the
application could use to write outside the output folder, and never a name already taken."""
from __future__ import annotations

import warnings

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from hosting_service.orchestration.naming import object_name, read_sop_instance_uid, unique_name


def dicom_file(path, sop_instance_uid: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the hostile UIDs it is made to write
        ds = Dataset()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        ds.SOPInstanceUID = sop_instance_uid
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_objects_are_named_after_their_sop_instance_uid(tmp_path):
    uid = read_sop_instance_uid(dicom_file(tmp_path / "a", "2.25.12345"))
    assert object_name("6f1c0a52-0000-4000-8000-000000000001", "application/dicom", uid) == "2.25.12345.dcm"


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "1.2/../../x", "1.2.3\\x", "1" * 65])
def test_a_uid_that_is_no_uid_is_not_used(tmp_path, hostile):
    path = dicom_file(tmp_path / "a", hostile)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        assert read_sop_instance_uid(path) is None
    assert shown == []  # a warning would break dicom-host run's one-line stderr
    assert read_sop_instance_uid(tmp_path / "missing") is None


@pytest.mark.parametrize("descriptor_uuid", ["../outside", "/abs/path", ".hidden", "", None, "a/b"])
def test_a_descriptor_uuid_that_is_no_token_is_replaced(descriptor_uuid):
    name = object_name(descriptor_uuid, "text/plain", None)
    assert "/" not in name and not name.startswith(".") and name.endswith(".txt") and len(name) == 40


def test_names_do_not_collide(tmp_path):
    (tmp_path / "2.25.1.dcm").write_bytes(b"")
    assert unique_name(tmp_path, "2.25.1.dcm") == "2.25.1-2.dcm"
    assert unique_name(tmp_path, "manifest.json") == "manifest-2.json"
    assert unique_name(tmp_path, "x.json") == "x.json"
