"""The Native DICOM Model (PS3.19 A.1) of one DICOM object.

Every attribute of the data set (not the File Meta Information, not Group Length elements, which A.1
leaves out) becomes a ``DicomAttribute`` with its ``tag`` (8 upper-case hex digits), ``vr`` and, for
standard attributes, ``keyword``; private data elements carry the ``privateCreator`` of their block.
Its value is, by VR:

* SQ: ``Item[@number]`` elements, each holding the item's attributes;
* PN: ``PersonName[@number]`` with ``Alphabetic`` / ``Ideographic`` / ``Phonetic`` groups and their
  non-empty name components, decoded with the data set's Specific Character Set;
* OB, OW, OF, OD, OL, OV, UN: ``InlineBinary`` (base64) up to the inline limit, else ``BulkData`` with
  a fresh ``uuid``, which GetData serves; the bytes are those pydicom reads for the value (encapsulated
  pixel data: its items up to the delimiter), in the object's transfer syntax;
* AT: ``Value`` elements of 8 hex digits; every other VR: one ``Value[@number]`` per value, as the
  text pydicom decodes (DS and IS as written in the object).

An empty value gives a ``DicomAttribute`` without children. Text that XML cannot carry (control
characters) makes the object unrepresentable: it goes to FailedSourceObjects.
"""
from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
import struct
from typing import Optional, Union

from lxml import etree
from pydicom.dataelem import RawDataElement
from pydicom.datadict import DicomDictionary
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from hosting_service.models.source import BINARY_VRS, Source, Span

NAME_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
NAME_COMPONENTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")


@dataclass
class BulkValue:
    """A value the model points to with ``BulkData/@uuid``: a span of the object's file, or bytes the
    host must keep a copy of (the value does not lie in the file as it is)."""

    uuid: str
    where: Union[Span, bytes]


class NativeBuilder:
    """Builds the model of one :class:`Source`; ``bulk`` collects the values it points to."""

    def __init__(self, source: Source, inline_max: int):
        self.source = source
        self.inline_max = inline_max
        self.bulk: list[BulkValue] = []

    def build(self) -> etree._Element:
        """The ``NativeDicomModel`` element, in no namespace (see :mod:`hosting_service.models.query`)."""
        root = etree.Element("NativeDicomModel")
        self._attributes(root, self.source.dataset)
        return root

    def _attributes(self, parent: etree._Element, ds: Dataset, encoding: Optional[str] = "latin-1") -> None:
        source = self.source
        # The raw elements as read (Dataset._dict): most values are decoded here directly from their bytes,
        # which is several times cheaper than pydicom's conversion; the rest goes through pydicom.
        raw_elements = ds._dict
        if 0x00080005 in raw_elements:
            encoding = _fast_encoding(ds, raw_elements[0x00080005])
        for tag in sorted(raw_elements):
            if tag.element == 0 or tag.group == 0x0002:  # Group Length; File Meta Information
                continue
            raw = raw_elements[tag]
            values: Optional[list[str]] = None
            element = None
            if isinstance(raw, RawDataElement):
                vr = raw.VR or _dictionary_vr(tag)
                if source.is_deferred(raw):
                    vr = Source.vr_of(raw)
                    if vr not in BINARY_VRS:
                        element = source.convert(ds, raw)
                        vr = element.VR
                elif vr and " or " not in vr and vr != "SQ":
                    values = _decoded(vr, raw.value or b"", raw.is_little_endian, encoding)
                    if values is None:
                        element = ds[tag]
                        vr = element.VR
                else:
                    element = ds[tag]  # converts the raw element, resolving an ambiguous VR from the data set
                    vr = element.VR
            else:
                element = raw
                vr = raw.VR
            if " or " in vr:
                vr = vr.split(" or ")[0]
            attribute = etree.SubElement(parent, "DicomAttribute", tag=f"{tag:08X}", vr=vr)
            if not tag.is_private:
                keyword = _keyword(tag)
                if keyword:
                    attribute.set("keyword", keyword)
            elif tag.element >= 0x1000:  # a private data element (not a Private Creator): its block's creator
                creator = ds.get((tag.group, tag.element >> 8))
                if creator is not None and creator.value:
                    attribute.set("privateCreator", str(creator.value).strip())
            if values is not None:
                self._texts(attribute, vr, values, raw.value)
            elif element is None:
                self._bulk(attribute, source.span(raw))
            elif vr == "SQ":
                for number, item in enumerate(element.value or (), 1):
                    self._attributes(etree.SubElement(attribute, "Item", number=str(number)), item, encoding)
            else:
                self._value(attribute, vr, element.value)

    def _texts(self, attribute: etree._Element, vr: str, values: list[str], data: bytes) -> None:
        """Values decoded by :func:`_decoded`."""
        if vr in BINARY_VRS:
            if data:
                self._value(attribute, vr, data)
        elif vr == "PN":
            for number, name in enumerate(values, 1):
                self._person_name(etree.SubElement(attribute, "PersonName", number=str(number)), name)
        else:
            for number, text in enumerate(values, 1):
                etree.SubElement(attribute, "Value", number=str(number)).text = text

    def _value(self, attribute: etree._Element, vr: str, value) -> None:
        if value is None or value == "" or value == b"":
            return
        if vr == "SQ":
            for number, item in enumerate(value, 1):
                self._attributes(etree.SubElement(attribute, "Item", number=str(number)), item)
        elif vr in BINARY_VRS:
            data = bytes(value)
            if len(data) > self.inline_max:
                self._bulk(attribute, data)
            else:
                etree.SubElement(attribute, "InlineBinary").text = base64.b64encode(data).decode("ascii")
        elif vr == "PN":
            for number, name in enumerate(_values(value), 1):
                self._person_name(etree.SubElement(attribute, "PersonName", number=str(number)), name)
        else:
            for number, item in enumerate(_values(value), 1):
                etree.SubElement(attribute, "Value", number=str(number)).text = _text(vr, item)

    def _bulk(self, attribute: etree._Element, where: Union[Span, bytes]) -> None:
        value = BulkValue(str(uuid.uuid4()), where)
        self.bulk.append(value)
        etree.SubElement(attribute, "BulkData", uuid=value.uuid)

    @staticmethod
    def _person_name(element: etree._Element, name) -> None:
        components = name.split("=") if isinstance(name, str) else getattr(name, "components", None) or ("",)
        for group, text in zip(NAME_GROUPS, components):
            parts = [(component, part) for component, part in zip(NAME_COMPONENTS, text.split("^")) if part]
            if parts:
                group_element = etree.SubElement(element, group)
                for component, part in parts:
                    etree.SubElement(group_element, component).text = part


def _values(value) -> list:
    return list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]


def _text(vr: str, value) -> str:
    if value is None:
        return ""
    if vr == "AT":
        return f"{int(value):08X}"
    if isinstance(value, bytes):  # a text pydicom could not decode
        return value.decode("latin-1")
    return str(value)


def native_model(source: Source, inline_max: int) -> tuple[etree._Element, list[BulkValue]]:
    """The model of ``source`` and the bulk values it points to."""
    builder = NativeBuilder(source, inline_max)
    return builder.build(), builder.bulk


# --- decoding values from their bytes ---------------------------------------------------------------------

_SPLIT_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "SH", "TM", "UI", "UC", "PN"})
_SINGLE_TEXT_VRS = frozenset({"LT", "ST", "UT", "UR"})
_CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
_NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
_FAST_CHARSETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
"""Specific Character Sets whose text is one plain Python codec (the default repertoire is within latin-1);
every other one (ISO 2022 code extensions, ...) is left to pydicom."""


def _fast_encoding(ds: Dataset, raw) -> Optional[str]:
    value = raw.value if isinstance(raw, RawDataElement) else ds[0x00080005].value
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    terms = [t.strip() for t in value] if isinstance(value, (list, MultiValue)) else str(value or "").split("\\")
    terms = [t.strip() for t in terms]
    return _FAST_CHARSETS.get(terms[0]) if len(terms) == 1 else None


def _dictionary_vr(tag) -> Optional[str]:
    entry = DicomDictionary.get(tag)
    return entry[0] if entry else None


def _keyword(tag) -> str:
    entry = DicomDictionary.get(tag)
    return entry[4] if entry else ""


def _decoded(vr: str, data: bytes, little_endian: bool, encoding: Optional[str]) -> Optional[list[str]]:
    """The values of an element as the model writes them, decoded from its bytes; ``None`` where pydicom
    must do it (a character set with code extensions, a VR this does not handle)."""
    if vr in _SPLIT_TEXT_VRS or vr in _SINGLE_TEXT_VRS:
        if vr in _CHARSET_VRS and encoding is None:
            return None
        text = data.decode(encoding or "latin-1")
        if vr in _SINGLE_TEXT_VRS:
            text = text.rstrip(" \x00")
            return [text] if text else []
        text = text.rstrip(" \x00")
        return [] if not text else [v.strip(" \x00") for v in text.split("\\")]
    number = _NUMBER_FORMATS.get(vr)
    if number is not None:
        size = struct.calcsize("<" + number)
        if len(data) % size:
            return None
        values = struct.unpack(f"{'<' if little_endian else '>'}{len(data) // size}{number}", data)
        return [repr(v) if isinstance(v, float) else str(v) for v in values]
    if vr == "AT":
        if len(data) % 4:
            return None
        words = struct.unpack(f"{'<' if little_endian else '>'}{len(data) // 2}H", data)
        return [f"{words[i]:04X}{words[i + 1]:04X}" for i in range(0, len(words), 2)]
    if vr in BINARY_VRS:
        return []
    return None
