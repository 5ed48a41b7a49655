"""What a :class:`client.HostedApplication`'s ``process`` receives and returns.

* :class:`TaskInput`: one object the host offered, with its descriptor, where it hangs in the
  Patient/Study/Series tree, the locator the host gave and its bytes (read before ``process`` runs, since
  the host may discard them once released);
* :class:`TaskOutput`: one result, bytes or a file, with what its ObjectDescriptor needs to say;
  :meth:`TaskOutput.from_dataset` fills all of it from a pydicom dataset;
* :class:`TaskContext`: the host (for GenerateUID and status reports), the application's options and
  cancellation;
* :func:`announcement`: the AvailableData tree that announces outputs (DICOM objects under their
  Patient/Study/Series, other objects at the top level).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional, Union

from hosting_service.model import (
    DICOM_MIME_TYPE,
    AvailableData,
    ObjectDescriptor,
    ObjectLocator,
    Patient,
    Series,
    Status,
    StatusType,
    Study,
    TreeBuilder,
)

if TYPE_CHECKING:  # pydicom is imported only by applications that handle DICOM
    from pydicom.dataset import Dataset

    from client.host_client import HostClient


class TaskCanceled(Exception):
    """Raised inside ``process`` by :meth:`TaskContext.raise_if_canceled` once the host canceled the task."""


@dataclass
class TaskInput:
    descriptor: ObjectDescriptor
    locator: ObjectLocator
    data: bytes
    patient: Optional[Patient] = None
    study: Optional[Study] = None
    series: Optional[Series] = None

    def dataset(self) -> "Dataset":
        """The object parsed as DICOM (Part 10 or a bare dataset in the locator's transfer syntax)."""
        from pydicom import dcmread

        return dcmread(io.BytesIO(self.data), force=True)


@dataclass
class TaskOutput:
    """One result. ``name`` is its file name at the output location; give ``data`` or ``path``."""

    name: str
    data: Optional[bytes] = None
    path: Optional[Path] = None
    mime_type: str = DICOM_MIME_TYPE
    class_uid: Optional[str] = None
    transfer_syntax_uid: Optional[str] = None
    modality: Optional[str] = None
    patient: Optional[Patient] = None
    """Who the object belongs to (``Studies``/``ObjectDescriptors`` of this value are ignored)."""
    study_uid: Optional[str] = None
    series_uid: Optional[str] = None

    def __post_init__(self) -> None:
        if (self.data is None) == (self.path is None):
            raise ValueError(f"output {self.name!r}: give exactly one of data or path")
        if not self.name or "/" in self.name or "\\" in self.name or self.name in (".", ".."):
            raise ValueError(f"output name {self.name!r} must be a plain file name")

    @classmethod
    def from_dataset(cls, dataset: "Dataset", name: Optional[str] = None) -> "TaskOutput":
        """A DICOM Part 10 output from a pydicom dataset (which needs ``file_meta`` with its transfer
        syntax); descriptor, patient, study and series come from its attributes."""
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        return cls(
            name=name or f"{dataset.SOPInstanceUID}.dcm",
            data=buffer.getvalue(),
            class_uid=str(dataset.SOPClassUID),
            transfer_syntax_uid=str(dataset.file_meta.TransferSyntaxUID),
            modality=dataset.get("Modality") or None,
            patient=patient_of(dataset),
            study_uid=dataset.get("StudyInstanceUID") or None,
            series_uid=dataset.get("SeriesInstanceUID") or None,
        )

    @property
    def source(self) -> Union[bytes, Path]:
        """The bytes, or the file that holds them (``__post_init__`` made sure there is one of the two)."""
        return self.data if self.data is not None else Path(self.path or "")

    @property
    def size(self) -> int:
        source = self.source
        return len(source) if isinstance(source, bytes) else source.stat().st_size


def patient_of(dataset: "Dataset") -> Optional[Patient]:
    """The AvailableData Patient of a dataset's Patient module, ``None`` without Patient ID and name."""
    if not dataset.get("PatientID") and not dataset.get("PatientName"):
        return None
    return Patient(
        AssigningAuthority=dataset.get("IssuerOfPatientID") or None,
        DateOfBirth=_date_of_birth(dataset.get("PatientBirthDate")),
        ID=dataset.get("PatientID") or None,
        Name=str(dataset.get("PatientName") or "") or None,
        Sex=dataset.get("PatientSex") or None,
    )


def _date_of_birth(value) -> Optional[_dt.datetime]:
    """A DICOM DA (``YYYYMMDD``) as the xs:dateTime the wire wants; ``None`` if absent or malformed."""
    try:
        return _dt.datetime.strptime(str(value).strip(), "%Y%m%d") if value else None
    except ValueError:
        return None


@dataclass
class TaskContext:
    """What ``process`` may use besides its inputs."""

    host: "HostClient"
    options: argparse.Namespace
    available_data: list[AvailableData] = field(default_factory=list)
    """The host's announcements of this task's inputs, as received."""
    canceled_event: threading.Event = field(default_factory=threading.Event)

    @property
    def canceled(self) -> bool:
        return self.canceled_event.is_set()

    def raise_if_canceled(self) -> None:
        """Call between steps of a long computation so that a CANCELED request stops it promptly."""
        if self.canceled:
            raise TaskCanceled()

    def generate_uid(self) -> str:
        """A new UID from the host (GenerateUID), for objects the application creates."""
        return self.host.generate_uid()

    def report(self, message: str, status_type: StatusType = StatusType.INFORMATION) -> None:
        """Tell the host about a notable event (NotifyStatus); the message is the CodeMeaning."""
        self.host.notify_status(Status(StatusType=status_type, CodeValue=0, CodeMeaning=message))


def announcement(outputs: Iterable[tuple[str, TaskOutput]]) -> AvailableData:
    """The AvailableData for ``(descriptor UUID, output)`` pairs.

    An output goes as deep in the Patient/Study/Series tree as its information allows (PS3.19 §9.2: most
    DICOM objects belong at the Series level); without a patient it is a top-level descriptor.
    """
    tree = TreeBuilder()
    for uuid, output in outputs:
        descriptor = ObjectDescriptor(
            ClassUID=output.class_uid,
            MimeType=output.mime_type,
            Modality=output.modality,
            TransferSyntaxUID=output.transfer_syntax_uid,
            DescriptorUuid=uuid,
        )
        p = output.patient
        patient = None if p is None else ((p.ID, p.Name, p.AssigningAuthority), p)
        study = None if patient is None or output.study_uid is None else (
            output.study_uid, Study(StudyUID=output.study_uid))
        series = None if study is None or output.series_uid is None else (
            output.series_uid, Series(SeriesUID=output.series_uid))
        tree.add(descriptor, patient, study, series)
    return tree.data
