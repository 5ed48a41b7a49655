"""Check the results of a MIP job by content: every input series has one output, a valid Secondary Capture
of the same patient and study in a new series, whose pixels are the maximum over the series' slices in the
modality's units; the manifest says the job completed. Used by scripts/compose-e2e.sh.

    python scripts/check_mip.py INPUTS RESULTS                          # a results folder (submit --output)
    python scripts/check_mip.py INPUTS --server URL --job ID            # the job's results, fetched again
                                                                        # (token: DICOM_HOST_ADMIN_TOKEN)
Exit status 0 when every check passes, 1 with the failures listed otherwise.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def series_of(folder: Path) -> dict[str, list[pydicom.Dataset]]:
    found: dict[str, list[pydicom.Dataset]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
        except pydicom.errors.InvalidDicomError:
            continue
        found.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    return found


def check(inputs: Path, results: Path) -> list[str]:
    problems = []
    manifest = json.loads((results / "manifest.json").read_text())
    if manifest.get("outcome", {}).get("result") != "completed":
        problems.append(f"manifest outcome: {manifest.get('outcome')}")
    sources = series_of(inputs)
    outputs = [ds for group in series_of(results).values() for ds in group]
    if len(outputs) != len(sources):
        problems.append(f"{len(outputs)} outputs for {len(sources)} input series")
    for mip in outputs:
        referenced = [str(item.SeriesInstanceUID) for item in mip.get("ReferencedSeriesSequence", [])]
        series = sources.get(referenced[0]) if referenced else None
        if series is None:
            problems.append(f"output {mip.SOPInstanceUID}: names no input series ({referenced})")
            continue
        if mip.SOPClassUID != SECONDARY_CAPTURE:
            problems.append(f"output {mip.SOPInstanceUID}: SOP class {mip.SOPClassUID}, not Secondary Capture")
        if (mip.PatientID, mip.StudyInstanceUID) != (series[0].PatientID, series[0].StudyInstanceUID):
            problems.append(f"output {mip.SOPInstanceUID}: another patient or study than its sources")
        if mip.SeriesInstanceUID in sources:
            problems.append(f"output {mip.SOPInstanceUID}: not in a new series")
        expected = np.max([apply_modality_lut(s.pixel_array, s) for s in series], axis=0)
        if not np.array_equal(apply_modality_lut(mip.pixel_array, mip), expected):
            problems.append(f"output {mip.SOPInstanceUID}: pixels are not the MIP of series {referenced[0]}")
    return problems


def fetch(server: str, job: str, into: Path) -> None:
    request = urllib.request.Request(f"{server.rstrip('/')}/admin/jobs/{job}/results")
    token = os.environ.get("DICOM_HOST_ADMIN_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=60) as answer:
        body = answer.read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
        tar.extractall(into, filter="data")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", type=Path)
    parser.add_argument("results", type=Path, nargs="?")
    parser.add_argument("--server")
    parser.add_argument("--job")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        results = args.results
        if results is None:
            if not (args.server and args.job):
                parser.error("give RESULTS, or --server and --job")
            results = Path(temp)
            fetch(args.server, args.job, results)
        problems = check(args.inputs, results)
    for problem in problems:
        print(f"check_mip: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_mip: results match the MIP of every input series ({results if args.results else args.job})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
