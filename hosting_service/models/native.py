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
from typing import Union

from lxml import etree
from pydicom.dataset import Dataset
from pydicom.datadict import keyword_for_tag
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

    def _attributes(self, parent: etree._Element, ds: Dataset) -> None:
        source = self.source
        for tag in sorted(ds.keys()):
            if tag.element == 0 or tag.group == 0x0002:  # Group Length; File Meta Information
                continue
            raw = ds.get_item(tag, keep_deferred=True)
            element = None
            if source.is_deferred(raw):
                vr = Source.vr_of(raw)
                if vr not in BINARY_VRS:
                    element = source.convert(ds, raw)
                    vr = element.VR
            else:
                element = ds[tag]  # converts the raw element, resolving an ambiguous VR from the data set
                vr = element.VR
            if " or " in vr:
                vr = vr.split(" or ")[0]
            attribute = etree.SubElement(parent, "DicomAttribute", tag=f"{tag:08X}", vr=vr)
            if not tag.is_private:
                keyword = keyword_for_tag(tag)
                if keyword:
                    attribute.set("keyword", keyword)
            elif tag.element >= 0x1000:  # a private data element (not a Private Creator): its block's creator
                creator = ds.get((tag.group, tag.element >> 8))
                if creator is not None and creator.value:
                    attribute.set("privateCreator", str(creator.value).strip())
            if element is None:
                self._bulk(attribute, source.span(raw))
            else:
                self._value(attribute, vr, element.value)

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
        components = getattr(name, "components", None) or (str(name or ""),)
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
