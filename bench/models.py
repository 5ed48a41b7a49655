"""Benchmark: GetAsModels plus one QueryModel over a 500-slice series, against a bare pydicom read.

The series (CT slices, ``--size`` pixels square) is written once. In the same process, alternating which
goes first, each round times:

* **bare**: ``pydicom.dcmread(path)`` of every file of the series;
* **service**: through the real service (``dicom-host serve``), as raw SOAP requests timed from the
  request to the last byte of the answer: GetAsModels of every slice as Native DICOM Models, then one
  QueryModel of every model with one XPath in the standard's style (each slice's Slice Location);
* **client**: the same through an application's HostClient (zeep building and parsing the messages);
* **abstract**: GetAsModels of the series as one Abstract Multi-Dimensional Image Model and a QueryModel
  of its bulk-data UUIDs, raw SOAP (for information).

Models are released after each round (not timed). The figure is the ratio of the best times of
**service** to **bare**. Target: <= 2x.

Run: ``.venv/bin/python bench/models.py [--slices N] [--size PIXELS] [--rounds R]``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from xml.sax.saxutils import escape

import pydicom
import requests
from lxml import etree

from client import HostClient
from hosting_service.admin.client import AdminClient
from hosting_service.dicom.samples import write_sample_series
from hosting_service.model import iter_descriptors
from hosting_service.models import ABSTRACT_IMAGE_MODEL, NATIVE_DICOM_MODEL
from hosting_service.orchestration.server import EmbeddedServer
from hosting_service.states import State

TARGET = 2.0
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
HOST_NS = "http://dicom.nema.org/PS3.19/HostService-20100825"
ARRAYS_NS = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"
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

            def soap(operation: str, inner: str) -> bytes:
                body = (f'<s:Envelope xmlns:s="{SOAP_ENV}"><s:Body><{operation} xmlns="{HOST_NS}">{inner}'
                        f"</{operation}></s:Body></s:Envelope>").encode()
                answer = session.post(instance["hostURL"], data=body, timeout=600,
                                      headers={"Content-Type": "text/xml; charset=utf-8"})
                assert answer.status_code == 200, answer.text[:300]
                return answer.content

            def raw(class_uid: str, xpath: str) -> list[str]:
                answer = soap("GetAsModels", f"<objects>{objects}</objects><classUID><Uid>{class_uid}</Uid></classUID>"
                                             "<supportedInfoSetTypes><MimeType><Type>text/xml</Type></MimeType>"
                                             "</supportedInfoSetTypes>")
                models = [e.text for e in etree.fromstring(answer).iterfind(f".//{{{HOST_NS}}}Models//{{{HOST_NS}}}Uuid")]
                listed = "".join(f"<UUID><Uuid>{m}</Uuid></UUID>" for m in models)
                answer = soap("QueryModel", f'<models>{listed}</models><xPaths xmlns:a="{ARRAYS_NS}">'
                                            f"<a:string>{escape(xpath)}</a:string></xPaths>")
                assert answer.count(b"<tns:QueryResult>") == len(models)
                return models

            def service() -> list[str]:
                models = raw(NATIVE_DICOM_MODEL, XPATH)
                assert len(models) == len(uuids)
                return models

            def client() -> list[str]:
                descriptor = host.get_as_models(uuids, NATIVE_DICOM_MODEL)
                assert len(descriptor.Models) == len(uuids), descriptor.FailedSourceObjects[:3]
                results = host.query_model(descriptor.Models, [XPATH])
                assert len(results) == len(uuids) and all(len(r.Result) == 1 for r in results)
                return descriptor.Models

            def abstract() -> list[str]:
                models = raw(ABSTRACT_IMAGE_MODEL, "//DataAt/@bulkDataUUID")
                assert len(models) == 1
                return models

            session = requests.Session()
            objects = "".join(f"<UUID><Uuid>{u}</Uuid></UUID>" for u in uuids)
            best: dict[str, float] = {}
            contenders = {"bare": bare, "service": service, "client": client, "abstract": abstract}
            for round_ in range(args.rounds):
                order = list(contenders) if round_ % 2 == 0 else list(reversed(contenders))
                for name in order:
                    began = time.perf_counter()
                    made = contenders[name]()
                    elapsed = time.perf_counter() - began
                    best[name] = min(elapsed, best.get(name, elapsed))
                    if made:
                        host.release_models(made)
            ratio = best["service"] / best["bare"]
            print(f"bare dcmread of {len(paths)} files: {best['bare'] * 1000:.0f} ms")
            print(f"GetAsModels (Native) + QueryModel of {len(paths)} slices, served: {best['service'] * 1000:.0f} ms; "
                  f"ratio {ratio:.2f}x (target <= {TARGET:g}x)")
            print(f"the same through HostClient (zeep): {best['client'] * 1000:.0f} ms; "
                  f"ratio {best['client'] / best['bare']:.2f}x")
            print(f"GetAsModels (Abstract, one model) + QueryModel, served: {best['abstract'] * 1000:.0f} ms; "
                  f"ratio {best['abstract'] / best['bare']:.2f}x")
            return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
