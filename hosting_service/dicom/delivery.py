"""What GetData hands out for an offered input: the transfer syntax negotiation of PS3.19 §8.3.2.

The recipient lists acceptable transfer syntaxes in order of preference; the provider "shall select and
use the first transfer syntax in the list that it supports" and, for DICOM data, must at least support
Explicit VR Little Endian. An empty list means "as stored". So, for ``application/dicom``:

* the first acceptable syntax that is the stored one: the original file, exactly as offered (path,
  offset, length; not copied, not parsed: a ``stat`` and a 4-byte read check that it is still there,
  unchanged and a Part 10 file). This is the common case and must stay fast (GetData for thousands of
  UUIDs in well under a second);
* any other syntax, or a data set stored without the Part 10 header (which a scan accepts): the object
  re-encoded with pydicom into a Part 10 file of the delivery cache.

What this host can re-encode into: Implicit VR Little Endian, Explicit VR Little Endian, Deflated
Explicit VR Little Endian, Explicit VR Big Endian (OW/OL/OF/OD/OV values byte-swapped here, as pydicom
leaves that to its callers; the contents of UN elements cannot be swapped and are copied as they are),
and every compressed syntax pydicom has an encoder for (RLE Lossless, JPEG-LS, JPEG 2000). Stored
compressed pixel data is decoded by pydicom with the decoders the project depends on: JPEG Baseline,
Extended and Lossless (pylibjpeg-libjpeg), JPEG-LS (pyjpegls, pylibjpeg-libjpeg), JPEG 2000 and
High-Throughput JPEG 2000 (pylibjpeg-openjpeg), RLE (pylibjpeg-rle, or pydicom itself); Deflated is
inflated by pydicom's reader. A syntax that cannot be supplied is skipped in favour of the next acceptable
one, and :class:`NotDeliverable` says why none could (GetData then leaves that object out and records a
warning; the other objects of the call are delivered).

``includeBulkData=FALSE`` is a permission, not an order (PS3.19 §8.3.2: the provider *may* omit bulk
data). The stored object is handed out as it is whenever its syntax is acceptable, bulk data included:
leaving the pixels out would cost a copy and save nothing. Bulk data (see :data:`BULK_DATA_TAGS`) is
left out only when a copy is made anyway (another syntax, or a data set without the Part 10 header): then
leaving it out saves reading, decoding and writing it. Without pixel data, any known transfer syntax can
be supplied: the data set itself is then plain (Explicit or Implicit VR) encoding.

Copies are entries of the shared, size-bounded :class:`~hosting_service.dicom.cache.DeliveryCache`,
named by a hash of (source path, device, inode, offset, length, mtime, size, syntax, bulk), so a changed
source is never served from a stale copy.

Non-DICOM objects are handed out as they are, with an empty transfer syntax.
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import correct_ambiguous_vr
from pydicom.pixels import get_decoder, get_encoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from hosting_service.dicom.cache import DeliveryCache
from hosting_service.model import DICOM_MIME_TYPE
from hosting_service.store.base import InputObject

__all__ = [
    "DICOM_MIME_TYPE",
    "BULK_DATA_TAGS",
    "Delivery",
    "NotDeliverable",
    "deliver",
    "reencode",
    "transfer_syntax_of",
]


BULK_DATA_TAGS = frozenset(
    {
        0x7FE00010,  # Pixel Data
        0x7FE00008,  # Float Pixel Data
        0x7FE00009,  # Double Float Pixel Data
        0x7FE00001,  # Extended Offset Table (describes Pixel Data)
        0x7FE00002,  # Extended Offset Table Lengths
        0x54001010,  # Waveform Data (inside Waveform Sequence items)
        0x56000020,  # Spectroscopy Data
        0x00420011,  # Encapsulated Document
    }
)
"""Elements removed, at any depth, when the recipient asks for no bulk data; Overlay Data (60xx,3000)
of every overlay group too. Everything else, the attributes describing the pixels included, stays."""

_NATIVE_SYNTAXES = frozenset(
    {ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian}
)
_SWAPPED_VRS = {"OW": "u2", "OL": "u4", "OF": "u4", "OD": "u8", "OV": "u8"}
"""Binary VRs whose values a change of byte order must swap, with their word type."""


class NotDeliverable(Exception):
    """GetData cannot supply an offered object in any form the recipient accepts (the message says why)."""


@dataclass(frozen=True)
class Delivery:
    """Where the recipient reads the object: ``length`` bytes at ``offset`` of ``path``."""

    path: Path
    offset: int
    length: int
    transfer_syntax: str
    """The syntax the bytes are in; ``""`` for non-DICOM objects."""


def deliver(obj: InputObject, acceptable: list[str], include_bulk: bool, cache: DeliveryCache) -> Delivery:
    """The form of ``obj`` to hand out for a GetData call with these arguments.

    Raises :class:`NotDeliverable` when the source is gone or changed since it was offered, or when no
    acceptable syntax can be supplied.
    """
    dicom = (obj.descriptor.MimeType or "").lower() == DICOM_MIME_TYPE
    source, length, part10 = _check_source(obj, dicom)
    if not dicom:
        return Delivery(Path(obj.path), obj.offset, length, "")
    stored = obj.descriptor.TransferSyntaxUID or ""
    reasons: list[str] = []
    for syntax in acceptable or [stored or ExplicitVRLittleEndian]:
        if syntax == stored and part10:  # as stored, even without includeBulkData: no copy (module docstring)
            return Delivery(Path(obj.path), obj.offset, length, stored)
        reason = _obstacle(stored, syntax, include_bulk)
        if reason is None:
            reason, delivery = _cached(obj, source, length, UID(syntax), include_bulk, cache)
            if delivery is not None:
                return delivery
        reasons.append(f"{syntax}: {reason}")
    raise NotDeliverable(
        f"object {obj.descriptor.DescriptorUuid} (stored as {_name(stored)}) cannot be supplied in any "
        f"acceptable transfer syntax: {'; '.join(reasons)}"
    )


def _unreadable(obj: InputObject, exc: OSError) -> NotDeliverable:
    reason = exc.strerror or exc
    return NotDeliverable(f"object {obj.descriptor.DescriptorUuid}: its file can no longer be read ({reason})")


def _check_source(obj: InputObject, dicom: bool) -> tuple[os.stat_result, int, bool]:
    """The source file's ``stat``, the object's length, and whether it is a DICOM Part 10 file.

    Checks that the file still holds the object as offered. For DICOM objects the four bytes of the
    ``DICM`` prefix are read: a data set stored without the Part 10 header (which a scan accepts) must
    be wrapped into one before it is handed out as ``application/dicom``. One open, one ``fstat`` and
    one 4-byte ``pread``: about 3 us, against 1.5 us for a bare ``stat``.
    """
    try:
        fd = os.open(obj.path, os.O_RDONLY)
        try:
            source = os.fstat(fd)
            part10 = dicom and os.pread(fd, 4, obj.offset + 128) == b"DICM"
        finally:
            os.close(fd)
    except OSError as exc:
        raise _unreadable(obj, exc) from None
    length = source.st_size - obj.offset if obj.length < 0 else obj.length
    if obj.offset < 0 or length < 0 or obj.offset + length > source.st_size:
        raise NotDeliverable(
            f"object {obj.descriptor.DescriptorUuid}: its file changed since it was offered "
            f"({source.st_size} bytes now; the offer was {obj.length} bytes at offset {obj.offset})"
        )
    return source, length, part10


def _name(syntax: str) -> str:
    uid = UID(syntax)
    return f"{uid.name} ({syntax})" if uid.is_transfer_syntax else (syntax or "unknown syntax")


def _knows(syntax: UID) -> bool:
    return syntax.is_transfer_syntax and not syntax.is_private


def _obstacle(stored: str, target: str, include_bulk: bool) -> str | None:
    """Why an object stored in ``stored`` cannot be re-encoded into ``target``, or ``None`` if it can.

    Judged from the syntaxes alone (and the installed pydicom plugins); ``stored`` may be ``""`` when
    unknown, then only the target is judged.
    """
    source, goal = UID(stored), UID(target)
    if not _knows(goal):
        return "not a transfer syntax this host knows"
    if goal == source or not include_bulk:
        return None
    if source.is_encapsulated:
        try:
            decoder = get_decoder(source)
        except NotImplementedError:
            return f"pydicom has no decoder for the stored {source.name}"
        if not decoder.is_available:
            return f"decoding the stored {source.name} needs a plugin: {'; '.join(decoder.missing_dependencies)}"
    if goal in _NATIVE_SYNTAXES:
        return None
    try:
        encoder = get_encoder(goal)
    except NotImplementedError:
        return f"pydicom cannot encode {goal.name}"
    if not encoder.is_available:
        return f"encoding {goal.name} needs a plugin: {'; '.join(encoder.missing_dependencies)}"
    return None


def _cached(obj: InputObject, source: os.stat_result, length: int, syntax: UID, include_bulk: bool,
            cache: DeliveryCache) -> tuple[str, Delivery | None]:
    """The cached re-encoding of ``obj``, made now if missing: ``("", delivery)`` or ``(reason, None)``."""
    key = repr((os.path.abspath(obj.path), source.st_dev, source.st_ino, obj.offset, length, source.st_mtime_ns,
                source.st_size, str(syntax), include_bulk))
    name = f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.dcm"
    path = cache.handed_out(name) or cache.get(name)
    if path is None:
        try:
            encoded = _encode(obj, obj.offset + length == source.st_size, length, syntax, include_bulk)
        except OSError as exc:
            raise _unreadable(obj, exc) from None
        except Exception as exc:  # pydicom's readers, decoders and encoders raise many types; each is a reason
            return f"re-encoding failed: {' '.join(str(exc).split())}", None
        path = cache.put(name, encoded)
    return "", Delivery(path, 0, path.stat().st_size, str(syntax))


def _encode(obj: InputObject, to_end: bool, length: int, syntax: UID, include_bulk: bool) -> bytes:
    """The offered object as a DICOM Part 10 file in ``syntax``, optionally without bulk data.

    ``to_end``: the object runs to the end of its file, so pydicom can read the file itself; otherwise
    the object's bytes are read into memory first.
    """
    with open(obj.path, "rb") as f:
        f.seek(obj.offset)
        ds = pydicom.dcmread(f if to_end else io.BytesIO(f.read(length)), force=True,
                             stop_before_pixels=not include_bulk)
    if not include_bulk:
        _strip_bulk_data(ds)
    reencode(ds, syntax)
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)  # save_as refuses changes of byte order
    return out.getvalue()


def transfer_syntax_of(ds: Dataset) -> UID:
    """The transfer syntax ``ds`` was read in: from its file meta, else from how pydicom decoded it."""
    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if syntax:
        return syntax if isinstance(syntax, UID) else UID(syntax)
    implicit, little = ds.original_encoding
    if implicit is False:
        return ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    return ImplicitVRLittleEndian


def reencode(ds: Dataset, syntax: str) -> None:
    """Change ``ds`` in place so that writing it produces ``syntax``: decode compressed pixel data,
    compress it, swap byte order as needed, and set the file meta. The SOP Instance UID is kept: a
    change of transfer syntax does not make a new instance.

    Raises ``ValueError`` for a syntax pydicom does not know, and whatever pydicom's decoders and
    encoders raise when they are missing or the data do not suit them.
    """
    target = UID(syntax)
    if not _knows(target):
        raise ValueError(f"{syntax!r} is not a transfer syntax this host knows")
    source = transfer_syntax_of(ds)
    if not hasattr(ds, "file_meta"):
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = source  # pydicom's codecs read the pixel encoding from here
    if target == source:
        return
    has_pixels = "PixelData" in ds
    if has_pixels and source.is_encapsulated:
        ds.decompress(generate_instance_uid=False)  # leaves Explicit VR Little Endian
    elif source == ExplicitVRBigEndian:
        _swap_byte_order(ds, from_little_endian=False)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if has_pixels and target.is_encapsulated:
        ds.compress(target, generate_instance_uid=False)
    elif target == ExplicitVRBigEndian:
        _swap_byte_order(ds, from_little_endian=True)
    ds.file_meta.TransferSyntaxUID = target


def _swap_byte_order(ds: Dataset, *, from_little_endian: bool) -> None:
    """Swap the words of every OW/OL/OF/OD/OV value, at any depth: pydicom re-encodes the values it
    parses (US, FL, ...) in the target byte order itself, but leaves these byte strings as they are.
    Ambiguous VRs (Pixel Data "OB or OW" of a new or Implicit VR data set) are resolved first."""
    correct_ambiguous_vr(ds, from_little_endian)
    _swap_words(ds)


def _swap_words(ds: Dataset) -> None:
    for tag in list(ds.keys()):
        element = ds[tag]
        if element.VR == "SQ":
            for item in element.value:
                _swap_words(item)
        elif element.VR in _SWAPPED_VRS and element.value:
            element.value = np.frombuffer(element.value, dtype=_SWAPPED_VRS[element.VR]).byteswap().tobytes()


def _strip_bulk_data(ds: Dataset) -> None:
    """Remove :data:`BULK_DATA_TAGS` and Overlay Data from ``ds`` and every sequence item in it."""
    for tag in list(ds.keys()):
        if tag in BULK_DATA_TAGS or (0x6000 <= tag.group <= 0x601E and tag.element == 0x3000):
            del ds[tag]
        elif ds[tag].VR == "SQ":
            for item in ds[tag].value:
                _strip_bulk_data(item)
