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
from typing import Any, Callable, MutableMapping, Optional, Union

from lxml import etree
from pydicom.dataelem import RawDataElement
from pydicom.datadict import DicomDictionary
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from hosting_service.models.source import BINARY_VRS, Source, Span

NAME_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
NAME_COMPONENTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)


@dataclass
class BulkValue:
    """A value the model points to with ``BulkData/@uuid``: a span of the object's file, or bytes the
    host must keep a copy of (the value does not lie in the file as it is)."""

    uuid: str
    where: Union[Span, bytes]


class NativeBuilder:
    """Builds the model of one :class:`Source` as XML text; ``bulk`` collects the values it points to.

    The text is written directly (escaped) rather than through lxml's element API, which is several
    times slower; lxml then parses it once, which also rejects what XML cannot carry."""

    def __init__(self, source: Source, inline_max: int):
        self.source = source
        self.inline_max = inline_max
        self.bulk: list[BulkValue] = []
        self._out: list[str] = []

    def build(self) -> bytes:
        """The ``NativeDicomModel`` document, in no namespace (see :mod:`hosting_service.models.query`)."""
        self._out = ["<NativeDicomModel>"]
        source = self.source
        if source.raw_elements is not None:
            self._attributes(source.raw_elements, lambda: source.dataset, "latin-1")
        else:
            self._attributes(source.dataset._dict, _constant(source.dataset), "latin-1")
        self._out.append("</NativeDicomModel>")
        return "".join(self._out).encode("utf-8")

    def _attributes(self, raw_elements: MutableMapping[Any, Any], dataset: Callable[[], Dataset],
                    encoding: Optional[str]) -> None:
        """The attributes of a data set, given as its raw elements (a Dataset's own are its ``_dict``):
        most values are decoded here directly from their bytes, which is several times cheaper than
        pydicom's conversion; the rest goes through pydicom, with the ``dataset()`` they belong to."""
        source, out = self.source, self._out
        if 0x00080005 in raw_elements:
            encoding = _fast_encoding(raw_elements[0x00080005])
        for tag in sorted(raw_elements, key=int):  # int keys: BaseTag compares in Python
            number = int(tag)
            group, element_number = number >> 16, number & 0xFFFF
            if element_number == 0 or group == 0x0002:  # Group Length; File Meta Information
                continue
            raw = raw_elements[tag]
            fragment: Optional[str] = None
            element = None
            if isinstance(raw, RawDataElement):
                vr = raw.VR or _dictionary_vr(number)
                if raw.value is None and raw.length != 0:  # deferred: larger than the inline limit
                    vr = Source.vr_of(raw)
                    if vr not in BINARY_VRS:
                        element = source.convert(dataset(), raw)
                        vr = element.VR
                elif vr in BINARY_VRS:
                    fragment = self._binary(raw.value or b"")
                elif vr and " or " not in vr and vr != "SQ":
                    fragment = _value_xml(vr, raw.value or b"", raw.is_little_endian, encoding)
                    if fragment is None:
                        element = dataset()[tag]
                        vr = element.VR
                else:
                    element = dataset()[tag]  # converts the raw element, resolving an ambiguous VR from the data set
                    vr = element.VR
            else:
                element = raw
                vr = raw.VR
            if " or " in vr:
                vr = vr.split(" or ")[0]
            if not group & 1:
                keyword = _keyword(number)
                out.append(f'<DicomAttribute tag="{number:08X}" vr="{vr}" keyword="{keyword}">' if keyword
                           else f'<DicomAttribute tag="{number:08X}" vr="{vr}">')
            elif element_number >= 0x1000:  # a private data element (not a Private Creator): its block's creator
                creator = _creator(raw_elements.get(group << 16 | element_number >> 8))
                if creator:
                    out.append(f'<DicomAttribute tag="{number:08X}" vr="{vr}" '
                               f'privateCreator="{_escape(creator, True)}">')
                else:
                    out.append(f'<DicomAttribute tag="{number:08X}" vr="{vr}">')
            else:
                out.append(f'<DicomAttribute tag="{number:08X}" vr="{vr}">')
            if fragment is not None:
                out.append(fragment)
            elif element is None:
                out.append(self._bulk(source.span(raw)))
            elif vr == "SQ":
                for item_number, item in enumerate(element.value or (), 1):
                    out.append(f'<Item number="{item_number}">')
                    self._attributes(item._dict, _constant(item), encoding)
                    out.append("</Item>")
            else:
                self._value(vr, element.value)
            out.append("</DicomAttribute>")

    def _value(self, vr: str, value) -> None:
        """A value pydicom converted."""
        if value is None or value == "" or value == b"":
            return
        if vr in BINARY_VRS:
            self._out.append(self._binary(bytes(value)))
        elif vr == "PN":
            self._out.extend(_person_name(number, [_escape(c) for c in getattr(name, "components", None) or
                                                   (str(name or ""),)])
                             for number, name in enumerate(_values(value), 1))
        else:
            self._out.extend(f'<Value number="{number}">{_escape(_text(vr, item))}</Value>'
                             for number, item in enumerate(_values(value), 1))

    def _binary(self, data: bytes) -> str:
        """InlineBinary up to the inline limit, else BulkData (a copy: the bytes were read)."""
        if not data:
            return ""
        if len(data) > self.inline_max:
            return self._bulk(data)
        return f"<InlineBinary>{base64.b64encode(data).decode('ascii')}</InlineBinary>"

    def _bulk(self, where: Union[Span, bytes]) -> str:
        value = BulkValue(str(uuid.uuid4()), where)
        self.bulk.append(value)
        return f'<BulkData uuid="{value.uuid}"/>'


def _person_name(number: int, components) -> str:
    """A PersonName element from its (escaped) component groups."""
    parts = [f'<PersonName number="{number}">']
    for group, text in zip(NAME_GROUPS, components):
        names = [f"<{component}>{part}</{component}>" for component, part in zip(NAME_COMPONENTS, text.split("^"))
                 if part]
        if names:
            parts.append(f"<{group}>{''.join(names)}</{group}>")
    parts.append("</PersonName>")
    return "".join(parts)


def _constant(dataset: Dataset) -> Callable[[], Dataset]:
    return lambda: dataset


def _escape(text: str, attribute: bool = False) -> str:
    """``text`` as XML character data (``attribute``: in a double-quoted attribute). Carriage returns
    and tabs are written as references so that parsing gives them back unchanged."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if "\r" in text:
        text = text.replace("\r", "&#13;")
    if attribute:
        text = text.replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")
    return text


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


def native_model(source: Source, inline_max: int) -> tuple[bytes, etree._Element, list[BulkValue]]:
    """The model of ``source`` (namespace-free text and its parsed view) and the bulk values it points to.

    Raises ``etree.XMLSyntaxError`` for text XML cannot carry (control characters)."""
    builder = NativeBuilder(source, inline_max)
    plain = builder.build()
    return plain, etree.fromstring(plain, PARSER), builder.bulk


# --- decoding values from their bytes ---------------------------------------------------------------------

_SPLIT_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "SH", "TM", "UI", "UC", "PN"})
_SINGLE_TEXT_VRS = frozenset({"LT", "ST", "UT", "UR"})
_CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
_NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
_FAST_CHARSETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
"""Specific Character Sets whose text is one plain Python codec (the default repertoire is within latin-1);
every other one (ISO 2022 code extensions, ...) is left to pydicom."""


def _creator(raw) -> str:
    """The Private Creator a raw or converted element holds ("" if none)."""
    value = None if raw is None else raw.value
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return str(value or "").strip(" \x00")


def _fast_encoding(raw) -> Optional[str]:
    value = raw.value
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


def _value_xml(vr: str, data: bytes, little_endian: bool, encoding: Optional[str]) -> Optional[str]:
    """The ``Value`` (or ``PersonName``) elements of a value, decoded from its bytes; ``None`` where pydicom
    must decode it (a character set with code extensions, a VR this does not handle)."""
    if vr in _SPLIT_TEXT_VRS or vr in _SINGLE_TEXT_VRS:
        if vr in _CHARSET_VRS and encoding is None:
            return None
        text = _escape(data.decode(encoding or "latin-1").rstrip(" \x00"))  # escaping adds no \\, ^ or =
        if not text:
            return ""
        if vr in _SINGLE_TEXT_VRS:
            return f'<Value number="1">{text}</Value>'
        values = [v.strip(" \x00") for v in text.split("\\")]
        if vr == "PN":
            return "".join(_person_name(number, name.split("=")) for number, name in enumerate(values, 1))
        return "".join([f'<Value number="{number}">{v}</Value>' for number, v in enumerate(values, 1)])
    number_format = _NUMBER_FORMATS.get(vr)
    if number_format is not None:
        size = struct.calcsize("<" + number_format)
        if len(data) % size:
            return None
        numbers = struct.unpack(f"{'<' if little_endian else '>'}{len(data) // size}{number_format}", data)
        return "".join([f'<Value number="{number}">{v!r}</Value>' for number, v in enumerate(numbers, 1)])
    if vr == "AT":
        if len(data) % 4:
            return None
        words = struct.unpack(f"{'<' if little_endian else '>'}{len(data) // 2}H", data)
        return "".join([f'<Value number="{i // 2 + 1}">{words[i]:04X}{words[i + 1]:04X}</Value>'
                        for i in range(0, len(words), 2)])
    return None
