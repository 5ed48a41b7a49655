"""An example hosted application that reads its inputs only through models (PS3.19 Annex A).

It never asks for the input files: it gets Native DICOM Models of every input (GetAsModels), reads the
attributes it needs with one QueryModel in the standard's XPath style, fetches each image's Pixel Data
through its ``BulkData`` UUID (GetData on the bulk-data UUIDs), and writes a JSON report with, per image,
its SOP Instance UID, matrix and the minimum, maximum and mean of its stored pixel values. Images whose
pixel data are compressed are reported without statistics (their bulk data is the encapsulated stream).

Run it under the host: ``dicom-host run --app "python -m client.examples.models_app" --input DIR --output OUT``.
"""
from __future__ import annotations

import base64
import json
import sys
from typing import Optional

import numpy as np

from client import HostedApplication, TaskContext, TaskInput, TaskOutput
from client.models import input_models

ATTRIBUTES = {
    name: f'/NativeDicomModel/DicomAttribute[@keyword="{name}"]/Value[@number=1]/text()'
    for name in ("SOPInstanceUID", "Rows", "Columns", "BitsAllocated", "PixelRepresentation", "SamplesPerPixel")
}
PIXEL_DATA = '/NativeDicomModel/DicomAttribute[@tag="7FE00010"]'
XPATHS = [*ATTRIBUTES.values(), f"{PIXEL_DATA}/BulkData/@uuid", f"{PIXEL_DATA}/InlineBinary/text()"]
UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


class ModelsApp(HostedApplication):
    name = "models-app"
    description = "Pixel statistics of each input image, read only through Native DICOM Models."
    fetch_inputs = False

    def process(self, inputs: list[TaskInput], context: TaskContext) -> list[TaskOutput]:
        report = []
        with input_models(context) as models:
            results = models.query(*XPATHS)
            per_model = [results[i:i + len(XPATHS)] for i in range(0, len(results), len(XPATHS))]
            for model, answers in zip(models.uuids, per_model):
                context.raise_if_canceled()
                values = [[node.Value or "" for node in answer.Result] for answer in answers]
                entry: dict = {name: (found[0] if found else None) for name, found in zip(ATTRIBUTES, values)}
                entry["model"] = model
                entry["statistics"] = self._statistics(models, entry, values[-2], values[-1])
                report.append(entry)
            failed = list(models.failed)
        data = json.dumps({"images": report, "failedSourceObjects": failed}, indent=2).encode()
        return [TaskOutput(name="pixel-statistics.json", data=data, mime_type="application/json")]

    @staticmethod
    def _statistics(models, entry: dict, bulk: list[str], inline: list[str]) -> Optional[dict]:
        if bulk:
            [(locator, pixels)] = models.located(bulk)
            if locator.TransferSyntax not in UNCOMPRESSED:
                return None
        elif inline:
            pixels = base64.b64decode(inline[0])
        else:
            return None
        bits, signed = int(entry["BitsAllocated"] or 16), entry["PixelRepresentation"] == "1"
        values = np.frombuffer(pixels, dtype=f"<{'i' if signed else 'u'}{max(bits // 8, 1)}")
        return {"min": int(values.min()), "max": int(values.max()), "mean": float(values.mean())}


def main(argv: Optional[list[str]] = None) -> int:
    return ModelsApp.main(argv)


if __name__ == "__main__":
    sys.exit(main())
