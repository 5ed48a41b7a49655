"""An offered object, read with pydicom for a model: every attribute, but no large value loaded.

pydicom reads with ``defer_size``: a value larger than the models' inline limit is skipped and only its
position is kept (``RawDataElement.value_tell``), so the models' bulk data point into the file as it lies
on disk, with no copy (PS3.19 A.1 ``BulkData``). Deferred values that are not binary (a long text) are
read here from the same open file. Where the bytes are not in the file as they are (a Deflated data set,
which pydicom inflates into memory), the values are read whole and :attr:`Source.in_file` is False: the
caller then keeps a copy.
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO, MutableMapping, Optional

import pydicom
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.filereader import data_element_generator, read_preamble
from pydicom.dataset import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian, UID

from hosting_service.store.base import InputObject

BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
"""Value representations whose values are bytes: InlineBinary or BulkData in the Native model."""

_PLAIN_ENCODINGS = {
    ImplicitVRLittleEndian: (True, True),
    UID("1.2.840.10008.1.2.1"): (False, True),
    UID("1.2.840.10008.1.2.2"): (False, False),
}
"""The uncompressed transfer syntaxes: (implicit VR, little endian)."""
_ITEM = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD


class UnreadableSource(Exception):
    """The object cannot be read as DICOM (it goes to FailedSourceObjects)."""


@dataclass
class Span:
    """Where a value's bytes are: ``length`` bytes at ``offset`` of ``path``."""

    path: str
    offset: int
    length: int


class Source:
    """One offered object, open for reading (a context manager)."""

    def __init__(self, obj: InputObject, inline_max: int, *, elements_only: bool = False):
        """``elements_only``: the caller needs the elements, not a Dataset (see :meth:`_read_elements`)."""
        self.obj = obj
        try:
            self._file: BinaryIO = open(obj.path, "rb")
            size = os.fstat(self._file.fileno()).st_size
        except OSError as exc:
            raise UnreadableSource(f"its file can no longer be read ({exc.strerror or exc})") from None
        length = size - obj.offset if obj.length < 0 else obj.length
        if obj.offset < 0 or length < 0 or obj.offset + length > size:
            self._file.close()
            raise UnreadableSource("its file changed since it was offered")
        self._file.seek(obj.offset)
        # value_tell is a position in what pydicom reads: the file itself when the object runs to its end,
        # else a copy of the object's bytes (then positions are relative to the object's first byte)
        to_end = obj.offset + length == size
        stream: BinaryIO = self._file if to_end else io.BytesIO(self._file.read(length))
        self._base = 0 if to_end else obj.offset
        self._stream = stream
        self._dataset: Optional[Dataset] = None
        self.raw_elements: Optional[MutableMapping[Any, Any]] = None
        """The top-level elements as read (the Native model's fast path), else ``None``."""
        if elements_only and self._read_elements(stream, inline_max):
            return
        stream.seek(obj.offset if to_end else 0)
        try:
            self._dataset = pydicom.dcmread(stream, force=True, defer_size=inline_max)
            self.transfer_syntax = UID(self.dataset.file_meta.get("TransferSyntaxUID") or "")
            self.in_file = self.transfer_syntax != DeflatedExplicitVRLittleEndian
            if not self.in_file:  # positions are in the inflated copy: read every value now
                stream.seek(obj.offset if to_end else 0)
                self._dataset = pydicom.dcmread(stream, force=True)
        except Exception as exc:  # pydicom raises many types for data it cannot parse
            self.close()
            raise UnreadableSource(f"pydicom cannot read it: {exc}") from None
        if not self.transfer_syntax:
            implicit, little = self._dataset.original_encoding
            self.transfer_syntax = ImplicitVRLittleEndian if implicit or implicit is None else UID(
                "1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2")
        self.little_endian = self.transfer_syntax != "1.2.840.10008.1.2.2"

    def _read_elements(self, stream: BinaryIO, inline_max: int) -> bool:
        """Read a Part 10 file in a plain transfer syntax as a dict of its raw elements, skipping the
        Dataset pydicom would build around them (about half the cost of ``dcmread``). ``False`` where
        this does not apply (no Part 10 header, Deflated, an unknown syntax); then ``dcmread`` reads it."""
        try:
            if read_preamble(stream, False) is None:
                return False
            meta: dict[int, Any] = {raw.tag: raw for raw in data_element_generator(
                stream, False, True, stop_when=lambda tag, vr, length: tag.group != 2)}
            syntax = UID((meta[0x00020010].value or b"").decode("ascii").strip(" \x00"))
            if syntax in _PLAIN_ENCODINGS:
                implicit, little = _PLAIN_ENCODINGS[syntax]
            elif syntax.is_encapsulated and syntax != DeflatedExplicitVRLittleEndian:
                implicit, little = False, True  # only Pixel Data is compressed
            else:
                return False
            self.raw_elements = {raw.tag: raw for raw in data_element_generator(
                stream, implicit, little, defer_size=inline_max)}
        except Exception:  # whatever this shortcut cannot read, dcmread gets to try
            return False
        self.transfer_syntax, self.in_file, self.little_endian = syntax, True, little
        self._meta = meta
        return True

    @property
    def dataset(self) -> Dataset:
        """The data set (built from the raw elements on first use where only those were read)."""
        if self._dataset is None:
            assert self.raw_elements is not None  # one of the two was read
            self._dataset = Dataset(self.raw_elements)
        return self._dataset

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- values -----------------------------------------------------------------------------------------

    @staticmethod
    def vr_of(raw: RawDataElement) -> str:
        """The VR of a raw element: as encoded, else from the dictionary; ambiguous VRs of values too
        large to read resolve to their binary reading (Pixel Data "OB or OW" is OW in Implicit VR)."""
        vr = raw.VR
        if vr is None:
            try:
                vr = dictionary_VR(raw.tag)
            except KeyError:
                vr = "UN"
        if " or " in vr:
            choices = vr.split(" or ")
            vr = next((c for c in choices if c in BINARY_VRS and c != "OB"), choices[0])
        return vr

    def is_deferred(self, raw: object) -> bool:
        return isinstance(raw, RawDataElement) and raw.value is None and raw.length != 0

    def span(self, raw: RawDataElement) -> Span:
        """Where a deferred value lies in the file (an undefined length one up to its delimiter)."""
        length = raw.length
        if length == 0xFFFFFFFF:
            length = self._encapsulated_length(raw.value_tell, raw.is_little_endian)
        return Span(self.obj.path, self._base + raw.value_tell, length)

    def read(self, span: Span) -> bytes:
        self._stream.seek(span.offset - self._base)
        data = self._stream.read(span.length)
        if len(data) != span.length:
            raise UnreadableSource("its file ends inside a value")
        return data

    def convert(self, ds: Dataset, raw: RawDataElement):
        """The DataElement of a raw element, reading a deferred value from the open file."""
        if self.is_deferred(raw):
            raw = raw._replace(value=self.read(self.span(raw)))
        return convert_raw_data_element(raw, encoding=ds._character_set, ds=ds)

    def _encapsulated_length(self, start: int, little_endian: bool) -> int:
        """The length of an undefined-length value (encapsulated pixel data: items up to the Sequence
        Delimitation Item), found by reading only the 8-byte item headers."""
        fmt = "<HHL" if little_endian else ">HHL"
        position = start
        while True:
            self._stream.seek(position)
            header = self._stream.read(8)
            if len(header) < 8:
                raise UnreadableSource("its encapsulated pixel data has no end")
            group, element, item_length = struct.unpack(fmt, header)
            tag = group << 16 | element
            if tag == _SEQUENCE_DELIMITER:
                return position - start
            if tag != _ITEM or item_length == 0xFFFFFFFF:
                raise UnreadableSource(f"unexpected tag {tag:08X} in encapsulated pixel data")
            position += 8 + item_length

