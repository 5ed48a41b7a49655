"""A task's input files and folders as the AvailableData the host offers (PS3.19 §9.2).

DICOM objects go into the Patient / Study / Series tree (patients keyed by Patient ID and Issuer of
Patient ID, studies by Study Instance UID, series by Series Instance UID), each with an
``application/dicom`` ObjectDescriptor: SOP Class UID, stored transfer syntax, modality and a fresh
UUID. An object missing the lower levels' UIDs hangs at the lowest level it has (a DICOMDIR, with no
patient or study, is a top-level descriptor). Other files are top-level descriptors with the MIME type
their name suggests. A file that cannot be read, or that claims to be DICOM and is not, is reported in
:attr:`ScanResult.problems` and skipped; nothing in the inputs makes a scan fail.

Speed matters here (thousands of files per task): each file is opened once, its header parsed only up
to the Series Instance UID (0020,000E), and the few values used are decoded directly from their raw
bytes (UI, CS and DA are ASCII by definition; LO and PN are decoded with the file's Specific Character
Set through :mod:`pydicom.charset`): pydicom's general element conversion of those ten elements alone
would cost 40% of a bare header read (``specific_tags`` was measured too: slower on typical headers).
``bench/inputs.py`` compares a scan with a bare ``dcmread(stop_before_pixels=True)`` pass. The price:
a file cut short after its Series Instance UID is offered, and only found out when it is re-encoded
for delivery or by the application that reads it.

Folders are walked recursively in name order, so a scan is deterministic; names starting with ``.``
inside folders are skipped (``.DS_Store``, editor and VCS files); symbolic links are followed, each
folder visited once, and a file reached twice is offered once.
"""
from __future__ import annotations

import datetime as _dt
import mimetypes
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Optional

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.filereader import read_partial
from pydicom.tag import BaseTag
from pydicom.uid import MediaStorageDirectoryStorage
from pydicom.valuerep import TEXT_VR_DELIMS, PersonName

from hosting_service.dicom.delivery import DICOM_MIME_TYPE, transfer_syntax_of
from hosting_service.model import AvailableData, ObjectDescriptor, Patient, Series, Study, TreeBuilder
from hosting_service.store.base import InputObject

__all__ = ["ScanResult", "scan"]

_SPECIFIC_CHARACTER_SET = 0x00080005
_SOP_CLASS_UID = 0x00080016
_SOP_INSTANCE_UID = 0x00080018
_MODALITY = 0x00080060
_PATIENT_NAME = 0x00100010
_PATIENT_ID = 0x00100020
_ISSUER_OF_PATIENT_ID = 0x00100021
_PATIENT_BIRTH_DATE = 0x00100030
_PATIENT_SEX = 0x00100040
_STUDY_INSTANCE_UID = 0x0020000D
_SERIES_INSTANCE_UID = 0x0020000E
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_DATASET_STARTS = (b"\x02\x00", b"\x08\x00", b"\x00\x08")
"""First two bytes of a data set stored without preamble: group 0002 (file meta, always little endian) or
group 0008 in either byte order; no other public group can come first and private ones start at 0009."""
_COMPRESSION_TYPES = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}


@dataclass
class ScanResult:
    available: AvailableData = field(default_factory=AvailableData)
    """What NotifyDataAvailable announces (split into calls by :func:`~hosting_service.orchestration.tasks.batches`)."""
    objects: list[InputObject] = field(default_factory=list)
    """One per descriptor, in the order of the files: what GetData hands out."""
    problems: list[tuple[str, str]] = field(default_factory=list)
    """``(path, reason)`` for every file or folder skipped."""


class _NotDicom(Exception):
    """The file claims to be DICOM (preamble or ``.dcm`` name) but is not readable as such."""


@dataclass
class _Header:
    sop_class: str
    transfer_syntax: str
    modality: Optional[str]
    patient_id: Optional[str]
    issuer: Optional[str]
    patient_name: Optional[str]
    birth_date: Optional[_dt.datetime]
    sex: Optional[str]
    study: Optional[str]
    series: Optional[str]


def scan(paths: Iterable[str | Path]) -> ScanResult:
    """Read ``paths`` (files and folders) into AvailableData, the InputObjects behind it, and problems."""
    result = ScanResult()
    tree = TreeBuilder()
    result.available = tree.data
    seen: set[tuple[int, int]] = set()
    for path in _files(paths, result.problems):
        try:
            with open(path, "rb") as f:
                info = os.fstat(f.fileno())
                if (info.st_dev, info.st_ino) in seen:
                    continue
                seen.add((info.st_dev, info.st_ino))
                header = _dicom_header(f)
        except OSError as exc:
            result.problems.append((path, f"cannot be read: {exc.strerror or exc}"))
            continue
        except _NotDicom as exc:
            result.problems.append((path, str(exc)))
            continue
        if header is None:
            mime = _mime_type(path)
            if mime == DICOM_MIME_TYPE:
                result.problems.append((path, "named as DICOM but holds no DICOM data set"))
                continue
            descriptor = ObjectDescriptor(MimeType=mime, DescriptorUuid=str(uuid.uuid4()))
            tree.add(descriptor)
        else:
            descriptor = ObjectDescriptor(
                ClassUID=header.sop_class,
                MimeType=DICOM_MIME_TYPE,
                Modality=header.modality,
                TransferSyntaxUID=header.transfer_syntax,
                DescriptorUuid=str(uuid.uuid4()),
            )
            _place(tree, descriptor, header)
        result.objects.append(InputObject(descriptor, path, 0, info.st_size))
    return result


def _files(paths: Iterable[str | Path], problems: list[tuple[str, str]]) -> Iterator[str]:
    """Absolute paths of the regular files named or found under the folders named, in scan order."""
    visited: set[tuple[int, int]] = set()
    for given in paths:
        path = os.path.abspath(given)
        if os.path.isdir(path):
            yield from _walk(path, visited, problems)
        elif os.path.isfile(path):
            yield path
        elif os.path.lexists(path):
            problems.append((path, "not a regular file or folder"))
        else:
            problems.append((path, "no such file or folder"))


def _walk(folder: str, visited: set[tuple[int, int]], problems: list[tuple[str, str]]) -> Iterator[str]:
    try:
        info = os.stat(folder)
        if (info.st_dev, info.st_ino) in visited:
            return
        visited.add((info.st_dev, info.st_ino))
        with os.scandir(folder) as listing:
            entries = sorted((e for e in listing if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        problems.append((folder, f"cannot be listed: {exc.strerror or exc}"))
        return
    for entry in entries:
        try:
            is_dir, is_file = entry.is_dir(), entry.is_file()
        except OSError as exc:
            problems.append((entry.path, f"cannot be read: {exc.strerror or exc}"))
            continue
        if is_dir:
            yield from _walk(entry.path, visited, problems)
        elif is_file:
            yield entry.path
        elif os.path.islink(entry.path) and not os.path.exists(entry.path):
            problems.append((entry.path, "broken symbolic link"))
        else:
            problems.append((entry.path, "not a regular file or folder"))


class _PastSeriesUid:
    """``read_partial``'s stop condition: the first element after (0020,000E). Remembers whether it came:
    every composite object has elements after it (General Series and Image modules), so a file that
    ends before is cut short, unless it is a DICOMDIR."""

    def __init__(self) -> None:
        self.reached = False

    def __call__(self, tag: BaseTag, vr: Optional[str], length: int) -> bool:
        # int's comparison: BaseTag's own __gt__ is Python code, and this runs for every element read
        if int.__gt__(tag, _SERIES_INSTANCE_UID):
            self.reached = True
        return self.reached


def _dicom_header(f: BinaryIO) -> Optional[_Header]:
    """The attributes of the data set in ``f``; ``None`` if ``f`` holds none.

    A file with the ``DICM`` prefix must parse, have a well-formed SOP Class UID and not end inside its
    header (else :class:`_NotDicom`). A file without it is read as a bare data set (pydicom's ``force``)
    only if it starts like one, and taken as DICOM only if that meets the same tests and yields a
    well-formed SOP Instance UID too, so other binary files are never mistaken for DICOM. pydicom's
    warnings about malformed input are left alone (the warnings filters are process-wide, and a scan
    runs beside other threads).
    """
    head = f.read(132)
    f.seek(0)
    part10 = head[128:132] == b"DICM"
    if not part10 and head[:2] not in _DATASET_STARTS:
        return None
    stop = _PastSeriesUid()
    try:
        ds = read_partial(f, stop, force=not part10)
        encodings = convert_encodings(_raw(ds, _SPECIFIC_CHARACTER_SET))
    except Exception as exc:  # pydicom raises many types for malformed input
        if part10:
            raise _NotDicom(f"not a readable DICOM file: {exc}") from None
        return None
    sop_class = _ascii(ds, _SOP_CLASS_UID) or (ds.file_meta.get("MediaStorageSOPClassUID") if part10 else None)
    problem = None
    if not sop_class:
        problem = "DICOM file without a SOP Class UID"
    elif not _UID.fullmatch(sop_class):
        problem = f"malformed SOP Class UID {sop_class!r}"
    elif not stop.reached and sop_class != MediaStorageDirectoryStorage:
        problem = "the file ends inside its DICOM header (truncated)"
    elif not part10 and not _UID.fullmatch(_ascii(ds, _SOP_INSTANCE_UID) or ""):
        problem = "no SOP Instance UID"
    if problem:
        if part10:
            raise _NotDicom(problem)
        return None
    return _Header(
        sop_class=str(sop_class),
        transfer_syntax=str(transfer_syntax_of(ds)),
        modality=_ascii(ds, _MODALITY),
        patient_id=_text(ds, _PATIENT_ID, encodings),
        issuer=_text(ds, _ISSUER_OF_PATIENT_ID, encodings),
        patient_name=_person_name(ds, encodings),
        birth_date=_date(_ascii(ds, _PATIENT_BIRTH_DATE)),
        sex=_ascii(ds, _PATIENT_SEX),
        study=_ascii(ds, _STUDY_INSTANCE_UID),
        series=_ascii(ds, _SERIES_INSTANCE_UID),
    )


def _raw(ds, tag: int):
    """The element's undecoded value (bytes), or its value if pydicom already decoded it; ``None`` if absent."""
    element = ds.get_item(tag)
    return None if element is None else element.value


def _stripped(value: object) -> Optional[str]:
    """A decoded value without DICOM padding; ``None`` when absent or empty."""
    return None if value is None else (str(value).strip("\0 ") or None)


def _ascii(ds, tag: int) -> Optional[str]:
    """A UI, CS or DA value: the default character repertoire whatever the Specific Character Set."""
    value = _raw(ds, tag)
    return _stripped(value.decode("ascii", "replace") if isinstance(value, bytes) else value)


def _text(ds, tag: int, encodings: list[str]) -> Optional[str]:
    value = _raw(ds, tag)
    return _stripped(decode_bytes(value, encodings, TEXT_VR_DELIMS) if isinstance(value, bytes) else value)


def _person_name(ds, encodings: list[str]) -> Optional[str]:
    value = _raw(ds, _PATIENT_NAME)
    return _stripped(PersonName(value, encodings) if isinstance(value, bytes) else value)


def _date(text: Optional[str]) -> Optional[_dt.datetime]:
    """A DA value (``YYYYMMDD``) as a datetime at midnight; ``None`` if absent or not a valid date."""
    if not text or len(text) != 8 or not text.isdigit():
        return None
    try:
        return _dt.datetime(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _mime_type(path: str) -> str:
    mime, encoding = mimetypes.guess_type(path)
    if encoding:
        return _COMPRESSION_TYPES.get(encoding, "application/octet-stream")
    return mime or "application/octet-stream"


def _place(tree: TreeBuilder, descriptor: ObjectDescriptor, h: _Header) -> None:
    """Hang ``descriptor`` as deep in the Patient/Study/Series tree as its header allows; patients are
    told apart by Patient ID and Issuer of Patient ID."""
    if h.patient_id is None and h.study is None:
        tree.add(descriptor)
        return
    key = (h.patient_id or "", h.issuer or "")
    patient = Patient(AssigningAuthority=h.issuer, DateOfBirth=h.birth_date, ID=h.patient_id, Name=h.patient_name,
                      Sex=h.sex)
    study = None if h.study is None else (h.study, Study(StudyUID=h.study))
    series = None if study is None or h.series is None else (h.series, Series(SeriesUID=h.series))
    tree.add(descriptor, (key, patient), study, series)
