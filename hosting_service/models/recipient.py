"""The host as a model recipient: reading a hosted application's outputs through the models it offers.

PS3.19 §8.3 is symmetric: where the application offers models of its outputs, the host may ask for
them (GetAsModels, QueryModel, QueryInfoSet, GetData on bulk-data UUIDs, ReleaseModels) while the
application is INPROGRESS, COMPLETED or SUSPENDED. :func:`save_output_models` is what the orchestration
calls for that: after it has fetched the outputs and before it sets IDLE, it keeps each output's Native
DICOM Model beside the output, for the manifest. An application that offers no models (most do not)
simply fails the objects, which is recorded, not an error.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from client.application_client import ApplicationCallError, ApplicationClient
from client.models import Models
from hosting_service.models import NATIVE_DICOM_MODEL

MODELS_FOLDER = "models"


def save_output_models(application: ApplicationClient, descriptor_uuids: Sequence[str], folder: Path) -> dict:
    """Native DICOM Models of the outputs ``descriptor_uuids``, saved as ``folder/models/<uuid>.xml``.

    Returns ``{"models": {descriptor uuid: file name relative to folder}, "failed": [uuids],
    "error": message or None}``; the models are released before it returns.
    """
    summary: dict = {"models": {}, "failed": [], "error": None}
    if not descriptor_uuids:
        return summary
    try:
        with Models.of(application, descriptor_uuids, NATIVE_DICOM_MODEL) as models:
            summary["failed"] = models.failed
            represented = [u for u in descriptor_uuids if u not in set(models.failed)]
            target = folder / MODELS_FOLDER
            for descriptor_uuid, result in zip(represented, models.query("/")):
                target.mkdir(parents=True, exist_ok=True)
                path = target / f"{descriptor_uuid}.xml"
                path.write_text(result.Result[0].Value or "", encoding="utf-8")
                summary["models"][descriptor_uuid] = path.relative_to(folder).as_posix()
    except ApplicationCallError as exc:
        summary["error"] = str(exc)
    return summary
