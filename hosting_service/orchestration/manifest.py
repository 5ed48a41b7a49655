"""``manifest.json``: what one ``dicom-host run`` did, beside the objects it received.

It names every object the application returned (descriptor, patient/study/series it was announced under,
file, size, SHA-256, the URI it was read from) and records the application's statuses, the protocol
warnings, the timings and how the run ended, so a result can be checked and traced without the server.
It is rewritten atomically, at the end of every run, whatever the outcome.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hosting_service.model import ObjectDescriptor, ObjectLocator, Patient, Series, Study

MANIFEST_NAME = "manifest.json"
FORMAT = "dicom-host-run/1"


RECEIVED, REFUSED = "received", "refused"
"""An output's ``status`` in the manifest: its bytes are in the folder, or the host would not read them."""


def output_entry(task: int, descriptor: ObjectDescriptor, patient: Optional[Patient], study: Optional[Study],
                 series: Optional[Series], locator: ObjectLocator, *, status: str = RECEIVED,
                 file: Optional[str] = None, size: Optional[int] = None, sha256: Optional[str] = None,
                 sop_instance_uid: Optional[str] = None, reason: Optional[str] = None) -> dict[str, Any]:
    """The manifest's record of one object the application returned: received (``file``, ``size``,
    ``sha256``) or refused (``reason``)."""
    return {
        "task": task,
        "status": status,
        "file": file,
        "size": size,
        "sha256": sha256,
        "descriptorUuid": descriptor.DescriptorUuid,
        "mimeType": descriptor.MimeType,
        "classUID": descriptor.ClassUID,
        "modality": descriptor.Modality,
        "transferSyntax": locator.TransferSyntax or descriptor.TransferSyntaxUID,
        "sopInstanceUID": sop_instance_uid,
        "patient": patient and {"id": patient.ID, "name": patient.Name,
                                "issuer": patient.AssigningAuthority, "sex": patient.Sex},
        "studyUID": study and study.StudyUID,
        "seriesUID": series and series.SeriesUID,
        "uri": locator.URI,
        "offset": locator.Offset,
        "length": locator.Length,
        **({"reason": reason} if reason else {}),
    }


@dataclass
class Manifest:
    started_at: float
    """``time.time()`` when the run started."""
    app: dict[str, Any]
    server: dict[str, Any]
    instance: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)
    """``--output-models``: descriptor UUID -> the file of its Native DICOM Model (``models/<uuid>.xml``)."""
    timings: dict[str, Any] = field(default_factory=dict)
    """Seconds from the start of the run to each milestone (``instance``, ``offered``, ``launched``, ``idle``,
    ``exit``, ``end``), and ``stateRoundTrips``: each SetState with the milliseconds until the application's
    notification of the new state was seen."""
    outcome: dict[str, Any] = field(default_factory=dict)
    job: dict[str, Any] = field(default_factory=dict)
    """``dicom-host worker``: the job this run was (``id``)."""

    def milestone(self, name: str) -> None:
        self.timings[name] = round(time.time() - self.started_at, 4)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "startedAt": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started_at)),
            "outcome": self.outcome,
            "app": self.app,
            "server": self.server,
            "instance": self.instance,
            **({"job": self.job} if self.job else {}),
            "inputs": self.inputs,
            "tasks": self.tasks,
            "outputs": self.outputs,
            "statuses": self.statuses,
            "warnings": self.warnings,
            **({"models": self.models} if self.models else {}),
            "timings": self.timings,
        }

    def write(self, directory: Path) -> Path:
        path = directory / MANIFEST_NAME
        partial = directory / (MANIFEST_NAME + ".part")
        partial.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(partial, path)
        return path
