"""What the project writes is valid DICOM, as David Clunie's dicom3tools judge it: ``dciodvfy`` checks each
object against its IOD, ``dcentvfy`` checks that the Patient, Study and Series entities agree between the objects
of a study. CI installs them (Debian package ``dicom3tools``, see .ci/run); these tests install nothing."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from client.examples.mip_app import secondary_capture
from hosting_service.dicom.samples import write_sample_series
from run_harness import MIP_APP, run_job

pytestmark = pytest.mark.skipif(
    not (shutil.which("dciodvfy") and shutil.which("dcentvfy")),
    reason="dicom3tools not installed (apt-get install -y dicom3tools)",
)


def findings(tool: str, paths: list[Path]) -> list[str]:
    """The ``Error`` and ``Warning`` lines ``tool`` prints for ``paths`` (it prints nothing else of note)."""
    done = subprocess.run([tool, *map(str, paths)], capture_output=True, text=True, timeout=120)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith(("Error", "Warning"))]


def verify(paths: list[Path]) -> list[str]:
    """Every finding of ``dciodvfy`` on each object and of ``dcentvfy`` on all of them together."""
    found = [f"{path.name}: {line}" for path in paths for line in findings("dciodvfy", [path])]
    return found + findings("dcentvfy", paths)


def test_sample_series_are_valid_and_consistent(tmp_path):
    paths = write_sample_series(tmp_path, slices=4, patients=2, series=2, size=16)

    assert verify(paths) == []


def test_mip_output_is_a_valid_secondary_capture_of_its_study(host_server, tmp_path):
    inputs = write_sample_series(tmp_path / "in", slices=5, size=32)

    run = run_job(tmp_path / "out", "--app", MIP_APP, "--input", str(tmp_path / "in"), server=host_server.url)

    assert run.returncode == 0, run.describe()
    [entry] = run.manifest["outputs"]
    assert verify([run.output / entry["file"], *inputs]) == []


def test_mip_of_images_without_a_body_part_says_laterality_is_unknown(tmp_path):
    """With the body part unknown, a paired one cannot be ruled out: Laterality (Type 2C) is sent, empty."""
    sources = [pydicom.dcmread(p) for p in write_sample_series(tmp_path / "in", slices=3, size=16)]
    for source in sources:
        del source.BodyPartExamined
    secondary_capture(sources, np.zeros((16, 16), "<i2"), "2.25.1", "2.25.2").save_as(
        tmp_path / "mip.dcm", enforce_file_format=True)

    found = findings("dciodvfy", [tmp_path / "mip.dcm"])

    assert pydicom.dcmread(tmp_path / "mip.dcm").Laterality == ""
    assert not [line for line in found if line.startswith("Error")]
    assert all("<Laterality>" in line for line in found)  # at most: "only permitted to be empty when unknown"
