"""A hosted application that does real work: a maximum-intensity projection (MIP) of each input series.

For every series of images among the inputs it projects the slices along the slice axis (the brightest
value of each pixel position over all slices, in the modality's units, e.g. Hounsfield units for CT) and
writes the result as a new DICOM Secondary Capture Image (SOP Class 1.2.840.10008.5.1.4.1.1.7):

* same patient and study as the source (their attributes copied, so that every instance of the study agrees),
  a new series (SOP Instance and Series Instance UIDs from the host's GenerateUID) of the same body part and
  laterality (Laterality empty, meaning unknown, when the sources do not say which body part they show);
* SC Equipment (ConversionType ``WSD``), General Image with ``DERIVED\\SECONDARY`` image type, a
  derivation description, a Source Image Sequence naming every projected image and a Referenced Series
  Sequence (Common Instance Reference) naming the source series;
* Image Pixel: 16-bit signed MONOCHROME2, with a Modality LUT (rescale 1/0) in the source's units and the
  source's window;
* Explicit VR Little Endian, Part 10.

Outputs go to an http: output location by preference (``--output-protocols`` changes it). Inputs that are
not images (no Pixel Data) are ignored; a task without any image fails with a FATALERROR status.

    python -m client.examples.mip_app --hostURL U1 --applicationURL U2
"""
from __future__ import annotations

import datetime as _dt
import sys
from typing import Optional

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from client import HostedApplication, TaskContext, TaskInput, TaskOutput

SECONDARY_CAPTURE_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
_INT16 = np.iinfo(np.int16)
_FROM_SOURCE = (
    "SpecificCharacterSet",
    # Patient
    "PatientName", "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "PatientBirthDate",
    "PatientBirthTime", "PatientSex", "OtherPatientIDsSequence", "EthnicGroup", "PatientComments",
    "PatientSpeciesDescription", "PatientSpeciesCodeSequence", "PatientBreedDescription", "PatientBreedCodeSequence",
    "ResponsiblePerson", "ResponsiblePersonRole", "ResponsibleOrganization", "PatientIdentityRemoved",
    "DeidentificationMethod", "DeidentificationMethodCodeSequence",
    # General Study
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "IssuerOfAccessionNumberSequence", "StudyDescription", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy",
    "ProcedureCodeSequence", "ReasonForPerformedProcedureCodeSequence",
    # Patient Study
    "AdmittingDiagnosesDescription", "PatientAge", "PatientSize", "PatientWeight", "Occupation",
    "AdditionalPatientHistory",
    # General Series: what the projection shows is the same body part, on the same side
    "BodyPartExamined", "Laterality",
    # General Image
    "ImageLaterality",
)
"""Copied from the first source image where present: the Patient and Study entities must be the same in every
instance of a study (dcentvfy checks it), and the anatomy of the projection is that of its sources."""


class NoImages(Exception):
    """The task's inputs contain no image to project."""


class MipApp(HostedApplication):
    name = "mip-app"
    description = "Maximum-intensity projection of each input series, as a DICOM Secondary Capture image."
    output_protocols = ("http:", "file:")

    def process(self, inputs: list[TaskInput], context: TaskContext) -> list[TaskOutput]:
        series: dict[str, list[Dataset]] = {}
        for item in inputs:
            if item.descriptor.MimeType not in (None, "application/dicom"):
                continue
            dataset = item.dataset()
            if "PixelData" in dataset:
                series.setdefault(str(dataset.SeriesInstanceUID), []).append(dataset)
        if not series:
            raise NoImages(f"none of the {len(inputs)} inputs is a DICOM image")
        return [TaskOutput.from_dataset(self.project(images, context)) for images in series.values()]

    def project(self, images: list[Dataset], context: TaskContext) -> Dataset:
        """The MIP of one series as a Secondary Capture dataset."""
        first = images[0]
        shape = (int(first.Rows), int(first.Columns))
        mip: Optional[np.ndarray] = None
        for image in images:
            context.raise_if_canceled()
            if (int(image.Rows), int(image.Columns)) != shape:
                raise ValueError(
                    f"series {first.SeriesInstanceUID}: image {image.SOPInstanceUID} is "
                    f"{image.Rows}x{image.Columns}, the first one {shape[0]}x{shape[1]}"
                )
            if int(image.get("SamplesPerPixel", 1)) != 1:
                raise ValueError(f"image {image.SOPInstanceUID} is not grayscale; only grayscale images are projected")
            values = apply_modality_lut(image.pixel_array, image).astype(np.float64)
            if values.ndim == 3:  # a multi-frame image: its frames are slices too
                values = values.max(axis=0)
            mip = values if mip is None else np.maximum(mip, values)
        if mip is None:
            raise ValueError("a series without images cannot be projected")
        pixels = np.clip(np.rint(mip), _INT16.min, _INT16.max).astype("<i2")
        return secondary_capture(images, pixels, context.generate_uid(), context.generate_uid())


def secondary_capture(sources: list[Dataset], pixels: np.ndarray, series_uid: str, instance_uid: str) -> Dataset:
    """A Secondary Capture Image of ``pixels`` (int16, source units) derived from ``sources`` (one series)."""
    first = sources[0]
    now = _dt.datetime.now()
    ds = Dataset()
    for keyword in _FROM_SOURCE:
        if keyword in first:
            setattr(ds, keyword, first[keyword].value)
    ds.SOPClassUID = SECONDARY_CAPTURE_IMAGE_STORAGE
    ds.SOPInstanceUID = instance_uid
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    # General Series: a new series in the source's study
    ds.Modality = "OT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = int(first.get("SeriesNumber") or 0) + 1000
    ds.SeriesDescription = f"MIP of {first.get('SeriesDescription') or 'series'}"[:64]
    ds.SeriesDate = ds.InstanceCreationDate
    ds.SeriesTime = ds.InstanceCreationTime
    if "BodyPartExamined" not in ds and "Laterality" not in ds and "ImageLaterality" not in ds:
        # Laterality is required (Type 2C) for a paired body part; with the body part unknown that cannot be
        # ruled out, so it is sent empty: unknown
        ds.Laterality = ""
    # General Equipment and SC Equipment
    ds.Manufacturer = "dicom-host examples"
    ds.ConversionType = "WSD"
    # General Image and General Reference
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.ContentDate = ds.InstanceCreationDate
    ds.ContentTime = ds.InstanceCreationTime
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = f"Maximum intensity projection along the slice axis of {len(sources)} images"
    ds.SourceImageSequence = [_reference(source) for source in sources]
    # Common Instance Reference: the source series, in this same study
    referenced_series = Dataset()
    referenced_series.SeriesInstanceUID = first.SeriesInstanceUID
    referenced_series.ReferencedInstanceSequence = [_reference(source) for source in sources]
    ds.ReferencedSeriesSequence = [referenced_series]
    # Image Pixel, Modality LUT, VOI LUT
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = first.get("RescaleType") or ("HU" if first.get("Modality") == "CT" else "US")
    for keyword in ("WindowCenter", "WindowWidth"):
        if keyword in first:
            setattr(ds, keyword, first[keyword].value)
    ds.PixelData = pixels.tobytes()

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = UID(instance_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return ds


def _reference(source: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    return item


def main(argv: Optional[list[str]] = None) -> int:
    return MipApp.main(argv)


if __name__ == "__main__":
    sys.exit(main())
