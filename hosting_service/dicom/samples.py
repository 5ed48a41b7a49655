"""Small, valid, deterministic CT data for demonstrations, tests and benchmarks.

Nothing is downloaded: the images are a synthetic phantom (a body cylinder with lungs, a spine and a few
spheres of known Hounsfield units) rendered with numpy, so that a maximum-intensity projection shows
recognisable structures. Every UID is ``2.25.<uuid5>`` derived from a seed, so the same call writes the
same files byte for byte; change the seed to get another, unrelated data set.

Command line::

    python -m hosting_service.dicom.samples OUTDIR [--slices N] [--patients P] [--series S] [--size PX]
"""
from __future__ import annotations

import argparse
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

from hosting_service.dicom.delivery import reencode

__all__ = ["DEFAULT_SEED", "sample_uid", "phantom", "write_sample_series", "main"]

DEFAULT_SEED = "dicom-host sample data"
RESCALE_INTERCEPT = -1024
"""Stored value = HU - intercept, as most CT scanners do, so stored values are non-negative."""
_SLICE_THICKNESS_MM = 5.0
_FIELD_OF_VIEW_MM = 320.0


def sample_uid(seed: str, *parts: object) -> str:
    """A DICOM UID (PS3.5 §B.2, ``2.25.`` + a UUID as integer) that depends only on ``seed`` and ``parts``."""
    name = "/".join([seed, *(str(p) for p in parts)])
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}"


def phantom(slices: int, size: int, *, contrast_hu: int = 250) -> np.ndarray:
    """A ``(slices, size, size)`` int16 volume of Hounsfield units.

    Air outside an elliptical soft-tissue body, two lungs, a spine of bone running through every slice,
    a contrast-enhanced sphere of ``contrast_hu`` and a dense bone sphere; both spheres are centred on
    different slices, so a projection along any axis shows them apart.
    """
    z, y, x = np.meshgrid(
        np.linspace(-1.0, 1.0, slices), np.linspace(-1.0, 1.0, size), np.linspace(-1.0, 1.0, size), indexing="ij"
    )
    hu = np.full((slices, size, size), -1000.0)
    hu[(x / 0.85) ** 2 + (y / 0.62) ** 2 <= 1.0] = 40.0
    for side in (-1, 1):
        hu[((x - side * 0.38) / 0.26) ** 2 + ((y + 0.05) / 0.38) ** 2 <= 1.0] = -850.0
    hu[x**2 + (y - 0.42) ** 2 <= 0.11**2] = 700.0
    hu[(x - 0.15) ** 2 + (y + 0.1) ** 2 + (z - 0.25) ** 2 <= 0.2**2] = float(contrast_hu)
    hu[(x + 0.3) ** 2 + (y - 0.05) ** 2 + (z + 0.4) ** 2 <= 0.13**2] = 1200.0
    noise = np.random.default_rng(slices * 7919 + size).normal(0.0, 8.0, hu.shape)
    return np.clip(np.round(hu + noise), -1024, 3071).astype(np.int16)


@dataclass(frozen=True)
class _Patient:
    name: str
    id: str
    sex: str
    birth_date: str


def _patient(index: int) -> _Patient:
    # the second patient has a non-ASCII name, so Specific Character Set handling is exercised
    names = ["SAMPLE^ALICE", "ØSTERGAARD^BJØRN", "SAMPLE^CAROL", "SAMPLE^DAVID"]
    name = names[index] if index < len(names) else f"SAMPLE^PATIENT{index + 1}"
    return _Patient(name, f"DH{index + 1:04d}", "FM"[index % 2], f"{1950 + 7 * index:04d}0{1 + index % 9}1{index % 10}")


def _slice_dataset(seed: str, patient_index: int, series_index: int, slice_index: int, image: np.ndarray) -> Dataset:
    patient = _patient(patient_index)
    study_uid = sample_uid(seed, "study", patient_index)
    series_uid = sample_uid(seed, "series", patient_index, series_index)
    instance_uid = sample_uid(seed, "instance", patient_index, series_index, slice_index)
    size = image.shape[0]
    spacing = _FIELD_OF_VIEW_MM / size
    z = -slice_index * _SLICE_THICKNESS_MM
    series_time = f"{(9 + series_index) % 24:02d}0000"  # a Series attribute: the same on every slice
    content_time = f"{(9 + series_index) % 24:02d}{slice_index // 60 % 60:02d}{slice_index % 60:02d}"

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = UID(instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = instance_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = f"2024011{patient_index % 10}"
    ds.StudyTime, ds.SeriesTime, ds.ContentTime = "090000", series_time, content_time
    ds.AccessionNumber = f"ACC{patient_index + 1:05d}"
    ds.Modality = "CT"
    ds.Manufacturer = "dicom-host sample generator"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Synthetic phantom study"
    ds.SeriesDescription = f"Phantom axial {series_index + 1}"
    ds.PatientName = patient.name
    ds.PatientID = patient.id
    ds.IssuerOfPatientID = "DICOM-HOST-SAMPLES"
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = _SLICE_THICKNESS_MM
    ds.KVP = 120
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = str(patient_index + 1)
    ds.SeriesNumber = series_index + 1
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = slice_index + 1
    ds.ImagePositionPatient = [-_FIELD_OF_VIEW_MM / 2, -_FIELD_OF_VIEW_MM / 2, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = sample_uid(seed, "frame", patient_index, series_index)
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = z
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.PixelSpacing = [spacing, spacing]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.RescaleIntercept = RESCALE_INTERCEPT
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.PixelData = (image.astype(np.int32) - RESCALE_INTERCEPT).astype("<i2").tobytes()
    return ds


def write_sample_series(
    folder: str | Path,
    *,
    slices: int = 16,
    patients: int = 1,
    series: int = 1,
    size: int = 64,
    seed: str = DEFAULT_SEED,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> list[Path]:
    """Write ``patients`` x ``series`` CT series of ``slices`` images of ``size`` x ``size`` pixels.

    Each patient has one study; files go to ``folder/patient<P>/series<S>/slice<NNNN>.dcm`` (created as
    needed) and the paths are returned in that order. ``transfer_syntax`` is any syntax
    :func:`hosting_service.dicom.delivery.reencode` can produce (default Explicit VR Little Endian).
    Later series of a patient have a brighter contrast sphere, like post-contrast phases.
    """
    counts = (("slices", slices, 1), ("patients", patients, 1), ("series", series, 1), ("size", size, 8))
    for name, value, low in counts:
        if value < low:
            raise ValueError(f"{name} must be at least {low}, got {value}")
    root = Path(folder)
    written: list[Path] = []
    for p in range(patients):
        for s in range(series):
            volume = phantom(slices, size, contrast_hu=250 + 150 * s)
            directory = root / f"patient{p + 1}" / f"series{s + 1}"
            directory.mkdir(parents=True, exist_ok=True)
            for i in range(slices):
                ds = _slice_dataset(seed, p, s, i, volume[i])
                reencode(ds, transfer_syntax)
                path = directory / f"slice{i + 1:04d}.dcm"
                ds.save_as(path, enforce_file_format=True)
                written.append(path)
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hosting_service.dicom.samples",
        description="Write synthetic CT phantom series (valid DICOM, deterministic UIDs).",
    )
    parser.add_argument("outdir", type=Path, help="folder to write to (created if missing)")
    parser.add_argument("--slices", type=int, default=16, help="images per series (default 16)")
    parser.add_argument("--patients", type=int, default=1, help="patients, one study each (default 1)")
    parser.add_argument("--series", type=int, default=1, help="series per study (default 1)")
    parser.add_argument("--size", type=int, default=64, help="rows and columns of each image (default 64)")
    parser.add_argument("--seed", default=DEFAULT_SEED, help="text from which every UID is derived")
    args = parser.parse_args(argv)
    try:
        paths = write_sample_series(
            args.outdir, slices=args.slices, patients=args.patients, series=args.series, size=args.size, seed=args.seed
        )
    except (ValueError, OSError) as exc:
        print(f"samples: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} DICOM files under {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
