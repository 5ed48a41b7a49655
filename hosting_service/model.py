"""The PS3.19 data types (§9, Annex B XSD) as plain Python values.

One set of dataclasses serves every layer: the wire converts Spyne objects to and from them, the store
keeps them as JSON, the orchestration builds them from DICOM files, and the clients turn them into the
dictionaries zeep wants. Field names are the XSD element names and fields are in XSD ``xs:sequence``
order, so conversion is generic. The one-child wrapper types of the XSD (``UID``/``Uid``,
``UUID``/``Uuid``, ``MimeType``/``Type``, ``Modality``/``Modality``) are plain ``str`` here and the
``ArrayOfX`` wrappers are plain lists; the wire layer adds the wrapping back (see :data:`WRAPPERS`).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
from dataclasses import dataclass, field
from typing import Any, Optional

from hosting_service.states import State

DICOM_MIME_TYPE = "application/dicom"
"""The MIME type of an ObjectDescriptor for a DICOM object (Part 10 file)."""

__all__ = [
    "DICOM_MIME_TYPE",
    "State",
    "StatusType",
    "Rectangle",
    "Status",
    "ObjectDescriptor",
    "Series",
    "Study",
    "Patient",
    "AvailableData",
    "ObjectLocator",
    "ModelSetDescriptor",
    "XPathNode",
    "QueryResult",
    "XPathNodeInfoSet",
    "QueryResultInfoSet",
    "WRAPPERS",
    "to_jsonable",
    "from_jsonable",
    "iter_descriptors",
    "TreeBuilder",
]


class StatusType(str, enum.Enum):
    """PS3.19 §9.10.1, wire spelling. CTK sends 0..3 in this order; the wire layer maps them."""

    INFORMATION = "INFORMATION"
    WARNING = "WARNING"
    ERROR = "ERROR"
    FATALERROR = "FATALERROR"

    def __str__(self) -> str:
        return self.value


WRAPPERS: dict[str, str] = {"UID": "Uid", "UUID": "Uuid", "MimeType": "Type", "Modality": "Modality"}
"""XSD wrapper type -> its single child element. Fields of these types are ``str`` in this module."""


@dataclass
class Rectangle:
    Height: int = 0
    Width: int = 0
    RefPointX: int = 0
    RefPointY: int = 0


@dataclass
class Status:
    StatusType: StatusType = StatusType.INFORMATION
    CodeValue: int = 0
    CodingSchemeDesignator: Optional[str] = None
    CodeMeaning: Optional[str] = None
    ContextIdentifier: Optional[str] = None
    MappingResource: Optional[str] = None
    ContextGroupVersion: Optional[str] = None
    ContextGroupExtensionFlag: Optional[str] = None
    ContextGroupLocalVersion: Optional[str] = None
    ContextGroupExtensionCreatorUID: Optional[str] = None


@dataclass
class ObjectDescriptor:
    ClassUID: Optional[str] = None  # wire type UID
    MimeType: Optional[str] = None  # wire type MimeType
    Modality: Optional[str] = None  # wire type Modality
    TransferSyntaxUID: Optional[str] = None  # wire type UID
    DescriptorUuid: Optional[str] = None  # wire type UUID


@dataclass
class Series:
    ObjectDescriptors: list[ObjectDescriptor] = field(default_factory=list)
    SeriesUID: Optional[str] = None


@dataclass
class Study:
    ObjectDescriptors: list[ObjectDescriptor] = field(default_factory=list)
    Series: list["Series"] = field(default_factory=list)
    StudyUID: Optional[str] = None


@dataclass
class Patient:
    AssigningAuthority: Optional[str] = None
    DateOfBirth: Optional[_dt.datetime] = None
    ID: Optional[str] = None
    Name: Optional[str] = None
    ObjectDescriptors: list[ObjectDescriptor] = field(default_factory=list)
    Sex: Optional[str] = None
    Studies: list[Study] = field(default_factory=list)


@dataclass
class AvailableData:
    ObjectDescriptors: list[ObjectDescriptor] = field(default_factory=list)
    Patients: list[Patient] = field(default_factory=list)


@dataclass
class ObjectLocator:
    Length: int = 0
    Offset: int = 0
    TransferSyntax: Optional[str] = None  # wire type UID
    URI: Optional[str] = None
    Locator: Optional[str] = None  # wire type UUID
    Source: Optional[str] = None  # wire type UUID


@dataclass
class ModelSetDescriptor:
    FailedSourceObjects: list[str] = field(default_factory=list)  # ArrayOfUUID
    InfosetType: Optional[str] = None  # wire type MimeType
    Models: list[str] = field(default_factory=list)  # ArrayOfUUID


@dataclass
class XPathNode:
    NodeType: str = "Element"
    Value: Optional[str] = None


@dataclass
class QueryResult:
    Model: Optional[str] = None  # wire type UUID
    Result: list[XPathNode] = field(default_factory=list)
    XPath: Optional[str] = None


@dataclass
class XPathNodeInfoSet:
    InfoSetValue: Optional[bytes] = None
    NodeType: str = "Element"


@dataclass
class QueryResultInfoSet:
    Model: Optional[str] = None
    Result: list[XPathNodeInfoSet] = field(default_factory=list)
    XPath: Optional[str] = None


def iter_descriptors(data: AvailableData):
    """Every ObjectDescriptor of an AvailableData tree, with the Patient/Study/Series it hangs under.

    Yields ``(descriptor, patient, study, series)``; the last three are ``None`` above their level.
    """
    for d in data.ObjectDescriptors:
        yield d, None, None, None
    for p in data.Patients:
        for d in p.ObjectDescriptors:
            yield d, p, None, None
        for st in p.Studies:
            for d in st.ObjectDescriptors:
                yield d, p, st, None
            for se in st.Series:
                for d in se.ObjectDescriptors:
                    yield d, p, st, se


class TreeBuilder:
    """Builds an AvailableData by hanging each descriptor under its Patient, Study and Series (PS3.19 §9.2),
    creating each node the first time its key is seen, in the order descriptors are added.

    A level is given as ``(key, template)``: the key says which descriptors share the node (a patient's
    ID and issuer, a study's UID, ...; the caller decides), the template is the node's attributes (its
    children lists are ignored). ``None`` stops the descending there: a descriptor without a patient is
    top-level, one with a patient but no study is at patient level, and so on.
    """

    def __init__(self) -> None:
        self.data = AvailableData()
        self._nodes: dict[tuple, object] = {}

    def add(self, descriptor: ObjectDescriptor, patient=None, study=None, series=None) -> None:
        node, path = self.data, ()
        for level, children in ((patient, "Patients"), (study, "Studies"), (series, "Series")):
            if level is None:
                break
            key, template = level
            path = (*path, key)
            if path not in self._nodes:
                self._nodes[path] = _without_children(template)
                getattr(node, children).append(self._nodes[path])
            node = self._nodes[path]
        node.ObjectDescriptors.append(descriptor)


def _without_children(node):
    empty = {f.name: [] for f in dataclasses.fields(node) if f.name in ("ObjectDescriptors", "Studies", "Series")}
    return dataclasses.replace(node, **empty)


# --- JSON form (the store and the admin API) -----------------------------------------------------------

def to_jsonable(value: Any) -> Any:
    """A dataclass tree as JSON-ready dicts and lists (datetimes as ISO strings, bytes as latin-1 text)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value


_NESTED: dict[type, dict[str, type]] = {
    Series: {"ObjectDescriptors": ObjectDescriptor},
    Study: {"ObjectDescriptors": ObjectDescriptor, "Series": Series},
    Patient: {"ObjectDescriptors": ObjectDescriptor, "Studies": Study},
    AvailableData: {"ObjectDescriptors": ObjectDescriptor, "Patients": Patient},
    QueryResult: {"Result": XPathNode},
    QueryResultInfoSet: {"Result": XPathNodeInfoSet},
}


def from_jsonable(cls: type, data: Optional[dict]) -> Any:
    """The inverse of :func:`to_jsonable` for the dataclasses of this module."""
    if data is None:
        return None
    nested = _NESTED.get(cls, {})
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        v = data[f.name]
        if f.name in nested and v is not None:
            v = [from_jsonable(nested[f.name], item) for item in v]
        elif cls is Patient and f.name == "DateOfBirth" and isinstance(v, str):
            v = _dt.datetime.fromisoformat(v)
        elif cls is Status and f.name == "StatusType" and v is not None:
            v = StatusType(v)
        kwargs[f.name] = v
    return cls(**kwargs)
