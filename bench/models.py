"""Benchmark: GetAsModels plus one QueryModel over a 500-slice series, against a bare pydicom read.

The series (CT slices, ``--size`` pixels square) is written once. In the same process, alternating which
goes first, each round times:

* **bare**: ``pydicom.dcmread(path)`` of every file of the series;
* **models**: through the real service (``dicom-host serve``, an application's HostClient, zeep parsing
  the answers): GetAsModels of every slice as Native DICOM Models, then one QueryModel of every model
  with one XPath in the standard's style (each slice's Slice Location), then ReleaseModels (not timed).

The figure is the ratio of the best times. Target: models <= 2x bare. The Abstract Multi-Dimensional
Image Model of the same series (one model) is timed too, for information.

Run: ``.venv/bin/python bench/models.py [--slices N] [--size PIXELS] [--rounds R]``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pydicom

from client import HostClient
from hosting_service.admin.client import AdminClient
from hosting_service.dicom.samples import write_sample_series
from hosting_service.model import iter_descriptors
from hosting_service.models import ABSTRACT_IMAGE_MODEL, NATIVE_DICOM_MODEL
from hosting_service.orchestration.server import EmbeddedServer
from hosting_service.states import State

TARGET = 2.0
XPATH = '/NativeDicomModel/DicomAttribute[@keyword="SliceLocation"]/Value[@number=1]/text()'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=500)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-models-") as temporary:
        root = Path(temporary)
        started = time.perf_counter()
        paths = write_sample_series(root / "series", slices=args.slices, size=args.size, seed="bench models")
        print(f"generated {len(paths)} slices of {args.size}x{args.size} in {time.perf_counter() - started:.1f} s")
        with EmbeddedServer(data_dir=root / "server") as server:
            admin = AdminClient(server.url, token=server.admin_token, timeout=600)
            instance = admin.create_instance()
            offered = admin.offer_inputs(instance["id"], [str(root / "series")])["availableData"]
            uuids = [d.DescriptorUuid for d, *_ in iter_descriptors(offered)]
            host = HostClient(instance["hostURL"], timeout=600)
            host.notify_state_changed(State.IDLE)
            host.notify_state_changed(State.INPROGRESS)

            def bare() -> None:
                for path in paths:
                    pydicom.dcmread(path)

            def models() -> None:
                descriptor = host.get_as_models(uuids, NATIVE_DICOM_MODEL)
                assert len(descriptor.Models) == len(uuids), descriptor.FailedSourceObjects[:3]
                results = host.query_model(descriptor.Models, [XPATH])
                assert len(results) == len(uuids) and all(len(r.Result) == 1 for r in results)
                models.release = descriptor.Models  # type: ignore[attr-defined]

            def abstract() -> None:
                descriptor = host.get_as_models(uuids, ABSTRACT_IMAGE_MODEL)
                assert len(descriptor.Models) == 1
                host.query_model(descriptor.Models, ["//DataAt/@bulkDataUUID"])
                abstract.release = descriptor.Models  # type: ignore[attr-defined]

            best: dict[str, float] = {}
            contenders = {"bare": bare, "models": models, "abstract": abstract}
            for round_ in range(args.rounds):
                order = list(contenders) if round_ % 2 == 0 else list(reversed(contenders))
                for name in order:
                    began = time.perf_counter()
                    contenders[name]()
                    elapsed = time.perf_counter() - began
                    best[name] = min(elapsed, best.get(name, elapsed))
                    released = getattr(contenders[name], "release", None)
                    if released:
                        host.release_models(released)
            ratio = best["models"] / best["bare"]
            print(f"bare dcmread of {len(paths)} files: {best['bare'] * 1000:.0f} ms")
            print(f"GetAsModels (Native) + QueryModel of {len(paths)} slices: {best['models'] * 1000:.0f} ms; "
                  f"ratio {ratio:.2f}x (target <= {TARGET:g}x)")
            print(f"GetAsModels (Abstract, one model) + QueryModel: {best['abstract'] * 1000:.0f} ms; "
                  f"ratio {best['abstract'] / best['bare']:.2f}x")
            return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
