"""The Data Exchange Models of PS3.19 Annex A: the Native DICOM Model and the Abstract Multi-Dimensional
Image Model, built from offered DICOM objects, kept per instance and queried with XPath 1.0.

* :mod:`.source`: reading an offered object with pydicom without loading its bulk data;
* :mod:`.native`: the Native DICOM Model (A.1) of one object;
* :mod:`.abstract_image`: the Abstract Multi-Dimensional Image Model (A.2) of one image set;
* :mod:`.query`: XPath evaluation and the typing of its results as the standard's XPathNodeType;
* :mod:`.registry`: the models and bulk data of each instance in the store, their release, and the
  GetAsModels / QueryModel / QueryInfoSet / ReleaseModels operations the HostService delegates to;
* :mod:`.recipient`: the host reading a hosted application's outputs through its models;
* ``schemas/``: the Annex A RELAX NG schemas, converted from the compact syntax (see its README).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Optional

NATIVE_DICOM_MODEL = "1.2.840.10008.7.1.1"
"""Class UID of the Native DICOM Model (PS3.19 A.1)."""
ABSTRACT_IMAGE_MODEL = "1.2.840.10008.7.1.2"
"""Class UID of the Abstract Multi-Dimensional Image Model (PS3.19 A.2)."""

NATIVE_NS = "http://dicom.nema.org/PS3.19/models/NativeDICOM"
ABSTRACT_NS = "http://dicom.nema.org/PS3.19/models/AbstractImage"

MODEL_NAMESPACES = {NATIVE_DICOM_MODEL: NATIVE_NS, ABSTRACT_IMAGE_MODEL: ABSTRACT_NS}
MODEL_ROOTS = {NATIVE_DICOM_MODEL: "NativeDicomModel", ABSTRACT_IMAGE_MODEL: "AbstractImageDataSet"}
MODEL_MIME_TYPES = {NATIVE_DICOM_MODEL: "application/x-dicom.native", ABSTRACT_IMAGE_MODEL: "application/x-dicom.abstract"}

TEXT_XML = "text/xml"
"""The one infoset type this host produces; every recipient supports and lists it (§8.3.3)."""
SUPPORTED_INFOSET_TYPES = (TEXT_XML,)


def negotiate(supported: Optional[list[str]]) -> str:
    """The first of the recipient's infoset types this host produces; ``text/xml`` when none is, since
    every recipient supports it (§8.3.3)."""
    for mime in supported or []:
        if (mime or "").strip().lower() in SUPPORTED_INFOSET_TYPES:
            return (mime or "").strip().lower()
    return TEXT_XML


def schema_path(class_uid: str) -> Path:
    """The RELAX NG (XML syntax) schema of a model class."""
    name = {NATIVE_DICOM_MODEL: "NativeDICOM.rng", ABSTRACT_IMAGE_MODEL: "AbstractImage.rng"}[class_uid]
    return Path(str(resources.files(__package__) / "schemas" / name))
