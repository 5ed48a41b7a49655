"""Names of the received objects in the output folder.

A DICOM object is named after its SOP Instance UID (``<uid>.dcm``), anything else after its descriptor
UUID with the extension of its MIME type. Both come from the application, so neither is trusted as a
path: a name is used only if it is a plain UID or UUID-like token, otherwise a fresh UUID stands in.
Names never collide with each other or with the run's own files.
"""
from __future__ import annotations

import mimetypes
import re
import uuid
from pathlib import Path
from typing import Optional

from hosting_service.orchestration.applog import APP_LOG_NAME
from hosting_service.orchestration.manifest import MANIFEST_NAME

RESERVED = (MANIFEST_NAME, APP_LOG_NAME)
"""The run's own files in the output folder."""
_UID = re.compile(r"[0-9]+(\.[0-9]+){0,40}")
_SOP_INSTANCE_UID = 0x00080018
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def read_sop_instance_uid(path: Path) -> Optional[str]:
    """The SOP Instance UID of a DICOM file, if it is one and the UID is well formed."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[_SOP_INSTANCE_UID])
    except Exception:  # noqa: BLE001 - pydicom raises many types for a file that is not DICOM
        return None
    element = ds.get_item(_SOP_INSTANCE_UID)  # raw: converting a malformed UID would print warnings
    value = element.value if element is not None else None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    value = (value or "").strip("\0 ")
    return value if _UID.fullmatch(value) and len(value) <= 64 else None


def object_name(descriptor_uuid: Optional[str], mime_type: Optional[str], sop_instance_uid: Optional[str]) -> str:
    if sop_instance_uid:
        return f"{sop_instance_uid}.dcm"
    stem = descriptor_uuid if descriptor_uuid and _TOKEN.fullmatch(descriptor_uuid) else str(uuid.uuid4())
    extension = ".dcm" if mime_type == "application/dicom" else mimetypes.guess_extension(mime_type or "") or ""
    return stem + extension


def unique_name(folder: Path, name: str) -> str:
    """``name``, or ``<stem>-2<suffix>``, ``-3``... if the folder has it already."""
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate, n = name, 1
    while (folder / candidate).exists() or candidate in RESERVED:
        n += 1
        candidate = f"{stem}-{n}{suffix}"
    return candidate
